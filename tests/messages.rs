//! Messages that used to mislead: each says what went wrong, where, and what to do.

use crate::support::*;

const T: &str =
    "source = \"T\"\ntarget = \"t\"\n[[fields]]\nfrom = \"ID\"\nto = \"id\"\n[[fields]]\nfrom = \"V\"\nto = \"v\"\n";

fn project(db: &TestDb) -> Project {
    let p = Project::new();
    p.sqlite("CREATE TABLE T (ID INTEGER PRIMARY KEY, V TEXT); INSERT INTO T VALUES (1, 'a'), (2, 'b');");
    db.exec("CREATE TABLE t (id int PRIMARY KEY, v text)");
    p.mapping("t", T);
    p
}

/// The binary in the project directory with only the environment given (no MIGRATE_SOURCE or
/// DATABASE_URL from the test).
fn bare(p: &Project, db: &TestDb, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut c = p.command(db, args);
    c.env_remove("MIGRATE_SOURCE").env_remove("DATABASE_URL");
    for (k, v) in env {
        c.env(k, v);
    }
    Out(c.output().unwrap())
}

#[test]
fn a_bad_env_line_or_an_empty_url_is_named() {
    let db = TestDb::new();
    let p = project(&db);
    let env = p.file(".env");
    std::fs::write(
        &env,
        format!(
            "MIGRATE_SOURCE={}\nORACLE_PASSWORD=\"hunter2\nDATABASE_URL={}\n",
            p.source_url(),
            db.url
        ),
    )
    .unwrap();
    let err = bare(&p, &db, &["--check-only"], &[]).expect(2).stderr();
    assert!(err.contains(".env line 2 cannot be read as NAME=value"), "{err}");
    assert!(!err.contains("hunter2"), "a password reached the output: {err}");
    assert!(!err.contains("MIGRATE_SOURCE"), "{err}");
    // Fixed, it works; each line counts.
    std::fs::write(
        &env,
        format!("MIGRATE_SOURCE={}\n# note\nDATABASE_URL={}\n", p.source_url(), db.url),
    )
    .unwrap();
    bare(&p, &db, &["--check-only"], &[]).expect(0);
    std::fs::remove_file(&env).unwrap();
    let err = bare(
        &p,
        &db,
        &["--check-only"],
        &[("MIGRATE_SOURCE", &p.source_url()), ("DATABASE_URL", "")],
    )
    .expect(2)
    .stderr();
    assert!(err.contains("DATABASE_URL is set but empty"), "{err}");
    assert!(!err.contains("relative URL"), "{err}");
    let err = bare(
        &p,
        &db,
        &["--check-only"],
        &[("MIGRATE_SOURCE", ""), ("DATABASE_URL", &db.url)],
    )
    .expect(2)
    .stderr();
    assert!(err.contains("MIGRATE_SOURCE is set but empty"), "{err}");
}

#[test]
fn a_missing_database_or_role_is_not_called_a_server_that_is_down() {
    let db = TestDb::new();
    let p = project(&db);
    let base = db.url.rsplit_once('/').unwrap().0.to_string();
    let missing_db = format!("{base}/no_such_database_here");
    let err = p
        .run(&db, &["--check-only", "--target", &missing_db])
        .expect(1)
        .stderr();
    assert!(err.contains("that database does not exist"), "{err}");
    assert!(!err.contains("is PostgreSQL running"), "{err}");
    let missing_role = db.url.replace("postgres@", "no_such_role@");
    let err = p
        .run(&db, &["--check-only", "--target", &missing_role])
        .expect(1)
        .stderr();
    assert!(err.contains("refused that user or password"), "{err}");
    let err = p
        .run(&db, &["--check-only", "--target", "postgres://postgres@127.0.0.1:1/x"])
        .expect(1)
        .stderr();
    assert!(err.contains("is PostgreSQL running"), "{err}");
    // PostgreSQL's words, without "at line N" of its C source.
    assert!(!err.contains(" at line "), "{err}");
}

#[test]
fn read_only_commands_before_any_load_write_nothing_and_say_what_is_missing() {
    let db = TestDb::new();
    let p = project(&db);
    let out = p.run(&db, &["validate"]).expect(1);
    let all = format!("{}{}", out.stdout(), out.stderr());
    assert!(all.contains("t has not been migrated"), "{all}");
    assert!(!all.contains("sync_state"), "{all}");
    assert!(!all.contains(" at line "), "{all}");
    let status = p.run(&db, &["status"]).expect(0).stdout();
    assert!(status.contains("not started"), "{status}");
    assert_eq!(
        db.scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'migrate'"),
        0
    );
}

#[test]
fn truncate_names_the_unmapped_table_that_references_a_mapped_one() {
    let db = TestDb::new();
    let p = project(&db);
    db.exec("CREATE TABLE audit (id int, t_id int REFERENCES t (id))");
    let err = p.run(&db, &["--yes", "--truncate"]).expect(2).stderr();
    assert!(
        err.contains(
            "table audit (foreign key audit_t_id_fkey) references t, and is not among the tables being emptied"
        ),
        "{err}"
    );
}

