//! The zone's timeline: every request the zone sends to the program (an app call, an event, an
//! SDK-routed task), with what followed it, in a bounded ring buffer (`GET /local/calls`, the console
//! at `/local/ui`, `zone-program local-zone tail`).
//!
//! Correlation is done on the zone's side only, from what the real zone also sees: an SDK call at
//! `/sdk/invoke` carries the context of the request or job it runs in (`ability_id`, `job_info`).
//! - a `job_info` names the async job (or SDK-routed task) the zone itself sent to the program;
//! - else an `ability_id` names the newest call of that ability still in flight (or the newest one);
//! - else (an event's context carries neither) the newest event still in flight (or the newest one).
//!
//! `spec_notify_app` links its notify_id to the interaction it ran in, so the `program_notify` push and
//! a later `get_callback_data` with that notify_id attach there too. Request and output texts are kept
//! cut to [`TEXT_CAP`] bytes: they are the emulator's own demo data.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

/// Interactions kept (the oldest is dropped first).
pub const CAPACITY: usize = 500;
/// Steps kept per interaction (a runaway loop of SDK calls stops being recorded, not the zone).
pub const STEP_CAP: usize = 200;
/// Bytes kept of a request or output text.
pub const TEXT_CAP: usize = 2048;

/// The ring buffer. Every mutation bumps a sequence number; readers ask for what changed since one.
#[derive(Default)]
pub struct Timeline {
    inner: Mutex<Inner>,
    /// Async job results reported so far (first reports only), kept or not in the ring buffer.
    reports: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Inner {
    seq: u64,
    next_id: u64,
    entries: VecDeque<Interaction>,
    by_job_info: HashMap<String, u64>,
    by_notify_id: HashMap<String, u64>,
}

/// One request to the program and everything that followed it.
#[derive(Debug, Clone, Serialize)]
pub struct Interaction {
    /// Increasing id.
    pub id: u64,
    /// Sequence number of the last change.
    pub updated: u64,
    /// Who started it: `app` (app API), `console`, `event`, `program_task` (an SDK-routed task).
    pub origin: &'static str,
    /// `sync_call_program`, `async_program_task`, the event type, …
    pub title: String,
    /// 1 app call, 2 event.
    pub call_type: u8,
    /// Ability id (empty for events).
    pub ability_id: String,
    /// Sent as an async job?
    pub is_async: bool,
    /// The job's context, or empty.
    pub job_info: String,
    /// The zone's jobid, or empty.
    pub jobid: String,
    /// The notify_id the app passed (`get_callback_data`), or empty.
    pub notify_id: String,
    /// Zone clock, unix seconds.
    pub zone_time: i64,
    /// Wall clock, unix milliseconds.
    pub at_ms: u64,
    /// The request data (cut).
    pub request: String,
    /// `pending`, `ok` (the program answered) or `failed` (delivery failed).
    pub program: &'static str,
    /// The program's reply errcode when it is a JSON object with one.
    pub errcode: Option<i64>,
    /// Why delivery failed.
    pub error: Option<String>,
    /// Round trip to the program, milliseconds.
    pub latency_ms: Option<f64>,
    /// The program's reply text (cut).
    pub output: Option<String>,
    /// What the app (or console) got back: its errcode.
    pub app_errcode: Option<i64>,
    /// What happened after: SDK calls, notify pushes, job reports, fetches.
    pub steps: Vec<Step>,
    /// Steps not kept because of [`STEP_CAP`].
    pub steps_dropped: u32,
    #[serde(skip)]
    started: Option<Instant>,
}

/// One thing that happened within an interaction.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Step {
    /// The program called an SDK API.
    Sdk {
        /// Wall clock, unix ms.
        at_ms: u64,
        /// `api_name`.
        api: String,
        /// The reply's errcode (or the `Invoke` return code of a fault).
        errcode: i64,
        /// Time the zone took to answer, ms.
        latency_ms: f64,
        /// The fault that answered instead, if one was armed.
        fault: Option<String>,
    },
    /// A `program_notify` was pushed to the app.
    Notify {
        /// Wall clock, unix ms.
        at_ms: u64,
        /// The notify id.
        notify_id: String,
        /// `notify_scene`.
        scene: Option<u8>,
        /// `true`/`false` when an app callback URL is set, `null` when none is.
        delivered: Option<bool>,
    },
    /// The program reported an async job's result.
    Report {
        /// Wall clock, unix ms.
        at_ms: u64,
        /// The reported errcode.
        errcode: i64,
    },
    /// The app fetched this interaction's notify data with `get_callback_data` (interaction `by`).
    Fetched {
        /// Wall clock, unix ms.
        at_ms: u64,
        /// The fetching interaction.
        by: u64,
        /// The notify id.
        notify_id: String,
    },
}

