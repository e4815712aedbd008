//! The promise under adversarial input: every source row ends in the target exactly or in
//! `migrate.rejects` with a reason, the counts are what PostgreSQL holds, and a run that cannot
//! keep that exits non-zero and says why. One test (or more) per way it was seen to break.

use crate::support::*;

/// A mapping of `source` into `target` with plain fields `from → to`.
fn mapping(source: &str, target: &str, extra: &str, fields: &[(&str, &str)]) -> String {
    let mut m = format!("source = \"{source}\"\ntarget = \"{target}\"\n{extra}\n");
    for (from, to) in fields {
        m.push_str(&format!("[[fields]]\nfrom = \"{from}\"\nto = \"{to}\"\n"));
    }
    m
}

fn reasons(db: &TestDb, entity: &str) -> Vec<String> {
    db.rows(&format!(
        "SELECT row_key || ' ' || coalesce(column_name, '-') || ': ' || reason AS r FROM migrate.rejects WHERE entity = '{entity}' ORDER BY row_key"
    ))
    .into_iter()
    .map(|r| r["r"].as_str().unwrap().to_string())
    .collect()
}

#[test]
fn values_postgresql_would_round_or_overflow_are_rejected_not_stored_changed() {
    let db = TestDb::new();
    let p = Project::new();
    p.sqlite(
        "CREATE TABLE M (ID INTEGER PRIMARY KEY, TS TEXT, R REAL, D TEXT, N TEXT, BIG INTEGER);
         INSERT INTO M VALUES
           (1, '2024-03-01 10:20:30', 1.5, '2.5', '20', 3),
           (2, '2024-03-01 10:20:30.750', 1.5, '2.5', '20', 3),
           (3, '2024-03-01 10:20:30', 1e300, '2.5', '20', 3),
           (4, '2024-03-01 10:20:30', 1e-50, '2.5', '20', 3),
           (5, '2024-03-01 10:20:30', 1.5, '1e400', '20', 3),
           (6, '2024-03-01 10:20:30', 1.5, '2.5', '15', 3),
           (7, '2024-03-01 10:20:30', 1.5, '2.5', '1.5', 3),
           (8, '2024-03-01 10:20:30', 1.5, '-1e-400', '20', 3),
           (9, '2024-03-01 10:20:30', 1.5, '2.5', '20', 9007199254740993);",
    );
    db.exec(
        "CREATE TABLE m (id int PRIMARY KEY, ts timestamp(0), r real, d double precision, n numeric(3,-1), big double precision)",
    );
    p.mapping(
        "m",
        &mapping(
            "M",
            "m",
            "",
            &[
                ("ID", "id"),
                ("TS", "ts"),
                ("R", "r"),
                ("D", "d"),
                ("N", "n"),
                ("BIG", "big"),
            ],
        ),
    );
    let out = p.run(&db, &["--yes", "--validate"]).expect(0);
    assert!(out.stdout().contains("validation passed"), "{}", out.stdout());
    assert_eq!(db.scalar("SELECT count(*) FROM m"), 1);
    assert_eq!(
        db.rows("SELECT ts::text, r, d, n::text FROM m"),
        vec![serde_json::json!({"ts": "2024-03-01 10:20:30", "r": 1.5, "d": 2.5, "n": "20"})]
    );
    let r = reasons(&db, "m");
    assert_eq!(r.len(), 8, "{r:#?}");
    let expect = [
        "ts: 2024-03-01 10:20:30.750 has fractional seconds .75 but timestamp(0) keeps 0",
        "r: 1e300 is out of range for real (it would be stored as Infinity)",
        "r: 1e-50 is out of range for real (it would be stored as 0)",
        "d: '1e400' is out of range for double precision (it would be stored as Infinity)",
        "n: 15 is not a multiple of 10 as numeric(3,-1) requires",
        "n: 1.5 is not a multiple of 10",
        "d: '-1e-400' is out of range for double precision (it would be stored as 0)",
        "big: 9007199254740993 cannot be held exactly by double precision",
    ];
    for e in expect {
        assert!(r.iter().any(|x| x.contains(e)), "no reject says {e:?}: {r:#?}");
    }
    // The deep validation agrees: every source row is in the target or a reject.
    p.run(&db, &["validate", "--deep"]).expect(0);
}

