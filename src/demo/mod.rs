//! `migrate demo`: ABIS, the legacy steel-coil system the project was specified from, as a
//! SQLite database (`abis.rs` holds its tables and rows, `write.rs` writes them to SQLite or as
//! Oracle SQL), the Django-style target tables (`--create-target`, guarded), and
//! `--mutate`, which changes the source as a live system would (`mutate.rs`).

mod abis;
mod mutate;
#[cfg(test)]
mod shipped;
mod write;

pub use abis::{TABLES, counts};

use crate::cli::DemoArgs;
use crate::error::UsageError;
use anyhow::{Context, Result};

pub const TARGET_SCHEMA: &str = include_str!("../../demo/target_schema.sql");

pub async fn run(args: &DemoArgs, target: Option<&str>) -> Result<()> {
    if !(args.scale > 0.0 && args.scale <= 1000.0) {
        return Err(UsageError(format!("--scale must be between 0 and 1000, not {}", args.scale)).into());
    }
    if args.mutate {
        return mutate(args);
    }
    if let Some(path) = &args.oracle_sql {
        let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        let n = write::oracle_sql(&mut out, args.scale)?;
        std::io::Write::flush(&mut out)?;
        println!(
            "Oracle SQL for the demo's {n} rows in 8 tables written to {} (run it with sqlplus user/password@//host/SERVICE @{})",
            path.display(),
            path.display()
        );
    } else {
        write_sqlite(args).await?;
    }
    if args.create_target {
        let url = target.ok_or_else(|| UsageError("--create-target needs --target URL or DATABASE_URL".into()))?;
        let mut conn = crate::sink::connect(url).await?;
        guard_target(&mut conn, url, args.force).await?;
        sqlx::raw_sql(TARGET_SCHEMA)
            .execute(&mut conn)
            .await
            .context("creating the demo target schema")?;
        println!("demo target tables created in {}", crate::telemetry::redact_url(url));
    }
    Ok(())
}

/// The demo source as SQLite, at `--out`.
async fn write_sqlite(args: &DemoArgs) -> Result<()> {
    if args.out.exists() {
        if !args.force {
            return Err(UsageError(format!(
                "{} already exists; pass --force to overwrite it",
                args.out.display()
            ))
            .into());
        }
        std::fs::remove_file(&args.out).with_context(|| format!("removing {}", args.out.display()))?;
    }
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let out = args.out.clone();
    let scale = args.scale;
    let total = tokio::task::spawn_blocking(move || write::sqlite(&out, scale)).await??;
    println!(
        "demo legacy database written to {} ({total} rows in 8 tables)",
        args.out.display()
    );
    Ok(())
}

/// One round of changes: applied to the SQLite demo at `--out`, or, with `--oracle-sql`,
/// written as Oracle SQL for a seed made at the same `--scale`.
fn mutate(args: &DemoArgs) -> Result<()> {
    let now = chrono::Utc::now().naive_utc();
    let seed = now.and_utc().timestamp_micros() as u64;
    if let Some(path) = &args.oracle_sql {
        let changes = mutate::plan(
            abis::counts(args.scale),
            mutate::oracle_new_after(args.scale, args.round),
            seed,
            now,
        );
        let mut text = String::from("SET DEFINE OFF\nWHENEVER SQLERROR EXIT FAILURE\n");
        for c in &changes {
            for stmt in mutate::sql(c, true, now) {
                text.push_str(&stmt);
                text.push_str(";\n");
            }
        }
        text.push_str("COMMIT;\nEXIT\n");
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        for c in &changes {
            println!("{}", c.what);
        }
        println!("Oracle SQL for these changes written to {}", path.display());
        return Ok(());
    }
    if !args.out.exists() {
        return Err(UsageError(format!(
            "{} does not exist: create the demo first (migrate demo --out {})",
            args.out.display(),
            args.out.display()
        ))
        .into());
    }
    let mut conn = rusqlite::Connection::open(&args.out).with_context(|| format!("opening {}", args.out.display()))?;
    let mut max = [0u64; 8];
    for (i, t) in TABLES.iter().enumerate() {
        let n: i64 = conn.query_row(
            &format!("SELECT coalesce(max({}), 0) FROM {}", t.cols[0].name, t.name),
            [],
            |r| r.get(0),
        )?;
        max[i] = n as u64;
    }
    let changes = mutate::plan(max, max, seed, now);
    let tx = conn.transaction()?;
    for c in &changes {
        for stmt in mutate::sql(c, false, now) {
            tx.execute(&stmt, [])
                .with_context(|| format!("changing {}", TABLES[c.table].name))?;
        }
    }
    tx.commit()?;
    for c in &changes {
        println!("{}", c.what);
    }
    println!(
        "{} changed as a live system would (LAST_MODIFIED moved to {}); `migrate sync` moves the changes",
        args.out.display(),
        now.format("%Y-%m-%d %H:%M:%S")
    );
    Ok(())
}

