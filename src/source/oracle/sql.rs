//! The SQL text the Oracle source sends, all of it 11g-compatible (no OFFSET/FETCH FIRST, no
//! row-value comparison, ANSI joins only where 9i already had them). Pure and unit-tested.

use crate::plan::{Relation, quote_ident};
use crate::source::{Column, Dialect, ReadSpec, WmKind, from_clause, select_sql};

/// Run once per session, before anything is read.
/// - NLS_SORT/NLS_COMP BINARY: ORDER BY and the keyset `>` must agree on one order, or a
///   resume would skip or repeat rows under a linguistic sort.
/// - TIME_ZONE UTC: TIMESTAMP WITH LOCAL TIME ZONE values come back in UTC.
/// - NLS_NUMERIC_CHARACTERS '.,': a decimal key bound as text converts back exactly.
pub const SESSION_SETUP: &[&str] = &[
    "ALTER SESSION SET NLS_SORT = BINARY NLS_COMP = BINARY",
    "ALTER SESSION SET TIME_ZONE = '+00:00'",
    "ALTER SESSION SET NLS_NUMERIC_CHARACTERS = '.,'",
];

pub const CURRENT_SCHEMA: &str = "SELECT SYS_CONTEXT('USERENV', 'CURRENT_SCHEMA') FROM DUAL";

/// The database and national character sets, in one row (readable by every user).
pub const CHARSETS: &str = "SELECT MAX(CASE parameter WHEN 'NLS_CHARACTERSET' THEN value END), \
MAX(CASE parameter WHEN 'NLS_NCHAR_CHARACTERSET' THEN value END) FROM nls_database_parameters \
WHERE parameter IN ('NLS_CHARACTERSET', 'NLS_NCHAR_CHARACTERSET')";

/// Bind names: `:k1`, `:k2` … Bound by name, so a name that appears twice in the keyset
/// predicate is bound once.
pub fn bind_name(i: usize) -> String {
    format!("k{i}")
}

/// The one ordered read of an entity: full (`resume` false) or after the last key handed over,
/// hinted (see [`read_hint`]) to walk the key's index instead of sorting the rest of the table
/// at every cursor.
pub fn read_sql(spec: &ReadSpec, resume: bool, first_rows: u32) -> String {
    let sql = select_sql(spec, &Dialect::oracle(), resume, &|i| format!(":{}", bind_name(i)));
    match read_hint(spec, first_rows) {
        Some(hint) => sql.replacen("SELECT ", &format!("SELECT {hint} "), 1),
        None => sql,
    }
}

/// `/*+ FIRST_ROWS(n) INDEX_ASC("TABLE" ("K1" "K2")) */` for a table read in the order of named
/// key columns: the optimizer is asked for an index on those columns, walked in ascending order,
/// so the ORDER BY needs no sort and a cursor opened after a key starts there (the index is
/// named by its columns, which 10g and later accept; the table by its name without the owner,
/// as hints require). None for queries and ROWID reads, which have no such index.
pub fn read_hint(spec: &ReadSpec, first_rows: u32) -> Option<String> {
    let Relation::Table(t) = &spec.relation else {
        return None;
    };
    let mut cols = Vec::new();
    for &i in &spec.key {
        match &spec.columns[i] {
            Column::Named(n) => cols.push(quote_ident(n)),
            Column::RowId => return None,
        }
    }
    if cols.is_empty() {
        return None;
    }
    let table = quote_ident(&crate::plan::TargetTable::parse(t).name);
    Some(format!(
        "/*+ FIRST_ROWS({}) INDEX_ASC({table} ({})) */",
        first_rows.max(1),
        cols.join(" ")
    ))
}

/// Whether `spec` reads a table in ROWID order (a table without a key).
pub fn reads_by_rowid(spec: &ReadSpec) -> bool {
    matches!(spec.relation, Relation::Table(_)) && spec.key.iter().any(|&i| spec.columns[i] == Column::RowId)
}

