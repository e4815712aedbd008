//! Test helpers: a fresh PostgreSQL database per test (dropped afterwards), SQLite fixtures,
//! and running the real `migrate` binary. A test that cannot reach PostgreSQL fails.

#![allow(dead_code)]

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT: AtomicUsize = AtomicUsize::new(0);

pub fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// The server tests run against: MIGRATE_TEST_PG, default the local PostgreSQL.
pub fn admin_url() -> String {
    std::env::var("MIGRATE_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub fn new() -> TestDb {
        let name = format!(
            "migrate_t_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let admin = admin_url();
        block(async {
            let mut c = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                panic!("cannot reach PostgreSQL at {admin} (start it, or set MIGRATE_TEST_PG): {e}")
            });
            c.execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}")))
                .await
                .unwrap();
            c.execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .await
                .unwrap();
        });
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap();
        TestDb {
            url: format!("{base}/{name}"),
            name,
        }
    }

    /// Runs SQL on the server's admin database (for ALTER DATABASE on this one).
    pub fn admin_exec(&self, sql: &str) {
        let sql = sql.to_string();
        block(async {
            let mut c = PgConnection::connect(&admin_url()).await.unwrap();
            sqlx::raw_sql(AssertSqlSafe(sql.clone()))
                .execute(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        });
    }

    /// Ends every session `migrate` has open on this database; returns how many.
    pub fn kill_migrate_sessions(&self) -> i64 {
        let sql = format!(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' AND application_name = 'migrate') t",
            self.name
        );
        let sql2 = sql.clone();
        block(async move {
            let mut c = PgConnection::connect(&admin_url()).await.unwrap();
            sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql2))
                .fetch_one(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        })
    }

    pub fn exec(&self, sql: &str) {
        let sql = sql.to_string();
        block(async {
            let mut c = PgConnection::connect(&self.url).await.unwrap();
            sqlx::raw_sql(AssertSqlSafe(sql.clone()))
                .execute(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        });
    }

    pub fn scalar(&self, sql: &str) -> i64 {
        let sql = sql.to_string();
        block(async {
            let mut c = PgConnection::connect(&self.url).await.unwrap();
            sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.clone()))
                .fetch_one(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        })
    }

    /// Each row of the query as JSON text (`row_to_json`), in the query's order.
    pub fn rows(&self, sql: &str) -> Vec<serde_json::Value> {
        let wrapped = format!("SELECT row_to_json(t)::text FROM ({sql}) t");
        block(async {
            let mut c = PgConnection::connect(&self.url).await.unwrap();
            let rows: Vec<String> = sqlx::query_scalar(AssertSqlSafe(wrapped.clone()))
                .fetch_all(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{wrapped}: {e}"));
            rows.into_iter().map(|r| serde_json::from_str(&r).unwrap()).collect()
        })
    }

    /// One digest of a demo target table's rows by id, leaving out the columns the target fills
    /// itself at load time (`created_at`/`updated_at` default to now() where not mapped).
    pub fn demo_digest(&self, table: &str) -> String {
        self.digest(
            &format!("(SELECT id, (to_jsonb(x) - 'created_at' - 'updated_at')::text AS row FROM {table} x)"),
            "id",
        )
    }

    /// One digest of a whole table's content, ordered by `order`.
    pub fn digest(&self, table: &str, order: &str) -> String {
        let sql = format!("SELECT coalesce(md5(string_agg(t::text, E'\\n' ORDER BY {order})), 'empty') FROM {table} t");
        block(async {
            let mut c = PgConnection::connect(&self.url).await.unwrap();
            sqlx::query_scalar::<_, String>(AssertSqlSafe(sql))
                .fetch_one(&mut c)
                .await
                .unwrap()
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = admin_url();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            block(async {
                if let Ok(mut c) = PgConnection::connect(&admin).await {
                    let _ = c
                        .execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                        .await;
                }
            })
        })
        .join();
    }
}

