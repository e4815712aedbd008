//! `oracle://` URLs: who to log in as, where to connect, and the fetch tuning, parsed without a
//! server. Every spelling a DBA needs maps to one OCI connect string:
//!
//! - `oracle://user:pass@host:1521/SERVICE` (EZConnect `//host:1521/SERVICE`)
//! - `oracle://user:pass@host:1521?sid=ORCL` (a SID-only database: a full descriptor is built)
//! - `oracle://user:pass@(DESCRIPTION=...)` (a TNS descriptor, verbatim)
//! - `oracle://user:pass@//host:1521/SERVICE` (an EZConnect string, verbatim)
//! - `oracle://user:pass@ALIAS` (a tnsnames.ora alias; set TNS_ADMIN)
//!
//! User and password are percent-decoded (`%40` for `@`). Query parameters: `fetch_rows`,
//! `prefetch_rows`, `lob_fetch_rows`, `fetch_mb`, `lobs=inline|locator`, `sid`.

use std::fmt;

/// How CLOB/BLOB columns are fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LobFetch {
    /// The whole value in the row buffer, array-fetched like any column (fast; memory grows
    /// with `lob_fetch_rows` × the largest LOB).
    Inline,
    /// A locator per row, streamed with `Read` (one round trip per LOB; bounded memory for LOBs
    /// of hundreds of MB).
    Locator,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTuning {
    /// Rows per array fetch at most (`fetch_array_size`); fewer for wide rows (`fetch_mb`).
    pub fetch_rows: u32,
    /// Rows OCI fetches with the execute (`prefetch_rows`).
    pub prefetch_rows: u32,
    /// Rows per array fetch for tables with LOB or LONG columns.
    pub lob_fetch_rows: u32,
    /// MiB of fetch buffer one cursor may use: wide rows get fewer rows per fetch (fetch.rs).
    pub fetch_mb: u32,
    pub lobs: LobFetch,
}

impl Default for FetchTuning {
    fn default() -> Self {
        FetchTuning {
            fetch_rows: 5000,
            prefetch_rows: 5000,
            lob_fetch_rows: 100,
            fetch_mb: super::fetch::DEFAULT_BUDGET_MB,
            lobs: LobFetch::Inline,
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct ConnectSpec {
    pub user: String,
    pub password: String,
    /// What OCI gets: EZConnect, a descriptor or an alias.
    pub connect_string: String,
    pub tuning: FetchTuning,
}

/// Never prints the password.
impl fmt::Debug for ConnectSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectSpec")
            .field("user", &self.user)
            .field("password", &"***")
            .field("connect_string", &self.connect_string)
            .field("tuning", &self.tuning)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid Oracle URL: {0} (expected oracle://user:pass@host:1521/SERVICE, oracle://user:pass@host:1521?sid=SID or oracle://user:pass@(DESCRIPTION=...))"
)]
pub struct UrlError(pub String);

impl ConnectSpec {
    pub fn parse(url: &str) -> Result<ConnectSpec, UrlError> {
        let rest = url
            .strip_prefix("oracle://")
            .ok_or_else(|| UrlError("it must start with oracle://".into()))?;
        // A descriptor may contain '?' or '@' of its own: it starts right after "@(".
        let (userinfo, place) = match rest.find("@(") {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => rest
                .rsplit_once('@')
                .ok_or_else(|| UrlError("no user name (oracle://user:pass@...)".into()))?,
        };
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (percent_decode(u)?, percent_decode(p)?),
            None => (percent_decode(userinfo)?, String::new()),
        };
        if user.is_empty() {
            return Err(UrlError("the user name is empty".into()));
        }
        let (place, query) = if place.starts_with('(') {
            // The descriptor ends at its last ')'; parameters may follow it.
            let end = place.rfind(')').map(|i| i + 1).unwrap_or(place.len());
            (&place[..end], place[end..].strip_prefix('?').unwrap_or(""))
        } else {
            match place.split_once('?') {
                Some((p, q)) => (p, q),
                None => (place, ""),
            }
        };
        let mut tuning = FetchTuning::default();
        let mut sid = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let number = |v: &str| -> Result<u32, UrlError> {
                v.parse::<u32>()
                    .ok()
                    .filter(|n| (1..=100_000).contains(n))
                    .ok_or_else(|| UrlError(format!("{k}={v}: expected a number from 1 to 100000")))
            };
            match k {
                "fetch_rows" => tuning.fetch_rows = number(v)?,
                "prefetch_rows" => tuning.prefetch_rows = number(v)?,
                "lob_fetch_rows" => tuning.lob_fetch_rows = number(v)?,
                "fetch_mb" => tuning.fetch_mb = number(v)?,
                "lobs" => {
                    tuning.lobs = match v {
                        "inline" => LobFetch::Inline,
                        "locator" => LobFetch::Locator,
                        _ => return Err(UrlError(format!("lobs={v}: expected inline or locator"))),
                    }
                }
                "sid" if !v.is_empty() => sid = Some(v.to_string()),
                _ => {
                    return Err(UrlError(format!(
                        "unknown parameter '{k}' (known: fetch_rows, prefetch_rows, lob_fetch_rows, fetch_mb, lobs, sid)"
                    )));
                }
            }
        }
        let connect_string = if place.starts_with('(') || place.starts_with("//") {
            if sid.is_some() {
                return Err(UrlError("sid= goes with host:port, not with a descriptor".into()));
            }
            place.to_string()
        } else {
            let (hostport, service) = match place.split_once('/') {
                Some((h, s)) => (h, s),
                None => (place, ""),
            };
            let (host, port) = match hostport.rsplit_once(':') {
                Some((h, p)) => {
                    let port: u16 = p.parse().map_err(|_| UrlError(format!("port '{p}' is not a number")))?;
                    (h, Some(port))
                }
                None => (hostport, None),
            };
            if host.is_empty() {
                return Err(UrlError("the host is empty".into()));
            }
            match (sid, service.is_empty()) {
                (Some(_), false) => return Err(UrlError("give either a /SERVICE or ?sid=, not both".into())),
                (Some(sid), true) => format!(
                    "(DESCRIPTION=(ADDRESS=(PROTOCOL=TCP)(HOST={host})(PORT={}))(CONNECT_DATA=(SID={sid})))",
                    port.unwrap_or(1521)
                ),
                (None, false) => format!("//{host}:{}/{service}", port.unwrap_or(1521)),
                // A bare word is a tnsnames alias; host:port without a service is EZConnect's
                // default service.
                (None, true) => match port {
                    Some(p) => format!("//{host}:{p}"),
                    None => host.to_string(),
                },
            }
        };
        Ok(ConnectSpec {
            user,
            password,
            connect_string,
            tuning,
        })
    }
}

