//! Keyword rules (sdk-data-apis.md §5): CRUD with the documented limits, `get_hit_msg_list` over the
//! hit log, and the matching of messages against rules that fills that log (for seeded messages and
//! for messages added through `/local/messages`, which then raise `hit_keyword`).

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::Shared;
use super::model::{Message, Rule, RuleHit, TokenKind};
use super::req::{ApiError, ApiResult, Req, ints, strings};
use super::sdk_msgs::{cursor_of, items, parse_cursor};
use zone_crypto::wire::InvokeMessage;

/// Behaviours (`semantics_list`) the emulator knows: 1 red packet, 2 phone number, 3 email address.
pub const SEMANTICS: [i64; 3] = [1, 2, 3];

/// `applicable_range` lists and their limits (§5.1): (key, list key, max entries, string entries?).
const RANGE_LISTS: [(&str, &str, usize, bool); 9] = [
    ("target_type", "type_list", 2, false),
    ("chat_type", "type_list", 2, false),
    ("department", "id_list", 100, false),
    ("user", "id_list", 1000, true),
    ("external_contact", "id_list", 100, true),
    ("chat", "id_list", 2000, true),
    ("exclude_mobile", "mobile_list", 100, true),
    ("exclude_email", "email_list", 100, true),
    ("exclude_bank_card", "bank_card_list", 100, true),
];

/// Checks an `applicable_range` against §5.1 and returns it as given.
fn parse_range(v: &Value) -> Result<Map<String, Value>, ApiError> {
    let range = Req::of("applicable_range", v)?;
    let obj = v.as_object().cloned().unwrap_or_default();
    for (key, list, max, textual) in RANGE_LISTS {
        let Some(inner) = range.object_opt(key)? else { continue };
        let field = format!("applicable_range.{key}.{list}");
        let Some(entries) = inner.array_opt(list)? else { continue };
        if entries.len() > max {
            return Err(ApiError::invalid(&field, &format!("at most {max} entries")));
        }
        if textual {
            strings(&field, entries, 256)?;
        } else {
            let values = ints(&field, entries)?;
            if key.ends_with("_type") && values.iter().any(|t| !(1..=2).contains(t)) {
                return Err(ApiError::invalid(&field, "entries must be 1 or 2"));
            }
        }
    }
    Ok(obj)
}

/// The editable parts of a rule, as given in `create_rule` / `update_rule`.
fn apply_fields(rule: &mut Rule, req: &Req, creating: bool) -> Result<(), ApiError> {
    if creating || req.raw("name").is_some() {
        rule.name = req.chars("name", 1, 20)?.to_owned();
    }
    if let Some(kw) = req.object_opt("keyword")? {
        if let Some(words) = kw.array_opt("word_list")? {
            if words.len() > 20 {
                return Err(ApiError::invalid("keyword.word_list", "at most 20 words"));
            }
            rule.words = strings("keyword.word_list", words, 32)?;
        }
        rule.is_case_sensitive = kw.int_in("is_case_sensitive", rule.is_case_sensitive, 0, 1)?;
        rule.match_rule = kw.int_in("match_rule", rule.match_rule, 0, 1)?;
        rule.is_trim_msg = kw.int_in("is_trim_msg", rule.is_trim_msg, 0, 1)?;
    }
    if let Some(sem) = req.object_opt("semantics")? {
        let list = ints("semantics.semantics_list", sem.array_opt("semantics_list")?.map_or(&[][..], |v| v))?;
        if list.iter().any(|s| !SEMANTICS.contains(s)) {
            return Err(ApiError::invalid("semantics.semantics_list", "known behaviours are 1, 2 and 3"));
        }
        rule.semantics = list;
    }
    if let Some(range) = req.raw("applicable_range") {
        let given = parse_range(range)?;
        let current = rule.applicable_range.as_object_mut().expect("ranges are objects");
        current.extend(given);
    }
    if rule.words.is_empty() && rule.semantics.is_empty() {
        return Err(ApiError::invalid("keyword", "give keyword.word_list or semantics.semantics_list"));
    }
    Ok(())
}

/// `create_rule` (§5.2).
pub fn create_rule(shared: &Arc<Shared>, _msg: &InvokeMessage, req: &Req) -> ApiResult {
    let now = shared.clock.now();
    let mut rule = Rule {
        rule_id: String::new(),
        name: String::new(),
        create_time: now,
        words: vec![],
        is_case_sensitive: 0,
        match_rule: 0,
        is_trim_msg: 0,
        semantics: vec![],
        applicable_range: json!({}),
    };
    apply_fields(&mut rule, req, true)?;
    let mut data = shared.data();
    rule.rule_id = data.mint("RULE");
    let rule_id = rule.rule_id.clone();
    data.rules.insert(rule_id.clone(), rule);
    Ok(json!({ "rule_id": rule_id }))
}

