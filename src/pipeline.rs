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

/// Chunks in flight between the reader thread and the loader.
const QUEUE_DEPTH: usize = 4;
/// Rows per chunk (and per source query): what the reader hands over at a time, and the size
/// of a careful batch (committed on its own, every refused row isolated).
pub const CHUNK_ROWS: usize = 1000;

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

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EntityStats {
    pub entity: String,
    /// Source rows in scope (after `where`).
    pub source_rows: u64,
    /// Source rows the mapping's `where` leaves out.
    pub skipped_by_where: u64,
    pub read: u64,
    /// Rows stored as new rows, as PostgreSQL counted them.
    pub loaded: u64,
    pub rejected: u64,
    /// Rows PostgreSQL took without an error but kept out (a trigger returned NULL, a rule,
    /// `on_conflict = "skip"` met a key already there).
    pub kept_out: u64,
    /// Rows that updated a row already in the target (`on_conflict = "update"`).
    pub merged: u64,
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

/// A new session after `lost`, waiting between attempts (see [`reconnect`]).
async fn connect_again(
    retry: &Retry,
    attempt: &mut u32,
    entity: &str,
    lost: &PipelineError,
) -> Result<PgConnection, PipelineError> {
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
                tracing::info!("{entity}: reconnected to the target");
                return Ok(fresh);
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
            (Some(c), _) => c,
            (None, Some(p)) => &row[p],
            (None, None) => &Value::Null,
        };
        let fail = |reason: String, buf: &mut Vec<u8>| {
            buf.truncate(start);
            Err((fd.to.clone(), reason))
        };
        // Values the transforms leave as they are are encoded where they lie.
        let transformed = match fd.chain.apply_ref(raw) {
            Ok(t) => t,
            Err(e) => return fail(format!("transform failed: {e}"), buf),
        };
        let mut v: &Value = &transformed;
        if v.is_null()
            && let Some(d) = &fd.default
        {
            v = d;
        }
        if v.is_null() && col.not_null {
            return fail(format!("NULL in NOT NULL column {}", col.name), buf);
        }
        if let Err(e) = col.ty.encode(v, buf) {
            return fail(e, buf);
        }
    }
    Ok(())
}

/// A batch as read, and as it goes to PostgreSQL: the encoded rows (with the source row each
/// came from) and the rows that failed on the client.
struct Prepared {
    /// Source rows read.
    read: usize,
    /// The key of the last of them.
    last_key: Option<Vec<Value>>,
    /// The source rows themselves, when the chunk needs them later (careful chunks, and chunks
    /// still to be checked for their parents); otherwise empty.
    rows: Vec<Vec<Value>>,
    enc: Encoded,
    enc_src: Vec<usize>,
    rejects: Vec<RejectRecord>,
    /// The source row of each of `rejects`.
    reject_src: Vec<usize>,
    /// Loaded as a batch of its own, every refused row isolated (after a refused fast batch,
    /// and in sync passes).
    careful: bool,
}

