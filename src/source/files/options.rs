//! A file source's options (`?delimiter=;&encoding=latin1…`), and what a file's first bytes
//! say about them (`scaffold`'s guess).

use std::io::Read;
use std::path::Path;

#[derive(Debug, Clone)]
pub(super) struct Opts {
    pub(super) delimiter: u8,
    pub(super) quote: Option<u8>,
    pub(super) header: bool,
    pub(super) null: String,
    pub(super) encoding: &'static encoding_rs::Encoding,
    /// `group=REGEX`: files whose names give the same group (the first capture group, else the
    /// whole match) hold the same unit; one of them is kept.
    pub(super) group: Option<regex::Regex>,
    pub(super) keep: Keep,
}

/// Which file of a group is kept.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Keep {
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
pub(super) fn parse_spec(spec: &str) -> Result<(String, Opts), String> {
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

/// Options for a file, guessed from its first 64 KiB: the header's most frequent delimiter
/// among `,` `;` tab `|` (when not the default for its name), and windows-1252 when the bytes
/// are not UTF-8. `None`: the defaults fit.
pub(super) fn sniff(path: &Path) -> Option<String> {
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
pub(super) fn decode(opts: &Opts, bytes: &[u8]) -> Option<String> {
    if opts.encoding == encoding_rs::UTF_8 {
        return std::str::from_utf8(bytes).ok().map(String::from);
    }
    opts.encoding
        .decode_without_bom_handling_and_without_replacement(bytes)
        .map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::super::root_of;
    use super::*;
    use std::path::PathBuf;

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
}
