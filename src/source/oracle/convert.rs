//! Fetched Oracle values → [`Value`]. Pure: the adapter hands over what ODPI-C put in its fetch
//! buffer (or an owned copy of a LOB), and this decides the cell. Tested with the crate's
//! `Timestamp::new`, strings and bytes; no server and no client library needed.

use super::types::{FetchKind, OraType};
use crate::value::{Decimal, Value};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeDelta, Utc};
use oracle::sql_type::{OracleType, Timestamp};
use std::borrow::Cow;

/// One fetched, non-NULL value as the driver holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched<'a> {
    Int64(i64),
    UInt64(u64),
    /// NUMBER and FLOAT come as plain decimal text: `-0.5`, `123.45`, never an exponent.
    Number(&'a str),
    Float(f32),
    Double(f64),
    /// Character data in UTF-8 (ODPI-C always talks AL32UTF8), unchecked.
    Text(Cow<'a, [u8]>),
    Raw(Cow<'a, [u8]>),
    Timestamp(Timestamp),
    Bool(bool),
}

/// The type the crate reports for a result column, in the map's terms.
pub fn ora_type(t: &OracleType) -> OraType {
    match t {
        OracleType::Varchar2(n) | OracleType::NVarchar2(n) => OraType::Varchar(*n),
        OracleType::Char(n) | OracleType::NChar(n) => OraType::Char(*n),
        OracleType::Rowid => OraType::RowId,
        OracleType::Raw(n) => OraType::Raw(*n),
        OracleType::BinaryFloat => OraType::BinaryFloat,
        OracleType::BinaryDouble => OraType::BinaryDouble,
        // The crate reports an unconstrained NUMBER as (0, -127), NUMBER(*,s) as (0, s).
        OracleType::Number(0, -127) => OraType::Number {
            precision: None,
            scale: None,
        },
        OracleType::Number(0, s) => OraType::Number {
            precision: None,
            scale: Some(*s),
        },
        OracleType::Number(p, s) => OraType::Number {
            precision: Some(*p),
            scale: Some(*s),
        },
        OracleType::Float(_) => OraType::Float,
        OracleType::Date => OraType::Date,
        OracleType::Timestamp(p) => OraType::Timestamp(*p),
        OracleType::TimestampTZ(p) => OraType::TimestampTz(*p),
        OracleType::TimestampLTZ(p) => OraType::TimestampLtz(*p),
        OracleType::CLOB | OracleType::NCLOB => OraType::Clob,
        OracleType::BLOB => OraType::Blob,
        OracleType::Long => OraType::Long,
        OracleType::LongRaw => OraType::LongRaw,
        OracleType::Boolean => OraType::Boolean,
        OracleType::Int64 => OraType::Number {
            precision: Some(18),
            scale: Some(0),
        },
        other => OraType::Unsupported(other.to_string()),
    }
}

/// The cell for a fetched value of a column of `kind`. An `Err` is a reason that names no
/// column (the caller adds it); text that is not UTF-8 is not an error here: it stays bytes and
/// the sink rejects the row with its reason.
pub fn to_value(kind: FetchKind, fetched: Fetched<'_>) -> Result<Value, String> {
    Ok(match fetched {
        Fetched::Int64(i) => Value::Int(i),
        Fetched::UInt64(u) => match i64::try_from(u) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Decimal(Decimal::parse(&u.to_string()).map_err(|e| e.to_string())?),
        },
        Fetched::Number(s) => match kind {
            FetchKind::Integer => match s.parse::<i64>() {
                Ok(i) => Value::Int(i),
                Err(_) => Value::Decimal(Decimal::parse(s).map_err(|e| format!("Oracle returned {e}"))?),
            },
            _ => Value::Decimal(Decimal::parse(s).map_err(|e| format!("Oracle returned {e}"))?),
        },
        Fetched::Float(f) => Value::Float(f64::from(f)),
        Fetched::Double(f) => Value::Float(f),
        Fetched::Text(bytes) => match String::from_utf8(bytes.into_owned()) {
            Ok(s) => Value::Text(s),
            Err(e) => Value::InvalidText(e.into_bytes()),
        },
        Fetched::Raw(bytes) => Value::Bytes(bytes.into_owned()),
        Fetched::Bool(b) => Value::Bool(b),
        Fetched::Timestamp(ts) => {
            let local = wall_clock(&ts)?;
            match kind {
                FetchKind::TimestampTz => {
                    // The fields are the wall clock at the value's own offset: UTC = local − offset.
                    // (The crate's DateTime<Utc> conversion skips this step.)
                    let utc = local - TimeDelta::seconds(i64::from(ts.tz_offset()));
                    Value::TimestampTz(DateTime::<Utc>::from_naive_utc_and_offset(utc, Utc))
                }
                _ => Value::Timestamp(local),
            }
        }
    })
}

/// A number watermark as exact text (`0.5`, `-0.5`, `12345678901234567890.01`): from the value
/// itself, never from TO_CHAR, whose 'TM9' drops the leading zero. None for NULL (no rows).
pub fn number_text(v: &Value) -> Option<String> {
    match v {
        Value::Int(i) => Some(i.to_string()),
        Value::Decimal(d) => Some(d.to_string()),
        Value::Float(f) if f.is_finite() => Decimal::parse(&f.to_string()).ok().map(|d| d.to_string()),
        _ => None,
    }
}

/// Why a DATE/TIMESTAMP value the driver could not convert has no cell (a corrupt value written
/// through OCI: month 0, day 32 …).
pub fn unreadable_date(driver: &str) -> String {
    format!(
        "Oracle returned a date/time value that is not a valid date ({driver}); fix it in the source, or select the column with TO_CHAR in a `query` mapping"
    )
}

/// The timestamp's fields as a zoneless date-time, field for field: a date before 1582-10-15
/// (Julian in Oracle) keeps its written day, and Oracle's year −1 (1 BC, there is no year 0)
/// becomes the proleptic year 0 that chrono and PostgreSQL's `1 BC` use.
pub fn wall_clock(ts: &Timestamp) -> Result<NaiveDateTime, String> {
    let year = if ts.year() < 0 { ts.year() + 1 } else { ts.year() };
    NaiveDate::from_ymd_opt(year, ts.month(), ts.day())
        .and_then(|d| d.and_hms_nano_opt(ts.hour(), ts.minute(), ts.second(), ts.nanosecond()))
        .ok_or_else(|| {
            format!(
                "Oracle date {ts} does not exist in the proleptic Gregorian calendar PostgreSQL uses (a day only the Julian calendar has, before 1582-10-15); fix it in the source, or select the column with TO_CHAR in a `query` mapping"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, ns: u32) -> Timestamp {
        Timestamp::new(y, mo, d, h, mi, s, ns).unwrap()
    }

    fn naive(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap()
    }

    /// The exact digits of a numeric cell.
    fn digits(v: Value) -> String {
        match v {
            Value::Decimal(d) => d.to_string(),
            Value::Int(i) => i.to_string(),
            other => panic!("not a number: {other:?}"),
        }
    }

    #[test]
    fn numbers_arrive_exactly() {
        let dec = |s: &str| digits(to_value(FetchKind::Decimal, Fetched::Number(s)).unwrap());
        assert_eq!(
            dec("-98765432109876543210.0123456789"),
            "-98765432109876543210.0123456789"
        );
        assert_eq!(
            dec("99999999999999999999999999999999999999"),
            "99999999999999999999999999999999999999"
        );
        assert_eq!(dec("0.0001"), "0.0001");
        assert_eq!(dec("-0.5"), "-0.5");
        assert_eq!(
            to_value(FetchKind::Integer, Fetched::Int64(i64::MIN)).unwrap(),
            Value::Int(i64::MIN)
        );
        assert_eq!(
            to_value(FetchKind::Integer, Fetched::Number("42")).unwrap(),
            Value::Int(42)
        );
        assert_eq!(
            digits(to_value(FetchKind::Integer, Fetched::Number("99999999999999999999")).unwrap()),
            "99999999999999999999"
        );
        assert_eq!(
            digits(to_value(FetchKind::Decimal, Fetched::UInt64(u64::MAX)).unwrap()),
            u64::MAX.to_string()
        );
        assert!(
            to_value(FetchKind::Decimal, Fetched::Number("1,5"))
                .unwrap_err()
                .contains("'1,5'")
        );
        // BINARY_FLOAT widens exactly; NaN and infinities pass through (float8 holds them).
        assert_eq!(
            to_value(FetchKind::Float, Fetched::Float(0.5)).unwrap(),
            Value::Float(0.5)
        );
        assert!(
            matches!(to_value(FetchKind::Float, Fetched::Double(f64::NAN)).unwrap(), Value::Float(f) if f.is_nan())
        );
    }

    #[test]
    fn text_and_bytes_byte_for_byte() {
        let text = |b: &[u8]| to_value(FetchKind::Text, Fetched::Text(Cow::Borrowed(b))).unwrap();
        assert_eq!(text("Zoë\t\"q\"\n€".as_bytes()), Value::Text("Zoë\t\"q\"\n€".into()));
        // CHAR keeps its blank padding: the mapping decides (scaffold writes `rtrim`).
        assert_eq!(text(b"AB   "), Value::Text("AB   ".into()));
        // CHR(0) stays in the text: the sink rejects it with the column and the reason.
        assert_eq!(text(b"a\0b"), Value::Text("a\0b".into()));
        // Not UTF-8: kept as bytes, rejected by the sink for a text column, never altered.
        assert_eq!(text(&[0x61, 0xff]), Value::InvalidText(vec![0x61, 0xff]));
        let raw = to_value(FetchKind::Bytes, Fetched::Raw(Cow::Owned(vec![0, 1, 255]))).unwrap();
        assert_eq!(raw, Value::Bytes(vec![0, 1, 255]));
        assert_eq!(
            to_value(FetchKind::Bool, Fetched::Bool(true)).unwrap(),
            Value::Bool(true)
        );
    }

    #[test]
    fn dates_and_timestamps_keep_their_fields() {
        let v = to_value(FetchKind::Timestamp, Fetched::Timestamp(ts(2024, 2, 29, 23, 59, 58, 0))).unwrap();
        assert_eq!(v, Value::Timestamp(naive("2024-02-29 23:59:58")));
        let v = to_value(
            FetchKind::Timestamp,
            Fetched::Timestamp(ts(1850, 1, 1, 0, 0, 0, 123_456_789)),
        )
        .unwrap();
        assert_eq!(v, Value::Timestamp(naive("1850-01-01 00:00:00.123456789")));
        // Before the Gregorian reform: the written day is kept.
        let v = to_value(FetchKind::Timestamp, Fetched::Timestamp(ts(1000, 3, 1, 0, 0, 0, 0))).unwrap();
        assert_eq!(v, Value::Timestamp(naive("1000-03-01 00:00:00")));
        // 1 BC in Oracle is year -1; year 0 in the proleptic calendar.
        let v = to_value(FetchKind::Timestamp, Fetched::Timestamp(ts(-1, 12, 31, 0, 0, 0, 0))).unwrap();
        assert_eq!(
            v,
            Value::Timestamp(
                NaiveDate::from_ymd_opt(0, 12, 31)
                    .unwrap()
                    .and_hms_opt(0, 0, 0)
                    .unwrap()
            )
        );
        assert_eq!(
            to_value(
                FetchKind::Timestamp,
                Fetched::Timestamp(ts(9999, 12, 31, 23, 59, 59, 999_999_999))
            )
            .unwrap(),
            Value::Timestamp(naive("9999-12-31 23:59:59.999999999"))
        );
    }

    #[test]
    fn time_zone_offsets_are_honoured() {
        // 2024-03-10 08:30 at +05:30 is 03:00 UTC; at -08:00 it is 16:30 UTC.
        let east = ts(2024, 3, 10, 8, 30, 0, 0).and_tz_hm_offset(5, 30).unwrap();
        let west = ts(2024, 3, 10, 8, 30, 0, 500).and_tz_hm_offset(-8, 0).unwrap();
        let utc = |s: &str| Value::TimestampTz(naive(s).and_utc());
        assert_eq!(
            to_value(FetchKind::TimestampTz, Fetched::Timestamp(east)).unwrap(),
            utc("2024-03-10 03:00:00")
        );
        assert_eq!(
            to_value(FetchKind::TimestampTz, Fetched::Timestamp(west)).unwrap(),
            utc("2024-03-10 16:30:00.0000005")
        );
        // Across a date line: 00:15 at +14:00 is the previous day.
        let kiribati = ts(2024, 1, 1, 0, 15, 0, 0).and_tz_hm_offset(14, 0).unwrap();
        assert_eq!(
            to_value(FetchKind::TimestampTz, Fetched::Timestamp(kiribati)).unwrap(),
            utc("2023-12-31 10:15:00")
        );
        // A zoned value read into a zoneless kind keeps its wall clock.
        assert_eq!(
            to_value(FetchKind::Timestamp, Fetched::Timestamp(east)).unwrap(),
            Value::Timestamp(naive("2024-03-10 08:30:00"))
        );
    }

    #[test]
    fn crate_types_map_onto_the_table() {
        assert_eq!(
            ora_type(&OracleType::Number(0, -127)).fetch_kind(),
            Ok(FetchKind::Decimal)
        );
        assert_eq!(ora_type(&OracleType::Number(9, 0)).fetch_kind(), Ok(FetchKind::Integer));
        assert_eq!(
            ora_type(&OracleType::Number(0, 0)).pg_type(false).unwrap(),
            "numeric(38)"
        );
        assert_eq!(
            ora_type(&OracleType::Number(12, 2)).pg_type(false).unwrap(),
            "numeric(12,2)"
        );
        assert_eq!(
            ora_type(&OracleType::TimestampTZ(6)).fetch_kind(),
            Ok(FetchKind::TimestampTz)
        );
        assert_eq!(
            ora_type(&OracleType::TimestampLTZ(6)).fetch_kind(),
            Ok(FetchKind::TimestampTz)
        );
        assert_eq!(ora_type(&OracleType::Date).pg_type(false).unwrap(), "timestamp(0)");
        assert_eq!(ora_type(&OracleType::CLOB).fetch_kind(), Ok(FetchKind::Text));
        assert!(ora_type(&OracleType::BLOB).is_lob());
        let e = ora_type(&OracleType::IntervalDS(2, 6)).fetch_kind().unwrap_err();
        assert!(e.contains("INTERVAL") && e.contains("not supported"), "{e}");
    }

    #[test]
    fn number_watermarks_are_written_out_exactly() {
        let d = |s: &str| Value::Decimal(Decimal::parse(s).unwrap());
        assert_eq!(number_text(&d("0.5")).as_deref(), Some("0.5"));
        assert_eq!(number_text(&d("-0.5")).as_deref(), Some("-0.5"));
        assert_eq!(
            number_text(&d("12345678901234567890.000001")).as_deref(),
            Some("12345678901234567890.000001")
        );
        assert_eq!(number_text(&Value::Int(-7)).as_deref(), Some("-7"));
        assert_eq!(number_text(&Value::Float(1e-7)).as_deref(), Some("0.0000001"));
        assert_eq!(number_text(&Value::Null), None);
        // What the adapter hands over for NUMBER text between -1 and 1 reads back the same.
        let v = to_value(FetchKind::Decimal, Fetched::Number("-0.25")).unwrap();
        assert_eq!(number_text(&v).as_deref(), Some("-0.25"));
    }
}
