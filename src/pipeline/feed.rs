//! Where a running entity's chunks come from: the reader thread reads the source in key order,
//! transforms and encodes each row (a row that fails is a reject), and, when the table has
//! foreign keys, a task checks each chunk for its parents on a session of its own before the
//! loader sees it.

use super::PipelineError;
use crate::bind::{Bound, encode_row};
use crate::checkpoint::RejectRecord;
use crate::sink::{self, Encoded, SinkError};
use crate::source::{self, SourceError};
use crate::value::Value;
use sqlx::PgConnection;

/// Chunks in flight between the reader thread and the loader.
pub(super) const QUEUE_DEPTH: usize = 4;
/// Rows per chunk (and per source query): what the reader hands over at a time, and the size
/// of a careful batch (committed on its own, every refused row isolated).
pub const CHUNK_ROWS: usize = 1000;

/// A batch as read, and as it goes to PostgreSQL: the encoded rows (with the source row each
/// came from) and the rows that failed on the client.
pub(super) struct Prepared {
    /// Source rows read.
    pub(super) read: usize,
    /// The key of the last of them.
    pub(super) last_key: Option<Vec<Value>>,
    /// The source rows themselves, when the chunk needs them later (careful chunks, and chunks
    /// still to be checked for their parents); otherwise empty.
    pub(super) rows: Vec<Vec<Value>>,
    pub(super) enc: Encoded,
    pub(super) enc_src: Vec<usize>,
    pub(super) rejects: Vec<RejectRecord>,
    /// The source row of each of `rejects`.
    pub(super) reject_src: Vec<usize>,
    /// Loaded as a batch of its own, every refused row isolated (after a refused fast batch,
    /// and in sync passes).
    pub(super) careful: bool,
}

/// `row_bytes`: about how long an encoded row is (the buffer is sized once, not grown).
pub(super) fn prepare(b: &Bound, names: &[String], rows: &[Vec<Value>], row_bytes: usize) -> Prepared {
    let mut enc = Encoded {
        buf: Vec::with_capacity(rows.len() * row_bytes + 64),
        rows: Vec::with_capacity(rows.len()),
    };
    let mut enc_src: Vec<usize> = Vec::with_capacity(rows.len());
    let mut rejects = Vec::new();
    let mut reject_src = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let at = enc.buf.len();
        match encode_row(b, row, &mut enc.buf) {
            Ok(()) => {
                enc.rows.push(at..enc.buf.len());
                enc_src.push(i);
            }
            Err((col, reason)) => {
                rejects.push(reject(b, names, row, Some(col), reason));
                reject_src.push(i);
            }
        }
    }
    Prepared {
        read: rows.len(),
        last_key: rows.last().map(|r| b.spec.key_of(r)),
        rows: Vec::new(),
        enc,
        enc_src,
        rejects,
        reject_src,
        careful: false,
    }
}

pub(super) fn reject(
    b: &Bound,
    names: &[String],
    row: &[Value],
    column: Option<String>,
    reason: String,
) -> RejectRecord {
    let values = names
        .iter()
        .zip(row)
        .map(|(n, v)| (n.clone(), v.to_display_json()))
        .collect::<serde_json::Map<_, _>>();
    RejectRecord {
        key: b.spec.key_of(row),
        source_values: serde_json::Value::Object(values),
        reason,
        column,
    }
}

/// Where a running entity's batches come from: the reader thread (which also transforms and
/// encodes), and, when the target has foreign keys, the task that checks every chunk for its
/// parents on a session of its own before the loader sees it.
pub(super) struct Feed {
    pub(super) rx: tokio::sync::mpsc::Receiver<Prepared>,
    pub(super) reader: source::Reader<source::resilient::ReadStats>,
    pub(super) checker: Option<tokio::task::JoinHandle<(PgConnection, Result<(), SinkError>)>>,
}

/// How the chunks of one entity are read and checked.
pub(super) struct FeedPlan<'a> {
    pub(super) url: &'a str,
    pub(super) bound: &'a Bound,
    pub(super) read_plan: &'a source::resilient::ReadPlan,
    pub(super) chunk_rows: usize,
    pub(super) parents: Option<&'a sink::ParentCheck>,
}

