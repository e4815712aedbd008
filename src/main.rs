//! `migrate` binary: parse the command line, run the mode, map the outcome to an exit code
//! (0 success, 1 migration or validation failure, 2 usage or configuration error).

use clap::Parser;
use migrate::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    // `.env` fills in what the real environment does not set.
    warn_if_env_file_is_readable(std::path::Path::new(".env"));
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    let writes_log = !matches!(cli.command, Some(Command::Demo(_) | Command::Scaffold(_)));
    migrate::telemetry::init(cli.common.verbose, cli.common.quiet, writes_log);
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
            eprintln!("error: {}", migrate::error::chain(e.as_ref()));
            if let Some(h) = migrate::error::hint(&e) {
                eprintln!("hint: {h}");
            }
            ExitCode::from(code)
        }
    }
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
