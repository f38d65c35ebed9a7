//! Request and reply types of the data APIs (`protocol/sdk-data-apis.md`). Optional fields are
//! left out of the request when `None` (the SDK refuses some empty fields). Replies keep what the
//! program reads typed; list items the program forwards as received stay JSON values.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{SdkRequest, flag, limit};
use crate::sdk::SdkError;

/// Longest `sync_msg` cursor and event token (sdk-data-apis.md §1.4, §3.1).
pub const MAX_CURSOR_BYTES: usize = 128;
/// Longest `get_hit_msg_list` cursor (§5.7).
pub const MAX_HIT_CURSOR_BYTES: usize = 64;
/// Most items a listing returns per call (§1.4).
pub const MAX_LISTING_LIMIT: u32 = 1000;
/// Longest notify_id (§2.2).
pub const MAX_NOTIFY_ID_BYTES: usize = 64;
/// Most pairs of one `get_agree_status_single` (§3.4).
pub const MAX_AGREE_ITEMS: usize = 100;
/// Most results of one search page (§4).
pub const MAX_SEARCH_LIMIT: u32 = 100;
/// Most documents added or removed at once, and per knowledge set (§6).
pub const MAX_KB_DOCS: usize = 1000;

fn within(v: Option<&String>, max: usize) -> bool {
    v.is_none_or(|v| v.len() <= max)
}

/// `{errcode, errmsg}` and nothing else of interest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Ack {}

/// A reply read as a JSON object (APIs whose reply the program does not interpret).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Listing {
    /// Every field but `errcode` / `errmsg`.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

/// `{}`: an API with no documented request field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Empty {}
impl SdkRequest for Empty {}

/// `program_async_job_call_back`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobCallBackRequest {
    /// 0 when the job succeeded.
    pub errcode: i64,
    /// The output, conforming to the ability's output protocol.
    pub result: String,
}
impl SdkRequest for JobCallBackRequest {}

/// `spec_notify_app`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SpecNotifyAppRequest {
    /// The notify_id the app will pass to `get_callback_data` (≤ 64 bytes); WeCom makes one if absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_id: Option<String>,
    /// Reaches the app as `NotifyScene` (0–255).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_scene: Option<u8>,
}
impl SdkRequest for SpecNotifyAppRequest {
    fn check(&self, api: &'static str) -> Result<(), SdkError> {
        limit(api, within(self.notify_id.as_ref(), MAX_NOTIFY_ID_BYTES), "notify_id longer than 64 bytes")
    }
}

/// The reply of `spec_notify_app`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SpecNotifyAppResponse {
    /// The notify_id used.
    #[serde(default)]
    pub notify_id: String,
}

/// `sync_msg`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncMsgRequest {
    /// The previous `next_cursor` (≤ 128 bytes); absent on the first call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// The event token (≤ 128 bytes): calls without one are strictly rate-limited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Items per page (default 200, ≤ 1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// 0 `msg_list`, 1 `page_id_list` only, 2 adaptive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<u8>,
    /// Re-pull from around this time (Unix seconds) when the cursor is lost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub begin_time: Option<i64>,
}
impl SdkRequest for SyncMsgRequest {
    fn check(&self, api: &'static str) -> Result<(), SdkError> {
        limit(api, within(self.cursor.as_ref(), MAX_CURSOR_BYTES), "cursor longer than 128 bytes")?;
        limit(api, within(self.token.as_ref(), MAX_CURSOR_BYTES), "token longer than 128 bytes")?;
        limit(api, self.limit.is_none_or(|l| (1..=MAX_LISTING_LIMIT).contains(&l)), "limit outside 1–1000")?;
        limit(api, self.mode.is_none_or(|m| m <= 2), "mode outside 0–2")
    }
}

/// `get_msg_list_by_page_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PageIdRequest {
    /// An entry of `sync_msg`'s `page_id_list`.
    pub page_id: String,
}
impl SdkRequest for PageIdRequest {
    fn check(&self, api: &'static str) -> Result<(), SdkError> {
        limit(api, !self.page_id.is_empty(), "empty page_id")
    }
}