#[test]
fn mapping_problems_are_named_before_the_load() {
    let db = TestDb::new();
    let p = project(&db);
    // A source table whose name has a dot in it is one SQLite table, not schema.table.
    p.sqlite("CREATE TABLE \"a.b\" (ID INTEGER PRIMARY KEY, V TEXT); INSERT INTO \"a.b\" VALUES (1, 'x');");
    db.exec("CREATE TABLE ab (id int PRIMARY KEY, v text)");
    p.mapping(
        "ab",
        &T.replace("source = \"T\"", "source = \"a.b\"")
            .replace("target = \"t\"", "target = \"ab\""),
    );
    // on_conflict by a key that is not mapped; constants and defaults the column cannot hold.
    p.mapping(
        "u",
        "source = \"T\"\ntarget = \"tu\"\non_conflict = \"skip\"\n[[fields]]\nfrom = \"V\"\nto = \"v\"\n",
    );
    db.exec("CREATE TABLE tu (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text UNIQUE)");
    p.mapping(
        "w",
        "source = \"T\"\ntarget = \"t\"\n[[fields]]\nfrom = \"ID\"\nto = \"id\"\n[[fields]]\nto = \"v\"\nvalue = \"x\"\n[[fields]]\nfrom = \"V\"\nto = \"n\"\ndefault = \"many\"\n",
    );
    db.exec("ALTER TABLE t ADD COLUMN n int");
    let err = p.run(&db, &["--check-only"]).expect(2).stderr();
    assert!(!err.contains("ab:"), "{err}");
    assert!(
        err.contains(
            "u: on_conflict = \"skip\" finds the target row by the key (ID), but no field maps it to the target"
        ),
        "{err}"
    );
    assert!(!err.contains("on ()"), "{err}");
    assert!(
        err.contains(
            "w: field 'n': its default \"many\" cannot be stored in column n (integer): 'many' is not a whole number"
        ),
        "{err}"
    );
    std::fs::remove_file(p.file("mappings/u.toml")).unwrap();
    std::fs::remove_file(p.file("mappings/w.toml")).unwrap();
    p.run(&db, &["--yes", "--entity", "ab"]).expect(0);
    assert_eq!(db.scalar("SELECT count(*) FROM ab"), 1);
}

#[test]
fn every_files_problems_come_together() {
    let db = TestDb::new();
    let p = project(&db);
    // One file that does not parse, one that parses but does not compile, one that depends on
    // the broken one (no spurious "unknown entity").
    p.mapping("a", &format!("{T}colour = \"red\"\n"));
    p.mapping("b", &T.replace("to = \"v\"", "to = \"v\"\ntransform = [\"uper\"]"));
    p.mapping(
        "c",
        &T.replace("target = \"t\"", "target = \"t\"\ndepends_on = [\"a\"]"),
    );
    let err = p.run(&db, &["--check-only"]).expect(2).stderr();
    assert!(err.contains("a.toml: line"), "{err}");
    assert!(err.contains("unknown field 'colour'"), "{err}");
    assert!(err.contains("b.toml: line"), "{err}");
    assert!(err.contains("unknown transform 'uper'"), "{err}");
    assert!(!err.contains("unknown entity 'a'"), "{err}");
}

#[test]
fn a_stopped_truncating_run_is_resumed_without_truncate_and_a_changed_mapping_counts_every_row() {
    let db = TestDb::new();
    let p = Project::new();
    p.sqlite(
        "CREATE TABLE T (ID INTEGER PRIMARY KEY, V TEXT);
         WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 150000)
         INSERT INTO T SELECT i, 'v' || i FROM c;",
    );
    db.exec("CREATE TABLE t (id int PRIMARY KEY, v text)");
    p.mapping("t", T);
    let mut child = p
        .command(&db, &["--yes", "--truncate", "--batch-size", "1000", "--jobs", "2"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_loaded(&db, &mut child, 2000);
    send_signal(child.id(), libc::SIGINT);
    let out = Out(child.wait_with_output().unwrap());
    let err = out.stderr();
    assert_eq!(out.code(), 130, "{err}");
    assert!(err.contains("--resume in place of --truncate"), "{err}");
    // The load's rows are in its ranges' progress; a changed mapping says how many.
    let so_far = db.scalar("SELECT sum(rows_loaded)::bigint FROM migrate.progress");
    p.mapping("t", &T.replace("to = \"v\"", "to = \"v\"\ntransform = [\"trim\"]"));
    let err = p.run(&db, &["--yes", "--resume"]).expect(2).stderr();
    assert!(
        err.contains(&format!("({so_far} rows loaded with the old mapping)")) && so_far > 0,
        "{so_far}: {err}"
    );
}
