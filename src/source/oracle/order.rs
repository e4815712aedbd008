//! The order Oracle sorts key values in, reproduced on this side so that the read's strict-order
//! proof (resilient.rs) checks what Oracle did, not what UTF-8 would do. Pure.
//!
//! With NLS_SORT = BINARY, Oracle orders text by its bytes in the column's character set: the
//! database character set for CHAR/VARCHAR2, the national one for NCHAR/NVARCHAR2. The client
//! always receives UTF-8, whose byte order is code point order; that is Oracle's order only for
//! AL32UTF8 (and US7ASCII). UTF8 (CESU-8) and AL16UTF16 order supplementary characters (emoji)
//! as UTF-16 surrogates, below U+E000..U+FFFF; legacy character sets order by their own code
//! table (in WE8MSWIN1252 'Š' is 0x8A and sorts before 'é', 0xE9). ROWIDs sort by the row's
//! address, which their base-64 text does not (its alphabet is not in ASCII order).

use crate::value::Value;
use encoding_rs::Encoding;
use oracle::sql_type::OracleType;
use std::cmp::Ordering;

/// How text of one character set sorts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextOrder {
    /// By code point (AL32UTF8, US7ASCII).
    CodePoint,
    /// By UTF-16 code unit (AL16UTF16, and UTF8 which is CESU-8).
    Utf16,
    /// By the bytes of a legacy encoding.
    Legacy(&'static Encoding),
}

/// What to say about a database character set that legacy applications often filled with
/// bytes of another encoding. Oracle does not check what a client in the same character set
/// sends, so a US7ASCII database may hold Windows-1252 or other 8-bit text, and a WE8ISO8859P1
/// one Windows-1252's € Š Œ … (0x80-0x9F, control characters in ISO-8859-1). The client then
/// hands such bytes over converted, '?' or a control character, with no error to catch; only
/// reading them as RAW and decoding them with their real encoding keeps them.
pub fn charset_warning(charset: &str) -> Option<String> {
    let (set, what) = match charset.trim().to_ascii_uppercase().as_str() {
        "US7ASCII" => ("US7ASCII", "any byte above 0x7F arrives as '?'"),
        "WE8ISO8859P1" => (
            "WE8ISO8859P1",
            "Windows-1252 characters (€ Š Œ ™ ‘ ’ “ ” …, bytes 0x80-0x9F) arrive as invisible control characters",
        ),
        _ => return None,
    };
    Some(format!(
        "the database character set is {set}: Oracle keeps whatever bytes its clients sent, and legacy applications often wrote another encoding into such databases; if this one holds any, {what}, without an error. Check a sample (SELECT DUMP(col) FROM …); columns that hold other bytes are read as RAW and decoded with their real encoding: query = \"SELECT ID, UTL_RAW.CAST_TO_RAW(NAME) AS NAME FROM T\" with transform = [{{ decode = \"windows-1252\" }}] (docs/type-mapping.md)"
    ))
}

/// How one key column's values are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrder {
    /// As every source compares (numbers, dates, bytes, and text by code point).
    Plain,
    Text(TextOrder),
    RowId,
}

/// Oracle character set names and the encodings whose byte order is theirs.
const LEGACY: &[(&str, &str)] = &[
    ("WE8MSWIN1252", "windows-1252"),
    ("EE8MSWIN1250", "windows-1250"),
    ("CL8MSWIN1251", "windows-1251"),
    ("EL8MSWIN1253", "windows-1253"),
    ("TR8MSWIN1254", "windows-1254"),
    ("IW8MSWIN1255", "windows-1255"),
    ("AR8MSWIN1256", "windows-1256"),
    ("BLT8MSWIN1257", "windows-1257"),
    ("VN8MSWIN1258", "windows-1258"),
    ("TH8TISASCII", "windows-874"),
    ("WE8ISO8859P15", "iso-8859-15"),
    ("EE8ISO8859P2", "iso-8859-2"),
    ("CL8ISO8859P5", "iso-8859-5"),
    ("EL8ISO8859P7", "iso-8859-7"),
    ("CL8KOI8R", "koi8-r"),
    ("JA16SJIS", "shift_jis"),
    ("JA16SJISTILDE", "shift_jis"),
    ("JA16EUC", "euc-jp"),
    ("JA16EUCTILDE", "euc-jp"),
    ("ZHS16GBK", "gbk"),
    ("ZHS32GB18030", "gb18030"),
    ("ZHT16MSWIN950", "big5"),
    ("ZHT16HKSCS", "big5"),
    ("KO16MSWIN949", "euc-kr"),
    ("KO16KSC5601", "euc-kr"),
];

