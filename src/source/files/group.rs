//! `group=REGEX&keep=…`: one file kept per group of file names.

use super::options::{Keep, Opts, decode};
use super::stream::walk;
use super::{Member, bad};
use crate::source::SourceError;

/// One file per group of names: the one with the most rows, or the largest value of a column
/// (compared as numbers when every value is one, else as text); ties go to the first by name.
/// Files whose names the pattern does not match are each a group of their own.
pub(super) fn keep_one_per_group(
    spec: &str,
    members: Vec<Member>,
    opts: &Opts,
    re: &regex::Regex,
    columns: &[String],
) -> Result<(Vec<Member>, Vec<crate::source::Choice>), SourceError> {
    let col = match &opts.keep {
        Keep::Rows => None,
        Keep::Max(c) => Some(
            columns
                .iter()
                .position(|h| h == c)
                .ok_or_else(|| bad(spec, c, "keep=max: no such column in the header".into()))?,
        ),
    };
    // (group, member, measure for ordering, measure as shown)
    let mut measured: Vec<(String, Member, (f64, String), String)> = Vec::new();
    for m in members {
        let group = re
            .captures(&m.name)
            .map(|c| c.get(1).or_else(|| c.get(0)).map_or("", |g| g.as_str()).to_string())
            .unwrap_or_else(|| m.name.clone());
        let mut rows = 0u64;
        let mut best: Option<String> = None;
        let mut numeric = true;
        let mut best_num = f64::NEG_INFINITY;
        walk(spec, &m, opts, None, &mut |_, _, rec| {
            rows += 1;
            if let Some(i) = col
                && let Some(v) = rec.get(i).and_then(|b| decode(opts, b))
            {
                let v = v.trim().to_string();
                if !v.is_empty() {
                    match v.parse::<f64>() {
                        Ok(n) if n.is_finite() => best_num = best_num.max(n),
                        _ => numeric = false,
                    }
                    if best.as_ref().is_none_or(|b| v.as_bytes() > b.as_bytes()) {
                        best = Some(v);
                    }
                }
            }
            true
        })?;
        let (order, shown) = match (&opts.keep, col) {
            (Keep::Max(c), Some(_)) => match &best {
                Some(_) if numeric => ((best_num, String::new()), format!("largest {c} {best_num}")),
                Some(b) => ((0.0, b.clone()), format!("largest {c} '{b}'")),
                None => ((f64::NEG_INFINITY, String::new()), format!("no {c} value")),
            },
            _ => ((rows as f64, String::new()), format!("{rows} rows")),
        };
        measured.push((group, m, order, shown));
    }
    let mut groups: Vec<String> = measured.iter().map(|(g, ..)| g.clone()).collect();
    groups.sort();
    groups.dedup();
    let mut kept = Vec::new();
    let mut choices = Vec::new();
    for g in groups {
        let candidates: Vec<&(String, Member, (f64, String), String)> =
            measured.iter().filter(|(mg, ..)| *mg == g).collect();
        let best = candidates.iter().enumerate().fold(0usize, |bi, (i, c)| {
            let b = &candidates[bi].2;
            let better = c.2.0 > b.0 || (c.2.0 == b.0 && c.2.1.as_bytes() > b.1.as_bytes());
            if better { i } else { bi }
        });
        for (i, (_, m, _, shown)) in candidates.iter().enumerate() {
            choices.push(crate::source::Choice {
                group: g.clone(),
                file: m.name.clone(),
                measure: shown.clone(),
                kept: i == best,
            });
        }
        kept.push(candidates[best].1.clone());
    }
    kept.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    Ok((kept, choices))
}
