//! The `Source` trait every legacy database implements, and the pure SQL text they share.
//!
//! Sources are blocking on purpose (the Oracle driver is synchronous): the pipeline opens one
//! inside a dedicated thread, and it hands owned batches back through a callback that feeds a
//! bounded channel. Nothing here knows which database it talks to.

pub mod files;
pub mod oracle;
pub mod resilient;
pub mod sqlite;

use crate::plan::{Relation, quote_ident};
use crate::value::Value;
use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot open source {url}")]
    Connect {
        url: String,
        #[source]
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("source query failed ({what})")]
    Query {
        what: String,
        #[source]
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("unsupported source URL '{0}'")]
    Url(String),
    /// The source stayed lost through every reconnection attempt.
    #[error("reading {relation}: the source stayed unreachable after {attempts} reconnection attempt(s)")]
    Unreachable {
        relation: String,
        attempts: u32,
        #[source]
        cause: Box<SourceError>,
    },
    /// The Oracle client library cannot be loaded (DPI-1047); the text says what to install.
    #[error("{0}")]
    ClientLibrary(String),
    #[error(
        "reading {relation}: rows do not come in strictly increasing key order (key {current} came after {previous}), so keyset reads would skip or repeat rows. The key is not unique, or the source compares it in another order than it sorts it (a collation). Choose unique columns with `key = [...]` in the mapping, or read by row id with `key = [\"ROWID\"]`"
    )]
    Order {
        relation: String,
        previous: String,
        current: String,
    },
    #[error("column {column} of {relation}: {reason}")]
    Unsupported {
        relation: String,
        column: String,
        reason: String,
    },
}

/// One column of a source table, as the source's catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceColumn {
    pub name: String,
    /// The declared type, as the source spells it (`NUMBER(12,2)`, `VARCHAR2(40)`, `TEXT`).
    pub declared_type: String,
    pub nullable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub columns: Vec<SourceColumn>,
    pub primary_key: Vec<String>,
}

/// A foreign key as the source catalog declares it; columns pair up by position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    pub name: String,
    pub columns: Vec<String>,
    /// The referenced table, without its schema when it is in the scaffolded one.
    pub ref_table: String,
    pub ref_columns: Vec<String>,
}

/// One table of the source catalog, what `migrate scaffold` needs of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogTable {
    pub name: String,
    pub info: TableInfo,
    pub foreign_keys: Vec<ForeignKey>,
}

/// A selected column: a named one, or the physical row id of a table without a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    Named(String),
    RowId,
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Column::Named(n) => f.write_str(n),
            Column::RowId => f.write_str("(row id)"),
        }
    }
}

/// A source hands a batch over early once its values hold this many bytes, so rows with large
/// LOBs do not fill memory `batch_rows` at a time.
pub const BATCH_BYTES: usize = 4 << 20;

/// What to read: which relation, which columns, ordered and resumed by which key.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadSpec {
    pub relation: Relation,
    pub columns: Vec<Column>,
    /// Positions in `columns` of the key, in order.
    pub key: Vec<usize>,
    pub filter: Option<String>,
    /// `migrate sync`: only rows whose watermark column is in this window.
    pub window: Option<Window>,
    /// One part of a split entity: only rows whose key is at most this one (the start is the
    /// resume key).
    pub until: Option<Vec<Value>>,
}

/// What kind of value a watermark column holds, which decides how it is compared, stored and
/// moved back by the overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WmKind {
    Number,
    Date,
    Timestamp,
    /// Text compared as text (SQLite keeps date/times as text).
    Text,
}

impl WmKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WmKind::Number => "number",
            WmKind::Date => "date",
            WmKind::Timestamp => "timestamp",
            WmKind::Text => "text",
        }
    }
    pub fn parse(s: &str) -> Option<WmKind> {
        [WmKind::Number, WmKind::Date, WmKind::Timestamp, WmKind::Text]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Rows with `above < column <= upto` (each bound optional), the bounds kept as lossless text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub column: String,
    pub kind: WmKind,
    pub above: Option<String>,
    pub upto: Option<String>,
}

impl Window {
    /// The bound values in parameter order (after the key's): `above`, then `upto`.
    pub fn binds(&self) -> Vec<&str> {
        self.above.iter().chain(self.upto.iter()).map(String::as_str).collect()
    }
}