/// The order of text in the Oracle character set `name` (NLS_CHARACTERSET or
/// NLS_NCHAR_CHARACTERSET); `None` for a character set this table does not know.
pub fn text_order(name: &str) -> Option<TextOrder> {
    let name = name.trim().to_ascii_uppercase();
    match name.as_str() {
        "AL32UTF8" | "US7ASCII" => Some(TextOrder::CodePoint),
        "UTF8" | "AL16UTF16" => Some(TextOrder::Utf16),
        // ISO-8859-1 sorts as its code points (U+0000..U+00FF), which is UTF-8's order too.
        "WE8ISO8859P1" => Some(TextOrder::CodePoint),
        _ => LEGACY
            .iter()
            .find(|(oracle, _)| *oracle == name)
            .and_then(|(_, label)| Encoding::for_label(label.as_bytes()))
            .map(TextOrder::Legacy),
    }
}

/// How values of a key column of type `column` compare, given the database's (`db`) and the
/// national (`national`) character sets' orders.
pub fn key_order(column: &OracleType, db: TextOrder, national: TextOrder) -> KeyOrder {
    match column {
        OracleType::Varchar2(_) | OracleType::Char(_) | OracleType::Long => KeyOrder::Text(db),
        OracleType::NVarchar2(_) | OracleType::NChar(_) => KeyOrder::Text(national),
        OracleType::Rowid => KeyOrder::RowId,
        _ => KeyOrder::Plain,
    }
}

/// Compares two values of one key column in Oracle's order.
pub fn compare(order: KeyOrder, a: &Value, b: &Value) -> Ordering {
    match (order, a, b) {
        (KeyOrder::Text(t), Value::Text(x), Value::Text(y)) => compare_text(t, x, y),
        (KeyOrder::RowId, Value::Text(x), Value::Text(y)) => compare_rowid(x, y),
        _ => crate::value::cmp_key_value(a, b),
    }
}

fn compare_text(order: TextOrder, a: &str, b: &str) -> Ordering {
    match order {
        TextOrder::CodePoint => a.as_bytes().cmp(b.as_bytes()),
        TextOrder::Utf16 => a.encode_utf16().cmp(b.encode_utf16()),
        TextOrder::Legacy(enc) => {
            let (x, _, _) = enc.encode(a);
            let (y, _, _) = enc.encode(b);
            x.cmp(&y)
        }
    }
}

/// The value of one character of a ROWID's base-64 text (A-Z, a-z, 0-9, +, /).
fn rowid_digit(c: u8) -> u8 {
    match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        // Not a ROWID character: after every digit, so such text sorts last but consistently.
        _ => 64 + (c & 0x3f),
    }
}

