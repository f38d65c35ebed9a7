//! `get_callback_data`: returns what an event stored under the request's `notify_id` and removes
//! it (program-callbacks.md §6.2). The input is `{}`; the `notify_id` comes with the call
//! (`sync_call_program`'s `notify_id`). Unknown, expired and already-taken data have distinct
//! codes; a bad input takes nothing.
//!
//! The data is taken when the program answers, not when the app receives the answer: an app whose
//! call failed (the reply was lost on its way) repeats it with `{"retry": true}` and gets the same
//! data again, for [`crate::store::RETRY_GRACE_MS`] after the first read. A plain repeated read
//! is still refused as taken (900006).

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use super::{AbilityCx, AbilityInfo, Handler, Output, RawJson, Validate};
use crate::error::{AppError, ErrorCode};
use crate::store::{NotifyId, TakeError};

/// The ability.
pub struct GetCallbackData;

/// Its input: an empty object, or `{"retry": true}` to repeat a read whose reply was lost.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// This read repeats one whose reply never arrived: data taken less than
    /// [`crate::store::RETRY_GRACE_MS`] ago is returned again.
    #[serde(default)]
    pub retry: bool,
}

impl Validate for Input {
    fn validate(&self) -> Result<(), AppError> {
        Ok(())
    }
}

/// The ability id.
pub const ID: &str = "get_callback_data";

#[async_trait]
impl Handler for GetCallbackData {
    type Input = Input;

    fn info(&self) -> AbilityInfo {
        AbilityInfo {
            id: ID.into(),
            description: "Returns, once, the event data stored under the call's notify_id (from program_notify); \
                          {\"retry\":true} repeats a read whose reply was lost (within 60 s)."
                .into(),
            long_running: false,
            input_example: json!({"retry": false}),
            output_example: crate::events::notify_data_example(),
        }
    }

    async fn run(&self, cx: &AbilityCx, input: Input) -> Result<Output, AppError> {
        if cx.notify_id().is_empty() {
            return Err(AppError::Input {
                code: ErrorCode::MissingNotifyId,
                reason: "the call has no notify_id".into(),
            });
        }
        let id = NotifyId::parse(cx.notify_id())
            .map_err(|e| AppError::Input { code: ErrorCode::MissingNotifyId, reason: e.to_string() })?;
        let taken = if input.retry {
            cx.notify().retake(&cx.call().corp_id, &id).await?
        } else {
            cx.notify().take(&cx.call().corp_id, &id).await?
        };
        match taken {
            Ok(data) => RawJson::parse(data).map(Output::Raw).ok_or(AppError::Code(ErrorCode::Internal)),
            Err(TakeError::NotFound) => Err(ErrorCode::NotifyDataNotFound.into()),
            Err(TakeError::Expired) => Err(ErrorCode::NotifyDataExpired.into()),
            Err(TakeError::Taken) => Err(ErrorCode::NotifyDataTaken.into()),
        }
    }
}
