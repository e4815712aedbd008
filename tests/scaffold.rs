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
