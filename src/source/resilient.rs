//! Reading a whole relation in spite of the source: in bounded cursors (no query lives long
//! enough for Oracle's ORA-01555 "snapshot too old"), and through lost connections (the source
//! is opened again and the read goes on after the last key handed over, keyset-style).
//!
//! Both rely on the same fact: rows come in key order and every handed-over batch moves the
//! last key, so `key > last` is exactly the rest.

use super::{ReadSpec, Source, SourceError};
use crate::value::Value;
use std::time::{Duration, Instant};

/// How long one cursor may live, and how a lost source is retried.
#[derive(Debug, Clone)]
pub struct ReadPlan {
    /// Rows one cursor hands over before it is closed and the next query starts after its last key.
    pub cursor_rows: u64,
    /// Time one cursor may stay open (checked at batch boundaries).
    pub cursor_time: Duration,
    /// Reconnection attempts per outage (progress starts the count again).
    pub retries: u32,
    /// Wait before the first reconnection; doubled each time, at most 30 s.
    pub retry_wait: Duration,
}

impl Default for ReadPlan {
    fn default() -> Self {
        ReadPlan {
            cursor_rows: 1_000_000,
            cursor_time: Duration::from_secs(300),
            retries: 8,
            retry_wait: Duration::from_secs(1),
        }
    }
}

impl ReadPlan {
    fn delay(&self, attempt: u32) -> Duration {
        crate::backoff::wait(self.retry_wait, attempt)
    }
}

/// What a read went through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Queries (cursors) opened.
    pub cursors: u64,
    /// Times the source was opened again after a lost connection.
    pub reconnects: u64,
}

/// Error codes and messages that mean "the connection or the snapshot is gone, try again",
/// as opposed to a wrong query, a missing table or a refused login.
const TRANSIENT: &[&str] = &[
    "ORA-01555", // snapshot too old
    "ORA-03113", // end-of-file on communication channel
    "ORA-03114", // not connected to ORACLE
    "ORA-03135", // connection lost contact
    "ORA-00028", // your session has been killed
    "ORA-01012", // not logged on
    "ORA-01033", // initialization or shutdown in progress
    "ORA-01034", // ORACLE not available
    "ORA-01089", // immediate shutdown in progress
    "ORA-02396", // exceeded maximum idle time
    "ORA-12170", // connect timeout
    "ORA-12514", // listener does not know the service (yet: instance starting)
    "ORA-12528", // instance blocking new connections
    "ORA-12537", // TNS connection closed
    "ORA-12541", // no listener
    "ORA-12543", // destination host unreachable
    "ORA-12547", // lost contact
    "ORA-25408", // can not safely replay call
    "DPI-1010",  // not connected
    "DPI-1067",  // call timeout
    "DPI-1080",  // connection was closed
    "database is locked",
    "database table is locked",
];

/// Errors that are never worth a retry, even while reconnecting (a retried bad password can
/// lock the account).
const FATAL: &[&str] = &["ORA-01017", "ORA-28000", "ORA-28001", "DPI-1047"];

/// Whether an error (its whole cause chain, as text) is worth reconnecting for.
pub fn is_transient_text(text: &str) -> bool {
    !FATAL.iter().any(|c| text.contains(c)) && TRANSIENT.iter().any(|c| text.contains(c))
}

impl SourceError {
    /// The connection or the snapshot was lost: reopening and reading on can succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Query { .. } | SourceError::Connect { .. } => {
                is_transient_text(&crate::telemetry::chain(self))
            }
            _ => false,
        }
    }
}

/// Proof that rows come in strictly increasing key order, row by row, across batches,
/// cursors and reconnections.
struct KeyOrder {
    prev: Option<Vec<Value>>,
    /// The two keys (as shown in messages) that broke the order.
    broken: Option<(String, String)>,
    /// Per key column, the source's own order where it is not the plain one.
    cmps: Vec<super::KeyCmp>,
    /// Why a row's key could not be read.
    unreadable: Option<String>,
}

impl KeyOrder {
    fn new(after: Option<Vec<Value>>, cmps: Vec<super::KeyCmp>) -> KeyOrder {
        KeyOrder {
            prev: after,
            broken: None,
            cmps,
            unreadable: None,
        }
    }

