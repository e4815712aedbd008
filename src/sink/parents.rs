//! The parent check of `--defer-indexes` and of tables with foreign keys: each chunk's rows are
//! checked for their parents before they are loaded, on a session of its own, against the
//! parents' keys held in memory (`KeySet`) or by index probes.

use super::catalog::{ForeignKeyInfo, PgColumn};
use super::copy::{COPY_HEADER, COPY_TRAILER, Encoded, begin_tuple, fields_at, push_field};
use super::load::{Refused, refusals};
use super::pgtype::PgType;
use super::{SinkError, execute, q_err};
use crate::plan::{TargetTable, quote_ident};
use sqlx::{AssertSqlSafe, PgConnection, Row};

/// Checks batches for rows without a parent before they are loaded, on a session of its own
/// (the parents are other entities' tables, loaded and committed before this one starts), in
/// one query per batch: only the key columns go to the server, and every parent's key index
/// is probed once per row. Integer and text keys go as array parameters; keys of other types
/// are staged (with each row's ordinal) in a temp table that empties at each commit.
#[derive(Debug, Clone)]
pub struct ParentCheck {
    fks: Vec<ForeignKeyInfo>,
    /// Positions, in the encoded rows, of the key columns sent, and their types.
    fields: Vec<usize>,
    types: Vec<PgType>,
    /// Arrays, or the staged path.
    arrays: bool,
    create_sql: String,
    copy_sql: String,
    query_sql: String,
    /// The most parent keys held in memory (see [`ParentCheck::with_local_keys`]).
    local_budget: usize,
    /// Decided at the first check: the keys held in memory, and the check of the other keys.
    split: Option<std::sync::Arc<LocalSplit>>,
    index: usize,
    table: TargetTable,
    cols: Vec<PgColumn>,
}

/// The parents whose keys a [`ParentCheck`] holds in memory, and the check of the others.
#[derive(Debug)]
struct LocalSplit {
    local: Vec<LocalKeys>,
    /// The other foreign keys' check, with each one's position in the whole check's keys.
    remote: Option<(ParentCheck, Vec<usize>)>,
}

/// The keys of one foreign key's parent, sorted: a single integer column.
#[derive(Debug)]
struct LocalKeys {
    /// The foreign key's position in the check's keys.
    fk: usize,
    /// The column's position in the encoded rows, and its type.
    field: usize,
    ty: PgType,
    keys: std::sync::Arc<KeySet>,
}

/// A set of integer keys: a bitmap over their span when that is at most 8 bits a key (serial
/// keys: a bit each, and a lookup that stays in cache), else sorted.
#[derive(Debug)]
enum KeySet {
    Bits { min: i64, bits: Vec<u64>, len: usize },
    Sorted(Vec<i64>),
}

impl KeySet {
    /// A bitmap for keys from `min` over `span` values, none in it yet.
    fn empty_bits(min: i64, span: usize) -> KeySet {
        KeySet::Bits {
            min,
            bits: vec![0u64; span.div_ceil(64)],
            len: 0,
        }
    }

    /// Adds keys (a sorted set sorts in [`KeySet::finish`]); `false` if a key is outside a
    /// bitmap's span.
    fn extend(&mut self, keys: &[i64]) -> bool {
        match self {
            KeySet::Bits { min, bits, len } => {
                for &k in keys {
                    let Some(at) = k.checked_sub(*min).filter(|d| *d >= 0) else {
                        return false;
                    };
                    let at = at as u64;
                    let Some(w) = bits.get_mut((at / 64) as usize) else {
                        return false;
                    };
                    let bit = 1u64 << (at % 64);
                    if *w & bit == 0 {
                        *w |= bit;
                        *len += 1;
                    }
                }
                true
            }
            KeySet::Sorted(v) => {
                v.extend_from_slice(keys);
                true
            }
        }
    }

    /// Sorts a sorted set's keys (a bitmap has nothing to do).
    fn finish(&mut self) {
        if let KeySet::Sorted(v) = self {
            v.sort_unstable();
            v.dedup();
            v.shrink_to_fit();
        }
    }

