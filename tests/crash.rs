//! Crash safety: SIGKILL the real binary at random points of a ≥200k-row migration over 8
//! entities, at least 10 times, resuming each time, and compare the end state with a clean run:
//! same rows, same rejects, no duplicates.

use crate::support::*;
use std::time::{Duration, Instant};

#[test]
fn killed_runs_resume_to_exactly_the_clean_result() {
    // Clean reference run.
    let clean_db = TestDb::new();
    let clean = Project::new();
    demo(&clean, &clean_db, "2.1");
    clean.run(&clean_db, &["--yes", "--batch-size", "500"]).expect(0);
    let total: i64 = DEMO_TABLES
        .iter()
        .map(|(_, t)| clean_db.scalar(&format!("SELECT count(*) FROM {t}")))
        .sum::<i64>()
        + clean_db.scalar("SELECT count(*) FROM migrate.rejects");
    assert!(total >= 200_000, "only {total} rows in scope");

    // The same data, killed again and again.
    let db = TestDb::new();
    let p = Project::new();
    demo(&p, &db, "2.1");
    let mut kills = 0;
    // Random kill points (seed printed so a failure can be replayed).
    let mut rng = Rng::seeded("crash test");
    let mut delay = Duration::from_millis(400);
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "did not finish after {kills} kills"
        );
        let mut child = p
            .command(&db, &["--yes", "--resume", "--batch-size", "500", "-q"])
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        let mut finished = None;
        while t0.elapsed() < delay {
            if let Some(status) = child.try_wait().unwrap() {
                finished = Some(status);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        match finished {
            Some(status) => {
                assert!(status.success(), "resumed run failed: {status}");
                break;
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                // 150-700 ms into a run for the first 10 kills, then longer so it can finish.
                let extra = if kills >= 10 { 800 * (kills - 9) } else { 0 };
                delay = Duration::from_millis(150 + rng.below(550) + extra);
            }
        }
    }
    eprintln!("crash test: {total} rows in scope, {kills} SIGKILLs before the run finished");
    assert!(
        kills >= 10,
        "only {kills} kills happened; the run finished too quickly to test enough points"
    );

    for (entity, table) in DEMO_TABLES {
        assert_eq!(
            db.demo_digest(table),
            clean_db.demo_digest(table),
            "{table} differs from the clean run after {kills} kills"
        );
        let q = format!("SELECT count(*) FROM migrate.rejects WHERE entity = '{entity}'");
        assert_eq!(db.scalar(&q), clean_db.scalar(&q), "rejects of {entity}");
    }
    let rejects = "SELECT entity, row_key, reason FROM migrate.rejects ORDER BY entity, row_key";
    assert_eq!(db.rows(rejects), clean_db.rows(rejects), "no reject is lost or doubled");
    p.run(&db, &["validate"]).expect(0);
}
