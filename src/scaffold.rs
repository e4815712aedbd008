//! `migrate scaffold`: mappings (one TOML file per table) and PostgreSQL DDL from the source
//! catalog. Pure: catalog tables in, file texts out; the command only reads the catalog and
//! writes the files. Names are lower-cased for PostgreSQL; types follow docs/type-mapping.md.

use crate::source::CatalogTable;
use crate::source::oracle::types::{self, OraType};
use std::collections::{BTreeMap, BTreeSet};

/// Which catalog the types were declared in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Oracle,
    Sqlite,
    /// Files (`file:` sources): text columns and the INTEGER position columns, as SQLite types.
    Files,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub dialect: Dialect,
    /// `scaffold --profile`: per (table, column), what the values hold.
    pub profile: std::collections::HashMap<(String, String), crate::profile::ColumnProfile>,
    /// The source schema, written into each mapping's `source` (`ABIS.AB_COIL`).
    pub source_schema: Option<String>,
    /// The PostgreSQL schema for the targets (`legacy.ab_coil`).
    pub target_schema: Option<String>,
    /// RAW(16) → uuid instead of bytea.
    pub raw16_uuid: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scaffold {
    /// (file name, TOML text), one per table.
    pub mappings: Vec<(String, String)>,
    pub ddl: String,
    /// Columns left out, references outside the set: shown to the user and written as comments.
    pub warnings: Vec<String>,
}

/// PostgreSQL's reserved words (and the type-function names that cannot be bare column names).
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "binary",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "group",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "intersect",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "natural",
    "not",
    "notnull",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "outer",
    "overlaps",
    "placing",
    "primary",
    "references",
    "returning",
    "right",
    "select",
    "session_user",
    "similar",
    "some",
    "symmetric",
    "system_user",
    "table",
    "tablesample",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
];

/// An identifier for the DDL: bare when PostgreSQL would read it back unchanged, quoted otherwise.
pub fn pg_ident(name: &str) -> String {
    let bare = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
        && !RESERVED.contains(&name);
    if bare {
        name.to_string()
    } else {
        crate::plan::quote_ident(name)
    }
}

/// A TOML basic string, escaped.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The PostgreSQL type of a declared source column. SQLite's own names (INTEGER is a 64-bit
/// integer there) come first; Oracle spellings, which the demo and many SQLite exports use,
/// go through the Oracle map.
pub fn pg_type(dialect: Dialect, declared: &str, raw16_uuid: bool) -> Result<String, String> {
    if matches!(dialect, Dialect::Sqlite | Dialect::Files) {
        let d = declared.trim().to_ascii_uppercase();
        let base = d.split('(').next().unwrap_or("").trim();
        match base {
            "" | "TEXT" => return Ok("text".into()),
            "INTEGER" | "INT" | "BIGINT" | "INT8" | "SMALLINT" | "TINYINT" | "MEDIUMINT" => return Ok("bigint".into()),
            "REAL" | "DOUBLE" | "DOUBLE PRECISION" | "FLOAT" => return Ok("double precision".into()),
            "BLOB" => return Ok("bytea".into()),
            "BOOLEAN" | "BOOL" => return Ok("boolean".into()),
            // SQLite keeps dates as text, often with fractions of a second: timestamp(0) would
            // refuse those (Oracle's DATE has none, and keeps its timestamp(0) below).
            "DATETIME" | "DATE" | "TIMESTAMP" => return Ok("timestamp".into()),
            _ => {}
        }
        return match types::parse(declared) {
            // SQLite accepts any type name; its affinity rules decide what it stores.
            OraType::Unsupported(_) if d.contains("INT") => Ok("bigint".into()),
            OraType::Unsupported(_) if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") => {
                Ok("text".into())
            }
            OraType::Unsupported(_) => Ok("numeric".into()),
            t => t.pg_type(raw16_uuid),
        };
    }
    types::parse(declared).pg_type(raw16_uuid)
}

/// Lower-cased names, made unique within their scope (`name`, `name_2`, …).
fn unique_lower(names: &[String]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    names
        .iter()
        .map(|n| {
            let base = n.to_lowercase();
            let mut candidate = base.clone();
            let mut i = 2;
            while !seen.insert(candidate.clone()) {
                candidate = format!("{base}_{i}");
                i += 1;
            }
            candidate
        })
        .collect()
}

