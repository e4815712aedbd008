//! Trickle sync: a full load, then rounds of inserts, updates (moving the watermark, some of
//! them committed "late", inside the overlap window) and deletes in the source, each followed
//! by `migrate sync`, one of them killed mid-pass; the target must end equal to the source.

use crate::support::*;
use std::time::Duration;

const ITEM: &str = r#"
source = "ITEM"
target = "item"
key = ["ID"]
on_conflict = "update"
incremental = "LAST_MODIFIED"
deletes = "detect"
[[fields]]
from = "ID"
to = "id"
[[fields]]
from = "NAME"
to = "name"
transform = ["trim"]
[[fields]]
from = "QTY"
to = "qty"
[[fields]]
from = "LAST_MODIFIED"
to = "last_modified"
"#;

const NOTE: &str = r#"
source = "NOTE"
target = "note"
on_conflict = "update"
incremental = "VERSION"
deletes = "soft"
soft_delete_column = "is_deleted"
depends_on = ["item"]
[[fields]]
from = "NOTE_ID"
to = "id"
[[fields]]
from = "ITEM_ID"
to = "item_id"
[[fields]]
from = "BODY"
to = "body"
[[fields]]
to = "is_deleted"
value = false
"#;

/// The source clock: microseconds after 2026-01-01, written as SQLite text timestamps.
fn ts(micros: u64) -> String {
    let t = chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        + chrono::Duration::microseconds(micros as i64);
    t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

struct Source<'a> {
    p: &'a Project,
    rng: Rng,
    clock: u64,
    next_item: u64,
    next_note: u64,
    version: u64,
    /// The clock when the last sync pass started: the stored watermark.
    synced: u64,
}

