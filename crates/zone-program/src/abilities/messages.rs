//! What the workflows share: selecting a conversation's messages from the `sync_msg` listing
//! (following `next_cursor` and `page_id_list`), unwrapping their keys with the keyring, and
//! cutting them into model batches of at most 1000 (sdk-model-apis.md §1.1). Listings carry ids,
//! parties, times and wrapped keys only; no content is ever seen here.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::{Value, json};

use super::AbilityCx;
use super::input::{max_len, non_empty};
pub use super::keys::{
    GivenMsg, Skipped, Unwrapped, failures, given, model_msg_list, skipped_json, unwrap_keys, validate_given,
};
use crate::error::AppError;
use crate::sdk::{SdkError, require_ok};
use crate::store::Coverage;

/// Most messages in one model task.
pub const MODEL_BATCH: usize = 1000;
/// Most messages a listing returns per call.
pub const LISTING_LIMIT: u32 = 1000;
/// Most listing calls one collection makes (50 000 messages scanned).
const MAX_LISTING_CALLS: usize = 50;
/// Longest id accepted in an input (chat, user, rule, knowledge-set ids).
pub const MAX_ID_BYTES: usize = 128;
/// Longest time range a workflow scans: the zone keeps 5 days; 31 days allows clock slack.
const MAX_RANGE_SECS: i64 = 31 * 24 * 3600;

/// A party of a message (`{type, id}`, sdk-data-apis.md §1.3).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Party {
    /// 1 staff, 2 external, 3 robot.
    #[serde(rename = "type", default)]
    pub kind: i64,
    /// The id.
    #[serde(default)]
    pub id: String,
}

/// `service_encrypt_info` of a listed message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WrappedKey {
    /// The RSA-wrapped message key, Base64.
    pub encrypted_secret_key: String,
    /// Which public key wrapped it.
    pub public_key_ver: i64,
}

/// A message reference from a listing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MsgRef {
    /// Its id.
    pub msgid: String,
    /// The sender.
    #[serde(default)]
    pub sender: Option<Party>,
    /// The receivers.
    #[serde(default)]
    pub receiver_list: Vec<Party>,
    /// The group chat id, empty for 1:1 chats.
    #[serde(default)]
    pub chatid: String,
    /// Unix seconds.
    #[serde(default)]
    pub send_time: i64,
    /// The wrapped key.
    #[serde(default)]
    pub service_encrypt_info: Option<WrappedKey>,
}

/// Which conversation a workflow is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// A group chat.
    Group(String),
    /// The 1:1 chat between two parties.
    Single(String, String),
    /// Every chat with this external contact.
    Customer(String),
}

/// Checks an id field.
pub fn validate_id(field: &str, id: &str) -> Result<(), AppError> {
    non_empty(field, id)?;
    max_len(field, id, MAX_ID_BYTES)
}

/// Checks a time range, returning it with defaults applied (`end` = now, `start` = end − `default_span`).
pub fn validate_range(
    start: Option<i64>,
    end: Option<i64>,
    now: i64,
    default_span: i64,
) -> Result<(i64, i64), AppError> {
    let end = end.unwrap_or(now);
    let start = start.unwrap_or(end - default_span);
    if start < 0 || start >= end {
        return Err(AppError::invalid("`start_time` must be before `end_time`"));
    }
    if end - start > MAX_RANGE_SECS {
        return Err(AppError::invalid("the time range is longer than 31 days"));
    }
    Ok((start, end))
}

impl Selector {
    /// Whether `m` belongs to the selected conversation.
    pub fn matches(&self, m: &MsgRef) -> bool {
        let parties = || m.sender.iter().chain(m.receiver_list.iter()).map(|p| p.id.as_str());
        match self {
            Self::Group(chatid) => &m.chatid == chatid,
            Self::Single(a, b) => {
                m.chatid.is_empty() && {
                    let set: HashSet<&str> = parties().collect();
                    set.len() == 2 && set.contains(a.as_str()) && set.contains(b.as_str())
                }
            }
            // The customer's 1:1 chats, and what the customer said in groups: the tag model
            // expects one customer's messages (sdk-model-apis.md §4).
            Self::Customer(id) => {
                m.sender.as_ref().is_some_and(|s| &s.id == id) || (m.chatid.is_empty() && parties().any(|p| p == id))
            }
        }
    }
}

/// Messages of a conversation in a time range.
#[derive(Debug, Default)]
pub struct Collected {
    /// In listing order, without duplicate ids.
    pub messages: Vec<MsgRef>,
    /// True when a bound stopped the scan before the range was covered.
    pub truncated: bool,
}

