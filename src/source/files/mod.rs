//! Files as a source: `--source file:///path/dir`, and in each mapping `source = "sales/*.csv"`
//! (a file or a glob under that directory, with `?options`): CSV, TSV or any one-byte
//! delimiter, plain, `.gz`, or the members of a `.zip`, read as one entity in file-name order.
//!
//! Every row is keyed by where it is: `_file` (its name under the directory; a zip member is
//! `archive.zip/member.csv`), `_line` (the line its record starts on) and `_offset` (the byte
//! its record starts at, in the decompressed stream). These three are readable columns too, and
//! the entity's key: a resumed read opens the file at `_offset` instead of counting lines again.
//! A malformed record (a field count other than the header's) or a field that is not valid in
//! the file's encoding becomes a value no encoder accepts ([`Value::Unreadable`]), so that row
//! is a reject naming the file, line and column; the rest loads.
//!
//! Options after `?`, `&`-separated: `delimiter=;` (or `tab`, `comma`, `pipe`, `semicolon`),
//! `quote="` (or `none`), `header=true|false` (without a header the columns are `c1`, `c2` …),
//! `null=SPELLING` (default: the empty field is NULL), `encoding=windows-1252` (any WHATWG label:
//! `utf-8`, `latin1`, `iso-8859-15`, `shift_jis` …; default UTF-8).

mod group;
mod options;
mod stream;

use super::{CatalogTable, Column, ReadSpec, Source, SourceColumn, SourceError, TableInfo, WmKind};
use crate::plan::Relation;
use crate::value::Value;
use group::keep_one_per_group;
use options::{Opts, decode, parse_spec, sniff};
use std::collections::HashMap;
use std::path::PathBuf;
use stream::{expand, file_signature, header_of, walk};

pub const FILE_COL: &str = "_file";
pub const LINE_COL: &str = "_line";
pub const OFFSET_COL: &str = "_offset";

/// The key of every file row, in order.
pub const KEY: [&str; 3] = [FILE_COL, LINE_COL, OFFSET_COL];

/// One stream of rows: a file, a gzipped file, or a member of a zip archive.
#[derive(Debug, Clone)]
pub(super) struct Member {
    /// As `_file` shows it: the path under the source directory (`a.zip/b.csv` for a member).
    pub(super) name: String,
    pub(super) path: PathBuf,
    pub(super) zip_member: Option<String>,
    pub(super) gz: bool,
}

/// A member's rows and the key of its last row.
type Counted = (u64, Option<Vec<Value>>);

#[derive(Debug, Clone)]
struct FileSet {
    opts: Opts,
    members: Vec<Member>,
    /// Header columns (or c1…cN), without the key columns.
    columns: Vec<String>,
    /// Per member: (rows, last key), once counted.
    counted: Option<Vec<Counted>>,
    /// With `group=`: every candidate file and whether it was kept.
    choices: Vec<super::Choice>,
}

pub struct FileSource {
    root: PathBuf,
    sets: HashMap<String, FileSet>,
}

/// The directory a `file:` URL names: `file:///abs/dir`, `file://rel/dir`, `file:rel/dir`.
pub fn root_of(url: &str) -> Result<PathBuf, String> {
    let rest = url
        .strip_prefix("file:")
        .ok_or_else(|| format!("{url}: not a file: URL"))?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let decoded = percent_encoding::percent_decode_str(rest)
        .decode_utf8()
        .map_err(|_| format!("{url}: the path is not UTF-8 once decoded"))?;
    if decoded.is_empty() {
        return Err(format!("{url}: names no directory (file:///path/to/dir)"));
    }
    Ok(PathBuf::from(decoded.as_ref()))
}

pub(super) fn io_err(what: String) -> impl FnOnce(std::io::Error) -> SourceError {
    move |e| SourceError::Query {
        what,
        cause: Box::new(e),
    }
}

pub(super) fn bad(relation: &str, column: &str, reason: String) -> SourceError {
    SourceError::Unsupported {
        relation: relation.to_string(),
        column: column.to_string(),
        reason,
    }
}

impl FileSource {
    pub fn open(url: &str) -> Result<FileSource, SourceError> {
        let root = root_of(url).map_err(SourceError::Url)?;
        if !root.is_dir() {
            return Err(SourceError::Connect {
                url: url.to_string(),
                cause: format!("{}: no such directory", root.display()).into(),
            });
        }
        Ok(FileSource {
            root,
            sets: HashMap::new(),
        })
    }