/// A working directory with a mappings/ folder and a SQLite source.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("mappings")).unwrap();
        Project { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn source_url(&self) -> String {
        format!("sqlite://{}", self.path().join("legacy.db").display())
    }

    pub fn mapping(&self, name: &str, text: &str) {
        std::fs::write(self.path().join("mappings").join(format!("{name}.toml")), text).unwrap();
    }

    /// Creates legacy.db with the given SQL script.
    pub fn sqlite(&self, sql: &str) {
        let c = rusqlite::Connection::open(self.file("legacy.db")).unwrap();
        c.execute_batch(sql).unwrap();
    }

    /// Runs the binary in the project directory with the source and target set.
    pub fn run(&self, db: &TestDb, args: &[&str]) -> Out {
        self.command(db, args).output().map(Out).unwrap()
    }

    pub fn command(&self, db: &TestDb, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_migrate"));
        c.args(args)
            .current_dir(self.path())
            .env("MIGRATE_SOURCE", self.source_url())
            .env("DATABASE_URL", &db.url)
            .env_remove("ORACLE_USER")
            .stdin(Stdio::null());
        c
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }
}

pub struct Out(pub Output);

impl Out {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    /// Asserts the exit code, showing both streams when it is wrong.
    pub fn expect(self, code: i32) -> Out {
        assert_eq!(
            self.code(),
            code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// Copies the repository's demo mappings into the project.
pub fn demo_mappings(p: &Project) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), p.path().join("mappings").join(e.file_name())).unwrap();
    }
}

/// Creates the demo source at `scale` and the demo target schema.
pub fn demo(p: &Project, db: &TestDb, scale: &str) {
    demo_mappings(p);
    p.run(db, &["demo", "--out", "legacy.db", "--scale", scale, "--create-target"])
        .expect(0);
}

pub const DEMO_TABLES: [(&str, &str); 8] = [
    ("carrier", "shipping_carrier"),
    ("line", "production_line"),
    ("customer", "customers_customer"),
    ("coil", "inventory_coil"),
    ("job", "production_job"),
    ("skid", "inventory_skid"),
    ("qa", "quality_qaresult"),
    ("shipment", "shipping_shipment"),
];

/// A tiny xorshift generator for randomized tests; [`Rng::seeded`] prints its seed so a failure
/// can be replayed with `MIGRATE_TEST_SEED`.
pub struct Rng(pub u64);

impl Rng {
    /// Seeded from `MIGRATE_TEST_SEED`, else the clock; the seed is printed with `label`.
    pub fn seeded(label: &str) -> Rng {
        let seed = std::env::var("MIGRATE_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("{label}: seed {seed} (MIGRATE_TEST_SEED={seed} replays it)");
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn pick<T: Clone>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize].clone()
    }
}

impl TestDb {
    /// A query's single number, or `None` when it cannot be run (the state tables do not exist
    /// yet, say): for polling a running migration.
    pub fn try_scalar(&self, sql: &str) -> Option<i64> {
        block(async {
            let mut c = PgConnection::connect(&self.url).await.ok()?;
            sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.to_string()))
                .fetch_one(&mut c)
                .await
                .ok()
        })
    }
}

/// Waits until the running `child` has committed at least `rows` loaded rows (over every
/// progress row), failing the test after 60 s or if the run ends first.
pub fn wait_for_loaded(db: &TestDb, child: &mut std::process::Child, rows: i64) {
    let t0 = std::time::Instant::now();
    loop {
        assert!(t0.elapsed().as_secs() < 60, "fewer than {rows} rows loaded after 60 s");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended before {rows} rows were loaded: {status}");
        }
        let loaded = db.try_scalar("SELECT coalesce(sum(rows_loaded), 0)::bigint FROM migrate.progress");
        if loaded.is_some_and(|n| n >= rows) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Sends `signal` (libc::SIGINT, SIGTERM, SIGSTOP, SIGCONT …) to the process `pid`.
pub fn send_signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) only sends a signal to a process of this test.
    unsafe { libc::kill(pid as i32, signal) };
}

/// The `migration_*.log` files in `dir`.
pub fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    let n = p.file_name().unwrap().to_string_lossy().into_owned();
                    n.starts_with("migration_") && n.ends_with(".log")
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
