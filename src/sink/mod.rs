//! The PostgreSQL sink: connecting, the target's catalog, binary COPY, loading a batch and
//! isolating the rows PostgreSQL refuses, the keys and constraints held for a load, and the
//! parent check. Its files, by job:
//! - `catalog.rs`: columns with exact types, keys, foreign keys, sequences, truncate;
//! - `copy.rs`: the binary COPY framing and sending;
//! - `load.rs`: one batch in (COPY or staged upsert), counts from PostgreSQL, refused rows;
//! - `held.rs`: keys, indexes and foreign keys off a table for its load, and back;
//! - `parents.rs`: rows checked for their parents before they are loaded;
//! - `previous.rs`: a sync pass's rejected rows lose their earlier version;
//! - `pgtype.rs`: each target type's exact encoding (`pgtype/time.rs`: dates and timestamps); `locks.rs`: lock waits made visible.
//!
//! Identifiers from mappings are quoted here and in `plan::quote_ident`; the state tables'
//! SQL (`checkpoint`) names only its own fixed tables.

mod catalog;
pub mod copy;
mod held;
mod load;
pub mod locks;
mod parents;
pub mod pgtype;
mod previous;
pub mod tls;

pub use catalog::{
    ForeignKeyInfo, OwnedSequence, PgColumn, advance_sequences, count_rows, foreign_keys, has_rows, orphan_rows,
    owned_sequences, table_columns, truncate, unique_keys,
};
pub use copy::{COPY_HEADER, Encoded};
pub use held::{Held, Restored, held_foreign_keys, hold_for_load, restore_held, validate_foreign_key};
pub use load::{LOAD_SAVEPOINT, Loaded, Loader, Refused, Stored, is_data_error, load, stored_after_copy};
pub use parents::{LOCAL_PARENT_BYTES, ParentCheck, forget_complete, mark_complete};
pub use previous::{Previous, remove_previous};

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, PgConnection};
use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot connect to target {url}")]
    Connect {
        url: String,
        #[source]
        cause: sqlx::Error,
    },
    #[error("target {what}")]
    Query {
        what: String,
        #[source]
        cause: sqlx::Error,
    },
    /// The target's state forbids the step; the text says why and what to do.
    #[error("{0}")]
    Refused(String),
}

impl SinkError {
    /// True when the connection itself is gone (server restarted, backend terminated, network
    /// cut): the work can be retried on a new connection.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            SinkError::Connect { .. } => true,
            SinkError::Query { cause, .. } => crate::sqlstate::connection_lost(cause),
            SinkError::Refused(_) => false,
        }
    }
}

pub(crate) fn q_err(what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> SinkError {
    let what = what.into();
    move |cause| SinkError::Query { what, cause }
}

pub async fn connect(url: &str) -> Result<PgConnection, SinkError> {
    let shown = crate::telemetry::redact_url(url);
    let opts = PgConnectOptions::from_str(url)
        .map_err(|cause| SinkError::Connect {
            url: shown.clone(),
            cause,
        })?
        .application_name("migrate")
        // Each batch still commits atomically with its progress row. Not waiting for the WAL
        // flush means a crash of the PostgreSQL *server* can forget the last few hundred ms of
        // commits, batches and progress together, so --resume loads them again.
        .options([("synchronous_commit", "off")])
        .log_statements(tracing::log::LevelFilter::Trace);
    // A statement waits for another session's lock at most `--lock-wait` (locks.rs).
    let opts = match locks::lock_timeout_setting() {
        Some(t) => opts.options([("lock_timeout", t.as_str())]),
        None => opts,
    };
    // The TLS handshake and the startup messages are small writes back to back: with Nagle's
    // algorithm each waits for the server's delayed ACK (measured: 90 ms per TLS connection on
    // loopback, which halved an identity load of 200,000 rows). sqlx has no hook on its socket,
    // so while it connects, a watcher sets TCP_NODELAY on the new socket as soon as it exists.
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let watching = watching.clone();
        std::thread::Builder::new()
            .name("nodelay".into())
            .spawn(move || {
                while watching.load(std::sync::atomic::Ordering::Relaxed) {
                    set_tcp_nodelay();
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
            })
            .ok()
    };
    let conn = opts.connect().await;
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    if let Some(w) = watcher {
        let _ = w.join();
    }
    let conn = conn.map_err(|cause| SinkError::Connect { url: shown, cause })?;
    set_tcp_nodelay();
    Ok(conn)
}

/// sqlx leaves Nagle's algorithm on. A COPY writes its data and then CopyDone back to back, so
/// each COPY would wait for the server's delayed ACK (about 40 ms on Linux): measured here as
/// 60 rows/s when batches split. sqlx has no hook for the socket, so after connecting, every
/// TCP socket of this process (they are all database connections) gets TCP_NODELAY.
#[cfg(target_os = "linux")]
fn set_tcp_nodelay() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in dir.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:"));
        if is_socket {
            let one: libc::c_int = 1;
            // SAFETY: setsockopt only reads `one` for the given length; on a descriptor that is
            // not a TCP socket it fails with an error code, which is ignored.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn set_tcp_nodelay() {}

/// Undoes what was done since the savepoint `name` and forgets it.
pub(crate) async fn undo_savepoint(conn: &mut PgConnection, name: &str) -> Result<(), SinkError> {
    execute(
        conn,
        &format!("ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}"),
        "rolling back to a savepoint",
    )
    .await
}

pub async fn execute(conn: &mut PgConnection, sql: &str, what: &str) -> Result<(), SinkError> {
    sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(conn)
        .await
        .map_err(q_err(what))?;
    Ok(())
}
