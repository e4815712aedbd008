//! The shipped `mappings/` against the demo, without databases: they are the document's entity
//! table (names, tables, field counts, dependencies), and each one turns a row of the SQLite
//! demo and the same row as Oracle hands it over (NUMBER, DATE, CHAR padding, '' as NULL) into
//! the same bytes for PostgreSQL, or refuses both for the same column.

use super::abis::{Cell, TABLES, TimeText, generate};
use crate::bind::{bind_without_databases, encode_row};
use crate::plan::{Entity, Relation};
use crate::sink::PgColumn;
use crate::sink::pgtype::PgType;
use crate::source::oracle::convert::{Fetched, to_value};
use crate::source::oracle::types::{OraType, parse};
use crate::value::{Decimal, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// The document's entity table: entity, source table, target table, fields, depends on.
const DOCUMENT: [(&str, &str, &str, usize, &[&str]); 8] = [
    ("carrier", "AB_CARRIER", "shipping_carrier", 8, &[]),
    ("line", "AB_LINE", "production_line", 4, &[]),
    ("customer", "AB_CUSTOMER", "customers_customer", 15, &[]),
    ("coil", "AB_COIL", "inventory_coil", 19, &["customer"]),
    ("job", "AB_JOB", "production_job", 20, &["customer", "coil"]),
    ("skid", "AB_SKID", "inventory_skid", 10, &["job"]),
    ("qa", "AB_QA_RESULT", "quality_qaresult", 10, &["job"]),
    (
        "shipment",
        "AB_SHIPMENT",
        "shipping_shipment",
        12,
        &["carrier", "customer"],
    ),
];

fn shipped() -> Vec<Entity> {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/mappings"));
    let files = crate::config::load_dir(dir).expect("mappings/ loads");
    crate::plan::compile(&files).expect("mappings/ compiles").entities
}

/// The demo's target tables (demo/target_schema.sql) as the catalog would describe them.
fn target_tables() -> BTreeMap<String, Vec<PgColumn>> {
    let mut tables = BTreeMap::new();
    let mut current: Option<(String, Vec<PgColumn>)> = None;
    for line in super::TARGET_SCHEMA.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("CREATE TABLE ") {
            current = Some((rest.trim_end_matches(" (").to_string(), Vec::new()));
        } else if line == ");" {
            let (name, cols) = current.take().expect("a table to close");
            tables.insert(name, cols);
        } else if let Some((_, cols)) = current.as_mut() {
            let mut words = line.split_whitespace();
            let (Some(name), Some(ty)) = (words.next(), words.next()) else {
                continue;
            };
            let ty = ty.trim_end_matches(',');
            let number = |s: &str| s.parse::<u32>().expect("a type modifier");
            let inner = ty.find('(').map(|i| &ty[i + 1..ty.len() - 1]);
            let pg = match ty.split('(').next().unwrap() {
                "bigint" => PgType::Int8,
                "integer" => PgType::Int4,
                "smallint" => PgType::Int2,
                "boolean" => PgType::Bool,
                "date" => PgType::Date,
                "timestamp" => PgType::Timestamp(6),
                "text" => PgType::Text,
                "varchar" => PgType::Varchar(inner.map(number)),
                "numeric" => {
                    let (p, s) = inner.expect("numeric(p,s)").split_once(',').unwrap();
                    PgType::Numeric(Some((number(p), number(s) as i32)))
                }
                other => panic!("target_schema.sql: type {other} of {name} is not known to this test"),
            };
            cols.push(PgColumn {
                name: name.to_string(),
                formatted: ty.to_string(),
                ty: pg,
                not_null: line.contains("NOT NULL") || line.contains("PRIMARY KEY"),
                has_default: line.contains("DEFAULT"),
                generated: false,
            });
        }
    }
    tables
}