/// `get_rule_list` (§5.3): `has_more` is a bool here.
pub fn get_rule_list(shared: &Arc<Shared>, _msg: &InvokeMessage, req: &Req) -> ApiResult {
    // Default 100; the documents set no maximum.
    let limit = req.limit(100, i64::MAX)?;
    let salt = shared.cfg.seed ^ 0x5255_4c45;
    let offset =
        req.str_max("cursor", 128)?.map(|c| parse_cursor("cursor", c, salt)).transpose()?.unwrap_or(0) as usize;
    let data = shared.data();
    let all: Vec<&Rule> = data.rules.values().collect();
    let end = (offset + limit).min(all.len());
    let page: Vec<Value> = all
        .get(offset.min(all.len())..end)
        .unwrap_or_default()
        .iter()
        .map(|r| json!({"rule_id": r.rule_id, "name": r.name, "create_time": r.create_time}))
        .collect();
    let has_more = end < all.len();
    let next = if has_more { cursor_of(end as u64, salt) } else { String::new() };
    Ok(json!({ "rule_list": page, "has_more": has_more, "next_cursor": next }))
}

fn rule_id(req: &Req) -> Result<&str, ApiError> {
    req.str_req("rule_id", 64)
}

/// `get_rule_detail` (§5.4).
pub fn get_rule_detail(shared: &Arc<Shared>, _msg: &InvokeMessage, req: &Req) -> ApiResult {
    let data = shared.data();
    let r = data.rules.get(rule_id(req)?).ok_or_else(|| ApiError::invalid("rule_id", "no such rule"))?;
    Ok(json!({
        "name": r.name,
        "keyword": {"word_list": r.words, "is_case_sensitive": r.is_case_sensitive, "match_rule": r.match_rule,
                    "is_trim_msg": r.is_trim_msg},
        "semantics": {"semantics_list": r.semantics},
        "applicable_range": r.applicable_range,
    }))
}

/// `update_rule` (§5.5): only the given parts change; an empty range list clears that item.
pub fn update_rule(shared: &Arc<Shared>, _msg: &InvokeMessage, req: &Req) -> ApiResult {
    let mut data = shared.data();
    let id = rule_id(req)?;
    let mut rule = data.rules.get(id).cloned().ok_or_else(|| ApiError::invalid("rule_id", "no such rule"))?;
    apply_fields(&mut rule, req, false)?;
    data.rules.insert(id.to_owned(), rule);
    Ok(json!({}))
}

/// `delete_rule` (§5.6).
pub fn delete_rule(shared: &Arc<Shared>, _msg: &InvokeMessage, req: &Req) -> ApiResult {
    let mut data = shared.data();
    data.rules.remove(rule_id(req)?).ok_or_else(|| ApiError::invalid("rule_id", "no such rule"))?;
    Ok(json!({}))
}

/// `get_hit_msg_list` (§5.7): cursor ≤ 64 bytes, token ≤ 128 bytes and alive, limit ≤ 1000,
/// `need_detail` adds the `sync_msg` item as `msg_detail`.
pub fn get_hit_msg_list(shared: &Arc<Shared>, _msg: &InvokeMessage, req: &Req) -> ApiResult {
    let salt = shared.cfg.seed ^ 0x4849_5453;
    let cursor = req.str_max("cursor", 64)?.map(|c| parse_cursor("cursor", c, salt)).transpose()?;
    let token = req.str_max("token", 128)?;
    let need_detail = req.int_in("need_detail", 0, 0, 1)? == 1;
    let limit = req.limit(200, 1000)?;
    let begin_time = req.int_opt("begin_time")?;
    let now = shared.clock.now();
    let mut data = shared.data();
    if let Some(t) = token
        && !data.token_valid(t, TokenKind::HitKeyword, now)
    {
        return Err(ApiError::invalid("token", "invalid or expired (a token lives 10 minutes)"));
    }
    if token.is_none() && !data.tokenless_allowed(now, shared.cfg.tokenless_calls_per_minute) {
        return Err(ApiError::new(
            super::sdk_msgs::FREQUENCY_LIMIT,
            "api freq out of limit: calls without an event token are limited",
        ));
    }
    let from_time = begin_time.unwrap_or(i64::MIN);
    let from = cursor.unwrap_or(0);
    let mut selected = Vec::new();
    let mut has_more = false;
    let mut next = data.hits.last().map_or(1, |h| h.seq + 1).max(from);
    for hit in data.hits.iter().filter(|h| h.seq >= from) {
        let Some(m) = data.messages.get(data.index_from_seq(hit.msg_seq)).filter(|m| m.seq == hit.msg_seq) else {
            continue;
        };
        if !data.visible(m, now) || m.send_time < from_time {
            continue;
        }
        if selected.len() == limit {
            has_more = true;
            next = hit.seq;
            break;
        }
        selected.push((m.clone(), hit.rules.clone()));
    }
    drop(data);
    let messages: Vec<Message> = selected.iter().map(|(m, _)| m.clone()).collect();
    let details = if need_detail { items(shared, &messages) } else { vec![] };
    let list: Vec<Value> = selected
        .iter()
        .enumerate()
        .map(|(i, (m, rules))| {
            let mut item = json!({
                "msgid": m.msgid,
                "hit_rule_list": rules.iter().map(|r| json!({"rule_id": r.rule_id, "has_hit_keyword": r.has_hit_keyword,
                                                               "semantics_list": r.semantics})).collect::<Vec<_>>(),
            });
            if let Some(mut d) = details.get(i).cloned() {
                d.as_object_mut().expect("items are objects").remove("msgid");
                item["msg_detail"] = d;
            }
            item
        })
        .collect();
    Ok(json!({ "has_more": i32::from(has_more), "next_cursor": cursor_of(next, salt), "msg_list": list }))
}

