//! Typed configuration: built-in defaults, then one TOML file (`--config`), then environment
//! overrides `ZONE_PROGRAM_<SECTION>__<KEY>` (`__` separates path segments, e.g.
//! `ZONE_PROGRAM_SERVER__LISTEN=0.0.0.0:9000`, `ZONE_PROGRAM_SDK__LOCAL__TOKEN=…`). Unknown keys are
//! errors; [`Config::validate`] names the key of the first bad value. Secrets are [`SecretString`]s
//! and never printed. `config.example.toml` mirrors every field here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use zone_crypto::cipher::{self as crypto, EncodingAesKey};
use zone_crypto::{codec, demo};

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "ZONE_PROGRAM_";

/// A configuration error that names the key at fault.
#[derive(Debug, thiserror::Error)]
#[error("config {key}: {reason}")]
pub struct ConfigError {
    /// The dotted key, e.g. `sdk.local.keys[0].encoding_aes_key`, or the file.
    pub key: String,
    /// What is wrong (never the secret value).
    pub reason: String,
}

impl ConfigError {
    /// An error at `key`.
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { key: key.into(), reason: reason.into() }
    }
}

/// The whole configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The HTTP server facing the WeCom backend.
    pub server: ServerConfig,
    /// Logging.
    pub log: LogConfig,
    /// The zone SDK backend and its bounds.
    pub sdk: SdkConfig,
    /// The embedded store of notify data and jobs.
    pub store: StoreConfig,
    /// Async job workers.
    pub jobs: JobsConfig,
    /// Ability input and output handling.
    pub abilities: AbilitiesConfig,
    /// RSA private keys that unwrap message secret keys.
    pub keyring: KeyringConfig,
    /// Message access: the index, the budget of calls without an event token, event paging.
    pub messages: MessagesConfig,
}

/// `[messages]`: how the program reaches messages without hammering `sync_msg` (WeCom limits calls
/// without an event token strictly: sdk-data-apis.md §1.4).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MessagesConfig {
    /// Calls without an event token (`sync_msg` / `get_msg_list_by_page_id` from `begin_time`) one
    /// corp may make per minute, refilled evenly. Default 6.
    pub tokenless_per_minute: u32,
    /// How many such calls may come at once after a quiet spell (the bucket's size). Default 3.
    pub tokenless_burst: u32,
    /// How far the index may lag behind now and still answer a range ending now, in seconds: newer
    /// messages come with their `conversation_new_message` event. Default 60.
    pub index_freshness_secs: i64,
    /// Listing pages (of up to 1000 messages) one event notification carries; more continue as the
    /// next part. Each page can be several hundred KiB of `get_callback_data` reply. Default 10.
    pub pages_per_notify: usize,
}

impl Default for MessagesConfig {
    fn default() -> Self {
        Self { tokenless_per_minute: 6, tokenless_burst: 3, index_freshness_secs: 60, pages_per_notify: 10 }
    }
}

/// `[server]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:8080`; in the zone `0.0.0.0:8080` (its port), which
    /// `preflight` reminds of with the native backend.
    pub listen: SocketAddr,
    /// Largest request body in bytes; larger gets 413. Default 2 MiB.
    pub body_limit_bytes: usize,
    /// Deadline of one request in milliseconds. Default 30000.
    pub request_timeout_ms: u64,
    /// How long graceful shutdown waits for in-flight requests, in milliseconds. Default 10000.
    pub shutdown_grace_ms: u64,
    /// Most connections open at once (lowered to the open-file limit less 256). At the cap a new
    /// connection replaces the longest-idle one; when all are busy it gets a 503. Default 4096.
    pub max_connections: usize,
    /// Time a connection gets to send a whole request head, after opening or after its previous
    /// reply (so also the idle keep-alive timeout), in milliseconds. Default 10000.
    pub header_read_timeout_ms: u64,
    /// Longest pause while a request body arrives, in milliseconds (then 400). Default 10000.
    pub body_read_timeout_ms: u64,
    /// Most bytes of request bodies being received at once, across all connections; a request that
    /// does not fit gets 503 before its body is read. At least `body_limit_bytes`. Default 64 MiB.
    pub max_buffered_body_bytes: usize,
    /// Serve with the local backend and the public demo token or key (`[sdk.local]` defaults) on a
    /// non-loopback address: anyone on the network who reads the README can then call the program.
    /// For a closed lab network only (`serve --allow-public-demo-keys`). Default false.
    pub allow_public_demo_keys: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 2 * 1024 * 1024,
            request_timeout_ms: 30_000,
            shutdown_grace_ms: 10_000,
            max_connections: 4096,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 10_000,
            max_buffered_body_bytes: 64 * 1024 * 1024,
            allow_public_demo_keys: false,
        }
    }
}

