//! Post-load validation: per entity, source rows in scope = loaded + rejected, the state says
//! done, the rejects table holds what the state counted, and the target holds what was loaded;
//! then every foreign key of the loaded tables is checked for orphans (with sample keys).

use crate::checkpoint::Progress;
use crate::config::OnConflict;
use crate::plan::{Entity, TargetTable};
use crate::sink::{self, SinkError};
use serde::Serialize;
use sqlx::PgConnection;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct EntityCheck {
    pub entity: String,
    pub source_rows: u64,
    pub loaded: i64,
    pub rejected: i64,
    /// Kept out by the target without an error, or merged into rows already there.
    pub kept_out: i64,
    pub target_rows: i64,
    pub ok: bool,
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrphanCheck {
    pub table: String,
    pub constraint: String,
    pub orphans: i64,
    pub samples: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    pub entities: Vec<EntityCheck>,
    pub foreign_keys: Vec<OrphanCheck>,
    /// `--deep`: the row-by-row comparison per entity (empty without it).
    pub deep: Vec<crate::validate::deep::DeepCheck>,
    pub ok: bool,
}

impl Validation {
    /// The verdict for one entity: its counts and, when run, its rows.
    pub fn entity_ok(&self, entity: &str) -> Option<bool> {
        let counts = self.entities.iter().find(|c| c.entity == entity)?.ok;
        let rows = self.deep.iter().find(|d| d.entity == entity).is_none_or(|d| d.ok);
        Some(counts && rows)
    }
}

pub async fn validate(
    conn: &mut PgConnection,
    entities: &[(&Entity, u64)],
    state: &BTreeMap<String, Progress>,
) -> Result<Validation, SinkError> {
    let mut checks = Vec::new();
    for (e, source_rows) in entities {
        let mut problems = Vec::new();
        let target_rows = match sink::table_columns(conn, &e.target).await? {
            Some(_) => {
                for s in sink::owned_sequences(conn, &e.target).await? {
                    if s.is_behind() {
                        problems.push(format!(
                            "sequence {} of column {} would give {} next, but the table already holds {}: the next insert fails on a duplicate key (a finished migrate run sets it; or SELECT setval('{}', {}))",
                            s.sequence,
                            s.column,
                            s.next,
                            s.max.unwrap_or_default(),
                            s.sequence,
                            s.max.unwrap_or_default()
                        ));
                    }
                }
                sink::count_rows(conn, &e.target).await?
            }
            None => {
                problems.push(format!("target table {} does not exist", e.target.display()));
                0
            }
        };
        // After `migrate sync` passes, the target is the truth: its rows (flagged rows left
        // out) and today's rejects must add up to the source.
        // PostgreSQL resolves every table of a statement before running it: the sync state is
        // read only once it is known to exist (before any load, it does not).
        let sync_err = |cause| SinkError::Query {
            what: "reading the sync state".into(),
            cause,
        };
        let has_sync_state: bool = sqlx::query_scalar("SELECT to_regclass('migrate.sync_state') IS NOT NULL")
            .fetch_one(&mut *conn)
            .await
            .map_err(sync_err)?;
        let synced: bool = if has_sync_state {
            sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM migrate.sync_state WHERE entity = $1 AND last_pass_at IS NOT NULL)",
            )
            .bind(&e.name)
            .fetch_one(&mut *conn)
            .await
            .map_err(sync_err)?
        } else {
            false
        };
        if synced && state.get(&e.name).is_some_and(Progress::is_done) {
            let filter = crate::validate::deep::soft_delete_filter(conn, e)
                .await
                .ok()
                .flatten()
                .map(|f| format!(" WHERE {f}"))
                .unwrap_or_default();
            let count = |sql: String| sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
            let q_err = |cause| SinkError::Query {
                what: format!("counting rows of {}", e.target.display()),
                cause,
            };
            let live = count(format!("SELECT count(*) FROM {}{filter}", e.target.sql()))
                .fetch_one(&mut *conn)
                .await
                .map_err(q_err)?;
            let rejected = count(format!(
                "SELECT count(*) FROM migrate.rejects WHERE entity = {}",
                crate::checkpoint::literal(&e.name)
            ))
            .fetch_one(&mut *conn)
            .await
            .map_err(q_err)?;
            if *source_rows as i64 != live + rejected {
                problems.push(format!(
                    "source has {source_rows} rows in scope but the target holds {live} (kept in sync by `migrate sync`) + rejected {rejected} = {}",
                    live + rejected
                ));
            }
            checks.push(EntityCheck {
                entity: e.name.clone(),
                source_rows: *source_rows,
                loaded: live,
                rejected,
                kept_out: 0,
                target_rows,
                ok: problems.is_empty(),
                problems,
            });
            continue;
        }
        let kept_out = state.get(&e.name).map_or(0, |p| p.rows_kept_out + p.rows_merged);
        let (loaded, rejected) = match state.get(&e.name) {
            Some(p) => {
                if !p.is_done() {
                    problems.push(format!(
                        "the load of {} is not finished (status {}); run with --resume",
                        e.name, p.status
                    ));
                }
                (p.rows_loaded, p.rows_rejected)
            }
            None => {
                problems.push(format!(
                    "{} has not been migrated (no progress in migrate.progress)",
                    e.name
                ));
                (0, 0)
            }
        };
        if state.contains_key(&e.name) {
            let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM migrate.rejects WHERE entity = $1")
                .bind(&e.name)
                .fetch_one(&mut *conn)
                .await
                .map_err(|cause| SinkError::Query {
                    what: "counting rejects".into(),
                    cause,
                })?;
            if stored != rejected {
                problems.push(format!(
                    "migrate.rejects holds {stored} rows for {} but the progress counted {rejected}",
                    e.name
                ));
            }
            if *source_rows as i64 != loaded + rejected + kept_out {
                problems.push(format!(
                    "source has {source_rows} rows in scope but loaded {loaded} + rejected {rejected} + kept out or merged by the target {kept_out} = {}",
                    loaded + rejected + kept_out
                ));
            }
            if e.on_conflict == OnConflict::Error && target_rows != loaded {
                problems.push(format!(
                    "target {} has {target_rows} rows but {loaded} were loaded",
                    e.target.display()
                ));
            }
        }
        checks.push(EntityCheck {
            entity: e.name.clone(),
            source_rows: *source_rows,
            loaded,
            rejected,
            kept_out,
            target_rows,
            ok: problems.is_empty(),
            problems,
        });
    }
    let mut fks = Vec::new();
    for (e, _) in entities {
        fks.extend(orphans(conn, &e.target).await?);
    }
    let ok = checks.iter().all(|c| c.ok) && fks.iter().all(|f| f.orphans == 0);
    Ok(Validation {
        entities: checks,
        foreign_keys: fks,
        deep: Vec::new(),
        ok,
    })
}

/// Orphan rows for each foreign key of `table` (rows whose non-null reference has no parent).
async fn orphans(conn: &mut PgConnection, table: &TargetTable) -> Result<Vec<OrphanCheck>, SinkError> {
    let mut out = Vec::new();
    for fk in sink::foreign_keys(conn, table).await? {
        let (count, samples) = sink::orphan_rows(conn, table, &fk).await?;
        out.push(OrphanCheck {
            table: table.display(),
            constraint: fk.name.clone(),
            orphans: count,
            samples,
        });
    }
    Ok(out)
}
