//! Mapping files: one TOML per entity in `mappings/`, read with `deny_unknown_fields` and
//! turned into [`Mapping`] values. Every problem carries `file:line:column`, and all problems of
//! all files are collected before anything is reported, so one run shows the whole list.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use toml::Spanned;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub name: Option<String>,
    pub source: Option<Spanned<String>>,
    pub query: Option<Spanned<String>>,
    pub target: Spanned<String>,
    #[serde(default)]
    pub key: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub depends_on: Vec<Spanned<String>>,
    #[serde(rename = "where")]
    pub filter: Option<Spanned<String>>,
    #[serde(default)]
    pub on_conflict: OnConflict,
    pub incremental: Option<Spanned<String>>,
    /// `migrate sync`: how target rows whose source row is gone are handled.
    #[serde(default)]
    pub deletes: Deletes,
    /// With `deletes = "soft"`: the target column flagged (true, or the time for a timestamp column).
    pub soft_delete_column: Option<Spanned<String>>,
    /// `migrate sync`: how far below the stored watermark a pass starts reading (seconds for a
    /// date/time watermark, units for a number); default `--overlap`.
    pub overlap: Option<Spanned<u64>>,
    pub batch_size: Option<Spanned<usize>>,
    #[serde(default)]
    pub fields: Vec<Spanned<Field>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Deletes {
    #[default]
    Off,
    /// Delete target rows whose source row is gone.
    Detect,
    /// Flag them in `soft_delete_column` instead.
    Soft,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    #[default]
    Error,
    Skip,
    Update,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    pub from: Option<String>,
    pub to: String,
    /// Steps applied left to right; each is a bare name or a one-key table.
    #[serde(default)]
    pub transform: Vec<Spanned<toml::Value>>,
    pub default: Option<toml::Value>,
    pub value: Option<toml::Value>,
}

/// A place in a mapping file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: line {}, column {}", self.file.display(), self.line, self.column)
    }
}

/// One problem found in a mapping file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub at: Location,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// Every problem of every mapping file, reported together.
#[derive(Debug, thiserror::Error)]
pub struct MappingErrors(pub Vec<Problem>);

impl fmt::Display for MappingErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} problem(s) in the mappings", self.0.len())?;
        for p in &self.0 {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read mappings directory {dir}")]
    ReadDir {
        dir: PathBuf,
        #[source]
        cause: std::io::Error,
    },
    #[error("no mapping files (*.toml) in {0}")]
    Empty(PathBuf),
    #[error(transparent)]
    Mappings(#[from] MappingErrors),
}

/// A parsed mapping and where it came from (for messages and for `line:column` lookups).
#[derive(Debug, Clone)]
pub struct MappingFile {
    pub path: PathBuf,
    pub text: String,
    pub mapping: Mapping,
}

impl MappingFile {
    /// The entity name: `name`, or the file stem.
    pub fn entity(&self) -> String {
        self.mapping.name.clone().unwrap_or_else(|| {
            self.path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
    }

    pub fn location(&self, offset: usize) -> Location {
        location_in(&self.path, &self.text, offset)
    }

    pub fn problem(&self, offset: usize, message: impl Into<String>) -> Problem {
        Problem {
            at: self.location(offset),
            message: message.into(),
        }
    }

    /// A stable fingerprint of what the mapping means (not of its comments or spacing), stored
    /// with the progress so a resume with a changed mapping is refused.
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::to_string(&self.mapping).unwrap_or_default();
        format!("{:016x}", fnv1a(canonical.as_bytes()))
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

pub fn location_in(file: &Path, text: &str, offset: usize) -> Location {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    Location {
        file: file.to_path_buf(),
        line,
        column,
    }
}

/// Parses one mapping file's text.
pub fn parse_mapping(path: &Path, text: &str) -> Result<MappingFile, Problem> {
    match toml::from_str::<Mapping>(text) {
        Ok(mapping) => Ok(MappingFile {
            path: path.to_path_buf(),
            text: text.to_string(),
            mapping,
        }),
        Err(e) => {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            Err(Problem {
                at: location_in(path, text, offset),
                message: e.message().trim().replace('\n', " ").replace('`', "'"),
            })
        }
    }
}

/// Reads every `*.toml` in `dir`, sorted by name. All parse problems of all files are returned
/// together.
pub fn load_dir(dir: &Path) -> Result<Vec<MappingFile>, ConfigError> {
    let (files, problems) = load_dir_all(dir)?;
    if problems.is_empty() {
        Ok(files)
    } else {
        Err(MappingErrors(problems).into())
    }
}

/// Every mapping file of `dir` that parses, and the problems of those that do not: callers
/// report the problems of all files at once, the compiled files' too.
pub fn load_dir_all(dir: &Path) -> Result<(Vec<MappingFile>, Vec<Problem>), ConfigError> {
    let entries = std::fs::read_dir(dir).map_err(|cause| ConfigError::ReadDir {
        dir: dir.to_path_buf(),
        cause,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(ConfigError::Empty(dir.to_path_buf()));
    }
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => match parse_mapping(&path, &text) {
                Ok(f) => files.push(f),
                Err(p) => problems.push(p),
            },
            Err(e) => problems.push(Problem {
                at: Location {
                    file: path.clone(),
                    line: 1,
                    column: 1,
                },
                message: format!("cannot read file: {e}"),
            }),
        }
    }
    Ok((files, problems))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
source = "AB_CUSTOMER"
target = "customers_customer"
key = ["CUSTOMER_ID"]
on_conflict = "skip"

[[fields]]
from = "CUSTOMER_ID"
to = "id"

[[fields]]
from = "CUST_NAME"
to = "name"
transform = ["trim", { truncate = 10 }]
"#;

    #[test]
    fn parses_a_mapping() {
        let f = parse_mapping(Path::new("mappings/customer.toml"), GOOD).unwrap();
        assert_eq!(f.entity(), "customer");
        assert_eq!(f.mapping.on_conflict, OnConflict::Skip);
        assert_eq!(f.mapping.fields.len(), 2);
        assert_eq!(f.mapping.fields[1].get_ref().transform.len(), 2);
        let step = &f.mapping.fields[1].get_ref().transform[1];
        assert_eq!(f.location(step.span().start).line, 14);
    }

    #[test]
    fn unknown_key_names_file_line_and_column() {
        let text = GOOD.replace("transform =", "tranform =");
        let p = parse_mapping(Path::new("m/customer.toml"), &text).unwrap_err();
        assert_eq!(p.at.line, 14, "{p}");
        assert_eq!(p.at.column, 1, "{p}");
        assert!(p.message.contains("unknown field 'tranform'"), "{p}");
        assert!(p.to_string().starts_with("m/customer.toml: line 14, column 1: "), "{p}");
    }

    #[test]
    fn bad_enum_and_bad_syntax_are_located() {
        let p = parse_mapping(Path::new("a.toml"), &GOOD.replace("\"skip\"", "\"ignore\"")).unwrap_err();
        assert_eq!(p.at.line, 5);
        assert!(p.message.contains("ignore"), "{p}");
        let p = parse_mapping(Path::new("a.toml"), "target = \n").unwrap_err();
        assert_eq!(p.at.line, 1);
        let p = parse_mapping(Path::new("a.toml"), "source = \"X\"\n").unwrap_err();
        assert!(p.message.contains("target"), "{p}");
    }

    #[test]
    fn fingerprint_ignores_comments_but_not_meaning() {
        let a = parse_mapping(Path::new("a.toml"), GOOD).unwrap();
        let b = parse_mapping(Path::new("a.toml"), &format!("# comment\n{GOOD}")).unwrap();
        let c = parse_mapping(Path::new("a.toml"), &GOOD.replace("\"trim\", ", "")).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }

    #[test]
    fn load_dir_reports_every_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), "target = 1\n").unwrap();
        std::fs::write(dir.path().join("b.toml"), "targt = \"x\"\n").unwrap();
        std::fs::write(dir.path().join("c.toml"), GOOD).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let err = load_dir(dir.path()).unwrap_err();
        let ConfigError::Mappings(MappingErrors(problems)) = err else {
            panic!("{err}")
        };
        assert_eq!(problems.len(), 2);
        assert!(problems[0].at.file.ends_with("a.toml"));
        assert!(problems[1].at.file.ends_with("b.toml"));
        assert!(matches!(
            load_dir(&dir.path().join("nope")),
            Err(ConfigError::ReadDir { .. })
        ));
    }
}

