//! Reaching the target as psql users expect: TLS (sslmode, sslrootcert), libpq's PG* variables
//! and `~/.pgpass`, and what is said when it fails.

use crate::support::*;
use std::io::{Read, Write};
use std::net::TcpListener;

/// A CA certificate that signed nothing the test server presents.
const WRONG_CA: &str = include_str!("fixtures/wrong-ca.pem");

#[test]
fn a_load_with_sslmode_require_runs_over_tls() {
    let db = TestDb::new();
    let p = Project::new();
    demo(&p, &db, "0.32");
    let url = format!("{}?sslmode=require", db.url);
    let mut child = p
        .command(&db, &["--yes", "--batch-size", "20"])
        .env("DATABASE_URL", &url)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_loaded(&db, &mut child, 1);
    // The run's own sessions, while it loads, as the server sees them.
    let ssl = db.rows(
        "SELECT s.ssl, s.version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'migrate' AND a.datname = current_database()",
    );
    let out = Out(child.wait_with_output().unwrap()).expect(0);
    assert!(!ssl.is_empty(), "no migrate session seen: {}", out.stderr());
    assert!(ssl.iter().all(|r| r["ssl"] == true), "{ssl:?}");
}

#[test]
fn verify_full_against_a_wrong_root_certificate_says_so_and_exits_2() {
    let db = TestDb::new();
    let p = Project::new();
    demo_mappings(&p);
    let ca = p.file("wrong-ca.pem");
    std::fs::write(&ca, WRONG_CA).unwrap();
    // localhost: the name the local server's certificate carries, so only the CA can be wrong.
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        db.url.replace("127.0.0.1", "localhost"),
        ca.display()
    );
    let out = p
        .command(&db, &["--check-only"])
        .env("DATABASE_URL", &url)
        .output()
        .map(Out)
        .unwrap();
    assert_eq!(out.code(), 2, "{}", out.stderr());
    let err = out.stderr();
    assert!(err.contains("certificate"), "{err}");
    assert!(!err.contains("is PostgreSQL running"), "{err}");
    // A root certificate file that is not there is named before anything is tried.
    let url = format!("{}?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem", db.url);
    let out = p
        .command(&db, &["--check-only"])
        .env("DATABASE_URL", &url)
        .output()
        .map(Out)
        .unwrap();
    assert_eq!(out.code(), 2);
    assert!(
        out.stderr().contains("sslrootcert /nonexistent/ca.pem does not exist"),
        "{}",
        out.stderr()
    );
    // PGSSLMODE is read like the URL's sslmode.
    let out = p
        .command(&db, &["--check-only"])
        .env("DATABASE_URL", db.url.replace("127.0.0.1", "localhost"))
        .env("PGSSLMODE", "verify-full")
        .env("PGSSLROOTCERT", &ca)
        .output()
        .map(Out)
        .unwrap();
    assert_eq!(out.code(), 2, "{}", out.stderr());
    assert!(out.stderr().contains("certificate"), "{}", out.stderr());
}

/// What a client sent a fake server that asks for a cleartext password: the startup parameters
/// and the password. The server then refuses the login.
struct Sent {
    params: Vec<(String, String)>,
    password: String,
}

fn read_exact(s: &mut std::net::TcpStream, n: usize) -> Vec<u8> {
    let mut b = vec![0; n];
    s.read_exact(&mut b).unwrap();
    b
}

