//! The run's entities, in order: dependency levels loaded side by side under `--jobs`, each
//! entity's setup (keys, indexes and foreign keys held for the load) and teardown (put back,
//! validated; sequences moved past the loaded keys), and a large entity split into key ranges.

use crate::bind::Bound;
use crate::checkpoint::{self, Progress};
use crate::error::Failed;
use crate::pipeline::{self, DEFAULT_BATCH, LoadCtx, Mode, Retry};
use crate::report::EntityStats;
use crate::sink;
use anyhow::{Context, Result};

/// The fewest rows an entity has for `--defer-indexes` to build its keys after the load: taking
/// a key off and building it again costs a few milliseconds (catalog changes, and an fsync of
/// the new index), about what keeping it costs over 20,000 rows.
pub(crate) const DEFER_KEY_MIN_ROWS: u64 = 50_000;

/// The fewest rows a part of a split entity gets.
pub(crate) const MIN_PART_ROWS: u64 = 25_000;

/// Checks that the run's own session (the holder of the run lock) is alive; replaces it and
/// takes the lock again if it was lost.
pub(crate) async fn keep_run_lock(conn: &mut sqlx::PgConnection, retry: &Retry) -> Result<()> {
    if let Err(cause) = sink::execute(conn, "SELECT 1", "checking the run's session").await {
        let lost = pipeline::PipelineError::Sink {
            entity: "run lock".into(),
            cause,
        };
        if !lost.is_connection_lost() {
            return Err(lost.into());
        }
        let mut attempt = 0;
        pipeline::reconnect(conn, retry, &mut attempt, "run lock", &lost).await?;
    }
    Ok(())
}

/// `--jobs` by default: the machine's cores.
pub(crate) fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The entities in groups that can load side by side: each group's dependencies (among the
/// selected entities) are all in earlier groups; each with its position in the plan.
pub(crate) fn dependency_levels(bound: &[Bound]) -> Vec<Vec<(usize, &Bound)>> {
    let mut level: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    let mut levels: Vec<Vec<(usize, &Bound)>> = Vec::new();
    // `bound` is in dependency order, so every dependency's level is known when it is needed.
    for (i, b) in bound.iter().enumerate() {
        let l = b
            .entity
            .depends_on
            .iter()
            .filter_map(|d| level.get(d.as_str()))
            .map(|l| l + 1)
            .max()
            .unwrap_or(0);
        level.insert(&b.entity.name, l);
        if levels.len() <= l {
            levels.resize_with(l + 1, Vec::new);
        }
        levels[l].push((i, b));
    }
    levels
}

/// Loads (or dry-runs) one entity on `conn`, from its committed progress.
/// Puts back what was held for `entity`, saying what it took.
pub(crate) async fn restore(conn: &mut sqlx::PgConnection, entity: &str) -> Result<sink::Restored, sink::SinkError> {
    let r = sink::restore_held(conn, entity).await?;
    if r.indexes + r.foreign_keys + r.keys > 0 {
        tracing::info!(
            "{entity}: re-created {} primary/unique key(s), {} index(es) and {} foreign key(s) in {:.2}s",
            r.keys,
            r.indexes,
            r.foreign_keys,
            r.seconds
        );
    }
    for why in &r.not_valid {
        tracing::warn!("{entity}: {why}");
    }
    Ok(r)
}

/// A foreign key that cannot be validated after the load fails the run (it would otherwise
/// stay NOT VALID, and the target would accept what the constraint forbids).
pub(crate) fn fail_on_invalid(entity: &str, not_valid: &[String]) -> Result<()> {
    if not_valid.is_empty() {
        return Ok(());
    }
    Err(Failed(format!(
        "{entity}: {}. The rows are loaded, but the target's constraint does not hold for them: fix or delete them, then run the same command with --resume to validate it",
        not_valid.join("; ")
    ))
    .into())
}