/// What [`Timeline::begin`] needs to know about a request to the program.
#[derive(Debug, Clone, Default)]
pub struct Begin<'a> {
    /// See [`Interaction::origin`].
    pub origin: &'static str,
    /// See [`Interaction::title`].
    pub title: &'a str,
    /// 1 or 2.
    pub call_type: u8,
    /// Ability id.
    pub ability_id: &'a str,
    /// Async?
    pub is_async: bool,
    /// Job context.
    pub job_info: &'a str,
    /// Zone jobid.
    pub jobid: &'a str,
    /// The app's notify_id.
    pub notify_id: &'a str,
    /// The request data.
    pub request: &'a str,
    /// Zone clock.
    pub zone_time: i64,
}

impl Timeline {
    /// Records the start of a request to the program; returns its id.
    pub fn begin(&self, b: Begin<'_>) -> u64 {
        let mut inner = self.lock();
        inner.seq += 1;
        inner.next_id += 1;
        let (id, seq) = (inner.next_id, inner.seq);
        if !b.job_info.is_empty() {
            inner.by_job_info.insert(b.job_info.to_owned(), id);
        }
        let mut entry = Interaction {
            id,
            updated: seq,
            origin: b.origin,
            title: b.title.to_owned(),
            call_type: b.call_type,
            ability_id: b.ability_id.to_owned(),
            is_async: b.is_async,
            job_info: b.job_info.to_owned(),
            jobid: b.jobid.to_owned(),
            notify_id: b.notify_id.to_owned(),
            zone_time: b.zone_time,
            at_ms: now_ms(),
            request: cut(b.request),
            program: "pending",
            errcode: None,
            error: None,
            latency_ms: None,
            output: None,
            app_errcode: None,
            steps: Vec::new(),
            steps_dropped: 0,
            started: Some(Instant::now()),
        };
        // A fetch of notify data links both ways.
        if !b.notify_id.is_empty()
            && let Some(owner) = inner.by_notify_id.get(b.notify_id).copied()
        {
            let step = Step::Fetched { at_ms: entry.at_ms, by: id, notify_id: b.notify_id.to_owned() };
            inner.push_step(owner, step);
            entry.updated = inner.seq;
        }
        inner.entries.push_back(entry);
        while inner.entries.len() > CAPACITY {
            let old = inner.entries.pop_front().expect("not empty");
            inner.by_job_info.retain(|_, v| *v != old.id);
            inner.by_notify_id.retain(|_, v| *v != old.id);
        }
        id
    }

    /// Records the program's answer (`Ok(reply text)`) or the failed delivery.
    pub fn program_done(&self, id: u64, outcome: Result<&str, String>) {
        self.update(id, |e| {
            e.latency_ms = e.started.map(|s| s.elapsed().as_secs_f64() * 1000.0);
            match outcome {
                Ok(text) => {
                    e.program = "ok";
                    e.errcode = serde_json::from_str::<Value>(text).ok().and_then(|v| v["errcode"].as_i64());
                    e.output = Some(cut(text));
                }
                Err(why) => {
                    e.program = "failed";
                    e.error = Some(why);
                }
            }
        });
    }

    /// Records what the app (or console) got back.
    pub fn app_answered(&self, id: u64, errcode: i64) {
        self.update(id, |e| e.app_errcode = Some(errcode));
    }

    /// Records the zone jobid of an async call.
    pub fn set_jobid(&self, id: u64, jobid: &str) {
        self.update(id, |e| e.jobid = jobid.to_owned());
    }

    /// Records an SDK call made in context (`ability_id`, `job_info`); returns the interaction it
    /// was attached to, if any.
    pub fn sdk_call(
        &self,
        ability_id: &str,
        job_info: &str,
        api: &str,
        errcode: i64,
        latency_ms: f64,
        fault: Option<String>,
    ) -> Option<u64> {
        let mut inner = self.lock();
        let id = inner.correlate(ability_id, job_info)?;
        inner.push_step(id, Step::Sdk { at_ms: now_ms(), api: api.to_owned(), errcode, latency_ms, fault });
        Some(id)
    }

    /// Links a notify_id minted in context to its interaction (for the push and the later fetch).
    pub fn link_notify(&self, ability_id: &str, job_info: &str, notify_id: &str) {
        let mut inner = self.lock();
        if let Some(id) = inner.correlate(ability_id, job_info) {
            inner.by_notify_id.insert(notify_id.to_owned(), id);
        }
    }

    /// Records a `program_notify` push.
    pub fn notified(&self, notify_id: &str, scene: Option<u8>, delivered: Option<bool>) {
        let mut inner = self.lock();
        if let Some(id) = inner.by_notify_id.get(notify_id).copied() {
            let step = Step::Notify { at_ms: now_ms(), notify_id: notify_id.to_owned(), scene, delivered };
            inner.push_step(id, step);
        }
    }

    /// Records an async job's report.
    pub fn reported(&self, job_info: &str, errcode: i64) {
        self.reports.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut inner = self.lock();
        if let Some(id) = inner.by_job_info.get(job_info).copied() {
            inner.push_step(id, Step::Report { at_ms: now_ms(), errcode });
        }
    }

