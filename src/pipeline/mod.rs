//! The per-entity loop: a reader thread streams ordered chunks from the source over a bounded
//! channel (`feed.rs`: read, transform, encode, check parents); the loader commits each batch's
//! good rows, its rejects and the entity's progress in ONE transaction (`batch.rs`), and the
//! JSON checkpoint is mirrored after each commit. A lost connection is retried (`retry.rs`).

mod batch;
mod feed;
mod retry;

pub use feed::CHUNK_ROWS;
pub use retry::{OnTarget, Retry, open_session, reconnect};

use crate::bind::Bound;
use crate::checkpoint::{self, Mirror, Progress};
use crate::report::EntityStats;
use crate::sink::{self, SinkError};
use crate::source::resilient::ReadPlan;
use crate::source::{self, SourceError};
use crate::telemetry::Bars;
use crate::telemetry::EntityBar;
use batch::{FastFail, commit_batch, fast_batch};
use feed::{FeedPlan, Prepared};
use retry::connect_again;
use sqlx::PgConnection;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("reading {entity}")]
    Source {
        entity: String,
        #[source]
        cause: SourceError,
    },
    #[error("loading {entity}")]
    Sink {
        entity: String,
        #[source]
        cause: SinkError,
    },
    #[error("loading {entity}")]
    Interrupted {
        entity: String,
        #[source]
        cause: crate::interrupt::Interrupted,
    },
    #[error("loading {entity}: the target stayed unreachable after {attempts} reconnection attempt(s) (last: {last})")]
    Gone {
        entity: String,
        attempts: u32,
        last: String,
    },
    /// A batch failed for a reason that is not one row's: the run stops there.
    #[error(
        "loading {entity}: the batch after key {after} failed for a reason that is not one row's (the connection, the server, the schema, a permission, a lock or a timeout), so the run stops; every batch before it is committed. Fix the cause, then run the same command with --resume"
    )]
    Batch {
        entity: String,
        after: String,
        #[source]
        cause: Box<PipelineError>,
    },
    #[error(
        "{entity}: {read} source rows read, but {counted} were counted in scope before the load: {} row(s) were not read. Either the key does not order the rows the way the source compares them (rows skipped), or rows were deleted from the source while it loaded (a source that is still being written is `migrate sync`'s job: load a quiet copy, then sync). The entity is not marked done; fix the cause and run again (--truncate to start over)",
        counted - read
    )]
    Shortfall { entity: String, read: u64, counted: u64 },
    #[error("loading {entity}")]
    State {
        entity: String,
        #[source]
        cause: checkpoint::CheckpointError,
    },
}

/// Rows per batch unless `--batch-size` or the mapping says otherwise: one COPY and one
/// transaction each, streamed a chunk at a time (memory does not grow with it).
pub const DEFAULT_BATCH: usize = 50_000;

/// What every entity's load shares.
pub struct LoadCtx<'a> {
    pub source: &'a str,
    pub dry: bool,
    pub state: SharedState,
    pub mirror: &'a Mirror,
    pub retry: Retry,
    pub read_plan: &'a ReadPlan,
    /// `--batch-size`, over the mapping's `batch_size`.
    pub batch_size: Option<usize>,
    /// `--defer-indexes`.
    pub defer: bool,
    pub bars: &'a Bars,
    /// `--jobs`: an entity of at least `orchestrator::MIN_PART_ROWS` × 2 rows is split into up to this many
    /// key ranges, loaded side by side.
    pub jobs: usize,
    /// With `--jobs` above 1: one permit per stream (an entity, or a part of one) loading at once.
    pub streams: Option<&'a tokio::sync::Semaphore>,
}

/// The progress of every entity of the run, as committed; entities loading at the same time
/// share it (the checkpoint mirror is written from it).
pub type SharedState = std::sync::Mutex<BTreeMap<String, Progress>>;

/// Records an entity's committed progress and hands it to the checkpoint mirror; with `sync`,
/// returns once the file is on disk.
fn mirror_progress(
    mirror: &Mirror,
    state: &SharedState,
    p: Option<&Progress>,
    sync: bool,
) -> Result<(), checkpoint::CheckpointError> {
    {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = p {
            s.insert(p.entity.clone(), p.clone());
        }
        mirror.write_behind(&s)?;
    }
    if sync { mirror.flush() } else { Ok(()) }
}

/// Where the rows go: the target (with state), or nowhere (dry run).
pub enum Mode<'a> {
    Load {
        conn: &'a mut PgConnection,
        mirror: &'a Mirror,
        state: &'a SharedState,
        retry: &'a Retry,
    },
    DryRun,
}

