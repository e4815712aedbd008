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

use super::{CatalogTable, Column, ReadSpec, Source, SourceColumn, SourceError, TableInfo, WmKind};
use crate::plan::Relation;
use crate::value::Value;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

pub const FILE_COL: &str = "_file";
pub const LINE_COL: &str = "_line";
pub const OFFSET_COL: &str = "_offset";

/// The key of every file row, in order.
pub const KEY: [&str; 3] = [FILE_COL, LINE_COL, OFFSET_COL];

#[derive(Debug, Clone)]
struct Opts {
    delimiter: u8,
    quote: Option<u8>,
    header: bool,
    null: String,
    encoding: &'static encoding_rs::Encoding,
    /// `group=REGEX`: files whose names give the same group (the first capture group, else the
    /// whole match) hold the same unit; one of them is kept.
    group: Option<regex::Regex>,
    keep: Keep,
}

/// Which file of a group is kept.
#[derive(Debug, Clone, PartialEq)]
enum Keep {
    /// The one with the most rows.
    Rows,
    /// The one with the largest value of this column (numbers compared as numbers).
    Max(String),
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            delimiter: b',',
            quote: Some(b'"'),
            header: true,
            null: String::new(),
            encoding: encoding_rs::UTF_8,
            group: None,
            keep: Keep::Rows,
        }
    }
}

/// `pattern?delimiter=;&encoding=latin1` → (pattern, options).
fn parse_spec(spec: &str) -> Result<(String, Opts), String> {
    let (pattern, query) = spec.split_once('?').unwrap_or((spec, ""));
    let mut o = Opts::default();
    // A .tsv file is tab-separated unless told otherwise.
    if pattern.to_ascii_lowercase().trim_end_matches(".gz").ends_with(".tsv") {
        o.delimiter = b'\t';
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("option '{pair}' is not name=value"))?;
        // Values may be percent-encoded (a regex with & in it: %26).
        let decoded = percent_encoding::percent_decode_str(v)
            .decode_utf8()
            .map_err(|_| format!("option {k}: not UTF-8 once decoded"))?;
        let v: &str = &decoded;
        let one_byte = |v: &str| -> Result<u8, String> {
            match v {
                "tab" | "\\t" => Ok(b'\t'),
                "comma" => Ok(b','),
                "pipe" => Ok(b'|'),
                "semicolon" => Ok(b';'),
                s if s.len() == 1 && s.is_ascii() => Ok(s.as_bytes()[0]),
                s => Err(format!(
                    "{k}={s}: expected one ASCII character (or tab, comma, pipe, semicolon)"
                )),
            }
        };
        match k {
            "delimiter" => o.delimiter = one_byte(v)?,
            "quote" => o.quote = if v == "none" { None } else { Some(one_byte(v)?) },
            "header" => {
                o.header = match v {
                    "true" | "yes" | "1" => true,
                    "false" | "no" | "0" => false,
                    _ => return Err(format!("header={v}: expected true or false")),
                }
            }
            "null" => o.null = v.to_string(),
            "group" => {
                o.group = Some(regex::Regex::new(v).map_err(|e| format!("group={v}: not a regular expression ({e})"))?)
            }
            "keep" => {
                o.keep = match v.split_once(':') {
                    None if v == "rows" => Keep::Rows,
                    Some(("max", col)) if !col.is_empty() => Keep::Max(col.to_string()),
                    _ => return Err(format!("keep={v}: expected rows or max:COLUMN")),
                }
            }
            "encoding" => {
                o.encoding = encoding_rs::Encoding::for_label(v.trim().as_bytes()).ok_or_else(|| {
                    format!("encoding={v}: not an encoding name (utf-8, windows-1252, latin1, iso-8859-15 …)")
                })?
            }
            other => {
                return Err(format!(
                    "unknown option '{other}' (expected delimiter, quote, header, null, encoding, group or keep)"
                ));
            }
        }
    }
    Ok((pattern.to_string(), o))
}

