//! Oracle source (11g and later) over the `oracle` crate (ODPI-C, which loads the Oracle client
//! library at run time). This file is the only code here that talks to an Oracle server, and it
//! is kept to wiring: the URL ([`url`]), every SQL text ([`sql`]), the type map ([`types`]) and the
//! value conversion ([`convert`]) are pure and unit-tested without a server. What this file does
//! is exercised only by the oracle-smoke workflow against dockerized Oracle.

pub mod convert;
pub mod fetch;
pub mod keybind;
pub mod order;
pub mod sql;
pub mod types;
pub mod url;

use super::{CatalogTable, ForeignKey, ReadSpec, Source, SourceColumn, SourceError, TableInfo, WmKind, count_sql};
use crate::plan::{Relation, TargetTable};
use crate::value::Value;
use convert::{Fetched, ora_type, to_value};
use keybind::KeyBind;
use oracle::sql_type::{InnerValue, OracleType, Timestamp, ToSql};
use oracle::{Connection, Connector, Row, RowValue, SqlValue};
use std::borrow::Cow;
use types::OraType;
use url::{ConnectSpec, LobFetch};

pub struct OracleSource {
    conn: Connection,
    spec: ConnectSpec,
    /// The session's current schema: the owner of unqualified table names.
    schema: String,
    /// NLS_CHARACTERSET and NLS_NCHAR_CHARACTERSET: the byte orders text keys sort in.
    charsets: (String, String),
}

/// The message for a missing client library: what to install, how the dynamic linker finds
/// it on this system, and the original error, whose text users search for. `lib_dir` is
/// ORACLE_CLIENT_LIB_DIR when set: on Linux it does not replace LD_LIBRARY_PATH (the client
/// loads its own libraries, libnnz19.so and others, through the linker's path), so the message
/// does not suggest the setting that just failed.
pub fn client_library_message(original: &str, lib_dir: Option<&str>, os: &str) -> String {
    let install = "the Oracle client library could not be loaded. Install Oracle Instant Client 19 \
         (the 'basic' or 'basiclite' package; 19 is the newest client that still talks to 11g servers, and it \
         also talks to 12c through 23ai)";
    let how = match os {
        "linux" => {
            let set = match lib_dir {
                Some(d) => format!(
                    "ORACLE_CLIENT_LIB_DIR={d} is set, but on Linux that is not enough: the client finds its own libraries only through the dynamic linker, so "
                ),
                None => String::new(),
            };
            format!(
                "{set}put its directory in LD_LIBRARY_PATH (export LD_LIBRARY_PATH=/opt/oracle/instantclient_19_29) \
                 or register it with ldconfig (echo /opt/oracle/instantclient_19_29 > /etc/ld.so.conf.d/oracle.conf; ldconfig). \
                 It needs libaio: apt-get install libaio1 (Debian, Ubuntu up to 22.04), or on Ubuntu 24.04 libaio1t64 \
                 plus the link ln -s /usr/lib/x86_64-linux-gnu/libaio.so.1t64 <client dir>/libaio.so.1; on RHEL/Oracle Linux dnf install libaio"
            )
        }
        "macos" => "then set ORACLE_CLIENT_LIB_DIR to its directory".to_string(),
        "windows" => "then add its directory to PATH, or set ORACLE_CLIENT_LIB_DIR to it".to_string(),
        _ => "then make its directory known to the dynamic linker (LD_LIBRARY_PATH), or set ORACLE_CLIENT_LIB_DIR"
            .to_string(),
    };
    format!("{install}; {how}. Original error: {original}")
}

/// Set for the Oracle client before it starts (main does, before any thread): OCI converts
/// TIMESTAMP WITH LOCAL TIME ZONE values with the client's time zone, ORA_SDTZ, as well as the
/// session's; UTC on both ends keeps them the instants they are.
pub const CLIENT_ENV: [(&str, &str); 1] = [("ORA_SDTZ", "UTC")];

