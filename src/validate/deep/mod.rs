//! `validate --deep`: proof that the target holds what the source holds, row by row.
//!
//! Each side is turned into the same bytes before comparing: source rows go through the
//! entity's transforms and the binary COPY encoder the load uses; target rows come back from
//! `COPY (SELECT <mapped columns> FROM t) TO STDOUT (FORMAT binary)`. A few types are brought to
//! one canonical form first (numeric scale, char padding, jsonb key order), because PostgreSQL
//! normalises them on the way in.
//!
//! Rows are spread over [`RANGES`] ranges by a hash of their key (not by key order: the source's
//! and the target's collations differ, and a transformed key sorts differently). Pass 1 keeps,
//! per range and side, the row count and the sum of the row hashes: an equal table costs one
//! streaming pass on each side and a few MB. Pass 2 reads both sides again but keeps only the
//! rows of the ranges that differ, and itemises them: missing keys, extra keys, duplicates, and
//! the columns that differ with both values.
//!
//! A row whose key is in `migrate.rejects` is accounted for as rejected, not as missing.

mod canonical;
mod side;

pub use canonical::{canonical, numeric_text, shown};

use crate::bind::Bound;
use crate::plan::quote_ident;
use crate::sink::copy;
use crate::sink::pgtype::PgType;
use crate::source::SourceError;
use crate::telemetry::{Bars, EntityBar};
use crate::value::key_to_json;
use serde::Serialize;
use side::{Layout, Side, Wanted, read_source, read_target};
use sqlx::PgConnection;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// Why a deep validation could not be done (not: what it found).
#[derive(Debug, thiserror::Error)]
pub enum DeepError {
    #[error("reading {entity} from the source")]
    Source {
        entity: String,
        #[source]
        cause: SourceError,
    },
    #[error("reading {entity} from the target: {why}")]
    Target { entity: String, why: String },
    #[error("target {what}")]
    Query {
        what: String,
        #[source]
        cause: sqlx::Error,
    },
    #[error("{0}")]
    Other(String),
}

