//! The app side (`protocol/app-side.md`): what the provider's app backend does outside the zone.
//! [`AppClient`] calls WeCom's API (`/cgi-bin/gettoken`, `/cgi-bin/chatdata/*`) against real WeCom or
//! the local zone, by base URL, with the access_token cached until it expires; [`notify`] verifies and
//! decrypts WeCom's XML callbacks (`program_notify`, URL verification); [`listen`] serves them; the
//! `zone-program app …` commands are in [`commands`]. Used by the CLI and the end-to-end tests.

pub mod commands;
pub mod config;
pub mod errcode;
pub mod keygen;
pub mod listen;
pub mod notify;
pub mod token;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::config::AppConfig;
use token::{AccessToken, TokenFile, unix_now};

/// A failed app API call. Its text never carries the token, the secret or a URL with either.
#[derive(Debug, thiserror::Error)]
pub enum AppClientError {
    /// WeCom answered a non-zero `errcode`.
    #[error("{api}: {described}: {errmsg}", described = errcode::describe(*.errcode))]
    Api {
        /// The API name.
        api: String,
        /// The `errcode`.
        errcode: i64,
        /// The `errmsg` as WeCom sent it.
        errmsg: String,
    },
    /// The request did not complete (connection, timeout, HTTP status).
    #[error("{api}: the request failed")]
    Transport {
        /// The API name.
        api: String,
        /// The cause, its URL removed.
        #[source]
        source: reqwest::Error,
    },
    /// The reply is not the documented JSON.
    #[error("{api}: unexpected reply: {reason}")]
    BadReply {
        /// The API name.
        api: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The client could not be built.
    #[error("building the HTTP client: {0}")]
    Build(String),
}

impl AppClientError {
    /// The WeCom `errcode`, when WeCom answered one.
    pub fn errcode(&self) -> Option<i64> {
        match self {
            Self::Api { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }
}

/// The reply of `async_program_result`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AsyncResult {
    /// The job has not reported yet (the reply has no `response_errcode`; WeCom does not document
    /// this shape, the local zone answers `status` 0).
    Running,
    /// The program reported with `program_async_job_call_back`.
    Done {
        /// The `errcode` it reported.
        response_errcode: i64,
        /// The `result` it reported.
        response_data: String,
    },
}

/// Log levels of `set_log_level` (program-callbacks.md §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    /// 1: errors only.
    Err,
    /// 2: errors and information (WeCom's default).
    Info,
    /// 3: everything, debug included.
    Dbg,
}

impl LogLevel {
    /// The wire number.
    pub fn number(self) -> i64 {
        match self {
            Self::Err => 1,
            Self::Info => 2,
            Self::Dbg => 3,
        }
    }

    /// The level of a wire number.
    pub fn from_number(n: i64) -> Option<Self> {
        match n {
            1 => Some(Self::Err),
            2 => Some(Self::Info),
            3 => Some(Self::Dbg),
            _ => None,
        }
    }
}

/// Where the access_token comes from.
enum Credentials {
    /// `gettoken` with the corp id and app secret; cached.
    Secret(SecretString),
    /// A token obtained elsewhere, used as is.
    Fixed(SecretString),
}

/// A client of WeCom's app API (or the local zone's copy of it).
pub struct AppClient {
    http: reqwest::Client,
    base_url: String,
    corp_id: String,
    credentials: Credentials,
    memory: Mutex<Option<AccessToken>>,
    file: Option<TokenFile>,
}

impl AppClient {
    /// A client for `[app]`: base URL, corp credentials (or a fixed token) and the token cache file.
    pub fn from_config(app: &AppConfig) -> Result<Self, AppClientError> {
        let credentials = match &app.access_token {
            Some(token) => Credentials::Fixed(token.clone()),
            None => Credentials::Secret(app.corp_secret.clone()),
        };
        let base_url = app.base_url.trim_end_matches('/').to_owned();
        let file = Some(TokenFile::new(&app.token_cache, &base_url, &app.corp_id));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(app.timeout_ms))
            .build()
            .map_err(|e| AppClientError::Build(e.without_url().to_string()))?;
        Ok(Self { http, base_url, corp_id: app.corp_id.clone(), credentials, memory: Mutex::new(None), file })
    }

    /// The same client without the token cache file (memory only).
    pub fn without_token_file(mut self) -> Self {
        self.file = None;
        self
    }

