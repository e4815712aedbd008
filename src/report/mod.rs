//! The run summary: a table on stdout, and its JSON (or HTML, [`html`]) form for `--report`.

pub mod html;

use crate::checkpoint::RejectRecord;
use crate::validate::post::Validation;
use serde::Serialize;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EntityStats {
    pub entity: String,
    /// Source rows in scope (after `where`).
    pub source_rows: u64,
    /// Source rows the mapping's `where` leaves out.
    pub skipped_by_where: u64,
    pub read: u64,
    /// Rows stored as new rows, as PostgreSQL counted them.
    pub loaded: u64,
    pub rejected: u64,
    /// Rows PostgreSQL took without an error but kept out (a trigger returned NULL, a rule,
    /// `on_conflict = "skip"` met a key already there).
    pub kept_out: u64,
    /// Rows that updated a row already in the target (`on_conflict = "update"`).
    pub merged: u64,
    pub seconds: f64,
    /// Seconds spent re-creating held indexes and foreign keys after the load (not in `seconds`).
    pub rebuild_seconds: f64,
    /// Rows read per second in this run.
    pub rows_per_sec: f64,
    pub status: String,
    /// Reconnections to the target during this entity's load.
    pub retries: u64,
    /// The post-load validation's verdict for this entity: "ok", "mismatch", or "not run".
    pub validation: String,
    /// Dry run: the first rejects, to show.
    #[serde(skip)]
    pub sample_rejects: Vec<RejectRecord>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    pub mode: String,
    pub started_at: String,
    pub finished_at: String,
    pub source: String,
    pub target: String,
    /// The run's wall time, start to end (entities loaded side by side overlap in theirs).
    pub seconds: f64,
    /// The load's part of it (before the validation), as the summary's total line shows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_seconds: Option<f64>,
    pub entities: Vec<EntityStats>,
    pub validation: Option<Validation>,
    pub ok: bool,
    /// The run's settings, URLs without passwords.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub settings: std::collections::BTreeMap<String, String>,
    /// migrate.rejects grouped by entity, column and reason (see [`group_rejects`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejects: Vec<RejectGroup>,
    /// The groups were made from the first [`REJECTS_GROUPED`] rejects only.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub rejects_sampled: bool,
}

