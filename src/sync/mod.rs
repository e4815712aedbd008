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

use crate::app::{self, LoadCtx};
use crate::bind::Bound;
use crate::checkpoint::{self, Mirror, Progress, sync_progress_name};
use crate::cli::{Cli, StatusArgs, SyncArgs};
use crate::error::UsageError;
use crate::pipeline::{self, Mode, Retry};
use crate::plan::Entity;
use crate::sink;
use crate::source::{self, Window, WmKind};
use crate::telemetry::{Bars, redact_url};
use anyhow::{Context, Result};
use serde::Serialize;
use sqlx::PgConnection;
use std::time::{Duration, Instant};

/// One entity's sync state row.
#[derive(Debug, Clone, Default)]
struct State {
    watermark: Option<String>,
    kind: Option<WmKind>,
    pass_id: Option<i64>,
    above: Option<String>,
    upto: Option<String>,
    /// UTC, ISO 8601.
    last_pass_at: Option<String>,
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

async fn read_state(conn: &mut PgConnection, entity: &str) -> Result<Option<State>> {
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
async fn newest(source: &str, e: &Entity) -> Result<Option<(String, WmKind)>> {
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

/// Called by a full load when an incremental entity starts from nothing: the newest watermark
/// *before* its first row is read is where the first sync pass starts (rows changed during a
/// long load have a newer one, so the sync moves them).
pub async fn record_start(source: &str, conn: &mut PgConnection, e: &Entity) -> Result<()> {
    if e.incremental.is_none() || read_state(conn, &e.name).await?.is_some() {
        return Ok(());
    }
    let n = newest(source, e).await?;
    sqlx::query(
        "INSERT INTO migrate.sync_state (entity, watermark, watermark_kind) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(&e.name)
    .bind(n.as_ref().map(|(t, _)| t.clone()))
    .bind(n.as_ref().map(|(_, k)| k.as_str()))
    .execute(&mut *conn)
    .await
    .with_context(|| format!("recording the starting watermark of {}", e.name))?;
    tracing::info!(
        "{}: incremental on {}; `migrate sync` starts after {}",
        e.name,
        e.incremental.as_deref().unwrap_or(""),
        n.as_ref()
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

/// `migrate sync`, with its lock waits watched (see `sink::locks`).
pub async fn sync(cli: &Cli, args: &SyncArgs) -> Result<u8> {
    sink::locks::set_lock_wait(args.lock_wait);
    let watch = match &cli.common.target {
        Some(target) => sink::locks::LockWatch::start(target, args.lock_wait).await,
        None => None,
    };
    match sync_passes(cli, args).await {
        Err(e) if sink::locks::is_lock_timeout(&e) => {
            Err(crate::error::Failed(sink::locks::LockWatch::explain(watch.as_ref(), args.lock_wait)).into())
        }
        other => other,
    }
}

async fn sync_passes(cli: &Cli, args: &SyncArgs) -> Result<u8> {
    crate::interrupt::install();
    let plan = app::load_plan(&cli.common)?;
    let selected = app::select(&plan, &cli.common.entity)?;
    let (source, target) = (app::source_url(&cli.common)?, app::target_url(&cli.common)?);
    let every = match &args.every {
        Some(t) => Some(watermark::parse_every(t).map_err(UsageError)?),
        None => None,
    };
    let incremental: Vec<&Entity> = selected.iter().copied().filter(|e| e.incremental.is_some()).collect();
    for e in selected.iter().filter(|e| e.incremental.is_none()) {
        tracing::info!(
            "{}: not incremental (no `incremental` column in its mapping); skipped",
            e.name
        );
    }
    if incremental.is_empty() {
        return Err(UsageError(
            "no incremental entity to sync: add incremental = \"<column>\" (and on_conflict = \"update\") to the mappings of the tables that change"
                .into(),
        )
        .into());
    }
    let mut conn = sink::connect(&target).await?;
    if let Some(holder) = app::lock_run(&mut conn, args.lock_wait).await? {
        return Err(UsageError(format!(
            "another migrate run or sync is writing to this target database ({holder}); two at once are refused"
        ))
        .into());
    }
    checkpoint::ensure_schema(&mut conn).await?;
    let state = checkpoint::load_all(&mut conn).await?;
    let not_loaded: Vec<String> = incremental
        .iter()
        .filter(|e| !state.get(&e.name).is_some_and(Progress::is_done))
        .map(|e| e.name.clone())
        .collect();
    if !not_loaded.is_empty() {
        return Err(UsageError(format!(
            "the full load of {} is not finished; run `migrate --resume` first (sync moves changes made after a full load)",
            not_loaded.join(", ")
        ))
        .into());
    }
    // Bound once, without counting the source rows (a full scan each): the --every loop
    // reuses it.
    let pf = app::preflight(&source, &mut conn, &plan, &incremental, false).await?;
    if !pf.problems.is_empty() {
        return Err(app::problems_error(&pf));
    }
    let mirror = Mirror::new(&cli.common.checkpoint);
    let bars = Bars::new();
    let read_plan = source::resilient::ReadPlan {
        retries: args.retries,
        retry_wait: Duration::from_secs_f64(args.retry_wait.clamp(0.0, 3600.0)),
        ..Default::default()
    };
    let retry = Retry {
        target: target.clone(),
        relock: true,
        attempts: args.retries,
        base: Duration::from_secs_f64(args.retry_wait.clamp(0.0, 3600.0)),
    };
    let ctx = LoadCtx {
        source: &source,
        dry: false,
        state: pipeline::SharedState::new(state),
        mirror: &mirror,
        retry: retry.clone(),
        read_plan: &read_plan,
        batch_size: args.batch_size.map(|b| b as usize),
        defer: false,
        bars: &bars,
        jobs: 1,
        streams: None,
    };
    tracing::info!(
        "sync from {} into {}: {} incremental entit{}{}",
        redact_url(&source),
        redact_url(&target),
        pf.bound.len(),
        if pf.bound.len() == 1 { "y" } else { "ies" },
        every.map_or(String::new(), |d| format!(", every {}s", d.as_secs()))
    );
    let mut all: Vec<Vec<PassStats>> = Vec::new();
    loop {
        let began = Instant::now();
        let (pass_id, stats) = one_pass(&ctx, &mut conn, &pf.bound, args.overlap).await?;
        let summary: Vec<String> = stats
            .iter()
            .map(|s| {
                format!(
                    "{} {} read, {} upserted, {} deleted, {} rejected",
                    s.entity, s.read, s.upserted, s.deleted, s.rejected
                )
            })
            .collect();
        tracing::info!(
            "sync pass {pass_id} done in {:.1}s: {}",
            began.elapsed().as_secs_f64(),
            summary.join("; ")
        );
        all.push(stats);
        let Some(every) = every else { break };
        // Sleep until the next pass, waking for a stop request.
        let next = began + every;
        tokio::select! {
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(next)) => {}
            _ = crate::interrupt::wait() => {
                tracing::info!("stopped between passes; every pass so far is complete");
                break;
            }
        }
        app::keep_run_lock(&mut conn, &retry).await?;
    }
    drop(bars);
    if let Some(last) = all.last() {
        print!("{}", pass_table(last));
    }
    if let Some(path) = &cli.common.report {
        let doc = serde_json::json!({ "mode": "sync", "passes": all });
        crate::report::write_json(path, &doc).with_context(|| format!("writing report {path}"))?;
    }
    Ok(0)
}

fn pass_table(stats: &[PassStats]) -> String {
    let mut out = format!(
        "{:<20} {:>9} {:>9} {:>9} {:>9}  {}\n",
        "entity", "read", "upserted", "deleted", "rejected", "watermark"
    );
    for s in stats {
        out.push_str(&format!(
            "{:<20} {:>9} {:>9} {:>9} {:>9}  {}\n",
            s.entity,
            s.read,
            s.upserted,
            s.deleted,
            s.rejected,
            s.watermark_after.as_deref().unwrap_or("-")
        ));
    }
    out
}

/// One pass over every incremental entity, in dependency order.
async fn one_pass(
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
                let text = crate::error::chain(e.as_ref());
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
    let batch = ctx.batch_size.or(e.batch_size).unwrap_or(app::DEFAULT_BATCH);
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

/// One entity in `migrate status`.
#[derive(Debug, Clone, Serialize)]
pub struct EntityStatus {
    pub entity: String,
    pub mode: &'static str,
    /// `done`, `running`, or `not started` (the full load).
    pub load: String,
    pub rows_loaded: i64,
    /// Taken by the target without an error but kept out (trigger, rule, on_conflict = skip).
    pub rows_kept_out: i64,
    /// Merged into rows already in the target (on_conflict = update).
    pub rows_merged: i64,
    pub rows_upserted_by_sync: i64,
    pub rows_deleted_by_sync: i64,
    pub rejects: i64,
    pub watermark: Option<String>,
    pub newest_in_source: Option<String>,
    /// Seconds (date/time watermark) or units (number) the source is ahead.
    pub lag: Option<f64>,
    pub last_pass_at: Option<String>,
    pub pass_in_flight: Option<i64>,
    pub last_error: Option<String>,
}

pub async fn status(cli: &Cli, args: &StatusArgs) -> Result<u8> {
    let plan = app::load_plan(&cli.common)?;
    let selected = app::select(&plan, &cli.common.entity)?;
    let target = app::target_url(&cli.common)?;
    let mut conn = sink::connect(&target).await?;
    // A read-only command: without the migrate schema (nothing loaded yet), every entity is
    // "not started", and nothing is created.
    let has_state: bool = sqlx::query_scalar(
        "SELECT to_regclass('migrate.sync_state') IS NOT NULL AND to_regclass('migrate.runs') IS NOT NULL
            AND to_regclass('migrate.rejects') IS NOT NULL",
    )
    .fetch_one(&mut conn)
    .await?;
    let progress = checkpoint::load_all(&mut conn).await?;
    let source = app::source_url(&cli.common).ok();
    let mut out = Vec::new();
    for e in &selected {
        let p = progress.get(&e.name);
        let (st, (upserted, deleted, last_error), rejects) = if has_state {
            let st = read_state(&mut conn, &e.name).await?.unwrap_or_default();
            let runs: (Option<i64>, Option<i64>, Option<String>) = sqlx::query_as(
                "SELECT sum(rows_upserted)::bigint, sum(rows_deleted)::bigint,
                        (SELECT error FROM migrate.runs r2 WHERE r2.entity = $1 ORDER BY pass_id DESC LIMIT 1)
                 FROM migrate.runs WHERE entity = $1",
            )
            .bind(&e.name)
            .fetch_one(&mut conn)
            .await?;
            let rejects: i64 = sqlx::query_scalar("SELECT count(*) FROM migrate.rejects WHERE entity = $1")
                .bind(&e.name)
                .fetch_one(&mut conn)
                .await?;
            (st, runs, rejects)
        } else {
            (Default::default(), (None, None, None), 0)
        };
        let mut newest_text = None;
        let mut lag = None;
        if e.incremental.is_some()
            && let Some(src) = &source
        {
            match newest(src, e).await {
                Ok(Some((n, kind))) => {
                    lag = st
                        .watermark
                        .as_deref()
                        .and_then(|w| watermark::lag(&n, w, st.kind.unwrap_or(kind)));
                    newest_text = Some(n);
                }
                Ok(None) => {}
                Err(err) => tracing::warn!("{}: {err:#}", e.name),
            }
        }
        out.push(EntityStatus {
            entity: e.name.clone(),
            mode: if e.incremental.is_some() { "incremental" } else { "full" },
            load: p.map_or("not started".into(), |p| p.status.clone()),
            // A split entity still loading counts its ranges' rows.
            rows_loaded: p.map_or(0, |p| p.rows_loaded)
                + checkpoint::parts_of(&progress, &e.name)
                    .iter()
                    .map(|p| p.rows_loaded)
                    .sum::<i64>(),
            rows_kept_out: p.map_or(0, |p| p.rows_kept_out)
                + checkpoint::parts_of(&progress, &e.name)
                    .iter()
                    .map(|p| p.rows_kept_out)
                    .sum::<i64>(),
            rows_merged: p.map_or(0, |p| p.rows_merged)
                + checkpoint::parts_of(&progress, &e.name)
                    .iter()
                    .map(|p| p.rows_merged)
                    .sum::<i64>(),
            rows_upserted_by_sync: upserted.unwrap_or(0),
            rows_deleted_by_sync: deleted.unwrap_or(0),
            rejects,
            watermark: st.watermark,
            newest_in_source: newest_text,
            lag,
            last_pass_at: st.last_pass_at,
            pass_in_flight: st.pass_id,
            last_error,
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(0);
    }
    println!(
        "{:<16} {:<11} {:<11} {:>10} {:>9} {:>9} {:>8} {:<29} {:>10}  last pass",
        "entity", "mode", "load", "loaded", "kept out", "synced", "rejects", "watermark", "lag"
    );
    for s in &out {
        println!(
            "{:<16} {:<11} {:<11} {:>10} {:>9} {:>9} {:>8} {:<29} {:>10}  {}{}",
            s.entity,
            s.mode,
            s.load,
            s.rows_loaded,
            s.rows_kept_out + s.rows_merged,
            s.rows_upserted_by_sync,
            s.rejects,
            s.watermark.as_deref().unwrap_or("-"),
            s.lag.map_or("-".to_string(), |l| format!("{l:.1}")),
            s.last_pass_at.as_deref().unwrap_or("never"),
            match (&s.pass_in_flight, &s.last_error) {
                (Some(id), _) => format!("  (pass {id} in flight: the next sync resumes it)"),
                (None, Some(err)) => format!("  (last error: {err})"),
                _ => String::new(),
            }
        );
    }
    Ok(0)
}
