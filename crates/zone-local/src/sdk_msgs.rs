//! Chat records and their metadata (sdk-data-apis.md §3): `sync_msg` (cursor and token paging, modes
//! 0/1/2, limit ≤ 1000, the 5-day window, cursor ≤ 128 bytes), `get_msg_list_by_page_id`,
//! `get_group_chat` (301052 for an expired archive), consent status, and the hide-sensitive-info
//! config. Listed messages carry ids, parties, times, types and `service_encrypt_info`, never content.

use std::sync::Arc;

use serde_json::{Value, json};

use super::Shared;
use super::model::{Message, RETENTION_SECS, TokenKind, ZoneData};
use super::req::{ApiError, ApiResult, Req};
use super::seed::splitmix;
use zone_crypto::wire::InvokeMessage;

/// `get_group_chat`: 会话存档已过期 (archive expired).
pub const ARCHIVE_EXPIRED: i64 = 301_052;
/// WeCom global code 45009 (API call frequency over the limit): a listing call without an event
/// token beyond `local_zone.tokenless_calls_per_minute` (sdk-data-apis.md §1.4 documents the limit,
/// not its figure or code).
pub const FREQUENCY_LIMIT: i64 = 45_009;

/// An opaque cursor for "the next message at or after `seq`": `C<seq hex>G<check hex>`.
pub fn cursor_of(seq: u64, salt: u64) -> String {
    format!("C{seq:x}G{:x}", splitmix(seq ^ salt) & 0xffff_ffff)
}

/// Parses a cursor minted by [`cursor_of`] with the same salt.
pub fn parse_cursor(field: &str, cursor: &str, salt: u64) -> Result<u64, ApiError> {
    let bad = || ApiError::invalid(field, "not a cursor this API returned");
    let rest = cursor.strip_prefix('C').ok_or_else(bad)?;
    let (seq, check) = rest.split_once('G').ok_or_else(bad)?;
    let seq = u64::from_str_radix(seq, 16).map_err(|_| bad())?;
    if cursor_of(seq, salt) != cursor || check.is_empty() {
        return Err(bad());
    }
    Ok(seq)
}

/// The JSON of listed messages (`sync_msg` items), wrapping each secret key with the current key.
pub fn items(shared: &Shared, messages: &[Message]) -> Vec<Value> {
    let mut keys = shared.keys();
    messages
        .iter()
        .map(|m| {
            let (encrypted_secret_key, ver) = keys.wrap(&m.msgid, &m.secret_key);
            json!({
                "msgid": m.msgid,
                "sender": m.sender.to_json(),
                "receiver_list": m.receivers.iter().map(|p| p.to_json()).collect::<Vec<_>>(),
                "chatid": m.chatid,
                "send_time": m.send_time,
                "msgtype": m.msgtype,
                "service_encrypt_info": {"encrypted_secret_key": encrypted_secret_key, "public_key_ver": ver},
            })
        })
        .collect()
}

/// Where a listing starts: the cursor's seq, else the first message at or after `begin_time` (within
/// the window), else the start of the window.
fn start_seq(data: &ZoneData, cursor: Option<u64>, begin_time: Option<i64>, now: i64) -> u64 {
    if let Some(seq) = cursor {
        return seq;
    }
    let from = begin_time.unwrap_or(i64::MIN).max(now - RETENTION_SECS);
    data.messages
        .iter()
        .find(|m| m.send_time >= from)
        .map_or_else(|| data.messages.last().map_or(1, |m| m.seq + 1), |m| m.seq)
}

