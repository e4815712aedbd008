//! One function per mode (run, dry run, check-only, validate, demo): wiring only, no SQL.

use crate::bind::Bound;
use crate::bind::{self, Preflight};
use crate::checkpoint::{self, Mirror, Progress};
use crate::cli::{Cli, Command, Common, RunArgs, ScaffoldArgs};
use crate::error::{Failed, UsageError};
use crate::pipeline::{self, Mode, Retry};
use crate::plan::{self, Entity, Plan};
use crate::report::EntityStats;
use crate::report::{self, Report};
use crate::sink;
use crate::source::resilient::ReadPlan;
use crate::telemetry::{Bars, redact_url};
use crate::validate::deep;
use crate::validate::post::{self, Validation};
use anyhow::{Context, Result};
use futures_util::StreamExt;
use std::collections::BTreeSet;
use std::io::IsTerminal;

pub(crate) const DEFAULT_BATCH: usize = 50_000;

pub async fn main(cli: Cli) -> Result<u8> {
    match &cli.command {
        Some(Command::Demo(args)) => crate::demo::run(args, cli.common.target.as_deref()).await.map(|()| 0),
        Some(Command::Validate(args)) => validate_only(&cli, args.deep).await,
        Some(Command::Scaffold(args)) => scaffold(&cli.common, args).await,
        Some(Command::Sync(args)) => crate::sync::sync(&cli, args).await,
        Some(Command::Status(args)) => crate::sync::status(&cli, args).await,
        None if cli.run.check_only => check_only(&cli).await,
        None => run(&cli).await,
    }
}

/// The plan of the mappings directory. The problems of every file come together: those that
/// do not parse, and those of the files that do.
pub(crate) fn load_plan(common: &Common) -> Result<Plan> {
    let (files, mut problems) = crate::config::load_dir_all(&common.mappings)?;
    if problems.is_empty() {
        return Ok(plan::compile(&files)?);
    }
    let broken: Vec<String> = problems
        .iter()
        .filter_map(|p| p.at.file.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    if let Err(crate::config::MappingErrors(more)) = plan::compile_with(&files, &broken) {
        problems.extend(more);
    }
    problems.sort_by(|a, b| (&a.at.file, a.at.line, a.at.column).cmp(&(&b.at.file, b.at.line, b.at.column)));
    Err(crate::config::MappingErrors(problems).into())
}

/// `--source`/MIGRATE_SOURCE, else an Oracle URL from the ORACLE_* variables (ORACLE_CONNECT,
/// a descriptor or EZConnect string, wins over ORACLE_HOST/ORACLE_PORT with ORACLE_SERVICE or ORACLE_SID).
pub fn source_url(common: &Common) -> Result<String> {
    if let Some(s) = &common.source {
        if s.trim().is_empty() {
            return Err(UsageError(
                "MIGRATE_SOURCE is set but empty (in the environment or .env): set it to oracle://user:pass@host:1521/SERVICE or sqlite:path.db, or unset it to use the ORACLE_* variables".into(),
            )
            .into());
        }
        return Ok(s.clone());
    }
    if let Some(url) = crate::source::oracle::url::url_from_env() {
        return Ok(url);
    }
    Err(UsageError("no source database: pass --source URL or set MIGRATE_SOURCE (or ORACLE_USER with ORACLE_HOST and ORACLE_SERVICE or ORACLE_SID, or ORACLE_CONNECT) in the environment or .env".into()).into())
}

/// `migrate scaffold`: read the catalog, write the mappings and the DDL.
async fn scaffold(common: &Common, args: &ScaffoldArgs) -> Result<u8> {
    use crate::scaffold::{Dialect, Options};
    let source = source_url(common)?;
    let dialect = if source.starts_with("sqlite:") {
        Dialect::Sqlite
    } else {
        Dialect::Oracle
    };
    let schema = args.schema.clone();
    let tables = crate::source::with_source(&source, move |src| src.catalog(schema.as_deref()))
        .await
        .with_context(|| format!("reading the catalog of {}", redact_url(&source)))?;
    if tables.is_empty() {
        return Err(UsageError(format!(
            "no tables found in {} (schema {}); check --schema and the user's SELECT grants",
            redact_url(&source),
            args.schema.as_deref().unwrap_or("of the connected user")
        ))
        .into());
    }
    let opts = Options {
        dialect,
        source_schema: args.schema.clone(),
        target_schema: args.target_schema.clone(),
        raw16_uuid: args.raw16_uuid,
    };
    let out = crate::scaffold::scaffold(&tables, &opts, "migrate scaffold");
    let mut targets: Vec<std::path::PathBuf> = out.mappings.iter().map(|(name, _)| args.out.join(name)).collect();
    targets.extend(args.ddl.clone());
    if !args.force {
        let existing: Vec<String> = targets
            .iter()
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if !existing.is_empty() {
            return Err(UsageError(format!(
                "refusing to overwrite {} (pass --force to replace them)",
                existing.join(", ")
            ))
            .into());
        }
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    for (name, text) in &out.mappings {
        let path = args.out.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(ddl) = &args.ddl {
        std::fs::write(ddl, &out.ddl).with_context(|| format!("writing {}", ddl.display()))?;
    }
    for w in &out.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "wrote {} mapping(s) to {}{}",
        out.mappings.len(),
        args.out.display(),
        args.ddl
            .as_ref()
            .map(|d| format!(" and the PostgreSQL DDL to {}", d.display()))
            .unwrap_or_default()
    );
    println!(
        "next: review them, create the tables (psql -f), then run: migrate --mappings {} --check-only",
        args.out.display()
    );
    Ok(0)
}

pub(crate) fn target_url(common: &Common) -> Result<String> {
    match common.target.as_deref().map(str::trim) {
        Some("") => Err(UsageError(
            "DATABASE_URL is set but empty (in the environment or .env): set it to postgres://user@host:5432/dbname, or pass --target URL".into(),
        )
        .into()),
        Some(url) => Ok(url.to_string()),
        None => Err(UsageError(
            "no target database: pass --target URL or set DATABASE_URL in the environment or .env".into(),
        )
        .into()),
    }
}

/// The entities to work on: all, or the `--entity` ones (in dependency order).
pub(crate) fn select<'a>(plan: &'a Plan, names: &[String]) -> Result<Vec<&'a Entity>> {
    if names.is_empty() {
        return Ok(plan.entities.iter().collect());
    }
    let known: Vec<&str> = plan.entities.iter().map(|e| e.name.as_str()).collect();
    let unknown: Vec<&String> = names.iter().filter(|n| !known.contains(&n.as_str())).collect();
    if !unknown.is_empty() {
        let list = unknown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
        return Err(UsageError(format!("unknown entity {list} (known: {})", known.join(", "))).into());
    }
    Ok(plan.entities.iter().filter(|e| names.contains(&e.name)).collect())
}

