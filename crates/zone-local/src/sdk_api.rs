//! `POST /sdk/invoke`: the SDK API surface the program reaches through `ZoneSdk::invoke`. The
//! envelope is verified like any local-codec message (a failure gets 403 and nothing runs, which the
//! program sees as −10006); then an armed fault may take over; then the API runs from [`APIS`] and
//! its reply is sealed back for the corp. A non-zero `Invoke` return code travels in
//! `ww-invoke-ret` with an empty message. This file also holds the two program ⇄ app plumbing APIs,
//! `spec_notify_app` and `program_async_job_call_back`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::faults::{self, Applied};
use super::model::TEN_MINUTES;
use super::req::{ApiError, ApiResult, Req, reply_of};
use super::{Shared, app_api, notify, sdk_kb, sdk_models, sdk_msgs, sdk_rules, sdk_search};
use zone_crypto::wire::{H_INVOKE_RET, InvokeMessage};

/// An API handler: the shared zone, the invoke context and the parsed request.
pub type Handler = fn(&Arc<Shared>, &InvokeMessage, &Req) -> ApiResult;

/// Every API the local zone serves, by `api_name` (sdk-data-apis.md §0, sdk-model-apis.md §0).
pub const APIS: &[(&str, Handler)] = &[
    ("program_async_job_call_back", program_async_job_call_back),
    ("spec_notify_app", spec_notify_app),
    ("sync_msg", sdk_msgs::sync_msg),
    ("get_msg_list_by_page_id", sdk_msgs::get_msg_list_by_page_id),
    ("get_group_chat", sdk_msgs::get_group_chat),
    ("get_agree_status_single", sdk_msgs::get_agree_status_single),
    ("get_agree_status_room", sdk_msgs::get_agree_status_room),
    ("set_hide_sensitiveinfo_config", sdk_msgs::set_hide_sensitiveinfo_config),
    ("get_hide_sensitiveinfo_config", sdk_msgs::get_hide_sensitiveinfo_config),
    ("search_chat", sdk_search::search_chat),
    ("search_msg", sdk_search::search_msg),
    ("search_contact_or_customer", sdk_search::search_contact_or_customer),
    ("create_rule", sdk_rules::create_rule),
    ("get_rule_list", sdk_rules::get_rule_list),
    ("get_rule_detail", sdk_rules::get_rule_detail),
    ("update_rule", sdk_rules::update_rule),
    ("delete_rule", sdk_rules::delete_rule),
    ("get_hit_msg_list", sdk_rules::get_hit_msg_list),
    ("knowledge_base_list", sdk_kb::knowledge_base_list),
    ("document_list", sdk_kb::knowledge_base_list),
    ("knowledge_base_create", sdk_kb::knowledge_base_create),
    ("knowledge_base_detail", sdk_kb::knowledge_base_detail),
    ("knowledge_base_add_doc", sdk_kb::knowledge_base_add_doc),
    ("knowledge_base_remove_doc", sdk_kb::knowledge_base_remove_doc),
    ("knowledge_base_modify_name", sdk_kb::knowledge_base_modify_name),
    ("knowledge_base_delete", sdk_kb::knowledge_base_delete),
    ("create_chatdata_export_job", sdk_kb::create_chatdata_export_job),
    ("get_chatdata_export_job_status", sdk_kb::get_chatdata_export_job_status),
    ("create_sentiment_task", sdk_models::create_sentiment_task),
    ("get_sentiment_result", sdk_models::get_result),
    ("create_summary_task", sdk_models::create_summary_task),
    ("get_summary_result", sdk_models::get_result),
    ("create_customer_tag_task", sdk_models::create_customer_tag_task),
    ("get_customer_tag_result", sdk_models::get_result),
    ("create_recommend_dialog_task", sdk_models::create_recommend_dialog_task),
    ("get_recommend_dialog_result", sdk_models::get_result),
    ("create_ww_model_task", sdk_models::create_ww_model_task),
    ("get_ww_model_result", sdk_models::get_result),
    ("create_spam_task", sdk_models::create_spam_task),
    ("get_spam_result", sdk_models::get_result),
    ("create_model_task", sdk_models::create_model_task),
    ("get_model_task_result", sdk_models::get_task_result),
    ("create_private_task", sdk_models::create_model_task),
    ("get_private_task_result", sdk_models::get_task_result),
    ("create_program_task", sdk_models::create_program_task),
    ("get_program_task_result", sdk_models::get_task_result),
];

/// The `/sdk/invoke` route.
pub fn router() -> Router<Arc<Shared>> {
    Router::new().route("/sdk/invoke", post(invoke))
}