/// `row_bytes`: about how long an encoded row is (the buffer is sized once, not grown).
fn prepare(b: &Bound, names: &[String], rows: &[Vec<Value>], row_bytes: usize) -> Prepared {
    let mut enc = Encoded {
        buf: Vec::with_capacity(rows.len() * row_bytes + 64),
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
        read: rows.len(),
        last_key: rows.last().map(|r| b.spec.key_of(r)),
        rows: Vec::new(),
        enc,
        enc_src,
        rejects,
        reject_src,
        careful: false,
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
    sink::execute(conn, sink::BEGIN_BATCH, "starting a transaction")
        .await
        .map_err(sink_err)?;
    let sink::Loaded { refused, stored } = sink::load(conn, &b.loader, enc).await.map_err(sink_err)?;
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
    count_stored(&mut next, (enc.rows.len() - refused.len()) as u64, stored);
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

/// Counts rows PostgreSQL took without an error (`taken`) by what it says it stored: new rows
/// are loaded, rows that updated one already there are merged, the rest were kept out (a
/// trigger returned NULL, a rule, `on_conflict = "skip"`).
fn count_stored(p: &mut Progress, taken: u64, stored: sink::Stored) {
    p.rows_loaded += (stored.rows - stored.merged) as i64;
    p.rows_merged += stored.merged as i64;
    p.rows_kept_out += taken.saturating_sub(stored.rows) as i64;
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

/// Where a running entity's batches come from: the reader thread (which also transforms and
/// encodes), and, when the target has foreign keys, the task that checks every chunk for its
/// parents on a session of its own before the loader sees it.
struct Feed {
    rx: tokio::sync::mpsc::Receiver<Prepared>,
    reader: std::thread::JoinHandle<Result<source::resilient::ReadStats, SourceError>>,
    checker: Option<tokio::task::JoinHandle<(PgConnection, Result<(), SinkError>)>>,
}

/// How the chunks of one entity are read and checked.
struct FeedPlan<'a> {
    url: &'a str,
    bound: &'a Bound,
    read_plan: &'a source::resilient::ReadPlan,
    chunk_rows: usize,
    parents: Option<&'a sink::ParentCheck>,
}

impl FeedPlan<'_> {
    /// Starts reading after `after`; the first `careful` rows come as careful chunks (each
    /// committed on its own, with every refused row isolated), the rest as fast ones.
    fn start(
        &self,
        after: Option<Vec<Value>>,
        careful: u64,
        checker_conn: Option<PgConnection>,
    ) -> Result<Feed, PipelineError> {
        let name = self.bound.entity.name.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<Prepared>(QUEUE_DEPTH);
        let (reader_tx, checker, recycled) = match (self.parents, checker_conn) {
            (Some(check), Some(mut conn)) => {
                let (ctx, mut crx) = tokio::sync::mpsc::channel::<Prepared>(2);
                // Rows the checker is done with go back to the reader to be refilled.
                let (back, recycled) = tokio::sync::mpsc::channel::<Vec<Vec<Value>>>(QUEUE_DEPTH);
                let mut check = check.clone();
                let bound = self.bound.clone();
                let handle = tokio::spawn(async move {
                    let names = bound.source_names();
                    let mut fresh = true;
                    while let Some(mut p) = crx.recv().await {
                        match check.check(&mut conn, &p.enc, &mut fresh).await {
                            Ok(orphans) => drop_orphans(&bound, &names, &mut p, orphans),
                            Err(e) => return (conn, Err(e)),
                        }
                        if !p.careful {
                            let _ = back.try_send(std::mem::take(&mut p.rows));
                        }
                        if tx.send(p).await.is_err() {
                            break;
                        }
                    }
                    (conn, Ok(()))
                });
                (ctx, Some(handle), Some(recycled))
            }
            _ => (tx, None, None),
        };
        let keep_rows = checker.is_some();
        let url = self.url.to_string();
        let read_plan = self.read_plan.clone();
        let bound = self.bound.clone();
        let chunk_rows = self.chunk_rows;
        let reader = std::thread::Builder::new()
            .name(format!("read-{name}"))
            .spawn(move || -> Result<source::resilient::ReadStats, SourceError> {
                let names = bound.source_names();
                let mut careful_left = careful;
                let mut recycled = recycled;
                let mut row_bytes = 128;
                let read = source::resilient::read_all(
                    &mut || source::open(&url),
                    &bound.spec,
                    after,
                    chunk_rows,
                    &read_plan,
                    &mut |batch| {
                        let n = batch.len() as u64;
                        let mut p = prepare(&bound, &names, batch, row_bytes);
                        // The next chunk's buffer fits rows like these, with some room.
                        if let Some(per_row) = p.enc.buf.len().checked_div(p.read) {
                            row_bytes = per_row * 9 / 8 + 8;
                        }
                        p.careful = careful_left > 0;
                        careful_left = careful_left.saturating_sub(n);
                        if p.careful || keep_rows {
                            // The rows go along; the source refills rows the checker is done with.
                            let spare = recycled.as_mut().and_then(|r| r.try_recv().ok()).unwrap_or_default();
                            p.rows = std::mem::replace(batch, spare);
                        }
                        reader_tx.blocking_send(p).is_ok()
                    },
                );
                release_free_memory();
                read
            })
            .map_err(|e| PipelineError::Source {
                entity: name.clone(),
                cause: SourceError::Query {
                    what: "starting the reader thread".into(),
                    cause: Box::new(e),
                },
            })?;
        Ok(Feed { rx, reader, checker })
    }
}

/// Hands the memory freed by a finished reader back to the system. glibc keeps a thread's
/// arena after the thread ends; without this, a run's RSS grew with each entity it loaded
/// (20 MB to 25 MB over 4 M rows), where memory must stay flat whatever the table size.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of glibc's arenas to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Rows without a parent leave the encoded batch and become rejects.
fn drop_orphans(b: &Bound, names: &[String], p: &mut Prepared, orphans: Vec<sink::Refused>) {
    if orphans.is_empty() {
        return;
    }
    for o in &orphans {
        let src = p.enc_src[o.row];
        p.rejects
            .push(reject(b, names, &p.rows[src], o.column.clone(), o.reason.clone()));
        p.reject_src.push(src);
    }
    let mut gone = orphans.iter().map(|o| o.row).peekable();
    let mut keep_rows = Vec::with_capacity(p.enc.rows.len() - orphans.len());
    let mut keep_src = Vec::with_capacity(keep_rows.capacity());
    for (i, (r, src)) in p.enc.rows.drain(..).zip(p.enc_src.drain(..)).enumerate() {
        if gone.peek() == Some(&i) {
            gone.next();
        } else {
            keep_rows.push(r);
            keep_src.push(src);
        }
    }
    p.enc.rows = keep_rows;
    p.enc_src = keep_src;
}

impl Feed {
    /// Stops the reader and the checker (the chunks still queued are dropped; they are read
    /// again from the last committed key) and gives the checker's session back.
    async fn stop(self) -> (Option<PgConnection>, u64) {
        let Feed { rx, reader, checker } = self;
        drop(rx);
        // A checker that failed may have left its session mid-transaction: not reused.
        let conn = match checker {
            Some(h) => h.await.ok().and_then(|(c, r)| r.ok().map(|()| c)),
            None => None,
        };
        let reconnects = tokio::task::spawn_blocking(move || reader.join())
            .await
            .ok()
            .and_then(|r| r.ok())
            .and_then(|r| r.ok())
            .map_or(0, |s| s.reconnects);
        (conn, reconnects)
    }

    /// After the last chunk: how the read went. A checker that lost its session gives it
    /// back as `Err((lost, None))`, so the feed can start again on a new one.
    async fn finish(self, entity: &str) -> Result<u64, (PipelineError, Option<u64>)> {
        let Feed { rx, reader, checker } = self;
        drop(rx);
        let read = tokio::task::spawn_blocking(move || reader.join()).await;
        let reconnects = match read {
            Ok(Ok(Ok(read))) => read.reconnects,
            Ok(Ok(Err(cause))) => {
                return Err((
                    PipelineError::Source {
                        entity: entity.to_string(),
                        cause,
                    },
                    None,
                ));
            }
            _ => {
                return Err((
                    PipelineError::Source {
                        entity: entity.to_string(),
                        cause: SourceError::Query {
                            what: "reader thread".into(),
                            cause: "the reader thread panicked".into(),
                        },
                    },
                    None,
                ));
            }
        };
        if let Some(h) = checker {
            match h.await {
                Ok((_, Ok(()))) => {}
                Ok((_, Err(cause))) => {
                    return Err((
                        PipelineError::Sink {
                            entity: entity.to_string(),
                            cause,
                        },
                        Some(reconnects),
                    ));
                }
                Err(_) => {
                    return Err((
                        PipelineError::Source {
                            entity: entity.to_string(),
                            cause: SourceError::Query {
                                what: "parent check".into(),
                                cause: "the parent check task stopped unexpectedly".into(),
                            },
                        },
                        None,
                    ));
                }
            }
        }
        Ok(reconnects)
    }
}

/// A fast batch ends at this many bytes of COPY data even before its row count (large LOBs),
const BATCH_BYTES: usize = 64 << 20;
/// ... or at this many rejects, which wait in memory for the batch's commit.
const BATCH_REJECTS: usize = 10_000;

/// How a fast batch ended.
struct FastDone {
    committed: Progress,
    /// A careful chunk that came after the batch: the next one to load.
    held: Option<Prepared>,
    /// A stop was requested while the batch loaded; it was committed.
    stop: bool,
}

/// Why a fast batch did not commit.
enum FastFail {
    /// PostgreSQL refused some row: the batch's rows are read again as careful chunks.
    Refused {
        rows: u64,
    },
    /// The connection went away; the batch may or may not have committed.
    Lost {
        rows: u64,
        error: PipelineError,
    },
    Other(PipelineError),
}

/// Many chunks in one transaction with one COPY, streamed as they come: the fast path. The
/// chunks are not kept, so the batch's memory is one chunk's; if PostgreSQL refuses a row,
/// the caller reads the batch again as careful chunks.
#[allow(clippy::too_many_arguments)]
async fn fast_batch(
    conn: &mut PgConnection,
    b: &Bound,
    first: Prepared,
    rx: &mut tokio::sync::mpsc::Receiver<Prepared>,
    before: &Progress,
    batch_rows: usize,
    bar: &EntityBar,
) -> Result<FastDone, FastFail> {
    let name = &b.entity.name;
    let mut rows = 0u64;
    // A failure after `rows` rows of the batch, by whether the connection went away.
    let fail = |rows: u64, error: PipelineError| {
        if error.is_connection_lost() {
            FastFail::Lost { rows, error }
        } else {
            FastFail::Other(error)
        }
    };
    let begin = match b.loader.prepare_sql() {
        Some(prepare) => format!("{}; {prepare}", sink::BEGIN_BATCH),
        None => sink::BEGIN_BATCH.to_string(),
    };
    sink::execute(conn, &begin, "starting a transaction")
        .await
        .map_err(|e| fail(0, e.for_entity(name)))?;
    let mut next = before.clone();
    let mut rejects: Vec<RejectRecord> = Vec::new();
    let (mut bytes, mut held, mut ended, mut stop) = (0usize, None, false, false);
    // Rows sent, and what PostgreSQL says it stored of them.
    let (mut sent, mut stored) = (0u64, sink::Stored::default());
    let result: Result<(), sqlx::Error> = async {
        let mut copy = conn.copy_in_raw(b.loader.copy_sql()).await?;
        let sent: Result<(), sqlx::Error> = async {
            copy.send(sink::COPY_HEADER).await?;
            let mut chunk = Some(first);
            while let Some(p) = chunk.take() {
                let n = p.read as u64;
                rows += n;
                next.rows_read += n as i64;
                sent += p.enc.rows.len() as u64;
                next.rows_rejected += p.rejects.len() as i64;
                next.last_key = p.last_key;
                rejects.extend(p.rejects);
                let data = p.enc.into_copy_data();
                bytes += data.len();
                if !data.is_empty() {
                    copy.send(data).await?;
                }
                bar.inc(n);
                if rows >= batch_rows as u64 || bytes >= BATCH_BYTES || rejects.len() >= BATCH_REJECTS {
                    break;
                }
                tokio::select! {
                    biased;
                    _ = crate::interrupt::wait() => stop = true,
                    r = rx.recv() => match r {
                        Some(p) if p.careful => held = Some(p),
                        Some(p) => chunk = Some(p),
                        None => ended = true,
                    },
                }
            }
            copy.send(&(-1i16).to_be_bytes()[..]).await?;
            Ok(())
        }
        .await;
        if let Err(e) = sent {
            let _ = copy.abort("send failed").await;
            return Err(e);
        }
        let copied = copy.finish().await?;
        stored = sink::stored_after_copy(conn, &b.loader, copied).await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        if sink::is_data_error(&e) {
            let _ = sink::execute(conn, "ROLLBACK", "rolling back a refused batch").await;
            return Err(FastFail::Refused { rows });
        }
        let cause = SinkError::Query {
            what: format!("loading into {}", b.loader.table.display()),
            cause: e,
        };
        return Err(fail(rows, cause.for_entity(name)));
    }
    count_stored(&mut next, sent, stored);
    checkpoint::save_rejects(conn, name, &rejects)
        .await
        .map_err(|c| fail(rows, c.for_entity(name)))?;
    checkpoint::save_and_commit(conn, &next)
        .await
        .map_err(|c| fail(rows, c.for_entity(name)))?;
    Ok(FastDone {
        committed: next,
        held,
        stop,
    })
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