fn q_err(what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> DeepError {
    let what = what.into();
    move |cause| DeepError::Query { what, cause }
}

/// Hash ranges per entity (pass 1 keeps three u64 per range and side).
pub const RANGES: usize = 1 << 14;
/// Examples shown per kind of difference and entity.
pub const EXAMPLES: usize = 5;
/// Rows per side that pass 2 keeps in memory; ranges past this are counted, not itemised.
const DETAIL_BUDGET: u64 = 200_000;

#[derive(Debug, Clone, Default, Serialize)]
pub struct DeepCheck {
    pub entity: String,
    /// Source rows in scope (after `where`).
    pub source_rows: u64,
    /// Source rows whose key is in migrate.rejects.
    pub rejected: u64,
    pub target_rows: u64,
    pub matching: u64,
    /// In the source (not rejected), not in the target.
    pub missing: u64,
    /// In the target, not in the source (duplicates included).
    pub extra: u64,
    /// Same key, different values.
    pub differing: u64,
    /// Column name → rows in which it differs.
    pub differing_columns: BTreeMap<String, u64>,
    pub ranges: usize,
    pub ranges_differing: usize,
    /// Differing ranges past the detail budget: counted above only through their row counts.
    pub ranges_not_itemised: usize,
    /// Whether rows are matched by the mapped key columns (else by the whole row).
    pub keyed: bool,
    pub examples: Vec<String>,
    pub notes: Vec<String>,
    pub ok: bool,
}

/// Both sides of one pass at once: the source in its own thread, the target here.
/// What both passes over one entity share.
#[derive(Clone)]
struct Job {
    url: String,
    b: Bound,
    layout: Layout,
    rejects: Arc<HashSet<String>>,
    /// Rejected rows are left out of the comparison (they are not in the target).
    skip_rejected: bool,
    /// Target rows compared: all, or those passing this condition (soft-deleted rows left out).
    target_filter: Option<String>,
}

async fn pass(job: &Job, conn: &mut PgConnection, wanted: Wanted, bar: &EntityBar) -> Result<(Side, Side), DeepError> {
    let (j, w) = (job.clone(), wanted.clone());
    let entity = job.b.entity.name.clone();
    let source_err = |cause| DeepError::Source {
        entity: entity.clone(),
        cause,
    };
    let reader = crate::source::Reader::spawn(format!("deep-{entity}"), move || {
        read_source(&j.url, &j.b, &j.layout, &j.rejects, j.skip_rejected, &w)
    })
    .map_err(source_err)?;
    let target = read_target(conn, &job.b, &job.layout, &wanted, bar, job.target_filter.as_deref()).await;
    let source = reader.join().await.map_err(source_err)?;
    let target = target.map_err(|why| DeepError::Target {
        entity: entity.clone(),
        why,
    })?;
    Ok((source, target))
}

/// The keys of the entity's rejected rows, as `key_to_json` text.
async fn rejected_keys(conn: &mut PgConnection, entity: &str) -> Result<HashSet<String>, DeepError> {
    let rows: Vec<serde_json::Value> =
        sqlx::query_scalar("SELECT key_json FROM migrate.rejects WHERE entity = $1 AND key_json IS NOT NULL")
            .bind(entity)
            .fetch_all(&mut *conn)
            .await
            .or_else(|e| match &e {
                // No migrate schema yet: nothing was rejected.
                e if crate::sqlstate::is(e, crate::sqlstate::SqlState::UNDEFINED_TABLE) => Ok(vec![]),
                _ => Err(e),
            })
            .map_err(q_err("reading the rejects"))?;
    Ok(rows
        .iter()
        .filter_map(crate::value::key_from_json)
        .map(|k| key_to_json(&k).to_string())
        .collect())
}

/// Compares one entity's source and target row by row.
pub async fn check(url: &str, conn: &mut PgConnection, b: &Bound, bars: &Bars) -> Result<DeepCheck, DeepError> {
    let layout = Layout::of(b);
    let job = Job {
        url: url.to_string(),
        b: b.clone(),
        layout: layout.clone(),
        rejects: Arc::new(rejected_keys(conn, &b.entity.name).await?),
        skip_rejected: true,
        target_filter: soft_delete_filter(conn, &b.entity).await?,
    };
    let bar = bars.entity(&format!("{} (compare)", b.entity.name), b.rows_in_scope, 0);
    let (src, tgt) = pass(&job, conn, None, &bar).await?;
    let mut c = DeepCheck {
        entity: b.entity.name.clone(),
        source_rows: src.rows + src.rejected + src.unencodable_count,
        rejected: src.rejected,
        target_rows: tgt.rows,
        ranges: RANGES,
        keyed: layout.keyed,
        ..Default::default()
    };
    if !c.keyed {
        c.notes.push(
            "the key is not among the mapped columns: rows are matched by all their values, so a changed row shows as one missing and one extra"
                .into(),
        );
    }
    if src.unencodable_count > 0 {
        c.missing += src.unencodable_count;
        for (key, why) in &src.unencodable {
            c.examples.push(format!(
                "cannot load source row {key} ({why}) and it is not in migrate.rejects"
            ));
        }
    }
    let differing: Vec<usize> = (0..RANGES).filter(|&i| src.ranges[i] != tgt.ranges[i]).collect();
    c.ranges_differing = differing.len();
    let equal_rows: u64 = (0..RANGES)
        .filter(|&i| src.ranges[i] == tgt.ranges[i])
        .map(|i| src.ranges[i].rows)
        .sum();
    c.matching = equal_rows;
    if !differing.is_empty() {
        let mut chosen = HashSet::new();
        let mut budget = 0u64;
        let mut rest = (0u64, 0u64);
        for &i in &differing {
            let rows = src.ranges[i].rows.max(tgt.ranges[i].rows);
            if budget + rows <= DETAIL_BUDGET || chosen.is_empty() {
                budget += rows;
                chosen.insert(i);
            } else {
                c.ranges_not_itemised += 1;
                rest.0 += src.ranges[i].rows;
                rest.1 += tgt.ranges[i].rows;
            }
        }
        let bar = bars.entity(&format!("{} (itemise)", b.entity.name), b.rows_in_scope, 0);
        let (src2, tgt2) = pass(&job, conn, Some(Arc::new(chosen)), &bar).await?;
        itemise(&mut c, &layout, src2, tgt2);
        if c.ranges_not_itemised > 0 {
            // Counted, not itemised: the difference of the row counts is all that is known.
            c.missing += rest.0.saturating_sub(rest.1);
            c.extra += rest.1.saturating_sub(rest.0);
            c.notes.push(format!(
                "{} more range(s) differ ({} source / {} target rows) and were not itemised (more than {DETAIL_BUDGET} rows differ); fix the first differences and run again",
                c.ranges_not_itemised, rest.0, rest.1
            ));
        }
    }
    if b.entity.on_conflict != crate::config::OnConflict::Error && (c.extra > 0 || c.differing > 0) {
        c.notes.push(format!(
            "on_conflict = \"{}\": rows the target held before the load can be extra or differ",
            match b.entity.on_conflict {
                crate::config::OnConflict::Skip => "skip",
                _ => "update",
            }
        ));
    }
    // Rows PostgreSQL took but kept out (a trigger, a rule, on_conflict = "skip") or merged
    // into a row already there are missing by design: the load counted them, by the command
    // tags, and the count must match.
    let state = crate::checkpoint::load_all(conn)
        .await
        .map_err(|e| DeepError::Other(crate::telemetry::chain(&e)))?;
    let kept = state
        .get(&b.entity.name)
        .map_or(0, |p| (p.rows_kept_out + p.rows_merged) as u64);
    if kept > 0 && c.missing > 0 {
        if c.missing == kept {
            c.notes.push(format!(
                "{kept} source row(s) are not in the target because the target kept them out or merged them into rows already there, as the load counted (migrate.progress rows_kept_out, rows_merged)"
            ));
            c.missing = 0;
        } else {
            c.notes.push(format!(
                "the load counted {kept} row(s) kept out or merged by the target, but {} are missing",
                c.missing
            ));
        }
    }
    c.ok = c.missing == 0 && c.extra == 0 && c.differing == 0;
    Ok(c)
}

/// For `deletes = "soft"`: the condition that leaves the flagged target rows out, by the
/// flag column's type (a boolean is flagged when true, anything else when set).
pub async fn soft_delete_filter(conn: &mut PgConnection, e: &crate::plan::Entity) -> Result<Option<String>, DeepError> {
    let Some(col) = e.soft_delete_column.as_deref() else {
        return Ok(None);
    };
    if e.deletes != crate::config::Deletes::Soft {
        return Ok(None);
    }
    let ty: Option<String> = sqlx::query_scalar(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2 AND NOT attisdropped",
    )
    .bind(e.target.sql())
    .bind(col)
    .fetch_optional(&mut *conn)
    .await
    .map_err(q_err("reading the soft-delete column's type"))?;
    let Some(ty) = ty else {
        return Err(DeepError::Other(format!(
            "{}: soft_delete_column {col} is not a column of {}",
            e.name,
            e.target.display()
        )));
    };
    let c = quote_ident(col);
    Ok(Some(if ty == "boolean" {
        format!("{c} IS NOT TRUE")
    } else {
        format!("{c} IS NULL")
    }))
}

/// What [`gone_keys`] found for `deletes`.
#[derive(Debug, Default)]
pub struct Gone {
    /// The mapped key columns of the target, and their types.
    pub names: Vec<String>,
    pub types: Vec<PgType>,
    /// Target keys whose source row is gone, as binary COPY tuples of those columns (numeric
    /// columns as decimal text: their comparable form).
    pub keys: Vec<Vec<u8>>,
    /// Rejects (`key_to_json` text) whose source row is gone too.
    pub stale_rejects: Vec<String>,
}

/// The keys of target rows whose source row is gone (for `deletes`), and the rejects whose
/// source row is gone. The key sets are compared by hash ranges like [`check`]; only the
/// ranges that differ are read a second time and held (their keys, not their rows), so memory
/// follows the number of changes, not the table. A rejected source row still counts as there:
/// a target row that kept its key (its later version was rejected) is not gone.
pub async fn gone_keys(url: &str, conn: &mut PgConnection, b: &Bound, bars: &Bars) -> Result<Gone, DeepError> {
    let full = Layout::of(b);
    if !full.keyed {
        return Err(DeepError::Other(format!(
            "{}: deletes need the key's columns among the mapped fields (rows are matched by key)",
            b.entity.name
        )));
    }
    // The same entity with only its key fields.
    let k = b.with_fields(&full.match_on);
    let layout = Layout::of(&k);
    let rejects = Arc::new(rejected_keys(conn, &b.entity.name).await?);
    let job = Job {
        url: url.to_string(),
        b: k,
        layout: layout.clone(),
        rejects: rejects.clone(),
        skip_rejected: false,
        target_filter: soft_delete_filter(conn, &b.entity).await?,
    };
    let bar = bars.entity(&format!("{} (deletes)", b.entity.name), b.rows_in_scope, 0);
    let (src, tgt) = pass(&job, conn, None, &bar).await?;
    let mut stale_rejects: Vec<String> = rejects
        .iter()
        .filter(|k| !src.rejects_seen.contains(*k))
        .cloned()
        .collect();
    stale_rejects.sort();
    let mut gone = Gone {
        names: layout.names.clone(),
        types: layout.types.clone(),
        keys: vec![],
        stale_rejects,
    };
    let differing: HashSet<usize> = (0..RANGES).filter(|&i| src.ranges[i] != tgt.ranges[i]).collect();
    if differing.is_empty() {
        return Ok(gone);
    }
    let (src2, tgt2) = pass(&job, conn, Some(Arc::new(differing)), &bar).await?;
    gone.keys = tgt2
        .detail
        .into_keys()
        .filter(|key| !src2.detail.contains_key(key))
        .map(|key| {
            let mut tuple = Vec::with_capacity(2 + key.len());
            copy::begin_tuple(&mut tuple, layout.names.len());
            tuple.extend_from_slice(&key);
            tuple
        })
        .collect();
    Ok(gone)
}

/// Pass 2: matches the kept rows of both sides key by key.
fn itemise(c: &mut DeepCheck, layout: &Layout, mut src: Side, mut tgt: Side) {
    let mut examples: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut push = |kind: &'static str, text: String| {
        let list = examples.entry(kind).or_default();
        if list.len() < EXAMPLES {
            list.push(text);
        }
    };
    let mut keys: Vec<Vec<u8>> = src.detail.keys().chain(tgt.detail.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let mut s = src.detail.remove(&key).unwrap_or_default();
        let mut t = tgt.detail.remove(&key).unwrap_or_default();
        let shown_key = src
            .key_shown
            .get(&key)
            .or_else(|| tgt.key_shown.get(&key))
            .cloned()
            .unwrap_or_default();
        let (ns, nt) = (s.len(), t.len());
        // Equal rows pair off first.
        let mut i = 0;
        while i < s.len() {
            if let Some(j) = t.iter().position(|r| r.row == s[i].row) {
                t.swap_remove(j);
                s.swap_remove(i);
                c.matching += 1;
            } else {
                i += 1;
            }
        }
        let pairs = s.len().min(t.len());
        for (a, z) in s.iter().zip(&t).take(pairs) {
            c.differing += 1;
            let cols: Vec<usize> = (0..a.columns.len()).filter(|&k| a.columns[k] != z.columns[k]).collect();
            for &k in &cols {
                *c.differing_columns.entry(layout.names[k].clone()).or_default() += 1;
            }
            let what = cols
                .iter()
                .map(|&k| format!("{}: source {}, target {}", layout.names[k], a.shown[k], z.shown[k]))
                .collect::<Vec<_>>()
                .join("; ");
            push("differs", format!("{shown_key} differs: {what}"));
        }
        let missing = s.len() - pairs;
        let extra = t.len() - pairs;
        c.missing += missing as u64;
        c.extra += extra as u64;
        if missing > 0 {
            if nt == 0 {
                push("missing", format!("{shown_key} is missing from the target"));
            } else {
                push(
                    "missing",
                    format!("{shown_key} is {ns}× in the source but {nt}× in the target"),
                );
            }
        }
        if extra > 0 {
            if ns == 0 {
                push("extra", format!("{shown_key} is in the target but not in the source"));
            } else {
                push(
                    "extra",
                    format!("{shown_key} is {nt}× in the target but {ns}× in the source (duplicated)"),
                );
            }
        }
    }
    for (_, list) in examples {
        c.examples.extend(list);
    }
}
