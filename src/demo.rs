//! `migrate demo`: the demo legacy database, an ABIS-style steel processing ERP in SQLite, with
//! the dirt real legacy data has (Y/N flags, 'DD-MON-YY' text dates, phone numbers in five
//! formats, mixed-case e-mails with blanks, trailing blanks, empty strings, a few values no
//! mapping can save). Deterministic: the same scale gives the same rows.

use crate::cli::DemoArgs;
use crate::error::UsageError;
use anyhow::{Context, Result};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor};
use std::str::FromStr;

pub const TARGET_SCHEMA: &str = include_str!("../demo/target_schema.sql");

const LEGACY_SCHEMA: &str = r#"
CREATE TABLE AB_CARRIER (CARRIER_ID INTEGER PRIMARY KEY, CARRIER_CODE CHAR(10), CARRIER_NAME VARCHAR2(100), PHONE VARCHAR2(30), ACTIVE_FLAG CHAR(1));
CREATE TABLE AB_LINE (LINE_ID INTEGER PRIMARY KEY, LINE_CODE CHAR(10), DESCRIPTION VARCHAR2(200), MAX_WIDTH VARCHAR2(20), ACTIVE_YN CHAR(1));
CREATE TABLE AB_CUSTOMER (CUSTOMER_ID INTEGER PRIMARY KEY, CUST_CODE CHAR(12), CUST_NAME VARCHAR2(120), EMAIL VARCHAR2(254), PHONE VARCHAR2(30), CREDIT_LIMIT VARCHAR2(20), ACTIVE_FLAG CHAR(1), CREATED VARCHAR2(9), STATUS CHAR(1));
CREATE TABLE AB_COIL (COIL_ID INTEGER PRIMARY KEY, COIL_NO CHAR(20), CUSTOMER_ID INTEGER, GRADE VARCHAR2(20), WEIGHT_KG VARCHAR2(20), WIDTH_MM REAL, THICK_MM VARCHAR2(10), RECV_DATE VARCHAR2(9), HOLD_FLAG CHAR(1));
CREATE TABLE AB_JOB (JOB_ID INTEGER PRIMARY KEY, JOB_NO CHAR(20), COIL_ID INTEGER, LINE_ID INTEGER, STATUS_CD CHAR(1), SCHED_TS VARCHAR2(19), DONE_TS VARCHAR2(19));
CREATE TABLE AB_SKID (SKID_ID INTEGER PRIMARY KEY, SKID_NO CHAR(20), JOB_ID INTEGER, PIECES INTEGER, NET_WT VARCHAR2(20), CREATED_TS VARCHAR2(20));
CREATE TABLE AB_QA_RESULT (QA_ID INTEGER PRIMARY KEY, COIL_ID INTEGER, TEST_CODE VARCHAR2(20), RESULT_VAL VARCHAR2(20), PASS_FAIL CHAR(1), TESTED_ON VARCHAR2(9), REMARKS VARCHAR2(400));
CREATE TABLE AB_SHIPMENT (SHIPMENT_ID INTEGER PRIMARY KEY, BOL_NO CHAR(20), CUSTOMER_ID INTEGER, CARRIER_ID INTEGER, SKID_ID INTEGER, SHIP_DATE VARCHAR2(9), WEIGHT VARCHAR2(20), DELIVERED_FLAG CHAR(1));
"#;

/// xorshift64*: small, deterministic, good enough for fake data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const MON: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

fn dd_mon_yy(r: &mut Rng) -> String {
    let year = 1988 + r.below(37);
    format!("{:02}-{}-{:02}", 1 + r.below(28), MON[r.below(12) as usize], year % 100)
}

fn ts(r: &mut Rng) -> String {
    format!(
        "{}-{:02}-{:02} {:02}:{:02}:{:02}",
        2015 + r.below(10),
        1 + r.below(12),
        1 + r.below(28),
        r.below(24),
        r.below(60),
        r.below(60)
    )
}

fn phone(r: &mut Rng) -> String {
    let (a, b, c) = (200 + r.below(800), 200 + r.below(800), r.below(10000));
    match r.below(6) {
        0 => format!("({a}) {b}-{c:04}"),
        1 => format!("{a}.{b}.{c:04}"),
        2 => format!("{a}-{b}-{c:04}"),
        3 => format!("{a}{b}{c:04}"),
        4 => format!("+1 {a} {b} {c:04}"),
        _ => String::new(),
    }
}

