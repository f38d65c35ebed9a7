//! `/local/*`: controls for tests and demos, served only by the local zone (never by WeCom).
//! - `GET /local/world`: the seeded ids (staff, customers, chats, rules, knowledge sets with their doc
//!   ids, export jobids, tag groups; no message content);
//! - `POST /local/messages`: archive a new message, then raise `conversation_new_message` (and
//!   `hit_keyword` when it hits a rule) at the receiving program, each with a fresh 10-minute token;
//! - `POST /local/events`: raise any other documented event (consent, knowledge sets, exports);
//! - `POST /local/export_code`: a single-use, 5-minute export code (what the display component yields);
//! - `POST /local/faults`, `GET /local/faults`, `DELETE /local/faults`: faults on demand;
//! - `POST /local/clock/advance`: move the zone's clock (token, notify and window expiry);
//! - `GET /local/notifications`: the `program_notify` outbox.
//!
//! Replies are `{"errcode":0,"errmsg":"ok",…}` or a 40058 naming the bad field.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::Shared;
use super::events;
use super::faults::FaultKind;
use super::model::{Hit, Party, TokenKind};
use super::program::{self, CallFailure};
use super::req::{ApiError, ApiResult, Req, reply_of};
use super::sdk_rules::match_rules;
use super::seed::new_message;

/// The control routes.
pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/local/world", get(world))
        .route("/local/messages", post(add_message))
        .route("/local/export_code", post(export_code))
        .route("/local/events", post(events::raise))
        .route("/local/faults", post(arm_fault).get(list_faults).delete(clear_faults))
        .route("/local/clock/advance", post(advance_clock))
        .route("/local/notifications", get(notifications))
}

/// Parses a control body.
pub fn parse(body: &str) -> Result<Req, ApiError> {
    Req::parse(body)
}

async fn world(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let data = shared.data();
    let staff: Vec<Value> = data
        .staff
        .iter()
        .map(|s| json!({"userid": s.userid, "name": s.name, "department": s.department, "in_scope": s.in_scope}))
        .collect();
    let customers: Vec<Value> = data
        .customers
        .iter()
        .map(|c| json!({"external_userid": c.external_userid, "name": c.name, "follower": c.follower}))
        .collect();
    let chats: Vec<Value> = data
        .chats
        .values()
        .map(|c| {
            json!({"chatid": c.chatid, "name": c.name, "internal": c.internal, "archive_expired": c.archive_expired,
                         "members": c.members.iter().map(|m| m.party.to_json()).collect::<Vec<_>>()})
        })
        .collect();
    let tag_groups: Vec<Value> = data
        .tag_groups
        .iter()
        .map(|g| json!({"group_id": g.group_id, "name": g.name,
                         "tags": g.tags.iter().map(|(id, name, _)| json!({"tag_id": id, "name": name})).collect::<Vec<_>>()}))
        .collect();
    let kbs: Vec<Value> = data
        .kbs
        .values()
        .map(|k| {
            json!({"knowledge_base_id": k.kb_id, "name": k.kb_name,
                         "doc_ids": k.docs.iter().map(|d| d.docid).collect::<Vec<_>>()})
        })
        .collect();
    Json(json!({
        "errcode": 0, "errmsg": "ok",
        "corp_id": shared.cfg.corp_id, "agent_id": shared.cfg.agent_id, "program_id": shared.cfg.program_id,
        "own_model_id": shared.cfg.own_model_id, "public_key_ver": shared.keys().current_ver(),
        "staff": staff, "customers": customers, "chats": chats, "tag_groups": tag_groups,
        "rules": data.rules.keys().collect::<Vec<_>>(), "kb_ids": data.kbs.keys().collect::<Vec<_>>(),
        "knowledge_bases": kbs, "export_jobids": data.exports.keys().collect::<Vec<_>>(),
        "messages": data.messages.len(), "hits": data.hits.len(),
    }))
}

/// A party by id: staff (1), customer (2) or robot (3, ids starting `wb`).
fn party(shared: &Shared, field: &str, id: &str) -> Result<Party, ApiError> {
    let data = shared.data();
    if data.staff.iter().any(|s| s.userid == id) {
        return Ok(Party { kind: 1, id: id.into() });
    }
    if data.customers.iter().any(|c| c.external_userid == id) {
        return Ok(Party { kind: 2, id: id.into() });
    }
    if id.starts_with("wb") {
        return Ok(Party { kind: 3, id: id.into() });
    }
    Err(ApiError::invalid(field, "no such staff member or customer"))
}

async fn add_message(State(shared): State<Arc<Shared>>, body: String) -> Json<Value> {
    Json(reply_of(archive_message(&shared, &body).await))
}

