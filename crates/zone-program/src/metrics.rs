//! The program's metrics, served at `GET /metrics` in the OpenMetrics text format through the
//! `prometheus-client` crate. Every name starts with `zone_program_`; `deploy/alerts.yml` and
//! `deploy/dashboard.json` use them, and README "Metrics" lists them.
//!
//! Labels are bounded: an ability id the registry does not know is `unknown`; an SDK API outside the
//! documented list is `other`; error codes are taken as they come only for the first
//! [`CODE_LABELS_MAX`] distinct values, later ones become `other`. No label carries request data.
//!
//! Gauges of the store (jobs, notify data) are read when scraped; the rest is counted as it happens.
//! The four counters of the first release (`callbacks_answered`, `callbacks_rejected`,
//! `error_replies`, `sdk_failures`) keep their names.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::sdk::{CallContext, DecodeError, Decoded, ReplayFill, SdkError, ZoneSdk};
use crate::store::Store;

/// Distinct error-code label values kept before new ones become `other`.
pub const CODE_LABELS_MAX: usize = 64;

/// The content type of `GET /metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric of one program instance.
#[derive(Debug)]
pub struct Metrics {
    /// Requests that decoded and were answered with an encoded reply.
    pub callbacks_answered: Arc<AtomicU64>,
    /// Requests refused by verification (signature, window, nonce, key version, decryption).
    pub callbacks_rejected: Arc<AtomicU64>,
    /// Replies that carried a non-zero errcode.
    pub error_replies: Arc<AtomicU64>,
    /// SDK calls that failed (any reason).
    pub sdk_failures: Arc<AtomicU64>,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Histogram,
    ability_calls: Family<AbilityLabels, Counter>,
    sdk_seconds: Family<ApiLabels, Histogram>,
    sdk_errors: Family<SdkErrorLabels, Counter>,
    job_reports: Family<OutcomeLabels, Counter>,
    jobs: Family<StateLabels, Gauge>,
    job_oldest_queued_seconds: Gauge<f64, AtomicU64>,
    notify_entries: Gauge,
    notify_bytes: Gauge,
    notify_max_entries: Gauge,
    notify_max_bytes: Gauge,
    open_connections: Gauge,
    replay_cache_entries: Gauge,
    replay_cache_capacity: Gauge,
    codes: Mutex<HashSet<i64>>,
    registry: Registry,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    outcome: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AbilityLabels {
    ability: String,
    errcode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    api: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SdkErrorLabels {
    api: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// Why a request was refused by verification, as a bounded label value. Attached by the callback
/// handler to its response; read by [`Metrics::request_done`].
#[derive(Debug, Clone, Copy)]
pub struct RefusedReason(pub &'static str);

impl RefusedReason {
    /// The class of a decode failure code (crypto −4000x, codec −4100x, SDK −2000x).
    pub fn of_code(code: i32) -> Self {
        Self(match code {
            -40001 | -40003 => "signature",
            -41003 => "timestamp",
            -41004 => "key_version",
            -41005 => "replay",
            -41006 => "replay_cache_full",
            -40005 => "receive_id",
            -40009..=-40006 | -40004 => "decrypt",
            -41001 | -41002 | -41007 | -40002 | -40010 | -40011 => "malformed",
            -20099..=-20000 => "sdk_decode",
            _ => "other",
        })
    }
}

fn request_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

fn sdk_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set, registered under `zone_program_`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("zone_program");
        let legacy = Legacy {
            answered: Arc::default(),
            rejected: Arc::default(),
            error_replies: Arc::default(),
            sdk_failures: Arc::default(),
        };
        let m = Self {
            callbacks_answered: legacy.answered.clone(),
            callbacks_rejected: legacy.rejected.clone(),
            error_replies: legacy.error_replies.clone(),
            sdk_failures: legacy.sdk_failures.clone(),
            requests: Family::default(),
            request_seconds: request_buckets(),
            ability_calls: Family::default(),
            sdk_seconds: Family::new_with_constructor(sdk_buckets),
            sdk_errors: Family::default(),
            job_reports: Family::default(),
            jobs: Family::default(),
            job_oldest_queued_seconds: Gauge::default(),
            notify_entries: Gauge::default(),
            notify_bytes: Gauge::default(),
            notify_max_entries: Gauge::default(),
            notify_max_bytes: Gauge::default(),
            open_connections: Gauge::default(),
            replay_cache_entries: Gauge::default(),
            replay_cache_capacity: Gauge::default(),
            codes: Mutex::default(),
            registry: Registry::default(),
        };
        registry.register_collector(Box::new(legacy));
        registry.register(
            "requests",
            "Requests to POST / by outcome (ok, refused, too_large, timeout, busy, error) and refusal reason.",
            m.requests.clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "Time to answer a request to POST /.",
            Unit::Seconds,
            m.request_seconds.clone(),
        );
        registry.register(
            "ability_calls",
            "App calls (call_type 1) by ability and the errcode of the reply.",
            m.ability_calls.clone(),
        );
        registry.register_with_unit(
            "sdk_call_duration",
            "Time of one SDK call, by API (pool wait included).",
            Unit::Seconds,
            m.sdk_seconds.clone(),
        );
        registry.register(
            "sdk_errors",
            "SDK calls that failed (Invoke code, timeout, busy, bad_response, unavailable) or answered a non-zero errcode, by API and code.",
            m.sdk_errors.clone(),
        );
        registry.register(
            "job_reports",
            "Attempts to report an async result (program_async_job_call_back) by outcome; each failed attempt is retried until the attempts run out.",
            m.job_reports.clone(),
        );
        registry.register("jobs", "Durable job rows by state (queued, running, done, failed).", m.jobs.clone());
        registry.register_with_unit(
            "job_oldest_queued_age",
            "Age of the oldest queued job (0 when none).",
            Unit::Seconds,
            m.job_oldest_queued_seconds.clone(),
        );
        registry.register("notify_entries", "Live notify data entries in the store.", m.notify_entries.clone());
        registry.register_with_unit(
            "notify_data",
            "Bytes of live notify data in the store.",
            Unit::Bytes,
            m.notify_bytes.clone(),
        );
        registry.register(
            "notify_max_entries",
            "store.max_notify_entries: the cap of live notify entries.",
            m.notify_max_entries.clone(),
        );
        registry.register_with_unit(
            "notify_max_data",
            "store.max_notify_bytes: the cap of live notify data.",
            Unit::Bytes,
            m.notify_max_bytes.clone(),
        );
        registry.register("open_connections", "HTTP connections open now.", m.open_connections.clone());
        registry.register(
            "replay_cache_entries",
            "Live nonces in the replay cache (local codec; the vendor SDK keeps its own, not observed: 0).",
            m.replay_cache_entries.clone(),
        );
        registry.register(
            "replay_cache_capacity",
            "sdk.local.nonce_cache_capacity: beyond it requests are refused with -41006 (0: not observed).",
            m.replay_cache_capacity.clone(),
        );
        Self { registry, ..m }
    }

    /// Adds one to a counter of the first release.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one request to `POST /` answered with `status` after `elapsed`.
    pub fn request_done(&self, status: u16, refused: Option<RefusedReason>, elapsed: Duration) {
        let (outcome, reason) = match (status, refused) {
            // A backend may build a 200 reply for a refused request (the vendor SDK does).
            (_, Some(RefusedReason(reason))) => ("refused", reason),
            (200, None) => ("ok", ""),
            (413, None) => ("too_large", ""),
            (408, None) => ("timeout", ""),
            (429 | 503, None) => ("busy", ""),
            (400..=499, None) => ("refused", "other"),
            _ => ("error", ""),
        };
        self.requests.get_or_create(&RequestLabels { outcome, reason }).inc();
        self.request_seconds.observe(elapsed.as_secs_f64());
    }

    /// Records an app call of `ability` (already bounded by the caller: a registered id or
    /// `unknown`) answered with `errcode`.
    pub fn ability_call(&self, ability: &str, errcode: i64) {
        let errcode = self.code_label(errcode);
        self.ability_calls.get_or_create(&AbilityLabels { ability: ability.to_owned(), errcode }).inc();
    }

    /// Records one SDK call.
    pub fn sdk_call(&self, api: &str, elapsed: Duration, outcome: &Result<String, SdkError>) {
        let api = api_label(api);
        self.sdk_seconds.get_or_create(&ApiLabels { api: api.clone() }).observe(elapsed.as_secs_f64());
        let code = match outcome {
            Ok(rsp) => match response_errcode(rsp) {
                0 => None,
                e => Some(self.code_label(e)),
            },
            Err(SdkError::Invoke { ret, .. }) => Some(self.code_label(i64::from(*ret))),
            Err(SdkError::Errcode { errcode, .. }) => Some(self.code_label(*errcode)),
            Err(SdkError::Timeout) => Some("timeout".into()),
            Err(SdkError::Busy) => Some("busy".into()),
            Err(SdkError::BadResponse) => Some("bad_response".into()),
            Err(SdkError::Unavailable(_)) => Some("unavailable".into()),
            Err(SdkError::Limit { .. }) => Some("limit".into()),
        };
        if outcome.is_err() {
            Self::inc(&self.sdk_failures);
        }
        if api == crate::jobs::REPORT_API {
            let outcome = if code.is_none() { "ok" } else { "failed" };
            self.job_reports.get_or_create(&OutcomeLabels { outcome }).inc();
        }
        if let Some(code) = code {
            self.sdk_errors.get_or_create(&SdkErrorLabels { api, code }).inc();
        }
    }

    /// Reads the store's gauges and the SDK's replay cache, then encodes everything.
    pub async fn render(&self, store: &Store, sdk: &dyn ZoneSdk) -> String {
        if let Some(fill) = sdk.replay_fill() {
            self.replay_cache_entries.set(i64::try_from(fill.live).unwrap_or(i64::MAX));
            self.replay_cache_capacity.set(i64::try_from(fill.capacity).unwrap_or(i64::MAX));
        }
        match store.job_counts().await {
            Ok(c) => {
                for (state, n) in [("queued", c.queued), ("running", c.running), ("done", c.done), ("failed", c.failed)]
                {
                    self.jobs.get_or_create(&StateLabels { state }).set(n);
                }
            }
            Err(e) => tracing::warn!(error = %e, "metrics: reading the job counts failed"),
        }
        match store.oldest_queued_job_ms().await {
            Ok(oldest) => {
                let age = oldest.map_or(0, |created| (store.clock().now_ms() - created).max(0));
                self.job_oldest_queued_seconds.set(age as f64 / 1000.0);
            }
            Err(e) => tracing::warn!(error = %e, "metrics: reading the oldest job failed"),
        }
        match store.notify_stats().await {
            Ok(s) => {
                self.notify_entries.set(s.live);
                self.notify_bytes.set(s.live_bytes);
            }
            Err(e) => tracing::warn!(error = %e, "metrics: reading the notify counts failed"),
        }
        let limits = store.limits();
        self.notify_max_entries.set(limits.max_notify_entries);
        self.notify_max_bytes.set(limits.max_notify_bytes);
        self.encode()
    }

    /// The exposition of what is recorded now (store gauges as last read).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }

    /// Sets `zone_program_open_connections` (read from the server's connection table at scrape).
    pub fn set_open_connections(&self, open: u64) {
        self.open_connections.set(i64::try_from(open).unwrap_or(i64::MAX));
    }

    fn code_label(&self, code: i64) -> String {
        let mut codes = self.codes.lock().unwrap_or_else(|p| p.into_inner());
        if codes.contains(&code) || codes.len() < CODE_LABELS_MAX {
            codes.insert(code);
            code.to_string()
        } else {
            "other".into()
        }
    }
}

/// The API label: a documented SDK API, or `other`.
fn api_label(api: &str) -> String {
    if crate::abilities::catalog::SDK_APIS.iter().any(|a| a.name == api) { api.to_owned() } else { "other".into() }
}

fn response_errcode(rsp: &str) -> i64 {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(default)]
        errcode: i64,
    }
    serde_json::from_str::<Head>(rsp).map_or(0, |h| h.errcode)
}