    /// How many async job results were reported so far (`zone-program bench` times its jobs
    /// with it).
    pub fn reports(&self) -> u64 {
        self.reports.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `(current sequence number, interactions changed after `since`, newest first, at most `limit`)`.
    pub fn since(&self, since: u64, limit: usize) -> (u64, Vec<Interaction>) {
        let inner = self.lock();
        let list = inner.entries.iter().rev().filter(|e| e.updated > since).take(limit).cloned().collect();
        (inner.seq, list)
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut Interaction)) {
        let mut inner = self.lock();
        inner.seq += 1;
        let seq = inner.seq;
        if let Some(e) = inner.get_mut(id) {
            f(e);
            e.updated = seq;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn get_mut(&mut self, id: u64) -> Option<&mut Interaction> {
        // Ids are increasing and contiguous within the buffer.
        let first = self.entries.front()?.id;
        let i = usize::try_from(id.checked_sub(first)?).ok()?;
        self.entries.get_mut(i)
    }

    fn push_step(&mut self, id: u64, step: Step) {
        self.seq += 1;
        let seq = self.seq;
        if let Some(e) = self.get_mut(id) {
            if e.steps.len() < STEP_CAP {
                e.steps.push(step);
            } else {
                e.steps_dropped += 1;
            }
            e.updated = seq;
        }
    }

    fn correlate(&self, ability_id: &str, job_info: &str) -> Option<u64> {
        if !job_info.is_empty() {
            return self.by_job_info.get(job_info).copied();
        }
        let newest = |pred: &dyn Fn(&Interaction) -> bool| {
            let in_flight = self.entries.iter().rev().find(|e| pred(e) && e.program == "pending");
            in_flight.or_else(|| self.entries.iter().rev().find(|e| pred(e))).map(|e| e.id)
        };
        if ability_id.is_empty() {
            newest(&|e| e.call_type == 2)
        } else {
            newest(&|e| e.call_type == 1 && e.ability_id == ability_id && !e.is_async)
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn cut(text: &str) -> String {
    if text.len() <= TEXT_CAP {
        return text.to_owned();
    }
    let mut end = TEXT_CAP;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_call<'a>(ability_id: &'a str, job_info: &'a str, notify_id: &'a str) -> Begin<'a> {
        Begin {
            origin: "app",
            title: "sync_call_program",
            call_type: 1,
            ability_id,
            is_async: !job_info.is_empty(),
            job_info,
            notify_id,
            ..Begin::default()
        }
    }

    #[test]
    fn sdk_calls_attach_by_job_info_then_ability_then_to_the_newest_event() {
        let t = Timeline::default();
        let event =
            t.begin(Begin { origin: "event", title: "conversation_new_message", call_type: 2, ..Begin::default() });
        let sync = t.begin(app_call("invoke_sync_msg", "", ""));
        let job = t.begin(app_call("conversation_digest", "JI1", ""));
        assert_eq!(t.sdk_call("", "JI1", "sync_msg", 0, 1.0, None), Some(job));
        assert_eq!(t.sdk_call("invoke_sync_msg", "", "sync_msg", 0, 1.0, None), Some(sync));
        assert_eq!(t.sdk_call("", "", "sync_msg", 0, 1.0, None), Some(event));
        assert_eq!(t.sdk_call("", "JI-unknown", "sync_msg", 0, 1.0, None), None);
        t.reported("JI1", 0);
        let (_, all) = t.since(0, 100);
        let by_id = |id| all.iter().find(|e| e.id == id).unwrap();
        assert_eq!(by_id(job).steps.len(), 2);
        assert!(matches!(by_id(job).steps[1], Step::Report { errcode: 0, .. }));
        assert_eq!(by_id(event).steps.len(), 1);
    }

    #[test]
    fn a_notify_links_the_push_and_the_fetch_to_the_event_that_made_it() {
        let t = Timeline::default();
        let event = t.begin(Begin { origin: "event", title: "e", call_type: 2, ..Begin::default() });
        t.link_notify("", "", "NID1");
        t.notified("NID1", Some(1), Some(true));
        let fetch = t.begin(app_call("get_callback_data", "", "NID1"));
        let (_, all) = t.since(0, 100);
        let e = all.iter().find(|e| e.id == event).unwrap();
        assert!(matches!(e.steps[0], Step::Notify { delivered: Some(true), .. }));
        assert!(matches!(e.steps[1], Step::Fetched { by, .. } if by == fetch));
    }

    #[test]
    fn the_buffer_is_bounded_and_since_returns_only_changes_newest_first() {
        let t = Timeline::default();
        for _ in 0..CAPACITY + 10 {
            t.begin(app_call("a", "", ""));
        }
        let (seq, all) = t.since(0, usize::MAX);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].id, (CAPACITY + 10) as u64);
        let last = all[0].id;
        t.program_done(last, Ok(r#"{"errcode":0}"#));
        let (_, changed) = t.since(seq, 100);
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].errcode, Some(0));
        assert!(changed[0].latency_ms.is_some());
    }

    #[test]
    fn long_texts_are_cut_on_a_character_boundary() {
        let long = "é".repeat(TEXT_CAP);
        let c = cut(&long);
        assert!(c.len() < long.len());
        assert!(c.ends_with(&format!("({} bytes)", long.len())));
    }
}
