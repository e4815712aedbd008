//! A batch in ONE transaction with its rejects and the entity's progress: the fast route (many
//! chunks streamed through one COPY) and the careful one (1,000 rows, every refused row
//! isolated). This file is the one owner of a batch's transaction: it alone begins it, rolls it
//! back and commits it; the sink and the checkpoint hand it statements (the sink goes back to a
//! savepoint at most, and `checkpoint::save_sql` is sent here with the COMMIT).

use super::feed::{Prepared, reject};
use super::{OnTarget, PipelineError};
use crate::bind::{Bound, encode_row};
use crate::checkpoint::{self, Progress, RejectRecord};
use crate::sink::{self, Encoded, SinkError};
use crate::telemetry::EntityBar;
use crate::value::Value;
use sqlx::PgConnection;

/// How every batch's transaction begins: deferred constraints are checked at each row, so a
/// row that breaks one is found and rejected like any other, instead of failing the COMMIT.
const BEGIN: &str = "BEGIN; SET CONSTRAINTS ALL IMMEDIATE";

/// Commits the batch with the entity's progress `p`, in one round trip.
async fn commit(conn: &mut PgConnection, p: &Progress) -> Result<(), SinkError> {
    let sql = format!("{}; COMMIT", checkpoint::save_sql(p));
    sink::execute(conn, &sql, "committing the batch with its progress").await
}

/// Ends a refused batch's transaction: none of it stays.
async fn roll_back(conn: &mut PgConnection) {
    let _ = sink::execute(conn, "ROLLBACK", "rolling back a refused batch").await;
}

/// One batch in one transaction: the good rows, every reject (the client's and those PostgreSQL
/// refused) and the entity's progress. Returns the progress as committed.
#[allow(clippy::too_many_arguments)]
pub(super) async fn commit_batch(
    conn: &mut PgConnection,
    b: &Bound,
    names: &[String],
    rows: &[Vec<Value>],
    enc: &Encoded,
    enc_src: &[usize],
    client_rejects: &[RejectRecord],
    client_reject_src: &[usize],
    before: &Progress,
) -> Result<Progress, PipelineError> {
    let name = &b.entity.name;
    let sink_err = |cause| PipelineError::Sink {
        entity: name.clone(),
        cause,
    };
    let state_err = |cause| PipelineError::State {
        entity: name.clone(),
        cause,
    };
    let begin = format!("{BEGIN}; {}", sink::LOAD_SAVEPOINT);
    sink::execute(conn, &begin, "starting a transaction")
        .await
        .map_err(sink_err)?;
    let sink::Loaded { refused, stored } = sink::load(conn, &b.loader, enc).await.map_err(sink_err)?;
    let mut rejects = client_rejects.to_vec();
    let mut reject_src = client_reject_src.to_vec();
    for r in &refused {
        rejects.push(reject(
            b,
            names,
            &rows[enc_src[r.row]],
            r.column.clone(),
            r.reason.clone(),
        ));
        reject_src.push(enc_src[r.row]);
    }
    let mut next = before.clone();
    next.rows_read += rows.len() as i64;
    count_stored(&mut next, (enc.rows.len() - refused.len()) as u64, stored);
    next.rows_rejected += rejects.len() as i64;
    next.last_key = rows.last().map(|r| b.spec.key_of(r));
    if before.is_sync() {
        let keys: Vec<Vec<Value>> = rows.iter().map(|r| b.spec.key_of(r)).collect();
        checkpoint::forget_rejects_of(conn, name, &keys)
            .await
            .map_err(state_err)?;
        if !rejects.is_empty() {
            remove_previous_versions(conn, b, rows, &reject_src, &mut rejects)
                .await
                .map_err(sink_err)?;
        }
    }
    checkpoint::save_rejects(conn, name, &rejects)
        .await
        .map_err(state_err)?;
    commit(conn, &next).await.map_err(sink_err)?;
    Ok(next)
}

/// Counts rows PostgreSQL took without an error (`taken`) by what it says it stored: new rows
/// are loaded, rows that updated one already there are merged, the rest were kept out (a
/// trigger returned NULL, a rule, `on_conflict = "skip"`).
pub(super) fn count_stored(p: &mut Progress, taken: u64, stored: sink::Stored) {
    p.rows_loaded += (stored.rows - stored.merged) as i64;
    p.rows_merged += stored.merged as i64;
    p.rows_kept_out += taken.saturating_sub(stored.rows) as i64;
}

/// In a sync pass, a changed row that is rejected must not leave its earlier version in the
/// target as if it were current: that version is deleted in the batch's transaction, unless
/// other rows need it. Each reject's reason says which.
pub(super) async fn remove_previous_versions(
    conn: &mut PgConnection,
    b: &Bound,
    rows: &[Vec<Value>],
    reject_src: &[usize],
    rejects: &mut [RejectRecord],
) -> Result<(), SinkError> {
    let Some(fields) = b.key_fields() else {
        return Ok(());
    };
    let k = b.with_fields(&fields);
    let key_cols: Vec<String> = k.targets.iter().map(|c| c.name.clone()).collect();
    let (mut keys, mut of) = (Vec::new(), Vec::new());
    for (i, &src) in reject_src.iter().enumerate() {
        let mut buf = Vec::new();
        // A key that does not encode now cannot have been loaded either.
        if encode_row(&k, &rows[src], &mut buf).is_ok() {
            keys.push(buf);
            of.push(i);
        }
    }
    let outcome = sink::remove_previous(conn, &b.entity.target, &key_cols, &keys).await?;
    for (i, o) in of.into_iter().zip(outcome) {
        let r = &mut rejects[i];
        match o {
            sink::Previous::None => {}
            sink::Previous::Removed => r
                .reason
                .push_str("; its earlier version was deleted from the target, so the row stands only here"),
            sink::Previous::Kept(why) => r.reason.push_str(&format!(
                "; the target keeps its earlier version, which could not be deleted: {why}"
            )),
        }
    }
    Ok(())
}

