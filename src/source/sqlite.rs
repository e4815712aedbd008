//! SQLite source (the embedded demo and the test source), over rusqlite: a synchronous binding
//! that reads columns in place. (sqlx's SQLite driver, used here at first, runs every statement
//! through a worker thread and copies each value; profiled at about 80% of the CPU of an
//! identity load, see docs/performance.md; it is no longer a dependency.) The `Source` contract
//! is blocking, and this source always lives in its own thread.

use super::{
    CatalogTable, Column, Dialect, ForeignKey, ReadSpec, Source, SourceColumn, SourceError, TableInfo, WmKind,
    count_sql, select_sql,
};
use crate::plan::Relation;
use crate::value::Value;
use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use rusqlite::{Connection, OpenFlags, Row};
use std::time::Duration;

pub struct SqliteSource {
    conn: Connection,
    /// Each table's row id spelling, or why it has none (found once per table).
    row_ids: std::collections::HashMap<String, Result<String, String>>,
}

fn query_err(what: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> SourceError {
    let what = what.into();
    move |e| SourceError::Query {
        what,
        cause: Box::new(e),
    }
}

/// A window bound as SQLite compares it with the column: numbers as numbers, the rest as text.
fn window_bind(kind: WmKind, text: &str) -> ToSqlOutput<'static> {
    let v = match kind {
        WmKind::Number => match (text.parse::<i64>(), text.parse::<f64>()) {
            (Ok(i), _) => SqlValue::Integer(i),
            (_, Ok(f)) => SqlValue::Real(f),
            _ => SqlValue::Text(text.to_string()),
        },
        _ => SqlValue::Text(text.to_string()),
    };
    ToSqlOutput::Owned(v)
}

/// The file a `sqlite:` URL names: `sqlite:///abs/path.db`, `sqlite://rel/path.db`,
/// `sqlite:rel/path.db` or `sqlite:/abs/path.db`, percent-decoded; a `?query` (`mode=ro` …) is
/// ignored, as the source is always opened read-only. The forms sqlx accepted, which the docs
/// and existing `.env` files use.
pub fn sqlite_path(url: &str) -> Result<std::path::PathBuf, String> {
    let rest = url
        .strip_prefix("sqlite:")
        .ok_or_else(|| format!("{url}: not a sqlite: URL"))?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let file = rest.split_once('?').map_or(rest, |(f, _)| f);
    if file.is_empty() || file == ":memory:" {
        return Err(format!("{url}: names no database file (sqlite:path/to/file.db)"));
    }
    let decoded = percent_encoding::percent_decode_str(file)
        .decode_utf8()
        .map_err(|_| format!("{url}: the path is not UTF-8 once decoded"))?;
    Ok(std::path::PathBuf::from(decoded.as_ref()))
}

