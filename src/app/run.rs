//! The run: safety gates (progress, non-empty tables, confirmation, --truncate), then the
//! orchestrator, the summary, and the post-load validation.

use super::check::post_validate;
use super::{confirm, load_plan, lock_run, preflight, problems_error, select, source_url, target_url};
use crate::checkpoint::{self, Mirror, Progress};
use crate::cli::{Cli, RunArgs};
use crate::error::{Failed, UsageError};
use crate::orchestrator::{default_jobs, dependency_levels, keep_run_lock, load_entity};
use crate::pipeline::{self, LoadCtx, Retry};
use crate::plan::Entity;
use crate::report::{self, EntityStats, Report};
use crate::sink;
use crate::source::resilient::ReadPlan;
use crate::telemetry::{Bars, redact_url};
use anyhow::{Context, Result};
use futures_util::StreamExt;
use std::collections::BTreeSet;

/// The run, with its lock waits watched: a statement waits for another session's lock at most
/// `--lock-wait`, and the error then says which table waited on which backend.
pub(super) async fn run(cli: &Cli) -> Result<u8> {
    sink::locks::set_lock_wait(cli.run.lock_wait);
    let watch = match (cli.run.dry_run, &cli.common.target) {
        (false, Some(target)) => sink::locks::LockWatch::start(target, cli.run.lock_wait).await,
        _ => None,
    };
    let wall = std::time::Instant::now();
    let result = load(cli).await;
    if let Err(e) = &result
        && !cli.run.dry_run
        && let Some(stop) = e
            .chain()
            .find_map(|c| c.downcast_ref::<crate::interrupt::Interrupted>())
    {
        print!("{}", stopped_summary(cli, stop, wall.elapsed().as_secs_f64()).await);
    }
    match result {
        Err(e) if sink::locks::is_lock_timeout(&*e) => {
            Err(Failed(sink::locks::LockWatch::explain(watch.as_ref(), cli.run.lock_wait)).into())
        }
        other => other,
    }
}

/// The summary of a run stopped by Ctrl-C or SIGTERM: what the target holds committed, per
/// entity, read back from its progress rows (the batch in flight either committed or not).
async fn stopped_summary(cli: &Cli, stop: &crate::interrupt::Interrupted, wall: f64) -> String {
    let committed = async {
        let plan = load_plan(&cli.common)?;
        let selected = select(&plan, &cli.common.entity)?;
        let mut conn = sink::connect(&target_url(&cli.common)?).await?;
        let state = checkpoint::load_all(&mut conn).await?;
        let rows: Vec<(String, String, i64, i64, i64)> = selected
            .iter()
            .map(|e| match with_progress(&state, &[*e]).first() {
                Some((_, p, loaded)) => {
                    let parts = checkpoint::parts_of(&state, &e.name);
                    let read = p.rows_read + parts.iter().map(|p| p.rows_read).sum::<i64>();
                    let rejected = p.rows_rejected + parts.iter().map(|p| p.rows_rejected).sum::<i64>();
                    (e.name.clone(), p.status.clone(), read, *loaded, rejected)
                }
                None => (e.name.clone(), "not started".into(), 0, 0, 0),
            })
            .collect();
        Ok::<_, anyhow::Error>(rows)
    }
    .await;
    let mut out = format!(
        "\nstopped by {} after {wall:.2}s (wall time); committed in the target:\n",
        stop.name()
    );
    match committed {
        Ok(rows) => {
            out.push_str(&format!(
                "{:<20} {:<12} {:>10} {:>10} {:>10}\n",
                "entity", "status", "read", "loaded", "rejected"
            ));
            for (e, status, read, loaded, rejected) in rows {
                out.push_str(&format!(
                    "{e:<20} {status:<12} {read:>10} {loaded:>10} {rejected:>10}\n"
                ));
            }
        }
        Err(e) => out.push_str(&format!(
            "  (could not be read back: {})\n",
            crate::telemetry::chain(e.as_ref())
        )),
    }
    out.push_str(&format!("to continue: {}\n", crate::interrupt::resume_hint()));
    out
}

