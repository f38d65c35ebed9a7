//! Durable async jobs on a bounded set of workers. An async ability call or an event is recorded
//! as a job row first (so a restart resumes it), acknowledged once the row is committed, then run
//! in one of `jobs.workers` slots. Each run happens in its own task, so a panic fails the job and
//! never the engine. Ability results are recorded, then reported with
//! `program_async_job_call_back` `{errcode, result}` in the job's own context, at most
//! `jobs.report_concurrency` at once (a report does not hold a worker slot), retried with
//! exponential backoff; a job never ends silently: it is `done`, or `failed` and counted.
//!
//! One dispatcher claims as many due jobs as there are free slots in one statement; the store
//! commits the claims, results and finishes that wait together in one transaction (group commit,
//! `store` module docs). [`poll`] is the model-task polling helper.

pub mod payload;
pub mod poll;
pub mod runner;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::config::JobsConfig;
use crate::error::{AppError, ErrorCode};
use crate::sdk::api::{JobCallBackRequest, Sdk};
use crate::sdk::{CallContext, ZoneSdk};
use crate::store::{Claim, Enqueued, JobCounts, JobKind, JobRow, NewJob, Phase, Store, StoreError};

/// The SDK API that reports an async job's result (sdk-data-apis.md §2.1).
pub const REPORT_API: &str = "program_async_job_call_back";
/// Longest wait between two retries.
const MAX_BACKOFF_MS: u64 = 60_000;
/// Longest a idle worker sleeps before looking at the table again.
const IDLE_RECHECK: Duration = Duration::from_secs(30);
/// Reports of refused calls sent at once: a burst of refusals must not take the SDK slots the
/// workers need to finish the jobs that were accepted.
const REFUSAL_SENDERS: usize = 4;
/// Refused calls that may wait for their report, per `jobs.max_pending` (a waiting refusal holds
/// its context and the short error text, well under a job row)...
const REFUSAL_ROOM_PER_PENDING: usize = 4;
/// ...and at least this many, however small `jobs.max_pending` is (about 1 MiB at most)...
const MIN_REFUSAL_ROOM: usize = 1024;
/// ...and at most this many, however large it is (the queue is on disk; these wait in memory:
/// some tens of MiB at most).
const MAX_REFUSAL_ROOM: usize = 65_536;
/// How long the dispatcher waits after the store failed to claim jobs.
const CLAIM_ERROR_BACKOFF: Duration = Duration::from_secs(1);
/// Tries to record a job's outcome while the store fails (a lock held by another connection
/// beyond `store.busy_timeout_ms`)...
const RECORD_ATTEMPTS: u32 = 6;
/// ...the first one this long after the failure, doubling (about 6 s in all, plus the busy
/// waits); after the last the claim's lease releases the job.
const RECORD_BACKOFF_MS: u64 = 100;
/// How long a job may wait for room in the store (a full notify store) before it gives up,
/// counted from when it was accepted: a day.
pub const MAX_WAIT_FOR_ROOM_MS: i64 = 24 * 3600 * 1000;

/// What running a job produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A result to report with `program_async_job_call_back` (ability jobs).
    Report {
        /// The `errcode` to report (0 = success).
        errcode: i64,
        /// The `result` text (the ability output).
        result: String,
    },
    /// Finished; nothing to report (event jobs).
    Done,
    /// A transient failure: run again after a backoff.
    Retry,
    /// Gave up; the job ends as failed.
    Failed,
    /// Not failed but blocked (no room in the store for what it must store): run again after a
    /// backoff without counting this run against `jobs.max_runs`, for up to
    /// [`MAX_WAIT_FOR_ROOM_MS`] after the job was accepted.
    Wait,
}

/// Runs the jobs of each kind. Implemented by the dispatcher, which knows abilities and events.
#[async_trait]
pub trait JobRunner: Send + Sync + 'static {
    /// Runs `job` once. `last_try` is true when a [`Step::Retry`] would not be honoured: the
    /// runner should then fall back to whatever it can still deliver.
    async fn run(&self, job: JobRow, last_try: bool) -> Step;
}