/// A bound of the window as the dialect compares it: Oracle converts the text exactly
/// (TO_TIMESTAMP with nine fractional digits, TO_NUMBER), SQLite compares as bound.
fn window_param(kind: WmKind, p: String, oracle: bool) -> String {
    if !oracle {
        return p;
    }
    match kind {
        WmKind::Number => format!("TO_NUMBER({p})"),
        WmKind::Date => format!("TO_DATE({p}, 'YYYY-MM-DD HH24:MI:SS')"),
        WmKind::Timestamp => format!("TO_TIMESTAMP({p}, 'YYYY-MM-DD HH24:MI:SS.FF9')"),
        WmKind::Text => p,
    }
}

impl ReadSpec {
    pub fn key_of(&self, row: &[Value]) -> Vec<Value> {
        self.key.iter().map(|&i| row[i].clone()).collect()
    }
}

/// One candidate of a choice the source made: a file of a group, kept or left out, with what
/// decided it (its rows, or its largest value of a column).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Choice {
    pub group: String,
    pub file: String,
    pub measure: String,
    pub kept: bool,
}

/// Compares two values of one key column in the order the source sorts them.
pub type KeyCmp = std::sync::Arc<dyn Fn(&Value, &Value) -> std::cmp::Ordering + Send + Sync>;

pub trait Source: Send {
    /// How each key column of `spec` compares in the source's own sort order, when that is not
    /// [`crate::value::cmp_key_value`]'s (Oracle: text in its character set's byte order,
    /// ROWIDs by address). Empty: every key column compares plainly.
    fn key_comparators(&mut self, _spec: &ReadSpec) -> Result<Vec<KeyCmp>, SourceError> {
        Ok(Vec::new())
    }
    /// Choices the source made about what the relation holds, to be shown before anything is
    /// loaded (files: one file kept per group, see `files.rs`).
    fn choices(&mut self, _table: &str) -> Vec<Choice> {
        Vec::new()
    }
    /// What identifies the content behind the relation, per part, when it can change under a
    /// resumed load without the source knowing (files: each file's size, modification time
    /// and a hash of its first 64 KiB). `None`: a database, which keeps its own rows.
    fn signature(&mut self, _table: &str) -> Option<Vec<(String, String)>> {
        None
    }
    /// The table's columns and primary key, or `None` when it does not exist.
    fn table_info(&mut self, table: &str) -> Result<Option<TableInfo>, SourceError>;
    /// What the user should know about this source before trusting a load of it (Oracle: a
    /// database character set that legacy applications often filled with other bytes). Logged
    /// as warnings by every pre-flight, --check-only's included.
    fn warnings(&mut self) -> Vec<String> {
        Vec::new()
    }
    /// The schema `schema` names as the source's catalog spells it (Oracle: `abis` is ABIS
    /// when no user is named `abis`), for the `source` lines scaffold writes.
    fn schema_name(&mut self, schema: &str) -> Result<String, SourceError> {
        Ok(schema.to_string())
    }
    /// Every table of `schema` (the source's default schema when `None`), in name order.
    fn catalog(&mut self, schema: Option<&str>) -> Result<Vec<CatalogTable>, SourceError>;
    /// The column names a query returns (it is run with no rows wanted).
    fn query_columns(&mut self, query: &str) -> Result<Vec<String>, SourceError>;
    /// Why a column of this declared type cannot be read, if it cannot.
    fn unsupported_type(&self, _declared: &str) -> Option<String> {
        None
    }
    /// Keys that cut a read of `spec` into cursors of about `rows` rows each (each the last key
    /// of its cursor), for a source that must sort what it reads by that key: Oracle reading a
    /// table by ROWID, where no index gives that order and every cursor would otherwise sort the
    /// rest of the table. Found with one sort at the start. Empty: cursors are not bounded.
    fn cursor_bounds(&mut self, _spec: &ReadSpec, _rows: u64) -> Result<Vec<Vec<Value>>, SourceError> {
        Ok(Vec::new())
    }
    /// Rows of the relation passing `filter`.
    fn count(&mut self, relation: &Relation, filter: Option<&str>) -> Result<u64, SourceError>;
    /// Up to `count` keys that cut the rows of `spec` (in key order) into parts of about `step`
    /// rows: each is the last key of its part. Empty when the source cannot say.
    fn split_keys(&mut self, _spec: &ReadSpec, _step: u64, _count: usize) -> Result<Vec<Vec<Value>>, SourceError> {
        Ok(Vec::new())
    }
    /// The newest value of the watermark `column` among the rows passing `filter`, as lossless
    /// text with its kind; `None` when there is no row (or every value is NULL).
    fn newest(
        &mut self,
        relation: &Relation,
        filter: Option<&str>,
        column: &str,
    ) -> Result<Option<(String, WmKind)>, SourceError>;
    /// Why the relation's physical row id cannot be read (a view, a WITHOUT ROWID table, a
    /// query), if it cannot: checked before the load of an entity without a key.
    fn row_id_problem(&mut self, _relation: &Relation) -> Option<String> {
        None
    }
    /// How many key values occur more than once among the rows in scope of `spec`.
    fn duplicate_keys(&mut self, spec: &ReadSpec) -> Result<u64, SourceError>;
    /// Every row in scope in one plain scan, in no particular order, `batch_rows` at a time,
    /// until the end or until `emit` returns false (see [`scan_sql`]).
    fn scan(
        &mut self,
        spec: &ReadSpec,
        batch_rows: usize,
        emit: &mut dyn FnMut(&mut Vec<Vec<Value>>) -> bool,
    ) -> Result<(), SourceError>;
    /// Streams the rows after `after` (exclusive) in key order, `batch_rows` at a time (fewer
    /// when their values pass [`BATCH_BYTES`]), until the end or until `emit` returns false.
    /// `emit` may keep the batch's rows by taking them out of the vector, and may leave rows it
    /// is done with there instead: whatever the vector holds when `emit` returns is reused for
    /// the next rows (no allocation per row or value once the buffers are warm).
    fn read(
        &mut self,
        spec: &ReadSpec,
        after: Option<&[Value]>,
        batch_rows: usize,
        emit: &mut dyn FnMut(&mut Vec<Vec<Value>>) -> bool,
    ) -> Result<(), SourceError>;
}