/// Rejects of one entity and column with the same reason, once the values in it are set aside.
#[derive(Debug, Clone, Serialize)]
pub struct RejectGroup {
    pub entity: String,
    pub column: Option<String>,
    pub reason: String,
    pub rows: u64,
    pub samples: Vec<RejectSample>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RejectSample {
    pub key: String,
    /// The row's source values as JSON, cut at 300 characters.
    pub values: String,
}

/// How many rejects a report groups at most (the per-entity counts stay exact).
pub const REJECTS_GROUPED: i64 = 100_000;
const SAMPLES_PER_GROUP: usize = 3;
const GROUPS_SHOWN: usize = 200;

/// A reason with its particular values set aside: quoted text becomes '…' and a key's values
/// `=(…)`, so "'n/a' is not an e-mail address" and "'-' is not an e-mail address" are one reason.
pub fn reason_kind(reason: &str) -> String {
    static QUOTED: std::sync::OnceLock<(regex::Regex, regex::Regex)> = std::sync::OnceLock::new();
    let (quoted, key) = QUOTED.get_or_init(|| {
        (
            regex::Regex::new(r"'[^']*'").expect("valid"),
            regex::Regex::new(r"=\([^)]*\)").expect("valid"),
        )
    });
    let once = quoted.replace_all(reason, "'…'");
    key.replace_all(&once, "=(…)").into_owned()
}

/// Groups rejects given as (entity, column, reason, key, source values), in order: groups by
/// entity in first-seen order, the largest first, a few samples each.
pub fn group_rejects(
    rows: impl IntoIterator<Item = (String, Option<String>, String, String, String)>,
) -> Vec<RejectGroup> {
    let mut order: Vec<String> = Vec::new();
    let mut groups: std::collections::HashMap<(String, Option<String>, String), RejectGroup> = Default::default();
    for (entity, column, reason, key, values) in rows {
        if !order.contains(&entity) {
            order.push(entity.clone());
        }
        let kind = reason_kind(&reason);
        let g = groups
            .entry((entity.clone(), column.clone(), kind.clone()))
            .or_insert_with(|| RejectGroup {
                entity,
                column,
                reason: kind,
                rows: 0,
                samples: Vec::new(),
            });
        g.rows += 1;
        if g.samples.len() < SAMPLES_PER_GROUP {
            let values = sample_value(&values, g.column.as_deref());
            g.samples.push(RejectSample { key, values });
        }
    }
    let mut all: Vec<RejectGroup> = groups.into_values().collect();
    all.sort_by(|a, b| {
        let pos = |e: &str| order.iter().position(|o| o == e);
        (pos(&a.entity), std::cmp::Reverse(a.rows), &a.column, &a.reason).cmp(&(
            pos(&b.entity),
            std::cmp::Reverse(b.rows),
            &b.column,
            &b.reason,
        ))
    });
    all.truncate(GROUPS_SHOWN);
    all
}

/// What a sample shows of a rejected row: the rejected column's source value when the source
/// values name it (`EMAIL = "n/a"`), else the whole row cut at 300 characters.
fn sample_value(values: &str, column: Option<&str>) -> String {
    if let (Some(col), Ok(serde_json::Value::Object(row))) = (column, serde_json::from_str::<serde_json::Value>(values))
        && let Some((name, v)) = row.iter().find(|(k, _)| k.eq_ignore_ascii_case(col))
    {
        return format!("{name} = {v}");
    }
    if values.chars().count() > 300 {
        values.chars().take(300).chain("…".chars()).collect()
    } else {
        values.to_string()
    }
}

/// Whether `--report` asks for the HTML page (FILE.html or FILE.htm).
pub fn is_html(path: &str) -> bool {
    let p = path.to_ascii_lowercase();
    p.ends_with(".html") || p.ends_with(".htm")
}

impl Report {
    /// A report finished now; URLs are shown without their passwords.
    pub fn new(
        mode: &str,
        started: chrono::DateTime<chrono::Utc>,
        source: &str,
        target: &str,
        mut entities: Vec<EntityStats>,
        validation: Option<Validation>,
    ) -> Report {
        let ok = validation.as_ref().is_none_or(|v| v.ok);
        for s in &mut entities {
            let verdict = validation.as_ref().and_then(|v| v.entity_ok(&s.entity));
            s.validation = match verdict {
                Some(true) => "ok".into(),
                Some(_) => "mismatch".into(),
                None => "not run".into(),
            };
        }
        Report {
            tool: "migrate",
            version: env!("CARGO_PKG_VERSION"),
            mode: mode.to_string(),
            started_at: started.to_rfc3339(),
            finished_at: chrono::Utc::now().to_rfc3339(),
            seconds: ((chrono::Utc::now() - started).num_microseconds().unwrap_or(0) as f64 / 1e6).max(0.0),
            source: crate::telemetry::redact_url(source),
            target: crate::telemetry::redact_url(target),
            entities,
            validation,
            ok,
            load_seconds: None,
            settings: Default::default(),
            rejects: Vec::new(),
            rejects_sampled: false,
        }
    }
}

/// Rows per second, rounded as people read them: 47,672.
pub fn rate(rows: f64, secs: f64) -> String {
    if secs <= 0.0 || !rows.is_finite() {
        return "-".into();
    }
    thousands((rows / secs).round() as u64)
}

/// 1234567 → "1,234,567".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The summary table: entity, read, loaded (for a dry run: would load), rejected, seconds,
/// rows/s; the total's seconds are the run's wall time (entities load side by side).
pub fn table(stats: &[EntityStats], wall_seconds: f64, dry: bool) -> String {
    let loaded = if dry { "would load" } else { "loaded" };
    let rejected = if dry { "would reject" } else { "rejected" };
    let mut out = format!(
        "{:<20} {:>10} {:>10} {:>12} {:>9} {:>10}\n",
        "entity", "read", loaded, rejected, "seconds", "rows/s"
    );
    for s in stats {
        out.push_str(&format!(
            "{:<20} {:>10} {:>10} {:>12} {:>9.2} {:>10}\n",
            s.entity,
            s.read,
            s.loaded,
            s.rejected,
            s.seconds,
            rate(s.read as f64, s.seconds)
        ));
    }
    let (r, l, j): (u64, u64, u64) = stats
        .iter()
        .fold((0, 0, 0), |a, s| (a.0 + s.read, a.1 + s.loaded, a.2 + s.rejected));
    out.push_str(&format!(
        "{:<20} {:>10} {:>10} {:>12} {:>9.2} {:>10}\n",
        "total (wall time)",
        r,
        l,
        j,
        wall_seconds,
        rate(r as f64, wall_seconds)
    ));
    // Rows the target took without an error but did not store as new rows: counted apart,
    // with the reason, from PostgreSQL's own counts.
    for s in stats {
        if s.kept_out > 0 {
            out.push_str(&format!(
                "{}: {} row(s) kept out by the target without an error (PostgreSQL stored fewer rows than it was sent: a BEFORE INSERT trigger returned NULL, a rule, or on_conflict = \"skip\" met a key already there)\n",
                s.entity, s.kept_out
            ));
        }
        if s.merged > 0 {
            out.push_str(&format!(
                "{}: {} row(s) merged into rows already in the target (on_conflict = \"update\")\n",
                s.entity, s.merged
            ));
        }
    }
    let rebuild: f64 = stats.iter().map(|s| s.rebuild_seconds).sum();
    if rebuild > 0.0 {
        out.push_str(&format!(
            "held keys, indexes and foreign keys re-created and validated in {rebuild:.2}s (not in the seconds above)\n"
        ));
    }
    out
}

/// Writes any JSON document where `--report` says (`-` for stdout).
pub fn write_json(path: &str, doc: &serde_json::Value) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(doc).unwrap_or_default();
    if path == "-" {
        println!("{text}");
        Ok(())
    } else {
        std::fs::write(path, text + "\n")
    }
}