/// Opens the client library once per process; ORACLE_CLIENT_LIB_DIR points at it explicitly.
fn init_client() -> Result<(), SourceError> {
    let Some(dir) = std::env::var_os("ORACLE_CLIENT_LIB_DIR").filter(|d| !d.is_empty()) else {
        return Ok(());
    };
    let mut params = oracle::InitParams::new();
    params
        .oracle_client_lib_dir(dir)
        .and_then(|p| p.init())
        .map(|_| ())
        .map_err(|e| classify(e, "loading the Oracle client library"))
}

/// DPI-1047 becomes the install message; anything else stays a query error with its cause.
fn classify(e: oracle::Error, what: &str) -> SourceError {
    let text = e.to_string();
    if text.contains("DPI-1047") {
        let dir = std::env::var("ORACLE_CLIENT_LIB_DIR").ok().filter(|d| !d.is_empty());
        SourceError::ClientLibrary(client_library_message(&text, dir.as_deref(), std::env::consts::OS))
    } else {
        SourceError::Query {
            what: what.to_string(),
            cause: Box::new(e),
        }
    }
}

impl OracleSource {
    pub fn open(url: &str) -> Result<OracleSource, SourceError> {
        let spec = ConnectSpec::parse(url).map_err(|e| SourceError::Url(e.to_string()))?;
        init_client()?;
        let conn = Connector::new(&spec.user, &spec.password, &spec.connect_string)
            .connect()
            .map_err(|e| match classify(e, "connecting") {
                SourceError::Query { cause, .. } => SourceError::Connect {
                    url: crate::telemetry::redact_url(url),
                    cause,
                },
                other => other,
            })?;
        for stmt in sql::SESSION_SETUP {
            conn.execute(stmt, &[])
                .map_err(|e| classify(e, "setting up the session"))?;
        }
        let _ = conn.set_module("migrate");
        let schema: String = conn
            .query_row_as(sql::CURRENT_SCHEMA, &[])
            .map_err(|e| classify(e, "reading the current schema"))?;
        let charsets: (String, String) = conn
            .query_row_as(sql::CHARSETS, &[])
            .map_err(|e| classify(e, "reading the database character sets"))?;
        Ok(OracleSource {
            conn,
            spec,
            schema,
            charsets,
        })
    }

    /// `OWNER.TABLE` or `TABLE` (the session's schema).
    fn owner_and_table(&self, table: &str) -> (String, String) {
        let t = TargetTable::parse(table);
        (t.schema.unwrap_or_else(|| self.schema.clone()), t.name)
    }

    fn columns(&self, owner: &str, table: Option<&str>) -> Result<Vec<(String, SourceColumn)>, SourceError> {
        let rows = self
            .conn
            .query_named(sql::COLUMNS, &[("owner", &owner), ("tname", &table)])
            .map_err(|e| classify(e, "reading ALL_TAB_COLUMNS"))?;
        let mut out = Vec::new();
        for row in rows {
            let row = row.map_err(|e| classify(e, "reading ALL_TAB_COLUMNS"))?;
            let get = |e| classify(e, "reading ALL_TAB_COLUMNS");
            let table: String = row.get(0).map_err(get)?;
            let name: String = row.get(1).map_err(get)?;
            let data_type: String = row.get(2).map_err(get)?;
            let length: Option<u32> = row.get(3).map_err(get)?;
            let precision: Option<u32> = row.get(4).map_err(get)?;
            let scale: Option<i32> = row.get(5).map_err(get)?;
            let char_length: Option<u32> = row.get(6).map_err(get)?;
            let nullable: String = row.get(7).map_err(get)?;
            let declared_type = types::declared_from_catalog(&data_type, length, precision, scale, char_length);
            out.push((
                table,
                SourceColumn {
                    name,
                    declared_type,
                    nullable: nullable == "Y",
                },
            ));
        }
        Ok(out)
    }

    /// The object type of `owner.name` (TABLE, VIEW, SYNONYM …), if it exists.
    fn object_type(&self, owner: &str, name: &str) -> Result<Option<String>, SourceError> {
        let mut rows = self
            .conn
            .query_named(sql::OBJECT_TYPE, &[("owner", &owner), ("name", &name)])
            .map_err(|e| classify(e, "reading ALL_OBJECTS"))?;
        rows.next()
            .map(|r| r.and_then(|r| r.get::<_, String>(0)))
            .transpose()
            .map_err(|e| classify(e, "reading ALL_OBJECTS"))
    }

