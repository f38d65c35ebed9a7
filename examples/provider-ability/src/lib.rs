//! A provider's own analysis inside the zone, on the zone-program framework:
//! - [`RiskAlert`], the `risk_alert` ability: lists one chat's messages, runs the sentiment model
//!   over them and reads the keyword-rule hits, all inside the zone, and answers only a
//!   desensitised result: counts, message ids and rule ids, never a word of content;
//! - [`HitSummary`], the `hit_keyword` event handler: pulls the new hits, stores a summary (counts
//!   and ids) under a fresh notify_id and notifies the app (`notify_scene` 2).

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zone_program::abilities::messages::{self, Selector, Source};
use zone_program::abilities::model::run_batched;
use zone_program::events::FollowUp;
use zone_program::jobs::poll::SENTIMENT;
use zone_program::sdk::api::{HitMsgListRequest, MsgListTaskRequest};
use zone_program::{AbilityCx, AbilityInfo, AppError, Event, EventCx, EventHandler, EventStep, Handler, Output};
use zone_program::{Validate, ok_with};

/// Most messages one alert looks at.
const MAX_MESSAGES: usize = 5000;
/// Most hit pages one alert or one event reads.
const MAX_PAGES: u32 = 10;
/// Where [`HitSummary`] keeps its place in the corp's hit list (its own cursor, not the stock one).
const HIT_CURSOR: &str = "provider.risk_alert.hits";

/// The `risk_alert` ability.
pub struct RiskAlert;

/// Its input: the two parties of a 1:1 chat, or a group chat; a time range (default: the last day).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskInput {
    /// A group chat id.
    pub chatid: Option<String>,
    /// The two parties of a 1:1 chat.
    pub participants: Option<Vec<String>>,
    /// Range start, Unix seconds.
    pub start_time: Option<i64>,
    /// Range end, Unix seconds.
    pub end_time: Option<i64>,
}

impl Validate for RiskInput {
    fn validate(&self) -> Result<(), AppError> {
        messages::check_source(self.chatid.as_deref(), self.participants.as_deref(), None, 0)?;
        messages::check_range(self.start_time, self.end_time)
    }
}

#[async_trait]
impl Handler for RiskAlert {
    type Input = RiskInput;

    fn info(&self) -> AbilityInfo {
        AbilityInfo {
            id: "risk_alert".into(),
            description: "Risk alert over one chat: negative messages and keyword-rule hits, as counts and ids.".into(),
            long_running: true,
            input_example: json!({"chatid": "wr1", "participants": ["wo1", "wm1"], "start_time": 1700000000, "end_time": 1700086400}),
            output_example: json!({
                "risk": "high", "message_count": 2,
                "negative": {"count": 1, "msgids": ["M1"]},
                "keyword_hits": {"count": 1, "msgids": ["M1"], "rule_ids": ["R1"]},
                "skipped": 0,
            }),
        }
    }

    async fn run(&self, cx: &AbilityCx, input: RiskInput) -> Result<Output, AppError> {
        let (start, end) = messages::validate_range(input.start_time, input.end_time, cx.now_secs(), 24 * 3600)?;
        let selector = match messages::source(input.chatid, input.participants, None, 0)? {
            Source::Listed(selector) => selector,
            Source::Given(_) => unreachable!("no msg_list input"),
        };
        // Listing, key unwrapping and the model run inside the zone; only ids and counts leave it.
        let gathered = messages::gather(cx, Source::Listed(selector.clone()), start, end, MAX_MESSAGES).await?;
        let in_chat: BTreeSet<&str> = gathered.messages.iter().map(|m| m.msgid.as_str()).collect();
        let mut negative = BTreeSet::new();
        if !gathered.messages.is_empty() {
            let batches =
                run_batched(cx, SENTIMENT, &gathered.messages, |msg_list| MsgListTaskRequest { msg_list }).await?;
            for item in batches.replies.iter().filter_map(|r| r.fields.get("analyze_result_list")?.as_array()).flatten() {
                if item["sentiment_result"] == 2 && item["errcode"].as_i64().unwrap_or(0) == 0 {
                    negative.extend(item["msgid"].as_str().map(str::to_owned));
                }
            }
        }
        let hits = chat_hits(cx, &selector, start, end).await?;
        let hit_ids: BTreeSet<&str> = hits.keys().map(String::as_str).filter(|id| in_chat.contains(id)).collect();
        let rule_ids: BTreeSet<&str> = hits
            .iter()
            .filter(|(id, _)| hit_ids.contains(id.as_str()))
            .flat_map(|(_, rules)| rules.iter().map(String::as_str))
            .collect();
        let risk = match (negative.len(), hit_ids.len()) {
            (0, 0) => "low",
            (_, 0) | (0, _) => "medium",
            _ => "high",
        };
        Ok(Output::Json(ok_with(json!({
            "risk": risk,
            "message_count": gathered.messages.len(),
            "negative": {"count": negative.len(), "msgids": negative},
            "keyword_hits": {"count": hit_ids.len(), "msgids": hit_ids, "rule_ids": rule_ids},
            "skipped": gathered.skipped.len(),
        }))))
    }
}