#[test]
fn multi_byte_text_in_a_uuid_column_or_a_date_mask_never_panics() {
    let db = TestDb::new();
    let p = Project::new();
    p.sqlite(
        "CREATE TABLE U (ID INTEGER PRIMARY KEY, U TEXT, D TEXT);
         INSERT INTO U VALUES
           (1, '00112233-4455-6677-8899-aabbccddeeff', '2024é01'),
           (2, 'éééééééééééééééé', '2024é01'),
           (3, '00112233-4455-6677-8899-aabbccddeeff', '2024日01'),
           (4, '日本日本日本日本日本日本日本日本日本日本日', '😀😀😀😀');",
    );
    db.exec("CREATE TABLE u (id int PRIMARY KEY, u uuid, d date)");
    p.mapping(
        "u",
        "source = \"U\"\ntarget = \"u\"\n[[fields]]\nfrom = \"ID\"\nto = \"id\"\n[[fields]]\nfrom = \"U\"\nto = \"u\"\n[[fields]]\nfrom = \"D\"\nto = \"d\"\ntransform = [{ date = 'YYYY\"é\"MM' }]\n",
    );
    for args in [
        &["--dry-run"][..],
        &["--yes"][..],
        &["validate", "--deep"][..],
        &["--yes", "--resume"][..],
    ] {
        let out = p.run(&db, args);
        let err = out.stderr();
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            !err.contains("日本日本"),
            "{args:?}: a cell value reached the log: {err}"
        );
        assert!(matches!(out.code(), 0 | 1), "{args:?}: exit {}: {err}", out.code());
    }
    assert_eq!(db.scalar("SELECT count(*) FROM u"), 1);
    let r = reasons(&db, "u");
    assert_eq!(r.len(), 3, "{r:#?}");
    assert!(
        r.iter().any(|x| x.contains("u: 'éééééééééééééééé' is not a UUID")),
        "{r:#?}"
    );
    assert!(r.iter().any(|x| x.contains("expected 'é'")), "{r:#?}");
}

/// `n` rows `(ID, K, V)` into `T`, by a recursive CTE; `k` is the SQL of K from `i`.
fn rows_sql(table: &str, n: u32, k: &str) -> String {
    format!(
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {n}) INSERT INTO {table} SELECT i, {k}, 'v' || i FROM c;"
    )
}

#[test]
fn a_key_with_duplicates_is_refused_before_the_load_and_rowid_loads_every_row() {
    let db = TestDb::new();
    let p = Project::new();
    // 2,004 rows; K repeats at 1,000 (a page boundary), 1,500 and 2,000.
    p.sqlite(&format!(
        "CREATE TABLE T (ID INTEGER, K INTEGER, V TEXT); {}
         INSERT INTO T VALUES (3001, 1000, 'dup'), (3002, 1500, 'dup'), (3003, 2000, 'dup'), (3004, 2000, 'dup');",
        rows_sql("T", 2000, "i")
    ));
    db.exec("CREATE TABLE t (id int, k int, v text)");
    let fields = [("ID", "id"), ("K", "k"), ("V", "v")];
    // A declared key, a query's key, a key with a filter: each refused, naming the count.
    for (name, extra) in [("t", "key = [\"K\"]"), ("t", "key = [\"K\"]\nwhere = \"ID > 10\"")] {
        p.mapping(name, &mapping("T", "t", extra, &fields));
        for args in [&["--check-only"][..], &["--yes"][..]] {
            let err = p.run(&db, args).expect(2).stderr();
            assert!(
                err.contains("3 value(s) of key (K) occur more than once in T; a key must be unique"),
                "{extra}: {err}"
            );
            assert!(err.contains("key = [\"ROWID\"]"), "{err}");
        }
    }
    std::fs::remove_file(p.file("mappings/t.toml")).unwrap();
    p.mapping(
        "q",
        "query = \"SELECT ID, K, V FROM T\"\ntarget = \"t\"\nkey = [\"K\"]\n[[fields]]\nfrom = \"ID\"\nto = \"id\"\n",
    );
    let err = p.run(&db, &["--check-only"]).expect(2).stderr();
    assert!(err.contains("3 value(s) of key (K) occur more than once"), "{err}");
    assert_eq!(db.scalar("SELECT count(*) FROM t"), 0);
    // The row id is unique: every row arrives, duplicates of K included.
    std::fs::remove_file(p.file("mappings/q.toml")).unwrap();
    p.mapping("t", &mapping("T", "t", "key = [\"ROWID\"]", &fields));
    p.run(&db, &["--yes", "--batch-size", "1000", "--validate", "--deep"])
        .expect(0);
    assert_eq!(db.scalar("SELECT count(*) FROM t"), 2004);
}