/// One stream of rows: a file, a gzipped file, or a member of a zip archive.
#[derive(Debug, Clone)]
struct Member {
    /// As `_file` shows it: the path under the source directory (`a.zip/b.csv` for a member).
    name: String,
    path: PathBuf,
    zip_member: Option<String>,
    gz: bool,
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

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> SourceError {
    move |e| SourceError::Query {
        what,
        cause: Box::new(e),
    }
}

fn bad(relation: &str, column: &str, reason: String) -> SourceError {
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

/// One file per group of names: the one with the most rows, or the largest value of a column
/// (compared as numbers when every value is one, else as text); ties go to the first by name.
/// Files whose names the pattern does not match are each a group of their own.
fn keep_one_per_group(
    spec: &str,
    members: Vec<Member>,
    opts: &Opts,
    re: &regex::Regex,
    columns: &[String],
) -> Result<(Vec<Member>, Vec<super::Choice>), SourceError> {
    let col = match &opts.keep {
        Keep::Rows => None,
        Keep::Max(c) => Some(
            columns
                .iter()
                .position(|h| h == c)
                .ok_or_else(|| bad(spec, c, "keep=max: no such column in the header".into()))?,
        ),
    };
    // (group, member, measure for ordering, measure as shown)
    let mut measured: Vec<(String, Member, (f64, String), String)> = Vec::new();
    for m in members {
        let group = re
            .captures(&m.name)
            .map(|c| c.get(1).or_else(|| c.get(0)).map_or("", |g| g.as_str()).to_string())
            .unwrap_or_else(|| m.name.clone());
        let mut rows = 0u64;
        let mut best: Option<String> = None;
        let mut numeric = true;
        let mut best_num = f64::NEG_INFINITY;
        walk(spec, &m, opts, None, &mut |_, _, rec| {
            rows += 1;
            if let Some(i) = col
                && let Some(v) = rec.get(i).and_then(|b| decode(opts, b))
            {
                let v = v.trim().to_string();
                if !v.is_empty() {
                    match v.parse::<f64>() {
                        Ok(n) if n.is_finite() => best_num = best_num.max(n),
                        _ => numeric = false,
                    }
                    if best.as_ref().is_none_or(|b| v.as_bytes() > b.as_bytes()) {
                        best = Some(v);
                    }
                }
            }
            true
        })?;
        let (order, shown) = match (&opts.keep, col) {
            (Keep::Max(c), Some(_)) => match &best {
                Some(_) if numeric => ((best_num, String::new()), format!("largest {c} {best_num}")),
                Some(b) => ((0.0, b.clone()), format!("largest {c} '{b}'")),
                None => ((f64::NEG_INFINITY, String::new()), format!("no {c} value")),
            },
            _ => ((rows as f64, String::new()), format!("{rows} rows")),
        };
        measured.push((group, m, order, shown));
    }
    let mut groups: Vec<String> = measured.iter().map(|(g, ..)| g.clone()).collect();
    groups.sort();
    groups.dedup();
    let mut kept = Vec::new();
    let mut choices = Vec::new();
    for g in groups {
        let candidates: Vec<&(String, Member, (f64, String), String)> =
            measured.iter().filter(|(mg, ..)| *mg == g).collect();
        let best = candidates.iter().enumerate().fold(0usize, |bi, (i, c)| {
            let b = &candidates[bi].2;
            let better = c.2.0 > b.0 || (c.2.0 == b.0 && c.2.1.as_bytes() > b.1.as_bytes());
            if better { i } else { bi }
        });
        for (i, (_, m, _, shown)) in candidates.iter().enumerate() {
            choices.push(super::Choice {
                group: g.clone(),
                file: m.name.clone(),
                measure: shown.clone(),
                kept: i == best,
            });
        }
        kept.push(candidates[best].1.clone());
    }
    kept.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    Ok((kept, choices))
}

/// The members a pattern names under `root`, in `_file` order (byte order of their names).
fn expand(root: &Path, pattern: &str) -> Result<Vec<Member>, String> {
    let full = root.join(pattern);
    let full_text = full.to_string_lossy().into_owned();
    let paths: Vec<PathBuf> = if pattern.contains(['*', '?', '[']) {
        glob::glob(&full_text)
            .map_err(|e| format!("pattern {pattern}: {e}"))?
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect()
    } else if full.is_file() {
        vec![full]
    } else {
        vec![]
    };
    let mut out = Vec::new();
    for path in paths {
        let name = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".zip") {
            let f = std::fs::File::open(&path).map_err(|e| format!("{name}: {e}"))?;
            let archive = zip::ZipArchive::new(f).map_err(|e| format!("{name}: not a readable zip archive ({e})"))?;
            let mut inner: Vec<String> = archive
                .file_names()
                .filter_map(Result::ok)
                .filter(|n| !n.ends_with('/'))
                .map(|n| n.into_owned())
                .collect();
            inner.sort();
            for m in inner {
                out.push(Member {
                    name: format!("{name}/{m}"),
                    path: path.clone(),
                    gz: m.to_ascii_lowercase().ends_with(".gz"),
                    zip_member: Some(m),
                });
            }
        } else {
            out.push(Member {
                gz: lower.ends_with(".gz"),
                name,
                path,
                zip_member: None,
            });
        }
    }
    out.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    Ok(out)
}

/// Runs `f` on the member's bytes from `offset` on (decompressed).
fn with_stream<T>(
    m: &Member,
    offset: u64,
    f: impl FnOnce(&mut dyn Read) -> Result<T, SourceError>,
) -> Result<T, SourceError> {
    use std::io::{Seek, SeekFrom};
    let open = io_err(format!("opening {}", m.name));
    let mut file = std::fs::File::open(&m.path).map_err(open)?;
    let skip = |r: &mut dyn Read| -> Result<(), SourceError> {
        let n =
            std::io::copy(&mut r.take(offset), &mut std::io::sink()).map_err(io_err(format!("reading {}", m.name)))?;
        if n < offset {
            return Err(bad(
                &m.name,
                OFFSET_COL,
                format!(
                    "the file is shorter ({n} bytes) than where the last run stopped (byte {offset}): it changed since; start this entity over with --truncate"
                ),
            ));
        }
        Ok(())
    };
    match &m.zip_member {
        Some(inner) => {
            let mut archive = zip::ZipArchive::new(file).map_err(|e| SourceError::Query {
                what: format!("opening {}", m.name),
                cause: Box::new(e),
            })?;
            let mut zf = archive.by_name(inner).map_err(|e| SourceError::Query {
                what: format!("opening {}", m.name),
                cause: Box::new(e),
            })?;
            if m.gz {
                let mut gz = flate2::read::MultiGzDecoder::new(&mut zf);
                skip(&mut gz)?;
                f(&mut gz)
            } else {
                skip(&mut zf)?;
                f(&mut zf)
            }
        }
        None if m.gz => {
            let mut gz = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file));
            skip(&mut gz)?;
            f(&mut gz)
        }
        None => {
            file.seek(SeekFrom::Start(offset))
                .map_err(io_err(format!("seeking in {}", m.name)))?;
            f(&mut std::io::BufReader::with_capacity(1 << 16, file))
        }
    }
}

