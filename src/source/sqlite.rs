//! SQLite source (the embedded demo and the test source), over sqlx. sqlx is async, so the
//! source owns a small current-thread runtime and blocks on it: the `Source` contract is
//! blocking, and this source always lives in its own thread.

use super::{CatalogTable, ForeignKey, ReadSpec, Source, SourceColumn, SourceError, TableInfo, count_sql, select_sql};
use crate::plan::Relation;
use crate::value::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{AssertSqlSafe, Column as _, ConnectOptions, Decode, Row, SqlSafeStr, Statement, TypeInfo, ValueRef};
use std::str::FromStr;

pub struct SqliteSource {
    rt: tokio::runtime::Runtime,
    conn: SqliteConnection,
}

fn query_err(what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> SourceError {
    let what = what.into();
    move |e| SourceError::Query {
        what,
        cause: Box::new(e),
    }
}

impl SqliteSource {
    pub fn open(url: &str) -> Result<SqliteSource, SourceError> {
        let connect_err = |e: Box<dyn std::error::Error + Send + Sync>| SourceError::Connect {
            url: url.to_string(),
            cause: e,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| connect_err(Box::new(e)))?;
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| connect_err(Box::new(e)))?
            .read_only(true)
            .create_if_missing(false);
        let conn = rt.block_on(opts.connect()).map_err(|e| connect_err(Box::new(e)))?;
        Ok(SqliteSource { rt, conn })
    }
}

fn decode(row: &SqliteRow, i: usize) -> Result<Value, sqlx::Error> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let type_name = raw.type_info().name().to_string();
    let err = |e| sqlx::Error::ColumnDecode {
        index: i.to_string(),
        source: e,
    };
    Ok(match type_name.as_str() {
        "INTEGER" => Value::Int(<i64 as Decode<sqlx::Sqlite>>::decode(raw).map_err(err)?),
        "REAL" => Value::Float(<f64 as Decode<sqlx::Sqlite>>::decode(raw).map_err(err)?),
        "TEXT" => {
            let bytes = <Vec<u8> as Decode<sqlx::Sqlite>>::decode(raw).map_err(err)?;
            match String::from_utf8(bytes) {
                Ok(s) => Value::Text(s),
                Err(e) => Value::Bytes(e.into_bytes()),
            }
        }
        _ => Value::Bytes(<Vec<u8> as Decode<sqlx::Sqlite>>::decode(raw).map_err(err)?),
    })
}

fn bind<'q>(
    q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    v: &Value,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    match v {
        Value::Null => q.bind(None::<i64>),
        Value::Bool(b) => q.bind(*b as i64),
        Value::Int(i) => q.bind(*i),
        Value::Float(f) => q.bind(*f),
        Value::Decimal(d) => q.bind(d.to_string()),
        Value::Text(s) => q.bind(s.clone()),
        Value::Bytes(b) => q.bind(b.clone()),
        Value::Date(d) => q.bind(d.format("%Y-%m-%d").to_string()),
        Value::Timestamp(t) => q.bind(t.format("%Y-%m-%d %H:%M:%S%.f").to_string()),
        Value::TimestampTz(t) => q.bind(t.to_rfc3339()),
    }
}

impl Source for SqliteSource {
    fn table_info(&mut self, table: &str) -> Result<Option<TableInfo>, SourceError> {
        let sql = format!(
            "SELECT name, type, \"notnull\", pk FROM pragma_table_info({})",
            sql_string(table)
        );
        let rows = self
            .rt
            .block_on(sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut self.conn))
            .map_err(query_err(format!("describing table {table}")))?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut pk: Vec<(i64, String)> = Vec::new();
        let mut columns = Vec::new();
        for r in rows {
            let name: String = r.get(0);
            let declared: String = r.get(1);
            let notnull: i64 = r.get(2);
            let pk_pos: i64 = r.get(3);
            if pk_pos > 0 {
                pk.push((pk_pos, name.clone()));
            }
            columns.push(SourceColumn {
                name,
                declared_type: declared,
                nullable: notnull == 0,
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
            .rt
            .block_on(
                sqlx::query_scalar(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
                )
                .fetch_all(&mut self.conn),
            )
            .map_err(query_err("listing tables"))?;
        let mut tables = Vec::with_capacity(names.len());
        for name in names {
            let Some(info) = self.table_info(&name)? else { continue };
            let sql = format!(
                "SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list({}) ORDER BY id, seq",
                sql_string(&name)
            );
            let rows = self
                .rt
                .block_on(sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut self.conn))
                .map_err(query_err(format!("reading the foreign keys of {name}")))?;
            let mut fks: Vec<(i64, ForeignKey)> = Vec::new();
            for r in rows {
                let id: i64 = r.get(0);
                let parent: String = r.get(1);
                let from: String = r.get(2);
                let to: Option<String> = r.get(3);
                if fks.last().is_none_or(|(last, _)| *last != id) {
                    fks.push((
                        id,
                        ForeignKey {
                            name: format!("{}_fk{}", name.to_lowercase(), id + 1),
                            columns: vec![],
                            ref_table: parent,
                            ref_columns: vec![],
                        },
                    ));
                }
                let fk = &mut fks.last_mut().expect("pushed above").1;
                fk.columns.push(from);
                fk.ref_columns.extend(to);
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
            .rt
            .block_on(sqlx::Executor::prepare(
                &mut self.conn,
                AssertSqlSafe(sql).into_sql_str(),
            ))
            .map_err(query_err("preparing the mapping's query"))?;
        Ok(stmt.columns().iter().map(|c| c.name().to_string()).collect())
    }

    fn count(&mut self, relation: &Relation, filter: Option<&str>) -> Result<u64, SourceError> {
        let sql = count_sql(relation, filter);
        let n: i64 = self
            .rt
            .block_on(sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(&mut self.conn))
            .map_err(query_err(format!("counting rows of {}", relation.describe())))?;
        Ok(n as u64)
    }

    fn read(
        &mut self,
        spec: &ReadSpec,
        after: Option<&[Value]>,
        batch_rows: usize,
        emit: &mut dyn FnMut(Vec<Vec<Value>>) -> bool,
    ) -> Result<(), SourceError> {
        let param = |i: usize| format!("?{i}");
        let first = format!("{} LIMIT {batch_rows}", select_sql(spec, "rowid", false, &param));
        let next = format!("{} LIMIT {batch_rows}", select_sql(spec, "rowid", true, &param));
        let mut last: Option<Vec<Value>> = after.map(<[Value]>::to_vec);
        let what = format!("reading {}", spec.relation.describe());
        loop {
            let sql = if last.is_some() { &next } else { &first };
            let mut q = sqlx::query(AssertSqlSafe(sql.clone()));
            if let Some(k) = &last {
                for v in k {
                    q = bind(q, v);
                }
            }
            let rows = self
                .rt
                .block_on(q.fetch_all(&mut self.conn))
                .map_err(query_err(what.clone()))?;
            let n = rows.len();
            let mut batch = Vec::with_capacity(n);
            for r in &rows {
                let mut vals = Vec::with_capacity(spec.columns.len());
                for i in 0..spec.columns.len() {
                    vals.push(decode(r, i).map_err(query_err(what.clone()))?);
                }
                batch.push(vals);
            }
            drop(rows);
            if let Some(row) = batch.last() {
                last = Some(spec.key_of(row));
            }
            if n > 0 && !emit(batch) {
                return Ok(());
            }
            if n < batch_rows {
                return Ok(());
            }
        }
    }
}

/// A SQL string literal for the pragma table name (it cannot be a bound parameter there).
fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