    /// The table or view a name reaches, through synonyms (the owner's own, then public ones;
    /// at most 8 hops, never over a database link). A name that is no synonym is itself.
    fn resolve(&self, owner: &str, name: &str) -> Result<(String, String), SourceError> {
        let (mut owner, mut name) = (owner.to_string(), name.to_string());
        for _ in 0..8 {
            if self.object_type(&owner, &name)?.is_some_and(|t| t != "SYNONYM") {
                break;
            }
            let err = |e| classify(e, "reading ALL_SYNONYMS");
            let mut rows = self
                .conn
                .query_named(sql::SYNONYM, &[("owner", &owner), ("name", &name)])
                .map_err(err)?;
            let Some(r) = rows.next().transpose().map_err(err)? else {
                break;
            };
            let link: Option<String> = r.get(2).map_err(err)?;
            if link.is_some() {
                break;
            }
            (owner, name) = (r.get(0).map_err(err)?, r.get(1).map_err(err)?);
        }
        Ok((owner, name))
    }

    fn primary_keys(&self, owner: &str, table: Option<&str>) -> Result<Vec<(String, String)>, SourceError> {
        let rows = self
            .conn
            .query_named(sql::PRIMARY_KEYS, &[("owner", &owner), ("tname", &table)])
            .map_err(|e| classify(e, "reading primary keys"))?;
        rows.map(|r| {
            let r = r.map_err(|e| classify(e, "reading primary keys"))?;
            Ok((
                r.get(0).map_err(|e| classify(e, "reading primary keys"))?,
                r.get(1).map_err(|e| classify(e, "reading primary keys"))?,
            ))
        })
        .collect()
    }
}

/// A row of cells, converted straight from the fetch buffer (no per-row `Row` clone). A value
/// that converts to no cell (a Julian-only date, a corrupt DATE) is [`Value::Unreadable`]: that
/// row's reject, naming the column, instead of an error that would stop every run at that row.
struct Cells(Vec<Value>);

impl RowValue for Cells {
    fn get(row: &Row) -> oracle::Result<Cells> {
        let mut out = Vec::with_capacity(row.sql_values().len());
        for v in row.sql_values() {
            out.push(match cell(v)? {
                Ok(value) => value,
                Err(reason) => Value::Unreadable(reason),
            });
        }
        Ok(Cells(out))
    }
}

/// The cell of one fetched value; the inner `Err` is why it has none. The outer error is the
/// driver's (a LOB read through a lost connection), which stops the read to be retried.
fn cell(v: &SqlValue) -> oracle::Result<Result<Value, String>> {
    if v.is_null()? {
        return Ok(Ok(Value::Null));
    }
    let kind = match ora_type(v.oracle_type()?).fetch_kind() {
        Ok(k) => k,
        Err(why) => return Ok(Err(why)),
    };
    let fetched = match v.as_inner_value()? {
        InnerValue::Int64(i) => Fetched::Int64(i),
        InnerValue::UInt64(u) => Fetched::UInt64(u),
        InnerValue::Float(f) => Fetched::Float(f),
        InnerValue::Double(f) => Fetched::Double(f),
        InnerValue::Number(s) => Fetched::Number(s),
        InnerValue::Char(b) => Fetched::Text(Cow::Borrowed(b)),
        InnerValue::Raw(b) => Fetched::Raw(Cow::Borrowed(b)),
        InnerValue::Boolean(b) => Fetched::Bool(b),
        // Read from the fetch buffer: a failure is this value's (a corrupt DATE), not the read's.
        InnerValue::Timestamp(_) => match v.get::<Timestamp>() {
            Ok(t) => Fetched::Timestamp(t),
            Err(e) => return Ok(Err(convert::unreadable_date(&e.to_string()))),
        },
        // Locators (`lobs=locator`): read the whole LOB, one round trip per value.
        InnerValue::Clob(_) => Fetched::Text(Cow::Owned(v.get::<String>()?.into_bytes())),
        InnerValue::Blob(_) => Fetched::Raw(Cow::Owned(v.get::<Vec<u8>>()?)),
        InnerValue::Rowid(_) => Fetched::Text(Cow::Owned(v.get::<String>()?.into_bytes())),
        _ => return Ok(Err(types::unsupported_reason(&v.oracle_type()?.to_string()))),
    };
    Ok(to_value(kind, fetched))
}

