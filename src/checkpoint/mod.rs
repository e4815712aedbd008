//! Progress: the state table `migrate.progress` in the target is the truth, written in the same
//! transaction as each batch; `migration_checkpoint.json` mirrors it after every commit
//! (temp file, fsync, rename) for people and tools that cannot query the database.

mod signature;
pub use signature::{files_changed, mapping_fingerprint, with_files};

use crate::value::{Value, key_from_json, key_to_json};
use serde::Serialize;
use sqlx::{AssertSqlSafe, PgConnection, Row};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const SCHEMA_DDL: &str = r#"
CREATE SCHEMA IF NOT EXISTS migrate;
CREATE TABLE IF NOT EXISTS migrate.progress (
    entity          text PRIMARY KEY,
    fingerprint     text NOT NULL,
    target_table    text NOT NULL,
    last_key        jsonb,
    rows_read       bigint NOT NULL DEFAULT 0,
    rows_loaded     bigint NOT NULL DEFAULT 0,
    rows_rejected   bigint NOT NULL DEFAULT 0,
    status          text NOT NULL DEFAULT 'running',
    started_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
-- One part of an entity split into key ranges (`<entity>#<i>/<n>`): the last key of its range.
ALTER TABLE migrate.progress ADD COLUMN IF NOT EXISTS until_key jsonb;
-- Rows PostgreSQL took without an error but did not store as new rows, by its command tags: kept
-- out (a trigger returned NULL, a rule, on_conflict = skip) or merged into a row already there
-- (on_conflict = update).
ALTER TABLE migrate.progress ADD COLUMN IF NOT EXISTS rows_kept_out bigint NOT NULL DEFAULT 0;
ALTER TABLE migrate.progress ADD COLUMN IF NOT EXISTS rows_merged bigint NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS migrate.rejects (
    id              bigserial PRIMARY KEY,
    entity          text NOT NULL,
    row_key         text NOT NULL,
    key_json        jsonb NOT NULL,
    source_values   jsonb NOT NULL,
    reason          text NOT NULL,
    column_name     text,
    rejected_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS rejects_entity_idx ON migrate.rejects (entity);
CREATE TABLE IF NOT EXISTS migrate.held_constraints (
    entity          text NOT NULL,
    table_sql       text NOT NULL,
    name            text NOT NULL,
    definition      text NOT NULL,
    PRIMARY KEY (entity, name)
);
-- A held foreign key's columns and parent (JSON), for the set-wise parent check of --defer-indexes.
ALTER TABLE migrate.held_constraints ADD COLUMN IF NOT EXISTS info jsonb;
-- The COMMENT ON statements that give a re-created object its comments back.
ALTER TABLE migrate.held_constraints ADD COLUMN IF NOT EXISTS comments text;
-- `migrate sync`: per incremental entity, the watermark after the last finished pass (exact
-- text), and the pass in flight, whose window a resume reuses.
CREATE TABLE IF NOT EXISTS migrate.sync_state (
    entity          text PRIMARY KEY,
    watermark       text,
    watermark_kind  text,
    pass_id         bigint,
    pass_above      text,
    pass_upto       text,
    last_pass_at    timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE SEQUENCE IF NOT EXISTS migrate.pass_seq;
-- The audit trail of sync passes: one row per pass and entity.
CREATE TABLE IF NOT EXISTS migrate.runs (
    pass_id          bigint NOT NULL,
    entity           text NOT NULL,
    started          timestamptz NOT NULL DEFAULT now(),
    finished         timestamptz,
    rows_read        bigint NOT NULL DEFAULT 0,
    rows_upserted    bigint NOT NULL DEFAULT 0,
    rows_deleted     bigint NOT NULL DEFAULT 0,
    rows_rejected    bigint NOT NULL DEFAULT 0,
    watermark_before text,
    watermark_after  text,
    error            text,
    PRIMARY KEY (pass_id, entity)
);
"#;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("state table migrate.progress: {what}")]
    State {
        what: String,
        #[source]
        cause: sqlx::Error,
    },
    #[error(
        "writing checkpoint file {path} (the target's migrate.progress stays the truth: --resume continues from it)"
    )]
    Mirror {
        path: PathBuf,
        #[source]
        cause: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    pub entity: String,
    pub fingerprint: String,
    pub target_table: String,
    #[serde(serialize_with = "ser_key")]
    pub last_key: Option<Vec<Value>>,
    pub rows_read: i64,
    /// Rows stored as new rows, as PostgreSQL's command tags count them.
    pub rows_loaded: i64,
    pub rows_rejected: i64,
    /// Rows PostgreSQL took without an error but kept out: a trigger returned NULL, a rule,
    /// or `on_conflict = "skip"` met a key already there.
    #[serde(default)]
    pub rows_kept_out: i64,
    /// Rows that updated a row already in the target (`on_conflict = "update"`).
    #[serde(default)]
    pub rows_merged: i64,
    /// `running` or `done`.
    pub status: String,
    /// A part of a split entity: the last key of its range (`None`: to the end).
    #[serde(serialize_with = "ser_key", skip_serializing_if = "Option::is_none")]
    pub until_key: Option<Vec<Value>>,
}

fn ser_key<S: serde::Serializer>(k: &Option<Vec<Value>>, s: S) -> Result<S::Ok, S::Error> {
    match k {
        Some(k) => key_to_json(k).serialize(s),
        None => s.serialize_none(),
    }
}

impl Progress {
    pub fn new(entity: &str, fingerprint: &str, target_table: &str) -> Progress {
        Progress {
            entity: entity.to_string(),
            fingerprint: fingerprint.to_string(),
            target_table: target_table.to_string(),
            last_key: None,
            rows_read: 0,
            rows_loaded: 0,
            rows_rejected: 0,
            rows_kept_out: 0,
            rows_merged: 0,
            status: "running".into(),
            until_key: None,
        }
    }

    /// Source rows accounted for: loaded, rejected, kept out or merged by the target.
    pub fn rows_accounted(&self) -> i64 {
        self.rows_loaded + self.rows_rejected + self.rows_kept_out + self.rows_merged
    }

    pub fn is_done(&self) -> bool {
        self.status == "done"
    }

    /// The progress of a `migrate sync` pass, not of a full load.
    pub fn is_sync(&self) -> bool {
        self.entity.ends_with(SYNC_SUFFIX)
    }
}

const SYNC_SUFFIX: &str = "@sync";

/// The progress row of part `i` of `n` of a split entity (`skid#1/2`).
pub fn part_name(entity: &str, i: usize, n: usize) -> String {
    format!("{entity}#{i}/{n}")
}

/// The parts of a split entity, in order (empty when it is not split).
pub fn parts_of(state: &BTreeMap<String, Progress>, entity: &str) -> Vec<Progress> {
    let prefix = format!("{entity}#");
    let mut parts: Vec<(usize, Progress)> = state
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter_map(|(k, p)| {
            let (i, n) = k[prefix.len()..].split_once('/')?;
            n.parse::<usize>().ok()?;
            Some((i.parse().ok()?, p.clone()))
        })
        .collect();
    parts.sort_by_key(|(i, _)| *i);
    parts.into_iter().map(|(_, p)| p).collect()
}

/// Starts a split entity: its own row and each part's, in one transaction.
pub async fn start_parts(
    conn: &mut PgConnection,
    entity: &Progress,
    parts: &[Progress],
) -> Result<(), CheckpointError> {
    sqlx::raw_sql("BEGIN")
        .execute(&mut *conn)
        .await
        .map_err(state_err("splitting an entity"))?;
    save(conn, entity).await?;
    for p in parts {
        save(conn, p).await?;
    }
    sqlx::raw_sql("COMMIT")
        .execute(&mut *conn)
        .await
        .map_err(state_err("splitting an entity"))?;
    Ok(())
}

/// Ends a split entity: its row takes the parts' sums and the parts' rows go, in one transaction.
pub async fn finish_parts(conn: &mut PgConnection, entity: &Progress) -> Result<(), CheckpointError> {
    sqlx::raw_sql("BEGIN")
        .execute(&mut *conn)
        .await
        .map_err(state_err("finishing a split entity"))?;
    save(conn, entity).await?;
    sqlx::query("DELETE FROM migrate.progress WHERE left(entity, length($1) + 1) = $1 || '#'")
        .bind(&entity.entity)
        .execute(&mut *conn)
        .await
        .map_err(state_err("finishing a split entity"))?;
    sqlx::raw_sql("COMMIT")
        .execute(&mut *conn)
        .await
        .map_err(state_err("finishing a split entity"))?;
    Ok(())
}

/// The progress row of an entity's sync pass in flight (`customer@sync`).
pub fn sync_progress_name(entity: &str) -> String {
    format!("{entity}{SYNC_SUFFIX}")
}

/// Forgets the rejects of rows a sync pass reads again, in the batch's transaction: each row's
/// fate is decided anew (loaded now, or rejected again with today's reason).
pub async fn forget_rejects_of(
    conn: &mut PgConnection,
    entity: &str,
    keys: &[Vec<Value>],
) -> Result<(), CheckpointError> {
    let keys: Vec<String> = keys.iter().map(|k| key_to_json(k).to_string()).collect();
    sqlx::query("DELETE FROM migrate.rejects WHERE entity = $1 AND key_json = ANY($2::text[]::jsonb[])")
        .bind(entity)
        .bind(keys)
        .execute(conn)
        .await
        .map_err(state_err("forgetting the rejects of rows read again"))?;
    Ok(())
}

fn state_err(what: &str) -> impl FnOnce(sqlx::Error) -> CheckpointError + '_ {
    move |cause| CheckpointError::State {
        what: what.to_string(),
        cause,
    }
}

