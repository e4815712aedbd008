//! Against a real Oracle server: scaffold, full migration, exact values, kill + resume, validate,
//! on the edge-case tables of tests/oracle/edge_cases.sql (the oracle-smoke workflow's scaffold
//! job; its abis job runs the shipped mappings on the ABIS demo). Runs only when ORACLE_URL (or
//! the ORACLE_* set) is set; otherwise each test says it was skipped and returns. Nothing here
//! has run on the machines this project is developed on: they have no Oracle.

use crate::support::*;
use std::time::{Duration, Instant};

/// ORACLE_URL, or the URL the ORACLE_* set builds (as `migrate` itself does).
fn oracle() -> Option<(String, String)> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match var("ORACLE_URL").or_else(migrate::source::oracle::url::url_from_env) {
        Some(url) => Some((url, std::env::var("ORACLE_SCHEMA").unwrap_or_else(|_| "ABIS".into()))),
        None => {
            eprintln!(
                "skipped: neither ORACLE_URL nor ORACLE_USER with ORACLE_HOST/ORACLE_SERVICE is set (the oracle-smoke workflow sets them; see tests/oracle/edge_cases.sql)"
            );
            None
        }
    }
}

/// Tables of the seed schema with their row counts after the load (EC_EDGE loses its CHR(0) row
/// to the rejects).
const LOADED: &[(&str, i64)] = &[
    ("ec_carrier", 12),
    ("ec_line", 6),
    ("ec_customer", 400),
    ("ec_coil", 2000),
    ("ec_job", 3000),
    ("ec_skid", 5000),
    ("ec_qa_result", 4000),
    ("ec_shipment", 1500),
    ("ec_note", 250),
    ("\"order line\"", 333),
    ("ec_edge", 3),
    ("ec_big", 60_000),
];

fn scaffold_into(p: &Project, db: &TestDb, url: &str, schema: &str) {
    let out = p
        .command(
            db,
            &[
                "scaffold", "--schema", schema, "--out", "m", "--ddl", "t.sql", "--force",
            ],
        )
        .env("MIGRATE_SOURCE", url)
        .output()
        .map(Out)
        .unwrap()
        .expect(0);
    eprintln!("{}{}", out.stdout(), out.stderr());
    db.exec(&std::fs::read_to_string(p.file("t.sql")).unwrap());
}

fn run(p: &Project, db: &TestDb, url: &str, args: &[&str]) -> Out {
    p.command(db, args)
        .env("MIGRATE_SOURCE", url)
        .output()
        .map(Out)
        .unwrap()
}