/// Collects the messages of `selector` sent in `[start, end]`, at most `max`, from the message
/// index ([`crate::store::Coverage`]): the event-driven pulls (which carry event tokens) fill it.
/// Only the part of the range the index does not cover is listed with `sync_msg` from
/// `begin_time` (sdk-data-apis.md §3.1; following `next_cursor` and `page_id_list`), each call
/// through the corp's [`TokenlessBudget`](super::tokenless::TokenlessBudget); what such a listing
/// finds is indexed too. A range ending within `messages.index_freshness_secs` of the covered end
/// counts as covered: newer messages come with their own event.
pub async fn collect(
    cx: &AbilityCx,
    selector: &Selector,
    start: i64,
    end: i64,
    max: usize,
) -> Result<Collected, AppError> {
    let corp = cx.call().corp_id.as_str();
    let now = cx.store.clock().now_ms() / 1000;
    let coverage = cx.store.index_coverage(corp).await?;
    let fresh_until =
        |c: &Coverage| if c.until >= now - cx.tokenless.index_freshness_secs { now.max(end) } else { c.until };
    let gap = match coverage {
        Some(c) if c.from <= start && end <= fresh_until(&c) => None,
        Some(c) if c.from <= start && c.until >= start => Some(c.until + 1),
        _ => Some(start),
    };
    let mut truncated = false;
    if let Some(from) = gap {
        truncated = list_into_index(cx, from, end, now).await?;
    }
    let items = cx.store.indexed_messages(corp, start, end).await?;
    let mut out = Collected { messages: Vec::new(), truncated };
    let mut seen = HashSet::new();
    for m in items_of(&json!({ "msg_list": items }))? {
        if !selector.matches(&m) || !seen.insert(m.msgid.clone()) {
            continue;
        }
        if out.messages.len() == max {
            out.truncated = true;
            break;
        }
        out.messages.push(m);
    }
    Ok(out)
}

/// Lists every message from `begin_time = from` until past `end` (or the end of the listing)
/// without an event token, each call through the corp's budget, and indexes what it finds; when
/// the listing completed, the index covers `[from, end]` (or up to now). Returns whether a bound
/// stopped it first.
async fn list_into_index(cx: &AbilityCx, from: i64, end: i64, now: i64) -> Result<bool, AppError> {
    let corp = cx.call().corp_id.as_str();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_LISTING_CALLS {
        let request = match &cursor {
            None => json!({ "begin_time": from, "limit": LISTING_LIMIT, "mode": 2 }),
            Some(c) => json!({ "cursor": c, "limit": LISTING_LIMIT, "mode": 2 }),
        };
        let page = tokenless_call(cx, "sync_msg", &request).await?;
        let mut items = raw_items(&page)?;
        for page_id in page_ids(&page) {
            let listed = tokenless_call(cx, "get_msg_list_by_page_id", &json!({ "page_id": page_id })).await?;
            items.extend(raw_items(&listed)?);
        }
        cx.store.index_messages(corp, &items).await?;
        let past_end = items.iter().any(|m| m.get("send_time").and_then(Value::as_i64).is_some_and(|t| t > end));
        let has_more = page.get("has_more").is_some_and(|h| h.as_i64() == Some(1) || h.as_bool() == Some(true));
        let next = page.get("next_cursor").and_then(Value::as_str).unwrap_or_default();
        if !has_more || next.is_empty() || past_end {
            let until = if past_end { end } else { now.max(end) };
            cx.store.extend_index_coverage(corp, Coverage { from, until }).await?;
            return Ok(false);
        }
        cursor = Some(next.to_owned());
    }
    Ok(true)
}

/// An SDK call made without an event token: it first takes one call of the corp's budget (waiting
/// for it within the call's deadline, else 900106).
async fn tokenless_call(cx: &AbilityCx, api: &str, request: &Value) -> Result<Value, AppError> {
    if let Err(spent) = cx.tokenless.take(&cx.call().corp_id, cx.deadline()).await {
        tracing::warn!(api, retry_after_ms = spent.retry_after.as_millis() as u64, "tokenless budget spent");
        return Err(AppError::BudgetSpent { retry_after_ms: spent.retry_after.as_millis().max(1) as u64 });
    }
    call(cx, api, request).await
}

/// The `msg_list` entries of a listing reply, as they are (items under `msg_detail` lifted).
fn raw_items(reply: &Value) -> Result<Vec<Value>, AppError> {
    let Some(list) = reply.get("msg_list") else { return Ok(Vec::new()) };
    let list = list.as_array().ok_or(SdkError::BadResponse)?;
    Ok(list
        .iter()
        .map(|item| {
            let mut item = item.clone();
            if let (Some(Value::Object(detail)), Some(obj)) = (item.get("msg_detail").cloned(), item.as_object_mut()) {
                for (k, v) in detail {
                    obj.entry(k).or_insert(v);
                }
            }
            item
        })
        .collect())
}

