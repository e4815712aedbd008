//! Target column types read from PostgreSQL's catalog, and the encoding of a [`Value`] into the
//! binary COPY form of exactly that type. A value the column cannot hold exactly (too long, a
//! NUL byte, more decimals than the scale, out of range) is refused here with a reason, so it
//! becomes a reject naming the column instead of a failed batch.

use crate::value::{Decimal, Value};
use chrono::{DateTime, NaiveTime, Utc};

mod time;
use time::{first_day, micros_since_epoch, parse_iso_date, parse_iso_timestamp, pg_epoch};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgType {
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    /// `numeric(precision, scale)`; `None` when unconstrained. The scale may be negative or
    /// larger than the precision (PostgreSQL 15).
    Numeric(Option<(u32, i32)>),
    Text,
    /// `name`: at most 63 bytes.
    Name,
    Varchar(Option<u32>),
    Bpchar(Option<u32>),
    Bool,
    Date,
    /// `timestamp(p)`: fractional digits kept (6 when unconstrained).
    Timestamp(u32),
    TimestampTz(u32),
    Bytea,
    Uuid,
    Json,
    Jsonb,
    Unsupported(String),
}

impl PgType {
    /// From `pg_type.typname` and `atttypmod`.
    pub fn from_catalog(typname: &str, typmod: i32, formatted: &str) -> PgType {
        let len = (typmod >= 4).then(|| (typmod - 4) as u32);
        // timestamp(p) keeps p itself in the typmod (-1: unconstrained, 6 digits).
        let precision = u32::try_from(typmod).map_or(6, |p| p.min(6));
        match typname {
            "int2" => PgType::Int2,
            "int4" => PgType::Int4,
            "int8" => PgType::Int8,
            "float4" => PgType::Float4,
            "float8" => PgType::Float8,
            // The scale is the low 11 bits, signed (PostgreSQL 15 allows -1000..1000).
            "numeric" => PgType::Numeric(len.map(|m| ((m >> 16) & 0xffff, ((m & 0x7ff) as i32 ^ 1024) - 1024))),
            "text" | "citext" => PgType::Text,
            "name" => PgType::Name,
            "varchar" => PgType::Varchar(len),
            "bpchar" => PgType::Bpchar(len),
            "bool" => PgType::Bool,
            "date" => PgType::Date,
            "timestamp" => PgType::Timestamp(precision),
            "timestamptz" => PgType::TimestampTz(precision),
            "bytea" => PgType::Bytea,
            "uuid" => PgType::Uuid,
            "json" => PgType::Json,
            "jsonb" => PgType::Jsonb,
            _ => PgType::Unsupported(formatted.to_string()),
        }
    }

    pub fn is_textual(&self) -> bool {
        matches!(
            self,
            PgType::Text | PgType::Name | PgType::Varchar(_) | PgType::Bpchar(_)
        )
    }

    /// Appends the field (length prefix and bytes, or -1 for NULL) to `out`.
    /// On `Err`, `out` may hold a partial field: callers truncate back to the row start.
    pub fn encode(&self, v: &Value, out: &mut Vec<u8>) -> Result<(), String> {
        if v.is_null() {
            super::copy::push_field(out, None);
            return Ok(());
        }
        if let Value::Unreadable(why) = v {
            return Err(why.clone());
        }
        super::copy::push_field_with(out, |out| self.encode_body(v, out))
    }