/// `[log]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (human) or `json`. Default `text`.
    pub format: LogFormat,
    /// A tracing filter (`info`, `zone_program=debug,…`); `RUST_LOG` wins when set. Default `info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Text, level: "info".into() }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// `[sdk]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SdkConfig {
    /// `local` (local codec + local zone) or `native` (vendor SDK via the shim). Default `local`.
    pub backend: SdkBackend,
    /// Most SDK calls in flight at once. Default 64: the program's throughput is at most this many
    /// calls per SDK latency (64 calls of 10 ms: 6 400 calls/s; 16 capped it at 1 600).
    pub pool_size: usize,
    /// How long a call waits for a free slot before "busy", in milliseconds. Default 200.
    pub queue_wait_ms: u64,
    /// Deadline of one SDK call in milliseconds. Default 10000.
    pub invoke_timeout_ms: u64,
    /// Largest SDK response accepted, in bytes. Default 16 MiB.
    pub max_response_bytes: usize,
    /// The local backend.
    pub local: LocalSdkConfig,
    /// The native backend.
    pub native: NativeSdkConfig,
}

impl Default for SdkConfig {
    fn default() -> Self {
        Self {
            backend: SdkBackend::Local,
            pool_size: 64,
            queue_wait_ms: 200,
            invoke_timeout_ms: 10_000,
            max_response_bytes: 16 * 1024 * 1024,
            local: LocalSdkConfig::default(),
            native: NativeSdkConfig::default(),
        }
    }
}

/// Which SDK backend serves the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SdkBackend {
    /// The local codec, talking to the local zone over HTTP.
    Local,
    /// The vendor SDK through the C ABI shim.
    Native,
}

/// `[sdk.local]`: the local codec shared with the local zone. The defaults are public demo values
/// for offline use only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalSdkConfig {
    /// Base URL of the local zone. Default `http://127.0.0.1:8081`.
    pub zone_url: String,
    /// Signing token, 1–32 of `[A-Za-z0-9]`.
    pub token: SecretString,
    /// Keys by version; replies and calls use the highest.
    pub keys: Vec<LocalKey>,
    /// Accepted clock skew in seconds (±). Default 300.
    pub replay_window_secs: i64,
    /// Most nonces remembered by each of the two replay caches (the callbacks', and the SDK replies'); when
    /// full of live ones, requests are refused. A nonce is kept until
    /// its timestamp + the window (≤ 2 × window + 1 s), ~18 bytes each. Default 1250000: 2 000
    /// requests/s sustained even from a peer a whole window ahead (~4 000/s with agreeing clocks),
    /// under 40 MiB when full, nothing when idle.
    pub nonce_cache_capacity: usize,
}

impl Default for LocalSdkConfig {
    fn default() -> Self {
        Self {
            zone_url: "http://127.0.0.1:8081".into(),
            token: SecretString::from(demo::LOCAL_TOKEN),
            keys: vec![LocalKey { ver: 1, encoding_aes_key: SecretString::from(demo::LOCAL_KEY) }],
            replay_window_secs: codec::DEFAULT_WINDOW_SECS,
            nonce_cache_capacity: codec::DEFAULT_NONCE_CAPACITY,
        }
    }
}

/// One key of the local codec.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalKey {
    /// The version sent in `ww-secret-ver`.
    pub ver: u32,
    /// 43 characters of `[A-Za-z0-9]`.
    pub encoding_aes_key: SecretString,
}