impl Source for OracleSource {
    fn cursor_bounds(&mut self, spec: &ReadSpec, rows: u64) -> Result<Vec<Vec<Value>>, SourceError> {
        // ORDER BY ROWID is always a sort (no index holds that order): bounded cursors sort one
        // slice each, after one sort that finds the bounds, instead of the rest of the table
        // every time a cursor is opened again.
        if !sql::reads_by_rowid(spec) {
            return Ok(Vec::new());
        }
        self.split_keys(spec, rows, usize::MAX)
    }

    fn key_comparators(&mut self, spec: &ReadSpec) -> Result<Vec<crate::source::KeyCmp>, SourceError> {
        let types = self.describe(spec)?;
        let known = |name: &str| {
            order::text_order(name).unwrap_or_else(|| {
                tracing::warn!(
                    "character set {name} is not known to migrate: text keys are checked in code point order, which may not be how it sorts"
                );
                order::TextOrder::CodePoint
            })
        };
        let (db, national) = (known(&self.charsets.0), known(&self.charsets.1));
        Ok(spec
            .key
            .iter()
            .map(|&i| {
                let o = order::key_order(&types[i], db, national);
                std::sync::Arc::new(move |a: &Value, b: &Value| order::compare(o, a, b)) as crate::source::KeyCmp
            })
            .collect())
    }

    fn table_info(&mut self, table: &str) -> Result<Option<TableInfo>, SourceError> {
        let (owner, name) = self.owner_and_table(table);
        // A synonym reads like its table; the catalog knows the columns by the table's name.
        let (owner, name) = self.resolve(&owner, &name)?;
        let columns: Vec<SourceColumn> = self.columns(&owner, Some(&name))?.into_iter().map(|(_, c)| c).collect();
        if columns.is_empty() {
            return Ok(None);
        }
        let primary_key = self
            .primary_keys(&owner, Some(&name))?
            .into_iter()
            .map(|(_, c)| c)
            .collect();
        Ok(Some(TableInfo { columns, primary_key }))
    }

    fn row_id_problem(&mut self, relation: &Relation) -> Option<String> {
        let Relation::Table(t) = relation else {
            return Some("a query has no ROWID".into());
        };
        let (owner, name) = self.owner_and_table(t);
        let (owner, name) = self.resolve(&owner, &name).ok()?;
        let kind = self.object_type(&owner, &name).ok().flatten()?;
        sql::row_id_problem(&kind, &format!("{owner}.{name}"))
    }

    fn warnings(&mut self) -> Vec<String> {
        order::charset_warning(&self.charsets.0).into_iter().collect()
    }

    fn schema_name(&mut self, schema: &str) -> Result<String, SourceError> {
        let exists = |owner: &str| -> Result<bool, SourceError> {
            self.conn
                .query_row_as_named::<u64>(sql::USER_EXISTS, &[("owner", &owner)])
                .map(|n| n > 0)
                .map_err(|e| classify(e, "reading ALL_USERS"))
        };
        if exists(schema)? {
            return Ok(schema.to_string());
        }
        // Unquoted Oracle names are upper case: `--schema abis` means ABIS.
        let upper = schema.to_uppercase();
        Ok(if exists(&upper)? { upper } else { schema.to_string() })
    }

    fn unsupported_type(&self, declared: &str) -> Option<String> {
        types::parse(declared).fetch_kind().err()
    }

