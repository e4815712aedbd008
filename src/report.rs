//! The run summary: a table on stdout, and its JSON form for `--report`.

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
    pub entities: Vec<EntityStats>,
    pub validation: Option<Validation>,
    pub ok: bool,
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
            source: crate::telemetry::redact_url(source),
            target: crate::telemetry::redact_url(target),
            entities,
            validation,
            ok,
        }
    }
}

/// The summary table: entity, read, loaded, rejected, seconds, rows/s.
pub fn table(stats: &[EntityStats]) -> String {
    let mut out = format!(
        "{:<20} {:>10} {:>10} {:>10} {:>9} {:>10}\n",
        "entity", "read", "loaded", "rejected", "seconds", "rows/s"
    );
    for s in stats {
        out.push_str(&format!(
            "{:<20} {:>10} {:>10} {:>10} {:>9.2} {:>10.0}\n",
            s.entity, s.read, s.loaded, s.rejected, s.seconds, s.rows_per_sec
        ));
    }
    let (r, l, j): (u64, u64, u64) = stats
        .iter()
        .fold((0, 0, 0), |a, s| (a.0 + s.read, a.1 + s.loaded, a.2 + s.rejected));
    let secs: f64 = stats.iter().map(|s| s.seconds).sum();
    out.push_str(&format!(
        "{:<20} {:>10} {:>10} {:>10} {:>9.2}\n",
        "total", r, l, j, secs
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

pub fn write(path: &str, report: &Report) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(report).unwrap_or_default();
    if path == "-" {
        println!("{text}");
        Ok(())
    } else {
        std::fs::write(path, text + "\n")
    }
}
