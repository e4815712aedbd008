//! `validate --deep`: the source through the mapping's transforms, compared row by row with the
//! target. It must catch a changed value, a deleted row, an extra row and a duplicated row in a
//! table without a key, and account for rejected rows instead of calling them missing.

use crate::support::*;

fn project(db: &TestDb) -> Project {
    let p = Project::new();
    let mut sql = String::from(
        "CREATE TABLE ITEM (ID INTEGER PRIMARY KEY, NAME TEXT, PRICE TEXT, MADE TEXT);\nCREATE TABLE LOG_NOKEY (MSG TEXT, N INTEGER);\n",
    );
    for i in 1..=3000 {
        // Row 777's name is too long for varchar(12): it is rejected, and must not count as missing.
        let name = if i == 777 {
            "a name far too long".to_string()
        } else {
            format!("  item {i} ")
        };
        sql.push_str(&format!(
            "INSERT INTO ITEM VALUES ({i}, '{name}', '{}.{:02}', '2024-01-{:02} 10:00:00.{:06}');\n",
            i % 500,
            i % 100,
            i % 28 + 1,
            i * 7
        ));
    }
    for i in 0..300 {
        sql.push_str(&format!("INSERT INTO LOG_NOKEY VALUES ('dup', {});\n", i % 3));
    }
    p.sqlite(&sql);
    db.exec(
        "CREATE TABLE item (id int PRIMARY KEY, name varchar(12), price numeric(9,3), made timestamp(6));
         CREATE TABLE log (msg char(5), n int)",
    );
    p.mapping(
        "item",
        "source = \"ITEM\"\ntarget = \"item\"\n[[fields]]\nfrom = \"ID\"\nto = \"id\"\n[[fields]]\nfrom = \"NAME\"\nto = \"name\"\ntransform = [\"trim\", \"upper\"]\n[[fields]]\nfrom = \"PRICE\"\nto = \"price\"\n[[fields]]\nfrom = \"MADE\"\nto = \"made\"\n",
    );
    p.mapping(
        "log",
        "source = \"LOG_NOKEY\"\ntarget = \"log\"\n[[fields]]\nfrom = \"MSG\"\nto = \"msg\"\n[[fields]]\nfrom = \"N\"\nto = \"n\"\n",
    );
    p
}

fn deep_of(report: &serde_json::Value, entity: &str) -> serde_json::Value {
    report["validation"]["deep"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["entity"] == entity)
        .cloned()
        .unwrap_or_else(|| panic!("no deep check for {entity} in {report}"))
}

#[test]
fn an_equal_target_passes_and_rejects_are_accounted_for() {
    let db = TestDb::new();
    let p = project(&db);
    let out = p
        .run(
            &db,
            &[
                "--yes",
                "--batch-size",
                "250",
                "--validate",
                "--deep",
                "--report",
                "r.json",
            ],
        )
        .expect(0);
    assert!(out.stdout().contains("deep validation"), "{}", out.stdout());
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(p.file("r.json")).unwrap()).unwrap();
    let item = deep_of(&r, "item");
    assert_eq!(item["source_rows"], 3000);
    assert_eq!(item["rejected"], 1);
    assert_eq!(item["target_rows"], 2999);
    assert_eq!(item["matching"], 2999);
    assert_eq!(item["ranges_differing"], 0);
    assert_eq!(item["ok"], true);
    let log = deep_of(&r, "log");
    assert_eq!(log["matching"], 300);
    assert_eq!(log["keyed"], false);
    // --deep belongs to --validate.
    let out = p.run(&db, &["--yes", "--deep"]).expect(2);
    assert!(out.stderr().contains("--validate"), "{}", out.stderr());
}

#[test]
fn a_changed_value_a_deleted_row_an_extra_row_and_a_duplicate_are_each_found() {
    let db = TestDb::new();
    let p = project(&db);
    p.run(&db, &["--yes"]).expect(0);
    // Delete one row and insert another: the row count stays the same, so only --deep sees it.
    db.exec(
        "UPDATE item SET price = price + 0.001 WHERE id = 17;
         UPDATE item SET made = made + interval '1 microsecond' WHERE id = 18;
         DELETE FROM item WHERE id = 2000;
         INSERT INTO item VALUES (99999, 'INTRUDER', 1, now());
         INSERT INTO log SELECT * FROM log WHERE n = 2 LIMIT 1;",
    );
    let out = p.run(&db, &["validate", "--deep", "--report", "r.json"]).expect(1);
    let text = out.stdout();
    assert!(
        text.contains("id=17 differs: price: source 17.17, target 17.171"),
        "{text}"
    );
    assert!(
        text.contains("id=18 differs: made: source 2024-01-19 10:00:00.000126, target 2024-01-19 10:00:00.000127"),
        "{text}"
    );
    assert!(text.contains("id=2000 is missing from the target"), "{text}");
    assert!(
        text.contains("id=99999 is in the target but not in the source"),
        "{text}"
    );
    assert!(
        text.contains("is 101× in the target but 100× in the source (duplicated)"),
        "{text}"
    );
    assert!(text.contains("validation FAILED"), "{text}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(p.file("r.json")).unwrap()).unwrap();
    let item = deep_of(&r, "item");
    assert_eq!(
        (&item["missing"], &item["extra"], &item["differing"], &item["matching"]),
        (&1.into(), &1.into(), &2.into(), &2996.into()),
        "{item}"
    );
    assert_eq!(item["differing_columns"], serde_json::json!({"made": 1, "price": 1}));
    // Only the ranges holding a difference were itemised.
    assert!(item["ranges_differing"].as_u64().unwrap() <= 4, "{item}");
    let log = deep_of(&r, "log");
    assert_eq!((&log["missing"], &log["extra"]), (&0.into(), &1.into()), "{log}");
    // The report's per-entity verdict follows.
    assert_eq!(r["ok"], false);
}