/// `[sdk.native]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NativeSdkConfig {
    /// Path of the C ABI shim library. Default `native/build/libzone_shim.so`.
    pub library: PathBuf,
    /// Debug token (调试凭证) to open the vendor debug mode at start; with `access_token`.
    pub debug_token: Option<SecretString>,
    /// The app's access_token for debug mode.
    pub access_token: Option<SecretString>,
    /// Opaque per-instance settings handed to the shim at start. The vendor SDK build of the shim
    /// ignores them; the stub SDK used in tests reads its settings (codec keys, zone URL, injected
    /// faults) from them. Default empty.
    pub init_options: SecretString,
    /// Also write the program's log lines through the SDK's log functions (the zone keeps only
    /// those). Default true.
    pub log_to_sdk: bool,
    /// Most calls into the vendor SDK at once (decode, reply, invoke, notify id), below
    /// `sdk.pool_size`; 1 serialises them. The thread-safety of SDK objects is undocumented and SDK
    /// builds before 2024-12-27 had a network-handle limit under multithreading. 0 (default): no
    /// cap beyond `sdk.pool_size`.
    pub max_concurrent_calls: usize,
}

impl Default for NativeSdkConfig {
    fn default() -> Self {
        Self {
            library: PathBuf::from("native/build/libzone_shim.so"),
            debug_token: None,
            access_token: None,
            init_options: SecretString::from(""),
            log_to_sdk: true,
            max_concurrent_calls: 0,
        }
    }
}

/// `[store]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// SQLite file. Default `data/zone-program.sqlite`.
    pub path: PathBuf,
    /// How long notify data stays readable, in seconds; at most 600 (the notify_id's validity).
    pub notify_ttl_secs: u64,
    /// Most notify entries kept at once. Default 10000.
    pub max_notify_entries: u64,
    /// Most bytes of notify data kept at once. Default 64 MiB.
    pub max_notify_bytes: u64,
    /// Interval of the expired-row purge, in seconds. Default 30.
    pub purge_interval_secs: u64,
    /// How long a write waits for another connection's lock on the file (a backup, an operator's
    /// `sqlite3`) before it fails, in milliseconds. Default 5000.
    pub busy_timeout_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("data/zone-program.sqlite"),
            notify_ttl_secs: 600,
            max_notify_entries: 10_000,
            max_notify_bytes: 64 * 1024 * 1024,
            purge_interval_secs: 30,
            busy_timeout_ms: 5000,
        }
    }
}

/// `[jobs]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Jobs run at once. Default 48: a job spends most of its time waiting for SDK calls, so the
    /// job rate is at most `workers` / the SDK latency (48 jobs of 10 ms: 4 800/s). With
    /// `report_concurrency` this is `sdk.pool_size` (64), so the jobs alone never wait for an SDK
    /// slot beyond `sdk.queue_wait_ms`; sync calls share the slots first come, first served.
    pub workers: usize,
    /// Results reported (`program_async_job_call_back`) at once; a job waiting to report does not
    /// hold one of `workers`. Default 16 (16 reports of 10 ms: 1 600/s).
    pub report_concurrency: usize,
    /// Jobs accepted but not finished; beyond this new async calls get "job queue full". The queue
    /// is the store's file, not memory: this guards the disk (each pending job holds its request
    /// data, at most `abilities.max_input_bytes`; a typical one well under 1 KiB). Default 1 000 000.
    pub max_pending: u64,
    /// Attempts to report a result with `program_async_job_call_back`. Default 8.
    pub report_attempts: u32,
    /// First retry delay of a report, doubled each time, in milliseconds. Default 500.
    pub report_backoff_ms: u64,
    /// How long an async job's model tasks may be polled in all, in seconds (a sync call polls
    /// within ¾ of `server.request_timeout_ms` instead). Default 120.
    pub model_poll_deadline_secs: u64,
    /// First polling interval of a model task, in milliseconds (backs off to 5 s). Default 200.
    pub model_poll_interval_ms: u64,
    /// Most runs of one job (transient-failure retries and restarts included) before it gives up:
    /// an async ability then reports "internal error", an event follow-up delivers what it has.
    /// Default 5.
    pub max_runs: u32,
    /// How long a worker's claim on a job lasts without renewal, in seconds. A running job renews
    /// it every third of this; a claim whose worker is gone, or whose outcome could not be recorded
    /// (store errors), runs out and the job is taken up again without a restart. Default 60.
    pub claim_lease_secs: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            workers: 48,
            report_concurrency: 16,
            max_pending: 1_000_000,
            report_attempts: 8,
            report_backoff_ms: 500,
            model_poll_deadline_secs: 120,
            model_poll_interval_ms: 200,
            max_runs: 5,
            claim_lease_secs: 60,
        }
    }
}