impl FeedPlan<'_> {
    /// Starts reading after `after`; the first `careful` rows come as careful chunks (each
    /// committed on its own, with every refused row isolated), the rest as fast ones.
    pub(super) fn start(
        &self,
        after: Option<Vec<Value>>,
        careful: u64,
        checker_conn: Option<PgConnection>,
    ) -> Result<Feed, PipelineError> {
        let name = self.bound.entity.name.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<Prepared>(QUEUE_DEPTH);
        let (reader_tx, checker, recycled) = match (self.parents, checker_conn) {
            (Some(check), Some(mut conn)) => {
                let (ctx, mut crx) = tokio::sync::mpsc::channel::<Prepared>(2);
                // Rows the checker is done with go back to the reader to be refilled.
                let (back, recycled) = tokio::sync::mpsc::channel::<Vec<Vec<Value>>>(QUEUE_DEPTH);
                let mut check = check.clone();
                let bound = self.bound.clone();
                let handle = tokio::spawn(async move {
                    let names = bound.source_names();
                    let mut fresh = true;
                    while let Some(mut p) = crx.recv().await {
                        match check.check(&mut conn, &p.enc, &mut fresh).await {
                            Ok(orphans) => drop_orphans(&bound, &names, &mut p, orphans),
                            Err(e) => return (conn, Err(e)),
                        }
                        if !p.careful {
                            let _ = back.try_send(std::mem::take(&mut p.rows));
                        }
                        if tx.send(p).await.is_err() {
                            break;
                        }
                    }
                    (conn, Ok(()))
                });
                (ctx, Some(handle), Some(recycled))
            }
            _ => (tx, None, None),
        };
        let keep_rows = checker.is_some();
        let url = self.url.to_string();
        let read_plan = self.read_plan.clone();
        let bound = self.bound.clone();
        let chunk_rows = self.chunk_rows;
        let reader = source::Reader::spawn(format!("read-{name}"), move || {
            let names = bound.source_names();
            let mut careful_left = careful;
            let mut recycled = recycled;
            let mut row_bytes = 128;
            let read = source::resilient::read_all(
                &mut || source::open(&url),
                &bound.spec,
                after,
                chunk_rows,
                &read_plan,
                &mut |batch| {
                    let n = batch.len() as u64;
                    let mut p = prepare(&bound, &names, batch, row_bytes);
                    // The next chunk's buffer fits rows like these, with some room.
                    if let Some(per_row) = p.enc.buf.len().checked_div(p.read) {
                        row_bytes = per_row * 9 / 8 + 8;
                    }
                    p.careful = careful_left > 0;
                    careful_left = careful_left.saturating_sub(n);
                    if p.careful || keep_rows {
                        // The rows go along; the source refills rows the checker is done with.
                        let spare = recycled.as_mut().and_then(|r| r.try_recv().ok()).unwrap_or_default();
                        p.rows = std::mem::replace(batch, spare);
                    }
                    reader_tx.blocking_send(p).is_ok()
                },
            );
            release_free_memory();
            read
        })
        .map_err(|cause| PipelineError::Source {
            entity: name.clone(),
            cause,
        })?;
        Ok(Feed { rx, reader, checker })
    }
}

/// Hands the memory freed by a finished reader back to the system. glibc keeps a thread's
/// arena after the thread ends; without this, a run's RSS grew with each entity it loaded
/// (20 MB to 25 MB over 4 M rows), where memory must stay flat whatever the table size.
pub(super) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of glibc's arenas to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Rows without a parent leave the encoded batch and become rejects.
pub(super) fn drop_orphans(b: &Bound, names: &[String], p: &mut Prepared, orphans: Vec<sink::Refused>) {
    if orphans.is_empty() {
        return;
    }
    for o in &orphans {
        let src = p.enc_src[o.row];
        p.rejects
            .push(reject(b, names, &p.rows[src], o.column.clone(), o.reason.clone()));
        p.reject_src.push(src);
    }
    let mut gone = orphans.iter().map(|o| o.row).peekable();
    let mut keep_rows = Vec::with_capacity(p.enc.rows.len() - orphans.len());
    let mut keep_src = Vec::with_capacity(keep_rows.capacity());
    for (i, (r, src)) in p.enc.rows.drain(..).zip(p.enc_src.drain(..)).enumerate() {
        if gone.peek() == Some(&i) {
            gone.next();
        } else {
            keep_rows.push(r);
            keep_src.push(src);
        }
    }
    p.enc.rows = keep_rows;
    p.enc_src = keep_src;
}