    fn catalog(&mut self, schema: Option<&str>) -> Result<Vec<CatalogTable>, SourceError> {
        let mut owner = schema.unwrap_or(&self.schema).to_string();
        let list = |owner: &str| -> Result<Vec<String>, SourceError> {
            let rows = self
                .conn
                .query_named(sql::TABLES, &[("owner", &owner)])
                .map_err(|e| classify(e, "reading ALL_TABLES"))?;
            rows.map(|r| {
                r.and_then(|r| r.get::<_, String>(0))
                    .map_err(|e| classify(e, "reading ALL_TABLES"))
            })
            .collect()
        };
        let mut names = list(&owner)?;
        // Unquoted Oracle names are upper case: `--schema abis` means ABIS.
        if names.is_empty() && owner != owner.to_uppercase() {
            owner = owner.to_uppercase();
            names = list(&owner)?;
        }
        let columns = self.columns(&owner, None)?;
        let pks = self.primary_keys(&owner, None)?;
        let rows = self
            .conn
            .query_named(sql::FOREIGN_KEYS, &[("owner", &owner)])
            .map_err(|e| classify(e, "reading foreign keys"))?;
        let mut fks = Vec::new();
        for r in rows {
            let r = r.map_err(|e| classify(e, "reading foreign keys"))?;
            let get = |i: usize| r.get::<_, String>(i).map_err(|e| classify(e, "reading foreign keys"));
            fks.push(FkRow {
                constraint: get(0)?,
                table: get(1)?,
                column: get(2)?,
                ref_owner: get(3)?,
                ref_table: get(4)?,
                ref_column: get(5)?,
            });
        }
        Ok(assemble_catalog(&owner, names, columns, pks, fks))
    }

    fn query_columns(&mut self, query: &str) -> Result<Vec<String>, SourceError> {
        let rs = self
            .conn
            .query(&sql::query_probe_sql(query), &[])
            .map_err(|e| classify(e, "preparing the mapping's query"))?;
        Ok(rs.column_info().iter().map(|c| c.name().to_string()).collect())
    }

    fn count(&mut self, relation: &Relation, filter: Option<&str>) -> Result<u64, SourceError> {
        self.conn
            .query_row_as::<u64>(&count_sql(relation, filter, &crate::source::Dialect::oracle()), &[])
            .map_err(|e| classify(e, &format!("counting rows of {}", relation.describe())))
    }

    fn split_keys(&mut self, spec: &ReadSpec, step: u64, count: usize) -> Result<Vec<Vec<Value>>, SourceError> {
        let what = format!("finding where to split {}", spec.relation.describe());
        let sql = crate::source::split_sql(spec, &crate::source::Dialect::oracle(), step.max(1), &|a, b| {
            format!("MOD({a}, {b})")
        });
        let rows = self.conn.query_as::<Cells>(&sql, &[]).map_err(|e| classify(e, &what))?;
        let mut keys = Vec::new();
        for row in rows.take(count) {
            let Cells(cells) = row.map_err(|e| classify(e, &what))?;
            keys.push(cells);
        }
        Ok(keys)
    }

    fn newest(
        &mut self,
        relation: &Relation,
        filter: Option<&str>,
        column: &str,
    ) -> Result<Option<(String, WmKind)>, SourceError> {
        let what = format!("finding the newest {column} of {}", relation.describe());
        // The column's type decides how its maximum is turned into exact text.
        let probe = self
            .conn
            .query(&sql::newest_sql(relation, Some("1 = 0"), column, None), &[])
            .map_err(|e| classify(e, &what))?;
        let t = probe.column_info().first().map(|c| ora_type(c.oracle_type()));
        drop(probe);
        let kind = match t {
            Some(OraType::Number { .. } | OraType::Float | OraType::BinaryFloat | OraType::BinaryDouble) => {
                WmKind::Number
            }
            Some(OraType::Date) => WmKind::Date,
            Some(OraType::Timestamp(_)) => WmKind::Timestamp,
            Some(OraType::Char(_) | OraType::Varchar(_)) => WmKind::Text,
            other => {
                return Err(SourceError::Query {
                    what,
                    cause: format!(
                        "a watermark column must be NUMBER, DATE, TIMESTAMP or text, not {other:?} (for TIMESTAMP WITH TIME ZONE, use a query with SYS_EXTRACT_UTC)"
                    )
                    .into(),
                });
            }
        };
        let newest = sql::newest_sql(relation, filter, column, Some(kind));
        let text: Option<String> = if kind == WmKind::Number {
            // The number itself, written out exactly here (convert::number_text).
            let Cells(cells) = self
                .conn
                .query_row_as::<Cells>(&newest, &[])
                .map_err(|e| classify(e, &what))?;
            cells.first().and_then(convert::number_text)
        } else {
            self.conn
                .query_row_as::<Option<String>>(&newest, &[])
                .map_err(|e| classify(e, &what))?
        };
        Ok(text.map(|t| (t, kind)))
    }

