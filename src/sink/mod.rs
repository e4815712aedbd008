//! The PostgreSQL sink: reads the exact target column types from the catalog, loads encoded
//! batches with binary COPY (about 1 MiB per send, never per row), upserts through a staging
//! table for `on_conflict = skip|update`, and finds the rows PostgreSQL refuses by splitting
//! the batch under savepoints until each bad row stands alone (as pgloader does).
//! This module and `plan::quote_ident` are the only places that build SQL around identifiers.

pub mod locks;
pub mod pgtype;

use crate::config::OnConflict;
use crate::plan::{TargetTable, quote_ident};
use pgtype::PgType;
use sqlx::postgres::{PgConnectOptions, PgDatabaseError};
use sqlx::{AssertSqlSafe, ConnectOptions, PgConnection, Row};
use std::ops::Range;
use std::str::FromStr;

const SEND_BYTES: usize = 1 << 20;
/// How every batch's transaction begins: deferred constraints are checked at each row, so a
/// row that breaks one is found and rejected like any other, instead of failing the COMMIT.
pub const BEGIN_BATCH: &str = "BEGIN; SET CONSTRAINTS ALL IMMEDIATE";
/// The binary COPY header: signature, flags, no extension.
pub const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot connect to target {url}")]
    Connect {
        url: String,
        #[source]
        cause: sqlx::Error,
    },
    #[error("target {what}")]
    Query {
        what: String,
        #[source]
        cause: sqlx::Error,
    },
    /// The target's state forbids the step; the text says why and what to do.
    #[error("{0}")]
    Refused(String),
}

impl SinkError {
    /// True when the connection itself is gone (server restarted, backend terminated, network
    /// cut): the work can be retried on a new connection.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            SinkError::Connect { .. } => true,
            SinkError::Query { cause, .. } => connection_lost(cause),
            SinkError::Refused(_) => false,
        }
    }
}

/// sqlx's errors that mean "the connection is gone", not "the statement was wrong".
pub fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // 08xxx connection exceptions; 57P01-03 admin shutdown, crash shutdown, cannot connect now.
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

fn q_err(what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> SinkError {
    let what = what.into();
    move |cause| SinkError::Query { what, cause }
}

pub async fn connect(url: &str) -> Result<PgConnection, SinkError> {
    let shown = crate::telemetry::redact_url(url);
    let opts = PgConnectOptions::from_str(url)
        .map_err(|cause| SinkError::Connect {
            url: shown.clone(),
            cause,
        })?
        .application_name("migrate")
        // Each batch still commits atomically with its progress row. Not waiting for the WAL
        // flush means a crash of the PostgreSQL *server* can forget the last few hundred ms of
        // commits, batches and progress together, so --resume loads them again.
        .options([("synchronous_commit", "off")])
        .log_statements(tracing::log::LevelFilter::Trace);
    // A statement waits for another session's lock at most `--lock-wait` (locks.rs).
    let opts = match locks::lock_timeout_setting() {
        Some(t) => opts.options([("lock_timeout", t.as_str())]),
        None => opts,
    };
    let conn = opts
        .connect()
        .await
        .map_err(|cause| SinkError::Connect { url: shown, cause })?;
    set_tcp_nodelay();
    Ok(conn)
}

/// sqlx leaves Nagle's algorithm on. A COPY writes its data and then CopyDone back to back, so
/// each COPY would wait for the server's delayed ACK (about 40 ms on Linux): measured here as
/// 60 rows/s when batches split. sqlx has no hook for the socket, so after connecting, every
/// TCP socket of this process (they are all database connections) gets TCP_NODELAY.
#[cfg(target_os = "linux")]
fn set_tcp_nodelay() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in dir.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:"));
        if is_socket {
            let one: libc::c_int = 1;
            // SAFETY: setsockopt only reads `one` for the given length; on a descriptor that is
            // not a TCP socket it fails with an error code, which is ignored.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn set_tcp_nodelay() {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgColumn {
    pub name: String,
    pub ty: PgType,
    /// As PostgreSQL prints it: `numeric(12,2)`.
    pub formatted: String,
    pub not_null: bool,
    /// Has a default, or is an identity or generated column.
    pub has_default: bool,
    pub generated: bool,
}

/// The table's columns in order, or `None` when it does not exist.
pub async fn table_columns(conn: &mut PgConnection, table: &TargetTable) -> Result<Option<Vec<PgColumn>>, SinkError> {
    let oid: Option<i64> = sqlx::query_scalar("SELECT to_regclass($1)::oid::bigint")
        .bind(table.sql())
        .fetch_one(&mut *conn)
        .await
        .map_err(q_err(format!("looking up table {}", table.display())))?;
    let Some(oid) = oid else { return Ok(None) };
    let rows = sqlx::query(
        "SELECT a.attname::text,
                CASE WHEN t.typtype = 'd' THEN bt.typname ELSE t.typname END::text,
                CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END,
                format_type(a.atttypid, a.atttypmod),
                a.attnotnull OR (t.typtype = 'd' AND t.typnotnull),
                a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '',
                a.attgenerated <> ''
         FROM pg_attribute a
         JOIN pg_type t ON t.oid = a.atttypid
         LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
         WHERE a.attrelid = $1::bigint::oid AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY a.attnum",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await
    .map_err(q_err(format!("reading columns of {}", table.display())))?;
    Ok(Some(
        rows.into_iter()
            .map(|r| {
                let typname: String = r.get(1);
                let formatted: String = r.get(3);
                PgColumn {
                    name: r.get(0),
                    ty: PgType::from_catalog(&typname, r.get(2), &formatted),
                    formatted,
                    not_null: r.get(4),
                    has_default: r.get(5),
                    generated: r.get(6),
                }
            })
            .collect(),
    ))
}

/// Column sets of the primary key and unique constraints/indexes (what ON CONFLICT can use).
pub async fn unique_keys(conn: &mut PgConnection, table: &TargetTable) -> Result<Vec<Vec<String>>, SinkError> {
    let rows = sqlx::query(
        "SELECT array_agg(a.attname::text ORDER BY k.ord)
         FROM pg_index i
         CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL
         GROUP BY i.indexrelid",
    )
    .bind(table.sql())
    .fetch_all(&mut *conn)
    .await
    .map_err(q_err(format!("reading unique keys of {}", table.display())))?;
    Ok(rows.into_iter().map(|r| r.get::<Vec<String>, _>(0)).collect())
}

pub async fn count_rows(conn: &mut PgConnection, table: &TargetTable) -> Result<i64, SinkError> {
    sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {}", table.sql())))
        .fetch_one(conn)
        .await
        .map_err(q_err(format!("counting rows of {}", table.display())))
}

/// A sequence owned by a column of a loaded table (serial or identity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedSequence {
    pub column: String,
    /// Qualified and quoted as PostgreSQL prints it.
    pub sequence: String,
    /// What `nextval` would return now.
    pub next: i64,
    /// The column's maximum, NULL for an empty table.
    pub max: Option<i64>,
    pub ascending: bool,
}

impl OwnedSequence {
    /// True when the application's next insert would collide with a loaded key.
    pub fn is_behind(&self) -> bool {
        self.ascending && self.max.is_some_and(|m| m >= self.next)
    }
}

/// The sequences owned by the table's columns, with where they stand against the loaded data.
pub async fn owned_sequences(conn: &mut PgConnection, table: &TargetTable) -> Result<Vec<OwnedSequence>, SinkError> {
    let owned: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT a.attname::text, pg_get_serial_sequence($1, a.attname)::text, s.seqincrement > 0
         FROM pg_attribute a
         JOIN pg_sequence s ON s.seqrelid = pg_get_serial_sequence($1, a.attname)::regclass
         WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
           AND pg_get_serial_sequence($1, a.attname) IS NOT NULL
         ORDER BY a.attnum",
    )
    .bind(table.sql())
    .fetch_all(&mut *conn)
    .await
    .map_err(q_err(format!("finding the sequences of {}", table.display())))?;
    let mut out = Vec::with_capacity(owned.len());
    for (column, sequence, ascending) in owned {
        // `sequence` comes from the catalog already quoted; the column is quoted here.
        let (next, max): (i64, Option<i64>) = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT (SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM {sequence}),
                    (SELECT max({})::bigint FROM {})",
            crate::plan::quote_ident(&column),
            table.sql()
        )))
        .fetch_one(&mut *conn)
        .await
        .map_err(q_err(format!("reading sequence {sequence}")))?;
        out.push(OwnedSequence {
            column,
            sequence,
            next,
            max,
            ascending,
        });
    }
    Ok(out)
}

/// Moves every sequence owned by the table past the loaded maximum, so the application's next
/// insert does not hit a duplicate key. Never moves one backwards. Returns (sequence, new value).
pub async fn advance_sequences(conn: &mut PgConnection, table: &TargetTable) -> Result<Vec<(String, i64)>, SinkError> {
    let mut moved = Vec::new();
    for s in owned_sequences(conn, table).await? {
        if let (true, Some(max)) = (s.is_behind(), s.max) {
            sqlx::query("SELECT setval($1::regclass, $2)")
                .bind(&s.sequence)
                .bind(max)
                .execute(&mut *conn)
                .await
                .map_err(q_err(format!("setting sequence {}", s.sequence)))?;
            moved.push((s.sequence, max));
        }
    }
    Ok(moved)
}

/// Whether the table holds any row (cheaper than a count on a big table).
pub async fn has_rows(conn: &mut PgConnection, table: &TargetTable) -> Result<bool, SinkError> {
    sqlx::query_scalar(AssertSqlSafe(format!("SELECT EXISTS (SELECT 1 FROM {})", table.sql())))
        .fetch_one(conn)
        .await
        .map_err(q_err(format!("looking for rows in {}", table.display())))
}

/// Empties the tables in one statement, children first. A table outside the list that references
/// one of them makes PostgreSQL refuse, which is what we want: nothing unselected is emptied.
pub async fn truncate(conn: &mut PgConnection, tables: &[&TargetTable]) -> Result<(), SinkError> {
    let list: Vec<String> = tables.iter().map(|t| t.sql()).collect();
    // PostgreSQL refuses to empty a table another table's foreign key references: name them.
    let blockers: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT f.conrelid::regclass::text, f.conname::text, f.confrelid::regclass::text FROM pg_constraint f
         WHERE f.contype = 'f' AND f.confrelid = ANY (SELECT to_regclass(t) FROM unnest($1::text[]) t)
           AND NOT f.conrelid = ANY (SELECT to_regclass(t) FROM unnest($1::text[]) t)
         ORDER BY 1, 2",
    )
    .bind(&list)
    .fetch_all(&mut *conn)
    .await
    .map_err(q_err("looking for tables that reference the tables to empty"))?;
    if !blockers.is_empty() {
        let shown: Vec<String> = blockers
            .iter()
            .map(|(child, fk, parent)| format!("table {child} (foreign key {fk}) references {parent}"))
            .collect();
        return Err(SinkError::Refused(format!(
            "--truncate cannot empty those tables: {}, and is not among the tables being emptied. Add its entity to the run (--entity), empty it yourself first, or drop that foreign key",
            shown.join("; ")
        )));
    }
    execute(
        conn,
        &format!("TRUNCATE {}", list.join(", ")),
        "emptying the target tables (--truncate); a table that is not being migrated references one of them: migrate its entity too, or empty it yourself",
    )
    .await
}

/// Undoes what was done since the savepoint `name` and forgets it.
async fn undo_savepoint(conn: &mut PgConnection, name: &str) -> Result<(), SinkError> {
    execute(
        conn,
        &format!("ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}"),
        "rolling back to a savepoint",
    )
    .await
}

pub async fn execute(conn: &mut PgConnection, sql: &str, what: &str) -> Result<(), SinkError> {
    sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(conn)
        .await
        .map_err(q_err(what))?;
    Ok(())
}