#[test]
fn oracle_scaffold_load_exact_values_and_validate() {
    let Some((url, schema)) = oracle() else { return };
    let db = TestDb::new();
    let p = Project::new();
    scaffold_into(&p, &db, &url, &schema);
    run(&p, &db, &url, &["--mappings", "m", "--check-only"]).expect(0);
    let out = run(
        &p,
        &db,
        &url,
        &["--mappings", "m", "--yes", "--validate", "--jobs", "2"],
    )
    .expect(0);
    eprintln!("{}", out.stdout());
    // The large table went in two key ranges (bounds from Oracle's ROW_NUMBER, read with the
    // 11g-safe range predicate), folded into one progress row.
    assert!(
        out.stderr()
            .contains("ec_big: 60000 rows in scope, loaded in 2 key ranges"),
        "{}",
        out.stderr()
    );
    assert_eq!(db.scalar("SELECT count(DISTINCT (region, seq)) FROM ec_big"), 60_000);
    assert_eq!(
        db.scalar("SELECT count(*) FROM migrate.progress WHERE entity LIKE 'ec_big#%'"),
        0
    );
    for (table, n) in LOADED {
        assert_eq!(db.scalar(&format!("SELECT count(*) FROM {table}")), *n, "{table}");
    }
    // CHR(0) cannot be stored: rejected with the column named, not altered.
    let rejects = db.rows("SELECT entity, column_name, reason FROM migrate.rejects WHERE entity LIKE 'ec\\_%'");
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(rejects[0]["entity"], "ec_edge", "{rejects:?}");
    assert_eq!(rejects[0]["column_name"], "txt", "{rejects:?}");
    assert!(
        rejects[0]["reason"].as_str().unwrap().contains("NUL byte"),
        "{rejects:?}"
    );

    let edge = |id: i32, expr: &str| -> serde_json::Value {
        db.rows(&format!("SELECT ({expr}) AS v FROM ec_edge WHERE id = {id}"))[0]["v"].clone()
    };
    let text = |id: i32, expr: &str| edge(id, &format!("({expr})::text"));
    assert_eq!(text(1, "big"), "99999999999999999999999999999999999999");
    assert_eq!(text(1, "dec"), "-98765432109876543210.0123456789");
    assert_eq!(edge(1, "flt = 0.5"), true);
    assert_eq!(edge(1, "txt"), "tab\tnewline\nquote\"'backslash\\");
    assert_eq!(edge(1, "ntxt"), "Zoë € 😀");
    assert_eq!(text(1, "guid"), "\\x00112233445566778899aabbccddeeff");
    assert_eq!(text(1, "d"), "9999-12-31 23:59:59");
    assert_eq!(text(1, "ts9"), "1850-01-01 00:00:00.123457");
    assert_eq!(edge(1, "tstz = '2024-03-10 03:00:00+00'"), true);
    assert_eq!(edge(1, "tsltz = '2024-03-10 12:00:00+00'"), true);
    assert_eq!(edge(1, "pad"), "AB");
    // Oracle stores '' as NULL; an all-blank CHAR is blanks, which rtrim empties.
    assert_eq!(edge(2, "txt IS NULL"), true);
    assert_eq!(text(2, "d"), "0001-01-01 00:00:00");
    assert_eq!(edge(2, "tstz = '2023-12-31 10:15:00+00'"), true);
    assert_eq!(edge(2, "pad"), "");
    assert_eq!(
        edge(4, "bigtxt = repeat(rpad('0123456789', 1000, 'abcdefghij'), 100)"),
        true
    );
    assert_eq!(
        edge(
            4,
            "bin = (SELECT string_agg(decode(repeat(lpad(to_hex(i % 256), 2, '0'), 1024), 'hex'), ''::bytea ORDER BY i) FROM generate_series(1, 1024) i)"
        ),
        true
    );
    // DATE keeps its time; a zoned timestamp lands at its instant.
    assert_eq!(
        db.rows("SELECT created::text AS v FROM ec_customer WHERE customer_id = 1")[0]["v"],
        "2001-01-02 08:52:48"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM ec_job WHERE job_id = 3 AND done_ts = '2020-01-01 03:00:21+00'"),
        1
    );
    // The self reference to later rows arrived whole.
    assert_eq!(
        db.scalar("SELECT count(*) FROM ec_customer WHERE parent_id IS NOT NULL"),
        39
    );
}

#[test]
fn oracle_kill_and_resume_equals_a_clean_run() {
    let Some((url, schema)) = oracle() else { return };
    let clean = TestDb::new();
    let p = Project::new();
    scaffold_into(&p, &clean, &url, &schema);
    run(&p, &clean, &url, &["--mappings", "m", "--yes"]).expect(0);

    let killed = TestDb::new();
    killed.exec(&std::fs::read_to_string(p.file("t.sql")).unwrap());
    let mut kills = 0;
    for round in 0..3 {
        let args: &[&str] = if round == 0 {
            &["--mappings", "m", "--yes", "--batch-size", "50"]
        } else {
            &["--mappings", "m", "--yes", "--batch-size", "50", "--resume"]
        };
        let mut child = p.command(&killed, args).env("MIGRATE_SOURCE", &url).spawn().unwrap();
        let started = Instant::now();
        let wait = Duration::from_millis(1500 + 700 * round);
        while started.elapsed() < wait && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
    }
    eprintln!("{kills} SIGKILL(s) before resuming to the end");
    run(
        &p,
        &killed,
        &url,
        &["--mappings", "m", "--yes", "--resume", "--validate"],
    )
    .expect(0);
    for (table, _) in LOADED {
        assert_eq!(
            killed.digest(table, "t::text"),
            clean.digest(table, "t::text"),
            "{table} differs after kill + resume"
        );
    }
    assert_eq!(
        killed.scalar("SELECT count(*) FROM migrate.rejects"),
        clean.scalar("SELECT count(*) FROM migrate.rejects")
    );
}
