//! The operator hint shown under an error: chosen by the error's kind (the type of a cause in
//! its chain, a PostgreSQL SQLSTATE, an Oracle error code), never by searching its text.

use crate::pipeline::PipelineError;
use crate::sink::SinkError;
use crate::source::SourceError;
use crate::sqlstate::SqlState;

/// The hint for `e`, if a well-known failure is in its chain.
pub fn hint(e: &anyhow::Error) -> Option<&'static str> {
    let gone = e.chain().any(|c| {
        matches!(c.downcast_ref::<PipelineError>(), Some(PipelineError::Gone { .. }))
            || matches!(c.downcast_ref::<SourceError>(), Some(SourceError::Unreachable { .. }))
    });
    if gone {
        return Some("every committed batch is kept: once the database is back, run the same command with --resume");
    }
    let connect = e.chain().find_map(|c| match c.downcast_ref::<SinkError>() {
        Some(SinkError::Connect { cause, .. }) => Some(cause),
        _ => None,
    });
    if let Some(cause) = connect {
        return target_hint(cause);
    }
    let sqlite_missing = e.chain().any(|c| {
        matches!(c.downcast_ref::<SourceError>(), Some(SourceError::Connect { url, .. }) if url.starts_with("sqlite:"))
    });
    if sqlite_missing {
        return Some("does the SQLite file exist? Create the demo database with: migrate demo");
    }
    e.chain()
        .find_map(|c| c.downcast_ref::<oracle::Error>())
        .and_then(|o| o.db_error())
        .and_then(|d| oracle_hint(d.code()))
}

/// Why the target could not be connected to, by the error's kind.
fn target_hint(cause: &sqlx::Error) -> Option<&'static str> {
    match cause {
        sqlx::Error::Database(_) => match SqlState::of(cause) {
            Some(SqlState::INVALID_CATALOG_NAME) => Some(
                "PostgreSQL is up, but that database does not exist: create it (createdb NAME, or CREATE DATABASE) or fix the database name in --target / DATABASE_URL",
            ),
            Some(SqlState::INVALID_AUTHORIZATION | SqlState::INVALID_PASSWORD) => Some(
                "PostgreSQL is up, but refused that user or password: check the user (and password) in --target / DATABASE_URL, and pg_hba.conf",
            ),
            _ => None,
        },
        _ if crate::sink::tls::is_certificate_rejection(cause) => Some(
            "the TLS handshake refused a certificate: with sslmode=verify-ca or verify-full the server's certificate must be signed by sslrootcert (the only CA trusted then; without sslrootcert, the system's CAs), and with verify-full also carry the host name of the URL; sslcert/sslkey must be a matching pair. sslmode=require encrypts without checking the certificate",
        ),
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => Some(
            "nothing answered there: is PostgreSQL running, and are the host and port in --target / DATABASE_URL right? Try: pg_isready -d \"$DATABASE_URL\"",
        ),
        _ => None,
    }
}

/// What the common Oracle errors usually mean, by their ORA- number.
fn oracle_hint(code: i32) -> Option<&'static str> {
    Some(match code {
        1017 => "wrong Oracle user name or password (ORACLE_USER / ORACLE_PASSWORD, or the URL's user:pass)",
        28000 => "the Oracle account is locked: ask the DBA to run ALTER USER ... ACCOUNT UNLOCK",
        12514 => {
            "the listener does not know that service: check the /SERVICE part (11g XE: XE, 21c XE: XEPDB1, 23ai Free: FREEPDB1; `lsnrctl services` lists them), or use ?sid=NAME for a SID"
        }
        12505 => "the listener does not know that SID: check ?sid= (or use the service name: /SERVICE)",
        12541 => {
            "no Oracle listener at that host and port: check ORACLE_HOST / ORACLE_PORT and that the database is up"
        }
        12170 => "the connection to Oracle timed out: a firewall or a wrong host",
        28040 => {
            "no matching authentication protocol: the client is too new for this server; use Instant Client 19 for 11g servers"
        }
        942 => {
            "the table or view does not exist for this user: check the mapping's source, the schema prefix (OWNER.TABLE) and SELECT grants"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_follow_the_kind_of_error_not_its_words() {
        assert!(oracle_hint(12514).unwrap().contains("XEPDB1"));
        assert!(oracle_hint(1017).unwrap().contains("password"));
        assert_eq!(oracle_hint(1), None);
        // Words alone give no hint.
        assert_eq!(hint(&anyhow::Error::msg("ORA-12514 stayed unreachable after 3")), None);
        let gone = SourceError::Unreachable {
            relation: "T".into(),
            attempts: 3,
            cause: Box::new(SourceError::Url("x".into())),
        };
        assert!(hint(&anyhow::Error::new(gone)).unwrap().contains("--resume"));
        let sqlite = SourceError::Connect {
            url: "sqlite:demo/legacy.db".into(),
            cause: "no such file".into(),
        };
        assert!(hint(&anyhow::Error::new(sqlite)).unwrap().contains("migrate demo"));
        let down = SinkError::Connect {
            url: "postgres://h/db".into(),
            cause: sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        };
        assert!(
            hint(&anyhow::Error::new(down))
                .unwrap()
                .contains("is PostgreSQL running")
        );
    }
}
