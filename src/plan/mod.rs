//! Validated, compiled mappings (pure, no I/O): each entity's source, target, key, fields with
//! compiled transform chains, and the dependency order. Unknown `depends_on` entries and cycles
//! are errors that name the entities involved.

use crate::config::{Deletes, MappingErrors, MappingFile, OnConflict, Problem};
use crate::transform::{Chain, Step, toml_to_value};
use crate::value::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Where an entity's rows come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relation {
    Table(String),
    Query(String),
}

impl Relation {
    pub fn describe(&self) -> String {
        match self {
            Relation::Table(t) => t.clone(),
            Relation::Query(_) => "(query)".to_string(),
        }
    }
}

/// A target table, optionally schema-qualified (`schema.table`, split on the first dot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetTable {
    pub schema: Option<String>,
    pub name: String,
}

impl TargetTable {
    pub fn parse(s: &str) -> TargetTable {
        match s.split_once('.') {
            Some((schema, name)) if !schema.is_empty() && !name.is_empty() => TargetTable {
                schema: Some(schema.to_string()),
                name: name.to_string(),
            },
            _ => TargetTable {
                schema: None,
                name: s.to_string(),
            },
        }
    }

    /// The table as quoted SQL: `"schema"."name"` or `"name"`.
    pub fn sql(&self) -> String {
        match &self.schema {
            Some(s) => format!("{}.{}", quote_ident(s), quote_ident(&self.name)),
            None => quote_ident(&self.name),
        }
    }

    pub fn display(&self) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// Quotes an identifier for PostgreSQL, SQLite and Oracle alike: `"a""b"`.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[derive(Debug, Clone)]
pub struct FieldPlan {
    /// Source column, or `None` for a constant.
    pub from: Option<String>,
    pub to: String,
    pub chain: Chain,
    pub default: Option<Value>,
    pub constant: Option<Value>,
}

#[derive(Debug, Clone)]
pub struct Entity {
    pub name: String,
    pub file: PathBuf,
    pub fingerprint: String,
    pub relation: Relation,
    pub target: TargetTable,
    /// Explicit key; `None` means the source's primary key, else its row id.
    pub key: Option<Vec<String>>,
    pub depends_on: Vec<String>,
    pub filter: Option<String>,
    pub on_conflict: OnConflict,
    pub incremental: Option<String>,
    pub deletes: Deletes,
    pub soft_delete_column: Option<String>,
    pub overlap: Option<u64>,
    pub batch_size: Option<usize>,
    pub fields: Vec<FieldPlan>,
}

/// Entities in dependency order.
#[derive(Debug, Clone)]
pub struct Plan {
    pub entities: Vec<Entity>,
}

impl Plan {
    pub fn entity(&self, name: &str) -> Option<&Entity> {
        self.entities.iter().find(|e| e.name == name)
    }

    /// Every entity `name` depends on, directly or not, in dependency order.
    pub fn ancestors(&self, name: &str) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![name.to_string()];
        while let Some(n) = stack.pop() {
            if let Some(e) = self.entity(&n) {
                for d in &e.depends_on {
                    if seen.insert(d.clone()) {
                        stack.push(d.clone());
                    }
                }
            }
        }
        self.entities
            .iter()
            .filter(|e| seen.contains(&e.name))
            .map(|e| e.name.clone())
            .collect()
    }
}

/// Compiles parsed mapping files into a plan; every problem of every file is collected.
pub fn compile(files: &[MappingFile]) -> Result<Plan, MappingErrors> {
    compile_with(files, &[])
}

