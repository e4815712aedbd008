//! The checking modes: `--check-only` (every entity bound to both databases, nothing written)
//! and `migrate validate` (counts, foreign keys and, with `--deep`, every row), with the
//! validation's printed table.

use super::{load_plan, preflight, problems_error, select, source_url, target_url};
use crate::bind;
use crate::checkpoint;
use crate::cli::Cli;
use crate::error::Failed;
use crate::plan::{Entity, Plan};
use crate::report::{self, Report};
use crate::sink;
use crate::telemetry::Bars;
use crate::validate::deep;
use crate::validate::post::{self, Validation};
use anyhow::{Context, Result};

pub(super) async fn check_only(cli: &Cli) -> Result<u8> {
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
    if !pf.choices.is_empty() {
        println!("\nfiles kept, one per group (nothing is loaded from the others)");
        println!("{:<16} {:<20} {:<40} {:<6} measure", "entity", "group", "file", "kept");
        for (entity, c) in &pf.choices {
            println!(
                "{entity:<16} {:<20} {:<40} {:<6} {}",
                c.group,
                c.file,
                if c.kept { "yes" } else { "no" },
                c.measure
            );
        }
    }
    if let Some(path) = &cli.common.report {
        write_check_report(path, &pf).with_context(|| format!("writing report {path}"))?;
    }
    if !pf.problems.is_empty() {
        return Err(problems_error(&pf));
    }
    if cli.run.profile {
        let fields = profile_fields(&source, pf.bound.clone()).await?;
        print!("{}", fields_table(&fields));
    }
    println!("all checks passed for {} entities", selected.len());
    // What a plain run (no --resume, no --truncate) would still refuse: said now, not at the run.
    let state = checkpoint::load_all(&mut conn).await?;
    let mut refusals: Vec<String> = super::run::with_progress(&state, &selected)
        .into_iter()
        .map(|(e, p, loaded)| super::run::already_loaded(e, p, loaded))
        .collect();
    let nonempty = super::run::rows_no_run_loaded(&mut conn, &pf.bound, &state).await?;
    if !nonempty.is_empty() {
        refusals.push(super::run::rows_no_run_loaded_message(&nonempty));
    }
    if !refusals.is_empty() {
        println!("but a plain run (without --resume or --truncate) would refuse to start:");
        for r in refusals {
            println!("  {r}");
        }
    }
    Ok(0)
}

/// One mapped field as `--check-only --profile` found it.
#[derive(Debug)]
pub(super) struct FieldCheck {
    entity: String,
    from: String,
    to: String,
    target_type: String,
    /// The source column's profile (before the transforms).
    profile: crate::profile::ColumnProfile,
    /// Values the transforms or the target column refuse.
    refused: u64,
    /// The first few refused values with the reason.
    examples: Vec<String>,
}

/// Reads every row of each bound entity's mapped columns, puts each value through its field's
/// transforms and its target column's encoder (the load's own checks), and profiles the source
/// column: what the load would refuse, per field, before it runs.
async fn profile_fields(source: &str, bound: Vec<crate::bind::Bound>) -> Result<Vec<FieldCheck>> {
    let checks = crate::source::with_source(source, move |src| {
        let mut out = Vec::new();
        for b in &bound {
            let mut checks: Vec<(usize, usize, FieldCheck)> = b
                .entity
                .fields
                .iter()
                .enumerate()
                .filter_map(|(i, f)| {
                    let pos = b.field_pos[i]?;
                    let from = f.from.clone()?;
                    Some((
                        i,
                        pos,
                        FieldCheck {
                            entity: b.entity.name.clone(),
                            profile: crate::profile::ColumnProfile::new(&b.entity.relation.describe(), &from, ""),
                            from,
                            to: f.to.clone(),
                            target_type: b.targets[i].formatted.clone(),
                            refused: 0,
                            examples: Vec::new(),
                        },
                    ))
                })
                .collect();
            let mut buf = Vec::new();
            src.scan(&b.spec, 2000, &mut |batch| {
                for row in batch.iter() {
                    for (i, pos, c) in checks.iter_mut() {
                        let v = &row[*pos];
                        c.profile.add(v);
                        buf.clear();
                        let why = match b.entity.fields[*i].chain.apply_ref(v) {
                            Err(e) => Some(format!("transform: {e}")),
                            Ok(t) => b.targets[*i].ty.encode(&t, &mut buf).err(),
                        };
                        if let Some(why) = why {
                            c.refused += 1;
                            if c.examples.len() < 3 {
                                c.examples
                                    .push(format!("{}: {why}", crate::value::key_display(std::slice::from_ref(v))));
                            }
                        }
                    }
                }
                true
            })?;
            for (_, _, mut c) in checks {
                c.profile.finish();
                out.push(c);
            }
        }
        Ok(out)
    })
    .await?;
    Ok(checks)
}