    fn contains(&self, k: i64) -> bool {
        match self {
            KeySet::Bits { min, bits, .. } => {
                let Some(at) = k.checked_sub(*min).filter(|d| *d >= 0) else {
                    return false;
                };
                let at = at as u64;
                bits.get((at / 64) as usize).is_some_and(|w| w & (1 << (at % 64)) != 0)
            }
            KeySet::Sorted(keys) => keys.binary_search(&k).is_ok(),
        }
    }

    fn len(&self) -> usize {
        match self {
            KeySet::Bits { len, .. } => *len,
            KeySet::Sorted(keys) => keys.len(),
        }
    }

    /// The smallest and largest key a bitmap holds.
    fn ends(&self) -> Option<(i64, i64)> {
        match self {
            KeySet::Bits { min, bits, .. } => {
                let first = bits.iter().position(|w| *w != 0)?;
                let last = bits.iter().rposition(|w| *w != 0)?;
                let lo = first as i64 * 64 + bits[first].trailing_zeros() as i64;
                let hi = last as i64 * 64 + 63 - bits[last].leading_zeros() as i64;
                Some((min + lo, min + hi))
            }
            KeySet::Sorted(keys) => Some((*keys.first()?, *keys.last()?)),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            KeySet::Bits { bits, .. } => bits.len() * 8,
            KeySet::Sorted(keys) => keys.len() * 8,
        }
    }
}

/// Takes the decimal keys of text COPY output apart, one a line; `partial` carries a number cut
/// by the end of a chunk (negative or not, and its value so far: negatives are built downwards,
/// so i64::MIN fits).
fn parse_key_lines(chunk: &[u8], partial: &mut Option<(bool, i64)>, keys: &mut Vec<i64>) -> Result<(), String> {
    let bad = || "a key line of the COPY output is not a number".to_string();
    for &b in chunk {
        match b {
            b'\n' => keys.push(partial.take().ok_or_else(bad)?.1),
            b'-' if partial.is_none() => *partial = Some((true, 0)),
            b'0'..=b'9' => {
                let (neg, v) = partial.get_or_insert((false, 0));
                let d = (b - b'0') as i64;
                *v = v
                    .checked_mul(10)
                    .and_then(|x| if *neg { x.checked_sub(d) } else { x.checked_add(d) })
                    .ok_or_else(bad)?;
            }
            _ => return Err(bad()),
        }
    }
    Ok(())
}

/// The most memory one check gives its parents' keys: 4 MiB, a bitmap of 32 M serial keys or a
/// sorted list of 512 k others.
pub const LOCAL_PARENT_BYTES: usize = 4 << 20;

/// A parent's serial keys read once for the run: (table oid, column) to the bitmap, or `None`
/// when they do not fit one. Only tables whose entity this run has finished are cached, so
/// the rows cannot change under the run's own hand; the checks of every child table and every
/// key range of one share one read (a cell makes concurrent first readers wait for one read).
type KeyCell = std::sync::Arc<tokio::sync::OnceCell<Option<std::sync::Arc<KeySet>>>>;
static KEY_CACHE: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<(i64, String), KeyCell>>> =
    std::sync::LazyLock::new(Default::default);
/// The oids of the tables whose entity this run has finished (see [`mark_complete`]).
static COMPLETE: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<i64>>> =
    std::sync::LazyLock::new(Default::default);
/// The most memory the shared parent keys of a run take: 64 MiB (16 bitmaps of the most one
/// check holds).
const SHARED_PARENT_BYTES: usize = 64 << 20;
static SHARED_BYTES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Forgets the tables finished and the keys shared: at the start of a run, whose rows may
/// differ from an earlier one's in this process.
pub fn forget_complete() {
    COMPLETE.lock().unwrap_or_else(|e| e.into_inner()).clear();
    KEY_CACHE.lock().unwrap_or_else(|e| e.into_inner()).clear();
    SHARED_BYTES.store(0, std::sync::atomic::Ordering::Relaxed);
}

/// Says that this run loads no more rows into `table` (its entity is done): the checks of the
/// tables that reference it may share one read of its keys from now on.
pub async fn mark_complete(conn: &mut PgConnection, table: &TargetTable) -> Result<(), SinkError> {
    let oid: Option<i64> = sqlx::query_scalar("SELECT to_regclass($1)::oid::int8")
        .bind(table.sql())
        .fetch_one(&mut *conn)
        .await
        .map_err(q_err(format!("looking up {}", table.display())))?;
    if let Some(oid) = oid {
        COMPLETE.lock().unwrap_or_else(|e| e.into_inner()).insert(oid);
    }
    Ok(())
}