    fn encode_body(&self, v: &Value, out: &mut Vec<u8>) -> Result<(), String> {
        match self {
            PgType::Int2 => {
                let i = int_of(v)?;
                let n = i16::try_from(i).map_err(|_| format!("{i} is out of range for smallint"))?;
                out.extend_from_slice(&n.to_be_bytes());
            }
            PgType::Int4 => {
                let i = int_of(v)?;
                let n = i32::try_from(i).map_err(|_| format!("{i} is out of range for integer"))?;
                out.extend_from_slice(&n.to_be_bytes());
            }
            PgType::Int8 => out.extend_from_slice(&int_of(v)?.to_be_bytes()),
            PgType::Float4 => out.extend_from_slice(&float4_of(v)?.to_be_bytes()),
            PgType::Float8 => out.extend_from_slice(&float8_of(v)?.to_be_bytes()),
            PgType::Numeric(typmod) => {
                let d = decimal_of(v)?;
                if let Some((p, s)) = typmod {
                    numeric_fits(&d, *p, *s)?;
                }
                d.encode_pg_numeric(out);
            }
            PgType::Text | PgType::Name | PgType::Varchar(_) | PgType::Bpchar(_) => {
                let s = text_of(v)?;
                if let Some(pos) = memchr::memchr(0, s.as_bytes()) {
                    let at = s[..pos].chars().count() + 1;
                    return Err(format!(
                        "text contains a NUL byte (0x00) at character {at}, which PostgreSQL text cannot store"
                    ));
                }
                if matches!(self, PgType::Name) && s.len() > NAME_BYTES {
                    return Err(format!(
                        "value is {} bytes, longer than the {NAME_BYTES} bytes a name column holds",
                        s.len()
                    ));
                }
                // At most one character per byte: short values need no count.
                if let PgType::Varchar(Some(n)) | PgType::Bpchar(Some(n)) = self
                    && s.len() > *n as usize
                {
                    let len = if matches!(self, PgType::Bpchar(_)) {
                        s.trim_end_matches(' ').chars().count()
                    } else {
                        s.chars().count()
                    };
                    if len > *n as usize {
                        let kind = if matches!(self, PgType::Bpchar(_)) {
                            "char"
                        } else {
                            "varchar"
                        };
                        return Err(format!("value is {len} characters, longer than {kind}({n})"));
                    }
                }
                out.extend_from_slice(s.as_bytes());
            }
            PgType::Bool => {
                let b = match v {
                    Value::Bool(b) => *b,
                    Value::Int(0) => false,
                    Value::Int(1) => true,
                    other => {
                        return Err(format!(
                            "cannot store {} value {} in a boolean column (use a bool transform)",
                            other.kind(),
                            other.brief()
                        ));
                    }
                };
                out.push(b as u8);
            }
            PgType::Date => {
                let d = match v {
                    Value::Date(d) => *d,
                    Value::Timestamp(t) if t.time() == NaiveTime::MIN => t.date(),
                    Value::Timestamp(_) => return Err("timestamp has a time part; a date column would drop it".into()),
                    Value::Text(s) => parse_iso_date(s.trim()).ok_or_else(|| {
                        format!(
                            "'{}' is not a YYYY-MM-DD date (add a {{ date = FMT }} transform)",
                            s.trim()
                        )
                    })?,
                    other => {
                        return Err(format!(
                            "cannot store {} value {} in a date column",
                            other.kind(),
                            other.brief()
                        ));
                    }
                };
                if d < first_day() {
                    return Err(format!("{d} is before 4714-11-24 BC, the first date PostgreSQL holds"));
                }
                let days = d.signed_duration_since(pg_epoch().date()).num_days();
                let days = i32::try_from(days).map_err(|_| format!("{d} is out of range for date"))?;
                out.extend_from_slice(&days.to_be_bytes());
            }
            PgType::Timestamp(p) => {
                let t = match v {
                    Value::Timestamp(t) => *t,
                    Value::Date(d) => d.and_time(NaiveTime::MIN),
                    Value::Text(s) => parse_iso_timestamp(s.trim()).ok_or_else(|| {
                        format!(
                            "'{}' is not a YYYY-MM-DD HH:MI:SS timestamp (add a {{ timestamp = FMT }} transform)",
                            s.trim()
                        )
                    })?,
                    other => {
                        return Err(format!(
                            "cannot store {} value {} in a timestamp column",
                            other.kind(),
                            other.brief()
                        ));
                    }
                };
                out.extend_from_slice(&micros_since_epoch(t, *p, "timestamp")?.to_be_bytes());
            }
            PgType::TimestampTz(p) => {
                let t = match v {
                    Value::TimestampTz(t) => t.naive_utc(),
                    // A zoneless value is taken as UTC: documented in docs/type-mapping.md.
                    Value::Timestamp(t) => *t,
                    Value::Date(d) => d.and_time(NaiveTime::MIN),
                    Value::Text(s) => DateTime::parse_from_rfc3339(s.trim())
                        .map(|d| d.with_timezone(&Utc).naive_utc())
                        .map_err(|_| format!("'{}' is not an RFC 3339 timestamp with offset", s.trim()))?,
                    other => {
                        return Err(format!(
                            "cannot store {} value {} in a timestamptz column",
                            other.kind(),
                            other.brief()
                        ));
                    }
                };
                out.extend_from_slice(&micros_since_epoch(t, *p, "timestamptz")?.to_be_bytes());
            }
            PgType::Bytea => match v {
                Value::Bytes(b) | Value::InvalidText(b) => out.extend_from_slice(b),
                Value::Text(s) => out.extend_from_slice(s.as_bytes()),
                other => return Err(format!("cannot store {} value in a bytea column", other.kind())),
            },
            PgType::Uuid => {
                let bytes = match v {
                    Value::Bytes(b) if b.len() == 16 => b.clone(),
                    Value::Text(s) => parse_uuid(s.trim()).ok_or_else(|| format!("'{}' is not a UUID", s.trim()))?,
                    other => {
                        return Err(format!(
                            "cannot store {} value {} in a uuid column",
                            other.kind(),
                            other.brief()
                        ));
                    }
                };
                out.extend_from_slice(&bytes);
            }
            PgType::Json | PgType::Jsonb => {
                let s = text_of(v)?;
                let parsed: serde_json::Value = serde_json::from_str(&s).map_err(|e| format!("not valid JSON: {e}"))?;
                if matches!(self, PgType::Jsonb) {
                    if s.contains("\\u0000") || has_nul(&parsed) {
                        return Err("JSON contains \\u0000, which jsonb cannot store".into());
                    }
                    out.push(1);
                }
                out.extend_from_slice(s.as_bytes());
            }
            PgType::Unsupported(t) => return Err(format!("target type {t} is not supported")),
        }
        Ok(())
    }
}

