//! The app API as WeCom serves it (app-side.md §2): `GET /cgi-bin/gettoken` and
//! `POST /cgi-bin/chatdata/<name>?access_token=…`. Calls of the program (`sync_call_program`,
//! `async_program_task`) are checked against the ability protocols configured in
//! `[[local_zone.abilities]]`: request_data that does not match the input protocol gets 790016, output
//! that does not match the output protocol gets 790014 ("match" = every key of the data appears in
//! the protocol example with the same JSON type, recursively).
//!
//! Codes: 41001 missing / 40014 unknown / 42001 expired access_token; 41002/40013 corpid, 41004/40001
//! corpsecret (gettoken); 40058 a bad parameter (named in errmsg: unknown program_id or ability_id, an
//! invalid or expired notify_id, …); 47001 a body that is not a JSON object; 710674 the program could
//! not be reached or its reply did not verify.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::Rng;
use rand::distributions::Alphanumeric;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::Shared;
use super::faults::{self, Applied};
use super::model::{JobKind, ProgramJob};
use super::program::{self, CONNECT_FAIL, ProgramCall};
use super::req::{ApiError, ApiResult, Req, reply_of};
use super::sdk_msgs::{self, cursor_of, parse_cursor};
use crate::config::LocalZoneConfig;
use zone_crypto::wire::InvokeMessage;

/// `request_data` does not match the ability's input protocol.
pub const INPUT_PROTOCOL_MISMATCH: i64 = 790_016;
/// The program's output does not match the ability's output protocol.
pub const OUTPUT_PROTOCOL_MISMATCH: i64 = 790_014;

/// The app API routes.
pub fn router() -> Router<Arc<Shared>> {
    Router::new().route("/cgi-bin/gettoken", get(gettoken)).route("/cgi-bin/chatdata/{name}", post(chatdata))
}

type Params = Query<HashMap<String, String>>;

async fn gettoken(State(shared): State<Arc<Shared>>, Query(q): Params) -> Response {
    let fault = shared.faults().take("gettoken");
    let reply = match faults::apply(fault).await {
        Applied::Raw(r) => return r,
        Applied::Reply(v) => v,
        Applied::InvokeRet(ret) => ApiError::new(i64::from(ret), "fault injected").to_json(),
        Applied::Proceed { pad, lose_reply } => {
            let reply = faults::pad_reply(reply_of(issue_token(&shared, &q)), pad);
            if lose_reply {
                return faults::dropped();
            }
            reply
        }
    };
    axum::Json(reply).into_response()
}

fn issue_token(shared: &Shared, q: &HashMap<String, String>) -> ApiResult {
    let corpid = q.get("corpid").filter(|s| !s.is_empty()).ok_or_else(|| ApiError::new(41002, "corpid missing"))?;
    if *corpid != shared.cfg.corp_id {
        return Err(ApiError::new(40013, "invalid corpid"));
    }
    let secret =
        q.get("corpsecret").filter(|s| !s.is_empty()).ok_or_else(|| ApiError::new(41004, "corpsecret missing"))?;
    if !zone_crypto::cipher::ct_eq(secret.as_bytes(), shared.cfg.corp_secret.expose_secret().as_bytes()) {
        return Err(ApiError::new(40001, "invalid credential: corpsecret"));
    }
    let token: String = rand::thread_rng().sample_iter(&Alphanumeric).take(64).map(char::from).collect();
    let ttl = shared.cfg.access_token_ttl_secs as i64;
    let now = shared.clock.now();
    let mut data = shared.data();
    data.access_tokens.retain(|_, exp| *exp > now);
    data.access_tokens.insert(token.clone(), now + ttl);
    Ok(json!({ "access_token": token, "expires_in": ttl }))
}

