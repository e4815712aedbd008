//! `deletes = "detect" | "soft"`: target rows whose source row is gone are deleted, or flagged,
//! and the rejects of rows gone from the source are forgotten.

use crate::bind::Bound;
use crate::plan::quote_ident;
use crate::sink::{self, pgtype::PgType};
use crate::telemetry::Bars;
use crate::validate::deep::Gone;
use anyhow::{Context, Result};
use sqlx::{AssertSqlSafe, PgConnection};

/// Finds the gone rows and rejects (key sets compared by hash ranges). Reads only; runs
/// outside a transaction.
pub async fn find(source: &str, conn: &mut PgConnection, b: &Bound, bars: &Bars) -> Result<Gone> {
    Ok(crate::validate::deep::gone_keys(source, conn, b, bars).await?)
}

/// What [`apply`] changed.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Applied {
    /// Target rows deleted or flagged.
    pub rows: u64,
    /// Rejects forgotten because their source row is gone.
    pub rejects: u64,
}

/// Deletes or flags the gone rows and forgets the gone rejects, inside the caller's transaction
/// (the one that closes the pass, so its record counts exactly what was deleted).
pub async fn apply(conn: &mut PgConnection, b: &Bound, gone: &Gone) -> Result<Applied> {
    let e = &b.entity;
    let what = format!("{}: applying deletes", e.name);
    let mut applied = Applied::default();
    if !gone.stale_rejects.is_empty() {
        applied.rejects =
            sqlx::query("DELETE FROM migrate.rejects WHERE entity = $1 AND key_json = ANY($2::text[]::jsonb[])")
                .bind(&e.name)
                .bind(&gone.stale_rejects)
                .execute(&mut *conn)
                .await
                .with_context(|| format!("{}: forgetting the rejects of rows gone from the source", e.name))?
                .rows_affected();
    }
    if gone.keys.is_empty() {
        return Ok(applied);
    }
    let stage = quote_ident("migrate_gone");
    let cols: Vec<String> = gone.names.iter().map(|n| quote_ident(n)).collect();
    // The keys come in their comparable form: numeric keys as decimal text.
    let mut prepare = format!(
        "DROP TABLE IF EXISTS pg_temp.{stage}; CREATE TEMP TABLE {stage} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA;",
        cols.join(", "),
        e.target.sql()
    );
    let mut join = Vec::new();
    for (c, t) in cols.iter().zip(&gone.types) {
        if matches!(t, PgType::Numeric(_)) {
            prepare.push_str(&format!(" ALTER TABLE pg_temp.{stage} ALTER COLUMN {c} TYPE text;"));
            join.push(format!("t.{c} = d.{c}::numeric"));
        } else {
            join.push(format!("t.{c} = d.{c}"));
        }
    }
    let change = match (&e.deletes, &e.soft_delete_column) {
        (crate::config::Deletes::Soft, Some(col)) => {
            let flag = match crate::validate::deep::soft_delete_filter(conn, e).await? {
                Some(f) if f.ends_with("IS NOT TRUE") => "true",
                _ => "now()",
            };
            let c = quote_ident(col);
            format!(
                "UPDATE {} t SET {c} = {flag} FROM pg_temp.{stage} d WHERE {}",
                e.target.sql(),
                join.join(" AND ")
            )
        }
        _ => format!(
            "DELETE FROM {} t USING pg_temp.{stage} d WHERE {}",
            e.target.sql(),
            join.join(" AND ")
        ),
    };
    sqlx::raw_sql(AssertSqlSafe(prepare))
        .execute(&mut *conn)
        .await
        .with_context(|| what.clone())?;
    let data = sink::copy::copy_data(gone.keys.iter().map(Vec::as_slice));
    let mut copy = conn
        .copy_in_raw(&format!("COPY pg_temp.{stage} FROM STDIN (FORMAT binary)"))
        .await
        .with_context(|| what.clone())?;
    copy.send(data).await.with_context(|| what.clone())?;
    copy.finish().await.with_context(|| what.clone())?;
    applied.rows = sqlx::raw_sql(AssertSqlSafe(change))
        .execute(&mut *conn)
        .await
        .with_context(|| what.clone())?
        .rows_affected();
    Ok(applied)
}