/// Binds the selected entities to the source and the target; with `count`, also counts the
/// source rows in scope (a full scan of each table).
pub(crate) async fn preflight(
    source: &str,
    conn: &mut sqlx::PgConnection,
    plan: &Plan,
    selected: &[&Entity],
    count: bool,
) -> Result<Preflight> {
    let owned: Vec<Entity> = selected.iter().map(|e| (*e).clone()).collect();
    let facts = bind::source_facts(source, owned, count).await?;
    Ok(bind::bind_all(conn, plan, selected, facts).await?)
}

pub(crate) fn problems_error(pf: &Preflight) -> anyhow::Error {
    let mut msg = format!("the pre-migration check found {} problem(s):", pf.problems.len());
    for (entity, p) in &pf.problems {
        msg.push_str(&format!("\n  {entity}: {p}"));
    }
    UsageError(msg).into()
}

async fn check_only(cli: &Cli) -> Result<u8> {
    let plan = load_plan(&cli.common)?;
    let selected = select(&plan, &cli.common.entity)?;
    let (source, target) = (source_url(&cli.common)?, target_url(&cli.common)?);
    let mut conn = sink::connect(&target).await?;
    let pf = preflight(&source, &mut conn, &plan, &selected, true).await?;
    println!(
        "{:<16} {:<24} {:>10}  {:<28} check",
        "entity", "source", "rows", "target"
    );
    for (entity, src, rows, tgt) in &pf.lines {
        let n = pf.problems.iter().filter(|(e, _)| e == entity).count();
        let verdict = if n == 0 {
            "ok".to_string()
        } else {
            format!("{n} problem(s)")
        };
        let rows = rows.map(|r| r.to_string()).unwrap_or_else(|| "?".into());
        println!("{entity:<16} {src:<24} {rows:>10}  {tgt:<28} {verdict}");
    }
    if !pf.problems.is_empty() {
        return Err(problems_error(&pf));
    }
    println!("all checks passed for {} entities", selected.len());
    Ok(0)
}