/// `get_hit_msg_list`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HitMsgListRequest {
    /// The previous `next_cursor` (≤ 64 bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// The `hit_keyword` event token (≤ 128 bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// 1: each item carries `msg_detail`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub need_detail: Option<u8>,
    /// Items per page (default 200, ≤ 1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// As in `sync_msg`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub begin_time: Option<i64>,
}
impl SdkRequest for HitMsgListRequest {
    fn check(&self, api: &'static str) -> Result<(), SdkError> {
        limit(api, within(self.cursor.as_ref(), MAX_HIT_CURSOR_BYTES), "cursor longer than 64 bytes")?;
        limit(api, within(self.token.as_ref(), MAX_CURSOR_BYTES), "token longer than 128 bytes")?;
        limit(api, self.limit.is_none_or(|l| (1..=MAX_LISTING_LIMIT).contains(&l)), "limit outside 1–1000")?;
        limit(api, self.need_detail.is_none_or(|d| d <= 1), "need_detail outside 0–1")
    }
}

/// One page of a message listing (`sync_msg`, `get_msg_list_by_page_id`, `get_hit_msg_list`).
/// Items stay as received (the events forward them to the app unchanged); the workflows read them
/// with [`crate::abilities::messages::items_of`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct MsgPage {
    /// Whether more pages follow.
    #[serde(default, deserialize_with = "flag")]
    pub has_more: bool,
    /// The cursor of the next call (empty when none).
    #[serde(default)]
    pub next_cursor: String,
    /// Message references (ids, parties, times, wrapped keys; never content).
    #[serde(default)]
    pub msg_list: Vec<Value>,
    /// Mode 1 or 2 of `sync_msg`: pages to fetch with `get_msg_list_by_page_id`.
    #[serde(default)]
    pub page_id_list: Vec<Value>,
}

impl MsgPage {
    /// The entries of `page_id_list`, as strings or `{page_id}` objects (both shapes are
    /// accepted, sdk-data-apis.md §3.1).
    pub fn page_ids(&self) -> Vec<String> {
        self.page_id_list
            .iter()
            .filter_map(|p| p.as_str().or_else(|| p.get("page_id").and_then(Value::as_str)))
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// A request carrying one `chatid` (`get_group_chat`, `get_agree_status_room`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatIdRequest {
    /// The group chat.
    pub chatid: String,
}
impl SdkRequest for ChatIdRequest {
    fn check(&self, api: &'static str) -> Result<(), SdkError> {
        limit(api, !self.chatid.is_empty(), "empty chatid")
    }
}

/// The reply of `get_group_chat`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct GroupChat {
    /// The creator's userid.
    #[serde(default)]
    pub creator: String,
    /// Unix seconds.
    #[serde(default)]
    pub room_create_time: i64,
    /// `{memberid, jointime, type}` each.
    #[serde(default)]
    pub members: Vec<Value>,
}

/// One pair of `get_agree_status_single`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgreePair {
    /// The member.
    pub userid: String,
    /// The customer.
    pub external_userid: String,
}

/// `get_agree_status_single`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgreeSingleRequest {
    /// 1–100 pairs.
    pub item: Vec<AgreePair>,
}
impl SdkRequest for AgreeSingleRequest {
    fn check(&self, api: &'static str) -> Result<(), SdkError> {
        limit(api, (1..=MAX_AGREE_ITEMS).contains(&self.item.len()), "item must hold 1–100 pairs")
    }
}

/// The reply of the two consent APIs.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct AgreeInfo {
    /// `{status_change_time, userid?, external_userid, agree_status}` each, as answered.
    #[serde(default)]
    pub agreeinfo: Vec<Value>,
}

/// A request carrying one `userid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserIdRequest {
    /// The member's userid.
    pub userid: String,
}
impl SdkRequest for UserIdRequest {}

/// The masking of the display component.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HideConfig {
    /// Mask phone numbers.
    #[serde(default)]
    pub hide_mobile: bool,
    /// Mask ID-card numbers.
    #[serde(default)]
    pub hide_idcard: bool,
    /// Mask bank-card numbers.
    #[serde(default)]
    pub hide_bankno: bool,
}

/// `set_hide_sensitiveinfo_config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetHideConfigRequest {
    /// The member's userid.
    pub userid: String,
    /// The masking.
    pub config: HideConfig,
}
impl SdkRequest for SetHideConfigRequest {}

/// The reply of `get_hide_sensitiveinfo_config`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct HideConfigResponse {
    /// The masking.
    #[serde(default)]
    pub config: HideConfig,
}

