//! The demo migration end to end, and what --dry-run and --check-only leave behind (nothing).

use crate::support::*;

#[test]
fn demo_migration_loads_every_row_or_rejects_it() {
    let db = TestDb::new();
    let p = Project::new();
    demo(&p, &db, "0.2");
    let clock = std::time::Instant::now();
    let out = p
        .run(&db, &["--yes", "--validate", "--report", "report.json"])
        .expect(0);
    let elapsed = clock.elapsed().as_secs_f64();
    assert!(out.stdout().contains("validation passed"), "{}", out.stdout());
    // The total is the run's wall time, not the sum of entities that loaded side by side.
    let total = out
        .stdout()
        .lines()
        .find(|l| l.starts_with("total (wall time)"))
        .unwrap()
        .to_string();
    let wall: f64 = total.split_whitespace().nth_back(1).unwrap().parse().unwrap();
    assert!(wall > 0.0 && wall <= elapsed, "{total} vs {elapsed}");

    // Per entity: target rows = source rows in scope - rejects, and the report says the same.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.file("report.json")).unwrap()).unwrap();
    assert_eq!(report["ok"], true);
    for (entity, table) in DEMO_TABLES {
        let e = report["entities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["entity"] == entity)
            .unwrap();
        let target = db.scalar(&format!("SELECT count(*) FROM {table}"));
        let rejects = db.scalar(&format!(
            "SELECT count(*) FROM migrate.rejects WHERE entity = '{entity}'"
        ));
        assert_eq!(e["source_rows"].as_i64().unwrap(), target + rejects, "{entity}");
        assert_eq!(e["loaded"].as_i64().unwrap(), target, "{entity}");
        assert_eq!(e["rejected"].as_i64().unwrap(), rejects, "{entity}");
        assert_eq!(e["validation"], "ok", "{entity}");
        assert_eq!(e["retries"], 0, "{entity}");
        assert!(e["seconds"].as_f64().unwrap() >= 0.0, "{entity}");
        let skipped = if entity == "customer" { 6 } else { 0 };
        assert_eq!(e["skipped_by_where"], skipped, "{entity}");
        assert!(target > 0, "{entity}");
    }
    // Customers marked deleted stay behind ('where'): 247 rows, every 37th deleted.
    assert_eq!(
        db.scalar("SELECT count(*) FROM customers_customer")
            + db.scalar("SELECT count(*) FROM migrate.rejects WHERE entity='customer'"),
        241
    );

    // Transformed values.
    assert_eq!(
        db.scalar("SELECT count(*) FROM customers_customer WHERE phone !~ '^\\+1[0-9]{10}$'"),
        0
    );
    assert!(
        db.scalar("SELECT count(*) FROM customers_customer WHERE phone IS NULL") > 0,
        "empty phones become NULL"
    );
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM customers_customer WHERE email <> lower(email) OR email ~ '\\s' OR email !~ '@'"
        ),
        0
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM customers_customer WHERE name <> upper(name) OR name <> btrim(name)"),
        0
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM customers_customer WHERE created_at NOT BETWEEN '1988-01-01' AND '2024-12-31'"),
        0
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM customers_customer WHERE country NOT IN ('US', 'CA')"),
        0
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM shipping_carrier WHERE NOT is_active"),
        1,
        "id 5 is 'N'"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM shipping_carrier WHERE code <> btrim(code) OR scac <> upper(scac)"),
        0
    );
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM production_job WHERE status NOT IN ('scheduled','running','complete','on_hold','cancelled')"
        ),
        0
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM production_job WHERE (status = 'complete') <> (finished_at IS NOT NULL)"),
        0
    );
    // Each credit limit equals its source text, rounded to 2 places; blank ones are NULL.
    let src = source_rows(
        &p,
        "SELECT CUSTOMER_ID, CREDIT_LIMIT FROM AB_CUSTOMER WHERE STATUS <> 'D' AND CUSTOMER_ID <> 211 ORDER BY 1",
    );
    let tgt = db.rows("SELECT id, credit_limit::text AS c FROM customers_customer ORDER BY id");
    assert_eq!(src.len(), tgt.len());
    for ((id, raw), row) in src.iter().zip(&tgt) {
        assert_eq!(row["id"].as_i64().unwrap().to_string(), *id);
        let want = raw.trim();
        match row["c"].as_str() {
            None => assert!(want.is_empty(), "customer {id}: {raw:?} became NULL"),
            Some(got) => {
                let (i, f) = want.split_once('.').unwrap_or((want, ""));
                let f2 = format!("{f:0<2}");
                // The demo's values have at most 2 significant decimals.
                assert_eq!(got, format!("{i}.{}", &f2[..2]), "customer {id}: {raw:?}");
            }
        }
    }
    // The bad e-mail and the over-precise gauge are rejected with their reasons and columns.
    let r = db.rows("SELECT row_key, column_name, reason, source_values->>'EMAIL' AS email FROM migrate.rejects WHERE entity = 'customer'");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["row_key"], "211");
    assert_eq!(r[0]["column_name"], "email");
    assert_eq!(r[0]["email"], "n/a");
    assert!(r[0]["reason"].as_str().unwrap().contains("not an e-mail address"));
    let t =
        db.rows("SELECT column_name, reason FROM migrate.rejects WHERE entity = 'coil' AND column_name = 'gauge_mm'");
    assert!(
        !t.is_empty() && t[0]["reason"].as_str().unwrap().contains("5 decimal places"),
        "{t:?}"
    );
    // Children of the rejected customer are rejected by the foreign key, naming the column.
    let fk = db
        .rows("SELECT column_name, reason FROM migrate.rejects WHERE entity = 'coil' AND reason LIKE '%foreign key%'");
    assert!(!fk.is_empty());
    assert!(fk.iter().all(|r| r["column_name"] == "customer_id"), "{fk:?}");

    // The checkpoint mirror says done for every entity; a log file was written.
    let cp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.file("migration_checkpoint.json")).unwrap()).unwrap();
    for (entity, _) in DEMO_TABLES {
        assert_eq!(cp["entities"][entity]["status"], "done", "{entity}");
    }
    assert_eq!(log_files(p.path()).len(), 1);

    // `migrate validate` agrees afterwards, and a second plain run refuses to load twice.
    p.run(&db, &["validate"]).expect(0);
    // --check-only says, before anyone tries, that a plain run would refuse this target.
    let check = p.run(&db, &["--check-only"]).expect(0).stdout();
    assert!(
        check.contains("a plain run (without --resume or --truncate) would refuse")
            && check.contains("entity customer already has progress"),
        "{check}"
    );
    let again = p.run(&db, &["--yes"]).expect(2);
    assert!(
        again.stderr().contains("already has progress") && again.stderr().contains("--resume"),
        "{}",
        again.stderr()
    );
    // --resume on a finished migration loads nothing more.
    p.run(&db, &["--yes", "--resume"]).expect(0);
    assert_eq!(db.scalar("SELECT count(*) FROM customers_customer"), 240);
}