/// What [`hold_for_load`] took off a table for its load.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Held {
    pub self_references: usize,
    pub foreign_keys: usize,
    pub indexes: usize,
    /// Primary and unique keys, built after the load (see [`hold_for_load`]).
    pub keys: usize,
}

/// Takes constraints and indexes off `table` for its load, each recorded in
/// `migrate.held_constraints` in the same transaction as its drop, so no crash can lose one:
/// - always the foreign keys that reference the table itself (a manager_id, a parent_id), whose
///   parent rows may come later in key order;
/// - with `defer` (`--defer-indexes`), also the foreign keys to other tables (rows are then
///   checked for their parents set-wise per batch, see [`load`]) and the secondary indexes that
///   are neither unique nor behind a constraint;
/// - with `defer` and `plain_key` (the target columns that take the source key unchanged, given
///   when `on_conflict` is `error`), also the primary and unique keys that contain all of those
///   columns, when the table is empty: the source key is unique, so these keys cannot be broken
///   by the load, and building one after it (a sort) costs PostgreSQL far less than a B-tree
///   insert per row. The foreign keys of other tables that reference the table go with them
///   (and come back after them), when those tables are empty and none is in `busy` (the tables
///   loading at the same time); otherwise the keys stay. Should the source key
///   not be unique after all, [`restore_held`] moves the later duplicates to the rejects.
///   Other unique keys stay: they keep the load honest (their duplicates become rejects with
///   their source values).
///
/// Returns what was held now (on a resume it is already held).
pub async fn hold_for_load(
    conn: &mut PgConnection,
    table: &TargetTable,
    entity: &str,
    defer: bool,
    plain_key: Option<&[String]>,
    busy: &[String],
) -> Result<Held, SinkError> {
    let what = format!("holding foreign keys and indexes of {}", table.display());
    let mut held = Held::default();
    let fks = foreign_keys(conn, table).await?;
    for f in fks.iter().filter(|f| f.self_ref || defer) {
        let held_row = Held1 {
            table_sql: &table.sql(),
            name: &f.name,
            definition: &f.definition,
            info: Some(serde_json::to_value(f).unwrap_or_default()),
        };
        let drop = format!("ALTER TABLE {} DROP CONSTRAINT {}", table.sql(), quote_ident(&f.name));
        hold_one(conn, entity, held_row, &drop, "dropping a foreign key").await?;
        if f.self_ref {
            held.self_references += 1;
            tracing::info!(
                "{entity}: foreign key {} references its own table; it is held during the load and restored after",
                f.name
            );
        } else {
            held.foreign_keys += 1;
        }
    }
    if !defer {
        return Ok(held);
    }
    if let Some(key) = plain_key.filter(|k| !k.is_empty()) {
        held.keys = hold_keys(conn, table, entity, key, busy).await?;
    }
    let indexes: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT c.relname::text, format('%I.%I', n.nspname, c.relname), pg_get_indexdef(i.indexrelid)
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE i.indrelid = to_regclass($1) AND NOT i.indisunique AND NOT i.indisprimary
           AND NOT i.indisexclusion AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
         ORDER BY 1",
    )
    .bind(table.sql())
    .fetch_all(&mut *conn)
    .await
    .map_err(q_err(what.clone()))?;
    for (name, qualified, definition) in indexes {
        let held_row = Held1 {
            table_sql: &table.sql(),
            name: &format!("{INDEX_PREFIX}{name}"),
            definition: &definition,
            info: None,
        };
        hold_one(
            conn,
            entity,
            held_row,
            &format!("DROP INDEX {qualified}"),
            "dropping an index",
        )
        .await?;
        held.indexes += 1;
    }
    if held.foreign_keys + held.indexes + held.keys > 0 {
        tracing::info!(
            "{entity}: {} foreign key(s), {} index(es) and {} primary/unique key(s) held for the load (--defer-indexes){}",
            held.foreign_keys,
            held.indexes,
            held.keys,
            if held.foreign_keys > 0 {
                "; rows are checked for their parents per batch"
            } else {
                ""
            }
        );
    }
    Ok(held)
}

/// Drops the primary and unique keys of the empty `table` that contain every column of `key`,
/// with the foreign keys of other (empty, not `busy`) tables that reference `table`, each
/// recorded in `migrate.held_constraints` in the same transaction. See [`hold_for_load`].
async fn hold_keys(
    conn: &mut PgConnection,
    table: &TargetTable,
    entity: &str,
    key: &[String],
    busy: &[String],
) -> Result<usize, SinkError> {
    let what = format!("holding the keys of {}", table.display());
    let empty = |t: &str| format!("SELECT NOT EXISTS (SELECT 1 FROM {t})");
    let is_empty: bool = sqlx::query_scalar(AssertSqlSafe(empty(&table.sql())))
        .fetch_one(&mut *conn)
        .await
        .map_err(q_err(what.clone()))?;
    if !is_empty {
        return Ok(0);
    }
    let keys: Vec<(String, Vec<String>, String)> = sqlx::query_as(
        "SELECT k.conname::text,
                (SELECT array_agg(a.attname::text ORDER BY n.ord) FROM unnest(k.conkey) WITH ORDINALITY n(num, ord)
                   JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = n.num),
                pg_get_constraintdef(k.oid)
         FROM pg_constraint k
         WHERE k.conrelid = to_regclass($1) AND k.contype IN ('p', 'u')
         ORDER BY 1",
    )
    .bind(table.sql())
    .fetch_all(&mut *conn)
    .await
    .map_err(q_err(what.clone()))?;
    let keys: Vec<_> = keys
        .into_iter()
        .filter(|(_, columns, _)| key.iter().all(|k| columns.contains(k)))
        .collect();
    if keys.is_empty() {
        return Ok(0);
    }
    // The other tables' foreign keys to this one: as `foreign_keys` gives them, from each child.
    let children: Vec<(String, String, String, Vec<String>)> = sqlx::query_as(
        "SELECT format('%I.%I', n.nspname, c.relname), n.nspname::text, c.relname::text, array_agg(f.conname::text)
         FROM pg_constraint f JOIN pg_class c ON c.oid = f.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE f.contype = 'f' AND f.confrelid = to_regclass($1) AND f.conrelid <> f.confrelid
         GROUP BY 1, 2, 3 ORDER BY 1",
    )
    .bind(table.sql())
    .fetch_all(&mut *conn)
    .await
    .map_err(q_err(what.clone()))?;
    let mut child_fks = Vec::new();
    for (child_sql, schema, name, constraints) in &children {
        if busy.iter().any(|b| b == child_sql) {
            return Ok(0);
        }
        let child_empty: bool = sqlx::query_scalar(AssertSqlSafe(empty(child_sql)))
            .fetch_one(&mut *conn)
            .await
            .map_err(q_err(what.clone()))?;
        if !child_empty {
            return Ok(0);
        }
        let child = TargetTable {
            schema: Some(schema.clone()),
            name: name.clone(),
        };
        for f in foreign_keys(conn, &child).await? {
            if constraints.contains(&f.name) {
                child_fks.push((child_sql.clone(), f));
            }
        }
    }
    for (child_sql, f) in &child_fks {
        let held_row = Held1 {
            table_sql: child_sql,
            name: &format!("{CHILD_PREFIX}{child_sql} {}", f.name),
            definition: &f.definition,
            info: Some(serde_json::to_value(f).unwrap_or_default()),
        };
        let drop = format!("ALTER TABLE {child_sql} DROP CONSTRAINT {}", quote_ident(&f.name));
        let why = "dropping a foreign key that references a key built after the load";
        hold_one(conn, entity, held_row, &drop, why).await?;
    }
    let mut held = 0;
    for (name, columns, definition) in keys {
        let held_row = Held1 {
            table_sql: &table.sql(),
            name: &format!("{KEY_PREFIX}{name}"),
            definition: &definition,
            info: Some(serde_json::json!({ "key_columns": columns })),
        };
        let drop = format!("ALTER TABLE {} DROP CONSTRAINT {}", table.sql(), quote_ident(&name));
        match hold_one(conn, entity, held_row, &drop, "dropping a primary or unique key").await {
            Ok(()) => held += 1,
            // Something else depends on it: the key stays, and is built as the load goes.
            Err(e) if !e.is_connection_lost() => tracing::info!(
                "{entity}: key {name} stays in place for the load: {:#}",
                anyhow::Error::from(e)
            ),
            Err(e) => return Err(e),
        }
    }
    if !child_fks.is_empty() {
        tracing::info!(
            "{entity}: {} foreign key(s) of other tables that reference {} held with its key(s)",
            child_fks.len(),
            table.display()
        );
    }
    Ok(held)
}

/// One row of `migrate.held_constraints`.
struct Held1<'a> {
    table_sql: &'a str,
    name: &'a str,
    definition: &'a str,
    info: Option<serde_json::Value>,
}

/// The COMMENT ON statements that give a held object its comments back once it is
/// re-created (`$1`: the table, `$2`: the constraint's name, or the index as `schema.name`): a
/// constraint's own, and for a primary or unique key its index's too.
const COMMENTS_OF_CONSTRAINT: &str = "SELECT string_agg(stmt, '; ') FROM (
    SELECT format('COMMENT ON CONSTRAINT %I ON %s IS %L', k.conname, $1, obj_description(k.oid, 'pg_constraint')) AS stmt
      FROM pg_constraint k WHERE k.conrelid = to_regclass($1) AND k.conname = $2
       AND obj_description(k.oid, 'pg_constraint') IS NOT NULL
    UNION ALL
    SELECT format('COMMENT ON INDEX %s IS %L', k.conindid::regclass, obj_description(k.conindid, 'pg_class'))
      FROM pg_constraint k WHERE k.conrelid = to_regclass($1) AND k.conname = $2 AND k.contype IN ('p', 'u')
       AND obj_description(k.conindid, 'pg_class') IS NOT NULL) s";
const COMMENTS_OF_INDEX: &str =
    "SELECT format('COMMENT ON INDEX %s IS %L', to_regclass($2), obj_description(to_regclass($2), 'pg_class'))
    WHERE $1::text IS NOT NULL AND obj_description(to_regclass($2), 'pg_class') IS NOT NULL";

/// Records `row` and runs `drop` in one transaction, so that no crash can lose what was
/// dropped. A drop PostgreSQL refuses is rolled back, record and all.
async fn hold_one(
    conn: &mut PgConnection,
    entity: &str,
    row: Held1<'_>,
    drop: &str,
    what: &str,
) -> Result<(), SinkError> {
    execute(conn, "BEGIN", "starting a transaction").await?;
    // The object's comments go with its record, to come back with it.
    let (comments_sql, object) = match row.name.strip_prefix(INDEX_PREFIX) {
        Some(_) => (COMMENTS_OF_INDEX, drop.trim_start_matches("DROP INDEX ").to_string()),
        None => (
            COMMENTS_OF_CONSTRAINT,
            row.info
                .as_ref()
                .and_then(|i| i["name"].as_str())
                .unwrap_or_else(|| row.name.strip_prefix(KEY_PREFIX).unwrap_or(row.name))
                .to_string(),
        ),
    };
    let comments: Result<Option<String>, _> = sqlx::query_scalar(comments_sql)
        .bind(row.table_sql)
        .bind(&object)
        .fetch_optional(&mut *conn)
        .await
        .map(Option::flatten);
    let recorded = match comments {
        Ok(comments) => sqlx::query("INSERT INTO migrate.held_constraints (entity, table_sql, name, definition, info, comments) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING")
            .bind(entity)
            .bind(row.table_sql)
            .bind(row.name)
            .bind(row.definition)
            .bind(row.info)
            .bind(comments)
            .execute(&mut *conn)
            .await,
        Err(e) => Err(e),
    };
    let done = match recorded {
        Ok(_) => execute(conn, drop, what).await,
        Err(e) => Err(q_err(format!("recording {} of {entity}", row.name))(e)),
    };
    match done {
        Ok(()) => execute(conn, "COMMIT", "committing").await,
        Err(e) => {
            if !e.is_connection_lost() {
                execute(conn, "ROLLBACK", "rolling back").await?;
            }
            Err(e)
        }
    }
}

