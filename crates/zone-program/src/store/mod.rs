//! The program's durable state in one embedded SQLite file: notify data (TTL, take-once, capped),
//! job rows and listing cursors. One connection lives on a dedicated thread; async callers send it
//! closures and await the answer, so SQLite never blocks the async executor. The schema
//! (`schema.sql`) is applied at every start.

mod jobs;
mod msg_index;
mod notify;
mod notify_id;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, oneshot};

pub use jobs::{Claim, Enqueued, JobCounts, JobKind, JobRow, NewJob, Phase};
pub use msg_index::{Coverage, RETENTION_SECS};
pub use notify::{NotifyEntry, NotifyStats, RETRY_GRACE_MS, TakeError};
pub use notify_id::{MAX_NOTIFY_ID_BYTES, MAX_OWN_NOTIFY_ID_BYTES, NotifyId, NotifyIdError};

use crate::clock::{Clock, SystemClock};
use crate::config::StoreConfig;

/// The schema, applied at every start.
const SCHEMA: &str = include_str!("schema.sql");
/// How long a write waits for another connection's lock when `[store]` does not say.
const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests waiting for the store thread before senders wait.
const QUEUE: usize = 1024;
/// Most tombstones and finished job rows kept (oldest go first).
const MAX_HISTORY_ROWS: i64 = 100_000;
/// How long finished job rows (their dedupe keys) are kept: a day, the longest-lived event id
/// (an export jobid) lives 24 h.
const FINISHED_JOB_RETENTION_MS: i64 = 24 * 3600 * 1000;

/// A failure of the store. Its `Display` never carries stored data.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The notify store is at its entry or byte cap.
    #[error("store full")]
    Full,
    /// The job table holds `jobs.max_pending` unfinished jobs.
    #[error("job queue full")]
    QueueFull,
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored value does not parse (the file was edited or is corrupt).
    #[error("corrupt row: {0}")]
    Corrupt(&'static str),
    /// The store thread is gone.
    #[error("store closed")]
    Closed,
    /// The store's file or directory cannot be created, or others may read it.
    #[error("{0}")]
    Access(String),
    /// A job's claim ran out and another worker took the job over; nothing was recorded.
    #[error("the job's claim was taken over")]
    ClaimLost,
}

/// Creates the store's directory (mode 0700) and file (mode 0600) if missing; refuses a file, WAL or
/// shared-memory file that group or others may read or write (SQLite gives the WAL the mode of the
/// database file).
fn create_private(path: &Path) -> Result<(), StoreError> {
    let shown = path.display();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .map_err(|e| StoreError::Access(format!("cannot create the store directory {}: {e}", dir.display())))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|e| StoreError::Access(format!("cannot open {shown}: {e}")))?;
    #[cfg(unix)]
    for suffix in ["", "-wal", "-shm"] {
        use std::os::unix::fs::PermissionsExt as _;
        let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        let Ok(meta) = std::fs::metadata(&file) else { continue };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(StoreError::Access(format!(
                "{} is readable or writable by group or others (mode {mode:04o}); it may hold secrets: chmod 600 {}",
                file.display(),
                file.display()
            )));
        }
    }
    Ok(())
}

/// The caps and lifetimes the store enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Notify data lifetime in milliseconds (≤ 600 000).
    pub notify_ttl_ms: i64,
    /// Most live notify entries.
    pub max_notify_entries: i64,
    /// Most bytes of live notify data.
    pub max_notify_bytes: i64,
}

impl Limits {
    /// The limits of `[store]`.
    pub fn from_config(config: &StoreConfig) -> Self {
        Self {
            notify_ttl_ms: (config.notify_ttl_secs as i64) * 1000,
            max_notify_entries: config.max_notify_entries as i64,
            max_notify_bytes: config.max_notify_bytes as i64,
        }
    }
}

type Task = Box<dyn FnOnce(&mut Connection) + Send>;

/// A cheap, cloneable handle to the store thread.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Task>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    /// Unfinished job rows, counted at open and kept by the store thread (so the `max_pending`
    /// check of every enqueue is not a scan).
    unfinished: Arc<AtomicI64>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("limits", &self.limits).finish_non_exhaustive()
    }
}

/// What the purge removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    /// Notify entries whose data expired or whose retry grace after a take ended (now tombstones).
    pub expired: usize,
    /// Rows deleted (tombstones past their time, old finished jobs).
    pub deleted: usize,
}

