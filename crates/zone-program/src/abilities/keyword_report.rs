//! `keyword_report`: the keyword-rule hits of one rule (or of all) over a time range, grouped by
//! rule and chat. Hits come from `get_hit_msg_list` with `need_detail` 1 (so each carries its chat
//! and time), started at the range's beginning and followed by cursor; rule names from
//! `get_rule_list`. Message content is never involved.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::input::{max_len, too_large};
use super::messages::{self, LISTING_LIMIT, MsgRef};
use super::{AbilityCx, AbilityInfo, Handler, Output, Validate, ok_with};
use crate::error::AppError;

/// The ability id.
pub const ID: &str = "keyword_report";
/// Most hits one report counts.
pub const MAX_HITS: usize = 50_000;
/// Most listing calls (rules or hits).
const MAX_CALLS: usize = 60;
/// Default range: the last 5 days (the retention window).
const DEFAULT_SPAN_SECS: i64 = 5 * 24 * 3600;

/// The ability.
pub struct KeywordReport;

/// Its input.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// Only this rule (default: every rule).
    pub rule_id: Option<String>,
    /// Range start, Unix seconds (default: 5 days before `end_time`).
    pub start_time: Option<i64>,
    /// Range end, Unix seconds (default: now).
    pub end_time: Option<i64>,
    /// A `hit_keyword` event token (≤ 128 bytes); without one the listing is rate-limited.
    pub token: Option<String>,
    /// Most hits to count (≤ 50 000, default 10 000).
    pub max_hits: Option<usize>,
}

impl Validate for Input {
    fn validate(&self) -> Result<(), AppError> {
        if let Some(rule) = &self.rule_id {
            messages::validate_id("rule_id", rule)?;
        }
        if let Some(token) = &self.token {
            max_len("token", token, 128)?;
        }
        if self.max_hits.is_some_and(|m| m == 0 || m > MAX_HITS) {
            return Err(too_large("`max_hits` must be 1 to 50000"));
        }
        messages::check_range(self.start_time, self.end_time)
    }
}

#[derive(Default)]
struct ChatHits {
    chatid: String,
    participants: Vec<String>,
    msgids: Vec<String>,
}

#[async_trait]
impl Handler for KeywordReport {
    type Input = Input;

    fn info(&self) -> AbilityInfo {
        AbilityInfo {
            id: ID.into(),
            description: "Keyword-rule hits over a time range, grouped by rule and chat.".into(),
            long_running: true,
            input_example: json!({"rule_id": "R1", "start_time": 1700000000, "end_time": 1700086400, "token": "T", "max_hits": 10000}),
            output_example: json!({
                "start_time": 1700000000, "end_time": 1700086400, "total_hits": 1,
                "rules": [{"rule_id": "R1", "name": "refund", "hits": 1,
                           "chats": [{"chatid": "wr1", "participants": ["wo1"], "hits": 1, "msgids": ["M1"]}]}],
                "truncated": false,
            }),
        }
    }

