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