/// Reads the keys of column `c` (quoted) of `parent` from `lo` to `hi` into a bitmap; `None`
/// if the span is over [`LOCAL_PARENT_BYTES`] or a key outside it arrived (rows added since
/// the ends were read).
async fn read_bitmap(
    conn: &mut PgConnection,
    parent: &str,
    c: &str,
    lo: i64,
    hi: i64,
    what: &str,
) -> Result<Option<KeySet>, SinkError> {
    let span = hi as i128 - lo as i128 + 1;
    if (span as u128).div_ceil(8) > LOCAL_PARENT_BYTES as u128 {
        return Ok(None);
    }
    let mut set = KeySet::empty_bits(lo, span as usize);
    let sql = format!("COPY (SELECT {c}::int8 FROM {parent} WHERE {c} IS NOT NULL) TO STDOUT");
    let usable = copy_keys_into(conn, &sql, &mut set, what).await?;
    Ok(usable.then_some(set))
}

/// Streams the keys a text COPY of one int8 column gives into `set`; `false` if one did not
/// fit it (a bitmap's span).
async fn copy_keys_into(conn: &mut PgConnection, sql: &str, set: &mut KeySet, what: &str) -> Result<bool, SinkError> {
    use futures_util::StreamExt;
    let mut stream = conn.copy_out_raw(sql).await.map_err(q_err(what.to_string()))?;
    let mut partial: Option<(bool, i64)> = None;
    let mut keys: Vec<i64> = Vec::new();
    let mut usable = true;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(q_err(what.to_string()))?;
        keys.clear();
        parse_key_lines(&chunk, &mut partial, &mut keys).map_err(|e| SinkError::Query {
            what: what.to_string(),
            cause: sqlx::Error::Protocol(e),
        })?;
        // A key outside the ends read before (a parent row added since): the copy would be
        // wrong, so the index answers instead.
        usable &= set.extend(&keys);
    }
    Ok(usable)
}

impl ParentCheck {
    /// For the foreign keys (to other tables) whose columns are all among `cols`, the target
    /// columns in the order rows are encoded; `None` when there is none.
    pub fn new(index: usize, table: &TargetTable, cols: &[PgColumn], fks: &[ForeignKeyInfo]) -> Option<ParentCheck> {
        let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
        let fks: Vec<ForeignKeyInfo> = fks
            .iter()
            .filter(|f| !f.self_ref && f.columns.iter().all(|c| names.contains(&c.as_str())))
            .cloned()
            .collect();
        if fks.is_empty() {
            return None;
        }
        let mut fields: Vec<usize> = fks
            .iter()
            .flat_map(|f| f.columns.iter())
            .filter_map(|c| names.iter().position(|x| x == c))
            .collect();
        fields.sort_unstable();
        fields.dedup();
        let types: Vec<PgType> = fields.iter().map(|&i| cols[i].ty.clone()).collect();
        let arrays = types.iter().all(|t| {
            matches!(
                t,
                PgType::Int2 | PgType::Int4 | PgType::Int8 | PgType::Text | PgType::Varchar(_) | PgType::Bpchar(_)
            )
        });
        let quoted: Vec<String> = fields.iter().map(|&i| quote_ident(&cols[i].name)).collect();
        let stage = quote_ident(&format!("migrate_parent_check_{index}"));
        let from = if arrays {
            let params: Vec<String> = fields
                .iter()
                .zip(&types)
                .enumerate()
                .map(|(n, (&i, t))| match t {
                    PgType::Int2 => format!("${}::int2[]", n + 1),
                    PgType::Int4 => format!("${}::int4[]", n + 1),
                    PgType::Int8 => format!("${}::int8[]", n + 1),
                    _ => format!("${}::text[]::{}[]", n + 1, cols[i].formatted),
                })
                .collect();
            format!(
                "unnest({}) WITH ORDINALITY AS c({}, migrate_row_ordinal)",
                params.join(", "),
                quoted.join(", ")
            )
        } else {
            format!("pg_temp.{stage} c")
        };
        let checks: Vec<String> = fks
            .iter()
            .enumerate()
            .flat_map(|(i, f)| f.check_selects(i, &from))
            .collect();
        Some(ParentCheck {
            create_sql: format!(
                "CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS
                   SELECT 0::int AS migrate_row_ordinal, {} FROM {} WITH NO DATA",
                quoted.join(", "),
                table.sql()
            ),
            copy_sql: format!(
                "COPY pg_temp.{stage} (migrate_row_ordinal, {}) FROM STDIN (FORMAT binary)",
                quoted.join(", ")
            ),
            query_sql: format!("{} ORDER BY 1, 2", checks.join(" UNION ALL ")),
            fks,
            fields,
            types,
            arrays,
            local_budget: 0,
            split: None,
            index,
            table: table.clone(),
            cols: cols.to_vec(),
        })
    }

