//! Micro-benchmark of the async job engine alone: how fast `jobs.workers` workers drain a backlog
//! of jobs from the real SQLite store, each job one SDK call (the ability) and one report
//! (`program_async_job_call_back`), against an in-process SDK that answers after a fixed latency
//! (none, or 2 ms: a real network's). No HTTP and no codec: what is left is the engine's own cost
//! (claims, result and finish writes, wake-ups) and its concurrency, so jobs/s here is the ceiling
//! the engine puts on the `bench` async row.
//!
//! Each iteration opens a fresh store, enqueues the backlog (untimed), then times workers from
//! start until the table is idle. Short runs (10 samples): `cargo bench --bench jobs`, about a
//! minute. Under `cargo test` criterion runs each routine once, as a smoke test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use zone_program::clock::SystemClock;
use zone_program::jobs::{JobRunner, JobSettings, Jobs, Step};
use zone_program::sdk::{CallContext, DecodeError, Decoded, SdkError, ZoneSdk};
use zone_program::store::{JobKind, JobRow, Limits, NewJob, Store};

/// Jobs in the backlog of one iteration.
const BACKLOG: usize = 200;
/// The size of a pass-through result (the bench's `sync_msg` page).
const RESULT_BYTES: usize = 6 * 1024;

/// An SDK whose every call answers `{"errcode":0}` after `latency`.
struct Delayed {
    latency: Duration,
}

#[async_trait]
impl ZoneSdk for Delayed {
    fn decode(&self, _: &str, _: &[(String, String)], _: &[u8]) -> Result<Decoded, DecodeError> {
        Err(DecodeError { code: -1, reply: None })
    }
    async fn invoke(&self, _: &CallContext, _: &str, _: &str) -> Result<String, SdkError> {
        if self.latency.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(self.latency).await;
        }
        Ok(r#"{"errcode":0,"errmsg":"ok"}"#.into())
    }
}

/// Runs a job as the pass-through does: one SDK call, then its output is the result to report.
struct PassThrough {
    sdk: Arc<Delayed>,
    result: String,
}

#[async_trait]
impl JobRunner for PassThrough {
    async fn run(&self, job: JobRow, _last_try: bool) -> Step {
        let _ = self.sdk.invoke(&job.ctx, "sync_msg", &job.payload).await;
        Step::Report { errcode: 0, result: self.result.clone() }
    }
}

fn ctx(n: usize) -> CallContext {
    CallContext {
        corp_id: zone_crypto::demo::CORP_ID.into(),
        agent_id: 1_000_002,
        ability_id: "invoke_sync_msg".into(),
        job_info: format!("JI{n:012}"),
    }
}

/// Drains one backlog; returns the time from starting the workers to an idle table.
async fn drain(workers: usize, latency: Duration) -> Duration {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let limits = Limits { notify_ttl_ms: 600_000, max_notify_entries: 10, max_notify_bytes: 1000 };
    let store = Store::open_with(&dir.path().join("s.sqlite"), limits, Arc::new(SystemClock)).expect("the store opens");
    let sdk = Arc::new(Delayed { latency });
    let settings = JobSettings {
        workers,
        report_concurrency: 16,
        max_pending: 100_000,
        report_attempts: 3,
        backoff_ms: 100,
        max_runs: 5,
        lease_ms: 60_000,
    };
    let jobs = Jobs::new(store, sdk.clone(), settings);
    for n in 0..BACKLOG {
        let job = NewJob {
            kind: JobKind::Ability,
            dedupe_key: Some(format!("ability:{n}")),
            context_prefix: None,
            ctx: ctx(n),
            payload: r#"{"data":"{\"limit\":10}","notify_id":""}"#.into(),
        };
        jobs.enqueue(job).await.expect("room for the backlog");
    }
    let runner = Arc::new(PassThrough { sdk, result: "x".repeat(RESULT_BYTES) });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let handles = jobs.spawn_workers(runner, stopped);
    let counts = jobs.wait_idle(Duration::from_secs(60)).await.expect("the backlog drains");
    let took = started.elapsed();
    assert_eq!(counts.done as usize, BACKLOG, "every job reported");
    let _ = stop.send(true);
    for h in handles {
        let _ = h.await;
    }
    took
}

fn engine(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    let mut group = c.benchmark_group("jobs_drain");
    group.throughput(Throughput::Elements(BACKLOG as u64));
    for latency_ms in [0u64, 2] {
        for workers in [4usize, 16] {
            let id = BenchmarkId::new(format!("sdk_{latency_ms}ms"), format!("{workers}_workers"));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    (0..iters).map(|_| rt.block_on(drain(workers, Duration::from_millis(latency_ms)))).sum()
                });
            });
        }
    }
    group.finish();
}

fn short() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args()
}

criterion_group! {
    name = benches;
    config = short();
    targets = engine
}
criterion_main!(benches);