    /// Two keys in the source's order.
    fn cmp(&self, a: &[Value], b: &[Value]) -> std::cmp::Ordering {
        a.iter()
            .zip(b)
            .enumerate()
            .map(|(j, (x, y))| match self.cmps.get(j) {
                Some(cmp) => cmp(x, y),
                None => crate::value::cmp_key_value(x, y),
            })
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    }

    /// Whether every row of `rows` has a key greater than the one before it (and one that could
    /// be read at all).
    fn check(&mut self, spec: &ReadSpec, rows: &[Vec<Value>]) -> bool {
        for row in rows {
            if let Some(why) = spec.key.iter().find_map(|&i| match &row[i] {
                Value::Unreadable(why) => Some(why.clone()),
                _ => None,
            }) {
                let after = self
                    .prev
                    .as_deref()
                    .map_or("the start".into(), crate::value::key_display);
                self.unreadable = Some(format!(
                    "a key value of the row after key {after} could not be read ({why}): rows cannot be resumed past it. Read this table by other key columns (`key = [...]`) or by ROWID (`key = [\"ROWID\"]`), or fix the value in the source"
                ));
                return false;
            }
            if let Some(prev) = &mut self.prev {
                let ord = spec
                    .key
                    .iter()
                    .zip(prev.iter())
                    .enumerate()
                    .map(|(j, (&i, p))| match self.cmps.get(j) {
                        Some(cmp) => cmp(&row[i], p),
                        None => crate::value::cmp_key_value(&row[i], p),
                    })
                    .find(|o| o.is_ne())
                    .unwrap_or(std::cmp::Ordering::Equal);
                if ord.is_le() {
                    self.broken = Some((
                        crate::value::key_display(prev),
                        crate::value::key_display(&spec.key_of(row)),
                    ));
                    return false;
                }
                // The previous key's buffers are reused.
                for (slot, &i) in prev.iter_mut().zip(&spec.key) {
                    slot.clone_from(&row[i]);
                }
            } else {
                self.prev = Some(spec.key_of(row));
            }
        }
        true
    }
}