fn money(r: &mut Rng, max: u64) -> String {
    let v = r.below(max * 100);
    match r.below(4) {
        0 => format!("{}.{:02}", v / 100, v % 100),
        1 => format!("  {} ", v / 100),
        2 => format!("{}.{}", v / 100, (v % 100) / 10),
        _ => format!("{}.{:02}0", v / 100, v % 100),
    }
}

fn flag(r: &mut Rng) -> &'static str {
    match r.below(20) {
        0 => "",
        1 => "1",
        2 => "0",
        3..=14 => "Y",
        _ => "N",
    }
}

/// Rows per table at scale 1.
pub fn counts(scale: f64) -> [u64; 8] {
    let n = |base: f64| ((base * scale).round() as u64).max(1);
    [12, 6, n(400.0), n(2000.0), n(3000.0), n(5000.0), n(4000.0), n(1500.0)]
}

pub async fn run(args: &DemoArgs, target: Option<&str>) -> Result<()> {
    if !(args.scale > 0.0 && args.scale <= 1000.0) {
        return Err(UsageError(format!("--scale must be between 0 and 1000, not {}", args.scale)).into());
    }
    if args.out.exists() {
        if !args.force {
            return Err(UsageError(format!(
                "{} already exists; pass --force to overwrite it",
                args.out.display()
            ))
            .into());
        }
        std::fs::remove_file(&args.out).with_context(|| format!("removing {}", args.out.display()))?;
    }
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let total = generate(&args.out, args.scale).await?;
    println!(
        "demo legacy database written to {} ({total} rows in 8 tables)",
        args.out.display()
    );
    if args.create_target {
        let url = target.ok_or_else(|| UsageError("--create-target needs --target URL or DATABASE_URL".into()))?;
        let mut conn = crate::sink::connect(url).await?;
        guard_target(&mut conn, url, args.force).await?;
        sqlx::raw_sql(TARGET_SCHEMA)
            .execute(&mut conn)
            .await
            .context("creating the demo target schema")?;
        println!("demo target tables created in {}", crate::telemetry::redact_url(url));
    }
    Ok(())
}

/// The tables `--create-target` drops and creates (demo/target_schema.sql).
pub const DEMO_TABLES: [&str; 8] = [
    "carriers_carrier",
    "production_line",
    "customers_customer",
    "inventory_coil",
    "production_job",
    "inventory_skid",
    "quality_qaresult",
    "shipping_shipment",
];

/// The demo mappings' entities, whose state `--create-target` may forget.
pub const DEMO_ENTITIES: [&str; 8] = [
    "carrier",
    "line",
    "customer",
    "coil",
    "job",
    "skid",
    "qa_result",
    "shipment",
];

/// What in the database `--create-target` would destroy that is not the demo's: other tables,
/// other entities' state in the migrate schema, keys and indexes held by `--defer-indexes`.
const NOT_THE_DEMOS: &str = "SELECT format('table %I.%I', n.nspname, c.relname)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'migrate')
       AND left(n.nspname, 3) <> 'pg_' AND NOT (n.nspname = 'public' AND c.relname = ANY($1))
    UNION ALL
    SELECT format('the progress of entity %s in migrate.progress', entity) FROM migrate.progress
     WHERE to_regclass('migrate.progress') IS NOT NULL AND NOT (split_part(split_part(entity, '#', 1), '@', 1) = ANY($2))
    UNION ALL
    SELECT format('%s key(s), index(es) or foreign key(s) held in migrate.held_constraints (the only record of them)', count(*))
      FROM migrate.held_constraints HAVING count(*) > 0
    ORDER BY 1";