pub(super) async fn load(cli: &Cli) -> Result<u8> {
    crate::interrupt::install();
    if cli.run.truncate {
        crate::interrupt::set_resume_hint(
            "run the same command with --resume in place of --truncate (which would empty the tables again) to continue"
                .into(),
        );
    }
    let started = chrono::Utc::now();
    let wall = std::time::Instant::now();
    let dry = cli.run.dry_run;
    let resume = cli.run.resume;
    let plan = load_plan(&cli.common)?;
    let selected = select(&plan, &cli.common.entity)?;
    let (source, target) = (source_url(&cli.common)?, target_url(&cli.common)?);
    let mut conn = sink::connect(&target).await?;
    if !dry && let Some(holder) = lock_run(&mut conn, cli.run.lock_wait).await? {
        return Err(UsageError(format!(
            "another migrate run is writing to this target database ({holder}); wait for it to finish, or stop it, then run again (with --resume to continue its work)"
        ))
        .into());
    }
    let mut state = checkpoint::load_all(&mut conn).await?;

    if !dry && !cli.common.entity.is_empty() {
        let chosen: BTreeSet<&str> = selected.iter().map(|e| e.name.as_str()).collect();
        for e in &selected {
            let missing: Vec<String> = plan
                .ancestors(&e.name)
                .into_iter()
                .filter(|d| !chosen.contains(d.as_str()) && !state.get(d).is_some_and(Progress::is_done))
                .collect();
            if !missing.is_empty() {
                return Err(UsageError(format!(
                    "entity {} depends on {}, not migrated yet; migrate {} first (or add --entity for each)",
                    e.name,
                    missing.join(", "),
                    if missing.len() == 1 { "it" } else { "them" }
                ))
                .into());
            }
        }
    }
    if !dry && !cli.run.truncate {
        for (e, p, loaded) in with_progress(&state, &selected) {
            if !resume {
                return Err(UsageError(already_loaded(e, p, loaded)).into());
            }
            if checkpoint::mapping_fingerprint(&p.fingerprint) != e.fingerprint {
                return Err(UsageError(format!(
                    "mapping {} changed since its load started ({} rows loaded with the old mapping); resuming would mix two mappings in {}. Restore the old mapping, or start that entity over with --truncate (without --resume)",
                    e.file.display(),
                    loaded,
                    e.target.display()
                ))
                .into());
            }
        }
    }

    let pf = preflight(&source, &mut conn, &plan, &selected, true).await?;
    if !pf.problems.is_empty() {
        return Err(problems_error(&pf));
    }
    if resume && !cli.run.truncate {
        // Files read before the stop must still hold what was loaded from them.
        for b in &pf.bound {
            let rows = state
                .get(&b.entity.name)
                .into_iter()
                .cloned()
                .chain(checkpoint::parts_of(&state, &b.entity.name));
            let mut changed: Vec<String> = rows
                .flat_map(|p| checkpoint::files_changed(&p, &b.entity.fingerprint))
                .collect();
            changed.sort();
            changed.dedup();
            if !changed.is_empty() {
                return Err(UsageError(format!(
                    "entity {}: source file(s) {} changed since the load read them (size, modification time or first 64 KiB differ, or the file is gone); the rows loaded from them may no longer be what they hold. Restore the files, or start the entity over with --truncate (without --resume)",
                    b.entity.name,
                    changed.join(", ")
                ))
                .into());
            }
        }
    }
    if !dry && !cli.run.truncate {
        // A fresh load into a table that already holds rows would mix old and new rows, or fail
        // on their keys half-way: refuse before anything is written.
        let nonempty = rows_no_run_loaded(&mut conn, &pf.bound, &state).await?;
        if !nonempty.is_empty() {
            return Err(UsageError(rows_no_run_loaded_message(&nonempty)).into());
        }
    }
    // Children first: the reverse of the load order.
    let truncated: Vec<&Entity> = if cli.run.truncate {
        pf.bound.iter().rev().map(|b| &b.entity).collect()
    } else {
        vec![]
    };
    if !dry && !cli.run.yes {
        let names: Vec<&str> = selected.iter().map(|e| e.name.as_str()).collect();
        let emptied = if truncated.is_empty() {
            String::new()
        } else {
            let tables: Vec<String> = truncated.iter().map(|e| e.target.display()).collect();
            format!(" EMPTYING {} first", tables.join(", "))
        };
        confirm(&format!(
            "Migrate {} entities ({}) from {} into {}{emptied}?",
            names.len(),
            names.join(", "),
            redact_url(&source),
            redact_url(&target)
        ))?;
    }
    let mirror = Mirror::new(&cli.common.checkpoint);
    if !dry {
        checkpoint::ensure_schema(&mut conn).await?;
        // The file is only a mirror, but a run that cannot write it should say so before loading.
        mirror
            .write(&state)
            .map_err(|e| UsageError(crate::telemetry::chain(&e)))?;
        if !truncated.is_empty() {
            let tables: Vec<&crate::plan::TargetTable> = truncated.iter().map(|e| &e.target).collect();
            sink::truncate(&mut conn, &tables).await?;
            let names: Vec<String> = truncated.iter().map(|e| e.name.clone()).collect();
            checkpoint::forget(&mut conn, &names).await?;
            for n in &names {
                state.remove(n);
            }
            mirror.write(&state)?;
            tracing::info!("--truncate: emptied {} and forgot their progress", names.join(", "));
        }
    }
    let bars = Bars::new();
    let read_plan = read_plan(&cli.run);
    let retry = pipeline::Retry {
        target: target.clone(),
        relock: true,
        attempts: cli.run.retries,
        base: std::time::Duration::from_secs_f64(cli.run.retry_wait.clamp(0.0, 3600.0)),
    };
    let jobs = cli.run.jobs.map_or_else(default_jobs, |n| n as usize).max(1);
    let streams = tokio::sync::Semaphore::new(jobs);
    let mut ctx = LoadCtx {
        source: &source,
        dry,
        state: pipeline::SharedState::new(state),
        mirror: &mirror,
        retry: Retry {
            relock: false,
            ..retry.clone()
        },
        read_plan: &read_plan,
        batch_size: cli.run.batch_size.map(|b| b as usize),
        defer: cli.run.defer_indexes,
        bars: &bars,
        jobs,
        streams: (jobs > 1).then_some(&streams),
    };
    let mut stats: Vec<EntityStats> = Vec::new();
    sink::forget_complete();
    if jobs == 1 {
        // One session: the run's own, which holds the run lock and takes it again after a reconnection.
        ctx.retry = retry.clone();
        for b in &pf.bound {
            stats.push(load_entity(&ctx, b, &mut conn, u64::MAX, &[]).await?);
        }
    } else {
        // Entities whose dependencies are all loaded run side by side, each on its own session
        // and reader thread, at most `jobs` at a time; the next level waits for this one.
        let loads = async {
            let mut all = Vec::new();
            for mut level in dependency_levels(&pf.bound) {
                // Largest first, so the biggest entity does not end up loading alone; one larger
                // than a stream's fair share of the level is split into key ranges.
                level.sort_by_key(|(_, b)| std::cmp::Reverse(b.rows_in_scope));
                let share = level.iter().map(|(_, b)| b.rows_in_scope).sum::<u64>() / jobs as u64;
                let tables: Vec<String> = level.iter().map(|(_, b)| b.entity.target.sql()).collect();
                let mut done: Vec<(usize, Result<EntityStats>)> =
                    futures_util::stream::iter(level.into_iter().map(|(i, b)| {
                        let ctx = &ctx;
                        let busy: Vec<String> = tables
                            .iter()
                            .filter(|t| **t != b.entity.target.sql())
                            .cloned()
                            .collect();
                        async move {
                            let r = async {
                                let mut own = pipeline::open_session(&ctx.retry, &b.entity.name).await?;
                                load_entity(ctx, b, &mut own, share, &busy).await
                            };
                            (i, r.await)
                        }
                    }))
                    .buffer_unordered(jobs)
                    .collect()
                    .await;
                done.sort_by_key(|(i, _)| *i);
                for (_, r) in done {
                    all.push(r?);
                }
            }
            Ok::<_, anyhow::Error>(all)
        };
        tokio::pin!(loads);
        // The run's own session holds the run lock while the others load: if it is lost, it is
        // replaced (and the lock taken again) within seconds, not at the end.
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
        stats = loop {
            tokio::select! {
                r = &mut loads => break r?,
                _ = tick.tick() => keep_run_lock(&mut conn, &retry).await?,
            }
        };
        keep_run_lock(&mut conn, &retry).await?;
    }
    drop(bars);
    let load_seconds = wall.elapsed().as_secs_f64();
    print!("{}", report::table(&stats, load_seconds, dry));
    let rejected: u64 = stats.iter().map(|s| s.rejected).sum();
    if dry {
        println!("dry run: nothing was written; {rejected} row(s) would be rejected");
        for s in &stats {
            for r in &s.sample_rejects {
                println!(
                    "  {} key {}: {}{}",
                    s.entity,
                    crate::value::key_display(&r.key),
                    r.column.as_deref().map(|c| format!("column {c}: ")).unwrap_or_default(),
                    r.reason
                );
            }
        }
        println!(
            "(checked on the client: types, lengths, NOT NULL, transforms; constraints such as foreign keys are checked by PostgreSQL during the real run)"
        );
    } else if rejected > 0 {
        println!("{rejected} row(s) rejected: see SELECT * FROM migrate.rejects");
    }
    let mut validation = None;
    if cli.run.validate && !dry {
        let v = post_validate(&source, &mut conn, &plan, &selected, cli.run.deep).await?;
        validation = Some(v);
    }
    let ok = validation.as_ref().is_none_or(|v| v.ok);
    if let Some(path) = &cli.common.report {
        let mode = if dry {
            "dry-run"
        } else if resume {
            "resume"
        } else {
            "run"
        };
        let dry_rejects: Vec<checkpoint::RejectRow> = stats
            .iter()
            .flat_map(|s| {
                s.sample_rejects.iter().map(|r| {
                    (
                        s.entity.clone(),
                        r.column.clone(),
                        r.reason.clone(),
                        crate::value::key_display(&r.key),
                        r.source_values.to_string(),
                    )
                })
            })
            .collect();
        let names: Vec<String> = selected.iter().map(|e| e.name.clone()).collect();
        let mut r = Report::new(mode, started, &source, &target, stats, validation.clone());
        r.settings = run_settings(cli);
        r.load_seconds = Some(load_seconds);
        let (rows, sampled) = if dry {
            (dry_rejects, false)
        } else {
            checkpoint::rejects_for_report(&mut conn, &names, report::REJECTS_GROUPED).await?
        };
        r.rejects = report::group_rejects(rows);
        r.rejects_sampled = sampled;
        report::write(path, &r).with_context(|| format!("writing report {path}"))?;
    }
    if !ok {
        return Err(Failed("validation failed: see the table above".into()).into());
    }
    Ok(0)
}