#[test]
fn keys_are_read_in_one_binary_order_whatever_the_column_collation() {
    let db = TestDb::new();
    let p = Project::new();
    // NOCASE columns: one whose key index is BINARY (k0999 and K0999 both exist), one whose
    // key index is NOCASE itself, and a composite key mixing both.
    p.sqlite(&format!(
        "CREATE TABLE A (ID INTEGER, K TEXT COLLATE NOCASE, V TEXT, PRIMARY KEY (K COLLATE BINARY)); {}
         CREATE TABLE B (ID INTEGER, K TEXT COLLATE NOCASE PRIMARY KEY, V TEXT); {}
         CREATE TABLE C (ID INTEGER, K TEXT COLLATE NOCASE, V TEXT, PRIMARY KEY (V, K COLLATE BINARY)); {}",
        rows_sql(
            "A",
            2400,
            "CASE WHEN i % 2 = 0 THEN 'k' ELSE 'K' END || printf('%04d', i / 2)"
        ),
        rows_sql(
            "B",
            2400,
            "CASE WHEN i % 3 = 0 THEN 'b' ELSE 'B' END || printf('%04d', i)"
        ),
        rows_sql(
            "C",
            2400,
            "CASE WHEN i % 2 = 0 THEN 'k' ELSE 'K' END || printf('%04d', i / 2)"
        ),
    ));
    for t in ["a", "b", "c"] {
        db.exec(&format!("CREATE TABLE {t} (id int, k text, v text)"));
        p.mapping(
            t,
            &mapping(&t.to_uppercase(), t, "", &[("ID", "id"), ("K", "k"), ("V", "v")]),
        );
    }
    let out = p
        .run(&db, &["--yes", "--batch-size", "1000", "--validate", "--deep"])
        .expect(0);
    for t in ["a", "b", "c"] {
        assert_eq!(
            db.scalar(&format!("SELECT count(*) FROM {t}")),
            2400,
            "{}",
            out.stdout()
        );
    }
    assert_eq!(db.scalar("SELECT count(*) FROM a WHERE k IN ('k0999', 'K0999')"), 2);
}

#[test]
fn a_text_key_that_is_not_utf8_is_paged_past_as_text_and_rejected_alone() {
    let db = TestDb::new();
    let p = Project::new();
    // Keys k0001 … k2400; the 1,000th (the last of the first page) is not valid UTF-8 but is
    // TEXT to SQLite, which sorts every TEXT before any BLOB.
    p.sqlite(&format!(
        "CREATE TABLE T (ID INTEGER, K TEXT PRIMARY KEY, V TEXT); {}
         UPDATE T SET K = CAST(X'6B30393939FF' AS TEXT) WHERE ID = 999;
         UPDATE T SET K = CAST(X'6B31373030FE' AS TEXT) WHERE ID = 1700;",
        rows_sql("T", 2400, "'k' || printf('%04d', i)")
    ));
    db.exec("CREATE TABLE t (id int, k text, v text)");
    p.mapping("t", &mapping("T", "t", "", &[("ID", "id"), ("K", "k"), ("V", "v")]));
    p.run(&db, &["--yes", "--batch-size", "1000", "--validate", "--deep"])
        .expect(0);
    assert_eq!(db.scalar("SELECT count(*) FROM t"), 2398);
    let r = reasons(&db, "t");
    assert_eq!(r.len(), 2, "{r:#?}");
    assert!(r.iter().all(|x| x.contains("k: text is not valid UTF-8")), "{r:#?}");
    // Into bytea the same keys load byte for byte.
    let db2 = TestDb::new();
    db2.exec("CREATE TABLE t (id int, k bytea, v text)");
    p.run(&db2, &["--yes", "--batch-size", "1000"]).expect(0);
    assert_eq!(
        db2.scalar("SELECT count(*) FROM t WHERE k = '\\x6b30393939ff'::bytea"),
        1
    );
    assert_eq!(db2.scalar("SELECT count(*) FROM t"), 2400);
}

#[test]
fn tables_without_a_key_are_read_by_a_row_id_no_column_shadows() {
    let db = TestDb::new();
    let p = Project::new();
    p.sqlite(&format!(
        "CREATE TABLE R (ROWID INTEGER, K TEXT, V TEXT); {}
         CREATE TABLE S (rowid INTEGER, _rowid_ INTEGER, oid INTEGER, V TEXT);
         INSERT INTO S VALUES (1, 1, 1, 'a');
         CREATE TABLE W (K TEXT PRIMARY KEY, V TEXT) WITHOUT ROWID;
         INSERT INTO W VALUES ('a', 'b');
         CREATE VIEW VW AS SELECT ROWID AS ID, K, V FROM R;",
        // The user's ROWID column runs backwards and repeats: paging by it would lose rows.
        rows_sql("R", 2500, "'k' || i").replace("SELECT i, ", "SELECT 100 - i % 200, ")
    ));
    db.exec("CREATE TABLE r (id int, k text, v text)");
    p.mapping("r", &mapping("R", "r", "", &[("ROWID", "id"), ("K", "k"), ("V", "v")]));
    p.run(&db, &["--yes", "--batch-size", "1000", "--validate", "--deep"])
        .expect(0);
    assert_eq!(db.scalar("SELECT count(*) FROM r"), 2500);
    // No row id to read: said before the load, with the way out.
    for (name, source) in [("s", "S"), ("w", "W"), ("vw", "VW")] {
        p.mapping(name, &mapping(source, "r", "", &[("V", "v")]));
    }
    let err = p.run(&db, &["--check-only"]).expect(2).stderr();
    assert!(
        err.contains("S has columns named rowid, _rowid_ and oid, so its row id cannot be read"),
        "{err}"
    );
    assert!(
        err.contains("W has no row id (a view, or a WITHOUT ROWID table)"),
        "{err}"
    );
    assert!(
        err.contains("VW has no row id (a view, or a WITHOUT ROWID table): set `key`"),
        "{err}"
    );
    assert!(!err.contains("--resume"), "{err}");
}