/// A fast batch ends at this many bytes of COPY data even before its row count (large LOBs),
pub(super) const BATCH_BYTES: usize = 64 << 20;
/// ... or at this many rejects, which wait in memory for the batch's commit.
pub(super) const BATCH_REJECTS: usize = 10_000;

/// How a fast batch ended.
pub(super) struct FastDone {
    pub(super) committed: Progress,
    /// A careful chunk that came after the batch: the next one to load.
    pub(super) held: Option<Prepared>,
    /// A stop was requested while the batch loaded; it was committed.
    pub(super) stop: bool,
}

/// Why a fast batch did not commit.
pub(super) enum FastFail {
    /// PostgreSQL refused some row: the batch's rows are read again as careful chunks.
    Refused {
        rows: u64,
    },
    /// The connection went away; the batch may or may not have committed.
    Lost {
        rows: u64,
        error: PipelineError,
    },
    Other(PipelineError),
}

/// Many chunks in one transaction with one COPY, streamed as they come: the fast path. The
/// chunks are not kept, so the batch's memory is one chunk's; if PostgreSQL refuses a row,
/// the caller reads the batch again as careful chunks.
#[allow(clippy::too_many_arguments)]
pub(super) async fn fast_batch(
    conn: &mut PgConnection,
    b: &Bound,
    first: Prepared,
    rx: &mut tokio::sync::mpsc::Receiver<Prepared>,
    before: &Progress,
    batch_rows: usize,
    bar: &EntityBar,
) -> Result<FastDone, FastFail> {
    let name = &b.entity.name;
    let mut rows = 0u64;
    // A failure after `rows` rows of the batch, by whether the connection went away.
    let fail = |rows: u64, error: PipelineError| {
        if error.is_connection_lost() {
            FastFail::Lost { rows, error }
        } else {
            FastFail::Other(error)
        }
    };
    let begin = match b.loader.prepare_sql() {
        Some(prepare) => format!("{BEGIN}; {prepare}"),
        None => BEGIN.to_string(),
    };
    sink::execute(conn, &begin, "starting a transaction")
        .await
        .map_err(|e| fail(0, e.for_entity(name)))?;
    let mut next = before.clone();
    let mut rejects: Vec<RejectRecord> = Vec::new();
    let (mut bytes, mut held, mut ended, mut stop) = (0usize, None, false, false);
    // Rows sent, and what PostgreSQL says it stored of them.
    let (mut sent, mut stored) = (0u64, sink::Stored::default());
    let result: Result<(), sqlx::Error> = async {
        let mut copy = conn.copy_in_raw(b.loader.copy_sql()).await?;
        let sent: Result<(), sqlx::Error> = async {
            copy.send(sink::COPY_HEADER).await?;
            let mut chunk = Some(first);
            while let Some(p) = chunk.take() {
                let n = p.read as u64;
                rows += n;
                next.rows_read += n as i64;
                sent += p.enc.rows.len() as u64;
                next.rows_rejected += p.rejects.len() as i64;
                next.last_key = p.last_key;
                rejects.extend(p.rejects);
                let data = p.enc.into_copy_data();
                bytes += data.len();
                if !data.is_empty() {
                    copy.send(data).await?;
                }
                bar.inc(n);
                if rows >= batch_rows as u64 || bytes >= BATCH_BYTES || rejects.len() >= BATCH_REJECTS {
                    break;
                }
                tokio::select! {
                    biased;
                    _ = crate::interrupt::wait() => stop = true,
                    r = rx.recv() => match r {
                        Some(p) if p.careful => held = Some(p),
                        Some(p) => chunk = Some(p),
                        None => ended = true,
                    },
                }
            }
            copy.send(&sink::copy::COPY_TRAILER[..]).await?;
            Ok(())
        }
        .await;
        if let Err(e) = sent {
            let _ = copy.abort("send failed").await;
            return Err(e);
        }
        let copied = copy.finish().await?;
        stored = sink::stored_after_copy(conn, &b.loader, copied).await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        if sink::is_data_error(&e) {
            roll_back(conn).await;
            return Err(FastFail::Refused { rows });
        }
        let cause = SinkError::Query {
            what: format!("loading into {}", b.loader.table.display()),
            cause: e,
        };
        return Err(fail(rows, cause.for_entity(name)));
    }
    count_stored(&mut next, sent, stored);
    checkpoint::save_rejects(conn, name, &rejects)
        .await
        .map_err(|c| fail(rows, c.for_entity(name)))?;
    commit(conn, &next).await.map_err(|c| fail(rows, c.for_entity(name)))?;
    Ok(FastDone {
        committed: next,
        held,
        stop,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_counted_by_what_postgresql_stored() {
        let mut p = Progress::new("e", "f", "t");
        // 10 rows taken: 7 stored, 2 of them over rows already there; 3 kept out.
        count_stored(&mut p, 10, sink::Stored { rows: 7, merged: 2 });
        assert_eq!((p.rows_loaded, p.rows_merged, p.rows_kept_out), (5, 2, 3));
        count_stored(&mut p, 4, sink::Stored { rows: 4, merged: 0 });
        assert_eq!((p.rows_loaded, p.rows_merged, p.rows_kept_out), (9, 2, 3));
        assert_eq!(p.rows_accounted(), 14);
    }
}
