//! The command line: confirmation, --entity dependencies, changed mappings on resume, missing
//! settings, secrets kept out of every output.

use crate::support::*;

fn two_entities(db: &TestDb) -> Project {
    let p = Project::new();
    p.sqlite(
        "CREATE TABLE P (ID INTEGER PRIMARY KEY); CREATE TABLE C (ID INTEGER PRIMARY KEY, PID INTEGER);
              INSERT INTO P VALUES (1),(2); INSERT INTO C VALUES (10,1),(11,2);",
    );
    db.exec("CREATE TABLE parent (id int PRIMARY KEY); CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent)");
    p.mapping(
        "parent",
        "source = \"P\"\ntarget = \"parent\"\n[[fields]]\nfrom = \"ID\"\nto = \"id\"\n",
    );
    p.mapping("child", "source = \"C\"\ntarget = \"child\"\ndepends_on = [\"parent\"]\n[[fields]]\nfrom = \"ID\"\nto = \"id\"\n[[fields]]\nfrom = \"PID\"\nto = \"parent_id\"\n");
    p
}

#[test]
fn writing_without_a_terminal_needs_yes() {
    let db = TestDb::new();
    let p = two_entities(&db);
    let err = p.run(&db, &[]).expect(2).stderr();
    assert!(err.contains("stdin is not a terminal; pass --yes"), "{err}");
    assert_eq!(db.scalar("SELECT count(*) FROM parent"), 0);
}

#[test]
fn entity_needs_its_dependencies_loaded_first() {
    let db = TestDb::new();
    let p = two_entities(&db);
    let err = p.run(&db, &["--yes", "--entity", "child"]).expect(2).stderr();
    assert!(
        err.contains("entity child depends on parent, not migrated yet"),
        "{err}"
    );
    p.run(&db, &["--yes", "--entity", "parent", "--batch-size", "5000"])
        .expect(0);
    p.run(&db, &["--yes", "--entity", "child"]).expect(0);
    assert_eq!(db.scalar("SELECT count(*) FROM child"), 2);
    let err = p.run(&db, &["--yes", "--entity", "nope"]).expect(2).stderr();
    assert!(err.contains("unknown entity nope (known: parent, child)"), "{err}");
}

#[test]
fn resume_refuses_a_changed_mapping() {
    let db = TestDb::new();
    let p = two_entities(&db);
    p.run(&db, &["--yes", "--entity", "parent"]).expect(0);
    p.mapping(
        "parent",
        "source = \"P\"\ntarget = \"parent\"\n[[fields]]\nfrom = \"ID\"\nto = \"id\"\ntransform = [\"integer\"]\n",
    );
    let err = p.run(&db, &["--yes", "--resume"]).expect(2).stderr();
    assert!(err.contains("parent.toml changed since its load started"), "{err}");
    assert_eq!(db.scalar("SELECT count(*) FROM child"), 0);
}

#[test]
fn missing_target_and_source_are_usage_errors() {
    let db = TestDb::new();
    let p = two_entities(&db);
    let out = p
        .command(&db, &["--check-only"])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no target database"));
    let out = p
        .command(&db, &["--check-only"])
        .env_remove("MIGRATE_SOURCE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no source database"));
    let out = p
        .command(
            &db,
            &["--check-only", "--target", "postgres://nobody:pw@127.0.0.1:1/none"],
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect to target postgres://nobody:***@127.0.0.1:1/none") && err.contains("hint:"),
        "{err}"
    );
}

#[test]
fn help_lists_the_flags() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_migrate"))
        .arg("--help")
        .env("DATABASE_URL", "postgres://u:topsecret@h/db")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--source",
        "--target",
        "--mappings",
        "--check-only",
        "--dry-run",
        "--entity",
        "--batch-size",
        "--resume",
        "--validate",
        "--checkpoint",
        "--yes",
        "--report",
        "validate",
        "demo",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    assert!(!help.contains("topsecret"), "--help shows an env value");
}