    /// Lets the check, which will see about `rows` rows, hold its parents' keys in memory: at
    /// the first check, each single-integer-column foreign key whose parent's keys fit what is
    /// left of [`LOCAL_PARENT_BYTES`] (as a bitmap over their span, or a sorted list), and
    /// number at most 8 per row to check (a probe costs about that many key reads), is checked
    /// against a copy of them read in one scan of the parent, not by an index probe per row.
    /// The parents are loaded before the check starts; a parent row added during the load is
    /// noticed while the keys are read (the index answers then), and one deleted by someone
    /// else is caught when the foreign key is validated.
    pub fn with_local_keys(mut self, rows: usize) -> ParentCheck {
        self.local_budget = rows;
        self
    }

    /// The foreign keys checked.
    pub fn foreign_keys(&self) -> &[ForeignKeyInfo] {
        &self.fks
    }

    /// The check of foreign key `fk` (column `field` of the rows) against `keys`, said in the log.
    fn local_keys(&self, fk: usize, field: usize, keys: std::sync::Arc<KeySet>, how: &str) -> LocalKeys {
        let f = &self.fks[fk];
        tracing::debug!(
            "{}: parent check of {} against {} key(s) of {} held in memory{how} ({} bytes)",
            self.table.display(),
            f.name,
            keys.len(),
            f.parent_name,
            keys.bytes()
        );
        LocalKeys {
            fk,
            field,
            ty: self.cols[field].ty.clone(),
            keys,
        }
    }

