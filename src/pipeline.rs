//! The per-entity loop: a reader thread streams ordered batches from the source over a bounded
//! channel; each batch is transformed and encoded, rows that fail become rejects, and the good
//! rows, the rejects and the entity's progress are committed in ONE transaction. The JSON
//! checkpoint is mirrored after each commit.

use crate::checkpoint::{self, Mirror, Progress, RejectRecord};
use crate::sink::{self, Encoded, SinkError};
use crate::source::{self, SourceError};
use crate::telemetry::EntityBar;
use crate::validate::pre::Bound;
use crate::value::Value;
use sqlx::PgConnection;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Batches in flight between the reader thread and the loader.
const QUEUE_DEPTH: usize = 4;

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
    #[error("loading {entity}")]
    State {
        entity: String,
        #[source]
        cause: checkpoint::CheckpointError,
    },
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EntityStats {
    pub entity: String,
    /// Source rows in scope (after `where`).
    pub source_rows: u64,
    /// Source rows the mapping's `where` leaves out.
    pub skipped_by_where: u64,
    pub read: u64,
    pub loaded: u64,
    pub rejected: u64,
    pub seconds: f64,
    /// Seconds spent re-creating held indexes and foreign keys after the load (not in `seconds`).
    pub rebuild_seconds: f64,
    /// Rows read per second in this run.
    pub rows_per_sec: f64,
    pub status: String,
    /// Reconnections to the target during this entity's load.
    pub retries: u64,
    /// The post-load validation's verdict for this entity: "ok", "mismatch", or "not run".
    pub validation: String,
    /// Dry run: the first rejects, to show.
    #[serde(skip)]
    pub sample_rejects: Vec<RejectRecord>,
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
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.base.saturating_mul(factor).min(Duration::from_secs(30))
    }
}

impl PipelineError {
    pub fn is_connection_lost(&self) -> bool {
        match self {
            PipelineError::Sink { cause, .. } => cause.is_connection_lost(),
            PipelineError::State { cause, .. } => cause.is_connection_lost(),
            _ => false,
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
                    let e = $crate::pipeline::PipelineError::Sink {
                        entity: $entity.to_string(),
                        cause,
                    };
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
    let mut why = crate::error::chain(lost);
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
                        why = crate::error::chain(&e);
                        continue;
                    }
                }
                *conn = fresh;
                tracing::info!("{entity}: reconnected to the target");
                return Ok(());
            }
            Err(e) => why = crate::error::chain(&e),
        }
    }
}

/// Transforms and encodes one source row into `buf`; on failure returns (column, reason) and
/// leaves `buf` as it was.
pub fn encode_row(b: &Bound, row: &[Value], buf: &mut Vec<u8>) -> Result<(), (String, String)> {
    let start = buf.len();
    buf.extend_from_slice(&(b.targets.len() as i16).to_be_bytes());
    for (i, fd) in b.entity.fields.iter().enumerate() {
        let col = &b.targets[i];
        let raw = match (&fd.constant, b.field_pos[i]) {
            (Some(c), _) => c.clone(),
            (None, Some(p)) => row[p].clone(),
            (None, None) => Value::Null,
        };
        let fail = |reason: String, buf: &mut Vec<u8>| {
            buf.truncate(start);
            Err((fd.to.clone(), reason))
        };
        let mut v = match fd.chain.apply(raw) {
            Ok(v) => v,
            Err(e) => return fail(format!("transform failed: {e}"), buf),
        };
        if v.is_null()
            && let Some(d) = &fd.default
        {
            v = d.clone();
        }
        if v.is_null() && col.not_null {
            return fail(format!("NULL in NOT NULL column {}", col.name), buf);
        }
        if let Err(e) = col.ty.encode(&v, buf) {
            return fail(e, buf);
        }
    }
    Ok(())
}

/// A batch as read, and as it goes to PostgreSQL: the encoded rows (with the source row each
/// came from) and the rows that failed on the client.
struct Prepared {
    rows: Vec<Vec<Value>>,
    enc: Encoded,
    enc_src: Vec<usize>,
    rejects: Vec<RejectRecord>,
    /// The source row of each of `rejects`.
    reject_src: Vec<usize>,
}

fn prepare(b: &Bound, names: &[String], rows: Vec<Vec<Value>>) -> Prepared {
    let mut enc = Encoded {
        buf: Vec::with_capacity(rows.len() * 128),
        rows: Vec::with_capacity(rows.len()),
    };
    let mut enc_src: Vec<usize> = Vec::with_capacity(rows.len());
    let mut rejects = Vec::new();
    let mut reject_src = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let at = enc.buf.len();
        match encode_row(b, row, &mut enc.buf) {
            Ok(()) => {
                enc.rows.push(at..enc.buf.len());
                enc_src.push(i);
            }
            Err((col, reason)) => {
                rejects.push(reject(b, names, row, Some(col), reason));
                reject_src.push(i);
            }
        }
    }
    Prepared {
        rows,
        enc,
        enc_src,
        rejects,
        reject_src,
    }
}

