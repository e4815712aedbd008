//! TLS to the target, as libpq users expect it. sqlx (rustls) reads `sslmode`, `sslrootcert`,
//! `sslcert` and `sslkey` from the URL and `PGSSLMODE` & co. from the environment; what is
//! here makes it behave like libpq where it would not:
//!
//! - `sslrootcert` is *the* trust anchor for verify-ca/verify-full. rustls would trust it in
//!   addition to every certificate the system trusts (so a server whose certificate any system CA
//!   signed would pass with any `sslrootcert`). `main` pins the trust store to that file before
//!   any thread starts ([`pinned_root_cert`], applied through `SSL_CERT_FILE`).
//! - A certificate file that does not exist is a configuration error naming it, not "is
//!   PostgreSQL running?".
//! - A certificate the server presents and the client refuses is told apart from a server that
//!   did not answer ([`is_certificate_rejection`]).

use std::path::Path;

/// The query parameters of a `postgres://` URL (percent-decoded), in order.
fn query_params(url: &str) -> Vec<(String, String)> {
    url::Url::parse(url)
        .map(|u| u.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
        .unwrap_or_default()
}

/// The last value of one of `names` in the URL, else the environment variable `env`.
fn setting(url: Option<&str>, names: &[&str], env: Option<String>) -> Option<String> {
    let from_url = url.and_then(|u| {
        query_params(u)
            .into_iter()
            .filter(|(k, _)| names.contains(&k.as_str()))
            .map(|(_, v)| v)
            .next_back()
    });
    from_url.or(env).filter(|v| !v.is_empty())
}

/// The sslmode in effect: the URL's, else PGSSLMODE, else libpq's default `prefer`.
pub fn ssl_mode(url: Option<&str>, env_mode: Option<String>) -> String {
    setting(url, &["sslmode", "ssl-mode"], env_mode).unwrap_or_else(|| "prefer".into())
}

/// The root certificate the trust store is pinned to: `sslrootcert` (URL, else PGSSLROOTCERT)
/// when the sslmode verifies the server (verify-ca, verify-full), unless it is `system` (trust
/// the system's CAs, as PostgreSQL 16's libpq spells it).
pub fn pinned_root_cert(url: Option<&str>, env_mode: Option<String>, env_root: Option<String>) -> Option<String> {
    let mode = ssl_mode(url, env_mode);
    if !matches!(mode.as_str(), "verify-ca" | "verify-full") {
        return None;
    }
    setting(url, &["sslrootcert", "ssl-root-cert", "ssl-ca"], env_root).filter(|r| r != "system")
}

/// The certificate and key files a target names (URL, else PGSSLROOTCERT / PGSSLCERT /
/// PGSSLKEY), as (setting, path).
pub fn tls_files(url: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Vec<(&'static str, String)> {
    [
        (
            "sslrootcert",
            &["sslrootcert", "ssl-root-cert", "ssl-ca"][..],
            "PGSSLROOTCERT",
        ),
        ("sslcert", &["sslcert", "ssl-cert"][..], "PGSSLCERT"),
        ("sslkey", &["sslkey", "ssl-key"][..], "PGSSLKEY"),
    ]
    .into_iter()
    .filter_map(|(name, keys, var)| setting(url, keys, env(var)).map(|p| (name, p)))
    .filter(|(_, p)| p != "system")
    .collect()
}

/// Why the target's TLS settings cannot work before anything is tried: a file that is not
/// there, or an sslmode libpq does not know.
pub fn check_settings(url: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
    let mode = ssl_mode(url, env("PGSSLMODE"));
    const MODES: [&str; 6] = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"];
    if !MODES.contains(&mode.as_str()) {
        return Err(format!("sslmode={mode} is not one of {}", MODES.join(", ")));
    }
    for (name, path) in tls_files(url, env) {
        if !Path::new(&path).is_file() {
            return Err(format!("{name} {path} does not exist (or is not a file)"));
        }
    }
    Ok(())
}

/// The target built from libpq's variables (PGHOST, PGPORT, PGUSER, PGDATABASE) when no URL is
/// given and at least one of them is set: without a password (PGPASSWORD and `~/.pgpass` /
/// PGPASSFILE are read by the driver, so they are never part of a URL that could be shown).
pub fn libpq_url(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let get = |k: &str| env(k).filter(|v| !v.is_empty());
    let (host, port, user, db) = (get("PGHOST"), get("PGPORT"), get("PGUSER"), get("PGDATABASE"));
    if host.is_none() && port.is_none() && user.is_none() && db.is_none() {
        return None;
    }
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
    let mut u = String::from("postgres://");
    if let Some(user) = &user {
        u.push_str(&enc(user));
        u.push('@');
    }
    // A socket directory (/var/run/postgresql) goes percent-encoded, as libpq URLs write it.
    match host.as_deref().unwrap_or("localhost") {
        dir if dir.starts_with('/') => u.push_str(&enc(dir)),
        name => u.push_str(name),
    }
    if let Some(port) = &port {
        u.push(':');
        u.push_str(port);
    }
    u.push('/');
    if let Some(db) = &db {
        u.push_str(&enc(db));
    }
    Some(u)
}

/// The password file libpq would read (PGPASSFILE, else ~/.pgpass), and why it will be
/// ignored if it will: like libpq, a file others can read is not used.
pub fn pgpass_warning(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let path = env("PGPASSFILE")
        .filter(|p| !p.is_empty())
        .or_else(|| env("HOME").map(|h| format!("{h}/.pgpass")))?;
    let mode = std::fs::metadata(&path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "password file {path} is readable by others (mode {:o}), so it is ignored, as psql ignores it: chmod 600 {path}",
            mode & 0o777
        )
    })
}