/// `search_chat`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SearchRequest {
    /// At least 2 characters.
    pub query_word: String,
    /// Default 50, ≤ 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The previous page's cursor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}
impl SdkRequest for SearchRequest {
    fn check(&self, api: &'static str) -> Result<(), SdkError> {
        limit(api, self.query_word.chars().count() >= 2, "query_word shorter than 2 characters")?;
        limit(api, self.limit.is_none_or(|l| (1..=MAX_SEARCH_LIMIT).contains(&l)), "limit outside 1–100")
    }
}

/// `search_msg`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SearchMsgRequest {
    /// At least 2 characters.
    pub query_word: String,
    /// The scope object (`chat_type`, `id_list`, `chat_id`, `msg_type_list`, `sender`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat_info: Option<Value>,
    /// Unix seconds; the range is at most 31 days.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<i64>,
    /// Unix seconds; needs `start_time`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
    /// Undocumented (example `true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_stop_words: Option<bool>,
    /// Default 50, ≤ 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The previous page's cursor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}
impl SdkRequest for SearchMsgRequest {
    fn check(&self, api: &'static str) -> Result<(), SdkError> {
        limit(api, self.query_word.chars().count() >= 2, "query_word shorter than 2 characters")?;
        limit(api, self.limit.is_none_or(|l| (1..=MAX_SEARCH_LIMIT).contains(&l)), "limit outside 1–100")?;
        let range_ok = match (self.start_time, self.end_time) {
            (None, Some(_)) => false,
            (Some(s), Some(e)) => s < e && e - s <= 31 * 24 * 3600,
            _ => true,
        };
        limit(api, range_ok, "end_time needs an earlier start_time within 31 days")
    }
}

/// `search_contact_or_customer`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SearchContactRequest {
    /// 2–31 characters.
    pub query_word: String,
    /// 0 both, 1 staff, 2 customers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_user_type: Option<u8>,
    /// Default 50, ≤ 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The previous page's cursor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}
impl SdkRequest for SearchContactRequest {
    fn check(&self, api: &'static str) -> Result<(), SdkError> {
        let n = self.query_word.chars().count();
        limit(api, (2..32).contains(&n), "query_word outside 2–31 characters")?;
        limit(api, self.limit.is_none_or(|l| (1..=MAX_SEARCH_LIMIT).contains(&l)), "limit outside 1–100")
    }
}

/// `create_rule` and `update_rule` (`rule_id` only for updates).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RuleRequest {
    /// The rule to update (absent when creating).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    /// 1–20 characters (required when creating).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `{word_list (≤ 20 words of 1–32 characters), is_case_sensitive, match_rule, is_trim_msg}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyword: Option<Value>,
    /// `{semantics_list}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub semantics: Option<Value>,
    /// Who and which chats the rule applies to (§5.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applicable_range: Option<Value>,
}
impl SdkRequest for RuleRequest {
    fn check(&self, api: &'static str) -> Result<(), SdkError> {
        let name_ok = self.name.as_ref().is_none_or(|n| (1..=20).contains(&n.chars().count()));
        limit(api, name_ok, "name outside 1–20 characters")?;
        let words = self.keyword.as_ref().and_then(|k| k.get("word_list")).and_then(Value::as_array);
        let words_ok = words.is_none_or(|w| {
            w.len() <= 20 && w.iter().all(|w| w.as_str().is_some_and(|w| (1..=32).contains(&w.chars().count())))
        });
        limit(api, words_ok, "word_list must hold ≤ 20 words of 1–32 characters")
    }
}

/// The reply of `create_rule`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RuleCreated {
    /// The new rule.
    #[serde(default)]
    pub rule_id: String,
}

/// `get_rule_list`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RuleListRequest {
    /// The previous page's cursor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Default 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}
impl SdkRequest for RuleListRequest {}

/// The reply of `get_rule_list`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RuleList {
    /// `{rule_id, name, …}` each.
    #[serde(default)]
    pub rule_list: Vec<Value>,
    /// Whether more pages follow.
    #[serde(default, deserialize_with = "flag")]
    pub has_more: bool,
    /// The cursor of the next page.
    #[serde(default)]
    pub next_cursor: String,
}

/// A request carrying one `rule_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleIdRequest {
    /// The rule.
    pub rule_id: String,
}
impl SdkRequest for RuleIdRequest {}

