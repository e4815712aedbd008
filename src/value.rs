//! The one cell model every source produces and every sink consumes.
//!
//! Values must arrive exactly, so decimals are kept as their decimal digits (arbitrary precision,
//! no `f64`, no 28-digit decimal type), timestamps carry no zone unless the source type has one,
//! and text that is not valid UTF-8 stays bytes until a sink decides what to do with it.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Value as Json, json};
use std::fmt;

/// An exact decimal number: `digits × 10^-scale`, with `digits` an unsigned integer in base 10.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Decimal {
    negative: bool,
    /// ASCII digits without leading zeros; "0" for zero.
    digits: String,
    scale: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a decimal number")]
pub struct DecimalParseError(pub String);

impl Decimal {
    /// Parses `[-+]digits[.digits][e[-+]digits]`, the form Oracle NUMBER text, SQLite and
    /// `f64`'s shortest representation all use. Surrounding blanks are not accepted here.
    pub fn parse(text: &str) -> Result<Decimal, DecimalParseError> {
        let err = || DecimalParseError(text.to_string());
        let (negative, rest) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(i) => {
                let exp: i64 = rest[i + 1..].parse().map_err(|_| err())?;
                (&rest[..i], exp)
            }
            None => (rest, 0),
        };
        let (int_part, frac_part) = match mantissa.split_once('.') {
            Some((i, f)) => (i, f),
            None => (mantissa, ""),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(err());
        }
        if !int_part.bytes().all(|b| b.is_ascii_digit()) || !frac_part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let mut digits = String::with_capacity(int_part.len() + frac_part.len());
        digits.push_str(int_part);
        digits.push_str(frac_part);
        let mut scale = frac_part.len() as i64 - exponent;
        if scale < 0 {
            if -scale > 1000 {
                return Err(err());
            }
            digits.extend(std::iter::repeat_n('0', (-scale) as usize));
            scale = 0;
        }
        if scale > 1000 {
            return Err(err());
        }
        Ok(Decimal::from_parts(negative, &digits, scale as u32))
    }

    fn from_parts(negative: bool, digits: &str, scale: u32) -> Decimal {
        let trimmed = digits.trim_start_matches('0');
        let digits = if trimmed.is_empty() {
            "0".to_string()
        } else {
            trimmed.to_string()
        };
        let negative = negative && digits != "0";
        Decimal {
            negative,
            digits,
            scale,
        }
    }

    pub fn from_i64(v: i64) -> Decimal {
        Decimal::from_parts(v < 0, &v.unsigned_abs().to_string(), 0)
    }

    pub fn is_negative(&self) -> bool {
        self.negative
    }

    pub fn scale(&self) -> u32 {
        self.scale
    }

    /// The scale once trailing fractional zeros are dropped (1.500 → 1).
    pub fn significant_scale(&self) -> u32 {
        let trailing = self.digits.bytes().rev().take_while(|&b| b == b'0').count() as u32;
        if self.digits == "0" {
            0
        } else {
            self.scale.saturating_sub(trailing)
        }
    }

    /// Digits left of the decimal point, ignoring leading zeros (0.5 → 0, 12.5 → 2).
    pub fn integer_digits(&self) -> u32 {
        let n = self.digits.len() as u32;
        if self.digits == "0" {
            0
        } else {
            n.saturating_sub(self.scale)
        }
    }

    /// Rounds half away from zero to `scale` fractional digits (Oracle's ROUND), or pads.
    pub fn round(&self, scale: u32) -> Decimal {
        if scale >= self.scale {
            let mut digits = self.digits.clone();
            digits.extend(std::iter::repeat_n('0', (scale - self.scale) as usize));
            return Decimal::from_parts(self.negative, &digits, scale);
        }
        let drop = (self.scale - scale) as usize;
        let padded = format!(
            "{}{}",
            "0".repeat((drop + 1).saturating_sub(self.digits.len())),
            self.digits
        );
        let (keep, dropped) = padded.split_at(padded.len() - drop);
        let mut keep = keep.as_bytes().to_vec();
        if dropped.as_bytes()[0] >= b'5' {
            let mut i = keep.len();
            loop {
                if i == 0 {
                    keep.insert(0, b'1');
                    break;
                }
                i -= 1;
                if keep[i] == b'9' {
                    keep[i] = b'0';
                } else {
                    keep[i] += 1;
                    break;
                }
            }
        }
        Decimal::from_parts(self.negative, std::str::from_utf8(&keep).unwrap_or("0"), scale)
    }

    /// Compares two decimals by value (1.50 equals 1.5).
    pub fn cmp_value(&self, other: &Decimal) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        let sign = |d: &Decimal| {
            if d.is_zero() {
                0
            } else if d.negative {
                -1
            } else {
                1
            }
        };
        let (sa, sb) = (sign(self), sign(other));
        if sa != sb || sa == 0 {
            return sa.cmp(&sb);
        }
        // Same sign: compare magnitudes, digit strings aligned on the decimal point.
        let magnitude = || -> Ordering {
            let (ha, hb) = (self.highest_exponent(), other.highest_exponent());
            if ha != hb {
                return ha.cmp(&hb);
            }
            let (a, b) = (self.digits.as_bytes(), other.digits.as_bytes());
            for i in 0..a.len().max(b.len()) {
                let (x, y) = (a.get(i).unwrap_or(&b'0'), b.get(i).unwrap_or(&b'0'));
                if x != y {
                    return x.cmp(y);
                }
            }
            Ordering::Equal
        };
        if sa > 0 { magnitude() } else { magnitude().reverse() }
    }

    pub fn is_zero(&self) -> bool {
        self.digits == "0"
    }

    /// The power of ten of the lowest non-zero digit (1.50 → -1, 1200 → 2); `None` for zero.
    pub fn lowest_exponent(&self) -> Option<i64> {
        if self.is_zero() {
            return None;
        }
        let trailing = self.digits.bytes().rev().take_while(|&b| b == b'0').count() as i64;
        Some(trailing - self.scale as i64)
    }

    /// The power of ten of the highest digit (12.5 → 1, 0.05 → -2); `None` for zero.
    pub fn highest_exponent(&self) -> Option<i64> {
        if self.is_zero() {
            return None;
        }
        Some(self.digits.len() as i64 - 1 - self.scale as i64)
    }

    /// If the number is integral and fits, the `i64` it equals.
    pub fn to_i64(&self) -> Option<i64> {
        if self.significant_scale() > 0 {
            return None;
        }
        let int = &self.digits[..self.digits.len().saturating_sub(self.scale as usize)];
        let int = if int.is_empty() { "0" } else { int };
        let text = if self.negative {
            format!("-{int}")
        } else {
            int.to_string()
        };
        text.parse().ok()
    }

    /// PostgreSQL's binary `numeric` wire form: ndigits, weight, sign, dscale, base-10000 digits.
    pub fn encode_pg_numeric(&self, out: &mut Vec<u8>) {
        let split = self.digits.len() as i64 - self.scale as i64;
        let (int_part, frac_part): (String, String) = if split <= 0 {
            (
                String::new(),
                format!("{}{}", "0".repeat((-split) as usize), self.digits),
            )
        } else {
            let (i, f) = self.digits.split_at(split as usize);
            (i.to_string(), f.to_string())
        };
        let int_part = int_part.trim_start_matches('0');
        let int_pad = (4 - int_part.len() % 4) % 4;
        let frac_pad = (4 - frac_part.len() % 4) % 4;
        let padded: Vec<u8> = std::iter::repeat_n(b'0', int_pad)
            .chain(int_part.bytes())
            .chain(frac_part.bytes())
            .chain(std::iter::repeat_n(b'0', frac_pad))
            .collect();
        let mut groups: Vec<i16> = padded
            .chunks(4)
            .map(|c| c.iter().fold(0i16, |acc, d| acc * 10 + (d - b'0') as i16))
            .collect();
        let mut weight = ((int_pad + int_part.len()) / 4) as i16 - 1;
        while groups.first() == Some(&0) {
            groups.remove(0);
            weight -= 1;
        }
        while groups.last() == Some(&0) {
            groups.pop();
        }
        if groups.is_empty() {
            weight = 0;
        }
        let sign: u16 = if self.negative { 0x4000 } else { 0 };
        out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
        out.extend_from_slice(&weight.to_be_bytes());
        out.extend_from_slice(&sign.to_be_bytes());
        out.extend_from_slice(&(self.scale.min(16383) as i16).to_be_bytes());
        for g in groups {
            out.extend_from_slice(&g.to_be_bytes());
        }
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negative {
            f.write_str("-")?;
        }
        let scale = self.scale as usize;
        if scale == 0 {
            return f.write_str(&self.digits);
        }
        if self.digits.len() > scale {
            let (i, fr) = self.digits.split_at(self.digits.len() - scale);
            write!(f, "{i}.{fr}")
        } else {
            write!(f, "0.{}{}", "0".repeat(scale - self.digits.len()), self.digits)
        }
    }
}