fn has_nul(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(a) => a.iter().any(has_nul),
        serde_json::Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn int_of(v: &Value) -> Result<i64, String> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Bool(b) => Ok(*b as i64),
        Value::Decimal(d) => d.to_i64().ok_or_else(|| format!("{d} is not a whole number in range")),
        // Up to 2^53 a float holds every integer; above, its shortest decimal (what the source
        // shows) and its exact binary value differ, so which integer it means is not known.
        Value::Float(f) if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 => Ok(*f as i64),
        Value::Float(f) if f.fract() == 0.0 && f.is_finite() => Err(format!(
            "{f:e} is a float beyond 2^53, where floats skip integers: which integer it stands for is not known; use a numeric column"
        )),
        Value::Text(s) => {
            let t = s.trim();
            t.parse::<i64>()
                .ok()
                .or_else(|| Decimal::parse(t).ok().and_then(|d| d.to_i64()))
                .ok_or_else(|| format!("'{t}' is not a whole number"))
        }
        other => Err(format!(
            "cannot store {} value {} in an integer column",
            other.kind(),
            other.brief()
        )),
    }
}

/// The bytes PostgreSQL's `name` type holds (NAMEDATALEN - 1).
const NAME_BYTES: usize = 63;

/// A float column's value, by PostgreSQL's own input rules: decimals and text round to the
/// nearest float (what `'0.1'::real` stores); a finite value that would become infinite or a
/// non-zero one that would become zero is out of range; an integer must be held exactly.
/// `parse` reads decimal text correctly rounded, straight to the column's width (no double
/// rounding through f64); `narrow` takes an f64 to it, `back` widens an f32 for the checks.
trait FloatColumn: Copy + std::fmt::Display + std::str::FromStr {
    const NAME: &'static str;
    fn narrow(f: f64) -> Self;
    fn from_int(i: i64) -> Self;
    fn widen(self) -> f64;
    fn int_back(self) -> i128;
}

