//! The ABIS rows written in a dialect: into a SQLite file (the demo), or as Oracle SQL for
//! SQL*Plus (the smoke test's seed), each in its own types.

use super::abis::{Cell, TABLES, Table, TimeText, generate};
use anyhow::{Context, Result};
use rusqlite::types::Value as Sql;
use std::io::Write;
use std::path::Path;

/// `CREATE TABLE` for `t` in SQLite's or Oracle's types; the first column is the primary key.
fn create_table(t: &Table, oracle: bool) -> String {
    let cols: Vec<String> = t
        .cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let ty = if oracle { c.oracle } else { c.sqlite };
            format!("  {} {ty}{}", c.name, if i == 0 { " PRIMARY KEY" } else { "" })
        })
        .collect();
    format!("CREATE TABLE {} (\n{}\n)", t.name, cols.join(",\n"))
}

/// Creates `path` (which must not exist) with the 8 tables and their rows at `scale`; returns the
/// rows written.
pub fn sqlite(path: &Path, scale: f64) -> Result<u64> {
    let mut conn = rusqlite::Connection::open(path).with_context(|| format!("creating {}", path.display()))?;
    for t in &TABLES {
        conn.execute(&create_table(t, false), [])?;
    }
    let tx = conn.transaction()?;
    let mut n = 0u64;
    let mut failed: Option<rusqlite::Error> = None;
    {
        let mut stmts: Vec<rusqlite::Statement<'_>> = TABLES
            .iter()
            .map(|t| {
                let marks = vec!["?"; t.cols.len()].join(",");
                tx.prepare(&format!("INSERT INTO {} VALUES ({marks})", t.name))
            })
            .collect::<Result<_, _>>()?;
        generate(scale, &mut |t, row| {
            if failed.is_some() {
                return;
            }
            let values: Vec<Sql> = row.iter().map(sqlite_value).collect();
            match stmts[t].execute(rusqlite::params_from_iter(values)) {
                Ok(_) => n += 1,
                Err(e) => failed = Some(e),
            }
        });
    }
    if let Some(e) = failed {
        return Err(e).context("writing the demo rows");
    }
    tx.commit()?;
    Ok(n)
}

/// A cell as the SQLite demo keeps it: dates and numbers as the legacy text.
pub fn sqlite_value(c: &Cell) -> Sql {
    match c {
        Cell::Null => Sql::Null,
        Cell::Int(i) => Sql::Integer(*i),
        Cell::Real(f) => Sql::Real(*f),
        Cell::Text(s) | Cell::Num(s) => Sql::Text(s.clone()),
        Cell::Time(t, f) => Sql::Text(Cell::time_text(t, *f)),
    }
}

/// A cell as an Oracle SQL literal: '' is NULL (as Oracle has it), numbers as NUMBER, dates as
/// DATE (midnight for a day), the change column as TIMESTAMP.
pub fn oracle_literal(c: &Cell) -> String {
    match c {
        Cell::Null => "NULL".into(),
        Cell::Int(i) => i.to_string(),
        Cell::Real(f) => format!("{f:?}"),
        Cell::Text(s) if s.is_empty() => "NULL".into(),
        Cell::Text(s) => format!("'{}'", s.replace('\'', "''")),
        Cell::Num(s) => match crate::value::Decimal::parse(s.trim()) {
            Ok(d) => d.to_string(),
            Err(_) => "NULL".into(),
        },
        Cell::Time(t, TimeText::IsoMicros) => format!("TIMESTAMP '{}'", t.format("%Y-%m-%d %H:%M:%S%.6f")),
        Cell::Time(t, _) => format!("TO_DATE('{}', 'YYYY-MM-DD HH24:MI:SS')", t.format("%Y-%m-%d %H:%M:%S")),
    }
}

/// The Oracle seed's foreign keys: child table, column, parent table.
pub const ORACLE_FOREIGN_KEYS: [(&str, &str, &str); 7] = [
    ("AB_COIL", "CUSTOMER_ID", "AB_CUSTOMER"),
    ("AB_JOB", "CUSTOMER_ID", "AB_CUSTOMER"),
    ("AB_JOB", "COIL_ID", "AB_COIL"),
    ("AB_SKID", "JOB_ID", "AB_JOB"),
    ("AB_QA_RESULT", "JOB_ID", "AB_JOB"),
    ("AB_SHIPMENT", "CUSTOMER_ID", "AB_CUSTOMER"),
    ("AB_SHIPMENT", "CARRIER_ID", "AB_CARRIER"),
];

/// Rows per INSERT ALL statement.
const ORACLE_ROWS_PER_INSERT: usize = 100;

