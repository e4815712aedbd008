//! Watermarks as exact text: comparing them, moving them back by the overlap window, and the
//! lag between two of them. Never through a float or a millisecond clock: a watermark that loses
//! digits re-reads or skips rows forever.

use crate::source::WmKind;
use chrono::{Duration, NaiveDate, NaiveDateTime};
use std::cmp::Ordering;

/// A date/time text split into its whole-second part and its fraction (`.123456789`, kept as
/// written), with the separator it used.
struct Parts<'a> {
    at: NaiveDateTime,
    /// Only a date was written.
    date_only: bool,
    t_separator: bool,
    fraction: &'a str,
}

fn parse(text: &str) -> Option<Parts<'_>> {
    let t = text.trim();
    if t.len() == 10 {
        let d = NaiveDate::parse_from_str(t, "%Y-%m-%d").ok()?;
        return Some(Parts {
            at: d.and_hms_opt(0, 0, 0)?,
            date_only: true,
            t_separator: false,
            fraction: "",
        });
    }
    if t.len() < 19 {
        return None;
    }
    let (whole, fraction) = t.split_at(19);
    if !(fraction.is_empty() || (fraction.starts_with('.') && fraction[1..].bytes().all(|b| b.is_ascii_digit()))) {
        return None;
    }
    let t_separator = whole.as_bytes()[10] == b'T';
    let fmt = if t_separator {
        "%Y-%m-%dT%H:%M:%S"
    } else {
        "%Y-%m-%d %H:%M:%S"
    };
    Some(Parts {
        at: NaiveDateTime::parse_from_str(whole, fmt).ok()?,
        date_only: false,
        t_separator,
        fraction,
    })
}

fn format(p: &Parts<'_>, at: NaiveDateTime) -> String {
    if p.date_only && at.time() == chrono::NaiveTime::MIN {
        return at.format("%Y-%m-%d").to_string();
    }
    let fmt = if p.t_separator {
        "%Y-%m-%dT%H:%M:%S"
    } else {
        "%Y-%m-%d %H:%M:%S"
    };
    format!("{}{}", at.format(fmt), p.fraction)
}

/// `text` moved back by `overlap` (seconds for dates and times, units for numbers), written the
/// same way. A value that cannot be read as its kind is returned as is.
pub fn minus(text: &str, kind: WmKind, overlap: u64) -> String {
    if overlap == 0 {
        return text.to_string();
    }
    match kind {
        WmKind::Number => {
            let (int, frac) = text.split_once('.').map_or((text, None), |(i, f)| (i, Some(f)));
            match int.parse::<i128>() {
                // A fraction stays as written; below zero it would change meaning, so such a
                // value is moved back by one more unit and loses the fraction (reading a little
                // more is harmless; reading less is not).
                Ok(i) => match frac {
                    None => (i - overlap as i128).to_string(),
                    Some(f) if i - overlap as i128 >= 0 && i >= 0 => format!("{}.{f}", i - overlap as i128),
                    Some(_) => (i - overlap as i128 - 1).to_string(),
                },
                Err(_) => text.to_string(),
            }
        }
        WmKind::Date | WmKind::Timestamp | WmKind::Text => match parse(text) {
            Some(p) => {
                let at = p.at - Duration::seconds(overlap.min(i64::MAX as u64) as i64);
                let mut p2 = p;
                if p2.date_only {
                    // Moving a date back by seconds gives a time: write it as a timestamp.
                    p2.date_only = at.time() == chrono::NaiveTime::MIN;
                }
                format(&p2, at)
            }
            None => text.to_string(),
        },
    }
}

/// Orders two watermarks of one kind the way the source compares them.
pub fn compare(a: &str, b: &str, kind: WmKind) -> Ordering {
    match kind {
        WmKind::Number => match (a.parse::<f64>(), b.parse::<f64>()) {
            // Equal as floats can still differ in the last of 38 digits: fall back to the text.
            (Ok(x), Ok(y)) if x != y => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
            _ => number_text_cmp(a, b),
        },
        _ => a.cmp(b),
    }
}

