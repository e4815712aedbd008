//! The bytes of a file source: the files a pattern names (zip members included), each opened
//! at a byte offset (decompressed), its CSV records with their line and offset, its header, and
//! its signature.

use super::options::{Opts, decode};
use super::{FILE_COL, KEY, Member, OFFSET_COL, bad, io_err};
use crate::source::SourceError;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The members a pattern names under `root`, in `_file` order (byte order of their names).
pub(super) fn expand(root: &Path, pattern: &str) -> Result<Vec<Member>, String> {
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
pub(super) fn with_stream<T>(
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

pub(super) fn csv_reader<'r>(opts: &Opts, r: &'r mut dyn Read) -> csv::Reader<&'r mut dyn Read> {
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
pub(super) fn walk(
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
pub(super) fn header_of(m: &Member, opts: &Opts) -> Result<Vec<String>, SourceError> {
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

/// A file's size, modification time (ns) and FNV-1a hash of its first 64 KiB (of the file on
/// disk: for a zip member, of the archive).
pub(super) fn file_signature(path: &Path) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
