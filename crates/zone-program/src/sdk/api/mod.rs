//! The typed SDK client: one table ([`sdk_apis!`] below) of the documented SDK APIs
//! (`protocol/sdk-data-apis.md` §0 and `protocol/sdk-model-apis.md` §0, the 46 names of
//! [`crate::abilities::catalog::SDK_APIS`]) → a serde request type, a response type and a method on
//! [`Sdk`], the handle a handler gets from its context:
//!
//! ```no_run
//! # async fn demo(sdk: zone_program::sdk::api::Sdk) -> Result<(), zone_program::sdk::SdkError> {
//! use zone_program::sdk::api::SyncMsgRequest;
//! let page = sdk.sync_msg(SyncMsgRequest { limit: Some(1000), ..Default::default() }).await?;
//! for id in page.page_ids() { /* get_msg_list_by_page_id … */ }
//! # Ok(()) }
//! ```
//!
//! Every typed call checks the request against its documented limits first ([`SdkRequest::check`]:
//! a request over a limit is [`SdkError::Limit`] and never sent), requires `errcode` 0 in the reply
//! ([`SdkError::Errcode`] otherwise) and decodes the reply ([`SdkError::BadResponse`] when it does not
//! fit). [`Sdk::invoke`] stays for pass-through: the raw request text in, the raw reply text out.

mod data;
mod model;

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

pub use data::*;
pub use model::*;

use super::{CallContext, SdkError, ZoneSdk, require_ok};

/// A request of the SDK APIs: serialisable, with its documented limits.
pub trait SdkRequest: Serialize + Send + Sync {
    /// Checks the documented limits for `api`; the default checks nothing.
    fn check(&self, api: &'static str) -> Result<(), SdkError> {
        let _ = api;
        Ok(())
    }
}

/// The zone SDK in one call context (the request's, or the job's): typed methods, one per
/// documented API, and [`Sdk::invoke`] for pass-through. Cheap to clone.
#[derive(Clone)]
pub struct Sdk {
    backend: Arc<dyn ZoneSdk>,
    ctx: CallContext,
}

impl std::fmt::Debug for Sdk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sdk").field("ctx", &self.ctx).finish_non_exhaustive()
    }
}

impl Sdk {
    /// A handle on `backend` that makes its calls in `ctx`.
    pub fn new(backend: Arc<dyn ZoneSdk>, ctx: CallContext) -> Self {
        Self { backend, ctx }
    }

    /// The context the calls are made in.
    pub fn context(&self) -> &CallContext {
        &self.ctx
    }

    /// The backend (bounded by the SDK pool).
    pub fn backend(&self) -> &Arc<dyn ZoneSdk> {
        &self.backend
    }

    /// Pass-through: calls `api` with the JSON text `request_json` and returns the reply text as
    /// answered (a non-zero `errcode` inside is not an error here).
    pub async fn invoke(&self, api: &str, request_json: &str) -> Result<String, SdkError> {
        self.backend.invoke(&self.ctx, api, request_json).await
    }

    /// Calls `api` with `request`: checks its limits, requires `errcode` 0, decodes the reply.
    /// The typed methods below are this with the API's name and types filled in.
    pub async fn call<R: SdkRequest, T: DeserializeOwned>(
        &self,
        api: &'static str,
        request: &R,
    ) -> Result<T, SdkError> {
        request.check(api)?;
        let text = serde_json::to_string(request).map_err(|_| SdkError::BadResponse)?;
        let reply = self.invoke(api, &text).await?;
        let value = require_ok(api, &reply)?;
        serde_json::from_value(value).map_err(|_| SdkError::BadResponse)
    }
}

/// Fails with [`SdkError::Limit`] unless `ok`.
pub(crate) fn limit(api: &'static str, ok: bool, what: &'static str) -> Result<(), SdkError> {
    if ok { Ok(()) } else { Err(SdkError::Limit { api, what }) }
}

/// `0`/`1` or `false`/`true` (the docs say int; some replies carry a bool); absent is false.
pub(crate) fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Int(i64),
        Bool(bool),
        Null(()),
    }
    Ok(match Flag::deserialize(d)? {
        Flag::Int(i) => i == 1,
        Flag::Bool(b) => b,
        Flag::Null(()) => false,
    })
}

