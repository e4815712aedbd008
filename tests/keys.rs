//! Keys real legacy schemas have: composite and text keys across many batches, a table without
//! a primary key (read by row id; every duplicate arrives), reserved words and mixed-case names,
//! and on_conflict skip/update through the staging table.

use crate::support::*;

#[test]
fn composite_text_key_and_no_key_tables_load_completely() {
    let db = TestDb::new();
    let p = Project::new();
    let mut sql = String::from(
        "CREATE TABLE ORDER_LINE (\"ORDER\" TEXT, LINE_NO INTEGER, \"Item Name\" TEXT, PRIMARY KEY (\"ORDER\", LINE_NO));\nCREATE TABLE LOG_NOKEY (MSG TEXT, N INTEGER);\n",
    );
    for o in 0..37 {
        for l in 1..=9 {
            sql.push_str(&format!(
                "INSERT INTO ORDER_LINE VALUES ('O{o:03}', {l}, 'item {o}-{l}');\n"
            ));
        }
    }
    for i in 0..250 {
        sql.push_str(&format!("INSERT INTO LOG_NOKEY VALUES ('dup', {});\n", i % 3));
    }
    p.sqlite(&sql);
    db.exec("CREATE SCHEMA app; CREATE TABLE app.\"Order Line\" (\"order\" text, line integer, \"User Name\" text, PRIMARY KEY (\"order\", line)); CREATE TABLE log (msg text, n int)");
    p.mapping("order_line", "source = \"ORDER_LINE\"\ntarget = \"app.Order Line\"\n[[fields]]\nfrom = \"ORDER\"\nto = \"order\"\n[[fields]]\nfrom = \"LINE_NO\"\nto = \"line\"\n[[fields]]\nfrom = \"Item Name\"\nto = \"User Name\"\n");
    p.mapping("log", "source = \"LOG_NOKEY\"\ntarget = \"log\"\n[[fields]]\nfrom = \"MSG\"\nto = \"msg\"\n[[fields]]\nfrom = \"N\"\nto = \"n\"\n");
    p.run(&db, &["--yes", "--batch-size", "7", "--validate"]).expect(0);
    assert_eq!(db.scalar("SELECT count(*) FROM app.\"Order Line\""), 37 * 9);
    assert_eq!(
        db.scalar("SELECT count(DISTINCT (\"order\", line)) FROM app.\"Order Line\""),
        37 * 9
    );
    assert_eq!(db.scalar("SELECT count(*) FROM log"), 250);
    assert_eq!(db.scalar("SELECT count(*) FROM log WHERE n = 0"), 84);
    // The key positions reached are recorded: composite as two values, no-key as the row id.
    let prog = db.rows("SELECT entity, jsonb_array_length(last_key) AS k FROM migrate.progress ORDER BY entity");
    assert_eq!(
        prog,
        vec![
            serde_json::json!({"entity":"log","k":1}),
            serde_json::json!({"entity":"order_line","k":2})
        ]
    );
}

#[test]
fn on_conflict_skip_and_update_use_the_key() {
    let db = TestDb::new();
    let p = Project::new();
    p.sqlite("CREATE TABLE SRC (ID INTEGER PRIMARY KEY, NAME TEXT); INSERT INTO SRC VALUES (1,'new one'),(2,'new two'),(3,'new three');");
    db.exec(
        "CREATE TABLE kept (id int PRIMARY KEY, name text); INSERT INTO kept VALUES (2, 'old two');
             CREATE TABLE upd (id int PRIMARY KEY, name text); INSERT INTO upd VALUES (2, 'old two');",
    );
    let m = |target: &str, mode: &str| {
        format!(
            "source = \"SRC\"\ntarget = \"{target}\"\non_conflict = \"{mode}\"\n[[fields]]\nfrom = \"ID\"\nto = \"id\"\n[[fields]]\nfrom = \"NAME\"\nto = \"name\"\n"
        )
    };
    p.mapping("kept", &m("kept", "skip"));
    p.mapping("upd", &m("upd", "update"));
    p.run(&db, &["--yes"]).expect(0);
    let names = |t: &str| {
        db.rows(&format!("SELECT name FROM {t} ORDER BY id"))
            .into_iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names("kept"), ["new one", "old two", "new three"]);
    assert_eq!(names("upd"), ["new one", "new two", "new three"]);
}

#[test]
fn self_reference_to_later_rows_loads_and_the_foreign_key_comes_back_validated() {
    let db = TestDb::new();
    let p = Project::new();
    // Every employee's manager has a higher id, so parents always come in a later batch.
    p.sqlite(
        "CREATE TABLE EMP (ID INTEGER PRIMARY KEY, MANAGER_ID INTEGER);
              INSERT INTO EMP VALUES (1,5),(2,5),(3,6),(4,6),(5,7),(6,7),(7,NULL);",
    );
    db.exec("CREATE TABLE emp (id int PRIMARY KEY, manager_id int CONSTRAINT emp_manager_fk REFERENCES emp (id))");
    p.mapping("emp", "source = \"EMP\"\ntarget = \"emp\"\n[[fields]]\nfrom = \"ID\"\nto = \"id\"\n[[fields]]\nfrom = \"MANAGER_ID\"\nto = \"manager_id\"\n");
    p.run(&db, &["--yes", "--batch-size", "2", "--validate"]).expect(0);
    assert_eq!(db.scalar("SELECT count(*) FROM emp"), 7);
    assert_eq!(db.scalar("SELECT count(*) FROM migrate.rejects"), 0);
    assert_eq!(
        db.scalar("SELECT count(*) FROM pg_constraint WHERE conname = 'emp_manager_fk' AND convalidated"),
        1
    );
    assert_eq!(db.scalar("SELECT count(*) FROM migrate.held_constraints"), 0);
}