/// One cell. Sources produce these, transforms rewrite them, sinks encode them.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Decimal(Decimal),
    Text(String),
    /// Raw bytes: BLOB/RAW.
    Bytes(Vec<u8>),
    /// Text the source stores that is not valid UTF-8, byte for byte. It is text to the source
    /// (it sorts and compares there as text, and is bound back as text), but no PostgreSQL
    /// text column can hold it: it loads into `bytea` or is a reject.
    InvalidText(Vec<u8>),
    /// A value the source handed over but that no cell can hold (an Oracle DATE that exists only
    /// in the Julian calendar, a corrupt DATE written through OCI): the reason, naming what was
    /// read. The row is that row's reject, naming the column; it never stops the read.
    Unreadable(String),
    Date(NaiveDate),
    /// Wall-clock timestamp without zone, microsecond precision at most.
    Timestamp(NaiveDateTime),
    TimestampTz(DateTime<Utc>),
}

impl Value {
    /// Makes this value the text `s`, reusing its buffer when it already holds text.
    pub fn set_text(&mut self, s: &str) {
        match self {
            Value::Text(t) => {
                t.clear();
                t.push_str(s);
            }
            other => *other = Value::Text(s.to_string()),
        }
    }

    /// Makes this value the bytes `b`, reusing its buffer when it already holds bytes.
    pub fn set_bytes(&mut self, b: &[u8]) {
        match self {
            Value::Bytes(v) => {
                v.clear();
                v.extend_from_slice(b);
            }
            other => *other = Value::Bytes(b.to_vec()),
        }
    }