/// The reply of `knowledge_base_list`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct KnowledgeBaseList {
    /// `{kb_id, kb_name}` each.
    #[serde(default)]
    pub kb_info_list: Vec<Value>,
}

/// A request carrying one `kb_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KbIdRequest {
    /// The knowledge set.
    pub kb_id: String,
}
impl SdkRequest for KbIdRequest {}

/// A document of a knowledge set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KbDoc {
    /// ≤ 200 bytes, with the file's extension.
    pub doc_name: String,
    /// 2 pdf, 4 xlsx Q&A, 5 doc, 6 docx, 101 web link.
    #[serde(rename = "type")]
    pub kind: u32,
    /// The uploaded file (all types but 101; ≤ 1024 bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_media_id: Option<String>,
    /// The page (type 101; ≤ 1024 bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web_url: Option<String>,
}

fn docs_ok(docs: &[KbDoc]) -> bool {
    (1..=MAX_KB_DOCS).contains(&docs.len())
        && docs.iter().all(|d| {
            d.doc_name.len() <= 200
                && within(d.file_media_id.as_ref(), 1024)
                && within(d.web_url.as_ref(), 1024)
                && if d.kind == 101 { d.web_url.is_some() } else { d.file_media_id.is_some() }
        })
}

/// `knowledge_base_create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KnowledgeBaseCreateRequest {
    /// 1–20 characters.
    pub kb_name: String,
    /// 1–1000 documents.
    pub doc_list: Vec<KbDoc>,
}
impl SdkRequest for KnowledgeBaseCreateRequest {
    fn check(&self, api: &'static str) -> Result<(), SdkError> {
        limit(api, (1..=20).contains(&self.kb_name.chars().count()), "kb_name outside 1–20 characters")?;
        limit(api, docs_ok(&self.doc_list), "doc_list must hold 1–1000 well-formed documents")
    }
}

/// `knowledge_base_add_doc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KnowledgeBaseAddDocRequest {
    /// The knowledge set.
    pub kb_id: String,
    /// 1–1000 documents.
    pub doc_list: Vec<KbDoc>,
}
impl SdkRequest for KnowledgeBaseAddDocRequest {
    fn check(&self, api: &'static str) -> Result<(), SdkError> {
        limit(api, docs_ok(&self.doc_list), "doc_list must hold 1–1000 well-formed documents")
    }
}

/// `knowledge_base_remove_doc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KnowledgeBaseRemoveDocRequest {
    /// The knowledge set.
    pub kb_id: String,
    /// 1–1000 document ids.
    pub docid_list: Vec<u64>,
}
impl SdkRequest for KnowledgeBaseRemoveDocRequest {
    fn check(&self, api: &'static str) -> Result<(), SdkError> {
        limit(api, (1..=MAX_KB_DOCS).contains(&self.docid_list.len()), "docid_list must hold 1–1000 ids")
    }
}

/// `knowledge_base_modify_name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KnowledgeBaseRenameRequest {
    /// The knowledge set.
    pub kb_id: String,
    /// 1–20 characters.
    pub kb_name: String,
}
impl SdkRequest for KnowledgeBaseRenameRequest {
    fn check(&self, api: &'static str) -> Result<(), SdkError> {
        limit(api, (1..=20).contains(&self.kb_name.chars().count()), "kb_name outside 1–20 characters")
    }
}

/// `create_chatdata_export_job`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportJobRequest {
    /// From the display component; single use, valid 5 minutes.
    pub code: String,
    /// The uploaded template.
    pub media_id: String,
}
impl SdkRequest for ExportJobRequest {}

/// A reply carrying a `jobid`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct JobCreated {
    /// The job.
    pub jobid: String,
}

/// A request carrying one `jobid` (export status and every model result).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobIdRequest {
    /// The job.
    pub jobid: String,
}
impl SdkRequest for JobIdRequest {
    fn check(&self, api: &'static str) -> Result<(), SdkError> {
        limit(api, !self.jobid.is_empty(), "empty jobid")
    }
}

/// The reply of `get_chatdata_export_job_status`, without `errcode`/`errmsg`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExportJobStatus {
    /// 1 waiting, 2 running, 3 done; and, when done, `result_errcode`, `result_errmsg`, `result_id`.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}