/// Refuses to wipe a database that holds more than the demo: `--create-target` drops the demo
/// tables and the whole migrate schema, which may be another migration's only record of its
/// progress and of the keys it took off its tables. With `force`, asks first.
async fn guard_target(conn: &mut sqlx::PgConnection, url: &str, force: bool) -> Result<()> {
    let has_state: bool = sqlx::query_scalar(
        "SELECT to_regclass('migrate.progress') IS NOT NULL AND to_regclass('migrate.held_constraints') IS NOT NULL",
    )
    .fetch_one(&mut *conn)
    .await?;
    let sql = if has_state {
        NOT_THE_DEMOS.to_string()
    } else {
        // Without the migrate schema only the first part applies.
        NOT_THE_DEMOS[..NOT_THE_DEMOS.find("    UNION ALL").unwrap_or(NOT_THE_DEMOS.len())].to_string() + " ORDER BY 1"
    };
    let found: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(DEMO_TABLES.to_vec())
        .bind(DEMO_ENTITIES.to_vec())
        .fetch_all(&mut *conn)
        .await?;
    if found.is_empty() {
        return Ok(());
    }
    let shown = crate::telemetry::redact_url(url);
    let mut list: Vec<String> = found.iter().take(10).cloned().collect();
    if found.len() > 10 {
        list.push(format!("… {} more", found.len() - 10));
    }
    let what = format!(
        "{shown} holds more than the demo ({}); --create-target drops the demo tables and the whole migrate schema there",
        list.join("; ")
    );
    if !force {
        return Err(UsageError(format!(
            "refusing: {what}. Give the demo a database of its own (--target postgres://…/migrate_demo), or pass --force to be asked"
        ))
        .into());
    }
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Err(UsageError(format!(
            "refusing: {what}, and stdin is not a terminal to ask; give the demo a database of its own"
        ))
        .into());
    }
    eprint!("{what}. Type the database's name to go on: ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    let dbname: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&mut *conn)
        .await?;
    if answer.trim() != dbname {
        return Err(crate::error::Failed("aborted: nothing was dropped".into()).into());
    }
    Ok(())
}