/// Counts rows that a key built after the load moved to the rejects (the state table has them
/// already) in the run's state and its mirror.
pub(crate) fn moved_to_rejects(ctx: &LoadCtx<'_>, entity: &str, n: u64) -> Result<()> {
    let mut st = ctx.state.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = st.get_mut(entity) {
        p.rows_loaded -= n as i64;
        p.rows_rejected += n as i64;
    }
    ctx.mirror.write_behind(&st)?;
    Ok(())
}

/// The target columns that take the source key unchanged (no transform), when every key column
/// does and a duplicate would be an error (`on_conflict = "error"`): the primary and unique keys
/// that contain them cannot be broken by the load, so `--defer-indexes` builds them after it.
pub(crate) fn plain_key_columns(b: &Bound) -> Option<Vec<String>> {
    if b.entity.on_conflict != crate::config::OnConflict::Error {
        return None;
    }
    let fields = b.key_fields()?;
    fields
        .iter()
        .map(|&i| b.entity.fields[i].chain.is_empty().then(|| b.targets[i].name.clone()))
        .collect()
}

/// `share`: the rows one stream would load if the entity's dependency level were spread evenly;
/// a larger entity is split into key ranges.
/// `busy`: the target tables of the entities loading at the same time (the rest of its level).
pub(crate) async fn load_entity(
    ctx: &LoadCtx<'_>,
    b: &Bound,
    conn: &mut sqlx::PgConnection,
    share: u64,
    busy: &[String],
) -> Result<EntityStats> {
    let (dry, retry) = (ctx.dry, &ctx.retry);
    let e = &b.entity;
    let committed = if dry {
        None
    } else {
        ctx.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&e.name)
            .cloned()
    };
    let start = committed.unwrap_or_else(|| Progress::new(&e.name, &e.fingerprint, &e.target.display()));
    let mut checked = b;
    let with_fks;
    let plain_key = plain_key_columns(b).filter(|_| b.rows_in_scope >= DEFER_KEY_MIN_ROWS);
    if !dry {
        crate::on_target!(
            conn,
            retry,
            &e.name,
            sink::hold_for_load(
                conn,
                &e.target,
                &e.name,
                ctx.defer && !start.is_done(),
                plain_key.as_deref(),
                busy
            )
            .await
        )?;
        let fks = crate::on_target!(conn, retry, &e.name, sink::held_foreign_keys(conn, &e.target).await)?;
        if !fks.is_empty() {
            let mut b2 = b.clone();
            b2.loader.checked_fks = fks;
            with_fks = b2;
            checked = &with_fks;
        }
    }
    if start.is_done() {
        let mut start = start;
        let mut rebuild_seconds = 0.0;
        if !dry {
            let r = crate::on_target!(conn, retry, &e.name, restore(conn, &e.name).await)?;
            rebuild_seconds = r.seconds;
            if r.duplicates > 0 {
                start.rows_loaded -= r.duplicates as i64;
                start.rows_rejected += r.duplicates as i64;
                moved_to_rejects(ctx, &e.name, r.duplicates)?;
            }
            // A foreign key an earlier run could not validate is still held: tried again.
            fail_on_invalid(&e.name, &r.not_valid)?;
            crate::on_target!(conn, retry, &e.name, sink::mark_complete(conn, &e.target).await)?;
        }
        tracing::info!("{}: already done ({} rows loaded), skipping", e.name, start.rows_loaded);
        return Ok(EntityStats {
            rebuild_seconds,
            ..stats_of(b, &start, "already done")
        });
    }
    if start.rows_read > 0 {
        tracing::info!("{}: resuming after {} rows read", e.name, start.rows_read);
    } else if !dry && crate::on_target!(conn, retry, &e.name, crate::sync::needs_start(conn, e).await)? {
        let newest = crate::sync::newest(ctx.source, e).await?;
        crate::on_target!(conn, retry, &e.name, crate::sync::store_start(conn, e, &newest).await)?;
    }
    let batch = ctx.batch_size.or(e.batch_size).unwrap_or(DEFAULT_BATCH);
    let loaded = match if dry {
        None
    } else {
        plan_parts(ctx, checked, conn, &start, share).await?
    } {
        Some(parts) => load_parts(ctx, checked, conn, start, parts, batch).await,
        None => {
            let _permit = match ctx.streams {
                Some(s) => Some(s.acquire().await?),
                None => None,
            };
            let bar = ctx.bars.entity(&e.name, b.rows_in_scope, start.rows_read as u64);
            let mode = if dry {
                Mode::DryRun
            } else {
                Mode::Load {
                    conn: &mut *conn,
                    mirror: ctx.mirror,
                    state: &ctx.state,
                    retry,
                }
            };
            pipeline::run_entity(ctx.source, checked, start, batch, ctx.read_plan, mode, &bar).await
        }
    };
    if loaded.is_err() && ctx.defer && !dry {
        // Leave the target whole for whoever uses it next; a resume holds them again.
        if let Err(err) = restore(conn, &e.name).await {
            tracing::warn!(
                "{}: could not put back its held foreign keys and indexes ({:#}); they stay recorded in migrate.held_constraints and the next run restores them",
                e.name,
                anyhow::Error::from(err)
            );
        }
    }
    let mut s = loaded.with_context(|| {
        if dry {
            "dry run stopped".to_string()
        } else {
            format!(
                "migration stopped; every committed batch is kept: {}",
                crate::interrupt::resume_hint()
            )
        }
    })?;
    if !dry {
        let moved = crate::on_target!(conn, retry, &e.name, sink::advance_sequences(conn, &e.target).await)?;
        for (seq, value) in moved {
            tracing::info!("{}: sequence {seq} set to {value}, past the loaded keys", e.name);
        }
        let restored = crate::on_target!(conn, retry, &e.name, restore(conn, &e.name).await)?;
        s.rebuild_seconds = restored.seconds;
        if restored.duplicates > 0 {
            s.loaded -= restored.duplicates;
            s.rejected += restored.duplicates;
            moved_to_rejects(ctx, &e.name, restored.duplicates)?;
        }
        fail_on_invalid(&e.name, &restored.not_valid)?;
        // No more rows of this run go into the table: its children's checks may share its keys.
        crate::on_target!(conn, retry, &e.name, sink::mark_complete(conn, &e.target).await)?;
    }
    tracing::info!(
        "{}: {} read, {} loaded, {} rejected in {:.1}s",
        s.entity,
        s.read,
        s.loaded,
        s.rejected,
        s.seconds
    );
    Ok(s)
}

