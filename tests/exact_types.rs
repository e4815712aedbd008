//! Property test of every target type the encoder supports: random values, boundaries
//! included, are encoded on the client, loaded by binary COPY, and compared by PostgreSQL with
//! what the source said. Each value must arrive equal, or be refused (a reject with a reason);
//! never stored different. Refusals by the server are allowed too (they become rejects in a
//! run); the test counts them apart. Seeded: the seed is printed, and `MIGRATE_TEST_SEED`
//! replays it; `MIGRATE_PROP_VALUES` sets the values per type (default 600).

use crate::support::*;
use chrono::{NaiveDate, NaiveDateTime};
use migrate::plan::TargetTable;
use migrate::sink::copy;
use migrate::sink::pgtype::PgType;
use migrate::value::{Decimal, Value};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// How PostgreSQL decides that the stored value equals what the source said.
#[derive(Clone, Copy, Debug)]
enum Oracle {
    /// `stored::numeric = src::numeric`: the exact number (integers, decimals).
    Number,
    /// `stored::float8::int8 = src::int8` for an integral float: an integer held exactly
    /// (a float's own cast to numeric keeps only 6 or 15 digits).
    IntInFloat,
    /// `stored = src::float8::float4`: a source float narrowed as PostgreSQL narrows it.
    FloatNarrowed,
    /// `stored = src::<column type>`: PostgreSQL's own input of the exact text (floats from
    /// decimal text round to the nearest float there too).
    OwnInput,
    /// `extract(epoch from stored) = src::numeric`: the instant, to the nanosecond.
    Epoch,
    /// `stored - date '2000-01-01' = src::int`.
    Days,
    /// `stored::int = src::int`.
    Bool,
    /// `stored::text = src` (`char(n)`: trailing blanks carry no meaning).
    Text,
    /// `stored = srcb` (bytea).
    Bytes,
}

/// A source value with the exact text of what it says, and how to compare.
struct Case {
    value: Value,
    src: Option<String>,
    srcb: Option<Vec<u8>>,
    oracle: Oracle,
}

fn decimal_text(rng: &mut Rng) -> String {
    let digits = 1 + rng.below(45) as usize;
    let mut s: String = (0..digits).map(|_| (b'0' + rng.below(10) as u8) as char).collect();
    if rng.below(2) == 0 {
        let at = rng.below(digits as u64 + 1) as usize;
        s.insert(at, '.');
        if s.starts_with('.') {
            s.insert(0, '0');
        }
        if s.ends_with('.') {
            s.push('0');
        }
    }
    if rng.below(3) == 0 {
        s = format!("{s}e{}", rng.below(80) as i64 - 40);
    }
    if rng.below(2) == 0 { format!("-{s}") } else { s }
}

fn float(rng: &mut Rng) -> f64 {
    let (bits, scaled) = (rng.next(), rng.next() as i64);
    rng.pick(&[
        0.0,
        -0.0,
        0.1,
        1.5,
        f64::MAX,
        f64::MIN_POSITIVE,
        5e-324,
        1e300,
        1e-50,
        -1e-50,
        3.4028235e38,
        3.4028236e38,
        1.1754944e-38,
        1e-45,
        7e-46,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        9007199254740993.0,
        f64::from_bits(bits),
        (scaled as f64) / 1e6,
    ])
}

fn int(rng: &mut Rng) -> i64 {
    let (any, shift) = (rng.next() as i64, rng.below(63));
    rng.pick(&[
        0,
        1,
        -1,
        i16::MAX as i64,
        i16::MIN as i64,
        i16::MAX as i64 + 1,
        i32::MAX as i64,
        i32::MIN as i64,
        i32::MAX as i64 + 1,
        i64::MAX,
        i64::MIN,
        (1 << 24) + 1,
        1 << 24,
        (1 << 53) + 1,
        1 << 53,
        any,
        any >> shift,
    ])
}

fn date(rng: &mut Rng) -> NaiveDate {
    let fixed = [
        (-4713, 11, 24),
        (-4713, 11, 23),
        (1, 1, 1),
        (0, 12, 31),
        (1582, 10, 10),
        (1899, 12, 31),
        (2000, 1, 1),
        (2038, 1, 19),
        (9999, 12, 31),
        (262142, 12, 31),
    ];
    if rng.below(3) == 0 {
        let (y, m, d) = rng.pick(&fixed);
        return NaiveDate::from_ymd_opt(y, m, d).unwrap();
    }
    let y = rng.below(12_000) as i32 - 5000;
    NaiveDate::from_ymd_opt(y, 1 + rng.below(12) as u32, 1 + rng.below(28) as u32).unwrap()
}

