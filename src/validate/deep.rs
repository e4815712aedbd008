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

use crate::bind::Bound;
use crate::plan::quote_ident;
use crate::sink::copy::{self, split_tuple};
use crate::sink::pgtype::PgType;
use crate::source::{self, SourceError};
use crate::telemetry::{Bars, EntityBar};
use crate::value::{key_display, key_to_json};
use futures_util::StreamExt;
use serde::Serialize;
use sqlx::PgConnection;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hasher};
use std::sync::Arc;

/// Hash ranges per entity (pass 1 keeps three u64 per range and side).
pub const RANGES: usize = 1 << 14;
/// Examples shown per kind of difference and entity.
pub const EXAMPLES: usize = 5;
/// Rows per side that pass 2 keeps in memory; ranges past this are counted, not itemised.
const DETAIL_BUDGET: u64 = 200_000;
/// Characters of a value shown in an example.
const SHOWN_CHARS: usize = 60;

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

/// How rows of one entity are laid out and matched: the mapped target columns, in the order
/// the load encodes them, and which of them make the key.
#[derive(Debug, Clone)]
struct Layout {
    names: Vec<String>,
    types: Vec<PgType>,
    /// Field positions rows are matched on: the key's, or every field when the key is not mapped.
    match_on: Vec<usize>,
    /// Whether `match_on` is the mapped key.
    keyed: bool,
}

impl Layout {
    fn of(b: &Bound) -> Layout {
        let key = b.key_fields();
        Layout {
            names: b.targets.iter().map(|c| c.name.clone()).collect(),
            types: b.targets.iter().map(|c| c.ty.clone()).collect(),
            keyed: key.is_some(),
            match_on: key.unwrap_or_else(|| (0..b.targets.len()).collect()),
        }
    }
}

/// The comparable form of a field: what PostgreSQL normalises on input is normalised here too.
pub fn canonical<'a>(ty: &PgType, field: &'a [u8]) -> Cow<'a, [u8]> {
    match ty {
        // numeric(12,2) stores 1.5 as 1.50: compare the value, not the display scale.
        PgType::Numeric(_) => match numeric_text(field) {
            Some(s) => Cow::Owned(s.into_bytes()),
            None => Cow::Borrowed(field),
        },
        // char(n) pads with spaces, which carry no meaning.
        PgType::Bpchar(_) => {
            let end = field.iter().rposition(|&c| c != b' ').map_or(0, |p| p + 1);
            Cow::Borrowed(&field[..end])
        }
        // jsonb sorts keys and drops whitespace; its binary form starts with a version byte.
        PgType::Jsonb => {
            let body = field.strip_prefix(&[1u8]).unwrap_or(field);
            match serde_json::from_slice::<serde_json::Value>(body) {
                Ok(v) => Cow::Owned(v.to_string().into_bytes()),
                Err(_) => Cow::Borrowed(body),
            }
        }
        _ => Cow::Borrowed(field),
    }
}