impl CheckpointError {
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, CheckpointError::State { cause, .. } if crate::sqlstate::connection_lost(cause))
    }
}

/// The advisory lock key that keeps two writing runs off one target database ("migrate" in ASCII).
pub const RUN_LOCK: i64 = 0x006d_6967_7261_7465;

/// Takes the session-level advisory lock for a writing run; PostgreSQL releases it when the
/// connection ends, so a killed run never leaves it behind. On refusal, says who holds it.
pub async fn lock_run(conn: &mut PgConnection) -> Result<Option<String>, CheckpointError> {
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(RUN_LOCK)
        .fetch_one(&mut *conn)
        .await
        .map_err(state_err("taking the run lock"))?;
    if got {
        return Ok(None);
    }
    let holder: Option<(i32, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT a.pid, a.client_addr::text, to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ')
         FROM pg_locks l JOIN pg_stat_activity a USING (pid)
         WHERE l.locktype = 'advisory' AND l.granted
           AND ((l.classid::bigint << 32) | l.objid::bigint) = $1",
    )
    .bind(RUN_LOCK)
    .fetch_optional(&mut *conn)
    .await
    .map_err(state_err("looking up the run lock"))?;
    Ok(Some(match holder {
        Some((pid, addr, since)) => format!(
            "backend pid {pid}{}{}",
            addr.map(|a| format!(" from {a}")).unwrap_or_default(),
            since.map(|s| format!(", connected since {s}")).unwrap_or_default()
        ),
        None => "another session".to_string(),
    }))
}

