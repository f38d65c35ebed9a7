//! Job rows: durable records of async ability calls and event follow-ups. A row is claimed by one
//! worker at a time, moves `run → report → done | failed`, and keeps its dedupe key for a day after
//! it finished so a redelivered request or event is recognised.

use std::sync::atomic::Ordering;

use rusqlite::{OptionalExtension as _, Row, params};

use super::{Store, StoreError, set_cursor};
use crate::sdk::CallContext;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// An ability called with `is_async`; its result is reported with `program_async_job_call_back`.
    Ability,
    /// The follow-up work of a call_type 2 event.
    Event,
}

impl JobKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ability => "ability",
            Self::Event => "event",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "ability" => Some(Self::Ability),
            "event" => Some(Self::Event),
            _ => None,
        }
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting to run (or to run again).
    Run,
    /// Has a result that is still to be reported.
    Report,
    /// Finished and, for ability jobs, reported.
    Done,
    /// Gave up (after its retries), visible in [`JobCounts::failed`].
    Failed,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Self::Run => "run",
            Self::Report => "report",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "run" => Some(Self::Run),
            "report" => Some(Self::Report),
            "done" => Some(Self::Done),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// A job to record.
#[derive(Clone)]
pub struct NewJob {
    /// What it does.
    pub kind: JobKind,
    /// A key that makes a second enqueue of the same work a no-op.
    pub dedupe_key: Option<String>,
    /// The SDK context to run and report in.
    pub ctx: CallContext,
    /// The input (ability `data` or event JSON). Request content: never logged.
    pub payload: String,
}

/// A recorded job.
#[derive(Clone)]
pub struct JobRow {
    /// Row id.
    pub id: i64,
    /// What it does.
    pub kind: JobKind,
    /// The SDK context.
    pub ctx: CallContext,
    /// The input; empty once the job finished.
    pub payload: String,
    /// Kind-specific resumable state.
    pub progress: Option<String>,
    /// Its phase.
    pub phase: Phase,
    /// How many times a worker started running it.
    pub runs: u32,
    /// Failed report or retry attempts in the current phase.
    pub attempts: u32,
    /// The result to report: `(errcode, result)`.
    pub report: Option<(i64, String)>,
}

impl std::fmt::Debug for JobRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobRow")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("phase", &self.phase)
            .field("runs", &self.runs)
            .field("attempts", &self.attempts)
            .field("payload_len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

/// The outcome of an enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// A new row.
    New(i64),
    /// A row with the same dedupe key exists; nothing was added.
    Duplicate(i64),
}

/// Job rows by state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JobCounts {
    /// Waiting to run or to report, not held by a worker.
    pub queued: i64,
    /// Held by a worker.
    pub running: i64,
    /// Finished.
    pub done: i64,
    /// Gave up.
    pub failed: i64,
}

impl JobCounts {
    /// Jobs that are not finished.
    pub fn unfinished(&self) -> i64 {
        self.queued + self.running
    }
}

const COLUMNS: &str = "id, kind, ctx, payload, progress, phase, runs, attempts, report_errcode, report_result";

fn job_from_row(r: &Row<'_>) -> rusqlite::Result<Result<JobRow, StoreError>> {
    let kind: String = r.get(1)?;
    let ctx: String = r.get(2)?;
    let phase: String = r.get(5)?;
    let errcode: Option<i64> = r.get(8)?;
    let result: Option<String> = r.get(9)?;
    let build = || -> Result<JobRow, StoreError> {
        Ok(JobRow {
            id: r.get(0)?,
            kind: JobKind::parse(&kind).ok_or(StoreError::Corrupt("job kind"))?,
            ctx: serde_json::from_str(&ctx).map_err(|_| StoreError::Corrupt("job context"))?,
            payload: r.get(3)?,
            progress: r.get(4)?,
            phase: Phase::parse(&phase).ok_or(StoreError::Corrupt("job phase"))?,
            runs: r.get(6)?,
            attempts: r.get(7)?,
            report: errcode.zip(result),
        })
    };
    Ok(build())
}

