//! Binding: each entity of the plan bound to the real source and target (the pre-flight), and
//! a source row turned into the target's binary COPY tuple (`encode_row`). Every source table
//! and column, target table and column, type pairing, key and NOT NULL column is checked, and
//! all problems of all entities are listed at once. A bound entity is what the pipeline runs.

use crate::config::OnConflict;
use crate::plan::{Entity, Plan, Relation};
use crate::sink::pgtype::PgType;
use crate::sink::{self, Loader, PgColumn, SinkError};
use crate::source::{self, Column, ReadSpec, SourceColumn, SourceError};
use crate::transform::Produces;
use crate::value::Value;
use sqlx::PgConnection;

/// What the source says about one entity.
#[derive(Debug, Clone, Default)]
pub struct SourceFacts {
    /// `None`: the table (or query) could not be described; see `problems`.
    pub columns: Option<Vec<SourceColumn>>,
    pub key: Vec<Column>,
    pub rows_in_scope: Option<u64>,
    /// Rows the mapping's `where` leaves out (0 without a filter).
    pub skipped_by_where: u64,
    pub problems: Vec<String>,
    /// What the source chose to read (files: one per group).
    pub choices: Vec<source::Choice>,
    /// Files: each file's signature (see `Source::signature`).
    pub signature: Option<Vec<(String, String)>>,
}

/// An entity ready to run.
#[derive(Debug, Clone)]
pub struct Bound {
    pub entity: Entity,
    pub spec: ReadSpec,
    /// Position in `spec.columns` of each field's source column (`None` for constants).
    pub field_pos: Vec<Option<usize>>,
    /// The target column of each field.
    pub targets: Vec<PgColumn>,
    pub loader: Loader,
    pub rows_in_scope: u64,
    pub skipped_by_where: u64,
}

impl Bound {
    pub fn source_names(&self) -> Vec<String> {
        self.spec.columns.iter().map(|c| c.to_string()).collect()
    }

    /// The fields (positions in `entity.fields`) that carry the key's source columns into the
    /// target, in key order; `None` when some key column is not mapped.
    pub fn key_fields(&self) -> Option<Vec<usize>> {
        let key: Option<Vec<usize>> = self
            .spec
            .key
            .iter()
            .map(|&k| {
                self.field_pos
                    .iter()
                    .enumerate()
                    .position(|(i, p)| *p == Some(k) && self.entity.fields[i].constant.is_none())
            })
            .collect();
        key.filter(|k| !k.is_empty())
    }

    /// The loader that writes this entity's rows with `on_conflict` (by the mapped key).
    pub fn loader_for(&self, on_conflict: OnConflict) -> Loader {
        let cols: Vec<String> = self.targets.iter().map(|c| c.name.clone()).collect();
        Loader::new(
            self.loader.index(),
            &self.entity.target,
            &cols,
            on_conflict,
            &conflict_columns(self),
        )
    }

    /// The same entity with only the fields of `fields`: what encodes a row's target key.
    pub fn with_fields(&self, fields: &[usize]) -> Bound {
        let mut k = self.clone();
        k.entity.fields = fields.iter().map(|&i| self.entity.fields[i].clone()).collect();
        k.field_pos = fields.iter().map(|&i| self.field_pos[i]).collect();
        k.targets = fields.iter().map(|&i| self.targets[i].clone()).collect();
        k
    }
}

/// The result of the pre-flight for every entity.
#[derive(Debug, Default)]
pub struct Preflight {
    pub bound: Vec<Bound>,
    /// (entity, problem)
    pub problems: Vec<(String, String)>,
    /// (entity, source relation, rows in scope, target table)
    pub lines: Vec<(String, String, Option<u64>, String)>,
    /// (entity, choice) for every choice a source made.
    pub choices: Vec<(String, source::Choice)>,
}

