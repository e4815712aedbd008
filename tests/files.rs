//! Files as a source (`--source file:///dir`): CSV plain, gzipped and inside a zip, read as one
//! entity; a Latin-1 file; malformed lines and undecodable bytes are rejects naming the file and
//! line, the rest loads; killed and resumed from the byte offset; validated row by row.

use crate::support::*;
use std::io::Write;

const ORDERS: &str = "source = \"orders/*\"\ntarget = \"orders\"\n\
[[fields]]\nfrom = \"_file\"\nto = \"file\"\n[[fields]]\nfrom = \"_line\"\nto = \"line\"\n\
[[fields]]\nfrom = \"ID\"\nto = \"id\"\n[[fields]]\nfrom = \"AMOUNT\"\nto = \"amount\"\n\
[[fields]]\nfrom = \"NOTE\"\nto = \"note\"\n";

fn csv_rows(first: u64, n: u64) -> String {
    let mut s = String::from("ID,AMOUNT,NOTE\n");
    for i in first..first + n {
        // Quoted fields with the delimiter, a doubled quote and a newline inside, now and then.
        let note = match i % 5 {
            0 => "\"a, b\"".to_string(),
            1 => "\"say \"\"hi\"\"\"".to_string(),
            2 => "\"two\nlines\"".to_string(),
            3 => String::new(),
            _ => format!("n{i}"),
        };
        s.push_str(&format!("{i},{}.{:02},{note}\n", i % 1000, i % 100));
    }
    s
}