fn reject(b: &Bound, names: &[String], row: &[Value], column: Option<String>, reason: String) -> RejectRecord {
    let values = names
        .iter()
        .zip(row)
        .map(|(n, v)| (n.clone(), v.to_display_json()))
        .collect::<serde_json::Map<_, _>>();
    RejectRecord {
        key: b.spec.key_of(row),
        source_values: serde_json::Value::Object(values),
        reason,
        column,
    }
}

/// One batch in one transaction: the good rows, every reject (the client's and those PostgreSQL
/// refused) and the entity's progress. Returns the progress as committed.
#[allow(clippy::too_many_arguments)]
async fn commit_batch(
    conn: &mut PgConnection,
    b: &Bound,
    names: &[String],
    rows: &[Vec<Value>],
    enc: &Encoded,
    enc_src: &[usize],
    client_rejects: &[RejectRecord],
    client_reject_src: &[usize],
    before: &Progress,
) -> Result<Progress, PipelineError> {
    let name = &b.entity.name;
    let sink_err = |cause| PipelineError::Sink {
        entity: name.clone(),
        cause,
    };
    let state_err = |cause| PipelineError::State {
        entity: name.clone(),
        cause,
    };
    sink::execute(conn, "BEGIN", "starting a transaction")
        .await
        .map_err(sink_err)?;
    let refused = sink::load(conn, &b.loader, enc).await.map_err(sink_err)?;
    let mut rejects = client_rejects.to_vec();
    let mut reject_src = client_reject_src.to_vec();
    for r in &refused {
        rejects.push(reject(
            b,
            names,
            &rows[enc_src[r.row]],
            r.column.clone(),
            r.reason.clone(),
        ));
        reject_src.push(enc_src[r.row]);
    }
    let mut next = before.clone();
    next.rows_read += rows.len() as i64;
    next.rows_loaded += (enc.rows.len() - refused.len()) as i64;
    next.rows_rejected += rejects.len() as i64;
    next.last_key = rows.last().map(|r| b.spec.key_of(r));
    if before.is_sync() {
        let keys: Vec<Vec<Value>> = rows.iter().map(|r| b.spec.key_of(r)).collect();
        checkpoint::forget_rejects_of(conn, name, &keys)
            .await
            .map_err(state_err)?;
        if !rejects.is_empty() {
            remove_previous_versions(conn, b, rows, &reject_src, &mut rejects)
                .await
                .map_err(sink_err)?;
        }
    }
    checkpoint::save_rejects(conn, name, &rejects)
        .await
        .map_err(state_err)?;
    checkpoint::save_and_commit(conn, &next).await.map_err(state_err)?;
    Ok(next)
}

