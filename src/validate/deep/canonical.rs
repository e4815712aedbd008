//! One comparable form per field: what PostgreSQL normalises on input (numeric scale, char
//! padding, jsonb key order) is normalised here too, and a field is shown as PostgreSQL would
//! print it.

use crate::sink::pgtype::PgType;
use std::borrow::Cow;

/// Characters of a value shown in an example.
const SHOWN_CHARS: usize = 60;

/// The comparable form of a field: what PostgreSQL normalises on input is normalised here too.
pub fn canonical<'a>(ty: &PgType, field: &'a [u8]) -> Cow<'a, [u8]> {
    match ty {
        // numeric(12,2) stores 1.5 as 1.50: compare the value, not the display scale.
        PgType::Numeric(_) => match numeric_text(field) {
            Some(s) => Cow::Owned(s.into_bytes()),
            None => Cow::Borrowed(field),
        },
        // char(n) pads with spaces, which carry no meaning.
        PgType::Bpchar(_) => {
            let end = field.iter().rposition(|&c| c != b' ').map_or(0, |p| p + 1);
            Cow::Borrowed(&field[..end])
        }
        // jsonb sorts keys and drops whitespace; its binary form starts with a version byte.
        PgType::Jsonb => {
            let body = field.strip_prefix(&[1u8]).unwrap_or(field);
            match serde_json::from_slice::<serde_json::Value>(body) {
                Ok(v) => Cow::Owned(v.to_string().into_bytes()),
                Err(_) => Cow::Borrowed(body),
            }
        }
        _ => Cow::Borrowed(field),
    }
}