/// Reads every row after `after` in key order and hands them to `emit` in batches, until the
/// end or until `emit` returns false. `open` is called once at the start (its failure is
/// returned as is) and again after each lost connection.
pub fn read_all(
    open: &mut dyn FnMut() -> Result<Box<dyn Source>, SourceError>,
    spec: &ReadSpec,
    after: Option<Vec<Value>>,
    batch_rows: usize,
    plan: &ReadPlan,
    emit: &mut dyn FnMut(&mut Vec<Vec<Value>>) -> bool,
) -> Result<ReadStats, SourceError> {
    let what = spec.relation.describe();
    let mut src = open()?;
    let mut last = after;
    let mut stats = ReadStats::default();
    let mut attempt = 0u32;
    // The key of the last row seen: every row's key must be greater, or keyset reads skip or
    // repeat rows (a key that is not unique, or compared in another order than it is sorted).
    let mut order = KeyOrder::new(last.clone(), src.key_comparators(spec)?);
    // Where each cursor ends, for a source that sorts what it reads (see cursor_bounds).
    let bounds = src.cursor_bounds(spec, plan.cursor_rows)?;
    if !bounds.is_empty() {
        tracing::debug!(
            "{what}: read in {} cursors bounded by key, about {} rows each",
            bounds.len() + 1,
            plan.cursor_rows
        );
    }
    loop {
        stats.cursors += 1;
        let started = Instant::now();
        let mut in_cursor = 0u64;
        let (mut rotate, mut stopped) = (false, false);
        let mut handed: Option<Vec<Value>> = None;
        // The first bound past the last key, unless the read's own end comes first.
        let bound = bounds
            .iter()
            .find(|b| last.as_ref().is_none_or(|l| order.cmp(b, l).is_gt()))
            .filter(|b| spec.until.as_ref().is_none_or(|u| order.cmp(b, u).is_lt()))
            .cloned();
        let bounded;
        let cursor_spec = match &bound {
            Some(b) => {
                bounded = ReadSpec {
                    until: Some(b.clone()),
                    ..spec.clone()
                };
                &bounded
            }
            None => spec,
        };
        let result = src.read(cursor_spec, last.as_deref(), batch_rows, &mut |rows| {
            if !order.check(spec, rows) {
                stopped = true;
                return false;
            }
            if let Some(r) = rows.last() {
                handed = Some(spec.key_of(r));
            }
            in_cursor += rows.len() as u64;
            // Rows got through: a later outage gets a fresh retry budget.
            attempt = 0;
            if !emit(rows) {
                stopped = true;
                return false;
            }
            if in_cursor >= plan.cursor_rows || started.elapsed() >= plan.cursor_time {
                rotate = true;
                return false;
            }
            true
        });
        if handed.is_some() {
            last = handed;
        }
        if let Some(why) = order.unreadable.take() {
            return Err(SourceError::Query {
                what: format!("reading {what}"),
                cause: why.into(),
            });
        }
        if let Some((previous, current)) = order.broken.take() {
            return Err(SourceError::Order {
                relation: what,
                previous,
                current,
            });
        }
        match result {
            // Every row up to the bound was read: the next cursor starts after it.
            Ok(()) if !stopped && !rotate && bound.is_some() => last = bound,
            Ok(()) if stopped || !rotate => return Ok(stats),
            Ok(()) => {
                tracing::debug!(
                    "{what}: cursor {} closed after {in_cursor} rows in {:.1}s; the next one starts after its last key",
                    stats.cursors,
                    started.elapsed().as_secs_f64()
                );
            }
            Err(e) if e.is_transient() => {
                let mut why = e;
                src = loop {
                    if attempt >= plan.retries {
                        return Err(SourceError::Unreachable {
                            relation: what,
                            attempts: attempt,
                            cause: Box::new(why),
                        });
                    }
                    attempt += 1;
                    let wait = plan.delay(attempt);
                    tracing::warn!(
                        "{what}: lost the source ({}); reopening in {:.1}s (attempt {attempt} of {}), then reading on after the last key handed over",
                        crate::telemetry::chain(&why),
                        wait.as_secs_f64(),
                        plan.retries
                    );
                    std::thread::sleep(wait);
                    match open() {
                        Ok(s) => break s,
                        Err(e) if e.is_transient() => why = e,
                        Err(e) => return Err(e),
                    }
                };
                stats.reconnects += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Relation;
    use crate::source::{CatalogTable, Column, TableInfo};
    use std::sync::{Arc, Mutex};

    /// Per read, in order: after how many rows it breaks, with which message (`None`: it does not).
    type Script = Arc<Mutex<Vec<Option<(usize, &'static str)>>>>;

    /// A source of `n` rows keyed 1..=n whose reads break as its script says.
    struct Fake {
        n: i64,
        script: Script,
        cursors: Arc<Mutex<Vec<Option<i64>>>>,
        /// Cursor bounds it asks for (a source that sorts what it reads).
        bounds: Vec<i64>,
    }

    impl Source for Fake {
        fn cursor_bounds(&mut self, _spec: &ReadSpec, _rows: u64) -> Result<Vec<Vec<Value>>, SourceError> {
            Ok(self.bounds.iter().map(|&b| vec![Value::Int(b)]).collect())
        }
        fn duplicate_keys(&mut self, _spec: &ReadSpec) -> Result<u64, SourceError> {
            Ok(0)
        }
        fn scan(
            &mut self,
            _spec: &ReadSpec,
            _batch_rows: usize,
            _emit: &mut dyn FnMut(&mut Vec<Vec<Value>>) -> bool,
        ) -> Result<(), SourceError> {
            Ok(())
        }
        fn table_info(&mut self, _: &str) -> Result<Option<TableInfo>, SourceError> {
            unimplemented!()
        }
        fn catalog(&mut self, _: Option<&str>) -> Result<Vec<CatalogTable>, SourceError> {
            unimplemented!()
        }
        fn query_columns(&mut self, _: &str) -> Result<Vec<String>, SourceError> {
            unimplemented!()
        }
        fn newest(
            &mut self,
            _: &Relation,
            _: Option<&str>,
            _: &str,
        ) -> Result<Option<(String, crate::source::WmKind)>, SourceError> {
            Ok(None)
        }
        fn count(&mut self, _: &Relation, _: Option<&str>) -> Result<u64, SourceError> {
            unimplemented!()
        }
        fn read(
            &mut self,
            spec: &ReadSpec,
            after: Option<&[Value]>,
            batch_rows: usize,
            emit: &mut dyn FnMut(&mut Vec<Vec<Value>>) -> bool,
        ) -> Result<(), SourceError> {
            let upto = match spec.until.as_deref() {
                Some([Value::Int(u)]) => *u,
                _ => self.n,
            };
            let from = match after {
                Some([Value::Int(k)]) => *k,
                None => 0,
                other => panic!("bad key {other:?}"),
            };
            self.cursors.lock().unwrap().push(after.map(|_| from));
            let fail = {
                let mut s = self.script.lock().unwrap();
                if s.is_empty() { None } else { s.remove(0) }
            };
            let mut batch = Vec::new();
            for (sent, k) in (from + 1..=upto.min(self.n)).enumerate() {
                if let Some((at, msg)) = fail
                    && sent == at
                {
                    return Err(SourceError::Query {
                        what: "fetching".into(),
                        cause: msg.into(),
                    });
                }
                batch.push(vec![Value::Int(k), Value::Text(format!("row {k}"))]);
                if batch.len() == batch_rows && !emit(&mut std::mem::take(&mut batch)) {
                    return Ok(());
                }
            }
            if !batch.is_empty() {
                emit(&mut batch);
            }
            Ok(())
        }
    }

    fn spec() -> ReadSpec {
        ReadSpec {
            relation: Relation::Table("T".into()),
            columns: vec![Column::Named("ID".into()), Column::Named("V".into())],
            key: vec![0],
            filter: None,
            window: None,
            until: None,
        }
    }

    fn plan(rows: u64) -> ReadPlan {
        ReadPlan {
            cursor_rows: rows,
            cursor_time: Duration::from_secs(3600),
            retries: 3,
            retry_wait: Duration::from_millis(1),
        }
    }

    fn run(
        n: i64,
        script: Vec<Option<(usize, &'static str)>>,
        plan: &ReadPlan,
    ) -> (Result<ReadStats, SourceError>, Vec<i64>, Vec<Option<i64>>, usize) {
        run_bounded(n, script, plan, Vec::new())
    }

    fn run_bounded(
        n: i64,
        script: Vec<Option<(usize, &'static str)>>,
        plan: &ReadPlan,
        bounds: Vec<i64>,
    ) -> (Result<ReadStats, SourceError>, Vec<i64>, Vec<Option<i64>>, usize) {
        let script = Arc::new(Mutex::new(script));
        let cursors = Arc::new(Mutex::new(Vec::new()));
        let mut opens = 0usize;
        let mut got = Vec::new();
        let (s2, c2) = (script.clone(), cursors.clone());
        let mut open = || -> Result<Box<dyn Source>, SourceError> {
            opens += 1;
            Ok(Box::new(Fake {
                n,
                script: s2.clone(),
                cursors: c2.clone(),
                bounds: bounds.clone(),
            }))
        };
        let r = read_all(&mut open, &spec(), None, 10, plan, &mut |rows| {
            got.extend(rows.iter().map(|r| match r[0] {
                Value::Int(k) => k,
                _ => unreachable!(),
            }));
            true
        });
        let c = cursors.lock().unwrap().clone();
        (r, got, c, opens)
    }

    #[test]
    fn a_source_that_sorts_reads_between_bounds_and_through_an_outage() {
        // Bounds at 25, 50, 75; the last cursor runs to the end.
        let (r, got, cursors, _) = run_bounded(95, vec![], &plan(1_000), vec![25, 50, 75]);
        assert_eq!(got, (1..=95).collect::<Vec<_>>());
        assert_eq!(cursors, vec![None, Some(25), Some(50), Some(75)]);
        assert_eq!(r.unwrap().cursors, 4);
        // A lost connection inside the second cursor (before its first batch) reads that cursor
        // again, to the same bound.
        let script = vec![None, Some((7, "ORA-03113: end-of-file on communication channel"))];
        let (r, got, cursors, opens) = run_bounded(60, script, &plan(1_000), vec![20, 40]);
        assert_eq!(got, (1..=60).collect::<Vec<_>>());
        assert_eq!(cursors, vec![None, Some(20), Some(20), Some(40)]);
        assert_eq!(r.unwrap().reconnects, 1);
        assert_eq!(opens, 2);
        // Rotation by rows inside a bounded cursor goes on to the same bound.
        let (_, got, cursors, _) = run_bounded(50, vec![], &plan(10), vec![35]);
        assert_eq!(got, (1..=50).collect::<Vec<_>>());
        assert_eq!(cursors, vec![None, Some(10), Some(20), Some(30), Some(35), Some(45)]);
    }

    #[test]
    fn long_reads_are_a_chain_of_bounded_cursors_each_after_the_last_key() {
        let (r, got, cursors, opens) = run(95, vec![], &plan(30));
        assert_eq!(got, (1..=95).collect::<Vec<_>>());
        assert_eq!(cursors, vec![None, Some(30), Some(60), Some(90)]);
        assert_eq!(
            r.unwrap(),
            ReadStats {
                cursors: 4,
                reconnects: 0
            }
        );
        assert_eq!(opens, 1);
    }

    #[test]
    fn a_lost_connection_or_snapshot_reopens_after_the_last_key_handed_over() {
        let script = vec![
            Some((25, "ORA-03113: end-of-file on communication channel")),
            Some((12, "ORA-01555: snapshot too old: rollback segment number 9 too small")),
            None,
        ];
        let (r, got, cursors, opens) = run(70, script, &plan(1_000));
        // Nothing lost, nothing twice: the batch that broke was never handed over.
        assert_eq!(got, (1..=70).collect::<Vec<_>>());
        assert_eq!(cursors, vec![None, Some(20), Some(30)]);
        assert_eq!(r.unwrap().reconnects, 2);
        assert_eq!(opens, 3);
    }

    #[test]
    fn the_budget_ends_an_outage_and_other_errors_are_not_retried() {
        let script = vec![Some((5, "ORA-03135: connection lost contact")); 10];
        let (r, got, _, opens) = run(50, script, &plan(1_000));
        let e = crate::telemetry::chain(&r.unwrap_err());
        assert!(e.contains("unreachable after 3 reconnection attempt(s)"), "{e}");
        assert!(got.is_empty());
        assert_eq!(opens, 4);
        let (r, _, _, opens) = run(
            50,
            vec![Some((5, "ORA-00942: table or view does not exist"))],
            &plan(1_000),
        );
        assert!(crate::telemetry::chain(&r.unwrap_err()).contains("ORA-00942"));
        assert_eq!(opens, 1);
    }

    #[test]
    fn transient_errors_are_told_from_fatal_ones() {
        assert!(is_transient_text("reading X: ORA-01555: snapshot too old"));
        assert!(is_transient_text("DPI-1080: connection was closed by ORA-3113"));
        assert!(is_transient_text(
            "error returned from database: (code: 5) database is locked"
        ));
        assert!(!is_transient_text("ORA-00904: invalid identifier"));
        assert!(!is_transient_text(
            "ORA-12541 then ORA-01017: invalid username/password"
        ));
    }

    #[test]
    fn the_order_check_uses_the_sources_own_comparison_where_it_has_one() {
        let s = spec();
        let rows: Vec<Vec<Value>> = [3, 2, 1].iter().map(|&k| vec![Value::Int(k), Value::Null]).collect();
        // Plainly, 3, 2, 1 is out of order …
        let mut plain = KeyOrder::new(None, Vec::new());
        assert!(!plain.check(&s, &rows));
        assert_eq!(plain.broken, Some(("3".into(), "2".into())));
        // … but not for a source that sorts descending.
        let desc: super::super::KeyCmp = std::sync::Arc::new(|a: &Value, b: &Value| crate::value::cmp_key_value(b, a));
        let mut own = KeyOrder::new(Some(vec![Value::Int(4)]), vec![desc]);
        assert!(own.check(&s, &rows));
        assert!(!own.check(&s, &[vec![Value::Int(5), Value::Null]]));
    }

    #[test]
    fn a_key_that_could_not_be_read_stops_the_read_with_what_to_do() {
        let s = spec();
        let rows = vec![
            vec![Value::Int(1), Value::Null],
            vec![Value::Unreadable("Oracle date 1500-02-29 …".into()), Value::Null],
        ];
        let mut o = KeyOrder::new(None, Vec::new());
        assert!(!o.check(&s, &rows));
        let why = o.unreadable.unwrap();
        assert!(
            why.contains("after key 1") && why.contains("1500-02-29") && why.contains("ROWID"),
            "{why}"
        );
        // In a column that is not the key, it is just a value (the row's reject, later).
        let mut o = KeyOrder::new(None, Vec::new());
        assert!(o.check(&s, &[vec![Value::Int(1), Value::Unreadable("x".into())]]));
    }
}
