//! `[app]` of the developer configuration: the provider's app backend, outside the zone.

use std::net::SocketAddr;
use std::path::PathBuf;

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use zone_crypto::cipher::{self as crypto, EncodingAesKey};
use zone_crypto::demo;

/// `[app]`: the provider's app backend, outside the zone (`zone-program app …`). The defaults are
/// the local zone's public demo values, so `app` commands work against `serve --local` as they are.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppConfig {
    /// Base URL of the WeCom API: `https://qyapi.weixin.qq.com`, or the local zone
    /// (default `http://127.0.0.1:8081`).
    pub base_url: String,
    /// The corp id for `gettoken`.
    pub corp_id: String,
    /// The app secret for `gettoken`.
    pub corp_secret: SecretString,
    /// An access_token obtained elsewhere (e.g. a third-party app's corp token); skips `gettoken`.
    pub access_token: Option<SecretString>,
    /// The program id (专区程序 id) the app calls.
    pub program_id: String,
    /// File caching the access_token until it expires (mode 0600). Default `data/app-token.json`.
    pub token_cache: PathBuf,
    /// Deadline of one API call in milliseconds. Default 15000.
    pub timeout_ms: u64,
    /// The app's callback receiver (`app listen`).
    pub callback: AppCallbackConfig,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8081".into(),
            corp_id: demo::CORP_ID.into(),
            corp_secret: SecretString::from(demo::CORP_SECRET),
            access_token: None,
            program_id: demo::PROGRAM_ID.into(),
            token_cache: PathBuf::from("data/app-token.json"),
            timeout_ms: 15_000,
            callback: AppCallbackConfig::default(),
        }
    }
}

/// `[app.callback]`: where `app listen` receives WeCom's XML callbacks, and their keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppCallbackConfig {
    /// Address to listen on. Default `127.0.0.1:9090`.
    pub listen: SocketAddr,
    /// URL path of the callback. Default `/callback`.
    pub path: String,
    /// The callback Token (1–32 of `[A-Za-z0-9]`).
    pub token: SecretString,
    /// The callback EncodingAESKey (43 of `[A-Za-z0-9]`).
    pub encoding_aes_key: SecretString,
    /// Accepted ReceiveIds (your corp id, the authorising corp ids, your suite id). Empty: `app.corp_id`.
    pub receive_ids: Vec<String>,
}

impl Default for AppCallbackConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            path: "/callback".into(),
            token: SecretString::from(demo::APP_TOKEN),
            encoding_aes_key: SecretString::from(demo::APP_KEY),
            receive_ids: Vec::new(),
        }
    }
}

impl AppConfig {
    /// Checks every value that has a rule; the error names the key (`app.…`).
    pub fn validate(&self) -> anyhow::Result<()> {
        let app = self;
        if !(app.base_url.starts_with("http://") || app.base_url.starts_with("https://")) {
            return Err(invalid("app.base_url", "must be an http:// or https:// URL"));
        }
        if app.corp_id.is_empty() {
            return Err(invalid("app.corp_id", "must not be empty"));
        }
        if app.program_id.is_empty() {
            return Err(invalid("app.program_id", "must not be empty"));
        }
        if app.timeout_ms == 0 {
            return Err(invalid("app.timeout_ms", "must be greater than 0"));
        }
        let cb = &app.callback;
        if !cb.path.starts_with('/') {
            return Err(invalid("app.callback.path", "must start with /"));
        }
        crypto::parse_token(cb.token.expose_secret()).map_err(|r| invalid("app.callback.token", r))?;
        EncodingAesKey::parse(cb.encoding_aes_key.expose_secret())
            .map_err(|_| invalid("app.callback.encoding_aes_key", "must be 43 characters of [A-Za-z0-9]"))?;
        Ok(())
    }
}

fn invalid(key: impl std::fmt::Display, reason: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("config {key}: {reason}")
}