fn csv_reader<'r>(opts: &Opts, r: &'r mut dyn Read) -> csv::Reader<&'r mut dyn Read> {
    let mut b = csv::ReaderBuilder::new();
    b.has_headers(false)
        .flexible(true)
        .delimiter(opts.delimiter)
        .double_quote(true);
    match opts.quote {
        Some(q) => b.quote(q),
        None => b.quoting(false),
    };
    b.from_reader(r)
}

/// Every record of `m` after the one at `after` = (line, offset) (from the start when `None`;
/// the header is skipped), as (line, offset, fields); stops when `f` returns false.
fn walk(
    relation: &str,
    m: &Member,
    opts: &Opts,
    after: Option<(u64, u64)>,
    f: &mut dyn FnMut(u64, u64, &csv::ByteRecord) -> bool,
) -> Result<(), SourceError> {
    let (base_line, base_offset) = after.unwrap_or((1, 0));
    with_stream(m, base_offset, |stream| {
        let mut rdr = csv_reader(opts, stream);
        let mut rec = csv::ByteRecord::new();
        let mut first = true;
        loop {
            let more = rdr.read_byte_record(&mut rec).map_err(|e| match e.kind() {
                csv::ErrorKind::Io(_) => SourceError::Query {
                    what: format!("reading {}", m.name),
                    cause: Box::new(e),
                },
                _ => bad(relation, FILE_COL, format!("{}: {e}", m.name)),
            })?;
            if !more {
                return Ok(());
            }
            // Where the reader started the record: blank lines before it count as its start, so
            // a resumed read that seeks there reads this record first again.
            let (rline, rbyte) = rec.position().map_or((1, 0), |p| (p.line(), p.byte()));
            let line = base_line + rline - 1;
            let offset = base_offset + rbyte;
            // The record the last run ended on, or the header.
            let skip = first && (after.is_some() || opts.header);
            first = false;
            if skip {
                continue;
            }
            // A blank line is no record.
            if rec.len() == 1 && rec[0].is_empty() {
                continue;
            }
            if !f(line, offset, &rec) {
                return Ok(());
            }
        }
    })
}

