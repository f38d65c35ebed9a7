//! Routes a decoded callback and always yields the reply text:
//! - call_type 1, sync: run the ability now; its output (or error) is the reply;
//! - call_type 1, `is_async` (async_program_task, or an own-model/own-program task that must be
//!   answered within 5 s): check the input, record a durable job, acknowledge at once; a worker
//!   runs it and reports `{errcode, result}` with `program_async_job_call_back`. Bad input is
//!   refused in the acknowledgement; a full job queue is refused there and reported as well;
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
use crate::store::{JobKind, JobRow, NewJob};
use crate::telemetry::Metrics;

/// Handles one decoded callback and returns the plaintext to encode as the reply.
pub async fn handle(state: &AppState, callback: Callback) -> String {
    let outcome = match callback.call_type {
        CallType::AppCall if callback.is_async => accept_async(state, &callback).await,
        CallType::AppCall if always_async(state, &callback) => {
            tracing::info!("is_async false, but the ability is configured always-async");
            accept_async(state, &callback).await
        }
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
    let (mut errcode, mut text) = state.abilities.reply(outcome);
    if text.len() > state.config.abilities.max_reply_bytes {
        tracing::warn!(reply.bytes = text.len(), "the output is over abilities.max_reply_bytes; answered 900011");
        (errcode, text) = state.abilities.reply(Err(AppError::Code(ErrorCode::ReplyTooLarge)));
    }
    if errcode != 0 {
        Metrics::inc(&state.metrics.error_replies);
    }
    text
}

/// Whether a request that says `is_async` false runs as a job anyway (`abilities.always_async`).
fn always_async(state: &AppState, callback: &Callback) -> bool {
    !callback.job_info.is_empty() && state.config.abilities.always_async.contains(&callback.ability_id)
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
        tokenless: state.tokenless.clone(),
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
    // Bad input is refused now, before anything is stored.
    state.abilities.check(&callback.ability_id, &callback.data)?;
    // A redelivered job (same corp and job context) is recognised and not run twice.
    let dedupe_key = (!callback.job_info.is_empty()).then(|| {
        let digest = Sha256::new()
            .chain_update(callback.corp_id.as_bytes())
            .chain_update([0])
            .chain_update(callback.job_info.as_bytes());
        format!("ability:{}", hex::encode(digest.finalize()))
    });
    let payload = AbilityPayload { data: callback.data.clone(), notify_id: callback.notify_id.clone() };
    let job = NewJob {
        kind: JobKind::Ability,
        dedupe_key,
        ctx: callback.context(),
        payload: serde_json::to_string(&payload).expect("strings serialise"),
    };
    let outcome = match state.jobs.enqueue(job).await {
        Ok(outcome) => outcome,
        Err(e) => {
            if e.code() == ErrorCode::JobQueueFull {
                report_refusal(state, callback, &e);
            }
            return Err(e);
        }
    };
    tracing::info!(?outcome, "async call accepted");
    Ok(Output::Json(json!({ "errcode": 0, "errmsg": "ok" })))
}

/// A valid async call refused for want of room is also reported (in the background, retried,
/// bounded: [`crate::jobs::Jobs::report_refused`]), so the caller's `async_program_result` ends
/// instead of waiting for a job that will never run.
fn report_refusal(state: &AppState, callback: &Callback, e: &AppError) {
    let (errcode, result) = state.abilities.reply(Err(AppError::Code(e.code())));
    state.jobs.report_refused(callback.context(), errcode, result);
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