fn project(db: &TestDb, big: u64) -> Project {
    let p = Project::new();
    let dir = p.file("data/orders");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a_plain.csv"), csv_rows(1, big)).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(csv_rows(1_000_001, 500).as_bytes()).unwrap();
    std::fs::write(dir.join("b_packed.csv.gz"), gz.finish().unwrap()).unwrap();
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("site1.csv", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(csv_rows(2_000_001, 300).as_bytes()).unwrap();
    zip.start_file("site2.csv", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(csv_rows(2_100_001, 200).as_bytes()).unwrap();
    std::fs::write(dir.join("c_sites.zip"), zip.finish().unwrap().into_inner()).unwrap();
    // Two malformed lines and one field that is not UTF-8, among good ones.
    let mut bad = b"ID,AMOUNT,NOTE\n3000001,1.00,ok\n3000002,2.00\n3000003,3.00,x,extra\n3000004,4.00,".to_vec();
    bad.extend_from_slice(b"caf\xe9\n3000005,5.00,fine\n");
    std::fs::write(dir.join("d_broken.csv"), bad).unwrap();
    // Latin-1 (Windows-1252), semicolons.
    let mut latin = b"ID;NAME\n1;M\xfcller\n2;Caf\xe9 \x80uro\n".to_vec();
    latin.extend_from_slice(b"3;Stra\xdfe\n");
    std::fs::write(p.file("data/customers.csv"), latin).unwrap();

    db.exec(
        "CREATE TABLE orders (file text, line int, id bigint PRIMARY KEY, amount numeric(10,2), note text);
         CREATE TABLE customers (id int PRIMARY KEY, name text)",
    );
    p.mapping("orders", ORDERS);
    p.mapping(
        "customers",
        "source = \"customers.csv?delimiter=;&encoding=windows-1252\"\ntarget = \"customers\"\n\
         [[fields]]\nfrom = \"ID\"\nto = \"id\"\n[[fields]]\nfrom = \"NAME\"\nto = \"name\"\n",
    );
    p
}

fn files_command(p: &Project, db: &TestDb, args: &[&str]) -> std::process::Command {
    let mut c = p.command(db, args);
    c.env("MIGRATE_SOURCE", format!("file://{}", p.file("data").display()));
    c
}

#[test]
fn csv_files_plain_gzipped_and_zipped_load_with_rejects_for_bad_lines_and_resume_after_a_kill() {
    let db = TestDb::new();
    let big = 60_000;
    let p = project(&db, big);
    let out = files_command(&p, &db, &["--check-only"])
        .output()
        .map(Out)
        .unwrap()
        .expect(0);
    assert!(
        out.stdout().contains("all checks passed for 2 entities"),
        "{}",
        out.stdout()
    );

    let mut child = files_command(&p, &db, &["--yes", "--batch-size", "500", "--jobs", "1"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_loaded(&db, &mut child, 5_000);
    child.kill().unwrap(); // SIGKILL, mid-file
    let _ = child.wait();
    let before = db.scalar("SELECT count(*) FROM orders");
    assert!(
        before < (big + 1_000) as i64,
        "the run finished before the kill: {before}"
    );

    let out = files_command(&p, &db, &["--yes", "--resume", "--validate", "--deep"])
        .output()
        .map(Out)
        .unwrap()
        .expect(0);
    assert!(out.stdout().contains("validation passed"), "{}", out.stdout());
    let good = big + 500 + 300 + 200 + 2; // 61,002: the split below expects this size
    assert_eq!(db.scalar("SELECT count(*) FROM orders"), good as i64);
    // Every row once, in its file and line; a note with a newline counts two lines.
    assert_eq!(
        db.scalar("SELECT count(DISTINCT (file, line)) FROM orders"),
        good as i64
    );
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM orders WHERE file IN ('orders/c_sites.zip/site1.csv', 'orders/c_sites.zip/site2.csv')"
        ),
        500
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM orders WHERE file = 'orders/b_packed.csv.gz'"),
        500
    );
    assert_eq!(
        db.scalar("SELECT line::bigint FROM orders WHERE id = 4"),
        6,
        "id 2's note spans lines 3 and 4"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM orders WHERE id = 1 AND note = 'say \"hi\"' AND amount = 1.01"),
        1
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM orders WHERE id = 2 AND note = E'two\\nlines'"),
        1
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM orders WHERE id = 3 AND note IS NULL"),
        1,
        "empty field = NULL"
    );

    // The broken file: three rejects naming file and line, with the raw text; the rest loaded.
    let rejects = db.rows("SELECT row_key, reason FROM migrate.rejects WHERE entity = 'orders' ORDER BY id");
    assert_eq!(rejects.len(), 3, "{rejects:?}");
    let reasons: Vec<String> = rejects
        .iter()
        .map(|r| r["reason"].as_str().unwrap().to_string())
        .collect();
    assert!(
        reasons[0].contains("orders/d_broken.csv line 3: 2 field(s), the header has 3: 3000002,2.00"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("line 4: 4 field(s)") && reasons[1].contains("3000003,3.00,x,extra"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].contains("line 5: bytes 636166e9 are not valid UTF-8"),
        "{reasons:?}"
    );
    assert!(
        rejects[0]["row_key"].as_str().unwrap().contains("d_broken.csv"),
        "{rejects:?}"
    );

    // Loaded again with the files read side by side (--jobs 4 cuts the entity at file ends):
    // the same rows.
    let db2 = TestDb::new();
    db2.exec(
        "CREATE TABLE orders (file text, line int, id bigint PRIMARY KEY, amount numeric(10,2), note text);
         CREATE TABLE customers (id int PRIMARY KEY, name text)",
    );
    let out = files_command(&p, &db2, &["--yes", "--jobs", "4", "--batch-size", "500", "-v"])
        .output()
        .map(Out)
        .unwrap()
        .expect(0);
    assert!(
        out.stderr()
            .contains("orders: 61005 rows in scope, loaded in 2 key ranges side by side"),
        "not split: {}",
        out.stderr()
    );
    assert_eq!(db2.digest("orders", "id"), db.digest("orders", "id"));

    // Latin-1 decoded exactly.
    let names: Vec<String> = db
        .rows("SELECT name FROM customers ORDER BY id")
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["Müller", "Café €uro", "Straße"]);
}

#[test]
fn file_sources_refuse_what_they_cannot_do_with_the_reason() {
    let db = TestDb::new();
    let p = project(&db, 10);
    p.mapping(
        "orders",
        &ORDERS.replace("target = \"orders\"\n", "target = \"orders\"\nkey = [\"ID\"]\n"),
    );
    let out = files_command(&p, &db, &["--yes"]).output().map(Out).unwrap();
    let err = out.stderr();
    assert_ne!(out.code(), 0, "{err}");
    assert!(
        err.contains("read in file order") && err.contains("remove `key`"),
        "{err}"
    );
    assert_eq!(db.scalar("SELECT count(*) FROM orders"), 0);
    p.mapping("orders", &ORDERS.replace("orders/*", "orders/*?sep=;"));
    let err = files_command(&p, &db, &["--check-only"])
        .output()
        .map(Out)
        .unwrap()
        .expect(2)
        .stderr();
    assert!(err.contains("unknown option 'sep'"), "{err}");
    p.mapping("orders", &ORDERS.replace("orders/*", "nothing/*.csv"));
    let err = files_command(&p, &db, &["--check-only"])
        .output()
        .map(Out)
        .unwrap()
        .expect(2)
        .stderr();
    assert!(err.contains("nothing/*.csv does not exist"), "{err}");
}

#[test]
fn scaffold_on_a_directory_of_files_writes_mappings_that_load_every_row() {
    let db = TestDb::new();
    let p = project(&db, 50);
    db.exec("DROP TABLE orders; DROP TABLE customers");
    let out = files_command(&p, &db, &["scaffold", "--out", "scaffolded", "--ddl", "scaffolded.sql"])
        .output()
        .map(Out)
        .unwrap()
        .expect(0);
    assert!(out.stdout().contains("wrote 1 mapping(s)"), "{}", out.stdout());
    let ddl = std::fs::read_to_string(p.file("scaffolded.sql")).unwrap();
    assert!(
        ddl.contains("CREATE TABLE customers (") && ddl.contains("PRIMARY KEY (_file, _line, _offset)"),
        "{ddl}"
    );
    db.exec(&ddl);
    // The header's delimiter and the bytes that are not UTF-8 were noticed, and written down.
    let mapping = std::fs::read_to_string(p.file("scaffolded/customers.toml")).unwrap();
    assert!(
        mapping.contains("source = \"customers.csv?delimiter=;&encoding=windows-1252\""),
        "{mapping}"
    );
    files_command(&p, &db, &["--mappings", "scaffolded", "--yes", "--validate"])
        .output()
        .map(Out)
        .unwrap()
        .expect(0);
    assert_eq!(db.scalar("SELECT count(*) FROM migrate.rejects"), 0);
    assert_eq!(
        db.scalar("SELECT count(*) FROM customers WHERE name = 'Straße' AND _line = 4"),
        1
    );
}

#[test]
fn one_file_per_group_is_kept_shown_by_check_only_and_only_it_loads() {
    let db = TestDb::new();
    let p = Project::new();
    std::fs::create_dir_all(p.file("data/sites")).unwrap();
    let file = |name: &str, rows: std::ops::RangeInclusive<u64>, step: u64| {
        let mut s = String::from("ROWNO,SITE_LINE\n");
        for i in rows {
            s.push_str(&format!("{},L{i}\n", i * step));
        }
        std::fs::write(p.file(&format!("data/sites/{name}")), s).unwrap();
    };
    // site1: _a has more rows, _b the larger row numbers; site2: _b wins both ways.
    file("site1_a.csv", 1..=100, 1);
    file("site1_b.csv", 1..=80, 2);
    file("site2_a.csv", 1..=30, 1);
    file("site2_b.csv", 1..=40, 10);
    db.exec("CREATE TABLE lines (file text, rowno int, site_line text)");
    let mapping = |opts: &str| {
        format!(
            "source = \"sites/*.csv?group=^sites/(site[0-9]+)_&{opts}\"\ntarget = \"lines\"\n\
             [[fields]]\nfrom = \"_file\"\nto = \"file\"\n[[fields]]\nfrom = \"ROWNO\"\nto = \"rowno\"\n\
             [[fields]]\nfrom = \"SITE_LINE\"\nto = \"site_line\"\n"
        )
    };
    p.mapping("lines", &mapping("keep=max:ROWNO"));
    let out = files_command(&p, &db, &["--check-only", "--report", "choices.csv"])
        .output()
        .map(Out)
        .unwrap()
        .expect(0);
    let stdout = out.stdout();
    assert!(stdout.contains("files kept, one per group"), "{stdout}");
    let csv = std::fs::read_to_string(p.file("choices.csv")).unwrap();
    assert_eq!(
        csv,
        "entity,group,file,kept,measure\n\
         lines,site1,sites/site1_a.csv,no,largest ROWNO 100\n\
         lines,site1,sites/site1_b.csv,yes,largest ROWNO 160\n\
         lines,site2,sites/site2_a.csv,no,largest ROWNO 30\n\
         lines,site2,sites/site2_b.csv,yes,largest ROWNO 400\n"
    );
    assert_eq!(db.scalar("SELECT count(*) FROM lines"), 0, "--check-only loaded rows");
    files_command(&p, &db, &["--yes", "--validate"])
        .output()
        .map(Out)
        .unwrap()
        .expect(0);
    assert_eq!(db.scalar("SELECT count(*) FROM lines"), 120);
    assert_eq!(
        db.scalar("SELECT count(DISTINCT file) FROM lines WHERE file IN ('sites/site1_b.csv', 'sites/site2_b.csv')"),
        2
    );

    // Kept by rows instead: site1_a.
    p.mapping("lines", &mapping("keep=rows"));
    let out = files_command(&p, &db, &["--check-only"])
        .output()
        .map(Out)
        .unwrap()
        .expect(0);
    assert!(
        out.stdout()
            .lines()
            .any(|l| l.contains("sites/site1_a.csv") && l.contains("yes") && l.contains("100 rows")),
        "{}",
        out.stdout()
    );
}

#[test]
fn a_file_that_changed_after_it_was_read_stops_the_resume_and_later_files_may_change() {
    let db = TestDb::new();
    let p = project(&db, 60_000);
    let mut child = files_command(&p, &db, &["--yes", "--batch-size", "500", "--jobs", "1"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_loaded(&db, &mut child, 5_000);
    child.kill().unwrap();
    let _ = child.wait();
    let progress = db.rows("SELECT last_key FROM migrate.progress WHERE entity = 'orders'");
    // Stopped in the first file (its name, hex-encoded in the stored key).
    assert!(
        progress[0]["last_key"].to_string().contains("615f706c61696e2e637376"),
        "{progress:?}"
    );
    // A file not read yet may change (written again, here).
    let later = p.file("data/orders/b_packed.csv.gz");
    let bytes = std::fs::read(&later).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&later, &bytes).unwrap();
    // The file being read grows: the resume stops, naming it, and nothing more is loaded.
    let loaded = db.scalar("SELECT count(*) FROM orders");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(p.file("data/orders/a_plain.csv"))
        .unwrap();
    f.write_all(b"9999999,1.00,late\n").unwrap();
    drop(f);
    let err = files_command(&p, &db, &["--yes", "--resume"])
        .output()
        .map(Out)
        .unwrap()
        .expect(2)
        .stderr();
    assert!(
        err.contains("entity orders: source file(s) orders/a_plain.csv changed since the load read them")
            && err.contains("--truncate"),
        "{err}"
    );
    assert_eq!(db.scalar("SELECT count(*) FROM orders"), loaded);
    // Started over, every row of the files as they are now.
    files_command(&p, &db, &["--yes", "--truncate", "--validate"])
        .output()
        .map(Out)
        .unwrap()
        .expect(0);
    assert_eq!(db.scalar("SELECT count(*) FROM orders"), 61_003);
}
