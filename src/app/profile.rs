//! `migrate profile`: every catalog table read once (or its first `--sample` rows), each
//! column's values profiled (`crate::profile`), shown as a table and written as CSV or JSON.

use super::source_url;
use crate::cli::{Common, ProfileArgs};
use crate::error::UsageError;
use crate::plan::Relation;
use crate::profile::ColumnProfile;
use crate::source::{Column, ReadSpec};
use crate::telemetry::redact_url;
use anyhow::{Context, Result};

pub(super) async fn profile(common: &Common, args: &ProfileArgs) -> Result<u8> {
    let source = source_url(common)?;
    let profiles = collect(&source, args.schema.clone(), args.table.clone(), args.sample).await?;
    if profiles.is_empty() {
        return Err(UsageError(format!(
            "no table to profile in {}{}",
            redact_url(&source),
            if args.table.is_empty() { "" } else { " (check --table)" }
        ))
        .into());
    }
    print!("{}", crate::profile::table(&profiles));
    if let Some(path) = &args.out {
        write(path, &profiles).with_context(|| format!("writing {}", path.display()))?;
        println!("\nprofile written to {}", path.display());
    }
    Ok(0)
}

/// The profile of every catalog table of `schema` (or those in `only`), each read once.
pub(super) async fn collect(
    source: &str,
    schema: Option<String>,
    only: Vec<String>,
    sample: Option<u64>,
) -> Result<Vec<ColumnProfile>> {
    let files = source.starts_with("file:");
    let profiles = crate::source::with_source(source, move |src| {
        let schema = schema.map(|s| src.schema_name(&s)).transpose()?;
        let tables = src.catalog(schema.as_deref())?;
        let mut all = Vec::new();
        for t in tables {
            let plain = t.name.split('?').next().unwrap_or(&t.name).to_string();
            if !only.is_empty()
                && !only
                    .iter()
                    .any(|o| o.eq_ignore_ascii_case(&t.name) || o.eq_ignore_ascii_case(&plain))
            {
                continue;
            }
            // A file's position columns say nothing about its data.
            let cols: Vec<_> = t
                .info
                .columns
                .iter()
                .filter(|c| !(files && crate::source::files::KEY.contains(&c.name.as_str())))
                .collect();
            let relation = match &schema {
                Some(s) if !files => Relation::Table(format!("{s}.{}", t.name)),
                _ => Relation::Table(t.name.clone()),
            };
            let spec = ReadSpec {
                relation,
                columns: cols.iter().map(|c| Column::Named(c.name.clone())).collect(),
                key: vec![],
                filter: None,
                window: None,
                until: None,
            };
            let mut ps: Vec<ColumnProfile> = cols
                .iter()
                .map(|c| ColumnProfile::new(&plain, &c.name, &c.declared_type))
                .collect();
            let mut left = sample.unwrap_or(u64::MAX);
            tracing::info!("profiling {plain} ({} columns)", ps.len());
            src.scan(&spec, 2000, &mut |batch| {
                for row in batch.iter().take(left.min(batch.len() as u64) as usize) {
                    for (p, v) in ps.iter_mut().zip(row) {
                        p.add(v);
                    }
                }
                left = left.saturating_sub(batch.len() as u64);
                left > 0
            })?;
            for p in &mut ps {
                p.finish();
            }
            all.extend(ps);
        }
        Ok(all)
    })
    .await
    .with_context(|| format!("profiling {}", redact_url(source)))?;
    Ok(profiles)
}

fn write(path: &std::path::Path, profiles: &[ColumnProfile]) -> Result<()> {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) {
        let mut w = csv::Writer::from_path(path)?;
        w.write_record([
            "table",
            "column",
            "declared",
            "rows",
            "nulls",
            "empty",
            "distinct",
            "min",
            "max",
            "longest",
            "numbers",
            "max_integer_digits",
            "max_scale",
            "numeric_text",
            "boolean_like",
            "date_masks",
            "invalid_utf8",
            "nul_bytes",
            "trailing_blanks",
            "leading_blanks",
            "looks_like",
        ])?;
        for p in profiles {
            let distinct = format!("{}{}", p.distinct, if p.distinct_more { "+" } else { "" });
            w.write_record([
                p.table.clone(),
                p.column.clone(),
                p.declared.clone(),
                p.rows.to_string(),
                p.nulls.to_string(),
                p.empty.to_string(),
                distinct,
                p.min.clone().unwrap_or_default(),
                p.max.clone().unwrap_or_default(),
                p.longest.to_string(),
                p.numbers.to_string(),
                p.max_integer_digits.to_string(),
                p.max_scale.to_string(),
                p.numeric_text.to_string(),
                p.boolean_like.to_string(),
                p.date_masks.join(" | "),
                p.invalid_utf8.to_string(),
                p.nul_bytes.to_string(),
                p.trailing_blanks.to_string(),
                p.leading_blanks.to_string(),
                p.looks_like(),
            ])?;
        }
        w.flush()?;
    } else {
        let doc: Vec<serde_json::Value> = profiles
            .iter()
            .map(|p| {
                let mut v = serde_json::to_value(p).unwrap_or_default();
                v["looks_like"] = p.looks_like().into();
                v
            })
            .collect();
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")?;
    }
    Ok(())
}