/// Gathers source facts for the entities in one source session (in the source's thread).
/// Without `count`, the rows in scope are not counted and keys are not checked for NULLs (each
/// is a full scan of the table): for `migrate sync`, which reads only what changed, and for a
/// deep validation, which has just counted.
pub async fn source_facts(url: &str, entities: Vec<Entity>, count: bool) -> Result<Vec<SourceFacts>, SourceError> {
    source::with_source(url, move |src| {
        for w in src.warnings() {
            tracing::warn!("{w}");
        }
        let mut all = Vec::new();
        for e in &entities {
            let mut f = SourceFacts::default();
            let (columns, pk) = match &e.relation {
                Relation::Table(t) => match src.table_info(t) {
                    Ok(Some(info)) => (Some(info.columns), info.primary_key),
                    Ok(None) => {
                        f.problems.push(format!("source table {t} does not exist"));
                        (None, vec![])
                    }
                    Err(err) => {
                        f.problems
                            .push(format!("source table {t}: {}", crate::telemetry::chain(&err)));
                        (None, vec![])
                    }
                },
                Relation::Query(q) => match src.query_columns(q) {
                    Ok(cols) => (
                        Some(
                            cols.into_iter()
                                .map(|name| SourceColumn {
                                    name,
                                    declared_type: String::new(),
                                    nullable: true,
                                })
                                .collect(),
                        ),
                        vec![],
                    ),
                    Err(err) => {
                        f.problems.push(format!("source query: {}", crate::telemetry::chain(&err)));
                        (None, vec![])
                    }
                },
            };
            if let Some(cols) = &columns {
                // A declared primary key is unique by the source's word; any other key is
                // checked for duplicates below.
                let declared_pk = e.key.is_none() || e.key.as_ref() == Some(&pk);
                let key_names = e.key.clone().unwrap_or(pk);
                f.key = if key_names.is_empty() {
                    vec![Column::RowId]
                } else {
                    key_names
                        .into_iter()
                        .map(|n| {
                            // `key = ["ROWID"]`: the physical row id, unless a column takes the name.
                            if n.eq_ignore_ascii_case("rowid") && !cols.iter().any(|c| c.name == n) {
                                Column::RowId
                            } else {
                                Column::Named(n)
                            }
                        })
                        .collect()
                };
                if f.key.contains(&Column::RowId)
                    && let Some(why) = src.row_id_problem(&e.relation)
                {
                    f.problems.push(format!(
                        "{why}: set `key` in the mapping to unique, non-null columns of {}",
                        e.relation.describe()
                    ));
                }
                for k in &f.key {
                    if let Column::Named(n) = k
                        && !cols.iter().any(|c| &c.name == n)
                    {
                        f.problems
                            .push(format!("key column {n} is not a column of {}", e.relation.describe()));
                    }
                }
                for fd in &e.fields {
                    let Some(from) = &fd.from else { continue };
                    if let Some(c) = cols.iter().find(|c| &c.name == from)
                        && let Some(why) = src.unsupported_type(&c.declared_type)
                    {
                        f.problems.push(format!("source column {from}: {why}"));
                    }
                }
                let counted = count.then(|| src.count(&e.relation, e.filter.as_deref()));
                match counted {
                    None => {}
                    Some(Ok(n)) => {
                        f.rows_in_scope = Some(n);
                        if e.filter.is_some()
                            && let Ok(all) = src.count(&e.relation, None)
                        {
                            f.skipped_by_where = all.saturating_sub(n);
                        }
                    }
                    Some(Err(err)) => f.problems.push(format!(
                        "counting source rows{}: {}",
                        if e.filter.is_some() { " (check 'where')" } else { "" },
                        crate::telemetry::chain(&err)
                    )),
                }
                let named: Vec<String> = f
                    .key
                    .iter()
                    .filter_map(|k| {
                        if let Column::Named(n) = k {
                            Some(n.clone())
                        } else {
                            None
                        }
                    })
                    .collect();
                if count && f.problems.is_empty() && !named.is_empty() {
                    let nulls = named
                        .iter()
                        .map(|n| format!("{} IS NULL", crate::plan::quote_ident(n)))
                        .collect::<Vec<_>>()
                        .join(" OR ");
                    let filter = match &e.filter {
                        Some(w) => format!("({w}) AND ({nulls})"),
                        None => nulls,
                    };
                    if let Ok(n) = src.count(&e.relation, Some(&filter))
                        && n > 0
                    {
                        f.problems.push(format!(
                            "{n} source row(s) have a NULL in key ({}); a key must be unique and non-null",
                            named.join(", ")
                        ));
                    }
                }
                if count && f.problems.is_empty() && !(declared_pk && matches!(e.relation, Relation::Table(_))) {
                    let spec = ReadSpec {
                        relation: e.relation.clone(),
                        columns: f.key.clone(),
                        key: (0..f.key.len()).collect(),
                        filter: e.filter.clone(),
                        window: None,
                        until: None,
                    };
                    match src.duplicate_keys(&spec) {
                        Ok(0) => {}
                        Ok(n) => f.problems.push(format!(
                            "{n} value(s) of key ({}) occur more than once in {}; a key must be unique (a keyset read would skip the repeats). Choose unique columns with `key = [...]`, or read by row id with `key = [\"ROWID\"]`",
                            f.key.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(", "),
                            e.relation.describe()
                        )),
                        Err(err) => f.problems.push(format!(
                            "checking key ({}) for duplicates: {}",
                            f.key.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(", "),
                            crate::telemetry::chain(&err)
                        )),
                    }
                }
            }
            if let Relation::Table(t) = &e.relation {
                f.choices = src.choices(t);
                f.signature = src.signature(t);
            }
            f.columns = columns;
            all.push(f);
        }
        Ok(all)
    })
    .await
}

