//! `customer_profile`: the customer tags a customer's conversations support. It lists the
//! customer's messages (their 1:1 chats and what they said in groups), unwraps the keys, runs the
//! customer-tag model per batch of at most 1000 against the given tag groups, polls, and merges
//! the batches by majority per tag group.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::input::max_items;
use super::messages::{self, GivenMsg, Selector, Source};
use super::model::run_batched;
use super::{AbilityCx, AbilityInfo, Handler, Output, Validate, ok_with};
use crate::error::AppError;
use crate::jobs::poll::CUSTOMER_TAG;
use crate::sdk::api::{CustomerTagTaskRequest, TagGroup};

/// The ability id.
pub const ID: &str = "customer_profile";
/// Most tag groups per call.
pub const MAX_TAG_GROUPS: usize = 100;
/// Most messages considered.
pub const MAX_MESSAGES: usize = 10_000;
/// Default range: the last 5 days (the retention window).
const DEFAULT_SPAN_SECS: i64 = 5 * 24 * 3600;

/// The ability.
pub struct CustomerProfile;

/// Its input.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The customer (`wm…`).
    pub external_userid: String,
    /// The customer tag groups to match (1–100).
    pub tag_group_ids: Vec<String>,
    /// Which LLM (WeCom's default when absent).
    pub model_id: Option<String>,
    /// Range start, Unix seconds (default: 5 days before `end_time`).
    pub start_time: Option<i64>,
    /// Range end, Unix seconds (default: now).
    pub end_time: Option<i64>,
    /// The customer's messages with keys the app unwrapped, instead of listing them.
    pub msg_list: Option<Vec<GivenMsg>>,
}

impl Validate for Input {
    fn validate(&self) -> Result<(), AppError> {
        messages::validate_id("external_userid", &self.external_userid)?;
        if self.tag_group_ids.is_empty() {
            return Err(AppError::invalid("`tag_group_ids` must not be empty"));
        }
        max_items("tag_group_ids", &self.tag_group_ids, MAX_TAG_GROUPS)?;
        for g in &self.tag_group_ids {
            messages::validate_id("tag_group_ids", g)?;
        }
        if let Some(m) = &self.model_id {
            messages::validate_id("model_id", m)?;
        }
        if let Some(list) = &self.msg_list {
            messages::validate_given("msg_list", list, MAX_MESSAGES)?;
        }
        messages::check_range(self.start_time, self.end_time)
    }
}

#[async_trait]
impl Handler for CustomerProfile {
    type Input = Input;

    fn info(&self) -> AbilityInfo {
        AbilityInfo {
            id: ID.into(),
            description: "Customer tags matched from one customer's conversations.".into(),
            long_running: true,
            input_example: json!({"external_userid": "wm1", "tag_group_ids": ["G1"], "model_id": "MODEL_ID", "start_time": 1700000000,
                                   "end_time": 1700086400, "msg_list": [{"msgid": "M1", "secret_key": "K1"}]}),
            output_example: json!({
                "external_userid": "wm1", "message_count": 2,
                "tags": [{"group_id": "G1", "tag_id": "T1", "votes": 1}],
                "invalid_tag_group_ids": ["G9"], "skipped": [{"msgid": "M3", "errcode": 900203}], "truncated": false,
            }),
        }
    }

    async fn run(&self, cx: &AbilityCx, input: Input) -> Result<Output, AppError> {
        let now = cx.now_secs();
        let (start, end) = messages::validate_range(input.start_time, input.end_time, now, DEFAULT_SPAN_SECS)?;
        let source = match input.msg_list {
            Some(list) => Source::Given(list),
            None => Source::Listed(Selector::Customer(input.external_userid.clone())),
        };
        let gathered = messages::gather(cx, source, start, end, MAX_MESSAGES).await?;
        let mut skipped = gathered.skipped.clone();
        let mut votes: BTreeMap<(String, String), u64> = BTreeMap::new();
        let mut invalid: Vec<String> = Vec::new();
        if !gathered.messages.is_empty() {
            let groups: Vec<TagGroup> = input.tag_group_ids.iter().map(|g| TagGroup { group_id: g.clone() }).collect();
            let batched = run_batched(cx, CUSTOMER_TAG, &gathered.messages, |msg_list| CustomerTagTaskRequest {
                tag_group_list: groups.clone(),
                msg_list,
                model_id: input.model_id.clone(),
            })
            .await?;
            skipped.extend(batched.skipped);
            for reply in &batched.replies {
                for tag in reply.fields.get("tag_result_list").and_then(Value::as_array).into_iter().flatten() {
                    if let (Some(g), Some(t)) =
                        (tag.get("group_id").and_then(Value::as_str), tag.get("tag_id").and_then(Value::as_str))
                    {
                        *votes.entry((g.to_owned(), t.to_owned())).or_default() += 1;
                    }
                }
                for g in reply.fields.get("fail_tag_group_id_list").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(g) = g.as_str().filter(|g| !invalid.iter().any(|i| i == g)) {
                        invalid.push(g.to_owned());
                    }
                }
            }
        }
        Ok(Output::Json(ok_with(json!({
            "external_userid": input.external_userid,
            "message_count": gathered.messages.len(),
            "tags": majority(&votes),
            "invalid_tag_group_ids": invalid,
            "skipped": messages::skipped_json(&skipped),
            "truncated": gathered.truncated,
        }))))
    }
}

/// The most-voted tag of each group (ties: the smaller tag id), with its votes.
fn majority(votes: &BTreeMap<(String, String), u64>) -> Vec<Value> {
    let mut best: BTreeMap<&str, (&str, u64)> = BTreeMap::new();
    for ((group, tag), n) in votes {
        let entry = best.entry(group).or_insert((tag, *n));
        if *n > entry.1 {
            *entry = (tag, *n);
        }
    }
    best.into_iter().map(|(g, (t, n))| json!({ "group_id": g, "tag_id": t, "votes": n })).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abilities::input::parse;

    #[test]
    fn the_majority_tag_of_each_group_wins() {
        let mut votes = BTreeMap::new();
        votes.insert(("G1".to_owned(), "A".to_owned()), 1);
        votes.insert(("G1".to_owned(), "B".to_owned()), 2);
        votes.insert(("G2".to_owned(), "C".to_owned()), 1);
        assert_eq!(
            majority(&votes),
            vec![json!({"group_id":"G1","tag_id":"B","votes":2}), json!({"group_id":"G2","tag_id":"C","votes":1})]
        );
    }

    #[test]
    fn tag_groups_are_required_and_bounded() {
        assert!(parse::<Input>(r#"{"external_userid":"wm1","tag_group_ids":[]}"#, 1 << 20).is_err());
        let many = format!(r#"{{"external_userid":"wm1","tag_group_ids":{}}}"#, json!(vec!["g"; 101]));
        assert_eq!(parse::<Input>(&many, 1 << 20).unwrap_err().code(), crate::error::ErrorCode::InputTooLarge);
        assert!(parse::<Input>(r#"{"external_userid":"wm1","tag_group_ids":["G1"]}"#, 1 << 20).is_ok());
    }
}