/// `sync_msg` (sdk-data-apis.md §3.1).
pub fn sync_msg(shared: &Arc<Shared>, _msg: &InvokeMessage, req: &Req) -> ApiResult {
    let cursor = req.str_max("cursor", 128)?;
    let token = req.str_max("token", 128)?;
    let limit = req.limit(200, 1000)?;
    let mode = req.int_in("mode", 0, 0, 2)?;
    let begin_time = req.int_opt("begin_time")?;
    let salt = shared.cfg.seed;
    let cursor = cursor.map(|c| parse_cursor("cursor", c, salt)).transpose()?;
    let now = shared.clock.now();
    let mut data = shared.data();
    if let Some(t) = token
        && !data.token_valid(t, TokenKind::NewMessage, now)
    {
        return Err(ApiError::invalid("token", "invalid or expired (a token lives 10 minutes)"));
    }
    if token.is_none() && !data.tokenless_allowed(now, shared.cfg.tokenless_calls_per_minute) {
        return Err(ApiError::new(FREQUENCY_LIMIT, "api freq out of limit: calls without an event token are limited"));
    }
    let from = start_seq(&data, cursor, begin_time, now);
    let end = data.messages.last().map_or(1, |m| m.seq + 1);
    let idx = data.index_from_seq(from);
    // The seqs of the visible messages from `from` on, nothing copied: a plain listing (mode 0)
    // needs one more than a page to know `has_more`; paging (modes 1 and 2) needs them all.
    let wanted = if mode == 0 { limit + 1 } else { usize::MAX };
    let visible: Vec<u64> =
        data.messages[idx..].iter().filter(|m| data.visible(m, now)).map(|m| m.seq).take(wanted).collect();
    let paged = mode == 1 || (mode == 2 && visible.len() > limit);
    if paged {
        let mut page_ids = Vec::new();
        for chunk in visible.chunks(limit) {
            let id = data.mint("PAGE");
            data.pages.insert(id.clone(), chunk.to_vec());
            page_ids.push(Value::String(id));
        }
        drop(data);
        return Ok(json!({ "has_more": 0, "next_cursor": cursor_of(end, salt), "page_id_list": page_ids }));
    }
    let seqs = &visible[..visible.len().min(limit)];
    // Only the page's messages are copied out, so the lock is held for a page, not the window.
    let page: Vec<Message> = seqs.iter().map(|s| data.messages[data.index_from_seq(*s)].clone()).collect();
    drop(data);
    let has_more = visible.len() > limit;
    let next = if has_more { seqs.last().map_or(end, |s| s + 1) } else { end.max(from) };
    Ok(
        json!({ "has_more": i32::from(has_more), "next_cursor": cursor_of(next, salt), "msg_list": items(shared, &page) }),
    )
}

/// `get_msg_list_by_page_id` (sdk-data-apis.md §3.2).
pub fn get_msg_list_by_page_id(shared: &Arc<Shared>, _msg: &InvokeMessage, req: &Req) -> ApiResult {
    let page_id = req.str_req("page_id", 128)?;
    let now = shared.clock.now();
    let data = shared.data();
    let seqs = data.pages.get(page_id).ok_or_else(|| ApiError::invalid("page_id", "no such page"))?;
    let page: Vec<Message> = seqs
        .iter()
        .filter_map(|s| data.messages.get(data.index_from_seq(*s)).filter(|m| m.seq == *s))
        .filter(|m| data.visible(m, now))
        .cloned()
        .collect();
    drop(data);
    Ok(json!({ "msg_list": items(shared, &page) }))
}

/// `get_group_chat` (sdk-data-apis.md §3.3): internal and inter-corp groups only.
pub fn get_group_chat(shared: &Arc<Shared>, _msg: &InvokeMessage, req: &Req) -> ApiResult {
    let chatid = req.str_req("chatid", 128)?;
    let data = shared.data();
    let chat = data.chats.get(chatid).ok_or_else(|| ApiError::invalid("chatid", "no such group chat"))?;
    if !chat.internal {
        return Err(ApiError::invalid("chatid", "only internal and inter-corp groups are supported"));
    }
    let in_scope = chat.members.iter().any(|m| data.staff.iter().any(|s| s.userid == m.party.id && s.in_scope));
    if !in_scope {
        return Err(ApiError::invalid("chatid", "no member is inside the authorisation scope"));
    }
    if chat.archive_expired {
        return Err(ApiError::new(ARCHIVE_EXPIRED, "会话存档已过期"));
    }
    let members: Vec<Value> = chat
        .members
        .iter()
        .map(|m| json!({"memberid": m.party.id, "jointime": m.jointime, "type": m.party.kind}))
        .collect();
    Ok(json!({ "creator": chat.creator, "room_create_time": chat.create_time, "members": members }))
}