    fn duplicate_keys(&mut self, spec: &ReadSpec) -> Result<u64, SourceError> {
        let sql = crate::source::duplicate_keys_sql(spec, &crate::source::Dialect::oracle());
        self.conn.query_row_as::<u64>(&sql, &[]).map_err(|e| {
            classify(
                e,
                &format!("looking for duplicate keys in {}", spec.relation.describe()),
            )
        })
    }

    fn scan(
        &mut self,
        spec: &ReadSpec,
        batch_rows: usize,
        emit: &mut dyn FnMut(&mut Vec<Vec<Value>>) -> bool,
    ) -> Result<(), SourceError> {
        let types = self.describe(spec)?;
        let sql = crate::source::scan_sql(spec, &crate::source::Dialect::oracle());
        self.stream(spec, &sql, &types, Vec::new(), batch_rows, emit)
    }

    fn read(
        &mut self,
        spec: &ReadSpec,
        after: Option<&[Value]>,
        batch_rows: usize,
        emit: &mut dyn FnMut(&mut Vec<Vec<Value>>) -> bool,
    ) -> Result<(), SourceError> {
        let what = format!("reading {}", spec.relation.describe());
        let types = self.describe(spec)?;
        let sql = sql::read_sql(spec, after.is_some(), self.array_rows(&types).0);
        // Each key value is bound in its column's own type (keybind.rs), so the comparison
        // runs on the column as it is: through its index, in its ORDER BY's order.
        let key_binds = |values: &[Value], first: usize, role: &str| -> Result<Vec<(String, KeyBind)>, SourceError> {
            spec.key
                .iter()
                .zip(values)
                .enumerate()
                .map(|(i, (&col, v))| {
                    keybind::key_bind(&types[col], v)
                        .map(|b| (sql::bind_name(first + i + 1), b))
                        .map_err(|reason| SourceError::Query {
                            what: format!("{what}: binding {role}"),
                            cause: reason.into(),
                        })
                })
                .collect()
        };
        let mut binds = match after {
            Some(key) => key_binds(key, 0, "the resume key")?,
            None => vec![],
        };
        if let Some(w) = &spec.window {
            for (i, text) in w.binds().into_iter().enumerate() {
                binds.push((sql::bind_name(spec.key.len() + i + 1), keybind::varchar(text)));
            }
        }
        if let Some(until) = &spec.until {
            let first = spec.key.len() + spec.window.as_ref().map_or(0, |w| w.binds().len());
            binds.extend(key_binds(until, first, "the end of its part")?);
        }
        self.stream(spec, &sql, &types, binds, batch_rows, emit)
    }
}

impl OracleSource {
    /// The types of `spec`'s columns, from a describe of the same columns with no rows: an
    /// unsupported column is named before anything is fetched, key values are bound in their
    /// column's type, and the fetch array is sized from the row's width.
    fn describe(&mut self, spec: &ReadSpec) -> Result<Vec<OracleType>, SourceError> {
        let what = format!("reading {}", spec.relation.describe());
        let probe = self
            .conn
            .query(&sql::probe_sql(spec), &[])
            .map_err(|e| classify(e, &what))?;
        let mut types = Vec::new();
        for info in probe.column_info() {
            ora_type(info.oracle_type())
                .fetch_kind()
                .map_err(|reason| SourceError::Unsupported {
                    relation: spec.relation.describe(),
                    column: info.name().to_string(),
                    reason,
                })?;
            types.push(info.oracle_type().clone());
        }
        Ok(types)
    }

    /// Rows per array fetch for a row of `types`, and the configured maximum: sized from the
    /// row's buffer width (fetch.rs), as ODPI-C allocates every column's declared width for
    /// every row of the array.
    fn array_rows(&self, types: &[OracleType]) -> (u32, u32) {
        let tuning = &self.spec.tuning;
        let has_lobs = types.iter().any(|t| ora_type(t).is_lob());
        let max = if has_lobs {
            tuning.lob_fetch_rows
        } else {
            tuning.fetch_rows
        };
        (fetch::fetch_rows(types, tuning.fetch_mb, max), max)
    }

