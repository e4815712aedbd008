//! Target column types read from PostgreSQL's catalog, and the encoding of a [`Value`] into the
//! binary COPY form of exactly that type. A value the column cannot hold exactly (too long, a
//! NUL byte, more decimals than the scale, out of range) is refused here with a reason, so it
//! becomes a reject naming the column instead of a failed batch.

use crate::value::{Decimal, Value};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgType {
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    /// `numeric(precision, scale)`; `None` when unconstrained.
    Numeric(Option<(u32, u32)>),
    Text,
    Varchar(Option<u32>),
    Bpchar(Option<u32>),
    Bool,
    Date,
    Timestamp,
    TimestampTz,
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
        match typname {
            "int2" => PgType::Int2,
            "int4" => PgType::Int4,
            "int8" => PgType::Int8,
            "float4" => PgType::Float4,
            "float8" => PgType::Float8,
            "numeric" => PgType::Numeric(len.map(|m| ((m >> 16) & 0xffff, m & 0xffff))),
            "text" | "name" | "citext" => PgType::Text,
            "varchar" => PgType::Varchar(len),
            "bpchar" => PgType::Bpchar(len),
            "bool" => PgType::Bool,
            "date" => PgType::Date,
            "timestamp" => PgType::Timestamp,
            "timestamptz" => PgType::TimestampTz,
            "bytea" => PgType::Bytea,
            "uuid" => PgType::Uuid,
            "json" => PgType::Json,
            "jsonb" => PgType::Jsonb,
            _ => PgType::Unsupported(formatted.to_string()),
        }
    }

    pub fn is_textual(&self) -> bool {
        matches!(self, PgType::Text | PgType::Varchar(_) | PgType::Bpchar(_))
    }

    /// Appends the field (length prefix and bytes, or -1 for NULL) to `out`.
    /// On `Err`, `out` may hold a partial field: callers truncate back to the row start.
    pub fn encode(&self, v: &Value, out: &mut Vec<u8>) -> Result<(), String> {
        if v.is_null() {
            out.extend_from_slice(&(-1i32).to_be_bytes());
            return Ok(());
        }
        let at = out.len();
        out.extend_from_slice(&[0, 0, 0, 0]);
        self.encode_body(v, out)?;
        let len = (out.len() - at - 4) as i32;
        out[at..at + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
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
            PgType::Float4 => out.extend_from_slice(&(float_of(v)? as f32).to_be_bytes()),
            PgType::Float8 => out.extend_from_slice(&float_of(v)?.to_be_bytes()),
            PgType::Numeric(typmod) => {
                let d = decimal_of(v)?;
                if let Some((p, s)) = typmod {
                    if d.significant_scale() > *s {
                        return Err(format!(
                            "{d} has {} decimal places but numeric({p},{s}) keeps {s}; PostgreSQL would round it (add {{ decimal = {s} }} to round on purpose)",
                            d.significant_scale()
                        ));
                    }
                    if d.integer_digits() > p - s {
                        return Err(format!("{d} is too large for numeric({p},{s})"));
                    }
                }
                d.encode_pg_numeric(out);
            }
            PgType::Text | PgType::Varchar(_) | PgType::Bpchar(_) => {
                let s = text_of(v)?;
                if let Some(pos) = s.as_bytes().iter().position(|&b| b == 0) {
                    let at = s[..pos].chars().count() + 1;
                    return Err(format!(
                        "text contains a NUL byte (0x00) at character {at}, which PostgreSQL text cannot store"
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
                    Value::Text(s) => NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| {
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
                let days = d.signed_duration_since(pg_epoch().date()).num_days();
                let days = i32::try_from(days).map_err(|_| format!("{d} is out of range for date"))?;
                out.extend_from_slice(&days.to_be_bytes());
            }
            PgType::Timestamp => {
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
                out.extend_from_slice(&micros_since_epoch(t)?.to_be_bytes());
            }
            PgType::TimestampTz => {
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
                out.extend_from_slice(&micros_since_epoch(t)?.to_be_bytes());
            }
            PgType::Bytea => match v {
                Value::Bytes(b) => out.extend_from_slice(b),
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
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(*f as i64),
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

fn float_of(v: &Value) -> Result<f64, String> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::Int(i) => Ok(*i as f64),
        Value::Decimal(d) => d.to_string().parse().map_err(|_| format!("{d} is not a float")),
        Value::Text(s) => s.trim().parse().map_err(|_| format!("'{}' is not a number", s.trim())),
        other => Err(format!(
            "cannot store {} value {} in a float column",
            other.kind(),
            other.brief()
        )),
    }
}

fn decimal_of(v: &Value) -> Result<Decimal, String> {
    match v {
        Value::Float(f) if !f.is_finite() => Err(format!("{f} cannot be stored in a numeric column")),
        Value::Bool(_) | Value::Bytes(_) | Value::Date(_) | Value::Timestamp(_) | Value::TimestampTz(_) => Err(
            format!("cannot store {} value {} in a numeric column", v.kind(), v.brief()),
        ),
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
        Value::Int(i) => Cow::Owned(i.to_string()),
        Value::Decimal(d) => Cow::Owned(d.to_string()),
        Value::Float(f) => Cow::Owned(f.to_string()),
        Value::Bool(b) => Cow::Owned(b.to_string()),
        Value::Date(d) => Cow::Owned(d.format("%Y-%m-%d").to_string()),
        Value::Timestamp(t) => Cow::Owned(t.format("%Y-%m-%d %H:%M:%S%.f").to_string()),
        Value::TimestampTz(t) => Cow::Owned(t.to_rfc3339()),
        Value::Null => Cow::Borrowed(""),
    })
}

fn pg_epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .expect("valid")
        .and_time(NaiveTime::MIN)
}

/// Microseconds since 2000-01-01, nanoseconds rounded half up as PostgreSQL does for text input.
fn micros_since_epoch(t: NaiveDateTime) -> Result<i64, String> {
    let whole = t.with_nanosecond(0).expect("0 is valid");
    let secs = whole.signed_duration_since(pg_epoch()).num_seconds();
    let micros = (t.nanosecond() as i64 + 500) / 1000;
    secs.checked_mul(1_000_000)
        .and_then(|s| s.checked_add(micros))
        .ok_or_else(|| format!("{t} is out of range for timestamp"))
}

fn parse_iso_timestamp(s: &str) -> Option<NaiveDateTime> {
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t);
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .map(|d| d.and_time(NaiveTime::MIN))
}

fn parse_uuid(s: &str) -> Option<Vec<u8>> {
    let hex: String = s
        .trim_start_matches('{')
        .trim_end_matches('}')
        .chars()
        .filter(|c| *c != '-')
        .collect();
    if hex.len() != 32 {
        return None;
    }
    (0..16)
        .map(|i| u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let t = d(2000, 1, 1).and_hms_nano_opt(0, 0, 1, 1_500).unwrap();
        assert_eq!(
            body(&PgType::Timestamp, Value::Timestamp(t)),
            1_000_002i64.to_be_bytes()
        );
        assert!(
            enc(&PgType::Date, Value::Text("12-MAR-19".into()))
                .unwrap_err()
                .contains("date = FMT")
        );
        assert_eq!(
            body(&PgType::Timestamp, Value::Text("2000-01-01 00:00:01".into())),
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