/// The rules that `m` hits. Rules apply to customer conversations; `applicable_range.target_type`
/// (1 staff, 2 customer: who sent it) and `chat_type` (1 single, 2 group) narrow them.
pub fn match_rules<'a>(rules: impl IntoIterator<Item = &'a Rule>, m: &Message) -> Vec<RuleHit> {
    if !m.involves_customer() {
        return Vec::new();
    }
    rules.into_iter().filter_map(|r| match_rule(r, m)).collect()
}

fn match_rule(rule: &Rule, m: &Message) -> Option<RuleHit> {
    let listed = |key: &str, v: i64| {
        rule.applicable_range
            .get(key)
            .and_then(|o| o.get("type_list"))
            .and_then(Value::as_array)
            .is_none_or(|l| l.is_empty() || l.iter().any(|x| x.as_i64() == Some(v)))
    };
    let chat_type = if m.chatid.is_empty() { 1 } else { 2 };
    if !listed("target_type", i64::from(m.sender.kind)) || !listed("chat_type", chat_type) {
        return None;
    }
    let has_hit_keyword = rule.words.iter().any(|w| keyword_hit(rule, w, &m.content));
    let semantics: Vec<i64> = rule.semantics.iter().copied().filter(|s| semantic_hit(*s, m)).collect();
    (has_hit_keyword || !semantics.is_empty()).then(|| RuleHit {
        rule_id: rule.rule_id.clone(),
        has_hit_keyword,
        semantics,
    })
}

fn keyword_hit(rule: &Rule, word: &str, content: &str) -> bool {
    let fold = |s: &str| if rule.is_case_sensitive == 1 { s.to_owned() } else { s.to_lowercase() };
    let (word, text) = (fold(word), fold(content));
    match rule.match_rule {
        1 if rule.is_trim_msg == 1 => text.trim() == word,
        1 => text == word,
        _ => text.contains(&word),
    }
}

fn semantic_hit(kind: i64, m: &Message) -> bool {
    let text = &m.content;
    match kind {
        1 => text.contains("红包"),
        2 => has_phone_number(text),
        3 => text.split_whitespace().any(|w| w.split_once('@').is_some_and(|(u, d)| !u.is_empty() && d.contains('.'))),
        _ => false,
    }
}

/// An 11-digit run starting with 1 (a mainland mobile number).
fn has_phone_number(text: &str) -> bool {
    let digits: Vec<char> = text.chars().collect();
    digits.split(|c| !c.is_ascii_digit()).any(|run| run.len() == 11 && run[0] == '1')
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::Party;

    fn msg(content: &str, sender_kind: u8) -> Message {
        Message {
            seq: 1,
            msgid: "m".into(),
            sender: Party { kind: sender_kind, id: "a".into() },
            receivers: vec![Party { kind: 3 - sender_kind, id: "b".into() }],
            chatid: String::new(),
            send_time: 0,
            msgtype: 1,
            content: content.into(),
            secret_key: "k".into(),
        }
    }

    fn rule(words: &[&str], semantics: &[i64], range: Value) -> Rule {
        Rule {
            rule_id: "r".into(),
            name: "n".into(),
            create_time: 0,
            words: words.iter().map(|w| w.to_string()).collect(),
            is_case_sensitive: 0,
            match_rule: 0,
            is_trim_msg: 0,
            semantics: semantics.to_vec(),
            applicable_range: range,
        }
    }

    #[test]
    fn keywords_and_behaviours_hit_within_the_applicable_range() {
        let r = rule(&["退款", "VIP"], &[2, 3], json!({"target_type": {"type_list": [2]}}));
        let hit = match_rules([&r], &msg("我要退款，电话13800138000", 2));
        assert_eq!(hit, vec![RuleHit { rule_id: "r".into(), has_hit_keyword: true, semantics: vec![2] }]);
        assert!(match_rules([&r], &msg("我要退款", 1)).is_empty(), "staff senders are outside target_type");
        assert!(!match_rules([&r], &msg("vip客户", 2)).is_empty(), "case-insensitive by default");
        assert_eq!(match_rules([&r], &msg("邮箱 a@b.com", 2))[0].semantics, vec![3]);
        assert!(match_rules([&r], &msg("号码1380013800", 2)).is_empty(), "ten digits are no phone number");
    }
}
