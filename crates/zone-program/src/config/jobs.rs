//! `[jobs]`: async job workers, result reports and model-task polling.

use serde::Deserialize;

use super::{ConfigError, positive};

/// `[jobs]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Jobs run at once. Default 48: a job spends most of its time waiting for SDK calls, so the
    /// job rate is at most `workers` / the SDK latency (48 jobs of 10 ms: 4 800/s). With
    /// `report_concurrency` this is `sdk.pool_size` (64), so the jobs alone never wait for an SDK
    /// slot beyond `sdk.queue_wait_ms`; sync calls share the slots first come, first served.
    pub workers: usize,
    /// Results reported (`program_async_job_call_back`) at once; a job waiting to report does not
    /// hold one of `workers`. Default 16 (16 reports of 10 ms: 1 600/s).
    pub report_concurrency: usize,
    /// Jobs accepted but not finished; beyond this new async calls get "job queue full". The queue
    /// is the store's file, not memory: this guards the disk (each pending job holds its request
    /// data, at most `abilities.max_input_bytes`; a typical one well under 1 KiB). Default 1 000 000.
    pub max_pending: u64,
    /// Attempts to report a result with `program_async_job_call_back`. Default 8.
    pub report_attempts: u32,
    /// First retry delay of a report, doubled each time, in milliseconds. Default 500.
    pub report_backoff_ms: u64,
    /// How long an async job's model tasks may be polled in all, in seconds (a sync call polls
    /// within ¾ of `server.request_timeout_ms` instead). Default 120.
    pub model_poll_deadline_secs: u64,
    /// First polling interval of a model task, in milliseconds (backs off to 5 s). Default 200.
    pub model_poll_interval_ms: u64,
    /// Most runs of one job (transient-failure retries and restarts included) before it gives up:
    /// an async ability then reports "internal error", an event follow-up delivers what it has.
    /// Default 5.
    pub max_runs: u32,
    /// How long a worker's claim on a job lasts without renewal, in seconds. A running job renews
    /// it every third of this; a claim whose worker is gone, or whose outcome could not be recorded
    /// (store errors), runs out and the job is taken up again without a restart. Default 60.
    pub claim_lease_secs: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            workers: 48,
            report_concurrency: 16,
            max_pending: 1_000_000,
            report_attempts: 8,
            report_backoff_ms: 500,
            model_poll_deadline_secs: 120,
            model_poll_interval_ms: 200,
            max_runs: 5,
            claim_lease_secs: 60,
        }
    }
}

impl JobsConfig {
    /// Checks the section's values; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("jobs.workers", self.workers as u64)?;
        positive("jobs.report_concurrency", self.report_concurrency as u64)?;
        positive("jobs.max_pending", self.max_pending)?;
        positive("jobs.report_attempts", u64::from(self.report_attempts))?;
        positive("jobs.model_poll_deadline_secs", self.model_poll_deadline_secs)?;
        positive("jobs.model_poll_interval_ms", self.model_poll_interval_ms)?;
        positive("jobs.max_runs", u64::from(self.max_runs))?;
        positive("jobs.claim_lease_secs", self.claim_lease_secs)
    }
}