    /// Reads, for the integer foreign keys whose parents fit the budget, their keys.
    async fn split_off_local(&self, conn: &mut PgConnection) -> Result<LocalSplit, SinkError> {
        // Reading more keys than 8 per row to check costs more than the probes it saves.
        let most_keys = self.local_budget.saturating_mul(8) as i128;
        let mut bytes_left = LOCAL_PARENT_BYTES;
        let mut local = Vec::new();
        let mut remote = Vec::new();
        for (i, f) in self.fks.iter().enumerate() {
            let field = match f.columns.as_slice() {
                [c] => self.cols.iter().position(|x| &x.name == c),
                _ => None,
            };
            let int = field.filter(|&p| matches!(self.cols[p].ty, PgType::Int2 | PgType::Int4 | PgType::Int8));
            let (Some(field), [ref_col]) = (int, f.ref_columns.as_slice()) else {
                remote.push(i);
                continue;
            };
            let what = format!("reading the keys of {}", f.parent_name);
            let c = quote_ident(ref_col);
            // The parent's key is unique, so it has an index: its ends cost two probes.
            let (lo, hi, oid): (Option<i64>, Option<i64>, Option<i64>) = sqlx::query_as(AssertSqlSafe(format!(
                "SELECT min({c})::int8, max({c})::int8, to_regclass($1)::oid::int8 FROM {}",
                f.parent
            )))
            .bind(&f.parent)
            .fetch_one(&mut *conn)
            .await
            .map_err(q_err(what.clone()))?;
            let (Some(lo), Some(hi)) = (lo, hi) else {
                // No parent rows at all: every key is missing.
                local.push(LocalKeys {
                    fk: i,
                    field,
                    ty: self.cols[field].ty.clone(),
                    keys: std::sync::Arc::new(KeySet::Sorted(Vec::new())),
                });
                continue;
            };
            let span = hi as i128 - lo as i128 + 1;
            let bits = span <= most_keys && (span as u128).div_ceil(8) <= bytes_left as u128;
            let limit = (most_keys.min((bytes_left / 8) as i128) as usize).min(1 << 40);
            // A parent this run has finished: one read of its keys serves every check.
            // Read once, for the checks that would read them anyway (`bits`): a small table
            // whose rows are fewer than its parent's keys still probes the index.
            let complete = oid.is_some_and(|o| COMPLETE.lock().unwrap_or_else(|e| e.into_inner()).contains(&o));
            if let (true, Some(oid)) = (complete, oid) {
                let cell: KeyCell = KEY_CACHE
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry((oid, ref_col.clone()))
                    .or_default()
                    .clone();
                let shared = if !bits {
                    None
                } else {
                    cell.get_or_try_init(|| async {
                        let set = read_bitmap(conn, &f.parent, &c, lo, hi, &what).await?;
                        let fits = set.as_ref().is_some_and(|s| {
                            let used = SHARED_BYTES.fetch_add(s.bytes(), std::sync::atomic::Ordering::Relaxed);
                            used + s.bytes() <= SHARED_PARENT_BYTES
                        });
                        Ok::<_, SinkError>(set.filter(|_| fits).map(std::sync::Arc::new))
                    })
                    .await?
                    .clone()
                };
                // The ends read now must be those of the shared keys (nothing added since).
                if let Some(set) = shared.filter(|s| s.ends() == Some((lo, hi))) {
                    local.push(self.local_keys(i, field, set, ", shared"));
                    continue;
                }
            }
            if !bits && limit == 0 {
                remote.push(i);
                continue;
            }
            // Text COPY: one decimal a line, far cheaper to take apart than a row each.
            let sql = if bits {
                format!(
                    "COPY (SELECT {c}::int8 FROM {} WHERE {c} IS NOT NULL) TO STDOUT",
                    f.parent
                )
            } else {
                format!(
                    "COPY (SELECT {c}::int8 FROM {} WHERE {c} IS NOT NULL LIMIT {}) TO STDOUT",
                    f.parent,
                    limit + 1
                )
            };
            let mut set = if bits {
                KeySet::empty_bits(lo, span as usize)
            } else {
                // Untouched capacity costs no memory; it saves the doublings.
                KeySet::Sorted(Vec::with_capacity(limit + 1))
            };
            let usable = copy_keys_into(conn, &sql, &mut set, &what).await?;
            if !usable || (!bits && set.len() > limit) {
                remote.push(i);
                continue;
            }
            set.finish();
            bytes_left = bytes_left.saturating_sub(set.bytes());
            local.push(self.local_keys(i, field, std::sync::Arc::new(set), ""));
        }
        let remote = if local.is_empty() || remote.is_empty() {
            None
        } else {
            let fks: Vec<ForeignKeyInfo> = remote.iter().map(|&i| self.fks[i].clone()).collect();
            ParentCheck::new(self.index, &self.table, &self.cols, &fks).map(|c| (c, remote.clone()))
        };
        if local.is_empty() {
            return Ok(LocalSplit { local, remote: None });
        }
        Ok(LocalSplit { local, remote })
    }