/// Calls an SDK API and requires `errcode` 0.
pub async fn call(cx: &AbilityCx, api: &str, request: &Value) -> Result<Value, AppError> {
    let text = cx.sdk().invoke(api, &request.to_string()).await?;
    Ok(require_ok(api, &text)?)
}

/// The `msg_list` items of a listing reply (an item under `msg_detail` is lifted, as in
/// `get_hit_msg_list`).
pub fn items_of(reply: &Value) -> Result<Vec<MsgRef>, AppError> {
    let Some(list) = reply.get("msg_list") else { return Ok(Vec::new()) };
    msg_refs(list.as_array().ok_or(SdkError::BadResponse)?)
}

/// The message references of a typed page's `msg_list` ([`crate::sdk::api::MsgPage`]), read as
/// [`items_of`] reads them.
pub fn msg_refs(list: &[Value]) -> Result<Vec<MsgRef>, AppError> {
    list.iter()
        .map(|item| {
            let mut item = item.clone();
            if let Some(Value::Object(detail)) = item.get("msg_detail").cloned() {
                let obj = item.as_object_mut().ok_or(SdkError::BadResponse)?;
                for (k, v) in detail {
                    obj.entry(k).or_insert(v);
                }
            }
            serde_json::from_value::<MsgRef>(item).map_err(|_| AppError::from(SdkError::BadResponse))
        })
        .collect()
}

/// The entries of `page_id_list`, as strings or `{page_id}` objects (both shapes are accepted,
/// sdk-data-apis.md §3.1).
pub fn page_ids(reply: &Value) -> Vec<String> {
    reply
        .get("page_id_list")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|p| p.as_str().or_else(|| p.get("page_id").and_then(Value::as_str)))
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Where a workflow's messages come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Listed with `sync_msg` and unwrapped with the keyring.
    Listed(Selector),
    /// Given by the app with keys it unwrapped.
    Given(Vec<GivenMsg>),
}

/// Picks the source from the usual input fields: exactly one of `chatid`, `participants` (two
/// ids) and `msg_list`.
pub fn source(
    chatid: Option<String>,
    participants: Option<Vec<String>>,
    msg_list: Option<Vec<GivenMsg>>,
    max_given: usize,
) -> Result<Source, AppError> {
    check_source(chatid.as_deref(), participants.as_deref(), msg_list.as_deref(), max_given)?;
    match (chatid, participants, msg_list) {
        (Some(chatid), None, None) => Ok(Source::Listed(Selector::Group(chatid))),
        (None, Some(p), None) => {
            let [a, b] = <[String; 2]>::try_from(p).expect("checked: exactly two participants");
            Ok(Source::Listed(Selector::Single(a, b)))
        }
        (None, None, Some(list)) => Ok(Source::Given(list)),
        _ => unreachable!("checked: exactly one source"),
    }
}

/// The checks of [`source`] without taking the fields, for `Validate` (an async call is refused
/// before its job is stored, not when the job runs).
pub fn check_source(
    chatid: Option<&str>,
    participants: Option<&[String]>,
    msg_list: Option<&[GivenMsg]>,
    max_given: usize,
) -> Result<(), AppError> {
    match (chatid, participants, msg_list) {
        (Some(chatid), None, None) => validate_id("chatid", chatid),
        (None, Some(p), None) => {
            let [a, b] = p else {
                return Err(AppError::invalid("`participants` must hold exactly two ids"));
            };
            validate_id("participants", a)?;
            validate_id("participants", b)?;
            if a == b {
                return Err(AppError::invalid("`participants` must be two different ids"));
            }
            Ok(())
        }
        (None, None, Some(list)) => validate_given("msg_list", list, max_given),
        _ => Err(AppError::invalid("give exactly one of `chatid`, `participants` and `msg_list`")),
    }
}

/// The clock-free part of [`validate_range`], for `Validate`: given times are not negative, and
/// when both are given, the start is before the end and the span at most 31 days.
pub fn check_range(start: Option<i64>, end: Option<i64>) -> Result<(), AppError> {
    match (start, end) {
        (Some(start), Some(end)) => validate_range(Some(start), Some(end), end, 0).map(|_| ()),
        (Some(t), None) | (None, Some(t)) if t < 0 => Err(AppError::invalid("`start_time` must be before `end_time`")),
        _ => Ok(()),
    }
}

/// Messages ready for a model.
pub struct Gathered {
    /// With keys.
    pub messages: Vec<Unwrapped>,
    /// Left out, with their codes.
    pub skipped: Vec<Skipped>,
    /// True when a bound cut the listing short.
    pub truncated: bool,
}