/// A binary numeric as plain decimal text without insignificant zeros (`-12.5`, `0`, `NaN`).
pub fn numeric_text(b: &[u8]) -> Option<String> {
    if b.len() < 8 {
        return None;
    }
    let word = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let (ndigits, weight, sign) = (word(0) as usize, word(2) as i16 as i32, word(4));
    if b.len() != 8 + 2 * ndigits {
        return None;
    }
    match sign {
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<u16> = (0..ndigits).map(|i| word(8 + 2 * i)).collect();
    // Base-10000 digit i has weight `weight - i`; write the integer part, then the fraction.
    let mut int = String::new();
    let mut frac = String::new();
    for (i, d) in digits.iter().enumerate() {
        let w = weight - i as i32;
        if w >= 0 {
            int.push_str(&format!("{d:04}"));
        } else {
            // Missing groups between the point and this digit are zeros.
            while (frac.len() as i32) < (-w - 1) * 4 {
                frac.push_str("0000");
            }
            frac.push_str(&format!("{d:04}"));
        }
    }
    // Integer groups below the last stored digit are zeros.
    let last_w = weight - ndigits as i32 + 1;
    if ndigits > 0 && last_w > 0 {
        for _ in 0..last_w {
            int.push_str("0000");
        }
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let mut out = String::new();
    if sign == 0x4000 && !(int.is_empty() && frac.is_empty()) {
        out.push('-');
    }
    out.push_str(if int.is_empty() { "0" } else { int });
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    Some(out)
}

/// A field for a human: the value as PostgreSQL would print it, cut at [`SHOWN_CHARS`].
pub fn shown(ty: &PgType, field: Option<&[u8]>) -> String {
    let Some(b) = field else {
        return "NULL".into();
    };
    let be8 = |b: &[u8]| b.try_into().ok().map(i64::from_be_bytes);
    let epoch = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).expect("valid date");
    let s = match ty {
        PgType::Int2 if b.len() == 2 => i16::from_be_bytes([b[0], b[1]]).to_string(),
        PgType::Int4 if b.len() == 4 => i32::from_be_bytes([b[0], b[1], b[2], b[3]]).to_string(),
        PgType::Int8 if b.len() == 8 => be8(b).unwrap_or_default().to_string(),
        PgType::Float4 if b.len() == 4 => f32::from_be_bytes([b[0], b[1], b[2], b[3]]).to_string(),
        PgType::Float8 if b.len() == 8 => f64::from_bits(be8(b).unwrap_or_default() as u64).to_string(),
        PgType::Numeric(_) => numeric_text(b).unwrap_or_else(|| crate::value::hex(b)),
        PgType::Bool if b.len() == 1 => (b[0] != 0).to_string(),
        PgType::Date if b.len() == 4 => {
            let days = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            epoch
                .checked_add_signed(chrono::Duration::days(days as i64))
                .map(|d| d.to_string())
                .unwrap_or_else(|| format!("day {days}"))
        }
        PgType::Timestamp(_) | PgType::TimestampTz(_) if b.len() == 8 => {
            let us = be8(b).unwrap_or_default();
            let t = epoch
                .and_hms_opt(0, 0, 0)
                .expect("valid time")
                .checked_add_signed(chrono::Duration::microseconds(us));
            match (t, ty) {
                (Some(t), PgType::TimestampTz(_)) => format!("{}+00", t.format("%Y-%m-%d %H:%M:%S%.f")),
                (Some(t), _) => t.format("%Y-%m-%d %H:%M:%S%.f").to_string(),
                (None, _) => format!("{us} µs after 2000-01-01"),
            }
        }
        PgType::Uuid if b.len() == 16 => {
            let h = crate::value::hex(b);
            format!(
                "{}-{}-{}-{}-{}",
                &h[0..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..32]
            )
        }
        PgType::Jsonb => String::from_utf8_lossy(b.strip_prefix(&[1u8]).unwrap_or(b)).into_owned(),
        PgType::Text | PgType::Varchar(_) | PgType::Bpchar(_) | PgType::Json => {
            format!("'{}'", String::from_utf8_lossy(b))
        }
        _ => format!("\\x{}", crate::value::hex(b)),
    };
    if s.chars().count() > SHOWN_CHARS {
        let cut: String = s.chars().take(SHOWN_CHARS).collect();
        format!("{cut}… ({} bytes)", b.len())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{Decimal, Value};

    fn field(ty: &PgType, v: Value) -> Vec<u8> {
        let mut out = Vec::new();
        ty.encode(&v, &mut out).unwrap();
        out[4..].to_vec()
    }

    /// PostgreSQL's own binary numeric for 1.50 in numeric(10,2): digits [1, 5000], dscale 2.
    #[test]
    fn numeric_scale_does_not_matter_but_the_value_does() {
        let t = PgType::Numeric(Some((10, 2)));
        let ours = field(&t, Value::Text("1.5".into()));
        let pg: Vec<u8> = [2u16, 0, 0, 2, 1, 5000].iter().flat_map(|w| w.to_be_bytes()).collect();
        assert_eq!(canonical(&t, &ours), canonical(&t, &pg));
        let other = field(&t, Value::Text("1.05".into()));
        assert_ne!(canonical(&t, &ours), canonical(&t, &other));
        assert_eq!(numeric_text(&pg).unwrap(), "1.5");
    }

    #[test]
    fn numeric_text_round_trips_the_encoder() {
        for s in [
            "0",
            "-0.0001",
            "123456789012345678901234567890.12345",
            "10000",
            "-20000000",
            "0.00000001",
            "99.99",
        ] {
            let mut out = Vec::new();
            Decimal::parse(s).unwrap().encode_pg_numeric(&mut out);
            let want = Decimal::parse(s).unwrap().to_string();
            let want = if want.contains('.') {
                want.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                want
            };
            let want = if want == "-0" { "0".to_string() } else { want };
            assert_eq!(numeric_text(&out).unwrap(), want, "{s}");
        }
    }

    #[test]
    fn char_padding_and_jsonb_key_order_are_not_differences() {
        let c = PgType::Bpchar(Some(5));
        assert_eq!(canonical(&c, b"ab   "), canonical(&c, b"ab"));
        assert_ne!(canonical(&c, b" ab"), canonical(&c, b"ab"));
        let j = PgType::Jsonb;
        assert_eq!(
            canonical(&j, b"\x01{\"b\": 1, \"a\": 2}"),
            canonical(&j, b"{\"a\":2,\"b\":1}")
        );
    }

    #[test]
    fn values_are_shown_as_postgresql_prints_them() {
        assert_eq!(shown(&PgType::Int4, Some(&42i32.to_be_bytes())), "42");
        assert_eq!(shown(&PgType::Date, Some(&1i32.to_be_bytes())), "2000-01-02");
        assert_eq!(shown(&PgType::Text, Some(b"x")), "'x'");
        assert_eq!(shown(&PgType::Text, None), "NULL");
        let long = "y".repeat(200);
        assert!(shown(&PgType::Text, Some(long.as_bytes())).ends_with("(200 bytes)"));
    }
}
