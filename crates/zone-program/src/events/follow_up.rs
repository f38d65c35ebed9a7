//! The job of one event: pull its follow-up data, store it with the event under a fresh
//! notify_id, then call `spec_notify_app` with the type's scene. Every step is resumable and
//! idempotent, and no pulled message is lost between pull and store:
//! - a listing (`sync_msg`, `get_hit_msg_list`) is pulled from the corp's stored cursor while the
//!   job holds that listing's lock, and the cursor moves in the same transaction that stores what
//!   was pulled; a run that ends before storing has moved nothing, and the next run (or the next
//!   event) pulls the same messages again;
//! - when the notify store is full the job waits ([`EventStep::Wait`]: retried after a backoff
//!   without counting against `jobs.max_runs`, for up to [`crate::jobs::MAX_WAIT_FOR_ROOM_MS`]);
//! - the notify_id is recorded in the same transaction as the stored data, and a retry after
//!   storing only notifies.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{Event, EventHandler, EventStep, EventType, FollowUp};
use crate::context::EventCx;
use crate::error::AppError;
use crate::sdk::api::{
    AgreePair, AgreeSingleRequest, ChatIdRequest, HitMsgListRequest, JobIdRequest, MsgPage, SpecNotifyAppRequest,
    SyncMsgRequest,
};
use crate::store::{MAX_OWN_NOTIFY_ID_BYTES, NotifyEntry, NotifyId, StoreError};

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

/// The stock handler of every event type: pull the follow-up, store it with the event under a
/// fresh notify_id, notify the app with the type's scene (see the module doc).
#[derive(Debug, Clone, Copy, Default)]
pub struct StockEvent;

#[async_trait]
impl EventHandler for StockEvent {
    async fn handle(&self, cx: &EventCx, event: &Event) -> EventStep {
        run(cx, event).await
    }
}

/// One step of the stock handling of `event`.
async fn run(cx: &EventCx, event: &Event) -> EventStep {
    let (part, last_try) = (cx.part(), cx.last_try());
    let mut progress: Progress = cx.progress().unwrap_or_default();
    if progress.notify_id.is_none() {
        match store(cx, event, part, &mut progress, last_try).await {
            Ok(()) => {}
            Err(step) => return step,
        }
    }
    if let Some(part) = progress.next_part
        && let Err(e) = cx.continue_as_part(&event.raw, part).await
    {
        tracing::warn!(error = %e, "recording the next part of an event failed");
        return if last_try { EventStep::Failed } else { EventStep::Retry };
    }
    let notify_id = progress.notify_id.unwrap_or_default();
    let request = SpecNotifyAppRequest { notify_id: Some(notify_id.clone()), notify_scene: Some(event.kind.scene()) };
    match cx.sdk().spec_notify_app(request).await {
        Ok(reply) => {
            check_notified_id(&reply.notify_id, &notify_id);
            tracing::info!(event_type = event.kind.name(), scene = event.kind.scene(), "app notified");
            EventStep::Done
        }
        Err(e) if last_try => {
            tracing::error!(error = %e, "notifying the app failed; giving up");
            EventStep::Failed
        }
        Err(e) => {
            tracing::warn!(error = %e, "notifying the app failed; will retry");
            EventStep::Retry
        }
    }
}