#[test]
fn rows_deleted_from_the_source_during_the_load_make_the_run_fail_not_done() {
    let db = TestDb::new();
    let p = Project::new();
    p.sqlite(&format!(
        "CREATE TABLE T (ID INTEGER PRIMARY KEY, K TEXT, V TEXT); {}",
        rows_sql("T", 60_000, "'k' || i")
    ));
    db.exec("CREATE TABLE t (id int, k text, v text)");
    p.mapping("t", &mapping("T", "t", "", &[("ID", "id"), ("K", "k"), ("V", "v")]));
    let mut child = p
        .command(&db, &["--yes", "--batch-size", "1000", "--jobs", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the first batch is committed: stop the process, delete the last rows, go on. A
    // process stopped inside a read holds SQLite's shared lock: then let it run a moment and
    // try again.
    let pid = child.id();
    let started = std::time::Instant::now();
    wait_for_loaded(&db, &mut child, 1);
    let delete = || {
        let c = rusqlite::Connection::open(p.file("legacy.db")).unwrap();
        c.busy_timeout(std::time::Duration::ZERO).unwrap();
        c.execute("DELETE FROM T WHERE ID > 59990", []).is_ok()
    };
    loop {
        send_signal(pid, libc::SIGSTOP);
        let done = delete();
        send_signal(pid, libc::SIGCONT);
        if done {
            break;
        }
        assert!(started.elapsed().as_secs() < 60, "the source stayed locked");
        std::thread::sleep(std::time::Duration::from_millis(3));
    }
    let out = Out(child.wait_with_output().unwrap()).expect(1);
    let err = out.stderr();
    assert!(
        err.contains(
            "t: 59990 source rows read, but 60000 were counted in scope before the load: 10 row(s) were not read"
        ),
        "{err}"
    );
    assert!(err.contains("migrate sync"), "{err}");
    assert_eq!(
        db.scalar("SELECT count(*) FROM migrate.progress WHERE entity = 't' AND status = 'done'"),
        0
    );
    // A resume counts again (59,990 now) and finishes: nothing was lost of what is there.
    p.run(&db, &["--yes", "--resume", "--validate"]).expect(0);
    assert_eq!(db.scalar("SELECT count(*) FROM t"), 59_990);
}

#[test]
fn counts_are_what_postgresql_stored_not_what_was_sent() {
    let db = TestDb::new();
    let p = Project::new();
    p.sqlite(
        "CREATE TABLE T (ID INTEGER PRIMARY KEY, CODE TEXT, N INTEGER);
         INSERT INTO T VALUES (1, 'a', 1), (2, 'b', 2), (3, 'A', 3), (4, 'c', -4), (5, 'B', 5), (6, 'd', 6), (7, 'e', 7), (8, 'f', 8);",
    );
    // A trigger that keeps out every row with N divisible by 3, and a CHECK that refuses
    // negative N (so one batch goes the careful way too).
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, code text, n int CHECK (n >= 0));
         CREATE FUNCTION keep_out() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN IF NEW.n % 3 = 0 THEN RETURN NULL; END IF; RETURN NEW; END $$;
         CREATE TRIGGER keep_out BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION keep_out();
         CREATE TABLE u (code text PRIMARY KEY, n int);
         CREATE TABLE w (code text PRIMARY KEY, n int);",
    );
    p.mapping(
        "t",
        &mapping("T", "t", "", &[("ID", "id"), ("CODE", "code"), ("N", "n")]),
    );
    // Codes that collide once upper-cased: a, A; b, B.
    let upper = |target: &str, conflict: &str| {
        format!(
            "source = \"T\"\ntarget = \"{target}\"\nkey = [\"CODE\"]\non_conflict = \"{conflict}\"\n[[fields]]\nfrom = \"CODE\"\nto = \"code\"\ntransform = [\"upper\"]\n[[fields]]\nfrom = \"ID\"\nto = \"n\"\n"
        )
    };
    p.mapping("u", &upper("u", "skip"));
    p.mapping("w", &upper("w", "update"));
    let out = p
        .run(&db, &["--yes", "--validate", "--deep", "--report", "report.json"])
        .expect(0);
    let stdout = out.stdout();
    assert_eq!(db.scalar("SELECT count(*) FROM t"), 5, "{stdout}");
    assert_eq!(db.scalar("SELECT count(*) FROM u"), 6);
    assert_eq!(db.scalar("SELECT count(*) FROM w"), 6);
    // The later of two colliding rows (in key order: 'A' < 'a') updated the earlier one.
    assert_eq!(db.scalar("SELECT n::bigint FROM w WHERE code = 'A'"), 1);
    let progress = db.rows(
        "SELECT entity, rows_read, rows_loaded, rows_rejected, rows_kept_out, rows_merged FROM migrate.progress ORDER BY entity",
    );
    assert_eq!(
        progress,
        vec![
            serde_json::json!({"entity": "t", "rows_read": 8, "rows_loaded": 5, "rows_rejected": 1, "rows_kept_out": 2, "rows_merged": 0}),
            serde_json::json!({"entity": "u", "rows_read": 8, "rows_loaded": 6, "rows_rejected": 0, "rows_kept_out": 2, "rows_merged": 0}),
            serde_json::json!({"entity": "w", "rows_read": 8, "rows_loaded": 6, "rows_rejected": 0, "rows_kept_out": 0, "rows_merged": 2}),
        ]
    );
    assert!(
        stdout.contains("t: 2 row(s) kept out by the target without an error"),
        "{stdout}"
    );
    assert!(stdout.contains("u: 2 row(s) kept out by the target"), "{stdout}");
    assert!(
        stdout.contains("w: 2 row(s) merged into rows already in the target"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 source row(s) are not in the target because the target kept them out"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.file("report.json")).unwrap()).unwrap();
    let t = report["entities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["entity"] == "t")
        .unwrap();
    assert_eq!(
        (t["loaded"].as_u64(), t["kept_out"].as_u64()),
        (Some(5), Some(2)),
        "{t}"
    );
    // The status shows them too.
    let status = p.run(&db, &["status", "--json"]).expect(0).stdout();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status[0]["rows_kept_out"], 2, "{status}");
}

#[test]
fn a_row_the_target_refuses_for_any_row_level_reason_is_that_rows_reject() {
    let db = TestDb::new();
    let p = Project::new();
    // Row 3: a trigger raises for it (P0001); row 5: its value makes an index row too large
    // for a B-tree (54000); row 7: 70 characters for a `name` column; rows 8 and 9 share a
    // code under a DEFERRABLE INITIALLY DEFERRED unique constraint, which would otherwise
    // fail only at COMMIT.
    p.sqlite(
        "CREATE TABLE T (ID INTEGER PRIMARY KEY, CODE TEXT, BIG TEXT, NM TEXT);
         WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 12)
         INSERT INTO T SELECT i, 'c' || i, 'small', 'n' || i FROM c;
         UPDATE T SET BIG = (WITH RECURSIVE r(i, s) AS (SELECT 0, '' UNION ALL SELECT i + 1, s || hex(randomblob(64)) FROM r WHERE i < 100) SELECT s FROM r WHERE i = 100) WHERE ID = 5;
         UPDATE T SET NM = printf('%070d', 7) WHERE ID = 7;
         UPDATE T SET CODE = 'c8' WHERE ID = 9;",
    );
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, code text, big text, nm name,
            CONSTRAINT t_code_key UNIQUE (code) DEFERRABLE INITIALLY DEFERRED);
         CREATE INDEX t_big ON t (big);
         CREATE FUNCTION no_three() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN IF NEW.id = 3 THEN RAISE EXCEPTION 'row % is not welcome here', NEW.id; END IF; RETURN NEW; END $$;
         CREATE TRIGGER no_three BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION no_three();",
    );
    p.mapping(
        "t",
        &mapping(
            "T",
            "t",
            "",
            &[("ID", "id"), ("CODE", "code"), ("BIG", "big"), ("NM", "nm")],
        ),
    );
    p.run(&db, &["--yes", "--validate"]).expect(0);
    assert_eq!(db.scalar("SELECT count(*) FROM t"), 8);
    let r = reasons(&db, "t");
    assert_eq!(r.len(), 4, "{r:#?}");
    assert!(
        r.iter()
            .any(|x| x.starts_with("3 ") && x.contains("row 3 is not welcome here (SQLSTATE P0001)")),
        "{r:#?}"
    );
    assert!(
        r.iter().any(|x| x.starts_with("5 ") && x.contains("SQLSTATE 54000")),
        "{r:#?}"
    );
    assert!(
        r.iter()
            .any(|x| x.starts_with("7 nm: value is 70 bytes, longer than the 63 bytes a name column holds")),
        "{r:#?}"
    );
    assert!(
        r.iter()
            .any(|x| x.starts_with("9 code: duplicate key value violates unique constraint \"t_code_key\"")),
        "{r:#?}"
    );
}