/// A binary numeric as plain decimal text without insignificant zeros (`-12.5`, `0`, `NaN`).
pub fn numeric_text(b: &[u8]) -> Option<String> {
    if b.len() < 8 {
        return None;
    }
    let word = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let (ndigits, weight, sign) = (word(0) as usize, word(2) as i16 as i32, word(4));
    if b.len() != 8 + 2 * ndigits {
        return None;
    }
    match sign {
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<u16> = (0..ndigits).map(|i| word(8 + 2 * i)).collect();
    // Base-10000 digit i has weight `weight - i`; write the integer part, then the fraction.
    let mut int = String::new();
    let mut frac = String::new();
    for (i, d) in digits.iter().enumerate() {
        let w = weight - i as i32;
        if w >= 0 {
            int.push_str(&format!("{d:04}"));
        } else {
            // Missing groups between the point and this digit are zeros.
            while (frac.len() as i32) < (-w - 1) * 4 {
                frac.push_str("0000");
            }
            frac.push_str(&format!("{d:04}"));
        }
    }
    // Integer groups below the last stored digit are zeros.
    let last_w = weight - ndigits as i32 + 1;
    if ndigits > 0 && last_w > 0 {
        for _ in 0..last_w {
            int.push_str("0000");
        }
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let mut out = String::new();
    if sign == 0x4000 && !(int.is_empty() && frac.is_empty()) {
        out.push('-');
    }
    out.push_str(if int.is_empty() { "0" } else { int });
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    Some(out)
}

/// A field for a human: the value as PostgreSQL would print it, cut at [`SHOWN_CHARS`].
pub fn shown(ty: &PgType, field: Option<&[u8]>) -> String {
    let Some(b) = field else {
        return "NULL".into();
    };
    let be8 = |b: &[u8]| b.try_into().ok().map(i64::from_be_bytes);
    let epoch = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).expect("valid date");
    let s = match ty {
        PgType::Int2 if b.len() == 2 => i16::from_be_bytes([b[0], b[1]]).to_string(),
        PgType::Int4 if b.len() == 4 => i32::from_be_bytes([b[0], b[1], b[2], b[3]]).to_string(),
        PgType::Int8 if b.len() == 8 => be8(b).unwrap_or_default().to_string(),
        PgType::Float4 if b.len() == 4 => f32::from_be_bytes([b[0], b[1], b[2], b[3]]).to_string(),
        PgType::Float8 if b.len() == 8 => f64::from_bits(be8(b).unwrap_or_default() as u64).to_string(),
        PgType::Numeric(_) => numeric_text(b).unwrap_or_else(|| crate::value::hex(b)),
        PgType::Bool if b.len() == 1 => (b[0] != 0).to_string(),
        PgType::Date if b.len() == 4 => {
            let days = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            epoch
                .checked_add_signed(chrono::Duration::days(days as i64))
                .map(|d| d.to_string())
                .unwrap_or_else(|| format!("day {days}"))
        }
        PgType::Timestamp(_) | PgType::TimestampTz(_) if b.len() == 8 => {
            let us = be8(b).unwrap_or_default();
            let t = epoch
                .and_hms_opt(0, 0, 0)
                .expect("valid time")
                .checked_add_signed(chrono::Duration::microseconds(us));
            match (t, ty) {
                (Some(t), PgType::TimestampTz(_)) => format!("{}+00", t.format("%Y-%m-%d %H:%M:%S%.f")),
                (Some(t), _) => t.format("%Y-%m-%d %H:%M:%S%.f").to_string(),
                (None, _) => format!("{us} µs after 2000-01-01"),
            }
        }
        PgType::Uuid if b.len() == 16 => {
            let h = crate::value::hex(b);
            format!(
                "{}-{}-{}-{}-{}",
                &h[0..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..32]
            )
        }
        PgType::Jsonb => String::from_utf8_lossy(b.strip_prefix(&[1u8]).unwrap_or(b)).into_owned(),
        PgType::Text | PgType::Varchar(_) | PgType::Bpchar(_) | PgType::Json => {
            format!("'{}'", String::from_utf8_lossy(b))
        }
        _ => format!("\\x{}", crate::value::hex(b)),
    };
    if s.chars().count() > SHOWN_CHARS {
        let cut: String = s.chars().take(SHOWN_CHARS).collect();
        format!("{cut}… ({} bytes)", b.len())
    } else {
        s
    }
}

/// Counts and a hash sum of the rows of one range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Range {
    rows: u64,
    sum: u64,
    mix: u64,
}

/// One row of a differing range, kept in pass 2.
#[derive(Debug, Clone)]
struct Detail {
    row: u64,
    columns: Vec<u64>,
    shown: Vec<String>,
}

/// What one side produces in one pass.
#[derive(Debug, Default)]
struct Side {
    rows: u64,
    rejected: u64,
    ranges: Vec<Range>,
    /// Pass 2: canonical key bytes → the rows with that key (several: duplicates).
    detail: HashMap<Vec<u8>, Vec<Detail>>,
    key_shown: HashMap<Vec<u8>, String>,
    /// Source rows that cannot be encoded now and are not in the rejects (key, problem).
    unencodable: Vec<(String, String)>,
    unencodable_count: u64,
    /// Keys (`key_to_json` text) of rejects whose source row is still there, when the rejected
    /// rows are compared rather than skipped.
    rejects_seen: HashSet<String>,
}

