//! Binary COPY framing, the only place that knows it: the header and trailer, a tuple's field
//! count and each field's length (written by `begin_tuple`/`push_field`, read by
//! `split_tuple`/`fields_at`), rows encoded as tuples back to back (`Encoded`), and sending the
//! rows of a batch in pieces of about 1 MiB, never a row at a time.

use sqlx::PgConnection;
use std::ops::Range;

const SEND_BYTES: usize = 1 << 20;

/// The binary COPY signature, which starts the header.
const COPY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// The binary COPY header: signature, flags, no extension.
pub const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The binary COPY trailer: a field count of -1.
pub const COPY_TRAILER: [u8; 2] = (-1i16).to_be_bytes();
/// A NULL field: a length of -1.
const NULL_FIELD: [u8; 4] = (-1i32).to_be_bytes();

/// Starts a tuple of `fields` fields.
pub fn begin_tuple(out: &mut Vec<u8>, fields: usize) {
    out.extend_from_slice(&(fields as i16).to_be_bytes());
}

/// Appends one field (`None`: NULL).
pub fn push_field(out: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        None => out.extend_from_slice(&NULL_FIELD),
        Some(b) => {
            out.extend_from_slice(&(b.len() as i32).to_be_bytes());
            out.extend_from_slice(b);
        }
    }
}

/// Appends one field whose bytes `body` writes (its length is filled in after). On `Err`,
/// `out` may hold part of the field: callers truncate back to the row's start.
pub fn push_field_with<E>(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>) -> Result<(), E>) -> Result<(), E> {
    let at = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    body(out)?;
    let len = (out.len() - at - 4) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Whole COPY data: the header, `tuples` back to back, the trailer.
pub fn copy_data<'a>(tuples: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut data = COPY_HEADER.to_vec();
    for t in tuples {
        data.extend_from_slice(t);
    }
    data.extend_from_slice(&COPY_TRAILER);
    data
}

/// The length of the header at the start of COPY output, once it is all there (`Ok(None)`:
/// wait for more bytes).
pub fn header_len(buf: &[u8]) -> Result<Option<usize>, String> {
    if buf.len() < COPY_SIGNATURE.len() + 8 {
        return Ok(None);
    }
    if !buf.starts_with(COPY_SIGNATURE) {
        return Err("the binary COPY output has no signature".into());
    }
    let ext_at = COPY_SIGNATURE.len() + 4;
    let ext = u32::from_be_bytes(buf[ext_at..ext_at + 4].try_into().expect("4 bytes")) as usize;
    Ok((buf.len() >= ext_at + 4 + ext).then_some(ext_at + 4 + ext))
}

/// The fields of one tuple (`None`: NULL), borrowed from the COPY data.
pub type Fields<'a> = Vec<Option<&'a [u8]>>;

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

/// Splits one binary COPY tuple at the start of `buf` into its fields; returns them and the
/// tuple's length, `Ok(None)` when `buf` does not hold a whole tuple yet. A field count of -1
/// (the trailer) gives an empty field list.
pub fn split_tuple(buf: &[u8]) -> Result<Option<(Fields<'_>, usize)>, String> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let n = i16::from_be_bytes([buf[0], buf[1]]);
    if n == -1 {
        return Ok(Some((Vec::new(), 2)));
    }
    if n < 0 {
        return Err(format!("bad field count {n} in binary COPY data"));
    }
    let mut at = 2;
    let mut fields = Vec::with_capacity(n as usize);
    for _ in 0..n {
        if buf.len() < at + 4 {
            return Ok(None);
        }
        let len = i32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
        at += 4;
        if len == -1 {
            fields.push(None);
            continue;
        }
        if len < 0 {
            return Err(format!("bad field length {len} in binary COPY data"));
        }
        let len = len as usize;
        if buf.len() < at + len {
            return Ok(None);
        }
        fields.push(Some(&buf[at..at + len]));
        at += len;
    }
    Ok(Some((fields, at)))
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
    chunk.extend_from_slice(&COPY_TRAILER);
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
        let mut t = Vec::new();
        begin_tuple(&mut t, fields.len());
        for f in fields {
            push_field(&mut t, *f);
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

    #[test]
    fn tuples_split_and_wait_for_more_bytes() {
        let mut row = 2i16.to_be_bytes().to_vec();
        row.extend_from_slice(&(-1i32).to_be_bytes());
        row.extend_from_slice(&3i32.to_be_bytes());
        row.extend_from_slice(b"abc");
        let (fields, len) = split_tuple(&row).unwrap().unwrap();
        assert_eq!(fields, vec![None, Some(&b"abc"[..])]);
        assert_eq!(len, row.len());
        assert!(split_tuple(&row[..row.len() - 1]).unwrap().is_none());
        assert_eq!(split_tuple(&(-1i16).to_be_bytes()).unwrap().unwrap().1, 2);
        assert!(split_tuple(&(-3i16).to_be_bytes()).is_err());
    }
}