async fn generate(path: &std::path::Path, scale: f64) -> Result<u64> {
    let url = format!("sqlite://{}", path.display());
    let mut conn = SqliteConnectOptions::from_str(&url)?
        .create_if_missing(true)
        .connect()
        .await
        .with_context(|| format!("creating {}", path.display()))?;
    conn.execute(LEGACY_SCHEMA).await?;
    let [carriers, lines, customers, coils, jobs, skids, qas, shipments] = counts(scale);
    let mut r = Rng(0x9E3779B97F4A7C15);
    let mut tx = conn.begin().await?;

    let carrier_names = [
        "UPS Freight",
        "Old Dominion",
        "Estes Express",
        "XPO Logistics",
        "Saia",
        "ABF Freight",
        "R+L Carriers",
        "YRC",
        "Central Transport",
        "Averitt",
        "Southeastern",
        "Pitt Ohio",
    ];
    for i in 1..=carriers {
        sqlx::query("INSERT INTO AB_CARRIER VALUES (?,?,?,?,?)")
            .bind(i as i64)
            .bind(format!("CR{i:03}   "))
            .bind(format!("{}  ", carrier_names[(i as usize - 1) % carrier_names.len()]))
            .bind(phone(&mut r))
            .bind(if i % 5 == 0 { "N" } else { "Y" })
            .execute(&mut *tx)
            .await?;
    }
    for i in 1..=lines {
        sqlx::query("INSERT INTO AB_LINE VALUES (?,?,?,?,?)")
            .bind(i as i64)
            .bind(format!("L{i}"))
            .bind(r.pick(&[
                "Slitter ",
                "Cut-to-length",
                "  Pickle line",
                "Temper mill",
                "Blanking press",
                "",
            ]))
            .bind(r.pick(&["1524.00", "1828.8", "1250", "  2032.00"]))
            .bind(r.pick(&["Y", "N", ""]))
            .execute(&mut *tx)
            .await?;
    }
    let first = ["john", "MARY", "Wei", "o'brien", "José", "ANNA", "li", "Raj"];
    let last = [
        "Smith", "STEEL", "nguyen", "Müller", "Kowalski", "Ferreira", "Okafor", "Tanaka",
    ];
    let companies = [
        "Acme Steel",
        "great lakes fabricating",
        "NORTHERN METAL WORKS",
        "Dakota Stamping",
        "Pioneer Auto Parts",
        "  Summit Tube  ",
        "Bluewater Appliance",
        "Keystone HVAC",
    ];
    for i in 1..=customers {
        let email = if i % 211 == 0 {
            "n/a".to_string()
        } else if r.chance(8) {
            String::new()
        } else {
            let f = r.pick(&first);
            let l = r.pick(&last);
            let dom = r.pick(&["ACME.com", "example.COM", "steel-co.net"]);
            match r.below(3) {
                0 => format!(" {f}.{l}@{dom} "),
                1 => format!("{f}.{l} @{dom}"),
                _ => format!("{}{}@{dom}", f.to_uppercase(), i),
            }
        };
        sqlx::query("INSERT INTO AB_CUSTOMER VALUES (?,?,?,?,?,?,?,?,?)")
            .bind(i as i64)
            .bind(format!("C{i:06}  "))
            .bind(format!("{} #{i} ", r.pick(&companies)))
            .bind(email)
            .bind(phone(&mut r))
            .bind(if r.chance(5) {
                String::new()
            } else {
                money(&mut r, 250_000)
            })
            .bind(flag(&mut r))
            .bind(if r.chance(3) { String::new() } else { dd_mon_yy(&mut r) })
            .bind(if i % 37 == 0 { "D" } else { "A" })
            .execute(&mut *tx)
            .await?;
    }
    // Coils, QA results and shipments only belong to customers not marked deleted.
    let live_customer = |r: &mut Rng| loop {
        let c = 1 + r.below(customers);
        if !c.is_multiple_of(37) {
            return c as i64;
        }
    };
    for i in 1..=coils {
        let c = live_customer(&mut r);
        let thick = format!("{}.{:03}", r.below(6), r.below(1000));
        sqlx::query("INSERT INTO AB_COIL VALUES (?,?,?,?,?,?,?,?,?)")
            .bind(i as i64)
            .bind(format!("K{:07}", 1_000_000 + i))
            .bind(c)
            .bind(r.pick(&["304 SS", " 316l ", "A36", "1008 CR", "galv g90", "HSLA 50"]))
            .bind(format!("{}.{:03}", 5_000 + r.below(20_000), r.below(1000)))
            .bind((600 + r.below(1400)) as f64 + r.below(4) as f64 * 0.25)
            .bind(if i % 499 == 0 { "0.0625".to_string() } else { thick })
            .bind(dd_mon_yy(&mut r))
            .bind(r.pick(&["Y", "N", "N", "N", ""]))
            .execute(&mut *tx)
            .await?;
    }
    for i in 1..=jobs {
        let status = r.pick(&["S", "R", "C", "C", "C", "X"]);
        let done = if status == "C" { ts(&mut r) } else { String::new() };
        sqlx::query("INSERT INTO AB_JOB VALUES (?,?,?,?,?,?,?)")
            .bind(i as i64)
            .bind(format!("J-{i:08} "))
            .bind((1 + r.below(coils)) as i64)
            .bind((1 + r.below(lines)) as i64)
            .bind(status)
            .bind(ts(&mut r))
            .bind(done)
            .execute(&mut *tx)
            .await?;
    }
    for i in 1..=skids {
        let (h, ampm) = (1 + r.below(12), r.pick(&["AM", "PM"]));
        sqlx::query("INSERT INTO AB_SKID VALUES (?,?,?,?,?,?)")
            .bind(i as i64)
            .bind(format!("SK{i:08}"))
            .bind((1 + r.below(jobs)) as i64)
            .bind((1 + r.below(60)) as i64)
            .bind(format!("{}.{:01}", 200 + r.below(4000), r.below(10)))
            .bind(format!(
                "{:02}/{:02}/{} {:02}:{:02} {ampm}",
                1 + r.below(12),
                1 + r.below(28),
                2015 + r.below(10),
                h,
                r.below(60)
            ))
            .execute(&mut *tx)
            .await?;
    }
    for i in 1..=qas {
        sqlx::query("INSERT INTO AB_QA_RESULT VALUES (?,?,?,?,?,?,?)")
            .bind(i as i64)
            .bind((1 + r.below(coils)) as i64)
            .bind(r.pick(&["TENSILE", "YIELD", "HARDNESS", "ELONGATION"]))
            .bind(format!("{}.{:04}", r.below(900), r.below(10000)))
            .bind(r.pick(&["P", "P", "P", "F", ""]))
            .bind(dd_mon_yy(&mut r))
            .bind(r.pick(&[
                "",
                "retest ok   ",
                "edge crack\tnoted",
                "OK",
                "see \"lab\" report\nline 2",
            ]))
            .execute(&mut *tx)
            .await?;
    }
    for i in 1..=shipments {
        let skid = if r.chance(10) {
            None
        } else {
            Some((1 + r.below(skids)) as i64)
        };
        sqlx::query("INSERT INTO AB_SHIPMENT VALUES (?,?,?,?,?,?,?,?)")
            .bind(i as i64)
            .bind(format!("BOL{i:07}   "))
            .bind(live_customer(&mut r))
            .bind((1 + r.below(carriers)) as i64)
            .bind(skid)
            .bind(dd_mon_yy(&mut r))
            .bind(money(&mut r, 40_000))
            .bind(r.pick(&["Y", "N", "Y", ""]))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    conn.close().await?;
    Ok(carriers + lines + customers + coils + jobs + skids + qas + shipments)
}
