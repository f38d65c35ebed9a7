//! The WeCom backend towards the program: sealed `POST /` requests with the local codec, call_type 1
//! (app calls, sync or async, and SDK-routed tasks) and call_type 2 (events, to the program chosen by
//! `set_receive_callback`), and the opening of the program's sealed reply.

use std::time::Duration;

use serde_json::{Value, json};

use super::Shared;
use zone_crypto::wire::CallType;
use zone_crypto::wire::CallbackMessage;

/// Why the program did not answer usefully.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallFailure {
    /// No connection, or it broke.
    #[error("program unreachable")]
    Unreachable,
    /// No answer within the deadline.
    #[error("program timed out")]
    Timeout,
    /// The program answered with a non-200 status.
    #[error("program answered HTTP {0}")]
    Status(u16),
    /// The reply did not verify or decrypt.
    #[error("program reply did not verify")]
    BadReply,
}

/// WeCom's code when the program cannot be reached (seen as "connect fail" in third-party programs;
/// the emulator uses it for every failed delivery to the program).
pub const CONNECT_FAIL: i64 = 710_674;

/// One request to the program.
#[derive(Debug, Clone, Default)]
pub struct ProgramCall {
    /// Ability id (empty for events).
    pub ability_id: String,
    /// The app's notify_id, or empty.
    pub notify_id: String,
    /// Async job or SDK-routed task?
    pub is_async: bool,
    /// Opaque job context, or empty.
    pub job_info: String,
    /// `request_data` or the event JSON.
    pub data: String,
}

/// Sends a call_type 1 request and returns the program's reply text.
pub async fn call(shared: &Shared, call: ProgramCall, timeout: Duration) -> Result<String, CallFailure> {
    send(shared, CallType::AppCall, call, timeout).await
}

/// Raises an event (call_type 2) with `{"event_type","timestamp",<payload_key>:payload}` at the
/// program that receives events; returns the program's acknowledgement text.
pub async fn raise_event(
    shared: &Shared,
    event_type: &str,
    payload_key: &str,
    payload: Value,
) -> Result<String, CallFailure> {
    let mut event = json!({ "event_type": event_type, "timestamp": shared.clock.now() });
    event[payload_key] = payload;
    let call = ProgramCall { data: event.to_string(), ..ProgramCall::default() };
    let timeout = Duration::from_millis(shared.cfg.program_timeout_ms);
    let outcome = send(shared, CallType::Event, call, timeout).await;
    match &outcome {
        Ok(_) => tracing::info!(event_type, "event delivered to the program"),
        Err(e) => tracing::warn!(event_type, error = %e, "event delivery failed"),
    }
    outcome
}

async fn send(
    shared: &Shared,
    call_type: CallType,
    call: ProgramCall,
    timeout: Duration,
) -> Result<String, CallFailure> {
    let message = CallbackMessage {
        corp_id: shared.cfg.corp_id.clone(),
        agent_id: shared.cfg.agent_id,
        call_type,
        is_async: call.is_async,
        job_info: call.job_info,
        ability_id: call.ability_id,
        notify_id: call.notify_id,
        data: call.data,
    };
    let plain = serde_json::to_vec(&message).expect("strings serialise");
    let sealed = shared.codec.seal(&plain, &shared.cfg.corp_id);
    let url = format!("{}/", shared.program_url().trim_end_matches('/'));
    let mut req = shared.http.post(url).header("content-type", "application/json").timeout(timeout);
    for (k, v) in &sealed.headers {
        req = req.header(k, v);
    }
    let res = req
        .body(sealed.body)
        .send()
        .await
        .map_err(|e| if e.is_timeout() { CallFailure::Timeout } else { CallFailure::Unreachable })?;
    if res.status() != reqwest::StatusCode::OK {
        return Err(CallFailure::Status(res.status().as_u16()));
    }
    let headers: Vec<(String, String)> =
        res.headers().iter().filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned()))).collect();
    let body =
        res.bytes().await.map_err(|e| if e.is_timeout() { CallFailure::Timeout } else { CallFailure::Unreachable })?;
    let opened = shared.codec.open(&headers, &body).map_err(|_| CallFailure::BadReply)?;
    if opened.receive_id != shared.cfg.corp_id {
        return Err(CallFailure::BadReply);
    }
    String::from_utf8(opened.message).map_err(|_| CallFailure::BadReply)
}
