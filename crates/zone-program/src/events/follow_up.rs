//! The job of one event: pull its follow-up data, store it with the event under a fresh
//! notify_id, then call `spec_notify_app` with the type's scene. Every step is resumable and
//! idempotent, and no pulled message is lost between pull and store:
//! - a listing (`sync_msg`, `get_hit_msg_list`) is pulled from the corp's stored cursor while the
//!   job holds that listing's lock, and the cursor moves in the same transaction that stores what
//!   was pulled; a run that ends before storing has moved nothing, and the next run (or the next
//!   event) pulls the same messages again;
//! - when the notify store is full the job waits ([`Step::Wait`]: retried after a backoff without
//!   counting against `jobs.max_runs`, for up to [`crate::jobs::MAX_WAIT_FOR_ROOM_MS`]);
//! - the notify_id is recorded in the same transaction as the stored data, and a retry after
//!   storing only notifies.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{Event, EventType, FollowUp, dedupe_key, job_payload, parse};
use crate::app::AppState;
use crate::error::AppError;
use crate::jobs::Step;
use crate::sdk::{CallContext, require_ok};
use crate::store::{JobKind, JobRow, NewJob, NotifyEntry, NotifyId, StoreError};

/// Listing pages (of up to 1000 messages) one notification carries; more continue in a new part.
pub const PAGES_PER_PART: usize = 10;
/// Most parts one event is split into.
const MAX_PARTS: u32 = 100;
/// Items asked per listing page (the documented maximum).
const PAGE_LIMIT: u32 = 1000;

/// The resumable state of an event job: set once its notify data is stored.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Progress {
    /// The notify_id the data is stored under: what is left is to notify.
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