impl FloatColumn for f32 {
    const NAME: &'static str = "real";
    fn narrow(f: f64) -> f32 {
        f as f32
    }
    fn from_int(i: i64) -> f32 {
        i as f32
    }
    fn widen(self) -> f64 {
        self as f64
    }
    fn int_back(self) -> i128 {
        self as i128
    }
}

impl FloatColumn for f64 {
    const NAME: &'static str = "double precision";
    fn narrow(f: f64) -> f64 {
        f
    }
    fn from_int(i: i64) -> f64 {
        i as f64
    }
    fn widen(self) -> f64 {
        self
    }
    fn int_back(self) -> i128 {
        self as i128
    }
}

fn float_of<F: FloatColumn>(v: &Value) -> Result<F, String> {
    let range = |shown: &str, why: &str| format!("{shown} is out of range for {} ({why})", F::NAME);
    // `nonzero`: the value read is not zero; `finite`: it is not NaN or an infinity.
    // `shown` builds the value's text only for a message (this is the per-value path).
    let checked = |f: F, shown: &dyn Fn() -> String, nonzero: bool, finite: bool| {
        let w = f.widen();
        if finite && w.is_infinite() {
            Err(range(&shown(), "it would be stored as Infinity"))
        } else if nonzero && w == 0.0 {
            Err(range(&shown(), "it would be stored as 0"))
        } else {
            Ok(f)
        }
    };
    match v {
        Value::Float(f) => checked(F::narrow(*f), &|| format!("{f:e}"), *f != 0.0, f.is_finite()),
        Value::Int(i) => {
            let f = F::from_int(*i);
            if f.int_back() != *i as i128 {
                return Err(format!(
                    "{i} cannot be held exactly by {} (it would be stored as {f}); use a numeric or bigint column",
                    F::NAME
                ));
            }
            Ok(f)
        }
        Value::Bool(b) => Ok(F::from_int(*b as i64)),
        Value::Decimal(d) => {
            let text = d.to_string();
            let f = text.parse::<F>().map_err(|_| format!("{d} is not a float"))?;
            checked(f, &|| text.clone(), !d.is_zero(), true)
        }
        Value::Text(s) => {
            let t = s.trim();
            let f = t.parse::<F>().map_err(|_| format!("'{t}' is not a number"))?;
            // NaN, Infinity and inf are taken as themselves, as PostgreSQL does.
            let special = t.bytes().any(|b| matches!(b, b'i' | b'I' | b'n' | b'N'));
            let mantissa = t.split(['e', 'E']).next().unwrap_or("");
            let nonzero = mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b));
            checked(f, &|| format!("'{t}'"), nonzero && !special, !special)
        }
        other => Err(format!(
            "cannot store {} value {} in a float column",
            other.kind(),
            other.brief()
        )),
    }
}

fn float4_of(v: &Value) -> Result<f32, String> {
    float_of::<f32>(v)
}

fn float8_of(v: &Value) -> Result<f64, String> {
    float_of::<f64>(v)
}

/// Whether `numeric(p, s)` holds `d` exactly: no digit below 10^-s (PostgreSQL would round it
/// away; with a negative scale the value must be a multiple of 10^-s) and |d| < 10^(p - s).
fn numeric_fits(d: &Decimal, p: u32, s: i32) -> Result<(), String> {
    let (Some(low), Some(high)) = (d.lowest_exponent(), d.highest_exponent()) else {
        return Ok(());
    };
    if low < -(s as i64) {
        let ty = format!("numeric({p},{s})");
        return Err(if s >= 0 {
            format!(
                "{d} has {} decimal places but {ty} keeps {s}; PostgreSQL would round it (add {{ decimal = {s} }} to round on purpose)",
                -low
            )
        } else {
            format!(
                "{d} is not a multiple of 1{} as {ty} requires; PostgreSQL would round it",
                "0".repeat((-s) as usize)
            )
        });
    }
    if high >= p as i64 - s as i64 {
        return Err(format!("{d} is too large for numeric({p},{s})"));
    }
    Ok(())
}