/// Listens on a free port; the returned thread answers one login (refusing SSL) and reports it.
fn fake_server() -> (u16, std::thread::JoinHandle<Sent>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        loop {
            let len = u32::from_be_bytes(read_exact(&mut s, 4).try_into().unwrap()) as usize;
            let body = read_exact(&mut s, len - 4);
            let code = u32::from_be_bytes(body[..4].try_into().unwrap());
            if code == 80877103 {
                s.write_all(b"N").unwrap(); // no SSL here
                continue;
            }
            let mut params = Vec::new();
            let mut parts = body[4..]
                .split(|&b| b == 0)
                .map(|p| String::from_utf8_lossy(p).into_owned());
            while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
                if k.is_empty() {
                    break;
                }
                params.push((k, v));
            }
            // AuthenticationCleartextPassword.
            s.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).unwrap();
            let tag = read_exact(&mut s, 1);
            assert_eq!(tag, b"p");
            let len = u32::from_be_bytes(read_exact(&mut s, 4).try_into().unwrap()) as usize;
            let pw = read_exact(&mut s, len - 4);
            let password = String::from_utf8_lossy(&pw[..pw.len() - 1]).into_owned();
            let mut err = Vec::new();
            for (t, v) in [
                (b'S', "FATAL"),
                (b'C', "28P01"),
                (b'M', "password authentication failed"),
            ] {
                err.push(t);
                err.extend_from_slice(v.as_bytes());
                err.push(0);
            }
            err.push(0);
            let mut msg = vec![b'E'];
            msg.extend_from_slice(&((err.len() + 4) as u32).to_be_bytes());
            msg.extend_from_slice(&err);
            let _ = s.write_all(&msg);
            return Sent { params, password };
        }
    });
    (port, h)
}

#[test]
fn libpq_variables_and_pgpass_fill_in_what_the_url_leaves_out_and_stay_unprinted() {
    let db = TestDb::new();
    let p = Project::new();
    demo_mappings(&p);
    let pgpass = p.file("pgpass");
    let secret = "Pg-pass_w0rd";
    let (port, server) = fake_server();
    std::fs::write(&pgpass, format!("127.0.0.1:{port}:abis_target:migrator:{secret}\n")).unwrap();
    // As libpq, a password file others can read is ignored, and we say so.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = p
        .command(&db, &["--check-only"])
        .env_remove("DATABASE_URL")
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", "1")
        .env("PGPASSFILE", &pgpass)
        .output()
        .map(Out)
        .unwrap();
    assert!(out.stderr().contains("chmod 600"), "{}", out.stderr());
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    // No DATABASE_URL: everything from PG* and the password from PGPASSFILE.
    let out = p
        .command(&db, &["--check-only"])
        .env_remove("DATABASE_URL")
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", port.to_string())
        .env("PGUSER", "migrator")
        .env("PGDATABASE", "abis_target")
        .env("PGPASSFILE", &pgpass)
        .env_remove("PGPASSWORD")
        .output()
        .map(Out)
        .unwrap();
    let sent = server.join().unwrap();
    assert!(
        sent.params.contains(&("user".into(), "migrator".into())),
        "{:?}",
        sent.params
    );
    assert!(
        sent.params.contains(&("database".into(), "abis_target".into())),
        "{:?}",
        sent.params
    );
    assert_eq!(sent.password, secret);
    assert_ne!(out.code(), 0);
    let said = format!("{}{}", out.stdout(), out.stderr());
    assert!(said.contains("postgres://migrator@127.0.0.1"), "{said}");
    assert!(!said.contains(secret), "the .pgpass password was printed: {said}");
    for e in std::fs::read_dir(p.path()).unwrap() {
        let path = e.unwrap().path();
        if path.is_file() && path != pgpass {
            assert!(
                !std::fs::read_to_string(&path).unwrap_or_default().contains(secret),
                "{}",
                path.display()
            );
        }
    }

    // The URL wins over PG*: its user and database, PGPASSWORD for the password.
    let (port, server) = fake_server();
    let out = p
        .command(&db, &["--check-only"])
        .env("DATABASE_URL", format!("postgres://urluser@127.0.0.1:{port}/urldb"))
        .env("PGUSER", "envuser")
        .env("PGDATABASE", "envdb")
        .env("PGPASSWORD", "from-env")
        .output()
        .map(Out)
        .unwrap();
    let sent = server.join().unwrap();
    assert!(
        sent.params.contains(&("user".into(), "urluser".into())),
        "{:?}",
        sent.params
    );
    assert!(
        sent.params.contains(&("database".into(), "urldb".into())),
        "{:?}",
        sent.params
    );
    assert_eq!(sent.password, "from-env");
    assert!(!out.stderr().contains("from-env"), "{}", out.stderr());
}