/// What a pull of a listing yielded.
#[derive(Default)]
struct Pulled {
    items: Vec<Value>,
    /// The cursor after the last pulled page, if it moved.
    cursor: Option<String>,
    has_more: bool,
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
            context_prefix: None,
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
        Ok(_) => {
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

/// Pulls the follow-up and stores the notify data (moving a listing's cursor with it); on
/// failure returns the step to take.
async fn store(
    state: &AppState,
    job: &JobRow,
    event: &Event,
    part: u32,
    progress: &mut Progress,
    last_try: bool,
) -> Result<(), Step> {
    let corp = &job.ctx.corp_id;
    // The listing's lock is held from the pull until its cursor moved with the stored data, so
    // two jobs never pull the same messages.
    let lock = listing(event).map(|l| state.events.cursor_lock(corp, l.api));
    let _held = match &lock {
        Some(lock) => Some(lock.lock().await),
        None => None,
    };
    let mut data = event.raw.clone();
    data.insert("errcode".into(), json!(0));
    data.insert("errmsg".into(), json!("ok"));
    data.insert("notify_scene".into(), json!(event.kind.scene()));
    data.insert("part".into(), json!(part));
    let (fields, cursor, failure) = pull(state, job, event).await;
    data.extend(fields);
    if let Some(e) = failure {
        if !last_try {
            tracing::warn!(error = %e, "the event follow-up failed; will retry");
            return Err(Step::Retry);
        }
        // What was pulled before the failure is delivered (the cursor moves past it only); the
        // rest stays behind the stored cursor for the next event.
        tracing::error!(error = %e, "the event follow-up failed; notifying with what was pulled");
        data.insert("follow_up_errcode".into(), json!(e.code().code()));
    }
    // More pages continue as a next part, unless the listing failed: the next event then picks
    // up from the stored cursor (an expired token would only fail again).
    let failed = data.contains_key("follow_up_errcode");
    if data.get("has_more") == Some(&json!(1)) && !failed && part + 1 < MAX_PARTS {
        progress.next_part = Some(part + 1);
    }
    let notify_id = NotifyId::generate();
    let entry =
        NotifyEntry { notify_id: notify_id.clone(), corp_id: corp.clone(), data: Value::Object(data).to_string() };
    progress.notify_id = Some(notify_id.as_str().to_owned());
    let saved = serde_json::to_string(&*progress).expect("progress serialises");
    let cursor = cursor.and_then(|c| Some((listing(event)?.api.to_owned(), c)));
    match state.store.put_notify_for_job(entry, job.claim(), saved, cursor).await {
        Ok(()) => Ok(()),
        Err(StoreError::Full) => {
            progress.notify_id = None;
            tracing::warn!("the notify store is full; the event's data waits for room (nothing is lost)");
            Err(Step::Wait)
        }
        Err(e) => {
            progress.notify_id = None;
            tracing::warn!(error = %e, "storing the event's notify data failed");
            Err(if last_try { Step::Failed } else { Step::Retry })
        }
    }
}

/// The listing `event` follows, if any.
fn listing(event: &Event) -> Option<Listing> {
    match &event.follow_up {
        FollowUp::SyncMsg { token } => Some(Listing { api: "sync_msg", token: token.clone(), need_detail: false }),
        FollowUp::HitMsgList { token } => {
            Some(Listing { api: "get_hit_msg_list", token: token.clone(), need_detail: true })
        }
        _ => None,
    }
}

/// The follow-up fields of `event`, the listing cursor after what they hold (to move when they
/// are stored), and the failure that cut the pull short, if any.
async fn pull(state: &AppState, job: &JobRow, event: &Event) -> (Map<String, Value>, Option<String>, Option<AppError>) {
    let ctx = &job.ctx;
    let mut fields = Map::new();
    if event.kind == EventType::Other {
        tracing::info!("an undocumented event type is forwarded without follow-up");
    }
    if let Some(listing) = listing(event) {
        let (pulled, failure) = pull_listing(state, job, &listing).await;
        if failure.is_none() || !pulled.items.is_empty() {
            fields.insert("msg_list".into(), Value::Array(pulled.items));
            fields.insert("has_more".into(), json!(i32::from(pulled.has_more || failure.is_some())));
        }
        return (fields, pulled.cursor, failure);
    }
    let outcome = match &event.follow_up {
        FollowUp::AgreeSingle { userid, external_userid } => {
            let request = json!({ "item": [{ "userid": userid, "external_userid": external_userid }] });
            call(state, ctx, "get_agree_status_single", &request).await.map(|reply| {
                fields.insert("agreeinfo".into(), reply.get("agreeinfo").cloned().unwrap_or(json!([])));
            })
        }
        FollowUp::AgreeRoom { chatid } => {
            call(state, ctx, "get_agree_status_room", &json!({ "chatid": chatid })).await.map(|reply| {
                fields.insert("agreeinfo".into(), reply.get("agreeinfo").cloned().unwrap_or(json!([])));
            })
        }
        FollowUp::ExportStatus { jobid } => {
            call(state, ctx, "get_chatdata_export_job_status", &json!({ "jobid": jobid })).await.map(|mut reply| {
                if let Some(obj) = reply.as_object_mut() {
                    obj.remove("errcode");
                    obj.remove("errmsg");
                }
                fields.insert("export_job".into(), reply);
            })
        }
        FollowUp::SyncMsg { .. } | FollowUp::HitMsgList { .. } | FollowUp::None => Ok(()),
    };
    (fields, None, outcome.err())
}

/// Pulls up to [`PAGES_PER_PART`] pages of `listing` from the corp's stored cursor (the caller
/// holds the listing's lock). Returns what was pulled, and the failure that stopped it early.
async fn pull_listing(state: &AppState, job: &JobRow, listing: &Listing) -> (Pulled, Option<AppError>) {
    let corp = &job.ctx.corp_id;
    let mut pulled = Pulled::default();
    let mut cursor = match state.store.cursor(corp, listing.api).await {
        Ok(c) => c,
        Err(e) => return (pulled, Some(e.into())),
    };
    for _ in 0..PAGES_PER_PART {
        // Empty cursor or token fields are left out: the SDK refuses them (protocol README §9).
        let mut request = json!({ "limit": PAGE_LIMIT });
        if let Some(c) = cursor.as_deref().filter(|c| !c.is_empty()) {
            request["cursor"] = json!(c);
        }
        if let Some(t) = &listing.token {
            request["token"] = json!(t);
        }
        if listing.need_detail {
            request["need_detail"] = json!(1);
        }
        let page = match call(state, &job.ctx, listing.api, &request).await {
            Ok(page) => page,
            Err(e) => return (pulled, Some(e)),
        };
        let items = page.get("msg_list").and_then(Value::as_array).cloned().unwrap_or_default();
        let next = page.get("next_cursor").and_then(Value::as_str).unwrap_or_default().to_owned();
        let has_more = page.get("has_more").is_some_and(|h| h.as_i64() == Some(1) || h.as_bool() == Some(true));
        pulled.items.extend(items);
        if !next.is_empty() {
            cursor = Some(next.clone());
            pulled.cursor = Some(next.clone());
        }
        if !has_more || next.is_empty() {
            pulled.has_more = false;
            return (pulled, None);
        }
        pulled.has_more = true;
    }
    (pulled, None)
}

async fn call(state: &AppState, ctx: &CallContext, api: &str, request: &Value) -> Result<Value, AppError> {
    let reply = state.sdk.invoke(ctx, api, &request.to_string()).await?;
    Ok(require_ok(api, &reply)?)
}
