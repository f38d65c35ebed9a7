//! call_type 2: WeCom events (events.md). Each documented `event_type` has a typed handler with
//! its `notify_scene` and follow-up. Accepting an event records it as a durable job keyed by a hash
//! of the corp and the event (so a redelivery is a no-op) and acknowledges at once; the job then
//! pulls the follow-up data (for `conversation_new_message`, every new message with `sync_msg`
//! and the event's token), stores everything under a fresh notify_id and calls `spec_notify_app`
//! ([`follow_up`]).

mod follow_up;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use crate::app::AppState;
use crate::error::AppError;
use crate::sdk::Callback;
use crate::store::{JobKind, NewJob};

pub use follow_up::run_job;

/// Longest event token (events.md §3).
pub const MAX_TOKEN_BYTES: usize = 128;
/// Longest export `jobid` (events.md §3).
pub const MAX_EXPORT_JOBID_CHARS: usize = 64;
/// Longest id taken from an event for a follow-up call.
const MAX_ID_BYTES: usize = 128;

/// The documented event types, in catalogue order, and `Other` for anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// A customer agreed to archiving in a 1:1 chat.
    AuditApprovedSingle,
    /// A customer agreed to archiving in a group chat.
    AuditApprovedRoom,
    /// New messages exist (token for `sync_msg`).
    ConversationNewMessage,
    /// A keyword rule was hit (token for `get_hit_msg_list`).
    HitKeyword,
    /// A knowledge set was authorised.
    AuthKnowledgeBase,
    /// A knowledge set's authorisation was withdrawn.
    UnauthKnowledgeBase,
    /// An authorised knowledge set was deleted.
    DeleteKnowledgeBase,
    /// A document of a knowledge set finished learning.
    KnowledgeBaseLearnDone,
    /// A chat export job finished.
    ChatArchiveExportFinished,
    /// An undocumented type: stored and forwarded as is.
    Other,
}

impl EventType {
    /// Every type, in the order of the README's scene table.
    pub const ALL: [EventType; 10] = [
        Self::ConversationNewMessage,
        Self::HitKeyword,
        Self::AuditApprovedSingle,
        Self::AuditApprovedRoom,
        Self::AuthKnowledgeBase,
        Self::UnauthKnowledgeBase,
        Self::DeleteKnowledgeBase,
        Self::KnowledgeBaseLearnDone,
        Self::ChatArchiveExportFinished,
        Self::Other,
    ];

    /// The type of an `event_type` string.
    pub fn parse(s: &str) -> Self {
        match s {
            "chat_archive_audit_approved_single" => Self::AuditApprovedSingle,
            "chat_archive_audit_approved_room" => Self::AuditApprovedRoom,
            "conversation_new_message" => Self::ConversationNewMessage,
            "hit_keyword" => Self::HitKeyword,
            "auth_knowledge_base" => Self::AuthKnowledgeBase,
            "unauth_knowledge_base" => Self::UnauthKnowledgeBase,
            "delete_knowledge_base" => Self::DeleteKnowledgeBase,
            "knowledge_base_learn_done" => Self::KnowledgeBaseLearnDone,
            "chat_archive_export_finished" => Self::ChatArchiveExportFinished,
            _ => Self::Other,
        }
    }

    /// The `event_type` string (empty for `Other`).
    pub fn name(self) -> &'static str {
        match self {
            Self::AuditApprovedSingle => "chat_archive_audit_approved_single",
            Self::AuditApprovedRoom => "chat_archive_audit_approved_room",
            Self::ConversationNewMessage => "conversation_new_message",
            Self::HitKeyword => "hit_keyword",
            Self::AuthKnowledgeBase => "auth_knowledge_base",
            Self::UnauthKnowledgeBase => "unauth_knowledge_base",
            Self::DeleteKnowledgeBase => "delete_knowledge_base",
            Self::KnowledgeBaseLearnDone => "knowledge_base_learn_done",
            Self::ChatArchiveExportFinished => "chat_archive_export_finished",
            Self::Other => "",
        }
    }

    /// The `notify_scene` passed to `spec_notify_app` (0–255), so the app can route a
    /// `program_notify` before pulling it.
    pub fn scene(self) -> u8 {
        match self {
            Self::ConversationNewMessage => 1,
            Self::HitKeyword => 2,
            Self::AuditApprovedSingle => 3,
            Self::AuditApprovedRoom => 4,
            Self::AuthKnowledgeBase => 5,
            Self::UnauthKnowledgeBase => 6,
            Self::DeleteKnowledgeBase => 7,
            Self::KnowledgeBaseLearnDone => 8,
            Self::ChatArchiveExportFinished => 9,
            Self::Other => 0,
        }
    }

    /// The key of the payload object: the type itself, except for the two consent events, which
    /// share `chat_archive_audit_approved` (events.md §2).
    pub fn payload_key(self) -> Option<&'static str> {
        match self {
            Self::AuditApprovedSingle | Self::AuditApprovedRoom => Some("chat_archive_audit_approved"),
            Self::Other => None,
            other => Some(other.name()),
        }
    }
}