    /// The rows of `batch` (positions in it) that have no parent. `fresh`: nothing was run on
    /// `conn` for this check yet.
    pub async fn check(
        &mut self,
        conn: &mut PgConnection,
        batch: &Encoded,
        fresh: &mut bool,
    ) -> Result<Vec<Refused>, SinkError> {
        if batch.rows.is_empty() {
            return Ok(Vec::new());
        }
        if self.split.is_none() {
            let split = if self.local_budget > 0 {
                self.split_off_local(conn).await?
            } else {
                LocalSplit {
                    local: Vec::new(),
                    remote: None,
                }
            };
            self.split = Some(std::sync::Arc::new(split));
        }
        let split = self.split.clone().unwrap_or_else(|| {
            std::sync::Arc::new(LocalSplit {
                local: Vec::new(),
                remote: None,
            })
        });
        let mut found = if split.local.is_empty() {
            self.found(conn, batch, fresh).await?
        } else {
            let mut found = Vec::new();
            if let Some((remote, positions)) = &split.remote {
                for (ord, fk, v) in remote.found(conn, batch, fresh).await? {
                    found.push((ord, positions[fk as usize] as i32, v));
                }
            }
            let bad = || SinkError::Query {
                what: "checking rows for their parents".into(),
                cause: sqlx::Error::Protocol("a malformed encoded row".into()),
            };
            let mut one = Vec::with_capacity(1);
            for l in &split.local {
                for (ord, r) in batch.rows.iter().enumerate() {
                    one.clear();
                    fields_at(&batch.buf[r.clone()], &[l.field], &mut one).map_err(|_| bad())?;
                    let Some(Some(b)) = one.first().copied() else { continue };
                    let k = match l.ty {
                        PgType::Int2 => b.try_into().ok().map(|b| i16::from_be_bytes(b) as i64),
                        PgType::Int4 => b.try_into().ok().map(|b| i32::from_be_bytes(b) as i64),
                        _ => b.try_into().ok().map(i64::from_be_bytes),
                    }
                    .ok_or_else(bad)?;
                    if !l.keys.contains(k) {
                        found.push((ord as i64 + 1, l.fk as i32, Some(k.to_string())));
                    }
                }
            }
            found
        };
        found.sort_by_key(|(ord, fk, _)| (*ord, *fk));
        let all: Vec<usize> = (0..batch.rows.len()).collect();
        Ok(refusals(found, &all, &self.fks))
    }

