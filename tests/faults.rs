//! Faults a real migration meets, injected for real: a second run against the same target, a
//! checkpoint file that cannot be written, a readable .env, Ctrl-C and SIGTERM, a killed target
//! connection, an outage past the retry budget, a source that becomes unreadable mid-run, and
//! what `ps` shows of a running migration.

use crate::support::*;
use std::time::Duration;

#[test]
fn a_second_run_against_the_same_target_is_refused() {
    let db = TestDb::new();
    let p = Project::new();
    demo(&p, &db, "0.32");
    let mut first = p.command(&db, &["--yes", "--batch-size", "20", "-q"]).spawn().unwrap();
    wait_for_loaded(&db, &mut first, 1);
    let second = p.run(&db, &["--yes", "--resume", "--lock-wait", "0"]);
    assert_eq!(second.code(), 2, "{}", second.stderr());
    assert!(
        second
            .stderr()
            .contains("another migrate run is writing to this target database (backend pid"),
        "{}",
        second.stderr()
    );
    assert!(first.wait().unwrap().success());
    // The lock went with the first run's connection; validation is read-only and needs none.
    p.run(&db, &["validate"]).expect(0);
}

#[test]
fn an_unwritable_checkpoint_file_stops_before_loading_and_resume_uses_the_database() {
    let db = TestDb::new();
    let p = Project::new();
    demo(&p, &db, "0.16");
    let out = p.run(&db, &["--yes", "--checkpoint", "no/such/dir/cp.json"]).expect(2);
    assert!(
        out.stderr().contains("writing checkpoint file no/such/dir/cp.json")
            && out.stderr().contains("migrate.progress stays the truth"),
        "{}",
        out.stderr()
    );
    assert_eq!(db.scalar("SELECT count(*) FROM migrate.progress"), 0);
    // Half a load, then the checkpoint file is lost: the database still knows where to resume.
    p.run(
        &db,
        &[
            "--yes", "--entity", "carrier", "--entity", "line", "--entity", "customer",
        ],
    )
    .expect(0);
    std::fs::remove_file(p.file("migration_checkpoint.json")).unwrap();
    p.run(&db, &["--yes", "--resume", "--validate"]).expect(0);
}