fn agree(b: bool) -> &'static str {
    if b { "Agree" } else { "Disagree" }
}

/// `get_agree_status_single` (sdk-data-apis.md §3.4): 1–100 items, each userid inside the scope.
pub fn get_agree_status_single(shared: &Arc<Shared>, _msg: &InvokeMessage, req: &Req) -> ApiResult {
    let items = req.array_req("item", 1, 100)?;
    let data = shared.data();
    let mut out = Vec::new();
    for item in items {
        let item = Req::of("item", item)?;
        let userid = item.str_req("userid", 64)?;
        let external = item.str_req("external_userid", 64)?;
        if !data.staff.iter().any(|s| s.userid == userid && s.in_scope) {
            return Err(ApiError::invalid("item.userid", "not inside the conversation-content scope"));
        }
        if let Some(c) = data.consent.iter().find(|c| c.userid == userid && c.external_userid == external) {
            out.push(json!({"status_change_time": c.change_time, "userid": userid, "external_userid": external,
                            "agree_status": agree(c.agree)}));
        }
    }
    Ok(json!({ "agreeinfo": out }))
}

/// `get_agree_status_room` (sdk-data-apis.md §3.5): every external contact of the group.
pub fn get_agree_status_room(shared: &Arc<Shared>, _msg: &InvokeMessage, req: &Req) -> ApiResult {
    let chatid = req.str_req("chatid", 128)?;
    let data = shared.data();
    if !data.chats.contains_key(chatid) {
        return Err(ApiError::invalid("chatid", "no such group chat"));
    }
    let out: Vec<Value> = data
        .room_consent
        .iter()
        .filter(|((c, _), _)| c == chatid)
        .map(|((_, e), (a, t))| json!({"status_change_time": t, "external_userid": e, "agree_status": agree(*a)}))
        .collect();
    Ok(json!({ "agreeinfo": out }))
}

fn staff_userid<'a>(data: &ZoneData, req: &'a Req) -> Result<&'a str, ApiError> {
    let userid = req.str_req("userid", 64)?;
    if !data.staff.iter().any(|s| s.userid == userid) {
        return Err(ApiError::invalid("userid", "no such member"));
    }
    Ok(userid)
}

/// `set_hide_sensitiveinfo_config` (sdk-data-apis.md §3.6): a missing flag means false.
pub fn set_hide_sensitiveinfo_config(shared: &Arc<Shared>, _msg: &InvokeMessage, req: &Req) -> ApiResult {
    let mut data = shared.data();
    let userid = staff_userid(&data, req)?.to_owned();
    let config = req.object_opt("config")?.unwrap_or_default();
    let flag = |k: &str| config.bool_opt(k).map(Option::unwrap_or_default);
    let value = (flag("hide_mobile")?, flag("hide_idcard")?, flag("hide_bankno")?);
    data.hide_config.insert(userid, value);
    Ok(json!({}))
}

/// `get_hide_sensitiveinfo_config`: no masking unless set.
pub fn get_hide_sensitiveinfo_config(shared: &Arc<Shared>, _msg: &InvokeMessage, req: &Req) -> ApiResult {
    let data = shared.data();
    let userid = staff_userid(&data, req)?;
    let (m, i, b) = data.hide_config.get(userid).copied().unwrap_or_default();
    Ok(json!({ "config": {"hide_mobile": m, "hide_idcard": i, "hide_bankno": b} }))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_cursor_round_trips_and_a_forged_one_is_refused() {
        let c = cursor_of(42, 7);
        assert_eq!(parse_cursor("cursor", &c, 7).unwrap(), 42);
        assert!(parse_cursor("cursor", &c, 8).is_err());
        assert!(parse_cursor("cursor", "C2aG0", 7).is_err());
        assert!(c.len() <= 128);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)))]
        #[test]
        fn parsing_arbitrary_cursors_never_panics_and_accepts_only_minted_ones(s in ".{0,40}", seq in any::<u64>()) {
            if let Ok(n) = parse_cursor("cursor", &s, 1) {
                prop_assert_eq!(cursor_of(n, 1), s);
            }
            prop_assert_eq!(parse_cursor("cursor", &cursor_of(seq, 1), 1).unwrap(), seq);
        }
    }
}