    /// Runs one query of `spec`'s columns (described as `types`) with `binds` and hands its rows
    /// over in batches, from one cursor with array fetches.
    fn stream(
        &mut self,
        spec: &ReadSpec,
        sql: &str,
        types: &[OracleType],
        binds: Vec<(String, KeyBind)>,
        batch_rows: usize,
        emit: &mut dyn FnMut(&mut Vec<Vec<Value>>) -> bool,
    ) -> Result<(), SourceError> {
        let what = format!("reading {}", spec.relation.describe());
        let has_lobs = types.iter().any(|t| ora_type(t).is_lob());
        let (rows, max) = self.array_rows(types);
        let tuning = &self.spec.tuning;
        let mut builder = self.conn.statement(sql);
        tracing::debug!(
            "{}: {rows} rows per array fetch (row buffer {} bytes, budget {} MiB, at most {max})",
            spec.relation.describe(),
            fetch::row_bytes(types),
            tuning.fetch_mb
        );
        if has_lobs {
            // OCI does not prefetch rows with LOB/LONG columns; the array size is what counts.
            builder.fetch_array_size(rows).prefetch_rows(0);
            if tuning.lobs == LobFetch::Locator {
                builder.lob_locator();
            }
        } else {
            // Prefetched rows take buffers too: never more than one array's worth.
            builder
                .fetch_array_size(rows)
                .prefetch_rows(tuning.prefetch_rows.min(rows));
        }
        let mut stmt = builder.build().map_err(|e| classify(e, &what))?;
        let named: Vec<(&str, &dyn ToSql)> = binds.iter().map(|(n, b)| (n.as_str(), b as &dyn ToSql)).collect();
        let rows = stmt.query_as_named::<Cells>(&named).map_err(|e| classify(e, &what))?;
        let mut batch = Vec::with_capacity(batch_rows.min(4096));
        let mut bytes = 0;
        for row in rows {
            let Cells(cells) = row.map_err(|e| classify(e, &what))?;
            bytes += cells.iter().map(Value::data_len).sum::<usize>();
            batch.push(cells);
            if batch.len() == batch_rows || bytes >= crate::source::BATCH_BYTES {
                if !emit(&mut batch) {
                    return Ok(());
                }
                batch.clear();
                bytes = 0;
            }
        }
        if !batch.is_empty() {
            emit(&mut batch);
        }
        Ok(())
    }
}

/// One row of the foreign-key catalog query.
#[derive(Debug, Clone)]
pub struct FkRow {
    pub constraint: String,
    pub table: String,
    pub column: String,
    pub ref_owner: String,
    pub ref_table: String,
    pub ref_column: String,
}

