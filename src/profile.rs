//! `migrate profile`: what each source column really holds, read once (or its first `--sample`
//! rows), because declarations lie: SQLite DATE columns hold `DD-MON-YY` text, `VARCHAR2(4000)`
//! holds 12 characters, `NUMBER` holds integers, flags are Y/N. Pure statistics over values;
//! the command is `app::profile`.

use crate::transform::mask::Mask;
use crate::value::{Decimal, Value};
use serde::Serialize;
use std::collections::HashSet;

/// Date and timestamp masks tried on text, most specific first.
pub const MASKS: &[&str] = &[
    "YYYY-MM-DD HH24:MI:SS.FF",
    "YYYY-MM-DD HH24:MI:SS",
    "YYYY-MM-DD",
    "DD-MON-YYYY HH24:MI:SS",
    "DD-MON-YYYY",
    "DD-MON-YY",
    "DD.MM.YYYY",
    "DD/MM/YYYY",
    "MM/DD/YYYY",
    "YYYYMMDD",
];

const BOOL_WORDS: &[&str] = &["Y", "N", "YES", "NO", "T", "F", "TRUE", "FALSE", "1", "0"];
/// Distinct values counted exactly up to this many; beyond, the count is a lower bound.
const DISTINCT_CAP: usize = 100_000;

/// One column's profile.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnProfile {
    pub table: String,
    pub column: String,
    pub declared: String,
    pub rows: u64,
    pub nulls: u64,
    /// Text values that are '' (or only blanks).
    pub empty: u64,
    pub distinct: u64,
    /// `distinct` is a lower bound (more than the cap).
    pub distinct_more: bool,
    pub min: Option<String>,
    pub max: Option<String>,
    /// The longest text, in characters.
    pub longest: usize,
    /// Numbers (stored as numbers, or text that parses as one): the most integer digits and
    /// the most decimal places seen.
    pub numbers: u64,
    pub max_integer_digits: u32,
    pub max_scale: u32,
    /// Text values that parse as a number.
    pub numeric_text: u64,
    /// Every non-empty text value is one of Y/N/T/F/YES/NO/TRUE/FALSE/1/0.
    pub boolean_like: bool,
    /// The masks every non-empty text value of the column fits.
    pub date_masks: Vec<String>,
    pub invalid_utf8: u64,
    pub nul_bytes: u64,
    pub trailing_blanks: u64,
    pub leading_blanks: u64,
    /// Numeric text written with leading zeros (`02134`): a code, not a number.
    pub leading_zeros: u64,
    /// The value kinds seen (int, text, date …).
    pub kinds: Vec<String>,
    #[serde(skip)]
    acc: Acc,
}

#[derive(Debug, Clone, Default)]
struct Acc {
    seen: HashSet<u64>,
    text_nonempty: u64,
    bool_misses: u64,
    /// Per mask in [`MASKS`]: still fits every value so far.
    masks: Vec<(Mask, bool)>,
    num_min: Option<f64>,
    num_max: Option<f64>,
    text_min: Option<String>,
    text_max: Option<String>,
    kinds: Vec<&'static str>,
}

impl ColumnProfile {
    pub fn new(table: &str, column: &str, declared: &str) -> ColumnProfile {
        let masks = MASKS
            .iter()
            .filter_map(|m| Mask::compile(m).ok())
            .map(|m| (m, true))
            .collect();
        ColumnProfile {
            table: table.into(),
            column: column.into(),
            declared: declared.into(),
            rows: 0,
            nulls: 0,
            empty: 0,
            distinct: 0,
            distinct_more: false,
            min: None,
            max: None,
            longest: 0,
            numbers: 0,
            max_integer_digits: 0,
            max_scale: 0,
            numeric_text: 0,
            boolean_like: false,
            date_masks: vec![],
            invalid_utf8: 0,
            nul_bytes: 0,
            trailing_blanks: 0,
            leading_blanks: 0,
            leading_zeros: 0,
            kinds: vec![],
            acc: Acc {
                masks,
                ..Default::default()
            },
        }
    }