/// Forgets the progress and rejects of entities that start over (`--truncate`).
pub async fn forget(conn: &mut PgConnection, entities: &[String]) -> Result<(), CheckpointError> {
    sqlx::raw_sql("BEGIN")
        .execute(&mut *conn)
        .await
        .map_err(state_err("forgetting progress"))?;
    let with_sync: Vec<String> = entities
        .iter()
        .cloned()
        .chain(entities.iter().map(|e| sync_progress_name(e)))
        .collect();
    for table in ["migrate.progress", "migrate.rejects", "migrate.sync_state"] {
        sqlx::query(AssertSqlSafe(format!("DELETE FROM {table} WHERE entity = ANY($1)")))
            .bind(&with_sync)
            .execute(&mut *conn)
            .await
            .map_err(state_err("forgetting progress"))?;
    }
    // The parts of split entities.
    sqlx::query(
        "DELETE FROM migrate.progress p USING unnest($1::text[]) e(name) WHERE left(p.entity, length(e.name) + 1) = e.name || '#'",
    )
    .bind(entities)
    .execute(&mut *conn)
    .await
    .map_err(state_err("forgetting progress"))?;
    sqlx::raw_sql("COMMIT")
        .execute(&mut *conn)
        .await
        .map_err(state_err("forgetting progress"))?;
    Ok(())
}

