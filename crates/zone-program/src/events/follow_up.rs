//! The job of one event: pull its follow-up data, store it with the event under a fresh
//! notify_id, then call `spec_notify_app` with the type's scene. Every step is resumable and
//! idempotent: listing pages are checkpointed with their cursor, the notify_id is recorded in the
//! same transaction as the stored data, and a retry after storing only notifies.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{Event, EventType, FollowUp, dedupe_key, job_payload, parse};
use crate::app::AppState;
use crate::error::AppError;
use crate::jobs::Step;
use crate::sdk::{CallContext, require_ok};
use crate::store::{JobKind, JobRow, MAX_OWN_NOTIFY_ID_BYTES, NewJob, NotifyEntry, NotifyId, StoreError};

/// Most parts one event is split into.
const MAX_PARTS: u32 = 100;
/// Items asked per listing page (the documented maximum).
const PAGE_LIMIT: u32 = 1000;

/// The resumable state of an event job.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Progress {
    /// Listing items pulled so far, and where the listing stands.
    #[serde(default)]
    items: Vec<Value>,
    /// The cursor after the last pulled page.
    #[serde(default)]
    cursor: Option<String>,
    /// Pages pulled so far.
    #[serde(default)]
    pages: usize,
    /// Set once the data is stored: what is left is to notify.
    #[serde(default)]
    notify_id: Option<String>,
    /// A continuation part to record before notifying.
    #[serde(default)]
    next_part: Option<u32>,
}

#[derive(Deserialize)]
struct Payload {
    event: Map<String, Value>,
    #[serde(default)]
    part: u32,
}

/// A listing the program follows with a stored cursor.
struct Listing {
    api: &'static str,
    token: Option<String>,
    need_detail: bool,
}

/// Runs one step of an event job (see the module doc).
pub async fn run_job(state: &AppState, job: JobRow, last_try: bool) -> Step {
    let Ok(payload) = serde_json::from_str::<Payload>(&job.payload) else {
        tracing::error!("an event job payload does not parse; dropping it");
        return Step::Failed;
    };
    let Ok(event) = parse(&Value::Object(payload.event.clone()).to_string(), usize::MAX) else {
        return Step::Failed;
    };
    let mut progress: Progress = job.progress.as_deref().and_then(|p| serde_json::from_str(p).ok()).unwrap_or_default();
    if progress.notify_id.is_none() {
        match store(state, &job, &event, payload.part, &mut progress, last_try).await {
            Ok(()) => {}
            Err(step) => return step,
        }
    }
    if let Some(part) = progress.next_part {
        let next = NewJob {
            kind: JobKind::Event,
            dedupe_key: Some(dedupe_key(&job.ctx.corp_id, &event.raw, part)),
            ctx: job.ctx.clone(),
            payload: job_payload(&event.raw, part),
        };
        if let Err(e) = state.jobs.enqueue(next).await {
            tracing::warn!(error = %e, "recording the next part of an event failed");
            return if last_try { Step::Failed } else { Step::Retry };
        }
    }
    let notify_id = progress.notify_id.unwrap_or_default();
    let request = json!({ "notify_id": notify_id, "notify_scene": event.kind.scene() }).to_string();
    let sent =
        state.sdk.invoke(&job.ctx, "spec_notify_app", &request).await.and_then(|r| require_ok("spec_notify_app", &r));
    match sent {
        Ok(reply) => {
            check_notified_id(&reply, &notify_id);
            tracing::info!(event_type = event.kind.name(), scene = event.kind.scene(), "app notified");
            Step::Done
        }
        Err(e) if last_try => {
            tracing::error!(error = %e, "notifying the app failed; giving up");
            Step::Failed
        }
        Err(e) => {
            tracing::warn!(error = %e, "notifying the app failed; will retry");
            Step::Retry
        }
    }
}