/// The newest watermark as exact text: `kind` None only describes the column's type.
pub fn newest_sql(relation: &Relation, filter: Option<&str>, column: &str, kind: Option<WmKind>) -> String {
    let col = quote_ident(column);
    let max = match kind {
        // A number is selected as itself and written out exactly on this side: TO_CHAR(x, 'TM9')
        // gives '.5' and '-.5' for values between -1 and 1.
        None | Some(WmKind::Text) | Some(WmKind::Number) => format!("MAX({col})"),
        Some(WmKind::Date) => format!("TO_CHAR(MAX({col}), 'YYYY-MM-DD HH24:MI:SS')"),
        Some(WmKind::Timestamp) => format!("TO_CHAR(MAX({col}), 'YYYY-MM-DD HH24:MI:SS.FF9')"),
    };
    let mut sql = format!("SELECT {max} FROM {}", from_clause(relation, &Dialect::oracle()));
    if let Some(f) = filter {
        sql.push_str(&format!(" WHERE ({f})"));
    }
    sql
}

/// The same columns with no rows: describes the result's types before the real read, so that a
/// column of an unsupported type is named before anything is fetched, and LOB tables get their
/// own fetch sizes.
pub fn probe_sql(spec: &ReadSpec) -> String {
    let probe = ReadSpec {
        key: vec![],
        filter: Some("1 = 0".into()),
        columns: spec.columns.clone(),
        relation: spec.relation.clone(),
        window: None,
        until: None,
    };
    select_sql(&probe, &Dialect::oracle(), false, &|i| format!(":{}", bind_name(i)))
}

/// The columns of a query, without rows.
pub fn query_probe_sql(query: &str) -> String {
    format!("SELECT * FROM ({}) q WHERE 1 = 0", query.trim().trim_end_matches(';'))
}

/// Tables of an owner that hold data: no recycle-bin, nested, secondary, temporary or
/// materialized-view-log tables, and no IOT overflow segments.
pub const TABLES: &str = "SELECT table_name FROM all_tables \
WHERE owner = :owner AND nested = 'NO' AND secondary = 'N' AND temporary = 'N' AND dropped = 'NO' \
AND (iot_type IS NULL OR iot_type = 'IOT') \
AND table_name NOT LIKE 'BIN$%' AND table_name NOT LIKE 'MLOG$%' AND table_name NOT LIKE 'RUPD$%' \
ORDER BY table_name";

/// Columns of an owner's tables and views (one table when :tname is not NULL), in column order.
pub const COLUMNS: &str = "SELECT table_name, column_name, data_type, data_length, data_precision, data_scale, \
char_length, nullable FROM all_tab_columns \
WHERE owner = :owner AND (:tname IS NULL OR table_name = :tname) \
ORDER BY table_name, column_id";

/// Primary-key columns, in key order: only keys Oracle enforces (ENABLED) and has checked
/// (VALIDATED). A disabled or NOVALIDATE key may have duplicates, and a keyset read over
/// duplicates skips rows; such a table is read by ROWID instead.
pub const PRIMARY_KEYS: &str = "SELECT c.table_name, cc.column_name FROM all_constraints c \
JOIN all_cons_columns cc ON cc.owner = c.owner AND cc.constraint_name = c.constraint_name \
AND cc.table_name = c.table_name \
WHERE c.owner = :owner AND c.constraint_type = 'P' AND c.status = 'ENABLED' AND c.validated = 'VALIDATED' \
AND (:tname IS NULL OR c.table_name = :tname) \
ORDER BY c.table_name, cc.position";

/// What a name is in an owner's namespace: TABLE, VIEW, SYNONYM, MATERIALIZED VIEW …
pub const OBJECT_TYPE: &str = "SELECT object_type FROM all_objects WHERE owner = :owner AND object_name = :name \
AND object_type IN ('TABLE', 'VIEW', 'SYNONYM', 'MATERIALIZED VIEW') \
ORDER BY CASE object_type WHEN 'TABLE' THEN 0 WHEN 'VIEW' THEN 1 WHEN 'MATERIALIZED VIEW' THEN 2 ELSE 3 END";

/// Where a synonym points: the owner's own synonym first, then a public one. A synonym over a
/// database link (db_link set) is not followed.
pub const SYNONYM: &str = "SELECT table_owner, table_name, db_link FROM all_synonyms \
WHERE synonym_name = :name AND (owner = :owner OR owner = 'PUBLIC') \
ORDER BY CASE owner WHEN 'PUBLIC' THEN 1 ELSE 0 END";

/// Why a relation of this object type cannot be read by ROWID (a table without a key is), if
/// it cannot: a view's rows have no ROWID of their own (ORA-01445/01446 at read time).
pub fn row_id_problem(object_type: &str, name: &str) -> Option<String> {
    (object_type == "VIEW").then(|| {
        format!("{name} is a view: its rows have no ROWID to read them in order by, and it has no primary key")
    })
}