pub async fn ensure_schema(conn: &mut PgConnection) -> Result<(), CheckpointError> {
    sqlx::raw_sql(SCHEMA_DDL)
        .execute(conn)
        .await
        .map_err(state_err("creating schema migrate"))?;
    Ok(())
}

/// Every entity's progress, or nothing when the state tables do not exist yet.
pub async fn load_all(conn: &mut PgConnection) -> Result<BTreeMap<String, Progress>, CheckpointError> {
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass('migrate.progress')::text")
        .fetch_one(&mut *conn)
        .await
        .map_err(state_err("looking for the state table"))?;
    if exists.is_none() {
        return Ok(BTreeMap::new());
    }
    let rows = sqlx::query(
        "SELECT entity, fingerprint, target_table, last_key, rows_read, rows_loaded, rows_rejected, status, until_key, rows_kept_out, rows_merged FROM migrate.progress",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(state_err("reading progress"))?;
    let mut out = BTreeMap::new();
    for r in rows {
        let key: Option<serde_json::Value> = r.get(3);
        let p = Progress {
            entity: r.get(0),
            fingerprint: r.get(1),
            target_table: r.get(2),
            last_key: key.as_ref().and_then(key_from_json),
            rows_read: r.get(4),
            rows_loaded: r.get(5),
            rows_rejected: r.get(6),
            rows_kept_out: r.get(9),
            rows_merged: r.get(10),
            status: r.get(7),
            until_key: r
                .get::<Option<serde_json::Value>, _>(8)
                .as_ref()
                .and_then(key_from_json),
        };
        out.insert(p.entity.clone(), p);
    }
    Ok(out)
}

/// Writes one entity's progress; called inside the batch's transaction.
pub async fn save(conn: &mut PgConnection, p: &Progress) -> Result<(), CheckpointError> {
    sqlx::query(
        "INSERT INTO migrate.progress AS p (entity, fingerprint, target_table, last_key, rows_read, rows_loaded, rows_rejected, status, finished_at, until_key, rows_kept_out, rows_merged)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $8 = 'done' THEN now() END, $9, $10, $11)
         ON CONFLICT (entity) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, target_table = EXCLUDED.target_table,
           last_key = EXCLUDED.last_key, rows_read = EXCLUDED.rows_read, rows_loaded = EXCLUDED.rows_loaded,
           rows_rejected = EXCLUDED.rows_rejected, status = EXCLUDED.status, updated_at = now(),
           finished_at = EXCLUDED.finished_at, until_key = EXCLUDED.until_key,
           rows_kept_out = EXCLUDED.rows_kept_out, rows_merged = EXCLUDED.rows_merged",
    )
    .bind(&p.entity)
    .bind(&p.fingerprint)
    .bind(&p.target_table)
    .bind(p.last_key.as_deref().map(key_to_json))
    .bind(p.rows_read)
    .bind(p.rows_loaded)
    .bind(p.rows_rejected)
    .bind(&p.status)
    .bind(p.until_key.as_deref().map(key_to_json))
    .bind(p.rows_kept_out)
    .bind(p.rows_merged)
    .execute(conn)
    .await
    .map_err(state_err("saving progress"))?;
    Ok(())
}

/// The statement that saves `p` with its values as literals, for the batch's owner to send with
/// its COMMIT in one round trip (one simple-query message). The checkpoint never commits a
/// batch itself.
pub fn save_sql(p: &Progress) -> String {
    let key = match p.last_key.as_deref() {
        Some(k) => format!("{}::jsonb", literal(&key_to_json(k).to_string())),
        None => "NULL".into(),
    };
    format!(
        "INSERT INTO migrate.progress AS p (entity, fingerprint, target_table, last_key, rows_read, rows_loaded, rows_rejected, status, finished_at, rows_kept_out, rows_merged)
         VALUES ({entity}, {fp}, {table}, {key}, {read}, {loaded}, {rejected}, {status}, CASE WHEN {status} = 'done' THEN now() END, {kept_out}, {merged})
         ON CONFLICT (entity) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, target_table = EXCLUDED.target_table,
           last_key = EXCLUDED.last_key, rows_read = EXCLUDED.rows_read, rows_loaded = EXCLUDED.rows_loaded,
           rows_rejected = EXCLUDED.rows_rejected, status = EXCLUDED.status, updated_at = now(),
           finished_at = EXCLUDED.finished_at, rows_kept_out = EXCLUDED.rows_kept_out, rows_merged = EXCLUDED.rows_merged",
        entity = literal(&p.entity),
        fp = literal(&p.fingerprint),
        table = literal(&p.target_table),
        read = p.rows_read,
        loaded = p.rows_loaded,
        rejected = p.rows_rejected,
        kept_out = p.rows_kept_out,
        merged = p.rows_merged,
        status = literal(&p.status),
    )
}

/// Whether the migrate schema holds the state a read-only command reports (none before the
/// first load).
pub async fn has_state(conn: &mut PgConnection) -> Result<bool, CheckpointError> {
    sqlx::query_scalar(
        "SELECT to_regclass('migrate.sync_state') IS NOT NULL AND to_regclass('migrate.runs') IS NOT NULL
            AND to_regclass('migrate.rejects') IS NOT NULL",
    )
    .fetch_one(conn)
    .await
    .map_err(state_err("looking for the state tables"))
}

/// An entity's sync passes in sum: rows upserted, rows deleted, the last pass's error.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PassTotals {
    pub upserted: i64,
    pub deleted: i64,
    pub last_error: Option<String>,
}