fn timestamp(rng: &mut Rng) -> NaiveDateTime {
    let nanos = match rng.below(5) {
        0 => 0,
        1 => rng.below(1_000_000) as u32 * 1000,
        2 => rng.below(1000) as u32 * 1_000_000,
        3 => 750_000_000,
        _ => rng.below(1_000_000_000) as u32,
    };
    date(rng)
        .and_hms_nano_opt(rng.below(24) as u32, rng.below(60) as u32, rng.below(60) as u32, nanos)
        .unwrap()
}

/// Seconds since 1970-01-01 00:00 as whole seconds (rounded down) and nanoseconds.
fn epoch(t: NaiveDateTime) -> String {
    use chrono::Timelike;
    let base = NaiveDate::from_ymd_opt(1970, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let whole = t.with_nanosecond(0).unwrap().signed_duration_since(base).num_seconds();
    format!("{whole} {}", t.nanosecond())
}

fn text(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 => (0..rng.below(12))
            .map(|_| char::from_u32(rng.below(0x11000) as u32).unwrap_or('\u{fffd}'))
            .collect(),
        1 => "é".repeat(rng.below(40) as usize),
        2 => "a".repeat(60 + rng.below(6) as usize),
        3 => format!("{}{}", "ab", " ".repeat(rng.below(4) as usize)),
        4 => rng
            .pick(&["", " ", "a\0b", "😀x", "ß", "ab", "abc", "abcd", "abcdef"])
            .to_string(),
        _ => "€".repeat(rng.below(25) as usize),
    }
}

/// A random case for a column of type `ty`.
fn case(rng: &mut Rng, ty: &PgType) -> Case {
    let number = |value: Value, src: String, oracle: Oracle| Case {
        value,
        src: Some(src),
        srcb: None,
        oracle,
    };
    match ty {
        PgType::Int2 | PgType::Int4 | PgType::Int8 | PgType::Numeric(_) | PgType::Float4 | PgType::Float8 => {
            let floaty = matches!(ty, PgType::Float4 | PgType::Float8);
            match rng.below(4) {
                0 => {
                    let i = int(rng);
                    let oracle = if floaty { Oracle::IntInFloat } else { Oracle::Number };
                    number(Value::Int(i), i.to_string(), oracle)
                }
                1 => {
                    let f = float(rng);
                    let src = if f.is_nan() {
                        "NaN".to_string()
                    } else if f.is_infinite() {
                        if f > 0.0 { "Infinity".into() } else { "-Infinity".into() }
                    } else {
                        format!("{f:e}")
                    };
                    let oracle = match ty {
                        PgType::Float4 => Oracle::FloatNarrowed,
                        PgType::Float8 => Oracle::OwnInput,
                        _ => Oracle::Number,
                    };
                    number(Value::Float(f), src, oracle)
                }
                2 => {
                    let t = decimal_text(rng);
                    let d = Decimal::parse(&t);
                    match d {
                        Ok(d) => number(
                            Value::Decimal(d.clone()),
                            d.to_string(),
                            if floaty { Oracle::OwnInput } else { Oracle::Number },
                        ),
                        Err(_) => number(Value::Text(t.clone()), t, Oracle::Number),
                    }
                }
                _ => {
                    let t = decimal_text(rng);
                    let padded = format!(" {t} ");
                    number(
                        Value::Text(padded),
                        t,
                        if floaty { Oracle::OwnInput } else { Oracle::Number },
                    )
                }
            }
        }
        PgType::Date => {
            let d = date(rng);
            let days = d
                .signed_duration_since(NaiveDate::from_ymd_opt(2000, 1, 1).unwrap())
                .num_days();
            let value = if rng.below(3) == 0 {
                Value::Timestamp(d.and_hms_opt(0, 0, rng.below(2) as u32).unwrap())
            } else {
                Value::Date(d)
            };
            let src = match &value {
                Value::Timestamp(t) if t.time() != chrono::NaiveTime::MIN => "not a date".to_string(),
                _ => days.to_string(),
            };
            number(value, src, Oracle::Days)
        }
        PgType::Timestamp(_) | PgType::TimestampTz(_) => {
            let t = timestamp(rng);
            let value = match rng.below(3) {
                0 => Value::Text(t.format("%Y-%m-%d %H:%M:%S%.f").to_string()),
                1 if matches!(ty, PgType::TimestampTz(_)) => Value::TimestampTz(t.and_utc()),
                _ => Value::Timestamp(t),
            };
            let value = match value {
                // chrono prints years before 1 and after 9999 with a sign the ISO parser reads.
                Value::Text(s) if matches!(ty, PgType::TimestampTz(_)) => {
                    Value::Text(format!("{}Z", s.replacen(' ', "T", 1)))
                }
                v => v,
            };
            number(value, epoch(t), Oracle::Epoch)
        }
        PgType::Text | PgType::Name | PgType::Varchar(_) | PgType::Bpchar(_) => {
            if rng.below(8) == 0 {
                let b: Vec<u8> = (0..rng.below(6)).map(|_| rng.next() as u8).collect();
                let src = String::from_utf8(b.clone()).ok();
                return Case {
                    value: Value::Bytes(b),
                    src,
                    srcb: None,
                    oracle: Oracle::Text,
                };
            }
            let t = text(rng);
            number(Value::Text(t.clone()), t, Oracle::Text)
        }
        PgType::Bytea => {
            let b: Vec<u8> = (0..rng.below(40)).map(|_| rng.next() as u8).collect();
            Case {
                value: Value::Bytes(b.clone()),
                src: None,
                srcb: Some(b),
                oracle: Oracle::Bytes,
            }
        }
        PgType::Bool => {
            let (v, s) = match rng.below(4) {
                0 => (Value::Bool(true), "1"),
                1 => (Value::Bool(false), "0"),
                2 => (Value::Int(rng.below(3) as i64), "x"),
                _ => (Value::Text("Y".into()), "x"),
            };
            let src = match &v {
                Value::Int(i) => i.to_string(),
                _ => s.to_string(),
            };
            number(v, src, Oracle::Bool)
        }
        PgType::Uuid => {
            let hex: String = (0..32)
                .map(|_| b"0123456789abcdef"[rng.below(16) as usize] as char)
                .collect();
            let shown = match rng.below(4) {
                0 => format!("{{{hex}}}"),
                1 => format!(
                    "{}-{}-{}-{}-{}",
                    &hex[..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..]
                ),
                2 => hex.to_uppercase(),
                _ => format!("é{}", &hex[2..]),
            };
            let src = format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            );
            number(Value::Text(shown), src, Oracle::Text)
        }
        PgType::Json | PgType::Jsonb => {
            let t = rng
                .pick(&[
                    "{\"b\":1, \"a\": [1.50, \"é\"]}",
                    "{\"a\":1,\"a\":2}",
                    "[1e400]",
                    "\"\\u0000\"",
                    "{",
                    "  null ",
                    "123456789012345678901234567890",
                ])
                .to_string();
            number(
                Value::Text(t.clone()),
                t,
                if matches!(ty, PgType::Jsonb) {
                    Oracle::OwnInput
                } else {
                    Oracle::Text
                },
            )
        }
        PgType::Unsupported(_) => unreachable!("not in the list"),
    }
}