fn fields_table(fields: &[FieldCheck]) -> String {
    let mut out = format!(
        "\nprofile of the mapped columns (every source row, through the mapping's transforms)\n{:<14} {:<22} {:<36} {:>8} {:>9}  {:<30} notes\n",
        "entity", "from", "to", "values", "refused", "looks like"
    );
    for c in fields {
        out.push_str(&format!(
            "{:<14} {:<22} {:<36} {:>8} {:>9}  {:<30} {}\n",
            c.entity,
            c.from,
            format!("{} {}", c.to, c.target_type),
            c.profile.rows,
            c.refused,
            c.profile.looks_like(),
            c.profile.warnings().join("; ")
        ));
        for e in &c.examples {
            out.push_str(&format!("{:<14}   would be a reject: {e}\n", ""));
        }
    }
    let refused: u64 = fields.iter().map(|c| c.refused).sum();
    out.push_str(&if refused == 0 {
        "every mapped value fits its target column\n".to_string()
    } else {
        format!("{refused} value(s) would be rejects (a row is rejected once, for its first refused value; foreign keys and CHECKs are checked by PostgreSQL during the run)\n")
    });
    out
}

/// `--check-only --report FILE`: the analysis before anything is imported. FILE.csv: one line
/// per file choice (entity, group, file, kept, measure), for people to check; else JSON with the
/// entities, their rows in scope and the choices.
fn write_check_report(path: &str, pf: &crate::bind::Preflight) -> Result<()> {
    if path.to_ascii_lowercase().ends_with(".csv") {
        let mut w = csv::Writer::from_path(path)?;
        w.write_record(["entity", "group", "file", "kept", "measure"])?;
        for (entity, c) in &pf.choices {
            w.write_record([
                entity.as_str(),
                &c.group,
                &c.file,
                if c.kept { "yes" } else { "no" },
                &c.measure,
            ])?;
        }
        w.flush()?;
        return Ok(());
    }
    let entities: Vec<serde_json::Value> = pf
        .lines
        .iter()
        .map(|(e, src, rows, tgt)| serde_json::json!({ "entity": e, "source": src, "rows_in_scope": rows, "target": tgt }))
        .collect();
    let choices: Vec<serde_json::Value> = pf
        .choices
        .iter()
        .map(|(e, c)| serde_json::json!({ "entity": e, "group": c.group, "file": c.file, "kept": c.kept, "measure": c.measure }))
        .collect();
    let problems: Vec<serde_json::Value> = pf
        .problems
        .iter()
        .map(|(e, p)| serde_json::json!({ "entity": e, "problem": p }))
        .collect();
    let doc = serde_json::json!({ "mode": "check", "ok": pf.problems.is_empty(), "entities": entities, "file_choices": choices, "problems": problems });
    report::write_json(path, &doc)?;
    Ok(())
}

pub(super) async fn post_validate(
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

pub(super) fn print_validation(v: &Validation) {
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

pub(super) async fn validate_only(cli: &Cli, deep: bool) -> Result<u8> {
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
        let mut r = r;
        r.settings
            .insert("mappings".into(), cli.common.mappings.display().to_string());
        r.settings
            .insert("--deep".into(), if deep { "yes" } else { "no" }.into());
        let names: Vec<String> = selected.iter().map(|e| e.name.clone()).collect();
        let (rows, sampled) = checkpoint::rejects_for_report(&mut conn, &names, report::REJECTS_GROUPED).await?;
        r.rejects = report::group_rejects(rows);
        r.rejects_sampled = sampled;
        report::write(path, &r).with_context(|| format!("writing report {path}"))?;
    }
    if v.ok {
        Ok(0)
    } else {
        Err(Failed("validation failed: see the table above".into()).into())
    }
}