/// Rows handed back by a batch's consumer, ready to be overwritten with the next rows.
#[derive(Debug, Default)]
pub struct RowPool {
    spare: Vec<Vec<Value>>,
}

impl RowPool {
    /// A row of `width` values to overwrite (its values keep their text buffers).
    pub fn row(&mut self, width: usize) -> Vec<Value> {
        let mut r = self.spare.pop().unwrap_or_default();
        r.resize(width, Value::Null);
        r
    }

    /// Takes back whatever `batch` holds after its consumer is done with it.
    pub fn recycle(&mut self, batch: &mut Vec<Vec<Value>>) {
        // Enough for a few batches; the rest is freed.
        if self.spare.len() < 8192 {
            self.spare.append(batch);
        }
        batch.clear();
    }
}

/// The keyset predicate without row-value comparison (Oracle 11g has none):
/// `k1 >= :1 AND (k1 > :1 OR (k1 = :1 AND (k2 > :2 OR (k2 = :2 AND k3 > :3))))`. The leading
/// `k1 >= :1` is implied by the rest; it is there for the optimizer, which starts an index range
/// scan from it instead of planning the OR as a full scan and a sort.
pub fn keyset_predicate(keys: &[String], param: &dyn Fn(usize) -> String) -> String {
    with_leading(keys, param, ">=", key_bound(keys, param, ">", ">"))
}

/// The bound of a part without row-value comparison: `k1 <= :1 AND (k1 < :1 OR (k1 = :1 AND
/// k2 <= :2))`, led the same way.
pub fn keyset_upto_predicate(keys: &[String], param: &dyn Fn(usize) -> String) -> String {
    with_leading(keys, param, "<=", key_bound(keys, param, "<", "<="))
}

/// `k1 op :1 AND (rest)` for keys of more than one column; `rest` alone otherwise.
fn with_leading(keys: &[String], param: &dyn Fn(usize) -> String, op: &str, rest: String) -> String {
    if keys.len() < 2 {
        return rest;
    }
    format!("{} {op} {} AND ({rest})", keys[0], param(1))
}

