//! Routes a decoded callback and always yields the reply text:
//! - call_type 1, sync: run the ability now; its output (or error) is the reply;
//! - call_type 1, `is_async` (async_program_task, or an own-model/own-program task that must be
//!   answered within 5 s): check the input, record a durable job, acknowledge at once; a worker
//!   runs it and reports `{errcode, result}` with `program_async_job_call_back`. A refusal (bad
//!   input, unknown ability, no `job_info`, a full queue, a store error) is the acknowledgement's
//!   errcode and is reported as well, so every async call ends with one report; a redelivery of
//!   a finished job has its result reported again;
//! - call_type 2: record the event's follow-up job and acknowledge ([`crate::events`]).
//!
//! Failures become `{errcode, errmsg}` here, wrapped in the configured output envelope.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::abilities::{AbilityCx, Output};
use crate::app::AppState;
use crate::error::{AppError, ErrorCode};
use crate::jobs::{JobRunner, Step};
use crate::sdk::{CallContext, CallType, Callback};
use crate::store::{Enqueued, JobKind, JobRow, NewJob};
use crate::telemetry::Metrics;

/// Handles one decoded callback and returns the plaintext to encode as the reply.
pub async fn handle(state: &AppState, callback: Callback) -> String {
    let outcome = match callback.call_type {
        CallType::AppCall if callback.is_async => accept_async(state, &callback).await,
        CallType::AppCall => call_sync(state, &callback).await,
        CallType::Event => crate::events::accept(state, &callback).await.map(Output::Json),
    };
    match &outcome {
        // The detail of an internal failure is logged here, never replied; it carries no content.
        Err(AppError::Internal(detail)) => tracing::error!(detail = %format!("{detail:#}"), "request failed"),
        // A caller's mistake is the caller's to see in the reply; the program's own trouble is logged.
        Err(e) if is_callers(e.code()) => tracing::debug!(errcode = e.code().code(), error = %e, "request refused"),
        Err(e) => tracing::warn!(errcode = e.code().code(), error = %e, "request failed"),
        Ok(_) => {}
    }
    let (errcode, text) = state.abilities.reply(outcome);
    if errcode != 0 {
        Metrics::inc(&state.metrics.error_replies);
    }
    text
}

/// Codes that describe the caller's request rather than the program's state.
fn is_callers(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::InvalidInput
            | ErrorCode::InputTooLarge
            | ErrorCode::UnknownAbility
            | ErrorCode::NotifyDataNotFound
            | ErrorCode::NotifyDataExpired
            | ErrorCode::NotifyDataTaken
            | ErrorCode::MissingNotifyId
    )
}

/// The context an ability runs in.
fn ability_cx(state: &AppState, ctx: CallContext, notify_id: String, budget: Duration) -> AbilityCx {
    AbilityCx {
        sdk: state.sdk.clone(),
        store: state.store.clone(),
        keyring: state.keyring.clone(),
        ctx,
        notify_id,
        poll_interval: Duration::from_millis(state.config.jobs.model_poll_interval_ms),
        deadline: tokio::time::Instant::now() + budget,
    }
}

async fn call_sync(state: &AppState, callback: &Callback) -> Result<Output, AppError> {
    // Abilities plan for ¾ of the request deadline (model polling stops there); a call still running
    // at ⅞ is cut off and answered with 900009, leaving the rest for encoding and the network, so the
    // caller gets an encoded reply rather than the HTTP layer's bare timeout.
    let deadline = state.config.server.request_timeout_ms;
    let cx = ability_cx(state, callback.context(), callback.notify_id.clone(), Duration::from_millis(deadline * 3 / 4));
    let call = state.abilities.call(&cx, &callback.ability_id, &callback.data);
    tokio::time::timeout(Duration::from_millis(deadline * 7 / 8), call)
        .await
        .unwrap_or(Err(AppError::Code(ErrorCode::RequestTimeout)))
}

/// What an async ability job keeps of its request.
#[derive(Serialize, Deserialize)]
struct AbilityPayload {
    data: String,
    notify_id: String,
}

async fn accept_async(state: &AppState, callback: &Callback) -> Result<Output, AppError> {
    let outcome = enqueue_async(state, callback).await;
    if let Err(e) = &outcome {
        // WeCom's answer to an async call is only an acknowledgement: a refusal there alone would
        // leave the caller's `async_program_result` waiting forever, so it is also reported.
        report_refusal(state, callback, e);
    }
    outcome
}

