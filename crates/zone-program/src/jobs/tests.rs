//! The job system against a real store, a manual clock, an SDK that records reports (and fails
//! them on demand) and runners that follow a script.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

use super::*;
use crate::clock::{ManualClock, SystemClock};
use crate::sdk::{CallContext, DecodeError, Decoded, SdkError};
use crate::store::Limits;

const T0: i64 = 1_700_000_000_000;

/// Records every report; fails the first `fail_reports` of them; answers `refuse_reports` of them
/// with WeCom's "invalid parameter" (an unknown or already reported job_info).
#[derive(Default)]
struct Recorder {
    reports: Mutex<Vec<(CallContext, Value)>>,
    fail_reports: AtomicU32,
    refuse_reports: AtomicU32,
}

#[async_trait]
impl ZoneSdk for Recorder {
    fn decode(&self, _: &str, _: &[(String, String)], _: &[u8]) -> Result<Decoded, DecodeError> {
        Err(DecodeError { code: -1, reply: None })
    }
    async fn invoke(&self, ctx: &CallContext, api: &str, request: &str) -> Result<String, SdkError> {
        assert_eq!(api, REPORT_API);
        if self.fail_reports.load(Ordering::SeqCst) > 0 {
            self.fail_reports.fetch_sub(1, Ordering::SeqCst);
            return Err(SdkError::Invoke { api: api.into(), ret: -10006 });
        }
        if self.refuse_reports.load(Ordering::SeqCst) > 0 {
            self.refuse_reports.fetch_sub(1, Ordering::SeqCst);
            return Ok(r#"{"errcode":40058,"errmsg":"invalid parameter job_info: no such job"}"#.into());
        }
        self.reports.lock().unwrap().push((ctx.clone(), serde_json::from_str(request).unwrap()));
        Ok(r#"{"errcode":0,"errmsg":"ok"}"#.into())
    }
}

/// Returns the scripted steps in order (the last repeats), recording `last_try` of each run.
struct Script {
    steps: Mutex<Vec<Option<Step>>>,
    runs: Mutex<Vec<bool>>,
}

impl Script {
    /// `None` in the script panics.
    fn new(steps: Vec<Option<Step>>) -> Arc<Self> {
        Arc::new(Self { steps: Mutex::new(steps), runs: Mutex::new(Vec::new()) })
    }
}

#[async_trait]
impl JobRunner for Script {
    async fn run(&self, _job: JobRow, last_try: bool) -> Step {
        self.runs.lock().unwrap().push(last_try);
        let step = {
            let mut steps = self.steps.lock().unwrap();
            if steps.len() > 1 { steps.remove(0) } else { steps[0].clone() }
        };
        step.expect("the script asks for a panic here")
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    store: Store,
    sdk: Arc<Recorder>,
    jobs: Jobs,
}

fn settings() -> JobSettings {
    JobSettings {
        workers: 2,
        report_concurrency: 2,
        max_pending: 10,
        report_attempts: 3,
        backoff_ms: 100,
        max_runs: 3,
        lease_ms: 60_000,
    }
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let limits = Limits { notify_ttl_ms: 600_000, max_notify_entries: 10, max_notify_bytes: 1000 };
    let store = Store::open_with(&dir.path().join("s.sqlite"), limits, clock.clone()).unwrap();
    let sdk = Arc::new(Recorder::default());
    let jobs = Jobs::new(store.clone(), sdk.clone(), settings());
    Fixture { _dir: dir, clock, store, sdk, jobs }
}

fn ctx() -> CallContext {
    CallContext { corp_id: "corp".into(), agent_id: 7, ability_id: "chat_digest".into(), job_info: "JOB-CTX".into() }
}

fn job(kind: JobKind, key: &str) -> NewJob {
    NewJob { kind, dedupe_key: Some(key.into()), context_prefix: None, ctx: ctx(), payload: "{}".into() }
}

fn report(errcode: i64, result: &str) -> Option<Step> {
    Some(Step::Report { errcode, result: result.into() })
}

#[tokio::test]
async fn an_ability_job_runs_once_and_reports_errcode_and_result_in_its_own_context() {
    let f = fixture();
    let script = Script::new(vec![report(0, r#"{"errcode":0,"n":1}"#)]);
    let runner: Arc<dyn JobRunner> = script.clone();
    f.jobs.enqueue(job(JobKind::Ability, "a")).await.unwrap();
    assert_eq!(f.jobs.run_until_empty(&runner).await.unwrap(), 1);
    let reports = f.sdk.reports.lock().unwrap().clone();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].0, ctx(), "the report carries the job's context (job_info included)");
    assert_eq!(reports[0].1, serde_json::json!({"errcode":0,"result":"{\"errcode\":0,\"n\":1}"}));
    assert_eq!(f.jobs.counts().await.unwrap(), JobCounts { queued: 0, running: 0, done: 1, failed: 0 });
    assert_eq!(*script.runs.lock().unwrap(), vec![false]);
}

#[tokio::test]
async fn a_redelivered_job_is_recognised_and_not_run_again() {
    let f = fixture();
    let runner: Arc<dyn JobRunner> = Script::new(vec![report(0, "{}")]);
    let first = f.jobs.enqueue(job(JobKind::Ability, "a")).await.unwrap();
    f.jobs.run_until_empty(&runner).await.unwrap();
    let Enqueued::New(id) = first else { panic!() };
    assert_eq!(
        f.jobs.enqueue(job(JobKind::Ability, "a")).await.unwrap(),
        Enqueued::Finished { id, report: Some((0, "{}".into())) },
        "recognised, with its result to report again"
    );
    assert_eq!(f.jobs.run_until_empty(&runner).await.unwrap(), 0);
    assert_eq!(f.sdk.reports.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_failed_report_is_retried_after_a_doubling_backoff() {
    let f = fixture();
    f.sdk.fail_reports.store(2, Ordering::SeqCst);
    let runner: Arc<dyn JobRunner> = Script::new(vec![report(0, "{}")]);
    f.jobs.enqueue(job(JobKind::Ability, "a")).await.unwrap();
    f.jobs.run_until_empty(&runner).await.unwrap();
    assert!(f.sdk.reports.lock().unwrap().is_empty());
    assert_eq!(f.store.next_job_due_ms().await.unwrap(), Some(T0 + 100));
    f.clock.advance(99);
    assert_eq!(f.jobs.run_until_empty(&runner).await.unwrap(), 0, "not due before its backoff");
    f.clock.advance(1);
    f.jobs.run_until_empty(&runner).await.unwrap();
    assert_eq!(f.store.next_job_due_ms().await.unwrap(), Some(T0 + 100 + 200));
    f.clock.advance(200);
    f.jobs.run_until_empty(&runner).await.unwrap();
    assert_eq!(f.sdk.reports.lock().unwrap().len(), 1);
    assert_eq!(f.jobs.counts().await.unwrap().done, 1);
}

/// A zone that does not know the job_info (or has its result already) answers 40058: retrying
/// cannot change that, so the job ends failed after one attempt instead of being retried for minutes.
#[tokio::test]
async fn a_report_the_zone_refuses_as_invalid_ends_failed_at_once() {
    let f = fixture();
    f.sdk.refuse_reports.store(100, Ordering::SeqCst);
    let runner: Arc<dyn JobRunner> = Script::new(vec![report(0, "{}")]);
    f.jobs.enqueue(job(JobKind::Ability, "a")).await.unwrap();
    f.jobs.run_until_empty(&runner).await.unwrap();
    assert_eq!(f.sdk.refuse_reports.load(Ordering::SeqCst), 99, "one try");
    assert_eq!(f.jobs.counts().await.unwrap(), JobCounts { queued: 0, running: 0, done: 0, failed: 1 });
    assert_eq!(f.store.next_job_due_ms().await.unwrap(), None, "nothing left to retry");
}

#[tokio::test]
async fn a_report_that_keeps_failing_ends_failed_and_is_counted() {
    let f = fixture();
    f.sdk.fail_reports.store(100, Ordering::SeqCst);
    let runner: Arc<dyn JobRunner> = Script::new(vec![report(0, "{}")]);
    f.jobs.enqueue(job(JobKind::Ability, "a")).await.unwrap();
    for _ in 0..5 {
        f.jobs.run_until_empty(&runner).await.unwrap();
        f.clock.advance(60_000);
    }
    assert_eq!(f.sdk.fail_reports.load(Ordering::SeqCst), 97, "exactly report_attempts tries");
    assert_eq!(f.jobs.counts().await.unwrap(), JobCounts { queued: 0, running: 0, done: 0, failed: 1 });
}

#[tokio::test]
async fn a_panicking_ability_job_reports_an_internal_error_instead_of_vanishing() {
    let f = fixture();
    let runner: Arc<dyn JobRunner> = Script::new(vec![None]);
    f.jobs.enqueue(job(JobKind::Ability, "a")).await.unwrap();
    f.jobs.run_until_empty(&runner).await.unwrap();
    let reports = f.sdk.reports.lock().unwrap().clone();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].1["errcode"], 900_999);
    let result: Value = serde_json::from_str(reports[0].1["result"].as_str().unwrap()).unwrap();
    assert_eq!(result["errcode"], 900_999);
}

#[tokio::test]
async fn an_event_job_is_retried_until_its_last_try_which_the_runner_is_told_about() {
    let f = fixture();
    let script = Script::new(vec![Some(Step::Retry), Some(Step::Retry), Some(Step::Done)]);
    let runner: Arc<dyn JobRunner> = script.clone();
    f.jobs.enqueue(job(JobKind::Event, "e")).await.unwrap();
    for _ in 0..3 {
        f.jobs.run_until_empty(&runner).await.unwrap();
        f.clock.advance(10_000);
    }
    assert_eq!(*script.runs.lock().unwrap(), vec![false, false, true]);
    assert_eq!(f.jobs.counts().await.unwrap().done, 1);
    assert!(f.sdk.reports.lock().unwrap().is_empty(), "events report nothing");
}

#[tokio::test]
async fn an_event_job_that_still_fails_on_its_last_try_ends_failed() {
    let f = fixture();
    let runner: Arc<dyn JobRunner> = Script::new(vec![Some(Step::Retry)]);
    f.jobs.enqueue(job(JobKind::Event, "e")).await.unwrap();
    for _ in 0..4 {
        f.jobs.run_until_empty(&runner).await.unwrap();
        f.clock.advance(10_000);
    }
    assert_eq!(f.jobs.counts().await.unwrap(), JobCounts { queued: 0, running: 0, done: 0, failed: 1 });
}

#[tokio::test]
async fn a_job_interrupted_too_often_by_restarts_reports_failure() {
    let f = fixture();
    f.jobs.enqueue(job(JobKind::Ability, "a")).await.unwrap();
    // Three "crashes": claimed and never finished, then a restart releases the claim.
    let path = f._dir.path().join("s.sqlite");
    let limits = f.store.limits();
    for _ in 0..3 {
        assert!(f.store.claim_job(60_000).await.unwrap().is_some());
        drop(Store::open_with(&path, limits, f.clock.clone()).unwrap());
    }
    let script = Script::new(vec![report(0, "{}")]);
    let runner: Arc<dyn JobRunner> = script.clone();
    f.jobs.run_until_empty(&runner).await.unwrap();
    assert!(script.runs.lock().unwrap().is_empty(), "the runner is not tried a fourth time");
    assert_eq!(f.sdk.reports.lock().unwrap()[0].1["errcode"], 900_999);
}

#[tokio::test]
async fn enqueue_beyond_max_pending_is_the_job_queue_full_code() {
    let f = fixture();
    for i in 0..10 {
        f.jobs.enqueue(job(JobKind::Ability, &format!("k{i}"))).await.unwrap();
    }
    let err = f.jobs.enqueue(job(JobKind::Ability, "k10")).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::JobQueueFull);
}

#[tokio::test]
async fn workers_run_queued_jobs_and_wait_idle_returns_once_they_are_done() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(
        &dir.path().join("s.sqlite"),
        Limits { notify_ttl_ms: 1000, max_notify_entries: 1, max_notify_bytes: 1 },
        Arc::new(SystemClock),
    )
    .unwrap();
    let sdk = Arc::new(Recorder::default());
    let jobs = Jobs::new(store, sdk.clone(), settings());
    let (stop_tx, stop_rx) = watch::channel(false);
    let workers = jobs.spawn_workers(Script::new(vec![report(0, "{}")]), stop_rx);
    for i in 0..6 {
        jobs.enqueue(job(JobKind::Ability, &format!("k{i}"))).await.unwrap();
    }
    let counts = jobs.wait_idle(Duration::from_secs(10)).await.unwrap();
    assert_eq!(counts.done, 6);
    assert_eq!(sdk.reports.lock().unwrap().len(), 6);
    stop_tx.send(true).unwrap();
    for w in workers {
        tokio::time::timeout(Duration::from_secs(5), w).await.unwrap().unwrap();
    }
}

/// Holds every run until `n` runs are in at once, then reports.
struct Gather {
    barrier: tokio::sync::Barrier,
}

#[async_trait]
impl JobRunner for Gather {
    async fn run(&self, _job: JobRow, _last_try: bool) -> Step {
        self.barrier.wait().await;
        Step::Report { errcode: 0, result: "{}".into() }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worker_runs_a_job_at_the_same_time_so_a_backlog_drains_in_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { notify_ttl_ms: 1000, max_notify_entries: 1, max_notify_bytes: 1 };
    let store = Store::open_with(&dir.path().join("s.sqlite"), limits, Arc::new(SystemClock)).unwrap();
    let sdk = Arc::new(Recorder::default());
    let jobs = Jobs::new(store, sdk.clone(), JobSettings { workers: 4, ..settings() });
    let (stop_tx, stop_rx) = watch::channel(false);
    // Each run waits until four are in: with fewer running at once, none would ever finish.
    let workers = jobs.spawn_workers(Arc::new(Gather { barrier: tokio::sync::Barrier::new(4) }), stop_rx);
    for i in 0..8 {
        jobs.enqueue(job(JobKind::Ability, &format!("k{i}"))).await.unwrap();
    }
    let counts = jobs.wait_idle(Duration::from_secs(10)).await.expect("four jobs run at once, twice");
    assert_eq!((counts.done, sdk.reports.lock().unwrap().len()), (8, 8));
    stop_tx.send(true).unwrap();
    for w in workers {
        tokio::time::timeout(Duration::from_secs(5), w).await.unwrap().unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_refused_call_is_reported_in_its_context_and_a_failed_report_is_retried() {
    let f = fixture();
    f.sdk.fail_reports.store(2, Ordering::SeqCst);
    assert!(f.jobs.report_refused(ctx(), 900_301, r#"{"errcode":900301}"#.into()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while f.sdk.reports.lock().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the refusal was never reported");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reports = f.sdk.reports.lock().unwrap().clone();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].0, ctx(), "in the refused call's own context");
    assert_eq!(reports[0].1, serde_json::json!({"errcode": 900_301, "result": "{\"errcode\":900301}"}));
    assert_eq!(f.sdk.fail_reports.load(Ordering::SeqCst), 0, "after the two failed tries");
    assert_eq!(f.jobs.counts().await.unwrap(), JobCounts::default(), "a refusal records no job");
}

#[tokio::test(start_paused = true)]
async fn a_bounded_number_of_refusals_wait_for_their_report_and_a_finished_one_makes_room() {
    let f = fixture();
    f.sdk.fail_reports.store(1_000_000, Ordering::SeqCst);
    // max_pending is 10, so the floor of 1024 may wait; the next one, while they wait (their
    // reports keep failing), is not taken on.
    let taken = (0..1025).filter(|_| f.jobs.report_refused(ctx(), 900_301, "{}".into())).count();
    assert_eq!(taken, 1024);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !f.jobs.report_refused(ctx(), 900_301, "{}".into()) {
        assert!(tokio::time::Instant::now() < deadline, "no room was ever made");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(f.sdk.fail_reports.load(Ordering::SeqCst) <= 1_000_000 - 3, "room is made once one gave up after 3 tries");
    assert!(f.sdk.reports.lock().unwrap().is_empty());
}

/// Holds every run until released; counts the runs started.
struct Gate {
    open: tokio::sync::Semaphore,
    started: AtomicU32,
}

#[async_trait]
impl JobRunner for Gate {
    async fn run(&self, _job: JobRow, _last_try: bool) -> Step {
        self.started.fetch_add(1, Ordering::SeqCst);
        self.open.acquire().await.unwrap().forget();
        Step::Report { errcode: 0, result: "{}".into() }
    }
}

/// The dispatcher claims jobs ahead of its free slots; at the stop, the ones it claimed but did
/// not start are given back (not left claimed until their lease runs out), their run uncounted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_claimed_ahead_but_not_started_are_released_at_the_stop() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { notify_ttl_ms: 1000, max_notify_entries: 1, max_notify_bytes: 1 };
    let store = Store::open_with(&dir.path().join("s.sqlite"), limits, Arc::new(SystemClock)).unwrap();
    let sdk = Arc::new(Recorder::default());
    let jobs = Jobs::new(store.clone(), sdk.clone(), JobSettings { workers: 1, ..settings() });
    for i in 0..3 {
        jobs.enqueue(job(JobKind::Ability, &format!("k{i}"))).await.unwrap();
    }
    let gate = Arc::new(Gate { open: tokio::sync::Semaphore::new(0), started: AtomicU32::new(0) });
    let (stop_tx, stop_rx) = watch::channel(false);
    let handles = jobs.spawn_workers(gate.clone(), stop_rx);
    // One slot: one job runs; the claimer holds one more ready (its room is `workers`).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while gate.started.load(Ordering::SeqCst) == 0 || jobs.counts().await.unwrap().running < 2 {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", jobs.counts().await.unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop_tx.send(true).unwrap();
    gate.open.add_permits(10);
    for h in handles {
        tokio::time::timeout(Duration::from_secs(5), h).await.unwrap().unwrap();
    }
    assert_eq!(gate.started.load(Ordering::SeqCst), 1, "no job starts after the stop");
    assert_eq!(jobs.counts().await.unwrap(), JobCounts { queued: 2, running: 0, done: 1, failed: 0 });
    assert_eq!(sdk.reports.lock().unwrap().len(), 1, "the started job finished its step and reported");
    while let Some(left) = store.claim_job(60_000).await.unwrap() {
        assert_eq!(left.runs, 1, "the claim that never ran was not counted as a run");
    }
}

/// A backlog much larger than the slots drains with exactly one report per job (reports are sent
/// beside the runs, at most `report_concurrency` at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_drains_with_exactly_one_report_per_job() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { notify_ttl_ms: 1000, max_notify_entries: 1, max_notify_bytes: 1 };
    let store = Store::open_with(&dir.path().join("s.sqlite"), limits, Arc::new(SystemClock)).unwrap();
    let sdk = Arc::new(Recorder::default());
    let settings = JobSettings { workers: 8, report_concurrency: 3, max_pending: 1000, ..settings() };
    let jobs = Jobs::new(store, sdk.clone(), settings);
    let (stop_tx, stop_rx) = watch::channel(false);
    let handles = jobs.spawn_workers(Script::new(vec![report(0, "{}")]), stop_rx);
    let ctxs: Vec<CallContext> = (0..300).map(|i| CallContext { job_info: format!("JOB-{i}"), ..ctx() }).collect();
    for (i, c) in ctxs.iter().enumerate() {
        let new = NewJob { ctx: c.clone(), ..job(JobKind::Ability, &format!("k{i}")) };
        jobs.enqueue(new).await.unwrap();
    }
    let counts = jobs.wait_idle(Duration::from_secs(30)).await.unwrap();
    assert_eq!(counts, JobCounts { queued: 0, running: 0, done: 300, failed: 0 });
    let mut reported: Vec<String> = sdk.reports.lock().unwrap().iter().map(|(c, _)| c.job_info.clone()).collect();
    reported.sort();
    let mut expected: Vec<String> = ctxs.into_iter().map(|c| c.job_info).collect();
    expected.sort();
    assert_eq!(reported, expected, "each job reported once, in its own context");
    stop_tx.send(true).unwrap();
    for h in handles {
        tokio::time::timeout(Duration::from_secs(5), h).await.unwrap().unwrap();
    }
}
