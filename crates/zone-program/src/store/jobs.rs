//! Job rows: durable records of async ability calls and event follow-ups. A row is claimed by one
//! worker at a time, moves `run → report → done | failed`, and keeps its dedupe key for a day after
//! it finished so a redelivered request or event is recognised.

use std::sync::atomic::Ordering;

use rusqlite::{OptionalExtension as _, Row, params};

use super::{Store, StoreError};
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
    /// The start shared by the dedupe keys of every request made in the same job context: a
    /// recorded key with this start but another request is reported as
    /// [`Enqueued::NewSameContext`] (the new job is recorded all the same).
    pub context_prefix: Option<String>,
    /// The SDK context to run and report in.
    pub ctx: CallContext,
    /// The input (ability `data` or event JSON). Request content: never logged.
    pub payload: String,
}

/// A recorded job, as claimed by one worker.
#[derive(Clone)]
pub struct JobRow {
    /// Row id.
    pub id: i64,
    /// Which claim of the row this is: an outcome is recorded only while it is still the row's
    /// current claim (a claim whose lease ran out may have been taken over).
    pub claim_no: i64,
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
    /// When it was recorded (Unix ms).
    pub created_ms: i64,
}

impl JobRow {
    /// The claim under which this row was handed out.
    pub fn claim(&self) -> Claim {
        Claim { id: self.id, no: self.claim_no }
    }
}

impl std::fmt::Debug for JobRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobRow")
            .field("id", &self.id)
            .field("claim_no", &self.claim_no)
            .field("kind", &self.kind)
            .field("phase", &self.phase)
            .field("runs", &self.runs)
            .field("attempts", &self.attempts)
            .field("payload_len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

/// One worker's hold on a job row: the row id and the claim number it was handed out under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// Row id.
    pub id: i64,
    /// Claim number (see [`JobRow::claim_no`]).
    pub no: i64,
}

/// The outcome of an enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// A new row.
    New(i64),
    /// A new row, although a different request with the same job context was recorded before.
    NewSameContext(i64),
    /// The same request is recorded and not finished; nothing was added.
    Duplicate(i64),
    /// The same request is recorded and finished; nothing was added. `report` is the result it
    /// reported (ability jobs), so a redelivery can still be answered.
    Finished {
        /// Row id.
        id: i64,
        /// `(errcode, result)`, if it had one.
        report: Option<(i64, String)>,
    },
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

const COLUMNS: &str =
    "id, kind, ctx, payload, progress, phase, runs, attempts, report_errcode, report_result, claim_no, created_ms";

fn job_from_row(r: &Row<'_>) -> rusqlite::Result<Result<JobRow, StoreError>> {
    let kind: String = r.get(1)?;
    let ctx: String = r.get(2)?;
    let phase: String = r.get(5)?;
    let errcode: Option<i64> = r.get(8)?;
    let result: Option<String> = r.get(9)?;
    let build = || -> Result<JobRow, StoreError> {
        Ok(JobRow {
            id: r.get(0)?,
            claim_no: r.get(10)?,
            kind: JobKind::parse(&kind).ok_or(StoreError::Corrupt("job kind"))?,
            ctx: serde_json::from_str(&ctx).map_err(|_| StoreError::Corrupt("job context"))?,
            payload: r.get(3)?,
            progress: r.get(4)?,
            phase: Phase::parse(&phase).ok_or(StoreError::Corrupt("job phase"))?,
            runs: r.get(6)?,
            attempts: r.get(7)?,
            report: errcode.zip(result),
            created_ms: r.get(11)?,
        })
    };
    Ok(build())
}

/// The smallest string above every string that starts with `prefix` (its last byte plus one), so
/// `key >= prefix AND key < end` finds the keys with that start through the index.
fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.to_owned();
    let last = end.pop().map_or(1, |c| u32::from(c) + 1);
    end.push(char::from_u32(last).unwrap_or(char::MAX));
    end
}