fn source_rows(p: &Project, sql: &str) -> Vec<(String, String)> {
    let c = rusqlite::Connection::open(p.file("legacy.db")).unwrap();
    let mut st = c.prepare(sql).unwrap();
    st.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?.to_string(),
            r.get::<_, Option<String>>(1)?.unwrap_or_default(),
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[test]
fn dry_run_writes_nothing_and_reports_rejects() {
    let db = TestDb::new();
    let p = Project::new();
    demo(&p, &db, "0.2");
    let out = p.run(&db, &["--dry-run"]).expect(0);
    let stdout = out.stdout();
    assert!(stdout.contains("dry run: nothing was written"), "{stdout}");
    let header = stdout.lines().next().unwrap();
    assert!(header.contains("would load") && !header.contains(" loaded"), "{stdout}");
    assert!(
        stdout.contains("customer key 211: column email: transform failed: 'n/a' is not an e-mail address"),
        "{stdout}"
    );
    for (_, table) in DEMO_TABLES {
        assert_eq!(db.scalar(&format!("SELECT count(*) FROM {table}")), 0, "{table}");
    }
    assert_eq!(
        db.scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'migrate'"),
        0
    );
    assert!(!p.file("migration_checkpoint.json").exists());
}

#[test]
fn check_only_passes_on_the_demo_and_writes_nothing() {
    let db = TestDb::new();
    let p = Project::new();
    demo(&p, &db, "0.05");
    let out = p.run(&db, &["--check-only"]).expect(0);
    assert!(
        out.stdout().contains("all checks passed for 8 entities"),
        "{}",
        out.stdout()
    );
    assert!(out.stdout().contains("AB_CUSTOMER"));
    assert_eq!(
        db.scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'migrate'"),
        0
    );
}

#[test]
fn entities_loaded_side_by_side_end_exactly_as_one_at_a_time() {
    let (db1, db4) = (TestDb::new(), TestDb::new());
    let (p1, p4) = (Project::new(), Project::new());
    demo(&p1, &db1, "0.32");
    demo(&p4, &db4, "0.32");
    p1.run(&db1, &["--yes", "--jobs", "1", "--batch-size", "97"]).expect(0);
    let out = p4
        .run(&db4, &["--yes", "--jobs", "4", "--batch-size", "97", "--validate"])
        .expect(0);
    assert!(out.stdout().contains("validation passed"), "{}", out.stdout());
    for (_, table) in DEMO_TABLES {
        assert_eq!(db1.demo_digest(table), db4.demo_digest(table), "{table}");
    }
    let rejects = "(SELECT entity, row_key, reason, column_name FROM migrate.rejects)";
    assert_eq!(
        db1.digest(rejects, "entity, row_key, reason"),
        db4.digest(rejects, "entity, row_key, reason")
    );
    // Side by side with --defer-indexes: parents at the same level hold keys and a shared
    // child's foreign keys at once; the end state is the same, every object back.
    let (dbd, pd) = (TestDb::new(), Project::new());
    demo(&pd, &dbd, "0.32");
    let before = schema_objects(&dbd);
    pd.run(
        &dbd,
        &[
            "--yes",
            "--jobs",
            "4",
            "--batch-size",
            "97",
            "--defer-indexes",
            "--validate",
        ],
    )
    .expect(0);
    assert_eq!(schema_objects(&dbd), before);
    for (_, table) in DEMO_TABLES {
        assert_eq!(db1.demo_digest(table), dbd.demo_digest(table), "{table}");
    }
    assert_eq!(
        db1.digest(rejects, "entity, row_key, reason"),
        dbd.digest(rejects, "entity, row_key, reason")
    );
    p1.run(&db1, &["--yes", "--jobs", "0"]).expect(2);
}

#[test]
fn independent_entities_really_load_at_the_same_time() {
    let db = TestDb::new();
    let p = Project::new();
    p.sqlite(
        "CREATE TABLE A (ID INTEGER PRIMARY KEY, V TEXT); CREATE TABLE B (ID INTEGER PRIMARY KEY, V TEXT);
         WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 60000)
         INSERT INTO A SELECT i, 'a' || i FROM c;
         INSERT INTO B SELECT ID, 'b' || ID FROM A;",
    );
    db.exec("CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE b (id int PRIMARY KEY, v text)");
    for t in ["a", "b"] {
        p.mapping(
            t,
            &format!(
                "source = \"{}\"\ntarget = \"{t}\"\n[[fields]]\nfrom = \"ID\"\nto = \"id\"\n[[fields]]\nfrom = \"V\"\nto = \"v\"\n",
                t.to_uppercase()
            ),
        );
    }
    let mut child = p
        .command(&db, &["--yes", "--jobs", "2", "--batch-size", "50"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Both entities' progress rows move while the run is on.
    let mut both = false;
    while child.try_wait().unwrap().is_none() {
        let moving =
            db.scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'migrate' AND tablename = 'progress'") == 1
                && db.scalar("SELECT count(*) FROM migrate.progress WHERE rows_read > 0 AND status <> 'done'") == 2;
        both |= moving;
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Out(child.wait_with_output().unwrap()).expect(0);
    assert!(both, "the two entities never loaded at the same time with --jobs 2");
    assert_eq!(
        db.scalar("SELECT count(*) FROM a") + db.scalar("SELECT count(*) FROM b"),
        120_000
    );
}

/// Foreign keys and secondary indexes of the demo target, as (table, definition), sorted.
fn schema_objects(db: &TestDb) -> String {
    db.digest(
        "(SELECT conrelid::regclass::text AS t, pg_get_constraintdef(oid) AS d, convalidated::text AS v
          FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace
          UNION ALL SELECT tablename, indexdef, '' FROM pg_indexes WHERE schemaname = 'public')",
        "t, d",
    )
}

#[test]
fn deferred_indexes_end_exactly_as_a_plain_load_and_survive_a_kill() {
    let (plain, deferred) = (TestDb::new(), TestDb::new());
    let (pp, pd) = (Project::new(), Project::new());
    demo(&pp, &plain, "0.65");
    demo(&pd, &deferred, "0.65");
    let before = schema_objects(&deferred);
    let fks = "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace";
    assert!(deferred.scalar(fks) >= 7);
    pp.run(&plain, &["--yes", "--batch-size", "200"]).expect(0);

    // Killed in the middle: what was held is recorded, and gone from the tables.
    let mut child = pd
        .command(
            &deferred,
            &["--yes", "--defer-indexes", "--jobs", "1", "--batch-size", "200"],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let held = "SELECT count(*) FROM migrate.held_constraints";
    let mut seen_held = 0;
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() && started.elapsed().as_secs() < 60 {
        let ready = deferred
            .scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'migrate' AND tablename = 'held_constraints'")
            == 1;
        if ready && deferred.scalar(&format!("{held} WHERE name LIKE 'index %'")) > 0 {
            seen_held = deferred.scalar(held);
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.wait().unwrap();
    assert!(seen_held > 0, "never saw an index held during the load");
    assert_ne!(schema_objects(&deferred), before, "nothing was dropped for the load");

    // The resume puts everything back, validated, and the data equals the plain load's.
    let out = pd
        .run(&deferred, &["--yes", "--resume", "--defer-indexes", "--validate"])
        .expect(0);
    assert!(out.stderr().contains("re-created"), "{}", out.stderr());
    assert!(out.stdout().contains("re-created and validated in"), "{}", out.stdout());
    assert_eq!(deferred.scalar(held), 0);
    assert_eq!(schema_objects(&deferred), before);
    assert_eq!(
        deferred.scalar(&format!("{fks} AND NOT convalidated")),
        0,
        "every foreign key is back and validated"
    );
    for (_, table) in DEMO_TABLES {
        assert_eq!(plain.demo_digest(table), deferred.demo_digest(table), "{table}");
    }
    // Rows without a parent were rejected by the per-batch check, in PostgreSQL's words.
    let rejects = "(SELECT entity, row_key, reason, column_name FROM migrate.rejects)";
    assert_eq!(
        plain.digest(rejects, "entity, row_key, reason"),
        deferred.digest(rejects, "entity, row_key, reason")
    );
    assert!(
        deferred.scalar("SELECT count(*) FROM migrate.rejects WHERE reason LIKE '%violates foreign key constraint%'")
            > 0
    );
}

#[test]
fn deferred_indexes_come_back_when_the_run_is_stopped() {
    let db = TestDb::new();
    let p = Project::new();
    demo(&p, &db, "0.48");
    let before = schema_objects(&db);
    let mut child = p
        .command(&db, &["--yes", "--defer-indexes", "--jobs", "1", "--batch-size", "100"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stopped = false;
    while child.try_wait().unwrap().is_none() {
        let ready = db
            .scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'migrate' AND tablename = 'held_constraints'")
            == 1;
        if ready && db.scalar("SELECT count(*) FROM migrate.held_constraints WHERE name LIKE 'index %'") > 0 {
            send_signal(child.id(), libc::SIGTERM);
            stopped = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let out = Out(child.wait_with_output().unwrap());
    assert!(stopped, "the run ended before an index was held");
    assert_eq!(out.code(), 143, "{}", out.stderr());
    assert!(out.stderr().contains("re-created"), "{}", out.stderr());
    assert_eq!(db.scalar("SELECT count(*) FROM migrate.held_constraints"), 0);
    assert_eq!(schema_objects(&db), before);
}

/// The document's command lines in the tool's spelling, then README's "Running old and new side
/// by side" on the demo in three commands: `demo --mutate`, `sync`, `validate --deep`.
#[test]
fn the_documents_command_lines_and_the_three_command_sync_run_on_the_demo() {
    let db = TestDb::new();
    let p = Project::new();
    demo(&p, &db, "0.05");
    p.run(&db, &["--check-only"]).expect(0);
    p.run(&db, &["--dry-run", "--yes"]).expect(0);
    assert_eq!(db.scalar("SELECT count(*) FROM customers_customer"), 0);
    // One entity with its own batch size, at Django's verbosity 2 (debug lines) ...
    let out = p
        .run(
            &db,
            &[
                "--entity",
                "customer",
                "--batch-size",
                "5000",
                "--yes",
                "--verbosity",
                "2",
            ],
        )
        .expect(0);
    assert!(out.stderr().contains("DEBUG"), "{}", out.stderr());
    let customers = db.scalar("SELECT count(*) FROM customers_customer");
    assert!(customers > 0);
    // ... the rest with --resume, silent at verbosity 0, and validated.
    let out = p
        .run(&db, &["--resume", "--yes", "--validate", "--verbosity", "0"])
        .expect(0);
    assert!(!out.stderr().contains("INFO"), "{}", out.stderr());
    assert!(out.stdout().contains("validation passed"), "{}", out.stdout());
    assert_eq!(db.scalar("SELECT count(*) FROM customers_customer"), customers);
    // The document's entity names: `--entity qa`.
    let qa = db.scalar("SELECT count(*) FROM quality_qaresult");
    p.run(&db, &["--entity", "qa", "--truncate", "--yes"]).expect(0);
    assert_eq!(db.scalar("SELECT count(*) FROM quality_qaresult"), qa);
    p.run(&db, &["--verbosity", "4"]).expect(2);

    // 1. The legacy system lives on.
    let out = p.run(&db, &["demo", "--mutate", "--out", "legacy.db"]).expect(0);
    let said = out.stdout();
    let bad: i64 = said
        .split("QA result ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("which QA result was broken: {said}"));
    let deleted: i64 = said
        .lines()
        .find_map(|l| l.strip_suffix(" QA results deleted"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{said}"));
    assert!(deleted > 0);
    let shipped = "SELECT count(*) FROM inventory_coil WHERE location = 'SHIPPED'";
    assert_eq!(db.scalar(shipped), 0);
    // 2. One sync pass moves what changed.
    let out = p.run(&db, &["sync"]).expect(0);
    assert!(out.stdout().contains("watermark"), "{}", out.stdout());
    assert!(db.scalar(shipped) > 0, "updated coils arrived");
    assert_eq!(
        db.scalar(&format!("SELECT count(*) FROM quality_qaresult WHERE id = {bad}")),
        0,
        "the broken QA result left the target"
    );
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*) FROM migrate.rejects WHERE entity = 'qa' AND row_key = '{bad}' AND column_name = 'passed'"
        )),
        1,
        "and stands in the rejects"
    );
    let run_deleted = db.scalar("SELECT coalesce(sum(rows_deleted), 0)::bigint FROM migrate.runs");
    assert!(run_deleted > 0 && run_deleted <= deleted, "{run_deleted} of {deleted}");
    // 3. Every row equal, none missing or extra.
    let out = p.run(&db, &["validate", "--deep"]).expect(0);
    assert!(out.stdout().contains("validation passed"), "{}", out.stdout());
}

#[test]
fn check_only_with_profile_counts_the_values_the_load_will_reject_per_field() {
    let db = TestDb::new();
    let p = Project::new();
    demo(&p, &db, "0.3");
    let out = p.run(&db, &["--check-only", "--profile"]).expect(0).stdout();
    // Per field: the values its transforms or target column refuse.
    let refused = |entity: &str, from: &str| -> i64 {
        let line = out
            .lines()
            .find(|l| l.starts_with(entity) && l.split_whitespace().nth(1) == Some(from))
            .unwrap_or_else(|| panic!("{entity} {from}: {out}"));
        // entity from to type… values refused looks-like…: refused follows values.
        let nums: Vec<i64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
        nums[1]
    };
    let (email, gauge) = (refused("customer", "EMAIL"), refused("coil", "GAUGE_MM"));
    assert!(
        out.contains("date/time DD-MON-YY") && out.contains("would be a reject"),
        "{out}"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM customers_customer"),
        0,
        "--check-only loaded"
    );
    // The load rejects exactly those values (the rows with them).
    p.run(&db, &["--yes"]).expect(0);
    let rejects = |col: &str, entity: &str| {
        db.scalar(&format!(
            "SELECT count(*) FROM migrate.rejects WHERE entity = '{entity}' AND column_name = '{col}'"
        ))
    };
    assert_eq!(email, rejects("email", "customer"), "{out}");
    assert_eq!(gauge, rejects("gauge_mm", "coil"), "{out}");
    assert!(email > 0 && gauge > 0);
}
