//! Routes a decoded callback and always yields the reply text:
//! - call_type 1, sync: run the ability now; its output (or error) is the reply;
//! - call_type 1, `is_async` (async_program_task, or an own-model/own-program task that must be
//!   answered within 5 s): check the input, record a durable job, acknowledge at once; a worker
//!   runs it and reports `{errcode, result}` with `program_async_job_call_back`. Bad input is
//!   refused in the acknowledgement; a full job queue is refused there and reported as well;
//! - call_type 2: record the event's follow-up job and acknowledge ([`crate::events`]).
//!
//! Failures become `{errcode, errmsg}` here, wrapped in the configured output envelope. Dispatch only
//! routes: recorded jobs run in [`crate::jobs::runner`].

use std::time::Duration;

use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::abilities::Output;
use crate::app::AppState;
use crate::error::{AppError, ErrorCode, is_callers_fault};
use crate::jobs::payload::{AbilityJob, JobPayload};
use crate::sdk::{CallType, Callback};
use crate::store::NewJob;
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
        Err(e) if is_callers_fault(e.code()) => {
            tracing::debug!(errcode = e.code().code(), error = %e, "request refused")
        }
        Err(e) => tracing::warn!(errcode = e.code().code(), error = %e, "request failed"),
        Ok(_) => {}
    }
    let (errcode, text) = state.abilities.reply(outcome);
    if callback.call_type == CallType::AppCall {
        let known = state.abilities.get(&callback.ability_id).is_ok();
        state.metrics.ability_call(if known { &callback.ability_id } else { "unknown" }, errcode);
    }
    if errcode != 0 {
        Metrics::inc(&state.metrics.error_replies);
    }
    text
}

async fn call_sync(state: &AppState, callback: &Callback) -> Result<Output, AppError> {
    // Abilities plan for ¾ of the request deadline (model polling stops there); a call still running
    // at ⅞ is cut off and answered with 900009, leaving the rest for encoding and the network, so the
    // caller gets an encoded reply rather than the HTTP layer's bare timeout.
    let deadline = state.config.server.request_timeout_ms;
    let cx = state.ability_cx(callback.context(), callback.notify_id.clone(), Duration::from_millis(deadline * 3 / 4));
    let call = state.abilities.call(&cx, &callback.ability_id, &callback.data);
    tokio::time::timeout(Duration::from_millis(deadline * 7 / 8), call)
        .await
        .unwrap_or(Err(AppError::Code(ErrorCode::RequestTimeout)))
}

async fn accept_async(state: &AppState, callback: &Callback) -> Result<Output, AppError> {
    // Without its job_info the result could never be reported: refused in the ack.
    if callback.job_info.is_empty() {
        return Err(AppError::invalid("an async call needs its job_info"));
    }
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
    let payload =
        JobPayload::Ability(AbilityJob { data: callback.data.clone(), notify_id: callback.notify_id.clone() });
    let job = NewJob { kind: payload.kind(), dedupe_key, ctx: callback.context(), payload: payload.to_text() };
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