impl Store {
    /// Opens (creating if needed) the SQLite file of `[store]` with the system clock.
    pub fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        let busy = Duration::from_millis(config.busy_timeout_ms);
        Self::open_inner(&config.path, Limits::from_config(config), Arc::new(SystemClock), busy)
    }

    /// Opens `path` with explicit limits and clock (tests use a [`ManualClock`](crate::clock::ManualClock)) and the default
    /// busy timeout.
    pub fn open_with(path: &Path, limits: Limits, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        Self::open_inner(path, limits, clock, DEFAULT_BUSY_TIMEOUT)
    }

    fn open_inner(path: &Path, limits: Limits, clock: Arc<dyn Clock>, busy: Duration) -> Result<Self, StoreError> {
        create_private(path)?;
        let mut conn = Connection::open(path)?;
        // Deleted content (a finished job's payload with message secret keys, taken notify data) is
        // overwritten in the file, not left in free pages; the purge checkpoints the WAL.
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Another connection's write waits this long; every write transaction of the store begins
        // IMMEDIATE, so it takes the write lock first and the wait applies (a deferred one that read
        // first would fail at once when it tries to write).
        conn.busy_timeout(busy)?;
        conn.execute_batch(SCHEMA)?;
        migrate(&conn)?;
        conn.execute_batch(msg_index::SCHEMA)?;
        // Whatever a previous process held is free again: interrupted jobs resume.
        conn.execute("UPDATE jobs SET claimed = 0 WHERE claimed = 1", [])?;
        let unfinished: i64 =
            conn.query_row("SELECT COUNT(*) FROM jobs WHERE phase IN ('run', 'report')", [], |r| r.get(0))?;
        let (tx, mut rx) = mpsc::channel::<Task>(QUEUE);
        std::thread::Builder::new()
            .name("store".into())
            .spawn(move || {
                while let Some(task) = rx.blocking_recv() {
                    // A panicking task drops its answer channel; the caller sees `Closed`.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task(&mut conn)));
                }
            })
            .map_err(|_| StoreError::Closed)?;
        Ok(Self { tx, clock, limits, unfinished: Arc::new(AtomicI64::new(unfinished)) })
    }

    /// The clock the store stamps rows with.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The enforced limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Runs `f` on the store thread, inside the caller's span.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (answer, rx) = oneshot::channel();
        let span = tracing::Span::current();
        let task: Task = Box::new(move |conn| {
            let _entered = span.enter();
            let _ = answer.send(f(conn));
        });
        self.tx.send(task).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Turns expired notify data, and taken data past its retry grace, into tombstones and deletes rows past their time: tombstones,
    /// finished jobs older than a day, and the oldest history beyond the row cap.
    pub async fn purge(&self) -> Result<Purged, StoreError> {
        let now = self.clock.now_ms();
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let expired = tx.execute(
                "UPDATE notify SET data = NULL, bytes = 0 WHERE data IS NOT NULL
                 AND (expires_ms <= ?1 OR taken_ms <= ?1 - ?2)",
                params![now, notify::RETRY_GRACE_MS],
            )?;
            let mut deleted = tx.execute("DELETE FROM notify WHERE forget_ms <= ?1", params![now])?;
            deleted += tx.execute(
                "DELETE FROM jobs WHERE finished_ms IS NOT NULL AND finished_ms <= ?1",
                params![now - FINISHED_JOB_RETENTION_MS],
            )?;
            deleted += tx.execute(
                "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE finished_ms IS NOT NULL
                 ORDER BY finished_ms DESC LIMIT -1 OFFSET ?1)",
                params![MAX_HISTORY_ROWS],
            )?;
            tx.commit()?;
            // Old page images (with what was just cleared or deleted) leave the WAL.
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            Ok(Purged { expired, deleted })
        })
        .await
    }

    /// The stored cursor `name` of `corp_id`, if any.
    pub async fn cursor(&self, corp_id: &str, name: &str) -> Result<Option<String>, StoreError> {
        let (corp_id, name) = (corp_id.to_owned(), name.to_owned());
        self.call(move |conn| {
            Ok(conn
                .query_row("SELECT value FROM cursors WHERE corp_id = ?1 AND name = ?2", params![corp_id, name], |r| {
                    r.get(0)
                })
                .optional()?)
        })
        .await
    }

    /// A digest of every row of every table. Tests compare it before and after a rejected request
    /// to prove that nothing changed.
    pub async fn fingerprint(&self) -> Result<String, StoreError> {
        self.call(|conn| {
            let mut hash = Sha256::new();
            for table in ["notify", "jobs", "cursors"] {
                let mut stmt = conn.prepare(&format!("SELECT * FROM {table} ORDER BY 1, 2"))?;
                let columns = stmt.column_count();
                let mut rows = stmt.query([])?;
                hash.update(table.as_bytes());
                while let Some(row) = rows.next()? {
                    for i in 0..columns {
                        let cell: rusqlite::types::Value = row.get(i)?;
                        hash.update(format!("{cell:?}\u{1f}").as_bytes());
                    }
                    hash.update(b"\x1e");
                }
            }
            Ok(hex::encode(hash.finalize()))
        })
        .await
    }
}

/// Begins a write transaction: IMMEDIATE, so the write lock is taken (waiting up to the busy
/// timeout) before anything is read.
fn write_tx(conn: &mut Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
}

/// Adds what a store file made by an earlier version lacks (`schema.sql` creates new files whole).
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let has = |column: &str| -> rusqlite::Result<bool> {
        let n: i64 =
            conn.query_row("SELECT COUNT(*) FROM pragma_table_info('jobs') WHERE name = ?1", params![column], |r| {
                r.get(0)
            })?;
        Ok(n > 0)
    };
    for (column, ddl) in [
        ("lease_ms", "ALTER TABLE jobs ADD COLUMN lease_ms INTEGER NOT NULL DEFAULT 0"),
        ("claim_no", "ALTER TABLE jobs ADD COLUMN claim_no INTEGER NOT NULL DEFAULT 0"),
    ] {
        if !has(column)? {
            conn.execute(ddl, [])?;
        }
    }
    Ok(())
}

/// Sets a cursor inside a transaction.
fn set_cursor(
    tx: &rusqlite::Transaction<'_>,
    corp_id: &str,
    name: &str,
    value: &str,
    now: i64,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO cursors (corp_id, name, value, updated_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (corp_id, name) DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms",
        params![corp_id, name, value, now],
    )?;
    Ok(())
}
