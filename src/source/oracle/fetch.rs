//! How many rows one array fetch asks for, from the width of a row. Pure.
//!
//! ODPI-C allocates each column's fetch buffer up front for the whole array: for character
//! columns the declared size times the client's bytes per character (4: the client always speaks
//! UTF-8), for every row of the array. A table of twelve VARCHAR2(4000) columns fetched 5,000
//! rows at a time costs about 1 GB per cursor, whatever the values hold. So the array is sized
//! from the row's buffer width to stay within a byte budget, between 100 rows and the configured
//! maximum.

use oracle::sql_type::OracleType;

/// Bytes of fetch buffer one cursor may use by default (`fetch_mb` in the URL).
pub const DEFAULT_BUDGET_MB: u32 = 32;

/// The fewest rows an array fetch asks for, however wide the row (round trips dominate below).
pub const MIN_ROWS: u32 = 100;

/// Bytes ODPI-C reserves per row for one column of this type (buffer, length and indicator).
pub fn column_bytes(t: &OracleType) -> u64 {
    // dpiData (value union + null flag) for every column of every row.
    const DATA: u64 = 24;
    let buffer = match t {
        // Sized in bytes in the database character set; the client holds up to 4 bytes a
        // character of it in UTF-8.
        OracleType::Varchar2(n) | OracleType::Char(n) => 4 * u64::from(*n),
        // Sized in characters.
        OracleType::NVarchar2(n) | OracleType::NChar(n) => 4 * u64::from(*n),
        OracleType::Raw(n) => u64::from(*n),
        // NUMBER is fetched as text: at most 172 bytes (ODPI-C's DPI_NUMBER_AS_TEXT_CHARS).
        OracleType::Number(..) | OracleType::Float(_) => 172,
        OracleType::Rowid => 64,
        // Fetched inline (not as locators), LOB and LONG values grow a buffer as they come; an
        // estimate per row keeps the array small for them.
        OracleType::CLOB | OracleType::NCLOB | OracleType::BLOB | OracleType::Long | OracleType::LongRaw => 64 << 10,
        _ => 16,
    };
    buffer + DATA
}

/// The fetch buffer width of a row of these columns.
pub fn row_bytes(types: &[OracleType]) -> u64 {
    types.iter().map(column_bytes).sum::<u64>().max(1)
}

/// Rows per array fetch: as many as fit `budget_mb` MiB, within [`MIN_ROWS`, `max_rows`].
pub fn fetch_rows(types: &[OracleType], budget_mb: u32, max_rows: u32) -> u32 {
    let fit = (u64::from(budget_mb) << 20) / row_bytes(types);
    let rows = u32::try_from(fit).unwrap_or(u32::MAX);
    rows.clamp(MIN_ROWS.min(max_rows), max_rows.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_rows_take_the_maximum_and_wide_rows_stay_within_the_budget() {
        let narrow = [
            OracleType::Number(10, 0),
            OracleType::Varchar2(40),
            OracleType::Date,
            OracleType::Number(12, 2),
        ];
        assert_eq!(fetch_rows(&narrow, DEFAULT_BUDGET_MB, 5000), 5000);

        // 20 VARCHAR2(4000): 16 KB of buffer per column per row.
        let wide = vec![OracleType::Varchar2(4000); 20];
        assert_eq!(row_bytes(&wide), 20 * (16_000 + 24));
        let rows = fetch_rows(&wide, DEFAULT_BUDGET_MB, 5000);
        assert_eq!(rows, 104);
        assert!(u64::from(rows) * row_bytes(&wide) <= 32 << 20);
        // Before: 5,000 rows of that row, 1.6 GB per cursor.
        assert!(5000 * row_bytes(&wide) > 1_500_000_000);

        // Wider still: never below 100 rows (nor above the maximum when it is lower).
        let huge = vec![OracleType::NVarchar2(2000); 1000];
        assert_eq!(fetch_rows(&huge, DEFAULT_BUDGET_MB, 5000), MIN_ROWS);
        assert_eq!(fetch_rows(&huge, DEFAULT_BUDGET_MB, 50), 50);
        // A bigger budget takes more rows.
        assert_eq!(fetch_rows(&wide, 320, 5000), 1047);
    }

    #[test]
    fn lob_columns_count_as_wide() {
        let t = [OracleType::Number(10, 0), OracleType::CLOB];
        assert_eq!(fetch_rows(&t, DEFAULT_BUDGET_MB, 100), 100);
        assert!(fetch_rows(&t, DEFAULT_BUDGET_MB, 5000) < 600);
    }
}