impl Store {
    /// Records a job unless one with the same dedupe key exists; refuses with
    /// [`StoreError::QueueFull`] when `max_pending` jobs are unfinished. Grouped: answered once the
    /// row is committed, so an acknowledgement sent after it never precedes its row.
    pub async fn enqueue_job(&self, job: NewJob, max_pending: i64) -> Result<Enqueued, StoreError> {
        let now = self.clock.now_ms();
        let unfinished = self.unfinished.clone();
        let counted = self.unfinished.clone();
        self.grouped(
            move |conn| {
                if let Some(key) = &job.dedupe_key {
                    let existing: Option<(i64, String, Option<i64>, Option<String>)> = conn
                        .prepare_cached(
                            "SELECT id, phase, report_errcode, report_result FROM jobs WHERE dedupe_key = ?1",
                        )?
                        .query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                        .optional()?;
                    if let Some((id, phase, errcode, result)) = existing {
                        return Ok(match Phase::parse(&phase) {
                            Some(Phase::Done | Phase::Failed) => Enqueued::Finished { id, report: errcode.zip(result) },
                            _ => Enqueued::Duplicate(id),
                        });
                    }
                }
                if unfinished.load(Ordering::SeqCst) >= max_pending {
                    return Err(StoreError::QueueFull);
                }
                let same_context = match &job.context_prefix {
                    Some(prefix) => conn
                        .prepare_cached("SELECT 1 FROM jobs WHERE dedupe_key >= ?1 AND dedupe_key < ?2 LIMIT 1")?
                        .query_row(params![prefix, prefix_end(prefix)], |_| Ok(()))
                        .optional()?
                        .is_some(),
                    None => false,
                };
                let ctx = serde_json::to_string(&job.ctx).expect("a context serialises");
                conn.prepare_cached(
                    "INSERT INTO jobs (kind, dedupe_key, ctx, payload, phase, next_ms, created_ms)
                     VALUES (?1, ?2, ?3, ?4, 'run', ?5, ?5)",
                )?
                .execute(params![job.kind.as_str(), job.dedupe_key, ctx, job.payload, now])?;
                let id = conn.last_insert_rowid();
                // Counted now, so the next enqueue of the same group sees it; undone below if the
                // group does not commit.
                unfinished.fetch_add(1, Ordering::SeqCst);
                Ok(if same_context { Enqueued::NewSameContext(id) } else { Enqueued::New(id) })
            },
            move |added, committed| {
                if !committed && matches!(added, Some(Enqueued::New(_) | Enqueued::NewSameContext(_))) {
                    counted.fetch_sub(1, Ordering::SeqCst);
                }
            },
        )
        .await
    }

    /// Claims the job that is due first, if any, for `lease_ms`, counting a run when it is in the
    /// run phase. A claimed row whose lease ran out is due again.
    pub async fn claim_job(&self, lease_ms: i64) -> Result<Option<JobRow>, StoreError> {
        Ok(self.claim_jobs(1, lease_ms).await?.pop())
    }

    /// Claims up to `n` due jobs at once, the earliest due first (see [`Store::claim_job`]), in
    /// one statement of a group transaction.
    pub async fn claim_jobs(&self, n: usize, lease_ms: i64) -> Result<Vec<JobRow>, StoreError> {
        let now = self.clock.now_ms();
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.grouped(
            move |conn| {
                let sql = format!(
                    "UPDATE jobs SET claimed = 1, lease_ms = ?2, claim_no = claim_no + 1, runs = runs + (phase = 'run')
                     WHERE id IN (SELECT id FROM jobs WHERE phase IN ('run', 'report') AND next_ms <= ?1
                                  AND (claimed = 0 OR lease_ms <= ?1)
                                  ORDER BY next_ms, id LIMIT ?3)
                     RETURNING {COLUMNS}"
                );
                let mut stmt = conn.prepare_cached(&sql)?;
                let rows = stmt.query_map(params![now, now + lease_ms, n], job_from_row)?;
                let mut jobs = Vec::new();
                for row in rows {
                    jobs.push(row??);
                }
                // RETURNING gives no order: in id order (the order they were recorded).
                jobs.sort_by_key(|j: &JobRow| j.id);
                Ok(jobs)
            },
            |_, _| {},
        )
        .await
    }

    /// Extends `claim` to `lease_ms` from now; false when the claim is no longer the row's.
    pub async fn renew_claim(&self, claim: Claim, lease_ms: i64) -> Result<bool, StoreError> {
        let until = self.clock.now_ms() + lease_ms;
        self.grouped(
            move |conn| {
                let changed = conn
                    .prepare_cached("UPDATE jobs SET lease_ms = ?3 WHERE id = ?1 AND claim_no = ?2 AND claimed = 1")?
                    .execute(params![claim.id, claim.no, until])?;
                Ok(changed == 1)
            },
            |_, _| {},
        )
        .await
    }