/// `[abilities]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AbilitiesConfig {
    /// `bare` (output as is, like the Java demo) or `output` (wrapped in `{"output":…}`). Default `bare`.
    pub output_envelope: OutputEnvelope,
    /// Largest accepted `data` of an app call, in bytes. Default 1 MiB.
    pub max_input_bytes: usize,
    /// The program's own APIs to offer the app as `invoke_<api>` anyway:
    /// `program_async_job_call_back` (an app could set its own async result) and `spec_notify_app`
    /// (an app could send a notification with an id of its choice). Default none.
    pub expose_program_apis: Vec<String>,
    /// Largest reply text of a sync call, in bytes; a larger output is answered 900011 instead.
    /// The size limit of a `sync_call_program` response is undocumented. Default 8 MiB.
    pub max_reply_bytes: usize,
    /// Abilities run as async jobs even when the decoded request says `is_async` false (which
    /// `call_type`/`is_async` SDK-routed `create_program_task` / `create_model_task` calls carry is
    /// undocumented). A request without `job_info` has nothing to report to and still runs sync.
    /// Default none.
    pub always_async: Vec<String>,
}

impl Default for AbilitiesConfig {
    fn default() -> Self {
        Self {
            output_envelope: OutputEnvelope::Bare,
            max_input_bytes: 1024 * 1024,
            max_reply_bytes: 8 * 1024 * 1024,
            always_async: Vec::new(),
            expose_program_apis: Vec::new(),
        }
    }
}

/// How ability output is wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputEnvelope {
    /// The output object itself.
    Bare,
    /// `{"output": <object>}`.
    Output,
}

/// `[keyring]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyringConfig {
    /// Private keys by corp and `public_key_ver`.
    pub keys: Vec<KeyringEntry>,
}

/// One private key file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyringEntry {
    /// The corp the key belongs to.
    pub corp_id: String,
    /// The `public_key_ver` it was registered under.
    pub public_key_ver: u32,
    /// PEM file (PKCS#1 or PKCS#8), readable by the owner only.
    pub private_key_path: PathBuf,
}

impl Config {
    /// Why serving this configuration would open the program to anyone who knows the public demo
    /// keys: the local backend with the demo token or key on a non-loopback `server.listen`, unless
    /// `server.allow_public_demo_keys`. `None` when it is safe to serve.
    pub fn public_demo_keys_exposed(&self) -> Option<String> {
        let local = &self.sdk.local;
        let demo = local.token.expose_secret() == demo::LOCAL_TOKEN
            || local.keys.iter().any(|k| k.encoding_aes_key.expose_secret() == demo::LOCAL_KEY);
        let exposed = self.sdk.backend == SdkBackend::Local
            && demo
            && !self.server.listen.ip().is_loopback()
            && !self.server.allow_public_demo_keys;
        exposed.then(|| {
            format!(
                "server.listen {} is not a loopback address, and the local backend uses the public demo token or key \
                 of [sdk.local]: anyone on the network could call the program. Listen on 127.0.0.1, set your own \
                 sdk.local.token and keys, use sdk.backend = \"native\", or, on a closed lab network only, pass \
                 --allow-public-demo-keys (server.allow_public_demo_keys)",
                self.server.listen
            )
        })
    }

