//! The console: a web page served by the local zone at `/local/ui` (plain HTML, JavaScript and CSS
//! embedded in the binary; nothing is fetched from anywhere else), and the JSON it reads:
//! - `GET /local/`: an index of every control;
//! - `GET /local/calls?since=N&limit=M`: the timeline ([`super::timeline`]), newest first, only the
//!   interactions changed after sequence number `since`;
//! - `GET /local/state`: the zone clock, registered key versions, async jobs, pending faults, the
//!   program and app callback URLs;
//! - `POST /local/call` `{"ability_id", "request_data": text or object, "async"?: bool, "notify_id"?}`:
//!   calls an ability as the app would (`sync_call_program` / `async_program_task`, with the same
//!   checks), recorded with origin `console`.
//!
//! Message content appears on the page only because it is the emulator's own demo data.

pub mod tail;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::Shared;
use super::app_api;
use super::model::JobKind;
use super::req::{ApiError, ApiResult, Req, reply_of};

const PAGE: &str = include_str!("console.html");
const SCRIPT: &str = include_str!("console.js");
const STYLE: &str = include_str!("console.css");

/// Most interactions one `/local/calls` reply carries.
const CALLS_LIMIT: usize = 200;
/// Most jobs `/local/state` lists (the newest).
const JOBS_LIMIT: usize = 50;

/// Every control under `/local/`, for the index: (method, path, what it does).
pub const CONTROLS: &[(&str, &str, &str)] = &[
    ("GET", "/local/ui", "the console: world, live timeline, jobs, keys, faults, clock, and forms to act"),
    ("GET", "/local/calls?since=&limit=", "the timeline as JSON (newest first; changed after `since`)"),
    ("GET", "/local/state", "zone clock, key versions, async jobs, pending faults, URLs"),
    ("GET", "/local/world", "the seeded ids: staff, customers, chats, rules, knowledge sets, tag groups"),
    ("POST", "/local/call", "call an ability as the app: {ability_id, request_data, async?, notify_id?}"),
    ("POST", "/local/messages", "archive a message and raise its events: {sender, chatid | receivers, content}"),
    ("POST", "/local/events", "raise an event: {event_type, …its fields}"),
    ("POST", "/local/export_code", "a single-use 5-minute export code"),
    ("GET", "/local/faults", "faults still armed, by API"),
    (
        "POST",
        "/local/faults",
        "arm a fault: {api, count?, errcode | invoke_ret | delay_ms | oversized_bytes | http_status | drop | lose_reply}",
    ),
    ("DELETE", "/local/faults", "clear every fault"),
    ("POST", "/local/clock/advance", "move the zone clock: {secs}"),
    ("GET", "/local/notifications", "the program_notify outbox"),
];

/// The console routes.
pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/local", get(index))
        .route("/local/", get(index))
        .route("/local/ui", get(|| async { asset("text/html; charset=utf-8", PAGE) }))
        .route("/local/ui/console.js", get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }))
        .route("/local/ui/console.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
        .route("/local/calls", get(calls))
        .route("/local/state", get(state))
        .route("/local/call", post(call))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([("content-type", content_type), ("cache-control", "no-store")], body).into_response()
}

async fn index() -> Json<Value> {
    let controls: Vec<Value> =
        CONTROLS.iter().map(|(method, path, what)| json!({"method": method, "path": path, "does": what})).collect();
    Json(json!({
        "errcode": 0, "errmsg": "ok",
        "console": "/local/ui",
        "controls": controls,
        "app_api": ["GET /cgi-bin/gettoken", "POST /cgi-bin/chatdata/<name>?access_token=…"],
        "sdk": "POST /sdk/invoke (the program's SDK calls, local codec)",
    }))
}

async fn calls(State(shared): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>) -> Json<Value> {
    let num = |k: &str| q.get(k).and_then(|v| v.parse::<u64>().ok());
    let since = num("since").unwrap_or(0);
    let limit = num("limit").map_or(CALLS_LIMIT, |l| (l as usize).clamp(1, CALLS_LIMIT));
    let (seq, list) = shared.timeline.since(since, limit);
    Json(json!({ "errcode": 0, "errmsg": "ok", "seq": seq, "calls": list }))
}

async fn state(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let keys = shared.keys().versions();
    let jobs: Vec<Value> = {
        let data = shared.data();
        let mut jobs: Vec<_> = data.program_jobs.values().collect();
        jobs.sort_by_key(|j| std::cmp::Reverse(j.created));
        jobs.iter()
            .take(JOBS_LIMIT)
            .map(|j| {
                let state = match (&j.report, j.delivery_error) {
                    (_, Some(code)) => format!("failed: delivery ({code})"),
                    (None, None) => "running".to_owned(),
                    (Some(_), None) if j.protocol_mismatch => "done: output protocol mismatch (790014)".to_owned(),
                    (Some((errcode, _)), None) => format!("done: errcode {errcode}"),
                };
                let kind = match j.kind {
                    JobKind::App => "async_program_task",
                    JobKind::OwnModel => "create_model_task",
                    JobKind::OwnProgram => "create_program_task",
                };
                json!({"jobid": j.jobid, "kind": kind, "ability_id": j.ability_id, "created": j.created, "state": state})
            })
            .collect()
    };
    let outbox = shared.data().outbox.len();
    Json(json!({
        "errcode": 0, "errmsg": "ok",
        "now": shared.clock.now(),
        "corp_id": shared.cfg.corp_id, "program_id": shared.cfg.program_id,
        "program_url": shared.program_url(),
        "app_callback_url": shared.cfg.app_callback_url.as_deref().filter(|u| !u.is_empty()),
        "public_key_versions": keys,
        "jobs": jobs,
        "faults": shared.faults().pending(),
        "notifications": outbox,
    }))
}

async fn call(State(shared): State<Arc<Shared>>, body: String) -> Json<Value> {
    Json(reply_of(console_call(&shared, &body).await))
}

async fn console_call(shared: &Arc<Shared>, body: &str) -> ApiResult {
    let req = Req::parse(body)?;
    let ability_id = req.str_req("ability_id", 128)?;
    let request_data = match req.raw("request_data") {
        None => "{}".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(v @ Value::Object(_)) => v.to_string(),
        Some(_) => return Err(ApiError::invalid("request_data", "must be a JSON text or an object")),
    };
    let mut app_req = json!({
        "program_id": shared.cfg.program_id, "ability_id": ability_id, "request_data": request_data,
    });
    if let Some(n) = req.str_max("notify_id", 128)? {
        app_req["notify_id"] = json!(n);
    }
    let app_req = Req::parse(&app_req.to_string())?;
    if req.bool_opt("async")?.unwrap_or(false) {
        app_api::async_program_task(shared, &app_req, "console")
    } else {
        app_api::sync_call_program(shared, &app_req, "console").await
    }
}