    /// Makes this value the invalid text `b`, reusing its buffer when it already holds some.
    pub fn set_invalid_text(&mut self, b: &[u8]) {
        match self {
            Value::InvalidText(v) => {
                v.clear();
                v.extend_from_slice(b);
            }
            other => *other = Value::InvalidText(b.to_vec()),
        }
    }

    /// Bytes of text or binary data the value holds (what bounds a batch's memory).
    pub fn data_len(&self) -> usize {
        match self {
            Value::Text(s) => s.len(),
            Value::Bytes(b) | Value::InvalidText(b) => b.len(),
            _ => 8,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// A short name of the kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "float",
            Value::Decimal(_) => "decimal",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
            Value::InvalidText(_) => "text (not valid UTF-8)",
            Value::Unreadable(_) => "unreadable value",
            Value::Date(_) => "date",
            Value::Timestamp(_) => "timestamp",
            Value::TimestampTz(_) => "timestamptz",
        }
    }

    /// The value as a reject reason shows it: its JSON, cut at 60 characters.
    pub fn brief(&self) -> String {
        let j = self.to_display_json().to_string();
        if j.chars().count() > 60 {
            format!("{}…", j.chars().take(60).collect::<String>())
        } else {
            j
        }
    }

    /// The exact decimal this value stands for: decimals, integers, finite floats (their
    /// shortest round-trip form) and numeric text (surrounding blanks ignored).
    pub fn to_decimal(&self) -> Result<Decimal, String> {
        match self {
            Value::Decimal(d) => Ok(d.clone()),
            Value::Int(i) => Ok(Decimal::from_i64(*i)),
            Value::Float(f) if f.is_finite() => Decimal::parse(&f.to_string()).map_err(|e| e.to_string()),
            Value::Text(s) => Decimal::parse(s.trim()).map_err(|e| e.to_string()),
            other => Err(format!(
                "cannot read a number from {} value {}",
                other.kind(),
                other.brief()
            )),
        }
    }