/// Held indexes are recorded under this prefix (an index and a constraint may share a name).
const INDEX_PREFIX: &str = "index ";
/// Held primary and unique keys are recorded under this prefix.
const KEY_PREFIX: &str = "key ";
/// Foreign keys of other tables held with a key they reference: `child <table> <constraint>`.
const CHILD_PREFIX: &str = "child ";

/// The foreign keys to other tables held off `table` (`--defer-indexes`), whoever holds them
/// (its entity, or a parent's entity that built its key after the load): the parents each batch
/// is checked against.
pub async fn held_foreign_keys(conn: &mut PgConnection, table: &TargetTable) -> Result<Vec<ForeignKeyInfo>, SinkError> {
    let infos: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT info FROM migrate.held_constraints WHERE table_sql = $1 AND info IS NOT NULL AND left(name, 4) <> 'key ' ORDER BY name",
    )
    .bind(table.sql())
    .fetch_all(&mut *conn)
    .await
    .map_err(q_err(format!("reading the foreign keys held for {}", table.display())))?;
    Ok(infos
        .into_iter()
        .filter_map(|v| serde_json::from_value::<ForeignKeyInfo>(v).ok())
        .filter(|f| !f.self_ref)
        .collect())
}

/// What [`restore_held`] put back.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Restored {
    pub indexes: usize,
    pub foreign_keys: usize,
    /// Primary and unique keys built after the load.
    pub keys: usize,
    /// Rows moved to the rejects because a key built after the load found them duplicated (the
    /// source key was not unique).
    pub duplicates: u64,
    /// Foreign keys some rows break, described: back, but NOT VALID. The run fails on them.
    pub not_valid: Vec<String>,
    pub seconds: f64,
}

/// A `migrate.held_constraints` row as read back: table, name, definition, info, comments.
type HeldRow = (String, String, String, Option<serde_json::Value>, Option<String>);

/// What a `migrate.held_constraints` row holds.
#[derive(Debug, Clone, Copy, PartialEq)]
enum HeldKind<'a> {
    /// A primary or unique key, by its constraint name.
    Key(&'a str),
    Index(&'a str),
    ForeignKey(&'a str),
    /// Another table's foreign key to a held key: its constraint name.
    ChildForeignKey(&'a str),
}

impl<'a> HeldKind<'a> {
    fn of(name: &'a str, info: Option<&'a serde_json::Value>) -> HeldKind<'a> {
        if let Some(k) = name.strip_prefix(KEY_PREFIX) {
            HeldKind::Key(k)
        } else if name.starts_with(CHILD_PREFIX) {
            HeldKind::ChildForeignKey(info.and_then(|i| i["name"].as_str()).unwrap_or(name))
        } else if let Some(i) = name.strip_prefix(INDEX_PREFIX) {
            HeldKind::Index(i)
        } else {
            HeldKind::ForeignKey(name)
        }
    }

    /// Keys first (foreign keys may need them), then indexes, then foreign keys.
    fn rank(self) -> u8 {
        match self {
            HeldKind::Key(_) => 0,
            HeldKind::Index(_) => 1,
            HeldKind::ForeignKey(_) | HeldKind::ChildForeignKey(_) => 2,
        }
    }
}

/// Re-adds the keys, indexes and constraints held for `entity` and validates the foreign keys.
/// Each comes back and leaves `migrate.held_constraints` in one transaction. A key that the
/// loaded rows break (a source key that was not unique) comes back after its later duplicates
/// have moved to the rejects, in that same transaction, with the entity's progress counts.
pub async fn restore_held(conn: &mut PgConnection, entity: &str) -> Result<Restored, SinkError> {
    let t0 = std::time::Instant::now();
    let err = q_err(format!("restoring held constraints of {entity}"));
    let mut rows: Vec<HeldRow> = sqlx::query_as(
        "SELECT table_sql, name, definition, info, comments FROM migrate.held_constraints WHERE entity = $1 ORDER BY name",
    )
    .bind(entity)
    .fetch_all(&mut *conn)
    .await
    .map_err(err)?;
    rows.sort_by_key(|r| HeldKind::of(&r.1, r.3.as_ref()).rank());
    let mut done = Restored::default();
    for (table_sql, name, definition, info, comments) in &rows {
        let err = q_err(format!("restoring {name} of {entity}"));
        // What comes back is what was taken away: its comments too.
        let comment_sql = comments.as_deref().unwrap_or("");
        let comment_what = format!("restoring the comments of {name}");
        let kind = HeldKind::of(name, info.as_ref());
        let exists: bool = match kind {
            HeldKind::Index(index) => sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                 WHERE i.indrelid = to_regclass($1) AND c.relname = $2)",
            )
            .bind(table_sql)
            .bind(index),
            HeldKind::Key(c) | HeldKind::ForeignKey(c) | HeldKind::ChildForeignKey(c) => sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass($1) AND conname = $2)",
            )
            .bind(table_sql)
            .bind(c),
        }
        .fetch_one(&mut *conn)
        .await
        .map_err(err)?;
        if let HeldKind::Key(key) = kind {
            let add = format!(
                "ALTER TABLE {table_sql} ADD CONSTRAINT {} {definition}",
                quote_ident(key)
            );
            execute(conn, "BEGIN", "starting a transaction").await?;
            let added = if exists {
                Ok(())
            } else {
                execute(conn, &add, &format!("building {key} on {table_sql}")).await
            };
            match added {
                Ok(()) => {}
                Err(SinkError::Query { cause, .. }) if is_unique_violation(&cause) => {
                    execute(conn, "ROLLBACK", "rolling back").await?;
                    execute(conn, "BEGIN", "starting a transaction").await?;
                    let columns: Vec<String> = info
                        .as_ref()
                        .and_then(|i| serde_json::from_value(i["key_columns"].clone()).ok())
                        .unwrap_or_default();
                    let n = move_duplicates(conn, entity, table_sql, key, &columns).await?;
                    tracing::warn!(
                        "{entity}: the source key is not unique: {n} later duplicate(s) of key {key} moved to migrate.rejects before building it"
                    );
                    done.duplicates += n;
                    execute(conn, &add, &format!("building {key} on {table_sql}")).await?;
                }
                Err(e) => return Err(e),
            }
            if !exists && !comment_sql.is_empty() {
                execute(conn, comment_sql, &comment_what).await?;
            }
            forget_held(conn, entity, name).await?;
            execute(conn, "COMMIT", "committing").await?;
            done.keys += 1;
            continue;
        }
        let constraint = match kind {
            HeldKind::ChildForeignKey(c) => c,
            _ => name.as_str(),
        };
        execute(conn, "BEGIN", "starting a transaction").await?;
        if !exists {
            let sql = match kind {
                HeldKind::Index(_) => definition.clone(),
                _ => format!(
                    "ALTER TABLE {table_sql} ADD CONSTRAINT {} {definition} NOT VALID",
                    quote_ident(constraint)
                ),
            };
            execute(conn, &sql, &format!("re-creating {name} on {table_sql}")).await?;
            if !comment_sql.is_empty() {
                execute(conn, comment_sql, &comment_what).await?;
            }
        }
        if matches!(kind, HeldKind::Index(_)) {
            forget_held(conn, entity, name).await?;
            execute(conn, "COMMIT", "committing").await?;
            done.indexes += 1;
            continue;
        }
        execute(conn, "COMMIT", "committing").await?;
        done.foreign_keys += 1;
        // A foreign key leaves the record only once validated: one the rows break stays
        // NOT VALID and recorded, and every later run tries it again (and fails) until fixed.
        match validate_foreign_key(conn, table_sql, constraint).await? {
            None => forget_held(conn, entity, name).await?,
            Some(why) => done.not_valid.push(why),
        }
    }
    if !rows.is_empty() {
        done.seconds = t0.elapsed().as_secs_f64();
    }
    Ok(done)
}

/// Validates the foreign key `constraint` of `table_sql`; `Some(description)` when rows break
/// it: the constraint stays NOT VALID, and the description counts them and shows some.
pub async fn validate_foreign_key(
    conn: &mut PgConnection,
    table_sql: &str,
    constraint: &str,
) -> Result<Option<String>, SinkError> {
    let validate = format!(
        "ALTER TABLE {table_sql} VALIDATE CONSTRAINT {}",
        quote_ident(constraint)
    );
    let Err(e) = sqlx::raw_sql(AssertSqlSafe(validate)).execute(&mut *conn).await else {
        return Ok(None);
    };
    if connection_lost(&e) || is_lock_timeout_error(&e) {
        return Err(SinkError::Query {
            what: format!("validating foreign key {constraint} of {table_sql}"),
            cause: e,
        });
    }
    let table = TargetTable::parse(&table_sql.replace('"', ""));
    let table = match sqlx::query_as::<_, (String, String)>(
        "SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)",
    )
    .bind(table_sql)
    .fetch_optional(&mut *conn)
    .await
    {
        Ok(Some((schema, name))) => TargetTable {
            schema: Some(schema),
            name,
        },
        _ => table,
    };
    let fk = foreign_keys(conn, &table)
        .await?
        .into_iter()
        .find(|f| f.name == constraint);
    let shown = match fk {
        Some(fk) => {
            let (n, samples) = orphan_rows(conn, &table, &fk).await?;
            format!("{n} row(s) break it, e.g. ({})", samples.join("), ("))
        }
        None => e.to_string(),
    };
    Ok(Some(format!(
        "foreign key {constraint} of {} cannot be validated (it stays NOT VALID): {shown}",
        table.display()
    )))
}

fn is_lock_timeout_error(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "55P03")
}

/// The rows of `table` that break `fk` (a missing parent; with MATCH FULL, a partly NULL key):
/// how many, and the keys of up to 5.
pub async fn orphan_rows(
    conn: &mut PgConnection,
    table: &TargetTable,
    fk: &ForeignKeyInfo,
) -> Result<(i64, Vec<String>), SinkError> {
    let err = q_err(format!(
        "looking for rows of {} that break {}",
        table.display(),
        fk.name
    ));
    let from = format!("FROM {} c WHERE {}", table.sql(), fk.orphan_condition("c"));
    let count: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) {from}")))
        .fetch_one(&mut *conn)
        .await
        .map_err(err)?;
    if count == 0 {
        return Ok((0, Vec::new()));
    }
    let err = q_err(format!(
        "looking for rows of {} that break {}",
        table.display(),
        fk.name
    ));
    let samples: Vec<Option<String>> =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT {} {from} LIMIT 5", fk.shown_values("c"))))
            .fetch_all(&mut *conn)
            .await
            .map_err(err)?;
    Ok((
        count,
        samples
            .into_iter()
            .map(|s| s.unwrap_or_else(|| "a key with NULLs".into()))
            .collect(),
    ))
}

async fn forget_held(conn: &mut PgConnection, entity: &str, name: &str) -> Result<(), SinkError> {
    sqlx::query("DELETE FROM migrate.held_constraints WHERE entity = $1 AND name = $2")
        .bind(entity)
        .bind(name)
        .execute(conn)
        .await
        .map_err(q_err(format!("restoring {name} of {entity}")))?;
    Ok(())
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "23505")
}