async fn chatdata(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> Response {
    let fault = shared.faults().take(&name);
    let reply = match faults::apply(fault).await {
        Applied::Raw(r) => return r,
        Applied::Reply(v) => v,
        Applied::InvokeRet(ret) => ApiError::new(i64::from(ret), "fault injected").to_json(),
        Applied::Proceed { pad, lose_reply } => {
            let reply = faults::pad_reply(reply_of(route(&shared, &name, &q, &body).await), pad);
            if lose_reply {
                tracing::info!(api = %name, "fault: the call was handled and its reply is lost");
                return faults::dropped();
            }
            reply
        }
    };
    tracing::info!(api = %name, errcode = reply["errcode"].as_i64().unwrap_or_default(), "app api answered");
    axum::Json(reply).into_response()
}

/// WeCom global code 48002 (API forbidden), answered to an unknown `/cgi-bin/chatdata/…` endpoint.
pub const UNKNOWN_API: i64 = 48002;

async fn route(shared: &Arc<Shared>, name: &str, q: &HashMap<String, String>, body: &[u8]) -> ApiResult {
    check_access_token(shared, q.get("access_token").map(String::as_str))?;
    let req = Req::parse(std::str::from_utf8(body).unwrap_or("\u{0}"))?;
    match name {
        "sync_call_program" => sync_call_program(shared, &req, "app").await,
        "async_program_task" => async_program_task(shared, &req, "app"),
        "async_program_result" => async_program_result(shared, &req),
        "set_public_key" => set_public_key(shared, &req),
        "set_receive_callback" => set_receive_callback(shared, &req),
        "get_corp_auth_info" => get_corp_auth_info(shared),
        "set_log_level" => set_log_level(shared, &req),
        "get_log_level" => get_log_level(shared, &req),
        "get_auth_user_list" => get_auth_user_list(shared, &req),
        "set_hide_sensitiveinfo_config" | "get_hide_sensitiveinfo_config" => rest_twin(shared, name, &req),
        "open_debug_mode" | "check_debug_mode" | "close_debug_mode" => Err(ApiError::new(
            UNKNOWN_API,
            "the local zone does not emulate debug mode (open_debug_mode, check_debug_mode, close_debug_mode): it \
             exists only in the real zone, where it sends the zone's requests to a program you run with \
             `serve --sdk native --debug-token`; against the local zone the program already runs locally",
        )),
        // WeCom's global 48002 (API forbidden); what the real zone answers an unknown path with is
        // undocumented (README "choices where the documentation is silent").
        _ => Err(ApiError::new(UNKNOWN_API, "api forbidden: no such chatdata api in the local zone")),
    }
}

fn check_access_token(shared: &Shared, token: Option<&str>) -> Result<(), ApiError> {
    let token = token.filter(|t| !t.is_empty()).ok_or_else(|| ApiError::new(41001, "access_token missing"))?;
    match shared.data().access_tokens.get(token) {
        None => Err(ApiError::new(40014, "invalid access_token")),
        Some(exp) if *exp <= shared.clock.now() => Err(ApiError::new(42001, "access_token expired")),
        Some(_) => Ok(()),
    }
}

/// The validated target of a program call.
struct Target {
    ability_id: String,
    request_data: String,
}

fn target(shared: &Shared, req: &Req) -> Result<Target, ApiError> {
    let program_id = req.str_req("program_id", 64)?;
    if program_id != shared.cfg.program_id {
        return Err(ApiError::invalid("program_id", "no such program linked to the app"));
    }
    let ability_id = req.str_req("ability_id", 128)?.to_owned();
    let request_data =
        req.str_opt("request_data")?.ok_or_else(|| ApiError::invalid("request_data", "is required"))?.to_owned();
    let cfg = &shared.cfg;
    if !cfg.abilities.is_empty() && !cfg.abilities.iter().any(|a| a.id == ability_id) {
        return Err(ApiError::invalid("ability_id", "the program declares no such ability"));
    }
    if let Some(proto) = protocol(cfg, &ability_id, |a| a.input_protocol.as_deref()) {
        let ok = serde_json::from_str::<Value>(&request_data).is_ok_and(|d| matches(&d, &proto));
        if !ok {
            return Err(ApiError::new(INPUT_PROTOCOL_MISMATCH, "request_data does not match the input protocol"));
        }
    }
    Ok(Target { ability_id, request_data })
}

/// `sync_call_program` (also the console's "call an ability"; `origin` says which, in the timeline).
pub async fn sync_call_program(shared: &Arc<Shared>, req: &Req, origin: &'static str) -> ApiResult {
    let t = target(shared, req)?;
    let notify_id = req.str_max("notify_id", 128)?.unwrap_or_default().to_owned();
    if !notify_id.is_empty() {
        let live = shared.data().notify_ids.get(&notify_id).is_some_and(|(_, exp)| *exp > shared.clock.now());
        if !live {
            return Err(ApiError::invalid("notify_id", "unknown or expired (a notify_id lives 10 minutes)"));
        }
    }
    let call = ProgramCall {
        ability_id: t.ability_id.clone(),
        notify_id,
        data: t.request_data,
        origin,
        title: "sync_call_program".into(),
        ..ProgramCall::default()
    };
    let timeout = Duration::from_millis(shared.cfg.program_timeout_ms);
    let (id, outcome) = program::call_traced(shared, call, timeout).await;
    let reply = outcome
        .map_err(|e| {
            tracing::warn!(error = %e, "sync_call_program: the program did not answer");
            ApiError::new(CONNECT_FAIL, "connect fail")
        })
        .and_then(|output| {
            if !output_matches(&shared.cfg, &t.ability_id, &output) {
                return Err(ApiError::new(
                    OUTPUT_PROTOCOL_MISMATCH,
                    "the program's output does not match the output protocol",
                ));
            }
            Ok(json!({ "response_data": output }))
        });
    shared.timeline.app_answered(id, reply.as_ref().map_or_else(|e| e.errcode, |_| 0));
    reply
}

/// `async_program_task` (also the console's async call; `origin` says which, in the timeline).
pub fn async_program_task(shared: &Arc<Shared>, req: &Req, origin: &'static str) -> ApiResult {
    let t = target(shared, req)?;
    let now = shared.clock.now();
    let (jobid, job_info) = {
        let mut data = shared.data();
        let jobid = data.mint("JOB");
        let job_info = data.mint("JI");
        let job = ProgramJob {
            kind: JobKind::App,
            jobid: jobid.clone(),
            job_info: job_info.clone(),
            ability_id: t.ability_id.clone(),
            created: now,
            report: None,
            delivery_error: None,
            ack_errcode: None,
            pending_delivery: None,
            protocol_mismatch: false,
            fail_list: Vec::new(),
        };
        data.add_program_job(job);
        (jobid, job_info)
    };
    let call = ProgramCall {
        ability_id: t.ability_id,
        is_async: true,
        job_info,
        data: t.request_data,
        origin,
        title: "async_program_task".into(),
        jobid: jobid.clone(),
        ..ProgramCall::default()
    };
    spawn_job_delivery(shared.clone(), jobid.clone(), call, Duration::from_millis(shared.cfg.program_timeout_ms));
    Ok(json!({ "jobid": jobid }))
}

/// Delivers an async request to the program in the background; a failed delivery (including no
/// answer within `timeout`) fails the job. The acknowledgement's `errcode` is kept with the job;
/// as in WeCom, it is not the job's result (that comes with `program_async_job_call_back`).
pub fn spawn_job_delivery(shared: Arc<Shared>, jobid: String, call: ProgramCall, timeout: Duration) {
    if let Some(job) = shared.data().program_jobs.get_mut(&jobid) {
        job.pending_delivery = Some(call.clone());
    }
    tokio::spawn(async move {
        match program::call(&shared, call, timeout).await {
            Ok(ack) => {
                let errcode = ack_errcode(&ack);
                if errcode != 0 {
                    tracing::info!(jobid, errcode, "the program refused an async job in its acknowledgement");
                }
                if let Some(job) = shared.data().program_jobs.get_mut(&jobid) {
                    job.ack_errcode = Some(errcode);
                    job.pending_delivery = None;
                }
            }
            Err(e) => {
                tracing::warn!(jobid, error = %e, "async job delivery to the program failed");
                if let Some(job) = shared.data().program_jobs.get_mut(&jobid) {
                    job.delivery_error = Some(CONNECT_FAIL);
                    job.pending_delivery = None;
                }
            }
        }
        shared.saver.save().await;
    });
}

/// Delivers again the async requests a previous run of the zone was delivering when it stopped.
pub fn resume_deliveries(shared: &Arc<Shared>) {
    let pending: Vec<(String, ProgramCall)> = shared
        .data()
        .program_jobs
        .values()
        .filter_map(|j| Some((j.jobid.clone(), j.pending_delivery.clone()?)))
        .collect();
    if !pending.is_empty() {
        tracing::info!(jobs = pending.len(), "delivering again the async jobs a restart interrupted");
    }
    let timeout = Duration::from_millis(shared.cfg.program_timeout_ms);
    for (jobid, call) in pending {
        spawn_job_delivery(shared.clone(), jobid, call, timeout);
    }
}

/// The `errcode` of an acknowledgement (bare or in an `{"output": …}` envelope; 0 when absent).
fn ack_errcode(ack: &str) -> i64 {
    let v: Value = serde_json::from_str(ack).unwrap_or_default();
    let body = v.get("output").filter(|o| o.is_object()).unwrap_or(&v);
    body.get("errcode").and_then(Value::as_i64).unwrap_or(0)
}

/// `async_program_result`. When done, exactly the documented fields: `response_errcode` and
/// `response_data`. While the job runs (a state the documents do not describe) the reply is
/// `{"errcode":0,"errmsg":"ok"}` and nothing else: no invented `status`, so a client can only tell
/// "done" by the documented fields being there (README "choices where the documentation is silent").
fn async_program_result(shared: &Shared, req: &Req) -> ApiResult {
    let jobid = req.str_req("jobid", 128)?;
    let data = shared.data();
    let job = data.program_jobs.get(jobid).filter(|j| j.kind == JobKind::App);
    job_outcome(job.ok_or_else(|| ApiError::invalid("jobid", "no such job"))?)
}

/// The result fields of a program job (shared with `get_model_task_result` / `get_program_task_result`).
pub fn job_outcome(job: &ProgramJob) -> ApiResult {
    if let Some(code) = job.delivery_error {
        return Err(ApiError::new(code, "connect fail"));
    }
    match &job.report {
        None => Ok(json!({})),
        Some(_) if job.protocol_mismatch => {
            Err(ApiError::new(OUTPUT_PROTOCOL_MISMATCH, "the program's result does not match the output protocol"))
        }
        Some((errcode, result)) => Ok(json!({ "response_errcode": errcode, "response_data": result })),
    }
}

fn set_public_key(shared: &Shared, req: &Req) -> ApiResult {
    let pem = req.str_req("public_key", 16 * 1024)?;
    let ver = req.int_opt("public_key_ver")?.ok_or_else(|| ApiError::invalid("public_key_ver", "is required"))?;
    let ver = u32::try_from(ver).map_err(|_| ApiError::invalid("public_key_ver", "must be a positive integer"))?;
    let mut keys = shared.keys();
    let current = keys.current_ver();
    if ver <= current {
        // The version is checked first and named with the current one, so the fix is plain.
        return Err(ApiError::invalid(
            "public_key_ver",
            &format!("{ver} is not greater than the current version {current}; register it as {}", current + 1),
        ));
    }
    keys.register(pem, ver).map_err(|why| ApiError::invalid("public_key", why))?;
    drop(keys);
    tracing::info!(public_key_ver = ver, "public key registered");
    Ok(json!({}))
}

fn linked_program<'a>(shared: &Shared, req: &'a Req) -> Result<&'a str, ApiError> {
    let program_id = req.str_req("program_id", 64)?;
    if program_id != shared.cfg.program_id {
        return Err(ApiError::invalid("program_id", "no such program linked to the app"));
    }
    Ok(program_id)
}

