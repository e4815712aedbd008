//! Bad input gets a clear message and loses nothing: broken mappings (exit 2 with file:line),
//! cycles, missing tables and columns, values PostgreSQL cannot hold (rejected, the rest loads).

use crate::support::*;

const SIMPLE: &str = "source = \"SRC\"\ntarget = \"dst\"\n[[fields]]\nfrom = \"ID\"\nto = \"id\"\n[[fields]]\nfrom = \"NAME\"\nto = \"name\"\n";

fn simple_project(db: &TestDb) -> Project {
    let p = Project::new();
    p.sqlite("CREATE TABLE SRC (ID INTEGER PRIMARY KEY, NAME TEXT); INSERT INTO SRC VALUES (1,'a'),(2,'b');");
    db.exec("CREATE TABLE dst (id int PRIMARY KEY, name varchar(5))");
    p
}

#[test]
fn typo_in_mapping_keys_names_every_file_and_line() {
    let db = TestDb::new();
    let p = simple_project(&db);
    p.mapping(
        "customer",
        &SIMPLE.replace("to = \"name\"", "to = \"name\"\ntranform = [\"trim\"]"),
    );
    p.mapping(
        "other",
        "source = \"SRC\"\ntarget = \"dst\"\non_conflict = \"ignore\"\n[[fields]]\nfrom = \"ID\"\nto = \"id\"\n",
    );
    let out = p.run(&db, &["--yes"]).expect(2);
    let err = out.stderr();
    assert!(
        err.contains("customer.toml: line 9, column 1: unknown field 'tranform'"),
        "{err}"
    );
    assert!(err.contains("other.toml: line 3, column 15:"), "{err}");
    assert!(err.contains("2 problem(s) in the mappings"), "{err}");
    assert_eq!(out.stdout(), "", "errors go to stderr only");
    // Transform names are checked at load time too, with their position.
    std::fs::remove_file(p.file("mappings/other.toml")).unwrap();
    p.mapping(
        "customer",
        &SIMPLE.replace("to = \"name\"", "to = \"name\"\ntransform = [\"trim\", \"uper\"]"),
    );
    let err = p.run(&db, &["--check-only"]).expect(2).stderr();
    assert!(
        err.contains("customer.toml: line 9, column 22: field 'name': unknown transform 'uper'"),
        "{err}"
    );
}

#[test]
fn dependency_cycle_is_named() {
    let db = TestDb::new();
    let p = simple_project(&db);
    p.mapping(
        "a",
        &SIMPLE.replace("target = \"dst\"", "target = \"dst\"\ndepends_on = [\"b\"]"),
    );
    p.mapping(
        "b",
        &SIMPLE.replace("target = \"dst\"", "target = \"dst\"\ndepends_on = [\"a\"]"),
    );
    let err = p.run(&db, &["--check-only"]).expect(2).stderr();
    assert!(err.contains("dependency cycle: a → b → a"), "{err}");
}

#[test]
fn missing_source_table_and_target_column_are_listed_together() {
    let db = TestDb::new();
    let p = simple_project(&db);
    p.mapping("one", &SIMPLE.replace("SRC", "AB_NOPE"));
    p.mapping("two", &SIMPLE.replace("to = \"name\"", "to = \"full_name\""));
    for args in [&["--check-only"][..], &["--yes"][..]] {
        let err = p.run(&db, args).expect(2).stderr();
        assert!(err.contains("one: source table AB_NOPE does not exist"), "{err}");
        assert!(
            err.contains("two: field 'full_name': target column dst.full_name does not exist"),
            "{err}"
        );
    }
    assert_eq!(db.scalar("SELECT count(*) FROM dst"), 0);
}