/// Which ranges pass 2 itemises (`None` in pass 1).
type Wanted = Option<Arc<HashSet<usize>>>;

fn hash_bytes(h: &mut DefaultHasher, field: Option<&[u8]>) {
    match field {
        None => h.write_u8(0),
        Some(b) => {
            h.write_u8(1);
            h.write_usize(b.len());
            h.write(b);
        }
    }
}

/// SplitMix64's finaliser: a second, independent-looking view of a row hash for the range sums.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Side {
    fn new() -> Side {
        Side {
            ranges: vec![Range::default(); RANGES],
            ..Default::default()
        }
    }

    fn visit(&mut self, layout: &Layout, fields: &[Option<&[u8]>], wanted: &Wanted) -> Result<(), String> {
        if fields.len() != layout.types.len() {
            return Err(format!(
                "a row has {} fields, expected {}",
                fields.len(),
                layout.types.len()
            ));
        }
        let canon: Vec<Option<Cow<[u8]>>> = fields
            .iter()
            .zip(&layout.types)
            .map(|(f, t)| f.map(|b| canonical(t, b)))
            .collect();
        let mut key = DefaultHasher::new();
        let mut key_bytes = Vec::new();
        for &i in &layout.match_on {
            hash_bytes(&mut key, canon[i].as_deref());
            if wanted.is_some() {
                copy::push_field(&mut key_bytes, canon[i].as_deref());
            }
        }
        let range = (key.finish() as usize) % RANGES;
        // Per-column hashes are kept only in pass 2, to name the columns that differ.
        let mut columns = Vec::with_capacity(if wanted.is_some() { canon.len() } else { 0 });
        let mut row = DefaultHasher::new();
        for c in &canon {
            let mut h = DefaultHasher::new();
            hash_bytes(&mut h, c.as_deref());
            let ch = h.finish();
            row.write_u64(ch);
            if wanted.is_some() {
                columns.push(ch);
            }
        }
        let row = row.finish();
        self.rows += 1;
        let r = &mut self.ranges[range];
        r.rows += 1;
        r.sum = r.sum.wrapping_add(row);
        r.mix = r.mix.wrapping_add(mix(row));
        if let Some(w) = wanted
            && w.contains(&range)
        {
            let shown_all: Vec<String> = fields.iter().zip(&layout.types).map(|(f, t)| shown(t, *f)).collect();
            self.key_shown.entry(key_bytes.clone()).or_insert_with(|| {
                layout
                    .match_on
                    .iter()
                    .map(|&i| format!("{}={}", layout.names[i], shown_all[i]))
                    .collect::<Vec<_>>()
                    .join(", ")
            });
            self.detail.entry(key_bytes).or_default().push(Detail {
                row,
                columns,
                shown: shown_all,
            });
        }
        Ok(())
    }
}

/// The source side of one pass: every row in scope through the transforms and the encoder.
/// Rows whose key is in `rejects` are skipped and counted as rejected, or, without
/// `skip_rejected`, compared like the others and noted in `rejects_seen`.
fn read_source(
    url: &str,
    b: &Bound,
    layout: &Layout,
    rejects: &HashSet<String>,
    skip_rejected: bool,
    wanted: &Wanted,
) -> Result<Side, SourceError> {
    let mut side = Side::new();
    let mut buf = Vec::with_capacity(4096);
    let mut failure: Option<String> = None;
    // One plain scan, not the load's keyset reads: rows those would skip are seen here.
    let mut src = source::open(url)?;
    src.scan(&b.spec, 1000, &mut |rows| {
        for row in rows.iter() {
            if !rejects.is_empty() {
                let key = key_to_json(&b.spec.key_of(row)).to_string();
                if rejects.contains(&key) {
                    if skip_rejected {
                        side.rejected += 1;
                        continue;
                    }
                    side.rejects_seen.insert(key);
                }
            }
            buf.clear();
            match crate::bind::encode_row(b, row, &mut buf) {
                Ok(()) => {
                    let parsed = split_tuple(&buf).ok().flatten();
                    let Some((fields, _)) = parsed else {
                        failure = Some("the encoder produced a malformed row".into());
                        return false;
                    };
                    if let Err(e) = side.visit(layout, &fields, wanted) {
                        failure = Some(e);
                        return false;
                    }
                }
                Err((column, reason)) => {
                    side.unencodable_count += 1;
                    if side.unencodable.len() < EXAMPLES {
                        side.unencodable
                            .push((key_display(&b.spec.key_of(row)), format!("column {column}: {reason}")));
                    }
                }
            }
        }
        crate::interrupt::requested().is_none()
    })?;
    if let Some(f) = failure {
        return Err(SourceError::Query {
            what: format!("deep validation of {}", b.entity.name),
            cause: f.into(),
        });
    }
    if let Some(sig) = crate::interrupt::requested() {
        return Err(SourceError::Query {
            what: format!("deep validation of {}", b.entity.name),
            cause: format!("stopped by signal {sig}").into(),
        });
    }
    Ok(side)
}

