//! Oracle without its client library (the state of every machine this suite runs on unless
//! Instant Client is installed): every Oracle command ends with exit 2 and says what to install,
//! never a panic, never the password. ORACLE_CLIENT_LIB_DIR pins the library lookup to an empty
//! directory, so the outcome does not depend on what the machine has installed.

use crate::support::*;

const PASSWORD: &str = "Sup3r-Secret_pw";

fn assert_install_advice(out: &Out) {
    let err = out.stderr();
    for want in ["DPI-1047", "Instant Client 19", "basiclite", "LD_LIBRARY_PATH"] {
        assert!(err.contains(want), "missing {want}: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains(PASSWORD) && !out.stdout().contains(PASSWORD), "{err}");
}

#[test]
fn every_oracle_command_without_the_client_says_what_to_install() {
    let db = TestDb::new();
    let p = Project::new();
    let empty = tempfile::tempdir().unwrap();
    p.mapping(
        "customer",
        "source = \"ABIS.AB_CUSTOMER\"\ntarget = \"customer\"\n[[fields]]\nfrom = \"ID\"\nto = \"id\"\n",
    );
    let url = format!("oracle://legacy:{PASSWORD}@127.0.0.1:1521/XE");
    for args in [
        vec!["--check-only"],
        vec!["--yes"],
        vec!["--dry-run"],
        vec!["--yes", "--resume"],
        vec!["validate"],
        vec!["scaffold", "--out", "m", "--schema", "ABIS"],
    ] {
        let out = p
            .command(&db, &args)
            .env("MIGRATE_SOURCE", &url)
            .env("ORACLE_CLIENT_LIB_DIR", empty.path())
            .output()
            .map(Out)
            .unwrap();
        assert_eq!(out.code(), 2, "{args:?}: {}", out.stderr());
        assert_install_advice(&out);
    }
    // The log file of a run does not hold the password either.
    for e in std::fs::read_dir(p.path()).unwrap() {
        let path = e.unwrap().path();
        if path.is_file() {
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            assert!(!text.contains(PASSWORD), "{} holds the password", path.display());
        }
    }
}

#[test]
fn oracle_variables_build_the_source_with_a_sid_or_a_descriptor() {
    let db = TestDb::new();
    let p = Project::new();
    let empty = tempfile::tempdir().unwrap();
    for (k, v) in [
        ("ORACLE_SID", "ORCL"),
        ("ORACLE_SERVICE", "XEPDB1"),
        (
            "ORACLE_CONNECT",
            "(DESCRIPTION=(ADDRESS=(PROTOCOL=TCP)(HOST=db)(PORT=1521))(CONNECT_DATA=(SID=X)))",
        ),
    ] {
        let out = p
            .command(&db, &["scaffold", "--out", "m"])
            .env_remove("MIGRATE_SOURCE")
            .env("ORACLE_USER", "legacy")
            .env("ORACLE_PASSWORD", PASSWORD)
            .env("ORACLE_HOST", "127.0.0.1")
            .env(k, v)
            .env("ORACLE_CLIENT_LIB_DIR", empty.path())
            .output()
            .map(Out)
            .unwrap();
        assert_eq!(out.code(), 2, "{k}: {}", out.stderr());
        assert_install_advice(&out);
    }
    p.mapping(
        "t",
        "source = \"T\"\ntarget = \"t\"\n[[fields]]\nfrom = \"A\"\nto = \"a\"\n",
    );
    // A malformed URL is a usage error that names the problem, without the password.
    let out = p
        .command(&db, &["--check-only"])
        .env("MIGRATE_SOURCE", format!("oracle://legacy:{PASSWORD}@db:port/XE"))
        .output()
        .map(Out)
        .unwrap();
    assert_eq!(out.code(), 2, "{}", out.stderr());
    assert!(out.stderr().contains("port 'port' is not a number"), "{}", out.stderr());
    assert!(!out.stderr().contains(PASSWORD));
}
