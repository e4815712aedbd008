//! Error kinds of the run as a whole, and the exit code each gives. (The one-line chain users
//! see is `telemetry::chain`; the operator hints are chosen in `app::hint`.)

use crate::source::SourceError;

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
            || cause.downcast_ref::<crate::sink::SinkError>().is_some_and(|e| match e {
                crate::sink::SinkError::Refused(_) => true,
                // A certificate refused in the TLS handshake is configuration, not an outage.
                crate::sink::SinkError::Connect { cause, .. } => crate::sink::tls::is_certificate_rejection(cause),
                _ => false,
            })
        {
            return 2;
        }
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_and_usage_errors_exit_2_others_1() {
        let e = anyhow::Error::new(SourceError::ClientLibrary("DPI-1047".into()));
        assert_eq!(exit_code(&e), 2);
        assert_eq!(exit_code(&anyhow::Error::new(UsageError("x".into()))), 2);
        assert_eq!(exit_code(&anyhow::Error::msg("x")), 1);
    }
}