/// The header's column names (decoded), or c1…cN from the first record without one.
fn header_of(m: &Member, opts: &Opts) -> Result<Vec<String>, SourceError> {
    let mut cols: Option<Vec<String>> = None;
    let no_header = Opts {
        header: false,
        ..opts.clone()
    };
    let mut problem = None;
    walk(&m.name, m, &no_header, None, &mut |line, _, rec| {
        if opts.header {
            let mut names = Vec::new();
            for (i, field) in rec.iter().enumerate() {
                match decode(opts, field) {
                    Some(s) => names.push(s.trim().trim_start_matches('\u{feff}').to_string()),
                    None => {
                        problem = Some(format!(
                            "line {line}, field {}: the header is not valid {}",
                            i + 1,
                            opts.encoding.name()
                        ));
                        return false;
                    }
                }
            }
            cols = Some(names);
        } else {
            cols = Some((1..=rec.len()).map(|i| format!("c{i}")).collect());
        }
        false
    })?;
    if let Some(p) = problem {
        return Err(bad(&m.name, "(header)", p));
    }
    let cols = cols.unwrap_or_default();
    if let Some(dup) = cols
        .iter()
        .enumerate()
        .find_map(|(i, c)| cols[..i].contains(c).then_some(c))
    {
        return Err(bad(&m.name, dup, "the header names this column twice".into()));
    }
    if let Some(k) = cols.iter().find(|c| KEY.contains(&c.as_str())) {
        return Err(bad(
            &m.name,
            k,
            format!(
                "the header uses a name migrate gives to every file row ({})",
                KEY.join(", ")
            ),
        ));
    }
    Ok(cols)
}

/// Options for a file, guessed from its first 64 KiB: the header's most frequent delimiter
/// among `,` `;` tab `|` (when not the default for its name), and windows-1252 when the bytes
/// are not UTF-8. `None`: the defaults fit.
fn sniff(path: &Path) -> Option<String> {
    let mut head = Vec::new();
    let f = std::fs::File::open(path).ok()?;
    let name = path.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".gz") {
        flate2::read::MultiGzDecoder::new(f)
            .take(65536)
            .read_to_end(&mut head)
            .ok()?;
    } else {
        f.take(65536).read_to_end(&mut head).ok()?;
    }
    let first = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let (best, n) = [b',', b';', b'\t', b'|']
        .into_iter()
        .map(|d| (d, first.iter().filter(|b| **b == d).count()))
        .max_by_key(|(_, n)| *n)?;
    let default = if name.trim_end_matches(".gz").ends_with(".tsv") {
        b'\t'
    } else {
        b','
    };
    let mut opts = Vec::new();
    if n > 0 && best != default {
        opts.push(format!(
            "delimiter={}",
            match best {
                b'\t' => "tab".to_string(),
                b => (b as char).to_string(),
            }
        ));
    }
    // A UTF-8 sequence cut at the end of the 64 KiB is not an error.
    if let Err(e) = std::str::from_utf8(&head)
        && (e.error_len().is_some() || head.len() < 65536)
    {
        opts.push("encoding=windows-1252".into());
    }
    (!opts.is_empty()).then(|| opts.join("&"))
}

