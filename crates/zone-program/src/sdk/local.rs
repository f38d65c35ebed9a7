//! The local backend: decodes and encodes with the [local codec](crate::codec) and invokes APIs by
//! POSTing a sealed envelope to the local zone's `/sdk/invoke`. It stands where the vendor SDK stands
//! in production; nothing above the [`ZoneSdk`] trait knows which backend runs.
//!
//! `/sdk/invoke` exchange: the request message is
//! `{"corp_id","agent_id","ability_id","job_info","api","request":"<json string>"}`; the reply is a
//! sealed message whose plaintext is the SDK response JSON. A non-zero `Invoke` return code travels
//! in the reply header `ww-invoke-ret` with an empty message. A transport failure or a non-200 status
//! is reported as −10006 ("invoke failed"), as the vendor SDK does for its own transport.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use secrecy::ExposeSecret;

use super::zone_http::{HttpError, ZoneHttp};
use zone_crypto::wire::{CallbackMessage, H_INVOKE_RET, InvokeMessage};

use super::{CallContext, Callback, DecodeError, Decoded, ReplayFill, Reply, ReplyBuilder, SdkError, ZoneSdk};
use crate::config::SdkConfig;
use zone_crypto::cipher::{CallbackCipher, EncodingAesKey};
use zone_crypto::codec::{CodecSettings, LocalCodec};

/// `Invoke` return code: the call failed (see the SDK log).
pub const RET_INVOKE_FAILED: i32 = -10006;
/// `Invoke` return code: the response was empty.
pub const RET_EMPTY_RESPONSE: i32 = -10007;
/// Decoder code for a missing or wrong method (vendor −20001).
pub const DECODE_NO_METHOD: i32 = -20001;
/// Decoder code for a message that is not the documented JSON.
pub const DECODE_BAD_MESSAGE: i32 = -41010;

/// The local codec backend.
pub struct LocalSdk {
    /// Opens the callbacks and seals their replies; refuses messages sealed before this start.
    codec: Arc<LocalCodec>,
    /// Seals the SDK requests and opens their replies, with a replay cache of its own (sharing one
    /// would let the SDK replies take half of the callbacks' capacity).
    sdk_codec: LocalCodec,
    http: ZoneHttp,
    max_response_bytes: usize,
}

/// Builds a codec from the `[sdk.local]` settings (validated at load).
pub fn codec_from_config(config: &SdkConfig) -> anyhow::Result<LocalCodec> {
    let local = &config.local;
    let mut keys = BTreeMap::new();
    for k in &local.keys {
        let key = EncodingAesKey::parse(k.encoding_aes_key.expose_secret())
            .map_err(|_| anyhow::anyhow!("sdk.local.keys: ver {} is not a valid EncodingAESKey", k.ver))?;
        keys.insert(k.ver, CallbackCipher::new(key));
    }
    anyhow::ensure!(!keys.is_empty(), "sdk.local.keys: at least one key is needed");
    Ok(LocalCodec::new(CodecSettings {
        token: local.token.clone(),
        keys,
        window_secs: local.replay_window_secs,
        nonce_capacity: local.nonce_cache_capacity,
    }))
}

impl LocalSdk {
    /// A backend for the `[sdk]` settings.
    pub fn new(config: &SdkConfig) -> anyhow::Result<Self> {
        let url = format!("{}/sdk/invoke", config.local.zone_url.trim_end_matches('/'));
        Ok(Self {
            codec: Arc::new(codec_from_config(config)?),
            sdk_codec: codec_from_config(config)?,
            http: ZoneHttp::new(&url, config.pool_size)?,
            max_response_bytes: config.max_response_bytes,
        })
    }

    /// Like [`LocalSdk::new`], with the callbacks' replay protection kept in `replay_file`, so that
    /// no callback accepted before a restart is accepted after it ([`LocalCodec::remembering`]).
    pub fn with_replay_file(config: &SdkConfig, replay_file: &std::path::Path) -> anyhow::Result<Self> {
        let mut sdk = Self::new(config)?;
        let (log, newest, nonces) = super::replay_file::ReplayFile::open(replay_file)
            .with_context(|| format!("opening the replay state {}", replay_file.display()))?;
        sdk.codec = Arc::new(codec_from_config(config)?.remembering(newest, nonces, Arc::new(log)));
        Ok(sdk)
    }

