//! Property tests without a fuzzing harness: a seeded generator throws arbitrary and mutated
//! input at the mapping loader, the plan compiler and every transform, and the only acceptable
//! outcomes are a value, a reject reason or a clear error: never a panic. Run longer with
//! `MIGRATE_FUZZ_ITERATIONS=200000 cargo test --lib fuzz -- --nocapture`.

#[cfg(test)]
mod tests {
    use crate::config::parse_mapping;
    use crate::transform::Step;
    use crate::value::{Decimal, Value};
    use std::path::Path;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
        fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
            xs[self.below(xs.len())]
        }
    }

    fn iterations() -> usize {
        std::env::var("MIGRATE_FUZZ_ITERATIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3000)
    }

    fn seed() -> u64 {
        let s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        eprintln!("fuzz seed {s}");
        s
    }

    const VALID: &str = r#"source = "AB_CUSTOMER"
target = "app.customers"
key = ["CUSTOMER_ID"]
depends_on = ["carrier"]
where = "STATUS <> 'D'"
on_conflict = "update"
batch_size = 500

[[fields]]
from = "CUSTOMER_ID"
to = "id"

[[fields]]
from = "CREATED"
to = "created_at"
transform = ["trim", { date = "DD-MON-RR" }, { decimal = 2 }, { map = { values = { A = "x" }, default = 1 } }]
default = "2000-01-01"

[[fields]]
to = "source_system"
value = "ABIS"
"#;

    const TOKENS: &[&str] = &[
        "[",
        "]",
        "{",
        "}",
        "=",
        "\"",
        "'",
        "\n",
        "[[fields]]",
        "transform",
        "from",
        "to",
        "value",
        "key",
        "on_conflict",
        "\"skip\"",
        "1e999",
        "-9223372036854775809",
        "{ date = \"\" }",
        "{ truncate = -1 }",
        "{ replace = { pattern = \"(\", with = \"\" } }",
        "{ bool = { true = [], false = [] } }",
        "\u{0}",
        "é",
        "😀",
        "\\u0000",
        "'''",
        "\"\"\"",
        "#",
        ",",
        ".",
        "inf",
        "nan",
        "true",
        "[[]]",
    ];

    #[test]
    fn the_mapping_loader_never_panics() {
        let mut rng = Rng(seed());
        let path = Path::new("mappings/fuzz.toml");
        for _ in 0..iterations() {
            let mut text = VALID.to_string();
            for _ in 0..=rng.below(4) {
                let at = rng.below(text.len() + 1);
                let at = (0..=at).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
                match rng.below(3) {
                    0 => text.insert_str(at, rng.pick(TOKENS)),
                    1 => {
                        let end = (at + rng.below(12)).min(text.len());
                        let end = (end..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap();
                        text.replace_range(at..end, "");
                    }
                    _ => text.truncate(at),
                }
            }
            if let Ok(file) = parse_mapping(path, &text) {
                let _ = crate::plan::compile(&[file]);
            }
        }
    }

    fn arbitrary_value(rng: &mut Rng) -> Value {
        let texts = [
            "",
            " ",
            "  Acme  ",
            "31-FEB-19",
            "01-JAN-00",
            "29-feb-2024",
            "12/31/1999",
            "(555) 010-1234",
            "+44 20 7946 0958",
            "555",
            "a@b",
            " MiXeD@Example.COM ",
            "Y",
            "n",
            "1",
            "0",
            "yes",
            "1e400",
            "-0.0",
            "99999999999999999999999999999999999999.5",
            "NaN",
            "inf",
            "\u{0}",
            "é\u{301}",
            "😀😀",
            "ß",
            "İ",
            "2024-13-45 25:61:61",
            "12:00 PM",
            "DD-MON-YY",
            "\n\t",
            "-9223372036854775808",
            "18446744073709551616",
        ];
        match rng.below(9) {
            0 => Value::Null,
            1 => Value::Int(match rng.below(4) {
                0 => i64::MIN,
                1 => i64::MAX,
                2 => 0,
                _ => rng.next() as i64,
            }),
            2 => Value::Float(match rng.below(5) {
                0 => f64::NAN,
                1 => f64::INFINITY,
                2 => -0.0,
                3 => f64::MAX,
                _ => f64::from_bits(rng.next()),
            }),
            3 => Value::Decimal(
                Decimal::parse(rng.pick(&["0", "-0.5", "123456789012345678901234567890.123", "1e300", "-1e-300"]))
                    .unwrap(),
            ),
            4 => Value::Bool(rng.below(2) == 0),
            5 => Value::Bytes((0..rng.below(8)).map(|_| rng.next() as u8).collect()),
            6 => {
                let n = rng.below(40);
                Value::Text(
                    (0..n)
                        .map(|_| char::from_u32((rng.next() % 0x11000) as u32).unwrap_or('?'))
                        .collect(),
                )
            }
            _ => Value::Text(rng.pick(&texts).to_string()),
        }
    }

    /// Text of arbitrary characters (any plane, combining marks, NUL) or, rarely, the raw bytes
    /// of a string cut anywhere.
    fn arbitrary_text(rng: &mut Rng) -> String {
        let pieces = [
            "\"", "é", "€", "日本", "😀", "\u{301}", "\0", "DD", "MON", "YYYY", "-", " ", "1", "'",
        ];
        (0..rng.below(12))
            .map(|_| match rng.below(3) {
                0 => char::from_u32((rng.next() % 0x11000) as u32).unwrap_or('?').to_string(),
                _ => rng.pick(&pieces).to_string(),
            })
            .collect()
    }

    #[test]
    fn every_encoder_returns_bytes_or_a_reason() {
        use crate::sink::pgtype::PgType;
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

    #[test]
    fn date_masks_never_panic_on_any_text() {
        use crate::transform::mask::Mask;
        let parts = [
            "DD",
            "MON",
            "YYYY",
            "RR",
            "HH24",
            ":",
            "MI",
            "SS",
            ".FF3",
            " ",
            "-",
            "AM",
            "\"é\"",
            "\"日本\"",
            "\"T\"",
            "\"😀x\"",
        ];
        let mut rng = Rng(seed());
        for _ in 0..iterations() * 10 {
            let mask: String = (0..1 + rng.below(6)).map(|_| rng.pick(&parts)).collect();
            let Ok(m) = Mask::compile(&mask) else { continue };
            let input = match rng.below(2) {
                0 => arbitrary_text(&mut rng),
                // Something shaped like the mask, with its literals replaced by other text.
                _ => mask
                    .replace("DD", "01")
                    .replace("MON", "JAN")
                    .replace("YYYY", "2024")
                    .replace('"', "")
                    .replace("é", rng.pick(&["é", "e", "日", "😀", ""])),
            };
            let _ = m.parse(&input);
        }
        // The instance that panicked: a quoted literal meeting a multi-byte character.
        let m = Mask::compile("YYYY\"é\"MM").unwrap();
        assert!(m.parse("2024日01").is_err());
        assert!(m.parse("2024é01").is_ok());
    }

    #[test]
    fn every_transform_returns_a_value_or_a_reason() {
        let steps = [
            "\"trim\"",
            "\"rtrim\"",
            "\"upper\"",
            "\"lower\"",
            "\"null_if_empty\"",
            "\"phone\"",
            "\"email\"",
            "\"integer\"",
            "\"bool\"",
            "\"date\"",
            "\"timestamp\"",
            "{ date = \"DD-MON-RR\" }",
            "{ date = \"YYYY-MM-DD\" }",
            "{ timestamp = \"DD-MON-YYYY HH12:MI:SS AM\" }",
            "{ timestamp = \"YYYY-MM-DD HH24:MI:SS.FF9\" }",
            "{ decimal = 0 }",
            "{ decimal = 2 }",
            "{ decimal = 30 }",
            "{ bool = { true = [\"Y\"], false = [\"N\"] } }",
            "{ map = { values = { A = \"x\", \"\" = 1 } } }",
            "{ map = { values = { A = \"x\" }, default = 2 } }",
            "{ truncate = 0 }",
            "{ truncate = 3 }",
            "{ replace = { pattern = '\\s+', with = \" \" } }",
            "{ replace = { pattern = '^(.)(.*)$', with = \"$2$1\" } }",
        ];
        let compiled: Vec<Step> = steps
            .iter()
            .map(|s| {
                let t: toml::Table = toml::from_str(&format!("s = {s}")).unwrap();
                Step::compile(&t["s"]).unwrap_or_else(|e| panic!("{s}: {e}"))
            })
            .collect();
        let mut rng = Rng(seed());
        for _ in 0..iterations() * 10 {
            let step = &compiled[rng.below(compiled.len())];
            let v = arbitrary_value(&mut rng);
            let _ = step.apply(v);
        }
        // Chains applied in place give what the owned application gives.
        for _ in 0..iterations() * 3 {
            let chain = crate::transform::Chain(
                (0..1 + rng.below(3))
                    .map(|_| compiled[rng.below(compiled.len())].clone())
                    .collect(),
            );
            let v = arbitrary_value(&mut rng);
            // Compared as printed: NaN is not equal to itself.
            assert_eq!(
                format!("{:?}", chain.apply_ref(&v).map(std::borrow::Cow::into_owned)),
                format!("{:?}", chain.apply(v.clone())),
                "{v:?}"
            );
        }
    }
}