/// [`compile`], where `broken` names the entities of files that did not parse (they exist, so
/// depending on them is no problem of its own).
pub fn compile_with(files: &[MappingFile], broken: &[String]) -> Result<Plan, MappingErrors> {
    let mut problems = Vec::new();
    let mut entities = Vec::new();
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for f in files {
        let name = f.entity();
        if let Some(other) = seen.get(&name) {
            problems.push(f.problem(0, format!("entity '{name}' is already defined in {}", other.display())));
            continue;
        }
        seen.insert(name.clone(), f.path.clone());
        if let Some(e) = compile_one(f, name, &mut problems) {
            entities.push(e);
        }
    }
    // Dependencies must name known entities.
    let names: BTreeSet<String> = files
        .iter()
        .map(MappingFile::entity)
        .chain(broken.iter().cloned())
        .collect();
    for f in files {
        for d in &f.mapping.depends_on {
            if !names.contains(d.get_ref()) {
                problems.push(f.problem(
                    d.span().start,
                    format!(
                        "entity '{}' depends on unknown entity '{}' (known: {})",
                        f.entity(),
                        d.get_ref(),
                        names.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            } else if d.get_ref() == &f.entity() {
                problems.push(f.problem(d.span().start, format!("entity '{}' depends on itself", f.entity())));
            }
        }
    }
    if !problems.is_empty() {
        return Err(MappingErrors(problems));
    }
    match order(entities) {
        Ok(entities) => Ok(Plan { entities }),
        Err((cycle, file)) => Err(MappingErrors(vec![Problem {
            at: crate::config::Location {
                file,
                line: 1,
                column: 1,
            },
            message: format!("dependency cycle: {}", cycle.join(" → ")),
        }])),
    }
}

fn compile_one(f: &MappingFile, name: String, problems: &mut Vec<Problem>) -> Option<Entity> {
    let m = &f.mapping;
    let before = problems.len();
    let relation = match (&m.source, &m.query) {
        (Some(s), None) if !s.get_ref().trim().is_empty() => Some(Relation::Table(s.get_ref().clone())),
        (None, Some(q)) if !q.get_ref().trim().is_empty() => Some(Relation::Query(q.get_ref().clone())),
        (Some(s), Some(_)) => {
            problems.push(f.problem(s.span().start, "give either 'source' (a table) or 'query', not both"));
            None
        }
        (Some(s), None) => {
            problems.push(f.problem(s.span().start, "'source' is empty"));
            None
        }
        (None, Some(q)) => {
            problems.push(f.problem(q.span().start, "'query' is empty"));
            None
        }
        (None, None) => {
            problems.push(f.problem(0, "missing 'source' (the source table) or 'query'"));
            None
        }
    };
    if m.target.get_ref().trim().is_empty() {
        problems.push(f.problem(m.target.span().start, "'target' is empty"));
    }
    if let Some(k) = &m.key
        && k.get_ref().is_empty()
    {
        problems.push(f.problem(
            k.span().start,
            "'key' is empty; omit it to use the source's primary key",
        ));
    }
    if matches!(relation, Some(Relation::Query(_))) && m.key.is_none() {
        problems.push(f.problem(
            0,
            "a 'query' source needs an explicit 'key' (unique, non-null columns of the query) to order and resume by",
        ));
    }
    if let Some(b) = &m.batch_size
        && *b.get_ref() == 0
    {
        problems.push(f.problem(b.span().start, "'batch_size' must be at least 1"));
    }
    if m.fields.is_empty() {
        problems.push(f.problem(0, "no [[fields]]: a mapping needs at least one field"));
    }
    if let Some(i) = &m.incremental {
        if i.get_ref().trim().is_empty() {
            problems.push(f.problem(
                i.span().start,
                "'incremental' is empty: name the source column that grows when a row changes",
            ));
        } else if m.on_conflict == OnConflict::Skip {
            problems.push(f.problem(
                i.span().start,
                "an 'incremental' entity cannot use on_conflict = \"skip\": `migrate sync` updates changed rows by key (use \"error\" for a full load into empty tables, or \"update\")",
            ));
        }
    }
    if m.deletes != Deletes::Off && m.incremental.is_none() {
        problems.push(f.problem(
            0,
            "'deletes' is for incremental entities: add incremental = \"<column>\"",
        ));
    }
    match (&m.deletes, &m.soft_delete_column) {
        (Deletes::Soft, None) => problems.push(f.problem(
            0,
            "deletes = \"soft\" needs soft_delete_column = \"<target column>\" (a boolean or timestamp column to flag)",
        )),
        (Deletes::Off | Deletes::Detect, Some(c)) => problems.push(f.problem(
            c.span().start,
            "'soft_delete_column' is only used with deletes = \"soft\"",
        )),
        _ => {}
    }
    let mut fields = Vec::new();
    let mut targets = BTreeSet::new();
    for sf in &m.fields {
        let at = sf.span().start;
        let fd = sf.get_ref();
        if !targets.insert(fd.to.clone()) {
            problems.push(f.problem(at, format!("target column '{}' is mapped twice", fd.to)));
        }
        let constant = match (&fd.from, &fd.value) {
            (Some(_), Some(_)) => {
                problems.push(f.problem(at, format!("field '{}': give 'from' or 'value', not both", fd.to)));
                None
            }
            (None, None) => {
                problems.push(f.problem(
                    at,
                    format!(
                        "field '{}': needs 'from' (a source column) or 'value' (a constant)",
                        fd.to
                    ),
                ));
                None
            }
            (None, Some(v)) => match toml_to_value(v) {
                Ok(v) => Some(v),
                Err(e) => {
                    problems.push(f.problem(at, format!("field '{}': value: {e}", fd.to)));
                    None
                }
            },
            (Some(_), None) => None,
        };
        let default = match &fd.default {
            Some(v) => match toml_to_value(v) {
                Ok(v) => Some(v),
                Err(e) => {
                    problems.push(f.problem(at, format!("field '{}': default: {e}", fd.to)));
                    None
                }
            },
            None => None,
        };
        let mut steps = Vec::new();
        for st in &fd.transform {
            match Step::compile(st.get_ref()) {
                Ok(s) => steps.push(s),
                Err(e) => problems.push(f.problem(st.span().start, format!("field '{}': {e}", fd.to))),
            }
        }
        fields.push(FieldPlan {
            from: fd.from.clone(),
            to: fd.to.clone(),
            chain: Chain(steps),
            default,
            constant,
        });
    }
    if problems.len() > before {
        return None;
    }
    Some(Entity {
        name,
        file: f.path.clone(),
        fingerprint: f.fingerprint(),
        relation: relation?,
        target: TargetTable::parse(m.target.get_ref().trim()),
        key: m.key.as_ref().map(|k| k.get_ref().clone()),
        depends_on: m.depends_on.iter().map(|d| d.get_ref().clone()).collect(),
        filter: m.filter.as_ref().map(|w| w.get_ref().clone()),
        on_conflict: m.on_conflict,
        incremental: m.incremental.as_ref().map(|i| i.get_ref().clone()),
        deletes: m.deletes,
        soft_delete_column: m.soft_delete_column.as_ref().map(|c| c.get_ref().clone()),
        overlap: m.overlap.as_ref().map(|o| *o.get_ref()),
        batch_size: m.batch_size.as_ref().map(|b| *b.get_ref()),
        fields,
    })
}

/// Kahn's algorithm, ready entities taken by name so the order is stable. On a cycle, returns
/// the entities of one cycle and the file of its first member.
fn order(entities: Vec<Entity>) -> Result<Vec<Entity>, (Vec<String>, PathBuf)> {
    let mut remaining: BTreeMap<String, Entity> = entities.into_iter().map(|e| (e.name.clone(), e)).collect();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    loop {
        let ready: Vec<String> = remaining
            .values()
            .filter(|e| e.depends_on.iter().all(|d| done.contains(d)))
            .map(|e| e.name.clone())
            .collect();
        if ready.is_empty() {
            break;
        }
        for n in ready {
            let e = remaining.remove(&n).expect("present");
            done.insert(n);
            out.push(e);
        }
    }
    if remaining.is_empty() {
        return Ok(out);
    }
    // Walk dependencies among the remaining entities until one repeats: that is a cycle.
    let start = remaining.keys().next().cloned().expect("non-empty");
    let mut path = vec![start.clone()];
    let mut cur = start;
    loop {
        let next = remaining[&cur]
            .depends_on
            .iter()
            .find(|d| remaining.contains_key(*d))
            .cloned()
            .expect("in a cycle");
        if let Some(pos) = path.iter().position(|p| *p == next) {
            let mut cycle = path[pos..].to_vec();
            cycle.push(next);
            let file = remaining[&cycle[0]].file.clone();
            return Err((cycle, file));
        }
        path.push(next.clone());
        cur = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_mapping;
    use std::path::Path;

    fn file(name: &str, deps: &[&str]) -> MappingFile {
        let deps = deps.iter().map(|d| format!("\"{d}\"")).collect::<Vec<_>>().join(", ");
        let text = format!(
            "source = \"T_{name}\"\ntarget = \"{name}\"\ndepends_on = [{deps}]\n[[fields]]\nfrom = \"ID\"\nto = \"id\"\n"
        );
        parse_mapping(Path::new(&format!("mappings/{name}.toml")), &text).unwrap()
    }

    #[test]
    fn orders_by_dependencies() {
        let files = vec![
            file("shipment", &["customer", "skid"]),
            file("skid", &["job"]),
            file("job", &["coil"]),
            file("coil", &["customer"]),
            file("customer", &[]),
        ];
        let plan = compile(&files).unwrap();
        let names: Vec<_> = plan.entities.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["customer", "coil", "job", "skid", "shipment"]);
        assert_eq!(plan.ancestors("skid"), ["customer", "coil", "job"]);
        assert!(plan.ancestors("customer").is_empty());
    }

    #[test]
    fn cycle_names_the_entities() {
        let files = vec![file("a", &["c"]), file("b", &["a"]), file("c", &["b"]), file("d", &[])];
        let err = compile(&files).unwrap_err().to_string();
        assert!(err.contains("dependency cycle: a → c → b → a"), "{err}");
    }

    #[test]
    fn unknown_and_self_dependencies() {
        let err = compile(&[file("a", &["nope"]), file("b", &["b"])]).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.0.len(), 2, "{text}");
        assert!(text.contains("depends on unknown entity 'nope'"), "{text}");
        assert!(text.contains("mappings/a.toml: line 3"), "{text}");
        assert!(text.contains("depends on itself"), "{text}");
    }

    #[test]
    fn field_problems_are_all_reported_with_lines() {
        let text = "source = \"T\"\ntarget = \"t\"\n[[fields]]\nfrom = \"A\"\nto = \"a\"\ntransform = [\"trim\", \"tirm\"]\n[[fields]]\nto = \"b\"\n[[fields]]\nfrom = \"C\"\nto = \"a\"\ntransform = [{ date = \"QQ\" }]\n";
        let f = parse_mapping(Path::new("m/x.toml"), text).unwrap();
        let err = compile(&[f]).unwrap_err();
        let msgs: Vec<String> = err.0.iter().map(|p| p.to_string()).collect();
        assert_eq!(msgs.len(), 4, "{msgs:#?}");
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("m/x.toml: line 6, column 22: field 'a': unknown transform 'tirm'")),
            "{msgs:#?}"
        );
        assert!(msgs.iter().any(|m| m.contains("needs 'from'")));
        assert!(msgs.iter().any(|m| m.contains("mapped twice")));
        assert!(msgs.iter().any(|m| m.contains("unknown element 'QQ'")));
    }

    #[test]
    fn query_needs_key_and_target_quoting() {
        let f = parse_mapping(
            Path::new("q.toml"),
            "query = \"SELECT 1 AS X\"\ntarget = \"s.t\"\n[[fields]]\nfrom=\"X\"\nto=\"x\"\n",
        )
        .unwrap();
        assert!(compile(&[f]).unwrap_err().to_string().contains("explicit 'key'"));
        assert_eq!(TargetTable::parse("public.User Name").sql(), "\"public\".\"User Name\"");
        assert_eq!(TargetTable::parse("a\"b").sql(), "\"a\"\"b\"");
        assert_eq!(quote_ident("ORDER"), "\"ORDER\"");
    }
}
