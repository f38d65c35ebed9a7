//! Running a model over many messages: batches of at most 1000 (sdk-model-apis.md §1.1), each a
//! task created and polled to its end; a batch that fails because its expanded input is too long
//! (790040, §1.3) is split in two and retried, down to single messages.

use super::AbilityCx;
use super::messages::{MODEL_BATCH, Skipped, Unwrapped, failures, model_msg_list};
use crate::error::{AppError, ErrorCode};
use crate::jobs::poll::{self, ERR_INPUT_TOO_LONG, ModelApi, TaskOutcome};
use crate::sdk::SdkError;
use crate::sdk::api::{ModelMsg, SdkRequest, TaskResult};

/// What the batches produced.
#[derive(Debug, Default)]
pub struct Batched {
    /// The finished result reply of every batch, in message order.
    pub replies: Vec<TaskResult>,
    /// Messages the model refused (`fail_list`), with their errcode.
    pub skipped: Vec<Skipped>,
    /// Tasks created (splits included).
    pub tasks: usize,
}

/// Runs `api` over `messages` in batches. `request` builds the API's typed create request from a
/// batch's `msg_list` (e.g. `|msg_list| MsgListTaskRequest { msg_list }`). A failed or timed-out
/// batch fails the whole run with `ModelTaskFailed` or `ModelTaskTimeout`.
pub async fn run_batched<R: SdkRequest>(
    cx: &AbilityCx,
    api: ModelApi,
    messages: &[Unwrapped],
    request: impl Fn(Vec<ModelMsg>) -> R,
) -> Result<Batched, AppError> {
    let mut out = Batched::default();
    // A stack of message ranges, processed in order; a split pushes its halves back.
    let mut pending: Vec<(usize, usize)> =
        (0..messages.len()).step_by(MODEL_BATCH).map(|s| (s, (s + MODEL_BATCH).min(messages.len()))).rev().collect();
    while let Some((start, end)) = pending.pop() {
        let batch = &messages[start..end];
        out.tasks += 1;
        let ran = poll::run(cx.sdk(), api, &request(model_msg_list(batch)), cx.poll_policy()).await;
        let outcome = match ran {
            Ok((created, outcome)) => {
                out.skipped.extend(failures(&created.fail_list));
                outcome
            }
            // The creator itself may refuse an input that is too long.
            Err(AppError::Sdk(SdkError::Errcode { errcode, .. })) if errcode == ERR_INPUT_TOO_LONG => {
                TaskOutcome::Failed { errcode, response: None }
            }
            Err(e) => return Err(e),
        };
        match outcome {
            TaskOutcome::Done(reply) => {
                out.skipped.extend(failures(&reply.fail_list));
                out.replies.push(reply);
            }
            TaskOutcome::Failed { errcode, .. } if errcode == ERR_INPUT_TOO_LONG && batch.len() > 1 => {
                let mid = start + batch.len() / 2;
                tracing::info!(api = api.create, size = batch.len(), "model input too long; splitting the batch");
                pending.push((mid, end));
                pending.push((start, mid));
            }
            TaskOutcome::Failed { errcode, .. } => {
                tracing::warn!(api = api.create, errcode, "model task failed");
                return Err(AppError::Code(ErrorCode::ModelTaskFailed));
            }
            TaskOutcome::TimedOut => return Err(AppError::Code(ErrorCode::ModelTaskTimeout)),
        }
    }
    Ok(out)
}