fn comparison(o: Oracle, column_type: &str) -> String {
    match o {
        Oracle::Number => "t.v::numeric = s.src::numeric".into(),
        Oracle::IntInFloat => "trunc(t.v::float8) = t.v::float8 AND t.v::float8::int8 = s.src::int8".into(),
        Oracle::FloatNarrowed => "t.v = s.src::float8::float4".into(),
        Oracle::OwnInput => format!("t.v = s.src::{column_type}"),
        Oracle::Epoch => {
            "extract(epoch FROM t.v) = split_part(s.src, ' ', 1)::numeric + split_part(s.src, ' ', 2)::numeric / 1000000000"
                .into()
        }
        Oracle::Bool => "t.v::int = s.src::int".into(),
        Oracle::Days => "t.v - date '2000-01-01' = s.src::int".into(),
        Oracle::Text if column_type.starts_with("char(") => "t.v::text = rtrim(s.src, ' ')".into(),
        Oracle::Text => "t.v::text = s.src".into(),
        Oracle::Bytes => "t.v = s.srcb".into(),
    }
}

/// One binary COPY of whole tuples.
async fn send(c: &mut PgConnection, copy_sql: &str, tuples: Vec<Vec<u8>>) -> Result<u64, sqlx::Error> {
    let mut cp = c.copy_in_raw(copy_sql).await?;
    cp.send(copy::copy_data(tuples.iter().map(Vec::as_slice))).await?;
    cp.finish().await
}

const TYPES: &[&str] = &[
    "smallint",
    "integer",
    "bigint",
    "real",
    "double precision",
    "numeric",
    "numeric(5,2)",
    "numeric(3,-1)",
    "numeric(3,5)",
    "numeric(38,0)",
    "text",
    "varchar(5)",
    "char(3)",
    "name",
    "boolean",
    "date",
    "timestamp",
    "timestamp(0)",
    "timestamp(3)",
    "timestamptz",
    "timestamptz(0)",
    "bytea",
    "uuid",
    "json",
    "jsonb",
];