/// Binds every entity to its source facts and target table. Problems are collected, not raised.
pub async fn bind_all(
    conn: &mut PgConnection,
    plan: &Plan,
    entities: &[&Entity],
    facts: Vec<SourceFacts>,
) -> Result<Preflight, SinkError> {
    let mut out = Preflight::default();
    for (e, f) in entities.iter().zip(facts) {
        let index = plan.entities.iter().position(|x| x.name == e.name).unwrap_or(0);
        let mut problems: Vec<String> = f.problems.clone();
        let target_cols = sink::table_columns(conn, &e.target).await?;
        if target_cols.is_none() {
            problems.push(format!("target table {} does not exist", e.target.display()));
        }
        out.choices
            .extend(f.choices.iter().map(|c| (e.name.clone(), c.clone())));
        out.lines.push((
            e.name.clone(),
            e.relation.describe(),
            f.rows_in_scope,
            e.target.display(),
        ));
        if let (Some(src_cols), Some(tgt_cols)) = (&f.columns, &target_cols) {
            match bind_one(index, e, &f, src_cols, tgt_cols, &mut problems) {
                Some(mut b) if problems.is_empty() => {
                    // The files' signatures go into the fingerprint the progress rows keep, so
                    // that a resume can tell a file that changed since (checkpoint::files_changed).
                    if let Some(sig) = &f.signature {
                        b.entity.fingerprint = crate::checkpoint::with_files(&b.entity.fingerprint, sig);
                    }
                    // What finds target rows by key: on_conflict, or `migrate sync`, which
                    // upserts an incremental entity's changed rows whatever its full load does.
                    let merge = match e.on_conflict {
                        OnConflict::Skip => Some("on_conflict = \"skip\""),
                        OnConflict::Update => Some("on_conflict = \"update\""),
                        OnConflict::Error if e.incremental.is_some() => Some("`migrate sync` (incremental)"),
                        OnConflict::Error => None,
                    };
                    if let Some(merge) = merge
                        && conflict_columns(&b).len() < b.spec.key.len()
                    {
                        let key: Vec<String> = b.spec.key.iter().map(|&k| b.spec.columns[k].to_string()).collect();
                        problems.push(format!(
                            "{merge} finds the target row by the key ({}), but no field maps {} to the target: add a field with from = \"{}\" (the target needs a primary key or unique index on it){}",
                            key.join(", "),
                            if key.len() == 1 { "it" } else { "all of them" },
                            key[0],
                            if e.incremental.is_some() { "" } else { ", or use on_conflict = \"error\"" }
                        ));
                    } else if let Some(merge) = merge {
                        let conflict: Vec<String> = conflict_columns(&b);
                        let uniques = sink::unique_keys(conn, &e.target).await?;
                        let mut sorted = conflict.clone();
                        sorted.sort();
                        if !uniques.iter().any(|u| {
                            let mut u = u.clone();
                            u.sort();
                            u == sorted
                        }) {
                            problems.push(format!(
                                "{merge} needs a primary key or unique index on ({}) in {}",
                                conflict.join(", "),
                                e.target.display()
                            ));
                        }
                        if e.on_conflict != OnConflict::Error {
                            b.loader = b.loader_for(e.on_conflict);
                        }
                    }
                    if problems.is_empty() {
                        out.bound.push(b);
                    }
                }
                _ => {}
            }
        }
        out.problems.extend(problems.into_iter().map(|p| (e.name.clone(), p)));
    }
    Ok(out)
}

/// The target columns the key's source columns are mapped to.
fn conflict_columns(b: &Bound) -> Vec<String> {
    b.spec
        .key
        .iter()
        .filter_map(|&k| {
            b.field_pos
                .iter()
                .position(|p| *p == Some(k))
                .map(|fi| b.targets[fi].name.clone())
        })
        .collect()
}