impl Source<'_> {
    fn ids(&self, sql: &str) -> Vec<i64> {
        let c = rusqlite::Connection::open(self.p.file("legacy.db")).unwrap();
        let mut st = c.prepare(sql).unwrap();
        st.query_map([], |r| r.get::<_, i64>(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// Inserts, updates and deletes, one round's worth.
    fn mutate(&mut self) {
        let mut sql = String::from("BEGIN;");
        for _ in 0..(50 + self.rng.below(100)) {
            self.clock += 1 + self.rng.below(2_000_000);
            sql.push_str(&format!(
                "INSERT INTO ITEM VALUES ({}, ' new {} ', {}, '{}');",
                self.next_item,
                self.next_item,
                self.rng.below(1000),
                ts(self.clock)
            ));
            self.version += 1;
            sql.push_str(&format!(
                "INSERT INTO NOTE VALUES ({}, {}, 'note {}', {});",
                self.next_note, self.next_item, self.next_note, self.version
            ));
            self.next_item += 1;
            self.next_note += 1;
        }
        let items = self.ids("SELECT ID FROM ITEM");
        for _ in 0..(100 + self.rng.below(200)) {
            let id = items[self.rng.below(items.len() as u64) as usize];
            self.clock += 1 + self.rng.below(1_000_000);
            sql.push_str(&format!(
                "UPDATE ITEM SET QTY = QTY + 1, NAME = 'changed {}', LAST_MODIFIED = '{}' WHERE ID = {id};",
                self.rng.next() % 1000,
                ts(self.clock)
            ));
        }
        // A change committed late: its watermark is 2 s older than what the last pass stored,
        // inside the default 5 s overlap, so the next pass must still find it.
        let id = items[self.rng.below(items.len() as u64) as usize];
        sql.push_str(&format!(
            "UPDATE ITEM SET NAME = 'late {}', LAST_MODIFIED = '{}' WHERE ID = {id};",
            self.rng.next(),
            ts(self.synced.saturating_sub(2_000_000))
        ));
        for _ in 0..(5 + self.rng.below(20)) {
            let id = items[self.rng.below(items.len() as u64) as usize];
            sql.push_str(&format!(
                "DELETE FROM ITEM WHERE ID = {id}; DELETE FROM NOTE WHERE ITEM_ID = {id};"
            ));
        }
        let notes = self.ids("SELECT NOTE_ID FROM NOTE");
        for _ in 0..(20 + self.rng.below(40)) {
            let id = notes[self.rng.below(notes.len() as u64) as usize];
            self.version += 1;
            sql.push_str(&format!(
                "UPDATE NOTE SET BODY = BODY || '+', VERSION = {} WHERE NOTE_ID = {id};",
                self.version
            ));
        }
        sql.push_str("COMMIT;");
        self.p.sqlite(&sql);
    }
}

fn deep_ok(p: &Project, db: &TestDb) {
    let out = p.run(db, &["validate", "--deep"]);
    assert_eq!(
        out.code(),
        0,
        "validate --deep after sync\n{}\n{}",
        out.stdout(),
        out.stderr()
    );
}

#[test]
fn full_load_then_sync_rounds_with_a_kill_end_equal_to_the_source() {
    let rng = Rng::seeded("sync test");
    let db = TestDb::new();
    let p = Project::new();
    p.sqlite(
        "CREATE TABLE ITEM (ID INTEGER PRIMARY KEY, NAME TEXT, QTY INTEGER, LAST_MODIFIED TEXT);
         CREATE TABLE NOTE (NOTE_ID INTEGER PRIMARY KEY, ITEM_ID INTEGER, BODY TEXT, VERSION INTEGER);
         WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 20000)
         INSERT INTO ITEM SELECT i, 'item ' || i, i % 97, strftime('%Y-%m-%d %H:%M:%f', '2025-12-01', '+' || i || ' seconds') || '000' FROM c;
         INSERT INTO NOTE SELECT ID, ID, 'note ' || ID, ID FROM ITEM WHERE ID % 2 = 0;",
    );
    db.exec(
        "CREATE TABLE item (id int PRIMARY KEY, name text, qty int, last_modified text);
         CREATE TABLE note (id int PRIMARY KEY, item_id int, body text, is_deleted boolean NOT NULL DEFAULT false)",
    );
    p.mapping("item", ITEM);
    p.mapping("note", NOTE);
    p.run(&db, &["--yes"]).expect(0);
    // The starting watermark is the newest value before the load, exactly.
    assert_eq!(
        db.rows("SELECT watermark FROM migrate.sync_state WHERE entity = 'item'")[0]["watermark"],
        serde_json::json!("2025-12-01 05:33:20.000000")
    );

    let mut src = Source {
        p: &p,
        rng,
        clock: 40 * 86_400 * 1_000_000,
        next_item: 1_000_000,
        next_note: 1_000_000,
        version: 100_000,
        synced: 0,
    };
    let mut killed = false;
    for round in 0..6 {
        src.mutate();
        if round == 2 {
            // Killed in the middle of a pass: small batches, SIGKILL after some committed.
            let mut child = p
                .command(&db, &["sync", "--batch-size", "5"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let started = std::time::Instant::now();
            loop {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                let moved = db.scalar(
                    "SELECT count(*) FROM migrate.progress WHERE entity = 'item@sync' AND status = 'running' AND rows_read >= 20",
                );
                if moved > 0 {
                    child.kill().unwrap();
                    killed = true;
                    break;
                }
                assert!(started.elapsed() < Duration::from_secs(60), "the pass never got going");
                std::thread::sleep(Duration::from_millis(2));
            }
            child.wait().unwrap();
            if killed {
                assert_eq!(
                    db.scalar("SELECT count(*) FROM migrate.sync_state WHERE pass_id IS NOT NULL"),
                    1,
                    "the killed pass stays in flight"
                );
                let status = p.run(&db, &["status"]).expect(0);
                assert!(status.stdout().contains("in flight"), "{}", status.stdout());
            }
        }
        let out = p.run(&db, &["sync"]).expect(0);
        src.synced = src.clock;
        assert!(out.stderr().contains("sync pass"), "{}", out.stderr());
        deep_ok(&p, &db);
    }
    // Without an overlap window, the late change is skipped, and validate --deep sees it; a
    // wide window picks it up.
    src.mutate();
    p.run(&db, &["sync", "--overlap", "0"]).expect(0);
    let out = p.run(&db, &["validate", "--deep"]).expect(1);
    assert!(out.stdout().contains("late"), "{}", out.stdout());
    src.synced = src.clock;
    p.run(&db, &["sync", "--overlap", "86400"]).expect(0);
    deep_ok(&p, &db);
    assert!(killed, "the pass finished before it could be killed");
    // The kill is in the audit trail; the rest finished cleanly.
    assert!(db.scalar("SELECT count(*) FROM migrate.runs WHERE error LIKE 'did not finish%'") >= 1);
    assert_eq!(db.scalar("SELECT count(*) FROM migrate.runs WHERE finished IS NULL"), 0);
    assert!(db.scalar("SELECT sum(rows_deleted)::bigint FROM migrate.runs WHERE entity = 'item'") > 0);
    // Gone notes are flagged, not deleted; the rest are equal to the source.
    let flagged = db.scalar("SELECT count(*) FROM note WHERE is_deleted");
    assert!(flagged > 0);
    assert_eq!(
        db.scalar("SELECT count(*) FROM note WHERE NOT is_deleted") as usize,
        src.ids("SELECT NOTE_ID FROM NOTE").len()
    );
    // status --json: the stored watermark is the source's newest, exactly; no lag.
    let out = p.run(&db, &["status", "--json"]).expect(0);
    let st: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    let item = st.as_array().unwrap().iter().find(|e| e["entity"] == "item").unwrap();
    assert_eq!(item["mode"], "incremental");
    assert_eq!(item["watermark"], item["newest_in_source"]);
    assert_eq!(item["lag"], serde_json::json!(0.0));
    assert!(item["rows_upserted_by_sync"].as_i64().unwrap() > 0);
}

#[test]
fn two_syncs_at_once_are_refused_and_every_stops_cleanly() {
    let db = TestDb::new();
    let p = Project::new();
    p.sqlite(
        "CREATE TABLE ITEM (ID INTEGER PRIMARY KEY, NAME TEXT, QTY INTEGER, LAST_MODIFIED TEXT);
         INSERT INTO ITEM VALUES (1, 'a', 1, '2026-01-01 00:00:00.000001');",
    );
    db.exec("CREATE TABLE item (id int PRIMARY KEY, name text, qty int, last_modified text)");
    p.mapping("item", ITEM);
    // Before the full load, sync refuses and says why.
    let out = p.run(&db, &["sync"]).expect(2);
    assert!(
        out.stderr().contains("full load of item is not finished"),
        "{}",
        out.stderr()
    );
    p.run(&db, &["--yes"]).expect(0);
    let child = p
        .command(&db, &["sync", "--every", "1h"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while db.scalar("SELECT count(*) FROM migrate.runs WHERE finished IS NOT NULL") == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the first pass never finished"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = p.run(&db, &["sync", "--lock-wait", "0"]).expect(2);
    assert!(
        second.stderr().contains("two at once are refused"),
        "{}",
        second.stderr()
    );
    // SAFETY: SIGTERM to our own child.
    send_signal(child.id(), libc::SIGTERM);
    let out = Out(child.wait_with_output().unwrap()).expect(0);
    assert!(out.stderr().contains("stopped between passes"), "{}", out.stderr());
    // Mapping mistakes are caught before anything runs.
    p.mapping(
        "item",
        &ITEM.replace("on_conflict = \"update\"", "on_conflict = \"skip\""),
    );
    let bad = p.run(&db, &["sync"]).expect(2);
    assert!(
        bad.stderr()
            .contains("an 'incremental' entity cannot use on_conflict = \"skip\""),
        "{}",
        bad.stderr()
    );
}

#[test]
fn a_rejected_change_leaves_no_stale_version_and_gone_rejects_are_forgotten() {
    let db = TestDb::new();
    let p = Project::new();
    p.sqlite(
        "CREATE TABLE ITEM (ID INTEGER PRIMARY KEY, NAME TEXT, QTY INTEGER, LAST_MODIFIED TEXT);
         CREATE TABLE NOTE (NOTE_ID INTEGER PRIMARY KEY, ITEM_ID INTEGER, BODY TEXT, VERSION INTEGER);
         WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 10)
         INSERT INTO ITEM SELECT i, 'item ' || i, i, '2026-01-01 00:00:0' || (i - 1) || '.000001' FROM c;
         INSERT INTO NOTE VALUES (1, 1, 'on item 1', 1), (2, 2, 'on item 2', 2);",
    );
    db.exec(
        "CREATE TABLE item (id int PRIMARY KEY, name text, qty int CHECK (qty >= 0), last_modified text);
         CREATE TABLE note (id int PRIMARY KEY, item_id int REFERENCES item (id), body text, is_deleted boolean NOT NULL DEFAULT false)",
    );
    p.mapping("item", ITEM);
    p.mapping(
        "note",
        &NOTE
            .replace("deletes = \"soft\"", "deletes = \"detect\"")
            .replace("soft_delete_column = \"is_deleted\"\n", ""),
    );
    p.run(&db, &["--yes"]).expect(0);
    // Changes PostgreSQL refuses: item 5 and item 7 (nothing references them) and item 1
    // (note 1 references it) break the CHECK; note 2 now points at no item.
    p.sqlite(
        "UPDATE ITEM SET QTY = -1, LAST_MODIFIED = '2026-01-02 00:00:00.000001' WHERE ID IN (1, 5, 7);
         UPDATE NOTE SET ITEM_ID = 999, VERSION = 10 WHERE NOTE_ID = 2;",
    );
    p.run(&db, &["sync"]).expect(0);
    let reason = |entity: &str, key: i64| -> String {
        db.rows(&format!(
            r#"SELECT reason FROM migrate.rejects WHERE entity = '{entity}' AND key_json = '[{{"int": "{key}"}}]'::jsonb"#
        ))
        .first()
        .map(|r| r["reason"].as_str().unwrap().to_string())
        .unwrap_or_default()
    };
    // Refused rows stand only in the rejects: their earlier version left the target.
    assert_eq!(db.scalar("SELECT count(*) FROM item WHERE id IN (5, 7)"), 0);
    assert!(reason("item", 5).contains("check constraint"), "{}", reason("item", 5));
    assert!(reason("item", 5).contains("earlier version was deleted from the target"));
    assert_eq!(db.scalar("SELECT count(*) FROM note WHERE id = 2"), 0);
    assert!(reason("note", 2).contains("foreign key"), "{}", reason("note", 2));
    assert!(reason("note", 2).contains("earlier version was deleted"));
    // Item 1 cannot go (note 1 references it): it stays, the reject says so, and the deep
    // validation does not call the target equal.
    assert_eq!(db.scalar("SELECT qty::bigint FROM item WHERE id = 1"), 1);
    assert!(
        reason("item", 1).contains("the target keeps its earlier version"),
        "{}",
        reason("item", 1)
    );
    assert!(reason("item", 1).contains("note"), "{}", reason("item", 1));
    let out = p.run(&db, &["validate", "--deep"]).expect(1);
    assert!(out.stdout().contains("id=1"), "{}", out.stdout());

    // Item 1 is fixed at the source, item 7 deleted there: its reject goes with it.
    p.sqlite(
        "UPDATE ITEM SET QTY = 3, LAST_MODIFIED = '2026-01-03 00:00:00.000001' WHERE ID = 1;
         DELETE FROM ITEM WHERE ID = 7;",
    );
    let out = p.run(&db, &["sync"]).expect(0);
    assert!(
        out.stderr()
            .contains("1 reject(s) of rows gone from the source forgotten"),
        "{}",
        out.stderr()
    );
    assert_eq!(db.scalar("SELECT qty::bigint FROM item WHERE id = 1"), 3);
    assert_eq!(
        db.scalar("SELECT count(*) FROM migrate.rejects WHERE entity = 'item'"),
        1,
        "only item 5 is still rejected"
    );
    assert!(!reason("item", 5).is_empty());
    // 9 source items = 8 in the target + 1 rejected; 2 notes = 1 + 1.
    let out = p.run(&db, &["validate", "--deep"]);
    assert_eq!(out.code(), 0, "{}\n{}", out.stdout(), out.stderr());
}