/// Takes the run lock, waiting up to `wait_secs` for a holder to go away; `Some(holder)` on refusal.
pub(crate) async fn lock_run(conn: &mut sqlx::PgConnection, wait_secs: u64) -> Result<Option<String>> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait_secs);
    let mut told = false;
    loop {
        match checkpoint::lock_run(conn).await? {
            None => return Ok(None),
            Some(holder) if std::time::Instant::now() >= deadline => return Ok(Some(holder)),
            Some(holder) => {
                if !told {
                    tracing::info!("waiting up to {wait_secs}s for the run lock held by {holder}");
                    told = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

fn confirm(question: &str) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(UsageError(
            "refusing to write without confirmation: stdin is not a terminal; pass --yes to run unattended".into(),
        )
        .into());
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if matches!(answer.trim().to_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(Failed("aborted: nothing was written".into()).into())
    }
}

/// The run, with its lock waits watched: a statement waits for another session's lock at most
/// `--lock-wait`, and the error then says which table waited on which backend.
async fn run(cli: &Cli) -> Result<u8> {
    sink::locks::set_lock_wait(cli.run.lock_wait);
    let watch = match (cli.run.dry_run, &cli.common.target) {
        (false, Some(target)) => sink::locks::LockWatch::start(target, cli.run.lock_wait).await,
        _ => None,
    };
    let result = load(cli).await;
    match result {
        Err(e) if sink::locks::is_lock_timeout(&e) => {
            Err(Failed(sink::locks::LockWatch::explain(watch.as_ref(), cli.run.lock_wait)).into())
        }
        other => other,
    }
}

async fn load(cli: &Cli) -> Result<u8> {
    crate::interrupt::install();
    if cli.run.truncate {
        crate::interrupt::set_resume_hint(
            "run the same command with --resume in place of --truncate (which would empty the tables again) to continue"
                .into(),
        );
    }
    let started = chrono::Utc::now();
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
    if !dry {
        for e in &selected {
            let Some(p) = state.get(&e.name) else { continue };
            if cli.run.truncate {
                continue;
            }
            // A split entity's rows are in its ranges' rows until it finishes.
            let loaded = p.rows_loaded
                + checkpoint::parts_of(&state, &e.name)
                    .iter()
                    .map(|p| p.rows_loaded)
                    .sum::<i64>();
            if !resume {
                return Err(UsageError(format!(
                    "entity {} already has progress in the target (status {}, {} rows loaded); pass --resume to continue, or --truncate to empty {} and start over",
                    e.name,
                    p.status,
                    loaded,
                    e.target.display()
                ))
                .into());
            }
            if p.fingerprint != e.fingerprint {
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
    if !dry && !cli.run.truncate {
        // A fresh load into a table that already holds rows would mix old and new rows, or fail
        // on their keys half-way: refuse before anything is written.
        let mut nonempty = Vec::new();
        for b in &pf.bound {
            let e = &b.entity;
            if !state.contains_key(&e.name)
                && e.on_conflict == crate::config::OnConflict::Error
                && sink::has_rows(&mut conn, &e.target).await?
            {
                nonempty.push(e.target.display());
            }
        }
        if !nonempty.is_empty() {
            return Err(UsageError(format!(
                "target table(s) {} already hold rows, and no run of migrate loaded them; a fresh load would add to them or fail on their keys. Choose: --truncate to empty them first (asks for confirmation), on_conflict = \"skip\" or \"update\" in the mapping to merge into them, or --resume if an earlier migrate run loaded them",
                nonempty.join(", ")
            ))
            .into());
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
        mirror.write(&state).map_err(|e| UsageError(crate::error::chain(&e)))?;
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
                        let target = &target;
                        let busy: Vec<String> = tables
                            .iter()
                            .filter(|t| **t != b.entity.target.sql())
                            .cloned()
                            .collect();
                        async move {
                            let r = async {
                                let mut own = sink::connect(target).await?;
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
    print!("{}", report::table(&stats));
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
        let r = Report::new(mode, started, &source, &target, stats, validation.clone());
        report::write(path, &r).with_context(|| format!("writing report {path}"))?;
    }
    if !ok {
        return Err(Failed("validation failed: see the table above".into()).into());
    }
    Ok(0)
}

/// Cursor bounds and source retries from the command line.
fn read_plan(run: &RunArgs) -> ReadPlan {
    ReadPlan {
        cursor_rows: run.cursor_rows,
        cursor_time: std::time::Duration::from_secs(run.cursor_secs),
        retries: run.retries,
        retry_wait: std::time::Duration::from_secs_f64(run.retry_wait.max(0.0)),
    }
}

async fn post_validate(
    source: &str,
    conn: &mut sqlx::PgConnection,
    plan: &Plan,
    selected: &[&Entity],
    deep: bool,
) -> Result<Validation> {
    let owned: Vec<Entity> = selected.iter().map(|e| (*e).clone()).collect();
    let facts = bind::source_facts(source, owned, true).await?;
    if let Some(p) = facts
        .iter()
        .zip(selected)
        .find_map(|(f, e)| f.problems.first().map(|p| format!("{}: {p}", e.name)))
    {
        return Err(Failed(format!("cannot validate: {p}")).into());
    }
    let counted: Vec<(&Entity, u64)> = selected
        .iter()
        .zip(&facts)
        .map(|(e, f)| (*e, f.rows_in_scope.unwrap_or(0)))
        .collect();
    let state = checkpoint::load_all(conn).await?;
    let mut v = post::validate(conn, &counted, &state).await?;
    if deep {
        // Counted just above.
        let mut pf = preflight(source, conn, plan, selected, false).await?;
        for b in pf.bound.iter_mut() {
            if let Some((_, n)) = counted.iter().find(|(e, _)| e.name == b.entity.name) {
                b.rows_in_scope = *n;
            }
        }
        if !pf.problems.is_empty() {
            return Err(problems_error(&pf).context("cannot run the deep validation"));
        }
        let bars = Bars::new();
        for b in &pf.bound {
            let c = deep::check(source, conn, b, &bars)
                .await
                .with_context(|| format!("deep validation of {}", b.entity.name))?;
            tracing::info!(
                "{}: deep validation {}: {} matching, {} missing, {} extra, {} differing ({} of {} ranges differ)",
                c.entity,
                if c.ok { "ok" } else { "MISMATCH" },
                c.matching,
                c.missing,
                c.extra,
                c.differing,
                c.ranges_differing,
                c.ranges
            );
            v.ok &= c.ok;
            v.deep.push(c);
        }
    }
    print_validation(&v);
    Ok(v)
}

fn print_validation(v: &Validation) {
    println!("\nvalidation");
    println!(
        "{:<20} {:>10} {:>10} {:>10} {:>10} {:>10}  result",
        "entity", "source", "loaded", "rejected", "kept out", "target"
    );
    for c in &v.entities {
        println!(
            "{:<20} {:>10} {:>10} {:>10} {:>10} {:>10}  {}",
            c.entity,
            c.source_rows,
            c.loaded,
            c.rejected,
            c.kept_out,
            c.target_rows,
            if c.ok { "ok" } else { "MISMATCH" }
        );
        for p in &c.problems {
            println!("    {p}");
        }
    }
    let orphans: i64 = v.foreign_keys.iter().map(|f| f.orphans).sum();
    println!(
        "foreign keys: {} checked, {} orphan row(s)",
        v.foreign_keys.len(),
        orphans
    );
    for f in v.foreign_keys.iter().filter(|f| f.orphans > 0) {
        println!(
            "    {} {}: {} orphan(s), e.g. {}",
            f.table,
            f.constraint,
            f.orphans,
            f.samples.join(", ")
        );
    }
    if !v.deep.is_empty() {
        println!("\ndeep validation: every source row through the mapping, matched by key with the target");
        println!(
            "{:<20} {:>10} {:>9} {:>10} {:>10} {:>8} {:>8} {:>9}  result",
            "entity", "source", "rejected", "target", "matching", "missing", "extra", "differing"
        );
        for c in &v.deep {
            println!(
                "{:<20} {:>10} {:>9} {:>10} {:>10} {:>8} {:>8} {:>9}  {}",
                c.entity,
                c.source_rows,
                c.rejected,
                c.target_rows,
                c.matching,
                c.missing,
                c.extra,
                c.differing,
                if c.ok { "ok" } else { "MISMATCH" }
            );
            if !c.differing_columns.is_empty() {
                let cols: Vec<String> = c.differing_columns.iter().map(|(k, n)| format!("{k} ({n})")).collect();
                println!("    differing columns: {}", cols.join(", "));
            }
            for e in &c.examples {
                println!("    {e}");
            }
            for n in &c.notes {
                println!("    note: {n}");
            }
        }
    }
    println!("validation {}", if v.ok { "passed" } else { "FAILED" });
}

async fn validate_only(cli: &Cli, deep: bool) -> Result<u8> {
    let plan = load_plan(&cli.common)?;
    let selected = select(&plan, &cli.common.entity)?;
    let (source, target) = (source_url(&cli.common)?, target_url(&cli.common)?);
    let mut conn = sink::connect(&target).await?;
    let v = post_validate(&source, &mut conn, &plan, &selected, deep).await?;
    if let Some(path) = &cli.common.report {
        let r = Report::new(
            "validate",
            chrono::Utc::now(),
            &source,
            &target,
            vec![],
            Some(v.clone()),
        );
        report::write(path, &r).with_context(|| format!("writing report {path}"))?;
    }
    if v.ok {
        Ok(0)
    } else {
        Err(Failed("validation failed: see the table above".into()).into())
    }
}

/// What every entity's load shares.
pub(crate) struct LoadCtx<'a> {
    pub(crate) source: &'a str,
    pub(crate) dry: bool,
    pub(crate) state: pipeline::SharedState,
    pub(crate) mirror: &'a Mirror,
    pub(crate) retry: Retry,
    pub(crate) read_plan: &'a ReadPlan,
    /// `--batch-size`, over the mapping's `batch_size`.
    pub(crate) batch_size: Option<usize>,
    /// `--defer-indexes`.
    pub(crate) defer: bool,
    pub(crate) bars: &'a Bars,
    /// `--jobs`: an entity of at least [`MIN_PART_ROWS`] × 2 rows is split into up to this many
    /// key ranges, loaded side by side.
    pub(crate) jobs: usize,
    /// With `--jobs` above 1: one permit per stream (an entity, or a part of one) loading at once.
    pub(crate) streams: Option<&'a tokio::sync::Semaphore>,
}

/// The fewest rows an entity has for `--defer-indexes` to build its keys after the load: taking
/// a key off and building it again costs a few milliseconds (catalog changes, and an fsync of
/// the new index), about what keeping it costs over 20,000 rows.
pub(crate) const DEFER_KEY_MIN_ROWS: u64 = 50_000;

/// The fewest rows a part of a split entity gets.
pub(crate) const MIN_PART_ROWS: u64 = 25_000;

/// Checks that the run's own session (the holder of the run lock) is alive; replaces it and
/// takes the lock again if it was lost.
pub(crate) async fn keep_run_lock(conn: &mut sqlx::PgConnection, retry: &Retry) -> Result<()> {
    if let Err(cause) = sink::execute(conn, "SELECT 1", "checking the run's session").await {
        let lost = pipeline::PipelineError::Sink {
            entity: "run lock".into(),
            cause,
        };
        if !lost.is_connection_lost() {
            return Err(lost.into());
        }
        let mut attempt = 0;
        pipeline::reconnect(conn, retry, &mut attempt, "run lock", &lost).await?;
    }
    Ok(())
}

/// `--jobs` by default: the machine's cores.
fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The entities in groups that can load side by side: each group's dependencies (among the
/// selected entities) are all in earlier groups; each with its position in the plan.
fn dependency_levels(bound: &[Bound]) -> Vec<Vec<(usize, &Bound)>> {
    let mut level: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    let mut levels: Vec<Vec<(usize, &Bound)>> = Vec::new();
    // `bound` is in dependency order, so every dependency's level is known when it is needed.
    for (i, b) in bound.iter().enumerate() {
        let l = b
            .entity
            .depends_on
            .iter()
            .filter_map(|d| level.get(d.as_str()))
            .map(|l| l + 1)
            .max()
            .unwrap_or(0);
        level.insert(&b.entity.name, l);
        if levels.len() <= l {
            levels.resize_with(l + 1, Vec::new);
        }
        levels[l].push((i, b));
    }
    levels
}

/// Loads (or dry-runs) one entity on `conn`, from its committed progress.
/// Puts back what was held for `entity`, saying what it took.
async fn restore(conn: &mut sqlx::PgConnection, entity: &str) -> Result<sink::Restored, sink::SinkError> {
    let r = sink::restore_held(conn, entity).await?;
    if r.indexes + r.foreign_keys + r.keys > 0 {
        tracing::info!(
            "{entity}: re-created {} primary/unique key(s), {} index(es) and {} foreign key(s) in {:.2}s",
            r.keys,
            r.indexes,
            r.foreign_keys,
            r.seconds
        );
    }
    for why in &r.not_valid {
        tracing::warn!("{entity}: {why}");
    }
    Ok(r)
}

/// A foreign key that cannot be validated after the load fails the run (it would otherwise
/// stay NOT VALID, and the target would accept what the constraint forbids).
fn fail_on_invalid(entity: &str, not_valid: &[String]) -> Result<()> {
    if not_valid.is_empty() {
        return Ok(());
    }
    Err(Failed(format!(
        "{entity}: {}. The rows are loaded, but the target's constraint does not hold for them: fix or delete them, then run the same command with --resume to validate it",
        not_valid.join("; ")
    ))
    .into())
}

/// Counts rows that a key built after the load moved to the rejects (the state table has them
/// already) in the run's state and its mirror.
fn moved_to_rejects(ctx: &LoadCtx<'_>, entity: &str, n: u64) -> Result<()> {
    let mut st = ctx.state.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = st.get_mut(entity) {
        p.rows_loaded -= n as i64;
        p.rows_rejected += n as i64;
    }
    ctx.mirror.write_behind(&st)?;
    Ok(())
}

/// The target columns that take the source key unchanged (no transform), when every key column
/// does and a duplicate would be an error (`on_conflict = "error"`): the primary and unique keys
/// that contain them cannot be broken by the load, so `--defer-indexes` builds them after it.
fn plain_key_columns(b: &Bound) -> Option<Vec<String>> {
    if b.entity.on_conflict != crate::config::OnConflict::Error {
        return None;
    }
    let fields = b.key_fields()?;
    fields
        .iter()
        .map(|&i| b.entity.fields[i].chain.is_empty().then(|| b.targets[i].name.clone()))
        .collect()
}

/// `share`: the rows one stream would load if the entity's dependency level were spread evenly;
/// a larger entity is split into key ranges.
/// `busy`: the target tables of the entities loading at the same time (the rest of its level).
async fn load_entity(
    ctx: &LoadCtx<'_>,
    b: &Bound,
    conn: &mut sqlx::PgConnection,
    share: u64,
    busy: &[String],
) -> Result<EntityStats> {
    let (dry, retry) = (ctx.dry, &ctx.retry);
    let e = &b.entity;
    let committed = if dry {
        None
    } else {
        ctx.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&e.name)
            .cloned()
    };
    let start = committed.unwrap_or_else(|| Progress::new(&e.name, &e.fingerprint, &e.target.display()));
    let mut checked = b;
    let with_fks;
    let plain_key = plain_key_columns(b).filter(|_| b.rows_in_scope >= DEFER_KEY_MIN_ROWS);
    if !dry {
        crate::on_target!(
            conn,
            retry,
            &e.name,
            sink::hold_for_load(
                conn,
                &e.target,
                &e.name,
                ctx.defer && !start.is_done(),
                plain_key.as_deref(),
                busy
            )
            .await
        )?;
        let fks = crate::on_target!(conn, retry, &e.name, sink::held_foreign_keys(conn, &e.target).await)?;
        if !fks.is_empty() {
            let mut b2 = b.clone();
            b2.loader.checked_fks = fks;
            with_fks = b2;
            checked = &with_fks;
        }
    }
    if start.is_done() {
        let mut start = start;
        let mut rebuild_seconds = 0.0;
        if !dry {
            let r = restore(conn, &e.name).await?;
            rebuild_seconds = r.seconds;
            if r.duplicates > 0 {
                start.rows_loaded -= r.duplicates as i64;
                start.rows_rejected += r.duplicates as i64;
                moved_to_rejects(ctx, &e.name, r.duplicates)?;
            }
            // A foreign key an earlier run could not validate is still held: tried again.
            fail_on_invalid(&e.name, &r.not_valid)?;
        }
        tracing::info!("{}: already done ({} rows loaded), skipping", e.name, start.rows_loaded);
        return Ok(EntityStats {
            rebuild_seconds,
            ..stats_of(b, &start, "already done")
        });
    }
    if start.rows_read > 0 {
        tracing::info!("{}: resuming after {} rows read", e.name, start.rows_read);
    } else if !dry && e.incremental.is_some() {
        crate::sync::record_start(ctx.source, conn, e).await?;
    }
    let batch = ctx.batch_size.or(e.batch_size).unwrap_or(DEFAULT_BATCH);
    let loaded = match if dry {
        None
    } else {
        plan_parts(ctx, checked, conn, &start, share).await?
    } {
        Some(parts) => load_parts(ctx, checked, conn, start, parts, batch).await,
        None => {
            let _permit = match ctx.streams {
                Some(s) => Some(s.acquire().await?),
                None => None,
            };
            let bar = ctx.bars.entity(&e.name, b.rows_in_scope, start.rows_read as u64);
            let mode = if dry {
                Mode::DryRun
            } else {
                Mode::Load {
                    conn: &mut *conn,
                    mirror: ctx.mirror,
                    state: &ctx.state,
                    retry,
                }
            };
            pipeline::run_entity(ctx.source, checked, start, batch, ctx.read_plan, mode, &bar).await
        }
    };
    if loaded.is_err() && ctx.defer && !dry {
        // Leave the target whole for whoever uses it next; a resume holds them again.
        if let Err(err) = restore(conn, &e.name).await {
            tracing::warn!(
                "{}: could not put back its held foreign keys and indexes ({:#}); they stay recorded in migrate.held_constraints and the next run restores them",
                e.name,
                anyhow::Error::from(err)
            );
        }
    }
    let mut s = loaded.with_context(|| {
        if dry {
            "dry run stopped".to_string()
        } else {
            format!(
                "migration stopped; every committed batch is kept: {}",
                crate::interrupt::resume_hint()
            )
        }
    })?;
    if !dry {
        let moved = crate::on_target!(conn, retry, &e.name, sink::advance_sequences(conn, &e.target).await)?;
        for (seq, value) in moved {
            tracing::info!("{}: sequence {seq} set to {value}, past the loaded keys", e.name);
        }
        let restored = crate::on_target!(conn, retry, &e.name, restore(conn, &e.name).await)?;
        s.rebuild_seconds = restored.seconds;
        if restored.duplicates > 0 {
            s.loaded -= restored.duplicates;
            s.rejected += restored.duplicates;
            moved_to_rejects(ctx, &e.name, restored.duplicates)?;
        }
        fail_on_invalid(&e.name, &restored.not_valid)?;
    }
    tracing::info!(
        "{}: {} read, {} loaded, {} rejected in {:.1}s",
        s.entity,
        s.read,
        s.loaded,
        s.rejected,
        s.seconds
    );
    Ok(s)
}

/// The parts a large entity loads in (their progress rows), or `None` to load it in one piece.
/// A split is decided once, when the entity starts, from every `step`-th key in the source, and
/// stored with the entity's row; a resume reuses it.
async fn plan_parts(
    ctx: &LoadCtx<'_>,
    b: &Bound,
    conn: &mut sqlx::PgConnection,
    start: &Progress,
    share: u64,
) -> Result<Option<Vec<Progress>>> {
    let e = &b.entity;
    let state = ctx.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let parts = checkpoint::parts_of(&state, &e.name);
    if !parts.is_empty() {
        return Ok(Some(parts));
    }
    // Ranges of at least MIN_PART_ROWS, no more than streams, and only as many as it takes to
    // bring the entity down to a stream's share (ranges of one table loading at once contend
    // for its indexes and its heap's end).
    let n = (b.rows_in_scope / MIN_PART_ROWS)
        .min(ctx.jobs as u64)
        .min(b.rows_in_scope.div_ceil(share.max(1)));
    if n < 2 || start.rows_read > 0 || b.spec.window.is_some() {
        return Ok(None);
    }
    let step = b.rows_in_scope.div_ceil(n);
    let spec = b.spec.clone();
    let wanted = n as usize - 1;
    let mut bounds = crate::source::with_source(ctx.source, move |s| s.split_keys(&spec, step, wanted))
        .await
        .with_context(|| format!("{}: finding where to split it", e.name))?;
    bounds.truncate(wanted);
    if bounds.is_empty() {
        return Ok(None);
    }
    let count = bounds.len() + 1;
    let parts: Vec<Progress> = (0..count)
        .map(|i| {
            let mut p = Progress::new(
                &checkpoint::part_name(&e.name, i + 1, count),
                &e.fingerprint,
                &e.target.display(),
            );
            p.last_key = i.checked_sub(1).map(|j| bounds[j].clone());
            p.until_key = bounds.get(i).cloned();
            p
        })
        .collect();
    let retry = &ctx.retry;
    crate::on_target!(conn, retry, &e.name, checkpoint::start_parts(conn, start, &parts).await)?;
    {
        let mut st = ctx.state.lock().unwrap_or_else(|e| e.into_inner());
        st.insert(e.name.clone(), start.clone());
        for p in &parts {
            st.insert(p.entity.clone(), p.clone());
        }
        ctx.mirror.write_behind(&st)?;
    }
    tracing::info!(
        "{}: {} rows in scope, loaded in {count} key ranges side by side",
        e.name,
        b.rows_in_scope
    );
    Ok(Some(parts))
}

/// Loads the parts of a split entity side by side, each on its own session and reader (one
/// stream permit each), then gives the entity its parts' sums and forgets them, in one
/// transaction. A part that fails lets the others finish; their rows stay committed.
async fn load_parts(
    ctx: &LoadCtx<'_>,
    b: &Bound,
    conn: &mut sqlx::PgConnection,
    start: Progress,
    parts: Vec<Progress>,
    batch: usize,
) -> Result<EntityStats, pipeline::PipelineError> {
    let e = &b.entity;
    let began = std::time::Instant::now();
    let count = parts.len();
    let per_part = b.rows_in_scope.div_ceil(count as u64);
    let retries = std::sync::atomic::AtomicU64::new(0);
    let retries = &retries;
    // The parts' sessions never hold the run lock (with --jobs 1 the context's retry would
    // take it again after a reconnection), and without --jobs streams (a resume with --jobs 1
    // of an entity split before) they load one after the other.
    let part_retry = Retry {
        relock: false,
        ..ctx.retry.clone()
    };
    let part_retry = &part_retry;
    let one = tokio::sync::Semaphore::new(1);
    let streams = ctx.streams.unwrap_or(&one);
    let loads = parts.into_iter().enumerate().map(|(i, p)| async move {
        if p.is_done() {
            return Ok(p);
        }
        let _permit = streams.acquire().await.ok();
        if p.rows_read > 0 {
            tracing::info!(
                "{}: resuming part {}/{count} after {} rows read",
                e.name,
                i + 1,
                p.rows_read
            );
        }
        let mut pb = b.clone();
        pb.spec.until = p.until_key.clone();
        let mut own = sink::connect(&ctx.retry.target)
            .await
            .map_err(|cause| pipeline::PipelineError::Sink {
                entity: e.name.clone(),
                cause,
            })?;
        let bar = ctx
            .bars
            .entity(&format!("{} {}/{count}", e.name, i + 1), per_part, p.rows_read as u64);
        let mode = Mode::Load {
            conn: &mut own,
            mirror: ctx.mirror,
            state: &ctx.state,
            retry: part_retry,
        };
        let mut done = p.clone();
        let s = pipeline::run_entity(ctx.source, &pb, p, batch, ctx.read_plan, mode, &bar).await?;
        // What the part committed (its own rows only).
        done.rows_read = s.read as i64;
        done.rows_loaded = s.loaded as i64;
        done.rows_rejected = s.rejected as i64;
        done.rows_kept_out = s.kept_out as i64;
        done.rows_merged = s.merged as i64;
        done.status = "done".into();
        retries.fetch_add(s.retries, std::sync::atomic::Ordering::Relaxed);
        Ok(done)
    });
    let results = futures_util::future::join_all(loads).await;
    let mut done = Vec::with_capacity(count);
    let mut first_error = None;
    for r in results {
        match r {
            Ok(p) => done.push(p),
            // A stop request or a lost target says the most; keep the first of the others.
            Err(err) if first_error.is_none() => first_error = Some(err),
            Err(_) => {}
        }
    }
    if let Some(err) = first_error {
        return Err(err);
    }
    let mut whole = start;
    whole.rows_read = done.iter().map(|p| p.rows_read).sum();
    pipeline::check_all_read(&e.name, whole.rows_read as u64, b.rows_in_scope)?;
    whole.rows_loaded = done.iter().map(|p| p.rows_loaded).sum();
    whole.rows_rejected = done.iter().map(|p| p.rows_rejected).sum();
    whole.rows_kept_out = done.iter().map(|p| p.rows_kept_out).sum();
    whole.rows_merged = done.iter().map(|p| p.rows_merged).sum();
    whole.last_key = None;
    whole.status = "done".into();
    let retry = &ctx.retry;
    crate::on_target!(conn, retry, &e.name, checkpoint::finish_parts(conn, &whole).await)?;
    {
        let mut st = ctx.state.lock().unwrap_or_else(|e| e.into_inner());
        let prefix = format!("{}#", e.name);
        st.retain(|k, _| !k.starts_with(&prefix));
        st.insert(e.name.clone(), whole.clone());
        ctx.mirror
            .write_behind(&st)
            .map_err(|cause| pipeline::PipelineError::State {
                entity: e.name.clone(),
                cause,
            })?;
    }
    ctx.mirror.flush().map_err(|cause| pipeline::PipelineError::State {
        entity: e.name.clone(),
        cause,
    })?;
    let seconds = began.elapsed().as_secs_f64();
    Ok(EntityStats {
        seconds,
        rows_per_sec: whole.rows_read as f64 / seconds.max(1e-6),
        retries: retries.load(std::sync::atomic::Ordering::Relaxed),
        ..stats_of(b, &whole, "done")
    })
}

/// An entity's summary line from its committed progress.
fn stats_of(b: &Bound, p: &Progress, status: &str) -> EntityStats {
    EntityStats {
        entity: b.entity.name.clone(),
        source_rows: b.rows_in_scope,
        skipped_by_where: b.skipped_by_where,
        read: p.rows_read as u64,
        loaded: p.rows_loaded as u64,
        rejected: p.rows_rejected as u64,
        kept_out: p.rows_kept_out as u64,
        merged: p.rows_merged as u64,
        status: status.into(),
        ..Default::default()
    }
}
