//! `migrate scaffold`: the source's catalog turned into mappings and PostgreSQL DDL, written to
//! files (never over existing ones without --force).

use super::source_url;
use crate::cli::{Common, ScaffoldArgs};
use crate::error::UsageError;
use crate::telemetry::redact_url;
use anyhow::{Context, Result};

/// `migrate scaffold`: read the catalog, write the mappings and the DDL.
pub(super) async fn scaffold(common: &Common, args: &ScaffoldArgs) -> Result<u8> {
    use crate::scaffold::{Dialect, Options};
    let source = source_url(common)?;
    let dialect = if source.starts_with("sqlite:") {
        Dialect::Sqlite
    } else if source.starts_with("file:") {
        Dialect::Files
    } else {
        Dialect::Oracle
    };
    let schema = args.schema.clone();
    // The schema as the catalog spells it: it goes into every mapping's `source`.
    let (schema, tables) = crate::source::with_source(&source, move |src| {
        let schema = schema.map(|s| src.schema_name(&s)).transpose()?;
        let tables = src.catalog(schema.as_deref())?;
        Ok((schema, tables))
    })
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
    let profile = if args.profile {
        super::profile::collect(&source, args.schema.clone(), vec![], args.sample)
            .await?
            .into_iter()
            .map(|p| ((p.table.clone(), p.column.clone()), p))
            .collect()
    } else {
        Default::default()
    };
    let opts = Options {
        dialect,
        profile,
        source_schema: schema,
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
