//! `deletes = "detect" | "soft"`: target rows whose source row is gone are deleted, or flagged.

use crate::plan::quote_ident;
use crate::sink::{self, pgtype::PgType};
use crate::source::resilient::ReadPlan;
use crate::telemetry::Bars;
use crate::validate::pre::Bound;
use anyhow::{Context, Result};
use sqlx::{AssertSqlSafe, PgConnection};

/// Finds the gone rows (key sets compared by hash ranges) and deletes or flags them in one
/// transaction. Returns how many.
pub async fn apply(source: &str, conn: &mut PgConnection, b: &Bound, plan: &ReadPlan, bars: &Bars) -> Result<u64> {
    let e = &b.entity;
    let (names, types, gone) = crate::validate::deep::gone_keys(source, conn, b, plan, bars).await?;
    if gone.is_empty() {
        return Ok(0);
    }
    let stage = "migrate_gone".to_string();
    let cols: Vec<String> = names.iter().map(|n| quote_ident(n)).collect();
    // The keys come in their comparable form: numeric keys as decimal text.
    let mut prepare = format!(
        "DROP TABLE IF EXISTS pg_temp.{0}; CREATE TEMP TABLE {0} AS SELECT {1} FROM {2} WITH NO DATA;",
        quote_ident(&stage),
        cols.join(", "),
        e.target.sql()
    );
    let mut join = Vec::new();
    for (c, t) in cols.iter().zip(&types) {
        if matches!(t, PgType::Numeric(_)) {
            prepare.push_str(&format!(
                " ALTER TABLE pg_temp.{} ALTER COLUMN {c} TYPE text;",
                quote_ident(&stage)
            ));
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
                "UPDATE {} t SET {c} = {flag} FROM pg_temp.{} d WHERE {}",
                e.target.sql(),
                quote_ident(&stage),
                join.join(" AND ")
            )
        }
        _ => format!(
            "DELETE FROM {} t USING pg_temp.{} d WHERE {}",
            e.target.sql(),
            quote_ident(&stage),
            join.join(" AND ")
        ),
    };
    let what = format!("{}: applying deletes", e.name);
    sink::execute(conn, "BEGIN", "starting a transaction").await?;
    sqlx::raw_sql(AssertSqlSafe(prepare))
        .execute(&mut *conn)
        .await
        .with_context(|| what.clone())?;
    let mut data = sink::COPY_HEADER.to_vec();
    for t in &gone {
        data.extend_from_slice(t);
    }
    data.extend_from_slice(&(-1i16).to_be_bytes());
    let mut copy = conn
        .copy_in_raw(&format!(
            "COPY pg_temp.{} FROM STDIN (FORMAT binary)",
            quote_ident(&stage)
        ))
        .await
        .with_context(|| what.clone())?;
    copy.send(data).await.with_context(|| what.clone())?;
    copy.finish().await.with_context(|| what.clone())?;
    let n = sqlx::raw_sql(AssertSqlSafe(change))
        .execute(&mut *conn)
        .await
        .with_context(|| what.clone())?
        .rows_affected();
    sink::execute(conn, "COMMIT", "committing").await?;
    tracing::info!(
        "{}: {n} row(s) gone from the source {} in {}",
        e.name,
        if e.deletes == crate::config::Deletes::Soft {
            "flagged"
        } else {
            "deleted"
        },
        e.target.display()
    );
    Ok(n)
}