/// Pulls the follow-up and stores the notify data; on failure returns the step to take.
async fn store(
    state: &AppState,
    job: &JobRow,
    event: &Event,
    part: u32,
    progress: &mut Progress,
    last_try: bool,
) -> Result<(), Step> {
    let mut data = event.raw.clone();
    data.insert("errcode".into(), json!(0));
    data.insert("errmsg".into(), json!("ok"));
    data.insert("notify_scene".into(), json!(event.kind.scene()));
    data.insert("part".into(), json!(part));
    match pull(state, job, event, progress).await {
        Ok(fields) => data.extend(fields),
        Err(e) if last_try => {
            tracing::error!(error = %e, "the event follow-up failed; notifying without it");
            data.insert("follow_up_errcode".into(), json!(e.code().code()));
            if !progress.items.is_empty() {
                // Pages already pulled moved the cursor: deliver them, and let a next part go on.
                data.insert("msg_list".into(), Value::Array(std::mem::take(&mut progress.items)));
                data.insert("has_more".into(), json!(1));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "the event follow-up failed; will retry");
            return Err(Step::Retry);
        }
    }
    // More pages continue as a next part, unless the listing failed: the next event then picks
    // up from the stored cursor (an expired token would only fail again).
    let failed = data.contains_key("follow_up_errcode");
    if data.get("has_more") == Some(&json!(1)) && !failed && part + 1 < MAX_PARTS {
        progress.next_part = Some(part + 1);
    }
    let notify_id = fresh_notify_id(state).await;
    let entry = NotifyEntry {
        notify_id: notify_id.clone(),
        corp_id: job.ctx.corp_id.clone(),
        data: Value::Object(data).to_string(),
    };
    progress.notify_id = Some(notify_id.as_str().to_owned());
    progress.items = Vec::new();
    let saved = serde_json::to_string(&*progress).expect("progress serialises");
    match state.store.put_notify_for_job(entry, job.id, saved, None).await {
        Ok(()) => Ok(()),
        Err(e) => {
            progress.notify_id = None;
            let full = matches!(e, StoreError::Full);
            tracing::warn!(error = %e, full, "storing the event's notify data failed");
            Err(if last_try { Step::Failed } else { Step::Retry })
        }
    }
}

/// A notify id from the SDK's `GenerateNotifyId` where the backend has it (sdk-data-apis.md §2.2:
/// "usually pre-generated"), checked like any id; else, or when the SDK's is unusable, 32 random hex
/// characters.
async fn fresh_notify_id(state: &AppState) -> NotifyId {
    if state.sdk.native_notify_ids() {
        let sdk = state.sdk.clone();
        // The vendor call may wait for the SDK gate (sdk.native.max_concurrent_calls): off the workers.
        match tokio::task::spawn_blocking(move || sdk.generate_notify_id()).await {
            Ok(Ok(id)) => match NotifyId::parse(&id) {
                Ok(id) if id.as_str().len() <= MAX_OWN_NOTIFY_ID_BYTES => return id,
                _ => tracing::warn!(
                    id.bytes = id.len(),
                    "GenerateNotifyId answered an id spec_notify_app cannot take (1-64 visible ASCII bytes); using a random one"
                ),
            },
            Ok(Err(e)) => tracing::warn!(error = %e, "GenerateNotifyId failed; using a random notify id"),
            Err(_) => tracing::warn!("GenerateNotifyId panicked; using a random notify id"),
        }
    }
    NotifyId::generate()
}

/// `spec_notify_app` uses a given notify_id as is (sdk-data-apis.md §2.2) and answers it back. If it
/// answers another one, the app will ask for data the store does not hold under it: say so loudly.
fn check_notified_id(reply: &Value, sent: &str) {
    match reply.get("notify_id").and_then(Value::as_str) {
        Some(answered) if answered != sent => tracing::error!(
            notify_id.sent = sent,
            notify_id.answered = answered,
            "spec_notify_app answered another notify_id than the one sent: the app's get_callback_data will not find the data"
        ),
        Some(_) => {}
        None => tracing::debug!("spec_notify_app answered no notify_id"),
    }
}

