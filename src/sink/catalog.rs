//! What the sink reads of the target's catalog: a table's columns with their exact types, its
//! unique keys, foreign keys (and the rows that break one), owned sequences; and the two
//! statements on whole tables, `has_rows` and `truncate`.

use super::pgtype::PgType;
use super::{SinkError, execute, q_err};
use crate::plan::{TargetTable, quote_ident};
use sqlx::{AssertSqlSafe, PgConnection, Row};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgColumn {
    pub name: String,
    pub ty: PgType,
    /// As PostgreSQL prints it: `numeric(12,2)`.
    pub formatted: String,
    pub not_null: bool,
    /// Has a default, or is an identity or generated column.
    pub has_default: bool,
    pub generated: bool,
}

/// The table's columns in order, or `None` when it does not exist.
pub async fn table_columns(conn: &mut PgConnection, table: &TargetTable) -> Result<Option<Vec<PgColumn>>, SinkError> {
    let oid: Option<i64> = sqlx::query_scalar("SELECT to_regclass($1)::oid::bigint")
        .bind(table.sql())
        .fetch_one(&mut *conn)
        .await
        .map_err(q_err(format!("looking up table {}", table.display())))?;
    let Some(oid) = oid else { return Ok(None) };
    let rows = sqlx::query(
        "SELECT a.attname::text,
                CASE WHEN t.typtype = 'd' THEN bt.typname ELSE t.typname END::text,
                CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END,
                format_type(a.atttypid, a.atttypmod),
                a.attnotnull OR (t.typtype = 'd' AND t.typnotnull),
                a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '',
                a.attgenerated <> ''
         FROM pg_attribute a
         JOIN pg_type t ON t.oid = a.atttypid
         LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
         WHERE a.attrelid = $1::bigint::oid AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY a.attnum",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await
    .map_err(q_err(format!("reading columns of {}", table.display())))?;
    Ok(Some(
        rows.into_iter()
            .map(|r| {
                let typname: String = r.get(1);
                let formatted: String = r.get(3);
                PgColumn {
                    name: r.get(0),
                    ty: PgType::from_catalog(&typname, r.get(2), &formatted),
                    formatted,
                    not_null: r.get(4),
                    has_default: r.get(5),
                    generated: r.get(6),
                }
            })
            .collect(),
    ))
}

/// Column sets of the primary key and unique constraints/indexes (what ON CONFLICT can use).
pub async fn unique_keys(conn: &mut PgConnection, table: &TargetTable) -> Result<Vec<Vec<String>>, SinkError> {
    let rows = sqlx::query(
        "SELECT array_agg(a.attname::text ORDER BY k.ord)
         FROM pg_index i
         CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL
         GROUP BY i.indexrelid",
    )
    .bind(table.sql())
    .fetch_all(&mut *conn)
    .await
    .map_err(q_err(format!("reading unique keys of {}", table.display())))?;
    Ok(rows.into_iter().map(|r| r.get::<Vec<String>, _>(0)).collect())
}

pub async fn count_rows(conn: &mut PgConnection, table: &TargetTable) -> Result<i64, SinkError> {
    sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {}", table.sql())))
        .fetch_one(conn)
        .await
        .map_err(q_err(format!("counting rows of {}", table.display())))
}

/// A sequence owned by a column of a loaded table (serial or identity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedSequence {
    pub column: String,
    /// Qualified and quoted as PostgreSQL prints it.
    pub sequence: String,
    /// What `nextval` would return now.
    pub next: i64,
    /// The column's maximum, NULL for an empty table.
    pub max: Option<i64>,
    pub ascending: bool,
}

impl OwnedSequence {
    /// True when the application's next insert would collide with a loaded key.
    pub fn is_behind(&self) -> bool {
        self.ascending && self.max.is_some_and(|m| m >= self.next)
    }
}

/// The sequences owned by the table's columns, with where they stand against the loaded data.
pub async fn owned_sequences(conn: &mut PgConnection, table: &TargetTable) -> Result<Vec<OwnedSequence>, SinkError> {
    let owned: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT a.attname::text, pg_get_serial_sequence($1, a.attname)::text, s.seqincrement > 0
         FROM pg_attribute a
         JOIN pg_sequence s ON s.seqrelid = pg_get_serial_sequence($1, a.attname)::regclass
         WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
           AND pg_get_serial_sequence($1, a.attname) IS NOT NULL
         ORDER BY a.attnum",
    )
    .bind(table.sql())
    .fetch_all(&mut *conn)
    .await
    .map_err(q_err(format!("finding the sequences of {}", table.display())))?;
    let mut out = Vec::with_capacity(owned.len());
    for (column, sequence, ascending) in owned {
        // `sequence` comes from the catalog already quoted; the column is quoted here.
        let (next, max): (i64, Option<i64>) = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT (SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM {sequence}),
                    (SELECT max({})::bigint FROM {})",
            crate::plan::quote_ident(&column),
            table.sql()
        )))
        .fetch_one(&mut *conn)
        .await
        .map_err(q_err(format!("reading sequence {sequence}")))?;
        out.push(OwnedSequence {
            column,
            sequence,
            next,
            max,
            ascending,
        });
    }
    Ok(out)
}

