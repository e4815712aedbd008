//! The Oracle → PostgreSQL type map, written once (docs/type-mapping.md is its table) and used by
//! `scaffold` for DDL, by the pre-flight for compatibility, and by the reader to decide how each
//! fetched value becomes a [`Value`](crate::value::Value). Pure: declared type text in, decisions out.

use std::fmt;

/// An Oracle column type, parsed from its catalog spelling (`NUMBER(12,2)`, `VARCHAR2(40 CHAR)`,
/// `TIMESTAMP(6) WITH TIME ZONE`, `NUMBER(*,0)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OraType {
    /// `precision` None: `NUMBER` or `NUMBER(*,s)`; `scale` None: no scale given (floating).
    Number {
        precision: Option<u8>,
        scale: Option<i8>,
    },
    /// FLOAT(b): a NUMBER with binary precision, not IEEE.
    Float,
    BinaryFloat,
    BinaryDouble,
    Date,
    Timestamp(u8),
    TimestampTz(u8),
    TimestampLtz(u8),
    /// CHAR/NCHAR(n): blank-padded to n characters.
    Char(u32),
    /// VARCHAR2/NVARCHAR2/VARCHAR(n).
    Varchar(u32),
    Clob,
    Long,
    Raw(u32),
    Blob,
    LongRaw,
    RowId,
    Boolean,
    /// Anything else (INTERVAL, XMLTYPE, BFILE, SDO_GEOMETRY, object types …), as spelled.
    Unsupported(String),
}

/// How a value of the type is converted on its way to PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchKind {
    Integer,
    Decimal,
    Float,
    Text,
    Bytes,
    /// DATE and TIMESTAMP: wall-clock fields, no zone.
    Timestamp,
    /// WITH (LOCAL) TIME ZONE: an instant, converted to UTC with the value's own offset.
    TimestampTz,
    Bool,
}

impl fmt::Display for OraType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OraType::Number {
                precision: None,
                scale: None,
            } => write!(f, "NUMBER"),
            OraType::Number {
                precision: None,
                scale: Some(s),
            } => write!(f, "NUMBER(*,{s})"),
            OraType::Number {
                precision: Some(p),
                scale: None | Some(0),
            } => write!(f, "NUMBER({p})"),
            OraType::Number {
                precision: Some(p),
                scale: Some(s),
            } => write!(f, "NUMBER({p},{s})"),
            OraType::Float => write!(f, "FLOAT"),
            OraType::BinaryFloat => write!(f, "BINARY_FLOAT"),
            OraType::BinaryDouble => write!(f, "BINARY_DOUBLE"),
            OraType::Date => write!(f, "DATE"),
            OraType::Timestamp(p) => write!(f, "TIMESTAMP({p})"),
            OraType::TimestampTz(p) => write!(f, "TIMESTAMP({p}) WITH TIME ZONE"),
            OraType::TimestampLtz(p) => write!(f, "TIMESTAMP({p}) WITH LOCAL TIME ZONE"),
            OraType::Char(n) => write!(f, "CHAR({n})"),
            OraType::Varchar(n) => write!(f, "VARCHAR2({n})"),
            OraType::Clob => write!(f, "CLOB"),
            OraType::Long => write!(f, "LONG"),
            OraType::Raw(n) => write!(f, "RAW({n})"),
            OraType::Blob => write!(f, "BLOB"),
            OraType::LongRaw => write!(f, "LONG RAW"),
            OraType::RowId => write!(f, "ROWID"),
            OraType::Boolean => write!(f, "BOOLEAN"),
            OraType::Unsupported(s) => f.write_str(s),
        }
    }
}