/// A parsed event: its type, the typed follow-up it calls for, and the object as received.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The type.
    pub kind: EventType,
    /// What to pull after acknowledging.
    pub follow_up: FollowUp,
    /// The event object as received (extra keys kept).
    pub raw: Map<String, Value>,
}

/// The follow-up an event calls for, with its typed, bounded fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowUp {
    /// `sync_msg` from the stored cursor, with the token if it is well-formed.
    SyncMsg {
        /// The event token (≤ 128 bytes).
        token: Option<String>,
    },
    /// `get_hit_msg_list` from the stored cursor, with the token if it is well-formed.
    HitMsgList {
        /// The event token (≤ 128 bytes).
        token: Option<String>,
    },
    /// `get_agree_status_single` for the pair.
    AgreeSingle {
        /// The member.
        userid: String,
        /// The customer.
        external_userid: String,
    },
    /// `get_agree_status_room` for the group.
    AgreeRoom {
        /// The group chat.
        chatid: String,
    },
    /// `get_chatdata_export_job_status` for the job.
    ExportStatus {
        /// The export job (≤ 64 characters).
        jobid: String,
    },
    /// Nothing to pull.
    None,
}

/// Per-corp locks that keep two follow-ups from reading the same listing cursor at once.
#[derive(Debug, Default)]
pub struct Events {
    cursor_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Events {
    /// The lock of `(corp_id, listing)`.
    pub(crate) fn cursor_lock(&self, corp_id: &str, listing: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.cursor_locks.lock().expect("the lock map is never poisoned");
        locks.entry(format!("{corp_id}\n{listing}")).or_default().clone()
    }
}

/// Parses the decrypted event JSON. A body that is not a JSON object with a string `event_type`
/// is refused; extra or missing payload keys are tolerated (events.md §3), and a field that breaks
/// its documented bound is left out of the follow-up rather than used.
pub fn parse(data: &str, max_bytes: usize) -> Result<Event, AppError> {
    if data.len() > max_bytes {
        return Err(crate::abilities::input::too_large(format!("the event is larger than {max_bytes} bytes")));
    }
    let Ok(Value::Object(raw)) = serde_json::from_str::<Value>(data) else {
        return Err(AppError::invalid("the event is not a JSON object"));
    };
    let kind = match raw.get("event_type").and_then(Value::as_str) {
        Some(t) if !t.is_empty() && t.len() <= 64 => EventType::parse(t),
        _ => return Err(AppError::invalid("the event has no `event_type`")),
    };
    let payload = kind.payload_key().and_then(|k| raw.get(k)).and_then(Value::as_object);
    let field = |name: &str, max: usize| -> Option<String> {
        let v = payload?.get(name)?.as_str()?;
        (!v.is_empty() && v.len() <= max).then(|| v.to_owned())
    };
    let follow_up = match kind {
        EventType::ConversationNewMessage => FollowUp::SyncMsg { token: field("token", MAX_TOKEN_BYTES) },
        EventType::HitKeyword => FollowUp::HitMsgList { token: field("token", MAX_TOKEN_BYTES) },
        EventType::AuditApprovedSingle => match (field("userid", MAX_ID_BYTES), field("external_userid", MAX_ID_BYTES))
        {
            (Some(userid), Some(external_userid)) => FollowUp::AgreeSingle { userid, external_userid },
            _ => FollowUp::None,
        },
        EventType::AuditApprovedRoom => {
            field("chatid", MAX_ID_BYTES).map_or(FollowUp::None, |chatid| FollowUp::AgreeRoom { chatid })
        }
        EventType::ChatArchiveExportFinished => field("jobid", MAX_EXPORT_JOBID_CHARS * 4)
            .filter(|j| j.chars().count() <= MAX_EXPORT_JOBID_CHARS)
            .map_or(FollowUp::None, |jobid| FollowUp::ExportStatus { jobid }),
        _ => FollowUp::None,
    };
    Ok(Event { kind, follow_up, raw })
}

/// The dedupe key of part `part` of an event: a hash of the corp and the event's canonical JSON
/// (keys sorted), so a redelivery matches even if re-serialised.
pub fn dedupe_key(corp_id: &str, raw: &Map<String, Value>, part: u32) -> String {
    let canonical = serde_json::to_string(&Value::Object(raw.clone())).expect("a JSON object serialises");
    let mut hash = Sha256::new();
    hash.update(corp_id.as_bytes());
    hash.update([0]);
    hash.update(canonical.as_bytes());
    let digest = hex::encode(hash.finalize());
    if part == 0 { format!("event:{digest}") } else { format!("event:{digest}:{part}") }
}

/// The payload of an event job.
pub(crate) fn job_payload(raw: &Map<String, Value>, part: u32) -> String {
    json!({ "event": raw, "part": part }).to_string()
}

/// Accepts an event: parses it, records its follow-up job (a redelivery is recognised and not
/// recorded again) and returns the acknowledgement. A bad event, or one that arrives while the
/// notify store is full (`StoreFull`), changes nothing.
pub async fn accept(state: &AppState, callback: &Callback) -> Result<Value, AppError> {
    let event = parse(&callback.data, state.config.abilities.max_input_bytes)?;
    // A full store is refused now, while WeCom can still deliver the event again later.
    if !state.store.notify_has_room().await? {
        return Err(AppError::Code(crate::error::ErrorCode::StoreFull));
    }
    let job = NewJob {
        kind: JobKind::Event,
        dedupe_key: Some(dedupe_key(&callback.corp_id, &event.raw, 0)),
        ctx: callback.context(),
        payload: job_payload(&event.raw, 0),
    };
    let outcome = state.jobs.enqueue(job).await?;
    tracing::info!(event_type = event.kind.name(), scene = event.kind.scene(), ?outcome, "event accepted");
    Ok(json!({ "errcode": 0, "errmsg": "ok" }))
}

/// An example of what `get_callback_data` returns, with every key any event type may carry.
pub fn notify_data_example() -> Value {
    let item: Value = serde_json::from_str(crate::abilities::catalog::MESSAGE_ITEM_EXAMPLE).expect("JSON");
    let mut hit = item.clone();
    hit["msg_detail"] = item.clone();
    hit["hit_rule_list"] = json!([{"rule_id": "R1", "has_hit_keyword": true, "semantics_list": [2]}]);
    json!({
        "event_type": "conversation_new_message",
        "timestamp": 1_700_000_000,
        "notify_scene": 1,
        "part": 0,
        "conversation_new_message": {"token": "T"},
        "hit_keyword": {"token": "T"},
        "chat_archive_audit_approved": {"userid": "wo1", "external_userid": "wm1", "chatid": "wr1"},
        "auth_knowledge_base": {"knowledge_base_id": "kb1", "knowledge_base_name": "FAQ"},
        "unauth_knowledge_base": {"knowledge_base_id": "kb1", "knowledge_base_name": "FAQ"},
        "delete_knowledge_base": {"knowledge_base_id": "kb1", "knowledge_base_name": "FAQ"},
        "knowledge_base_learn_done": {"knowledge_base_id": "kb1", "knowledge_base_name": "FAQ", "doc_id": 1, "learn_status": 0},
        "chat_archive_export_finished": {"jobid": "JOBID"},
        "msg_list": [hit],
        "has_more": 0,
        "agreeinfo": [{"status_change_time": 1_562_766_651, "userid": "wo1", "external_userid": "wm1", "agree_status": "Agree"}],
        "export_job": {"status": 3, "result_errcode": 0, "result_errmsg": "ok", "result_id": "RID"},
        "follow_up_errcode": 0,
    })
}

#[cfg(test)]
mod tests;