/// Moves every sequence owned by the table past the loaded maximum, so the application's next
/// insert does not hit a duplicate key. Never moves one backwards. Returns (sequence, new value).
pub async fn advance_sequences(conn: &mut PgConnection, table: &TargetTable) -> Result<Vec<(String, i64)>, SinkError> {
    let mut moved = Vec::new();
    for s in owned_sequences(conn, table).await? {
        if let (true, Some(max)) = (s.is_behind(), s.max) {
            sqlx::query("SELECT setval($1::regclass, $2)")
                .bind(&s.sequence)
                .bind(max)
                .execute(&mut *conn)
                .await
                .map_err(q_err(format!("setting sequence {}", s.sequence)))?;
            moved.push((s.sequence, max));
        }
    }
    Ok(moved)
}

/// Whether the table holds any row (cheaper than a count on a big table).
pub async fn has_rows(conn: &mut PgConnection, table: &TargetTable) -> Result<bool, SinkError> {
    sqlx::query_scalar(AssertSqlSafe(format!("SELECT EXISTS (SELECT 1 FROM {})", table.sql())))
        .fetch_one(conn)
        .await
        .map_err(q_err(format!("looking for rows in {}", table.display())))
}

/// Empties the tables in one statement, children first. A table outside the list that references
/// one of them makes PostgreSQL refuse, which is what we want: nothing unselected is emptied.
pub async fn truncate(conn: &mut PgConnection, tables: &[&TargetTable]) -> Result<(), SinkError> {
    let list: Vec<String> = tables.iter().map(|t| t.sql()).collect();
    // PostgreSQL refuses to empty a table another table's foreign key references: name them.
    let blockers: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT f.conrelid::regclass::text, f.conname::text, f.confrelid::regclass::text FROM pg_constraint f
         WHERE f.contype = 'f' AND f.confrelid = ANY (SELECT to_regclass(t) FROM unnest($1::text[]) t)
           AND NOT f.conrelid = ANY (SELECT to_regclass(t) FROM unnest($1::text[]) t)
         ORDER BY 1, 2",
    )
    .bind(&list)
    .fetch_all(&mut *conn)
    .await
    .map_err(q_err("looking for tables that reference the tables to empty"))?;
    if !blockers.is_empty() {
        let shown: Vec<String> = blockers
            .iter()
            .map(|(child, fk, parent)| format!("table {child} (foreign key {fk}) references {parent}"))
            .collect();
        return Err(SinkError::Refused(format!(
            "--truncate cannot empty those tables: {}, and is not among the tables being emptied. Add its entity to the run (--entity), empty it yourself first, or drop that foreign key",
            shown.join("; ")
        )));
    }
    execute(
        conn,
        &format!("TRUNCATE {}", list.join(", ")),
        "emptying the target tables (--truncate); a table that is not being migrated references one of them: migrate its entity too, or empty it yourself",
    )
    .await
}

/// A foreign key of a target table, from the catalog.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ForeignKeyInfo {
    pub name: String,
    /// As `pg_get_constraintdef` gives it: `FOREIGN KEY (a) REFERENCES p(id) ...`.
    pub definition: String,
    pub table: String,
    /// The referenced table: quoted SQL, and its bare name as PostgreSQL's messages show it.
    pub parent: String,
    pub parent_name: String,
    pub columns: Vec<String>,
    pub ref_columns: Vec<String>,
    /// The table references itself.
    pub self_ref: bool,
    /// `MATCH FULL`: a key whose columns are partly NULL breaks it (under MATCH SIMPLE, the
    /// default, any NULL satisfies it).
    #[serde(default)]
    pub match_full: bool,
}

impl ForeignKeyInfo {
    /// The condition under which row `c` breaks this key: no parent for a key without NULLs;
    /// with MATCH FULL, also a key that is partly NULL.
    pub fn orphan_condition(&self, c: &str) -> String {
        if self.match_full {
            return format!("(({}) OR ({}))", self.mixed_nulls(c), self.missing_parent(c));
        }
        self.missing_parent(c)
    }

    /// Row `c`'s key is partly NULL (what MATCH FULL forbids).
    fn mixed_nulls(&self, c: &str) -> String {
        let nulls: Vec<String> = self
            .columns
            .iter()
            .map(|col| format!("{c}.{} IS NULL", quote_ident(col)))
            .collect();
        format!("({}) AND NOT ({})", nulls.join(" OR "), nulls.join(" AND "))
    }