fn set_receive_callback(shared: &Shared, req: &Req) -> ApiResult {
    let program_id = linked_program(shared, req)?;
    shared.data().receive_program = program_id.to_owned();
    Ok(json!({}))
}

fn get_corp_auth_info(shared: &Shared) -> ApiResult {
    let data = shared.data();
    let users: Vec<&str> = data.staff.iter().filter(|s| s.in_scope).map(|s| s.userid.as_str()).collect();
    let begin = shared.clock.now() - 30 * 86_400;
    Ok(json!({ "auth_edition_list": [{
        "edition": 2,
        "auth_scope": {"userid_list": users, "department_id_list": [], "tag_id_list": []},
        "status": 1, "begin_time": begin, "end_time": begin + 90 * 86_400,
        "msg_duration_days": 5, "auth_user_count": users.len(),
    }]}))
}

fn set_log_level(shared: &Shared, req: &Req) -> ApiResult {
    let program_id = linked_program(shared, req)?.to_owned();
    let level = req.int_opt("log_level")?.ok_or_else(|| ApiError::invalid("log_level", "is required"))?;
    if !(1..=3).contains(&level) {
        return Err(ApiError::invalid("log_level", "must be 1 (ERR), 2 (INFO) or 3 (DBG)"));
    }
    shared.data().log_levels.insert(program_id, level);
    Ok(json!({}))
}