#[cfg(test)]
mod property_tests {
    use super::parse_mapping;
    use crate::testgen::{Rng, iterations, seed};
    use std::path::Path;

    const VALID: &str = r#"source = "AB_CUSTOMER"
target = "app.customers"
key = ["CUSTOMER_ID"]
depends_on = ["carrier"]
where = "STATUS <> 'D'"
on_conflict = "update"
batch_size = 500

[[fields]]
from = "CUSTOMER_ID"
to = "id"

[[fields]]
from = "CREATED"
to = "created_at"
transform = ["trim", { date = "DD-MON-RR" }, { decimal = 2 }, { map = { values = { A = "x" }, default = 1 } }]
default = "2000-01-01"

[[fields]]
to = "source_system"
value = "ABIS"
"#;

    const TOKENS: &[&str] = &[
        "[",
        "]",
        "{",
        "}",
        "=",
        "\"",
        "'",
        "\n",
        "[[fields]]",
        "transform",
        "from",
        "to",
        "value",
        "key",
        "on_conflict",
        "\"skip\"",
        "1e999",
        "-9223372036854775809",
        "{ date = \"\" }",
        "{ truncate = -1 }",
        "{ replace = { pattern = \"(\", with = \"\" } }",
        "{ bool = { true = [], false = [] } }",
        "\u{0}",
        "é",
        "😀",
        "\\u0000",
        "'''",
        "\"\"\"",
        "#",
        ",",
        ".",
        "inf",
        "nan",
        "true",
        "[[]]",
    ];

    #[test]
    fn the_mapping_loader_never_panics() {
        let mut rng = Rng(seed());
        let path = Path::new("mappings/fuzz.toml");
        for _ in 0..iterations() {
            let mut text = VALID.to_string();
            for _ in 0..=rng.below(4) {
                let at = rng.below(text.len() + 1);
                let at = (0..=at).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
                match rng.below(3) {
                    0 => text.insert_str(at, rng.pick(TOKENS)),
                    1 => {
                        let end = (at + rng.below(12)).min(text.len());
                        let end = (end..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap();
                        text.replace_range(at..end, "");
                    }
                    _ => text.truncate(at),
                }
            }
            if let Ok(file) = parse_mapping(path, &text) {
                let _ = crate::plan::compile(&[file]);
            }
        }
    }
}
