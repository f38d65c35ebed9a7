//! The SDK seam: the program depends on the zone SDK only through [`ZoneSdk`]'s three operations
//! (`protocol/unknowns.md` §5): `decode` (which hands back the request's [`ReplyBuilder`], i.e.
//! `encode_reply`) and `invoke`. Backends: [`local`] (the local codec + HTTP to the local zone) and
//! [`native`] (the vendor SDK through the C shim). [`pool`] bounds every backend's `invoke`.

pub mod api;
pub mod local;
pub mod native;
pub mod native_log;
pub mod pool;
/// The local backend's replay protection kept in a file across restarts.
pub mod replay_file;
pub mod zone_http;

use std::sync::Arc;

use async_trait::async_trait;

use crate::config::{Config, SdkBackend};

/// What the program asks of the zone SDK.
#[async_trait]
pub trait ZoneSdk: Send + Sync + 'static {
    /// Verifies and decrypts one inbound request. `headers` carry lower-case names, values as received.
    /// The result carries the builder of this request's encrypted reply: the vendor SDK builds a reply
    /// with the very decoder object that verified the request (`BuildResponseHeaderBody`).
    fn decode(&self, method: &str, headers: &[(String, String)], body: &[u8]) -> Result<Decoded, DecodeError>;

    /// Calls one SDK API with a JSON request in the context of a request or job; returns the raw
    /// response JSON. A non-zero `errcode` inside it is *not* an error here.
    async fn invoke(&self, ctx: &CallContext, api: &str, request_json: &str) -> Result<String, SdkError>;

    /// A fresh notify id (the SDK's `GenerateNotifyId`). Backends without one return 32 random
    /// lower-case hex characters.
    fn generate_notify_id(&self) -> Result<String, SdkError> {
        Ok(format!("{:032x}", rand::random::<u128>()))
    }

    /// Whether [`Self::generate_notify_id`] is the SDK's own `GenerateNotifyId` (the native backend)
    /// rather than the default random id; the program then uses it for its notify ids.
    fn native_notify_ids(&self) -> bool {
        false
    }

    /// Whether `decode` and building a reply may block the calling thread for long (the native
    /// backend with `sdk.native.max_concurrent_calls`); the HTTP layer then runs them on the
    /// blocking pool.
    fn may_block(&self) -> bool {
        false
    }

    /// How full the backend's replay cache is, when the program holds one (the local codec); `None`
    /// when the SDK keeps its own (the vendor SDK's is not observable).
    fn replay_fill(&self) -> Option<ReplayFill> {
        None
    }
}

/// The fill of a replay cache: live nonces against the most it holds before refusing (-41006).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayFill {
    /// Nonces remembered now.
    pub live: usize,
    /// The most it holds (`sdk.local.nonce_cache_capacity`).
    pub capacity: usize,
}

/// A request the SDK verified and decoded.
#[derive(Debug)]
pub struct Decoded {
    /// The decoded fields.
    pub callback: Callback,
    /// Builds the encrypted reply to this request; `encode_reply` of `protocol/unknowns.md` §5.
    pub reply: ReplyBuilder,
}

/// Builds the encrypted reply to one decoded request, once. Dropping it unused releases whatever the
/// backend holds for the request (the native backend: the vendor decoder and the headers and body it
/// refers to).
pub struct ReplyBuilder(Box<BuildFn>);

type BuildFn = dyn FnOnce(&str) -> Result<Reply, SdkError> + Send;

impl ReplyBuilder {
    /// A builder running `build` on the reply plaintext (which may be empty).
    pub fn new(build: impl FnOnce(&str) -> Result<Reply, SdkError> + Send + 'static) -> Self {
        Self(Box::new(build))
    }

    /// Signs and encrypts `plaintext` into the reply's headers and body.
    pub fn build(self, plaintext: &str) -> Result<Reply, SdkError> {
        (self.0)(plaintext)
    }
}

impl std::fmt::Debug for ReplyBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplyBuilder")
    }
}

pub use zone_crypto::wire::CallType;

/// A decoded inbound request (program-callbacks.md §2.4). `data` is request content: never log it.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Callback {
    /// The corp the request is about.
    pub corp_id: String,
    /// The app's agent id.
    pub agent_id: i64,
    /// App call or event.
    pub call_type: CallType,
    /// True for `async_program_task` jobs and SDK-routed tasks.
    pub is_async: bool,
    /// Opaque job context; passed back to the SDK, never parsed.
    pub job_info: String,
    /// The ability the caller chose (empty for events).
    pub ability_id: String,
    /// The notify_id the app passed, or empty.
    pub notify_id: String,
    /// The app's `request_data` or the event JSON.
    pub data: String,
}

/// `data` may carry `secret_key`s and chat text (`msg_list`): it is wiped when the callback is dropped.
impl Drop for Callback {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.data);
    }
}

impl std::fmt::Debug for Callback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callback")
            .field("corp_id", &self.corp_id)
            .field("agent_id", &self.agent_id)
            .field("call_type", &self.call_type)
            .field("is_async", &self.is_async)
            .field("ability_id", &self.ability_id)
            .field("notify_id", &self.notify_id)
            .field("data_len", &self.data.len())
            .finish_non_exhaustive()
    }
}

impl Callback {
    /// The context in which SDK calls for this request are made.
    pub fn context(&self) -> CallContext {
        CallContext {
            corp_id: self.corp_id.clone(),
            agent_id: self.agent_id,
            ability_id: self.ability_id.clone(),
            job_info: self.job_info.clone(),
        }
    }
}