/// The target side of one pass: the mapped columns through binary COPY TO.
async fn read_target(
    conn: &mut PgConnection,
    b: &Bound,
    layout: &Layout,
    wanted: &Wanted,
    bar: &EntityBar,
    filter: Option<&str>,
) -> Result<Side, String> {
    let cols: Vec<String> = layout.names.iter().map(|n| quote_ident(n)).collect();
    let sql = format!(
        "COPY (SELECT {} FROM {}{}) TO STDOUT (FORMAT binary)",
        cols.join(", "),
        b.entity.target.sql(),
        filter.map(|f| format!(" WHERE {f}")).unwrap_or_default()
    );
    let mut stream = conn
        .copy_out_raw(&sql)
        .await
        .map_err(|e| format!("reading {}: {e}", b.entity.target.display()))?;
    let mut side = Side::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut header = true;
    let mut ended = false;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("reading {}: {e}", b.entity.target.display()))?;
        pending.extend_from_slice(&chunk);
        let mut at = 0;
        if header {
            let Some(len) = copy::header_len(&pending)? else {
                continue;
            };
            at = len;
            header = false;
        }
        while !ended {
            match split_tuple(&pending[at..])? {
                None => break,
                Some((fields, len)) => {
                    at += len;
                    if fields.is_empty() && len == 2 {
                        ended = true;
                    } else {
                        side.visit(layout, &fields, wanted)?;
                        if side.rows.is_multiple_of(1024) {
                            bar.inc(1024);
                        }
                    }
                }
            }
        }
        pending.drain(..at);
    }
    bar.finish();
    if !ended {
        return Err(format!(
            "the COPY output of {} ended before its trailer",
            b.entity.target.display()
        ));
    }
    Ok(side)
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

