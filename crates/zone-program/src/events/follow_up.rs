//! The job of one event: pull its follow-up data, store it with the event under a fresh
//! notify_id, then call `spec_notify_app` with the type's scene. Every step is resumable and
//! idempotent: listing pages are checkpointed with their cursor, the notify_id is recorded in the
//! same transaction as the stored data, and a retry after storing only notifies.

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
use crate::store::{NotifyEntry, NotifyId, StoreError};

/// Listing pages (of up to 1000 messages) one notification carries; more continue in a new part.
pub const PAGES_PER_PART: usize = 10;
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

/// A listing the program follows with a stored cursor.
struct Listing {
    api: &'static str,
    token: Option<String>,
    need_detail: bool,
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
    let request = SpecNotifyAppRequest { notify_id: Some(notify_id), notify_scene: Some(event.kind.scene()) };
    match cx.sdk().spec_notify_app(request).await {
        Ok(_) => {
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

/// Pulls the follow-up and stores the notify data; on failure returns the step to take.
async fn store(
    cx: &EventCx,
    event: &Event,
    part: u32,
    progress: &mut Progress,
    last_try: bool,
) -> Result<(), EventStep> {
    let mut data = event.raw.clone();
    data.insert("errcode".into(), json!(0));
    data.insert("errmsg".into(), json!("ok"));
    data.insert("notify_scene".into(), json!(event.kind.scene()));
    data.insert("part".into(), json!(part));
    match pull(cx, event, progress).await {
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
            return Err(EventStep::Retry);
        }
    }
    // More pages continue as a next part, unless the listing failed: the next event then picks
    // up from the stored cursor (an expired token would only fail again).
    let failed = data.contains_key("follow_up_errcode");
    if data.get("has_more") == Some(&json!(1)) && !failed && part + 1 < MAX_PARTS {
        progress.next_part = Some(part + 1);
    }
    let notify_id = NotifyId::generate();
    let entry = NotifyEntry {
        notify_id: notify_id.clone(),
        corp_id: cx.job.ctx.corp_id.clone(),
        data: Value::Object(data).to_string(),
    };
    progress.notify_id = Some(notify_id.as_str().to_owned());
    progress.items = Vec::new();
    let saved = serde_json::to_string(&*progress).expect("progress serialises");
    match cx.store.put_notify_for_job(entry, cx.job.id, saved, None).await {
        Ok(()) => Ok(()),
        Err(e) => {
            progress.notify_id = None;
            let full = matches!(e, StoreError::Full);
            tracing::warn!(error = %e, full, "storing the event's notify data failed");
            Err(if last_try { EventStep::Failed } else { EventStep::Retry })
        }
    }
}

/// The follow-up fields of `event`.
async fn pull(cx: &EventCx, event: &Event, progress: &mut Progress) -> Result<Map<String, Value>, AppError> {
    let sdk = cx.sdk();
    let mut fields = Map::new();
    match &event.follow_up {
        FollowUp::SyncMsg { token } => {
            let listing = Listing { api: "sync_msg", token: token.clone(), need_detail: false };
            let has_more = pull_listing(cx, &listing, progress).await?;
            fields.insert("msg_list".into(), Value::Array(std::mem::take(&mut progress.items)));
            fields.insert("has_more".into(), json!(i32::from(has_more)));
        }
        FollowUp::HitMsgList { token } => {
            let listing = Listing { api: "get_hit_msg_list", token: token.clone(), need_detail: true };
            let has_more = pull_listing(cx, &listing, progress).await?;
            fields.insert("msg_list".into(), Value::Array(std::mem::take(&mut progress.items)));
            fields.insert("has_more".into(), json!(i32::from(has_more)));
        }
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
        FollowUp::None => {}
    }
    if event.kind == EventType::Other {
        tracing::info!("an undocumented event type is forwarded without follow-up");
    }
    Ok(fields)
}

/// Pulls up to [`PAGES_PER_PART`] pages of `listing` from the corp's stored cursor, checkpointing
/// items and cursor after every page. Returns whether more remain.
async fn pull_listing(cx: &EventCx, listing: &Listing, progress: &mut Progress) -> Result<bool, AppError> {
    let lock = cx.events.cursor_lock(&cx.call().corp_id, listing.api);
    let _held = lock.lock().await;
    if progress.cursor.is_none() && progress.pages == 0 {
        progress.cursor = cx.cursor(listing.api).await?;
    }
    while progress.pages < PAGES_PER_PART {
        // Empty cursor or token fields are left out: the SDK refuses them (protocol README §9).
        let cursor = progress.cursor.clone().filter(|c| !c.is_empty());
        let page = if listing.need_detail {
            let request = HitMsgListRequest {
                cursor,
                token: listing.token.clone(),
                need_detail: Some(1),
                limit: Some(PAGE_LIMIT),
                begin_time: None,
            };
            cx.sdk().get_hit_msg_list(request).await?
        } else {
            let request =
                SyncMsgRequest { cursor, token: listing.token.clone(), limit: Some(PAGE_LIMIT), ..Default::default() };
            cx.sdk().sync_msg(request).await?
        };
        let MsgPage { has_more, next_cursor: next, msg_list, .. } = page;
        progress.items.extend(msg_list);
        progress.pages += 1;
        if !next.is_empty() {
            progress.cursor = Some(next.clone());
        }
        let cursor = (!next.is_empty()).then_some((listing.api, next.as_str()));
        cx.checkpoint(&*progress, cursor).await?;
        if !has_more || next.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}