fn get_log_level(shared: &Shared, req: &Req) -> ApiResult {
    let program_id = linked_program(shared, req)?;
    Ok(json!({ "log_level": shared.data().log_levels.get(program_id).copied().unwrap_or(2) }))
}

/// `get_auth_user_list`: members whose authorisation is in effect (limit default 200, max 1000).
fn get_auth_user_list(shared: &Shared, req: &Req) -> ApiResult {
    let limit = req.limit(200, 1000)?;
    let salt = shared.cfg.seed ^ 0x4155_5448;
    let offset =
        req.str_max("cursor", 128)?.map(|c| parse_cursor("cursor", c, salt)).transpose()?.unwrap_or(0) as usize;
    let data = shared.data();
    let users: Vec<Value> =
        data.staff.iter().filter(|s| s.in_scope).map(|s| json!({"userid": s.userid, "edition_list": [2]})).collect();
    let end = (offset + limit).min(users.len());
    let has_more = end < users.len();
    let page = users.get(offset.min(end)..end).unwrap_or_default().to_vec();
    let next = if has_more { cursor_of(end as u64, salt) } else { String::new() };
    Ok(json!({ "auth_user_list": page, "next_cursor": next, "has_more": i32::from(has_more) }))
}

/// The REST twins of the hide-sensitive-info SDK APIs (app-side.md §2.2): the same handler and rules.
fn rest_twin(shared: &Arc<Shared>, name: &str, req: &Req) -> ApiResult {
    let ctx = InvokeMessage {
        corp_id: shared.cfg.corp_id.clone(),
        agent_id: shared.cfg.agent_id,
        ability_id: String::new(),
        job_info: String::new(),
        api: name.to_owned(),
        request: String::new(),
    };
    match name {
        "set_hide_sensitiveinfo_config" => sdk_msgs::set_hide_sensitiveinfo_config(shared, &ctx, req),
        _ => sdk_msgs::get_hide_sensitiveinfo_config(shared, &ctx, req),
    }
}