impl SqliteSource {
    pub fn open(url: &str) -> Result<SqliteSource, SourceError> {
        let connect_err = |e: Box<dyn std::error::Error + Send + Sync>| SourceError::Connect {
            url: url.to_string(),
            cause: e,
        };
        let path = sqlite_path(url).map_err(|e| connect_err(e.into()))?;
        if !path.exists() {
            return Err(connect_err(format!("{}: no such file", path.display()).into()));
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| connect_err(Box::new(e)))?;
        // As long as a writer may hold the file before "database is locked" (a retried fault).
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| connect_err(Box::new(e)))?;
        Ok(SqliteSource {
            conn,
            row_ids: Default::default(),
        })
    }

    /// How the relation's physical row id is spelled: `rowid`, or `_rowid_` or `oid` when a
    /// user column takes the name (a column named `rowid` would otherwise be read as the row
    /// id, and paged by). Views, queries and WITHOUT ROWID tables have none.
    fn row_id(&mut self, relation: &Relation) -> Result<String, String> {
        let Relation::Table(t) = relation else {
            return Err("a query has no row id".into());
        };
        if let Some(found) = self.row_ids.get(t) {
            return found.clone();
        }
        let found = (|| {
            let columns = self
                .table_info(t)
                .map_err(|e| crate::telemetry::chain(&e))?
                .map(|i| i.columns)
                .unwrap_or_default();
            let Some(alias) = ["rowid", "_rowid_", "oid"]
                .into_iter()
                .find(|a| !columns.iter().any(|c| c.name.eq_ignore_ascii_case(a)))
            else {
                return Err(format!(
                    "{t} has columns named rowid, _rowid_ and oid, so its row id cannot be read"
                ));
            };
            let probe = format!(
                "SELECT {alias} FROM {} LIMIT 0",
                super::from_clause(relation, &Dialect::sqlite("rowid"))
            );
            match self.conn.prepare(&probe) {
                Ok(_) => Ok(alias.to_string()),
                Err(_) => Err(format!("{t} has no row id (a view, or a WITHOUT ROWID table)")),
            }
        })();
        self.row_ids.insert(t.clone(), found.clone());
        found
    }

    /// The dialect for reading `spec`: its row id spelling is looked up only when it is read.
    fn dialect(&mut self, spec: &ReadSpec) -> Result<Dialect, SourceError> {
        if !spec.columns.contains(&Column::RowId) {
            return Ok(Dialect::sqlite("rowid"));
        }
        let row_id = self.row_id(&spec.relation).map_err(|why| SourceError::Query {
            what: format!("reading {} by its row id", spec.relation.describe()),
            cause: format!("{why}; set `key` in the mapping to unique, non-null columns").into(),
        })?;
        Ok(Dialect::sqlite(&row_id))
    }
}

/// Decodes column `i` into `slot`, reusing its text or byte buffer.
fn decode_into(row: &Row<'_>, i: usize, slot: &mut Value) -> Result<(), rusqlite::Error> {
    match row.get_ref(i)? {
        ValueRef::Null => *slot = Value::Null,
        ValueRef::Integer(n) => *slot = Value::Int(n),
        ValueRef::Real(f) => *slot = Value::Float(f),
        ValueRef::Text(bytes) => match std::str::from_utf8(bytes) {
            Ok(s) => slot.set_text(s),
            Err(_) => slot.set_invalid_text(bytes),
        },
        ValueRef::Blob(b) => slot.set_bytes(b),
    }
    Ok(())
}

pub(crate) fn decode(row: &Row<'_>, i: usize) -> Result<Value, rusqlite::Error> {
    Ok(match row.get_ref(i)? {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(n) => Value::Int(n),
        ValueRef::Real(f) => Value::Float(f),
        ValueRef::Text(bytes) => match std::str::from_utf8(bytes) {
            Ok(s) => Value::Text(s.to_string()),
            Err(_) => Value::InvalidText(bytes.to_vec()),
        },
        ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
    })
}

/// A key value bound the way SQLite compares it with what the column holds.
fn bind(v: &Value) -> ToSqlOutput<'_> {
    match v {
        Value::Null => ToSqlOutput::Owned(SqlValue::Null),
        Value::Bool(b) => ToSqlOutput::Owned(SqlValue::Integer(*b as i64)),
        Value::Int(i) => ToSqlOutput::Owned(SqlValue::Integer(*i)),
        Value::Float(f) => ToSqlOutput::Owned(SqlValue::Real(*f)),
        Value::Decimal(d) => ToSqlOutput::Owned(SqlValue::Text(d.to_string())),
        Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        Value::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        // Bound as the TEXT it was read as: as a BLOB it would sort after every text.
        Value::InvalidText(b) => ToSqlOutput::Borrowed(ValueRef::Text(b)),
        Value::Date(d) => ToSqlOutput::Owned(SqlValue::Text(d.format("%Y-%m-%d").to_string())),
        Value::Timestamp(t) => ToSqlOutput::Owned(SqlValue::Text(t.format("%Y-%m-%d %H:%M:%S%.f").to_string())),
        Value::TimestampTz(t) => ToSqlOutput::Owned(SqlValue::Text(t.to_rfc3339())),
        // Never a SQLite key (only the Oracle source reads such values); bound as NULL.
        Value::Unreadable(_) => ToSqlOutput::Owned(SqlValue::Null),
    }
}