/// The keyword-rule hits of the chat in `[start, end]`: msgid → rule ids (typed SDK client).
async fn chat_hits(
    cx: &AbilityCx,
    selector: &Selector,
    start: i64,
    end: i64,
) -> Result<BTreeMap<String, Vec<String>>, AppError> {
    let mut out = BTreeMap::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let request = HitMsgListRequest {
            begin_time: cursor.is_none().then_some(start),
            cursor: cursor.clone(),
            need_detail: Some(1),
            limit: Some(1000),
            token: None,
        };
        let page = cx.sdk().get_hit_msg_list(request).await?;
        for (item, raw) in messages::msg_refs(&page.msg_list)?.iter().zip(&page.msg_list) {
            if (start..=end).contains(&item.send_time) && selector.matches(item) {
                out.insert(item.msgid.clone(), rule_ids(raw));
            }
        }
        if !page.has_more || page.next_cursor.is_empty() {
            break;
        }
        cursor = Some(page.next_cursor);
    }
    Ok(out)
}

/// The `rule_id`s of a hit item's `hit_rule_list`.
fn rule_ids(item: &Value) -> Vec<String> {
    item["hit_rule_list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["rule_id"].as_str().map(str::to_owned))
        .collect()
}

/// The `hit_keyword` event handler.
pub struct HitSummary;

/// What a run keeps for the next one (the job may run again after a failure or a restart).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Pulled {
    msgids: Vec<String>,
    rules: BTreeMap<String, u64>,
    cursor: Option<String>,
    pages: u32,
    done: bool,
}

#[async_trait]
impl EventHandler for HitSummary {
    async fn handle(&self, cx: &EventCx, event: &Event) -> EventStep {
        match summarise(cx, event).await {
            Ok(()) => EventStep::Done,
            Err(e) if cx.last_try() => {
                tracing::error!(errcode = e.code().code(), "hit summary failed; giving up");
                EventStep::Failed
            }
            Err(e) => {
                tracing::warn!(errcode = e.code().code(), "hit summary failed; will retry");
                EventStep::Retry
            }
        }
    }
}

async fn summarise(cx: &EventCx, event: &Event) -> Result<(), AppError> {
    const SCENE: u8 = 2;
    if let Some(stored) = cx.stored_notify_id() {
        // An earlier run stored the summary; only the notification is left.
        return cx.notify_app(&stored, SCENE).await;
    }
    {
        let token = match &event.follow_up {
            FollowUp::HitMsgList { token } => token.clone(),
            _ => None,
        };
        let mut p: Pulled = cx.progress().unwrap_or_default();
        if p.pages == 0 && p.cursor.is_none() {
            p.cursor = cx.cursor(HIT_CURSOR).await?;
        }
        while !p.done && p.pages < MAX_PAGES {
            let request = HitMsgListRequest {
                cursor: p.cursor.clone(),
                token: token.clone(),
                limit: Some(1000),
                ..Default::default()
            };
            let page = cx.sdk().get_hit_msg_list(request).await?;
            for item in &page.msg_list {
                p.msgids.extend(item["msgid"].as_str().map(str::to_owned));
                for rule in rule_ids(item) {
                    *p.rules.entry(rule).or_default() += 1;
                }
            }
            p.pages += 1;
            p.done = !page.has_more || page.next_cursor.is_empty();
            if !page.next_cursor.is_empty() {
                p.cursor = Some(page.next_cursor.clone());
            }
            let moved = (!page.next_cursor.is_empty()).then_some((HIT_CURSOR, page.next_cursor.as_str()));
            cx.checkpoint(&p, moved).await?;
        }
        let summary = json!({
            "errcode": 0, "errmsg": "ok", "event_type": "hit_keyword", "notify_scene": SCENE,
            "hit_count": p.msgids.len(), "msgids": p.msgids,
            "rules": p.rules.iter().map(|(rule_id, hits)| json!({"rule_id": rule_id, "hits": hits})).collect::<Vec<_>>(),
            "has_more": i32::from(!p.done),
        });
        cx.store_and_notify(&summary, SCENE).await?;
    }
    Ok(())
}