    /// The SELECTs that find the rows of `from` (each with `migrate_row_ordinal`) breaking this
    /// key, as (ordinal, `i`, the key's values): with MATCH FULL, partly NULL keys come with
    /// `-1 - i` (their reason differs).
    pub fn check_selects(&self, i: usize, from: &str) -> Vec<String> {
        let mut out = vec![format!(
            "SELECT c.migrate_row_ordinal::bigint, {i}, {} FROM {from} WHERE {}",
            self.shown_values("c"),
            self.missing_parent("c")
        )];
        if self.match_full {
            out.push(format!(
                "SELECT c.migrate_row_ordinal::bigint, {}, NULL::text FROM {from} WHERE {}",
                -1 - i as i64,
                self.mixed_nulls("c")
            ));
        }
        out
    }

    /// A key without NULLs that no parent row has.
    fn missing_parent(&self, c: &str) -> String {
        let not_null = self
            .columns
            .iter()
            .map(|col| format!("{c}.{} IS NOT NULL", quote_ident(col)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let join = self
            .columns
            .iter()
            .zip(&self.ref_columns)
            .map(|(col, r)| format!("p.{} = {c}.{}", quote_ident(r), quote_ident(col)))
            .collect::<Vec<_>>()
            .join(" AND ");
        format!(
            "{not_null} AND NOT EXISTS (SELECT 1 FROM {} p WHERE {join})",
            self.parent
        )
    }

    /// The key's values of row `c` as text, `, `-separated, as PostgreSQL shows them.
    pub fn shown_values(&self, c: &str) -> String {
        self.columns
            .iter()
            .map(|col| format!("{c}.{}::text", quote_ident(col)))
            .collect::<Vec<_>>()
            .join(" || ', ' || ")
    }
}

/// Every foreign key of `table`, by name.
pub async fn foreign_keys(conn: &mut PgConnection, table: &TargetTable) -> Result<Vec<ForeignKeyInfo>, SinkError> {
    let rows = sqlx::query(
        "SELECT c.conname::text, pn.nspname::text, p.relname::text,
                (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(c.conkey) WITH ORDINALITY k(n, ord)
                   JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n),
                (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(c.confkey) WITH ORDINALITY k(n, ord)
                   JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n),
                c.confrelid = c.conrelid, pg_get_constraintdef(c.oid), c.confmatchtype = 'f'
         FROM pg_constraint c JOIN pg_class p ON p.oid = c.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
         WHERE c.contype = 'f' AND c.conrelid = to_regclass($1) ORDER BY 1",
    )
    .bind(table.sql())
    .fetch_all(&mut *conn)
    .await
    .map_err(q_err(format!("reading foreign keys of {}", table.display())))?;
    // A constraint dropped while the catalog is read (another stream holding it for its load)
    // has no definition any more, nor columns: it is gone, so it is not listed.
    Ok(rows
        .iter()
        .filter(|r| {
            matches!(r.try_get::<Option<String>, _>(6), Ok(Some(_)))
                && matches!(r.try_get::<Option<Vec<String>>, _>(3), Ok(Some(_)))
                && matches!(r.try_get::<Option<Vec<String>>, _>(4), Ok(Some(_)))
        })
        .map(|r| ForeignKeyInfo {
            name: r.get(0),
            definition: r.get(6),
            table: table.name.clone(),
            parent: format!(
                "{}.{}",
                quote_ident(&r.get::<String, _>(1)),
                quote_ident(&r.get::<String, _>(2))
            ),
            parent_name: r.get(2),
            columns: r.get(3),
            ref_columns: r.get(4),
            self_ref: r.get(5),
            match_full: r.get(7),
        })
        .collect())
}

/// The rows of `table` that break `fk` (a missing parent; with MATCH FULL, a partly NULL key):
/// how many, and the keys of up to 5.
pub async fn orphan_rows(
    conn: &mut PgConnection,
    table: &TargetTable,
    fk: &ForeignKeyInfo,
) -> Result<(i64, Vec<String>), SinkError> {
    let err = q_err(format!(
        "looking for rows of {} that break {}",
        table.display(),
        fk.name
    ));
    let from = format!("FROM {} c WHERE {}", table.sql(), fk.orphan_condition("c"));
    let count: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) {from}")))
        .fetch_one(&mut *conn)
        .await
        .map_err(err)?;
    if count == 0 {
        return Ok((0, Vec::new()));
    }
    let err = q_err(format!(
        "looking for rows of {} that break {}",
        table.display(),
        fk.name
    ));
    let samples: Vec<Option<String>> =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT {} {from} LIMIT 5", fk.shown_values("c"))))
            .fetch_all(&mut *conn)
            .await
            .map_err(err)?;
    Ok((
        count,
        samples
            .into_iter()
            .map(|s| s.unwrap_or_else(|| "a key with NULLs".into()))
            .collect(),
    ))
}
