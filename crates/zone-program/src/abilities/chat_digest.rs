//! `chat_digest`: the digest of one conversation over a time range. It lists the chat's messages
//! (`sync_msg`, following cursors and page ids), unwraps their keys, runs the summary and the
//! sentiment models over batches of at most 1000, polls both, and returns the summary, sentiment
//! counts and the message ids. The app may instead pass `msg_list` with keys it unwrapped.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::messages::{self, GivenMsg};
use super::model::run_batched;
use super::{AbilityCx, AbilityInfo, Handler, Output, Validate, ok_with};
use crate::error::AppError;
use crate::jobs::poll::{SENTIMENT, SUMMARY};
use crate::sdk::api::{MsgListTaskRequest, TaskResult};

/// The ability id.
pub const ID: &str = "chat_digest";
/// Most messages one digest covers.
pub const MAX_MESSAGES: usize = 10_000;
/// Default range: the last day.
const DEFAULT_SPAN_SECS: i64 = 24 * 3600;

/// The ability.
pub struct ChatDigest;

/// Its input: one of `chatid`, `participants`, `msg_list`; an optional range (default: the last
/// 24 hours) and message cap.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// A group chat id.
    pub chatid: Option<String>,
    /// The two parties of a 1:1 chat.
    pub participants: Option<Vec<String>>,
    /// Messages with keys the app unwrapped.
    pub msg_list: Option<Vec<GivenMsg>>,
    /// Range start, Unix seconds.
    pub start_time: Option<i64>,
    /// Range end, Unix seconds.
    pub end_time: Option<i64>,
    /// Most messages to digest (≤ 10 000, default 5000).
    pub max_messages: Option<usize>,
}

impl Validate for Input {
    fn validate(&self) -> Result<(), AppError> {
        if self.max_messages.is_some_and(|m| m == 0 || m > MAX_MESSAGES) {
            return Err(super::input::too_large("`max_messages` must be 1 to 10000"));
        }
        messages::check_source(
            self.chatid.as_deref(),
            self.participants.as_deref(),
            self.msg_list.as_deref(),
            MAX_MESSAGES,
        )?;
        messages::check_range(self.start_time, self.end_time)
    }
}

#[async_trait]
impl Handler for ChatDigest {
    type Input = Input;

    fn info(&self) -> AbilityInfo {
        AbilityInfo {
            id: ID.into(),
            description: "Summary, sentiment counts and message ids of one chat over a time range.".into(),
            long_running: true,
            input_example: json!({"chatid": "wr1", "participants": ["wo1", "wm1"], "msg_list": [{"msgid": "M1", "secret_key": "K1"}],
                                   "start_time": 1700000000, "end_time": 1700086400, "max_messages": 5000}),
            output_example: json!({
                "message_count": 2, "msgids": ["M1", "M2"], "summary": "SUMMARY", "summaries": ["SUMMARY"],
                "sentiment": {"positive": 1, "negative": 0, "neutral": 1, "failed": 0},
                "skipped": [{"msgid": "M3", "errcode": 900203}], "truncated": false,
            }),
        }
    }