fn bind_one(
    index: usize,
    e: &Entity,
    f: &SourceFacts,
    src_cols: &[SourceColumn],
    tgt_cols: &[PgColumn],
    problems: &mut Vec<String>,
) -> Option<Bound> {
    let mut columns: Vec<Column> = f.key.clone();
    let mut field_pos = Vec::new();
    let mut targets = Vec::new();
    for fd in &e.fields {
        let pos = match &fd.from {
            Some(from) => match src_cols.iter().find(|c| &c.name == from) {
                None => {
                    let hint = src_cols
                        .iter()
                        .find(|c| c.name.eq_ignore_ascii_case(from))
                        .map(|c| format!(" (did you mean {}? names are case-sensitive)", c.name))
                        .unwrap_or_default();
                    problems.push(format!(
                        "field '{}': source column {from} does not exist in {}{hint}",
                        fd.to,
                        e.relation.describe()
                    ));
                    None
                }
                Some(sc) => {
                    let col = Column::Named(sc.name.clone());
                    let pos = columns.iter().position(|c| *c == col).unwrap_or_else(|| {
                        columns.push(col);
                        columns.len() - 1
                    });
                    Some((pos, sc))
                }
            },
            None => None,
        };
        let Some(tc) = tgt_cols.iter().find(|c| c.name == fd.to) else {
            let hint = tgt_cols
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(&fd.to))
                .map(|c| format!(" (did you mean {}?)", c.name))
                .unwrap_or_default();
            problems.push(format!(
                "field '{}': target column {}.{} does not exist{hint}",
                fd.to,
                e.target.display(),
                fd.to
            ));
            continue;
        };
        if tc.generated {
            problems.push(format!(
                "field '{}': target column {} is generated and cannot be loaded",
                fd.to, fd.to
            ));
        }
        if let PgType::Unsupported(t) = &tc.ty {
            problems.push(format!("field '{}': target type {t} is not supported yet", fd.to));
        }
        let produced = match (fd.chain.produces(), &fd.constant, pos) {
            (Produces::Same, Some(_), _) => Produces::Any,
            (Produces::Same, None, Some((_, sc))) => declared_kind(&sc.declared_type),
            (p, _, _) => p,
        };
        if let Err(why) = compatible(produced, &tc.ty) {
            problems.push(format!(
                "field '{}': {why} (target column {} is {})",
                fd.to, fd.to, tc.formatted
            ));
        }
        // A constant (`value`) or `default` goes into every row (or every NULL): one the column
        // cannot hold would reject them all, so it is a problem now.
        for (what, v) in [("value", fd.constant.as_ref()), ("default", fd.default.as_ref())] {
            let Some(v) = v else { continue };
            let v = match (what, fd.constant.is_some()) {
                // A constant goes through the field's transforms, as each row would.
                ("value", _) => match fd.chain.apply_ref(v) {
                    Ok(t) => t.into_owned(),
                    Err(why) => {
                        problems.push(format!(
                            "field '{}': its value {} fails its transforms: {why}",
                            fd.to,
                            v.brief()
                        ));
                        continue;
                    }
                },
                _ => v.clone(),
            };
            if let Err(why) = tc.ty.encode(&v, &mut Vec::new()) {
                problems.push(format!(
                    "field '{}': its {what} {} cannot be stored in column {} ({}): {why}",
                    fd.to,
                    v.brief(),
                    fd.to,
                    tc.formatted
                ));
            }
        }
        field_pos.push(pos.map(|(p, _)| p));
        targets.push(tc.clone());
    }
    for tc in tgt_cols {
        if tc.not_null && !tc.has_default && !e.fields.iter().any(|fd| fd.to == tc.name) {
            problems.push(format!(
                "target column {}.{} is NOT NULL without a default, and no field maps to it",
                e.target.display(),
                tc.name
            ));
        }
    }
    if field_pos.len() != e.fields.len() {
        return None;
    }
    let key: Vec<usize> = (0..f.key.len()).collect();
    let spec = ReadSpec {
        relation: e.relation.clone(),
        columns,
        key,
        filter: e.filter.clone(),
        window: None,
        until: None,
    };
    let names: Vec<String> = targets.iter().map(|c: &PgColumn| c.name.clone()).collect();
    Some(Bound {
        entity: e.clone(),
        spec,
        field_pos,
        loader: Loader::new(index, &e.target, &names, OnConflict::Error, &[]),
        targets,
        rows_in_scope: f.rows_in_scope.unwrap_or(0),
        skipped_by_where: f.skipped_by_where,
    })
}

