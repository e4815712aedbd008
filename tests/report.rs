//! `--report FILE.html`: the page is rendered by headless Chromium and its visible text checked:
//! the verdict, the entities with their numbers, rejects grouped by reason with samples, the
//! deep validation, the settings, and no password anywhere. Chromium comes from Debian's
//! `chromium` package (scripts/ensure_chromium.sh, run by .ci/run); without it the test fails.

use crate::support::*;
use std::path::Path;
use std::process::Command;

fn chromium() -> String {
    let candidates = [
        std::env::var("MIGRATE_CHROMIUM").unwrap_or_default(),
        "chromium".into(),
        "chromium-browser".into(),
        "google-chrome".into(),
    ];
    for c in candidates.iter().filter(|c| !c.is_empty()) {
        if Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return c.clone();
        }
    }
    panic!(
        "no Chromium to render the HTML report: bash scripts/ensure_chromium.sh (apt-get install chromium), or set MIGRATE_CHROMIUM"
    );
}

/// The page's text as Chromium lays it out (`innerText`), read through a wrapper page that
/// loads it in a frame.
fn rendered_text(page: &Path) -> String {
    let dir = page.parent().unwrap();
    let wrapper = dir.join("render.html");
    std::fs::write(
        &wrapper,
        format!(
            "<!DOCTYPE html><iframe id=f src=\"{}\" width=1200 height=900></iframe><pre id=out></pre>\
             <script>f.onload=()=>{{document.getElementById('out').textContent=f.contentDocument.body.innerText}}</script>",
            page.file_name().unwrap().to_string_lossy()
        ),
    )
    .unwrap();
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--allow-file-access-from-files",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", wrapper.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let start = dom
        .find("<pre id=\"out\">")
        .unwrap_or_else(|| panic!("no rendered text: {dom}"))
        + "<pre id=\"out\">".len();
    let end = dom[start..].find("</pre>").unwrap() + start;
    dom[start..end]
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
}

#[test]
fn the_html_report_renders_the_verdict_entities_rejects_by_reason_validation_and_settings() {
    let db = TestDb::new();
    let p = Project::new();
    demo(&p, &db, "0.2");
    // A password in the target URL (trust authentication ignores it): it must not reach the page.
    let url = db.url.replacen("postgres@", "postgres:Pw-in-URL_42@", 1);
    p.command(&db, &["--yes", "--validate", "--deep", "--report", "report.html"])
        .env("DATABASE_URL", &url)
        .output()
        .map(Out)
        .unwrap()
        .expect(0);
    let html = std::fs::read_to_string(p.file("report.html")).unwrap();
    assert!(!html.contains("Pw-in-URL_42"), "the password reached the page");
    for outside in ["http://", "https://", "<script", "<link", "<img", "@import"] {
        assert!(!html.contains(outside), "the page needs {outside}");
    }
    let text = rendered_text(&p.file("report.html"));
    assert!(!text.contains("Pw-in-URL_42"));
    // The verdict, from the run's own numbers.
    let loaded: i64 = DEMO_TABLES
        .iter()
        .map(|(_, t)| db.scalar(&format!("SELECT count(*) FROM {t}")))
        .sum();
    let rejected = db.scalar("SELECT count(*) FROM migrate.rejects");
    let thousands = |n: i64| {
        let s = n.to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    };
    assert!(text.starts_with("Migration report"), "{text}");
    assert!(text.contains("PASSED"), "{text}");
    assert!(
        text.contains(&format!(
            "{} of {} rows read were loaded; {} rejected",
            thousands(loaded),
            thousands(loaded + rejected),
            rejected
        )),
        "{text}"
    );
    // Every entity, with the rows its table holds.
    for (entity, table) in DEMO_TABLES {
        let n = db.scalar(&format!("SELECT count(*) FROM {table}"));
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{entity}\t")) && l.contains(&format!("\t{}\t", thousands(n)))),
            "{entity} with {n} rows: {text}"
        );
    }
    // Rejects grouped by reason, with counts that add up, and samples of the value.
    let section = &text[text.find("Rejects by reason").expect("rejects section")
        ..text.find("Validation: passed").expect("validation")];
    assert!(
        section.contains("transform failed: '…' is not an e-mail address"),
        "{section}"
    );
    assert!(section.contains("EMAIL = \"n/a\""), "{section}");
    let email_rejects = db.scalar("SELECT count(*) FROM migrate.rejects WHERE reason LIKE '%is not an e-mail address'");
    assert!(
        section
            .lines()
            .any(|l| l.contains("is not an e-mail address") && l.contains(&format!("\t{email_rejects}\t"))),
        "{email_rejects} e-mail rejects: {section}"
    );
    assert!(
        section.contains("violates foreign key constraint") && section.contains("Key (customer_id)=(…)"),
        "{section}"
    );
    // Validation, deep comparison and settings.
    assert!(text.contains("Every row compared (--deep)"), "{text}");
    assert!(
        text.contains("--deep\tyes") && text.contains("--validate\tyes"),
        "{text}"
    );
    assert!(text.contains("postgres:***@127.0.0.1"), "{text}");
}