impl SqliteSource {
    /// Every row of a query without parameters, as values.
    fn all(&self, sql: &str, what: &str) -> Result<Vec<Vec<Value>>, SourceError> {
        let mut stmt = self.conn.prepare(sql).map_err(query_err(what))?;
        let n = stmt.column_count();
        let mut rows = stmt.query([]).map_err(query_err(what))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(query_err(what))? {
            out.push(
                (0..n)
                    .map(|i| decode(r, i))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(query_err(what))?,
            );
        }
        Ok(out)
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Text(s) => s.clone(),
        Value::Null => String::new(),
        other => other.brief(),
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        _ => 0,
    }
}

impl Source for SqliteSource {
    fn table_info(&mut self, table: &str) -> Result<Option<TableInfo>, SourceError> {
        let sql = format!(
            "SELECT name, type, \"notnull\", pk FROM pragma_table_info({})",
            sql_string(table)
        );
        let rows = self.all(&sql, &format!("describing table {table}"))?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut pk: Vec<(i64, String)> = Vec::new();
        let mut columns = Vec::new();
        for r in rows {
            let name = text(&r[0]);
            if int(&r[3]) > 0 {
                pk.push((int(&r[3]), name.clone()));
            }
            columns.push(SourceColumn {
                name,
                declared_type: text(&r[1]),
                nullable: int(&r[2]) == 0,
            });
        }
        pk.sort();
        Ok(Some(TableInfo {
            columns,
            primary_key: pk.into_iter().map(|(_, n)| n).collect(),
        }))
    }

    fn catalog(&mut self, schema: Option<&str>) -> Result<Vec<CatalogTable>, SourceError> {
        if let Some(s) = schema.filter(|s| !s.eq_ignore_ascii_case("main")) {
            return Err(SourceError::Query {
                what: format!("listing the tables of schema {s}"),
                cause: "a SQLite source has only the schema 'main'".into(),
            });
        }
        let names: Vec<String> = self
            .all(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
                "listing tables",
            )?
            .iter()
            .map(|r| text(&r[0]))
            .collect();
        let mut tables = Vec::with_capacity(names.len());
        for name in names {
            let Some(info) = self.table_info(&name)? else { continue };
            let sql = format!(
                "SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list({}) ORDER BY id, seq",
                sql_string(&name)
            );
            let rows = self.all(&sql, &format!("reading the foreign keys of {name}"))?;
            let mut fks: Vec<(i64, ForeignKey)> = Vec::new();
            for r in rows {
                let id = int(&r[0]);
                if fks.last().is_none_or(|(last, _)| *last != id) {
                    fks.push((
                        id,
                        ForeignKey {
                            name: format!("{}_fk{}", name.to_lowercase(), id + 1),
                            columns: vec![],
                            ref_table: text(&r[1]),
                            ref_columns: vec![],
                        },
                    ));
                }
                let fk = &mut fks.last_mut().expect("pushed above").1;
                fk.columns.push(text(&r[2]));
                if !r[3].is_null() {
                    fk.ref_columns.push(text(&r[3]));
                }
            }
            let mut foreign_keys: Vec<ForeignKey> = fks.into_iter().map(|(_, f)| f).collect();
            // `REFERENCES parent` without columns means the parent's primary key.
            for fk in &mut foreign_keys {
                if fk.ref_columns.len() != fk.columns.len() {
                    fk.ref_columns = self
                        .table_info(&fk.ref_table)?
                        .map(|i| i.primary_key)
                        .unwrap_or_default();
                }
            }
            tables.push(CatalogTable {
                name,
                info,
                foreign_keys,
            });
        }
        Ok(tables)
    }

    fn query_columns(&mut self, query: &str) -> Result<Vec<String>, SourceError> {
        let sql = format!("SELECT * FROM ({}) q LIMIT 0", query.trim().trim_end_matches(';'));
        let stmt = self
            .conn
            .prepare(&sql)
            .map_err(query_err("preparing the mapping's query"))?;
        Ok(stmt.column_names().iter().map(|c| c.to_string()).collect())
    }