/// What kind of value a source column holds, from its declared type (SQLite affinity rules,
/// Oracle type names). Unknown means any: the rows decide.
pub fn declared_kind(declared: &str) -> Produces {
    let d = declared.to_ascii_uppercase();
    if d.starts_with("NUMBER") || d.starts_with("NUMERIC") || d.starts_with("DECIMAL") {
        Produces::Decimal
    } else if d.contains("INT") {
        Produces::Integer
    } else if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") {
        Produces::Text
    } else {
        Produces::Any
    }
}

fn compatible(p: Produces, t: &PgType) -> Result<(), String> {
    use PgType::*;
    let ok = match p {
        Produces::Same | Produces::Any | Produces::Text => true,
        Produces::Date => matches!(t, Date | Timestamp(_) | TimestampTz(_)) || t.is_textual(),
        Produces::Timestamp => matches!(t, Timestamp(_) | TimestampTz(_)) || t.is_textual(),
        Produces::Decimal => matches!(t, Numeric(_) | Int2 | Int4 | Int8 | Float4 | Float8) || t.is_textual(),
        Produces::Integer => matches!(t, Numeric(_) | Int2 | Int4 | Int8 | Float4 | Float8 | Bool) || t.is_textual(),
        Produces::Bool => matches!(t, Bool | Int2 | Int4 | Int8) || t.is_textual(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "a {} value cannot be stored in this column",
            format!("{p:?}").to_lowercase()
        ))
    }
}

/// Transforms and encodes one source row into `buf`; on failure returns (column, reason) and
/// leaves `buf` as it was.
pub fn encode_row(b: &Bound, row: &[Value], buf: &mut Vec<u8>) -> Result<(), (String, String)> {
    let start = buf.len();
    crate::sink::copy::begin_tuple(buf, b.targets.len());
    for (i, fd) in b.entity.fields.iter().enumerate() {
        let col = &b.targets[i];
        let raw = match (&fd.constant, b.field_pos[i]) {
            (Some(c), _) => c,
            (None, Some(p)) => &row[p],
            (None, None) => &Value::Null,
        };
        let fail = |reason: String, buf: &mut Vec<u8>| {
            buf.truncate(start);
            Err((fd.to.clone(), reason))
        };
        // What the source could not read is the row's reject, whatever the transforms would do.
        if let Value::Unreadable(why) = raw {
            return fail(why.clone(), buf);
        }
        // Values the transforms leave as they are are encoded where they lie.
        let transformed = if fd.chain.is_empty() {
            std::borrow::Cow::Borrowed(raw)
        } else {
            match fd.chain.apply_ref(raw) {
                Ok(t) => t,
                Err(e) => return fail(format!("transform failed: {e}"), buf),
            }
        };
        let mut v: &Value = &transformed;
        if v.is_null()
            && let Some(d) = &fd.default
        {
            v = d;
        }
        if v.is_null() && col.not_null {
            return fail(format!("NULL in NOT NULL column {}", col.name), buf);
        }
        if let Err(e) = col.ty.encode(v, buf) {
            return fail(e, buf);
        }
    }
    Ok(())
}

/// A bound entity built without databases, for the unit tests of the parts that take one:
/// `mapping` is a mapping file's TOML, `source` the source columns (all of them text, the first
/// one the key unless the mapping names one), `target` the target columns.
#[cfg(test)]
pub(crate) fn bound_for_test(mapping: &str, source: &[&str], target: &[(&str, PgType, bool)]) -> Bound {
    let file = crate::config::parse_mapping(std::path::Path::new("mappings/t.toml"), mapping).expect("mapping");
    let plan = crate::plan::compile(&[file]).expect("plan");
    let src: Vec<(&str, &str)> = source.iter().map(|n| (*n, "TEXT")).collect();
    let tgt: Vec<PgColumn> = target
        .iter()
        .map(|(n, ty, not_null)| PgColumn {
            name: n.to_string(),
            ty: ty.clone(),
            formatted: format!("{ty:?}"),
            not_null: *not_null,
            has_default: false,
            generated: false,
        })
        .collect();
    bind_without_databases(&plan.entities[0], &src, &tgt).expect("bound")
}

