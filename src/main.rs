//! `migrate` binary: parse the command line, run the mode, map the outcome to an exit code
//! (0 success, 1 migration or validation failure, 2 usage or configuration error).

use migrate::cli::Cli;
use std::process::ExitCode;

fn main() -> ExitCode {
    // `.env` fills in what the real environment does not set.
    warn_if_env_file_is_readable(std::path::Path::new(".env"));
    if let Err(e) = read_env_file(std::path::Path::new(".env")) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    for (k, v) in migrate::source::oracle::CLIENT_ENV {
        // SAFETY: at the start of main, before any other thread exists.
        unsafe { std::env::set_var(k, v) };
    }
    let cli = Cli::parse_args();
    // sslrootcert is the only trust anchor of a verified connection, as in libpq (tls.rs): the
    // TLS library's certificate store is pinned to it, before any thread exists.
    if let Some(root) = migrate::sink::tls::pinned_root_cert(
        cli.common.target.as_deref(),
        std::env::var("PGSSLMODE").ok(),
        std::env::var("PGSSLROOTCERT").ok(),
    ) {
        // SAFETY: at the start of main, before any other thread exists.
        unsafe {
            std::env::set_var("SSL_CERT_FILE", root);
            std::env::remove_var("SSL_CERT_DIR");
        }
    }
    let (more, less) = cli.common.logs.log_level();
    let log_file = migrate::telemetry::log_file_path(
        cli.common.logs.log_file.as_deref(),
        cli.writes_to_target(),
        std::env::var_os("MIGRATE_LOG_DIR").as_deref(),
    );
    let log_file = migrate::telemetry::init(more, less, log_file);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(migrate::app::main(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = migrate::error::exit_code(&e);
            let mut text = format!("error: {}", migrate::telemetry::chain(e.as_ref()));
            if let Some(h) = migrate::app::hint(&e) {
                text.push_str(&format!("\nhint: {h}"));
            }
            eprintln!("{text}");
            if let Some(path) = &log_file {
                migrate::telemetry::append_to_log(path, &format!("{text}\nexit code {code}"));
            }
            ExitCode::from(code)
        }
    }
}

/// Fills in, from `.env`, what the real environment does not set. A line that cannot be read
/// is an error naming its line (dotenvy would stop there and silently drop every later line);
/// its text is not shown, as it may hold a password.
fn read_env_file(path: &std::path::Path) -> Result<(), String> {
    let iter = match dotenvy::from_path_iter(path) {
        Ok(iter) => iter,
        Err(e) if e.not_found() => return Ok(()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut vars = Vec::new();
    for item in iter {
        match item {
            Ok(kv) => vars.push(kv),
            Err(dotenvy::Error::LineParse(bad, _)) => {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let first = bad.lines().next().unwrap_or_default().trim_end();
                let line = text
                    .lines()
                    .position(|l| l.trim_end() == first)
                    .map_or_else(|| "?".to_string(), |i| (i + 1).to_string());
                return Err(format!(
                    "{} line {line} cannot be read as NAME=value (nothing of .env was used): fix that line (quote values with spaces or # in \"…\"), or remove it",
                    path.display()
                ));
            }
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        }
    }
    for (k, v) in vars {
        if std::env::var_os(&k).is_none() {
            // SAFETY: called at the start of main, before any other thread exists.
            unsafe { std::env::set_var(k, v) };
        }
    }
    Ok(())
}

/// `.env` holds passwords: say so when other users can read it.
fn warn_if_env_file_is_readable(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            eprintln!(
                "warning: {} is readable by other users (mode {mode:o}) and may hold passwords: chmod 600 {}",
                path.display(),
                path.display()
            );
        }
    }
}