    /// What the server finds: (1-based row, foreign key, the key's values as text).
    async fn found(
        &self,
        conn: &mut PgConnection,
        batch: &Encoded,
        fresh: &mut bool,
    ) -> Result<Vec<(i64, i32, Option<String>)>, SinkError> {
        let what = "checking rows for their parents";
        let malformed = |e: String| SinkError::Query {
            what: what.into(),
            cause: sqlx::Error::Protocol(e),
        };
        if *fresh {
            // The anti-join must probe each parent's key index per row; a hash of a whole
            // parent table per batch is what the planner may choose for an unanalysed stage.
            // This session runs nothing else.
            execute(conn, "SET enable_hashjoin = off; SET enable_mergejoin = off", what).await?;
        }
        let found: Vec<(i64, i32, Option<String>)> = if self.arrays {
            *fresh = false;
            let mut q = sqlx::query_as(AssertSqlSafe(self.query_sql.clone()));
            let mut values: Vec<Vec<Option<&[u8]>>> = vec![Vec::with_capacity(batch.rows.len()); self.fields.len()];
            for r in &batch.rows {
                let mut fields = Vec::with_capacity(self.fields.len());
                fields_at(&batch.buf[r.clone()], &self.fields, &mut fields).map_err(malformed)?;
                for (v, f) in values.iter_mut().zip(fields) {
                    v.push(f);
                }
            }
            for (t, v) in self.types.iter().zip(&values) {
                q = match t {
                    PgType::Int2 => q.bind(
                        v.iter()
                            .map(|f| f.and_then(|b| b.try_into().ok()).map(i16::from_be_bytes))
                            .collect::<Vec<_>>(),
                    ),
                    PgType::Int4 => q.bind(
                        v.iter()
                            .map(|f| f.and_then(|b| b.try_into().ok()).map(i32::from_be_bytes))
                            .collect::<Vec<_>>(),
                    ),
                    PgType::Int8 => q.bind(
                        v.iter()
                            .map(|f| f.and_then(|b| b.try_into().ok()).map(i64::from_be_bytes))
                            .collect::<Vec<_>>(),
                    ),
                    _ => q.bind(
                        v.iter()
                            .map(|f| f.map(|b| String::from_utf8_lossy(b).into_owned()))
                            .collect::<Vec<_>>(),
                    ),
                };
            }
            q.fetch_all(&mut *conn).await.map_err(q_err(what))?
        } else {
            let begin = if *fresh {
                format!("BEGIN; {}", self.create_sql)
            } else {
                "BEGIN".to_string()
            };
            execute(conn, &begin, what).await?;
            *fresh = false;
            let mut data = Vec::with_capacity(COPY_HEADER.len() + batch.rows.len() * (8 + 12 * self.fields.len()) + 2);
            data.extend_from_slice(COPY_HEADER);
            let mut fields = Vec::with_capacity(self.fields.len());
            for (ord, r) in batch.rows.iter().enumerate() {
                // The row's ordinal, then its key fields.
                begin_tuple(&mut data, 1 + self.fields.len());
                push_field(&mut data, Some(&(ord as i32 + 1).to_be_bytes()));
                fields.clear();
                fields_at(&batch.buf[r.clone()], &self.fields, &mut fields).map_err(malformed)?;
                for f in &fields {
                    push_field(&mut data, *f);
                }
            }
            data.extend_from_slice(&COPY_TRAILER);
            let mut copy = conn.copy_in_raw(&self.copy_sql).await.map_err(q_err(what))?;
            if let Err(e) = copy.send(data).await {
                let _ = copy.abort("send failed").await;
                return Err(q_err(what)(e));
            }
            copy.finish().await.map_err(q_err(what))?;
            // The commit empties the stage.
            let rows = sqlx::raw_sql(AssertSqlSafe(format!("{}; COMMIT", self.query_sql)))
                .fetch_all(&mut *conn)
                .await
                .map_err(q_err(what))?;
            let mut found = Vec::with_capacity(rows.len());
            for r in &rows {
                found.push((
                    r.try_get(0).map_err(q_err(what))?,
                    r.try_get(1).map_err(q_err(what))?,
                    r.try_get(2).map_err(q_err(what))?,
                ));
            }
            found
        };
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lines_parse_across_chunks_and_key_sets_answer_like_a_search() {
        let text = format!("1\n-5\n{}\n{}\n42\n", i64::MAX, i64::MIN);
        for cut in 0..text.len() {
            let (mut partial, mut keys) = (None, Vec::new());
            parse_key_lines(&text.as_bytes()[..cut], &mut partial, &mut keys).unwrap();
            parse_key_lines(&text.as_bytes()[cut..], &mut partial, &mut keys).unwrap();
            assert_eq!(keys, [1, -5, i64::MAX, i64::MIN, 42], "cut at {cut}");
            assert!(partial.is_none());
        }
        assert!(parse_key_lines(b"12x\n", &mut None, &mut Vec::new()).is_err());
        assert!(parse_key_lines(b"99999999999999999999\n", &mut None, &mut Vec::new()).is_err());
        // A bitmap over the keys' span and a sorted list answer as a search would.
        let dense: Vec<i64> = (-100..900).filter(|k| k % 3 != 0).collect();
        let sparse: Vec<i64> = vec![i64::MIN, -7, 0, 3, 1 << 40, i64::MAX];
        let mut bits = KeySet::empty_bits(-100, 1000);
        assert!(bits.extend(&dense[..10]) && bits.extend(&dense[5..]));
        bits.finish();
        let mut sorted = KeySet::Sorted(Vec::new());
        assert!(sorted.extend(&sparse[3..]) && sorted.extend(&sparse[..4]));
        sorted.finish();
        // Their ends: what a shared set is compared with before a check takes it.
        assert_eq!(bits.ends(), Some((-100, 899)));
        assert_eq!(sorted.ends(), Some((i64::MIN, i64::MAX)));
        assert_eq!(KeySet::empty_bits(5, 200).ends(), None);
        for (set, keys) in [(bits, dense), (sorted, sparse)] {
            assert_eq!(set.len(), keys.len());
            for k in (-300..1200)
                .chain(keys.iter().copied())
                .chain([i64::MIN + 1, i64::MAX - 1])
            {
                assert_eq!(set.contains(k), keys.contains(&k), "{k}");
            }
        }
        // A key outside a bitmap's span (a parent row added after its ends were read).
        let mut bits = KeySet::empty_bits(10, 64);
        assert!(!bits.extend(&[9]) && !bits.extend(&[74]) && bits.extend(&[10, 73]));
        assert_eq!(KeySet::empty_bits(i64::MIN, 1).bytes(), 8);
        assert!(!KeySet::Sorted(Vec::new()).contains(0));
    }
}
