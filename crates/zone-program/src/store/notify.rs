//! Notify data: stored by an event under a fresh notify_id, taken once by `get_callback_data`.
//! Live entries are capped by count and bytes; taken and expired entries leave a data-free
//! tombstone so a late reader gets a precise answer.
//!
//! A take is committed before its reply reaches the app, and that reply can be lost on its way (the
//! program or WeCom dies in between, the app's connection breaks): a plain second read is still
//! refused as taken, but a read marked as a retry ([`Store::retake_notify`]) gets the same data
//! again for [`RETRY_GRACE_MS`] after the first take. Only then is the data cleared.

use rusqlite::{OptionalExtension as _, params};

use super::NotifyId;
use super::{MAX_HISTORY_ROWS, Store, StoreError, set_cursor};

/// How long a taken entry keeps its data for a retried read (never past the entry's expiry): long
/// enough for an app to notice a failed call and repeat it, short enough that taken data does not
/// linger. Taken data does not count against the caps.
pub const RETRY_GRACE_MS: i64 = 60_000;

/// Something to store for the app.
#[derive(Clone)]
pub struct NotifyEntry {
    /// The fresh id it is stored under.
    pub notify_id: NotifyId,
    /// The corp it belongs to; only that corp can take it.
    pub corp_id: String,
    /// The JSON text `get_callback_data` will return.
    pub data: String,
}

impl std::fmt::Debug for NotifyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyEntry")
            .field("notify_id", &self.notify_id)
            .field("corp_id", &self.corp_id)
            .field("data_len", &self.data.len())
            .finish()
    }
}

/// Why a take returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TakeError {
    /// Nothing was ever stored under this id for this corp, or its tombstone is gone.
    #[error("notify data not found")]
    NotFound,
    /// The entry outlived its TTL.
    #[error("notify data expired")]
    Expired,
    /// The entry was already taken.
    #[error("notify data already taken")]
    Taken,
}

/// Sizes of the notify table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NotifyStats {
    /// Entries that can still be taken.
    pub live: i64,
    /// Bytes of their data.
    pub live_bytes: i64,
    /// Taken or expired entries remembered as tombstones.
    pub tombstones: i64,
}