    pub fn add(&mut self, v: &Value) {
        use std::hash::{Hash, Hasher};
        self.rows += 1;
        let a = &mut self.acc;
        if !a.kinds.contains(&v.kind()) && !v.is_null() {
            a.kinds.push(v.kind());
        }
        if a.seen.len() < DISTINCT_CAP && !v.is_null() {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            format!("{v:?}").hash(&mut h);
            a.seen.insert(h.finish());
        } else if !v.is_null() {
            self.distinct_more = true;
        }
        match v {
            Value::Null => self.nulls += 1,
            Value::Int(i) => self.number(&Decimal::from_i64(*i), *i as f64),
            Value::Float(f) => {
                if let Ok(d) = Decimal::parse(&format!("{f}")) {
                    self.number(&d, *f);
                }
            }
            Value::Decimal(d) => {
                let f = d.to_string().parse().unwrap_or(0.0);
                self.number(d, f);
            }
            Value::Text(s) => self.text(s),
            Value::InvalidText(_) => self.invalid_utf8 += 1,
            other => {
                let t = match other {
                    Value::Date(d) => d.to_string(),
                    Value::Timestamp(t) => t.to_string(),
                    Value::TimestampTz(t) => t.to_rfc3339(),
                    Value::Bool(b) => b.to_string(),
                    Value::Bytes(b) => format!("{} bytes", b.len()),
                    _ => String::new(),
                };
                self.text_bound(&t);
            }
        }
    }

    fn number(&mut self, d: &Decimal, f: f64) {
        self.numbers += 1;
        self.max_integer_digits = self.max_integer_digits.max(d.integer_digits());
        self.max_scale = self.max_scale.max(d.significant_scale());
        let a = &mut self.acc;
        a.num_min = Some(a.num_min.map_or(f, |m| m.min(f)));
        a.num_max = Some(a.num_max.map_or(f, |m| m.max(f)));
    }

    fn text_bound(&mut self, t: &str) {
        let a = &mut self.acc;
        if a.text_min.as_deref().is_none_or(|m| t < m) {
            a.text_min = Some(t.to_string());
        }
        if a.text_max.as_deref().is_none_or(|m| t > m) {
            a.text_max = Some(t.to_string());
        }
    }

    fn text(&mut self, s: &str) {
        self.longest = self.longest.max(s.chars().count());
        if s.contains('\0') {
            self.nul_bytes += 1;
        }
        if s.ends_with(' ') {
            self.trailing_blanks += 1;
        }
        if s.starts_with(' ') {
            self.leading_blanks += 1;
        }
        let t = s.trim();
        if t.is_empty() {
            self.empty += 1;
            return;
        }
        self.text_bound(s);
        self.acc.text_nonempty += 1;
        if !BOOL_WORDS.iter().any(|w| w.eq_ignore_ascii_case(t)) {
            self.acc.bool_misses += 1;
        }
        if let Ok(d) = Decimal::parse(t) {
            self.numeric_text += 1;
            let digits = t.trim_start_matches(['-', '+']);
            if digits.len() > 1 && digits.starts_with('0') && !digits.starts_with("0.") {
                self.leading_zeros += 1;
            }
            let f = t.parse().unwrap_or(0.0);
            self.number(&d, f);
        }
        // Masks read 1- or 2-digit fields too (as TO_DATE does): a four-digit year must be
        // written with four digits to count as fitting, or '97' would be the year 97.
        let four_digits = t.split(|c: char| !c.is_ascii_digit()).any(|run| run.len() >= 4);
        // And its separators must be the text's (the mask engine takes any for any).
        let seps = |s: &str| -> String { s.chars().filter(|c| !c.is_alphanumeric()).collect() };
        let text_seps = seps(t);
        for (m, fits) in self.acc.masks.iter_mut().filter(|(_, f)| *f) {
            if seps(m.text()) != text_seps || (m.text().contains("YYYY") && !four_digits) || m.parse(t).is_err() {
                *fits = false;
            }
        }
    }