#[test]
fn each_subcommand_takes_only_its_own_options_and_help_lists_the_exit_codes() {
    let db = TestDb::new();
    let p = two_entities(&db);
    for (args, flag) in [
        (&["status", "--report", "r.json"][..], "--report"),
        (&["status", "--checkpoint", "c.json"][..], "--checkpoint"),
        (&["scaffold", "--out", "sc", "--entity", "parent"][..], "--entity"),
        (&["demo", "--out", "x.db", "--mappings", "m"][..], "--mappings"),
        (&["validate", "--checkpoint", "c.json"][..], "--checkpoint"),
        (&["validate", "--batch-size", "5"][..], "--batch-size"),
        (&["--yes", "status"][..], "--yes"),
        (&["--report", "r.json", "validate"][..], "--report"),
        (&["--dry-run", "--validate"][..], "--validate"),
        (&["--check-only", "--validate"][..], "--validate"),
    ] {
        let err = p.run(&db, args).expect(2).stderr();
        assert!(err.contains(flag) && err.contains("error:"), "{args:?}: {err}");
    }
    assert!(!p.file("r.json").exists() && !p.file("sc").exists() && !p.file("x.db").exists());
    assert_eq!(db.scalar("SELECT count(*) FROM parent"), 0);

    let help = |args: &[&str]| p.run(&db, args).expect(0).stdout();
    let status = help(&["status", "--help"]);
    assert!(
        status.contains("--json") && status.contains("--target") && status.contains("--log-file"),
        "{status}"
    );
    for foreign in ["--report", "--checkpoint", "--batch-size", "--yes", "--dry-run"] {
        assert!(!status.contains(foreign), "status --help lists {foreign}: {status}");
    }
    let scaffold = help(&["scaffold", "--help"]);
    assert!(
        scaffold.contains("--source") && !scaffold.contains("--target <") && !scaffold.contains("--entity"),
        "{scaffold}"
    );
    let demo = help(&["demo", "--help"]);
    assert!(demo.contains("--target") && !demo.contains("--source") && !demo.contains("--report"));
    let top = help(&["--help"]);
    for code in ["0 success", "1 migration", "2 usage", "130", "SIGINT", "143", "SIGTERM"] {
        assert!(top.contains(code), "--help lacks {code}: {top}");
    }
    let source = help(&["--help"]);
    assert!(source.contains("ORACLE_SID") && source.contains("ORACLE_CONNECT"));
}

#[test]
fn read_only_commands_write_no_log_file_and_a_failed_run_logs_its_error() {
    let db = TestDb::new();
    let p = two_entities(&db);
    // Read-only commands and those that do not touch the target: no log file.
    p.run(&db, &["--check-only"]).expect(0);
    p.run(&db, &["status"]).expect(0);
    p.run(&db, &["status", "--json"]).expect(0);
    p.run(&db, &["--help"]).expect(0);
    p.run(&db, &["status", "--help"]).expect(0);
    p.run(&db, &["scaffold", "--out", "scaffolded"]).expect(0);
    p.run(&db, &["demo", "--out", "d.db", "--scale", "0.01"]).expect(0);
    let _ = p.run(&db, &["validate"]);
    assert_eq!(log_files(p.path()), Vec::<std::path::PathBuf>::new());

    // A load writes one, with debug detail; MIGRATE_LOG_DIR moves it.
    p.command(&db, &["--yes"])
        .env("MIGRATE_LOG_DIR", p.file("logs"))
        .output()
        .map(Out)
        .unwrap()
        .expect(0);
    assert!(log_files(p.path()).is_empty());
    let logs = log_files(&p.file("logs"));
    assert_eq!(logs.len(), 1, "{logs:?}");
    let text = std::fs::read_to_string(&logs[0]).unwrap();
    assert!(
        text.contains("parent: 2 read, 2 loaded") && text.contains("DEBUG"),
        "{text}"
    );

    // Asked for, a read-only command writes one too.
    p.run(&db, &["status", "--log-file", "status.log"]).expect(0);
    assert!(p.file("status.log").exists());

    // A run that fails has its error (and hint, and exit code) in the log, not only on stderr.
    let again = p.run(&db, &["--yes", "--log-file", "again/run.log"]).expect(2);
    let text = std::fs::read_to_string(p.file("again/run.log")).unwrap();
    assert!(again.stderr().contains("already has progress"), "{}", again.stderr());
    assert!(
        text.contains("error:") && text.contains("already has progress") && text.contains("exit code 2"),
        "{text}"
    );
}