fn decimal_of(v: &Value) -> Result<Decimal, String> {
    match v {
        Value::Float(f) if !f.is_finite() => Err(format!("{f} cannot be stored in a numeric column")),
        Value::Bool(_)
        | Value::Bytes(_)
        | Value::InvalidText(_)
        | Value::Date(_)
        | Value::Timestamp(_)
        | Value::TimestampTz(_) => Err(format!(
            "cannot store {} value {} in a numeric column",
            v.kind(),
            v.brief()
        )),
        _ => v.to_decimal(),
    }
}

fn text_of(v: &Value) -> Result<std::borrow::Cow<'_, str>, String> {
    use std::borrow::Cow;
    Ok(match v {
        Value::Text(s) => Cow::Borrowed(s.as_str()),
        Value::Bytes(b) => Cow::Borrowed(std::str::from_utf8(b).map_err(|e| {
            format!(
                "bytes are not valid UTF-8 (invalid byte at offset {}), so they cannot be stored as text",
                e.valid_up_to()
            )
        })?),
        Value::InvalidText(b) => {
            return Err(format!(
                "text is not valid UTF-8 (invalid byte at offset {}), so no PostgreSQL text column can store it (a bytea column keeps its bytes)",
                std::str::from_utf8(b).err().map_or(0, |e| e.valid_up_to())
            ));
        }
        Value::Int(i) => Cow::Owned(i.to_string()),
        Value::Decimal(d) => Cow::Owned(d.to_string()),
        Value::Float(f) => Cow::Owned(f.to_string()),
        Value::Bool(b) => Cow::Owned(b.to_string()),
        Value::Date(d) => Cow::Owned(d.format("%Y-%m-%d").to_string()),
        Value::Timestamp(t) => Cow::Owned(t.format("%Y-%m-%d %H:%M:%S%.f").to_string()),
        Value::TimestampTz(t) => Cow::Owned(t.to_rfc3339()),
        Value::Null => Cow::Borrowed(""),
        Value::Unreadable(why) => return Err(why.clone()),
    })
}