/// Keys compared with bound values column by column: `before` on every column but the last,
/// `last` on the last one.
fn key_bound(keys: &[String], param: &dyn Fn(usize) -> String, before: &str, last: &str) -> String {
    fn build(keys: &[String], i: usize, param: &dyn Fn(usize) -> String, before: &str, last: &str) -> String {
        let (k, p) = (&keys[i], param(i + 1));
        if i + 1 == keys.len() {
            format!("{k} {last} {p}")
        } else {
            format!(
                "{k} {before} {p} OR ({k} = {p} AND ({}))",
                build(keys, i + 1, param, before, last)
            )
        }
    }
    if keys.is_empty() {
        return "1 = 1".to_string();
    }
    build(keys, 0, param, before, last)
}

/// How a source spells what the shared SQL needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialect {
    /// The physical row id (`ROWID`; SQLite's `rowid`, `_rowid_` or `oid`, whichever no user
    /// column shadows).
    pub row_id: String,
    /// Appended to every named key column in ORDER BY and in the keyset predicates, so both use
    /// one explicit binary collation whatever the column declares (`" COLLATE BINARY"`).
    /// Oracle sets NLS_SORT/NLS_COMP for the session instead.
    pub collate: &'static str,
    /// Oracle converts window bounds with TO_NUMBER/TO_TIMESTAMP, and reads `OWNER.TABLE` as a
    /// table of another schema; to SQLite, `a.b` is one table's name.
    pub oracle: bool,
}

impl Dialect {
    pub fn oracle() -> Dialect {
        Dialect {
            row_id: "ROWID".into(),
            collate: "",
            oracle: true,
        }
    }

    pub fn sqlite(row_id: &str) -> Dialect {
        Dialect {
            row_id: row_id.to_string(),
            collate: " COLLATE BINARY",
            oracle: false,
        }
    }

    fn column(&self, c: &Column) -> String {
        match c {
            Column::Named(n) => quote_ident(n),
            Column::RowId => self.row_id.clone(),
        }
    }

    /// A key column as ORDER BY and the keyset predicates compare it.
    fn key_column(&self, c: &Column) -> String {
        match c {
            Column::Named(n) => format!("{}{}", quote_ident(n), self.collate),
            Column::RowId => self.row_id.clone(),
        }
    }
}

/// The key's columns as SQL, as the dialect compares them.
fn key_columns(spec: &ReadSpec, d: &Dialect) -> Vec<String> {
    spec.key.iter().map(|&i| d.key_column(&spec.columns[i])).collect()
}

/// ` WHERE (filter)`, or nothing.
fn where_clause(spec: &ReadSpec) -> String {
    spec.filter
        .as_ref()
        .map(|f| format!(" WHERE ({f})"))
        .unwrap_or_default()
}

/// The keys that cut the relation's rows (in key order) into parts of `step` rows: every
/// `step`-th key, read with ROW_NUMBER (SQLite 3.25 and Oracle 8i have it). `modulo` renders
/// `a % b` in the dialect.
pub fn split_sql(spec: &ReadSpec, d: &Dialect, step: u64, modulo: &dyn Fn(&str, &str) -> String) -> String {
    let keys = key_columns(spec, d);
    let aliases: Vec<String> = (0..keys.len()).map(|i| format!("migrate_k{i}")).collect();
    let selected: Vec<String> = keys.iter().zip(&aliases).map(|(k, a)| format!("{k} AS {a}")).collect();
    let filter = where_clause(spec);
    format!(
        "SELECT {} FROM (SELECT {}, ROW_NUMBER() OVER (ORDER BY {}) AS migrate_rn FROM {}{filter}) s WHERE {} = 0 ORDER BY migrate_rn",
        aliases.join(", "),
        selected.join(", "),
        keys.join(", "),
        from_clause(&spec.relation, d),
        modulo("migrate_rn", &step.to_string()),
    )
}

