//! Arbitrary input for the property tests (test builds only): a seeded xorshift generator, and
//! values and text of every kind (any Unicode plane, combining marks, NUL, bytes, boundaries).
//! The tests that use it live beside the code they test (config, transform, mask, pgtype); run
//! them longer with `MIGRATE_FUZZ_ITERATIONS=200000 cargo test --lib property_tests -- --nocapture`.

use crate::value::{Decimal, Value};

pub(crate) struct Rng(pub(crate) u64);
impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub(crate) fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

pub(crate) fn iterations() -> usize {
    std::env::var("MIGRATE_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

pub(crate) fn seed() -> u64 {
    let s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("fuzz seed {s}");
    s
}

pub(crate) fn arbitrary_value(rng: &mut Rng) -> Value {
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
            Decimal::parse(rng.pick(&["0", "-0.5", "123456789012345678901234567890.123", "1e300", "-1e-300"])).unwrap(),
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
pub(crate) fn arbitrary_text(rng: &mut Rng) -> String {
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