/// Parses a declared type. Never fails: what is not known is `Unsupported`, and the caller
/// names the column when it reports it.
pub fn parse(declared: &str) -> OraType {
    let d = declared.trim().to_ascii_uppercase();
    let (base, args, tail) = match (d.find('('), d.find(')')) {
        (Some(o), Some(c)) if c > o => (d[..o].trim(), d[o + 1..c].trim(), d[c + 1..].trim()),
        _ => (d.as_str(), "", ""),
    };
    let nums: Vec<&str> = args
        .split(',')
        .map(|a| a.split_whitespace().next().unwrap_or(""))
        .collect();
    let first = |default: u32| nums.first().and_then(|n| n.parse::<u32>().ok()).unwrap_or(default);
    let fsp = |default: u8| nums.first().and_then(|n| n.parse::<u8>().ok()).unwrap_or(default);
    // TIMESTAMP WITH TIME ZONE (no precision) has its words in `base`.
    let words = format!("{base} {tail}");
    let words = words.trim();
    match words {
        "NUMBER" | "NUMERIC" | "DECIMAL" | "DEC" => {
            let precision = nums.first().and_then(|n| n.parse::<u8>().ok());
            let scale = nums.get(1).and_then(|n| n.parse::<i8>().ok());
            // NUMBER(p) has scale 0; NUMBER alone floats. NUMERIC/DECIMAL default to scale 0.
            let scale = match (scale, args.is_empty(), base) {
                (Some(s), _, _) => Some(s),
                (None, false, _) => Some(0),
                (None, true, "NUMBER") => None,
                (None, true, _) => Some(0),
            };
            OraType::Number { precision, scale }
        }
        "INTEGER" | "INT" | "SMALLINT" => OraType::Number {
            precision: None,
            scale: Some(0),
        },
        "FLOAT" | "REAL" | "DOUBLE PRECISION" => OraType::Float,
        "BINARY_FLOAT" => OraType::BinaryFloat,
        "BINARY_DOUBLE" => OraType::BinaryDouble,
        "DATE" => OraType::Date,
        "TIMESTAMP" => OraType::Timestamp(fsp(6)),
        "TIMESTAMP WITH TIME ZONE" => OraType::TimestampTz(fsp(6)),
        "TIMESTAMP WITH LOCAL TIME ZONE" => OraType::TimestampLtz(fsp(6)),
        "CHAR" | "NCHAR" | "CHARACTER" => OraType::Char(first(1)),
        "VARCHAR2" | "NVARCHAR2" | "VARCHAR" => OraType::Varchar(first(4000)),
        "CLOB" | "NCLOB" => OraType::Clob,
        "LONG" => OraType::Long,
        "RAW" => OraType::Raw(first(2000)),
        "BLOB" => OraType::Blob,
        "LONG RAW" => OraType::LongRaw,
        "ROWID" | "UROWID" => OraType::RowId,
        "BOOLEAN" => OraType::Boolean,
        _ => OraType::Unsupported(declared.trim().to_string()),
    }
}

/// What to do with a type nobody maps: the message names the type; the caller adds the column.
pub fn unsupported_reason(t: &str) -> String {
    let upper = t.to_ascii_uppercase();
    let suggestion = if upper.starts_with("INTERVAL") {
        "select it as text with a `query = \"SELECT ..., TO_CHAR(col) AS col FROM ...\"` mapping"
    } else if upper.contains("XMLTYPE") {
        "select it as a CLOB with XMLSERIALIZE or t.col.getClobVal() in a `query` mapping"
    } else if upper == "BFILE" {
        "BFILEs live outside the database; copy the files separately"
    } else {
        "select it through a `query` mapping that converts it to text, a number or a date"
    };
    format!("Oracle type {t} is not supported: {suggestion}")
}

impl OraType {
    pub fn fetch_kind(&self) -> Result<FetchKind, String> {
        Ok(match self {
            OraType::Number {
                precision: Some(p),
                scale: Some(0),
            } if *p <= 18 => FetchKind::Integer,
            OraType::Number { .. } => FetchKind::Decimal,
            OraType::Float | OraType::BinaryFloat | OraType::BinaryDouble => FetchKind::Float,
            OraType::Date | OraType::Timestamp(_) => FetchKind::Timestamp,
            OraType::TimestampTz(_) | OraType::TimestampLtz(_) => FetchKind::TimestampTz,
            OraType::Char(_) | OraType::Varchar(_) | OraType::Clob | OraType::Long | OraType::RowId => FetchKind::Text,
            OraType::Raw(_) | OraType::Blob | OraType::LongRaw => FetchKind::Bytes,
            OraType::Boolean => FetchKind::Bool,
            OraType::Unsupported(t) => return Err(unsupported_reason(t)),
        })
    }

    /// True for the LOB/LONG types, whose fetch needs smaller arrays.
    pub fn is_lob(&self) -> bool {
        matches!(self, OraType::Clob | OraType::Blob | OraType::Long | OraType::LongRaw)
    }

