//! `migrate sync` (one pass, or --every interval) and `migrate status`: the commands around the
//! sync engine (`crate::sync`).

use super::{load_plan, lock_run, preflight, problems_error, select, source_url, target_url};
use crate::checkpoint::{self, Mirror, Progress};
use crate::cli::{Cli, StatusArgs, SyncArgs};
use crate::error::UsageError;
use crate::orchestrator::keep_run_lock;
use crate::pipeline::{self, LoadCtx, Retry};
use crate::plan::Entity;
use crate::sink;
use crate::source;
use crate::sync::{PassStats, newest, one_pass, read_state, watermark};
use crate::telemetry::{Bars, redact_url};
use anyhow::{Context, Result};
use serde::Serialize;
use std::time::{Duration, Instant};

/// `migrate sync`, with its lock waits watched (see `sink::locks`).
pub async fn sync(cli: &Cli, args: &SyncArgs) -> Result<u8> {
    if let Some(path) = cli.common.report.as_deref().filter(|p| crate::report::is_html(p)) {
        return Err(crate::error::UsageError(format!(
            "--report {path}: sync writes its passes as JSON (name the file .json, or - for stdout); the HTML page is for a run and for validate"
        ))
        .into());
    }
    sink::locks::set_lock_wait(args.lock_wait);
    let watch = match &cli.common.target {
        Some(target) => sink::locks::LockWatch::start(target, args.lock_wait).await,
        None => None,
    };
    match sync_passes(cli, args).await {
        Err(e) if sink::locks::is_lock_timeout(&*e) => {
            Err(crate::error::Failed(sink::locks::LockWatch::explain(watch.as_ref(), args.lock_wait)).into())
        }
        other => other,
    }
}

pub(super) async fn sync_passes(cli: &Cli, args: &SyncArgs) -> Result<u8> {
    crate::interrupt::install();
    let plan = load_plan(&cli.common)?;
    let selected = select(&plan, &cli.common.entity)?;
    let (source, target) = (source_url(&cli.common)?, target_url(&cli.common)?);
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
    if let Some(holder) = lock_run(&mut conn, args.lock_wait).await? {
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
    let mut pf = preflight(&source, &mut conn, &plan, &incremental, false).await?;
    if !pf.problems.is_empty() {
        return Err(problems_error(&pf));
    }
    // A pass upserts changed rows by key, whatever on_conflict the full load used.
    for b in &mut pf.bound {
        b.loader = b.loader_for(crate::config::OnConflict::Update);
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
        keep_run_lock(&mut conn, &retry).await?;
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

pub(super) fn pass_table(stats: &[PassStats]) -> String {
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
    let plan = load_plan(&cli.common)?;
    let selected = select(&plan, &cli.common.entity)?;
    let target = target_url(&cli.common)?;
    let mut conn = sink::connect(&target).await?;
    // A read-only command: without the migrate schema (nothing loaded yet), every entity is
    // "not started", and nothing is created.
    let has_state = checkpoint::has_state(&mut conn).await?;
    let progress = checkpoint::load_all(&mut conn).await?;
    let source = source_url(&cli.common).ok();
    let mut out = Vec::new();
    for e in &selected {
        let p = progress.get(&e.name);
        let (st, passes, rejects) = if has_state {
            (
                read_state(&mut conn, &e.name).await?.unwrap_or_default(),
                checkpoint::pass_totals(&mut conn, &e.name).await?,
                checkpoint::count_rejects(&mut conn, &e.name).await?,
            )
        } else {
            Default::default()
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
            rows_upserted_by_sync: passes.upserted,
            rows_deleted_by_sync: passes.deleted,
            rejects,
            watermark: st.watermark,
            newest_in_source: newest_text,
            lag,
            last_pass_at: st.last_pass_at,
            pass_in_flight: st.pass_id,
            last_error: passes.last_error,
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
