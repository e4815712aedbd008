//! Oracle datetime format masks (`DD-MON-YY`, `YYYY-MM-DD HH24:MI:SS.FF6`, …), parsed the way
//! `TO_DATE`/`TO_TIMESTAMP` read text: case-insensitive month names, 1- or 2-digit fields,
//! any run of punctuation matching any separator, `YY` in the current century and `RR` in the
//! 50-year window around it.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Year4,
    Year2,
    RoundYear2,
    Month,
    MonthAbbr,
    MonthName,
    Day,
    DayName,
    Hour12,
    Hour24,
    Minute,
    Second,
    Fraction(u8),
    Meridian,
    Sep,
    Literal(String),
}

/// A compiled mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    text: String,
    toks: Vec<Tok>,
}

const MONTHS: [&str; 12] = [
    "JANUARY",
    "FEBRUARY",
    "MARCH",
    "APRIL",
    "MAY",
    "JUNE",
    "JULY",
    "AUGUST",
    "SEPTEMBER",
    "OCTOBER",
    "NOVEMBER",
    "DECEMBER",
];

impl Mask {
    pub fn compile(mask: &str) -> Result<Mask, String> {
        let upper = mask.to_ascii_uppercase();
        let b = upper.as_bytes();
        let mut toks = Vec::new();
        let mut i = 0;
        // Longest element names first.
        let names: &[(&str, Tok)] = &[
            ("YYYY", Tok::Year4),
            ("RRRR", Tok::Year4),
            ("YY", Tok::Year2),
            ("RR", Tok::RoundYear2),
            ("MONTH", Tok::MonthName),
            ("MON", Tok::MonthAbbr),
            ("MM", Tok::Month),
            ("MI", Tok::Minute),
            ("DAY", Tok::DayName),
            ("DY", Tok::DayName),
            ("DD", Tok::Day),
            ("HH24", Tok::Hour24),
            ("HH12", Tok::Hour12),
            ("HH", Tok::Hour12),
            ("SS", Tok::Second),
            ("AM", Tok::Meridian),
            ("PM", Tok::Meridian),
            ("A.M.", Tok::Meridian),
            ("P.M.", Tok::Meridian),
        ];
        'outer: while i < b.len() {
            let c = b[i];
            if c == b'"' {
                let end = upper[i + 1..]
                    .find('"')
                    .ok_or_else(|| format!("unterminated quoted text in format mask '{mask}'"))?;
                toks.push(Tok::Literal(upper[i + 1..i + 1 + end].to_string()));
                i += end + 2;
                continue;
            }
            if upper[i..].starts_with("FF") {
                let digit = b.get(i + 2).filter(|d| (b'1'..=b'9').contains(d));
                toks.push(Tok::Fraction(digit.map(|d| d - b'0').unwrap_or(9)));
                i += if digit.is_some() { 3 } else { 2 };
                continue;
            }
            for (name, tok) in names {
                if upper[i..].starts_with(name) {
                    toks.push(tok.clone());
                    i += name.len();
                    continue 'outer;
                }
            }
            if c.is_ascii_alphanumeric() {
                let rest: String = upper[i..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
                return Err(format!("unknown element '{rest}' in format mask '{mask}'"));
            }
            if toks.last() != Some(&Tok::Sep) {
                toks.push(Tok::Sep);
            }
            i += upper[i..].chars().next().map(char::len_utf8).unwrap_or(1);
        }
        if !toks.iter().any(|t| {
            matches!(
                t,
                Tok::Year4 | Tok::Year2 | Tok::RoundYear2 | Tok::Hour24 | Tok::Hour12 | Tok::Day
            )
        }) {
            return Err(format!("format mask '{mask}' has no date or time elements"));
        }
        Ok(Mask {
            text: mask.to_string(),
            toks,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Parses `input` into a timestamp; a mask without time elements gives midnight.
    pub fn parse(&self, input: &str) -> Result<NaiveDateTime, String> {
        let this_year = chrono::Utc::now().year();
        self.parse_with_year(input, this_year)
    }

    fn parse_with_year(&self, input: &str, this_year: i32) -> Result<NaiveDateTime, String> {
        let bad = |why: &str| format!("'{input}' does not match format '{}': {why}", self.text);
        let s = input.trim();
        let mut rest = s;
        let (mut year, mut month, mut day) = (None, None, None);
        let (mut hour, mut minute, mut second, mut nanos) = (0u32, 0u32, 0u32, 0u32);
        let mut pm: Option<bool> = None;
        let mut hour12 = false;
        for tok in &self.toks {
            match tok {
                Tok::Sep => {
                    rest = rest.trim_start_matches(|c: char| !c.is_alphanumeric());
                }
                Tok::Literal(l) => {
                    // `get` is None when the cut falls inside a character: no match, not a panic.
                    if let Some(head) = rest.get(..l.len())
                        && head.eq_ignore_ascii_case(l)
                    {
                        rest = &rest[l.len()..];
                    } else {
                        return Err(bad(&format!("expected '{l}'")));
                    }
                }
                Tok::Year4 => {
                    let (v, r) = digits(rest, 4).ok_or_else(|| bad("expected a year"))?;
                    year = Some(v as i32);
                    rest = r;
                }
                Tok::Year2 | Tok::RoundYear2 => {
                    let (v, r) = digits(rest, 2).ok_or_else(|| bad("expected a year"))?;
                    let century = this_year / 100 * 100;
                    let v = v as i32;
                    year = Some(if *tok == Tok::Year2 {
                        century + v
                    } else {
                        let cur = this_year % 100;
                        match (cur < 50, v < 50) {
                            (true, true) | (false, false) => century + v,
                            (true, false) => century - 100 + v,
                            (false, true) => century + 100 + v,
                        }
                    });
                    rest = r;
                }
                Tok::Month => {
                    let (v, r) = digits(rest, 2).ok_or_else(|| bad("expected a month number"))?;
                    month = Some(v);
                    rest = r;
                }
                Tok::MonthAbbr | Tok::MonthName => {
                    let word: String = rest.chars().take_while(|c| c.is_alphabetic()).collect();
                    let w = word.to_ascii_uppercase();
                    let found = MONTHS.iter().position(|m| {
                        if *tok == Tok::MonthAbbr {
                            w.len() == 3 && m.starts_with(&w)
                        } else {
                            *m == w || (w.len() == 3 && m.starts_with(&w))
                        }
                    });
                    let m = found.ok_or_else(|| bad(&format!("'{word}' is not a month")))?;
                    month = Some(m as u32 + 1);
                    rest = &rest[word.len()..];
                }
                Tok::Day => {
                    let (v, r) = digits(rest, 2).ok_or_else(|| bad("expected a day"))?;
                    day = Some(v);
                    rest = r;
                }
                Tok::DayName => {
                    rest = rest.trim_start_matches(|c: char| c.is_alphabetic());
                }
                Tok::Hour12 | Tok::Hour24 => {
                    let (v, r) = digits(rest, 2).ok_or_else(|| bad("expected an hour"))?;
                    hour = v;
                    hour12 = *tok == Tok::Hour12;
                    rest = r;
                }
                Tok::Minute => {
                    let (v, r) = digits(rest, 2).ok_or_else(|| bad("expected minutes"))?;
                    minute = v;
                    rest = r;
                }
                Tok::Second => {
                    let (v, r) = digits(rest, 2).ok_or_else(|| bad("expected seconds"))?;
                    second = v;
                    rest = r;
                }
                Tok::Fraction(n) => {
                    let n = *n as usize;
                    let taken: String = rest.chars().take_while(|c| c.is_ascii_digit()).take(n).collect();
                    if taken.is_empty() {
                        return Err(bad("expected fractional seconds"));
                    }
                    let padded = format!("{taken:0<9}");
                    nanos = padded.parse().map_err(|_| bad("bad fractional seconds"))?;
                    rest = &rest[taken.len()..];
                }
                Tok::Meridian => {
                    let up = rest.to_ascii_uppercase();
                    let (is_pm, len) = if up.starts_with("A.M.") {
                        (false, 4)
                    } else if up.starts_with("P.M.") {
                        (true, 4)
                    } else if up.starts_with("AM") {
                        (false, 2)
                    } else if up.starts_with("PM") {
                        (true, 2)
                    } else {
                        return Err(bad("expected AM or PM"));
                    };
                    pm = Some(is_pm);
                    rest = &rest[len..];
                }
            }
        }
        if !rest.trim().is_empty() {
            return Err(bad(&format!("unexpected '{}' at the end", rest.trim())));
        }
        if hour12 || pm.is_some() {
            if !(1..=12).contains(&hour) {
                return Err(bad(&format!("hour {hour} is not between 1 and 12")));
            }
            hour = match (pm.unwrap_or(false), hour) {
                (false, 12) => 0,
                (false, h) => h,
                (true, 12) => 12,
                (true, h) => h + 12,
            };
        }
        let year = year.unwrap_or(this_year);
        let month = month.unwrap_or(1);
        let day = day.unwrap_or(1);
        let date = NaiveDate::from_ymd_opt(year, month, day)
            .ok_or_else(|| bad(&format!("{year:04}-{month:02}-{day:02} is not a valid date")))?;
        let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)
            .ok_or_else(|| bad(&format!("{hour:02}:{minute:02}:{second:02} is not a valid time")))?;
        Ok(date.and_time(time))
    }
}

/// Reads 1 to `max` ASCII digits.
fn digits(s: &str, max: usize) -> Option<(u32, &str)> {
    let n = s.bytes().take(max).take_while(u8::is_ascii_digit).count();
    if n == 0 {
        return None;
    }
    Some((s[..n].parse().ok()?, &s[n..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(mask: &str, s: &str) -> Result<String, String> {
        Mask::compile(mask)?
            .parse_with_year(s, 2026)
            .map(|d| d.format("%Y-%m-%d %H:%M:%S%.f").to_string())
    }

    #[test]
    fn legacy_masks() {
        assert_eq!(p("DD-MON-YY", "12-MAR-19").unwrap(), "2019-03-12 00:00:00");
        assert_eq!(p("DD-MON-YY", "12-mar-85").unwrap(), "2085-03-12 00:00:00");
        assert_eq!(p("DD-MON-RR", "12-Mar-85").unwrap(), "1985-03-12 00:00:00");
        assert_eq!(p("DD-MON-RR", "1-JAN-49").unwrap(), "2049-01-01 00:00:00");
        assert_eq!(p("DD-MON-RRRR", "01-JAN-1949").unwrap(), "1949-01-01 00:00:00");
        assert_eq!(
            p("YYYY-MM-DD HH24:MI:SS", "2019-03-12 23:59:58").unwrap(),
            "2019-03-12 23:59:58"
        );
        assert_eq!(
            p("MM/DD/YYYY HH:MI AM", "3/7/2019 12:05 am").unwrap(),
            "2019-03-07 00:05:00"
        );
        assert_eq!(
            p("MM/DD/YYYY HH12:MI P.M.", "03/07/2019 01:05 P.M.").unwrap(),
            "2019-03-07 13:05:00"
        );
        assert_eq!(
            p("YYYY-MM-DD\"T\"HH24:MI:SS.FF6", "2019-03-12T01:02:03.5").unwrap(),
            "2019-03-12 01:02:03.500"
        );
        assert_eq!(p("DD MONTH YYYY", "4 july 1776").unwrap(), "1776-07-04 00:00:00");
        assert_eq!(p("DY DD-MON-YYYY", "TUE 12-MAR-2019").unwrap(), "2019-03-12 00:00:00");
        assert_eq!(p("YYYYMMDD", "19991231").unwrap(), "1999-12-31 00:00:00");
        assert_eq!(p("DD-MON-YY", "  12-MAR-19  ").unwrap(), "2019-03-12 00:00:00");
        assert_eq!(p("DD-MON-YYYY", "29-FEB-2400").unwrap(), "2400-02-29 00:00:00");
    }

    #[test]
    fn rejects_what_oracle_rejects() {
        assert!(p("DD-MON-YY", "31-FEB-19").unwrap_err().contains("not a valid date"));
        assert!(p("DD-MON-YY", "12-XYZ-19").unwrap_err().contains("not a month"));
        assert!(p("DD-MON-YY", "12-MAR-19 junk").unwrap_err().contains("unexpected"));
        assert!(p("DD-MON-YY", "").is_err());
        assert!(p("HH24:MI", "25:00").unwrap_err().contains("not a valid time"));
        assert!(p("HH:MI AM", "13:00 PM").is_err());
        assert!(Mask::compile("DD-QQ-YY").unwrap_err().contains("unknown element 'QQ'"));
        assert!(Mask::compile("---").is_err());
        assert!(Mask::compile("\"abc").is_err());
    }
}

#[cfg(test)]
mod property_tests {
    use super::Mask;
    use crate::testgen::{Rng, arbitrary_text, iterations, seed};

    #[test]
    fn date_masks_never_panic_on_any_text() {
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
}
