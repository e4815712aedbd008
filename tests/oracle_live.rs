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
    ("ec_wide", 20_000),
    ("ec_textkey", 60_000),
    ("ec_datekey", 3_001),
    ("ec_doublekey", 3_000),
    // EC_JULIAN's 1500-02-29 is a reject.
    ("ec_julian", 1),
    // A disabled primary key over duplicates: read by ROWID, every row arrives.
    ("ec_disabled", 300),
    ("ec_wm", 3),
];

fn scaffold_into(p: &Project, db: &TestDb, url: &str, schema: &str) {
    // In lower case: the mappings must name the owner as the catalog has it (ABIS).
    let lower = schema.to_lowercase();
    let out = p
        .command(
            db,
            &[
                "scaffold", "--schema", &lower, "--out", "m", "--ddl", "t.sql", "--force",
            ],
        )
        .env("MIGRATE_SOURCE", url)
        .output()
        .map(Out)
        .unwrap()
        .expect(0);
    eprintln!("{}{}", out.stdout(), out.stderr());
    let coil = std::fs::read_to_string(p.file("m/ec_big.toml")).unwrap();
    assert!(
        coil.contains(&format!("source = \"{}.EC_BIG\"", schema.to_uppercase())),
        "{coil}"
    );
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
    // Small cursors and several streams: page and range bounds fall among the text, date and
    // double keys, each bound back in its column's type; --deep compares every row. (Four
    // streams: a table is split when it holds more than a stream's share of its level, about
    // 150,000 rows here.)
    let out = run(
        &p,
        &db,
        &url,
        &[
            "--mappings",
            "m",
            "--yes",
            "--validate",
            "--deep",
            "--jobs",
            "4",
            "--cursor-rows",
            "4999",
        ],
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
    assert!(
        out.stderr()
            .contains("ec_textkey: 60000 rows in scope, loaded in 2 key ranges"),
        "{}",
        out.stderr()
    );
    // The 1 BC key and the emoji keys arrived as they are.
    assert_eq!(
        db.scalar("SELECT count(*) FROM ec_datekey WHERE d = '0001-03-01 12:00:00 BC'"),
        1
    );
    assert_eq!(db.scalar("SELECT count(*) FROM ec_textkey WHERE k LIKE '😀%'"), 7_500);
    // The Julian-only date is its row's reject, naming the column.
    let julian = db.rows("SELECT row_key, column_name, reason FROM migrate.rejects WHERE entity = 'ec_julian'");
    assert_eq!(julian.len(), 1, "{julian:?}");
    assert_eq!(julian[0]["column_name"], "d", "{julian:?}");
    assert!(julian[0]["reason"].as_str().unwrap().contains("1500"), "{julian:?}");
    // CHR(0) cannot be stored: rejected with the column named, not altered.
    let rejects = db.rows(
        "SELECT entity, column_name, reason FROM migrate.rejects WHERE entity LIKE 'ec\\_%' AND entity <> 'ec_julian'",
    );
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

/// A plain connection for what the binary does not do: EXPLAIN PLAN, and changes to the source.
fn connect(url: &str) -> oracle::Connection {
    let spec = migrate::source::oracle::url::ConnectSpec::parse(url).unwrap();
    oracle::Connection::connect(&spec.user, &spec.password, &spec.connect_string).unwrap()
}

/// The plan Oracle picks for `sql`, as DBMS_XPLAN prints it.
fn plan_of(conn: &oracle::Connection, sql: &str) -> String {
    conn.execute(&format!("EXPLAIN PLAN FOR {sql}"), &[]).unwrap();
    let rows = conn
        .query_as::<String>(
            "SELECT plan_table_output FROM TABLE(DBMS_XPLAN.DISPLAY(NULL, NULL, 'BASIC'))",
            &[],
        )
        .unwrap();
    rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("\n")
}

fn spec(table: &str, keys: &[&str], others: &[&str]) -> migrate::source::ReadSpec {
    use migrate::source::Column;
    let mut columns: Vec<Column> = keys.iter().map(|k| Column::Named(k.to_string())).collect();
    columns.extend(others.iter().map(|c| Column::Named(c.to_string())));
    migrate::source::ReadSpec {
        relation: migrate::plan::Relation::Table(table.into()),
        key: (0..keys.len()).collect(),
        columns,
        filter: None,
        window: None,
        until: None,
    }
}

#[test]
fn oracle_resumed_reads_walk_the_key_index_without_a_sort() {
    let Some((url, schema)) = oracle() else { return };
    let conn = connect(&url);
    for (table, keys, others) in [
        ("EC_TEXTKEY", vec!["K"], vec!["N"]),
        ("EC_BIG", vec!["REGION", "SEQ"], vec!["QTY"]),
        ("EC_DATEKEY", vec!["D"], vec!["N"]),
    ] {
        let s = spec(&format!("{schema}.{table}"), &keys, &others);
        let sql = migrate::source::oracle::sql::read_sql(&s, true, 1000);
        let plan = plan_of(&conn, &sql);
        eprintln!("{sql}\n{plan}");
        assert!(plan.contains("INDEX"), "{table}: no index in\n{plan}");
        assert!(!plan.contains("SORT ORDER BY"), "{table}: sorts\n{plan}");
    }
    // A table without a key is read in ROWID slices: a range of ROWIDs, sorted slice by slice.
    let mut s = spec(&format!("{schema}.EC_NOTE"), &[], &["NOTE_TXT", "N"]);
    s.columns.push(migrate::source::Column::RowId);
    s.key = vec![2];
    s.until = Some(vec![migrate::value::Value::Text("AAAAAAAAAAAAAAAAAA".into())]);
    let plan = plan_of(&conn, &migrate::source::oracle::sql::read_sql(&s, true, 1000));
    assert!(plan.contains("ROWID RANGE"), "{plan}");
}

#[test]
fn oracle_wide_rows_are_fetched_within_the_memory_budget() {
    let Some((url, schema)) = oracle() else { return };
    let db = TestDb::new();
    let p = Project::new();
    scaffold_into(&p, &db, &url, &schema);
    let mut child = p
        .command(&db, &["--mappings", "m", "--entity", "ec_wide", "--yes", "-v"])
        .env("MIGRATE_SOURCE", &url)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The peak resident set, sampled while it runs (the fetch buffers live as long as the cursor).
    let mut peak_kb = 0u64;
    while child.try_wait().unwrap().is_none() {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", child.id())) {
            for line in status.lines().filter(|l| l.starts_with("VmHWM:")) {
                let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
                peak_kb = peak_kb.max(kb);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = Out(child.wait_with_output().unwrap()).expect(0);
    eprintln!("peak RSS {} MB", peak_kb / 1024);
    assert!(out.stderr().contains("rows per array fetch"), "{}", out.stderr());
    assert_eq!(db.scalar("SELECT count(*) FROM ec_wide"), 20_000);
    // 20 VARCHAR2(4000) columns: 104 rows an array fetch within 32 MiB (5,000 rows would be 1.6 GB).
    assert!(peak_kb < 300 * 1024, "peak RSS {} MB", peak_kb / 1024);
}

#[test]
fn oracle_synonyms_resolve_and_a_view_needs_a_key() {
    let Some((url, schema)) = oracle() else { return };
    let db = TestDb::new();
    let p = Project::new();
    scaffold_into(&p, &db, &url, &schema);
    let carrier = |source: &str, key: &str| {
        format!(
            "source = \"{source}\"\ntarget = \"ec_carrier\"\n{key}[[fields]]\nfrom = \"CARRIER_ID\"\nto = \"carrier_id\"\n[[fields]]\nfrom = \"CARRIER_NAME\"\nto = \"carrier_name\"\n"
        )
    };
    std::fs::create_dir_all(p.file("syn")).unwrap();
    std::fs::write(p.file("syn/ec_carrier.toml"), carrier("EC_CARRIER_SYN", "")).unwrap();
    run(&p, &db, &url, &["--mappings", "syn", "--yes", "--validate"]).expect(0);
    assert_eq!(db.scalar("SELECT count(*) FROM ec_carrier"), 12);

    let view = tempfile::tempdir().unwrap();
    let dir = view.path().to_str().unwrap();
    std::fs::write(view.path().join("ec_carrier.toml"), carrier("EC_CARRIER_V", "")).unwrap();
    let out = run(&p, &db, &url, &["--mappings", dir, "--check-only"]).expect(2);
    assert!(
        out.stderr().contains("is a view") || out.stdout().contains("is a view"),
        "{}{}",
        out.stdout(),
        out.stderr()
    );
    std::fs::write(
        view.path().join("ec_carrier.toml"),
        carrier("EC_CARRIER_V", "key = [\"CARRIER_ID\"]\n"),
    )
    .unwrap();
    run(&p, &db, &url, &["--mappings", dir, "--check-only"]).expect(0);
}

#[test]
fn oracle_number_watermarks_between_minus_one_and_one() {
    let Some((url, _)) = oracle() else { return };
    let db = TestDb::new();
    let p = Project::new();
    db.exec("CREATE TABLE ec_wm (id integer PRIMARY KEY, v numeric)");
    p.mapping(
        "ec_wm",
        "source = \"EC_WM\"\ntarget = \"ec_wm\"\nincremental = \"V\"\noverlap = 0\n[[fields]]\nfrom = \"ID\"\nto = \"id\"\n[[fields]]\nfrom = \"V\"\nto = \"v\"\n",
    );
    run(&p, &db, &url, &["--yes"]).expect(0);
    let status = run(&p, &db, &url, &["status", "--json"]).expect(0).stdout();
    assert!(status.contains("\"0.5\""), "{status}");
    let conn = connect(&url);
    conn.execute("UPDATE EC_WM SET V = 0.75 WHERE ID = 2", &[]).unwrap();
    conn.commit().unwrap();
    let out = run(&p, &db, &url, &["sync"]).expect(0);
    conn.execute("UPDATE EC_WM SET V = 0.25 WHERE ID = 2", &[]).unwrap();
    conn.commit().unwrap();
    assert!(out.stdout().contains("0.75"), "{}", out.stdout());
    assert_eq!(db.scalar("SELECT count(*) FROM ec_wm WHERE v = 0.75"), 1);
}