    /// The files a mapping's `source` names, with their options and header; `None` when no
    /// file matches.
    fn set(&mut self, spec: &str) -> Result<Option<&mut FileSet>, SourceError> {
        if !self.sets.contains_key(spec) {
            let (pattern, opts) = parse_spec(spec).map_err(|why| bad(spec, "(options)", why))?;
            let members = expand(&self.root, &pattern).map_err(|why| bad(spec, "(files)", why))?;
            if members.is_empty() {
                return Ok(None);
            }
            let columns = header_of(&members[0], &opts)?;
            let (members, choices) = match &opts.group {
                Some(re) => keep_one_per_group(spec, members, &opts, re, &columns)?,
                None => (members, Vec::new()),
            };
            for c in &choices {
                tracing::info!(
                    "{spec}: group {}: {} {} ({})",
                    c.group,
                    if c.kept { "keeps" } else { "leaves out" },
                    c.file,
                    c.measure
                );
            }
            self.sets.insert(
                spec.to_string(),
                FileSet {
                    opts,
                    members,
                    columns,
                    counted: None,
                    choices,
                },
            );
        }
        Ok(self.sets.get_mut(spec))
    }

    fn table(relation: &Relation) -> Result<&str, SourceError> {
        match relation {
            Relation::Table(t) => Ok(t),
            Relation::Query(_) => Err(bad(
                "(query)",
                "(query)",
                "a file source has no queries: name a file or a glob in `source`".into(),
            )),
        }
    }

    /// Counts the rows of every file once (and remembers each file's last key).
    fn counted(&mut self, spec: &str) -> Result<Vec<Counted>, SourceError> {
        let set = self
            .set(spec)?
            .ok_or_else(|| bad(spec, "(files)", "no file matches".into()))?;
        if let Some(c) = &set.counted {
            return Ok(c.clone());
        }
        let mut all = Vec::new();
        for m in set.members.clone() {
            let mut rows = 0u64;
            let mut last = None;
            walk(spec, &m, &set.opts, None, &mut |line, offset, _rec| {
                rows += 1;
                last = Some((line, offset));
                true
            })?;
            all.push((
                rows,
                last.map(|(l, o)| vec![Value::Text(m.name.clone()), Value::Int(l as i64), Value::Int(o as i64)]),
            ));
        }
        set.counted = Some(all.clone());
        Ok(all)
    }
}

/// Where each requested column comes from.
#[derive(Clone, Copy)]
enum Src {
    Field(usize),
    File,
    Line,
    Offset,
}

impl FileSource {
    fn plan(&mut self, spec: &ReadSpec) -> Result<(String, FileSet, Vec<Src>), SourceError> {
        let t = Self::table(&spec.relation)?.to_string();
        if spec.filter.is_some() {
            return Err(bad(&t, "(where)", "a file source has no `where`: load the rows and filter in PostgreSQL, or remove rows with a transform that rejects them".into()));
        }
        if spec.window.is_some() {
            return Err(bad(
                &t,
                "(incremental)",
                "a file source cannot be synced incrementally".into(),
            ));
        }
        let set = self
            .set(&t)?
            .ok_or_else(|| bad(&t, "(files)", "no file matches".into()))?
            .clone();
        let mut srcs = Vec::new();
        for c in &spec.columns {
            srcs.push(match c {
                Column::Named(n) if n == FILE_COL => Src::File,
                Column::Named(n) if n == LINE_COL => Src::Line,
                Column::Named(n) if n == OFFSET_COL => Src::Offset,
                Column::Named(n) => Src::Field(
                    set.columns
                        .iter()
                        .position(|c| c == n)
                        .ok_or_else(|| bad(&t, n, "no such column in the header".into()))?,
                ),
                Column::RowId => return Err(bad(&t, "(key)", format!("file rows are keyed by {}", KEY.join(", ")))),
            });
        }
        let key_names: Vec<String> = spec.key.iter().map(|&i| spec.columns[i].to_string()).collect();
        if key_names != KEY {
            return Err(bad(
                &t,
                "(key)",
                format!(
                    "a file source is read in file order, keyed by {}: remove `key` from the mapping (it says {})",
                    KEY.join(", "),
                    key_names.join(", ")
                ),
            ));
        }
        Ok((t, set, srcs))
    }