/// The parts a large entity loads in (their progress rows), or `None` to load it in one piece.
/// A split is decided once, when the entity starts, from every `step`-th key in the source, and
/// stored with the entity's row; a resume reuses it.
pub(crate) async fn plan_parts(
    ctx: &LoadCtx<'_>,
    b: &Bound,
    conn: &mut sqlx::PgConnection,
    start: &Progress,
    share: u64,
) -> Result<Option<Vec<Progress>>> {
    let e = &b.entity;
    let state = ctx.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let parts = checkpoint::parts_of(&state, &e.name);
    if !parts.is_empty() {
        return Ok(Some(parts));
    }
    // Ranges of at least MIN_PART_ROWS, no more than streams, and only as many as it takes to
    // bring the entity down to a stream's share (ranges of one table loading at once contend
    // for its indexes and its heap's end).
    let n = (b.rows_in_scope / MIN_PART_ROWS)
        .min(ctx.jobs as u64)
        .min(b.rows_in_scope.div_ceil(share.max(1)));
    if n < 2 || start.rows_read > 0 || b.spec.window.is_some() {
        return Ok(None);
    }
    let step = b.rows_in_scope.div_ceil(n);
    let spec = b.spec.clone();
    let wanted = n as usize - 1;
    let mut bounds = crate::source::with_source(ctx.source, move |s| s.split_keys(&spec, step, wanted))
        .await
        .with_context(|| format!("{}: finding where to split it", e.name))?;
    bounds.truncate(wanted);
    if bounds.is_empty() {
        return Ok(None);
    }
    let count = bounds.len() + 1;
    let parts: Vec<Progress> = (0..count)
        .map(|i| {
            let mut p = Progress::new(
                &checkpoint::part_name(&e.name, i + 1, count),
                &e.fingerprint,
                &e.target.display(),
            );
            p.last_key = i.checked_sub(1).map(|j| bounds[j].clone());
            p.until_key = bounds.get(i).cloned();
            p
        })
        .collect();
    let retry = &ctx.retry;
    crate::on_target!(conn, retry, &e.name, checkpoint::start_parts(conn, start, &parts).await)?;
    {
        let mut st = ctx.state.lock().unwrap_or_else(|e| e.into_inner());
        st.insert(e.name.clone(), start.clone());
        for p in &parts {
            st.insert(p.entity.clone(), p.clone());
        }
        ctx.mirror.write_behind(&st)?;
    }
    tracing::info!(
        "{}: {} rows in scope, loaded in {count} key ranges side by side",
        e.name,
        b.rows_in_scope
    );
    Ok(Some(parts))
}