/// The follow-up fields of `event`.
async fn pull(
    state: &AppState,
    job: &JobRow,
    event: &Event,
    progress: &mut Progress,
) -> Result<Map<String, Value>, AppError> {
    let ctx = &job.ctx;
    let mut fields = Map::new();
    match &event.follow_up {
        FollowUp::SyncMsg { token } => {
            let listing = Listing { api: "sync_msg", token: token.clone(), need_detail: false };
            let has_more = pull_listing(state, job, &listing, progress).await?;
            fields.insert("msg_list".into(), Value::Array(std::mem::take(&mut progress.items)));
            fields.insert("has_more".into(), json!(i32::from(has_more)));
        }
        FollowUp::HitMsgList { token } => {
            let listing = Listing { api: "get_hit_msg_list", token: token.clone(), need_detail: true };
            let has_more = pull_listing(state, job, &listing, progress).await?;
            fields.insert("msg_list".into(), Value::Array(std::mem::take(&mut progress.items)));
            fields.insert("has_more".into(), json!(i32::from(has_more)));
        }
        FollowUp::AgreeSingle { userid, external_userid } => {
            let request = json!({ "item": [{ "userid": userid, "external_userid": external_userid }] });
            let reply = call(state, ctx, "get_agree_status_single", &request).await?;
            fields.insert("agreeinfo".into(), reply.get("agreeinfo").cloned().unwrap_or(json!([])));
        }
        FollowUp::AgreeRoom { chatid } => {
            let reply = call(state, ctx, "get_agree_status_room", &json!({ "chatid": chatid })).await?;
            fields.insert("agreeinfo".into(), reply.get("agreeinfo").cloned().unwrap_or(json!([])));
        }
        FollowUp::ExportStatus { jobid } => {
            let mut reply = call(state, ctx, "get_chatdata_export_job_status", &json!({ "jobid": jobid })).await?;
            if let Some(obj) = reply.as_object_mut() {
                obj.remove("errcode");
                obj.remove("errmsg");
            }
            fields.insert("export_job".into(), reply);
        }
        FollowUp::None => {}
    }
    if event.kind == EventType::Other {
        tracing::info!("an undocumented event type is forwarded without follow-up");
    }
    Ok(fields)
}

/// Records a listed page in the message index (metadata only: listings carry no content) so that
/// workflows need no tokenless `sync_msg`; a `sync_msg` page also widens the index's coverage. A
/// failure is logged and costs only that: the workflows then list the gap themselves.
async fn index_page(state: &AppState, corp: &str, api: &str, items: &[Value], fresh: bool, has_more: bool) {
    let recorded = if api == "sync_msg" {
        state.store.record_listing_page(corp, items, fresh, has_more).await
    } else {
        state.store.index_messages(corp, items).await.map(|_| ())
    };
    if let Err(e) = recorded {
        tracing::warn!(error = %e, api, "indexing a listed page failed");
    }
}

/// Pulls up to `messages.pages_per_notify` pages of `listing` from the corp's stored cursor, checkpointing
/// items and cursor after every page. Returns whether more remain.
async fn pull_listing(
    state: &AppState,
    job: &JobRow,
    listing: &Listing,
    progress: &mut Progress,
) -> Result<bool, AppError> {
    let corp = &job.ctx.corp_id;
    let lock = state.events.cursor_lock(corp, listing.api);
    let _held = lock.lock().await;
    if progress.cursor.is_none() && progress.pages == 0 {
        progress.cursor = state.store.cursor(corp, listing.api).await?;
    }
    while progress.pages < state.config.messages.pages_per_notify {
        // Empty cursor or token fields are left out: the SDK refuses them (protocol README §9).
        let mut request = json!({ "limit": PAGE_LIMIT });
        if let Some(c) = progress.cursor.as_deref().filter(|c| !c.is_empty()) {
            request["cursor"] = json!(c);
        }
        if let Some(t) = &listing.token {
            request["token"] = json!(t);
        }
        if listing.need_detail {
            request["need_detail"] = json!(1);
        }
        let fresh = progress.cursor.as_deref().is_none_or(str::is_empty);
        let page = call(state, &job.ctx, listing.api, &request).await?;
        let items = page.get("msg_list").and_then(Value::as_array).cloned().unwrap_or_default();
        let next = page.get("next_cursor").and_then(Value::as_str).unwrap_or_default().to_owned();
        let has_more = page.get("has_more").is_some_and(|h| h.as_i64() == Some(1) || h.as_bool() == Some(true));
        index_page(state, corp, listing.api, &items, fresh, has_more).await;
        progress.items.extend(items);
        progress.pages += 1;
        if !next.is_empty() {
            progress.cursor = Some(next.clone());
        }
        let saved = serde_json::to_string(&*progress).expect("progress serialises");
        let cursor = (!next.is_empty()).then(|| (corp.clone(), listing.api.to_owned(), next.clone()));
        state.store.checkpoint_job(job.id, saved, cursor).await?;
        if !has_more || next.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn call(state: &AppState, ctx: &CallContext, api: &str, request: &Value) -> Result<Value, AppError> {
    let reply = state.sdk.invoke(ctx, api, &request.to_string()).await?;
    Ok(require_ok(api, &reply)?)
}