#[test]
fn the_shipped_mappings_are_the_documents_entities() {
    let entities = shipped();
    let targets = target_tables();
    assert_eq!(entities.len(), DOCUMENT.len());
    for (name, source, target, fields, depends) in DOCUMENT {
        let e = entities
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no mappings/{name}.toml"));
        assert_eq!(e.relation, Relation::Table(source.into()), "{name}");
        assert_eq!(e.target.name, target, "{name}");
        assert_eq!(e.fields.len(), fields, "{name}: field count");
        let mut deps = e.depends_on.clone();
        deps.sort();
        let mut want: Vec<String> = depends.iter().map(|d| d.to_string()).collect();
        want.sort();
        assert_eq!(deps, want, "{name}: depends_on");
        // Every field is a column of the Django table; a column left out has a default or
        // takes NULL (the pre-flight's rule, checked by binding below).
        for f in &e.fields {
            assert!(
                targets[target].iter().any(|c| c.name == f.to),
                "{name}: {} is not a column of {target}",
                f.to
            );
        }
        assert_eq!(e.incremental.as_deref(), Some("LAST_MODIFIED"), "{name}");
        let t = TABLES.iter().find(|t| t.name == source).unwrap();
        assert_eq!(t.entity, name);
        assert!(t.cols.iter().any(|c| c.name == "LAST_MODIFIED"), "{source}");
    }
}

/// Pads CHAR(n) values with blanks, as Oracle stores them.
fn char_padded(s: &str, ty: &OraType) -> String {
    match ty {
        OraType::Char(n) => format!("{s:<width$}", width = *n as usize),
        _ => s.to_string(),
    }
}

/// What the Oracle adapter hands over for `cell` stored in a column of `declared` type, after
/// checking that Oracle would take the cell as the seed writes it (no silent rounding, no
/// ORA-01438 or ORA-12899).
fn oracle_value(cell: &Cell, declared: &str, column: &str) -> Value {
    let ty = parse(declared);
    let kind = ty.fetch_kind().expect("a supported type");
    let fits = |d: &Decimal| match ty {
        OraType::Number {
            precision: Some(p),
            scale: Some(s),
        } => {
            let s = s.max(0) as u32;
            assert!(
                d.significant_scale() <= s,
                "{column}: Oracle would round {d} to {declared}"
            );
            assert!(d.integer_digits() <= p as u32 - s, "{column}: {d} overflows {declared}");
        }
        OraType::Number { .. } | OraType::Float => {}
        _ => panic!("{column}: a number in a {declared} column"),
    };
    let text;
    let fetched = match cell {
        Cell::Null => return Value::Null,
        Cell::Text(s) if s.is_empty() => return Value::Null,
        Cell::Text(s) => {
            assert!(
                matches!(ty, OraType::Char(_) | OraType::Varchar(_) | OraType::Clob),
                "{column}: text in a {declared} column"
            );
            if let OraType::Char(n) | OraType::Varchar(n) = ty {
                assert!(s.len() <= n as usize, "{column}: '{s}' is longer than {declared}");
            }
            text = char_padded(s, &ty);
            Fetched::Text(Cow::Borrowed(text.as_bytes()))
        }
        Cell::Int(i) => {
            fits(&Decimal::from_i64(*i));
            text = i.to_string();
            Fetched::Number(&text)
        }
        Cell::Real(f) if ty == OraType::BinaryDouble => Fetched::Double(*f),
        Cell::Real(f) => panic!("{column}: {f} in a {declared} column"),
        // A number the legacy text cannot be read as never made it into a NUMBER column.
        Cell::Num(s) => match Decimal::parse(s.trim()) {
            Ok(d) => {
                fits(&d);
                text = d.to_string();
                Fetched::Number(&text)
            }
            Err(_) => return Value::Null,
        },
        Cell::Time(t, f) => {
            use chrono::{Datelike, Timelike};
            let nanos = match (f, &ty) {
                (TimeText::IsoMicros, OraType::Timestamp(_)) => t.nanosecond(),
                (_, OraType::Date) => 0,
                _ => panic!("{column}: a {f:?} time in a {declared} column"),
            };
            let ts =
                oracle::sql_type::Timestamp::new(t.year(), t.month(), t.day(), t.hour(), t.minute(), t.second(), nanos)
                    .expect("a valid timestamp");
            Fetched::Timestamp(ts)
        }
    };
    to_value(kind, fetched).expect("the adapter's conversion")
}

