//! `migrate sync` (trickle migration) and `migrate status`.
//!
//! A pass over an incremental entity reads the source rows whose watermark column lies in
//! `(stored − overlap, newest at the pass's start]`, in key order, and upserts them through the
//! ordinary pipeline: every batch commits with the pass's progress row (`<entity>@sync`), so a
//! killed pass resumes after its last committed key with the same window. The new watermark
//! (the newest value seen when the pass started, as exact text) is stored when the pass ends,
//! in the transaction that closes its row in `migrate.runs`.

pub mod deletes;
pub mod watermark;

use crate::bind::Bound;
use crate::checkpoint::{self, Progress, sync_progress_name};
use crate::pipeline::{self, LoadCtx, Mode};
use crate::plan::Entity;
use crate::sink;
use crate::source::{self, Window, WmKind};
use anyhow::{Context, Result};
use serde::Serialize;
use sqlx::PgConnection;
use std::time::Instant;

/// One entity's sync state row.
#[derive(Debug, Clone, Default)]
pub(crate) struct State {
    pub(crate) watermark: Option<String>,
    pub(crate) kind: Option<WmKind>,
    pub(crate) pass_id: Option<i64>,
    pub(crate) above: Option<String>,
    pub(crate) upto: Option<String>,
    /// UTC, ISO 8601.
    pub(crate) last_pass_at: Option<String>,
}

