//! `reply_suggestions`: a reply recommendation (话术推荐) for the latest messages of a chat,
//! grounded in a knowledge set (sdk-model-apis.md §5). It lists the chat's messages in the range,
//! keeps the last `last_n`, unwraps their keys, runs one recommendation task and polls it. When the
//! input is too long for the model (790040) the oldest half is dropped and the task retried.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::input::too_large;
use super::messages::{self, GivenMsg, MODEL_BATCH, Unwrapped};
use super::{AbilityCx, AbilityInfo, Handler, Output, Validate, ok_with};
use crate::error::{AppError, ErrorCode};
use crate::jobs::poll::{self, ERR_INPUT_TOO_LONG, RECOMMEND_DIALOG, TaskOutcome};
use crate::sdk::SdkError;
use crate::sdk::api::RecommendDialogTaskRequest;

/// The ability id.
pub const ID: &str = "reply_suggestions";
/// Most messages scanned in the range.
const MAX_SCANNED: usize = 10_000;
/// Default range: the last day.
const DEFAULT_SPAN_SECS: i64 = 24 * 3600;

/// The ability.
pub struct ReplySuggestions;

/// Its input: a knowledge set and one of `chatid`, `participants`, `msg_list`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The knowledge set (`kb_id` from `knowledge_base_list`).
    pub kb_id: String,
    /// A group chat id.
    pub chatid: Option<String>,
    /// The two parties of a 1:1 chat.
    pub participants: Option<Vec<String>>,
    /// Messages with keys the app unwrapped, oldest first.
    pub msg_list: Option<Vec<GivenMsg>>,
    /// Range start, Unix seconds (default: a day before `end_time`).
    pub start_time: Option<i64>,
    /// Range end, Unix seconds (default: now).
    pub end_time: Option<i64>,
    /// How many of the latest messages to consider (1–1000, default 50).
    pub last_n: Option<usize>,
}

impl Validate for Input {
    fn validate(&self) -> Result<(), AppError> {
        messages::validate_id("kb_id", &self.kb_id)?;
        if self.last_n.is_some_and(|n| n == 0 || n > MODEL_BATCH) {
            return Err(too_large("`last_n` must be 1 to 1000"));
        }
        messages::check_source(
            self.chatid.as_deref(),
            self.participants.as_deref(),
            self.msg_list.as_deref(),
            MODEL_BATCH,
        )?;
        messages::check_range(self.start_time, self.end_time)
    }
}

#[async_trait]
impl Handler for ReplySuggestions {
    type Input = Input;

    fn info(&self) -> AbilityInfo {
        AbilityInfo {
            id: ID.into(),
            description: "A reply recommendation for the latest messages of a chat, from a knowledge set.".into(),
            long_running: true,
            input_example: json!({"kb_id": "kb1", "chatid": "wr1", "participants": ["wo1", "wm1"], "msg_list": [{"msgid": "M1", "secret_key": "K1"}],
                                   "start_time": 1700000000, "end_time": 1700086400, "last_n": 50}),
            output_example: json!({
                "kb_id": "kb1", "suggestion": "REPLY", "message_count": 2, "msgids": ["M1", "M2"],
                "skipped": [{"msgid": "M3", "errcode": 900203}], "truncated": false,
            }),
        }
    }

    async fn run(&self, cx: &AbilityCx, input: Input) -> Result<Output, AppError> {
        let now = cx.now_secs();
        let (start, end) = messages::validate_range(input.start_time, input.end_time, now, DEFAULT_SPAN_SECS)?;
        let source = messages::source(input.chatid, input.participants, input.msg_list, MODEL_BATCH)?;
        let last_n = input.last_n.unwrap_or(50);
        let gathered = messages::gather(cx, source, start, end, MAX_SCANNED).await?;
        let mut skipped = gathered.skipped.clone();
        let all = gathered.messages;
        let mut window: &[Unwrapped] = &all[all.len().saturating_sub(last_n)..];
        let mut suggestion = String::new();
        while !window.is_empty() {
            let request =
                RecommendDialogTaskRequest { kb_id: input.kb_id.clone(), msg_list: messages::model_msg_list(window) };
            let outcome = match poll::run(cx.sdk(), RECOMMEND_DIALOG, &request, cx.poll_policy()).await {
                Ok((created, outcome)) => {
                    skipped.extend(messages::failures(&created.fail_list));
                    outcome
                }
                Err(AppError::Sdk(SdkError::Errcode { errcode, .. })) if errcode == ERR_INPUT_TOO_LONG => {
                    TaskOutcome::Failed { errcode, response: None }
                }
                Err(e) => return Err(e),
            };
            match outcome {
                TaskOutcome::Done(reply) => {
                    skipped.extend(messages::failures(&reply.fail_list));
                    suggestion =
                        reply.fields.get("response_data").and_then(Value::as_str).unwrap_or_default().to_owned();
                    break;
                }
                TaskOutcome::Failed { errcode, .. } if errcode == ERR_INPUT_TOO_LONG && window.len() > 1 => {
                    window = &window[window.len() / 2..];
                }
                TaskOutcome::Failed { .. } => return Err(ErrorCode::ModelTaskFailed.into()),
                TaskOutcome::TimedOut => return Err(ErrorCode::ModelTaskTimeout.into()),
            }
        }
        Ok(Output::Json(ok_with(json!({
            "kb_id": input.kb_id,
            "suggestion": suggestion,
            "message_count": window.len(),
            "msgids": window.iter().map(|m| m.msgid.as_str()).collect::<Vec<_>>(),
            "skipped": messages::skipped_json(&skipped),
            "truncated": gathered.truncated,
        }))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abilities::input::parse;

    #[test]
    fn kb_id_is_required_and_last_n_bounded() {
        assert!(parse::<Input>(r#"{"chatid":"wr1"}"#, 1 << 20).is_err());
        assert_eq!(
            parse::<Input>(r#"{"kb_id":"kb1","chatid":"wr1","last_n":1001}"#, 1 << 20).unwrap_err().code(),
            ErrorCode::InputTooLarge
        );
        assert!(parse::<Input>(r#"{"kb_id":"kb1","chatid":"wr1","last_n":5}"#, 1 << 20).is_ok());
    }
}