/// `{"sender", "chatid"? | "receivers"?: [ids], "content", "msgtype"? (1), "raise_event"? (true)}`.
async fn archive_message(shared: &Arc<Shared>, body: &str) -> ApiResult {
    let req = parse(body)?;
    let sender = party(shared, "sender", req.str_req("sender", 64)?)?;
    let content = req.str_req("content", 64 * 1024)?.to_owned();
    let msgtype = req.int_in("msgtype", 1, 1, 100)? as u32;
    let chatid = req.str_max("chatid", 64)?.unwrap_or_default().to_owned();
    let mut parties = vec![sender.clone()];
    if chatid.is_empty() {
        let receivers = req.array_req("receivers", 1, 100)?;
        for r in super::req::strings("receivers", receivers, 64)? {
            parties.push(party(shared, "receivers", &r)?);
        }
    } else {
        let data = shared.data();
        let chat = data.chats.get(&chatid).ok_or_else(|| ApiError::invalid("chatid", "no such group chat"))?;
        if !chat.members.iter().any(|m| m.party == sender) {
            return Err(ApiError::invalid("sender", "not a member of the chat"));
        }
        parties = chat.members.iter().map(|m| m.party.clone()).collect();
    }
    let raise = req.bool_opt("raise_event")?.unwrap_or(true);
    let now = shared.clock.now();
    let (msgid, seq, hit) = {
        let mut data = shared.data();
        let salt = super::seed::splitmix(data.next_id ^ now as u64);
        data.next_id = data.next_id.wrapping_add(1);
        let m = new_message(&data, salt, sender, &parties, &chatid, now, msgtype, content);
        let hits = match_rules(data.rules.values(), &m);
        let (msgid, seq) = (m.msgid.clone(), m.seq);
        data.messages.push(m);
        if !hits.is_empty() {
            let hit_seq = data.hits.last().map_or(1, |h| h.seq + 1).max(data.seq_floor);
            data.hits.push(Hit { seq: hit_seq, msg_seq: seq, rules: hits });
        }
        (msgid, seq, data.hits.last().is_some_and(|h| h.msg_seq == seq))
    };
    let mut out = json!({ "msgid": msgid, "seq": seq, "send_time": now, "hit_keyword": hit });
    let token = raise.then(|| shared.data().mint_token(TokenKind::NewMessage, now));
    let hit_token = (raise && hit).then(|| shared.data().mint_token(TokenKind::HitKeyword, now));
    // The message (and its tokens) are on disk before anyone can see them: a program that pulls
    // the message and moves its cursor past it must never meet a zone restarted without it.
    shared.saver.save().await;
    if let Some(token) = token {
        let ack = program::raise_event(
            shared,
            "conversation_new_message",
            "conversation_new_message",
            json!({"token": token}),
        )
        .await;
        out["token"] = json!(token);
        out["event_ack"] = ack_json(ack);
        if let Some(token) = hit_token {
            let ack = program::raise_event(shared, "hit_keyword", "hit_keyword", json!({"token": token})).await;
            out["hit_token"] = json!(token);
            out["hit_event_ack"] = ack_json(ack);
        }
    }
    Ok(out)
}

/// The program's acknowledgement as JSON, or `{"error": …}` when delivery failed.
pub fn ack_json(ack: Result<String, CallFailure>) -> Value {
    match ack {
        Ok(text) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        Err(e) => json!({ "error": e.to_string() }),
    }
}

async fn export_code(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({ "errcode": 0, "errmsg": "ok", "code": super::sdk_kb::issue_export_code(&shared), "expires_in": 300 }))
}

async fn arm_fault(State(shared): State<Arc<Shared>>, body: String) -> Json<Value> {
    let outcome = parse(&body).and_then(|req| {
        let api = req.str_req("api", 64)?.to_owned();
        let count = req.int_in("count", 1, 1, 1_000_000)? as u32;
        let kind = FaultKind::parse(&req)?;
        shared.faults().arm(&api, kind, count);
        tracing::info!(api, count, "fault armed");
        Ok(json!({}))
    });
    Json(reply_of(outcome))
}

async fn list_faults(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({ "errcode": 0, "errmsg": "ok", "pending": shared.faults().pending() }))
}

async fn clear_faults(State(shared): State<Arc<Shared>>) -> Json<Value> {
    shared.faults().clear();
    Json(json!({ "errcode": 0, "errmsg": "ok" }))
}

async fn advance_clock(State(shared): State<Arc<Shared>>, body: String) -> Json<Value> {
    let outcome = parse(&body).and_then(|req| {
        let secs = req.int_in("secs", 0, 0, 365 * 86_400)?;
        shared.clock.advance(secs);
        Ok(json!({ "now": shared.clock.now() }))
    });
    Json(reply_of(outcome))
}

async fn notifications(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({ "errcode": 0, "errmsg": "ok", "notifications": shared.data().outbox }))
}