    async fn run(&self, cx: &AbilityCx, input: Input) -> Result<Output, AppError> {
        let now = cx.store.clock().now_ms() / 1000;
        let (start, end) = messages::validate_range(input.start_time, input.end_time, now, DEFAULT_SPAN_SECS)?;
        let names = rule_names(cx).await?;
        let max = input.max_hits.unwrap_or(10_000);
        // rule id → chat key → hits
        let mut by_rule: BTreeMap<String, BTreeMap<String, ChatHits>> = BTreeMap::new();
        let (mut total, mut truncated) = (0usize, false);
        let mut cursor: Option<String> = None;
        'pages: for call in 0.. {
            if call == MAX_CALLS {
                truncated = true;
                break;
            }
            let mut request = json!({ "need_detail": 1, "limit": LISTING_LIMIT });
            match &cursor {
                None => request["begin_time"] = json!(start),
                Some(c) => request["cursor"] = json!(c),
            }
            if let Some(token) = &input.token {
                request["token"] = json!(token);
            }
            let page = messages::call(cx, "get_hit_msg_list", &request).await?;
            let raw = page.get("msg_list").and_then(Value::as_array).cloned().unwrap_or_default();
            let items = messages::items_of(&page)?;
            let mut past_end = false;
            for (item, raw) in items.iter().zip(&raw) {
                past_end |= item.send_time > end;
                if item.send_time < start || item.send_time > end {
                    continue;
                }
                for rule in hit_rules(raw) {
                    if input.rule_id.as_ref().is_some_and(|r| r != &rule) {
                        continue;
                    }
                    if total == max {
                        truncated = true;
                        break 'pages;
                    }
                    total += 1;
                    let (key, chat) = chat_key(item);
                    let entry = by_rule.entry(rule).or_default().entry(key).or_insert_with(|| chat);
                    entry.msgids.push(item.msgid.clone());
                }
            }
            let has_more = page.get("has_more").is_some_and(|h| h.as_i64() == Some(1) || h.as_bool() == Some(true));
            let next = page.get("next_cursor").and_then(Value::as_str).unwrap_or_default();
            if !has_more || past_end || next.is_empty() {
                break;
            }
            cursor = Some(next.to_owned());
        }
        if let Some(rule) = &input.rule_id {
            by_rule.entry(rule.clone()).or_default();
        }
        let rules: Vec<Value> = by_rule
            .into_iter()
            .map(|(rule_id, chats)| {
                let hits: usize = chats.values().map(|c| c.msgids.len()).sum();
                let mut chats: Vec<ChatHits> = chats.into_values().collect();
                chats.sort_by(|a, b| b.msgids.len().cmp(&a.msgids.len()).then(a.chatid.cmp(&b.chatid)));
                json!({
                    "rule_id": rule_id,
                    "name": names.get(&rule_id).cloned().unwrap_or_default(),
                    "hits": hits,
                    "chats": chats.iter().map(|c| json!({
                        "chatid": c.chatid, "participants": c.participants, "hits": c.msgids.len(), "msgids": c.msgids,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        Ok(Output::Json(ok_with(json!({
            "start_time": start, "end_time": end, "total_hits": total, "rules": rules, "truncated": truncated,
        }))))
    }
}

/// The rule ids of a hit item's `hit_rule_list`.
fn hit_rules(raw: &Value) -> Vec<String> {
    raw.get("hit_rule_list")
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(|r| r.get("rule_id")?.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// The group key of a hit: its group chat id, or the sorted parties of a 1:1 chat.
fn chat_key(m: &MsgRef) -> (String, ChatHits) {
    if !m.chatid.is_empty() {
        return (m.chatid.clone(), ChatHits { chatid: m.chatid.clone(), ..ChatHits::default() });
    }
    let mut parties: Vec<String> = m.sender.iter().chain(&m.receiver_list).map(|p| p.id.clone()).collect();
    parties.sort();
    parties.dedup();
    (format!("single:{}", parties.join(",")), ChatHits { participants: parties, ..ChatHits::default() })
}

/// Rule id → name, from every page of `get_rule_list`.
async fn rule_names(cx: &AbilityCx) -> Result<BTreeMap<String, String>, AppError> {
    let mut names = BTreeMap::new();
    let mut cursor = String::new();
    for _ in 0..MAX_CALLS {
        let page = messages::call(cx, "get_rule_list", &json!({ "cursor": cursor, "limit": 100 })).await?;
        for rule in page.get("rule_list").and_then(Value::as_array).into_iter().flatten() {
            if let (Some(id), Some(name)) =
                (rule.get("rule_id").and_then(Value::as_str), rule.get("name").and_then(Value::as_str))
            {
                names.insert(id.to_owned(), name.to_owned());
            }
        }
        // `has_more` is a bool here (sdk-data-apis.md §1.2); accept 0/1 too.
        let has_more = page.get("has_more").is_some_and(|h| h.as_bool() == Some(true) || h.as_i64() == Some(1));
        cursor = page.get("next_cursor").and_then(Value::as_str).unwrap_or_default().to_owned();
        if !has_more || cursor.is_empty() {
            break;
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abilities::messages::Party;

    #[test]
    fn a_single_chat_is_keyed_by_its_sorted_parties() {
        let m = MsgRef {
            msgid: "m".into(),
            sender: Some(Party { kind: 2, id: "wm1".into() }),
            receiver_list: vec![Party { kind: 1, id: "wo1".into() }],
            chatid: String::new(),
            send_time: 0,
            service_encrypt_info: None,
        };
        let (key, chat) = chat_key(&m);
        assert_eq!(key, "single:wm1,wo1");
        assert_eq!(chat.participants, vec!["wm1", "wo1"]);
    }

    #[test]
    fn hit_rules_reads_every_rule_id() {
        let raw = json!({"hit_rule_list":[{"rule_id":"R1"},{"rule_id":"R2"},{"x":1}]});
        assert_eq!(hit_rules(&raw), vec!["R1", "R2"]);
    }
}