pub async fn pass_totals(conn: &mut PgConnection, entity: &str) -> Result<PassTotals, CheckpointError> {
    let (upserted, deleted, last_error): (Option<i64>, Option<i64>, Option<String>) = sqlx::query_as(
        "SELECT sum(rows_upserted)::bigint, sum(rows_deleted)::bigint,
                (SELECT error FROM migrate.runs r2 WHERE r2.entity = $1 ORDER BY pass_id DESC LIMIT 1)
         FROM migrate.runs WHERE entity = $1",
    )
    .bind(entity)
    .fetch_one(conn)
    .await
    .map_err(state_err("reading the sync passes"))?;
    Ok(PassTotals {
        upserted: upserted.unwrap_or(0),
        deleted: deleted.unwrap_or(0),
        last_error,
    })
}

/// The rows of `entity` in `migrate.rejects`.
pub async fn count_rejects(conn: &mut PgConnection, entity: &str) -> Result<i64, CheckpointError> {
    sqlx::query_scalar("SELECT count(*) FROM migrate.rejects WHERE entity = $1")
        .bind(entity)
        .fetch_one(conn)
        .await
        .map_err(state_err("counting rejects"))
}

/// A string literal PostgreSQL reads the same whatever `standard_conforming_strings` says.
pub fn literal(s: &str) -> String {
    format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// A rejected row as stored in `migrate.rejects`.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectRecord {
    pub key: Vec<Value>,
    pub source_values: serde_json::Value,
    pub reason: String,
    pub column: Option<String>,
}

/// One reject as a report shows it: entity, column, reason, key, source values (JSON text).
pub type RejectRow = (String, Option<String>, String, String, String);

