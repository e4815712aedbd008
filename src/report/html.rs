//! `--report FILE.html`: the run's report as one self-contained page (no scripts, fonts or
//! images from elsewhere), for a cut-over review or a change ticket. Verdict first; then per
//! entity the rows read, loaded, kept out and rejected, with bars; the rejects grouped by
//! reason with sample keys and values; the validation; the settings (URLs without passwords).

use super::{Report, thousands};
use std::fmt::Write;

/// Text made safe for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2rem auto;max-width:1180px;color:#1d2433;padding:0 1rem}
h1{font-size:1.5rem;margin:0 0 .25rem} h2{font-size:1.15rem;margin:2rem 0 .5rem;border-bottom:1px solid #d8dde6;padding-bottom:.25rem}
.verdict{padding:1rem 1.25rem;border-radius:8px;margin:1rem 0;font-size:1.05rem}
.pass{background:#e6f4ea;border:1px solid #34a853} .fail{background:#fce8e6;border:1px solid #d93025} .warn{background:#fef7e0;border:1px solid #f9ab00}
.verdict b{font-size:1.2rem}
table{border-collapse:collapse;width:100%;margin:.25rem 0 1rem} th,td{padding:.3rem .5rem;text-align:left;border-bottom:1px solid #eceff4;vertical-align:top}
th{background:#f5f7fa;font-weight:600} td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.bar{display:flex;height:12px;width:150px;background:#eceff4;border-radius:3px;overflow:hidden}
.bar span{display:block;height:100%} .ld{background:#34a853} .ko{background:#9aa0a6} .rj{background:#d93025} .sp{background:#4285f4}
.legend span{display:inline-block;width:10px;height:10px;margin:0 .25rem 0 .75rem;border-radius:2px}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
.muted{color:#5f6b7a} .ok{color:#188038;font-weight:600} .bad{color:#d93025;font-weight:600}
.sample{color:#3c4656;min-width:200px;max-width:520px;overflow-wrap:anywhere}
";

/// The whole page.
pub fn render(r: &Report) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let title = format!("migrate {} report, {}", r.mode, r.started_at);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n",
        esc(&title)
    );
    let _ = writeln!(
        h,
        "<h1>Migration report</h1><div class=\"muted\">migrate {} · {} · started {} · finished {} · wall time {:.2} s</div>",
        esc(r.version),
        esc(&r.mode),
        esc(&when(&r.started_at)),
        esc(&when(&r.finished_at)),
        r.seconds
    );
    verdict(&mut h, r);
    entities(&mut h, r);
    rejects(&mut h, r);
    validation(&mut h, r);
    settings(&mut h, r);
    h.push_str("</body></html>\n");
    h
}

/// An RFC 3339 instant as people read it: 2026-12-04 18:49:30 UTC.
fn when(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string()
        })
        .unwrap_or_else(|_| rfc3339.to_string())
}

fn totals(r: &Report) -> (u64, u64, u64, u64) {
    r.entities.iter().fold((0, 0, 0, 0), |a, s| {
        (
            a.0 + s.read,
            a.1 + s.loaded,
            a.2 + s.rejected,
            a.3 + s.kept_out + s.merged,
        )
    })
}

fn verdict(h: &mut String, r: &Report) {
    let (read, loaded, rejected, kept) = totals(r);
    let dry = r.mode == "dry-run";
    let (class, word) = match (&r.validation, r.ok) {
        (_, false) => ("fail", "FAILED"),
        (Some(_), true) => ("pass", "PASSED"),
        (None, true) if dry => ("warn", "DRY RUN (nothing written)"),
        (None, true) => ("warn", "LOADED, NOT VALIDATED"),
    };
    let mut text = String::new();
    if !r.entities.is_empty() {
        let _ = write!(
            text,
            "{} of {} rows read {}; {} rejected with a reason",
            thousands(loaded),
            thousands(read),
            if dry { "would be loaded" } else { "were loaded" },
            thousands(rejected)
        );
        if kept > 0 {
            let _ = write!(text, "; {} kept out or merged by the target", thousands(kept));
        }
        let _ = write!(text, " ({} entities). ", r.entities.len());
    }
    match &r.validation {
        Some(v) if v.ok => text.push_str(if v.deep.is_empty() {
            "Validation passed: for every entity, source rows = loaded + rejected + kept out, and the target holds them."
        } else {
            "Validation passed, with every row compared (--deep)."
        }),
        Some(_) => text.push_str("Validation found a mismatch: see Validation below."),
        None if dry => text.push_str("A dry run: rows were read and checked, nothing was written."),
        None => text.push_str("Not validated: run `migrate validate` (or the run with --validate)."),
    }
    let _ = writeln!(
        h,
        "<div class=\"verdict {class}\" id=\"verdict\"><b>{word}</b><br>{}</div>",
        esc(&text)
    );
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn entities(h: &mut String, r: &Report) {
    if r.entities.is_empty() {
        return;
    }
    let loaded_word = if r.mode == "dry-run" { "would load" } else { "loaded" };
    let _ = write!(
        h,
        "<h2>Entities</h2><div class=\"legend muted\">rows:<span class=\"ld\"></span>{loaded_word}<span class=\"ko\"></span>kept out / merged<span class=\"rj\"></span>rejected \
         &nbsp; speed:<span class=\"sp\"></span>rows/s</div>\n<table id=\"entities\"><tr><th>entity</th><th class=\"n\">in scope</th><th class=\"n\">read</th>\
         <th class=\"n\">{loaded_word}</th><th class=\"n\">kept out</th><th class=\"n\">rejected</th><th>rows</th><th class=\"n\">seconds</th><th class=\"n\">rows/s</th><th></th><th>validation</th></tr>\n"
    );
    let fastest = r.entities.iter().map(|s| s.rows_per_sec).fold(0.0, f64::max);
    for s in &r.entities {
        let kept = s.kept_out + s.merged;
        let whole = s.read.max(s.loaded + kept + s.rejected);
        let speed = if fastest > 0.0 {
            s.rows_per_sec * 100.0 / fastest
        } else {
            0.0
        };
        let verdict = match s.validation.as_str() {
            "ok" => "<span class=\"ok\">ok</span>".to_string(),
            "mismatch" => "<span class=\"bad\">mismatch</span>".to_string(),
            other => format!("<span class=\"muted\">{}</span>", esc(other)),
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td><div class=\"bar\" title=\"{} loaded, {} kept out, {} rejected\"><span class=\"ld\" style=\"width:{:.2}%\"></span><span class=\"ko\" style=\"width:{:.2}%\"></span><span class=\"rj\" style=\"width:{:.2}%\"></span></div></td>\
             <td class=\"n\">{:.2}</td><td class=\"n\">{}</td><td><div class=\"bar\"><span class=\"sp\" style=\"width:{speed:.1}%\"></span></div></td><td>{verdict}</td></tr>",
            esc(&s.entity),
            thousands(s.source_rows),
            thousands(s.read),
            thousands(s.loaded),
            thousands(kept),
            thousands(s.rejected),
            s.loaded,
            kept,
            s.rejected,
            pct(s.loaded, whole),
            pct(kept, whole),
            pct(s.rejected, whole),
            s.seconds,
            thousands(s.rows_per_sec.round() as u64),
        );
    }
    let (read, loaded, rejected, kept) = totals(r);
    let in_scope: u64 = r.entities.iter().map(|s| s.source_rows).sum();
    let _ = writeln!(
        h,
        "<tr><th>total</th><th class=\"n\">{}</th><th class=\"n\">{}</th><th class=\"n\">{}</th><th class=\"n\">{}</th><th class=\"n\">{}</th><th></th>\
         <th class=\"n\">{:.2}</th><th class=\"n\">{}</th><th colspan=\"2\" class=\"muted\">seconds: the load's wall time</th></tr></table>",
        thousands(in_scope),
        thousands(read),
        thousands(loaded),
        thousands(kept),
        thousands(rejected),
        r.load_seconds.unwrap_or(r.seconds),
        super::rate(read as f64, r.load_seconds.unwrap_or(r.seconds))
    );
}

fn rejects(h: &mut String, r: &Report) {
    let total: u64 = r.entities.iter().map(|s| s.rejected).sum();
    if total == 0 && r.rejects.is_empty() {
        return;
    }
    let _ = write!(
        h,
        "<h2>Rejects by reason</h2><p class=\"muted\">Every rejected row is in <code>migrate.rejects</code> with its key, its source values and the reason. \
         Reasons are grouped with their quoted values and key values replaced by …{}</p>\n\
         <table id=\"rejects\"><tr><th>entity</th><th>column</th><th>reason</th><th class=\"n\">rows</th><th>examples (key: source values)</th></tr>\n",
        if r.rejects_sampled {
            "; grouped over the first rejects only, the counts per entity above are exact"
        } else {
            ""
        }
    );
    for g in &r.rejects {
        let mut samples = String::new();
        for s in &g.samples {
            let _ = write!(
                samples,
                "<div class=\"sample\"><span class=\"mono\">{}</span>: {}</div>",
                esc(&s.key),
                esc(&s.values)
            );
        }
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{samples}</td></tr>",
            esc(&g.entity),
            esc(g.column.as_deref().unwrap_or("(row)")),
            esc(&g.reason),
            thousands(g.rows)
        );
    }
    h.push_str("</table>\n");
}

fn validation(h: &mut String, r: &Report) {
    let Some(v) = &r.validation else {
        return;
    };
    let _ = write!(
        h,
        "<h2>Validation: <span class=\"{}\">{}</span></h2>\n<table id=\"validation\"><tr><th>entity</th><th class=\"n\">source</th><th class=\"n\">loaded</th>\
         <th class=\"n\">rejected</th><th class=\"n\">kept out</th><th class=\"n\">target</th><th>result</th></tr>\n",
        if v.ok { "ok" } else { "bad" },
        if v.ok { "passed" } else { "FAILED" }
    );
    for c in &v.entities {
        let problems: String = c.problems.iter().map(|p| format!("<div>{}</div>", esc(p))).collect();
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td><span class=\"{}\">{}</span>{problems}</td></tr>",
            esc(&c.entity),
            thousands(c.source_rows),
            thousands(c.loaded.max(0) as u64),
            thousands(c.rejected.max(0) as u64),
            thousands(c.kept_out.max(0) as u64),
            thousands(c.target_rows.max(0) as u64),
            if c.ok { "ok" } else { "bad" },
            if c.ok { "ok" } else { "MISMATCH" }
        );
    }
    h.push_str("</table>\n");
    if !v.foreign_keys.is_empty() {
        h.push_str("<table id=\"foreign-keys\"><tr><th>table</th><th>foreign key</th><th class=\"n\">orphans</th><th>examples</th></tr>\n");
        for f in &v.foreign_keys {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"n\"><span class=\"{}\">{}</span></td><td class=\"mono\">{}</td></tr>",
                esc(&f.table),
                esc(&f.constraint),
                if f.orphans == 0 { "ok" } else { "bad" },
                f.orphans,
                esc(&f.samples.join(", "))
            );
        }
        h.push_str("</table>\n");
    }
    if !v.deep.is_empty() {
        h.push_str(
            "<h2>Every row compared (--deep)</h2><table id=\"deep\"><tr><th>entity</th><th class=\"n\">matching</th><th class=\"n\">missing</th>\
             <th class=\"n\">extra</th><th class=\"n\">differing</th><th class=\"n\">rejected</th><th>result</th></tr>\n",
        );
        for d in &v.deep {
            let mut detail: String = d
                .examples
                .iter()
                .map(|e| format!("<div class=\"mono\">{}</div>", esc(e)))
                .collect();
            for n in &d.notes {
                let _ = write!(detail, "<div class=\"muted\">note: {}</div>", esc(n));
            }
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td><span class=\"{}\">{}</span>{detail}</td></tr>",
                esc(&d.entity),
                thousands(d.matching),
                thousands(d.missing),
                thousands(d.extra),
                thousands(d.differing),
                thousands(d.rejected),
                if d.ok { "ok" } else { "bad" },
                if d.ok { "ok" } else { "MISMATCH" }
            );
        }
        h.push_str("</table>\n");
    }
}