    /// The PostgreSQL column type `scaffold --ddl` writes. `raw16_uuid`: RAW(16) → uuid.
    pub fn pg_type(&self, raw16_uuid: bool) -> Result<String, String> {
        Ok(match self {
            OraType::Number {
                precision: Some(p),
                scale: Some(0),
            } => match p {
                0..=4 => "smallint".into(),
                5..=9 => "integer".into(),
                10..=18 => "bigint".into(),
                _ => format!("numeric({p})"),
            },
            // NUMBER(p,s), s < 0: integers rounded to 10^-s, up to p - s digits.
            OraType::Number {
                precision: Some(p),
                scale: Some(s),
            } if *s < 0 => format!("numeric({})", *p as i32 - *s as i32),
            OraType::Number {
                precision: Some(p),
                scale: Some(s),
            } if (*s as i32) > (*p as i32) => format!("numeric({s},{s})"),
            OraType::Number {
                precision: Some(p),
                scale: Some(s),
            } => format!("numeric({p},{s})"),
            // NUMBER(*,0) (Oracle's INTEGER): up to 38 digits.
            OraType::Number {
                precision: None,
                scale: Some(0),
            } => "numeric(38)".into(),
            OraType::Number { .. } => "numeric".into(),
            OraType::Float | OraType::BinaryFloat | OraType::BinaryDouble => "double precision".into(),
            OraType::Date => "timestamp(0)".into(),
            OraType::Timestamp(p) => format!("timestamp({})", p.min(&6)),
            OraType::TimestampTz(p) | OraType::TimestampLtz(p) => format!("timestamptz({})", p.min(&6)),
            OraType::Char(n) => format!("varchar({n})"),
            OraType::Varchar(_) | OraType::Clob | OraType::Long | OraType::RowId => "text".into(),
            OraType::Raw(16) if raw16_uuid => "uuid".into(),
            OraType::Raw(_) | OraType::Blob | OraType::LongRaw => "bytea".into(),
            OraType::Boolean => "boolean".into(),
            OraType::Unsupported(t) => return Err(unsupported_reason(t)),
        })
    }
}

