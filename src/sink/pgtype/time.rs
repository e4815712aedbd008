//! Dates and timestamps as PostgreSQL holds them: its epoch and first day, microseconds of a
//! `timestamp(p)`, and text read as ISO dates and timestamps (the common shapes without a format
//! string, everything else as chrono reads it).

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, Timelike};

pub(super) fn pg_epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .expect("valid")
        .and_time(NaiveTime::MIN)
}

/// The first day PostgreSQL's date and timestamp types hold (Julian day 0, 4714-11-24 BC).
pub(super) fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(-4713, 11, 24).expect("valid")
}

/// Microseconds since 2000-01-01 for a `timestamp(p)` column (`ty` names it). A value with more
/// fractional digits than `p` (or a fraction of a microsecond, or a leap second) is refused:
/// PostgreSQL would round it.
pub(super) fn micros_since_epoch(t: NaiveDateTime, p: u32, ty: &str) -> Result<i64, String> {
    let nanos = t.nanosecond();
    if nanos >= 1_000_000_000 {
        return Err(format!("{t} is a leap second, which {ty} cannot hold"));
    }
    let unit = 10u32.pow(9 - p.min(6));
    if !nanos.is_multiple_of(unit) {
        let digits = format!("{nanos:09}");
        let shown = digits.trim_end_matches('0');
        return Err(format!(
            "{t} has fractional seconds .{shown} but {ty}({p}) keeps {p} digit(s); PostgreSQL would round it"
        ));
    }
    if t.date() < first_day() {
        return Err(format!("{t} is before 4714-11-24 BC, the first day {ty} holds"));
    }
    let whole = t.with_nanosecond(0).expect("0 is valid");
    let secs = whole.signed_duration_since(pg_epoch()).num_seconds();
    let micros = (nanos / 1000) as i64;
    secs.checked_mul(1_000_000)
        .and_then(|s| s.checked_add(micros))
        .ok_or_else(|| format!("{t} is out of range for {ty}"))
}

/// `YYYY-MM-DD`, read without a format string: the common shape, on the hot path of every
/// date and timestamp column loaded from text. `None` for anything else (then chrono decides).
fn fast_iso_date(b: &[u8]) -> Option<NaiveDate> {
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    NaiveDate::from_ymd_opt(digits(&b[0..4])? as i32, digits(&b[5..7])?, digits(&b[8..10])?)
}

/// `YYYY-MM-DD`, `YYYY-MM-DD HH:MM`, `YYYY-MM-DD[ T]HH:MM:SS` and the same with `.` and 1 to 9 fraction
/// digits, read without a format string; `None` for anything else, including what chrono would
/// still accept (leap seconds, longer fractions): the caller falls back to chrono for those, so
/// what is accepted and how it is read are chrono's, only faster (parse_iso_timestamp's test).
fn fast_iso_timestamp(b: &[u8]) -> Option<NaiveDateTime> {
    let date = fast_iso_date(b)?;
    if b.len() == 10 {
        return Some(date.and_time(NaiveTime::MIN));
    }
    let sep = b[10];
    if b.len() < 16 || b[13] != b':' {
        return None;
    }
    let (h, mi) = (digits(&b[11..13])?, digits(&b[14..16])?);
    let (sec, nano) = match b.len() {
        16 if sep == b' ' => (0, 0),
        19.. if (sep == b' ' || sep == b'T') && b[16] == b':' => {
            let sec = digits(&b[17..19])?;
            let nano = match &b[19..] {
                [] => 0,
                [b'.', frac @ ..] if (1..=9).contains(&frac.len()) => digits(frac)? * 10u32.pow(9 - frac.len() as u32),
                _ => return None,
            };
            (sec, nano)
        }
        _ => return None,
    };
    if sec > 59 {
        return None;
    }
    Some(date.and_time(NaiveTime::from_hms_nano_opt(h, mi, sec, nano)?))
}

/// The value of a run of ASCII digits; `None` if any byte is not one.
fn digits(b: &[u8]) -> Option<u32> {
    b.iter()
        .try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
}

pub(super) fn parse_iso_date(s: &str) -> Option<NaiveDate> {
    match s.len() {
        10 => fast_iso_date(s.as_bytes()),
        _ => None,
    }
    .or_else(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
}

pub(super) fn parse_iso_timestamp(s: &str) -> Option<NaiveDateTime> {
    if let Some(t) = fast_iso_timestamp(s.as_bytes()) {
        return Some(t);
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t);
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .map(|d| d.and_time(NaiveTime::MIN))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What chrono alone made of a text timestamp before the fast path.
    fn chrono_timestamp(s: &str) -> Option<NaiveDateTime> {
        ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
            .or_else(|| {
                NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .ok()
                    .map(|d| d.and_time(NaiveTime::MIN))
            })
    }

    #[test]
    fn text_dates_and_timestamps_read_as_chrono_reads_them() {
        let cases = [
            "2024-02-29 23:59:59",
            "2023-02-29 00:00:00",
            "2024-02-29",
            "2024-02-30",
            "2024-13-01",
            "2024-01-01 24:00:00",
            "2024-01-01 23:60:00",
            "2024-01-01 23:59:60",
            "2024-01-01 23:59:60.5",
            "2024-01-01T10:30:00",
            "2024-01-01T10:30",
            "2024-01-01 10:30",
            "2024-01-01 10:30:5",
            "2024-01-01 10:30:05.",
            "2024-01-01 10:30:05.1",
            "2024-01-01 10:30:05.123456",
            "2024-01-01 10:30:05.123456789",
            "2024-01-01 10:30:05.1234567891",
            "0000-01-01 00:00:00",
            "9999-12-31 23:59:59.999999",
            "2024-1-01 10:30:00",
            "2024-01-01  10:30:00",
            "2024-01-01 10:30:00Z",
            "２０２４-01-01",
            "2024-01-01 10:30:00.12x",
            "2024/01/01 10:30:00",
            "+2024-01-01",
            "",
            "2024",
            "2024-01-01 1:30:00",
            "2024-01-0110:30:00",
            "20240-01-01",
        ];
        for s in cases {
            assert_eq!(parse_iso_timestamp(s), chrono_timestamp(s), "timestamp {s:?}");
            assert_eq!(
                parse_iso_date(s),
                NaiveDate::parse_from_str(s, "%Y-%m-%d").ok(),
                "date {s:?}"
            );
        }
        // The fast path itself read the common shapes (not chrono behind it).
        assert!(fast_iso_timestamp(b"2024-02-29 23:59:59.5").is_some());
        assert!(fast_iso_timestamp(b"2024-02-29T23:59:59").is_some());
        assert!(fast_iso_timestamp(b"2024-02-29").is_some());
    }
}
