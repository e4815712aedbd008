//! Error kinds of the run as a whole: which exit code they give, and the one-line chain users see.

use crate::source::SourceError;
use std::error::Error as StdError;

/// A usage or configuration error: exit code 2. The message says what to change.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Validation found a mismatch, or a run ended with a failure: exit code 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Failed(pub String);

/// Exit code for an error: 130/143 when a signal stopped the run, 2 for usage/config errors
/// anywhere in the chain, else 1.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(i) = e
        .chain()
        .find_map(|c| c.downcast_ref::<crate::interrupt::Interrupted>())
    {
        return i.exit_code();
    }
    for cause in e.chain() {
        if cause.is::<UsageError>()
            || cause.is::<crate::config::ConfigError>()
            || cause.is::<crate::config::MappingErrors>()
            || cause
                .downcast_ref::<crate::source::SourceError>()
                .is_some_and(|e| matches!(e, SourceError::ClientLibrary(_) | SourceError::Url(_)))
            || cause
                .downcast_ref::<crate::sink::SinkError>()
                .is_some_and(|e| matches!(e, crate::sink::SinkError::Refused(_)))
        {
            return 2;
        }
    }
    1
}

/// `outer: inner: innermost`, the whole chain on one line.
pub fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut parts = vec![shown(e)];
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = shown(c);
        if !parts.last().is_some_and(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = c.source();
    }
    parts.join(": ")
}

/// One error of a chain as users read it: PostgreSQL's errors in its own words, with the detail
/// and the SQLSTATE (sqlx's own text ends in "at line N" of PostgreSQL's C source).
fn shown(e: &(dyn StdError + 'static)) -> String {
    if let Some(pg) = e
        .downcast_ref::<sqlx::Error>()
        .and_then(|e| e.as_database_error())
        .and_then(|d| d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>())
    {
        let mut s = pg.message().to_string();
        if let Some(d) = pg.detail() {
            s.push_str(": ");
            s.push_str(d);
        }
        if let Some(h) = pg.hint() {
            s.push_str(&format!(" ({h})"));
        }
        return format!("{s} (SQLSTATE {})", pg.code());
    }
    e.to_string()
}

/// The SQLSTATE of the first PostgreSQL error in the chain.
fn sqlstate(e: &anyhow::Error) -> Option<String> {
    e.chain().find_map(|c| {
        c.downcast_ref::<sqlx::Error>()
            .and_then(|e| e.as_database_error())
            .and_then(|d| d.code())
            .map(|c| c.into_owned())
    })
}

/// Whether the target could not be reached at all (nothing listening, host unknown).
fn target_unreachable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<crate::sink::SinkError>(),
            Some(crate::sink::SinkError::Connect {
                cause: sqlx::Error::Io(_) | sqlx::Error::Tls(_),
                ..
            })
        )
    })
}

/// An operator hint for well-known failures, shown under the error: chosen by the error's kind
/// (a PostgreSQL SQLSTATE, a connection that found nothing listening), not by its words.
pub fn hint(e: &anyhow::Error) -> Option<&'static str> {
    let text = format!("{e:#}");
    let code = sqlstate(e);
    let connect_failed = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<crate::sink::SinkError>(),
            Some(crate::sink::SinkError::Connect { .. })
        )
    });
    if text.contains("stayed unreachable after") {
        Some("every committed batch is kept: once PostgreSQL is back, run the same command with --resume")
    } else if connect_failed && code.as_deref() == Some("3D000") {
        Some(
            "PostgreSQL is up, but that database does not exist: create it (createdb NAME, or CREATE DATABASE) or fix the database name in --target / DATABASE_URL",
        )
    } else if connect_failed && matches!(code.as_deref(), Some("28000" | "28P01")) {
        Some(
            "PostgreSQL is up, but refused that user or password: check the user (and password) in --target / DATABASE_URL, and pg_hba.conf",
        )
    } else if target_unreachable(e) {
        Some(
            "nothing answered there: is PostgreSQL running, and are the host and port in --target / DATABASE_URL right? Try: pg_isready -d \"$DATABASE_URL\"",
        )
    } else if text.contains("cannot open source") && text.contains("sqlite") {
        Some("does the SQLite file exist? Create the demo database with: migrate demo")
    } else {
        oracle_hint(&text)
    }
}

/// What the common Oracle connection errors usually mean.
fn oracle_hint(text: &str) -> Option<&'static str> {
    const HINTS: &[(&str, &str)] = &[
        (
            "ORA-01017",
            "wrong Oracle user name or password (ORACLE_USER / ORACLE_PASSWORD, or the URL's user:pass)",
        ),
        (
            "ORA-28000",
            "the Oracle account is locked: ask the DBA to run ALTER USER ... ACCOUNT UNLOCK",
        ),
        (
            "ORA-12514",
            "the listener does not know that service: check the /SERVICE part (11g XE: XE, 21c XE: XEPDB1, 23ai Free: FREEPDB1; `lsnrctl services` lists them), or use ?sid=NAME for a SID",
        ),
        (
            "ORA-12505",
            "the listener does not know that SID: check ?sid= (or use the service name: /SERVICE)",
        ),
        (
            "ORA-12541",
            "no Oracle listener at that host and port: check ORACLE_HOST / ORACLE_PORT and that the database is up",
        ),
        (
            "ORA-12170",
            "the connection to Oracle timed out: a firewall or a wrong host",
        ),
        (
            "ORA-28040",
            "no matching authentication protocol: the client is too new for this server; use Instant Client 19 for 11g servers",
        ),
        (
            "ORA-00942",
            "the table or view does not exist for this user: check the mapping's source, the schema prefix (OWNER.TABLE) and SELECT grants",
        ),
    ];
    HINTS.iter().find(|(code, _)| text.contains(code)).map(|(_, h)| *h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oracle_errors_get_hints_and_client_errors_exit_2() {
        let e = anyhow::Error::new(SourceError::ClientLibrary("DPI-1047".into()));
        assert_eq!(exit_code(&e), 2);
        let e = anyhow::Error::msg("ORA-12514: TNS:listener does not currently know of service requested");
        assert!(hint(&e).unwrap().contains("XEPDB1"));
        assert!(
            hint(&anyhow::Error::msg("ORA-01017: invalid username/password"))
                .unwrap()
                .contains("password")
        );
        assert_eq!(hint(&anyhow::Error::msg("something else")), None);
        assert_eq!(exit_code(&anyhow::Error::msg("x")), 1);
    }
}
