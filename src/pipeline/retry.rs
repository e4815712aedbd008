//! How a lost target connection is retried: the policy (attempts, backoff), a new session after
//! an outage (taking the run lock again when the session held it), and `on_target!`, which
//! retries an idempotent target call.

use super::PipelineError;
use crate::checkpoint;
use crate::sink::{self, SinkError};
use sqlx::PgConnection;
use std::time::Duration;

/// How a lost target connection is retried: `attempts` reconnections, waiting `base`, then twice
/// as long each time, at most 30 s.
#[derive(Debug, Clone)]
pub struct Retry {
    pub target: String,
    /// Whether a new session takes the run lock again: the run's main session holds it; the
    /// extra sessions of `--jobs` do not.
    pub relock: bool,
    pub attempts: u32,
    pub base: Duration,
}

impl Retry {
    pub fn delay(&self, attempt: u32) -> Duration {
        crate::backoff::wait(self.base, attempt)
    }
}

/// An error of a target call, as the entity's pipeline error.
pub trait OnTarget {
    fn for_entity(self, entity: &str) -> PipelineError;
}

impl OnTarget for SinkError {
    fn for_entity(self, entity: &str) -> PipelineError {
        PipelineError::Sink {
            entity: entity.to_string(),
            cause: self,
        }
    }
}

impl OnTarget for checkpoint::CheckpointError {
    fn for_entity(self, entity: &str) -> PipelineError {
        PipelineError::State {
            entity: entity.to_string(),
            cause: self,
        }
    }
}

/// Runs a target call, reconnecting and calling again while the connection is lost (within the
/// retry budget). For the per-entity steps around the batch loop, which are idempotent.
#[macro_export]
macro_rules! on_target {
    ($conn:ident, $retry:expr, $entity:expr, $call:expr) => {{
        // `$conn` is a `&mut PgConnection` binding; `$call` uses it again after a reconnection.
        let mut attempt = 0;
        loop {
            match $call {
                Ok(v) => break Ok(v),
                Err(cause) => {
                    let e = $crate::pipeline::OnTarget::for_entity(cause, &$entity);
                    if !e.is_connection_lost() {
                        break Err(e);
                    }
                    if let Err(gone) = $crate::pipeline::reconnect($conn, $retry, &mut attempt, $entity, &e).await {
                        break Err(gone);
                    }
                }
            }
        }
    }};
}

/// Replaces a lost connection, waiting between attempts; takes the run lock again (it went with
/// the old session). `attempt` counts across the whole outage.
pub async fn reconnect(
    conn: &mut PgConnection,
    retry: &Retry,
    attempt: &mut u32,
    entity: &str,
    lost: &PipelineError,
) -> Result<(), PipelineError> {
    *conn = connect_again(retry, attempt, entity, lost).await?;
    Ok(())
}

/// A new session for `entity` (the extra sessions of `--jobs` and split parts): an outage that
/// starts just as the entity does is waited out like one in the middle of its load.
pub async fn open_session(retry: &Retry, entity: &str) -> Result<PgConnection, PipelineError> {
    match sink::connect(&retry.target).await {
        Ok(c) => Ok(c),
        Err(cause) => {
            let e = cause.for_entity(entity);
            if !e.is_connection_lost() {
                return Err(e);
            }
            connect_again(retry, &mut 0, entity, &e).await
        }
    }
}

/// A new session after `lost`, waiting between attempts (see [`reconnect`]).
pub(super) async fn connect_again(
    retry: &Retry,
    attempt: &mut u32,
    entity: &str,
    lost: &PipelineError,
) -> Result<PgConnection, PipelineError> {
    let mut why = crate::telemetry::chain(lost);
    loop {
        if *attempt >= retry.attempts {
            return Err(PipelineError::Gone {
                entity: entity.to_string(),
                attempts: *attempt,
                last: why,
            });
        }
        *attempt += 1;
        let wait = retry.delay(*attempt);
        tracing::warn!(
            "{entity}: lost the target connection ({why}); reconnecting in {:.1}s (attempt {} of {})",
            wait.as_secs_f64(),
            attempt,
            retry.attempts
        );
        tokio::time::sleep(wait).await;
        match sink::connect(&retry.target).await {
            Ok(mut fresh) => {
                let relocked = if retry.relock {
                    checkpoint::lock_run(&mut fresh).await
                } else {
                    Ok(None)
                };
                match relocked {
                    Ok(None) => {}
                    Ok(Some(holder)) => {
                        return Err(PipelineError::Gone {
                            entity: entity.to_string(),
                            attempts: *attempt,
                            last: format!("another run ({holder}) took the run lock while this one was reconnecting"),
                        });
                    }
                    Err(e) => {
                        why = crate::telemetry::chain(&e);
                        continue;
                    }
                }
                tracing::info!("{entity}: reconnected to the target");
                return Ok(fresh);
            }
            Err(e) => why = crate::telemetry::chain(&e),
        }
    }
}