impl PipelineError {
    /// This error, as the failure of the batch after `progress`'s last key.
    fn in_batch_after(self, progress: &Progress) -> PipelineError {
        let entity = match &self {
            PipelineError::Sink { entity, .. } | PipelineError::State { entity, .. } => entity.clone(),
            _ => return self,
        };
        PipelineError::Batch {
            entity,
            after: progress
                .last_key
                .as_deref()
                .map_or_else(|| "(none: the first batch)".to_string(), crate::value::key_display),
            cause: Box::new(self),
        }
    }

    pub fn is_connection_lost(&self) -> bool {
        match self {
            PipelineError::Sink { cause, .. } => cause.is_connection_lost(),
            PipelineError::State { cause, .. } => cause.is_connection_lost(),
            _ => false,
        }
    }
}

/// Whether `read` source rows cover the `counted` counted in scope before the load.
pub fn check_all_read(entity: &str, read: u64, counted: u64) -> Result<(), PipelineError> {
    if read < counted {
        return Err(PipelineError::Shortfall {
            entity: entity.to_string(),
            read,
            counted,
        });
    }
    if read > counted {
        tracing::warn!(
            "{entity}: {read} source rows read, {} more than counted in scope before the load: the source gained rows while it loaded (they are loaded too)",
            read - counted
        );
    }
    Ok(())
}