/// The key of the row after the first `?1` rows in key order (`LIMIT 1 OFFSET ?1`): where a
/// part ends, for sources that skip rows cheaply (SQLite walks its b-tree; Oracle 11g has no
/// OFFSET and uses [`split_sql`]).
pub fn nth_key_sql(spec: &ReadSpec, d: &Dialect) -> String {
    let keys = key_columns(spec, d);
    let plain: Vec<String> = spec.key.iter().map(|&i| d.column(&spec.columns[i])).collect();
    let filter = where_clause(spec);
    format!(
        "SELECT {} FROM {}{filter} ORDER BY {} LIMIT 1 OFFSET ?1",
        plain.join(", "),
        from_clause(&spec.relation, d),
        keys.join(", ")
    )
}

/// The relation as it goes after FROM.
pub fn from_clause(relation: &Relation, d: &Dialect) -> String {
    match relation {
        // `OWNER.TABLE` is schema-qualified in Oracle, like a target.
        Relation::Table(t) if d.oracle => crate::plan::TargetTable::parse(t).sql(),
        Relation::Table(t) => quote_ident(t),
        Relation::Query(q) => format!("({}) q", q.trim().trim_end_matches(';')),
    }
}

/// `SELECT cols FROM rel WHERE (filter) AND (keyset) ORDER BY keys`, with the dialect's row id
/// spelling and parameter style. Callers append their own row limit when they page.
pub fn select_sql(spec: &ReadSpec, d: &Dialect, resume: bool, param: &dyn Fn(usize) -> String) -> String {
    let cols: Vec<String> = spec.columns.iter().map(|c| d.column(c)).collect();
    let keys = key_columns(spec, d);
    let mut conds = Vec::new();
    if let Some(f) = &spec.filter {
        conds.push(format!("({f})"));
    }
    if let Some(w) = &spec.window {
        // Parameters after the key's: `above`, then `upto`, each only when set.
        let oracle = d.oracle;
        let col = quote_ident(&w.column);
        let mut n = spec.key.len();
        if w.above.is_some() {
            n += 1;
            conds.push(format!("{col} > {}", window_param(w.kind, param(n), oracle)));
        }
        if w.upto.is_some() {
            n += 1;
            conds.push(format!("{col} <= {}", window_param(w.kind, param(n), oracle)));
        }
    }
    if resume {
        conds.push(format!("({})", keyset_predicate(&keys, param)));
    }
    if spec.until.is_some() {
        // Parameters after the key's and the window's.
        let first = spec.key.len() + spec.window.as_ref().map_or(0, |w| w.binds().len());
        conds.push(format!("({})", keyset_upto_predicate(&keys, &|i| param(first + i))));
    }
    let mut sql = format!("SELECT {} FROM {}", cols.join(", "), from_clause(&spec.relation, d));
    if !conds.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conds.join(" AND "));
    }
    if !keys.is_empty() {
        sql.push_str(" ORDER BY ");
        sql.push_str(&keys.join(", "));
    }
    sql
}

/// Every row in scope in one plain scan, in no particular order and without a keyset
/// predicate: what `validate --deep` reads, so that it does not share the load's blind spots.
pub fn scan_sql(spec: &ReadSpec, d: &Dialect) -> String {
    let cols: Vec<String> = spec.columns.iter().map(|c| d.column(c)).collect();
    format!(
        "SELECT {} FROM {}{}",
        cols.join(", "),
        from_clause(&spec.relation, d),
        where_clause(spec)
    )
}

/// Key values that occur more than once among the rows in scope (how many), or none.
pub fn duplicate_keys_sql(spec: &ReadSpec, d: &Dialect) -> String {
    let keys = key_columns(spec, d);
    format!(
        "SELECT COUNT(*) FROM (SELECT {k} FROM {}{} GROUP BY {k} HAVING COUNT(*) > 1) dup",
        from_clause(&spec.relation, d),
        where_clause(spec),
        k = keys.join(", ")
    )
}

pub fn count_sql(relation: &Relation, filter: Option<&str>, d: &Dialect) -> String {
    let mut sql = format!("SELECT COUNT(*) FROM {}", from_clause(relation, d));
    if let Some(f) = filter {
        sql.push_str(&format!(" WHERE ({f})"));
    }
    sql
}

