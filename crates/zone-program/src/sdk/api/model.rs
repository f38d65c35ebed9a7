//! Request and reply types of the model APIs (`protocol/sdk-model-apis.md`). Every model takes an
//! explicit `msg_list` of at most 1000 `{msgid, encrypt_info: {secret_key}}` (§1.1); the caller
//! never sends content.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroize as _;

use super::{SdkRequest, limit};
use crate::sdk::SdkError;

/// Most messages of one model task (§1.1).
pub const MAX_MODEL_MESSAGES: usize = 1000;
/// Most `var_args` of a general-model task (§6).
pub const MAX_VAR_ARGS: usize = 50;

/// `{secret_key}` of a model input message.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct EncryptInfo {
    /// The unwrapped message key: never log it.
    pub secret_key: String,
}

impl std::fmt::Debug for EncryptInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncryptInfo(..)")
    }
}

impl Drop for EncryptInfo {
    fn drop(&mut self) {
        self.secret_key.zeroize();
    }
}

/// One message of a model input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelMsg {
    /// Its id.
    pub msgid: String,
    /// Its key.
    pub encrypt_info: EncryptInfo,
}

impl ModelMsg {
    /// `{msgid, encrypt_info: {secret_key}}`.
    pub fn new(msgid: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Self { msgid: msgid.into(), encrypt_info: EncryptInfo { secret_key: secret_key.into() } }
    }
}

fn messages_ok(list: &[ModelMsg]) -> bool {
    list.len() <= MAX_MODEL_MESSAGES
}

/// A model that takes only `msg_list` (sentiment, summary, spam).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MsgListTaskRequest {
    /// 1–1000 messages.
    pub msg_list: Vec<ModelMsg>,
}
impl SdkRequest for MsgListTaskRequest {
    fn check(&self, api: &'static str) -> Result<(), SdkError> {
        limit(api, !self.msg_list.is_empty() && messages_ok(&self.msg_list), "msg_list must hold 1–1000 messages")
    }
}

/// `create_customer_tag_task`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CustomerTagTaskRequest {
    /// `{group_id}` each.
    pub tag_group_list: Vec<TagGroup>,
    /// 1–1000 messages of one customer.
    pub msg_list: Vec<ModelMsg>,
    /// Which LLM (WeCom's default when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
}
impl SdkRequest for CustomerTagTaskRequest {
    fn check(&self, api: &'static str) -> Result<(), SdkError> {
        limit(api, !self.tag_group_list.is_empty(), "tag_group_list is empty")?;
        limit(api, !self.msg_list.is_empty() && messages_ok(&self.msg_list), "msg_list must hold 1–1000 messages")
    }
}

/// A customer tag group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagGroup {
    /// Its id.
    pub group_id: String,
}

/// `create_recommend_dialog_task`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecommendDialogTaskRequest {
    /// The knowledge set (from `knowledge_base_list`).
    pub kb_id: String,
    /// 1–1000 messages.
    pub msg_list: Vec<ModelMsg>,
}
impl SdkRequest for RecommendDialogTaskRequest {
    fn check(&self, api: &'static str) -> Result<(), SdkError> {
        limit(api, !self.kb_id.is_empty(), "empty kb_id")?;
        limit(api, !self.msg_list.is_empty() && messages_ok(&self.msg_list), "msg_list must hold 1–1000 messages")
    }
}

/// A `{name, value}` of a general-model prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VarArg {
    /// The placeholder `{$name$}`.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// `create_ww_model_task`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WwModelTaskRequest {
    /// Which configured prompt.
    pub ability_id: String,
    /// Knowledge set for `{knowledge}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kb_id: Option<String>,
    /// Retrieval words for the knowledge set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kb_retrieval_words: Option<String>,
    /// Tag groups for `{tagjson}`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tag_group_list: Vec<TagGroup>,
    /// Up to 1000 messages for `{chat}`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub msg_list: Vec<ModelMsg>,
    /// Which LLM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// Whether to return the model's reasoning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub need_think_result: Option<bool>,
    /// Up to 50 `{$name$}` values.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub var_args: Vec<VarArg>,
}
impl SdkRequest for WwModelTaskRequest {
    fn check(&self, api: &'static str) -> Result<(), SdkError> {
        limit(api, !self.ability_id.is_empty(), "empty ability_id")?;
        limit(api, messages_ok(&self.msg_list), "msg_list longer than 1000")?;
        limit(api, self.var_args.len() <= MAX_VAR_ARGS, "more than 50 var_args")
    }
}

/// `create_model_task` / `create_private_task` (own model: `model_id`) and `create_program_task`
/// (own program: `program_id`). Fields beyond these (`kb_id`, `escape_type`, …) go in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OwnTaskRequest {
    /// The uploaded model (own model).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// The linked program (own program).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program_id: Option<String>,
    /// The ability, which picks the input and output protocols.
    pub ability_id: String,
    /// Up to 1000 messages.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub msg_list: Vec<ModelMsg>,
    /// Further documented fields (`kb_id`, `service_kb_id`, `escape_type`, `request_data`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
impl SdkRequest for OwnTaskRequest {
    fn check(&self, api: &'static str) -> Result<(), SdkError> {
        limit(api, !self.ability_id.is_empty(), "empty ability_id")?;
        limit(api, messages_ok(&self.msg_list), "msg_list longer than 1000")
    }
}

/// The reply of every `create_*` model API.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TaskCreated {
    /// The task.
    pub jobid: String,
    /// Refused messages (`{errcode, errmsg, msgid, encrypt_info}`), as answered.
    #[serde(default)]
    pub fail_list: Vec<Value>,
}

/// The reply of every `get_*` model API: `status` (WeCom models: 0 pending, 1 done, 2 failed; absent
/// for the own model and program, which answer `response_errcode` when done), `fail_list` and the
/// model's own fields.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TaskResult {
    /// 0 pending, 1 done, 2 failed (WeCom-built models only).
    #[serde(default)]
    pub status: Option<i64>,
    /// Messages the model could not use.
    #[serde(default)]
    pub fail_list: Vec<Value>,
    /// The model's fields (`analyze_result_list`, `summary`, `response_errcode`, `response_data`, …).
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}