/// watermark, kind, pass id, window above, window up to, last pass (UTC text).
type StateRow = (
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

pub(crate) async fn read_state(conn: &mut PgConnection, entity: &str) -> Result<Option<State>> {
    let row: Option<StateRow> = sqlx::query_as(
        "SELECT watermark, watermark_kind, pass_id, pass_above, pass_upto,
                to_char(last_pass_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
         FROM migrate.sync_state WHERE entity = $1",
    )
    .bind(entity)
    .fetch_optional(&mut *conn)
    .await
    .with_context(|| format!("reading the sync state of {entity}"))?;
    Ok(row.map(|(watermark, kind, pass_id, above, upto, last_pass_at)| State {
        watermark,
        kind: kind.as_deref().and_then(WmKind::parse),
        pass_id,
        above,
        upto,
        last_pass_at,
    }))
}

/// The newest watermark in the source for `e`, read in the source's own thread.
pub(crate) async fn newest(source: &str, e: &Entity) -> Result<Option<(String, WmKind)>> {
    let (relation, filter) = (e.relation.clone(), e.filter.clone());
    let column = e.incremental.clone().unwrap_or_default();
    let name = e.name.clone();
    source::with_source(source, move |s| s.newest(&relation, filter.as_deref(), &column))
        .await
        .with_context(|| {
            format!(
                "{name}: reading the newest {} in the source",
                e.incremental.as_deref().unwrap_or("")
            )
        })
}

/// Whether a full load of `e` still has to record where its first sync pass starts (an
/// incremental entity with no sync state yet). A target step: retried on a new connection.
pub async fn needs_start(conn: &mut PgConnection, e: &Entity) -> Result<bool, crate::sink::SinkError> {
    if e.incremental.is_none() {
        return Ok(false);
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM migrate.sync_state WHERE entity = $1")
        .bind(&e.name)
        .fetch_one(&mut *conn)
        .await
        .map_err(crate::sink::q_err(format!("reading the sync state of {}", e.name)))?;
    Ok(n == 0)
}

/// Records `newest` (read from the source *before* the load's first row: rows changed during a
/// long load have a newer watermark, so the first sync moves them) as where the first sync pass
/// of `e` starts. A target step: retried on a new connection, and a second call changes nothing.
pub async fn store_start(
    conn: &mut PgConnection,
    e: &Entity,
    newest: &Option<(String, WmKind)>,
) -> Result<(), crate::sink::SinkError> {
    sqlx::query(
        "INSERT INTO migrate.sync_state (entity, watermark, watermark_kind) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(&e.name)
    .bind(newest.as_ref().map(|(t, _)| t.clone()))
    .bind(newest.as_ref().map(|(_, k)| k.as_str()))
    .execute(&mut *conn)
    .await
    .map_err(crate::sink::q_err(format!(
        "recording the starting watermark of {}",
        e.name
    )))?;
    tracing::info!(
        "{}: incremental on {}; `migrate sync` starts after {}",
        e.name,
        e.incremental.as_deref().unwrap_or(""),
        newest
            .as_ref()
            .map_or("the beginning (no rows yet)".to_string(), |(t, _)| t.clone())
    );
    Ok(())
}

/// What one pass did for one entity.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PassStats {
    pub entity: String,
    pub read: u64,
    pub upserted: u64,
    pub rejected: u64,
    pub deleted: u64,
    pub watermark_before: Option<String>,
    pub watermark_after: Option<String>,
    pub seconds: f64,
    pub resumed: bool,
}

/// One pass over every incremental entity, in dependency order.
pub(crate) async fn one_pass(
    ctx: &LoadCtx<'_>,
    conn: &mut PgConnection,
    bound: &[Bound],
    overlap: u64,
) -> Result<(i64, Vec<PassStats>)> {
    let pass_id: i64 = sqlx::query_scalar("SELECT nextval('migrate.pass_seq')")
        .fetch_one(&mut *conn)
        .await
        .context("numbering the sync pass")?;
    // Rows of passes whose process ended without a word (killed): say so in the audit trail.
    sqlx::query(
        "UPDATE migrate.runs SET finished = now(), error = 'did not finish (the process ended); resumed by pass ' || $1
         WHERE finished IS NULL",
    )
    .bind(pass_id)
    .execute(&mut *conn)
    .await
    .context("closing the records of interrupted passes")?;
    let mut out = Vec::new();
    for b in bound {
        match pass_entity(ctx, conn, b, pass_id, overlap).await {
            Ok(s) => out.push(s),
            Err(e) => {
                let text = crate::telemetry::chain(e.as_ref());
                let _ = sqlx::query(
                    "UPDATE migrate.runs SET finished = now(), error = $3 WHERE pass_id = $1 AND entity = $2",
                )
                .bind(pass_id)
                .bind(&b.entity.name)
                .bind(&text)
                .execute(&mut *conn)
                .await;
                return Err(e.context(format!(
                    "sync pass {pass_id} stopped at {}; every committed batch is kept, and the next `migrate sync` resumes this pass",
                    b.entity.name
                )));
            }
        }
    }
    Ok((pass_id, out))
}

/// Opens the pass's row in `migrate.runs` (kept if it is already there).
async fn record_pass(conn: &mut PgConnection, pass_id: i64, entity: &str, watermark: Option<&str>) -> Result<()> {
    sqlx::query(
        "INSERT INTO migrate.runs (pass_id, entity, watermark_before) VALUES ($1, $2, $3)
         ON CONFLICT (pass_id, entity) DO NOTHING",
    )
    .bind(pass_id)
    .bind(entity)
    .bind(watermark)
    .execute(&mut *conn)
    .await
    .context("recording the pass")?;
    Ok(())
}

async fn pass_entity(
    ctx: &LoadCtx<'_>,
    conn: &mut PgConnection,
    b: &Bound,
    pass_id: i64,
    overlap: u64,
) -> Result<PassStats> {
    let e = &b.entity;
    let began = Instant::now();
    let column = e.incremental.clone().unwrap_or_default();
    let st = read_state(conn, &e.name).await?.unwrap_or_default();
    let key = sync_progress_name(&e.name);
    let overlap = e.overlap.unwrap_or(overlap);
    let resumed = st.pass_id.is_some();
    let (above, upto, kind, start) = if resumed {
        let p = ctx
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned()
            .filter(|p| !p.is_done())
            .unwrap_or_else(|| Progress::new(&key, &e.fingerprint, &e.target.display()));
        tracing::info!(
            "{}: resuming the pass interrupted after {} rows (window above {} up to {})",
            e.name,
            p.rows_read,
            st.above.as_deref().unwrap_or("the beginning"),
            st.upto.as_deref().unwrap_or("-")
        );
        (st.above.clone(), st.upto.clone(), st.kind.unwrap_or(WmKind::Text), p)
    } else {
        let newest = newest(ctx.source, e).await?;
        let kind = newest.as_ref().map(|(_, k)| *k).or(st.kind).unwrap_or(WmKind::Text);
        let above = st.watermark.as_deref().map(|w| watermark::minus(w, kind, overlap));
        // The window's top: the newest value now; never below the stored one.
        let upto = match (newest.map(|(t, _)| t), &st.watermark) {
            (Some(n), Some(w)) if watermark::compare(&n, w, kind).is_lt() => Some(w.clone()),
            (n, w) => n.or_else(|| w.clone()),
        };
        let p = Progress::new(&key, &e.fingerprint, &e.target.display());
        // The pass, its window and its fresh progress start in one transaction.
        sink::execute(conn, "BEGIN", "starting a transaction").await?;
        record_pass(conn, pass_id, &e.name, st.watermark.as_deref()).await?;
        sqlx::query(
            "INSERT INTO migrate.sync_state (entity, watermark, watermark_kind, pass_id, pass_above, pass_upto)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (entity) DO UPDATE SET watermark_kind = EXCLUDED.watermark_kind, pass_id = EXCLUDED.pass_id,
               pass_above = EXCLUDED.pass_above, pass_upto = EXCLUDED.pass_upto, updated_at = now()",
        )
        .bind(&e.name)
        .bind(&st.watermark)
        .bind(kind.as_str())
        .bind(pass_id)
        .bind(&above)
        .bind(&upto)
        .execute(&mut *conn)
        .await
        .context("recording the pass's window")?;
        checkpoint::save(conn, &p).await?;
        sink::execute(conn, "COMMIT", "committing").await?;
        (above, upto, kind, p)
    };
    if resumed {
        record_pass(conn, pass_id, &e.name, st.watermark.as_deref()).await?;
    }
    let mut windowed = b.clone();
    windowed.spec.window = Some(Window {
        column,
        kind,
        above: above.clone(),
        upto: upto.clone(),
    });
    windowed.rows_in_scope = 0;
    let batch = ctx.batch_size.or(e.batch_size).unwrap_or(pipeline::DEFAULT_BATCH);
    let bar = ctx
        .bars
        .entity(&format!("{} (sync)", e.name), 0, start.rows_read as u64);
    let s = pipeline::run_entity(
        ctx.source,
        &windowed,
        start,
        batch,
        ctx.read_plan,
        Mode::Load {
            conn: &mut *conn,
            mirror: ctx.mirror,
            state: &ctx.state,
            retry: &ctx.retry,
        },
        &bar,
    )
    .await?;
    // Gone rows are found before, and deleted in, the transaction that closes the pass, so its
    // record in migrate.runs counts exactly what it deleted, crash or not.
    let gone = match e.deletes {
        crate::config::Deletes::Off => None,
        _ => Some(deletes::find(ctx.source, conn, b, ctx.bars).await?),
    };
    // The pass ends, and the watermark moves, in one transaction.
    sink::execute(conn, "BEGIN", "starting a transaction").await?;
    let applied = match &gone {
        Some(g) => deletes::apply(conn, b, g).await?,
        None => deletes::Applied::default(),
    };
    let deleted = applied.rows;
    sqlx::query(
        "UPDATE migrate.runs SET finished = now(), rows_read = $3, rows_upserted = $4, rows_rejected = $5,
           rows_deleted = $6, watermark_after = $7, error = NULL
         WHERE pass_id = $1 AND entity = $2",
    )
    .bind(pass_id)
    .bind(&e.name)
    .bind(s.read as i64)
    .bind((s.loaded + s.merged) as i64)
    .bind(s.rejected as i64)
    .bind(deleted as i64)
    .bind(&upto)
    .execute(&mut *conn)
    .await
    .context("closing the pass's record")?;
    sqlx::query(
        "UPDATE migrate.sync_state SET watermark = $2, watermark_kind = $3, pass_id = NULL, pass_above = NULL,
           pass_upto = NULL, last_pass_at = now(), updated_at = now() WHERE entity = $1",
    )
    .bind(&e.name)
    .bind(&upto)
    .bind(kind.as_str())
    .execute(&mut *conn)
    .await
    .context("storing the new watermark")?;
    sink::execute(conn, "COMMIT", "committing").await?;
    if gone.is_some() {
        tracing::info!(
            "{}: {deleted} row(s) gone from the source {} in {}{}",
            e.name,
            if e.deletes == crate::config::Deletes::Soft {
                "flagged"
            } else {
                "deleted"
            },
            e.target.display(),
            if applied.rejects > 0 {
                format!("; {} reject(s) of rows gone from the source forgotten", applied.rejects)
            } else {
                String::new()
            }
        );
    }
    Ok(PassStats {
        entity: e.name.clone(),
        read: s.read,
        upserted: s.loaded + s.merged,
        rejected: s.rejected,
        deleted,
        watermark_before: st.watermark,
        watermark_after: upto,
        seconds: began.elapsed().as_secs_f64(),
        resumed,
    })
}