/// The context of an SDK call: who it is for and, for jobs, which job (program-callbacks.md §4).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CallContext {
    /// Corp id (required by the SDK).
    pub corp_id: String,
    /// Agent id (required by the SDK).
    pub agent_id: i64,
    /// Ability id, or empty.
    pub ability_id: String,
    /// Opaque job context, or empty.
    pub job_info: String,
}

/// An encoded reply: headers to copy verbatim and the body to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Header names and values, as the SDK built them.
    pub headers: Vec<(String, String)>,
    /// The encrypted body.
    pub body: Vec<u8>,
}

/// Why `decode` refused a request. The peer learns nothing of it.
#[derive(Debug)]
pub struct DecodeError {
    /// A stable code for the log (SDK −2000x, crypto −4000x, codec −4100x).
    pub code: i32,
    /// A reply the backend built for the failure (the vendor SDK builds one from ""), if any.
    /// Without one the HTTP layer answers a non-200 with a detail-free body.
    pub reply: Option<Reply>,
}

/// A failed SDK call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdkError {
    /// `Invoke` returned non-zero (−10001…−10007, or a refined code).
    #[error("sdk invoke of {api} returned {ret}")]
    Invoke {
        /// The API called.
        api: String,
        /// The return code.
        ret: i32,
    },
    /// The response carried a non-zero `errcode` (raised by callers that need success).
    #[error("sdk {api} answered errcode {errcode}")]
    Errcode {
        /// The API called.
        api: String,
        /// The `errcode` of the response.
        errcode: i64,
    },
    /// The call did not finish within the invoke timeout.
    #[error("sdk call timed out")]
    Timeout,
    /// No slot in the SDK pool became free in time.
    #[error("sdk busy")]
    Busy,
    /// The response is not JSON, or too large.
    #[error("sdk response malformed")]
    BadResponse,
    /// The backend cannot serve this operation (e.g. the SDK is not loaded).
    #[error("sdk unavailable: {0}")]
    Unavailable(String),
    /// A typed request breaks a documented limit; it was not sent ([`api::SdkRequest::check`]).
    #[error("sdk {api} request refused before the call: {what}")]
    Limit {
        /// The API.
        api: &'static str,
        /// Which limit (names the field, never its value).
        what: &'static str,
    },
}

/// `Invoke` returns that no retry can change (sdk-data-apis.md §1.1): −10001 SDK not initialised,
/// −10002 no request body, −10003 no API name.
pub const PERMANENT_INVOKE_RETURNS: [i32; 3] = [-10001, -10002, -10003];

impl SdkError {
    /// Whether retrying the same call cannot help: an `Invoke` return of
    /// [`PERMANENT_INVOKE_RETURNS`], or the backend being unavailable.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Invoke { ret, .. } => PERMANENT_INVOKE_RETURNS.contains(ret),
            Self::Unavailable(_) | Self::Limit { .. } => true,
            _ => false,
        }
    }
}

/// Checks that `response` is a JSON object whose `errcode` is 0 (or absent), and returns it parsed.
pub fn require_ok(api: &str, response: &str) -> Result<serde_json::Value, SdkError> {
    let v: serde_json::Value = serde_json::from_str(response).map_err(|_| SdkError::BadResponse)?;
    if !v.is_object() {
        return Err(SdkError::BadResponse);
    }
    // An absent errcode is success; one that is not an integer is not a documented response.
    let errcode = match v.get("errcode") {
        None => 0,
        Some(code) => code.as_i64().ok_or(SdkError::BadResponse)?,
    };
    match errcode {
        0 => Ok(v),
        errcode => Err(SdkError::Errcode { api: api.to_owned(), errcode }),
    }
}

/// Builds the configured backend, bounded by the SDK pool. Fails (never falls back) when the
/// backend cannot start.
pub fn build(config: &Config) -> anyhow::Result<Arc<dyn ZoneSdk>> {
    let limiter = pool::InvokeLimiter::new(&config.sdk);
    match config.sdk.backend {
        SdkBackend::Local => {
            // Beside the store: `data/zone-program.sqlite` → `data/zone-program.replay`.
            let backend = local::LocalSdk::with_replay_file(&config.sdk, &config.store.path.with_extension("replay"))?;
            Ok(Arc::new(pool::Bounded::new(backend, limiter)))
        }
        SdkBackend::Native => {
            // No pool::Bounded here: the native backend runs each call on the blocking pool itself,
            // and the call keeps its slot until it really ends, even after a timeout.
            let backend = native::NativeSdk::load(&config.sdk, limiter)?;
            let native = &config.sdk.native;
            if let (Some(debug_token), Some(access_token)) = (&native.debug_token, &native.access_token) {
                backend.open_debug_mode(debug_token, access_token)?;
                tracing::info!("vendor SDK debug mode opened");
            }
            if native.log_to_sdk {
                native_log::install(backend.log_sink());
            }
            Ok(Arc::new(backend))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review finding 8: `{"errcode":"x"}` read as success.
    #[test]
    fn require_ok_refuses_an_errcode_that_is_not_an_integer() {
        for bad in [r#"{"errcode":"x"}"#, r#"{"errcode":"0"}"#, r#"{"errcode":1.5}"#, r#"{"errcode":null}"#] {
            assert!(matches!(require_ok("a", bad), Err(SdkError::BadResponse)), "{bad}");
        }
        assert!(require_ok("a", r#"{"errcode":0}"#).is_ok());
        assert!(require_ok("a", r#"{"x":1}"#).is_ok());
        assert!(matches!(require_ok("a", r#"{"errcode":7}"#), Err(SdkError::Errcode { errcode: 7, .. })));
    }
}