    /// Records resumable state of a running job held under `claim` and, in the same transaction,
    /// moves the corp's stored cursor `(corp_id, listing, value)` when given (a handler whose
    /// progress holds what it pulled). A lost claim records nothing ([`StoreError::ClaimLost`]).
    pub async fn checkpoint_job(
        &self,
        claim: Claim,
        progress: String,
        cursor: Option<(String, String, String)>,
    ) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        self.call(move |conn| {
            let tx = super::write_tx(conn)?;
            let held = tx.execute(
                "UPDATE jobs SET progress = ?3 WHERE id = ?1 AND claim_no = ?2",
                params![claim.id, claim.no, progress],
            )?;
            if held != 1 {
                return Err(StoreError::ClaimLost);
            }
            if let Some((corp_id, name, value)) = cursor {
                super::set_cursor(&tx, &corp_id, &name, &value, now)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Stores a job's result, due for reporting now, and drops its input. With `hold` the caller
    /// keeps its claim and reports at once (a restart or the lease releases the claim); otherwise
    /// the row is released for any worker.
    pub async fn job_to_report(
        &self,
        claim: Claim,
        errcode: i64,
        result: String,
        hold: bool,
    ) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        self.grouped(
            move |conn| {
                let changed = conn
                    .prepare_cached(
                        "UPDATE jobs SET phase = 'report', claimed = ?6, attempts = 0, report_errcode = ?3,
                     report_result = ?4, payload = '', progress = NULL, next_ms = ?5
                     WHERE id = ?1 AND claim_no = ?2",
                    )?
                    .execute(params![claim.id, claim.no, errcode, result, now, hold])?;
                // A claim taken over records nothing, and its holder must not report.
                if changed != 1 {
                    return Err(StoreError::ClaimLost);
                }
                Ok(())
            },
            |_, _| {},
        )
        .await
    }

    /// Releases jobs claimed but not started (their run is not counted), due again at once.
    pub async fn release_jobs(&self, claims: Vec<Claim>) -> Result<(), StoreError> {
        self.grouped(
            move |conn| {
                let mut stmt = conn.prepare_cached(
                    "UPDATE jobs SET claimed = 0, runs = MAX(runs - (phase = 'run'), 0)
                     WHERE id = ?1 AND claim_no = ?2 AND claimed = 1",
                )?;
                for claim in claims {
                    stmt.execute(params![claim.id, claim.no])?;
                }
                Ok(())
            },
            |_, _| {},
        )
        .await
    }

    /// Releases a job to be tried again at `next_ms`, with `attempts` failed tries so far. With
    /// `uncount` the run that just ended is not counted against `jobs.max_runs` (it waited for
    /// room rather than failed).
    pub async fn retry_job(&self, claim: Claim, next_ms: i64, attempts: u32, uncount: bool) -> Result<(), StoreError> {
        self.grouped(
            move |conn| {
                conn.prepare_cached(
                    "UPDATE jobs SET claimed = 0, next_ms = ?3, attempts = ?4, runs = MAX(runs - ?5, 0)
                     WHERE id = ?1 AND claim_no = ?2",
                )?
                .execute(params![claim.id, claim.no, next_ms, attempts, uncount])?;
                Ok(())
            },
            |_, _| {},
        )
        .await
    }

    /// Ends a job as [`Phase::Done`] or [`Phase::Failed`], dropping its input (its result, if
    /// any, stays with the dedupe key, so a redelivery can be answered).
    pub async fn finish_job(&self, claim: Claim, phase: Phase) -> Result<(), StoreError> {
        debug_assert!(matches!(phase, Phase::Done | Phase::Failed));
        let now = self.clock.now_ms();
        let unfinished = self.unfinished.clone();
        let counted = self.unfinished.clone();
        self.grouped(
            move |conn| {
                let changed = conn
                    .prepare_cached(
                        "UPDATE jobs SET phase = ?3, claimed = 0, payload = '', progress = NULL, finished_ms = ?4
                         WHERE id = ?1 AND claim_no = ?2 AND phase IN ('run', 'report')",
                    )?
                    .execute(params![claim.id, claim.no, phase.as_str(), now])?;
                if changed == 1 {
                    unfinished.fetch_sub(1, Ordering::SeqCst);
                }
                Ok(changed == 1)
            },
            move |finished, committed| {
                if !committed && finished == Some(&true) {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
            },
        )
        .await
        .map(|_| ())
    }

    /// One job by id.
    pub async fn job(&self, id: i64) -> Result<Option<JobRow>, StoreError> {
        self.call(move |conn| {
            let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1");
            conn.query_row(&sql, params![id], job_from_row).optional()?.transpose()
        })
        .await
    }

    /// When the oldest queued (unclaimed, unfinished) job was created, unix ms, if any (metrics).
    pub async fn oldest_queued_job_ms(&self) -> Result<Option<i64>, StoreError> {
        self.call(|conn| {
            Ok(conn.query_row(
                "SELECT MIN(created_ms) FROM jobs WHERE phase IN ('run', 'report') AND claimed = 0",
                [],
                |r| r.get(0),
            )?)
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

    /// When the earliest unfinished job is due (a claimed one: when its lease runs out), if any.
    pub async fn next_job_due_ms(&self) -> Result<Option<i64>, StoreError> {
        self.call(|conn| {
            Ok(conn.query_row(
                "SELECT MIN(CASE WHEN claimed = 0 THEN next_ms ELSE MAX(next_ms, lease_ms) END)
                 FROM jobs WHERE phase IN ('run', 'report')",
                [],
                |r| r.get(0),
            )?)
        })
        .await
    }
}