/// Whether a user (schema) of that exact name exists.
pub const USER_EXISTS: &str = "SELECT COUNT(*) FROM all_users WHERE username = :owner";

/// Foreign keys, column by column, with the referenced table and column at the same position.
pub const FOREIGN_KEYS: &str = "SELECT c.constraint_name, c.table_name, cc.column_name, r.owner, r.table_name, \
rc.column_name FROM all_constraints c \
JOIN all_cons_columns cc ON cc.owner = c.owner AND cc.constraint_name = c.constraint_name \
JOIN all_constraints r ON r.owner = c.r_owner AND r.constraint_name = c.r_constraint_name \
JOIN all_cons_columns rc ON rc.owner = r.owner AND rc.constraint_name = r.constraint_name \
AND rc.position = cc.position \
WHERE c.owner = :owner AND c.constraint_type = 'R' \
ORDER BY c.table_name, c.constraint_name, cc.position";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Relation;

    fn spec(keys: &[&str], filter: Option<&str>) -> ReadSpec {
        let mut columns: Vec<Column> = keys.iter().map(|k| Column::Named(k.to_string())).collect();
        columns.push(Column::Named("NAME".into()));
        ReadSpec {
            relation: Relation::Table("ABIS.AB_COIL".into()),
            key: (0..keys.len()).collect(),
            columns,
            filter: filter.map(str::to_string),
            window: None,
            until: None,
        }
    }

    #[test]
    fn sync_windows_convert_their_text_bounds_exactly() {
        let mut s = spec(&["ID"], Some("STATUS <> 'D'"));
        s.window = Some(crate::source::Window {
            column: "LAST_MODIFIED".into(),
            kind: crate::source::WmKind::Timestamp,
            above: Some("2026-01-02 03:04:05.123456789".into()),
            upto: Some("2026-01-02 03:09:00.000000001".into()),
        });
        assert_eq!(
            read_sql(&s, true, 500),
            "SELECT /*+ FIRST_ROWS(500) INDEX_ASC(\"AB_COIL\" (\"ID\")) */ \"ID\", \"NAME\" FROM \"ABIS\".\"AB_COIL\" WHERE (STATUS <> 'D') AND \"LAST_MODIFIED\" > TO_TIMESTAMP(:k2, 'YYYY-MM-DD HH24:MI:SS.FF9') AND \"LAST_MODIFIED\" <= TO_TIMESTAMP(:k3, 'YYYY-MM-DD HH24:MI:SS.FF9') AND (\"ID\" > :k1) ORDER BY \"ID\""
        );
        s.window = Some(crate::source::Window {
            column: "SCN".into(),
            kind: crate::source::WmKind::Number,
            above: None,
            upto: Some("12345678901234567890123456789012345678".into()),
        });
        assert!(read_sql(&s, false, 500).contains("\"SCN\" <= TO_NUMBER(:k2)"));
    }

    #[test]
    fn full_and_resume_reads_with_one_two_three_column_keys() {
        assert_eq!(
            read_sql(&spec(&["ID"], None), false, 5000),
            r#"SELECT /*+ FIRST_ROWS(5000) INDEX_ASC("AB_COIL" ("ID")) */ "ID", "NAME" FROM "ABIS"."AB_COIL" ORDER BY "ID""#
        );
        assert_eq!(
            read_sql(&spec(&["ID"], None), true, 5000),
            r#"SELECT /*+ FIRST_ROWS(5000) INDEX_ASC("AB_COIL" ("ID")) */ "ID", "NAME" FROM "ABIS"."AB_COIL" WHERE ("ID" > :k1) ORDER BY "ID""#
        );
        // The leading `A >= :k1` gives the optimizer where the index range starts.
        assert_eq!(
            read_sql(&spec(&["A", "B"], None), true, 100),
            r#"SELECT /*+ FIRST_ROWS(100) INDEX_ASC("AB_COIL" ("A" "B")) */ "A", "B", "NAME" FROM "ABIS"."AB_COIL" WHERE ("A" >= :k1 AND ("A" > :k1 OR ("A" = :k1 AND ("B" > :k2)))) ORDER BY "A", "B""#
        );
        assert_eq!(
            read_sql(&spec(&["A", "B", "C"], None), true, 100),
            r#"SELECT /*+ FIRST_ROWS(100) INDEX_ASC("AB_COIL" ("A" "B" "C")) */ "A", "B", "C", "NAME" FROM "ABIS"."AB_COIL" WHERE ("A" >= :k1 AND ("A" > :k1 OR ("A" = :k1 AND ("B" > :k2 OR ("B" = :k2 AND ("C" > :k3)))))) ORDER BY "A", "B", "C""#
        );
        for sql in [
            read_sql(&spec(&["A", "B", "C"], None), true, 100),
            read_sql(&spec(&["A"], None), false, 100),
        ] {
            let upper = sql.to_uppercase();
            assert!(
                !upper.contains("OFFSET") && !upper.contains("FETCH FIRST") && !upper.contains("LIMIT"),
                "{sql}"
            );
            assert!(!sql.contains(") > ("), "row-value comparison in {sql}");
        }
        // A query mapping has no index to name.
        let mut q = spec(&["ID"], None);
        q.relation = Relation::Query("SELECT ID, NAME FROM T".into());
        assert!(read_sql(&q, true, 100).starts_with("SELECT \"ID\""));
    }

    #[test]
    fn filtered_reads_rowid_reads_and_probes() {
        assert_eq!(
            read_sql(&spec(&["ID"], Some("STATUS <> 'D'")), true, 100),
            r#"SELECT /*+ FIRST_ROWS(100) INDEX_ASC("AB_COIL" ("ID")) */ "ID", "NAME" FROM "ABIS"."AB_COIL" WHERE (STATUS <> 'D') AND ("ID" > :k1) ORDER BY "ID""#
        );
        let by_rowid = ReadSpec {
            relation: Relation::Table("NOTES".into()),
            columns: vec![Column::Named("TXT".into()), Column::RowId],
            key: vec![1],
            filter: None,
            window: None,
            until: None,
        };
        assert!(reads_by_rowid(&by_rowid) && !reads_by_rowid(&spec(&["ID"], None)));
        assert_eq!(
            read_sql(&by_rowid, true, 100),
            r#"SELECT "TXT", ROWID FROM "NOTES" WHERE (ROWID > :k1) ORDER BY ROWID"#
        );
        assert_eq!(
            probe_sql(&spec(&["ID"], Some("X = 1"))),
            r#"SELECT "ID", "NAME" FROM "ABIS"."AB_COIL" WHERE (1 = 0)"#
        );
        assert_eq!(
            query_probe_sql("SELECT 1 AS X FROM DUAL;"),
            "SELECT * FROM (SELECT 1 AS X FROM DUAL) q WHERE 1 = 0"
        );
        assert_eq!(bind_name(2), "k2");
    }

    #[test]
    fn keys_must_be_enforced_names_resolve_and_numbers_are_not_formatted() {
        assert!(PRIMARY_KEYS.contains("c.status = 'ENABLED' AND c.validated = 'VALIDATED'"));
        assert!(SYNONYM.contains("all_synonyms") && SYNONYM.contains("'PUBLIC'") && SYNONYM.contains("db_link"));
        assert!(OBJECT_TYPE.contains(":owner") && OBJECT_TYPE.contains(":name"));
        assert!(row_id_problem("VIEW", "ABIS.V_COIL").unwrap().contains("is a view"));
        assert_eq!(row_id_problem("TABLE", "ABIS.AB_NOTE"), None);
        let rel = Relation::Table("ABIS.AB_WM".into());
        let n = newest_sql(&rel, None, "VERSION_NO", Some(WmKind::Number));
        assert_eq!(n, r#"SELECT MAX("VERSION_NO") FROM "ABIS"."AB_WM""#);
        assert!(!n.contains("TM9"));
    }

    #[test]
    fn catalog_queries_are_bound_and_11g_safe() {
        for q in [TABLES, COLUMNS, PRIMARY_KEYS, FOREIGN_KEYS] {
            assert!(q.contains(":owner"), "{q}");
            let upper = q.to_uppercase();
            assert!(
                !upper.contains("FETCH FIRST") && !upper.contains("OFFSET") && !upper.contains("LATERAL"),
                "{q}"
            );
            assert!(q.contains("ORDER BY"), "{q}");
        }
        assert!(COLUMNS.contains("column_id") && PRIMARY_KEYS.contains("cc.position"));
        assert!(FOREIGN_KEYS.contains("rc.position = cc.position"));
        assert!(SESSION_SETUP.iter().any(|s| s.contains("NLS_SORT = BINARY")));
        assert!(SESSION_SETUP.iter().any(|s| s.contains("TIME_ZONE = '+00:00'")));
    }
}