async fn pass(job: &Job, conn: &mut PgConnection, wanted: Wanted, bar: &EntityBar) -> anyhow::Result<(Side, Side)> {
    let (j, w) = (job.clone(), wanted.clone());
    let reader = std::thread::Builder::new()
        .name(format!("deep-{}", job.b.entity.name))
        .spawn(move || read_source(&j.url, &j.b, &j.layout, &j.rejects, j.skip_rejected, &w))?;
    let name = &job.b.entity.name;
    let target = read_target(conn, &job.b, &job.layout, &wanted, bar, job.target_filter.as_deref()).await;
    let source = tokio::task::spawn_blocking(move || reader.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the source reader of {name} panicked"))?;
    let source = source.map_err(|e| anyhow::Error::new(e).context(format!("reading {name} from the source")))?;
    let target = target.map_err(|e| anyhow::anyhow!(e).context(format!("reading {name} from the target")))?;
    Ok((source, target))
}

/// The keys of the entity's rejected rows, as `key_to_json` text.
async fn rejected_keys(conn: &mut PgConnection, entity: &str) -> anyhow::Result<HashSet<String>> {
    let rows: Vec<serde_json::Value> =
        sqlx::query_scalar("SELECT key_json FROM migrate.rejects WHERE entity = $1 AND key_json IS NOT NULL")
            .bind(entity)
            .fetch_all(&mut *conn)
            .await
            .or_else(|e| match &e {
                // No migrate schema yet: nothing was rejected.
                e if crate::sqlstate::is(e, crate::sqlstate::SqlState::UNDEFINED_TABLE) => Ok(vec![]),
                _ => Err(e),
            })?;
    Ok(rows
        .iter()
        .filter_map(crate::value::key_from_json)
        .map(|k| key_to_json(&k).to_string())
        .collect())
}

/// Compares one entity's source and target row by row.
pub async fn check(url: &str, conn: &mut PgConnection, b: &Bound, bars: &Bars) -> anyhow::Result<DeepCheck> {
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
    let state = crate::checkpoint::load_all(conn).await?;
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
pub async fn soft_delete_filter(conn: &mut PgConnection, e: &crate::plan::Entity) -> anyhow::Result<Option<String>> {
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
    .await?;
    let Some(ty) = ty else {
        anyhow::bail!(
            "{}: soft_delete_column {col} is not a column of {}",
            e.name,
            e.target.display()
        );
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
pub async fn gone_keys(url: &str, conn: &mut PgConnection, b: &Bound, bars: &Bars) -> anyhow::Result<Gone> {
    let full = Layout::of(b);
    if !full.keyed {
        anyhow::bail!(
            "{}: deletes need the key's columns among the mapped fields (rows are matched by key)",
            b.entity.name
        );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{Decimal, Value};

    fn field(ty: &PgType, v: Value) -> Vec<u8> {
        let mut out = Vec::new();
        ty.encode(&v, &mut out).unwrap();
        out[4..].to_vec()
    }

    /// PostgreSQL's own binary numeric for 1.50 in numeric(10,2): digits [1, 5000], dscale 2.
    #[test]
    fn numeric_scale_does_not_matter_but_the_value_does() {
        let t = PgType::Numeric(Some((10, 2)));
        let ours = field(&t, Value::Text("1.5".into()));
        let pg: Vec<u8> = [2u16, 0, 0, 2, 1, 5000].iter().flat_map(|w| w.to_be_bytes()).collect();
        assert_eq!(canonical(&t, &ours), canonical(&t, &pg));
        let other = field(&t, Value::Text("1.05".into()));
        assert_ne!(canonical(&t, &ours), canonical(&t, &other));
        assert_eq!(numeric_text(&pg).unwrap(), "1.5");
    }

    #[test]
    fn numeric_text_round_trips_the_encoder() {
        for s in [
            "0",
            "-0.0001",
            "123456789012345678901234567890.12345",
            "10000",
            "-20000000",
            "0.00000001",
            "99.99",
        ] {
            let mut out = Vec::new();
            Decimal::parse(s).unwrap().encode_pg_numeric(&mut out);
            let want = Decimal::parse(s).unwrap().to_string();
            let want = if want.contains('.') {
                want.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                want
            };
            let want = if want == "-0" { "0".to_string() } else { want };
            assert_eq!(numeric_text(&out).unwrap(), want, "{s}");
        }
    }

    #[test]
    fn char_padding_and_jsonb_key_order_are_not_differences() {
        let c = PgType::Bpchar(Some(5));
        assert_eq!(canonical(&c, b"ab   "), canonical(&c, b"ab"));
        assert_ne!(canonical(&c, b" ab"), canonical(&c, b"ab"));
        let j = PgType::Jsonb;
        assert_eq!(
            canonical(&j, b"\x01{\"b\": 1, \"a\": 2}"),
            canonical(&j, b"{\"a\":2,\"b\":1}")
        );
    }

    #[test]
    fn values_are_shown_as_postgresql_prints_them() {
        assert_eq!(shown(&PgType::Int4, Some(&42i32.to_be_bytes())), "42");
        assert_eq!(shown(&PgType::Date, Some(&1i32.to_be_bytes())), "2000-01-02");
        assert_eq!(shown(&PgType::Text, Some(b"x")), "'x'");
        assert_eq!(shown(&PgType::Text, None), "NULL");
        let long = "y".repeat(200);
        assert!(shown(&PgType::Text, Some(long.as_bytes())).ends_with("(200 bytes)"));
    }
}