async fn invoke(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let opened = match shared.codec.open(&headers, &body) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(code = e.code(), "sdk invoke refused by verification");
            return rejected();
        }
    };
    let Ok(msg) = serde_json::from_slice::<InvokeMessage>(&opened.message) else {
        tracing::warn!("sdk invoke message is not the documented JSON");
        return rejected();
    };
    if msg.corp_id != opened.receive_id {
        return rejected();
    }
    let started = std::time::Instant::now();
    let fault = shared.faults().take(&msg.api);
    let fault_name = fault.as_ref().map(|f| format!("{f:?}"));
    let record = |errcode: i64| {
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        shared.timeline.sdk_call(&msg.ability_id, &msg.job_info, &msg.api, errcode, ms, fault_name.clone());
    };
    let reply = match faults::apply(fault).await {
        Applied::Raw(response) => {
            record(i64::from(response.status().as_u16()));
            return response;
        }
        Applied::InvokeRet(ret) => {
            record(i64::from(ret));
            return sealed(&shared, "", &msg.corp_id, Some(ret));
        }
        Applied::Reply(v) => v,
        Applied::Proceed { pad, lose_reply } => {
            let reply = faults::pad_reply(handle(&shared, &msg), pad);
            if lose_reply {
                record(reply["errcode"].as_i64().unwrap_or_default());
                return faults::dropped();
            }
            reply
        }
    };
    // One line per SDK call is the program's request rate again: DEBUG, so that the zone, which
    // shares the machine with the program in every benchmark, does not pay for it by default.
    // Refusals and faults are logged above or by the control that armed them.
    let errcode = reply["errcode"].as_i64().unwrap_or_default();
    tracing::debug!(api = %msg.api, errcode, "sdk invoke answered");
    record(errcode);
    sealed(&shared, &reply.to_string(), &msg.corp_id, None)
}

/// Runs one API and returns its reply object.
fn handle(shared: &Arc<Shared>, msg: &InvokeMessage) -> Value {
    if msg.corp_id != shared.cfg.corp_id {
        return ApiError::new(40013, "invalid corpid").to_json();
    }
    if msg.agent_id != shared.cfg.agent_id {
        return ApiError::new(40056, "invalid agentid").to_json();
    }
    let Some((_, handler)) = APIS.iter().find(|(name, _)| *name == msg.api) else {
        return ApiError::invalid("api", "unknown api name").to_json();
    };
    reply_of(Req::parse(&msg.request).and_then(|req| handler(shared, msg, &req)))
}

fn sealed(shared: &Shared, message: &str, corp_id: &str, ret: Option<i32>) -> Response {
    let sealed = shared.codec.seal(message.as_bytes(), corp_id);
    let mut res = Response::new(axum::body::Body::from(sealed.body));
    let h = res.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    for (k, v) in sealed.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            h.insert(name, value);
        }
    }
    if let Some(ret) = ret {
        h.insert(H_INVOKE_RET, HeaderValue::from(ret));
    }
    res
}

fn rejected() -> Response {
    (StatusCode::FORBIDDEN, [("content-type", "application/json")], r#"{"error":"rejected"}"#).into_response()
}

/// `spec_notify_app` (sdk-data-apis.md §2.2): `notify_id` ≤ 64 bytes (minted when absent), valid 10
/// minutes; `notify_scene` 0–255, a value out of range is ignored. The XML push runs after the reply.
fn spec_notify_app(shared: &Arc<Shared>, msg: &InvokeMessage, req: &Req) -> ApiResult {
    let given = req.str_max("notify_id", 64)?.map(str::to_owned);
    let scene = req.int_opt("notify_scene")?.and_then(|s| u8::try_from(s).ok());
    let now = shared.clock.now();
    let notify_id = {
        let mut data = shared.data();
        let id = given.unwrap_or_else(|| data.mint("NID"));
        data.notify_ids.retain(|_, (_, exp)| *exp > now);
        data.notify_ids.insert(id.clone(), (scene, now + TEN_MINUTES));
        id
    };
    shared.timeline.link_notify(&msg.ability_id, &msg.job_info, &notify_id);
    notify::record(shared, &notify_id, scene);
    let (shared, id) = (shared.clone(), notify_id.clone());
    tokio::spawn(async move { notify::push(&shared, id, scene).await });
    Ok(json!({ "notify_id": notify_id }))
}

/// `program_async_job_call_back` (sdk-data-apis.md §2.1): reports the result of the job whose
/// `job_info` is the invoke context's. A result that breaks the ability's output protocol is kept,
/// and the caller later sees 790014.
fn program_async_job_call_back(shared: &Arc<Shared>, msg: &InvokeMessage, req: &Req) -> ApiResult {
    let errcode = req.int_opt("errcode")?.ok_or_else(|| ApiError::invalid("errcode", "is required"))?;
    let result = req.str_opt("result")?.unwrap_or_default().to_owned();
    if msg.job_info.is_empty() {
        return Err(ApiError::invalid("job_info", "the call is not made in a job context"));
    }
    let mut data = shared.data();
    let job = data.program_job_by_info(&msg.job_info).ok_or_else(|| ApiError::invalid("job_info", "no such job"))?;
    match &job.report {
        // A repeated report of the same result (the program could not record that the first
        // one arrived) changes nothing and is answered as the first was.
        Some((code, text)) if *code == errcode && *text == result => return Ok(json!({})),
        Some(_) => return Err(ApiError::invalid("job_info", "the job's result was already reported")),
        None => {}
    }
    job.protocol_mismatch = !app_api::output_matches(&shared.cfg, &job.ability_id, &result);
    job.report = Some((errcode, result));
    tracing::info!(jobid = %job.jobid, errcode, "async job reported");
    shared.timeline.reported(&msg.job_info, errcode);
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_api_has_exactly_one_handler() {
        for &api in zone_crypto::wire::SDK_API_INVENTORY {
            assert_eq!(APIS.iter().filter(|(n, _)| *n == api).count(), 1, "{api}");
        }
    }
}