    /// Readable JSON for the rejects table: what a person fixing the source needs to see.
    /// Text PostgreSQL's jsonb cannot hold (a NUL) and bytes are given as hex objects.
    pub fn to_display_json(&self) -> Json {
        match self {
            Value::Null => Json::Null,
            Value::Bool(b) => json!(b),
            Value::Int(i) => json!(i),
            Value::Float(f) if f.is_finite() => json!(f),
            Value::Float(f) => json!(f.to_string()),
            Value::Decimal(d) => json!(d.to_string()),
            Value::Text(s) if s.contains('\0') => json!({ "text_hex": hex(s.as_bytes()) }),
            Value::Text(s) => json!(s),
            Value::Bytes(b) => json!({ "hex": hex(b) }),
            Value::InvalidText(b) => json!({ "invalid_utf8_hex": hex(b) }),
            Value::Unreadable(why) => json!({ "unreadable": why }),
            Value::Date(d) => json!(d.format("%Y-%m-%d").to_string()),
            Value::Timestamp(t) => json!(t.format("%Y-%m-%d %H:%M:%S%.f").to_string()),
            Value::TimestampTz(t) => json!(t.format("%Y-%m-%d %H:%M:%S%.f+00").to_string()),
        }
    }

    /// Lossless tagged JSON, used for resume keys: `{"int": "5"}`, `{"text": "A"}` …
    pub fn to_tagged_json(&self) -> Json {
        match self {
            Value::Null => json!({ "null": null }),
            Value::Bool(b) => json!({ "bool": b }),
            Value::Int(i) => json!({ "int": i.to_string() }),
            Value::Float(f) => json!({ "float": f.to_bits().to_string() }),
            Value::Decimal(d) => json!({ "dec": d.to_string() }),
            Value::Text(s) => json!({ "text_hex": hex(s.as_bytes()) }),
            Value::Bytes(b) => json!({ "hex": hex(b) }),
            Value::InvalidText(b) => json!({ "invalid_text_hex": hex(b) }),
            Value::Unreadable(why) => json!({ "unreadable": why }),
            Value::Date(d) => json!({ "date": d.format("%Y-%m-%d").to_string() }),
            Value::Timestamp(t) => json!({ "ts": t.format("%Y-%m-%dT%H:%M:%S%.f").to_string() }),
            Value::TimestampTz(t) => json!({ "tstz": t.to_rfc3339() }),
        }
    }

    pub fn from_tagged_json(j: &Json) -> Option<Value> {
        let obj = j.as_object()?;
        let (tag, v) = obj.iter().next()?;
        let s = v.as_str();
        Some(match tag.as_str() {
            "null" => Value::Null,
            "bool" => Value::Bool(v.as_bool()?),
            "int" => Value::Int(s?.parse().ok()?),
            "float" => Value::Float(f64::from_bits(s?.parse().ok()?)),
            "dec" => Value::Decimal(Decimal::parse(s?).ok()?),
            "text_hex" => Value::Text(String::from_utf8(unhex(s?)?).ok()?),
            "hex" => Value::Bytes(unhex(s?)?),
            "invalid_text_hex" => Value::InvalidText(unhex(s?)?),
            "unreadable" => Value::Unreadable(s?.to_string()),
            "date" => Value::Date(NaiveDate::parse_from_str(s?, "%Y-%m-%d").ok()?),
            "ts" => Value::Timestamp(NaiveDateTime::parse_from_str(s?, "%Y-%m-%dT%H:%M:%S%.f").ok()?),
            "tstz" => Value::TimestampTz(DateTime::parse_from_rfc3339(s?).ok()?.with_timezone(&Utc)),
            _ => return None,
        })
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A row's key, as JSON for the state table and the checkpoint file.
pub fn key_to_json(key: &[Value]) -> Json {
    Json::Array(key.iter().map(Value::to_tagged_json).collect())
}

pub fn key_from_json(j: &Json) -> Option<Vec<Value>> {
    j.as_array()?.iter().map(Value::from_tagged_json).collect()
}

/// The order keyset reads rely on: the order of a binary collation, as SQLite sorts
/// `COLLATE BINARY` and Oracle sorts with `NLS_SORT = BINARY` in an AL32UTF8 database. NULL
/// first, then numbers (compared by value, whatever their kind), date/times, text (by its UTF-8
/// bytes, valid or not), and bytes last. Keys compare column by column.
pub fn cmp_keys(a: &[Value], b: &[Value]) -> std::cmp::Ordering {
    a.iter()
        .zip(b)
        .map(|(x, y)| cmp_key_value(x, y))
        .find(|o| o.is_ne())
        .unwrap_or_else(|| a.len().cmp(&b.len()))
}

/// One key value against another, in the order of [`cmp_keys`].
pub fn cmp_key_value(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Decimal(_) => 1,
            Value::Date(_) | Value::Timestamp(_) | Value::TimestampTz(_) => 2,
            Value::Text(_) | Value::InvalidText(_) => 3,
            Value::Bytes(_) => 4,
            Value::Unreadable(_) => 5,
        }
    }
    fn text_bytes(v: &Value) -> &[u8] {
        match v {
            Value::Text(s) => s.as_bytes(),
            Value::InvalidText(b) | Value::Bytes(b) => b,
            _ => &[],
        }
    }
    fn instant(v: &Value) -> NaiveDateTime {
        match v {
            Value::Date(d) => d.and_time(chrono::NaiveTime::MIN),
            Value::Timestamp(t) => *t,
            Value::TimestampTz(t) => t.naive_utc(),
            _ => NaiveDateTime::MIN,
        }
    }
    let (ra, rb) = (rank(a), rank(b));
    if ra != rb {
        return ra.cmp(&rb);
    }
    match ra {
        1 => cmp_numbers(a, b),
        2 => instant(a).cmp(&instant(b)),
        3 | 4 => text_bytes(a).cmp(text_bytes(b)),
        _ => Ordering::Equal,
    }
}

