//! Key values bound back into Oracle in the key column's own type. Pure: the column's type (from
//! the describe that precedes every read) and the value in, the bind out; no server needed.
//!
//! Why it matters: the crate binds a Rust `String` as NVARCHAR2 and a `Timestamp` as TIMESTAMP
//! WITH TIME ZONE. Against a VARCHAR2 key, `"K" > :k1` then becomes `SYS_OP_C2C("K") > :k1`:
//! the key's index is not used, and the comparison runs in AL16UTF16 order while ORDER BY sorts
//! in the database character set's binary order, so at every cursor re-open and range bound rows
//! are skipped or read twice (any single-byte or multi-byte legacy character set, and even
//! AL32UTF8 for characters beyond the BMP). A DATE key compared with a TIMESTAMP WITH TIME ZONE
//! bind is converted on the column side too. So each key is bound as what its column is.

use crate::value::Value;
use oracle::sql_type::{OracleType, Timestamp, ToSql};
use oracle::{Connection, SqlValue};

/// A value ready to bind, in a Rust type the crate converts without loss.
#[derive(Debug, Clone)]
pub enum BindValue {
    Int(i64),
    /// NUMBER digits as text ('.' as the decimal point, no exponent): converted exactly by the
    /// client, whatever NLS says.
    Number(String),
    Double(f64),
    Float(f32),
    Text(String),
    Bytes(Vec<u8>),
    Time(Timestamp),
    Bool(bool),
}

impl PartialEq for BindValue {
    fn eq(&self, other: &Self) -> bool {
        use BindValue::*;
        let fields = |t: &Timestamp| {
            (
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.nanosecond(),
                t.tz_offset(),
            )
        };
        match (self, other) {
            (Int(a), Int(b)) => a == b,
            (Number(a), Number(b)) | (Text(a), Text(b)) => a == b,
            (Double(a), Double(b)) => a.to_bits() == b.to_bits(),
            (Float(a), Float(b)) => a.to_bits() == b.to_bits(),
            (Bytes(a), Bytes(b)) => a == b,
            (Time(a), Time(b)) => fields(a) == fields(b),
            (Bool(a), Bool(b)) => a == b,
            _ => false,
        }
    }
}

/// One bind: its value and the Oracle type it is bound as.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyBind {
    pub value: BindValue,
    pub ty: OracleType,
}

impl ToSql for KeyBind {
    fn oratype(&self, _conn: &Connection) -> oracle::Result<OracleType> {
        Ok(self.ty.clone())
    }
    fn to_sql(&self, val: &mut SqlValue) -> oracle::Result<()> {
        match &self.value {
            BindValue::Int(i) => i.to_sql(val),
            BindValue::Number(s) | BindValue::Text(s) => s.to_sql(val),
            BindValue::Double(f) => f.to_sql(val),
            BindValue::Float(f) => f.to_sql(val),
            BindValue::Bytes(b) => b.to_sql(val),
            BindValue::Time(t) => t.to_sql(val),
            BindValue::Bool(b) => b.to_sql(val),
        }
    }
}

/// Text bound as VARCHAR2 of its byte length: compared with a VARCHAR2, CHAR or ROWID column
/// in the column's own terms (a ROWID column converts the bind, not itself).
pub fn varchar(s: &str) -> KeyBind {
    KeyBind {
        value: BindValue::Text(s.to_string()),
        ty: OracleType::Varchar2(s.len().max(1) as u32),
    }
}

/// The year as Oracle counts it: there is no year 0, and chrono's (and PostgreSQL's) year 0 is
/// Oracle's 1 BC (-1).
fn oracle_year(year: i32) -> i32 {
    if year <= 0 { year - 1 } else { year }
}

fn timestamp(t: &chrono::NaiveDateTime, keep_fraction: bool) -> Result<Timestamp, String> {
    use chrono::{Datelike, Timelike};
    let nanos = if keep_fraction { t.nanosecond() } else { 0 };
    Timestamp::new(
        oracle_year(t.year()),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        nanos,
    )
    .map_err(|e| e.to_string())
}