/// Opens the source a URL names. Called inside the thread that will use it.
pub fn open(url: &str) -> Result<Box<dyn Source>, SourceError> {
    if url.starts_with("sqlite:") {
        return Ok(Box::new(sqlite::SqliteSource::open(url)?));
    }
    if url.starts_with("oracle:") {
        return Ok(Box::new(oracle::OracleSource::open(url)?));
    }
    if url.starts_with("file:") {
        return Ok(Box::new(files::FileSource::open(url)?));
    }
    Err(SourceError::Url(format!(
        "{}: expected sqlite:///abs/path.db, sqlite:rel/path.db, oracle://user:pass@host:1521/SERVICE or file:///path/to/dir",
        crate::telemetry::redact_url(url)
    )))
}

/// Work on a source in an OS thread of its own (sources are blocking and may hold a runtime
/// of their own), awaited from async code: the one way the engine runs a source.
pub struct Reader<T> {
    handle: std::thread::JoinHandle<Result<T, SourceError>>,
}

impl<T: Send + 'static> Reader<T> {
    /// Starts `work` in a thread named `name`.
    pub fn spawn(
        name: String,
        work: impl FnOnce() -> Result<T, SourceError> + Send + 'static,
    ) -> Result<Self, SourceError> {
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(work)
            .map_err(|e| SourceError::Query {
                what: "starting a source thread".into(),
                cause: Box::new(e),
            })?;
        Ok(Reader { handle })
    }

    /// Waits for the thread's result without blocking the runtime; a thread that panicked is an
    /// error, not a panic here.
    pub async fn join(self) -> Result<T, SourceError> {
        let handle = self.handle;
        match tokio::task::spawn_blocking(move || handle.join()).await {
            Ok(Ok(result)) => result,
            _ => Err(SourceError::Query {
                what: "source thread".into(),
                cause: "the source thread stopped unexpectedly".into(),
            }),
        }
    }
}

