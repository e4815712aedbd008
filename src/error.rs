//! Error kinds of the run as a whole: which exit code they give, and the one-line chain users see.

use std::error::Error as StdError;

/// A usage or configuration error: exit code 2. The message says what to change.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Validation found a mismatch, or a run ended with a failure: exit code 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Failed(pub String);

/// Exit code for an error: 2 for usage/config errors anywhere in the chain, else 1.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if cause.is::<UsageError>()
            || cause.is::<crate::config::ConfigError>()
            || cause.is::<crate::config::MappingErrors>()
        {
            return 2;
        }
    }
    1
}

/// `outer: inner: innermost`, the whole chain on one line.
pub fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !parts.last().is_some_and(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = c.source();
    }
    parts.join(": ")
}

/// An operator hint for well-known failures, shown under the error.
pub fn hint(e: &anyhow::Error) -> Option<&'static str> {
    let text = format!("{e:#}");
    if text.contains("cannot connect to target") {
        Some("is PostgreSQL running and is --target / DATABASE_URL right? Try: pg_isready -d \"$DATABASE_URL\"")
    } else if text.contains("cannot open source") && text.contains("sqlite") {
        Some("does the SQLite file exist? Create the demo database with: migrate demo")
    } else {
        None
    }
}