fn settings(h: &mut String, r: &Report) {
    h.push_str("<h2>Settings</h2><table id=\"settings\">\n");
    let mut rows: Vec<(&str, &str)> = vec![("source", &r.source), ("target", &r.target)];
    rows.extend(r.settings.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    for (k, v) in rows {
        let _ = writeln!(h, "<tr><th>{}</th><td class=\"mono\">{}</td></tr>", esc(k), esc(v));
    }
    h.push_str("</table><p class=\"muted\">Passwords are never written into this page: URLs show them as ***.</p>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{EntityStats, RejectGroup, RejectSample};

    #[test]
    fn text_is_escaped_everywhere_and_the_page_needs_nothing_from_outside() {
        let mut r = Report::new(
            "run",
            chrono::Utc::now(),
            "oracle://scott:tiger@db:1521/XE",
            "postgres://u:pw@h/db",
            vec![EntityStats {
                entity: "<script>alert(1)</script>".into(),
                read: 10,
                loaded: 9,
                rejected: 1,
                seconds: 1.0,
                rows_per_sec: 10.0,
                ..Default::default()
            }],
            None,
        );
        r.rejects = vec![RejectGroup {
            entity: "e".into(),
            column: Some("c".into()),
            reason: "'…' is not an e-mail address".into(),
            rows: 1,
            samples: vec![RejectSample {
                key: "7".into(),
                values: "{\"EMAIL\":\"<b>x</b> & 'y'\"}".into(),
            }],
        }];
        let page = render(&r);
        assert!(!page.contains("<script>alert") && page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("&lt;b&gt;x&lt;/b&gt; &amp; &#39;y&#39;"));
        assert!(
            !page.contains("tiger") && !page.contains(":pw@"),
            "a password reached the page"
        );
        assert!(page.contains("LOADED, NOT VALIDATED"));
        for outside in ["http://", "https://", "<script", "<link", "src=", "@import", "url("] {
            assert!(!page.contains(outside), "the page refers to {outside}");
        }
    }
}