    /// Defaults, then `file` (if any), then `ZONE_PROGRAM_*` variables from `env`; validated.
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        layered_table(file, env.clone()).and_then(Self::from_table).map_err(|e| with_env_hint(e, &env))
    }

    /// The configuration in `table` (every key optional), validated.
    pub fn from_table(table: toml::Table) -> Result<Self, ConfigError> {
        let config: Config = section(table, "")?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value that has a rule; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive =
            |key: &str, v: u64| if v == 0 { Err(ConfigError::new(key, "must be greater than 0")) } else { Ok(()) };
        positive("server.body_limit_bytes", self.server.body_limit_bytes as u64)?;
        positive("server.request_timeout_ms", self.server.request_timeout_ms)?;
        positive("server.max_connections", self.server.max_connections as u64)?;
        positive("server.header_read_timeout_ms", self.server.header_read_timeout_ms)?;
        positive("server.body_read_timeout_ms", self.server.body_read_timeout_ms)?;
        if self.server.max_buffered_body_bytes < self.server.body_limit_bytes
            || self.server.max_buffered_body_bytes > u32::MAX as usize
        {
            return Err(ConfigError::new(
                "server.max_buffered_body_bytes",
                "must be at least server.body_limit_bytes and at most 4 GiB",
            ));
        }
        positive("sdk.pool_size", self.sdk.pool_size as u64)?;
        positive("sdk.invoke_timeout_ms", self.sdk.invoke_timeout_ms)?;
        positive("sdk.max_response_bytes", self.sdk.max_response_bytes as u64)?;
        positive("store.notify_ttl_secs", self.store.notify_ttl_secs)?;
        if self.store.notify_ttl_secs > 600 {
            return Err(ConfigError::new(
                "store.notify_ttl_secs",
                "must be at most 600 (a notify_id is valid 10 minutes)",
            ));
        }
        positive("store.max_notify_entries", self.store.max_notify_entries)?;
        positive("store.max_notify_bytes", self.store.max_notify_bytes)?;
        positive("store.purge_interval_secs", self.store.purge_interval_secs)?;
        positive("jobs.workers", self.jobs.workers as u64)?;
        positive("jobs.report_concurrency", self.jobs.report_concurrency as u64)?;
        positive("jobs.max_pending", self.jobs.max_pending)?;
        positive("jobs.report_attempts", u64::from(self.jobs.report_attempts))?;
        positive("jobs.model_poll_deadline_secs", self.jobs.model_poll_deadline_secs)?;
        positive("jobs.model_poll_interval_ms", self.jobs.model_poll_interval_ms)?;
        positive("jobs.max_runs", u64::from(self.jobs.max_runs))?;
        positive("jobs.claim_lease_secs", self.jobs.claim_lease_secs)?;
        positive("abilities.max_input_bytes", self.abilities.max_input_bytes as u64)?;
        positive("messages.tokenless_per_minute", u64::from(self.messages.tokenless_per_minute))?;
        positive("messages.tokenless_burst", u64::from(self.messages.tokenless_burst))?;
        if !(1..=100).contains(&self.messages.pages_per_notify) {
            return Err(ConfigError::new("messages.pages_per_notify", "must be 1 to 100"));
        }
        if !(0..=3600).contains(&self.messages.index_freshness_secs) {
            return Err(ConfigError::new("messages.index_freshness_secs", "must be 0 to 3600"));
        }
        if self.abilities.max_reply_bytes < 1024 {
            return Err(ConfigError::new("abilities.max_reply_bytes", "must be at least 1024"));
        }
        for (i, name) in self.abilities.expose_program_apis.iter().enumerate() {
            if !crate::abilities::catalog::PROGRAM_APIS.contains(&name.as_str()) {
                return Err(ConfigError::new(
                    format!("abilities.expose_program_apis[{i}]"),
                    format!("must be one of {:?}", crate::abilities::catalog::PROGRAM_APIS),
                ));
            }
        }
        if self.abilities.max_input_bytes > self.server.body_limit_bytes {
            return Err(ConfigError::new("abilities.max_input_bytes", "must not exceed server.body_limit_bytes"));
        }
        if self.sdk.backend == SdkBackend::Local {
            self.validate_local_sdk()?;
        }
        if self.sdk.native.debug_token.is_some() != self.sdk.native.access_token.is_some() {
            return Err(ConfigError::new("sdk.native.debug_token", "debug_token and access_token go together"));
        }
        if self.sdk.native.debug_token.is_some() && self.sdk.backend != SdkBackend::Native {
            return Err(ConfigError::new("sdk.native.debug_token", "debug mode needs sdk.backend = \"native\""));
        }
        if self.sdk.backend == SdkBackend::Native && self.sdk.native.library.as_os_str().is_empty() {
            return Err(ConfigError::new("sdk.native.library", "must name the shim library"));
        }
        for (i, k) in self.keyring.keys.iter().enumerate() {
            if k.corp_id.is_empty() {
                return Err(ConfigError::new(format!("keyring.keys[{i}].corp_id"), "must not be empty"));
            }
        }
        Ok(())
    }

    fn validate_local_sdk(&self) -> Result<(), ConfigError> {
        let local = &self.sdk.local;
        crypto::parse_token(local.token.expose_secret()).map_err(|r| ConfigError::new("sdk.local.token", r))?;
        if local.keys.is_empty() {
            return Err(ConfigError::new("sdk.local.keys", "at least one key is needed"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, k) in local.keys.iter().enumerate() {
            EncodingAesKey::parse(k.encoding_aes_key.expose_secret()).map_err(|_| {
                ConfigError::new(
                    format!("sdk.local.keys[{i}].encoding_aes_key"),
                    "must be 43 characters of [A-Za-z0-9]",
                )
            })?;
            if !seen.insert(k.ver) {
                return Err(ConfigError::new(format!("sdk.local.keys[{i}].ver"), "duplicate key version"));
            }
        }
        if !(1..=86_400).contains(&local.replay_window_secs) {
            return Err(ConfigError::new("sdk.local.replay_window_secs", "must be 1 to 86400"));
        }
        if local.nonce_cache_capacity == 0 {
            return Err(ConfigError::new("sdk.local.nonce_cache_capacity", "must be greater than 0"));
        }
        if !(local.zone_url.starts_with("http://") || local.zone_url.starts_with("https://")) {
            return Err(ConfigError::new("sdk.local.zone_url", "must be an http:// or https:// URL"));
        }
        Ok(())
    }
}

/// The file (if any) as a TOML table, with the `ZONE_PROGRAM_*` variables of `env` applied on top.
/// Sections of tools other than the program (e.g. the developer CLI's `[local_zone]` and `[app]`)
/// are taken out of it by their owners before [`Config::from_table`].
pub fn layered_table(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<toml::Table, ConfigError> {
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::new(path.display().to_string(), format!("cannot read: {e}")))?;
            toml::from_str::<toml::Table>(&text).map_err(|e| {
                let at = e.span().map(|s| line_column(&text, s.start)).unwrap_or_default();
                ConfigError::new(path.display().to_string(), format!("{at}{}", e.message().trim_end()))
            })?
        }
        None => toml::Table::new(),
    };
    let mut overrides: Vec<(String, String)> =
        env.into_iter().filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.len() > ENV_PREFIX.len()).collect();
    overrides.sort();
    for (name, value) in overrides {
        apply_override(&mut table, &name, &value)?;
    }
    Ok(table)
}