#[test]
fn every_value_arrives_equal_or_is_refused_never_different() {
    let db = TestDb::new();
    let mut rng = Rng::seeded("exact_types");
    let seed = rng.0;
    let per_type: usize = std::env::var("MIGRATE_PROP_VALUES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    block(async {
        let mut c = PgConnection::connect(&db.url).await.unwrap();
        let mut report = Vec::new();
        for (n, column_type) in TYPES.iter().enumerate() {
            let table = format!("t{n}");
            sqlx::raw_sql(AssertSqlSafe(format!(
                "CREATE TABLE {table} (id int, v {column_type}); CREATE TABLE s{n} (id int, src text, srcb bytea, oracle text)"
            )))
            .execute(&mut c)
            .await
            .unwrap();
            let cols = migrate::sink::table_columns(&mut c, &TargetTable::parse(&table))
                .await
                .unwrap()
                .unwrap();
            let ty = cols[1].ty.clone();
            assert!(!matches!(ty, PgType::Unsupported(_)), "{column_type}");
            let (mut accepted, mut refused, mut server_refused) = (0, 0, 0);
            let mut rows: Vec<(i32, Vec<u8>)> = Vec::new();
            for id in 0..per_type as i32 {
                let case = case(&mut rng, &ty);
                let mut field = Vec::new();
                match ty.encode(&case.value, &mut field) {
                    Err(_) => refused += 1,
                    Ok(()) => {
                        let mut tuple = Vec::new();
                        copy::begin_tuple(&mut tuple, 2);
                        copy::push_field(&mut tuple, Some(&id.to_be_bytes()));
                        tuple.extend_from_slice(&field);
                        rows.push((id, tuple));
                        sqlx::query(AssertSqlSafe(format!("INSERT INTO s{n} VALUES ($1, $2, $3, $4)")))
                            .bind(id)
                            .bind(case.src.as_deref())
                            .bind(case.srcb.as_deref())
                            .bind(format!("{:?}", case.oracle))
                            .execute(&mut c)
                            .await
                            .unwrap();
                    }
                }
            }
            // One COPY for all; if the server refuses one, each alone (a server refusal is a
            // reject in a run, which keeps the promise).
            let copy_sql = format!("COPY {table} (id, v) FROM STDIN (FORMAT binary)");
            if send(&mut c, &copy_sql, rows.iter().map(|(_, t)| t.clone()).collect())
                .await
                .is_err()
            {
                for (id, t) in &rows {
                    if let Err(e) = send(&mut c, &copy_sql, vec![t.clone()]).await {
                        server_refused += 1;
                        sqlx::query(AssertSqlSafe(format!("DELETE FROM s{n} WHERE id = $1")))
                            .bind(*id)
                            .execute(&mut c)
                            .await
                            .unwrap();
                        let code = e
                            .as_database_error()
                            .and_then(|d| d.code().map(|c| c.to_string()))
                            .unwrap_or_default();
                        assert!(
                            code.starts_with("22"),
                            "{column_type}: the server refused row {id} with {e} (SQLSTATE {code}): not a data error"
                        );
                    }
                }
            }
            accepted += rows.len() - server_refused;
            // Every stored value equals what the source said, by PostgreSQL's comparison.
            let used: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!("SELECT DISTINCT oracle FROM s{n}")))
                .fetch_all(&mut c)
                .await
                .unwrap();
            for oracle in [
                Oracle::Number,
                Oracle::IntInFloat,
                Oracle::FloatNarrowed,
                Oracle::OwnInput,
                Oracle::Epoch,
                Oracle::Days,
                Oracle::Bool,
                Oracle::Text,
                Oracle::Bytes,
            ]
            .into_iter()
            .filter(|o| used.contains(&format!("{o:?}")))
            {
                let sql = format!(
                    "SELECT t.id, t.v::text, s.src FROM {table} t JOIN s{n} s USING (id)
                     WHERE s.oracle = '{oracle:?}' AND NOT coalesce({}, false)",
                    comparison(oracle, column_type)
                );
                let different: Vec<(i32, Option<String>, Option<String>)> =
                    match sqlx::query_as(AssertSqlSafe(sql.clone())).fetch_all(&mut c).await {
                        Ok(rows) => rows,
                        Err(e) => panic!("{column_type}: comparing with {oracle:?}: {e}\n{sql}"),
                    };
                assert!(
                    different.is_empty(),
                    "{column_type} (seed {seed}): stored values differ from the source ({oracle:?}), (id, stored, source): {:?}",
                    &different[..different.len().min(10)]
                );
            }
            let stored: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&mut c)
                .await
                .unwrap();
            assert_eq!(stored as usize, accepted, "{column_type}");
            report.push(format!(
                "{column_type}: {accepted} equal, {refused} refused by the encoder, {server_refused} by the server"
            ));
        }
        eprintln!("{}", report.join("\n"));
    });
}