    /// Settles the derived fields; call once after the last value.
    pub fn finish(&mut self) {
        let a = &self.acc;
        self.distinct = a.seen.len() as u64;
        self.boolean_like = a.text_nonempty > 0 && a.bool_misses == 0;
        self.date_masks = if a.text_nonempty > 0 && self.numeric_text < a.text_nonempty {
            a.masks
                .iter()
                .filter(|(_, f)| *f)
                .map(|(m, _)| m.text().to_string())
                .collect()
        } else {
            vec![]
        };
        let all_numeric = a.text_nonempty == self.numeric_text && self.numbers > 0;
        let fmt = |f: f64| {
            if f.fract() == 0.0 && f.abs() < 1e15 {
                format!("{}", f as i64)
            } else {
                format!("{f}")
            }
        };
        (self.min, self.max) = if all_numeric || (a.text_min.is_none() && a.num_min.is_some()) {
            (a.num_min.map(fmt), a.num_max.map(fmt))
        } else {
            (a.text_min.clone(), a.text_max.clone())
        };
        self.kinds = a.kinds.iter().map(|k| k.to_string()).collect();
    }

    /// What the column looks like it holds, in words: "boolean (Y/N …)", "date DD-MON-YY",
    /// "integer (up to 5 digits)", "number (7,2)", "text (up to 40 characters)".
    pub fn looks_like(&self) -> String {
        let non_null = self.rows - self.nulls;
        if non_null == 0 || non_null == self.empty {
            return "empty".into();
        }
        if self.boolean_like {
            return "boolean (Y/N, T/F, 1/0 …)".into();
        }
        if let Some(m) = self.date_masks.first() {
            return format!("date/time {m}");
        }
        if self.numbers == non_null - self.empty && self.numbers > 0 {
            return if self.max_scale == 0 {
                format!("integer (up to {} digits)", self.max_integer_digits)
            } else {
                format!(
                    "number ({},{})",
                    self.max_integer_digits + self.max_scale,
                    self.max_scale
                )
            };
        }
        if self.kinds.iter().any(|k| !k.starts_with("text")) {
            return self.kinds.join("/");
        }
        format!("text (up to {} characters)", self.longest)
    }

    /// What to look at before mapping the column.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.empty > 0 {
            w.push(format!("{} empty", self.empty));
        }
        if self.trailing_blanks > 0 {
            w.push(format!("{} with trailing blanks", self.trailing_blanks));
        }
        if self.invalid_utf8 > 0 {
            w.push(format!("{} not UTF-8", self.invalid_utf8));
        }
        if self.nul_bytes > 0 {
            w.push(format!("{} with NUL bytes", self.nul_bytes));
        }
        if self.date_masks.len() > 1 {
            w.push(format!("fits {}", self.date_masks.join(" and ")));
        }
        w
    }
}

/// A target type and transforms for a column, from what its values hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion {
    pub pg_type: String,
    /// TOML transform steps, in order (`"trim"`, `{ date = "DD-MON-YY" }`).
    pub transforms: Vec<String>,
    /// Why, for the mapping's comment (the headroom left, the values seen).
    pub note: String,
    /// Empty text becomes NULL: the column cannot be NOT NULL.
    pub nullable: bool,
}

/// A size with room to grow: half again, at least 5 more, rounded up to a multiple of 10.
fn roomy(n: usize) -> usize {
    let want = (n + n / 2).max(n + 5);
    want.div_ceil(10) * 10
}