/// Moves every row of `table_sql` whose `columns` (none NULL) repeat an earlier row's (in the
/// table's physical order, which is the load's) to `migrate.rejects`, with the row as loaded and
/// a reason in PostgreSQL's words, and counts them in the entity's progress (in a range's row if
/// the entity is split, whose counts are summed when it finishes). In the caller's transaction.
async fn move_duplicates(
    conn: &mut PgConnection,
    entity: &str,
    table_sql: &str,
    key: &str,
    columns: &[String],
) -> Result<u64, SinkError> {
    let what = format!("moving duplicates of {key} in {table_sql} to the rejects");
    if columns.is_empty() {
        return Err(SinkError::Query {
            what,
            cause: sqlx::Error::Protocol("the held key's columns were not recorded".into()),
        });
    }
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    let list = cols.join(", ");
    let not_null = cols
        .iter()
        .map(|c| format!("{c} IS NOT NULL"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let row_key = cols
        .iter()
        .map(|c| format!("d.{c}::text"))
        .collect::<Vec<_>>()
        .join(", ");
    let key_json = cols.iter().map(|c| format!("d.{c}")).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "WITH d AS (
             DELETE FROM {table_sql} WHERE ctid IN (
                 SELECT ctid FROM (SELECT ctid, row_number() OVER (PARTITION BY {list} ORDER BY ctid) AS n
                                   FROM {table_sql} WHERE {not_null}) x
                 WHERE n > 1)
             RETURNING *),
         r AS (
             INSERT INTO migrate.rejects (entity, row_key, key_json, source_values, reason)
             SELECT $1, concat_ws('|', {row_key}), jsonb_build_array({key_json}), to_jsonb(d),
                    format('duplicate key value violates unique constraint \"%s\": Key (%s)=(%s) already exists (found when the key was built after the load, --defer-indexes: the source key is not unique; source_values holds the row as loaded)', $2::text, $3::text, concat_ws(', ', {row_key}))
             FROM d RETURNING 1)
         SELECT count(*) FROM r"
    );
    let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(entity)
        .bind(key)
        .bind(columns.join(", "))
        .fetch_one(&mut *conn)
        .await
        .map_err(q_err(what.clone()))?;
    sqlx::query(
        "UPDATE migrate.progress SET rows_loaded = rows_loaded - $2, rows_rejected = rows_rejected + $2, updated_at = now()
         WHERE entity = (SELECT entity FROM migrate.progress
                         WHERE entity = $1 OR left(entity, length($1) + 1) = $1 || '#'
                         ORDER BY entity = $1, entity LIMIT 1)",
    )
    .bind(entity)
    .bind(n)
    .execute(&mut *conn)
    .await
    .map_err(q_err(what))?;
    Ok(n as u64)
}

/// How one entity's rows get into its table.
#[derive(Debug, Clone)]
pub struct Loader {
    pub table: TargetTable,
    copy_sql: String,
    staging: Option<Staging>,
    /// The entity's position in the plan (names its temp tables).
    index: usize,
    /// The target columns, quoted, in the order rows are encoded.
    cols: String,
    /// Foreign keys held off the table (`--defer-indexes`): every batch is checked against their
    /// parents before it is loaded.
    pub checked_fks: Vec<ForeignKeyInfo>,
}

#[derive(Debug, Clone)]
struct Staging {
    prepare_sql: String,
    insert_sql: String,
}

impl Loader {
    /// The entity's position in the plan (names its temp tables).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The COPY that takes the encoded rows (into the table, or into its staging table).
    pub fn copy_sql(&self) -> &str {
        &self.copy_sql
    }

    /// What prepares the staging table for a batch (`on_conflict = skip|update`).
    pub fn prepare_sql(&self) -> Option<&str> {
        self.staging.as_ref().map(|s| s.prepare_sql.as_str())
    }

    /// What moves a staged batch into the table (`on_conflict = skip|update`).
    pub fn insert_sql(&self) -> Option<&str> {
        self.staging.as_ref().map(|s| s.insert_sql.as_str())
    }
}

impl Loader {
    /// `columns` are the target columns in the order rows are encoded; `conflict` the target
    /// columns ON CONFLICT uses (for skip/update).
    pub fn new(
        entity_index: usize,
        table: &TargetTable,
        columns: &[String],
        on_conflict: OnConflict,
        conflict: &[String],
    ) -> Loader {
        let cols = columns.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ");
        if on_conflict == OnConflict::Error {
            return Loader {
                table: table.clone(),
                copy_sql: format!("COPY {} ({cols}) FROM STDIN (FORMAT binary)", table.sql()),
                staging: None,
                index: entity_index,
                cols,
                checked_fks: Vec::new(),
            };
        }
        let stage = quote_ident(&format!("migrate_stage_{entity_index}"));
        let conflict_cols = conflict.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ");
        let updates: Vec<String> = columns
            .iter()
            .filter(|c| !conflict.contains(c))
            .map(|c| format!("{0} = EXCLUDED.{0}", quote_ident(c)))
            .collect();
        let action = if on_conflict == OnConflict::Skip || updates.is_empty() {
            "DO NOTHING".to_string()
        } else {
            format!("DO UPDATE SET {}", updates.join(", "))
        };
        Loader {
            table: table.clone(),
            copy_sql: format!("COPY pg_temp.{stage} ({cols}) FROM STDIN (FORMAT binary)"),
            staging: Some(Staging {
                prepare_sql: format!(
                    "CREATE TEMP TABLE IF NOT EXISTS {stage} AS SELECT {cols} FROM {} WITH NO DATA; TRUNCATE pg_temp.{stage}",
                    table.sql()
                ),
                // The rows stored and, of them, those that updated a row already there
                // (xmax is set on an updated row, 0 on a new one): the command tag alone
                // cannot tell the two apart.
                insert_sql: format!(
                    "WITH m AS (INSERT INTO {} ({cols}) SELECT {cols} FROM pg_temp.{stage} ON CONFLICT ({conflict_cols}) {action} RETURNING (xmax = 0) AS fresh) SELECT count(*), count(*) FILTER (WHERE NOT fresh) FROM m",
                    table.sql()
                ),
            }),
            index: entity_index,
            cols,
            checked_fks: Vec::new(),
        }
    }
}

/// Rows encoded as binary COPY tuples, back to back, with each row's byte range.
#[derive(Debug, Default)]
pub struct Encoded {
    pub buf: Vec<u8>,
    pub rows: Vec<Range<usize>>,
}

impl Encoded {
    /// The tuples of `rows` back to back, ready for a COPY (the buffer itself when no row was
    /// taken out).
    pub fn into_copy_data(self) -> Vec<u8> {
        let kept: usize = self.rows.iter().map(|r| r.len()).sum();
        if kept == self.buf.len() {
            return self.buf;
        }
        let mut out = Vec::with_capacity(kept);
        for r in &self.rows {
            out.extend_from_slice(&self.buf[r.clone()]);
        }
        out
    }
}

/// What PostgreSQL stored of rows it took without an error, by its own counts (the COPY's
/// command tag, or the upsert's returned rows): rows it did not store were kept out by a
/// trigger or rule, or by `on_conflict = "skip"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stored {
    /// Rows stored: new rows and, with `on_conflict = "update"`, rows that updated one there.
    pub rows: u64,
    /// Of `rows`, those that updated a row already in the target.
    pub merged: u64,
}

impl std::ops::AddAssign for Stored {
    fn add_assign(&mut self, o: Stored) {
        self.rows += o.rows;
        self.merged += o.merged;
    }
}

/// What became of a batch: the rows PostgreSQL refused, and what it stored of the others.
#[derive(Debug, Default)]
pub struct Loaded {
    pub refused: Vec<Refused>,
    pub stored: Stored,
}

/// What PostgreSQL stored after a finished COPY of `copied` rows into the loader's table or
/// staging table; staged rows are moved into the table here.
pub async fn stored_after_copy(conn: &mut PgConnection, loader: &Loader, copied: u64) -> Result<Stored, sqlx::Error> {
    match &loader.staging {
        None => Ok(Stored {
            rows: copied,
            merged: 0,
        }),
        Some(st) => {
            let (rows, merged): (i64, i64) = sqlx::query_as(AssertSqlSafe(st.insert_sql.clone()))
                .fetch_one(&mut *conn)
                .await?;
            Ok(Stored {
                rows: rows as u64,
                merged: merged as u64,
            })
        }
    }
}

/// A row PostgreSQL refused: its index in the [`Encoded`] batch, the reason, the column if known.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub row: usize,
    pub reason: String,
    pub column: Option<String>,
}

/// Loads the batch inside the caller's transaction, which it must open just before (BEGIN, and
/// nothing else yet). The whole batch is tried first in one COPY, without a savepoint (two
/// round trips fewer per batch). If PostgreSQL refuses rows for their data (SQLSTATE classes
/// 21, 22, 23), the transaction is begun again: rows without a parent (foreign keys) are
/// found all at once by staging the batch and anti-joining the parents, and whatever PostgreSQL
/// still refuses is isolated by halving under savepoints. Every other error aborts the batch.
/// With foreign keys held off the table (`loader.checked_fks`), the parent check runs first,
/// on every batch, in the same transaction.
pub async fn load(conn: &mut PgConnection, loader: &Loader, batch: &Encoded) -> Result<Loaded, SinkError> {
    if batch.rows.is_empty() {
        return Ok(Loaded::default());
    }
    let load_err = |cause| SinkError::Query {
        what: format!("loading into {}", loader.table.display()),
        cause,
    };
    let mut todo: Vec<usize> = (0..batch.rows.len()).collect();
    let mut refused = Vec::new();
    if !loader.checked_fks.is_empty() {
        refused = without_parent(conn, loader, batch, &todo, &loader.checked_fks).await?;
        todo.retain(|i| refused.binary_search_by_key(i, |o: &Refused| o.row).is_err());
    }
    match copy_rows(conn, loader, batch, &todo).await {
        Ok(stored) => return Ok(Loaded { refused, stored }),
        Err(e) if data_error(&e).is_some() => {}
        Err(e) => return Err(load_err(e)),
    }
    execute(conn, "ROLLBACK", "rolling back a refused batch").await?;
    execute(conn, BEGIN_BATCH, "starting a transaction").await?;
    // Whatever the first refusal was, rows without a parent are the usual bulk of a legacy
    // database's bad rows (PostgreSQL checks foreign keys last, so a CHECK can hide them).
    if loader.staging.is_none() && loader.checked_fks.is_empty() {
        let fks: Vec<ForeignKeyInfo> = foreign_keys(conn, &loader.table)
            .await?
            .into_iter()
            .filter(|f| !f.self_ref)
            .collect();
        let orphans = without_parent(conn, loader, batch, &todo, &fks).await?;
        if !orphans.is_empty() {
            todo.retain(|i| orphans.binary_search_by_key(i, |o| o.row).is_err());
            refused = orphans;
            match copy_rows(conn, loader, batch, &todo).await {
                Ok(stored) => return Ok(Loaded { refused, stored }),
                Err(e) if data_error(&e).is_some() => {
                    execute(conn, "ROLLBACK", "rolling back a refused batch").await?;
                    execute(conn, BEGIN_BATCH, "starting a transaction").await?;
                }
                Err(e) => return Err(load_err(e)),
            }
        }
    }
    // Spans are ranges of positions in `todo`.
    let mut spans: Vec<Range<usize>> = Vec::with_capacity(16);
    spans.push(0..todo.len());
    let mut stored = Stored::default();
    while let Some(span) = spans.pop() {
        if span.is_empty() {
            continue;
        }
        execute(conn, "SAVEPOINT migrate_batch", "creating a savepoint").await?;
        match copy_rows(conn, loader, batch, &todo[span.clone()]).await {
            Ok(s) => {
                execute(conn, "RELEASE SAVEPOINT migrate_batch", "releasing a savepoint").await?;
                stored += s;
            }
            Err(e) => {
                let Some((reason, column)) = data_error(&e) else {
                    return Err(load_err(e));
                };
                undo_savepoint(conn, "migrate_batch").await?;
                if span.len() == 1 {
                    refused.push(Refused {
                        row: todo[span.start],
                        reason,
                        column,
                    });
                } else {
                    let mid = span.start + span.len() / 2;
                    spans.push(mid..span.end);
                    spans.push(span.start..mid);
                }
            }
        }
    }
    refused.sort_by_key(|r| r.row);
    Ok(Loaded { refused, stored })
}