/// Builds the URL from the ORACLE_* variables: ORACLE_CONNECT (a descriptor or EZConnect string)
/// wins over ORACLE_HOST/ORACLE_PORT with ORACLE_SERVICE or ORACLE_SID.
pub fn url_from_parts(
    user: &str,
    password: &str,
    connect: Option<&str>,
    host: Option<&str>,
    port: Option<&str>,
    service: Option<&str>,
    sid: Option<&str>,
) -> Option<String> {
    let who = format!("oracle://{}:{}@", percent_encode(user), percent_encode(password));
    if let Some(c) = connect {
        return Some(format!("{who}{c}"));
    }
    let host = host?;
    let port = port.unwrap_or("1521");
    match (service, sid) {
        (Some(s), _) => Some(format!("{who}{host}:{port}/{s}")),
        (None, Some(sid)) => Some(format!("{who}{host}:{port}?sid={sid}")),
        (None, None) => None,
    }
}

/// The URL the ORACLE_* environment variables describe, if ORACLE_USER and a place are set.
pub fn url_from_env() -> Option<String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    url_from_parts(
        &var("ORACLE_USER")?,
        &var("ORACLE_PASSWORD").unwrap_or_default(),
        var("ORACLE_CONNECT").as_deref(),
        var("ORACLE_HOST").as_deref(),
        var("ORACLE_PORT").as_deref(),
        var("ORACLE_SERVICE").as_deref(),
        var("ORACLE_SID").as_deref(),
    )
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> Result<String, UrlError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| UrlError("a '%' in the user or password is not followed by two hex digits".into()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| UrlError("the user or password is not UTF-8 once decoded".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cs(url: &str) -> String {
        ConnectSpec::parse(url).unwrap().connect_string
    }

    #[test]
    fn ezconnect_sid_descriptor_and_alias() {
        assert_eq!(cs("oracle://scott:tiger@db.example:1521/XE"), "//db.example:1521/XE");
        assert_eq!(cs("oracle://scott:tiger@db/ORCLPDB1"), "//db:1521/ORCLPDB1");
        assert_eq!(
            cs("oracle://scott:tiger@db:1522?sid=ORCL"),
            "(DESCRIPTION=(ADDRESS=(PROTOCOL=TCP)(HOST=db)(PORT=1522))(CONNECT_DATA=(SID=ORCL)))"
        );
        let d = "(DESCRIPTION=(ADDRESS=(PROTOCOL=TCP)(HOST=h)(PORT=1521))(CONNECT_DATA=(SERVICE_NAME=x?y)))";
        assert_eq!(cs(&format!("oracle://u:p@{d}")), d);
        assert_eq!(cs(&format!("oracle://u:p@{d}?fetch_rows=50")), d);
        assert_eq!(cs("oracle://u:p@//h:1521/XE"), "//h:1521/XE");
        assert_eq!(cs("oracle://u:p@PRODDB"), "PRODDB");
    }

    /// The README's TCPS / wallet example, as written there: the descriptor goes to the client
    /// verbatim (quotes, '=' and spaces in the server certificate's DN included).
    #[test]
    fn a_tcps_descriptor_with_a_certificate_dn_passes_verbatim() {
        let d = r#"(DESCRIPTION=(ADDRESS=(PROTOCOL=TCPS)(HOST=db.example.com)(PORT=2484))(CONNECT_DATA=(SERVICE_NAME=ORCLPDB1))(SECURITY=(SSL_SERVER_CERT_DN="CN=db.example.com,O=Example Corp")))"#;
        let s = ConnectSpec::parse(&format!("oracle://migrator:s%40cret@{d}")).unwrap();
        assert_eq!(s.connect_string, d);
        assert_eq!((s.user.as_str(), s.password.as_str()), ("migrator", "s@cret"));
        // An alias from the wallet's tnsnames.ora (TNS_ADMIN) is just the alias.
        assert_eq!(cs("oracle://migrator:pw@PROD_TCPS"), "PROD_TCPS");
    }

    #[test]
    fn credentials_are_percent_decoded_and_never_debug_printed() {
        let s = ConnectSpec::parse("oracle://ab%40c:p%40ss%3Aw%2Fd@h:1/S").unwrap();
        assert_eq!((s.user.as_str(), s.password.as_str()), ("ab@c", "p@ss:w/d"));
        assert!(!format!("{s:?}").contains("p@ss"));
        // An unencoded '@' in the password still splits at the last '@'.
        assert_eq!(ConnectSpec::parse("oracle://u:a@b@h/S").unwrap().password, "a@b");
    }

    #[test]
    fn tuning_parameters() {
        let s = ConnectSpec::parse("oracle://u:p@h/S?fetch_rows=200&prefetch_rows=300&lobs=locator&lob_fetch_rows=7")
            .unwrap();
        assert_eq!(
            s.tuning,
            FetchTuning {
                fetch_rows: 200,
                prefetch_rows: 300,
                lob_fetch_rows: 7,
                fetch_mb: 32,
                lobs: LobFetch::Locator
            }
        );
        assert_eq!(
            ConnectSpec::parse("oracle://u:p@h/S").unwrap().tuning,
            FetchTuning::default()
        );
    }

    #[test]
    fn malformed_urls_are_clear_errors_without_the_password() {
        for (url, want) in [
            ("postgres://u:secret@h/S", "must start with oracle://"),
            ("oracle://h/S", "no user name"),
            ("oracle://u:secret@h:port/S", "port 'port'"),
            ("oracle://u:secret@h/S?fetch_rows=0", "fetch_rows=0"),
            ("oracle://u:secret@h/S?lobs=maybe", "lobs=maybe"),
            ("oracle://u:secret@h/S?color=red", "unknown parameter 'color'"),
            ("oracle://u:secret@h/S?sid=X", "either a /SERVICE or ?sid="),
            ("oracle://u:sec%zzret@h/S", "two hex digits"),
            ("oracle://:secret@h/S", "user name is empty"),
        ] {
            let e = ConnectSpec::parse(url).unwrap_err().to_string();
            assert!(e.contains(want), "{url}: {e}");
            assert!(!e.contains("secret"), "{url}: {e}");
        }
    }

    #[test]
    fn urls_from_environment_parts_round_trip() {
        let url = url_from_parts("legacy", "p@ss/w:rd", None, Some("h"), None, Some("XE"), None).unwrap();
        let s = ConnectSpec::parse(&url).unwrap();
        assert_eq!(
            (s.password.as_str(), s.connect_string.as_str()),
            ("p@ss/w:rd", "//h:1521/XE")
        );
        let url = url_from_parts("u", "p", None, Some("h"), Some("1600"), None, Some("ORCL")).unwrap();
        assert!(cs(&url).contains("(PORT=1600))(CONNECT_DATA=(SID=ORCL))"));
        let d = "(DESCRIPTION=(ADDRESS=(PROTOCOL=TCP)(HOST=h)(PORT=1521))(CONNECT_DATA=(SID=X)))";
        assert_eq!(
            cs(&url_from_parts("u", "p", Some(d), Some("ignored"), None, None, None).unwrap()),
            d
        );
        assert_eq!(url_from_parts("u", "p", None, Some("h"), None, None, None), None);
    }
}