/// Loads the parts of a split entity side by side, each on its own session and reader (one
/// stream permit each), then gives the entity its parts' sums and forgets them, in one
/// transaction. A part that fails lets the others finish; their rows stay committed.
pub(crate) async fn load_parts(
    ctx: &LoadCtx<'_>,
    b: &Bound,
    conn: &mut sqlx::PgConnection,
    start: Progress,
    parts: Vec<Progress>,
    batch: usize,
) -> Result<EntityStats, pipeline::PipelineError> {
    let e = &b.entity;
    let began = std::time::Instant::now();
    let count = parts.len();
    let per_part = b.rows_in_scope.div_ceil(count as u64);
    let retries = std::sync::atomic::AtomicU64::new(0);
    let retries = &retries;
    // The parts' sessions never hold the run lock (with --jobs 1 the context's retry would
    // take it again after a reconnection), and without --jobs streams (a resume with --jobs 1
    // of an entity split before) they load one after the other.
    let part_retry = Retry {
        relock: false,
        ..ctx.retry.clone()
    };
    let part_retry = &part_retry;
    let one = tokio::sync::Semaphore::new(1);
    let streams = ctx.streams.unwrap_or(&one);
    let loads = parts.into_iter().enumerate().map(|(i, p)| async move {
        if p.is_done() {
            return Ok(p);
        }
        let _permit = streams.acquire().await.ok();
        if p.rows_read > 0 {
            tracing::info!(
                "{}: resuming part {}/{count} after {} rows read",
                e.name,
                i + 1,
                p.rows_read
            );
        }
        let mut pb = b.clone();
        pb.spec.until = p.until_key.clone();
        let mut own = pipeline::open_session(&ctx.retry, &e.name).await?;
        let bar = ctx
            .bars
            .entity(&format!("{} {}/{count}", e.name, i + 1), per_part, p.rows_read as u64);
        let mode = Mode::Load {
            conn: &mut own,
            mirror: ctx.mirror,
            state: &ctx.state,
            retry: part_retry,
        };
        let mut done = p.clone();
        let s = pipeline::run_entity(ctx.source, &pb, p, batch, ctx.read_plan, mode, &bar).await?;
        // What the part committed (its own rows only).
        done.rows_read = s.read as i64;
        done.rows_loaded = s.loaded as i64;
        done.rows_rejected = s.rejected as i64;
        done.rows_kept_out = s.kept_out as i64;
        done.rows_merged = s.merged as i64;
        done.status = "done".into();
        retries.fetch_add(s.retries, std::sync::atomic::Ordering::Relaxed);
        Ok(done)
    });
    let results = futures_util::future::join_all(loads).await;
    let mut done = Vec::with_capacity(count);
    let mut first_error = None;
    for r in results {
        match r {
            Ok(p) => done.push(p),
            // A stop request or a lost target says the most; keep the first of the others.
            Err(err) if first_error.is_none() => first_error = Some(err),
            Err(_) => {}
        }
    }
    if let Some(err) = first_error {
        return Err(err);
    }
    let mut whole = start;
    whole.rows_read = done.iter().map(|p| p.rows_read).sum();
    pipeline::check_all_read(&e.name, whole.rows_read as u64, b.rows_in_scope)?;
    whole.rows_loaded = done.iter().map(|p| p.rows_loaded).sum();
    whole.rows_rejected = done.iter().map(|p| p.rows_rejected).sum();
    whole.rows_kept_out = done.iter().map(|p| p.rows_kept_out).sum();
    whole.rows_merged = done.iter().map(|p| p.rows_merged).sum();
    whole.last_key = None;
    whole.status = "done".into();
    let retry = &ctx.retry;
    crate::on_target!(conn, retry, &e.name, checkpoint::finish_parts(conn, &whole).await)?;
    {
        let mut st = ctx.state.lock().unwrap_or_else(|e| e.into_inner());
        let prefix = format!("{}#", e.name);
        st.retain(|k, _| !k.starts_with(&prefix));
        st.insert(e.name.clone(), whole.clone());
        ctx.mirror
            .write_behind(&st)
            .map_err(|cause| pipeline::PipelineError::State {
                entity: e.name.clone(),
                cause,
            })?;
    }
    ctx.mirror.flush().map_err(|cause| pipeline::PipelineError::State {
        entity: e.name.clone(),
        cause,
    })?;
    let seconds = began.elapsed().as_secs_f64();
    Ok(EntityStats {
        seconds,
        rows_per_sec: whole.rows_read as f64 / seconds.max(1e-6),
        retries: retries.load(std::sync::atomic::Ordering::Relaxed),
        ..stats_of(b, &whole, "done")
    })
}