fn protocol(
    cfg: &LocalZoneConfig,
    ability_id: &str,
    pick: impl Fn(&crate::config::AbilityProtocol) -> Option<&str>,
) -> Option<Value> {
    let text = cfg.abilities.iter().find(|a| a.id == ability_id).and_then(pick)?;
    serde_json::from_str(text).ok()
}

/// Whether `output` fits the output protocol configured for `ability_id` (true when none is).
pub fn output_matches(cfg: &LocalZoneConfig, ability_id: &str, output: &str) -> bool {
    match protocol(cfg, ability_id, |a| a.output_protocol.as_deref()) {
        None => true,
        Some(proto) => serde_json::from_str::<Value>(output).is_ok_and(|d| matches(&d, &proto)),
    }
}

/// Subset match: every key of `data` appears in `proto` with the same JSON type, recursively; array
/// entries match the protocol array's first entry.
pub fn matches(data: &Value, proto: &Value) -> bool {
    match (data, proto) {
        (Value::Object(d), Value::Object(p)) => d.iter().all(|(k, v)| p.get(k).is_some_and(|pv| matches(v, pv))),
        (Value::Array(d), Value::Array(p)) => p.first().is_none_or(|first| d.iter().all(|v| matches(v, first))),
        (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_)) => true,
        (Value::Null, _) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_matching_is_a_typed_subset_check() {
        let proto = json!({"input": {"func": "", "limit": 1, "ids": ["x"], "opt": {"a": true}}});
        assert!(matches(&json!({"input": {"func": "sync_msg"}}), &proto));
        assert!(matches(&json!({}), &proto));
        assert!(matches(&json!({"input": {"ids": ["a", "b"], "opt": {"a": false}}}), &proto));
        assert!(!matches(&json!({"input": {"func": 3}}), &proto), "wrong type");
        assert!(!matches(&json!({"input": {"extra": 1}}), &proto), "unknown key");
        assert!(!matches(&json!({"input": {"ids": [1]}}), &proto), "wrong entry type");
    }
}