#[test]
fn passwords_never_reach_outputs_logs_reports_or_checkpoints() {
    let db = TestDb::new();
    let p = two_entities(&db);
    // Trust authentication accepts any password, so a real run can carry one in its URL.
    let url = db.url.replacen("postgres@", "postgres:Sup3rS3cretPw@", 1);
    assert!(url.contains("Sup3rS3cretPw"));
    let out = p
        .command(&db, &["--yes", "--validate", "-v", "--report", "r.json"])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let bad = p
        .command(&db, &["--check-only"])
        .env("DATABASE_URL", url.replace("127.0.0.1:5432", "127.0.0.1:1"))
        .output()
        .unwrap();
    let mut everything = String::new();
    for o in [&out, &bad] {
        everything.push_str(&String::from_utf8_lossy(&o.stdout));
        everything.push_str(&String::from_utf8_lossy(&o.stderr));
    }
    for e in std::fs::read_dir(p.path()).unwrap() {
        let path = e.unwrap().path();
        if path.is_file() && path.extension().is_none_or(|x| x != "db") {
            everything.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
        }
    }
    assert!(
        everything.contains("postgres:***@"),
        "the redacted URL is shown somewhere"
    );
    assert!(!everything.contains("Sup3rS3cretPw"), "password leaked:\n{everything}");
}

#[test]
fn validate_catches_missing_rows_and_orphans() {
    let db = TestDb::new();
    let p = two_entities(&db);
    p.run(&db, &["--yes", "--validate"]).expect(0);
    // Someone deletes a parent behind our back, leaving an orphan under a NOT VALID foreign key.
    db.exec(
        "ALTER TABLE child DROP CONSTRAINT child_parent_id_fkey;
         DELETE FROM parent WHERE id = 2;
         ALTER TABLE child ADD CONSTRAINT child_parent_id_fkey FOREIGN KEY (parent_id) REFERENCES parent NOT VALID;",
    );
    let out = p.run(&db, &["validate", "--report", "v.json"]).expect(1);
    let stdout = out.stdout();
    assert!(stdout.contains("parent") && stdout.contains("MISMATCH"), "{stdout}");
    assert!(
        stdout.contains("target parent has 1 rows but 2 were loaded"),
        "{stdout}"
    );
    assert!(
        stdout.contains("child child_parent_id_fkey: 1 orphan(s), e.g. 2"),
        "{stdout}"
    );
    assert!(out.stderr().contains("validation failed"), "{}", out.stderr());
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p.file("v.json")).unwrap()).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["validation"]["foreign_keys"][0]["orphans"], 1);
}

#[test]
fn a_copied_env_example_with_oracle_filled_in_reads_oracle_and_both_set_is_warned_about() {
    let db = TestDb::new();
    let p = two_entities(&db);
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example")).unwrap();
    // What a user does: copy it, fill in the ORACLE_* lines, point DATABASE_URL at the target.
    let filled: String = example
        .lines()
        .map(|l| match l.split_once('=') {
            Some(("# ORACLE_USER", _)) => "ORACLE_USER=legacy".to_string(),
            Some(("# ORACLE_PASSWORD", _)) => "ORACLE_PASSWORD=Env-Secret_pw".to_string(),
            Some(("# ORACLE_HOST", _)) => "ORACLE_HOST=127.0.0.1".to_string(),
            Some(("# ORACLE_SERVICE", _)) => "ORACLE_SERVICE=XE".to_string(),
            Some(("DATABASE_URL", _)) => format!("DATABASE_URL={}", db.url),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(p.file(".env"), filled).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p.file(".env"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let empty = tempfile::tempdir().unwrap();
    let out = p
        .command(&db, &["--check-only"])
        .env_remove("MIGRATE_SOURCE")
        .env_remove("DATABASE_URL")
        .env("ORACLE_CLIENT_LIB_DIR", empty.path())
        .output()
        .map(Out)
        .unwrap();
    let err = out.stderr();
    assert_eq!(out.code(), 2, "{err}");
    assert!(err.contains("DPI-1047") && err.contains("Oracle client"), "{err}");
    assert!(!err.contains("sqlite") && !err.contains("Env-Secret_pw"), "{err}");

    // MIGRATE_SOURCE as well: it wins, and the unused ORACLE_* settings are named.
    let out = p.run(&db, &["--check-only"]).expect(0);
    assert!(
        out.stderr().contains("MIGRATE_SOURCE is set") && out.stderr().contains("ORACLE_USER"),
        "{}",
        out.stderr()
    );
}