/// Compares two decimal numbers written as text, exactly.
fn number_text_cmp(a: &str, b: &str) -> Ordering {
    let neg = |s: &str| s.starts_with('-');
    match (neg(a), neg(b)) {
        (true, false) => return Ordering::Less,
        (false, true) => return Ordering::Greater,
        _ => {}
    }
    let split = |s: &str| {
        let s = s.trim_start_matches(['-', '+']);
        let (i, f) = s.split_once('.').unwrap_or((s, ""));
        (
            i.trim_start_matches('0').to_string(),
            f.trim_end_matches('0').to_string(),
        )
    };
    let ((ai, af), (bi, bf)) = (split(a), split(b));
    let abs = ai.len().cmp(&bi.len()).then(ai.cmp(&bi)).then(af.cmp(&bf));
    if neg(a) { abs.reverse() } else { abs }
}

/// How far `newest` is ahead of `stored`: seconds for dates and times, units for numbers.
pub fn lag(newest: &str, stored: &str, kind: WmKind) -> Option<f64> {
    match kind {
        WmKind::Number => Some(newest.parse::<f64>().ok()? - stored.parse::<f64>().ok()?),
        _ => {
            let (n, s) = (parse(newest)?, parse(stored)?);
            let secs = |p: &Parts<'_>| {
                p.at.and_utc().timestamp() as f64 + format!("0{}", p.fraction).parse::<f64>().unwrap_or(0.0)
            };
            Some(secs(&n) - secs(&s))
        }
    }
}

/// Parses `--every`: `90`, `90s`, `5m`, `1h`, `1d`.
pub fn parse_every(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{text}' is not an interval: write 30s, 5m, 1h or 1d"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("'{text}' is not an interval: write 30s, 5m, 1h or 1d")),
    };
    if secs == 0 {
        return Err("the interval must be at least one second".into());
    }
    Ok(std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_move_back_keeping_every_fractional_digit() {
        assert_eq!(
            minus("2026-01-01 00:00:03.123456789", WmKind::Timestamp, 5),
            "2025-12-31 23:59:58.123456789"
        );
        assert_eq!(minus("2026-03-01T10:00:00", WmKind::Text, 60), "2026-03-01T09:59:00");
        assert_eq!(minus("2026-03-01 10:00:00.5", WmKind::Text, 0), "2026-03-01 10:00:00.5");
        assert_eq!(minus("2026-03-01", WmKind::Date, 5), "2026-02-28 23:59:55");
        assert_eq!(minus("2026-03-01", WmKind::Date, 86_400), "2026-02-28");
        // Not a date: left alone rather than guessed at.
        assert_eq!(minus("v17", WmKind::Text, 5), "v17");
    }

    #[test]
    fn numbers_move_back_exactly_even_with_38_digits() {
        assert_eq!(
            minus("99999999999999999999999999999999999999", WmKind::Number, 5),
            "99999999999999999999999999999999999994"
        );
        assert_eq!(minus("12", WmKind::Number, 5), "7");
        assert_eq!(minus("12.25", WmKind::Number, 5), "7.25");
        assert_eq!(minus("3.5", WmKind::Number, 5), "-3");
    }

    #[test]
    fn comparisons_are_exact() {
        use Ordering::*;
        assert_eq!(
            compare(
                "12345678901234567890123456789012345679",
                "12345678901234567890123456789012345678",
                WmKind::Number
            ),
            Greater
        );
        assert_eq!(compare("10", "9", WmKind::Number), Greater);
        assert_eq!(compare("-10", "-9", WmKind::Number), Less);
        assert_eq!(compare("1.50", "1.5", WmKind::Number), Equal);
        assert_eq!(
            compare("2026-01-01 00:00:00.000001", "2026-01-01 00:00:00", WmKind::Text),
            Greater
        );
    }

    #[test]
    fn lag_in_seconds_or_units() {
        assert_eq!(
            lag("2026-01-01 00:01:00.5", "2026-01-01 00:00:00", WmKind::Text),
            Some(60.5)
        );
        assert_eq!(lag("110", "100", WmKind::Number), Some(10.0));
        assert_eq!(lag("x", "y", WmKind::Text), None);
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_every("5m").unwrap().as_secs(), 300);
        assert_eq!(parse_every("90").unwrap().as_secs(), 90);
        assert_eq!(parse_every("1h").unwrap().as_secs(), 3600);
        assert!(parse_every("0s").is_err());
        assert!(parse_every("5 minutes").is_err());
    }
}