fn parse_uuid(s: &str) -> Option<Vec<u8>> {
    let hex: String = s
        .trim_start_matches('{')
        .trim_end_matches('}')
        .chars()
        .filter(|c| *c != '-')
        .collect();
    // Only ASCII hex digits: a multi-byte character must not be cut in two below.
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..16)
        .map(|i| u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn enc(t: &PgType, v: Value) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        t.encode(&v, &mut out)?;
        Ok(out)
    }
    fn body(t: &PgType, v: Value) -> Vec<u8> {
        enc(t, v).unwrap()[4..].to_vec()
    }

    #[test]
    fn catalog_types() {
        assert_eq!(
            PgType::from_catalog("numeric", ((12 << 16) | 2) + 4, ""),
            PgType::Numeric(Some((12, 2)))
        );
        assert_eq!(PgType::from_catalog("numeric", -1, ""), PgType::Numeric(None));
        assert_eq!(PgType::from_catalog("varchar", 24, ""), PgType::Varchar(Some(20)));
        assert_eq!(
            PgType::from_catalog("inet", -1, "inet"),
            PgType::Unsupported("inet".into())
        );
    }

    #[test]
    fn integers_and_ranges() {
        assert_eq!(body(&PgType::Int4, Value::Int(258)), [0, 0, 1, 2]);
        assert_eq!(body(&PgType::Int2, Value::Text(" 7 ".into())), [0, 7]);
        assert!(
            enc(&PgType::Int2, Value::Int(40000))
                .unwrap_err()
                .contains("out of range for smallint")
        );
        assert!(enc(&PgType::Int8, Value::Text("1.5".into())).is_err());
        assert_eq!(enc(&PgType::Int8, Value::Null).unwrap(), [255, 255, 255, 255]);
    }

    #[test]
    fn numeric_scale_is_never_rounded_silently() {
        let t = PgType::Numeric(Some((10, 2)));
        assert!(
            enc(&t, Value::Text("1.234".into()))
                .unwrap_err()
                .contains("3 decimal places")
        );
        assert!(enc(&t, Value::Text("1.230".into())).is_ok());
        assert!(
            enc(&t, Value::Text("123456789".into()))
                .unwrap_err()
                .contains("too large")
        );
        assert!(
            enc(
                &PgType::Numeric(None),
                Value::Text("123456789012345678901234567890.12345".into())
            )
            .is_ok()
        );
        // PostgreSQL 15: a negative scale rounds to tens, a scale above the precision keeps
        // only small fractions.
        let m = |p: i32, s: i32| ((p << 16) | (s & 0x7ff)) + 4;
        let tens = PgType::from_catalog("numeric", m(3, -1), "numeric(3,-1)");
        assert_eq!(tens, PgType::Numeric(Some((3, -1))));
        assert!(enc(&tens, Value::Int(15)).unwrap_err().contains("not a multiple of 10"));
        assert!(enc(&tens, Value::Text("1.5".into())).is_err());
        assert!(enc(&tens, Value::Int(9990)).is_ok());
        assert!(enc(&tens, Value::Int(10000)).unwrap_err().contains("too large"));
        let small = PgType::from_catalog("numeric", m(3, 5), "numeric(3,5)");
        assert_eq!(small, PgType::Numeric(Some((3, 5))));
        assert!(enc(&small, Value::Text("0.00999".into())).is_ok());
        assert!(
            enc(&small, Value::Text("0.01".into()))
                .unwrap_err()
                .contains("too large")
        );
        assert!(enc(&small, Value::Text("0".into())).is_ok());
    }

    #[test]
    fn floats_out_of_range_or_inexact_integers_are_refused() {
        assert!(
            enc(&PgType::Float4, Value::Float(1e300))
                .unwrap_err()
                .contains("Infinity")
        );
        assert!(
            enc(&PgType::Float4, Value::Float(1e-50))
                .unwrap_err()
                .contains("stored as 0")
        );
        assert!(
            enc(&PgType::Float8, Value::Text("1e400".into()))
                .unwrap_err()
                .contains("Infinity")
        );
        assert!(
            enc(&PgType::Float8, Value::Text("1e-400".into()))
                .unwrap_err()
                .contains("stored as 0")
        );
        assert!(enc(&PgType::Float8, Value::Text("0e-400".into())).is_ok());
        assert!(enc(&PgType::Float8, Value::Text("-Infinity".into())).is_ok());
        assert!(enc(&PgType::Float4, Value::Float(f64::NAN)).is_ok());
        assert_eq!(body(&PgType::Float4, Value::Text("0.1".into())), 0.1f32.to_be_bytes());
        assert!(
            enc(&PgType::Float8, Value::Int((1 << 53) + 1))
                .unwrap_err()
                .contains("exactly")
        );
        assert!(enc(&PgType::Float8, Value::Int(1 << 60)).is_ok());
        assert!(enc(&PgType::Float4, Value::Int((1 << 24) + 1)).is_err());
        assert!(enc(&PgType::Float8, Value::Int(i64::MAX)).is_err());
        let huge = Value::Decimal(Decimal::parse("1e300").unwrap());
        assert!(enc(&PgType::Float4, huge).is_err());
    }

    #[test]
    fn text_rules() {
        assert!(
            enc(&PgType::Text, Value::Text("a\0b".into()))
                .unwrap_err()
                .contains("NUL byte (0x00) at character 2")
        );
        assert!(
            enc(&PgType::Varchar(Some(3)), Value::Text("abcd".into()))
                .unwrap_err()
                .contains("4 characters, longer than varchar(3)")
        );
        assert!(enc(&PgType::Varchar(Some(3)), Value::Text("äöü".into())).is_ok());
        assert!(
            enc(&PgType::Name, Value::Text("é".repeat(32)))
                .unwrap_err()
                .contains("64 bytes")
        );
        assert!(enc(&PgType::Name, Value::Text("a".repeat(63))).is_ok());
        assert!(enc(&PgType::Uuid, Value::Text("é".repeat(16))).is_err());
        assert!(enc(&PgType::Bpchar(Some(2)), Value::Text("ab   ".into())).is_ok());
        assert!(
            enc(&PgType::Text, Value::Bytes(vec![0xff, 0xfe]))
                .unwrap_err()
                .contains("not valid UTF-8")
        );
        assert_eq!(body(&PgType::Text, Value::Int(-5)), b"-5");
    }

    #[test]
    fn dates_and_timestamps() {
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).unwrap();
        assert_eq!(body(&PgType::Date, Value::Date(d(2000, 1, 2))), 1i32.to_be_bytes());
        assert_eq!(body(&PgType::Date, Value::Date(d(1999, 12, 31))), (-1i32).to_be_bytes());
        let t = d(2000, 1, 1).and_hms_nano_opt(0, 0, 1, 2_000).unwrap();
        assert_eq!(
            body(&PgType::Timestamp(6), Value::Timestamp(t)),
            1_000_002i64.to_be_bytes()
        );
        // A fraction of a microsecond, or more digits than the column keeps, would be rounded.
        let t = d(2000, 1, 1).and_hms_nano_opt(0, 0, 1, 1_500).unwrap();
        assert!(
            enc(&PgType::Timestamp(6), Value::Timestamp(t))
                .unwrap_err()
                .contains("fractional seconds .0000015 but timestamp(6) keeps 6")
        );
        assert!(
            enc(&PgType::Timestamp(0), Value::Text("2024-03-01 10:20:30.750".into()))
                .unwrap_err()
                .contains(".75 but timestamp(0) keeps 0 digit(s)")
        );
        assert!(enc(&PgType::TimestampTz(3), Value::Text("2024-03-01T10:20:30.125Z".into())).is_ok());
        assert!(enc(&PgType::Date, Value::Date(d(-4713, 11, 23))).is_err());
        assert!(enc(&PgType::Date, Value::Date(d(-4713, 11, 24))).is_ok());
        assert!(
            enc(&PgType::Date, Value::Text("12-MAR-19".into()))
                .unwrap_err()
                .contains("date = FMT")
        );
        assert_eq!(
            body(&PgType::Timestamp(6), Value::Text("2000-01-01 00:00:01".into())),
            1_000_000i64.to_be_bytes()
        );
    }

    #[test]
    fn other_types() {
        assert_eq!(body(&PgType::Bool, Value::Int(1)), [1]);
        assert!(
            enc(&PgType::Bool, Value::Text("Y".into()))
                .unwrap_err()
                .contains("bool transform")
        );
        assert_eq!(
            body(
                &PgType::Uuid,
                Value::Text("{00112233-4455-6677-8899-aabbccddeeff}".into())
            )
            .len(),
            16
        );
        assert_eq!(body(&PgType::Jsonb, Value::Text("{\"a\":1}".into()))[0], 1);
        assert!(enc(&PgType::Json, Value::Text("{".into())).is_err());
        assert!(enc(&PgType::Unsupported("inet".into()), Value::Int(1)).is_err());
    }
}