    async fn post(&self, ctx: &CallContext, api: &str, request_json: &str) -> Result<String, SdkError> {
        let mut message = InvokeMessage {
            corp_id: ctx.corp_id.clone(),
            agent_id: ctx.agent_id,
            ability_id: ctx.ability_id.clone(),
            job_info: ctx.job_info.clone(),
            api: api.to_owned(),
            request: request_json.to_owned(),
        };
        // The request may carry message secret keys (model APIs): wiped once sealed.
        let plain = zeroize::Zeroizing::new(serde_json::to_vec(&message).expect("strings serialise"));
        zeroize::Zeroize::zeroize(&mut message.request);
        let sealed = self.sdk_codec.seal(&plain, &ctx.corp_id);
        let mut request_headers = sealed.headers;
        request_headers.push(("content-type".to_owned(), "application/json".to_owned()));
        let failed = || SdkError::Invoke { api: api.to_owned(), ret: RET_INVOKE_FAILED };
        let reply = match self.http.post(request_headers, sealed.body, self.max_response_bytes).await {
            Ok(reply) => reply,
            Err(HttpError::TooLarge) => return Err(SdkError::BadResponse),
            Err(HttpError::Transport) => return Err(failed()),
        };
        if reply.status != 200 {
            return Err(failed());
        }
        let (headers, body) = (reply.headers, reply.body);
        let ret = headers.iter().find(|(k, _)| k == H_INVOKE_RET).and_then(|(_, v)| v.parse::<i32>().ok()).unwrap_or(0);
        if ret != 0 {
            return Err(SdkError::Invoke { api: api.to_owned(), ret });
        }
        let opened = self.sdk_codec.open(&headers, &body).map_err(|_| SdkError::BadResponse)?;
        if opened.receive_id != ctx.corp_id {
            return Err(SdkError::BadResponse);
        }
        if opened.message.is_empty() {
            return Err(SdkError::Invoke { api: api.to_owned(), ret: RET_EMPTY_RESPONSE });
        }
        String::from_utf8(opened.message).map_err(|_| SdkError::BadResponse)
    }
}

#[async_trait]
impl ZoneSdk for LocalSdk {
    fn decode(&self, method: &str, headers: &[(String, String)], body: &[u8]) -> Result<Decoded, DecodeError> {
        if method != "POST" {
            return Err(DecodeError { code: DECODE_NO_METHOD, reply: None });
        }
        let opened = self.codec.open(headers, body).map_err(|e| DecodeError { code: e.code(), reply: None })?;
        let bad = || DecodeError { code: DECODE_BAD_MESSAGE, reply: None };
        let m: CallbackMessage = serde_json::from_slice(&opened.message).map_err(|_| bad())?;
        if m.corp_id != opened.receive_id {
            return Err(DecodeError { code: zone_crypto::cipher::CryptoError::ValidateReceiveId.code(), reply: None });
        }
        let (codec, corp_id) = (self.codec.clone(), m.corp_id.clone());
        let reply = ReplyBuilder::new(move |plaintext| {
            let sealed = codec.seal(plaintext.as_bytes(), &corp_id);
            Ok(Reply { headers: sealed.headers, body: sealed.body })
        });
        let callback = Callback {
            corp_id: m.corp_id,
            agent_id: m.agent_id,
            call_type: m.call_type,
            is_async: m.is_async,
            job_info: m.job_info,
            ability_id: m.ability_id,
            notify_id: m.notify_id,
            data: m.data,
        };
        Ok(Decoded { callback, reply })
    }

    async fn invoke(&self, ctx: &CallContext, api: &str, request_json: &str) -> Result<String, SdkError> {
        self.post(ctx, api, request_json).await
    }

    fn replay_fill(&self) -> Option<ReplayFill> {
        let (live, capacity) = self.codec.replay_fill();
        Some(ReplayFill { live, capacity })
    }
}