#[test]
fn an_error_that_is_not_one_rows_stops_the_run_naming_the_entity_and_the_key() {
    let db = TestDb::new();
    let p = Project::new();
    p.sqlite(&format!(
        "CREATE TABLE T (ID INTEGER PRIMARY KEY, K TEXT, V TEXT); {}",
        rows_sql("T", 3000, "'k' || i")
    ));
    // From row 2,500 on, the target says its disk is full (SQLSTATE 53100): not a row's fault.
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, k text, v text);
         CREATE FUNCTION full_disk() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN IF NEW.id >= 2500 THEN RAISE EXCEPTION 'could not extend file' USING ERRCODE = '53100'; END IF; RETURN NEW; END $$;
         CREATE TRIGGER full_disk BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION full_disk();",
    );
    p.mapping("t", &mapping("T", "t", "", &[("ID", "id"), ("K", "k"), ("V", "v")]));
    let err = p.run(&db, &["--yes", "--batch-size", "1000"]).expect(1).stderr();
    assert!(
        err.contains("loading t: the batch after key 2000 failed for a reason that is not one row's"),
        "{err}"
    );
    assert!(err.contains("could not extend file"), "{err}");
    assert!(err.contains("--resume"), "{err}");
    assert_eq!(db.scalar("SELECT count(*) FROM t"), 2000);
    assert_eq!(db.scalar("SELECT count(*) FROM migrate.rejects"), 0);
    // Once the cause is gone, a resume finishes exactly.
    db.exec("DROP TRIGGER full_disk ON t");
    p.run(&db, &["--yes", "--resume", "--validate"]).expect(0);
    assert_eq!(db.scalar("SELECT count(*) FROM t"), 3000);
}

