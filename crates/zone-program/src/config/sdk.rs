//! `[sdk]`, `[sdk.local]` and `[sdk.native]`: the zone SDK backend and its bounds.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use zone_crypto::cipher::{self as crypto, EncodingAesKey};
use zone_crypto::{codec, demo};

use super::{ConfigError, positive};

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

impl SdkConfig {
    /// Checks the section's values, `[sdk.local]` only with the local backend; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("sdk.pool_size", self.pool_size as u64)?;
        positive("sdk.invoke_timeout_ms", self.invoke_timeout_ms)?;
        positive("sdk.max_response_bytes", self.max_response_bytes as u64)?;
        if self.backend == SdkBackend::Local {
            self.local.validate()?;
        }
        self.native.validate(self.backend)
    }
}

impl LocalSdkConfig {
    /// Checks the token, the keys, the replay window, the nonce cache and the zone URL; the error
    /// names the key, never the secret.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crypto::parse_token(self.token.expose_secret()).map_err(|r| ConfigError::new("sdk.local.token", r))?;
        if self.keys.is_empty() {
            return Err(ConfigError::new("sdk.local.keys", "at least one key is needed"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, k) in self.keys.iter().enumerate() {
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
        if !(1..=86_400).contains(&self.replay_window_secs) {
            return Err(ConfigError::new("sdk.local.replay_window_secs", "must be 1 to 86400"));
        }
        if self.nonce_cache_capacity == 0 {
            return Err(ConfigError::new("sdk.local.nonce_cache_capacity", "must be greater than 0"));
        }
        if !(self.zone_url.starts_with("http://") || self.zone_url.starts_with("https://")) {
            return Err(ConfigError::new("sdk.local.zone_url", "must be an http:// or https:// URL"));
        }
        Ok(())
    }

    /// Whether the token or any key is the public demo value of [`zone_crypto::demo`].
    pub fn uses_demo_secrets(&self) -> bool {
        self.token.expose_secret() == demo::LOCAL_TOKEN
            || self.keys.iter().any(|k| k.encoding_aes_key.expose_secret() == demo::LOCAL_KEY)
    }
}

impl NativeSdkConfig {
    /// Checks debug mode (both tokens, native backend only) and, with the native `backend`, the
    /// shim library; the error names the key.
    pub fn validate(&self, backend: SdkBackend) -> Result<(), ConfigError> {
        if self.debug_token.is_some() != self.access_token.is_some() {
            return Err(ConfigError::new("sdk.native.debug_token", "debug_token and access_token go together"));
        }
        if self.debug_token.is_some() && backend != SdkBackend::Native {
            return Err(ConfigError::new("sdk.native.debug_token", "debug mode needs sdk.backend = \"native\""));
        }
        if backend == SdkBackend::Native && self.library.as_os_str().is_empty() {
            return Err(ConfigError::new("sdk.native.library", "must name the shim library"));
        }
        Ok(())
    }
}
