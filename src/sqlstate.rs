//! PostgreSQL's error codes, typed: what an error means for the run is decided here, once, by
//! its SQLSTATE (and, for a lost connection, by the kind of sqlx error), not by its words.

/// A five-character SQLSTATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlState([u8; 5]);

impl SqlState {
    pub const UNIQUE_VIOLATION: SqlState = SqlState(*b"23505");
    pub const LOCK_NOT_AVAILABLE: SqlState = SqlState(*b"55P03");
    pub const NAME_TOO_LONG: SqlState = SqlState(*b"42622");
    pub const UNDEFINED_TABLE: SqlState = SqlState(*b"42P01");
    pub const INVALID_CATALOG_NAME: SqlState = SqlState(*b"3D000");
    pub const INVALID_AUTHORIZATION: SqlState = SqlState(*b"28000");
    pub const INVALID_PASSWORD: SqlState = SqlState(*b"28P01");

    /// From its text; `None` unless it is five ASCII characters.
    pub fn parse(code: &str) -> Option<SqlState> {
        let b: [u8; 5] = code.as_bytes().try_into().ok()?;
        b.iter().all(u8::is_ascii_alphanumeric).then_some(SqlState(b))
    }

    /// The SQLSTATE of a PostgreSQL error, if `e` is one.
    pub fn of(e: &sqlx::Error) -> Option<SqlState> {
        e.as_database_error()?.code().and_then(|c| SqlState::parse(&c))
    }

    /// The first two characters: the class.
    fn class(&self) -> &[u8] {
        &self.0[..2]
    }

    /// An error that can follow one row: the data (classes 21, 22, 23), a limit one value
    /// breaks (54: an index row too large), a trigger or function that raises for it (P0, 38,
    /// 39, 2F, 27), a view's CHECK OPTION (44), an identifier value too long (42622). A batch
    /// refused with one of these is split until the row stands alone, and that row alone is
    /// rejected; everything else (the connection, the server, resources, the schema,
    /// permissions, locks, timeouts) would fail every row alike and stops the run.
    pub fn follows_one_row(&self) -> bool {
        matches!(
            self.class(),
            b"21" | b"22" | b"23" | b"54" | b"P0" | b"38" | b"39" | b"2F" | b"27" | b"44"
        ) || *self == SqlState::NAME_TOO_LONG
    }

    /// The connection is gone: class 08, or the server shutting down or not accepting yet
    /// (57P01–57P03).
    pub fn is_connection(&self) -> bool {
        self.class() == b"08" || matches!(&self.0, b"57P01" | b"57P02" | b"57P03")
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("?????")
    }
}

impl std::fmt::Display for SqlState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// sqlx's errors that mean "the connection is gone", not "the statement was wrong": the work
/// can be retried on a new connection.
pub fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        other => SqlState::of(other).is_some_and(|s| s.is_connection()),
    }
}

/// Whether `e` is a PostgreSQL error with this SQLSTATE.
pub fn is(e: &sqlx::Error, state: SqlState) -> bool {
    SqlState::of(e) == Some(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_decide_what_an_error_means() {
        let s = |c: &str| SqlState::parse(c).unwrap();
        for row in [
            "22003", "23505", "23503", "21000", "54000", "P0001", "44000", "42622", "2F005", "38000",
        ] {
            assert!(s(row).follows_one_row(), "{row}");
        }
        for run in ["42P01", "42501", "53100", "55P03", "57014", "08006", "XX000", "40001"] {
            assert!(!s(run).follows_one_row(), "{run}");
        }
        assert!(s("08006").is_connection() && s("57P01").is_connection());
        assert!(!s("57014").is_connection());
        assert_eq!(SqlState::parse("2350"), None);
        assert_eq!(s("55P03"), SqlState::LOCK_NOT_AVAILABLE);
        assert!(connection_lost(&sqlx::Error::Io(std::io::ErrorKind::BrokenPipe.into())));
        assert!(!connection_lost(&sqlx::Error::RowNotFound));
    }
}