impl Store {
    /// Records a job unless one with the same dedupe key exists; refuses with
    /// [`StoreError::QueueFull`] when `max_pending` jobs are unfinished.
    pub async fn enqueue_job(&self, job: NewJob, max_pending: i64) -> Result<Enqueued, StoreError> {
        let now = self.clock.now_ms();
        let unfinished = self.unfinished.clone();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            if let Some(key) = &job.dedupe_key {
                let existing: Option<i64> =
                    tx.query_row("SELECT id FROM jobs WHERE dedupe_key = ?1", params![key], |r| r.get(0)).optional()?;
                if let Some(id) = existing {
                    return Ok(Enqueued::Duplicate(id));
                }
            }
            if unfinished.load(Ordering::SeqCst) >= max_pending {
                return Err(StoreError::QueueFull);
            }
            let ctx = serde_json::to_string(&job.ctx).expect("a context serialises");
            tx.execute(
                "INSERT INTO jobs (kind, dedupe_key, ctx, payload, phase, next_ms, created_ms)
                 VALUES (?1, ?2, ?3, ?4, 'run', ?5, ?5)",
                params![job.kind.as_str(), job.dedupe_key, ctx, job.payload, now],
            )?;
            let id = tx.last_insert_rowid();
            tx.commit()?;
            unfinished.fetch_add(1, Ordering::SeqCst);
            Ok(Enqueued::New(id))
        })
        .await
    }

    /// Claims the job that is due first, if any, counting a run when it is in the run phase.
    pub async fn claim_job(&self) -> Result<Option<JobRow>, StoreError> {
        let now = self.clock.now_ms();
        self.call(move |conn| {
            let sql = format!(
                "UPDATE jobs SET claimed = 1, runs = runs + (phase = 'run')
                 WHERE id = (SELECT id FROM jobs WHERE claimed = 0 AND phase IN ('run', 'report') AND next_ms <= ?1
                             ORDER BY next_ms, id LIMIT 1)
                 RETURNING {COLUMNS}"
            );
            conn.query_row(&sql, params![now], job_from_row).optional()?.transpose()
        })
        .await
    }

    /// Records resumable state of a running job and, optionally, moves one of its corp's cursors
    /// in the same transaction.
    pub async fn checkpoint_job(
        &self,
        id: i64,
        progress: String,
        cursor: Option<(String, String, String)>,
    ) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            tx.execute("UPDATE jobs SET progress = ?2 WHERE id = ?1", params![id, progress])?;
            if let Some((corp_id, name, value)) = cursor {
                set_cursor(&tx, &corp_id, &name, &value, now)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Stores a job's result, due for reporting now, and drops its input. With `hold` the caller
    /// keeps its claim and reports at once (a restart releases the claim); otherwise the row is
    /// released for any worker.
    pub async fn job_to_report(&self, id: i64, errcode: i64, result: String, hold: bool) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        self.call(move |conn| {
            conn.execute(
                "UPDATE jobs SET phase = 'report', claimed = ?5, attempts = 0, report_errcode = ?2,
                 report_result = ?3, payload = '', progress = NULL, next_ms = ?4 WHERE id = ?1",
                params![id, errcode, result, now, hold],
            )?;
            Ok(())
        })
        .await
    }

    /// Releases a job to be tried again at `next_ms`, with `attempts` failed tries so far.
    pub async fn retry_job(&self, id: i64, next_ms: i64, attempts: u32) -> Result<(), StoreError> {
        self.call(move |conn| {
            conn.execute(
                "UPDATE jobs SET claimed = 0, next_ms = ?2, attempts = ?3 WHERE id = ?1",
                params![id, next_ms, attempts],
            )?;
            Ok(())
        })
        .await
    }

    /// Ends a job as [`Phase::Done`] or [`Phase::Failed`], dropping its input and result.
    pub async fn finish_job(&self, id: i64, phase: Phase) -> Result<(), StoreError> {
        debug_assert!(matches!(phase, Phase::Done | Phase::Failed));
        let now = self.clock.now_ms();
        let unfinished = self.unfinished.clone();
        self.call(move |conn| {
            let changed = conn.execute(
                "UPDATE jobs SET phase = ?2, claimed = 0, payload = '', progress = NULL, report_result = NULL,
                 finished_ms = ?3 WHERE id = ?1 AND phase IN ('run', 'report')",
                params![id, phase.as_str(), now],
            )?;
            if changed == 1 {
                unfinished.fetch_sub(1, Ordering::SeqCst);
            }
            Ok(())
        })
        .await
    }

    /// One job by id.
    pub async fn job(&self, id: i64) -> Result<Option<JobRow>, StoreError> {
        self.call(move |conn| {
            let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1");
            conn.query_row(&sql, params![id], job_from_row).optional()?.transpose()
        })
        .await
    }

    /// Counts of job rows by state.
    pub async fn job_counts(&self) -> Result<JobCounts, StoreError> {
        self.call(|conn| {
            Ok(conn.query_row(
                "SELECT
                    COALESCE(SUM(phase IN ('run', 'report') AND claimed = 0), 0),
                    COALESCE(SUM(phase IN ('run', 'report') AND claimed = 1), 0),
                    COALESCE(SUM(phase = 'done'), 0),
                    COALESCE(SUM(phase = 'failed'), 0)
                 FROM jobs",
                [],
                |r| Ok(JobCounts { queued: r.get(0)?, running: r.get(1)?, done: r.get(2)?, failed: r.get(3)? }),
            )?)
        })
        .await
    }

    /// When the earliest unclaimed unfinished job is due, if any.
    pub async fn next_job_due_ms(&self) -> Result<Option<i64>, StoreError> {
        self.call(|conn| {
            Ok(conn.query_row(
                "SELECT MIN(next_ms) FROM jobs WHERE claimed = 0 AND phase IN ('run', 'report')",
                [],
                |r| r.get(0),
            )?)
        })
        .await
    }
}