/// Whether a connection failed because the TLS handshake refused the server's certificate (or
/// the client's own), as opposed to a server that is down or unreachable.
pub fn is_certificate_rejection(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Tls(_) => true,
        // rustls reports a refused certificate as invalid data on the stream.
        sqlx::Error::Io(io) => {
            io.kind() == std::io::ErrorKind::InvalidData
                || io
                    .get_ref()
                    .is_some_and(|inner| inner.to_string().contains("certificate"))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn the_root_certificate_is_pinned_only_when_the_server_is_verified() {
        let u = "postgres://u@db.example.com/x?sslmode=verify-full&sslrootcert=/etc/rds-ca.pem";
        assert_eq!(
            pinned_root_cert(Some(u), None, None).as_deref(),
            Some("/etc/rds-ca.pem")
        );
        // From the environment, as libpq reads it.
        assert_eq!(
            pinned_root_cert(
                Some("postgres://u@h/x"),
                Some("verify-ca".into()),
                Some("/ca.pem".into())
            )
            .as_deref(),
            Some("/ca.pem")
        );
        // The URL wins over the environment.
        assert_eq!(
            pinned_root_cert(Some(u), Some("require".into()), Some("/other.pem".into())).as_deref(),
            Some("/etc/rds-ca.pem")
        );
        assert_eq!(
            pinned_root_cert(Some("postgres://u@h/x?sslmode=require&sslrootcert=/ca.pem"), None, None),
            None
        );
        assert_eq!(
            pinned_root_cert(
                Some("postgres://u@h/x?sslmode=verify-full&sslrootcert=system"),
                None,
                None
            ),
            None
        );
        assert_eq!(pinned_root_cert(None, None, None), None);
        assert_eq!(ssl_mode(Some("postgres://u@h/x"), None), "prefer");
        assert_eq!(ssl_mode(Some("postgres://u@h/x?ssl-mode=require"), None), "require");
    }

    #[test]
    fn missing_certificate_files_and_unknown_modes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "x").unwrap();
        let ok = format!("postgres://u@h/x?sslmode=verify-ca&sslrootcert={}", ca.display());
        assert_eq!(check_settings(Some(&ok), &none), Ok(()));
        let e = check_settings(
            Some("postgres://u@h/x?sslmode=verify-ca&sslrootcert=/nope/ca.pem"),
            &none,
        )
        .unwrap_err();
        assert!(e.contains("sslrootcert /nope/ca.pem does not exist"), "{e}");
        let env = |k: &str| (k == "PGSSLKEY").then(|| "/nope/client.key".to_string());
        assert!(
            check_settings(Some("postgres://u@h/x"), &env)
                .unwrap_err()
                .contains("sslkey /nope/client.key")
        );
        assert!(
            check_settings(Some("postgres://u@h/x?sslmode=required"), &none)
                .unwrap_err()
                .contains("sslmode=required")
        );
        assert_eq!(tls_files(Some("postgres://u@h/x?sslrootcert=system"), &none), vec![]);
    }

    #[test]
    fn libpq_variables_make_a_url_without_the_password() {
        let env = |k: &str| match k {
            "PGHOST" => Some("db.internal".to_string()),
            "PGPORT" => Some("6432".to_string()),
            "PGUSER" => Some("mig rator".to_string()),
            "PGDATABASE" => Some("abis".to_string()),
            "PGPASSWORD" => Some("s3cret".to_string()),
            _ => None,
        };
        let u = libpq_url(&env).unwrap();
        assert_eq!(u, "postgres://mig%20rator@db.internal:6432/abis");
        let opts: sqlx::postgres::PgConnectOptions = u.parse().unwrap();
        assert_eq!(
            (opts.get_username(), opts.get_host(), opts.get_port()),
            ("mig rator", "db.internal", 6432)
        );
        assert!(!u.contains("s3cret"));
        let socket = |k: &str| (k == "PGHOST").then(|| "/var/run/postgresql".to_string());
        assert_eq!(libpq_url(&socket).unwrap(), "postgres://%2Fvar%2Frun%2Fpostgresql/");
        assert_eq!(libpq_url(&none), None);
    }

    #[test]
    fn refused_certificates_are_told_from_servers_that_are_down() {
        let refused = sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "invalid peer certificate: UnknownIssuer",
        ));
        assert!(is_certificate_rejection(&refused));
        assert!(is_certificate_rejection(&sqlx::Error::Tls("bad pem".into())));
        let down = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(!is_certificate_rejection(&down));
    }
}