/// Groups the flat catalog rows into tables. Pure: the catalog queries' rows in, tables out.
/// A reference to another owner's table stays qualified (`OTHER.TABLE`).
pub fn assemble_catalog(
    owner: &str,
    tables: Vec<String>,
    columns: Vec<(String, SourceColumn)>,
    primary_keys: Vec<(String, String)>,
    foreign_keys: Vec<FkRow>,
) -> Vec<CatalogTable> {
    tables
        .into_iter()
        .map(|name| {
            let columns = columns
                .iter()
                .filter(|(t, _)| *t == name)
                .map(|(_, c)| c.clone())
                .collect();
            let primary_key = primary_keys
                .iter()
                .filter(|(t, _)| *t == name)
                .map(|(_, c)| c.clone())
                .collect();
            let mut fks: Vec<ForeignKey> = Vec::new();
            for r in foreign_keys.iter().filter(|r| r.table == name) {
                if fks.last().is_none_or(|f| f.name != r.constraint) {
                    let ref_table = if r.ref_owner == owner {
                        r.ref_table.clone()
                    } else {
                        format!("{}.{}", r.ref_owner, r.ref_table)
                    };
                    fks.push(ForeignKey {
                        name: r.constraint.clone(),
                        columns: vec![],
                        ref_table,
                        ref_columns: vec![],
                    });
                }
                let fk = fks.last_mut().expect("pushed above");
                fk.columns.push(r.column.clone());
                fk.ref_columns.push(r.ref_column.clone());
            }
            CatalogTable {
                name,
                info: TableInfo { columns, primary_key },
                foreign_keys: fks,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, t: &str) -> SourceColumn {
        SourceColumn {
            name: name.into(),
            declared_type: t.into(),
            nullable: true,
        }
    }

    fn fk(c: &str, t: &str, col: &str, ro: &str, rt: &str, rc: &str) -> FkRow {
        FkRow {
            constraint: c.into(),
            table: t.into(),
            column: col.into(),
            ref_owner: ro.into(),
            ref_table: rt.into(),
            ref_column: rc.into(),
        }
    }

    #[test]
    fn catalog_rows_group_into_tables() {
        let tables = assemble_catalog(
            "ABIS",
            vec!["AB_COIL".into(), "AB_JOB".into()],
            vec![
                ("AB_COIL".into(), col("COIL_ID", "NUMBER(10)")),
                ("AB_COIL".into(), col("GRADE", "VARCHAR2(20)")),
                ("AB_JOB".into(), col("JOB_ID", "NUMBER(10)")),
                ("AB_JOB".into(), col("LINE", "NUMBER(4)")),
                ("AB_JOB".into(), col("SEQ", "NUMBER(4)")),
                ("AB_JOB".into(), col("COIL_ID", "NUMBER(10)")),
                ("AB_VIEW".into(), col("X", "DATE")),
            ],
            vec![("AB_COIL".into(), "COIL_ID".into()), ("AB_JOB".into(), "JOB_ID".into())],
            vec![
                fk("FK_JOB_COIL", "AB_JOB", "COIL_ID", "ABIS", "AB_COIL", "COIL_ID"),
                fk("FK_JOB_SLOT", "AB_JOB", "LINE", "MES", "SLOT", "LINE"),
                fk("FK_JOB_SLOT", "AB_JOB", "SEQ", "MES", "SLOT", "SEQ"),
            ],
        );
        assert_eq!(tables.len(), 2);
        assert_eq!(tables[0].info.columns.len(), 2);
        assert_eq!(tables[0].info.primary_key, vec!["COIL_ID"]);
        assert!(tables[0].foreign_keys.is_empty());
        let job = &tables[1];
        assert_eq!(
            job.info.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["JOB_ID", "LINE", "SEQ", "COIL_ID"]
        );
        assert_eq!(job.foreign_keys.len(), 2);
        assert_eq!(job.foreign_keys[0].ref_table, "AB_COIL");
        assert_eq!(job.foreign_keys[1].ref_table, "MES.SLOT");
        assert_eq!(job.foreign_keys[1].columns, ["LINE", "SEQ"]);
        assert_eq!(job.foreign_keys[1].ref_columns, ["LINE", "SEQ"]);
    }

    #[test]
    fn missing_client_message_says_what_to_install_for_the_system() {
        let original = "DPI Error: DPI-1047: Cannot locate a 64-bit Oracle Client library";
        let m = client_library_message(original, None, "linux");
        for want in [
            "Instant Client 19",
            "basic",
            "basiclite",
            "LD_LIBRARY_PATH",
            "ldconfig",
            "libaio1",
            "libaio1t64",
            "libaio.so.1",
            "11g",
            "DPI-1047: Cannot locate",
        ] {
            assert!(m.contains(want), "{want}: {m}");
        }
        // On Linux the library directory variable is not the way: not suggested …
        assert!(!m.contains("ORACLE_CLIENT_LIB_DIR"), "{m}");
        // … and when it was set, the message says why it did not work.
        let m = client_library_message(original, Some("/opt/ic"), "linux");
        assert!(
            m.contains("ORACLE_CLIENT_LIB_DIR=/opt/ic is set, but on Linux that is not enough"),
            "{m}"
        );
        assert!(m.contains("LD_LIBRARY_PATH"));
        // Elsewhere it is the way.
        let m = client_library_message(original, None, "macos");
        assert!(m.contains("ORACLE_CLIENT_LIB_DIR") && !m.contains("libaio"), "{m}");
    }

    #[test]
    fn the_client_runs_in_utc() {
        assert_eq!(CLIENT_ENV, [("ORA_SDTZ", "UTC")]);
    }
}
