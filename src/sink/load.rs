//! One batch into its table: the `Loader` (COPY, or a staging table and an upsert for
//! `on_conflict = skip|update`), what PostgreSQL stored by its own counts, and the rows it
//! refused, isolated by splitting the batch under savepoints until each stands alone.

use super::catalog::{ForeignKeyInfo, foreign_keys};
use super::copy::{Encoded, send_rows, start_rows};
use super::{SinkError, execute, q_err, undo_savepoint};
use crate::config::OnConflict;
use crate::plan::{TargetTable, quote_ident};
use crate::sqlstate::SqlState;
use sqlx::postgres::PgDatabaseError;
use sqlx::{AssertSqlSafe, PgConnection};
use std::ops::Range;

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

/// Undoes what the load did in the caller's transaction, back to [`LOAD_SAVEPOINT`] (which
/// stays, for the next try).
async fn back_to_start(conn: &mut PgConnection) -> Result<(), SinkError> {
    execute(
        conn,
        "ROLLBACK TO SAVEPOINT migrate_load",
        "rolling back a refused batch",
    )
    .await
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

/// The savepoint the caller sets right after its BEGIN (in the same message) for [`load`].
pub const LOAD_SAVEPOINT: &str = "SAVEPOINT migrate_load";

/// Loads the batch inside the caller's transaction, which the caller owns (begins and commits)
/// and opens with [`LOAD_SAVEPOINT`] just after BEGIN. The whole batch is tried first in one
/// COPY. If PostgreSQL refuses a row (see [`SqlState::follows_one_row`]), the load goes back
/// to that savepoint and tries again more carefully: rows without a parent (foreign keys) are
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
    back_to_start(conn).await?;
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
                Err(e) if data_error(&e).is_some() => back_to_start(conn).await?,
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
pub(super) fn refusals(found: Vec<(i64, i32, Option<String>)>, idx: &[usize], fks: &[ForeignKeyInfo]) -> Vec<Refused> {
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

/// Whether PostgreSQL refused the statement for a row it was given (see
/// [`SqlState::follows_one_row`]),
/// not for the statement or the connection.
pub fn is_data_error(e: &sqlx::Error) -> bool {
    data_error(e).is_some()
}

/// For errors caused by a row: the reason and the column, if PostgreSQL names one.
pub(super) fn data_error(e: &sqlx::Error) -> Option<(String, Option<String>)> {
    let db = e.as_database_error()?;
    let pg = db.try_downcast_ref::<PgDatabaseError>()?;
    let code = pg.code();
    if !SqlState::parse(code).is_some_and(|s| s.follows_one_row()) {
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