/// Writes the report: the HTML page for FILE.html/.htm, else JSON (`-`: stdout).
pub fn write(path: &str, report: &Report) -> std::io::Result<()> {
    if is_html(path) {
        return std::fs::write(path, html::render(report));
    }
    let text = serde_json::to_string_pretty(report).unwrap_or_default();
    if path == "-" {
        println!("{text}");
        Ok(())
    } else {
        std::fs::write(path, text + "\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_group_by_reason_with_their_values_set_aside() {
        let r = |e: &str, c: Option<&str>, reason: &str, k: &str| {
            (
                e.to_string(),
                c.map(String::from),
                reason.to_string(),
                k.to_string(),
                format!("{{\"K\":{k}}}"),
            )
        };
        let g = group_rejects([
            r(
                "customer",
                Some("email"),
                "transform failed: 'n/a' is not an e-mail address",
                "1",
            ),
            r(
                "coil",
                Some("customer_id"),
                "violates foreign key: Key (customer_id)=(12) is not present",
                "9",
            ),
            r(
                "customer",
                Some("email"),
                "transform failed: '-' is not an e-mail address",
                "2",
            ),
            r("customer", Some("phone"), "'x' is not a phone number", "3"),
            r(
                "customer",
                Some("email"),
                "transform failed: 'none' is not an e-mail address",
                "4",
            ),
            r(
                "customer",
                Some("email"),
                "transform failed: '?' is not an e-mail address",
                "5",
            ),
            r(
                "coil",
                Some("customer_id"),
                "violates foreign key: Key (customer_id)=(13) is not present",
                "10",
            ),
        ]);
        let shape: Vec<(&str, u64, usize)> = g.iter().map(|g| (g.entity.as_str(), g.rows, g.samples.len())).collect();
        assert_eq!(shape, [("customer", 4, 3), ("customer", 1, 1), ("coil", 2, 2)]);
        assert_eq!(g[0].reason, "transform failed: '…' is not an e-mail address");
        assert_eq!(
            g[2].reason,
            "violates foreign key: Key (customer_id)=(…) is not present"
        );
        assert_eq!(g[0].samples[1].key, "2");
        assert_eq!(
            g[0].samples[1].values, "{\"K\":2}",
            "no EMAIL in the row: the whole row"
        );
        assert_eq!(
            sample_value(r#"{"ID":1,"EMAIL":"n/a","NAME":"x"}"#, Some("email")),
            r#"EMAIL = "n/a""#
        );
        assert!(is_html("r.HTML") && is_html("a/b.htm") && !is_html("r.json") && !is_html("-"));
    }

    #[test]
    fn rates_are_rounded_with_thousands_separators() {
        assert_eq!(rate(47_671.158_5 * 2.0, 2.0), "47,671");
        assert_eq!(rate(999.6, 1.0), "1,000");
        assert_eq!(rate(5.0, 0.0), "-");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(0), "0");
    }

    #[test]
    fn the_total_is_the_wall_time_and_a_dry_run_says_would_load() {
        let s = |e: &str, read, secs| EntityStats {
            entity: e.into(),
            read,
            loaded: read,
            seconds: secs,
            ..Default::default()
        };
        let t = table(&[s("a", 1000, 2.0), s("b", 3000, 2.0)], 2.5, false);
        let total = t.lines().find(|l| l.starts_with("total")).unwrap();
        assert!(total.contains("2.50") && total.contains("1,600"), "{t}");
        assert!(!t.contains("would load"));
        let d = table(&[s("a", 10, 1.0)], 1.0, true);
        assert!(d.lines().next().unwrap().contains("would load"), "{d}");
    }
}