/// Runs one entity from `start` (its progress so far) to the end of its rows.
pub async fn run_entity(
    source_url: &str,
    b: &Bound,
    start: Progress,
    batch_size: usize,
    read_plan: &source::resilient::ReadPlan,
    mut mode: Mode<'_>,
    bar: &EntityBar,
) -> Result<EntityStats, PipelineError> {
    let name = b.entity.name.clone();
    let began = Instant::now();
    let read_before = start.rows_read;
    // The progress row: the entity's, a part's (`skid#1/2`) or a sync pass's (`item@sync`).
    let state_key = start.entity.clone();
    let mut progress = start;
    let mut read_now = 0u64;
    let mut stats = EntityStats {
        entity: name.clone(),
        source_rows: b.rows_in_scope,
        skipped_by_where: b.skipped_by_where,
        status: "running".into(),
        ..Default::default()
    };
    let names = b.source_names();
    let dry = matches!(mode, Mode::DryRun);
    let state_err = |cause| PipelineError::State {
        entity: name.clone(),
        cause,
    };

    // Foreign keys to other tables (in the catalog, or held off the table for the load) are
    // checked per chunk before loading, on a session of its own.
    let mut parents = None;
    let mut checker_conn = None;
    let mut careful_bound = None;
    if let Mode::Load { conn, retry, .. } = &mut mode {
        let mut fks = crate::on_target!(conn, retry, &name, sink::foreign_keys(conn, &b.loader.table).await)?;
        fks.extend(b.loader.checked_fks.iter().cloned());
        // A full load (not a sync pass's few rows) may check against its parents' keys held in
        // memory.
        let local = if b.spec.window.is_none() {
            b.rows_in_scope.try_into().unwrap_or(usize::MAX)
        } else {
            0
        };
        parents = sink::ParentCheck::new(b.loader.index(), &b.loader.table, &b.targets, &fks)
            .map(|c| c.with_local_keys(local));
        if parents.is_some() {
            checker_conn = Some(crate::on_target!(
                conn,
                retry,
                &name,
                sink::connect(&retry.target).await
            )?);
            // The check covers the held keys: careful batches need not stage them again.
            let mut c = b.clone();
            c.loader.checked_fks.clear();
            careful_bound = Some(c);
        }
    }
    let careful_b = careful_bound.as_ref().unwrap_or(b);
    let chunk_rows = batch_size.clamp(1, CHUNK_ROWS);
    let plan = FeedPlan {
        url: source_url,
        bound: b,
        read_plan,
        chunk_rows,
        parents: parents.as_ref(),
    };
    // Sync passes are small, and each of their rows needs its earlier rejects and versions
    // handled: every batch is careful.
    let all_careful = progress.is_sync();
    let mut feed = plan.start(
        progress.last_key.clone(),
        if all_careful { u64::MAX } else { 0 },
        checker_conn.take(),
    )?;

    // Where the loader's time goes: waiting for the reader, or in PostgreSQL (logged at debug).
    let (mut waited, mut in_db) = (Duration::ZERO, Duration::ZERO);
    let mut held: Option<Prepared> = None;
    let mut stopping = false;
    'feed: loop {
        // A stop request is honoured between batches only: the batch in flight is committed
        // with its progress, or (second signal, process exit) not at all.
        let wait_started = Instant::now();
        let chunk = match held.take() {
            Some(p) => Some(p),
            None if stopping => None,
            None => tokio::select! {
                biased;
                _ = crate::interrupt::wait() => { stopping = true; None }
                r = feed.rx.recv() => r,
            },
        };
        waited += wait_started.elapsed();
        let Some(chunk) = chunk else {
            if stopping {
                feed.stop().await;
                bar.finish();
                if let Mode::Load { mirror, state, .. } = &mode {
                    mirror_progress(mirror, state, None, true).map_err(state_err)?;
                }
                return Err(PipelineError::Interrupted {
                    entity: name,
                    cause: crate::interrupt::Interrupted {
                        signal: crate::interrupt::requested().unwrap_or(libc::SIGINT),
                    },
                });
            }
            match feed.finish(&name).await {
                Ok(reconnects) => {
                    stats.retries += reconnects;
                    break;
                }
                // The parent check lost its session: everything it passed on is committed;
                // the rest is read again on a new one.
                Err((lost, Some(reconnects))) if lost.is_connection_lost() => {
                    stats.retries += reconnects + 1;
                    let Mode::Load { retry, .. } = &mode else {
                        return Err(lost);
                    };
                    let plain = Retry {
                        relock: false,
                        ..(*retry).clone()
                    };
                    let checker = Some(connect_again(&plain, &mut 0, &name, &lost).await?);
                    bar.set_position(progress.rows_read as u64);
                    feed = plan.start(
                        progress.last_key.clone(),
                        if all_careful { u64::MAX } else { 0 },
                        checker,
                    )?;
                    continue 'feed;
                }
                Err((e, _)) => return Err(e),
            }
        };
        let db_started = Instant::now();
        match &mut mode {
            Mode::DryRun => {
                let n = chunk.read as u64;
                stats.loaded += chunk.enc.rows.len() as u64;
                stats.rejected += chunk.rejects.len() as u64;
                if stats.sample_rejects.len() < 20 {
                    let room = 20 - stats.sample_rejects.len();
                    stats.sample_rejects.extend(chunk.rejects.into_iter().take(room));
                }
                stats.read += n;
                read_now += n;
                bar.inc(n);
            }
            Mode::Load {
                conn,
                mirror,
                state,
                retry,
            } if !chunk.careful => {
                let mut attempt = 0;
                match fast_batch(conn, b, chunk, &mut feed.rx, &progress, batch_size, bar).await {
                    Ok(done) => {
                        progress = done.committed;
                        held = done.held;
                        stopping |= done.stop;
                    }
                    Err(fail) => {
                        let (after_rows, careful) = match fail {
                            FastFail::Refused { rows } => (None, rows),
                            FastFail::Lost { rows, error } => {
                                stats.retries += 1;
                                reconnect(conn, retry, &mut attempt, &name, &error).await?;
                                (Some(rows), 0)
                            }
                            FastFail::Other(e) => {
                                feed.stop().await;
                                return Err(e.in_batch_after(&progress));
                            }
                        };
                        let (checker, reconnects) = feed.stop().await;
                        stats.retries += reconnects;
                        // The database decides what was committed: the batch, or nothing of it.
                        let now = checkpoint::load_all(conn).await.map_err(state_err)?;
                        let stored = now.get(&state_key).cloned().unwrap_or_else(|| progress.clone());
                        let expected = after_rows.map(|r| progress.rows_read + r as i64);
                        if stored.rows_read != progress.rows_read && Some(stored.rows_read) != expected {
                            return Err(PipelineError::Gone {
                                entity: name.clone(),
                                attempts: attempt,
                                last: format!(
                                    "after reconnecting, migrate.progress says {} rows read, expected {}{}",
                                    stored.rows_read,
                                    progress.rows_read,
                                    expected.map(|e| format!(" or {e}")).unwrap_or_default()
                                ),
                            });
                        }
                        if careful > 0 {
                            tracing::debug!(
                                "{name}: PostgreSQL refused a row of the {careful} rows after {} read; reading them again batch by batch to isolate it",
                                progress.rows_read
                            );
                        }
                        progress = stored;
                        bar.set_position(progress.rows_read as u64);
                        let checker = match (checker, &parents) {
                            (Some(c), _) => Some(c),
                            // The checker's session went with the outage (or its task failed):
                            // a new one, within the same retry budget, without the run lock.
                            (None, Some(_)) => match sink::connect(&retry.target).await {
                                Ok(c) => Some(c),
                                Err(cause) => {
                                    let plain = Retry {
                                        relock: false,
                                        ..(*retry).clone()
                                    };
                                    let lost = cause.for_entity(&name);
                                    Some(connect_again(&plain, &mut attempt, &name, &lost).await?)
                                }
                            },
                            (None, None) => None,
                        };
                        feed = plan.start(
                            progress.last_key.clone(),
                            if all_careful { u64::MAX } else { careful },
                            checker,
                        )?;
                        continue 'feed;
                    }
                }
                mirror_progress(mirror, state, Some(&progress), false).map_err(state_err)?;
            }
            Mode::Load {
                conn,
                mirror,
                state,
                retry,
            } => {
                let Prepared {
                    rows,
                    enc,
                    enc_src,
                    rejects,
                    reject_src,
                    ..
                } = chunk;
                let n = rows.len() as u64;
                let mut attempt = 0;
                let committed = loop {
                    let lost = match commit_batch(
                        conn,
                        careful_b,
                        &names,
                        &rows,
                        &enc,
                        &enc_src,
                        &rejects,
                        &reject_src,
                        &progress,
                    )
                    .await
                    {
                        Ok(p) => break p,
                        Err(e) if e.is_connection_lost() => e,
                        Err(e) => return Err(e.in_batch_after(&progress)),
                    };
                    stats.retries += 1;
                    reconnect(conn, retry, &mut attempt, &name, &lost).await?;
                    // The database decides whether the COMMIT went through before the loss.
                    let now = checkpoint::load_all(conn).await.map_err(state_err)?;
                    let stored_read = now.get(&state_key).map(|p| p.rows_read).unwrap_or(0);
                    if stored_read == progress.rows_read + n as i64 {
                        break now.get(&state_key).cloned().expect("it has a row");
                    }
                    if stored_read != progress.rows_read {
                        return Err(PipelineError::Gone {
                            entity: name.clone(),
                            attempts: attempt,
                            last: format!(
                                "after reconnecting, migrate.progress says {stored_read} rows read, expected {} or {}",
                                progress.rows_read,
                                progress.rows_read + n as i64
                            ),
                        });
                    }
                };
                progress = committed;
                mirror_progress(mirror, state, Some(&progress), false).map_err(state_err)?;
                bar.inc(n);
            }
        }
        in_db += db_started.elapsed();
    }
    // Every row counted in scope must have been read: a shortfall is a failure, never "done".
    // Only for the entity's own progress row: a part of a split entity (`skid#1/2`) is checked
    // with the others, in `app::load_parts`; a sync pass (`item@sync`) reads a window.
    if state_key == name {
        let read = if dry { stats.read } else { progress.rows_read as u64 };
        check_all_read(&name, read, b.rows_in_scope)?;
    }
    if let Mode::Load {
        conn,
        mirror,
        state,
        retry,
    } = mode
    {
        progress.status = "done".into();
        let mut attempt = 0;
        loop {
            match checkpoint::save(conn, &progress).await {
                Ok(()) => break,
                Err(cause) => {
                    let e = PipelineError::State {
                        entity: name.clone(),
                        cause,
                    };
                    if !e.is_connection_lost() {
                        return Err(e);
                    }
                    stats.retries += 1;
                    reconnect(conn, retry, &mut attempt, &name, &e).await?;
                }
            }
        }
        mirror_progress(mirror, state, Some(&progress), true).map_err(state_err)?;
        read_now = (progress.rows_read - read_before) as u64;
        stats.read = progress.rows_read as u64;
        stats.loaded = progress.rows_loaded as u64;
        stats.rejected = progress.rows_rejected as u64;
        stats.kept_out = progress.rows_kept_out as u64;
        stats.merged = progress.rows_merged as u64;
    }
    tracing::debug!(
        "{name}: the loader waited {:.2}s for the reader and spent {:.2}s on PostgreSQL",
        waited.as_secs_f64(),
        in_db.as_secs_f64()
    );
    stats.seconds = began.elapsed().as_secs_f64();
    stats.rows_per_sec = read_now as f64 / stats.seconds.max(1e-6);
    stats.status = if dry { "checked".into() } else { "done".into() };
    bar.finish();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_counted_in_scope_must_be_read() {
        assert!(check_all_read("e", 10, 10).is_ok());
        assert!(check_all_read("e", 12, 10).is_ok());
        let e = check_all_read("e", 7, 10).unwrap_err().to_string();
        assert!(
            e.contains("e: 7 source rows read, but 10 were counted in scope before the load: 3 row(s) were not read"),
            "{e}"
        );
        assert!(e.contains("migrate sync"), "{e}");
    }
}
