//! The three searches (sdk-data-apis.md §4): `search_chat` (named groups by current name),
//! `search_msg` (searchable message types by content, with the documented filters and the 31-day
//! range), and `search_contact_or_customer` (names and pinyin). `query_word` ≥ 2 characters (and
//! < 32 for contacts); `limit` default 50, max 100; cursors are opaque and bound to their query.

use std::sync::Arc;

use serde_json::{Value, json};

use super::Shared;
use super::model::{Message, RETENTION_SECS, ZoneData};
use super::req::{ApiError, ApiResult, Req, ints};
use super::sdk_msgs::{cursor_of, parse_cursor};
use super::seed::splitmix;
use zone_crypto::wire::InvokeMessage;

/// Message types `search_msg` can search: text, link, mini-program, file, online doc, mixed, 微盘 file.
pub const SEARCHABLE_TYPES: [i64; 7] = [1, 4, 5, 8, 18, 20, 23];
/// Longest range of `search_msg`: 31 days.
const MAX_RANGE_SECS: i64 = 31 * 86_400;

/// The query word, offset and limit common to every search.
struct Paging {
    query: String,
    offset: usize,
    limit: usize,
    salt: u64,
}

impl Paging {
    fn parse(shared: &Shared, api: &str, req: &Req, max_chars: usize) -> Result<Self, ApiError> {
        let query = req.chars("query_word", 2, max_chars)?.to_owned();
        let limit = req.limit(50, 100)?;
        let salt = query.bytes().fold(splitmix(shared.cfg.seed ^ api.len() as u64), |h, b| splitmix(h ^ u64::from(b)));
        let offset = match req.str_max("cursor", 128)? {
            Some(c) => parse_cursor("cursor", c, salt)? as usize,
            None => 0,
        };
        Ok(Self { query, offset, limit, salt })
    }

    /// `{has_more, next_cursor, <key>: page}`.
    fn reply(&self, key: &str, hits: Vec<Value>) -> Value {
        let end = (self.offset + self.limit).min(hits.len());
        let page: Vec<Value> = hits.get(self.offset..end).map(<[Value]>::to_vec).unwrap_or_default();
        let has_more = end < hits.len();
        let next = if has_more { cursor_of(end as u64, self.salt) } else { String::new() };
        let mut out = json!({ "has_more": i32::from(has_more), "next_cursor": next });
        out[key] = Value::Array(page);
        out
    }
}