/// The table: `method => "api_name": Request -> Response;`, in catalogue order. Generates the
/// [`SdkRequest`] impl of each request type, the method on [`Sdk`], and [`TYPED_APIS`].
macro_rules! sdk_apis {
    ($( $(#[$doc:meta])* $method:ident => $api:literal : $req:ty => $rsp:ty; )*) => {
        /// Every API name of the table, in table order (a test checks it against the catalogue).
        pub const TYPED_APIS: &[&str] = &[$($api),*];

        impl Sdk {
            $(
                $(#[$doc])*
                pub async fn $method(&self, request: $req) -> Result<$rsp, SdkError> {
                    self.call($api, &request).await
                }
            )*
        }
    };
}

sdk_apis! {
    /// `program_async_job_call_back`: reports an async job's result (WeCom doc 100039).
    program_async_job_call_back => "program_async_job_call_back": JobCallBackRequest => Ack;
    /// `spec_notify_app`: notifies the app (WeCom doc 101383).
    spec_notify_app => "spec_notify_app": SpecNotifyAppRequest => SpecNotifyAppResponse;
    /// `sync_msg`: one page of message references (WeCom doc 101365).
    sync_msg => "sync_msg": SyncMsgRequest => MsgPage;
    /// `get_msg_list_by_page_id`: the messages of one `page_id_list` entry.
    get_msg_list_by_page_id => "get_msg_list_by_page_id": PageIdRequest => MsgPage;
    /// `get_group_chat`: an internal group's creator and members (WeCom doc 101367).
    get_group_chat => "get_group_chat": ChatIdRequest => GroupChat;
    /// `get_agree_status_single`: 1:1 archiving consent (WeCom doc 101366).
    get_agree_status_single => "get_agree_status_single": AgreeSingleRequest => AgreeInfo;
    /// `get_agree_status_room`: group archiving consent (WeCom doc 101366).
    get_agree_status_room => "get_agree_status_room": ChatIdRequest => AgreeInfo;
    /// `set_hide_sensitiveinfo_config`: the display component's masking for a member (WeCom doc 100055).
    set_hide_sensitiveinfo_config => "set_hide_sensitiveinfo_config": SetHideConfigRequest => Ack;
    /// `get_hide_sensitiveinfo_config`: reads that masking.
    get_hide_sensitiveinfo_config => "get_hide_sensitiveinfo_config": UserIdRequest => HideConfigResponse;
    /// `search_chat`: group chats by name (WeCom doc 101368).
    search_chat => "search_chat": SearchRequest => Listing;
    /// `search_msg`: messages by content (WeCom doc 99818).
    search_msg => "search_msg": SearchMsgRequest => Listing;
    /// `search_contact_or_customer`: staff or customers by name (WeCom doc 101370).
    search_contact_or_customer => "search_contact_or_customer": SearchContactRequest => Listing;
    /// `create_rule`: a keyword rule (WeCom doc 99829).
    create_rule => "create_rule": RuleRequest => RuleCreated;
    /// `get_rule_list`: one page of keyword rules.
    get_rule_list => "get_rule_list": RuleListRequest => RuleList;
    /// `get_rule_detail`: one keyword rule.
    get_rule_detail => "get_rule_detail": RuleIdRequest => Listing;
    /// `update_rule`: changes a keyword rule.
    update_rule => "update_rule": RuleRequest => Ack;
    /// `delete_rule`: deletes a keyword rule.
    delete_rule => "delete_rule": RuleIdRequest => Ack;
    /// `get_hit_msg_list`: one page of keyword-rule hits (WeCom doc 99830).
    get_hit_msg_list => "get_hit_msg_list": HitMsgListRequest => MsgPage;
    /// `knowledge_base_list`: the knowledge sets authorised to the app (WeCom doc 100030).
    knowledge_base_list => "knowledge_base_list": Empty => KnowledgeBaseList;
    /// `document_list`: the old name of `knowledge_base_list`.
    document_list => "document_list": Empty => KnowledgeBaseList;
    /// `knowledge_base_create`: a knowledge set with its documents.
    knowledge_base_create => "knowledge_base_create": KnowledgeBaseCreateRequest => Listing;
    /// `knowledge_base_detail`: a knowledge set and its documents.
    knowledge_base_detail => "knowledge_base_detail": KbIdRequest => Listing;
    /// `knowledge_base_add_doc`: adds documents to a knowledge set.
    knowledge_base_add_doc => "knowledge_base_add_doc": KnowledgeBaseAddDocRequest => Listing;
    /// `knowledge_base_remove_doc`: removes documents from a knowledge set.
    knowledge_base_remove_doc => "knowledge_base_remove_doc": KnowledgeBaseRemoveDocRequest => Ack;
    /// `knowledge_base_modify_name`: renames a knowledge set.
    knowledge_base_modify_name => "knowledge_base_modify_name": KnowledgeBaseRenameRequest => Ack;
    /// `knowledge_base_delete`: deletes a knowledge set.
    knowledge_base_delete => "knowledge_base_delete": KbIdRequest => Ack;
    /// `create_chatdata_export_job`: exports chats with a template (WeCom doc 101380).
    create_chatdata_export_job => "create_chatdata_export_job": ExportJobRequest => JobCreated;
    /// `get_chatdata_export_job_status`: an export job's status.
    get_chatdata_export_job_status => "get_chatdata_export_job_status": JobIdRequest => ExportJobStatus;
    /// `create_sentiment_task`: sentiment of each message (sdk-model-apis.md §2).
    create_sentiment_task => "create_sentiment_task": MsgListTaskRequest => TaskCreated;
    /// `get_sentiment_result`.
    get_sentiment_result => "get_sentiment_result": JobIdRequest => TaskResult;
    /// `create_summary_task`: a summary of the messages (§3).
    create_summary_task => "create_summary_task": MsgListTaskRequest => TaskCreated;
    /// `get_summary_result`.
    get_summary_result => "get_summary_result": JobIdRequest => TaskResult;
    /// `create_customer_tag_task`: customer tags from one customer's messages (§4).
    create_customer_tag_task => "create_customer_tag_task": CustomerTagTaskRequest => TaskCreated;
    /// `get_customer_tag_result`.
    get_customer_tag_result => "get_customer_tag_result": JobIdRequest => TaskResult;
    /// `create_recommend_dialog_task`: a reply recommendation from a knowledge set (§5).
    create_recommend_dialog_task => "create_recommend_dialog_task": RecommendDialogTaskRequest => TaskCreated;
    /// `get_recommend_dialog_result`.
    get_recommend_dialog_result => "get_recommend_dialog_result": JobIdRequest => TaskResult;
    /// `create_ww_model_task`: the general model with a configured prompt (§6).
    create_ww_model_task => "create_ww_model_task": WwModelTaskRequest => TaskCreated;
    /// `get_ww_model_result`.
    get_ww_model_result => "get_ww_model_result": JobIdRequest => TaskResult;
    /// `create_model_task`: the provider's own uploaded model (§7).
    create_model_task => "create_model_task": OwnTaskRequest => TaskCreated;
    /// `get_model_task_result`.
    get_model_task_result => "get_model_task_result": JobIdRequest => TaskResult;
    /// `create_private_task`: the Java SDK's name of `create_model_task`.
    create_private_task => "create_private_task": OwnTaskRequest => TaskCreated;
    /// `get_private_task_result`: the Java SDK's name of `get_model_task_result`.
    get_private_task_result => "get_private_task_result": JobIdRequest => TaskResult;
    /// `create_program_task`: an ability of a program linked to the app (§8).
    create_program_task => "create_program_task": OwnTaskRequest => TaskCreated;
    /// `get_program_task_result`.
    get_program_task_result => "get_program_task_result": JobIdRequest => TaskResult;
    /// `create_spam_task`: anti-spam over the messages (§9).
    create_spam_task => "create_spam_task": MsgListTaskRequest => TaskCreated;
    /// `get_spam_result`.
    get_spam_result => "get_spam_result": JobIdRequest => TaskResult;
}

#[cfg(test)]
mod tests;