/// ROWIDs in Oracle's order: data object, file, block, row, each a fixed number of base-64
/// digits, so digit by digit in value order (a logical UROWID compares the same way).
pub fn compare_rowid(a: &str, b: &str) -> Ordering {
    a.bytes().map(rowid_digit).cmp(b.bytes().map(rowid_digit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn character_sets_and_their_orders() {
        assert_eq!(text_order("AL32UTF8"), Some(TextOrder::CodePoint));
        assert_eq!(text_order("al16utf16"), Some(TextOrder::Utf16));
        assert_eq!(text_order("UTF8"), Some(TextOrder::Utf16));
        assert!(matches!(text_order("WE8MSWIN1252"), Some(TextOrder::Legacy(e)) if e.name() == "windows-1252"));
        assert!(matches!(text_order("JA16SJIS"), Some(TextOrder::Legacy(e)) if e.name() == "Shift_JIS"));
        assert!(matches!(text_order("CL8MSWIN1251"), Some(TextOrder::Legacy(e)) if e.name() == "windows-1251"));
        assert_eq!(text_order("XX8UNKNOWN"), None);
    }

    #[test]
    fn text_keys_compare_as_their_character_set_sorts_them() {
        let utf8 = KeyOrder::Text(TextOrder::CodePoint);
        let utf16 = KeyOrder::Text(TextOrder::Utf16);
        let cp1252 = KeyOrder::Text(text_order("WE8MSWIN1252").unwrap());
        // An emoji (a surrogate pair in UTF-16) against U+FF21 (a fullwidth A).
        let (emoji, fullwidth) = (text("😀"), text("Ａ"));
        assert_eq!(compare(utf8, &emoji, &fullwidth), Ordering::Greater);
        assert_eq!(compare(utf16, &emoji, &fullwidth), Ordering::Less);
        // Š is 0x8A and é 0xE9 in windows-1252; by code point Š (U+0160) comes after é (U+00E9).
        assert_eq!(compare(utf8, &text("Š"), &text("é")), Ordering::Greater);
        assert_eq!(compare(cp1252, &text("Š"), &text("é")), Ordering::Less);
        // € is 0x80 in windows-1252: above every ASCII letter, below é.
        assert_eq!(compare(cp1252, &text("€"), &text("z")), Ordering::Greater);
        assert_eq!(compare(cp1252, &text("€"), &text("é")), Ordering::Less);
        // Cyrillic in windows-1251: ё is 0xB8, below а (0xE0); by code point ё (U+0451) is above.
        let cp1251 = KeyOrder::Text(text_order("CL8MSWIN1251").unwrap());
        assert_eq!(compare(cp1251, &text("ё"), &text("а")), Ordering::Less);
        assert_eq!(compare(utf8, &text("ё"), &text("а")), Ordering::Greater);
        // Prefixes first, equal is equal, and other kinds fall back to the plain order.
        assert_eq!(compare(cp1252, &text("ab"), &text("abc")), Ordering::Less);
        assert_eq!(compare(utf16, &text("x😀"), &text("x😀")), Ordering::Equal);
        assert_eq!(compare(cp1252, &Value::Int(2), &Value::Int(10)), Ordering::Less);
    }

    #[test]
    fn rowids_compare_by_address_not_by_ascii() {
        // Same object and file, block …AAB vs …AAa: 'a' (26) is above 'B' (1), and ASCII agrees;
        // but '0' (52) is above 'z' (51) while ASCII puts '0' first, and '+' (62) is above '9'.
        let a = "AAAR3sAAEAAAACXAAz";
        let b = "AAAR3sAAEAAAACXAA0";
        assert_eq!(compare_rowid(a, b), Ordering::Less);
        assert_eq!(a.cmp(b), Ordering::Greater, "ASCII disagrees");
        assert_eq!(
            compare_rowid("AAAR3sAAEAAAACXAA9", "AAAR3sAAEAAAACXAA+"),
            Ordering::Less
        );
        assert_eq!(
            compare_rowid("AAAR3sAAEAAAACXAA+", "AAAR3sAAEAAAACXAA/"),
            Ordering::Less
        );
        assert_eq!(compare_rowid(a, a), Ordering::Equal);
        assert_eq!(compare(KeyOrder::RowId, &text(a), &text(b)), Ordering::Less);
    }

    #[test]
    fn databases_that_legacy_bytes_hide_in_are_warned_about() {
        let w = charset_warning("US7ASCII").unwrap();
        assert!(
            w.contains("'?'") && w.contains("UTL_RAW.CAST_TO_RAW") && w.contains("decode"),
            "{w}"
        );
        assert!(charset_warning("we8iso8859p1").unwrap().contains("0x80-0x9F"));
        assert_eq!(charset_warning("AL32UTF8"), None);
        assert_eq!(charset_warning("WE8MSWIN1252"), None);
    }

    #[test]
    fn key_columns_get_their_character_sets_order() {
        let db = text_order("WE8MSWIN1252").unwrap();
        let national = TextOrder::Utf16;
        assert_eq!(key_order(&OracleType::Varchar2(10), db, national), KeyOrder::Text(db));
        assert_eq!(key_order(&OracleType::Char(10), db, national), KeyOrder::Text(db));
        assert_eq!(
            key_order(&OracleType::NVarchar2(10), db, national),
            KeyOrder::Text(national)
        );
        assert_eq!(key_order(&OracleType::Rowid, db, national), KeyOrder::RowId);
        assert_eq!(key_order(&OracleType::Number(10, 0), db, national), KeyOrder::Plain);
    }
}