/// The type as ALL_TAB_COLUMNS describes it, spelled so that [`parse`] reads it back.
pub fn declared_from_catalog(
    data_type: &str,
    data_length: Option<u32>,
    precision: Option<u32>,
    scale: Option<i32>,
    char_length: Option<u32>,
) -> String {
    let t = data_type.trim();
    match t {
        "NUMBER" => match (precision, scale) {
            (None, None) => "NUMBER".into(),
            (None, Some(s)) => format!("NUMBER(*,{s})"),
            (Some(p), None) => format!("NUMBER({p})"),
            (Some(p), Some(s)) => format!("NUMBER({p},{s})"),
        },
        "FLOAT" => match precision {
            Some(p) => format!("FLOAT({p})"),
            None => "FLOAT".into(),
        },
        "CHAR" | "NCHAR" | "VARCHAR2" | "NVARCHAR2" | "VARCHAR" => match char_length.filter(|&n| n > 0).or(data_length)
        {
            Some(n) => format!("{t}({n})"),
            None => t.into(),
        },
        "RAW" => match data_length {
            Some(n) => format!("RAW({n})"),
            None => "RAW".into(),
        },
        // TIMESTAMP(6), TIMESTAMP(6) WITH TIME ZONE, INTERVAL ...: the catalog spells them whole.
        _ => t.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table of docs/type-mapping.md, row for row: declared type → (PostgreSQL type, fetch).
    #[test]
    fn type_map_matches_the_documented_table() {
        use FetchKind::*;
        let rows: &[(&str, &str, FetchKind)] = &[
            ("NUMBER(1)", "smallint", Integer),
            ("NUMBER(4,0)", "smallint", Integer),
            ("NUMBER(5)", "integer", Integer),
            ("NUMBER(9)", "integer", Integer),
            ("NUMBER(10)", "bigint", Integer),
            ("NUMBER(18,0)", "bigint", Integer),
            ("NUMBER(19)", "numeric(19)", Decimal),
            ("NUMBER(38)", "numeric(38)", Decimal),
            ("NUMBER(*,0)", "numeric(38)", Decimal),
            ("INTEGER", "numeric(38)", Decimal),
            ("NUMBER(12,2)", "numeric(12,2)", Decimal),
            ("NUMBER(5,-2)", "numeric(7)", Decimal),
            ("NUMBER(3,5)", "numeric(5,5)", Decimal),
            ("NUMBER", "numeric", Decimal),
            ("FLOAT(126)", "double precision", Float),
            ("FLOAT", "double precision", Float),
            ("BINARY_FLOAT", "double precision", Float),
            ("BINARY_DOUBLE", "double precision", Float),
            ("DATE", "timestamp(0)", Timestamp),
            ("TIMESTAMP(6)", "timestamp(6)", Timestamp),
            ("TIMESTAMP(9)", "timestamp(6)", Timestamp),
            ("TIMESTAMP(3)", "timestamp(3)", Timestamp),
            ("TIMESTAMP(6) WITH TIME ZONE", "timestamptz(6)", TimestampTz),
            ("TIMESTAMP WITH TIME ZONE", "timestamptz(6)", TimestampTz),
            ("TIMESTAMP(9) WITH LOCAL TIME ZONE", "timestamptz(6)", TimestampTz),
            ("CHAR(10)", "varchar(10)", Text),
            ("NCHAR(3)", "varchar(3)", Text),
            ("CHAR", "varchar(1)", Text),
            ("VARCHAR2(40)", "text", Text),
            ("VARCHAR2(40 CHAR)", "text", Text),
            ("NVARCHAR2(100)", "text", Text),
            ("CLOB", "text", Text),
            ("NCLOB", "text", Text),
            ("LONG", "text", Text),
            ("RAW(16)", "bytea", Bytes),
            ("RAW(2000)", "bytea", Bytes),
            ("LONG RAW", "bytea", Bytes),
            ("BLOB", "bytea", Bytes),
            ("ROWID", "text", Text),
            ("UROWID", "text", Text),
            ("BOOLEAN", "boolean", Bool),
        ];
        for (declared, pg, kind) in rows {
            let t = parse(declared);
            assert_eq!(t.pg_type(false).as_deref(), Ok(*pg), "{declared}");
            assert_eq!(t.fetch_kind(), Ok(*kind), "{declared}");
        }
        assert_eq!(parse("RAW(16)").pg_type(true).unwrap(), "uuid");
        assert_eq!(parse("RAW(32)").pg_type(true).unwrap(), "bytea");
    }

    #[test]
    fn unknown_types_are_errors_with_a_way_out() {
        for t in [
            "INTERVAL DAY(2) TO SECOND(6)",
            "XMLTYPE",
            "BFILE",
            "SDO_GEOMETRY",
            "MDSYS.SDO_GEOMETRY",
        ] {
            let parsed = parse(t);
            assert_eq!(parsed, OraType::Unsupported(t.to_string()));
            let why = parsed.pg_type(false).unwrap_err();
            assert!(why.contains(t) && why.contains("not supported"), "{why}");
            assert_eq!(parsed.fetch_kind().unwrap_err(), why);
        }
        assert!(parse("XMLTYPE").fetch_kind().unwrap_err().contains("XMLSERIALIZE"));
    }

    #[test]
    fn catalog_rows_spell_types_that_parse_back() {
        let d = |t, l, p, s, c| declared_from_catalog(t, l, p, s, c);
        assert_eq!(d("NUMBER", Some(22), None, None, None), "NUMBER");
        assert_eq!(d("NUMBER", Some(22), None, Some(0), None), "NUMBER(*,0)");
        assert_eq!(d("NUMBER", Some(22), Some(12), Some(2), None), "NUMBER(12,2)");
        assert_eq!(d("VARCHAR2", Some(160), None, None, Some(40)), "VARCHAR2(40)");
        assert_eq!(d("CHAR", Some(10), None, None, Some(10)), "CHAR(10)");
        assert_eq!(d("RAW", Some(16), None, None, None), "RAW(16)");
        assert_eq!(d("FLOAT", Some(22), Some(126), None, None), "FLOAT(126)");
        assert_eq!(
            d("TIMESTAMP(6) WITH TIME ZONE", Some(13), None, Some(6), None),
            "TIMESTAMP(6) WITH TIME ZONE"
        );
        for spelled in [
            "NUMBER(*,0)",
            "NUMBER(12,2)",
            "VARCHAR2(40)",
            "RAW(16)",
            "TIMESTAMP(3) WITH LOCAL TIME ZONE",
        ] {
            assert_eq!(parse(spelled).to_string(), spelled);
        }
        assert!(parse("BLOB").is_lob() && parse("LONG").is_lob() && !parse("RAW(16)").is_lob());
    }
}
