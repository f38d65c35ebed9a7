//! `POST /local/events`: raises any documented call_type 2 event (events.md §3) at the receiving
//! program, after applying its effect on the world, so that follow-up SDK calls see it:
//! - `chat_archive_audit_approved_single` `{userid, external_userid}`: the 1:1 consent becomes Agree;
//! - `chat_archive_audit_approved_room` `{external_userid, chatid}`: the group consent becomes Agree;
//! - `conversation_new_message` / `hit_keyword` `{}`: a fresh 10-minute token (no new message);
//! - `auth_knowledge_base` `{knowledge_base_id, knowledge_base_name}`: the set appears (empty);
//! - `unauth_knowledge_base` / `delete_knowledge_base` `{knowledge_base_id}`: the set disappears;
//! - `knowledge_base_learn_done` `{knowledge_base_id, doc_id, learn_status?}`;
//! - `chat_archive_export_finished` `{jobid, result_errcode?}`: the export job is done.
//!
//! The reply carries the event as sent and the program's acknowledgement (`ack`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::Shared;
use super::control::{ack_json, parse};
use super::model::{Consent, KnowledgeBase, TokenKind};
use super::program;
use super::req::{ApiError, ApiResult, Req, reply_of};

/// The handler of `POST /local/events`.
pub async fn raise(State(shared): State<Arc<Shared>>, body: String) -> Json<Value> {
    Json(reply_of(raise_event(&shared, &body).await))
}

async fn raise_event(shared: &Arc<Shared>, body: &str) -> ApiResult {
    let req = parse(body)?;
    let event_type = req.str_req("event_type", 64)?.to_owned();
    let (key, payload) = apply(shared, &event_type, &req)?;
    let ack = program::raise_event(shared, &event_type, key, payload.clone()).await;
    Ok(json!({ "event_type": event_type, key: payload, "ack": ack_json(ack) }))
}

/// Applies the event's effect and returns its payload key and payload.
fn apply(shared: &Shared, event_type: &str, req: &Req) -> Result<(&'static str, Value), ApiError> {
    let now = shared.clock.now();
    let mut data = shared.data();
    match event_type {
        "chat_archive_audit_approved_single" => {
            let userid = req.str_req("userid", 64)?;
            let external = req.str_req("external_userid", 64)?;
            if !data.staff.iter().any(|s| s.userid == userid) {
                return Err(ApiError::invalid("userid", "no such staff member"));
            }
            match data.consent.iter_mut().find(|c| c.userid == userid && c.external_userid == external) {
                Some(c) => (c.agree, c.change_time) = (true, now),
                None => data.consent.push(Consent {
                    userid: userid.into(),
                    external_userid: external.into(),
                    agree: true,
                    change_time: now,
                }),
            }
            Ok(("chat_archive_audit_approved", json!({"userid": userid, "external_userid": external})))
        }
        "chat_archive_audit_approved_room" => {
            let chatid = req.str_req("chatid", 64)?;
            let external = req.str_req("external_userid", 64)?;
            if !data.chats.contains_key(chatid) {
                return Err(ApiError::invalid("chatid", "no such group chat"));
            }
            data.room_consent.insert((chatid.into(), external.into()), (true, now));
            Ok(("chat_archive_audit_approved", json!({"external_userid": external, "chatid": chatid})))
        }
        "conversation_new_message" | "hit_keyword" => {
            let kind = if event_type == "hit_keyword" { TokenKind::HitKeyword } else { TokenKind::NewMessage };
            let token = data.mint_token(kind, now);
            Ok((
                if kind == TokenKind::HitKeyword { "hit_keyword" } else { "conversation_new_message" },
                json!({"token": token}),
            ))
        }
        "auth_knowledge_base" => {
            let id = req.str_req("knowledge_base_id", 64)?.to_owned();
            let name = req.chars("knowledge_base_name", 1, 20)?.to_owned();
            data.kbs.entry(id.clone()).or_insert(KnowledgeBase {
                kb_id: id.clone(),
                kb_name: name.clone(),
                docs: vec![],
            });
            Ok(("auth_knowledge_base", json!({"knowledge_base_id": id, "knowledge_base_name": name})))
        }
        "unauth_knowledge_base" | "delete_knowledge_base" => {
            let id = req.str_req("knowledge_base_id", 64)?;
            let kb =
                data.kbs.remove(id).ok_or_else(|| ApiError::invalid("knowledge_base_id", "no such knowledge set"))?;
            let key =
                if event_type == "unauth_knowledge_base" { "unauth_knowledge_base" } else { "delete_knowledge_base" };
            Ok((key, json!({"knowledge_base_id": kb.kb_id, "knowledge_base_name": kb.kb_name})))
        }
        "knowledge_base_learn_done" => {
            let id = req.str_req("knowledge_base_id", 64)?;
            let doc_id = req.int_opt("doc_id")?.ok_or_else(|| ApiError::invalid("doc_id", "is required"))?;
            let status = req.int_in("learn_status", 0, 0, 1)?;
            let kb = data.kbs.get(id).ok_or_else(|| ApiError::invalid("knowledge_base_id", "no such knowledge set"))?;
            if !kb.docs.iter().any(|d| d.docid as i64 == doc_id) {
                return Err(ApiError::invalid("doc_id", "no such document in the set"));
            }
            Ok((
                "knowledge_base_learn_done",
                json!({"knowledge_base_id": id, "knowledge_base_name": kb.kb_name,
                                                     "doc_id": doc_id, "learn_status": status}),
            ))
        }
        "chat_archive_export_finished" => {
            let jobid = req.str_req("jobid", 64)?.to_owned();
            let result_errcode = req.int_opt("result_errcode")?.unwrap_or(0);
            let result_id = data.mint("RID");
            let job = data.exports.get_mut(&jobid).ok_or_else(|| ApiError::invalid("jobid", "no such export job"))?;
            finish_export(job, result_errcode, result_id);
            Ok(("chat_archive_export_finished", json!({"jobid": jobid})))
        }
        _ => Err(ApiError::invalid("event_type", "not a documented zone event")),
    }
}

/// Marks an export job done with `result_errcode` (a `result_id` only on success).
pub fn finish_export(job: &mut super::model::ExportJob, result_errcode: i64, result_id: String) {
    job.status = 3;
    let msg = if result_errcode == 0 { "ok" } else { "export failed" };
    job.result = Some((result_errcode, msg.into(), if result_errcode == 0 { result_id } else { String::new() }));
}