pub fn scaffold(tables: &[CatalogTable], opts: &Options, generated_by: &str) -> Scaffold {
    let names: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
    // A file's table is named by the file without its extensions (orders.csv.gz: orders).
    let table_names: Vec<String> = if opts.dialect == Dialect::Files {
        names
            .iter()
            .map(|n| {
                let stem = n.split('.').next().unwrap_or(n);
                stem.chars()
                    .map(|c| if c.is_alphanumeric() { c } else { '_' })
                    .collect()
            })
            .collect()
    } else {
        names.clone()
    };
    // Entity (and file) names are plain words; target names keep the source's spelling, lower-cased.
    let sanitized: Vec<String> = table_names
        .iter()
        .map(|n| {
            n.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '_'
                    }
                })
                .collect()
        })
        .collect();
    let entity_names = unique_lower(&sanitized);
    let target_names = unique_lower(&table_names);
    let target_of_entity: BTreeMap<&str, &str> = entity_names
        .iter()
        .map(String::as_str)
        .zip(target_names.iter().map(String::as_str))
        .collect();
    let entity_of: BTreeMap<&str, &str> = names
        .iter()
        .map(String::as_str)
        .zip(entity_names.iter().map(String::as_str))
        .collect();
    let qualify_target = |name: &str| match &opts.target_schema {
        Some(s) => format!("{}.{}", pg_ident(s), pg_ident(name)),
        None => pg_ident(name),
    };
    let mut warnings = Vec::new();
    let mut mappings = Vec::new();
    let mut creates = Vec::new();
    let mut constraints = Vec::new();
    let source_of = |t: &str| match &opts.source_schema {
        Some(s) => format!("{s}.{t}"),
        None => t.to_string(),
    };

    for (table, entity) in tables.iter().zip(&entity_names) {
        let col_names: Vec<String> = table.info.columns.iter().map(|c| c.name.clone()).collect();
        let targets = unique_lower(&col_names);
        let target_of: BTreeMap<&str, &str> = col_names
            .iter()
            .map(String::as_str)
            .zip(targets.iter().map(String::as_str))
            .collect();
        let mut toml = format!(
            "# Scaffolded by `{generated_by}` from {}. Review it: names, types, transforms.\n",
            source_of(&table.name)
        );
        toml.push_str(&format!("source = {}\n", toml_str(&source_of(&table.name))));
        let table_target = target_of_entity[entity.as_str()];
        let target = match &opts.target_schema {
            Some(s) => format!("{s}.{table_target}"),
            None => table_target.to_string(),
        };
        toml.push_str(&format!("target = {}\n", toml_str(&target)));
        if table.info.primary_key.is_empty() {
            toml.push_str("# No primary key: rows are read in physical row id order (Oracle ROWID, SQLite rowid),\n# and every row arrives, duplicates too. Set `key` if a unique column exists.\n");
        } else {
            let key: Vec<String> = table.info.primary_key.iter().map(|k| toml_str(k)).collect();
            toml.push_str(&format!("key = [{}]\n", key.join(", ")));
        }
        let mut deps = BTreeSet::new();
        for fk in &table.foreign_keys {
            match entity_of.get(fk.ref_table.as_str()) {
                Some(dep) if *dep != entity.as_str() => {
                    deps.insert(dep.to_string());
                }
                Some(_) => {}
                None => warnings.push(format!(
                    "{}: foreign key {} references {}, which is not in the scaffolded schema; load it first or drop the constraint from the DDL",
                    table.name, fk.name, fk.ref_table
                )),
            }
        }
        let deps: Vec<String> = deps.iter().map(|d| toml_str(d)).collect();
        toml.push_str(&format!("depends_on = [{}]\n", deps.join(", ")));

        let mut column_ddl = Vec::new();
        let mut left_out = BTreeSet::new();
        for (col, to) in table.info.columns.iter().zip(&targets) {
            let plain = table.name.split('?').next().unwrap_or(&table.name).to_string();
            let suggested = opts
                .profile
                .get(&(plain, col.name.clone()))
                .and_then(crate::profile::ColumnProfile::suggest);
            let declared_ty = pg_type(opts.dialect, &col.declared_type, opts.raw16_uuid);
            let declared_ty = match (&suggested, declared_ty) {
                (Some(s), _) => Ok(s.pg_type.clone()),
                (None, t) => t,
            };
            let ty = match declared_ty {
                Ok(t) => t,
                Err(why) => {
                    warnings.push(format!("{}.{} left out: {why}", table.name, col.name));
                    toml.push_str(&format!("\n# {} ({}) left out: {why}\n", col.name, col.declared_type));
                    left_out.insert(col.name.as_str());
                    continue;
                }
            };
            toml.push_str(&format!(
                "\n[[fields]]\nfrom = {}\nto = {}\n",
                toml_str(&col.name),
                toml_str(to)
            ));
            let declared = types::parse(&col.declared_type);
            let mut nullable = col.nullable;
            if let Some(s) = &suggested {
                if !s.transforms.is_empty() {
                    toml.push_str(&format!("transform = [{}]\n", s.transforms.join(", ")));
                }
                toml.push_str(&format!(
                    "# profile: {} (declared {}: {ty})\n",
                    s.note, col.declared_type
                ));
                nullable |= s.nullable;
            } else if matches!(declared, OraType::Char(_)) {
                toml.push_str("transform = [\"rtrim\"]  # CHAR is blank-padded in the source\n");
            }
            column_ddl.push(format!(
                "    {} {ty}{}",
                pg_ident(to),
                if nullable { "" } else { " NOT NULL" }
            ));
        }
        let pk: Vec<String> = table
            .info
            .primary_key
            .iter()
            .filter(|k| !left_out.contains(k.as_str()))
            .map(|k| pg_ident(target_of.get(k.as_str()).copied().unwrap_or(k)))
            .collect();
        if !pk.is_empty() {
            column_ddl.push(format!("    PRIMARY KEY ({})", pk.join(", ")));
        }
        creates.push(format!(
            "CREATE TABLE {} (\n{}\n);\n",
            qualify_target(table_target),
            column_ddl.join(",\n")
        ));
        for fk in &table.foreign_keys {
            let Some(parent) = entity_of.get(fk.ref_table.as_str()) else {
                continue;
            };
            let parent_table = tables.iter().find(|t| t.name == fk.ref_table).expect("listed above");
            let parent_cols: Vec<String> = parent_table.info.columns.iter().map(|c| c.name.clone()).collect();
            let parent_targets = unique_lower(&parent_cols);
            let parent_of = |c: &str| {
                parent_cols
                    .iter()
                    .position(|p| p == c)
                    .map(|i| parent_targets[i].clone())
                    .unwrap_or_else(|| c.to_lowercase())
            };
            if fk.columns.iter().any(|c| left_out.contains(c.as_str())) {
                continue;
            }
            let cols: Vec<String> = fk
                .columns
                .iter()
                .map(|c| pg_ident(target_of.get(c.as_str()).copied().unwrap_or(c)))
                .collect();
            let refs: Vec<String> = fk.ref_columns.iter().map(|c| pg_ident(&parent_of(c))).collect();
            constraints.push(format!(
                "ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({});\n",
                qualify_target(table_target),
                pg_ident(&fk.name.to_lowercase()),
                cols.join(", "),
                qualify_target(target_of_entity[parent]),
                refs.join(", ")
            ));
        }
        mappings.push((format!("{entity}.toml"), toml));
    }

    let mut ddl = format!(
        "-- PostgreSQL tables scaffolded by `{generated_by}`. Review, then: psql \"$DATABASE_URL\" -f THIS_FILE\n-- Types: docs/type-mapping.md. Foreign keys come last, so the tables can be created in any order.\n\n"
    );
    if let Some(s) = &opts.target_schema {
        ddl.push_str(&format!("CREATE SCHEMA IF NOT EXISTS {};\n\n", pg_ident(s)));
    }
    for c in creates {
        ddl.push_str(&c);
        ddl.push('\n');
    }
    for c in constraints {
        ddl.push_str(&c);
    }
    Scaffold {
        mappings,
        ddl,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{ForeignKey, SourceColumn, TableInfo};

    fn col(name: &str, t: &str, nullable: bool) -> SourceColumn {
        SourceColumn {
            name: name.into(),
            declared_type: t.into(),
            nullable,
        }
    }

    fn catalog() -> Vec<CatalogTable> {
        vec![
            CatalogTable {
                name: "AB_CUSTOMER".into(),
                info: TableInfo {
                    columns: vec![
                        col("CUSTOMER_ID", "NUMBER(10)", false),
                        col("CUST_CODE", "CHAR(12)", true),
                        col("CREDIT", "NUMBER(12,2)", true),
                        col("ORDER", "VARCHAR2(10)", true),
                        col("User Name", "NVARCHAR2(40)", true),
                        col("GEOM", "SDO_GEOMETRY", true),
                        col("PARENT_ID", "NUMBER(10)", true),
                    ],
                    primary_key: vec!["CUSTOMER_ID".into()],
                },
                foreign_keys: vec![ForeignKey {
                    name: "FK_CUST_PARENT".into(),
                    columns: vec!["PARENT_ID".into()],
                    ref_table: "AB_CUSTOMER".into(),
                    ref_columns: vec!["CUSTOMER_ID".into()],
                }],
            },
            CatalogTable {
                name: "AB_SHIPMENT".into(),
                info: TableInfo {
                    columns: vec![
                        col("SHIP_NO", "VARCHAR2(20)", false),
                        col("LINE", "NUMBER(4)", false),
                        col("CUSTOMER_ID", "NUMBER(10)", false),
                        col("SHIPPED", "DATE", true),
                        col("CARRIER", "NUMBER(6)", true),
                    ],
                    primary_key: vec!["SHIP_NO".into(), "LINE".into()],
                },
                foreign_keys: vec![
                    ForeignKey {
                        name: "FK_SHIP_CUST".into(),
                        columns: vec!["CUSTOMER_ID".into()],
                        ref_table: "AB_CUSTOMER".into(),
                        ref_columns: vec!["CUSTOMER_ID".into()],
                    },
                    ForeignKey {
                        name: "FK_SHIP_CARRIER".into(),
                        columns: vec!["CARRIER".into()],
                        ref_table: "MES.CARRIER".into(),
                        ref_columns: vec!["ID".into()],
                    },
                ],
            },
            CatalogTable {
                name: "AUDIT_LOG".into(),
                info: TableInfo {
                    columns: vec![col("MSG", "CLOB", true), col("AT", "TIMESTAMP(6) WITH TIME ZONE", true)],
                    primary_key: vec![],
                },
                foreign_keys: vec![],
            },
        ]
    }

    fn opts() -> Options {
        Options {
            dialect: Dialect::Oracle,
            profile: Default::default(),
            source_schema: Some("ABIS".into()),
            target_schema: None,
            raw16_uuid: false,
        }
    }

    #[test]
    fn mappings_name_keys_dependencies_and_transforms() {
        let s = scaffold(&catalog(), &opts(), "migrate scaffold");
        let names: Vec<&str> = s.mappings.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["ab_customer.toml", "ab_shipment.toml", "audit_log.toml"]);
        let customer = &s.mappings[0].1;
        assert!(
            customer.contains(
                "source = \"ABIS.AB_CUSTOMER\"\ntarget = \"ab_customer\"\nkey = [\"CUSTOMER_ID\"]\ndepends_on = []\n"
            ),
            "{customer}"
        );
        assert!(
            customer.contains("from = \"CUST_CODE\"\nto = \"cust_code\"\ntransform = [\"rtrim\"]"),
            "{customer}"
        );
        assert!(
            customer.contains("from = \"User Name\"\nto = \"user name\"\n"),
            "{customer}"
        );
        assert!(customer.contains("# GEOM (SDO_GEOMETRY) left out"), "{customer}");
        let ship = &s.mappings[1].1;
        assert!(
            ship.contains("key = [\"SHIP_NO\", \"LINE\"]\ndepends_on = [\"ab_customer\"]\n"),
            "{ship}"
        );
        let audit = &s.mappings[2].1;
        assert!(
            audit.contains("# No primary key") && !audit.contains("key = ["),
            "{audit}"
        );
        assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
        assert!(s.warnings[0].contains("AB_CUSTOMER.GEOM left out"));
        assert!(s.warnings[1].contains("MES.CARRIER"));
        // Every file parses as a mapping and the set compiles to a plan in dependency order.
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in &s.mappings {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let files = crate::config::load_dir(dir.path()).unwrap();
        let plan = crate::plan::compile(&files).unwrap();
        let order: Vec<&str> = plan.entities.iter().map(|e| e.name.as_str()).collect();
        let pos = |n: &str| order.iter().position(|e| *e == n).unwrap();
        assert!(pos("ab_customer") < pos("ab_shipment"), "{order:?}");
    }

    #[test]
    fn ddl_types_keys_and_foreign_keys() {
        let s = scaffold(&catalog(), &opts(), "migrate scaffold");
        let ddl = &s.ddl;
        assert!(
            ddl.contains("CREATE TABLE ab_customer (\n    customer_id bigint NOT NULL,\n    cust_code varchar(12),\n    credit numeric(12,2),\n    \"order\" text,\n    \"user name\" text,\n    parent_id bigint,\n    PRIMARY KEY (customer_id)\n);"),
            "{ddl}"
        );
        assert!(ddl.contains("shipped timestamp(0),"), "{ddl}");
        assert!(ddl.contains("PRIMARY KEY (ship_no, line)"), "{ddl}");
        assert!(
            ddl.contains("CREATE TABLE audit_log (\n    msg text,\n    at timestamptz(6)\n);"),
            "{ddl}"
        );
        assert!(ddl.contains("ALTER TABLE ab_customer ADD CONSTRAINT fk_cust_parent FOREIGN KEY (parent_id) REFERENCES ab_customer (customer_id);"), "{ddl}");
        assert!(ddl.contains("ALTER TABLE ab_shipment ADD CONSTRAINT fk_ship_cust FOREIGN KEY (customer_id) REFERENCES ab_customer (customer_id);"), "{ddl}");
        assert!(
            !ddl.to_lowercase().contains("mes.carrier") && !ddl.contains("fk_ship_carrier"),
            "{ddl}"
        );
        assert!(!ddl.contains("geom"), "{ddl}");
        let schema = scaffold(
            &catalog(),
            &Options {
                target_schema: Some("legacy".into()),
                ..opts()
            },
            "x",
        );
        assert!(schema.ddl.contains("CREATE SCHEMA IF NOT EXISTS legacy;"));
        assert!(schema.ddl.contains("REFERENCES legacy.ab_customer (customer_id)"));
        assert!(schema.mappings[0].1.contains("target = \"legacy.ab_customer\""));
    }

    #[test]
    fn identifiers_and_strings_are_quoted_not_spliced() {
        assert_eq!(pg_ident("coil_id"), "coil_id");
        assert_eq!(pg_ident("order"), "\"order\"");
        assert_eq!(pg_ident("Mixed"), "\"Mixed\"");
        assert_eq!(pg_ident("x\"; DROP TABLE t; --"), "\"x\"\"; DROP TABLE t; --\"");
        assert_eq!(pg_ident("1abc"), "\"1abc\"");
        for tricky in ["a\"b\\c", "x'''y", "line\nbreak", "tab\there"] {
            let parsed: toml::Table = toml::from_str(&format!("s = {}", toml_str(tricky))).unwrap();
            assert_eq!(parsed["s"].as_str(), Some(tricky));
        }
        let evil = vec![CatalogTable {
            name: "T\"X".into(),
            info: TableInfo {
                columns: vec![col("A\"B", "VARCHAR2(5)", true)],
                primary_key: vec![],
            },
            foreign_keys: vec![],
        }];
        let s = scaffold(&evil, &opts(), "x");
        assert_eq!(s.mappings[0].0, "t_x.toml");
        assert!(
            s.ddl.contains("CREATE TABLE \"t\"\"x\" (\n    \"a\"\"b\" text\n);"),
            "{}",
            s.ddl
        );
        let m: toml::Table = toml::from_str(&s.mappings[0].1).unwrap();
        assert_eq!(m["source"].as_str(), Some("ABIS.T\"X"));
    }

    #[test]
    fn sqlite_types_and_name_collisions() {
        let p = |d: &str| pg_type(Dialect::Sqlite, d, false).unwrap();
        assert_eq!(p("INTEGER"), "bigint");
        assert_eq!(p("REAL"), "double precision");
        assert_eq!(p("TEXT"), "text");
        assert_eq!(p(""), "text");
        assert_eq!(p("BLOB"), "bytea");
        assert_eq!(p("VARCHAR2(20)"), "text");
        assert_eq!(p("CHAR(10)"), "varchar(10)");
        assert_eq!(p("NUMBER(12,2)"), "numeric(12,2)");
        assert_eq!(p("UNSIGNED BIG INT"), "bigint");
        assert_eq!(p("NVARYING CHARACTER(70)"), "text");
        assert_eq!(p("MONEY"), "numeric");
        assert_eq!(pg_type(Dialect::Oracle, "INTEGER", false).unwrap(), "numeric(38)");
        assert_eq!(
            unique_lower(&["Name".into(), "NAME".into(), "name_2".into()]),
            ["name", "name_2", "name_2_2"]
        );
    }
}