impl ColumnProfile {
    /// The type and transforms the values call for; `None` when the declared type should stay
    /// (no values, or values the source already types: dates, bytes).
    pub fn suggest(&self) -> Option<Suggestion> {
        let non_null = self.rows - self.nulls;
        if non_null == 0 || non_null == self.empty {
            return None;
        }
        // Text, numbers, or both (SQLite keeps whatever was inserted); dates and bytes keep
        // the declared type.
        let texty = self.kinds.iter().any(|k| k.starts_with("text"));
        if !self
            .kinds
            .iter()
            .all(|k| k.starts_with("text") || ["integer", "float", "decimal"].contains(&k.as_str()))
        {
            return None;
        }
        let mut pre: Vec<String> = Vec::new();
        if texty && self.leading_blanks > 0 {
            pre.push("\"trim\"".into());
        } else if texty && self.trailing_blanks > 0 {
            pre.push("\"rtrim\"".into());
        }
        if texty && self.empty > 0 {
            pre.push("\"null_if_empty\"".into());
        }
        let nullable = texty && self.empty > 0;
        let with = |mut pre: Vec<String>, step: Option<&str>| {
            pre.extend(step.map(String::from));
            pre
        };
        let blanks = if self.trailing_blanks > 0 || self.leading_blanks > 0 {
            format!(
                "; {} value(s) padded with blanks",
                self.trailing_blanks.max(self.leading_blanks)
            )
        } else {
            String::new()
        };
        let empties = if texty && self.empty > 0 {
            format!("; {} empty string(s) become NULL", self.empty)
        } else {
            String::new()
        };
        if texty && self.boolean_like {
            return Some(Suggestion {
                pg_type: "boolean".into(),
                transforms: with(pre, Some("\"bool\"")),
                note: format!("values are Y/N-like flags{blanks}{empties}"),
                nullable,
            });
        }
        if texty && let Some(mask) = self.date_masks.first() {
            let (ty, step) = if mask.contains("HH") {
                ("timestamp", "timestamp")
            } else {
                ("date", "date")
            };
            return Some(Suggestion {
                pg_type: ty.into(),
                transforms: with(pre, Some(&format!("{{ {step} = \"{mask}\" }}"))),
                note: format!("every value fits {mask}{blanks}{empties}"),
                nullable,
            });
        }
        let all_numbers = self.numbers > 0 && self.numbers == non_null - if texty { self.empty } else { 0 };
        if all_numbers && self.leading_zeros == 0 {
            let d = self.max_integer_digits.max(1);
            let s = self.max_scale;
            let (ty, step) = if s == 0 {
                let ty = if d + 2 <= 9 {
                    "integer".to_string()
                } else if d + 2 <= 18 {
                    "bigint".to_string()
                } else {
                    format!("numeric({})", d + 2)
                };
                (ty, texty.then(|| "\"integer\"".to_string()))
            } else {
                (
                    format!("numeric({}, {s})", d + 2 + s),
                    texty.then(|| format!("{{ decimal = {s} }}")),
                )
            };
            return Some(Suggestion {
                note: format!(
                    "values have up to {d} integer digit(s) and {s} decimal place(s); {ty} leaves 2 more digits{blanks}{empties}"
                ),
                pg_type: ty,
                transforms: with(pre, step.as_deref()),
                nullable,
            });
        }
        if !texty {
            return None;
        }
        let size = roomy(self.longest);
        Some(Suggestion {
            pg_type: format!("varchar({size})"),
            transforms: pre,
            note: format!(
                "the longest value has {} character(s); varchar({size}) leaves room{}{blanks}{empties}",
                self.longest,
                if self.leading_zeros > 0 {
                    "; numbers with leading zeros stay text"
                } else {
                    ""
                }
            ),
            nullable,
        })
    }
}

