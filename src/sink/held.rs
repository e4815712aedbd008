//! Keys, indexes and foreign keys taken off a table for its load and put back after it: each
//! recorded in `migrate.held_constraints` in the same transaction as its drop, so no crash can
//! lose one; comments recorded with them; foreign keys validated when they come back.

use super::catalog::{ForeignKeyInfo, foreign_keys, orphan_rows};
use super::{SinkError, execute, q_err};
use crate::plan::{TargetTable, quote_ident};
use crate::sqlstate::{self, SqlState, connection_lost};
use sqlx::{AssertSqlSafe, PgConnection};

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
        let held_row = HeldRecord {
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
        let held_row = HeldRecord {
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
        let held_row = HeldRecord {
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
        let held_row = HeldRecord {
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
                "{entity}: key {name} stays in place for the load: {}",
                crate::telemetry::chain(&e)
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
struct HeldRecord<'a> {
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
    row: HeldRecord<'_>,
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
                Err(SinkError::Query { cause, .. }) if sqlstate::is(&cause, SqlState::UNIQUE_VIOLATION) => {
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
    // PostgreSQL checks the rows with an anti-join of the table against its parent. Before
    // version 16 a hash anti-join must hash the parent, so for a parent larger than the table
    // (a job's coil, say) a merge join over the parent's key index costs less: measured here
    // 160 ms against 240 ms for 238 k rows against 464 k parents. The sizes are the
    // catalog's (known once the tables' keys are built); unknown sizes leave the plan alone.
    let merge = sqlx::query_scalar::<_, bool>(
        "SELECT c.reltuples >= 0 AND p.reltuples > c.reltuples AND current_setting('server_version_num')::int < 160000
         FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid
         WHERE k.conrelid = to_regclass($1) AND k.conname = $2",
    )
    .bind(table_sql)
    .bind(constraint)
    .fetch_optional(&mut *conn)
    .await
    .map_err(q_err(format!(
        "reading the sizes behind foreign key {constraint} of {table_sql}"
    )))?
    .unwrap_or(false);
    if merge {
        execute(
            conn,
            "SET enable_hashjoin = off",
            "preparing a foreign key's validation",
        )
        .await?;
    }
    let validated = sqlx::raw_sql(AssertSqlSafe(validate)).execute(&mut *conn).await;
    if merge && !validated.as_ref().is_err_and(connection_lost) {
        execute(conn, "RESET enable_hashjoin", "after a foreign key's validation").await?;
    }
    let Err(e) = validated else {
        return Ok(None);
    };
    if connection_lost(&e) || sqlstate::is(&e, SqlState::LOCK_NOT_AVAILABLE) {
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

async fn forget_held(conn: &mut PgConnection, entity: &str, name: &str) -> Result<(), SinkError> {
    sqlx::query("DELETE FROM migrate.held_constraints WHERE entity = $1 AND name = $2")
        .bind(entity)
        .bind(name)
        .execute(conn)
        .await
        .map_err(q_err(format!("restoring {name} of {entity}")))?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