    async fn run(&self, cx: &AbilityCx, input: Input) -> Result<Output, AppError> {
        let now = cx.now_secs();
        let (start, end) = messages::validate_range(input.start_time, input.end_time, now, DEFAULT_SPAN_SECS)?;
        let source = messages::source(input.chatid, input.participants, input.msg_list, MAX_MESSAGES)?;
        let max = input.max_messages.unwrap_or(5000);
        let gathered = messages::gather(cx, source, start, end, max).await?;
        let msgs = &gathered.messages;
        let mut skipped = gathered.skipped.clone();
        let (summaries, sentiment) = if msgs.is_empty() {
            (Vec::new(), Sentiment::default())
        } else {
            let by_batch = |msg_list| MsgListTaskRequest { msg_list };
            let (summary, sentiment) =
                tokio::join!(run_batched(cx, SUMMARY, msgs, by_batch), run_batched(cx, SENTIMENT, msgs, by_batch));
            let (summary, sentiment) = (summary?, sentiment?);
            skipped.extend(summary.skipped);
            let texts = summary
                .replies
                .iter()
                .filter_map(|r| r.fields.get("response_data").and_then(Value::as_str).map(str::to_owned))
                .collect();
            (texts, Sentiment::count(&sentiment.replies))
        };
        skipped.sort_by(|a, b| a.msgid.cmp(&b.msgid));
        skipped.dedup_by(|a, b| a.msgid == b.msgid);
        Ok(Output::Json(ok_with(json!({
            "message_count": msgs.len(),
            "msgids": msgs.iter().map(|m| m.msgid.as_str()).collect::<Vec<_>>(),
            "summary": summaries.join("\n"),
            "summaries": summaries,
            "sentiment": sentiment.to_json(),
            "skipped": messages::skipped_json(&skipped),
            "truncated": gathered.truncated,
        }))))
    }
}

/// Sentiment counts (sdk-model-apis.md §2: 0 none, 1 positive, 2 negative).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sentiment {
    /// `sentiment_result` 1.
    pub positive: u64,
    /// `sentiment_result` 2.
    pub negative: u64,
    /// `sentiment_result` 0.
    pub neutral: u64,
    /// Items with a non-zero errcode or no result.
    pub failed: u64,
}

impl Sentiment {
    /// Counts the `analyze_result_list` items of every reply.
    pub fn count(replies: &[TaskResult]) -> Self {
        let mut s = Self::default();
        let items =
            replies.iter().filter_map(|r| r.fields.get("analyze_result_list").and_then(Value::as_array)).flatten();
        for item in items {
            let ok = item.get("errcode").and_then(Value::as_i64).unwrap_or(0) == 0;
            match (ok, item.get("sentiment_result").and_then(Value::as_i64)) {
                (true, Some(0)) => s.neutral += 1,
                (true, Some(1)) => s.positive += 1,
                (true, Some(2)) => s.negative += 1,
                _ => s.failed += 1,
            }
        }
        s
    }

    fn to_json(self) -> Value {
        json!({ "positive": self.positive, "negative": self.negative, "neutral": self.neutral, "failed": self.failed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abilities::input::parse;

    #[test]
    fn sentiment_counts_follow_the_documented_values() {
        let replies = [serde_json::from_value(json!({"analyze_result_list":[
            {"errcode":0,"msgid":"a","sentiment_result":2},{"errcode":0,"msgid":"b","sentiment_result":1},
            {"errcode":0,"msgid":"c","sentiment_result":0},{"errcode":710601,"msgid":"d"}]}))
        .unwrap()];
        assert_eq!(Sentiment::count(&replies), Sentiment { positive: 1, negative: 1, neutral: 1, failed: 1 });
    }

    #[test]
    fn the_input_needs_exactly_one_source_and_bounded_sizes() {
        let ok: Input = parse(r#"{"chatid":"wr1","start_time":1,"end_time":2}"#, 1 << 20).unwrap();
        assert!(messages::source(ok.chatid, ok.participants, ok.msg_list, 10).is_ok());
        // Refused at parse time (so an async call is refused before its job is stored).
        assert!(parse::<Input>(r#"{"chatid":"wr1","participants":["a","b"]}"#, 1 << 20).is_err());
        assert!(parse::<Input>(r#"{"participants":["a","b","c"]}"#, 1 << 20).is_err());
        assert!(parse::<Input>(r#"{"chatid":"wr1","start_time":2,"end_time":1}"#, 1 << 20).is_err());
        assert!(parse::<Input>(r#"{"chatid":"wr1","max_messages":10001}"#, 1 << 20).is_err());
        assert!(parse::<Input>(r#"{"chatid":"wr1","extra":1}"#, 1 << 20).is_err());
    }
}
