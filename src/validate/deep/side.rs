//! One side of a comparison: the source's rows (one plain scan, through the transforms and the
//! encoder) or the target's (`COPY … TO STDOUT (FORMAT binary)`), each row hashed into one of
//! [`RANGES`] by its key and summed; in pass 2, the rows of the chosen ranges kept.

use super::canonical::{canonical, shown};
use super::{EXAMPLES, RANGES};
use crate::bind::Bound;
use crate::plan::quote_ident;
use crate::sink::copy::{self, split_tuple};
use crate::sink::pgtype::PgType;
use crate::source::{self, SourceError};
use crate::telemetry::EntityBar;
use crate::value::{key_display, key_to_json};
use futures_util::StreamExt;
use sqlx::PgConnection;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hasher};
use std::sync::Arc;

/// How rows of one entity are laid out and matched: the mapped target columns, in the order
/// the load encodes them, and which of them make the key.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    pub(super) names: Vec<String>,
    pub(super) types: Vec<PgType>,
    /// Field positions rows are matched on: the key's, or every field when the key is not mapped.
    pub(super) match_on: Vec<usize>,
    /// Whether `match_on` is the mapped key.
    pub(super) keyed: bool,
}

impl Layout {
    pub(super) fn of(b: &Bound) -> Layout {
        let key = b.key_fields();
        Layout {
            names: b.targets.iter().map(|c| c.name.clone()).collect(),
            types: b.targets.iter().map(|c| c.ty.clone()).collect(),
            keyed: key.is_some(),
            match_on: key.unwrap_or_else(|| (0..b.targets.len()).collect()),
        }
    }
}

/// Counts and a hash sum of the rows of one range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Range {
    pub(super) rows: u64,
    pub(super) sum: u64,
    pub(super) mix: u64,
}

/// One row of a differing range, kept in pass 2.
#[derive(Debug, Clone)]
pub(super) struct Detail {
    pub(super) row: u64,
    pub(super) columns: Vec<u64>,
    pub(super) shown: Vec<String>,
}

/// What one side produces in one pass.
#[derive(Debug, Default)]
pub(super) struct Side {
    pub(super) rows: u64,
    pub(super) rejected: u64,
    pub(super) ranges: Vec<Range>,
    /// Pass 2: canonical key bytes → the rows with that key (several: duplicates).
    pub(super) detail: HashMap<Vec<u8>, Vec<Detail>>,
    pub(super) key_shown: HashMap<Vec<u8>, String>,
    /// Source rows that cannot be encoded now and are not in the rejects (key, problem).
    pub(super) unencodable: Vec<(String, String)>,
    pub(super) unencodable_count: u64,
    /// Keys (`key_to_json` text) of rejects whose source row is still there, when the rejected
    /// rows are compared rather than skipped.
    pub(super) rejects_seen: HashSet<String>,
}

/// Which ranges pass 2 itemises (`None` in pass 1).
pub(super) type Wanted = Option<Arc<HashSet<usize>>>;

pub(super) fn hash_bytes(h: &mut DefaultHasher, field: Option<&[u8]>) {
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
pub(super) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Side {
    pub(super) fn new() -> Side {
        Side {
            ranges: vec![Range::default(); RANGES],
            ..Default::default()
        }
    }

    pub(super) fn visit(&mut self, layout: &Layout, fields: &[Option<&[u8]>], wanted: &Wanted) -> Result<(), String> {
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
pub(super) fn read_source(
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
pub(super) async fn read_target(
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