#[test]
fn a_table_locked_by_another_session_is_named_and_the_run_stops_after_lock_wait() {
    let db = TestDb::new();
    let p = Project::new();
    p.sqlite(&format!(
        "CREATE TABLE T (ID INTEGER PRIMARY KEY, K TEXT, V TEXT); {}",
        rows_sql("T", 100, "'k' || i")
    ));
    db.exec("CREATE TABLE t (id int PRIMARY KEY, k text, v text)");
    p.mapping("t", &mapping("T", "t", "", &[("ID", "id"), ("K", "k"), ("V", "v")]));
    // Another session holds the table (an open transaction that took LOCK TABLE).
    let url = db.url.clone();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        block(async move {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::raw_sql("BEGIN; LOCK TABLE t; SELECT 'reporting job'")
                .execute(&mut c)
                .await
                .unwrap();
            locked_tx.send(()).unwrap();
            let _ = release_rx.recv();
            sqlx::raw_sql("ROLLBACK").execute(&mut c).await.unwrap();
        })
    });
    locked_rx.recv().unwrap();
    let started = std::time::Instant::now();
    let out = p.run(&db, &["--yes", "--lock-wait", "5"]).expect(1);
    let took = started.elapsed().as_secs_f64();
    let err = out.stderr();
    assert!((4.0..30.0).contains(&took), "stopped after {took:.1}s: {err}");
    // Said while it waited, and again when it stopped: the table, the backend, its query.
    assert!(err.contains("t waits for a lock held by backend"), "{err}");
    assert!(err.contains("SELECT 'reporting job'"), "{err}");
    assert!(err.contains("the run stops after --lock-wait 5s"), "{err}");
    assert!(
        err.contains("stopped after waiting 5s (--lock-wait) for a lock: t waits for a lock held by backend"),
        "{err}"
    );
    assert!(err.contains("--resume"), "{err}");
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    p.run(&db, &["--yes", "--resume", "--validate"]).expect(0);
    assert_eq!(db.scalar("SELECT count(*) FROM t"), 100);
}

