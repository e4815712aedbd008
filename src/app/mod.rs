//! One module per mode, dispatched here: `run.rs` (the run and --dry-run), `check.rs`
//! (--check-only, validate), `scaffold.rs`, `sync.rs` (sync and status); `migrate demo` is
//! `crate::demo`. What the modes share is here: the mappings, the URLs, the entity selection,
//! the pre-flight, the run lock and the confirmation prompt. Wiring only: the work is done by
//! the orchestrator, the pipeline, the sink and the sources.

mod check;
mod hint;
mod profile;
mod run;
mod scaffold;
mod sync;

pub use hint::hint;

use crate::bind::{self, Preflight};
use crate::checkpoint;
use crate::cli::{Cli, Command, Common};
use crate::error::{Failed, UsageError};
use crate::plan::{self, Entity, Plan};
use anyhow::Result;
use std::io::IsTerminal;

pub async fn main(cli: Cli) -> Result<u8> {
    match &cli.command {
        Some(Command::Demo(args)) => crate::demo::run(args, cli.common.target.as_deref()).await.map(|()| 0),
        Some(Command::Validate(args)) => check::validate_only(&cli, args.deep).await,
        Some(Command::Scaffold(args)) => scaffold::scaffold(&cli.common, args).await,
        Some(Command::Sync(args)) => sync::sync(&cli, args).await,
        Some(Command::Status(args)) => sync::status(&cli, args).await,
        Some(Command::Profile(args)) => profile::profile(&cli.common, args).await,
        None if cli.run.check_only => check::check_only(&cli).await,
        None => run::run(&cli).await,
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
        if let Some(unused) = unused_oracle_settings(s) {
            tracing::warn!("{unused}");
        }
        return Ok(s.clone());
    }
    if let Some(url) = crate::source::oracle::url::url_from_env() {
        return Ok(url);
    }
    Err(UsageError("no source database: pass --source URL or set MIGRATE_SOURCE (or ORACLE_USER with ORACLE_HOST and ORACLE_SERVICE or ORACLE_SID, or ORACLE_CONNECT) in the environment or .env".into()).into())
}

/// MIGRATE_SOURCE (from the environment or .env) and the ORACLE_* set both given: the URL wins,
/// which surprises whoever filled in ORACLE_* below a MIGRATE_SOURCE line they forgot.
fn unused_oracle_settings(source: &str) -> Option<String> {
    let from_env = std::env::var("MIGRATE_SOURCE").is_ok_and(|v| v == source);
    let oracle: Vec<&str> = ["ORACLE_USER", "ORACLE_CONNECT"]
        .into_iter()
        .filter(|k| std::env::var(k).is_ok_and(|v| !v.trim().is_empty()))
        .collect();
    (from_env && !oracle.is_empty()).then(|| {
        format!(
            "MIGRATE_SOURCE is set (to {}), so {} and the rest of the ORACLE_* settings are not used: remove or comment out MIGRATE_SOURCE (in the environment or .env) to read Oracle through them",
            crate::telemetry::redact_url(source),
            oracle.join(" and ")
        )
    })
}

/// The target: --target, else DATABASE_URL, else libpq's PGHOST/PGPORT/PGUSER/PGDATABASE (the
/// password from PGPASSWORD or ~/.pgpass, read by the driver and never shown). What the URL
/// leaves out comes from the PG* variables, as in psql; TLS files it names must exist.
pub(crate) fn target_url(common: &Common) -> Result<String> {
    let env = |k: &str| std::env::var(k).ok();
    let url = match common.target.as_deref().map(str::trim) {
        Some("") => {
            return Err(UsageError(
                "DATABASE_URL is set but empty (in the environment or .env): set it to postgres://user@host:5432/dbname, or pass --target URL".into(),
            )
            .into());
        }
        Some(url) => url.to_string(),
        None => crate::sink::tls::libpq_url(&env).ok_or_else(|| {
            UsageError(
                "no target database: pass --target URL, or set DATABASE_URL (or PGHOST/PGPORT/PGUSER/PGDATABASE, as for psql) in the environment or .env".into(),
            )
        })?,
    };
    crate::sink::tls::check_settings(Some(&url), &env)
        .map_err(|why| UsageError(format!("target {}: {why}", crate::telemetry::redact_url(&url))))?;
    if let Some(w) = crate::sink::tls::pgpass_warning(&env) {
        tracing::warn!("{w}");
    }
    Ok(url)
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

pub(crate) fn confirm(question: &str) -> Result<()> {
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
