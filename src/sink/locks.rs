//! Lock waits made visible. Every session of a run has `lock_timeout` set to `--lock-wait`, so
//! a statement that waits for a lock another session holds (a `LOCK TABLE`, an open
//! `ALTER TABLE`, a long transaction) fails instead of waiting forever; meanwhile a watcher
//! on a session of its own looks every second for the run's sessions that wait for a lock,
//! and says which table waits on which backend (its pid, state and the first words of its
//! query) after a few seconds, and again in the error when the wait runs out.

use sqlx::PgConnection;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Milliseconds a statement may wait for a lock (0: no limit), for every session connected.
static LOCK_WAIT_MS: AtomicU64 = AtomicU64::new(0);

/// Seconds of waiting before the watcher says so in the log.
const TELL_AFTER_SECS: f64 = 3.0;

/// Sets how long every session connected from now on waits for a lock.
pub fn set_lock_wait(secs: u64) {
    LOCK_WAIT_MS.store(secs.saturating_mul(1000), Ordering::Relaxed);
}

/// The `lock_timeout` setting for a new session, when one is set.
pub fn lock_timeout_setting() -> Option<String> {
    match LOCK_WAIT_MS.load(Ordering::Relaxed) {
        0 => None,
        ms => Some(format!("{ms}ms")),
    }
}

/// Whether a statement gave up waiting for a lock (SQLSTATE 55P03).
pub fn is_lock_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    use crate::sqlstate::{SqlState, is};
    std::iter::successors(Some(e), |e| e.source()).any(|c| {
        c.downcast_ref::<sqlx::Error>()
            .is_some_and(|e| is(e, SqlState::LOCK_NOT_AVAILABLE))
    })
}

/// One wait as the watcher saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Wait {
    pub waiter: i32,
    pub table: String,
    pub holder: i32,
    pub holder_state: String,
    pub holder_query: String,
    pub seconds: f64,
}

impl Wait {
    pub fn describe(&self) -> String {
        format!(
            "{} waits for a lock held by backend {} ({}: {})",
            self.table, self.holder, self.holder_state, self.holder_query
        )
    }
}

/// The run's sessions that wait for a lock, with who holds it: this database's sessions named
/// `migrate`, other than the watcher's own.
const WAITS: &str = "SELECT a.pid, coalesce((SELECT string_agg(DISTINCT l.relation::regclass::text, ', ')
            FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted AND l.relation IS NOT NULL), 'a target table'),
        b.pid, coalesce(b.state, '?'),
        left(regexp_replace(coalesce(b.query, ''), '\\s+', ' ', 'g'), 60),
        extract(epoch FROM now() - a.query_start)::float8
    FROM pg_stat_activity a
    CROSS JOIN LATERAL unnest(pg_blocking_pids(a.pid)) AS h(pid)
    JOIN pg_stat_activity b ON b.pid = h.pid
    WHERE a.datname = current_database() AND a.application_name = 'migrate'
      AND a.pid <> pg_backend_pid() AND a.wait_event_type = 'Lock'";

/// Reads the current waits.
pub async fn waits(conn: &mut PgConnection) -> Result<Vec<Wait>, sqlx::Error> {
    let rows: Vec<(i32, String, i32, String, String, f64)> = sqlx::query_as(WAITS).fetch_all(&mut *conn).await?;
    Ok(rows
        .into_iter()
        .map(|(waiter, table, holder, holder_state, holder_query, seconds)| Wait {
            waiter,
            table,
            holder,
            holder_state,
            holder_query,
            seconds,
        })
        .collect())
}

/// The watcher of a run: stopped when dropped.
pub struct LockWatch {
    task: tokio::task::JoinHandle<()>,
    last: Arc<Mutex<Option<Wait>>>,
}

impl LockWatch {
    /// Starts watching on a session of its own; `None` when it cannot connect (the run goes on:
    /// `lock_timeout` still stops a wait).
    pub async fn start(target: &str, wait_secs: u64) -> Option<LockWatch> {
        let mut conn = super::connect(target).await.ok()?;
        let last: Arc<Mutex<Option<Wait>>> = Arc::default();
        let seen = last.clone();
        let task = tokio::spawn(async move {
            let mut told: Vec<(i32, i32)> = Vec::new();
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let Ok(now) = waits(&mut conn).await else { return };
                for w in &now {
                    if w.seconds >= TELL_AFTER_SECS && !told.contains(&(w.waiter, w.holder)) {
                        told.push((w.waiter, w.holder));
                        tracing::warn!(
                            "{} for {:.0}s; the run stops after --lock-wait {wait_secs}s",
                            w.describe(),
                            w.seconds
                        );
                    }
                }
                if let Some(w) = now.into_iter().next() {
                    *seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(w);
                }
            }
        });
        Some(LockWatch { task, last })
    }

    /// The last wait seen, if any.
    pub fn last(&self) -> Option<Wait> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The error for a run that gave up waiting for a lock: which table waited on which
    /// backend, and what to do.
    pub fn explain(watch: Option<&LockWatch>, wait_secs: u64) -> String {
        let what = watch
            .and_then(LockWatch::last)
            .map(|w| w.describe())
            .unwrap_or_else(|| "a target table is locked by another session".into());
        format!(
            "stopped after waiting {wait_secs}s (--lock-wait) for a lock: {what}. Every committed batch is kept: once that session ends or commits, run the same command with --resume (or give it longer with --lock-wait SECS)"
        )
    }
}

impl Drop for LockWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