/// An entity's summary line from its committed progress.
pub(crate) fn stats_of(b: &Bound, p: &Progress, status: &str) -> EntityStats {
    EntityStats {
        entity: b.entity.name.clone(),
        source_rows: b.rows_in_scope,
        skipped_by_where: b.skipped_by_where,
        read: p.rows_read as u64,
        loaded: p.rows_loaded as u64,
        rejected: p.rows_rejected as u64,
        kept_out: p.rows_kept_out as u64,
        merged: p.rows_merged as u64,
        status: status.into(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bind::bound_for_test;
    use crate::sink::pgtype::PgType;

    fn entity(name: &str, extra: &str) -> Bound {
        let mut b = bound_for_test(
            &format!(
                "name = \"{name}\"\nsource = \"T\"\ntarget = \"t\"\n{extra}\n[[fields]]\nfrom = \"ID\"\nto = \"id\"\n[[fields]]\nfrom = \"V\"\nto = \"v\"\ntransform = [\"trim\"]\n"
            ),
            &["ID", "V"],
            &[("id", PgType::Int8, true), ("v", PgType::Text, false)],
        );
        // Dependencies on entities outside this one-file plan are set by hand.
        if let Some(d) = extra.strip_prefix("#deps ") {
            b.entity.depends_on = d.split(',').map(str::to_string).collect();
        }
        b
    }

    #[test]
    fn entities_run_in_levels_of_their_dependencies() {
        let bound = vec![
            entity("a", ""),
            entity("b", ""),
            entity("c", "#deps a"),
            entity("d", "#deps c,b"),
            entity("e", "#deps a"),
        ];
        let levels: Vec<Vec<&str>> = dependency_levels(&bound)
            .iter()
            .map(|l| l.iter().map(|(_, b)| b.entity.name.as_str()).collect())
            .collect();
        assert_eq!(levels, vec![vec!["a", "b"], vec!["c", "e"], vec!["d"]]);
    }

    #[test]
    fn only_a_key_copied_unchanged_is_built_after_the_load() {
        assert_eq!(plain_key_columns(&entity("a", "")), Some(vec!["id".to_string()]));
        // A transformed key could collide; a merge needs the key in place.
        assert_eq!(plain_key_columns(&entity("b", "key = [\"V\"]")), None);
        assert_eq!(plain_key_columns(&entity("c", "on_conflict = \"skip\"")), None);
    }
}