/// Deserialises `table` as a `T`; an error names the key, prefixed with `prefix` (e.g. `"app."`),
/// and never quotes the value.
pub fn section<T: serde::de::DeserializeOwned>(table: toml::Table, prefix: &str) -> Result<T, ConfigError> {
    let text = toml::to_string(&table).map_err(|e| ConfigError::new("config", e.to_string()))?;
    let de = toml::Deserializer::parse(&text).map_err(|e| ConfigError::new("config", e.message().to_owned()))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." {
            format!("{prefix}config").trim_end_matches('.').to_owned()
        } else {
            format!("{prefix}{key}")
        };
        ConfigError::new(key, without_value(e.into_inner().message()))
    })
}

/// `line L, column C: ` of byte `offset` in `text` (both from 1).
fn line_column(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}: ")
}

/// Adds, to an error at a key that a `ZONE_PROGRAM_*` variable of `env` set, the variable's name
/// and the form it takes.
pub fn with_env_hint(mut err: ConfigError, env: &[(String, String)]) -> ConfigError {
    // `sdk.local.keys[0].ver` was set by `ZONE_PROGRAM_SDK__LOCAL__KEYS` (or a deeper variable).
    let mut key = String::new();
    for part in err.key.split('.') {
        let part = part.split('[').next().unwrap_or(part);
        key = if key.is_empty() { part.to_owned() } else { format!("{key}.{part}") };
        let var = format!("{ENV_PREFIX}{}", key.replace('.', "__").to_ascii_uppercase());
        if env.iter().any(|(k, _)| *k == var) {
            err.reason = format!(
                "{} (set by the environment variable {var}; its value is read as TOML: a list is [\"a\", \"b\"], a \
                 table is {{k = 1}}, text may be bare or \"quoted\")",
                err.reason
            );
            break;
        }
    }
    err
}