/// The settings of a run as its report shows them (no URL here: the report has them redacted).
pub(super) fn run_settings(cli: &Cli) -> std::collections::BTreeMap<String, String> {
    let r = &cli.run;
    let mut s = std::collections::BTreeMap::new();
    let mut put = |k: &str, v: String| {
        s.insert(k.to_string(), v);
    };
    put("mappings", cli.common.mappings.display().to_string());
    if !cli.common.entity.is_empty() {
        put("entity", cli.common.entity.join(", "));
    }
    put("checkpoint", cli.common.checkpoint.display().to_string());
    put(
        "batch size",
        r.batch_size
            .map_or("per mapping (default 50000)".into(), |b| b.to_string()),
    );
    put(
        "jobs",
        r.jobs.map_or_else(|| default_jobs().to_string(), |j| j.to_string()),
    );
    for (flag, on) in [
        ("--dry-run", r.dry_run),
        ("--resume", r.resume),
        ("--truncate", r.truncate),
        ("--defer-indexes", r.defer_indexes),
        ("--validate", r.validate),
        ("--deep", r.deep),
    ] {
        put(flag, if on { "yes" } else { "no" }.into());
    }
    put("retries", format!("{} (first wait {} s)", r.retries, r.retry_wait));
    put("lock wait", format!("{} s", r.lock_wait));
    put("cursor", format!("{} rows or {} s", r.cursor_rows, r.cursor_secs));
    s
}