    /// The base URL calls go to.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// A valid access_token: from memory, else the cache file, else `gettoken`.
    pub async fn access_token(&self) -> Result<AccessToken, AppClientError> {
        let secret = match &self.credentials {
            Credentials::Fixed(token) => return Ok(AccessToken { token: token.clone(), refresh_at: u64::MAX }),
            Credentials::Secret(secret) => secret,
        };
        let mut memory = self.memory.lock().await;
        let now = unix_now();
        if let Some(t) = memory.as_ref().filter(|t| t.is_fresh(now)) {
            return Ok(t.clone());
        }
        if let Some(t) = self.file.as_ref().and_then(|f| f.load(now)) {
            *memory = Some(t.clone());
            return Ok(t);
        }
        let fresh = self.gettoken(secret).await?;
        if let Some(file) = &self.file
            && let Err(e) = file.store(&fresh)
        {
            tracing::warn!(path = %file.path().display(), error = %e, "the access_token could not be cached");
        }
        *memory = Some(fresh.clone());
        Ok(fresh)
    }

    /// Forgets the cached token, so the next call fetches a fresh one.
    pub async fn forget_token(&self) {
        *self.memory.lock().await = None;
        if let Some(file) = &self.file {
            file.clear();
        }
    }

    async fn gettoken(&self, secret: &SecretString) -> Result<AccessToken, AppClientError> {
        let api = "gettoken";
        let req = self
            .http
            .get(format!("{}/cgi-bin/gettoken", self.base_url))
            .query(&[("corpid", self.corp_id.as_str()), ("corpsecret", secret.expose_secret())]);
        let v = self.send(api, req).await?;
        let token =
            v["access_token"].as_str().filter(|t| !t.is_empty()).ok_or_else(|| bad_reply(api, "no access_token"))?;
        let expires_in = v["expires_in"].as_u64().ok_or_else(|| bad_reply(api, "no expires_in"))?;
        Ok(AccessToken::issued(SecretString::from(token.to_owned()), expires_in, unix_now()))
    }