/// What became of a rejected row's earlier version in the target (`migrate sync`).
#[derive(Debug, Clone, PartialEq)]
pub enum Previous {
    /// The target held no row with that key.
    None,
    /// It was deleted, so the row stands only in the rejects.
    Removed,
    /// It stays, because deleting it is refused or would change other rows (the reason).
    Kept(String),
}

/// Deletes the target rows with the keys `keys` (binary COPY tuples of the columns `key_cols`,
/// in those columns' types) inside the caller's transaction, and says for each key what became
/// of its row. For `migrate sync`: when a changed row is rejected, its earlier version must not
/// stay behind as if it were current. A row that other rows reference is kept (PostgreSQL
/// refuses the delete), and nothing is deleted from a table whose children would follow it
/// (ON DELETE CASCADE, SET NULL or SET DEFAULT): such rows are kept and say why.
pub async fn remove_previous(
    conn: &mut PgConnection,
    table: &TargetTable,
    key_cols: &[String],
    keys: &[Vec<u8>],
) -> Result<Vec<Previous>, SinkError> {
    let mut out = vec![Previous::None; keys.len()];
    if keys.is_empty() {
        return Ok(out);
    }
    let what = format!("removing earlier versions of rejected rows from {}", table.display());
    let cascading: Option<String> = sqlx::query_scalar(
        "SELECT string_agg(format('%s (%s, ON DELETE %s)', c.conrelid::regclass, c.conname,
                  CASE c.confdeltype WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL' ELSE 'SET DEFAULT' END), ', ' ORDER BY 1)
         FROM pg_constraint c WHERE c.contype = 'f' AND c.confrelid = to_regclass($1) AND c.confdeltype IN ('c', 'n', 'd')",
    )
    .bind(table.sql())
    .fetch_one(&mut *conn)
    .await
    .map_err(q_err(what.clone()))?;
    let stage = quote_ident("migrate_previous");
    let cols: Vec<String> = key_cols.iter().map(|c| quote_ident(c)).collect();
    let cols = cols.join(", ");
    execute(
        conn,
        &format!(
            "DROP TABLE IF EXISTS pg_temp.{stage};
             CREATE TEMP TABLE {stage} ON COMMIT DROP AS SELECT {cols} FROM {} WITH NO DATA;
             ALTER TABLE pg_temp.{stage} ADD COLUMN migrate_row_ordinal bigint GENERATED BY DEFAULT AS IDENTITY",
            table.sql()
        ),
        &what,
    )
    .await?;
    let batch = Encoded {
        buf: keys.concat(),
        rows: keys
            .iter()
            .scan(0, |at, k| {
                let r = *at..*at + k.len();
                *at += k.len();
                Some(r)
            })
            .collect(),
    };
    let all: Vec<usize> = (0..keys.len()).collect();
    send_rows(
        conn,
        &format!("COPY pg_temp.{stage} ({cols}) FROM STDIN (FORMAT binary)"),
        &batch,
        &all,
    )
    .await
    .map_err(q_err(what.clone()))?;
    let join = key_cols
        .iter()
        .map(|c| format!("t.{0} = d.{0}", quote_ident(c)))
        .collect::<Vec<_>>()
        .join(" AND ");
    if let Some(children) = cascading {
        let found: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT d.migrate_row_ordinal FROM pg_temp.{stage} d WHERE EXISTS (SELECT 1 FROM {} t WHERE {join})",
            table.sql()
        )))
        .fetch_all(&mut *conn)
        .await
        .map_err(q_err(what.clone()))?;
        for o in found {
            if let Some(p) = usize::try_from(o - 1).ok().and_then(|i| out.get_mut(i)) {
                *p = Previous::Kept(format!("deleting it would change the rows of {children}"));
            }
        }
        return Ok(out);
    }
    let delete = |only: Option<i64>| {
        format!(
            "DELETE FROM {} t USING pg_temp.{stage} d WHERE {join}{} RETURNING d.migrate_row_ordinal",
            table.sql(),
            only.map(|o| format!(" AND d.migrate_row_ordinal = {o}"))
                .unwrap_or_default()
        )
    };
    execute(conn, "SAVEPOINT migrate_previous", "creating a savepoint").await?;
    match sqlx::query_scalar::<_, i64>(AssertSqlSafe(delete(None)))
        .fetch_all(&mut *conn)
        .await
    {
        Ok(found) => {
            execute(conn, "RELEASE SAVEPOINT migrate_previous", "releasing a savepoint").await?;
            for o in found {
                if let Some(p) = usize::try_from(o - 1).ok().and_then(|i| out.get_mut(i)) {
                    *p = Previous::Removed;
                }
            }
            return Ok(out);
        }
        Err(e) if data_error(&e).is_none() => return Err(q_err(what)(e)),
        Err(_) => undo_savepoint(conn, "migrate_previous").await?,
    }
    // Some row is referenced: one key at a time (rejects are few), each under its savepoint.
    for (i, p) in out.iter_mut().enumerate() {
        execute(conn, "SAVEPOINT migrate_previous", "creating a savepoint").await?;
        match sqlx::query_scalar::<_, i64>(AssertSqlSafe(delete(Some(i as i64 + 1))))
            .fetch_all(&mut *conn)
            .await
        {
            Ok(found) => {
                execute(conn, "RELEASE SAVEPOINT migrate_previous", "releasing a savepoint").await?;
                if !found.is_empty() {
                    *p = Previous::Removed;
                }
            }
            Err(e) => {
                let Some((reason, _)) = data_error(&e) else {
                    return Err(q_err(what)(e));
                };
                undo_savepoint(conn, "migrate_previous").await?;
                *p = Previous::Kept(reason);
            }
        }
    }
    Ok(out)
}

/// A foreign key of a target table, from the catalog.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ForeignKeyInfo {
    pub name: String,
    /// As `pg_get_constraintdef` gives it: `FOREIGN KEY (a) REFERENCES p(id) ...`.
    pub definition: String,
    pub table: String,
    /// The referenced table: quoted SQL, and its bare name as PostgreSQL's messages show it.
    pub parent: String,
    pub parent_name: String,
    pub columns: Vec<String>,
    pub ref_columns: Vec<String>,
    /// The table references itself.
    pub self_ref: bool,
    /// `MATCH FULL`: a key whose columns are partly NULL breaks it (under MATCH SIMPLE, the
    /// default, any NULL satisfies it).
    #[serde(default)]
    pub match_full: bool,
}

impl ForeignKeyInfo {
    /// The condition under which row `c` breaks this key: no parent for a key without NULLs;
    /// with MATCH FULL, also a key that is partly NULL.
    pub fn orphan_condition(&self, c: &str) -> String {
        if self.match_full {
            return format!("(({}) OR ({}))", self.mixed_nulls(c), self.missing_parent(c));
        }
        self.missing_parent(c)
    }

    /// Row `c`'s key is partly NULL (what MATCH FULL forbids).
    fn mixed_nulls(&self, c: &str) -> String {
        let nulls: Vec<String> = self
            .columns
            .iter()
            .map(|col| format!("{c}.{} IS NULL", quote_ident(col)))
            .collect();
        format!("({}) AND NOT ({})", nulls.join(" OR "), nulls.join(" AND "))
    }

    /// The SELECTs that find the rows of `from` (each with `migrate_row_ordinal`) breaking this
    /// key, as (ordinal, `i`, the key's values): with MATCH FULL, partly NULL keys come with
    /// `-1 - i` (their reason differs).
    pub fn check_selects(&self, i: usize, from: &str) -> Vec<String> {
        let mut out = vec![format!(
            "SELECT c.migrate_row_ordinal::bigint, {i}, {} FROM {from} WHERE {}",
            self.shown_values("c"),
            self.missing_parent("c")
        )];
        if self.match_full {
            out.push(format!(
                "SELECT c.migrate_row_ordinal::bigint, {}, NULL::text FROM {from} WHERE {}",
                -1 - i as i64,
                self.mixed_nulls("c")
            ));
        }
        out
    }

    /// A key without NULLs that no parent row has.
    fn missing_parent(&self, c: &str) -> String {
        let not_null = self
            .columns
            .iter()
            .map(|col| format!("{c}.{} IS NOT NULL", quote_ident(col)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let join = self
            .columns
            .iter()
            .zip(&self.ref_columns)
            .map(|(col, r)| format!("p.{} = {c}.{}", quote_ident(r), quote_ident(col)))
            .collect::<Vec<_>>()
            .join(" AND ");
        format!(
            "{not_null} AND NOT EXISTS (SELECT 1 FROM {} p WHERE {join})",
            self.parent
        )
    }

    /// The key's values of row `c` as text, `, `-separated, as PostgreSQL shows them.
    pub fn shown_values(&self, c: &str) -> String {
        self.columns
            .iter()
            .map(|col| format!("{c}.{}::text", quote_ident(col)))
            .collect::<Vec<_>>()
            .join(" || ', ' || ")
    }
}

/// Every foreign key of `table`, by name.
pub async fn foreign_keys(conn: &mut PgConnection, table: &TargetTable) -> Result<Vec<ForeignKeyInfo>, SinkError> {
    let rows = sqlx::query(
        "SELECT c.conname::text, pn.nspname::text, p.relname::text,
                (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(c.conkey) WITH ORDINALITY k(n, ord)
                   JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n),
                (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(c.confkey) WITH ORDINALITY k(n, ord)
                   JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n),
                c.confrelid = c.conrelid, pg_get_constraintdef(c.oid), c.confmatchtype = 'f'
         FROM pg_constraint c JOIN pg_class p ON p.oid = c.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
         WHERE c.contype = 'f' AND c.conrelid = to_regclass($1) ORDER BY 1",
    )
    .bind(table.sql())
    .fetch_all(&mut *conn)
    .await
    .map_err(q_err(format!("reading foreign keys of {}", table.display())))?;
    // A constraint dropped while the catalog is read (another stream holding it for its load)
    // has no definition any more, nor columns: it is gone, so it is not listed.
    Ok(rows
        .iter()
        .filter(|r| {
            matches!(r.try_get::<Option<String>, _>(6), Ok(Some(_)))
                && matches!(r.try_get::<Option<Vec<String>>, _>(3), Ok(Some(_)))
                && matches!(r.try_get::<Option<Vec<String>>, _>(4), Ok(Some(_)))
        })
        .map(|r| ForeignKeyInfo {
            name: r.get(0),
            definition: r.get(6),
            table: table.name.clone(),
            parent: format!(
                "{}.{}",
                quote_ident(&r.get::<String, _>(1)),
                quote_ident(&r.get::<String, _>(2))
            ),
            parent_name: r.get(2),
            columns: r.get(3),
            ref_columns: r.get(4),
            self_ref: r.get(5),
            match_full: r.get(7),
        })
        .collect())
}

/// The rows of `idx` whose foreign keys (to other tables) have no parent, found in one query:
/// the rows are COPYed into a temp table numbered in order, then anti-joined with each parent.
/// The reason reads like PostgreSQL's own. Runs in the caller's transaction.
async fn without_parent(
    conn: &mut PgConnection,
    loader: &Loader,
    batch: &Encoded,
    idx: &[usize],
    fks: &[ForeignKeyInfo],
) -> Result<Vec<Refused>, SinkError> {
    if fks.is_empty() || idx.is_empty() {
        return Ok(Vec::new());
    }
    let stage = format!("pg_temp.{}", quote_ident(&format!("migrate_fk_stage_{}", loader.index)));
    let cols = &loader.cols;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE TEMP TABLE IF NOT EXISTS {} AS SELECT {cols} FROM {} WITH NO DATA;
         ALTER TABLE {stage} ADD COLUMN IF NOT EXISTS migrate_row_ordinal bigint GENERATED BY DEFAULT AS IDENTITY;
         TRUNCATE {stage} RESTART IDENTITY",
        quote_ident(&format!("migrate_fk_stage_{}", loader.index)),
        loader.table.sql()
    )))
    .execute(&mut *conn)
    .await
    .map_err(q_err("preparing the foreign-key check"))?;
    let copy_sql = format!("COPY {stage} ({cols}) FROM STDIN (FORMAT binary)");
    send_rows(conn, &copy_sql, batch, idx)
        .await
        .map_err(q_err("staging the batch for the foreign-key check"))?;
    let checks: Vec<String> = fks
        .iter()
        .enumerate()
        .flat_map(|(i, f)| f.check_selects(i, &format!("{stage} c")))
        .collect();
    let found: Vec<(i64, i32, Option<String>)> =
        sqlx::query_as(AssertSqlSafe(format!("{} ORDER BY 1, 2", checks.join(" UNION ALL "))))
            .fetch_all(&mut *conn)
            .await
            .map_err(q_err("finding rows without a parent"))?;
    Ok(refusals(found, idx, fks))
}