impl Feed {
    /// Stops the reader and the checker (the chunks still queued are dropped; they are read
    /// again from the last committed key) and gives the checker's session back.
    pub(super) async fn stop(self) -> (Option<PgConnection>, u64) {
        let Feed { rx, reader, checker } = self;
        drop(rx);
        // A checker that failed may have left its session mid-transaction: not reused.
        let conn = match checker {
            Some(h) => h.await.ok().and_then(|(c, r)| r.ok().map(|()| c)),
            None => None,
        };
        let reconnects = reader.join().await.map_or(0, |s| s.reconnects);
        (conn, reconnects)
    }

    /// After the last chunk: how the read went. A checker that lost its session gives it
    /// back as `Err((lost, None))`, so the feed can start again on a new one.
    pub(super) async fn finish(self, entity: &str) -> Result<u64, (PipelineError, Option<u64>)> {
        let Feed { rx, reader, checker } = self;
        drop(rx);
        let reconnects = match reader.join().await {
            Ok(read) => read.reconnects,
            Err(cause) => {
                return Err((
                    PipelineError::Source {
                        entity: entity.to_string(),
                        cause,
                    },
                    None,
                ));
            }
        };
        if let Some(h) = checker {
            match h.await {
                Ok((_, Ok(()))) => {}
                Ok((_, Err(cause))) => {
                    return Err((
                        PipelineError::Sink {
                            entity: entity.to_string(),
                            cause,
                        },
                        Some(reconnects),
                    ));
                }
                Err(_) => {
                    return Err((
                        PipelineError::Source {
                            entity: entity.to_string(),
                            cause: SourceError::Query {
                                what: "parent check".into(),
                                cause: "the parent check task stopped unexpectedly".into(),
                            },
                        },
                        None,
                    ));
                }
            }
        }
        Ok(reconnects)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bind::bound_for_test;
    use crate::sink::pgtype::PgType;

    fn bound() -> Bound {
        bound_for_test(
            "source = \"T\"\ntarget = \"t\"\n[[fields]]\nfrom = \"ID\"\nto = \"id\"\n[[fields]]\nfrom = \"N\"\nto = \"n\"\n",
            &["ID", "N"],
            &[("id", PgType::Int8, true), ("n", PgType::Int2, false)],
        )
    }

    fn row(id: i64, n: &str) -> Vec<Value> {
        vec![Value::Int(id), Value::Text(n.into())]
    }

    #[test]
    fn a_chunk_keeps_its_good_rows_encoded_and_its_bad_ones_as_rejects_in_order() {
        let b = bound();
        let names = b.source_names();
        let rows = vec![row(1, "1"), row(2, "99999"), row(3, "3"), row(4, "x")];
        let mut p = prepare(&b, &names, &rows, 16);
        assert_eq!(p.read, 4);
        assert_eq!(p.last_key, Some(vec![Value::Int(4)]));
        assert_eq!((p.enc_src.clone(), p.reject_src.clone()), (vec![0, 2], vec![1, 3]));
        assert_eq!(p.rejects[0].column.as_deref(), Some("n"));
        assert!(
            p.rejects[0].reason.contains("out of range for smallint"),
            "{:?}",
            p.rejects[0]
        );
        assert_eq!(p.rejects[1].source_values["N"], "x");
        // A parent check that finds row 2 (position 1 of the encoded rows) an orphan.
        p.rows = rows.clone();
        let bytes_of_first = p.enc.rows[0].clone();
        let orphan = sink::Refused {
            row: 1,
            reason: "no parent".into(),
            column: Some("n".into()),
        };
        drop_orphans(&b, &names, &mut p, vec![orphan]);
        assert_eq!(p.enc.rows, vec![bytes_of_first]);
        assert_eq!(p.enc_src, vec![0]);
        assert_eq!(p.reject_src, vec![1, 3, 2]);
        assert_eq!(p.rejects[2].key, vec![Value::Int(3)]);
    }
}
