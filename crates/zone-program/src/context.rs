//! What a handler may use while it runs, and nothing more: the SDK in the call's context, the notify
//! store, the keyring, the clock, the deadline and the call context. Abilities get an
//! [`AbilityCx`], event handlers an [`EventCx`]; neither sees the program's state.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::time::Instant;

use crate::clock::Clock;
use crate::error::AppError;
use crate::events::Events;
use crate::jobs::Jobs;
use crate::jobs::poll::PollPolicy;
use crate::keyring::Keyring;
use crate::sdk::api::{Sdk, SpecNotifyAppRequest};
use crate::sdk::{CallContext, ZoneSdk};
use crate::store::{JobKind, JobRow, NewJob, NotifyEntry, NotifyId, Store, TakeError};

/// The notify store as a handler sees it: data stored for the app under a notify_id, taken once.
#[derive(Clone)]
pub struct NotifyStore {
    store: Store,
}

impl NotifyStore {
    pub(crate) fn new(store: Store) -> Self {
        Self { store }
    }

    /// Stores `data` (a JSON object's text) for `corp_id` under a fresh notify_id, which it returns.
    /// A full store is `StoreFull` (900008) and stores nothing.
    pub async fn put(&self, corp_id: &str, data: String) -> Result<NotifyId, AppError> {
        let notify_id = NotifyId::generate();
        let entry = NotifyEntry { notify_id: notify_id.clone(), corp_id: corp_id.to_owned(), data };
        self.store.put_notify(entry).await?;
        Ok(notify_id)
    }

    /// Takes the data stored under `notify_id` for `corp_id`, once; a tombstone remains.
    pub async fn take(&self, corp_id: &str, notify_id: &NotifyId) -> Result<Result<String, TakeError>, AppError> {
        Ok(self.store.take_notify(corp_id, notify_id).await?)
    }

    /// [`NotifyStore::take`] for a read repeating one whose reply was lost: data taken less than
    /// [`crate::store::RETRY_GRACE_MS`] ago is returned again.
    pub async fn retake(&self, corp_id: &str, notify_id: &NotifyId) -> Result<Result<String, TakeError>, AppError> {
        Ok(self.store.retake_notify(corp_id, notify_id).await?)
    }

    /// Whether one more entry fits.
    pub async fn has_room(&self) -> Result<bool, AppError> {
        Ok(self.store.notify_has_room().await?)
    }
}

/// The parts every context shares.
#[derive(Clone)]
pub(crate) struct Parts {
    pub(crate) sdk: Arc<dyn ZoneSdk>,
    pub(crate) store: Store,
    pub(crate) keyring: Arc<Keyring>,
    pub(crate) poll_interval: Duration,
    pub(crate) tokenless: Arc<crate::abilities::tokenless::TokenlessBudget>,
    pub(crate) pages_per_notify: usize,
}

/// Everything an ability may use while it runs.
#[derive(Clone)]
pub struct AbilityCx {
    sdk: Sdk,
    notify: NotifyStore,
    /// The store (the stock workflows' message index).
    pub(crate) store: crate::store::Store,
    /// The per-corp budget of listing calls without an event token, and the index's freshness.
    pub(crate) tokenless: Arc<crate::abilities::tokenless::TokenlessBudget>,
    keyring: Arc<Keyring>,
    clock: Arc<dyn Clock>,
    notify_id: String,
    poll_interval: Duration,
    deadline: Instant,
}

impl AbilityCx {
    /// A context for one call in `ctx`, with the app's `notify_id` (or empty), due by `deadline`.
    pub(crate) fn new(parts: &Parts, ctx: CallContext, notify_id: String, deadline: Instant) -> Self {
        Self {
            sdk: Sdk::new(parts.sdk.clone(), ctx),
            notify: NotifyStore::new(parts.store.clone()),
            store: parts.store.clone(),
            tokenless: parts.tokenless.clone(),
            keyring: parts.keyring.clone(),
            clock: parts.store.clock().clone(),
            notify_id,
            poll_interval: parts.poll_interval,
            deadline,
        }
    }

    /// The SDK, in the context of this call (typed methods and raw `invoke`).
    pub fn sdk(&self) -> &Sdk {
        &self.sdk
    }

    /// The context of SDK calls: corp, agent, ability, job.
    pub fn call(&self) -> &CallContext {
        self.sdk.context()
    }

    /// The notify store.
    pub fn notify(&self) -> &NotifyStore {
        &self.notify
    }

    /// The private keys that unwrap message keys.
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    /// The clock (the store's; tests may move it).
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// Now, in Unix seconds, by [`Self::clock`].
    pub fn now_secs(&self) -> i64 {
        self.clock.now_secs()
    }

    /// The notify_id the app passed, or empty.
    pub fn notify_id(&self) -> &str {
        &self.notify_id
    }

    /// When the ability must have answered (sync: within the request deadline; async: the job's).
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The polling policy for model tasks started by this call.
    pub fn poll_policy(&self) -> PollPolicy {
        PollPolicy { first_interval: self.poll_interval, deadline: self.deadline }
    }
}

/// Everything an event handler may use while its job runs. An event handler runs in a durable job:
/// it may run again after a failure or a restart, so it records its progress
/// ([`EventCx::checkpoint`], [`EventCx::progress`]) and its last step, storing the notify data and
/// notifying the app ([`EventCx::store_and_notify`]), is resumable.
pub struct EventCx {
    /// Listing pages one notification carries (`messages.pages_per_notify`).
    pub(crate) pages_per_notify: usize,
    pub(crate) sdk: Sdk,
    pub(crate) store: Store,
    pub(crate) keyring: Arc<Keyring>,
    pub(crate) jobs: Jobs,
    pub(crate) events: Arc<Events>,
    pub(crate) job: JobRow,
    pub(crate) part: u32,
    pub(crate) last_try: bool,
    pub(crate) poll_interval: Duration,
    pub(crate) deadline: Instant,
}