impl Store {
    /// Stores `entry` for `notify_ttl` (refusing with [`StoreError::Full`] at a cap).
    pub async fn put_notify(&self, entry: NotifyEntry) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let limits = self.limits;
        self.call(move |conn| {
            let tx = super::write_tx(conn)?;
            insert_notify(&tx, &entry, now, limits)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Stores `entry` and, in the same transaction, records `progress` on the claimed job (so a
    /// job that stored its notify data never stores it twice) and optionally moves a cursor (so
    /// the listing moves past exactly what was stored).
    pub async fn put_notify_for_job(
        &self,
        entry: NotifyEntry,
        claim: super::Claim,
        progress: String,
        cursor: Option<(String, String)>,
    ) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let limits = self.limits;
        self.call(move |conn| {
            let tx = super::write_tx(conn)?;
            insert_notify(&tx, &entry, now, limits)?;
            let held = tx.execute(
                "UPDATE jobs SET progress = ?3 WHERE id = ?1 AND claim_no = ?2",
                params![claim.id, claim.no, progress],
            )?;
            if held != 1 {
                // The claim ran out and another worker took the job: store nothing.
                return Err(StoreError::ClaimLost);
            }
            if let Some((name, value)) = cursor {
                set_cursor(&tx, &entry.corp_id, &name, &value, now)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Returns the data stored under `notify_id` for `corp_id` and leaves a tombstone in its place
    /// (the data itself is kept for a retry, [`RETRY_GRACE_MS`]).
    pub async fn take_notify(
        &self,
        corp_id: &str,
        notify_id: &NotifyId,
    ) -> Result<Result<String, TakeError>, StoreError> {
        self.take_notify_as(corp_id, notify_id, false).await
    }

    /// [`Store::take_notify`] for a read that repeats one whose reply was lost: an entry taken less
    /// than [`RETRY_GRACE_MS`] ago (and not expired) returns its data again; an entry not taken yet
    /// is taken.
    pub async fn retake_notify(
        &self,
        corp_id: &str,
        notify_id: &NotifyId,
    ) -> Result<Result<String, TakeError>, StoreError> {
        self.take_notify_as(corp_id, notify_id, true).await
    }

    async fn take_notify_as(
        &self,
        corp_id: &str,
        notify_id: &NotifyId,
        retry: bool,
    ) -> Result<Result<String, TakeError>, StoreError> {
        let now = self.clock.now_ms();
        let (corp_id, notify_id) = (corp_id.to_owned(), notify_id.as_str().to_owned());
        self.call(move |conn| {
            let tx = super::write_tx(conn)?;
            let row: Option<(String, Option<String>, i64, Option<i64>)> = tx
                .query_row(
                    "SELECT corp_id, data, expires_ms, taken_ms FROM notify WHERE notify_id = ?1",
                    params![notify_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()?;
            let clear = |tx: &rusqlite::Transaction<'_>| {
                tx.execute("UPDATE notify SET data = NULL, bytes = 0 WHERE notify_id = ?1", params![notify_id])
            };
            let outcome = match row {
                None => Err(TakeError::NotFound),
                Some((owner, ..)) if owner != corp_id => Err(TakeError::NotFound),
                Some((_, data, expires, Some(taken))) => {
                    let in_grace = now < taken.saturating_add(RETRY_GRACE_MS) && now < expires;
                    match data {
                        Some(data) if retry && in_grace => Ok(data),
                        Some(_) if !in_grace => {
                            clear(&tx)?;
                            Err(TakeError::Taken)
                        }
                        _ => Err(TakeError::Taken),
                    }
                }
                Some((_, _, expires, None)) if expires <= now => {
                    clear(&tx)?;
                    Err(TakeError::Expired)
                }
                Some((_, None, _, None)) => Err(TakeError::Expired),
                Some((_, Some(data), _, None)) => {
                    // The tombstone of a taken entry is kept until the original expiry; its data
                    // until the retry grace ends (the purge clears it).
                    tx.execute(
                        "UPDATE notify SET taken_ms = ?2, forget_ms = expires_ms WHERE notify_id = ?1",
                        params![notify_id, now],
                    )?;
                    Ok(data)
                }
            };
            tx.commit()?;
            Ok(outcome)
        })
        .await
    }

    /// Whether one more entry fits under the caps (the byte cap must have room left).
    pub async fn notify_has_room(&self) -> Result<bool, StoreError> {
        let stats = self.notify_stats().await?;
        Ok(stats.live < self.limits.max_notify_entries && stats.live_bytes < self.limits.max_notify_bytes)
    }

    /// Counts of the notify table.
    pub async fn notify_stats(&self) -> Result<NotifyStats, StoreError> {
        let now = self.clock.now_ms();
        self.call(move |conn| Ok(stats(conn, now)?)).await
    }
}

fn stats(conn: &rusqlite::Connection, now: i64) -> rusqlite::Result<NotifyStats> {
    conn.query_row(
        "SELECT
            COALESCE(SUM(data IS NOT NULL AND taken_ms IS NULL AND expires_ms > ?1), 0),
            COALESCE(SUM(CASE WHEN data IS NOT NULL AND taken_ms IS NULL AND expires_ms > ?1 THEN bytes ELSE 0 END), 0),
            COALESCE(SUM(data IS NULL OR taken_ms IS NOT NULL), 0)
         FROM notify",
        params![now],
        |r| Ok(NotifyStats { live: r.get(0)?, live_bytes: r.get(1)?, tombstones: r.get(2)? }),
    )
}

fn insert_notify(
    tx: &rusqlite::Transaction<'_>,
    entry: &NotifyEntry,
    now: i64,
    limits: super::Limits,
) -> Result<(), StoreError> {
    let bytes = entry.data.len() as i64;
    let current = stats(tx, now)?;
    if current.live + 1 > limits.max_notify_entries || current.live_bytes + bytes > limits.max_notify_bytes {
        return Err(StoreError::Full);
    }
    let expires = now + limits.notify_ttl_ms;
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO notify (notify_id, corp_id, data, bytes, created_ms, expires_ms, taken_ms, forget_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, ?7)",
        params![
            entry.notify_id.as_str(),
            entry.corp_id,
            entry.data,
            bytes,
            now,
            expires,
            expires + limits.notify_ttl_ms
        ],
    )?;
    if inserted == 0 {
        // A random 128-bit id collided, or a caller reused one: never overwrite.
        return Err(StoreError::Corrupt("notify_id already used"));
    }
    if current.tombstones > MAX_HISTORY_ROWS {
        tx.execute(
            "DELETE FROM notify WHERE notify_id IN (SELECT notify_id FROM notify WHERE data IS NULL
             ORDER BY forget_ms LIMIT ?1)",
            params![current.tombstones - MAX_HISTORY_ROWS],
        )?;
    }
    Ok(())
}