/// Pulls the follow-up and stores the notify data (moving a listing's cursor with it); on
/// failure returns the step to take.
async fn store(
    cx: &EventCx,
    event: &Event,
    part: u32,
    progress: &mut Progress,
    last_try: bool,
) -> Result<(), EventStep> {
    // The listing's lock is held from the pull until its cursor moved with the stored data, so
    // two jobs never pull the same messages.
    let lock = listing(event).map(|l| cx.events.cursor_lock(&cx.call().corp_id, l.api));
    let _held = match &lock {
        Some(lock) => Some(lock.lock().await),
        None => None,
    };
    let mut data = event.raw.clone();
    data.insert("errcode".into(), json!(0));
    data.insert("errmsg".into(), json!("ok"));
    data.insert("notify_scene".into(), json!(event.kind.scene()));
    data.insert("part".into(), json!(part));
    let (fields, cursor, failure) = pull(cx, event).await;
    data.extend(fields);
    if let Some(e) = failure {
        if !last_try {
            tracing::warn!(error = %e, "the event follow-up failed; will retry");
            return Err(EventStep::Retry);
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
    let notify_id = fresh_notify_id(cx).await;
    let entry = NotifyEntry {
        notify_id: notify_id.clone(),
        corp_id: cx.job.ctx.corp_id.clone(),
        data: Value::Object(data).to_string(),
    };
    progress.notify_id = Some(notify_id.as_str().to_owned());
    let saved = serde_json::to_string(&*progress).expect("progress serialises");
    let cursor = cursor.and_then(|c| Some((listing(event)?.api.to_owned(), c)));
    match cx.store.put_notify_for_job(entry, cx.job.claim(), saved, cursor).await {
        Ok(()) => Ok(()),
        Err(StoreError::Full) => {
            progress.notify_id = None;
            tracing::warn!("the notify store is full; the event's data waits for room (nothing is lost)");
            Err(EventStep::Wait)
        }
        Err(e) => {
            progress.notify_id = None;
            tracing::warn!(error = %e, "storing the event's notify data failed");
            Err(if last_try { EventStep::Failed } else { EventStep::Retry })
        }
    }
}

/// A notify id from the SDK's `GenerateNotifyId` where the backend has it (sdk-data-apis.md §2.2:
/// "usually pre-generated"), checked like any id; else, or when the SDK's is unusable, 32 random hex
/// characters.
async fn fresh_notify_id(cx: &EventCx) -> NotifyId {
    if cx.sdk().backend().native_notify_ids() {
        let sdk = cx.sdk().backend().clone();
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
fn check_notified_id(answered: &str, sent: &str) {
    match Some(answered).filter(|a| !a.is_empty()) {
        Some(answered) if answered != sent => tracing::error!(
            notify_id.sent = sent,
            notify_id.answered = answered,
            "spec_notify_app answered another notify_id than the one sent: the app's get_callback_data will not find the data"
        ),
        Some(_) => {}
        None => tracing::debug!("spec_notify_app answered no notify_id"),
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
async fn pull(cx: &EventCx, event: &Event) -> (Map<String, Value>, Option<String>, Option<AppError>) {
    let sdk = cx.sdk();
    let mut fields = Map::new();
    if event.kind == EventType::Other {
        tracing::info!("an undocumented event type is forwarded without follow-up");
    }
    if let Some(listing) = listing(event) {
        let (pulled, failure) = pull_listing(cx, &listing).await;
        if failure.is_none() || !pulled.items.is_empty() {
            fields.insert("msg_list".into(), Value::Array(pulled.items));
            fields.insert("has_more".into(), json!(i32::from(pulled.has_more || failure.is_some())));
        }
        return (fields, pulled.cursor, failure);
    }
    let outcome: Result<(), AppError> = async {
        match &event.follow_up {
            FollowUp::AgreeSingle { userid, external_userid } => {
                let pair = AgreePair { userid: userid.clone(), external_userid: external_userid.clone() };
                let reply = sdk.get_agree_status_single(AgreeSingleRequest { item: vec![pair] }).await?;
                fields.insert("agreeinfo".into(), Value::Array(reply.agreeinfo));
            }
            FollowUp::AgreeRoom { chatid } => {
                let reply = sdk.get_agree_status_room(ChatIdRequest { chatid: chatid.clone() }).await?;
                fields.insert("agreeinfo".into(), Value::Array(reply.agreeinfo));
            }
            FollowUp::ExportStatus { jobid } => {
                let mut reply = sdk.get_chatdata_export_job_status(JobIdRequest { jobid: jobid.clone() }).await?;
                reply.fields.remove("errcode");
                reply.fields.remove("errmsg");
                fields.insert("export_job".into(), Value::Object(reply.fields));
            }
            FollowUp::SyncMsg { .. } | FollowUp::HitMsgList { .. } | FollowUp::None => {}
        }
        Ok(())
    }
    .await;
    (fields, None, outcome.err())
}

/// Records a listed page in the message index (metadata only: listings carry no content) so that
/// workflows need no tokenless `sync_msg`; a `sync_msg` page also widens the index's coverage. A
/// failure is logged and costs only that: the workflows then list the gap themselves.
async fn index_page(cx: &EventCx, api: &str, items: &[Value], fresh: bool, has_more: bool) {
    let corp = cx.call().corp_id.as_str();
    let recorded = if api == "sync_msg" {
        cx.store.record_listing_page(corp, items, fresh, has_more).await
    } else {
        cx.store.index_messages(corp, items).await.map(|_| ())
    };
    if let Err(e) = recorded {
        tracing::warn!(error = %e, api, "indexing a listed page failed");
    }
}

/// Pulls up to `messages.pages_per_notify` pages of `listing` from the corp's stored cursor (the caller
/// holds the listing's lock). Returns what was pulled, and the failure that stopped it early.
async fn pull_listing(cx: &EventCx, listing: &Listing) -> (Pulled, Option<AppError>) {
    let mut pulled = Pulled::default();
    let mut cursor = match cx.cursor(listing.api).await {
        Ok(c) => c,
        Err(e) => return (pulled, Some(e)),
    };
    for _ in 0..cx.pages_per_notify {
        // Empty cursor or token fields are left out: the SDK refuses them (protocol README §9).
        let page_cursor = cursor.clone().filter(|c| !c.is_empty());
        let fresh = page_cursor.is_none();
        let page = if listing.need_detail {
            let request = HitMsgListRequest {
                cursor: page_cursor,
                token: listing.token.clone(),
                need_detail: Some(1),
                limit: Some(PAGE_LIMIT),
                begin_time: None,
            };
            cx.sdk().get_hit_msg_list(request).await
        } else {
            let request = SyncMsgRequest {
                cursor: page_cursor,
                token: listing.token.clone(),
                limit: Some(PAGE_LIMIT),
                ..Default::default()
            };
            cx.sdk().sync_msg(request).await
        };
        let MsgPage { has_more, next_cursor: next, msg_list, .. } = match page {
            Ok(page) => page,
            Err(e) => return (pulled, Some(e.into())),
        };
        index_page(cx, listing.api, &msg_list, fresh, has_more).await;
        pulled.items.extend(msg_list);
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
