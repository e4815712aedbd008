//! `migrate scaffold` end to end on a SQLite source: the mappings and DDL it writes create the
//! target, load every row and pass validation, with foreign keys, composite and missing keys,
//! self references, reserved words and mixed-case names.

use crate::support::*;

#[test]
fn scaffolded_demo_loads_every_row_and_validates() {
    let db = TestDb::new();
    let p = Project::new();
    p.run(&db, &["demo", "--out", "legacy.db", "--scale", "0.2"]).expect(0);
    let out = p
        .run(&db, &["scaffold", "--out", "scaffolded", "--ddl", "target.sql"])
        .expect(0);
    assert!(
        out.stdout().contains("wrote 8 mapping(s) to scaffolded"),
        "{}",
        out.stdout()
    );
    db.exec(&std::fs::read_to_string(p.file("target.sql")).unwrap());
    let out = p
        .run(&db, &["--mappings", "scaffolded", "--yes", "--validate"])
        .expect(0);
    assert!(out.stdout().contains("validation passed"), "{}", out.stdout());
    assert_eq!(db.scalar("SELECT count(*) FROM ab_skid"), 1780);
    // CHAR padding is removed by the scaffolded rtrim, nothing else is touched.
    assert_eq!(db.scalar("SELECT count(*) FROM ab_coil WHERE coil_no LIKE '% '"), 0);
    assert_eq!(db.scalar("SELECT count(*) FROM ab_coil WHERE coil_no IS NULL"), 0);
}

#[test]
fn scaffold_follows_foreign_keys_and_quotes_names() {
    let db = TestDb::new();
    let p = Project::new();
    p.sqlite(
        "CREATE TABLE DEPT (DEPT_NO INTEGER, SITE CHAR(4), NAME VARCHAR2(30) NOT NULL, PRIMARY KEY (DEPT_NO, SITE));
         CREATE TABLE EMP (EMP_ID INTEGER PRIMARY KEY, MGR_ID INTEGER REFERENCES EMP(EMP_ID), DEPT_NO INTEGER, SITE CHAR(4),
                           \"ORDER\" NUMBER(12,2), \"User Name\" NVARCHAR2(40),
                           FOREIGN KEY (DEPT_NO, SITE) REFERENCES DEPT(DEPT_NO, SITE));
         CREATE TABLE EMP_LOG (EMP_ID INTEGER REFERENCES EMP, NOTE TEXT);
         INSERT INTO DEPT VALUES (1, 'NY', 'Sales'), (2, 'SF', 'Ops');
         INSERT INTO EMP VALUES (1, 3, 1, 'NY', 10.50, 'Ann'), (2, 1, 2, 'SF', NULL, 'Bob'), (3, NULL, 1, 'NY', 99999.99, 'Cy');
         INSERT INTO EMP_LOG VALUES (1, 'hired'), (1, 'hired'), (2, NULL);",
    );
    p.run(
        &db,
        &["scaffold", "--out", "m", "--ddl", "t.sql", "--target-schema", "hr"],
    )
    .expect(0);
    let emp = std::fs::read_to_string(p.file("m/emp.toml")).unwrap();
    assert!(emp.contains("key = [\"EMP_ID\"]\ndepends_on = [\"dept\"]\n"), "{emp}");
    assert!(emp.contains("from = \"User Name\"\nto = \"user name\""), "{emp}");
    let log = std::fs::read_to_string(p.file("m/emp_log.toml")).unwrap();
    assert!(
        log.contains("# No primary key") && log.contains("depends_on = [\"emp\"]"),
        "{log}"
    );
    let ddl = std::fs::read_to_string(p.file("t.sql")).unwrap();
    assert!(ddl.contains("\"order\" numeric(12,2)"), "{ddl}");
    db.exec(&ddl);
    p.run(&db, &["--mappings", "m", "--yes", "--validate", "--batch-size", "1"])
        .expect(0);
    assert_eq!(
        db.scalar("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND connamespace = 'hr'::regnamespace"),
        3
    );
    // The self reference to a later row (1 → 3) and the duplicate no-key rows arrive.
    assert_eq!(db.scalar("SELECT mgr_id FROM hr.emp WHERE emp_id = 1"), 3);
    assert_eq!(db.scalar("SELECT count(*) FROM hr.emp_log WHERE note = 'hired'"), 2);
    assert_eq!(db.scalar("SELECT count(*) FROM hr.dept WHERE site = 'NY'"), 1);
    assert_eq!(
        db.rows("SELECT \"order\"::text AS o FROM hr.emp WHERE emp_id = 3"),
        vec![serde_json::json!({"o": "99999.99"})]
    );
}

#[test]
fn scaffold_refuses_to_overwrite_and_names_the_files() {
    let db = TestDb::new();
    let p = Project::new();
    p.sqlite("CREATE TABLE T (ID INTEGER PRIMARY KEY);");
    p.run(&db, &["scaffold", "--out", "m"]).expect(0);
    let out = p.run(&db, &["scaffold", "--out", "m"]).expect(2);
    assert!(
        out.stderr().contains("refusing to overwrite") && out.stderr().contains("t.toml"),
        "{}",
        out.stderr()
    );
    p.run(&db, &["scaffold", "--out", "m", "--force"]).expect(0);
    let out = p.run(&db, &["scaffold", "--out", "m2", "--schema", "other"]).expect(1);
    assert!(out.stderr().contains("only the schema 'main'"), "{}", out.stderr());
}

