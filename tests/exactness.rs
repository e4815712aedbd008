//! Values arrive exactly: NUMBER-sized decimals, awkward text, bytes, NULL vs empty string,
//! dates before 1900 and after 2038.

use crate::support::*;

#[test]
fn values_round_trip_byte_for_byte() {
    let db = TestDb::new();
    let p = Project::new();
    p.sqlite(
        r#"CREATE TABLE EXACT (ID INTEGER PRIMARY KEY, BIG TEXT, DEC TEXT, TXT TEXT, BIN BLOB, D TEXT, TS TEXT, F REAL, I INTEGER);
        INSERT INTO EXACT VALUES
          (1, '99999999999999999999999999999999999999', '123456789012345678901234567890.123456789', 'tab	new
line "dq" ''sq'' back\slash ünïcödé 日本 🦀', X'00FF7F800A0D5C', '1899-12-31', '1850-01-01 00:00:00', 0.1, 9223372036854775807),
          (2, '-12345678901234567890123456789012345678', '-0.000000000000000000000000000001', '', X'', '2100-02-28', '2040-06-30 23:59:59.123456', -1234.5, -9223372036854775808),
          (3, NULL, '0', NULL, NULL, '0001-01-01', '2038-01-19 03:14:08', NULL, 0),
          (4, '0', '100000000000000000000', '  trailing  ', X'5C78', '9999-12-31', '1900-02-28 12:00:00.000001', 3.25, NULL);"#,
    );
    db.exec(
        "CREATE TABLE exact (id bigint PRIMARY KEY, big numeric(38,0), dec numeric, txt text, bin bytea, d date, ts timestamp, f double precision, i bigint)",
    );
    p.mapping(
        "exact",
        r#"source = "EXACT"
target = "exact"
[[fields]]
from = "ID"
to = "id"
[[fields]]
from = "BIG"
to = "big"
[[fields]]
from = "DEC"
to = "dec"
[[fields]]
from = "TXT"
to = "txt"
[[fields]]
from = "BIN"
to = "bin"
[[fields]]
from = "D"
to = "d"
[[fields]]
from = "TS"
to = "ts"
[[fields]]
from = "F"
to = "f"
[[fields]]
from = "I"
to = "i"
"#,
    );
    p.run(&db, &["--yes", "--validate"]).expect(0);
    let rows = db.rows("SELECT id, big::text, dec::text, txt, encode(bin, 'hex') AS bin, d::text, ts::text, f, i::text FROM exact ORDER BY id");
    let want = [
        serde_json::json!({"id":1,"big":"99999999999999999999999999999999999999","dec":"123456789012345678901234567890.123456789",
            "txt":"tab\tnew\nline \"dq\" 'sq' back\\slash ünïcödé 日本 🦀","bin":"00ff7f800a0d5c","d":"1899-12-31","ts":"1850-01-01 00:00:00","f":0.1,"i":"9223372036854775807"}),
        serde_json::json!({"id":2,"big":"-12345678901234567890123456789012345678","dec":"-0.000000000000000000000000000001",
            "txt":"","bin":"","d":"2100-02-28","ts":"2040-06-30 23:59:59.123456","f":-1234.5,"i":"-9223372036854775808"}),
        serde_json::json!({"id":3,"big":null,"dec":"0","txt":null,"bin":null,"d":"0001-01-01","ts":"2038-01-19 03:14:08","f":null,"i":"0"}),
        serde_json::json!({"id":4,"big":"0","dec":"100000000000000000000","txt":"  trailing  ","bin":"5c78","d":"9999-12-31","ts":"1900-02-28 12:00:00.000001","f":3.25,"i":null}),
    ];
    assert_eq!(rows, want);
    // Empty string and NULL stay distinct when no transform asks otherwise.
    assert_eq!(db.scalar("SELECT count(*) FROM exact WHERE txt = ''"), 1);
    assert_eq!(db.scalar("SELECT count(*) FROM exact WHERE txt IS NULL"), 1);
}