/// What [`EventCx::store_and_notify`] keeps in the job's progress.
#[derive(serde::Deserialize, Serialize)]
struct Notified {
    notify_id: String,
}

impl EventCx {
    pub(crate) fn new(
        parts: &Parts,
        jobs: Jobs,
        events: Arc<Events>,
        job: JobRow,
        part: u32,
        last_try: bool,
        budget: Duration,
    ) -> Self {
        Self {
            pages_per_notify: parts.pages_per_notify,
            sdk: Sdk::new(parts.sdk.clone(), job.ctx.clone()),
            store: parts.store.clone(),
            keyring: parts.keyring.clone(),
            jobs,
            events,
            job,
            part,
            last_try,
            poll_interval: parts.poll_interval,
            deadline: Instant::now() + budget,
        }
    }

    /// The SDK, in the event's context.
    pub fn sdk(&self) -> &Sdk {
        &self.sdk
    }

    /// The context of SDK calls (the event's corp and agent).
    pub fn call(&self) -> &CallContext {
        self.sdk.context()
    }

    /// The notify store.
    pub fn notify(&self) -> NotifyStore {
        NotifyStore::new(self.store.clone())
    }

    /// The private keys that unwrap message keys.
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    /// The clock.
    pub fn clock(&self) -> &dyn Clock {
        self.store.clock().as_ref()
    }

    /// When this run should be over (`jobs.model_poll_deadline_secs` from its start).
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The polling policy for model tasks started by this run.
    pub fn poll_policy(&self) -> PollPolicy {
        PollPolicy { first_interval: self.poll_interval, deadline: self.deadline }
    }

    /// Which part of the event this run handles (0, then 1, 2, … for continuations).
    pub fn part(&self) -> u32 {
        self.part
    }

    /// True on the job's last run: a retry would not be honoured, so deliver what you have.
    pub fn last_try(&self) -> bool {
        self.last_try
    }

    /// The progress recorded by an earlier run of this job, if any.
    pub fn progress<T: DeserializeOwned>(&self) -> Option<T> {
        self.job.progress.as_deref().and_then(|p| serde_json::from_str(p).ok())
    }

    /// Records `progress` for a later run and, in the same transaction, moves the corp's stored
    /// cursor `listing` to `cursor` when given.
    pub async fn checkpoint<T: Serialize>(&self, progress: &T, cursor: Option<(&str, &str)>) -> Result<(), AppError> {
        let saved = serde_json::to_string(progress).map_err(|e| AppError::Internal(e.into()))?;
        let cursor = cursor.map(|(listing, c)| (self.job.ctx.corp_id.clone(), listing.to_owned(), c.to_owned()));
        Ok(self.store.checkpoint_job(self.job.claim(), saved, cursor).await?)
    }

    /// The corp's stored cursor of `listing` (e.g. `"sync_msg"`), if any.
    pub async fn cursor(&self, listing: &str) -> Result<Option<String>, AppError> {
        Ok(self.store.cursor(&self.job.ctx.corp_id, listing).await?)
    }

    /// The notify_id an earlier run of this job stored its data under with
    /// [`Self::store_and_notify`], if any: what is left to do is to notify.
    pub fn stored_notify_id(&self) -> Option<NotifyId> {
        self.progress::<Notified>().and_then(|n| NotifyId::parse(&n.notify_id).ok())
    }

    /// Stores `data` (a JSON object) for the app under a fresh notify_id, recording it in the job
    /// in the same transaction, then calls `spec_notify_app` with `scene`. A run after a failure
    /// finds the recorded notify_id and only notifies, so the app never gets the data twice.
    pub async fn store_and_notify(&self, data: &Value, scene: u8) -> Result<NotifyId, AppError> {
        let notify_id = match self.stored_notify_id() {
            Some(id) => id,
            None => {
                let notify_id = NotifyId::generate();
                let entry = NotifyEntry {
                    notify_id: notify_id.clone(),
                    corp_id: self.job.ctx.corp_id.clone(),
                    data: data.to_string(),
                };
                let progress = serde_json::to_string(&Notified { notify_id: notify_id.as_str().to_owned() })
                    .expect("a string serialises");
                self.store.put_notify_for_job(entry, self.job.claim(), progress, None).await?;
                notify_id
            }
        };
        self.notify_app(&notify_id, scene).await?;
        Ok(notify_id)
    }

    /// Calls `spec_notify_app` for `notify_id` with `scene`.
    pub async fn notify_app(&self, notify_id: &NotifyId, scene: u8) -> Result<(), AppError> {
        let request =
            SpecNotifyAppRequest { notify_id: Some(notify_id.as_str().to_owned()), notify_scene: Some(scene) };
        self.sdk.spec_notify_app(request).await?;
        Ok(())
    }

    /// Records part `part` of the event as a job of its own (recognised if recorded before).
    pub async fn continue_as_part(&self, raw: &serde_json::Map<String, Value>, part: u32) -> Result<(), AppError> {
        let next = NewJob {
            kind: JobKind::Event,
            dedupe_key: Some(crate::events::dedupe_key(&self.job.ctx.corp_id, raw, part)),
            context_prefix: None,
            ctx: self.job.ctx.clone(),
            payload: crate::events::job_payload(raw, part),
        };
        self.jobs.enqueue(next).await.map(|_| ())
    }
}