fn contains(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

/// `search_chat` (§4.1): named groups only, by current name, with a member inside the scope.
pub fn search_chat(shared: &Arc<Shared>, msg: &InvokeMessage, req: &Req) -> ApiResult {
    // `query_word`: ≥ 2 characters and no documented maximum (the request's size bounds it).
    let p = Paging::parse(shared, &msg.api, req, usize::MAX)?;
    let data = shared.data();
    let hits: Vec<Value> = data
        .chats
        .values()
        .filter(|c| !c.name.is_empty() && contains(&c.name, &p.query))
        .filter(|c| c.members.iter().any(|m| data.staff.iter().any(|s| s.userid == m.party.id && s.in_scope)))
        .map(|c| json!({ "chatid": c.chatid }))
        .collect();
    Ok(p.reply("chat_list", hits))
}

/// `search_contact_or_customer` (§4.3): staff inside the scope, customers whose follower is.
pub fn search_contact_or_customer(shared: &Arc<Shared>, msg: &InvokeMessage, req: &Req) -> ApiResult {
    let p = Paging::parse(shared, &msg.api, req, 31)?;
    let kind = req.int_in("query_user_type", 0, 0, 2)?;
    let data = shared.data();
    let matches = |name: &str, pinyin: &str| contains(name, &p.query) || contains(pinyin, &p.query);
    let in_scope = |userid: &str| data.staff.iter().any(|s| s.userid == userid && s.in_scope);
    let mut hits = Vec::new();
    if kind != 2 {
        let staff = data.staff.iter().filter(|s| s.in_scope && matches(&s.name, &s.pinyin));
        hits.extend(staff.map(|s| json!({"type": 1, "id": s.userid})));
    }
    if kind != 1 {
        let customers = data.customers.iter().filter(|c| in_scope(&c.follower) && matches(&c.name, &c.pinyin));
        hits.extend(customers.map(|c| json!({"type": 2, "id": c.external_userid})));
    }
    Ok(p.reply("user_list", hits))
}

/// The filters of `search_msg`'s `chat_info` and time range.
#[derive(Default)]
struct MsgFilter {
    chat_type: Option<i64>,
    pair: Vec<String>,
    chat_id: Option<String>,
    types: Vec<i64>,
    senders: Vec<String>,
    start: i64,
    end: i64,
}

/// An IdInfo `{open_userid}` or `{external_userid}`; `open_userid` wins when both are present.
fn id_info(field: &str, v: &Value, staff_only: bool) -> Result<String, ApiError> {
    let r = Req::of(field, v)?;
    if let Some(id) = r.str_max("open_userid", 64)? {
        return Ok(id.to_owned());
    }
    match r.str_max("external_userid", 64)? {
        Some(_) if staff_only => Err(ApiError::invalid(field, "only staff (open_userid) may be given")),
        Some(id) => Ok(id.to_owned()),
        None => Err(ApiError::invalid(field, "needs open_userid or external_userid")),
    }
}

impl MsgFilter {
    fn parse(req: &Req, now: i64) -> Result<Self, ApiError> {
        let mut f = Self { types: SEARCHABLE_TYPES.to_vec(), ..Self::default() };
        if let Some(info) = req.object_opt("chat_info")? {
            f.chat_type = info.raw("chat_type").map(|_| info.int_in("chat_type", 1, 1, 2)).transpose()?;
            if let Some(ids) = info.array_opt("id_list")? {
                if ids.len() != 2 {
                    return Err(ApiError::invalid("chat_info.id_list", "a 1:1 chat needs exactly 2 ids"));
                }
                f.pair = ids.iter().map(|v| id_info("chat_info.id_list", v, false)).collect::<Result<_, _>>()?;
            }
            f.chat_id = info.str_max("chat_id", 64)?.map(str::to_owned);
            if let Some(types) = info.array_opt("msg_type_list")? {
                let types = ints("chat_info.msg_type_list", types)?;
                if types.iter().any(|t| !SEARCHABLE_TYPES.contains(t)) {
                    return Err(ApiError::invalid(
                        "chat_info.msg_type_list",
                        "only 1, 4, 5, 8, 18, 20, 23 are searchable",
                    ));
                }
                if !types.is_empty() {
                    f.types = types;
                }
            }
            if let Some(list) = info.array_opt("sender_list")? {
                if list.len() > 100 {
                    return Err(ApiError::invalid("chat_info.sender_list", "at most 100 senders"));
                }
                f.senders = list.iter().map(|v| id_info("chat_info.sender_list", v, true)).collect::<Result<_, _>>()?;
            } else if let Some(sender) = info.raw("sender") {
                f.senders = vec![id_info("chat_info.sender", sender, true)?];
            }
        }
        let (start, end) = (req.int_opt("start_time")?, req.int_opt("end_time")?);
        (f.start, f.end) = match (start, end) {
            (None, None) => (now - RETENTION_SECS, now),
            (Some(s), None) => (s, now),
            (None, Some(_)) => return Err(ApiError::invalid("end_time", "needs start_time")),
            (Some(s), Some(e)) if s >= e => return Err(ApiError::invalid("start_time", "must be before end_time")),
            (Some(s), Some(e)) => (s, e),
        };
        if f.end - f.start > MAX_RANGE_SECS {
            return Err(ApiError::invalid("end_time", "the range is at most 31 days"));
        }
        Ok(f)
    }

    fn admits(&self, m: &Message) -> bool {
        let in_pair = |id: &str| m.sender.id == id || m.receivers.iter().any(|p| p.id == id);
        let chat_ok = match self.chat_type {
            Some(1) => m.chatid.is_empty() && self.pair.iter().all(|id| in_pair(id)),
            Some(_) => !m.chatid.is_empty() && self.chat_id.as_ref().is_none_or(|c| *c == m.chatid),
            None => self.chat_id.as_ref().is_none_or(|c| *c == m.chatid),
        };
        chat_ok
            && self.types.contains(&i64::from(m.msgtype))
            && (self.senders.is_empty() || self.senders.contains(&m.sender.id))
            && (self.start..=self.end).contains(&m.send_time)
    }
}

/// `search_msg` (§4.2): returns `{msgid}` only.
pub fn search_msg(shared: &Arc<Shared>, msg: &InvokeMessage, req: &Req) -> ApiResult {
    // `query_word`: ≥ 2 characters and no documented maximum (the request's size bounds it).
    let p = Paging::parse(shared, &msg.api, req, usize::MAX)?;
    req.bool_opt("skip_stop_words")?;
    let now = shared.clock.now();
    let filter = MsgFilter::parse(req, now)?;
    let data: std::sync::MutexGuard<'_, ZoneData> = shared.data();
    let hits: Vec<Value> = data
        .messages
        .iter()
        .filter(|m| data.visible(m, now) && filter.admits(m) && contains(&m.content, &p.query))
        .map(|m| json!({ "msgid": m.msgid }))
        .collect();
    Ok(p.reply("msg_list", hits))
}