/// Checks an async call and records its job (or recognises a redelivery); the `Ok` is the
/// acknowledgement.
async fn enqueue_async(state: &AppState, callback: &Callback) -> Result<Output, AppError> {
    if callback.job_info.is_empty() {
        return Err(AppError::invalid("an async call carries no `job_info` to report its result in"));
    }
    // Bad input is refused now, before anything is stored.
    state.abilities.check(&callback.ability_id, &callback.data)?;
    let (dedupe_key, context_prefix) = ability_dedupe_key(callback);
    let payload = AbilityPayload { data: callback.data.clone(), notify_id: callback.notify_id.clone() };
    let job = NewJob {
        kind: JobKind::Ability,
        dedupe_key: Some(dedupe_key),
        context_prefix: Some(context_prefix),
        ctx: callback.context(),
        payload: serde_json::to_string(&payload).expect("strings serialise"),
    };
    match state.jobs.enqueue(job).await? {
        Enqueued::New(id) => tracing::info!(job_id = id, "async call accepted"),
        Enqueued::Duplicate(id) => tracing::info!(job_id = id, "async call redelivered; its job is under way"),
        Enqueued::NewSameContext(id) => tracing::warn!(
            job_id = id,
            "an async call reuses the job_info of a different earlier request; it runs as a new job"
        ),
        Enqueued::Finished { id, report } => {
            tracing::info!(job_id = id, "async call redelivered after its job finished; its result is reported again");
            if let Some((errcode, result)) = report {
                state.jobs.report_refused(callback.context(), errcode, result);
            }
        }
    }
    Ok(Output::Json(json!({ "errcode": 0, "errmsg": "ok" })))
}

/// The dedupe key of an async call, and the start it shares with every other request of the same
/// job context: a redelivery is the same corp, `job_info`, ability and data, nothing less.
fn ability_dedupe_key(callback: &Callback) -> (String, String) {
    let context = Sha256::new()
        .chain_update(callback.corp_id.as_bytes())
        .chain_update([0])
        .chain_update(callback.job_info.as_bytes())
        .finalize();
    let request = Sha256::new()
        .chain_update(callback.ability_id.as_bytes())
        .chain_update([0])
        .chain_update(callback.data.as_bytes())
        .finalize();
    let prefix = format!("ability:{}:", hex::encode(context));
    (format!("{prefix}{}", hex::encode(request)), prefix)
}

/// A refused async call is also reported, with the acknowledgement's `{errcode, …}` as its result
/// (in the background, retried, bounded: [`crate::jobs::Jobs::report_refused`]), so the caller's
/// `async_program_result` ends instead of waiting for a job that will never run.
fn report_refusal(state: &AppState, callback: &Callback, e: &AppError) {
    let result = crate::abilities::wrap(state.config.abilities.output_envelope, Output::Json(e.to_reply_json()));
    state.jobs.report_refused(callback.context(), e.code().code(), result);
}

/// Runs jobs for the workers: abilities through the registry, events through their handlers.
pub struct Runner {
    state: AppState,
}

impl Runner {
    /// A runner over `state`.
    pub fn new(state: AppState) -> Arc<Self> {
        Arc::new(Self { state })
    }
}

#[async_trait]
impl JobRunner for Runner {
    async fn run(&self, job: JobRow, last_try: bool) -> Step {
        match job.kind {
            JobKind::Ability => {
                let outcome = match serde_json::from_str::<AbilityPayload>(&job.payload) {
                    Ok(payload) => {
                        let budget = Duration::from_secs(self.state.config.jobs.model_poll_deadline_secs);
                        let cx = ability_cx(&self.state, job.ctx.clone(), payload.notify_id, budget);
                        self.state.abilities.call(&cx, &job.ctx.ability_id, &payload.data).await
                    }
                    Err(_) => Err(AppError::Internal(anyhow::anyhow!("an ability job payload does not parse"))),
                };
                if let Err(AppError::Internal(detail)) = &outcome {
                    tracing::error!(detail = %format!("{detail:#}"), "async job failed");
                }
                let (errcode, result) = self.state.abilities.reply(outcome);
                Step::Report { errcode, result }
            }
            JobKind::Event => crate::events::run_job(&self.state, job, last_try).await,
        }
    }
}