/// Writes the Oracle seed: the 8 tables in Oracle's types with the same rows as the SQLite demo
/// at `scale`, as one SQL*Plus script (INSERT ALL, 100 rows a statement, one COMMIT).
pub fn oracle_sql(out: &mut dyn Write, scale: f64) -> Result<u64> {
    writeln!(
        out,
        "-- The ABIS demo in Oracle's own types: written by `migrate demo --oracle-sql` (scale {scale})."
    )?;
    writeln!(out, "-- Run with SQL*Plus as the schema's owner.")?;
    writeln!(out, "SET DEFINE OFF")?;
    writeln!(out, "SET SQLBLANKLINES ON")?;
    writeln!(out, "SET FEEDBACK OFF")?;
    writeln!(out, "WHENEVER SQLERROR EXIT FAILURE")?;
    for t in &TABLES {
        writeln!(out, "{};", create_table(t, true))?;
    }
    let mut pending: Vec<(usize, Vec<Cell>)> = Vec::new();
    let mut n = 0u64;
    let mut failed = None;
    let flush = |out: &mut dyn Write, rows: &mut Vec<(usize, Vec<Cell>)>| -> std::io::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        writeln!(out, "INSERT ALL")?;
        for (t, row) in rows.iter() {
            let values: Vec<String> = row.iter().map(oracle_literal).collect();
            writeln!(out, "  INTO {} VALUES ({})", TABLES[*t].name, values.join(", "))?;
        }
        writeln!(out, "SELECT * FROM DUAL;")?;
        rows.clear();
        Ok(())
    };
    generate(scale, &mut |t, row| {
        if failed.is_some() {
            return;
        }
        n += 1;
        // A statement holds rows of one table, in key order (parents before children).
        let full = pending.first().is_some_and(|(pt, _)| *pt != t) || pending.len() == ORACLE_ROWS_PER_INSERT;
        if full && let Err(e) = flush(out, &mut pending) {
            failed = Some(e);
            return;
        }
        pending.push((t, row));
    });
    if let Some(e) = failed {
        return Err(e.into());
    }
    flush(out, &mut pending)?;
    writeln!(out, "COMMIT;")?;
    // What a live ABIS has besides its rows: foreign keys (every child row has its parent) and
    // an index on the change column, which `migrate sync` reads by.
    for (child, column, parent) in ORACLE_FOREIGN_KEYS {
        let parent_key = TABLES.iter().find(|t| t.name == parent).map_or("", |t| t.cols[0].name);
        writeln!(
            out,
            "ALTER TABLE {child} ADD CONSTRAINT FK_{}_{} FOREIGN KEY ({column}) REFERENCES {parent} ({parent_key});",
            &child[3..],
            &parent[3..],
        )?;
    }
    for t in &TABLES {
        writeln!(out, "CREATE INDEX {}_LM_IX ON {} (LAST_MODIFIED);", t.name, t.name)?;
    }
    writeln!(out, "EXIT")?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    #[test]
    fn one_cell_in_each_dialect() {
        let t = NaiveDate::from_ymd_opt(2019, 3, 7)
            .unwrap()
            .and_hms_micro_opt(15, 4, 5, 60)
            .unwrap();
        let day = NaiveDate::from_ymd_opt(2019, 3, 7)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        assert_eq!(
            sqlite_value(&Cell::Time(day, TimeText::DdMonYy)),
            Sql::Text("07-MAR-19".into())
        );
        assert_eq!(
            oracle_literal(&Cell::Time(day, TimeText::DdMonYy)),
            "TO_DATE('2019-03-07 00:00:00', 'YYYY-MM-DD HH24:MI:SS')"
        );
        assert_eq!(
            oracle_literal(&Cell::Time(t, TimeText::IsoMicros)),
            "TIMESTAMP '2019-03-07 15:04:05.000060'"
        );
        assert_eq!(oracle_literal(&Cell::Num("  2032.00".into())), "2032.00");
        assert_eq!(oracle_literal(&Cell::Num("".into())), "NULL");
        assert_eq!(oracle_literal(&Cell::Text("o'brien".into())), "'o''brien'");
        assert_eq!(oracle_literal(&Cell::Text("".into())), "NULL");
        assert_eq!(oracle_literal(&Cell::Real(1250.25)), "1250.25");
    }

    #[test]
    fn the_oracle_seed_has_every_table_and_row() {
        let mut out = Vec::new();
        let n = oracle_sql(&mut out, 0.02).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(n, super::super::abis::counts(0.02).iter().sum::<u64>());
        for t in &TABLES {
            assert!(text.contains(&format!("CREATE TABLE {} (", t.name)), "{}", t.name);
        }
        assert_eq!(text.matches("  INTO ").count() as u64, n);
        assert!(text.ends_with("_LM_IX ON AB_SHIPMENT (LAST_MODIFIED);\nEXIT\n"));
        // SQL*Plus reads lines: each row on one line, below its 2,499-character limit, and only
        // a statement's last line ends with ';' (a ';' ending a line inside a string would cut
        // the statement there).
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.iter().filter(|l| l.starts_with("  INTO ")).count() as u64, n);
        for l in &lines {
            assert!(l.len() < 2499, "{l}");
            assert!(*l != "." && *l != "/", "{l}");
            if l.ends_with(';') {
                assert!(!l.starts_with("  INTO "), "{l}");
            }
        }
    }

    #[test]
    fn every_child_row_has_its_parent_so_the_oracle_foreign_keys_hold() {
        use std::collections::{BTreeMap, BTreeSet};
        let mut keys: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
        let mut refs: Vec<(&str, &str, i64)> = Vec::new();
        generate(0.3, &mut |t, row| {
            let table = &TABLES[t];
            if let Cell::Int(id) = row[0] {
                keys.entry(table.name).or_default().insert(id);
            }
            for (child, column, parent) in ORACLE_FOREIGN_KEYS {
                if child == table.name {
                    let i = table.cols.iter().position(|c| c.name == column).unwrap();
                    match row[i] {
                        Cell::Int(v) => refs.push((child, parent, v)),
                        Cell::Null => {}
                        ref other => panic!("{child}.{column}: {other:?}"),
                    }
                }
            }
        });
        assert!(refs.len() > 10_000);
        for (child, parent, v) in refs {
            assert!(
                keys[parent].contains(&v),
                "{child} references {parent} {v}, which does not exist"
            );
        }
    }
}