/// Lists (or takes) and unwraps the messages of `source` in `[start, end]`, at most `max`.
pub async fn gather(cx: &AbilityCx, source: Source, start: i64, end: i64, max: usize) -> Result<Gathered, AppError> {
    match source {
        Source::Given(list) => Ok(Gathered { messages: given(list), skipped: Vec::new(), truncated: false }),
        Source::Listed(selector) => {
            let collected = collect(cx, &selector, start, end, max).await?;
            let (messages, skipped) = unwrap_keys(cx.keyring(), &cx.call().corp_id, collected.messages).await?;
            Ok(Gathered { messages, skipped, truncated: collected.truncated })
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn item(msgid: &str, chatid: &str, from: &str, to: &[&str], t: i64) -> MsgRef {
        MsgRef {
            msgid: msgid.into(),
            sender: Some(Party { kind: 1, id: from.into() }),
            receiver_list: to.iter().map(|id| Party { kind: 2, id: (*id).into() }).collect(),
            chatid: chatid.into(),
            send_time: t,
            service_encrypt_info: None,
        }
    }

    #[test]
    fn selectors_match_their_conversations_only() {
        let group = item("1", "wr1", "wo1", &["wm1", "wo2"], 0);
        let single = item("2", "", "wm1", &["wo1"], 0);
        assert!(Selector::Group("wr1".into()).matches(&group) && !Selector::Group("wr1".into()).matches(&single));
        assert!(Selector::Single("wo1".into(), "wm1".into()).matches(&single));
        assert!(!Selector::Single("wo1".into(), "wm1".into()).matches(&group));
        assert!(!Selector::Single("wo1".into(), "wm2".into()).matches(&single));
        let customer = Selector::Customer("wm1".into());
        assert!(customer.matches(&single), "a 1:1 chat with the customer");
        assert!(!customer.matches(&group), "others' messages in a group are not the customer's");
        assert!(customer.matches(&item("3", "wr1", "wm1", &["wo1"], 0)), "the customer's own group message");
        assert!(!Selector::Customer("wm9".into()).matches(&single));
    }

    #[test]
    fn listing_items_are_read_flat_or_from_msg_detail() {
        let reply = json!({"msg_list":[
            {"msgid":"a","chatid":"wr1","send_time":5,"sender":{"type":1,"id":"wo1"},
             "service_encrypt_info":{"encrypted_secret_key":"K","public_key_ver":2}},
            {"msgid":"b","msg_detail":{"chatid":"wr2","send_time":6},"hit_rule_list":[]}]});
        let items = items_of(&reply).unwrap();
        assert_eq!(items[0].service_encrypt_info.as_ref().unwrap().public_key_ver, 2);
        assert_eq!((items[1].chatid.as_str(), items[1].send_time), ("wr2", 6));
        assert!(items_of(&json!({"msg_list":{}})).is_err());
        assert!(items_of(&json!({})).unwrap().is_empty());
    }

    #[test]
    fn page_ids_are_read_as_strings_or_objects() {
        let reply = json!({"page_id_list":["P1",{"page_id":"P2"},{"x":1},""]});
        assert_eq!(page_ids(&reply), vec!["P1", "P2"]);
    }

    #[test]
    fn ranges_default_to_a_span_ending_now_and_are_bounded() {
        assert_eq!(validate_range(None, None, 1000, 100).unwrap(), (900, 1000));
        assert!(validate_range(Some(10), Some(10), 0, 0).is_err());
        assert!(validate_range(Some(0), Some(MAX_RANGE_SECS + 1), 0, 0).is_err());
    }

    #[test]
    fn the_clock_free_checks_refuse_what_the_run_would_refuse() {
        let two = ["a".to_owned(), "b".to_owned()];
        assert!(check_source(Some("wr1"), None, None, 10).is_ok());
        assert!(check_source(None, Some(&two), None, 10).is_ok());
        assert!(check_source(Some("wr1"), Some(&two), None, 10).is_err());
        assert!(check_source(None, Some(&two[..1]), None, 10).is_err());
        assert!(check_source(Some(&"w".repeat(MAX_ID_BYTES + 1)), None, None, 10).is_err());
        assert!(check_source(None, None, None, 10).is_err());
        assert!(check_range(None, None).is_ok() && check_range(Some(1), Some(2)).is_ok());
        assert!(check_range(Some(2), Some(1)).is_err());
        assert!(check_range(Some(0), Some(MAX_RANGE_SECS + 1)).is_err());
        assert!(check_range(Some(-1), None).is_err());
    }

    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases()))]

        #[test]
        fn reading_arbitrary_listing_json_never_panics(text in "\\PC{0,300}") {
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                let _ = items_of(&v);
                let _ = page_ids(&v);
            }
        }
    }
}