    fn count(&mut self, relation: &Relation, filter: Option<&str>) -> Result<u64, SourceError> {
        let sql = count_sql(relation, filter, &Dialect::sqlite("rowid"));
        let n: i64 = self
            .conn
            .query_row(&sql, [], |r| r.get(0))
            .map_err(query_err(format!("counting rows of {}", relation.describe())))?;
        Ok(n as u64)
    }

    fn split_keys(&mut self, spec: &ReadSpec, step: u64, count: usize) -> Result<Vec<Vec<Value>>, SourceError> {
        // One short walk of the key's b-tree per boundary (ROW_NUMBER over the whole table
        // measured 30 times slower).
        let what = format!("finding where to split {}", spec.relation.describe());
        let sql = super::nth_key_sql(spec, &self.dialect(spec)?);
        let mut stmt = self.conn.prepare(&sql).map_err(query_err(what.clone()))?;
        let width = spec.key.len();
        let mut keys = Vec::new();
        for i in 1..=count as u64 {
            let Some(offset) = (step.max(1) * i).checked_sub(1) else {
                break;
            };
            let mut rows = stmt.query([offset as i64]).map_err(query_err(what.clone()))?;
            let Some(r) = rows.next().map_err(query_err(what.clone()))? else {
                break;
            };
            let key = (0..width)
                .map(|c| decode(r, c))
                .collect::<Result<Vec<_>, _>>()
                .map_err(query_err(what.clone()))?;
            keys.push(key);
        }
        Ok(keys)
    }