#[test]
fn a_readable_env_file_gets_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::new();
    let p = Project::new();
    std::fs::write(p.file(".env"), "ORACLE_PASSWORD=x\n").unwrap();
    std::fs::set_permissions(p.file(".env"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = p.run(&db, &["--help"]);
    assert!(
        out.stderr()
            .contains("warning: .env is readable by other users (mode 644)")
            && out.stderr().contains("chmod 600"),
        "{}",
        out.stderr()
    );
    std::fs::set_permissions(p.file(".env"), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(!p.run(&db, &["--help"]).stderr().contains("warning"));
}

/// Rows in the demo target tables, and rows loaded according to migrate.progress.
fn loaded_vs_progress(db: &TestDb) -> (i64, i64) {
    let in_tables: i64 = DEMO_TABLES
        .iter()
        .map(|(_, t)| db.scalar(&format!("SELECT count(*) FROM {t}")))
        .sum();
    (
        in_tables,
        db.scalar("SELECT coalesce(sum(rows_loaded), 0)::bigint FROM migrate.progress"),
    )
}

fn interrupt_then_resume(signals: &[i32], expected_code: i32) {
    let db = TestDb::new();
    let p = Project::new();
    demo(&p, &db, "0.32");
    let mut child = p
        .command(&db, &["--yes", "--batch-size", "20"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_loaded(&db, &mut child, 1);
    for s in signals {
        send_signal(child.id(), *s);
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = Out(child.wait_with_output().unwrap());
    assert_eq!(out.code(), expected_code, "{}", out.stderr());
    assert!(out.stderr().contains("--resume"), "{}", out.stderr());
    // Every committed batch is whole: what the tables hold is what the progress says.
    let (in_tables, in_progress) = loaded_vs_progress(&db);
    assert_eq!(in_tables, in_progress);
    assert!(in_tables > 0 && in_tables < 30_000, "{in_tables}");
    if signals.len() == 1 {
        // A summary of what is committed, read back from the target, after the stop.
        let stdout = out.stdout();
        let name = if signals[0] == libc::SIGTERM {
            "SIGTERM"
        } else {
            "SIGINT"
        };
        assert!(
            stdout.contains(&format!("stopped by {name} after")) && stdout.contains("committed in the target"),
            "{stdout}"
        );
        let summed: i64 = stdout
            .lines()
            .skip_while(|l| !l.starts_with("entity"))
            .skip(1)
            .take_while(|l| !l.starts_with("to continue"))
            .map(|l| l.split_whitespace().nth_back(1).unwrap().parse::<i64>().unwrap())
            .sum();
        assert_eq!(summed, in_progress, "{stdout}");
        assert!(
            stdout.contains("to continue: run the same command with --resume"),
            "{stdout}"
        );
    }
    p.run(&db, &["--yes", "--resume", "--validate"]).expect(0);
}

#[test]
fn sigterm_finishes_the_batch_in_flight_and_exits_143() {
    interrupt_then_resume(&[libc::SIGTERM], 143);
}

#[test]
fn ctrl_c_exits_130_and_a_second_one_stops_at_once_consistently() {
    interrupt_then_resume(&[libc::SIGINT], 130);
    interrupt_then_resume(&[libc::SIGINT, libc::SIGINT], 130);
}

#[test]
fn a_non_empty_target_is_refused_and_truncate_starts_over() {
    let db = TestDb::new();
    let p = Project::new();
    demo(&p, &db, "0.16");
    db.exec("INSERT INTO shipping_carrier (id, code, name) VALUES (999, 'X', 'left over')");
    let out = p.run(&db, &["--yes"]).expect(2);
    assert!(
        out.stderr().contains("shipping_carrier already hold rows")
            && out.stderr().contains("--truncate")
            && out.stderr().contains("on_conflict"),
        "{}",
        out.stderr()
    );
    assert_eq!(db.scalar("SELECT count(*) FROM shipping_carrier"), 1);
    p.run(&db, &["--yes", "--truncate", "--validate"]).expect(0);
    assert_eq!(db.scalar("SELECT count(*) FROM shipping_carrier WHERE id = 999"), 0);
    let rejects = db.scalar("SELECT count(*) FROM migrate.rejects");
    // A finished load needs --resume or --truncate; --truncate reloads everything exactly once.
    let out = p.run(&db, &["--yes"]).expect(2);
    assert!(out.stderr().contains("or --truncate to empty"), "{}", out.stderr());
    p.run(&db, &["--yes", "--truncate", "--validate"]).expect(0);
    assert_eq!(db.scalar("SELECT count(*) FROM migrate.rejects"), rejects);
    // Truncation without --yes and without a terminal is refused, and empties nothing.
    let out = p.run(&db, &["--truncate"]).expect(2);
    assert!(out.stderr().contains("pass --yes"), "{}", out.stderr());
    assert!(db.scalar("SELECT count(*) FROM shipping_carrier") > 0);
}

#[test]
fn a_target_connection_killed_mid_run_is_retried_and_nothing_is_lost_or_doubled() {
    let db = TestDb::new();
    let p = Project::new();
    demo(&p, &db, "0.32");
    let mut child = p
        .command(
            &db,
            &["--yes", "--batch-size", "20", "--retry-wait", "0.2", "--validate"],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_loaded(&db, &mut child, 1);
    let mut killed = 0;
    for _ in 0..3 {
        killed += db.kill_migrate_sessions();
        std::thread::sleep(Duration::from_millis(600));
    }
    let out = Out(child.wait_with_output().unwrap()).expect(0);
    assert!(killed >= 2, "only {killed} session(s) killed");
    assert!(out.stderr().contains("lost the target connection"), "{}", out.stderr());
    assert!(out.stderr().contains("reconnected to the target"), "{}", out.stderr());
    // --validate passed: source = loaded + rejected for every entity, and primary keys forbid doubles.
    assert!(out.stdout().contains("validation passed"), "{}", out.stdout());
    let (in_tables, in_progress) = loaded_vs_progress(&db);
    assert_eq!(in_tables, in_progress);
}

#[test]
fn an_outage_longer_than_the_retry_budget_exits_1_and_resume_finishes() {
    let db = TestDb::new();
    let p = Project::new();
    demo(&p, &db, "0.32");
    let mut child = p
        .command(
            &db,
            &["--yes", "--batch-size", "20", "--retries", "2", "--retry-wait", "0.1"],
        )
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_loaded(&db, &mut child, 1);
    db.admin_exec(&format!("ALTER DATABASE {} ALLOW_CONNECTIONS false", db.name));
    db.kill_migrate_sessions();
    let out = Out(child.wait_with_output().unwrap());
    db.admin_exec(&format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", db.name));
    assert_eq!(out.code(), 1, "{}", out.stderr());
    assert!(
        out.stderr().contains("unreachable after 2 reconnection attempt(s)") && out.stderr().contains("--resume"),
        "{}",
        out.stderr()
    );
    p.run(&db, &["--yes", "--resume", "--validate"]).expect(0);
}

#[test]
fn a_source_that_becomes_unreadable_mid_run_is_reopened_and_read_on_after_the_last_key() {
    let db = TestDb::new();
    let p = Project::new();
    p.sqlite(
        "CREATE TABLE BIG (ID INTEGER PRIMARY KEY, V TEXT);
         WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 200000)
         INSERT INTO BIG SELECT i, 'value ' || i FROM c;",
    );
    db.exec("CREATE TABLE big (id int PRIMARY KEY, v text)");
    p.mapping(
        "big",
        "source = \"BIG\"\ntarget = \"big\"\n[[fields]]\nfrom = \"ID\"\nto = \"id\"\n[[fields]]\nfrom = \"V\"\nto = \"v\"\n",
    );
    let mut run = p
        .command(
            &db,
            &[
                "--yes",
                "--batch-size",
                "500",
                "--cursor-rows",
                "2000",
                "--retry-wait",
                "0.5",
            ],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_loaded(&db, &mut run, 1);
    // Another process takes SQLite's exclusive lock for longer than the reader's 5 s busy
    // timeout: the reader's next query fails with "database is locked", like a dropped session.
    let c = rusqlite::Connection::open(p.file("legacy.db")).unwrap();
    c.busy_timeout(Duration::from_secs(60)).unwrap();
    c.execute_batch("BEGIN EXCLUSIVE").unwrap();
    std::thread::sleep(Duration::from_secs(8));
    c.execute_batch("COMMIT").unwrap();
    let out = Out(run.wait_with_output().unwrap()).expect(0);
    let err = out.stderr();
    assert!(err.contains("lost the source"), "{err}");
    assert!(err.contains("database is locked"), "{err}");
    assert_eq!(db.scalar("SELECT count(*) FROM big"), 200_000);
    assert_eq!(db.scalar("SELECT count(DISTINCT id) FROM big"), 200_000);
    assert_eq!(db.scalar("SELECT sum(id)::bigint FROM big"), 200_000 * 200_001 / 2);
    // The reconnection is in the report's retries, and the cursors were bounded.
    let log = std::fs::read_dir(p.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|f| f.extension().is_some_and(|x| x == "log"))
        .unwrap();
    let log = std::fs::read_to_string(log).unwrap();
    // (The first cursor may be the one the lock broke: any one closed at the bound will do.)
    assert!(log.contains(" closed after 2000 rows"), "{log}");
    p.run(&db, &["validate", "--deep"]).expect(0);
}

#[test]
fn a_running_migration_shows_no_password_in_ps_and_starts_no_child_processes() {
    let db = TestDb::new();
    let p = Project::new();
    demo(&p, &db, "0.32");
    let url = db.url.replacen("postgres@", "postgres:Sup3rS3cretPw@", 1);
    let mut run = p
        .command(&db, &["--yes", "--batch-size", "20", "-q"])
        .env("DATABASE_URL", &url)
        .spawn()
        .unwrap();
    wait_for_loaded(&db, &mut run, 1);
    let pid = run.id();
    // What `ps -ef` / `ps e` would show: the command line of the process and of any child.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let mut children = String::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let path = task.unwrap().path().join("children");
        children.push_str(&std::fs::read_to_string(path).unwrap_or_default());
    }
    let ps = std::process::Command::new("ps")
        .args(["-eo", "pid,ppid,args"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    run.wait().unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("Sup3rS3cretPw"));
    assert_eq!(children.trim(), "", "migrate started child processes");
    assert!(!ps.contains("Sup3rS3cretPw"), "{ps}");
}