#[test]
fn defer_indexes_accepts_what_the_target_accepts_and_puts_back_what_it_took() {
    let (db, plain) = (TestDb::new(), TestDb::new());
    let p = Project::new();
    // A MATCH FULL foreign key on two columns: (1, NULL) breaks it, (NULL, NULL) does not.
    // The parent has 50,000 rows, so --defer-indexes builds its primary key after the load.
    p.sqlite(&format!(
        "CREATE TABLE P (ID INTEGER PRIMARY KEY, K INTEGER, V TEXT); {}
         CREATE TABLE C (ID INTEGER PRIMARY KEY, A INTEGER, B INTEGER, UP INTEGER);
         INSERT INTO C VALUES (1, 1, 1, NULL), (2, 1, NULL, 1), (3, NULL, NULL, 1), (4, NULL, 2, 3), (5, 7, 7, 1), (6, 9, 1, 1);",
        rows_sql("P", 50_000, "i")
    ));
    let ddl =
        "CREATE TABLE p (id int, k int, v text, CONSTRAINT p_pkey PRIMARY KEY (id), CONSTRAINT p_id_k UNIQUE (id, k));
         CREATE INDEX p_v ON p (v);
         CREATE TABLE c (id int PRIMARY KEY, a int, b int, up int,
            CONSTRAINT c_ab FOREIGN KEY (a, b) REFERENCES p (id, k) MATCH FULL,
            CONSTRAINT c_up FOREIGN KEY (up) REFERENCES c (id));
         COMMENT ON CONSTRAINT p_pkey ON p IS 'the key, ''quoted''';
         COMMENT ON INDEX p_pkey IS 'its index';
         COMMENT ON INDEX p_v IS 'for reports';
         COMMENT ON CONSTRAINT c_ab ON c IS 'full match';
         COMMENT ON CONSTRAINT c_up ON c IS 'tree';";
    db.exec(ddl);
    plain.exec(ddl);
    p.mapping("p", &mapping("P", "p", "", &[("ID", "id"), ("K", "k"), ("V", "v")]));
    p.mapping(
        "c",
        &mapping(
            "C",
            "c",
            "depends_on = [\"p\"]",
            &[("ID", "id"), ("A", "a"), ("B", "b"), ("UP", "up")],
        ),
    );
    let comments = "SELECT string_agg(d, ' | ' ORDER BY d) FROM (
        SELECT conname || ': ' || obj_description(oid, 'pg_constraint') AS d FROM pg_constraint
          WHERE obj_description(oid, 'pg_constraint') IS NOT NULL
        UNION ALL SELECT relname || ': ' || obj_description(oid, 'pg_class') FROM pg_class
          WHERE relkind = 'i' AND obj_description(oid, 'pg_class') IS NOT NULL) s";
    let before = db.rows(comments);
    let rejected = "SELECT row_key, reason FROM migrate.rejects ORDER BY row_key";
    let log = p
        .run(&db, &["--yes", "--defer-indexes", "--validate"])
        .expect(0)
        .stderr();
    assert!(
        log.contains("p: 0 foreign key(s), 1 index(es) and 2 primary/unique key(s) held"),
        "{log}"
    );
    assert!(log.contains("c: 1 foreign key(s), 0 index(es) and 0 primary/unique key(s) held for the load (--defer-indexes); rows are checked for their parents"), "{log}");
    p.run(
        &plain,
        &[
            "--yes",
            "--validate",
            "--checkpoint",
            p.file("plain.json").to_str().unwrap(),
        ],
    )
    .expect(0);
    // The same rows are refused as with the constraints in place, in the same words.
    assert_eq!(db.rows(rejected), plain.rows(rejected));
    let r = reasons(&db, "c");
    assert!(
        r.iter().any(|x| x.starts_with("2 a, b: ")
            && x.contains("MATCH FULL does not allow mixing of null and nonnull key values")),
        "{r:#?}"
    );
    assert!(r.iter().any(|x| x.starts_with("4 a, b: ")), "{r:#?}");
    assert!(
        r.iter()
            .any(|x| x.starts_with("6 a, b: ") && x.contains("Key (a, b)=(9, 1) is not present")),
        "{r:#?}"
    );
    assert_eq!(db.scalar("SELECT count(*) FROM c"), 3);
    // Every object is back, validated, with its comments.
    assert_eq!(
        db.scalar("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND NOT convalidated"),
        0
    );
    assert_eq!(db.scalar("SELECT count(*) FROM migrate.held_constraints"), 0);
    assert_eq!(db.rows(comments), before);
    assert!(before[0].to_string().contains("the key, 'quoted'"), "{before:?}");
}

