//! The program's durable state in one embedded SQLite file: notify data (TTL, take-once, capped),
//! job rows and listing cursors. One connection lives on a dedicated thread; async callers send it
//! closures and await the answer, so SQLite never blocks the async executor. The schema
//! (`schema.sql`) is applied at every start.
//!
//! **Group commit.** The job table's small writes (enqueue, claim, finish, …) are *grouped*: the
//! store thread runs every grouped write waiting in its queue (up to [`MAX_GROUP`]) inside one
//! transaction, each under its own savepoint (a failing one undoes only itself), commits once,
//! and only then answers them. An acknowledgement that waits for its enqueue's answer is therefore
//! never sent before its row is committed, and one commit (the WAL append) serves many jobs. Writes
//! that are not grouped run alone, in their own transactions, in queue order between groups.

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
const QUEUE: usize = 4096;
/// Most grouped writes committed in one transaction.
pub const MAX_GROUP: usize = 512;
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
/// What a grouped write does once its group's transaction ended: `true` when it committed. It
/// answers the caller (and undoes in-memory bookkeeping when the group did not commit).
type Completion = Box<dyn FnOnce(Result<(), &rusqlite::Error>) + Send>;
/// A grouped write: runs inside the group's transaction and returns its completion.
type GroupTask = Box<dyn FnOnce(&mut Connection) -> Completion + Send>;

/// A request to the store thread.
enum Op {
    /// Runs alone (its own transactions, if it writes).
    Alone(Task),
    /// Runs in a group transaction ([`Store::grouped`]).
    Grouped(GroupTask),
}

/// A cheap, cloneable handle to the store thread.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Op>,
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
        let (tx, rx) = mpsc::channel::<Op>(QUEUE);
        std::thread::Builder::new()
            .name("store".into())
            .spawn(move || serve(&mut conn, rx))
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
        self.tx.send(Op::Alone(task)).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs the write `f` on the store thread in a group transaction ([module docs](self)), under
    /// its own savepoint; answers once the group committed. `done` runs on the store thread when
    /// the group ended, with what `f` returned (`None` if it failed) and whether that was
    /// committed: it keeps in-memory bookkeeping in step with the file (undoing `f`'s changes to it
    /// when they were not committed).
    async fn grouped<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        done: impl FnOnce(Option<&T>, bool) + Send + 'static,
    ) -> Result<T, StoreError> {
        let (answer, rx) = oneshot::channel();
        let span = tracing::Span::current();
        let task: GroupTask = Box::new(move |conn| {
            let (value, failed) = {
                let _entered = span.enter();
                // A savepoint: a failing write undoes only itself, not the rest of its group.
                match conn.savepoint() {
                    Ok(mut sp) => match f(&sp) {
                        Ok(value) => match sp.commit() {
                            Ok(()) => (Some(value), None),
                            Err(e) => (Some(value), Some(StoreError::Sqlite(e))),
                        },
                        Err(e) => {
                            let _ = sp.rollback();
                            (None, Some(e))
                        }
                    },
                    Err(e) => (None, Some(StoreError::Sqlite(e))),
                }
            };
            Box::new(move |group: Result<(), &rusqlite::Error>| {
                let committed = failed.is_none() && group.is_ok();
                done(value.as_ref(), committed);
                let outcome = match (value, failed, group) {
                    (_, Some(e), _) => Err(e),
                    (Some(value), None, Ok(())) => Ok(value),
                    (_, None, Err(e)) => Err(StoreError::Sqlite(copy_error(e))),
                    // (`f` failed without an error: not possible; answered as a lost store.)
                    (None, None, Ok(())) => Err(StoreError::Closed),
                };
                let _ = answer.send(outcome);
            })
        });
        self.tx.send(Op::Grouped(task)).await.map_err(|_| StoreError::Closed)?;
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

/// The store thread: runs requests in queue order; grouped writes waiting together share one
/// transaction.
fn serve(conn: &mut Connection, mut rx: mpsc::Receiver<Op>) {
    let mut next: Option<Op> = None;
    loop {
        let op = match next.take() {
            Some(op) => op,
            None => match rx.blocking_recv() {
                Some(op) => op,
                None => return,
            },
        };
        match op {
            // A panicking task drops its answer channel; the caller sees `Closed`.
            Op::Alone(task) => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task(conn)));
            }
            Op::Grouped(first) => {
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(Op::Grouped(task)) => group.push(task),
                        Ok(alone) => {
                            next = Some(alone);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                run_group(conn, group);
            }
        }
    }
}

/// Runs `group` in one IMMEDIATE transaction (each task under its savepoint), commits, then
/// completes every task with the outcome. When SQLite ends the transaction early (an I/O error, a
/// full disk), the tasks run so far fail and the rest start a new transaction.
fn run_group(conn: &mut Connection, group: Vec<GroupTask>) {
    let mut ran: Vec<Completion> = Vec::with_capacity(group.len());
    let mut open = false;
    for task in group {
        if !open {
            match conn.execute_batch("BEGIN IMMEDIATE") {
                Ok(()) => open = true,
                // Without a transaction each savepoint commits on its own, as a lone write would.
                Err(e) => tracing::warn!(error = %e, "a group transaction could not begin; its writes run one by one"),
            }
        }
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task(conn))) {
            Ok(done) => ran.push(done),
            Err(_) => tracing::error!("a grouped store write panicked"),
        }
        if open && conn.is_autocommit() {
            // SQLite rolled the whole transaction back: nothing of it was committed.
            let e = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT), None);
            complete(std::mem::take(&mut ran), Err(&e));
            open = false;
        }
    }
    if !open {
        complete(ran, Ok(()));
        return;
    }
    match conn.execute_batch("COMMIT") {
        Ok(()) => complete(ran, Ok(())),
        Err(e) => {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            complete(ran, Err(&e));
        }
    }
}

fn complete(ran: Vec<Completion>, outcome: Result<(), &rusqlite::Error>) {
    for done in ran {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| done(outcome)));
    }
}

/// A copy of `e` for each write of a group that failed to commit.
fn copy_error(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, message) => rusqlite::Error::SqliteFailure(*code, message.clone()),
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
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