/// The profiles as a terminal table.
pub fn table(profiles: &[ColumnProfile]) -> String {
    let mut out = String::new();
    let mut current = "";
    for p in profiles {
        if p.table != current {
            current = &p.table;
            out.push_str(&format!(
                "\n{} ({} rows)\n{:<24} {:<16} {:>8} {:>8} {:>9}  {:<18} {:<18} {:<32} notes\n",
                p.table, p.rows, "column", "declared", "nulls", "empty", "distinct", "min", "max", "looks like"
            ));
        }
        let cut = |s: &Option<String>| {
            let s = s.clone().unwrap_or_default();
            if s.chars().count() > 18 {
                s.chars().take(17).collect::<String>() + "…"
            } else {
                s
            }
        };
        out.push_str(&format!(
            "{:<24} {:<16} {:>8} {:>8} {:>8}{} {:<18} {:<18} {:<32} {}\n",
            p.column,
            p.declared,
            p.nulls,
            p.empty,
            p.distinct,
            if p.distinct_more { "+" } else { " " },
            cut(&p.min),
            cut(&p.max),
            p.looks_like(),
            p.warnings().join("; ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(values: &[Value]) -> ColumnProfile {
        let mut p = ColumnProfile::new("T", "C", "TEXT");
        for v in values {
            p.add(v);
        }
        p.finish();
        p
    }
    fn t(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn declarations_that_lie_are_found_in_the_values() {
        let dates = profile(&[t("17-OCT-97"), t("03-jan-05"), Value::Null, t("")]);
        assert_eq!(dates.date_masks, ["DD-MON-YY"]);
        assert_eq!(dates.looks_like(), "date/time DD-MON-YY");
        assert_eq!((dates.nulls, dates.empty), (1, 1));

        let flags = profile(&[t("Y"), t("N"), t("y")]);
        assert!(flags.boolean_like, "{flags:?}");

        let ints = profile(&[
            Value::Decimal(Decimal::parse("12").unwrap()),
            Value::Int(-40_000),
            t("7"),
        ]);
        assert_eq!(ints.looks_like(), "integer (up to 5 digits)");
        assert_eq!((ints.min.as_deref(), ints.max.as_deref()), (Some("-40000"), Some("12")));

        let money = profile(&[t("12.50"), t("1234.5"), t("0.125")]);
        assert_eq!((money.max_integer_digits, money.max_scale), (4, 3));
        assert_eq!(money.looks_like(), "number (7,3)");

        let names = profile(&[t("Acme  "), t("Zeta"), Value::InvalidText(vec![0xff]), t("a\0b")]);
        assert_eq!(names.looks_like(), "text (up to 6 characters)");
        assert_eq!((names.trailing_blanks, names.invalid_utf8, names.nul_bytes), (1, 1, 1));
        assert_eq!(
            (names.min.as_deref(), names.max.as_deref()),
            (Some("Acme  "), Some("a\0b"))
        );

        // 01/02/2003 fits day-first and month-first: both are named.
        let ambiguous = profile(&[t("01/02/2003"), t("11/12/2003")]);
        assert_eq!(ambiguous.date_masks, ["DD/MM/YYYY", "MM/DD/YYYY"]);
        assert!(
            ambiguous
                .warnings()
                .iter()
                .any(|w| w.contains("DD/MM/YYYY and MM/DD/YYYY"))
        );
        // What scaffold --profile makes of them.
        let s = dates.suggest().unwrap();
        assert_eq!(
            (s.pg_type.as_str(), s.transforms.clone()),
            (
                "date",
                vec!["\"null_if_empty\"".to_string(), "{ date = \"DD-MON-YY\" }".into()]
            )
        );
        assert_eq!(flags.suggest().unwrap().transforms, ["\"bool\""]);
        assert_eq!(ints.suggest().unwrap().pg_type, "integer");
        assert_eq!(money.suggest().unwrap().transforms, ["{ decimal = 3 }"]);
        assert_eq!(money.suggest().unwrap().pg_type, "numeric(9, 3)");
        let padded = profile(&[t("Acme  "), t("Zeta")]).suggest().unwrap();
        assert_eq!(
            (padded.pg_type.as_str(), padded.transforms.clone()),
            ("varchar(20)", vec!["\"rtrim\"".to_string()])
        );
        let zips = profile(&[t("02134"), t("90210")]).suggest().unwrap();
        assert!(zips.pg_type.starts_with("varchar"), "{zips:?}");
        // Plain integers are not dates even if YYYYMMDD would read them.
        assert!(profile(&[t("20240101"), t("20240102")]).date_masks.is_empty());
    }
}