    /// POSTs `body` to `/cgi-bin/<path>?access_token=…` and returns the reply when its `errcode` is 0.
    /// When WeCom refuses the token (40014, 41001, 42001) a fresh one is fetched and the call is made
    /// once more.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, AppClientError> {
        let token = self.access_token().await?;
        match self.post_with(path, body, &token).await {
            Err(e)
                if e.errcode().is_some_and(errcode::is_token_error)
                    && matches!(self.credentials, Credentials::Secret(_)) =>
            {
                self.forget_token().await;
                let token = self.access_token().await?;
                self.post_with(path, body, &token).await
            }
            other => other,
        }
    }

    async fn post_with(&self, path: &str, body: &Value, token: &AccessToken) -> Result<Value, AppClientError> {
        let api = path.rsplit('/').next().unwrap_or(path);
        let req = self
            .http
            .post(format!("{}/cgi-bin/{path}", self.base_url))
            .query(&[("access_token", token.token.expose_secret())])
            .json(body);
        self.send(api, req).await
    }

    async fn send(&self, api: &str, req: reqwest::RequestBuilder) -> Result<Value, AppClientError> {
        let transport = |e: reqwest::Error| AppClientError::Transport { api: api.to_owned(), source: e.without_url() };
        let res = req.send().await.map_err(transport)?.error_for_status().map_err(transport)?;
        let v: Value = res.json().await.map_err(|e| bad_reply(api, &format!("not JSON ({})", e.without_url())))?;
        let code = v["errcode"].as_i64().ok_or_else(|| bad_reply(api, "no errcode"))?;
        if code != 0 {
            let errmsg = v["errmsg"].as_str().unwrap_or_default().to_owned();
            return Err(AppClientError::Api { api: api.to_owned(), errcode: code, errmsg });
        }
        Ok(v)
    }

    /// `sync_call_program`: calls `ability_id` with `request_data` (a JSON text) and returns
    /// `response_data`. `notify_id` answers a `program_notify`.
    pub async fn sync_call_program(
        &self,
        program_id: &str,
        ability_id: &str,
        request_data: &str,
        notify_id: Option<&str>,
    ) -> Result<String, AppClientError> {
        let mut body = json!({ "program_id": program_id, "ability_id": ability_id, "request_data": request_data });
        if let Some(id) = notify_id {
            body["notify_id"] = json!(id);
        }
        let v = self.post("chatdata/sync_call_program", &body).await?;
        string_field(&v, "sync_call_program", "response_data")
    }

    /// `async_program_task`: starts `ability_id` as a job; returns the `jobid`.
    pub async fn async_program_task(
        &self,
        program_id: &str,
        ability_id: &str,
        request_data: &str,
    ) -> Result<String, AppClientError> {
        let body = json!({ "program_id": program_id, "ability_id": ability_id, "request_data": request_data });
        let v = self.post("chatdata/async_program_task", &body).await?;
        string_field(&v, "async_program_task", "jobid")
    }

    /// `async_program_result`: what the program reported for `jobid`.
    pub async fn async_program_result(&self, jobid: &str) -> Result<AsyncResult, AppClientError> {
        let api = "async_program_result";
        let v = self.post("chatdata/async_program_result", &json!({ "jobid": jobid })).await?;
        match v.get("response_errcode") {
            None => Ok(AsyncResult::Running),
            Some(code) => Ok(AsyncResult::Done {
                response_errcode: code.as_i64().ok_or_else(|| bad_reply(api, "response_errcode is not an integer"))?,
                response_data: string_field(&v, api, "response_data")?,
            }),
        }
    }

    /// Polls `async_program_result` (every 200 ms, backing off to 2 s) until the job is done or
    /// `deadline` has passed; `Running` then.
    pub async fn await_async_result(&self, jobid: &str, deadline: Duration) -> Result<AsyncResult, AppClientError> {
        let end = tokio::time::Instant::now() + deadline;
        let mut pause = Duration::from_millis(200);
        loop {
            let r = self.async_program_result(jobid).await?;
            let now = tokio::time::Instant::now();
            if r != AsyncResult::Running || now >= end {
                return Ok(r);
            }
            tokio::time::sleep(pause.min(end - now)).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// `set_public_key`: registers the RSA-2048 public key (PEM) under `public_key_ver`.
    pub async fn set_public_key(&self, public_key_pem: &str, public_key_ver: u32) -> Result<(), AppClientError> {
        let body = json!({ "public_key": public_key_pem, "public_key_ver": public_key_ver });
        self.post("chatdata/set_public_key", &body).await.map(drop)
    }

    /// `set_receive_callback`: makes `program_id` the one program that receives events.
    pub async fn set_receive_callback(&self, program_id: &str) -> Result<(), AppClientError> {
        self.post("chatdata/set_receive_callback", &json!({ "program_id": program_id })).await.map(drop)
    }

    /// `set_log_level`.
    pub async fn set_log_level(&self, program_id: &str, level: LogLevel) -> Result<(), AppClientError> {
        let body = json!({ "program_id": program_id, "log_level": level.number() });
        self.post("chatdata/set_log_level", &body).await.map(drop)
    }

    /// `get_log_level`.
    pub async fn log_level(&self, program_id: &str) -> Result<LogLevel, AppClientError> {
        let v = self.post("chatdata/get_log_level", &json!({ "program_id": program_id })).await?;
        v["log_level"]
            .as_i64()
            .and_then(LogLevel::from_number)
            .ok_or_else(|| bad_reply("get_log_level", "log_level is not 1, 2 or 3"))
    }

    /// `open_debug_mode` with the debug token (调试凭证) of the program.
    pub async fn open_debug_mode(&self, program_id: &str, debug_token: &SecretString) -> Result<(), AppClientError> {
        let body = json!({ "program_id": program_id, "debug_token": debug_token.expose_secret() });
        self.post("chatdata/open_debug_mode", &body).await.map(drop)
    }

    /// `close_debug_mode`.
    pub async fn close_debug_mode(&self, program_id: &str) -> Result<(), AppClientError> {
        self.post("chatdata/close_debug_mode", &json!({ "program_id": program_id })).await.map(drop)
    }

    /// `check_debug_mode` (the name and reply field are as third-party clients use them): the whole
    /// reply, `errcode` and `errmsg` removed.
    pub async fn check_debug_mode(&self, program_id: &str) -> Result<Value, AppClientError> {
        let mut v = self.post("chatdata/check_debug_mode", &json!({ "program_id": program_id })).await?;
        if let Some(map) = v.as_object_mut() {
            map.remove("errcode");
            map.remove("errmsg");
        }
        Ok(v)
    }
}

/// `text` as JSON when it is JSON, else as a JSON string (for printing `response_data`).
pub fn as_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

fn bad_reply(api: &str, reason: &str) -> AppClientError {
    AppClientError::BadReply { api: api.to_owned(), reason: reason.to_owned() }
}

fn string_field(v: &Value, api: &str, field: &str) -> Result<String, AppClientError> {
    v[field].as_str().map(str::to_owned).ok_or_else(|| bad_reply(api, &format!("no {field}")))
}