    /// Rows from `after` (exclusive) to `until` (inclusive) in key order.
    fn rows(
        &mut self,
        spec: &ReadSpec,
        after: Option<&[Value]>,
        batch_rows: usize,
        emit: &mut dyn FnMut(&mut Vec<Vec<Value>>) -> bool,
    ) -> Result<(), SourceError> {
        let (t, set, srcs) = self.plan(spec)?;
        let key_of = |k: &[Value]| -> Option<(String, u64, u64)> {
            match k {
                [Value::Text(f), Value::Int(l), Value::Int(o)] => Some((f.clone(), *l as u64, *o as u64)),
                _ => None,
            }
        };
        let start = after
            .map(|a| key_of(a).ok_or_else(|| bad(&t, "(key)", "the stored position is not a file position".into())));
        let start = start.transpose()?;
        let until = spec.until.as_deref().and_then(key_of);
        if let Some((f, _, _)) = &start
            && !set.members.iter().any(|m| &m.name == f)
        {
            return Err(bad(
                &t,
                FILE_COL,
                format!("{f}, where the last run stopped, is gone: start this entity over with --truncate"),
            ));
        }
        let width = spec.columns.len();
        let mut pool = super::RowPool::default();
        let mut batch: Vec<Vec<Value>> = Vec::with_capacity(batch_rows.min(4096));
        let mut stopped = false;
        for m in &set.members {
            if stopped {
                break;
            }
            if let Some((f, _, _)) = &start
                && m.name.as_bytes() < f.as_bytes()
            {
                continue;
            }
            if let Some((u, _, _)) = &until
                && m.name.as_bytes() > u.as_bytes()
            {
                break;
            }
            let from = start
                .as_ref()
                .filter(|(f, _, _)| *f == m.name)
                .map(|(_, l, o)| (*l, *o));
            let expected = set.columns.len();
            walk(&t, m, &set.opts, from, &mut |line, offset, rec| {
                if let Some((u, ul, _)) = &until
                    && *u == m.name
                    && line > *ul
                {
                    stopped = true;
                    return false;
                }
                let mut row = pool.row(width);
                let malformed = (rec.len() != expected).then(|| {
                    let raw: Vec<String> = rec.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect();
                    let mut raw = raw.join(&(set.opts.delimiter as char).to_string());
                    if raw.chars().count() > 200 {
                        raw = raw.chars().take(200).collect::<String>() + "…";
                    }
                    format!(
                        "{} line {line}: {} field(s), the header has {expected}: {raw}",
                        m.name,
                        rec.len()
                    )
                });
                for (v, src) in row.iter_mut().zip(&srcs) {
                    *v = match *src {
                        Src::File => Value::Text(m.name.clone()),
                        Src::Line => Value::Int(line as i64),
                        Src::Offset => Value::Int(offset as i64),
                        Src::Field(_) if malformed.is_some() => {
                            Value::Unreadable(malformed.clone().unwrap_or_default())
                        }
                        Src::Field(i) => {
                            let bytes = rec.get(i).unwrap_or_default();
                            match decode(&set.opts, bytes) {
                                Some(s) if s == set.opts.null => Value::Null,
                                Some(s) => Value::Text(s),
                                None => Value::Unreadable(format!(
                                    "{} line {line}: bytes {} are not valid {}",
                                    m.name,
                                    crate::value::hex(&bytes[..bytes.len().min(32)]),
                                    set.opts.encoding.name()
                                )),
                            }
                        }
                    };
                }
                batch.push(row);
                if batch.len() >= batch_rows {
                    if !emit(&mut batch) {
                        stopped = true;
                        return false;
                    }
                    pool.recycle(&mut batch);
                }
                true
            })?;
        }
        if !batch.is_empty() && !stopped {
            emit(&mut batch);
        }
        Ok(())
    }
}

impl Source for FileSource {
    fn signature(&mut self, table: &str) -> Option<Vec<(String, String)>> {
        let set = self.set(table).ok()??;
        Some(
            set.members
                .iter()
                .map(|m| (m.name.clone(), file_signature(&m.path)))
                .collect(),
        )
    }

    fn choices(&mut self, table: &str) -> Vec<super::Choice> {
        match self.set(table) {
            Ok(Some(set)) => set.choices.clone(),
            _ => Vec::new(),
        }
    }

