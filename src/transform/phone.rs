//! The `phone` transforms: bare `phone` (North American numbers, counted digits) and
//! `{ phone = "GB" }` (libphonenumber's rules for a region).

use crate::value::Value;

/// Bare `phone`: North American numbers in any spelling to E.164; a leading `+` or `00` keeps
/// its country code.
pub(super) fn north_american(v: Value) -> Result<Value, String> {
    let s = match v {
        Value::Text(s) => s,
        Value::Int(i) => i.to_string(),
        other => return Err(format!("cannot read a phone number from {} value", other.kind())),
    };
    let t = s.trim();
    if t.is_empty() {
        return Ok(Value::Null);
    }
    if let Some(bad) = t.chars().find(|c| !(c.is_ascii_digit() || " ()-.+/".contains(*c))) {
        return Err(format!("'{t}' is not a phone number (unexpected '{bad}')"));
    }
    let digits: String = t.chars().filter(char::is_ascii_digit).collect();
    let international = t.starts_with('+') || t.starts_with("00");
    let e164 = if t.starts_with("00") {
        format!("+{}", &digits[2..])
    } else if international {
        format!("+{digits}")
    } else if digits.len() == 10 {
        format!("+1{digits}")
    } else if digits.len() == 11 && digits.starts_with('1') {
        format!("+{digits}")
    } else {
        return Err(format!(
            "'{t}' is not a phone number ({} digits; expected 10, or a leading +)",
            digits.len()
        ));
    };
    if !(8..=16).contains(&e164.len()) {
        return Err(format!("'{t}' is not a phone number (wrong length)"));
    }
    Ok(Value::Text(e164))
}

/// A phone number by libphonenumber's rules (the `phonenumber` crate): read in `region` unless it
/// has a country code, refused unless valid there (a number's length and ranges, not only its
/// digits), written as E.164.
pub(super) fn in_region(v: Value, region: phonenumber::country::Id) -> Result<Value, String> {
    let s = match v {
        Value::Text(s) => s,
        Value::Int(i) => i.to_string(),
        other => return Err(format!("cannot read a phone number from {} value", other.kind())),
    };
    let t = s.trim();
    if t.is_empty() {
        return Ok(Value::Null);
    }
    let region_name = region.as_ref();
    let n = phonenumber::parse(Some(region), t)
        .map_err(|e| format!("'{t}' is not a phone number in {region_name} ({e})"))?;
    if !phonenumber::is_valid(&n) {
        return Err(format!(
            "'{t}' is not a valid phone number in {region_name} (no number of that length or range exists there)"
        ));
    }
    Ok(Value::Text(n.format().mode(phonenumber::Mode::E164).to_string()))
}