/// The rows an anti-join found without a parent, as (1-based ordinal in `idx`, foreign key,
/// the key's values as text), in PostgreSQL's own words; in batch order (callers look rows up
/// by binary search).
fn refusals(found: Vec<(i64, i32, Option<String>)>, idx: &[usize], fks: &[ForeignKeyInfo]) -> Vec<Refused> {
    let mut refused: Vec<Refused> = Vec::new();
    for (ordinal, fk, values) in found {
        let Some(&row) = usize::try_from(ordinal - 1).ok().and_then(|o| idx.get(o)) else {
            continue;
        };
        // A row that breaks several keys is reported for the first (by constraint name).
        if refused.last().is_some_and(|r| r.row == row) {
            continue;
        }
        // A partly NULL key of a MATCH FULL foreign key comes as `-1 - i`.
        let (fk, mixed) = if fk < 0 { (-1 - fk, true) } else { (fk, false) };
        let Some(f) = usize::try_from(fk).ok().and_then(|i| fks.get(i)) else {
            continue;
        };
        if mixed {
            refused.push(Refused {
                row,
                reason: format!(
                    "insert or update on table \"{}\" violates foreign key constraint \"{}\": MATCH FULL does not allow mixing of null and nonnull key values. (SQLSTATE 23503)",
                    f.table, f.name
                ),
                column: Some(f.columns.join(", ")),
            });
            continue;
        }
        refused.push(Refused {
            row,
            reason: format!(
                "insert or update on table \"{}\" violates foreign key constraint \"{}\": Key ({})=({}) is not present in table \"{}\". (SQLSTATE 23503)",
                f.table,
                f.name,
                f.columns.join(", "),
                values.unwrap_or_default(),
                f.parent_name
            ),
            column: Some(f.columns.join(", ")),
        });
    }
    refused
}

/// Checks batches for rows without a parent before they are loaded, on a session of its own
/// (the parents are other entities' tables, loaded and committed before this one starts), in
/// one query per batch: only the key columns go to the server, and every parent's key index
/// is probed once per row. Integer and text keys go as array parameters; keys of other types
/// are staged (with each row's ordinal) in a temp table that empties at each commit.
#[derive(Debug, Clone)]
pub struct ParentCheck {
    fks: Vec<ForeignKeyInfo>,
    /// Positions, in the encoded rows, of the key columns sent, and their types.
    fields: Vec<usize>,
    types: Vec<PgType>,
    /// Arrays, or the staged path.
    arrays: bool,
    create_sql: String,
    copy_sql: String,
    query_sql: String,
    /// The most parent keys held in memory (see [`ParentCheck::with_local_keys`]).
    local_budget: usize,
    /// Decided at the first check: the keys held in memory, and the check of the other keys.
    split: Option<std::sync::Arc<LocalSplit>>,
    index: usize,
    table: TargetTable,
    cols: Vec<PgColumn>,
}

/// The parents whose keys a [`ParentCheck`] holds in memory, and the check of the others.
#[derive(Debug)]
struct LocalSplit {
    local: Vec<LocalKeys>,
    /// The other foreign keys' check, with each one's position in the whole check's keys.
    remote: Option<(ParentCheck, Vec<usize>)>,
}

/// The keys of one foreign key's parent, sorted: a single integer column.
#[derive(Debug)]
struct LocalKeys {
    /// The foreign key's position in the check's keys.
    fk: usize,
    /// The column's position in the encoded rows, and its type.
    field: usize,
    ty: PgType,
    keys: KeySet,
}

/// A set of integer keys: a bitmap over their span when that is at most 8 bits a key (serial
/// keys: a bit each, and a lookup that stays in cache), else sorted.
#[derive(Debug)]
enum KeySet {
    Bits { min: i64, bits: Vec<u64>, len: usize },
    Sorted(Vec<i64>),
}

impl KeySet {
    /// A bitmap for keys from `min` over `span` values, none in it yet.
    fn empty_bits(min: i64, span: usize) -> KeySet {
        KeySet::Bits {
            min,
            bits: vec![0u64; span.div_ceil(64)],
            len: 0,
        }
    }

    /// Adds keys (a sorted set sorts in [`KeySet::finish`]); `false` if a key is outside a
    /// bitmap's span.
    fn extend(&mut self, keys: &[i64]) -> bool {
        match self {
            KeySet::Bits { min, bits, len } => {
                for &k in keys {
                    let Some(at) = k.checked_sub(*min).filter(|d| *d >= 0) else {
                        return false;
                    };
                    let at = at as u64;
                    let Some(w) = bits.get_mut((at / 64) as usize) else {
                        return false;
                    };
                    let bit = 1u64 << (at % 64);
                    if *w & bit == 0 {
                        *w |= bit;
                        *len += 1;
                    }
                }
                true
            }
            KeySet::Sorted(v) => {
                v.extend_from_slice(keys);
                true
            }
        }
    }

    /// Sorts a sorted set's keys (a bitmap has nothing to do).
    fn finish(&mut self) {
        if let KeySet::Sorted(v) = self {
            v.sort_unstable();
            v.dedup();
            v.shrink_to_fit();
        }
    }

    fn contains(&self, k: i64) -> bool {
        match self {
            KeySet::Bits { min, bits, .. } => {
                let Some(at) = k.checked_sub(*min).filter(|d| *d >= 0) else {
                    return false;
                };
                let at = at as u64;
                bits.get((at / 64) as usize).is_some_and(|w| w & (1 << (at % 64)) != 0)
            }
            KeySet::Sorted(keys) => keys.binary_search(&k).is_ok(),
        }
    }

    fn len(&self) -> usize {
        match self {
            KeySet::Bits { len, .. } => *len,
            KeySet::Sorted(keys) => keys.len(),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            KeySet::Bits { bits, .. } => bits.len() * 8,
            KeySet::Sorted(keys) => keys.len() * 8,
        }
    }
}

/// Takes the decimal keys of text COPY output apart, one a line; `partial` carries a number cut
/// by the end of a chunk (negative or not, and its value so far: negatives are built downwards,
/// so i64::MIN fits).
fn parse_key_lines(chunk: &[u8], partial: &mut Option<(bool, i64)>, keys: &mut Vec<i64>) -> Result<(), String> {
    let bad = || "a key line of the COPY output is not a number".to_string();
    for &b in chunk {
        match b {
            b'\n' => keys.push(partial.take().ok_or_else(bad)?.1),
            b'-' if partial.is_none() => *partial = Some((true, 0)),
            b'0'..=b'9' => {
                let (neg, v) = partial.get_or_insert((false, 0));
                let d = (b - b'0') as i64;
                *v = v
                    .checked_mul(10)
                    .and_then(|x| if *neg { x.checked_sub(d) } else { x.checked_add(d) })
                    .ok_or_else(bad)?;
            }
            _ => return Err(bad()),
        }
    }
    Ok(())
}

/// The most memory one check gives its parents' keys: 4 MiB, a bitmap of 32 M serial keys or a
/// sorted list of 512 k others.
pub const LOCAL_PARENT_BYTES: usize = 4 << 20;

impl ParentCheck {
    /// For the foreign keys (to other tables) whose columns are all among `cols`, the target
    /// columns in the order rows are encoded; `None` when there is none.
    pub fn new(index: usize, table: &TargetTable, cols: &[PgColumn], fks: &[ForeignKeyInfo]) -> Option<ParentCheck> {
        let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
        let fks: Vec<ForeignKeyInfo> = fks
            .iter()
            .filter(|f| !f.self_ref && f.columns.iter().all(|c| names.contains(&c.as_str())))
            .cloned()
            .collect();
        if fks.is_empty() {
            return None;
        }
        let mut fields: Vec<usize> = fks
            .iter()
            .flat_map(|f| f.columns.iter())
            .filter_map(|c| names.iter().position(|x| x == c))
            .collect();
        fields.sort_unstable();
        fields.dedup();
        let types: Vec<PgType> = fields.iter().map(|&i| cols[i].ty.clone()).collect();
        let arrays = types.iter().all(|t| {
            matches!(
                t,
                PgType::Int2 | PgType::Int4 | PgType::Int8 | PgType::Text | PgType::Varchar(_) | PgType::Bpchar(_)
            )
        });
        let quoted: Vec<String> = fields.iter().map(|&i| quote_ident(&cols[i].name)).collect();
        let stage = quote_ident(&format!("migrate_parent_check_{index}"));
        let from = if arrays {
            let params: Vec<String> = fields
                .iter()
                .zip(&types)
                .enumerate()
                .map(|(n, (&i, t))| match t {
                    PgType::Int2 => format!("${}::int2[]", n + 1),
                    PgType::Int4 => format!("${}::int4[]", n + 1),
                    PgType::Int8 => format!("${}::int8[]", n + 1),
                    _ => format!("${}::text[]::{}[]", n + 1, cols[i].formatted),
                })
                .collect();
            format!(
                "unnest({}) WITH ORDINALITY AS c({}, migrate_row_ordinal)",
                params.join(", "),
                quoted.join(", ")
            )
        } else {
            format!("pg_temp.{stage} c")
        };
        let checks: Vec<String> = fks
            .iter()
            .enumerate()
            .flat_map(|(i, f)| f.check_selects(i, &from))
            .collect();
        Some(ParentCheck {
            create_sql: format!(
                "CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS
                   SELECT 0::int AS migrate_row_ordinal, {} FROM {} WITH NO DATA",
                quoted.join(", "),
                table.sql()
            ),
            copy_sql: format!(
                "COPY pg_temp.{stage} (migrate_row_ordinal, {}) FROM STDIN (FORMAT binary)",
                quoted.join(", ")
            ),
            query_sql: format!("{} ORDER BY 1, 2", checks.join(" UNION ALL ")),
            fks,
            fields,
            types,
            arrays,
            local_budget: 0,
            split: None,
            index,
            table: table.clone(),
            cols: cols.to_vec(),
        })
    }

    /// Lets the check, which will see about `rows` rows, hold its parents' keys in memory: at
    /// the first check, each single-integer-column foreign key whose parent's keys fit what is
    /// left of [`LOCAL_PARENT_BYTES`] (as a bitmap over their span, or a sorted list), and
    /// number at most 8 per row to check (a probe costs about that many key reads), is checked
    /// against a copy of them read in one scan of the parent, not by an index probe per row.
    /// The parents are loaded before the check starts; a parent row added during the load is
    /// noticed while the keys are read (the index answers then), and one deleted by someone
    /// else is caught when the foreign key is validated.
    pub fn with_local_keys(mut self, rows: usize) -> ParentCheck {
        self.local_budget = rows;
        self
    }