/// The selected entities that have progress in the target, with their rows loaded (a split
/// entity's rows are in its ranges' rows until it finishes).
pub(super) fn with_progress<'a>(
    state: &'a std::collections::BTreeMap<String, Progress>,
    selected: &[&'a Entity],
) -> Vec<(&'a Entity, &'a Progress, i64)> {
    selected
        .iter()
        .filter_map(|e| {
            let p = state.get(&e.name)?;
            let parts: i64 = checkpoint::parts_of(state, &e.name).iter().map(|p| p.rows_loaded).sum();
            Some((*e, p, p.rows_loaded + parts))
        })
        .collect()
}

/// Why a plain run (without --resume or --truncate) refuses an entity that has progress.
pub(super) fn already_loaded(e: &Entity, p: &Progress, loaded: i64) -> String {
    format!(
        "entity {} already has progress in the target (status {}, {} rows loaded); pass --resume to continue, or --truncate to empty {} and start over",
        e.name,
        p.status,
        loaded,
        e.target.display()
    )
}

/// Target tables of fresh entities (no progress, `on_conflict = "error"`) that hold rows.
pub(super) async fn rows_no_run_loaded(
    conn: &mut sqlx::PgConnection,
    bound: &[crate::bind::Bound],
    state: &std::collections::BTreeMap<String, Progress>,
) -> Result<Vec<String>> {
    let mut nonempty = Vec::new();
    for b in bound {
        let e = &b.entity;
        if !state.contains_key(&e.name)
            && e.on_conflict == crate::config::OnConflict::Error
            && sink::has_rows(conn, &e.target).await?
        {
            nonempty.push(e.target.display());
        }
    }
    Ok(nonempty)
}

pub(super) fn rows_no_run_loaded_message(tables: &[String]) -> String {
    format!(
        "target table(s) {} already hold rows, and no run of migrate loaded them; a fresh load would add to them or fail on their keys. Choose: --truncate to empty them first (asks for confirmation), on_conflict = \"skip\" or \"update\" in the mapping to merge into them, or --resume if an earlier migrate run loaded them",
        tables.join(", ")
    )
}

/// Cursor bounds and source retries from the command line.
pub(super) fn read_plan(run: &RunArgs) -> ReadPlan {
    ReadPlan {
        cursor_rows: run.cursor_rows,
        cursor_time: std::time::Duration::from_secs(run.cursor_secs),
        retries: run.retries,
        retry_wait: std::time::Duration::from_secs_f64(run.retry_wait.max(0.0)),
    }
}