/// The field's text in the file's encoding; `None` when its bytes are not valid there.
fn decode(opts: &Opts, bytes: &[u8]) -> Option<String> {
    if opts.encoding == encoding_rs::UTF_8 {
        return std::str::from_utf8(bytes).ok().map(String::from);
    }
    opts.encoding
        .decode_without_bom_handling_and_without_replacement(bytes)
        .map(|c| c.into_owned())
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

/// A file's size, modification time (ns) and FNV-1a hash of its first 64 KiB (of the file on
/// disk: for a zip member, of the archive).
fn file_signature(path: &Path) -> String {
    let meta = std::fs::metadata(path).ok();
    let size = meta.as_ref().map_or(0, |m| m.len());
    let mtime = meta
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let mut head = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(65536).read_to_end(&mut head);
    }
    let hash = head.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{size},{mtime},{hash:016x}")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_and_urls_parse_or_say_what_is_wrong() {
        let (p, o) = parse_spec("sales/*.tsv.gz").unwrap();
        assert_eq!((p.as_str(), o.delimiter, o.header), ("sales/*.tsv.gz", b'\t', true));
        let (_, o) = parse_spec("x.csv?delimiter=;&quote=none&header=false&null=\\N&encoding=latin1").unwrap();
        assert_eq!(
            (o.delimiter, o.quote, o.header, o.null.as_str()),
            (b';', None, false, "\\N")
        );
        assert_eq!(o.encoding, encoding_rs::WINDOWS_1252);
        let (_, o) = parse_spec("s/*.csv?group=^(site%5Cd%2B)_&keep=max:ROWNO").unwrap();
        assert_eq!(o.group.unwrap().as_str(), r"^(site\d+)_");
        assert_eq!(o.keep, Keep::Max("ROWNO".into()));
        for (bad, why) in [
            ("x.csv?delimiter=ab", "one ASCII character"),
            ("x.csv?encoding=klingon", "not an encoding"),
            ("x.csv?sep=;", "unknown option 'sep'"),
            ("x.csv?header=maybe", "true or false"),
            ("x.csv?group=(", "not a regular expression"),
            ("x.csv?keep=min:X", "rows or max:COLUMN"),
        ] {
            assert!(parse_spec(bad).unwrap_err().contains(why), "{bad}");
        }
        assert_eq!(root_of("file:///data/x").unwrap(), PathBuf::from("/data/x"));
        assert_eq!(root_of("file:rel/dir").unwrap(), PathBuf::from("rel/dir"));
        assert!(root_of("file://").is_err());
    }

    #[test]
    fn records_resume_at_their_byte_offset_with_their_line_numbers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.csv"), "id,name\n1,\"multi\nline\"\n2,b\n\n3,c\n").unwrap();
        let m = &expand(dir.path(), "a.csv").unwrap()[0];
        let opts = Opts::default();
        let mut seen = Vec::new();
        walk("a.csv", m, &opts, None, &mut |l, o, r| {
            seen.push((l, o, String::from_utf8_lossy(&r[0]).into_owned()));
            true
        })
        .unwrap();
        // The blank line before "3" counts as the start of its record.
        assert_eq!(
            seen,
            [(2, 8, "1".to_string()), (4, 23, "2".into()), (5, 27, "3".into())]
        );
        let mut after = Vec::new();
        walk("a.csv", m, &opts, Some((4, 23)), &mut |l, o, r| {
            after.push((l, o, String::from_utf8_lossy(&r[0]).into_owned()));
            true
        })
        .unwrap();
        assert_eq!(after, [(5, 27, "3".to_string())]);
        // From the last record: nothing more.
        let mut none = 0;
        walk("a.csv", m, &opts, Some((5, 27)), &mut |_, _, _| {
            none += 1;
            true
        })
        .unwrap();
        assert_eq!(none, 0);
    }
}