/// The first `limit` rejects of `entities` (and of their key ranges), oldest first, and whether
/// there were more. Nothing when the migrate schema does not exist yet.
pub async fn rejects_for_report(
    conn: &mut PgConnection,
    entities: &[String],
    limit: i64,
) -> Result<(Vec<RejectRow>, bool), CheckpointError> {
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass('migrate.rejects')::text")
        .fetch_one(&mut *conn)
        .await
        .map_err(state_err("looking for migrate.rejects"))?;
    if exists.is_none() {
        return Ok((Vec::new(), false));
    }
    let rows = sqlx::query(
        "SELECT split_part(entity, '#', 1), column_name, reason, row_key, source_values::text
           FROM migrate.rejects WHERE split_part(entity, '#', 1) = ANY($1) ORDER BY id LIMIT $2",
    )
    .bind(entities)
    .bind(limit + 1)
    .fetch_all(&mut *conn)
    .await
    .map_err(state_err("reading migrate.rejects for the report"))?;
    let more = rows.len() as i64 > limit;
    let out = rows
        .iter()
        .take(limit as usize)
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    Ok((out, more))
}

/// Stores rejects; called inside the batch's transaction.
pub async fn save_rejects(
    conn: &mut PgConnection,
    entity: &str,
    rejects: &[RejectRecord],
) -> Result<(), CheckpointError> {
    if rejects.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = rejects.iter().map(|r| crate::value::key_display(&r.key)).collect();
    let key_json: Vec<String> = rejects.iter().map(|r| key_to_json(&r.key).to_string()).collect();
    let values: Vec<String> = rejects.iter().map(|r| r.source_values.to_string()).collect();
    let reasons: Vec<String> = rejects.iter().map(|r| r.reason.replace('\0', "\\0")).collect();
    let columns: Vec<Option<String>> = rejects.iter().map(|r| r.column.clone()).collect();
    sqlx::query(AssertSqlSafe(
        "INSERT INTO migrate.rejects (entity, row_key, key_json, source_values, reason, column_name)
         SELECT $1, k, kj::jsonb, v::jsonb, r, c FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) AS t(k, kj, v, r, c)",
    ))
    .bind(entity)
    .bind(keys.iter().map(|k| k.replace('\0', "\\0")).collect::<Vec<_>>())
    .bind(key_json)
    .bind(values)
    .bind(reasons)
    .bind(columns)
    .execute(conn)
    .await
    .map_err(state_err("saving rejects"))?;
    Ok(())
}

/// The JSON mirror of the state table. Writes happen on a thread of their own, in order, so
/// the loader never waits for an fsync: after every commit it hands over the new state
/// ([`Mirror::write_behind`]); if the disk is slower than the commits, the writer goes straight
/// to the newest state. [`Mirror::write`] returns once its state is on disk.
pub struct Mirror {
    path: PathBuf,
    shared: std::sync::Arc<(std::sync::Mutex<Pending>, std::sync::Condvar)>,
    writer: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Pending {
    doc: Option<String>,
    /// Number of states handed over, and of those on disk.
    queued: u64,
    written: u64,
    error: Option<std::io::Error>,
    stop: bool,
}

impl Mirror {
    pub fn new(path: &Path) -> Mirror {
        let shared = std::sync::Arc::new((std::sync::Mutex::new(Pending::default()), std::sync::Condvar::new()));
        let (p, sh) = (path.to_path_buf(), shared.clone());
        let writer = std::thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || write_loop(&p, &sh))
            .ok();
        Mirror {
            path: path.to_path_buf(),
            shared,
            writer,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, cause: std::io::Error) -> CheckpointError {
        CheckpointError::Mirror {
            path: self.path.clone(),
            cause,
        }
    }