/// Runs `f` with a freshly opened source in a [`Reader`] thread and awaits its result.
pub async fn with_source<T: Send + 'static>(
    url: &str,
    f: impl FnOnce(&mut dyn Source) -> Result<T, SourceError> + Send + 'static,
) -> Result<T, SourceError> {
    let url = url.to_string();
    Reader::spawn("source".into(), move || open(&url).and_then(|mut s| f(s.as_mut())))?
        .join()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(i: usize) -> String {
        format!("?{i}")
    }

    #[test]
    fn keyset_predicates_for_one_two_three_columns() {
        let k = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(keyset_predicate(&k(&["a"]), &q), "a > ?1");
        assert_eq!(
            keyset_predicate(&k(&["a", "b"]), &q),
            "a >= ?1 AND (a > ?1 OR (a = ?1 AND (b > ?2)))"
        );
        assert_eq!(
            keyset_predicate(&k(&["a", "b", "c"]), &q),
            "a >= ?1 AND (a > ?1 OR (a = ?1 AND (b > ?2 OR (b = ?2 AND (c > ?3)))))"
        );
    }

    #[test]
    fn select_with_filter_resume_and_row_id() {
        let spec = ReadSpec {
            relation: Relation::Table("AB_COIL".into()),
            columns: vec![
                Column::Named("COIL_NO".into()),
                Column::Named("LINE".into()),
                Column::RowId,
            ],
            key: vec![1, 0],
            filter: Some("STATUS <> 'D'".into()),
            window: None,
            until: None,
        };
        assert_eq!(
            select_sql(&spec, &Dialect::sqlite("rowid"), true, &q),
            "SELECT \"COIL_NO\", \"LINE\", rowid FROM \"AB_COIL\" WHERE (STATUS <> 'D') AND (\"LINE\" COLLATE BINARY >= ?1 AND (\"LINE\" COLLATE BINARY > ?1 OR (\"LINE\" COLLATE BINARY = ?1 AND (\"COIL_NO\" COLLATE BINARY > ?2)))) ORDER BY \"LINE\" COLLATE BINARY, \"COIL_NO\" COLLATE BINARY"
        );
        let by_rowid = ReadSpec {
            key: vec![2],
            filter: None,
            ..spec.clone()
        };
        assert_eq!(
            select_sql(&by_rowid, &Dialect::oracle(), false, &q),
            "SELECT \"COIL_NO\", \"LINE\", ROWID FROM \"AB_COIL\" ORDER BY ROWID"
        );
        let query = ReadSpec {
            relation: Relation::Query("SELECT 1 AS X FROM DUAL;".into()),
            columns: vec![Column::Named("X".into())],
            key: vec![0],
            filter: None,
            window: None,
            until: None,
        };
        assert_eq!(
            select_sql(&query, &Dialect::oracle(), false, &q),
            "SELECT \"X\" FROM (SELECT 1 AS X FROM DUAL) q ORDER BY \"X\""
        );
        assert_eq!(
            count_sql(&spec.relation, Some("A = 1"), &Dialect::oracle()),
            "SELECT COUNT(*) FROM \"AB_COIL\" WHERE (A = 1)"
        );
        assert_eq!(
            spec.key_of(&[Value::Int(1), Value::Int(2), Value::Int(3)]),
            vec![Value::Int(2), Value::Int(1)]
        );
    }

    #[test]
    fn parts_are_bounded_and_split_without_row_values() {
        let k = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(keyset_upto_predicate(&k(&["a"]), &q), "a <= ?1");
        assert_eq!(
            keyset_upto_predicate(&k(&["a", "b"]), &q),
            "a <= ?1 AND (a < ?1 OR (a = ?1 AND (b <= ?2)))"
        );
        let mut spec = ReadSpec {
            relation: Relation::Table("T".into()),
            columns: vec![
                Column::Named("A".into()),
                Column::Named("B".into()),
                Column::Named("V".into()),
            ],
            key: vec![0, 1],
            filter: Some("V > 0".into()),
            window: None,
            until: Some(vec![Value::Int(5), Value::Int(6)]),
        };
        // Resume key ?1 ?2, then the part's end ?3 ?4.
        assert_eq!(
            select_sql(&spec, &Dialect::sqlite("rowid"), true, &q),
            "SELECT \"A\", \"B\", \"V\" FROM \"T\" WHERE (V > 0) AND (\"A\" COLLATE BINARY >= ?1 AND (\"A\" COLLATE BINARY > ?1 OR (\"A\" COLLATE BINARY = ?1 AND (\"B\" COLLATE BINARY > ?2)))) AND (\"A\" COLLATE BINARY <= ?3 AND (\"A\" COLLATE BINARY < ?3 OR (\"A\" COLLATE BINARY = ?3 AND (\"B\" COLLATE BINARY <= ?4)))) ORDER BY \"A\" COLLATE BINARY, \"B\" COLLATE BINARY"
        );
        // After a sync window's two bounds: ?5 ?6.
        spec.window = Some(Window {
            column: "M".into(),
            kind: WmKind::Number,
            above: Some("1".into()),
            upto: Some("2".into()),
        });
        assert!(
            select_sql(&spec, &Dialect::sqlite("rowid"), false, &q)
                .ends_with("AND (\"A\" COLLATE BINARY <= ?5 AND (\"A\" COLLATE BINARY < ?5 OR (\"A\" COLLATE BINARY = ?5 AND (\"B\" COLLATE BINARY <= ?6)))) ORDER BY \"A\" COLLATE BINARY, \"B\" COLLATE BINARY")
        );
        assert_eq!(
            nth_key_sql(&spec, &Dialect::sqlite("rowid")),
            "SELECT \"A\", \"B\" FROM \"T\" WHERE (V > 0) ORDER BY \"A\" COLLATE BINARY, \"B\" COLLATE BINARY LIMIT 1 OFFSET ?1"
        );
        assert_eq!(
            split_sql(&spec, &Dialect::oracle(), 1000, &|a, b| format!("MOD({a}, {b})")),
            "SELECT migrate_k0, migrate_k1 FROM (SELECT \"A\" AS migrate_k0, \"B\" AS migrate_k1, ROW_NUMBER() OVER (ORDER BY \"A\", \"B\") AS migrate_rn FROM \"T\" WHERE (V > 0)) s WHERE MOD(migrate_rn, 1000) = 0 ORDER BY migrate_rn"
        );
    }

    #[test]
    fn unknown_urls_are_errors_without_passwords() {
        let e = open("mysql://u:secret@h/db").err().unwrap().to_string();
        assert!(e.contains("unsupported source URL"), "{e}");
        assert!(!e.contains("secret"), "{e}");
    }
}
