//! `migrate demo --mutate`: the demo source changed the way a live legacy system changes, so
//! that `migrate sync` has something to move: updates that move LAST_MODIFIED, new rows,
//! deleted rows, and one row made invalid. Applied to the SQLite demo, or written as Oracle SQL.

use super::abis::{Cell, Rng, TABLES, TimeText, counts};
use super::write::{oracle_literal, sqlite_value};
use chrono::NaiveDateTime;

/// One change to one table.
pub enum Op {
    /// Rows by id: their columns set, and LAST_MODIFIED moved to now.
    Update {
        ids: Vec<i64>,
        set: Vec<(&'static str, Cell)>,
    },
    /// New rows (every column, in table order).
    Insert(Vec<Vec<Cell>>),
    /// Rows by id.
    Delete(Vec<i64>),
}

pub struct Change {
    pub table: usize,
    pub op: Op,
    /// What it is, for the summary.
    pub what: String,
}

/// Distinct ids in 1..=max, about `share` of them (at least one).
fn some_ids(r: &mut Rng, max: u64, per_mille: u64) -> Vec<i64> {
    let n = (max * per_mille / 1000).max(1);
    let mut ids: Vec<i64> = (0..n).map(|_| 1 + r.below(max) as i64).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The changes of one round. Updated and deleted rows are picked among ids `1..=existing[t]`
/// (the rows the demo generated), new rows get ids from `new_after[t] + 1`; `now` is the moment
/// the changed rows get in LAST_MODIFIED.
pub fn plan(existing: [u64; 8], new_after: [u64; 8], seed: u64, now: NaiveDateTime) -> Vec<Change> {
    let mut r = Rng(seed | 1);
    let stamp = Cell::Time(now, TimeText::IsoMicros);
    let text = |s: &str| Cell::Text(s.to_string());
    let [_, _, customers, coils, jobs, _, qas, _] = existing;
    let [.., new_qa_after, new_shipment_after] = new_after;
    let mut out = Vec::new();
    let ids = some_ids(&mut r, customers, 10);
    out.push(Change {
        table: 2,
        what: format!("{} customers renamed their contact", ids.len()),
        op: Op::Update {
            ids,
            set: vec![("CONTACT_NAME", text("Pat Changed"))],
        },
    });
    let ids = some_ids(&mut r, coils, 10);
    out.push(Change {
        table: 3,
        what: format!("{} coils shipped", ids.len()),
        op: Op::Update {
            ids,
            set: vec![("STATUS_CD", text("S")), ("LOCATION", text("SHIPPED"))],
        },
    });
    let ids = some_ids(&mut r, jobs, 10);
    out.push(Change {
        table: 4,
        what: format!("{} jobs completed", ids.len()),
        op: Op::Update {
            ids,
            set: vec![("STATUS_CD", text("C")), ("ACT_END", Cell::Time(now, TimeText::Iso))],
        },
    });
    // One QA result made invalid: a pass/fail code the mapping does not know. Nothing references
    // a QA result, so sync moves its row from the target to the rejects.
    let deleted = some_ids(&mut r, qas, 2);
    let bad = loop {
        let id = 1 + r.below(qas) as i64;
        if !deleted.contains(&id) || qas <= deleted.len() as u64 {
            break id;
        }
    };
    out.push(Change {
        table: 6,
        what: format!("QA result {bad} given pass/fail code 'X' (neither P nor F: sync moves it to the rejects)"),
        op: Op::Update {
            ids: vec![bad],
            set: vec![("PASS_FAIL", text("X"))],
        },
    });
    let new_qa: Vec<Vec<Cell>> = (1..=(qas / 200).max(1))
        .map(|k| {
            vec![
                Cell::Int((new_qa_after + k) as i64),
                Cell::Int(1 + r.below(jobs) as i64),
                text("HARDNESS"),
                Cell::Num(format!("{}.{:04}", 60 + r.below(35), r.below(10000))),
                text("HRB"),
                Cell::Num("60".into()),
                Cell::Num("95".into()),
                text("P"),
                text("QA1"),
                Cell::Time(now, TimeText::DdMonYyHm),
                stamp.clone(),
            ]
        })
        .collect();
    out.push(Change {
        table: 6,
        what: format!("{} QA results recorded", new_qa.len()),
        op: Op::Insert(new_qa),
    });
    let new_shipments: Vec<Vec<Cell>> = (1..=(existing[7] / 200).max(1))
        .map(|k| {
            let id = new_shipment_after + k;
            // A customer not marked deleted (every 37th is).
            let customer = loop {
                let c = 1 + r.below(customers);
                if !c.is_multiple_of(37) {
                    break c as i64;
                }
            };
            vec![
                Cell::Int(id as i64),
                text(&format!("BOL{id:07}")),
                Cell::Int(customer),
                Cell::Int(1),
                Cell::Time(now, TimeText::DdMonYy),
                Cell::Null,
                text("P"),
                Cell::Num("1200.0".into()),
                Cell::Num("1150.0".into()),
                Cell::Int(3),
                text("Toledo"),
                stamp.clone(),
            ]
        })
        .collect();
    out.push(Change {
        table: 7,
        what: format!("{} shipments planned", new_shipments.len()),
        op: Op::Insert(new_shipments),
    });
    out.push(Change {
        table: 6,
        what: format!("{} QA results deleted", deleted.len()),
        op: Op::Delete(deleted),
    });
    out
}

/// A change as SQL statements, with literals: SQLite's or Oracle's.
pub fn sql(c: &Change, oracle: bool, now: NaiveDateTime) -> Vec<String> {
    let t = &TABLES[c.table];
    let key = t.cols[0].name;
    let lit = |cell: &Cell| {
        if oracle {
            oracle_literal(cell)
        } else {
            match sqlite_value(cell) {
                rusqlite::types::Value::Null => "NULL".into(),
                rusqlite::types::Value::Integer(i) => i.to_string(),
                rusqlite::types::Value::Real(f) => format!("{f:?}"),
                rusqlite::types::Value::Text(s) => format!("'{}'", s.replace('\'', "''")),
                rusqlite::types::Value::Blob(_) => "NULL".into(),
            }
        }
    };
    let list = |ids: &[i64]| ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
    match &c.op {
        Op::Update { ids, set } => {
            let mut sets: Vec<String> = set.iter().map(|(col, v)| format!("{col} = {}", lit(v))).collect();
            sets.push(format!(
                "LAST_MODIFIED = {}",
                lit(&Cell::Time(now, TimeText::IsoMicros))
            ));
            // Oracle's IN list takes at most 1,000 values.
            ids.chunks(900)
                .map(|part| {
                    format!(
                        "UPDATE {} SET {} WHERE {key} IN ({})",
                        t.name,
                        sets.join(", "),
                        list(part)
                    )
                })
                .collect()
        }
        Op::Insert(rows) => rows
            .iter()
            .map(|row| {
                let values: Vec<String> = row.iter().map(lit).collect();
                format!("INSERT INTO {} VALUES ({})", t.name, values.join(", "))
            })
            .collect(),
        Op::Delete(ids) => ids
            .chunks(900)
            .map(|part| format!("DELETE FROM {} WHERE {key} IN ({})", t.name, list(part)))
            .collect(),
    }
}

/// Where round `round` (1, 2, …) against an Oracle seed made at `scale` starts its new ids: far
/// past the seed and the earlier rounds, so that rounds never collide.
pub fn oracle_new_after(scale: f64, round: u64) -> [u64; 8] {
    counts(scale).map(|n| n + round.saturating_sub(1) * 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn plan_round2(now: NaiveDateTime) -> Vec<Change> {
        plan(counts(0.1), oracle_new_after(0.1, 2), 11, now)
    }

    #[test]
    fn a_round_changes_inserts_deletes_and_breaks_one_row() {
        let now = NaiveDate::from_ymd_opt(2026, 12, 4)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap();
        let plan = plan(counts(0.1), counts(0.1), 7, now);
        let kinds: Vec<&str> = plan
            .iter()
            .map(|c| match c.op {
                Op::Update { .. } => "update",
                Op::Insert(_) => "insert",
                Op::Delete(_) => "delete",
            })
            .collect();
        assert_eq!(
            kinds,
            ["update", "update", "update", "update", "insert", "insert", "delete"]
        );
        for c in &plan {
            if let Op::Insert(rows) = &c.op {
                assert!(rows.iter().all(|r| r.len() == TABLES[c.table].cols.len()), "{}", c.what);
            }
        }
        // The broken QA result is not among the deleted ones (it must reach the rejects).
        let (Op::Update { ids: bad, .. }, Op::Delete(gone)) = (&plan[3].op, &plan[6].op) else {
            panic!("plan order changed")
        };
        assert!(!gone.contains(&bad[0]));
        // New rows start after `new_after`, updates stay among the existing rows.
        let later = plan_round2(now);
        let Op::Insert(rows) = &later[4].op else {
            panic!("plan order changed")
        };
        assert!(matches!(rows[0][0], Cell::Int(id) if id as u64 == counts(0.1)[6] + 1_000_001));
        let Op::Update { ids, .. } = &later[1].op else {
            panic!("plan order changed")
        };
        assert!(ids.iter().all(|&id| id >= 1 && id as u64 <= counts(0.1)[3]));
        let s = sql(&plan[0], false, now);
        assert!(s[0].starts_with("UPDATE AB_CUSTOMER SET CONTACT_NAME = 'Pat Changed', LAST_MODIFIED = '2026-12-04 12:00:00.000000' WHERE CUSTOMER_ID IN ("), "{}", s[0]);
        let o = sql(&plan[0], true, now);
        assert!(
            o[0].contains("LAST_MODIFIED = TIMESTAMP '2026-12-04 12:00:00.000000'"),
            "{}",
            o[0]
        );
    }
}