    /// The foreign keys checked.
    pub fn foreign_keys(&self) -> &[ForeignKeyInfo] {
        &self.fks
    }

    /// Reads, for the integer foreign keys whose parents fit the budget, their keys.
    async fn split_off_local(&self, conn: &mut PgConnection) -> Result<LocalSplit, SinkError> {
        // Reading more keys than 8 per row to check costs more than the probes it saves.
        let most_keys = self.local_budget.saturating_mul(8) as i128;
        let mut bytes_left = LOCAL_PARENT_BYTES;
        let mut local = Vec::new();
        let mut remote = Vec::new();
        for (i, f) in self.fks.iter().enumerate() {
            let field = match f.columns.as_slice() {
                [c] => self.cols.iter().position(|x| &x.name == c),
                _ => None,
            };
            let int = field.filter(|&p| matches!(self.cols[p].ty, PgType::Int2 | PgType::Int4 | PgType::Int8));
            let (Some(field), [ref_col]) = (int, f.ref_columns.as_slice()) else {
                remote.push(i);
                continue;
            };
            let what = format!("reading the keys of {}", f.parent_name);
            let c = quote_ident(ref_col);
            // The parent's key is unique, so it has an index: its ends cost two probes.
            let (lo, hi): (Option<i64>, Option<i64>) = sqlx::query_as(AssertSqlSafe(format!(
                "SELECT min({c})::int8, max({c})::int8 FROM {}",
                f.parent
            )))
            .fetch_one(&mut *conn)
            .await
            .map_err(q_err(what.clone()))?;
            let (Some(lo), Some(hi)) = (lo, hi) else {
                // No parent rows at all: every key is missing.
                local.push(LocalKeys {
                    fk: i,
                    field,
                    ty: self.cols[field].ty.clone(),
                    keys: KeySet::Sorted(Vec::new()),
                });
                continue;
            };
            let span = hi as i128 - lo as i128 + 1;
            let bits = span <= most_keys && (span as u128).div_ceil(8) <= bytes_left as u128;
            let limit = (most_keys.min((bytes_left / 8) as i128) as usize).min(1 << 40);
            if !bits && limit == 0 {
                remote.push(i);
                continue;
            }
            // Text COPY: one decimal a line, far cheaper to take apart than a row each.
            let sql = if bits {
                format!(
                    "COPY (SELECT {c}::int8 FROM {} WHERE {c} IS NOT NULL) TO STDOUT",
                    f.parent
                )
            } else {
                format!(
                    "COPY (SELECT {c}::int8 FROM {} WHERE {c} IS NOT NULL LIMIT {}) TO STDOUT",
                    f.parent,
                    limit + 1
                )
            };
            let mut set = if bits {
                KeySet::empty_bits(lo, span as usize)
            } else {
                // Untouched capacity costs no memory; it saves the doublings.
                KeySet::Sorted(Vec::with_capacity(limit + 1))
            };
            let mut usable = true;
            {
                use futures_util::StreamExt;
                let mut stream = conn.copy_out_raw(&sql).await.map_err(q_err(what.clone()))?;
                let mut partial: Option<(bool, i64)> = None;
                let mut keys: Vec<i64> = Vec::new();
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(q_err(what.clone()))?;
                    keys.clear();
                    parse_key_lines(&chunk, &mut partial, &mut keys).map_err(|e| SinkError::Query {
                        what: what.clone(),
                        cause: sqlx::Error::Protocol(e),
                    })?;
                    // A key outside the ends read before (a parent row added since): the copy
                    // would be wrong, so the index answers instead.
                    usable &= set.extend(&keys);
                }
            }
            if !usable || (!bits && set.len() > limit) {
                remote.push(i);
                continue;
            }
            set.finish();
            bytes_left = bytes_left.saturating_sub(set.bytes());
            tracing::debug!(
                "{}: parent check of {} against {} key(s) of {} held in memory ({} bytes)",
                self.table.display(),
                f.name,
                set.len(),
                f.parent_name,
                set.bytes()
            );
            local.push(LocalKeys {
                fk: i,
                field,
                ty: self.cols[field].ty.clone(),
                keys: set,
            });
        }
        let remote = if local.is_empty() || remote.is_empty() {
            None
        } else {
            let fks: Vec<ForeignKeyInfo> = remote.iter().map(|&i| self.fks[i].clone()).collect();
            ParentCheck::new(self.index, &self.table, &self.cols, &fks).map(|c| (c, remote.clone()))
        };
        if local.is_empty() {
            return Ok(LocalSplit { local, remote: None });
        }
        Ok(LocalSplit { local, remote })
    }

    /// The rows of `batch` (positions in it) that have no parent. `fresh`: nothing was run on
    /// `conn` for this check yet.
    pub async fn check(
        &mut self,
        conn: &mut PgConnection,
        batch: &Encoded,
        fresh: &mut bool,
    ) -> Result<Vec<Refused>, SinkError> {
        if batch.rows.is_empty() {
            return Ok(Vec::new());
        }
        if self.split.is_none() {
            let split = if self.local_budget > 0 {
                self.split_off_local(conn).await?
            } else {
                LocalSplit {
                    local: Vec::new(),
                    remote: None,
                }
            };
            self.split = Some(std::sync::Arc::new(split));
        }
        let split = self.split.clone().unwrap_or_else(|| {
            std::sync::Arc::new(LocalSplit {
                local: Vec::new(),
                remote: None,
            })
        });
        let mut found = if split.local.is_empty() {
            self.found(conn, batch, fresh).await?
        } else {
            let mut found = Vec::new();
            if let Some((remote, positions)) = &split.remote {
                for (ord, fk, v) in remote.found(conn, batch, fresh).await? {
                    found.push((ord, positions[fk as usize] as i32, v));
                }
            }
            let bad = || SinkError::Query {
                what: "checking rows for their parents".into(),
                cause: sqlx::Error::Protocol("a malformed encoded row".into()),
            };
            let mut one = Vec::with_capacity(1);
            for l in &split.local {
                for (ord, r) in batch.rows.iter().enumerate() {
                    one.clear();
                    fields_at(&batch.buf[r.clone()], &[l.field], &mut one).map_err(|_| bad())?;
                    let Some(Some(b)) = one.first().copied() else { continue };
                    let k = match l.ty {
                        PgType::Int2 => b.try_into().ok().map(|b| i16::from_be_bytes(b) as i64),
                        PgType::Int4 => b.try_into().ok().map(|b| i32::from_be_bytes(b) as i64),
                        _ => b.try_into().ok().map(i64::from_be_bytes),
                    }
                    .ok_or_else(bad)?;
                    if !l.keys.contains(k) {
                        found.push((ord as i64 + 1, l.fk as i32, Some(k.to_string())));
                    }
                }
            }
            found
        };
        found.sort_by_key(|(ord, fk, _)| (*ord, *fk));
        let all: Vec<usize> = (0..batch.rows.len()).collect();
        Ok(refusals(found, &all, &self.fks))
    }

    /// What the server finds: (1-based row, foreign key, the key's values as text).
    async fn found(
        &self,
        conn: &mut PgConnection,
        batch: &Encoded,
        fresh: &mut bool,
    ) -> Result<Vec<(i64, i32, Option<String>)>, SinkError> {
        let what = "checking rows for their parents";
        let malformed = |e: String| SinkError::Query {
            what: what.into(),
            cause: sqlx::Error::Protocol(e),
        };
        if *fresh {
            // The anti-join must probe each parent's key index per row; a hash of a whole
            // parent table per batch is what the planner may choose for an unanalysed stage.
            // This session runs nothing else.
            execute(conn, "SET enable_hashjoin = off; SET enable_mergejoin = off", what).await?;
        }
        let found: Vec<(i64, i32, Option<String>)> = if self.arrays {
            *fresh = false;
            let mut q = sqlx::query_as(AssertSqlSafe(self.query_sql.clone()));
            let mut values: Vec<Vec<Option<&[u8]>>> = vec![Vec::with_capacity(batch.rows.len()); self.fields.len()];
            for r in &batch.rows {
                let mut fields = Vec::with_capacity(self.fields.len());
                fields_at(&batch.buf[r.clone()], &self.fields, &mut fields).map_err(malformed)?;
                for (v, f) in values.iter_mut().zip(fields) {
                    v.push(f);
                }
            }
            for (t, v) in self.types.iter().zip(&values) {
                q = match t {
                    PgType::Int2 => q.bind(
                        v.iter()
                            .map(|f| f.and_then(|b| b.try_into().ok()).map(i16::from_be_bytes))
                            .collect::<Vec<_>>(),
                    ),
                    PgType::Int4 => q.bind(
                        v.iter()
                            .map(|f| f.and_then(|b| b.try_into().ok()).map(i32::from_be_bytes))
                            .collect::<Vec<_>>(),
                    ),
                    PgType::Int8 => q.bind(
                        v.iter()
                            .map(|f| f.and_then(|b| b.try_into().ok()).map(i64::from_be_bytes))
                            .collect::<Vec<_>>(),
                    ),
                    _ => q.bind(
                        v.iter()
                            .map(|f| f.map(|b| String::from_utf8_lossy(b).into_owned()))
                            .collect::<Vec<_>>(),
                    ),
                };
            }
            q.fetch_all(&mut *conn).await.map_err(q_err(what))?
        } else {
            let begin = if *fresh {
                format!("BEGIN; {}", self.create_sql)
            } else {
                "BEGIN".to_string()
            };
            execute(conn, &begin, what).await?;
            *fresh = false;
            let mut data = Vec::with_capacity(COPY_HEADER.len() + batch.rows.len() * (8 + 12 * self.fields.len()) + 2);
            data.extend_from_slice(COPY_HEADER);
            let mut fields = Vec::with_capacity(self.fields.len());
            for (ord, r) in batch.rows.iter().enumerate() {
                data.extend_from_slice(&(1 + self.fields.len() as i16).to_be_bytes());
                data.extend_from_slice(&4i32.to_be_bytes());
                data.extend_from_slice(&(ord as i32 + 1).to_be_bytes());
                fields.clear();
                fields_at(&batch.buf[r.clone()], &self.fields, &mut fields).map_err(malformed)?;
                for f in &fields {
                    match f {
                        None => data.extend_from_slice(&(-1i32).to_be_bytes()),
                        Some(b) => {
                            data.extend_from_slice(&(b.len() as i32).to_be_bytes());
                            data.extend_from_slice(b);
                        }
                    }
                }
            }
            data.extend_from_slice(&(-1i16).to_be_bytes());
            let mut copy = conn.copy_in_raw(&self.copy_sql).await.map_err(q_err(what))?;
            if let Err(e) = copy.send(data).await {
                let _ = copy.abort("send failed").await;
                return Err(q_err(what)(e));
            }
            copy.finish().await.map_err(q_err(what))?;
            // The commit empties the stage.
            let rows = sqlx::raw_sql(AssertSqlSafe(format!("{}; COMMIT", self.query_sql)))
                .fetch_all(&mut *conn)
                .await
                .map_err(q_err(what))?;
            let mut found = Vec::with_capacity(rows.len());
            for r in &rows {
                found.push((
                    r.try_get(0).map_err(q_err(what))?,
                    r.try_get(1).map_err(q_err(what))?,
                    r.try_get(2).map_err(q_err(what))?,
                ));
            }
            found
        };
        Ok(found)
    }
}

