//! Binary COPY framing: the header, rows encoded as tuples back to back (`Encoded`), and
//! sending the rows of a batch in pieces of about 1 MiB, never a row at a time.

use sqlx::PgConnection;
use std::ops::Range;

const SEND_BYTES: usize = 1 << 20;

/// The binary COPY header: signature, flags, no extension.
pub const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Rows encoded as binary COPY tuples, back to back, with each row's byte range.
#[derive(Debug, Default)]
pub struct Encoded {
    pub buf: Vec<u8>,
    pub rows: Vec<Range<usize>>,
}

impl Encoded {
    /// The tuples of `rows` back to back, ready for a COPY (the buffer itself when no row was
    /// taken out).
    pub fn into_copy_data(self) -> Vec<u8> {
        let kept: usize = self.rows.iter().map(|r| r.len()).sum();
        if kept == self.buf.len() {
            return self.buf;
        }
        let mut out = Vec::with_capacity(kept);
        for r in &self.rows {
            out.extend_from_slice(&self.buf[r.clone()]);
        }
        out
    }
}

/// The fields at `fields` (ascending positions) of one binary COPY tuple (`None`: NULL).
pub(super) fn fields_at<'a>(tuple: &'a [u8], fields: &[usize], out: &mut Vec<Option<&'a [u8]>>) -> Result<(), String> {
    let bad = || "a malformed encoded row".to_string();
    let mut at = 2;
    let mut want = fields.iter().peekable();
    let mut i = 0;
    while let Some(&&f) = want.peek() {
        let len_bytes: [u8; 4] = tuple.get(at..at + 4).ok_or_else(bad)?.try_into().map_err(|_| bad())?;
        let len = i32::from_be_bytes(len_bytes);
        let body = usize::try_from(len).unwrap_or(0);
        if i == f {
            out.push(if len < 0 {
                None
            } else {
                Some(tuple.get(at + 4..at + 4 + body).ok_or_else(bad)?)
            });
            want.next();
        }
        at += 4 + body;
        i += 1;
    }
    Ok(())
}

/// One COPY of the rows `idx` (positions in the batch, ascending), finished: how many it stored.
pub(super) async fn send_rows(
    conn: &mut PgConnection,
    copy_sql: &str,
    batch: &Encoded,
    idx: &[usize],
) -> Result<u64, sqlx::Error> {
    start_rows(conn, copy_sql, batch, idx).await?.finish().await
}

/// Sends the rows `idx` (positions in the batch, ascending) in one COPY, not yet finished.
/// Runs of rows that lie next to each other in the buffer are sent straight from it, in pieces
/// of about 1 MiB.
pub(super) async fn start_rows<'c>(
    conn: &'c mut PgConnection,
    copy_sql: &str,
    batch: &Encoded,
    idx: &[usize],
) -> Result<sqlx::postgres::PgCopyIn<&'c mut PgConnection>, sqlx::Error> {
    let mut copy = conn.copy_in_raw(copy_sql).await?;
    let mut chunk = Vec::with_capacity(SEND_BYTES.min(batch.buf.len() + 64));
    chunk.extend_from_slice(COPY_HEADER);
    let mut k = 0;
    while k < idx.len() {
        let mut j = k;
        // A run of rows whose bytes follow each other (rows taken out leave gaps).
        while j + 1 < idx.len() && batch.rows[idx[j + 1]].start == batch.rows[idx[j]].end {
            j += 1;
        }
        let (start, end) = (batch.rows[idx[k]].start, batch.rows[idx[j]].end);
        let mut pos = start;
        while pos < end {
            let take = (end - pos).min(SEND_BYTES.saturating_sub(chunk.len()).max(1));
            chunk.extend_from_slice(&batch.buf[pos..pos + take]);
            pos += take;
            if chunk.len() >= SEND_BYTES
                && let Err(e) = copy.send(std::mem::take(&mut chunk)).await
            {
                let _ = copy.abort("send failed").await;
                return Err(e);
            }
        }
        k = j + 1;
    }
    chunk.extend_from_slice(&(-1i16).to_be_bytes());
    if let Err(e) = copy.send(chunk).await {
        let _ = copy.abort("send failed").await;
        return Err(e);
    }
    Ok(copy)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One binary COPY tuple of the given fields (`None`: NULL).
    fn tuple(fields: &[Option<&[u8]>]) -> Vec<u8> {
        let mut t = (fields.len() as i16).to_be_bytes().to_vec();
        for f in fields {
            match f {
                None => t.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(b) => {
                    t.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    t.extend_from_slice(b);
                }
            }
        }
        t
    }

    #[test]
    fn rows_taken_out_of_a_batch_leave_no_bytes_behind() {
        let rows: Vec<Vec<u8>> = (0..4u8).map(|i| tuple(&[Some(&[i][..]), None])).collect();
        let mut enc = Encoded::default();
        for r in &rows {
            let at = enc.buf.len();
            enc.buf.extend_from_slice(r);
            enc.rows.push(at..enc.buf.len());
        }
        let whole = enc.buf.clone();
        let kept = Encoded {
            buf: enc.buf.clone(),
            rows: vec![enc.rows[0].clone(), enc.rows[2].clone(), enc.rows[3].clone()],
        };
        assert_eq!(
            kept.into_copy_data(),
            [rows[0].clone(), rows[2].clone(), rows[3].clone()].concat()
        );
        assert_eq!(enc.into_copy_data(), whole);
    }

    #[test]
    fn key_fields_are_found_in_encoded_rows() {
        let t = tuple(&[Some(b"17"), None, Some(b"abc"), Some(&[0, 0, 0, 9])]);
        let mut out = Vec::new();
        fields_at(&t, &[1, 2, 3], &mut out).unwrap();
        assert_eq!(out, vec![None, Some(&b"abc"[..]), Some(&[0u8, 0, 0, 9][..])]);
        out.clear();
        fields_at(&t, &[0], &mut out).unwrap();
        assert_eq!(out, vec![Some(&b"17"[..])]);
        // A cut-off row is an error, not a panic.
        out.clear();
        assert!(fields_at(&t[..t.len() - 2], &[3], &mut out).is_err());
    }
}
