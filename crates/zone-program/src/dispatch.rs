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
use crate::store::{Enqueued, NewJob};
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
        Err(e) if is_callers_fault(e.code()) => {
            tracing::debug!(errcode = e.code().code(), error = %e, "request refused")
        }
        Err(e) => tracing::warn!(errcode = e.code().code(), error = %e, "request failed"),
        Ok(_) => {}
    }
    let (mut errcode, mut text) = state.abilities.reply(outcome);
    if text.len() > state.config.abilities.max_reply_bytes {
        tracing::warn!(reply.bytes = text.len(), "the output is over abilities.max_reply_bytes; answered 900011");
        (errcode, text) = state.abilities.reply(Err(AppError::Code(ErrorCode::ReplyTooLarge)));
    }
    if callback.call_type == CallType::AppCall {
        let known = state.abilities.get(&callback.ability_id).is_ok();
        state.metrics.ability_call(if known { &callback.ability_id } else { "unknown" }, errcode);
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
    let payload =
        JobPayload::Ability(AbilityJob { data: callback.data.clone(), notify_id: callback.notify_id.clone() });
    let job = NewJob {
        kind: payload.kind(),
        dedupe_key: Some(dedupe_key),
        context_prefix: Some(context_prefix),
        ctx: callback.context(),
        payload: payload.to_text(),
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