/// The fields at `fields` (ascending positions) of one binary COPY tuple (`None`: NULL).
fn fields_at<'a>(tuple: &'a [u8], fields: &[usize], out: &mut Vec<Option<&'a [u8]>>) -> Result<(), String> {
    let bad = || "a malformed encoded row".to_string();
    let mut at = 2;
    let mut want = fields.iter().peekable();
    let mut i = 0;
    while let Some(&&f) = want.peek() {
        let len_bytes: [u8; 4] = tuple.get(at..at + 4).ok_or_else(bad)?.try_into().map_err(|_| bad())?;
        let len = i32::from_be_bytes(len_bytes);
        let body = usize::try_from(len).unwrap_or(0);
        if i == f {
            out.push(if len < 0 {
                None
            } else {
                Some(tuple.get(at + 4..at + 4 + body).ok_or_else(bad)?)
            });
            want.next();
        }
        at += 4 + body;
        i += 1;
    }
    Ok(())
}

async fn copy_rows(
    conn: &mut PgConnection,
    loader: &Loader,
    batch: &Encoded,
    idx: &[usize],
) -> Result<Stored, sqlx::Error> {
    if let Some(st) = &loader.staging {
        sqlx::raw_sql(AssertSqlSafe(st.prepare_sql.clone()))
            .execute(&mut *conn)
            .await?;
    }
    let copied = start_rows(conn, &loader.copy_sql, batch, idx).await?.finish().await?;
    stored_after_copy(conn, loader, copied).await
}

/// One COPY of the rows `idx` (positions in the batch, ascending), finished: how many it stored.
async fn send_rows(
    conn: &mut PgConnection,
    copy_sql: &str,
    batch: &Encoded,
    idx: &[usize],
) -> Result<u64, sqlx::Error> {
    start_rows(conn, copy_sql, batch, idx).await?.finish().await
}

/// Sends the rows `idx` (positions in the batch, ascending) in one COPY, not yet finished.
/// Runs of rows that lie next to each other in the buffer are sent straight from it, in pieces
/// of about 1 MiB.
async fn start_rows<'c>(
    conn: &'c mut PgConnection,
    copy_sql: &str,
    batch: &Encoded,
    idx: &[usize],
) -> Result<sqlx::postgres::PgCopyIn<&'c mut PgConnection>, sqlx::Error> {
    let mut copy = conn.copy_in_raw(copy_sql).await?;
    let mut chunk = Vec::with_capacity(SEND_BYTES.min(batch.buf.len() + 64));
    chunk.extend_from_slice(COPY_HEADER);
    let mut k = 0;
    while k < idx.len() {
        let mut j = k;
        // A run of rows whose bytes follow each other (rows taken out leave gaps).
        while j + 1 < idx.len() && batch.rows[idx[j + 1]].start == batch.rows[idx[j]].end {
            j += 1;
        }
        let (start, end) = (batch.rows[idx[k]].start, batch.rows[idx[j]].end);
        let mut pos = start;
        while pos < end {
            let take = (end - pos).min(SEND_BYTES.saturating_sub(chunk.len()).max(1));
            chunk.extend_from_slice(&batch.buf[pos..pos + take]);
            pos += take;
            if chunk.len() >= SEND_BYTES
                && let Err(e) = copy.send(std::mem::take(&mut chunk)).await
            {
                let _ = copy.abort("send failed").await;
                return Err(e);
            }
        }
        k = j + 1;
    }
    chunk.extend_from_slice(&(-1i16).to_be_bytes());
    if let Err(e) = copy.send(chunk).await {
        let _ = copy.abort("send failed").await;
        return Err(e);
    }
    Ok(copy)
}

/// Whether an error with this SQLSTATE can follow one row: the data (classes 21, 22, 23), a
/// limit one value breaks (54: an index row too large), a trigger or function that raises
/// for it (P0, 38, 39, 2F, 27), a view's CHECK OPTION (44), an identifier value too long
/// (42622). A batch refused with one of these is split until the row stands alone, and that
/// row alone is rejected with PostgreSQL's words; the rest loads. Everything else (the
/// connection, the server, resources, the schema, permissions, locks, timeouts) stops the
/// run: it would fail every row alike.
pub fn is_row_sqlstate(code: &str) -> bool {
    ["21", "22", "23", "54", "P0", "38", "39", "2F", "27", "44"]
        .iter()
        .any(|class| code.starts_with(class))
        || code == "42622"
}

/// Whether PostgreSQL refused the statement for a row it was given (see [`is_row_sqlstate`]),
/// not for the statement or the connection.
pub fn is_data_error(e: &sqlx::Error) -> bool {
    data_error(e).is_some()
}

/// For errors caused by a row: the reason and the column, if PostgreSQL names one.
fn data_error(e: &sqlx::Error) -> Option<(String, Option<String>)> {
    let db = e.as_database_error()?;
    let pg = db.try_downcast_ref::<PgDatabaseError>()?;
    let code = pg.code();
    if !is_row_sqlstate(code) {
        return None;
    }
    let column = pg.column().map(str::to_string).or_else(|| {
        // "COPY t, line 1, column c: ..." names the column for conversion errors.
        pg.r#where()
            .and_then(|w| w.split(", column ").nth(1))
            .map(|c| c.split(':').next().unwrap_or(c).trim().to_string())
    });
    // Constraint violations say "Key (customer_id)=(42) is not present ...".
    let column = column.or_else(|| {
        let d = pg.detail()?.strip_prefix("Key (")?;
        Some(d[..d.find(")=(")?].to_string())
    });
    let mut reason = pg.message().to_string();
    if let Some(d) = pg.detail() {
        reason.push_str(": ");
        reason.push_str(d);
    }
    Some((format!("{reason} (SQLSTATE {code})"), column))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lines_parse_across_chunks_and_key_sets_answer_like_a_search() {
        let text = format!("1\n-5\n{}\n{}\n42\n", i64::MAX, i64::MIN);
        for cut in 0..text.len() {
            let (mut partial, mut keys) = (None, Vec::new());
            parse_key_lines(&text.as_bytes()[..cut], &mut partial, &mut keys).unwrap();
            parse_key_lines(&text.as_bytes()[cut..], &mut partial, &mut keys).unwrap();
            assert_eq!(keys, [1, -5, i64::MAX, i64::MIN, 42], "cut at {cut}");
            assert!(partial.is_none());
        }
        assert!(parse_key_lines(b"12x\n", &mut None, &mut Vec::new()).is_err());
        assert!(parse_key_lines(b"99999999999999999999\n", &mut None, &mut Vec::new()).is_err());
        // A bitmap over the keys' span and a sorted list answer as a search would.
        let dense: Vec<i64> = (-100..900).filter(|k| k % 3 != 0).collect();
        let sparse: Vec<i64> = vec![i64::MIN, -7, 0, 3, 1 << 40, i64::MAX];
        let mut bits = KeySet::empty_bits(-100, 1000);
        assert!(bits.extend(&dense[..10]) && bits.extend(&dense[5..]));
        bits.finish();
        let mut sorted = KeySet::Sorted(Vec::new());
        assert!(sorted.extend(&sparse[3..]) && sorted.extend(&sparse[..4]));
        sorted.finish();
        for (set, keys) in [(bits, dense), (sorted, sparse)] {
            assert_eq!(set.len(), keys.len());
            for k in (-300..1200)
                .chain(keys.iter().copied())
                .chain([i64::MIN + 1, i64::MAX - 1])
            {
                assert_eq!(set.contains(k), keys.contains(&k), "{k}");
            }
        }
        // A key outside a bitmap's span (a parent row added after its ends were read).
        let mut bits = KeySet::empty_bits(10, 64);
        assert!(!bits.extend(&[9]) && !bits.extend(&[74]) && bits.extend(&[10, 73]));
        assert_eq!(KeySet::empty_bits(i64::MIN, 1).bytes(), 8);
        assert!(!KeySet::Sorted(Vec::new()).contains(0));
    }

    #[test]
    fn held_rows_come_back_keys_first_and_child_keys_by_their_constraint_name() {
        let info = serde_json::json!({ "name": "skid_job_fk" });
        let mut names = [
            ("fk_parent", None),
            ("index skid_job_idx", None),
            ("child public.skid skid_job_fk", Some(&info)),
            ("key job_pkey", None),
        ];
        names.sort_by_key(|(n, i)| HeldKind::of(n, *i).rank());
        let kinds: Vec<HeldKind> = names.iter().map(|(n, i)| HeldKind::of(n, *i)).collect();
        assert_eq!(
            kinds,
            [
                HeldKind::Key("job_pkey"),
                HeldKind::Index("skid_job_idx"),
                HeldKind::ForeignKey("fk_parent"),
                HeldKind::ChildForeignKey("skid_job_fk"),
            ]
        );
    }

    /// One binary COPY tuple of the given fields (`None`: NULL).
    fn tuple(fields: &[Option<&[u8]>]) -> Vec<u8> {
        let mut t = (fields.len() as i16).to_be_bytes().to_vec();
        for f in fields {
            match f {
                None => t.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(b) => {
                    t.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    t.extend_from_slice(b);
                }
            }
        }
        t
    }

    #[test]
    fn rows_taken_out_of_a_batch_leave_no_bytes_behind() {
        let rows: Vec<Vec<u8>> = (0..4u8).map(|i| tuple(&[Some(&[i][..]), None])).collect();
        let mut enc = Encoded::default();
        for r in &rows {
            let at = enc.buf.len();
            enc.buf.extend_from_slice(r);
            enc.rows.push(at..enc.buf.len());
        }
        let whole = enc.buf.clone();
        let kept = Encoded {
            buf: enc.buf.clone(),
            rows: vec![enc.rows[0].clone(), enc.rows[2].clone(), enc.rows[3].clone()],
        };
        assert_eq!(
            kept.into_copy_data(),
            [rows[0].clone(), rows[2].clone(), rows[3].clone()].concat()
        );
        assert_eq!(enc.into_copy_data(), whole);
    }

    #[test]
    fn key_fields_are_found_in_encoded_rows() {
        let t = tuple(&[Some(b"17"), None, Some(b"abc"), Some(&[0, 0, 0, 9])]);
        let mut out = Vec::new();
        fields_at(&t, &[1, 2, 3], &mut out).unwrap();
        assert_eq!(out, vec![None, Some(&b"abc"[..]), Some(&[0u8, 0, 0, 9][..])]);
        out.clear();
        fields_at(&t, &[0], &mut out).unwrap();
        assert_eq!(out, vec![Some(&b"17"[..])]);
        // A cut-off row is an error, not a panic.
        out.clear();
        assert!(fields_at(&t[..t.len() - 2], &[3], &mut out).is_err());
    }

    #[test]
    fn loader_sql_quotes_everything() {
        let t = TargetTable::parse("app.User Name");
        let cols = vec!["id".to_string(), "order".to_string()];
        let l = Loader::new(0, &t, &cols, OnConflict::Error, &[]);
        assert_eq!(
            l.copy_sql,
            "COPY \"app\".\"User Name\" (\"id\", \"order\") FROM STDIN (FORMAT binary)"
        );
        let u = Loader::new(3, &t, &cols, OnConflict::Update, &["id".to_string()]);
        let st = u.staging.unwrap();
        assert_eq!(
            st.insert_sql,
            "WITH m AS (INSERT INTO \"app\".\"User Name\" (\"id\", \"order\") SELECT \"id\", \"order\" FROM pg_temp.\"migrate_stage_3\" ON CONFLICT (\"id\") DO UPDATE SET \"order\" = EXCLUDED.\"order\" RETURNING (xmax = 0) AS fresh) SELECT count(*), count(*) FILTER (WHERE NOT fresh) FROM m"
        );
        let s = Loader::new(
            3,
            &TargetTable::parse("x\"; DROP TABLE y; --"),
            &cols,
            OnConflict::Skip,
            &["id".to_string()],
        );
        assert!(
            s.staging
                .unwrap()
                .insert_sql
                .contains("INTO \"x\"\"; DROP TABLE y; --\" (\"id\", \"order\")")
        );
    }
}