/// In a sync pass, a changed row that is rejected must not leave its earlier version in the
/// target as if it were current: that version is deleted in the batch's transaction, unless
/// other rows need it. Each reject's reason says which.
async fn remove_previous_versions(
    conn: &mut PgConnection,
    b: &Bound,
    rows: &[Vec<Value>],
    reject_src: &[usize],
    rejects: &mut [RejectRecord],
) -> Result<(), SinkError> {
    let Some(fields) = b.key_fields() else {
        return Ok(());
    };
    let k = b.with_fields(&fields);
    let key_cols: Vec<String> = k.targets.iter().map(|c| c.name.clone()).collect();
    let (mut keys, mut of) = (Vec::new(), Vec::new());
    for (i, &src) in reject_src.iter().enumerate() {
        let mut buf = Vec::new();
        // A key that does not encode now cannot have been loaded either.
        if encode_row(&k, &rows[src], &mut buf).is_ok() {
            keys.push(buf);
            of.push(i);
        }
    }
    let outcome = sink::remove_previous(conn, &b.entity.target, &key_cols, &keys).await?;
    for (i, o) in of.into_iter().zip(outcome) {
        let r = &mut rejects[i];
        match o {
            sink::Previous::None => {}
            sink::Previous::Removed => r
                .reason
                .push_str("; its earlier version was deleted from the target, so the row stands only here"),
            sink::Previous::Kept(why) => r.reason.push_str(&format!(
                "; the target keeps its earlier version, which could not be deleted: {why}"
            )),
        }
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

    let (tx, mut rx) = tokio::sync::mpsc::channel::<Prepared>(QUEUE_DEPTH);
    let url = source_url.to_string();
    let after = progress.last_key.clone();
    let read_plan = read_plan.clone();
    let bound = b.clone();
    // The reader thread also transforms and encodes, so all of that overlaps with the loader's
    // round trips to PostgreSQL.
    let reader = std::thread::Builder::new()
        .name(format!("read-{name}"))
        .spawn(move || -> Result<source::resilient::ReadStats, SourceError> {
            let names = bound.source_names();
            source::resilient::read_all(
                &mut || source::open(&url),
                &bound.spec,
                after,
                batch_size,
                &read_plan,
                &mut |rows| tx.blocking_send(prepare(&bound, &names, rows)).is_ok(),
            )
        })
        .map_err(|e| PipelineError::Source {
            entity: name.clone(),
            cause: SourceError::Query {
                what: "starting the reader thread".into(),
                cause: Box::new(e),
            },
        })?;

    // Where the loader's time goes: waiting for the reader, or in PostgreSQL (logged at debug).
    let (mut waited, mut in_db) = (Duration::ZERO, Duration::ZERO);
    loop {
        // A stop request is honoured between batches only: the batch in flight is committed
        // with its progress, or (second signal, process exit) not at all.
        let wait_started = Instant::now();
        let rows = tokio::select! {
            biased;
            _ = crate::interrupt::wait() => {
                drop(rx);
                bar.finish();
                if let Mode::Load { mirror, state, .. } = &mode {
                    mirror_progress(mirror, state, None, true).map_err(|cause| PipelineError::State {
                        entity: name.clone(),
                        cause,
                    })?;
                }
                return Err(PipelineError::Interrupted {
                    entity: name,
                    cause: crate::interrupt::Interrupted {
                        signal: crate::interrupt::requested().unwrap_or(libc::SIGINT),
                    },
                });
            }
            r = rx.recv() => match r {
                Some(p) => p,
                None => break,
            },
        };
        waited += wait_started.elapsed();
        let db_started = Instant::now();
        let Prepared {
            rows,
            enc,
            enc_src,
            rejects,
            reject_src,
        } = rows;
        let n = rows.len() as u64;
        match &mut mode {
            Mode::DryRun => {
                stats.loaded += enc.rows.len() as u64;
                stats.rejected += rejects.len() as u64;
            }
            Mode::Load {
                conn,
                mirror,
                state,
                retry,
            } => {
                let mut attempt = 0;
                let committed = loop {
                    let lost =
                        match commit_batch(conn, b, &names, &rows, &enc, &enc_src, &rejects, &reject_src, &progress)
                            .await
                        {
                            Ok(p) => break p,
                            Err(e) if e.is_connection_lost() => e,
                            Err(e) => return Err(e),
                        };
                    stats.retries += 1;
                    reconnect(conn, retry, &mut attempt, &name, &lost).await?;
                    // The database decides whether the COMMIT went through before the loss.
                    let now = checkpoint::load_all(conn).await.map_err(|cause| PipelineError::State {
                        entity: name.clone(),
                        cause,
                    })?;
                    let stored_read = now.get(&name).map(|p| p.rows_read).unwrap_or(0);
                    if stored_read == progress.rows_read + n as i64 {
                        break now.get(&name).cloned().expect("it has a row");
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
                let loaded = (committed.rows_loaded - progress.rows_loaded) as u64;
                let rejected = (committed.rows_rejected - progress.rows_rejected) as u64;
                progress = committed;
                mirror_progress(mirror, state, Some(&progress), false).map_err(|cause| PipelineError::State {
                    entity: name.clone(),
                    cause,
                })?;
                stats.loaded += loaded;
                stats.rejected += rejected;
            }
        }
        in_db += db_started.elapsed();
        stats.read += n;
        read_now += n;
        if dry && stats.sample_rejects.len() < 20 {
            let room = 20 - stats.sample_rejects.len();
            stats.sample_rejects.extend(rejects.into_iter().take(room));
        }
        bar.inc(n);
    }
    let read_result = tokio::task::spawn_blocking(move || reader.join()).await;
    match read_result {
        Ok(Ok(Ok(read))) => stats.retries += read.reconnects,
        Ok(Ok(Err(cause))) => return Err(PipelineError::Source { entity: name, cause }),
        _ => {
            return Err(PipelineError::Source {
                entity: name,
                cause: SourceError::Query {
                    what: "reader thread".into(),
                    cause: "the reader thread panicked".into(),
                },
            });
        }
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
        mirror_progress(mirror, state, Some(&progress), true).map_err(|cause| PipelineError::State {
            entity: name.clone(),
            cause,
        })?;
        stats.read = progress.rows_read as u64;
        stats.loaded = progress.rows_loaded as u64;
        stats.rejected = progress.rows_rejected as u64;
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
