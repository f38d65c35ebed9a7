//! The messages of the local codec's channel between the program and the local zone (DESIGN.md "The
//! local codec"): the decrypted callback and `/sdk/invoke` messages, and the reply header of a failed
//! `Invoke`. Both sides build and read them from this one definition.

/// Reply header carrying a non-zero `Invoke` return code.
pub const H_INVOKE_RET: &str = "ww-invoke-ret";

/// Which kind of request arrived (`call_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(into = "i64", try_from = "i64")]
pub enum CallType {
    /// 1: an app called the program (`sync_call_program` / `async_program_task`).
    AppCall,
    /// 2: a WeCom event.
    Event,
}

impl From<CallType> for i64 {
    fn from(c: CallType) -> i64 {
        match c {
            CallType::AppCall => 1,
            CallType::Event => 2,
        }
    }
}

impl TryFrom<i64> for CallType {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        match v {
            1 => Ok(Self::AppCall),
            2 => Ok(Self::Event),
            other => Err(format!("unknown call_type {other}")),
        }
    }
}

/// The decrypted message of a callback (DESIGN.md "The local codec").
#[derive(serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackMessage {
    /// The corp (also the receive id).
    pub corp_id: String,
    /// The app's agent id.
    pub agent_id: i64,
    /// 1 or 2.
    pub call_type: CallType,
    /// Async job?
    #[serde(default)]
    pub is_async: bool,
    /// Opaque job context.
    #[serde(default)]
    pub job_info: String,
    /// The ability called.
    #[serde(default)]
    pub ability_id: String,
    /// The notify_id passed by the app.
    #[serde(default)]
    pub notify_id: String,
    /// `request_data` or the event JSON.
    pub data: String,
}

/// The decrypted message of an `/sdk/invoke` request.
#[derive(serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct InvokeMessage {
    /// Corp id of the context.
    pub corp_id: String,
    /// Agent id of the context.
    pub agent_id: i64,
    /// Ability id of the context.
    #[serde(default)]
    pub ability_id: String,
    /// Job context.
    #[serde(default)]
    pub job_info: String,
    /// The API name.
    pub api: String,
    /// The request JSON, as a string.
    pub request: String,
}

/// WeCom's global errcode for an invalid parameter: one is missing, of the wrong type or out of its
/// limits (for `program_async_job_call_back` also an unknown `job_info`, or a result already
/// reported). No retry of the same request can change it.
pub const INVALID_PARAMETER: i64 = 40_058;

/// The SDK API names of WeCom's inventory tables, as of the protocol files' revision this project
/// was built on (source: `protocol/sdk-data-apis.md` §0 and `protocol/sdk-model-apis.md` §0): the
/// program's whitelist and the local zone's handlers are both checked against it.
pub const SDK_API_INVENTORY: &[&str] = &[
    "program_async_job_call_back",
    "spec_notify_app",
    "sync_msg",
    "get_msg_list_by_page_id",
    "get_group_chat",
    "get_agree_status_single",
    "get_agree_status_room",
    "set_hide_sensitiveinfo_config",
    "get_hide_sensitiveinfo_config",
    "search_chat",
    "search_msg",
    "search_contact_or_customer",
    "create_rule",
    "get_rule_list",
    "get_rule_detail",
    "update_rule",
    "delete_rule",
    "get_hit_msg_list",
    "knowledge_base_list",
    "document_list",
    "knowledge_base_create",
    "knowledge_base_detail",
    "knowledge_base_add_doc",
    "knowledge_base_remove_doc",
    "knowledge_base_modify_name",
    "knowledge_base_delete",
    "create_chatdata_export_job",
    "get_chatdata_export_job_status",
    "create_sentiment_task",
    "get_sentiment_result",
    "create_summary_task",
    "get_summary_result",
    "create_customer_tag_task",
    "get_customer_tag_result",
    "create_recommend_dialog_task",
    "get_recommend_dialog_result",
    "create_ww_model_task",
    "get_ww_model_result",
    "create_model_task",
    "get_model_task_result",
    "create_program_task",
    "get_program_task_result",
    "create_spam_task",
    "get_spam_result",
];