#[cfg(test)]
mod property_tests {
    use super::PgType;
    use crate::testgen::{Rng, arbitrary_text, arbitrary_value, iterations, seed};
    use crate::value::Value;

    #[test]
    fn every_encoder_returns_bytes_or_a_reason() {
        let types = [
            PgType::Int2,
            PgType::Int4,
            PgType::Int8,
            PgType::Float4,
            PgType::Float8,
            PgType::Numeric(None),
            PgType::Numeric(Some((5, 2))),
            PgType::Numeric(Some((3, -1))),
            PgType::Numeric(Some((3, 5))),
            PgType::Text,
            PgType::Name,
            PgType::Varchar(Some(3)),
            PgType::Bpchar(Some(2)),
            PgType::Bool,
            PgType::Date,
            PgType::Timestamp(0),
            PgType::Timestamp(6),
            PgType::TimestampTz(3),
            PgType::Bytea,
            PgType::Uuid,
            PgType::Json,
            PgType::Jsonb,
        ];
        let mut rng = Rng(seed());
        for _ in 0..iterations() * 10 {
            let t = &types[rng.below(types.len())];
            let v = match rng.below(3) {
                0 => Value::Text(arbitrary_text(&mut rng)),
                _ => arbitrary_value(&mut rng),
            };
            let mut out = Vec::new();
            let _ = t.encode(&v, &mut out);
        }
    }
}