/// Settings of the job system (`[jobs]`).
#[derive(Debug, Clone, Copy)]
pub struct JobSettings {
    /// Jobs run at once (slots).
    pub workers: usize,
    /// Result reports sent at once.
    pub report_concurrency: usize,
    /// Most unfinished jobs.
    pub max_pending: i64,
    /// Attempts to report a result.
    pub report_attempts: u32,
    /// First retry delay in milliseconds; doubled per attempt up to a minute.
    pub backoff_ms: u64,
    /// Most runs of one job (retries and restarts included) before it gives up.
    pub max_runs: u32,
    /// How long a claim lasts without renewal, in milliseconds.
    pub lease_ms: i64,
}

impl JobSettings {
    /// The settings of `[jobs]`.
    pub fn from_config(config: &JobsConfig) -> Self {
        Self {
            workers: config.workers,
            report_concurrency: config.report_concurrency,
            max_pending: config.max_pending as i64,
            report_attempts: config.report_attempts,
            backoff_ms: config.report_backoff_ms,
            max_runs: config.max_runs,
            lease_ms: i64::try_from(config.claim_lease_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
        }
    }
}

/// The job system: enqueue, workers, and the test hooks "run until empty" and "wait for idle".
#[derive(Clone)]
pub struct Jobs {
    store: Store,
    sdk: Arc<dyn ZoneSdk>,
    settings: JobSettings,
    /// Signalled when a job is enqueued or released (workers wait on it).
    wake: Arc<Notify>,
    /// Signalled whenever a job changes state ([`Jobs::wait_idle`] waits on it).
    changed: Arc<Notify>,
    /// Refused calls whose report is not sent yet: at most [`REFUSAL_ROOM_PER_PENDING`] ×
    /// `max_pending` (at least [`MIN_REFUSAL_ROOM`]) of them.
    refusal_room: Arc<Semaphore>,
    /// Refusal reports in flight: at most [`REFUSAL_SENDERS`].
    refusal_senders: Arc<Semaphore>,
    /// Job result reports in flight: at most `report_concurrency`.
    reporters: Arc<Semaphore>,
    /// Results of finished runs being recorded and reported: at most `workers`.
    recording: Arc<Semaphore>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Jobs {
    /// A job system over `store`, reporting through `sdk`.
    pub fn new(store: Store, sdk: Arc<dyn ZoneSdk>, settings: JobSettings) -> Self {
        let pending = usize::try_from(settings.max_pending.max(1)).unwrap_or(1);
        let room = pending.saturating_mul(REFUSAL_ROOM_PER_PENDING).clamp(MIN_REFUSAL_ROOM, MAX_REFUSAL_ROOM);
        Self {
            store,
            sdk,
            settings,
            wake: Arc::new(Notify::new()),
            changed: Arc::new(Notify::new()),
            refusal_room: Arc::new(Semaphore::new(room)),
            refusal_senders: Arc::new(Semaphore::new(REFUSAL_SENDERS)),
            reporters: Arc::new(Semaphore::new(settings.report_concurrency.max(1))),
            recording: Arc::new(Semaphore::new(settings.workers.max(1))),
        }
    }

    /// Records a job (or recognises a duplicate) and wakes a worker.
    pub async fn enqueue(&self, job: NewJob) -> Result<Enqueued, AppError> {
        let outcome = self.store.enqueue_job(job, self.settings.max_pending).await.map_err(AppError::from)?;
        // One job needs one worker: waking them all would make each idle one query the table.
        self.wake.notify_one();
        self.changed.notify_waiters();
        Ok(outcome)
    }

    /// Reports `{errcode, result}` in `ctx` for an async call that has no job row to report it
    /// (it was refused: bad input, a full queue, a store error; or it is a redelivery of a job
    /// that finished), so the caller's `async_program_result` ends. In the background, at
    /// most [`REFUSAL_SENDERS`] at a time, retried like a job's report; at most
    /// [`REFUSAL_ROOM_PER_PENDING`] × `max_pending` (at least [`MIN_REFUSAL_ROOM`]) wait (beyond
    /// that a refusal is logged and not reported). Returns whether it was taken on.
    pub fn report_refused(&self, ctx: CallContext, errcode: i64, result: String) -> bool {
        let Ok(room) = self.refusal_room.clone().try_acquire_owned() else {
            tracing::warn!(errcode, "too many refused async calls wait to be reported; this one is not reported");
            return false;
        };
        let jobs = self.clone();
        tokio::spawn(async move {
            let _room = room;
            let (sdk, request) = (Sdk::new(jobs.sdk.clone(), ctx), JobCallBackRequest { errcode, result });
            let attempts = jobs.settings.report_attempts.max(1);
            for attempt in 1..=attempts {
                let sent = {
                    let Ok(_sender) = jobs.refusal_senders.acquire().await else { return };
                    sdk.program_async_job_call_back(request.clone()).await
                };
                match sent {
                    Ok(_) => return,
                    Err(e) if attempt == attempts => {
                        tracing::warn!(error = %e, attempt, "reporting a refused async call failed; giving up");
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, attempt, "reporting a refused async call failed; will retry");
                        tokio::time::sleep(Duration::from_millis(jobs.backoff_ms(attempt))).await;
                    }
                }
            }
        });
        true
    }