/// Binds `e` to source columns given as (name, declared type) and to `target`, as the
/// pre-flight would, without databases; the key is the mapping's, else the first column.
/// `Err` holds the pre-flight's problems.
#[cfg(test)]
pub(crate) fn bind_without_databases(
    e: &Entity,
    source: &[(&str, &str)],
    target: &[PgColumn],
) -> Result<Bound, Vec<String>> {
    let src: Vec<SourceColumn> = source
        .iter()
        .map(|(n, declared)| SourceColumn {
            name: n.to_string(),
            declared_type: declared.to_string(),
            nullable: true,
        })
        .collect();
    let key = e.key.clone().unwrap_or_else(|| vec![source[0].0.to_string()]);
    let facts = SourceFacts {
        key: key.into_iter().map(Column::Named).collect(),
        ..Default::default()
    };
    let mut problems = Vec::new();
    match bind_one(0, e, &facts, &src, target, &mut problems) {
        Some(b) if problems.is_empty() => Ok(b),
        _ => Err(problems),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_compatibility() {
        assert_eq!(declared_kind("NUMBER(12,2)"), Produces::Decimal);
        assert_eq!(declared_kind("INTEGER"), Produces::Integer);
        assert_eq!(declared_kind("VARCHAR2(40)"), Produces::Text);
        assert_eq!(declared_kind(""), Produces::Any);
        assert!(compatible(Produces::Date, &PgType::Timestamp(6)).is_ok());
        assert!(compatible(Produces::Date, &PgType::Int4).is_err());
        assert!(compatible(Produces::Timestamp, &PgType::Date).is_err());
        assert!(
            compatible(Produces::Bool, &PgType::Date)
                .unwrap_err()
                .contains("bool value")
        );
        assert!(compatible(Produces::Text, &PgType::Date).is_ok());
    }

    #[test]
    fn a_row_is_encoded_through_its_transforms_or_names_the_failing_column() {
        let b = bound_for_test(
            "source = \"T\"\ntarget = \"t\"\n[[fields]]\nfrom = \"ID\"\nto = \"id\"\n[[fields]]\nfrom = \"NAME\"\nto = \"name\"\ntransform = [\"trim\", \"upper\"]\n[[fields]]\nto = \"src\"\nvalue = \"ABIS\"\n",
            &["ID", "NAME"],
            &[
                ("id", PgType::Int4, true),
                ("name", PgType::Varchar(Some(3)), true),
                ("src", PgType::Text, false),
            ],
        );
        let mut buf = vec![9];
        encode_row(&b, &[Value::Text("7".into()), Value::Text(" ab ".into())], &mut buf).unwrap();
        let (fields, len) = crate::sink::copy::split_tuple(&buf[1..]).unwrap().unwrap();
        assert_eq!(len, buf.len() - 1);
        assert_eq!(
            fields,
            vec![Some(&7i32.to_be_bytes()[..]), Some(&b"AB"[..]), Some(&b"ABIS"[..])]
        );
        // A failure leaves the buffer as it was and names the column.
        let before = buf.clone();
        let e = encode_row(&b, &[Value::Text("8".into()), Value::Text(" abcd ".into())], &mut buf).unwrap_err();
        assert_eq!(e.0, "name");
        assert!(e.1.contains("longer than varchar(3)"), "{e:?}");
        assert_eq!(buf, before);
        let e = encode_row(&b, &[Value::Text("9".into()), Value::Null], &mut buf).unwrap_err();
        assert_eq!(e, ("name".into(), "NULL in NOT NULL column name".into()));
    }

    #[test]
    fn a_value_the_source_could_not_read_is_the_rows_reject_whatever_the_transforms() {
        let b = bound_for_test(
            "source = \"T\"\ntarget = \"t\"\n[[fields]]\nfrom = \"ID\"\nto = \"id\"\n[[fields]]\nfrom = \"D\"\nto = \"d\"\ntransform = [\"null_if_empty\"]\ndefault = \"2000-01-01\"\n",
            &["ID", "D"],
            &[("id", PgType::Int4, true), ("d", PgType::Text, false)],
        );
        let mut buf = Vec::new();
        let why = "Oracle date 1500-02-29 00:00:00 does not exist in the proleptic Gregorian calendar";
        let e = encode_row(&b, &[Value::Int(1), Value::Unreadable(why.into())], &mut buf).unwrap_err();
        assert_eq!(e, ("d".into(), why.into()));
        assert!(buf.is_empty());
        // The reject keeps what was said about it; a resume key round-trips it.
        let v = Value::Unreadable(why.into());
        assert_eq!(v.to_display_json()["unreadable"], why);
        assert_eq!(Value::from_tagged_json(&v.to_tagged_json()), Some(v.clone()));
        assert!(PgType::Date.encode(&v, &mut buf).unwrap_err().contains("1500-02-29"));
    }
}