/// A deserialisation message without the value it quotes: serde's `invalid type: string "…",
/// expected …` would print a mistyped secret (a token given where a list is expected) at start.
/// Rust type names are said in words (`u64` is "a whole number").
fn without_value(message: &str) -> String {
    let kinds = ["invalid type", "invalid value", "unknown variant", "invalid length"];
    match (kinds.iter().find(|k| message.starts_with(*k)), message.rsplit_once(", expected ")) {
        (Some(kind), Some((_, expected))) => format!("{kind}, expected {}", in_words(expected)),
        (Some(kind), None) => (*kind).to_owned(),
        _ => message.to_owned(),
    }
}

/// serde's name of an expected type, in the words of the configuration file.
fn in_words(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number (0 or more)".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a sequence" => "a list, e.g. [\"a\", \"b\"]".into(),
        "a map" => "a table".into(),
        e if e.starts_with("struct ") => "a table".into(),
        e => e.to_owned(),
    }
}

/// Sets `ZONE_PROGRAM_A__B__C=value` at `a.b.c`. The value is read as a TOML value when it parses as
/// one (numbers, booleans, arrays, inline tables, quoted strings), else taken as a plain string.
fn apply_override(table: &mut toml::Table, name: &str, raw: &str) -> Result<(), ConfigError> {
    let path: Vec<String> = name[ENV_PREFIX.len()..].split("__").map(str::to_ascii_lowercase).collect();
    let dotted = path.join(".");
    if path.iter().any(String::is_empty) {
        return Err(ConfigError::new(name, "malformed variable name"));
    }
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").expect("parsed key"),
        Err(_) => toml::Value::String(raw.to_owned()),
    };
    let (last, parents) = path.split_last().expect("non-empty path");
    let mut cur = table;
    for seg in parents {
        let entry = cur.entry(seg.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry.as_table_mut().ok_or_else(|| ConfigError::new(&dotted, "is not a table"))?;
    }
    cur.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_defaults_are_valid_and_serve_the_local_backend_on_8080() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.server.listen.port(), 8080);
        assert_eq!(c.sdk.backend, SdkBackend::Local);
        assert_eq!(c.store.notify_ttl_secs, 600);
    }

    /// Review finding 3: the defaults served the public demo keys on 0.0.0.0:8080.
    #[test]
    fn the_public_demo_keys_are_served_only_on_loopback_unless_allowed() {
        let c = Config::load(None, env(&[])).unwrap();
        assert!(c.server.listen.ip().is_loopback(), "the default listens on loopback");
        assert_eq!(c.public_demo_keys_exposed(), None);
        let open = [("ZONE_PROGRAM_SERVER__LISTEN", "0.0.0.0:8080")];
        let c = Config::load(None, env(&open)).unwrap();
        let why = c.public_demo_keys_exposed().expect("exposed");
        assert!(why.contains("server.listen 0.0.0.0:8080") && why.contains("--allow-public-demo-keys"), "{why}");
        let own_keys = [
            open[0],
            ("ZONE_PROGRAM_SDK__LOCAL__TOKEN", "MyOwnToken"),
            (
                "ZONE_PROGRAM_SDK__LOCAL__KEYS",
                r#"[{ ver = 1, encoding_aes_key = "MyOwnKey0123456789abcdefghijklmnopqrstuvwxy" }]"#,
            ),
        ];
        assert_eq!(Config::load(None, env(&own_keys)).unwrap().public_demo_keys_exposed(), None, "own keys");
        let native = [open[0], ("ZONE_PROGRAM_SDK__BACKEND", "native"), ("ZONE_PROGRAM_SDK__NATIVE__LIBRARY", "/x.so")];
        assert_eq!(Config::load(None, env(&native)).unwrap().public_demo_keys_exposed(), None, "native");
        let allowed = [open[0], ("ZONE_PROGRAM_SERVER__ALLOW_PUBLIC_DEMO_KEYS", "true")];
        assert_eq!(Config::load(None, env(&allowed)).unwrap().public_demo_keys_exposed(), None);
    }

    #[test]
    fn environment_overrides_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[server]\nlisten = \"127.0.0.1:1\"\nbody_limit_bytes = 10\n[abilities]\nmax_input_bytes = 5\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), env(&[("ZONE_PROGRAM_SERVER__LISTEN", "127.0.0.1:9")])).unwrap();
        assert_eq!(c.server.listen.port(), 9);
        assert_eq!(c.server.body_limit_bytes, 10);
    }

    #[test]
    fn an_unknown_key_is_an_error_that_names_it() {
        let err = Config::load(None, env(&[("ZONE_PROGRAM_SERVER__LISTN", "x")])).unwrap_err();
        assert_eq!(err.key, "server.listn", "{err}");
        let err = Config::load(None, env(&[("ZONE_PROGRAM_JOBS__WORKERS", "many")])).unwrap_err();
        assert_eq!(err.key, "jobs.workers", "{err}");
    }

    #[test]
    fn a_bad_value_is_an_error_that_names_its_key_and_not_the_secret() {
        let err = Config::load(None, env(&[("ZONE_PROGRAM_SDK__LOCAL__TOKEN", "not valid!secret")])).unwrap_err();
        assert_eq!(err.key, "sdk.local.token");
        assert!(!err.to_string().contains("secret"), "{err}");
        let err = Config::load(None, env(&[("ZONE_PROGRAM_STORE__NOTIFY_TTL_SECS", "1200")])).unwrap_err();
        assert_eq!(err.key, "store.notify_ttl_secs");
        let err =
            Config::load(None, env(&[("ZONE_PROGRAM_SDK__LOCAL__KEYS", "[{ver = 1, encoding_aes_key = \"short\"}]")]))
                .unwrap_err();
        assert_eq!(err.key, "sdk.local.keys[0].encoding_aes_key");
    }

    #[test]
    fn a_toml_syntax_error_has_its_line_and_column_and_a_number_is_said_in_words() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:1\"\nbody_limit_bytes = = 3\n").unwrap();
        let err = Config::load(Some(&path), env(&[])).unwrap_err();
        assert!(err.reason.starts_with("line 3, column "), "{err}");
        std::fs::write(&path, "[server]\nbody_limit_bytes = \"big\"\n").unwrap();
        let err = Config::load(Some(&path), env(&[])).unwrap_err();
        assert_eq!(
            (err.key.as_str(), err.reason.as_str()),
            ("server.body_limit_bytes", "invalid type, expected a whole number (0 or more)")
        );
    }

    #[test]
    fn a_mistyped_secret_is_not_quoted_in_the_error() {
        let err = Config::load(None, env(&[("ZONE_PROGRAM_SDK__LOCAL__KEYS", "TopSecretKeyMaterial")])).unwrap_err();
        assert_eq!(err.key, "sdk.local.keys");
        assert!(err.reason.starts_with("invalid type, expected a list, e.g. [\"a\", \"b\"]"), "{err}");
        assert!(err.reason.contains("ZONE_PROGRAM_SDK__LOCAL__KEYS"), "names the variable: {err}");
        assert!(!err.reason.contains("TopSecret"), "{err}");
        let err = Config::load(None, env(&[("ZONE_PROGRAM_SDK__LOCAL__TOKEN", "123456")])).unwrap_err();
        assert!(!err.to_string().contains("123456"), "{err}");
        let err = Config::load(None, env(&[("ZONE_PROGRAM_SDK__BACKEND", "plaintext")])).unwrap_err();
        assert!(err.reason.contains("expected") && !err.reason.contains("plaintext"), "{err}");
    }

    #[test]
    fn secrets_do_not_appear_in_debug_output() {
        let c = Config::load(None, env(&[])).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains(demo::LOCAL_KEY) && !dbg.contains(demo::LOCAL_TOKEN), "{dbg}");
    }

    #[test]
    fn debug_mode_needs_the_native_backend_and_both_tokens() {
        let debug =
            [("ZONE_PROGRAM_SDK__NATIVE__DEBUG_TOKEN", "dbg"), ("ZONE_PROGRAM_SDK__NATIVE__ACCESS_TOKEN", "acc")];
        let err = Config::load(None, env(&debug)).unwrap_err();
        assert_eq!(err.key, "sdk.native.debug_token");
        assert!(err.to_string().contains("native") && !err.to_string().contains("dbg"), "{err}");
        let native = [debug[0], debug[1], ("ZONE_PROGRAM_SDK__BACKEND", "native")];
        let c = Config::load(None, env(&native)).unwrap();
        assert_eq!(c.sdk.backend, SdkBackend::Native);
        let err = Config::load(None, env(&native[..1])).unwrap_err();
        assert_eq!(err.key, "sdk.native.debug_token");
    }
}