#[test]
fn a_foreign_key_the_loaded_rows_break_fails_the_run_until_fixed() {
    let db = TestDb::new();
    let p = Project::new();
    p.sqlite(
        "CREATE TABLE P (ID INTEGER PRIMARY KEY); INSERT INTO P VALUES (1), (2), (3);
         CREATE TABLE C (ID INTEGER PRIMARY KEY, PID INTEGER); INSERT INTO C VALUES (1, 1), (2, 2), (3, 3);",
    );
    // Someone deletes parent 2 while its child loads (here: a trigger on the child table),
    // after the parent check has passed the row.
    db.exec(
        "CREATE TABLE p (id int PRIMARY KEY);
         CREATE TABLE c (id int PRIMARY KEY, pid int REFERENCES p (id));
         CREATE FUNCTION meddle() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN DELETE FROM p WHERE id = 2; RETURN NEW; END $$;
         CREATE TRIGGER meddle BEFORE INSERT ON c FOR EACH ROW EXECUTE FUNCTION meddle();",
    );
    p.mapping("p", &mapping("P", "p", "", &[("ID", "id")]));
    p.mapping(
        "c",
        &mapping("C", "c", "depends_on = [\"p\"]", &[("ID", "id"), ("PID", "pid")]),
    );
    let err = p.run(&db, &["--yes", "--defer-indexes"]).expect(1).stderr();
    assert!(
        err.contains("c: foreign key c_pid_fkey of public.c cannot be validated (it stays NOT VALID): 1 row(s) break it, e.g. (2)"),
        "{err}"
    );
    // A resume says so again while the row is broken, and passes once it is fixed.
    db.exec("DROP TRIGGER meddle ON c");
    p.run(&db, &["--yes", "--resume"]).expect(1);
    db.exec("INSERT INTO p VALUES (2)");
    p.run(&db, &["--yes", "--resume", "--validate"]).expect(0);
    assert_eq!(
        db.scalar("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND NOT convalidated"),
        0
    );
    assert_eq!(db.scalar("SELECT count(*) FROM migrate.held_constraints"), 0);
}

#[test]
fn the_demo_set_up_refuses_a_database_that_holds_anything_else() {
    let db = TestDb::new();
    let p = Project::new();
    // Another migration's state: its progress, and a key --defer-indexes took off its table.
    db.exec(
        "CREATE TABLE orders (id int);
         CREATE SCHEMA migrate;
         CREATE TABLE migrate.progress (entity text PRIMARY KEY, fingerprint text, target_table text, last_key jsonb,
           rows_read bigint, rows_loaded bigint, rows_rejected bigint, status text);
         INSERT INTO migrate.progress VALUES ('order', 'f', 'orders', NULL, 145000, 145000, 0, 'running');
         CREATE TABLE migrate.held_constraints (entity text, table_sql text, name text, definition text);
         INSERT INTO migrate.held_constraints VALUES ('order', 'orders', 'key orders_pkey', 'PRIMARY KEY (id)');",
    );
    let demo = |extra: &[&str]| {
        let mut args = vec![
            "demo",
            "--out",
            "legacy.db",
            "--scale",
            "0.01",
            "--create-target",
            "--force",
        ];
        args.extend_from_slice(extra);
        p.run(&db, &args)
    };
    let err = p
        .run(
            &db,
            &["demo", "--out", "legacy.db", "--scale", "0.01", "--create-target"],
        )
        .expect(2)
        .stderr();
    assert!(err.contains("refusing:"), "{err}");
    assert!(err.contains("table public.orders"), "{err}");
    assert!(
        err.contains("the progress of entity order in migrate.progress"),
        "{err}"
    );
    assert!(
        err.contains("1 key(s), index(es) or foreign key(s) held in migrate.held_constraints"),
        "{err}"
    );
    // --force asks; without a terminal to ask, it refuses too.
    let err = demo(&[]).expect(2).stderr();
    assert!(err.contains("stdin is not a terminal"), "{err}");
    assert_eq!(
        db.scalar("SELECT count(*) FROM migrate.progress WHERE entity = 'order'"),
        1
    );
    assert_eq!(db.scalar("SELECT count(*) FROM migrate.held_constraints"), 1);
    // The demo's own database (demo tables and demo state only) is fine, again and again.
    let own = TestDb::new();
    p.run(
        &own,
        &[
            "demo",
            "--out",
            "legacy.db",
            "--scale",
            "0.01",
            "--create-target",
            "--force",
        ],
    )
    .expect(0);
    demo_mappings(&p);
    p.run(&own, &["--yes"]).expect(0);
    p.run(
        &own,
        &[
            "demo",
            "--out",
            "legacy.db",
            "--scale",
            "0.01",
            "--create-target",
            "--force",
        ],
    )
    .expect(0);
    // The set-up script gives the demo its own database, whatever DATABASE_URL says.
    let script = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/setup_migration.sh")).unwrap();
    assert!(script.contains("DEMO_URL=${MIGRATE_DEMO_URL:-postgres://postgres@127.0.0.1:5432/migrate_demo}"));
    assert!(
        !script.contains("${DATABASE_URL"),
        "setup_migration.sh must not take DATABASE_URL"
    );
}