    /// Counts of job rows by state.
    pub async fn counts(&self) -> Result<JobCounts, StoreError> {
        self.store.job_counts().await
    }

    /// Starts the dispatcher, which runs up to `settings.workers` jobs at once; it stops when
    /// `stop` turns true, once the steps under way are done (an interrupted job resumes at the next
    /// start).
    pub fn spawn_workers(&self, runner: Arc<dyn JobRunner>, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let jobs = self.clone();
        vec![tokio::spawn(async move { jobs.dispatch(runner, stop).await })]
    }

    /// Runs every due job in the calling task until none is due; returns how many steps ran.
    /// Tests use it to drive jobs deterministically instead of sleeping.
    pub async fn run_until_empty(&self, runner: &Arc<dyn JobRunner>) -> Result<usize, StoreError> {
        let mut steps = 0;
        while let Some(job) = self.store.claim_job(self.settings.lease_ms).await? {
            self.process(runner, job, None).await;
            steps += 1;
        }
        Ok(steps)
    }

    /// Waits until no job is queued or running (workers must be running), up to `timeout`.
    /// Returns the final counts, or the counts at the deadline as the error.
    pub async fn wait_idle(&self, timeout: Duration) -> Result<JobCounts, JobCounts> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let counts = self.store.job_counts().await.unwrap_or(JobCounts { queued: -1, ..JobCounts::default() });
            if counts.queued == 0 && counts.running == 0 {
                return Ok(counts);
            }
            // A periodic re-check covers jobs that become due while nobody signals.
            let recheck = tokio::time::sleep(Duration::from_millis(50));
            tokio::select! {
                () = &mut changed => {}
                () = recheck => {}
                () = tokio::time::sleep_until(deadline) => return Err(counts),
            }
        }
    }

    /// Runs claimed jobs, each in its own task holding one of `workers` slots. A claimer keeps up
    /// to `workers` jobs claimed ahead ([`Jobs::claim_ahead`]), so a freed slot starts the next job
    /// without waiting for the store. At the stop, the jobs claimed but not started are released.
    async fn dispatch(&self, runner: Arc<dyn JobRunner>, mut stop: watch::Receiver<bool>) {
        let workers = self.settings.workers.max(1);
        tracing::debug!(workers, "job dispatcher started");
        let slots = Arc::new(Semaphore::new(workers));
        let (ready_tx, mut ready) = mpsc::channel::<(Instant, JobRow)>(workers);
        let claimer = {
            let (jobs, stop) = (self.clone(), stop.clone());
            tokio::spawn(async move { jobs.claim_ahead(ready_tx, stop).await })
        };
        let mut running = JoinSet::new();
        loop {
            let slot = tokio::select! {
                slot = slots.clone().acquire_owned() => slot.expect("the slots are never closed"),
                _ = stop.wait_for(|stopped| *stopped) => break,
            };
            let (claimed_at, job) = tokio::select! {
                job = ready.recv() => match job {
                    Some(job) => job,
                    None => break,
                },
                _ = stop.wait_for(|stopped| *stopped) => break,
            };
            while running.try_join_next().is_some() {}
            // A job that waited long for a slot renews its claim first (a lost one is not run).
            if claimed_at.elapsed() > self.renew_period() {
                match self.store.renew_claim(job.claim(), self.settings.lease_ms).await {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "renewing a claimed job failed; it is taken up again later");
                        continue;
                    }
                }
            }
            let (jobs, runner) = (self.clone(), runner.clone());
            running.spawn(async move { jobs.process(&runner, job, Some(slot)).await });
        }
        let _ = claimer.await;
        ready.close();
        let mut unstarted = Vec::new();
        while let Ok((_, job)) = ready.try_recv() {
            unstarted.push(job.claim());
        }
        if !unstarted.is_empty()
            && let Err(e) = self.store.release_jobs(unstarted).await
        {
            tracing::warn!(error = %e, "releasing claimed jobs at the stop failed; their claims run out");
        }
        while running.join_next().await.is_some() {}
        tracing::debug!("job dispatcher stopped");
    }

    /// Keeps `ready` filled: claims as many due jobs as it has room for, in one statement; when
    /// none is due, waits for a wake-up or the next due time.
    async fn claim_ahead(&self, ready: mpsc::Sender<(Instant, JobRow)>, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            let room = tokio::select! {
                room = ready.reserve() => match room {
                    Ok(room) => room,
                    Err(_) => return,
                },
                _ = stop.wait_for(|stopped| *stopped) => return,
            };
            let wake = self.wake.notified();
            tokio::pin!(wake);
            wake.as_mut().enable();
            let wait = match self.store.claim_jobs(1 + ready.capacity(), self.settings.lease_ms).await {
                Ok(claimed) if !claimed.is_empty() => {
                    let now = Instant::now();
                    let mut claimed = claimed.into_iter();
                    if let Some(first) = claimed.next() {
                        room.send((now, first));
                    }
                    // The only sender: the room counted above is still there.
                    let overflow: Vec<Claim> = claimed
                        .filter_map(|job| ready.try_send((now, job)).err().map(|e| e.into_inner().1.claim()))
                        .collect();
                    if !overflow.is_empty() {
                        let _ = self.store.release_jobs(overflow).await;
                    }
                    continue;
                }
                Ok(_) => {
                    drop(room);
                    let now = self.store.clock().now_ms();
                    match self.store.next_job_due_ms().await {
                        Ok(Some(due)) => Duration::from_millis(u64::try_from(due - now).unwrap_or(0)).min(IDLE_RECHECK),
                        _ => IDLE_RECHECK,
                    }
                }
                Err(e) => {
                    drop(room);
                    tracing::error!(error = %e, "claiming jobs failed");
                    CLAIM_ERROR_BACKOFF
                }
            };
            tokio::select! {
                () = &mut wake => {}
                () = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|stopped| *stopped) => {}
            }
        }
    }

    /// How often a held claim is renewed: every third of its lease.
    fn renew_period(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.settings.lease_ms / 3).unwrap_or(1).max(1))
    }

    /// Advances one claimed job by one step and records the outcome.
    #[tracing::instrument(skip_all, fields(job_id = job.id, kind = ?job.kind, corp_id = %job.ctx.corp_id, ability_id = %job.ctx.ability_id))]
    /// `slot` is the dispatcher's slot the job holds while it runs (none when a test drives it).
    async fn process(&self, runner: &Arc<dyn JobRunner>, job: JobRow, slot: Option<OwnedSemaphorePermit>) {
        let heartbeat = self.keep_claim(job.claim());
        let outcome = match job.phase {
            Phase::Run => self.run_phase(runner, job, slot).await,
            Phase::Report => {
                drop(slot);
                self.report_phase(job).await
            }
            Phase::Done | Phase::Failed => Ok(()),
        };
        heartbeat.abort();
        if let Err(e) = outcome {
            // The row stays claimed until its lease runs out (or the next start); log once here.
            tracing::error!(error = %e, "recording a job outcome failed; the job is taken up again when its claim runs out");
        }
        // A step may have released a row (a retry due later, a report due now): one idle worker
        // looks again; a busy one finds it when it claims its next job.
        self.wake.notify_one();
        self.changed.notify_waiters();
    }

    /// Renews `claim`'s lease every third of it while the job is processed.
    fn keep_claim(&self, claim: Claim) -> JoinHandle<()> {
        let store = self.store.clone();
        let lease = self.settings.lease_ms;
        let period = self.renew_period();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                match store.renew_claim(claim, lease).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => tracing::warn!(error = %e, "renewing a job's claim failed"),
                }
            }
        })
    }

    /// Records an outcome with `write`, retried with a backoff while the store fails.
    async fn record<F, Fut>(&self, write: F) -> Result<(), StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(), StoreError>>,
    {
        let mut attempt = 1;
        loop {
            match write().await {
                Ok(()) => return Ok(()),
                Err(e @ (StoreError::ClaimLost | StoreError::Closed | StoreError::Corrupt(_))) => return Err(e),
                Err(e) if attempt >= RECORD_ATTEMPTS => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "recording a job outcome failed; will retry");
                    let backoff = RECORD_BACKOFF_MS << (attempt - 1).min(10);
                    tokio::time::sleep(Duration::from_millis(backoff)).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn finish(&self, claim: Claim, phase: Phase) -> Result<(), StoreError> {
        self.record(|| self.store.finish_job(claim, phase)).await
    }

    async fn retry(&self, claim: Claim, next_ms: i64, attempts: u32, uncount: bool) -> Result<(), StoreError> {
        self.record(|| self.store.retry_job(claim, next_ms, attempts, uncount)).await
    }

    async fn to_report(&self, claim: Claim, errcode: i64, result: &str, hold: bool) -> Result<(), StoreError> {
        self.record(|| self.store.job_to_report(claim, errcode, result.to_owned(), hold)).await
    }

    async fn run_phase(
        &self,
        runner: &Arc<dyn JobRunner>,
        job: JobRow,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<(), StoreError> {
        let (claim, kind, runs, ctx) = (job.claim(), job.kind, job.runs, job.ctx.clone());
        let (created_ms, attempts) = (job.created_ms, job.attempts);
        if runs > self.settings.max_runs {
            tracing::warn!(runs, "job exceeded its runs; giving up");
            return self.give_up(claim, kind).await;
        }
        let last_try = runs >= self.settings.max_runs;
        let task = {
            let runner = runner.clone();
            tokio::spawn(async move { runner.run(job, last_try).await })
        };
        let step = match task.await {
            Ok(step) => step,
            Err(e) => {
                tracing::error!(panicked = e.is_panic(), "job run aborted");
                match kind {
                    JobKind::Ability => return self.give_up(claim, kind).await,
                    JobKind::Event if last_try => Step::Failed,
                    JobKind::Event => Step::Retry,
                }
            }
        };
        match step {
            Step::Report { errcode, result } => {
                // The result is recorded (still claimed by this worker) before it is reported, so a
                // restart reports it without running the job again; then it is reported at once.
                // The slot runs the next job while this result is recorded and reported; at most
                // `workers` results wait so (else the slot waits).
                let Ok(_recording) = self.recording.clone().acquire_owned().await else { return Ok(()) };
                drop(slot);
                self.to_report(claim, errcode, &result, true).await?;
                self.report(claim, &ctx, 0, errcode, &result).await
            }
            Step::Done => self.finish(claim, Phase::Done).await,
            Step::Retry if !last_try => {
                let next = self.store.clock().now_ms() + self.backoff_ms(runs) as i64;
                tracing::info!(runs, "job will be retried");
                self.retry(claim, next, 0, false).await
            }
            Step::Retry | Step::Failed => {
                tracing::error!(runs, "job failed");
                self.finish(claim, Phase::Failed).await
            }
            Step::Wait => {
                let now = self.store.clock().now_ms();
                if now - created_ms > MAX_WAIT_FOR_ROOM_MS {
                    tracing::error!(runs, "job waited too long for room in the store; giving up");
                    return self.finish(claim, Phase::Failed).await;
                }
                let next = now + self.backoff_ms(attempts + 1) as i64;
                tracing::info!(waits = attempts + 1, "job waits for room in the store");
                self.retry(claim, next, attempts + 1, true).await
            }
        }
    }

    /// An ability job that cannot run reports an internal error; any other job fails.
    async fn give_up(&self, claim: Claim, kind: JobKind) -> Result<(), StoreError> {
        match kind {
            JobKind::Ability => {
                let err = AppError::Code(ErrorCode::Internal);
                self.to_report(claim, err.code().code(), &err.to_reply_json().to_string(), false).await
            }
            JobKind::Event => self.finish(claim, Phase::Failed).await,
        }
    }

    async fn report_phase(&self, job: JobRow) -> Result<(), StoreError> {
        let claim = job.claim();
        let Some((errcode, result)) = job.report else {
            return self.finish(claim, Phase::Failed).await;
        };
        self.report(claim, &job.ctx, job.attempts, errcode, &result).await
    }

    /// Sends the claimed job `id`'s report, which failed `attempts` times so far, and records the
    /// outcome: done, a retry after a backoff, or failed after `report_attempts`.
    async fn report(
        &self,
        claim: Claim,
        ctx: &CallContext,
        attempts: u32,
        errcode: i64,
        result: &str,
    ) -> Result<(), StoreError> {
        let request = JobCallBackRequest { errcode, result: result.to_owned() };
        let outcome = {
            let Ok(_sender) = self.reporters.acquire().await else { return Ok(()) };
            Sdk::new(self.sdk.clone(), ctx.clone()).program_async_job_call_back(request).await
        };
        match outcome {
            Ok(_) => {
                tracing::info!(errcode, "job result reported");
                self.finish(claim, Phase::Done).await
            }
            Err(e) if refused_report(&e) => {
                // WeCom's "invalid parameter": it does not know this job_info (a job it never
                // recorded) or the result was already reported (a reply lost after it was taken).
                // Sending the same report again cannot change that.
                tracing::error!(error = %e, "the zone refused the job's report as invalid (unknown job_info, or already reported); not retried");
                self.finish(claim, Phase::Failed).await
            }
            Err(e) => {
                let attempts = attempts + 1;
                if attempts >= self.settings.report_attempts {
                    tracing::error!(error = %e, attempts, "reporting the job result failed; giving up");
                    return self.finish(claim, Phase::Failed).await;
                }
                tracing::warn!(error = %e, attempts, "reporting the job result failed; will retry");
                let next = self.store.clock().now_ms() + self.backoff_ms(attempts) as i64;
                self.retry(claim, next, attempts, false).await
            }
        }
    }

    /// `backoff_ms · 2^(n−1)`, at most a minute.
    fn backoff_ms(&self, n: u32) -> u64 {
        let factor = 1u64 << n.saturating_sub(1).min(20);
        self.settings.backoff_ms.saturating_mul(factor).min(MAX_BACKOFF_MS)
    }
}

/// Whether the zone answered a report with an errcode no retry can change.
fn refused_report(e: &crate::sdk::SdkError) -> bool {
    matches!(e, crate::sdk::SdkError::Errcode { errcode: zone_crypto::wire::INVALID_PARAMETER, .. })
}