    fn table_info(&mut self, table: &str) -> Result<Option<TableInfo>, SourceError> {
        let Some(set) = self.set(table)? else {
            return Ok(None);
        };
        let text = |name: &str| SourceColumn {
            name: name.to_string(),
            declared_type: "TEXT".into(),
            nullable: true,
        };
        let mut columns: Vec<SourceColumn> = set.columns.iter().map(|c| text(c)).collect();
        columns.push(SourceColumn {
            nullable: false,
            ..text(FILE_COL)
        });
        for k in [LINE_COL, OFFSET_COL] {
            columns.push(SourceColumn {
                name: k.into(),
                declared_type: "INTEGER".into(),
                nullable: false,
            });
        }
        Ok(Some(TableInfo {
            columns,
            primary_key: KEY.iter().map(|s| s.to_string()).collect(),
        }))
    }

    fn catalog(&mut self, _schema: Option<&str>) -> Result<Vec<CatalogTable>, SourceError> {
        let mut names: Vec<String> = std::fs::read_dir(&self.root)
            .map_err(io_err(format!("listing {}", self.root.display())))?
            .flatten()
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                let l = n.to_ascii_lowercase();
                [".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz"]
                    .iter()
                    .any(|x| l.ends_with(x))
            })
            .collect();
        names.sort();
        let mut out = Vec::new();
        for n in names {
            // What the first bytes say: the delimiter of the header, and the encoding when they
            // are not UTF-8; scaffold writes them into `source`.
            let n = match sniff(&self.root.join(&n)) {
                Some(opts) => format!("{n}?{opts}"),
                None => n,
            };
            if let Some(info) = self.table_info(&n)? {
                out.push(CatalogTable {
                    name: n,
                    info,
                    foreign_keys: vec![],
                });
            }
        }
        Ok(out)
    }

    fn query_columns(&mut self, _query: &str) -> Result<Vec<String>, SourceError> {
        Err(bad(
            "(query)",
            "(query)",
            "a file source has no queries: name a file or a glob in `source`".into(),
        ))
    }

    fn count(&mut self, relation: &Relation, filter: Option<&str>) -> Result<u64, SourceError> {
        let t = Self::table(relation)?.to_string();
        if let Some(f) = filter {
            // The pre-flight's check for NULL keys: file positions are never NULL.
            let null_check = f
                .split(" OR ")
                .all(|p| KEY.iter().any(|k| p.trim() == format!("\"{k}\" IS NULL")));
            if null_check {
                return Ok(0);
            }
            return Err(bad(
                &t,
                "(where)",
                "a file source has no `where`: load the rows and filter in PostgreSQL".into(),
            ));
        }
        Ok(self.counted(&t)?.iter().map(|(n, _)| n).sum())
    }

    /// Parts at file boundaries, so that `--jobs` reads several files side by side.
    fn split_keys(&mut self, spec: &ReadSpec, step: u64, count: usize) -> Result<Vec<Vec<Value>>, SourceError> {
        let t = Self::table(&spec.relation)?.to_string();
        let files = self.counted(&t)?;
        let mut keys = Vec::new();
        let mut since = 0u64;
        for (rows, last) in files.iter().take(files.len().saturating_sub(1)) {
            since += rows;
            if since >= step
                && let Some(k) = last
            {
                keys.push(k.clone());
                since = 0;
            }
            if keys.len() >= count {
                break;
            }
        }
        Ok(keys)
    }

    fn newest(
        &mut self,
        relation: &Relation,
        _filter: Option<&str>,
        column: &str,
    ) -> Result<Option<(String, WmKind)>, SourceError> {
        Err(bad(
            &relation.describe(),
            column,
            "a file source cannot be synced incrementally".into(),
        ))
    }

    fn duplicate_keys(&mut self, _spec: &ReadSpec) -> Result<u64, SourceError> {
        // (file, line, offset) is unique by construction.
        Ok(0)
    }

    fn scan(
        &mut self,
        spec: &ReadSpec,
        batch_rows: usize,
        emit: &mut dyn FnMut(&mut Vec<Vec<Value>>) -> bool,
    ) -> Result<(), SourceError> {
        let mut s = spec.clone();
        s.until = None;
        self.rows(&s, None, batch_rows, emit)
    }

    fn read(
        &mut self,
        spec: &ReadSpec,
        after: Option<&[Value]>,
        batch_rows: usize,
        emit: &mut dyn FnMut(&mut Vec<Vec<Value>>) -> bool,
    ) -> Result<(), SourceError> {
        self.rows(spec, after, batch_rows, emit)
    }
}