/// Two numbers of any kind by value (NaN after every other number).
fn cmp_numbers(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let int = |v: &Value| match v {
        Value::Int(i) => Some(*i),
        Value::Bool(b) => Some(*b as i64),
        _ => None,
    };
    if let (Some(x), Some(y)) = (int(a), int(b)) {
        return x.cmp(&y);
    }
    let float = |v: &Value| match v {
        Value::Float(f) => Some(*f),
        _ => None,
    };
    if let (Some(x), Some(y)) = (float(a), float(b)) {
        return x.total_cmp(&y);
    }
    // A NaN against any other kind: after it.
    match (float(a).is_some_and(f64::is_nan), float(b).is_some_and(f64::is_nan)) {
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    let dec = |v: &Value| match v {
        Value::Float(f) if f.is_infinite() => None,
        other => other.to_decimal().ok(),
    };
    match (dec(a), dec(b)) {
        (Some(x), Some(y)) => x.cmp_value(&y),
        // An infinite float against a finite number.
        (None, _) => float(a).map_or(Ordering::Equal, |f| f.total_cmp(&0.0)),
        (_, None) => float(b).map_or(Ordering::Equal, |f| 0.0f64.total_cmp(&f)),
    }
}

/// A key for humans (logs, rejects): `42` or `A|7`.
pub fn key_display(key: &[Value]) -> String {
    key.iter()
        .map(|v| match v {
            Value::Text(s) => s.clone(),
            other => match other.to_display_json() {
                Json::String(s) => s,
                j => j.to_string(),
            },
        })
        .collect::<Vec<_>>()
        .join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        Decimal::parse(s).unwrap().encode_pg_numeric(&mut out);
        out
    }

    #[test]
    fn parses_and_prints_exactly() {
        for s in [
            "0",
            "-0.5",
            "123.4500",
            "100000000",
            "-98765432109876543210.0123456789",
            "0.0001",
            "99999999999999999999999999999999999999",
            "123456789012345678901234567890.123456789",
        ] {
            assert_eq!(Decimal::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(Decimal::parse("1.5e3").unwrap().to_string(), "1500");
        assert_eq!(Decimal::parse("15e-3").unwrap().to_string(), "0.015");
        assert_eq!(Decimal::parse(".5").unwrap().to_string(), "0.5");
        assert_eq!(Decimal::parse("-0").unwrap().to_string(), "0");
        for bad in ["", "-", "1.2.3", "abc", "1e", " 1", "1,5", "1e99999"] {
            assert!(Decimal::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn rounds_half_away_from_zero() {
        let r = |s: &str, n| Decimal::parse(s).unwrap().round(n).to_string();
        assert_eq!(r("1.005", 2), "1.01");
        assert_eq!(r("-1.005", 2), "-1.01");
        assert_eq!(r("9.995", 2), "10.00");
        assert_eq!(r("0.004", 2), "0.00");
        assert_eq!(r("0.005", 2), "0.01");
        assert_eq!(r("12", 2), "12.00");
        assert_eq!(r("0.0004", 0), "0");
        assert_eq!(r("999.5", 0), "1000");
    }

    #[test]
    fn scale_and_integer_digits() {
        let d = Decimal::parse("0012.3400").unwrap();
        assert_eq!(d.significant_scale(), 2);
        assert_eq!(d.integer_digits(), 2);
        assert_eq!(Decimal::parse("0.5").unwrap().integer_digits(), 0);
        assert_eq!(Decimal::parse("12.000").unwrap().to_i64(), Some(12));
        assert_eq!(Decimal::parse("-7").unwrap().to_i64(), Some(-7));
        assert_eq!(Decimal::parse("1.5").unwrap().to_i64(), None);
        assert_eq!(Decimal::parse("99999999999999999999").unwrap().to_i64(), None);
    }

    #[test]
    fn encodes_pg_numeric_wire_format() {
        // 12345.678: groups 1 2345 6780, weight 1, dscale 3
        assert_eq!(
            numeric("12345.678"),
            [0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c].to_vec()
        );
        // zero: no digits
        assert_eq!(numeric("0"), [0, 0, 0, 0, 0, 0, 0, 0].to_vec());
        // -0.0001: one group "0001" at weight -1, dscale 4
        assert_eq!(numeric("-0.0001"), [0, 1, 0xff, 0xff, 0x40, 0, 0, 4, 0, 1].to_vec());
        // 100000000: groups 1 0000 0000 → trailing zero groups dropped, weight 2
        assert_eq!(numeric("100000000"), [0, 1, 0, 2, 0, 0, 0, 0, 0, 1].to_vec());
    }

    #[test]
    fn keys_compare_in_binary_collation_order() {
        use std::cmp::Ordering::*;
        let d = |s: &str| Value::Decimal(Decimal::parse(s).unwrap());
        let t = |s: &str| Value::Text(s.into());
        let ordered = [
            Value::Null,
            Value::Float(f64::NEG_INFINITY),
            Value::Int(i64::MIN),
            d("-1.5"),
            Value::Int(-1),
            Value::Float(-0.5),
            Value::Int(0),
            d("0.001"),
            Value::Float(1.0e-3 * 2.0),
            Value::Int(1),
            d("1.50"),
            Value::Int(9_007_199_254_740_993),
            Value::Float(1e19),
            Value::Float(f64::INFINITY),
            Value::Date(NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()),
            t(""),
            t("K0999"),
            t("k0999"),
            Value::InvalidText(vec![b'k', 0xff]),
            t("é"),
            t("\u{e000}"),
            t("😀"),
            Value::Bytes(vec![]),
            Value::Bytes(vec![0]),
        ];
        for (i, a) in ordered.iter().enumerate() {
            for (j, b) in ordered.iter().enumerate() {
                assert_eq!(cmp_key_value(a, b), i.cmp(&j), "{a:?} against {b:?}");
            }
        }
        assert_eq!(cmp_key_value(&Value::Int(2), &d("2.000")), Equal);
        assert_eq!(cmp_key_value(&Value::Float(2.0), &Value::Int(2)), Equal);
        assert_eq!(cmp_key_value(&d("-10"), &d("-9.99")), Less);
        assert_eq!(cmp_keys(&[t("a"), Value::Int(2)], &[t("a"), Value::Int(10)]), Less);
        assert_eq!(cmp_keys(&[t("b"), Value::Int(1)], &[t("a"), Value::Int(10)]), Greater);
    }

    #[test]
    fn tagged_json_round_trips() {
        let values = vec![
            Value::Null,
            Value::Bool(true),
            Value::Int(i64::MIN),
            Value::Float(0.1),
            Value::Decimal(Decimal::parse("-12345678901234567890.123").unwrap()),
            Value::Text("tab\tnew\nline \"q\" \\ ünï €\0".into()),
            Value::Bytes(vec![0, 255, 10]),
            Value::Date(NaiveDate::from_ymd_opt(1899, 12, 31).unwrap()),
            Value::Timestamp(
                NaiveDate::from_ymd_opt(2040, 1, 2)
                    .unwrap()
                    .and_hms_micro_opt(3, 4, 5, 6)
                    .unwrap(),
            ),
        ];
        let j = key_to_json(&values);
        let text = j.to_string();
        let back = key_from_json(&serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(back, values);
        assert_eq!(key_display(&[Value::Text("A".into()), Value::Int(7)]), "A|7");
    }
}