/// The tables `--create-target` drops and creates (demo/target_schema.sql), as Django names
/// them.
pub const DEMO_TABLES: [&str; 8] = [
    "shipping_carrier",
    "production_line",
    "customers_customer",
    "inventory_coil",
    "production_job",
    "inventory_skid",
    "quality_qaresult",
    "shipping_shipment",
];

/// The demo mappings' entities, whose state `--create-target` may forget.
pub const DEMO_ENTITIES: [&str; 8] = ["carrier", "line", "customer", "coil", "job", "skid", "qa", "shipment"];

/// What in the database `--create-target` would destroy that is not the demo's: other tables,
/// other entities' state in the migrate schema, keys and indexes held by `--defer-indexes`.
const NOT_THE_DEMOS: &str = "SELECT format('table %I.%I', n.nspname, c.relname)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'migrate')
       AND left(n.nspname, 3) <> 'pg_' AND NOT (n.nspname = 'public' AND c.relname = ANY($1))
    UNION ALL
    SELECT format('the progress of entity %s in migrate.progress', entity) FROM migrate.progress
     WHERE to_regclass('migrate.progress') IS NOT NULL AND NOT (split_part(split_part(entity, '#', 1), '@', 1) = ANY($2))
    UNION ALL
    SELECT format('%s key(s), index(es) or foreign key(s) held in migrate.held_constraints (the only record of them)', count(*))
      FROM migrate.held_constraints HAVING count(*) > 0
    ORDER BY 1";

/// Refuses to wipe a database that holds more than the demo: `--create-target` drops the demo
/// tables and the whole migrate schema, which may be another migration's only record of its
/// progress and of the keys it took off its tables. With `force`, asks first.
async fn guard_target(conn: &mut sqlx::PgConnection, url: &str, force: bool) -> Result<()> {
    let has_state: bool = sqlx::query_scalar(
        "SELECT to_regclass('migrate.progress') IS NOT NULL AND to_regclass('migrate.held_constraints') IS NOT NULL",
    )
    .fetch_one(&mut *conn)
    .await?;
    let sql = if has_state {
        NOT_THE_DEMOS.to_string()
    } else {
        // Without the migrate schema only the first part applies.
        NOT_THE_DEMOS[..NOT_THE_DEMOS.find("    UNION ALL").unwrap_or(NOT_THE_DEMOS.len())].to_string() + " ORDER BY 1"
    };
    let found: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(DEMO_TABLES.to_vec())
        .bind(DEMO_ENTITIES.to_vec())
        .fetch_all(&mut *conn)
        .await?;
    if found.is_empty() {
        return Ok(());
    }
    let shown = crate::telemetry::redact_url(url);
    let mut list: Vec<String> = found.iter().take(10).cloned().collect();
    if found.len() > 10 {
        list.push(format!("… {} more", found.len() - 10));
    }
    let what = format!(
        "{shown} holds more than the demo ({}); --create-target drops the demo tables and the whole migrate schema there",
        list.join("; ")
    );
    if !force {
        return Err(UsageError(format!(
            "refusing: {what}. Give the demo a database of its own (--target postgres://…/migrate_demo), or pass --force to be asked"
        ))
        .into());
    }
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Err(UsageError(format!(
            "refusing: {what}, and stdin is not a terminal to ask; give the demo a database of its own"
        ))
        .into());
    }
    eprint!("{what}. Type the database's name to go on: ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    let dbname: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&mut *conn)
        .await?;
    if answer.trim() != dbname {
        return Err(crate::error::Failed("aborted: nothing was dropped".into()).into());
    }
    Ok(())
}