/// The counters of the first release, encoded at scrape time from their atomics.
#[derive(Debug)]
struct Legacy {
    answered: Arc<AtomicU64>,
    rejected: Arc<AtomicU64>,
    error_replies: Arc<AtomicU64>,
    sdk_failures: Arc<AtomicU64>,
}

impl Collector for Legacy {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rows = [
            ("callbacks_answered", "Requests answered with an encoded reply.", &self.answered),
            ("callbacks_rejected", "Requests refused by verification.", &self.rejected),
            ("error_replies", "Replies with a non-zero errcode.", &self.error_replies),
            ("sdk_failures", "Failed SDK calls (any reason).", &self.sdk_failures),
        ];
        for (name, help, value) in rows {
            let counter = ConstCounter::new(value.load(Ordering::Relaxed));
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

/// An SDK backend whose every call is timed and counted in [`Metrics`].
pub struct Metered {
    inner: Arc<dyn ZoneSdk>,
    metrics: Arc<Metrics>,
}

impl Metered {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ZoneSdk>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

#[async_trait]
impl ZoneSdk for Metered {
    fn decode(&self, method: &str, headers: &[(String, String)], body: &[u8]) -> Result<Decoded, DecodeError> {
        self.inner.decode(method, headers, body)
    }

    async fn invoke(&self, ctx: &CallContext, api: &str, request_json: &str) -> Result<String, SdkError> {
        let started = Instant::now();
        let outcome = self.inner.invoke(ctx, api, request_json).await;
        self.metrics.sdk_call(api, started.elapsed(), &outcome);
        outcome
    }

    fn generate_notify_id(&self) -> Result<String, SdkError> {
        self.inner.generate_notify_id()
    }

    fn native_notify_ids(&self) -> bool {
        self.inner.native_notify_ids()
    }

    fn may_block(&self) -> bool {
        self.inner.may_block()
    }

    fn replay_fill(&self) -> Option<ReplayFill> {
        self.inner.replay_fill()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_labels_are_bounded() {
        let m = Metrics::new();
        for code in 0..(CODE_LABELS_MAX as i64 + 10) {
            m.ability_call("list_abilities", code);
        }
        m.ability_call("list_abilities", 3);
        let text = m.encode();
        assert!(text.contains(r#"zone_program_ability_calls_total{ability="list_abilities",errcode="other"} 10"#));
        assert!(text.contains(r#"zone_program_ability_calls_total{ability="list_abilities",errcode="3"} 2"#));
    }

    #[test]
    fn refusal_codes_fall_into_a_few_classes() {
        assert_eq!(RefusedReason::of_code(-40001).0, "signature");
        assert_eq!(RefusedReason::of_code(-41005).0, "replay");
        assert_eq!(RefusedReason::of_code(-40008).0, "decrypt");
        assert_eq!(RefusedReason::of_code(-20002).0, "sdk_decode");
        assert_eq!(RefusedReason::of_code(7).0, "other");
    }

    #[test]
    fn unknown_sdk_apis_share_one_label_and_errcodes_count_as_errors() {
        let m = Metrics::new();
        m.sdk_call("no_such_api", Duration::from_millis(1), &Ok(r#"{"errcode":0}"#.into()));
        m.sdk_call("sync_msg", Duration::from_millis(2), &Ok(r#"{"errcode":45009}"#.into()));
        m.sdk_call("sync_msg", Duration::from_millis(2), &Err(SdkError::Timeout));
        let text = m.encode();
        assert!(text.contains(r#"zone_program_sdk_call_duration_seconds_count{api="other"} 1"#), "{text}");
        assert!(text.contains(r#"zone_program_sdk_errors_total{api="sync_msg",code="45009"} 1"#));
        assert!(text.contains(r#"zone_program_sdk_errors_total{api="sync_msg",code="timeout"} 1"#));
        assert!(text.contains("zone_program_sdk_failures_total 1"));
    }
}