/// How `v`, read from a key column of type `column`, is bound to compare with that column
/// exactly and through its index.
pub fn key_bind(column: &OracleType, v: &Value) -> Result<KeyBind, String> {
    let mismatch = || format!("a {} key value cannot be bound against a {column} column", v.kind());
    let bind = |value, ty| Ok(KeyBind { value, ty });
    match (column, v) {
        (_, Value::Null) => Err("a key value is NULL".into()),
        (OracleType::Varchar2(_) | OracleType::Char(_) | OracleType::Long | OracleType::Rowid, Value::Text(s)) => {
            Ok(varchar(s))
        }
        (OracleType::NVarchar2(_) | OracleType::NChar(_), Value::Text(s)) => bind(
            BindValue::Text(s.clone()),
            OracleType::NVarchar2(s.chars().count().max(1) as u32),
        ),
        (OracleType::Number(..) | OracleType::Float(_) | OracleType::Int64 | OracleType::UInt64, Value::Int(i)) => {
            bind(BindValue::Int(*i), OracleType::Number(0, 0))
        }
        (OracleType::Number(..) | OracleType::Float(_) | OracleType::UInt64, Value::Decimal(d)) => {
            bind(BindValue::Number(d.to_string()), OracleType::Number(0, 0))
        }
        (OracleType::BinaryDouble, Value::Float(f)) => bind(BindValue::Double(*f), OracleType::BinaryDouble),
        // The value came from a BINARY_FLOAT, so it converts back to f32 exactly.
        (OracleType::BinaryFloat, Value::Float(f)) => bind(BindValue::Float(*f as f32), OracleType::BinaryFloat),
        (OracleType::Date, Value::Timestamp(t)) => bind(BindValue::Time(timestamp(t, false)?), OracleType::Date),
        (OracleType::Date, Value::Date(d)) => bind(
            BindValue::Time(timestamp(&d.and_time(chrono::NaiveTime::MIN), false)?),
            OracleType::Date,
        ),
        (OracleType::Timestamp(_), Value::Timestamp(t)) => {
            bind(BindValue::Time(timestamp(t, true)?), OracleType::Timestamp(9))
        }
        // Instants read in UTC (the session's time zone is +00:00).
        (OracleType::TimestampTZ(_), Value::TimestampTz(t)) => bind(
            BindValue::Time(
                timestamp(&t.naive_utc(), true)?
                    .and_tz_offset(0)
                    .map_err(|e| e.to_string())?,
            ),
            OracleType::TimestampTZ(9),
        ),
        (OracleType::TimestampLTZ(_), Value::TimestampTz(t)) => bind(
            BindValue::Time(timestamp(&t.naive_utc(), true)?),
            OracleType::TimestampLTZ(9),
        ),
        (OracleType::Raw(_), Value::Bytes(b)) => {
            bind(BindValue::Bytes(b.clone()), OracleType::Raw(b.len().max(1) as u32))
        }
        (OracleType::Boolean, Value::Bool(b)) => bind(BindValue::Bool(*b), OracleType::Boolean),
        (_, Value::Unreadable(why)) => Err(format!(
            "a key value could not be read ({why}); read this table by other key columns (`key = [...]`) or by ROWID (`key = [\"ROWID\"]`)"
        )),
        (_, Value::InvalidText(_)) => Err(
            "a key value is not valid UTF-8 and cannot be bound back; choose other key columns with `key = [...]`"
                .into(),
        ),
        _ => Err(mismatch()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Decimal;
    use chrono::{NaiveDate, TimeZone, Utc};

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, ns: u32) -> chrono::NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_nano_opt(h, mi, s, ns)
            .unwrap()
    }

    #[test]
    fn text_keys_bind_as_varchar2_or_nvarchar2_by_their_column() {
        for column in [OracleType::Varchar2(40), OracleType::Char(10), OracleType::Rowid] {
            let b = key_bind(&column, &Value::Text("Škoda €😀".into())).unwrap();
            // Bytes, not characters: 1 + 1 + 4 + 1 + 3 + 4 … of UTF-8.
            assert_eq!(b.ty, OracleType::Varchar2("Škoda €😀".len() as u32), "{column}");
            assert_eq!(b.value, BindValue::Text("Škoda €😀".into()));
        }
        let n = key_bind(&OracleType::NVarchar2(20), &Value::Text("ёж😀".into())).unwrap();
        assert_eq!(n.ty, OracleType::NVarchar2(3));
        // The empty string cannot be a key in Oracle ('' is NULL), but a zero-size bind would fail.
        assert_eq!(
            key_bind(&OracleType::Varchar2(5), &Value::Text(String::new()))
                .unwrap()
                .ty,
            OracleType::Varchar2(1)
        );
    }

    #[test]
    fn numbers_bind_as_number_and_binary_types_as_themselves() {
        assert_eq!(
            key_bind(&OracleType::Number(10, 0), &Value::Int(-7)).unwrap(),
            KeyBind {
                value: BindValue::Int(-7),
                ty: OracleType::Number(0, 0)
            }
        );
        let d = Decimal::parse("12345678901234567890.000000000000000001").unwrap();
        assert_eq!(
            key_bind(&OracleType::Number(0, -127), &Value::Decimal(d))
                .unwrap()
                .value,
            BindValue::Number("12345678901234567890.000000000000000001".into())
        );
        let x = 0.1f64 + 0.2;
        let b = key_bind(&OracleType::BinaryDouble, &Value::Float(x)).unwrap();
        assert_eq!((b.value, b.ty), (BindValue::Double(x), OracleType::BinaryDouble));
        let f = 16_777_217f32 - 1.0;
        let b = key_bind(&OracleType::BinaryFloat, &Value::Float(f64::from(f))).unwrap();
        assert_eq!((b.value, b.ty), (BindValue::Float(f), OracleType::BinaryFloat));
        assert!(
            key_bind(&OracleType::BinaryDouble, &Value::Text("1".into()))
                .unwrap_err()
                .contains("BINARY_DOUBLE")
        );
    }

    #[test]
    fn dates_and_timestamps_bind_as_their_column_type_with_oracle_years() {
        let t = at(2024, 2, 29, 13, 14, 15, 123_456_789);
        let d = key_bind(&OracleType::Date, &Value::Timestamp(at(2024, 2, 29, 13, 14, 15, 0))).unwrap();
        assert_eq!(d.ty, OracleType::Date);
        assert_eq!(
            d.value,
            BindValue::Time(Timestamp::new(2024, 2, 29, 13, 14, 15, 0).unwrap())
        );
        let ts = key_bind(&OracleType::Timestamp(9), &Value::Timestamp(t)).unwrap();
        assert_eq!(ts.ty, OracleType::Timestamp(9));
        assert_eq!(
            ts.value,
            BindValue::Time(Timestamp::new(2024, 2, 29, 13, 14, 15, 123_456_789).unwrap())
        );
        // chrono's year 0 is Oracle's 1 BC (-1); -1 is 2 BC (-2).
        let bc = key_bind(&OracleType::Date, &Value::Timestamp(at(0, 3, 1, 0, 0, 0, 0))).unwrap();
        assert_eq!(bc.value, BindValue::Time(Timestamp::new(-1, 3, 1, 0, 0, 0, 0).unwrap()));
        let bc2 = key_bind(&OracleType::Date, &Value::Timestamp(at(-1, 3, 1, 0, 0, 0, 0))).unwrap();
        assert_eq!(
            bc2.value,
            BindValue::Time(Timestamp::new(-2, 3, 1, 0, 0, 0, 0).unwrap())
        );
        let utc = Utc.from_utc_datetime(&at(2024, 3, 10, 3, 0, 0, 5_000));
        let tz = key_bind(&OracleType::TimestampTZ(6), &Value::TimestampTz(utc)).unwrap();
        assert_eq!(tz.ty, OracleType::TimestampTZ(9));
        let BindValue::Time(v) = tz.value else { panic!() };
        assert_eq!((v.hour(), v.nanosecond(), v.tz_offset()), (3, 5_000, 0));
        let ltz = key_bind(&OracleType::TimestampLTZ(6), &Value::TimestampTz(utc)).unwrap();
        assert_eq!(ltz.ty, OracleType::TimestampLTZ(9));
        assert!(key_bind(&OracleType::Date, &Value::Int(1)).is_err());
    }

    #[test]
    fn raw_keys_null_and_undecodable_text() {
        let b = key_bind(&OracleType::Raw(16), &Value::Bytes(vec![0, 255])).unwrap();
        assert_eq!((b.value, b.ty), (BindValue::Bytes(vec![0, 255]), OracleType::Raw(2)));
        assert!(
            key_bind(&OracleType::Number(5, 0), &Value::Null)
                .unwrap_err()
                .contains("NULL")
        );
        assert!(
            key_bind(&OracleType::Varchar2(5), &Value::InvalidText(vec![0xff]))
                .unwrap_err()
                .contains("UTF-8")
        );
    }
}