#[test]
fn scaffold_with_profile_types_columns_from_their_values_and_the_load_has_no_rejects() {
    // Declarations that lie, as legacy SQLite databases have them.
    let p = Project::new();
    let mut rows = String::new();
    for i in 1..=300 {
        let created = format!(
            "{:02}-{}-{:02}",
            i % 28 + 1,
            ["JAN", "FEB", "Mar", "oct"][i % 4],
            90 + i % 10
        );
        let amount = if i % 7 == 0 {
            "''".to_string()
        } else {
            format!("'{}.{}'", i * 3, i % 10)
        };
        let flag = ["'Y'", "'N'", "'y'", "''"][i % 4];
        let code = format!("'{:05}'", i * 7);
        rows.push_str(&format!(
            "INSERT INTO T VALUES ({i}, '{created}', {amount}, {flag}, 'name {i}   ', {code}, '{}');\n",
            "x".repeat(i % 13)
        ));
    }
    p.sqlite(&format!(
        "CREATE TABLE T (ID INTEGER PRIMARY KEY, CREATED DATE, AMOUNT NUMBER(5), ACTIVE CHAR(1) NOT NULL,
           NAME VARCHAR2(4000), ZIP VARCHAR2(10), NOTE VARCHAR2(4000));\n{rows}"
    ));
    let load = |dir: &str, extra: &[&str]| -> (i64, i64, String) {
        let db = TestDb::new();
        let mut args = vec!["scaffold", "--out", dir, "--ddl"];
        let ddl_file = format!("{dir}.sql");
        args.push(&ddl_file);
        args.extend_from_slice(extra);
        p.run(&db, &args).expect(0);
        let ddl = std::fs::read_to_string(p.file(&ddl_file)).unwrap();
        db.exec(&ddl);
        let checkpoint = format!("{dir}.json");
        p.run(&db, &["--mappings", dir, "--checkpoint", &checkpoint, "--yes"]);
        (
            db.scalar("SELECT count(*) FROM t"),
            db.try_scalar("SELECT count(*) FROM migrate.rejects").unwrap_or(0),
            ddl,
        )
    };
    let (plain_rows, plain_rejects, _) = load("plain", &[]);
    let (rows, rejects, ddl) = load("profiled", &["--profile"]);
    eprintln!(
        "scaffold without --profile: {plain_rows} loaded, {plain_rejects} rejected; with --profile: {rows} loaded, {rejects} rejected"
    );
    assert!(
        plain_rejects > 100,
        "the lying declarations should reject without a profile: {plain_rejects}"
    );
    assert_eq!((rows, rejects), (300, 0), "{ddl}");
    for want in [
        "created date",
        "amount numeric(",
        "active boolean",
        "name varchar(20)",
        "zip varchar(",
        "note varchar(20)",
    ] {
        assert!(ddl.contains(want), "{want}: {ddl}");
    }
    let mapping = std::fs::read_to_string(p.file("profiled/t.toml")).unwrap();
    assert!(mapping.contains("transform = [{ date = \"DD-MON-YY\" }]"), "{mapping}");
    assert!(
        mapping.contains("transform = [\"null_if_empty\", \"bool\"]"),
        "{mapping}"
    );
    assert!(
        mapping.contains("transform = [\"rtrim\"]") && mapping.contains("leaves room"),
        "{mapping}"
    );
}

#[test]
fn profile_of_the_demo_source_finds_what_the_declarations_hide() {
    let db = TestDb::new();
    let p = Project::new();
    demo(&p, &db, "0.1");
    let out = p.run(&db, &["profile", "--out", "profile.csv"]).expect(0).stdout();
    assert!(out.contains("AB_CUSTOMER (123 rows)"), "{out}");
    let mut r = csv::Reader::from_path(p.file("profile.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    let get = |table: &str, column: &str, field: &str| -> String {
        let headers = csv::Reader::from_path(p.file("profile.csv"))
            .unwrap()
            .headers()
            .unwrap()
            .clone();
        let i = headers.iter().position(|h| h == field).unwrap();
        rows.iter()
            .find(|r| &r[0] == table && &r[1] == column)
            .unwrap_or_else(|| panic!("{table}.{column}"))[i]
            .to_string()
    };
    assert_eq!(get("AB_CUSTOMER", "CREATED", "date_masks"), "DD-MON-YY");
    assert_eq!(get("AB_CUSTOMER", "CREATED", "declared"), "VARCHAR2(9)");
    assert_eq!(get("AB_CUSTOMER", "ACTIVE_FLAG", "boolean_like"), "true");
    assert!(
        get("AB_CUSTOMER", "CUST_NAME", "trailing_blanks")
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert!(get("AB_CUSTOMER", "EMAIL", "empty").parse::<u64>().unwrap() > 0);
    assert_eq!(
        get("AB_CUSTOMER", "CUSTOMER_ID", "looks_like"),
        "integer (up to 3 digits)"
    );
    assert_eq!(get("AB_CUSTOMER", "CUSTOMER_ID", "distinct"), "123");
    // A sample reads the first rows only; JSON too.
    p.run(
        &db,
        &["profile", "--table", "AB_COIL", "--sample", "50", "--out", "coil.json"],
    )
    .expect(0);
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p.file("coil.json")).unwrap()).unwrap();
    assert!(
        json.as_array()
            .unwrap()
            .iter()
            .all(|c| c["table"] == "AB_COIL" && c["rows"] == 50),
        "{json}"
    );
    let err = p.run(&db, &["profile", "--table", "NOPE"]).expect(2).stderr();
    assert!(err.contains("no table to profile") && err.contains("--table"), "{err}");
}