    fn newest(
        &mut self,
        relation: &Relation,
        filter: Option<&str>,
        column: &str,
    ) -> Result<Option<(String, WmKind)>, SourceError> {
        let col = crate::plan::quote_ident(column);
        let mut sql = format!(
            "SELECT CAST(MAX({col}) AS TEXT), typeof(MAX({col})) FROM {}",
            crate::source::from_clause(relation, &Dialect::sqlite("rowid"))
        );
        if let Some(f) = filter {
            sql.push_str(&format!(" WHERE ({f})"));
        }
        let what = format!("finding the newest {column} of {}", relation.describe());
        let (text, kind): (Option<String>, String) = self
            .conn
            .query_row(&sql, [], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(query_err(what.clone()))?;
        let kind = match kind.as_str() {
            "null" => return Ok(None),
            "integer" | "real" => WmKind::Number,
            "text" => WmKind::Text,
            other => {
                return Err(SourceError::Query {
                    what,
                    cause: format!("the watermark column holds {other} values; it must hold numbers or date/time text")
                        .into(),
                });
            }
        };
        Ok(text.map(|t| (t, kind)))
    }

    fn row_id_problem(&mut self, relation: &Relation) -> Option<String> {
        self.row_id(relation).err()
    }

    fn duplicate_keys(&mut self, spec: &ReadSpec) -> Result<u64, SourceError> {
        let sql = super::duplicate_keys_sql(spec, &self.dialect(spec)?);
        let n: i64 = self.conn.query_row(&sql, [], |r| r.get(0)).map_err(query_err(format!(
            "looking for duplicate keys in {}",
            spec.relation.describe()
        )))?;
        Ok(n as u64)
    }

    fn scan(
        &mut self,
        spec: &ReadSpec,
        batch_rows: usize,
        emit: &mut dyn FnMut(&mut Vec<Vec<Value>>) -> bool,
    ) -> Result<(), SourceError> {
        let sql = super::scan_sql(spec, &self.dialect(spec)?);
        let what = format!("scanning {}", spec.relation.describe());
        let mut stmt = self.conn.prepare(&sql).map_err(query_err(what.clone()))?;
        let mut rows = stmt.query([]).map_err(query_err(what.clone()))?;
        let width = spec.columns.len();
        let mut pool = super::RowPool::default();
        let mut batch: Vec<Vec<Value>> = Vec::with_capacity(batch_rows.min(4096));
        while let Some(r) = rows.next().map_err(|e| query_err(&what)(e))? {
            let mut vals = pool.row(width);
            for (i, v) in vals.iter_mut().enumerate() {
                decode_into(r, i, v).map_err(|e| query_err(&what)(e))?;
            }
            batch.push(vals);
            if batch.len() >= batch_rows {
                if !emit(&mut batch) {
                    return Ok(());
                }
                pool.recycle(&mut batch);
            }
        }
        if !batch.is_empty() {
            emit(&mut batch);
        }
        Ok(())
    }

    fn read(
        &mut self,
        spec: &ReadSpec,
        after: Option<&[Value]>,
        batch_rows: usize,
        emit: &mut dyn FnMut(&mut Vec<Vec<Value>>) -> bool,
    ) -> Result<(), SourceError> {
        let param = |i: usize| format!("?{i}");
        let dialect = self.dialect(spec)?;
        // One short query per batch (keyset paging): no read lock is held while the batch
        // waits in the pipeline.
        let first = format!("{} LIMIT {batch_rows}", select_sql(spec, &dialect, false, &param));
        let next = format!("{} LIMIT {batch_rows}", select_sql(spec, &dialect, true, &param));
        let mut last: Option<Vec<Value>> = after.map(<[Value]>::to_vec);
        let what = format!("reading {}", spec.relation.describe());
        let width = spec.columns.len();
        let mut pool = super::RowPool::default();
        let mut batch: Vec<Vec<Value>> = Vec::with_capacity(batch_rows.min(4096));
        loop {
            let sql = if last.is_some() { &next } else { &first };
            let mut stmt = self.conn.prepare_cached(sql).map_err(query_err(what.clone()))?;
            let mut binds: Vec<ToSqlOutput<'_>> = last.iter().flatten().map(bind).collect();
            // The key's parameters come first; the first query leaves them unused.
            if last.is_none() && (spec.window.is_some() || spec.until.is_some()) {
                binds.extend(spec.key.iter().map(|_| ToSqlOutput::Owned(SqlValue::Null)));
            }
            if let Some(w) = &spec.window {
                binds.extend(w.binds().into_iter().map(|t| window_bind(w.kind, t)));
            }
            if let Some(until) = &spec.until {
                binds.extend(until.iter().map(bind));
            }
            let mut rows = stmt
                .query(rusqlite::params_from_iter(binds.iter()))
                .map_err(query_err(what.clone()))?;
            let mut bytes = 0;
            let mut full = false;
            // Errors are built only when they happen (this is the per-row path).
            while let Some(r) = rows.next().map_err(|e| query_err(&what)(e))? {
                let mut vals = pool.row(width);
                for (i, v) in vals.iter_mut().enumerate() {
                    decode_into(r, i, v).map_err(|e| query_err(&what)(e))?;
                    bytes += v.data_len();
                }
                batch.push(vals);
                if bytes >= super::BATCH_BYTES {
                    // The next query starts after this row.
                    full = true;
                    break;
                }
            }
            drop(rows);
            drop(stmt);
            let n = batch.len();
            if let Some(row) = batch.last() {
                last = Some(spec.key_of(row));
            }
            if n > 0 && !emit(&mut batch) {
                return Ok(());
            }
            pool.recycle(&mut batch);
            if n < batch_rows && !full {
                return Ok(());
            }
        }
    }
}

/// A SQL string literal for the pragma table name (it cannot be a bound parameter there).
fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod url_tests {
    use super::sqlite_path;
    use std::path::Path;

    #[test]
    fn sqlite_urls_name_the_file_as_sqlx_did() {
        for (url, want) in [
            ("sqlite:///abs/legacy.db", "/abs/legacy.db"),
            ("sqlite://demo/legacy.db", "demo/legacy.db"),
            ("sqlite:demo/legacy.db", "demo/legacy.db"),
            ("sqlite:/abs/x.db?mode=ro", "/abs/x.db"),
            ("sqlite:my%20data/l%C3%A9gacy.db", "my data/légacy.db"),
        ] {
            assert_eq!(sqlite_path(url).unwrap(), Path::new(want), "{url}");
        }
        for bad in [
            "sqlite:",
            "sqlite://",
            "sqlite::memory:",
            "postgres://x/y",
            "sqlite:%FF.db",
        ] {
            assert!(sqlite_path(bad).is_err(), "{bad}");
        }
    }
}
