//! Source files' signatures kept in a progress row's fingerprint, so that a resume can tell a
//! file that changed after it was read (`mapping-fingerprint|files:name=signature;…`).

use super::Progress;
use crate::value::Value;
use std::collections::BTreeMap;

/// `fingerprint|files:name=signature;…`: a mapping's fingerprint with its source files'
/// signatures (`;`, `=` and `|` in names are percent-encoded).
pub fn with_files(fingerprint: &str, files: &[(String, String)]) -> String {
    let enc = |s: &str| {
        s.replace('%', "%25")
            .replace(';', "%3B")
            .replace('=', "%3D")
            .replace('|', "%7C")
    };
    let list: Vec<String> = files.iter().map(|(n, s)| format!("{}={}", enc(n), enc(s))).collect();
    format!("{}|files:{}", mapping_fingerprint(fingerprint), list.join(";"))
}

/// The mapping's own fingerprint, without the files' signatures.
pub fn mapping_fingerprint(fingerprint: &str) -> &str {
    fingerprint.split('|').next().unwrap_or(fingerprint)
}

fn files_of(fingerprint: &str) -> Option<BTreeMap<String, String>> {
    let list = fingerprint.split_once("|files:")?.1;
    let dec = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    Some(
        list.split(';')
            .filter_map(|e| e.split_once('='))
            .map(|(n, s)| (dec(n), dec(s)))
            .collect(),
    )
}

/// The files a stored progress row has already read (those up to its last key's `_file`)
/// whose signature is not the one `current` holds now: changed or gone since.
pub fn files_changed(stored: &Progress, current: &str) -> Vec<String> {
    let (Some(then), Some(now)) = (files_of(&stored.fingerprint), files_of(current)) else {
        return Vec::new();
    };
    let Some(Value::Text(last)) = stored.last_key.as_ref().and_then(|k| k.first()) else {
        return Vec::new();
    };
    then.iter()
        .filter(|(name, sig)| name.as_bytes() <= last.as_bytes() && now.get(*name) != Some(*sig))
        .map(|(name, _)| name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_read_before_the_stop_must_keep_their_signature() {
        let sig = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        };
        let then = with_files(
            "fp1",
            &sig(&[("a;1.csv", "10,1,ab"), ("b.csv", "20,1,cd"), ("c.csv", "5,1,ef")]),
        );
        assert_eq!(mapping_fingerprint(&then), "fp1");
        let mut p = Progress::new("e", &then, "t");
        p.last_key = Some(vec![Value::Text("b.csv".into()), Value::Int(3), Value::Int(40)]);
        // c.csv was not read yet: it may change; b.csv, being read, may not.
        let now = with_files(
            "fp1",
            &sig(&[("a;1.csv", "10,1,ab"), ("b.csv", "20,1,cd"), ("c.csv", "9,2,00")]),
        );
        assert!(files_changed(&p, &now).is_empty());
        let now = with_files("fp1", &sig(&[("a;1.csv", "10,1,ab"), ("b.csv", "21,2,cd")]));
        assert_eq!(files_changed(&p, &now), ["b.csv"]);
        let now = with_files("fp1", &sig(&[("b.csv", "20,1,cd")]));
        assert_eq!(files_changed(&p, &now), ["a;1.csv"], "a file gone");
        // Databases carry no signatures: nothing to compare.
        assert!(files_changed(&Progress::new("e", "fp1", "t"), "fp1").is_empty());
    }
}