    /// Hands the state to the writer and returns at once; an earlier write's failure is
    /// returned here.
    pub fn write_behind(&self, state: &BTreeMap<String, Progress>) -> Result<(), CheckpointError> {
        let doc = serde_json::json!({
            "note": "mirror of migrate.progress in the target database, which is the truth",
            "entities": state,
        });
        let doc = serde_json::to_string_pretty(&doc).unwrap_or_default();
        let (lock, cv) = &*self.shared;
        let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = p.error.take() {
            return Err(self.err(e));
        }
        if self.writer.is_none() {
            drop(p);
            return write_file(&self.path, &doc).map_err(|e| self.err(e));
        }
        p.doc = Some(doc);
        p.queued += 1;
        cv.notify_all();
        Ok(())
    }

    /// Waits until every state handed over is on disk.
    pub fn flush(&self) -> Result<(), CheckpointError> {
        let (lock, cv) = &*self.shared;
        let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
        while p.written < p.queued && p.error.is_none() {
            p = cv.wait(p).unwrap_or_else(|e| e.into_inner());
        }
        match p.error.take() {
            Some(e) => Err(self.err(e)),
            None => Ok(()),
        }
    }

    /// Writes the state and returns once it is on disk (temp file, fsync, rename, fsync of the
    /// directory).
    pub fn write(&self, state: &BTreeMap<String, Progress>) -> Result<(), CheckpointError> {
        self.write_behind(state)?;
        self.flush()
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        {
            let (lock, cv) = &*self.shared;
            let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
            p.stop = true;
            cv.notify_all();
        }
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// The writer thread: the newest pending state to disk, until told to stop (pending states
/// are written first).
fn write_loop(path: &Path, shared: &(std::sync::Mutex<Pending>, std::sync::Condvar)) {
    let (lock, cv) = shared;
    loop {
        let (doc, generation) = {
            let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
            while p.doc.is_none() && !p.stop {
                p = cv.wait(p).unwrap_or_else(|e| e.into_inner());
            }
            match p.doc.take() {
                Some(d) => (d, p.queued),
                None => return,
            }
        };
        let result = write_file(path, &doc);
        let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
        p.written = generation;
        if let Err(e) = result {
            p.error = Some(e);
        }
        cv.notify_all();
    }
}

/// Atomically: a temp file beside the target, fsync, rename, fsync of the directory.
fn write_file(path: &Path, doc: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "checkpoint".into())
    ));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(doc.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ranges_of_a_split_entity_are_found_in_order_and_no_others() {
        let mut state = BTreeMap::new();
        for name in [
            "skid#10/12",
            "skid#2/12",
            "skid",
            "skid#x/2",
            "skid2#1/2",
            "skid@sync",
            "skid#1/12",
        ] {
            state.insert(name.to_string(), Progress::new(name, "f", "t"));
        }
        let names: Vec<String> = parts_of(&state, "skid").into_iter().map(|p| p.entity).collect();
        assert_eq!(names, ["skid#1/12", "skid#2/12", "skid#10/12"]);
        assert_eq!(part_name("skid", 2, 12), "skid#2/12");
        assert!(parts_of(&state, "coil").is_empty());
    }

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(literal("plain"), "E'plain'");
        assert_eq!(literal(r"it's a\b"), r"E'it''s a\\b'");
        assert_eq!(literal("'; DROP TABLE x; --"), "E'''; DROP TABLE x; --'");
    }

    #[test]
    fn mirror_writes_atomically_and_readably() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mirror::new(&dir.path().join("cp.json"));
        let mut state = BTreeMap::new();
        let mut p = Progress::new("customer", "abc", "customers_customer");
        p.last_key = Some(vec![Value::Int(42)]);
        p.rows_loaded = 41;
        state.insert("customer".to_string(), p);
        m.write(&state).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(m.path()).unwrap()).unwrap();
        assert_eq!(doc["entities"]["customer"]["rows_loaded"], 41);
        assert_eq!(
            key_from_json(&doc["entities"]["customer"]["last_key"]),
            Some(vec![Value::Int(42)])
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left behind"
        );
        let bad = Mirror::new(Path::new("/nonexistent-dir/cp.json"));
        assert!(
            bad.write(&state)
                .unwrap_err()
                .to_string()
                .contains("/nonexistent-dir/cp.json")
        );
    }
}