#[test]
fn values_postgres_cannot_hold_are_rejected_and_the_rest_loads() {
    let db = TestDb::new();
    let p = Project::new();
    p.sqlite("CREATE TABLE SRC (ID INTEGER PRIMARY KEY, NAME TEXT);
              INSERT INTO SRC VALUES (1,'ok'),(2,'much too long'),(3, 'nul' || char(0) || 'byte'),(4,'fine'),(5, CAST(X'FF41' AS TEXT)),(6,'dup');");
    db.exec("CREATE TABLE dst (id int PRIMARY KEY, name varchar(5) CHECK (name <> 'dup'))");
    p.mapping("thing", SIMPLE);
    p.run(&db, &["--yes", "--validate"]).expect(0);
    assert_eq!(
        db.rows("SELECT id FROM dst ORDER BY id"),
        vec![serde_json::json!({"id":1}), serde_json::json!({"id":4})]
    );
    let r = db.rows("SELECT row_key, column_name, reason, source_values FROM migrate.rejects ORDER BY row_key");
    assert_eq!(r.len(), 4, "{r:#?}");
    assert_eq!(r[0]["row_key"], "2");
    assert_eq!(r[0]["column_name"], "name");
    assert!(
        r[0]["reason"]
            .as_str()
            .unwrap()
            .contains("13 characters, longer than varchar(5)"),
        "{r:?}"
    );
    assert_eq!(r[0]["source_values"]["NAME"], "much too long");
    assert_eq!(r[1]["row_key"], "3");
    assert!(r[1]["reason"].as_str().unwrap().contains("NUL byte"), "{r:?}");
    assert_eq!(r[1]["source_values"]["NAME"]["text_hex"], "6e756c0062797465");
    assert_eq!(r[2]["row_key"], "5");
    assert!(r[2]["reason"].as_str().unwrap().contains("not valid UTF-8"), "{r:?}");
    // A server-side constraint (CHECK) is found by splitting the batch.
    assert_eq!(r[3]["row_key"], "6");
    assert!(r[3]["reason"].as_str().unwrap().contains("check constraint"), "{r:?}");
}

#[test]
fn rows_without_a_parent_are_found_at_once_and_other_refusals_still_isolated() {
    let db = TestDb::new();
    let p = Project::new();
    let mut sql = String::from(
        "CREATE TABLE PARENT (ID INTEGER PRIMARY KEY);\nCREATE TABLE CHILD (ID INTEGER PRIMARY KEY, PARENT_ID INTEGER, QTY INTEGER);\n",
    );
    for i in 1..=10 {
        sql.push_str(&format!("INSERT INTO PARENT VALUES ({i});\n"));
    }
    let mut orphans = 0;
    let mut negative = 0;
    for i in 1..=600 {
        // Every 7th row has no parent, every 50th breaks a CHECK, row 350 does both.
        let parent = if i % 7 == 0 { 90 + i % 5 } else { i % 10 + 1 };
        let qty = if i % 50 == 0 { -1 } else { i };
        if i % 7 == 0 {
            orphans += 1;
        } else if qty < 0 {
            negative += 1;
        }
        sql.push_str(&format!("INSERT INTO CHILD VALUES ({i}, {parent}, {qty});\n"));
    }
    p.sqlite(&sql);
    db.exec(
        "CREATE TABLE parent (id int PRIMARY KEY);
         CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent (id), qty int CHECK (qty >= 0))",
    );
    p.mapping(
        "parent",
        "source = \"PARENT\"\ntarget = \"parent\"\n[[fields]]\nfrom = \"ID\"\nto = \"id\"\n",
    );
    p.mapping(
        "child",
        "source = \"CHILD\"\ntarget = \"child\"\ndepends_on = [\"parent\"]\n[[fields]]\nfrom = \"ID\"\nto = \"id\"\n[[fields]]\nfrom = \"PARENT_ID\"\nto = \"parent_id\"\n[[fields]]\nfrom = \"QTY\"\nto = \"qty\"\n",
    );
    p.run(&db, &["--yes", "--batch-size", "100", "--validate"]).expect(0);
    assert_eq!(db.scalar("SELECT count(*) FROM child"), 600 - orphans - negative);
    assert_eq!(
        db.scalar("SELECT count(*) FROM migrate.rejects WHERE entity = 'child' AND column_name = 'parent_id'"),
        orphans
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM migrate.rejects WHERE entity = 'child' AND reason LIKE '%check constraint%'"),
        negative
    );
    let reason = db.rows("SELECT reason FROM migrate.rejects WHERE row_key = '7'")[0]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        reason,
        "insert or update on table \"child\" violates foreign key constraint \"child_parent_id_fkey\": Key (parent_id)=(92) is not present in table \"parent\". (SQLSTATE 23503)"
    );
}

#[test]
fn phone_numbers_of_a_region_load_as_e164_and_invalid_ones_are_rejects_naming_the_column() {
    let db = TestDb::new();
    let p = Project::new();
    p.sqlite(
        "CREATE TABLE CUST (ID INTEGER PRIMARY KEY, PHONE TEXT);
         INSERT INTO CUST VALUES (1,'020 7946 0958'),(2,'+1 (202) 456-1111'),(3,'0049 30 901820'),
           (4,'020 7946'),(5,'555-0100'),(6,NULL),(7,'  '),(8,'07911 123456');",
    );
    db.exec("CREATE TABLE cust (id int PRIMARY KEY, phone text)");
    p.mapping(
        "cust",
        "source = \"CUST\"\ntarget = \"cust\"\n[[fields]]\nfrom = \"ID\"\nto = \"id\"\n[[fields]]\nfrom = \"PHONE\"\nto = \"phone\"\ntransform = [{ phone = \"GB\" }]\n",
    );
    p.run(&db, &["--yes", "--validate"]).expect(0);
    let got = db.rows("SELECT id, phone FROM cust ORDER BY id");
    let phones: Vec<String> = got
        .iter()
        .map(|r| r["phone"].as_str().unwrap_or("NULL").to_string())
        .collect();
    assert_eq!(
        phones,
        [
            "+442079460958",
            "+12024561111",
            "+4930901820",
            "NULL",
            "NULL",
            "+447911123456"
        ],
        "{got:?}"
    );
    let rejects = db.rows("SELECT row_key, column_name, reason FROM migrate.rejects ORDER BY row_key");
    assert_eq!(rejects.len(), 2, "{rejects:?}");
    for r in &rejects {
        assert_eq!(r["column_name"], "phone", "{r:?}");
        assert!(r["reason"].as_str().unwrap().contains("phone number in GB"), "{r:?}");
    }
    // A region libphonenumber does not know is a mapping error with its file.
    p.mapping(
        "cust",
        "source = \"CUST\"\ntarget = \"cust\"\n[[fields]]\nfrom = \"ID\"\nto = \"id\"\n[[fields]]\nfrom = \"PHONE\"\nto = \"phone\"\ntransform = [{ phone = \"UK\" }]\n",
    );
    let err = p.run(&db, &["--check-only"]).expect(2).stderr();
    assert!(
        err.contains("cust.toml") && err.contains("'UK' is not a region"),
        "{err}"
    );
}