/// The demo's rows at `scale` per table, as the generator made them, in key order.
fn cells(scale: f64) -> Vec<Vec<Vec<Cell>>> {
    let mut tables: Vec<Vec<Vec<Cell>>> = vec![Vec::new(); TABLES.len()];
    generate(scale, &mut |t, row| tables[t].push(row));
    tables
}

/// The same rows read back from the SQLite demo as the SQLite source decodes them, in key order.
fn sqlite_rows(scale: f64) -> Vec<Vec<Vec<Value>>> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("legacy.db");
    super::write::sqlite(&path, scale).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    TABLES
        .iter()
        .map(|t| {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM {} ORDER BY {}", t.name, t.cols[0].name))
                .unwrap();
            let mut rows = stmt.query([]).unwrap();
            let mut out = Vec::new();
            while let Some(row) = rows.next().unwrap() {
                out.push(
                    (0..t.cols.len())
                        .map(|i| crate::source::sqlite::decode(row, i).unwrap())
                        .collect(),
                );
            }
            out
        })
        .collect()
}

#[test]
fn each_mapping_turns_sqlite_and_oracle_values_into_the_same_target_bytes() {
    let scale = 0.05;
    let generated = cells(scale);
    let from_sqlite = sqlite_rows(scale);
    let targets = target_tables();
    let mut compared = 0;
    let mut refused = 0;
    for e in shipped() {
        let (ti, t) = TABLES
            .iter()
            .enumerate()
            .find(|(_, t)| e.relation == Relation::Table(t.name.into()))
            .unwrap();
        let target = &targets[&e.target.name];
        let declared = |oracle: bool| -> Vec<(&str, &str)> {
            t.cols
                .iter()
                .map(|c| (c.name, if oracle { c.oracle } else { c.sqlite }))
                .collect()
        };
        let on_sqlite = bind_without_databases(&e, &declared(false), target)
            .unwrap_or_else(|p| panic!("{} on SQLite: {p:?}", e.name));
        let on_oracle = bind_without_databases(&e, &declared(true), target)
            .unwrap_or_else(|p| panic!("{} on Oracle: {p:?}", e.name));
        // Both bind the same source columns, in the same order.
        let names = on_sqlite.source_names();
        assert_eq!(names, on_oracle.source_names());
        let pos: Vec<usize> = names
            .iter()
            .map(|n| t.cols.iter().position(|c| c.name == n).unwrap())
            .collect();
        assert_eq!(generated[ti].len(), from_sqlite[ti].len());
        for (row_cells, row_sqlite) in generated[ti].iter().zip(&from_sqlite[ti]) {
            let s: Vec<Value> = pos.iter().map(|&i| row_sqlite[i].clone()).collect();
            let o: Vec<Value> = pos
                .iter()
                .map(|&i| oracle_value(&row_cells[i], t.cols[i].oracle, t.cols[i].name))
                .collect();
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let key = &row_sqlite[0];
            match (encode_row(&on_sqlite, &s, &mut a), encode_row(&on_oracle, &o, &mut b)) {
                (Ok(()), Ok(())) => assert!(a == b, "{} {key:?}: SQLite {s:?}\nOracle {o:?}", e.name),
                (Err(x), Err(y)) => {
                    assert_eq!(x.0, y.0, "{} {key:?}: refused for different columns", e.name);
                    refused += 1;
                }
                (x, y) => panic!(
                    "{} {key:?}: SQLite {x:?}, Oracle {y:?}\nSQLite {s:?}\nOracle {o:?}",
                    e.name
                ),
            }
            compared += 1;
        }
    }
    assert_eq!(compared, generated.iter().map(Vec::len).sum::<usize>());
    // The dirt no transform saves is there in both (a small share).
    eprintln!("{compared} rows compared, {refused} refused by both");
    assert!(
        refused > 0 && refused * 50 < compared,
        "{refused} of {compared} refused"
    );
}
