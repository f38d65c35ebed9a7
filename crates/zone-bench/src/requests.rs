//! What the load generator sends and how it checks what comes back.
//!
//! The local codec refuses a replayed nonce, so every request must be signed afresh. Sealing anew
//! (AES + Base64 + SHA1 of the whole body) would put the cipher's cost on the client, which shares
//! the machine's two cores with the server under test. A [`Source::Resigned`] therefore seals one
//! message once and, per request, only signs it again with a fresh timestamp and nonce (one SHA1
//! over the ciphertext). The program still verifies and decrypts every request in full. Where every
//! request must differ (e.g. one job each), [`Source::Sealed`] seals each one. The client's time
//! spent here is measured and reported apart from the latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{HeaderMap, Request, StatusCode};
use secrecy::SecretString;
use serde_json::json;

use zone_crypto::cipher as crypto;
use zone_crypto::clock::{Clock, SystemClock};
use zone_crypto::codec::{self, LocalCodec, Nonce};

/// A message the WeCom backend would send to the program's `POST /` (DESIGN.md "The local codec").
pub fn callback_message(corp_id: &str, ability_id: &str, job_info: &str, is_async: bool, data: &str) -> Vec<u8> {
    json!({
        "corp_id": corp_id, "agent_id": 1_000_002, "call_type": 1, "is_async": is_async,
        "job_info": job_info, "ability_id": ability_id, "notify_id": "", "data": data,
    })
    .to_string()
    .into_bytes()
}

/// `data` of about `len` bytes: `{"input":{"pad":"…"}}` (an app's JSON input, padded).
pub fn padded_input(len: usize) -> String {
    let frame = r#"{"input":{"pad":""}}"#;
    let pad: String = (0..len.saturating_sub(frame.len())).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    format!(r#"{{"input":{{"pad":"{pad}"}}}}"#)
}

/// Where requests come from.
pub enum Source {
    /// One sealed message, signed afresh per request.
    Resigned {
        /// The signing token.
        token: SecretString,
        /// `ww-secret-ver`.
        ver: HeaderValue,
        /// The Base64 ciphertext the signature covers.
        encrypt: String,
        /// `{"encrypt":"…"}`, shared by every request.
        body: Bytes,
    },
    /// A call of the app API (e.g. the local zone's `async_program_task`): the same JSON each time.
    AppCall {
        /// Path and query, access token included.
        path: String,
        /// The JSON body.
        body: Bytes,
    },
    /// A new message per request, sealed in full.
    #[cfg_attr(not(test), expect(dead_code, reason = "for the async-job scenario, which waits for the jobs engine"))]
    Sealed {
        /// The sealing end.
        codec: Arc<LocalCodec>,
        /// The receive id (corp id).
        receive_id: String,
        /// The n-th message.
        make: Box<dyn Fn(u64) -> Vec<u8> + Send + Sync>,
        /// Messages made so far.
        made: AtomicU64,
    },
}

impl Source {
    /// Seals `message` once for re-signing.
    pub fn resigned(codec: &LocalCodec, token: SecretString, message: &[u8], receive_id: &str) -> Self {
        let sealed = codec.seal(message, receive_id);
        let header = |name: &str| sealed.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let ver = HeaderValue::from_str(&header(codec::H_SECRET_VER).expect("seal sets the key version"))
            .expect("a decimal is a header value");
        let value: serde_json::Value = serde_json::from_slice(&sealed.body).expect("seal writes JSON");
        let encrypt = value["encrypt"].as_str().expect("seal writes encrypt").to_owned();
        Self::Resigned { token, ver, encrypt, body: Bytes::from(sealed.body) }
    }

    /// The HTTP body a request of this source carries (for the echo floor to send the same bytes).
    pub fn body_len(&self) -> Option<usize> {
        match self {
            Self::Resigned { body, .. } | Self::AppCall { body, .. } => Some(body.len()),
            Self::Sealed { .. } => None,
        }
    }

    /// The next request to `POST /`.
    pub fn next(&self, host: &HeaderValue) -> Request<Full<Bytes>> {
        let mut path = "/";
        let (headers, body) = match self {
            Self::Resigned { token, ver, encrypt, body } => {
                let ts = SystemClock.now_secs().to_string();
                let nonce = Nonce::random();
                let signature = crypto::signature(token, &ts, nonce.as_str(), encrypt);
                let headers = vec![
                    (codec::H_TIMESTAMP, value(ts)),
                    (codec::H_NONCE, value(nonce.as_str().to_owned())),
                    (codec::H_SECRET_VER, ver.clone()),
                    (codec::H_SIGNATURE, value(signature)),
                ];
                (headers, body.clone())
            }
            Self::Sealed { codec, receive_id, make, made } => {
                let n = made.fetch_add(1, Ordering::Relaxed);
                let sealed = codec.seal(&make(n), receive_id);
                let names = [codec::H_TIMESTAMP, codec::H_NONCE, codec::H_SECRET_VER, codec::H_SIGNATURE];
                let headers = names
                    .into_iter()
                    .map(|name| {
                        let v = sealed.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
                        (name, value(v.expect("seal sets every ww-* header")))
                    })
                    .collect();
                (headers, Bytes::from(sealed.body))
            }
            Self::AppCall { path: p, body } => {
                path = p;
                (Vec::new(), body.clone())
            }
        };
        let mut req = Request::post(path).body(Full::new(body)).expect("a valid path");
        let h = req.headers_mut();
        h.insert(hyper::header::HOST, host.clone());
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, v) in headers {
            h.insert(name, v);
        }
        req
    }
}

fn value(s: String) -> HeaderValue {
    HeaderValue::try_from(s).expect("timestamps, nonces and hex signatures are header values")
}

/// What a correct reply looks like.
pub enum Expect {
    /// 200 and the request body back (the echo floor).
    Echo {
        /// The request body length.
        len: usize,
    },
    /// 200 and an app API reply `{"errcode":0,…,"jobid"}`; the job ids are kept for the follow-up.
    AppJob {
        /// Every job id received.
        jobids: std::sync::Mutex<Vec<String>>,
    },
    /// 200, the codec's headers, and (when opened) a verified message whose `errcode` is this one.
    Sealed {
        /// The receiving end (its replay cache must be large enough for the run).
        codec: Arc<LocalCodec>,
        /// The corp every reply is sealed for.
        receive_id: String,
        /// The expected `errcode` of the reply's JSON.
        errcode: i64,
    },
}

impl Expect {
    /// Checks one reply; `open` asks for the full check (verify, decrypt, parse) on top of the
    /// status and headers. The error is a short kind, used as a counter key.
    pub fn check(&self, status: StatusCode, headers: &HeaderMap, body: &[u8], open: bool) -> Result<(), String> {
        if status != StatusCode::OK {
            return Err(format!("http {}", status.as_u16()));
        }
        match self {
            Self::Echo { len } if body.len() == *len => Ok(()),
            Self::Echo { .. } => Err("echo length".into()),
            Self::AppJob { jobids } => {
                let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| "reply not JSON".to_owned())?;
                match (value["errcode"].as_i64(), value["jobid"].as_str()) {
                    (Some(0), Some(jobid)) => {
                        jobids.lock().unwrap_or_else(|p| p.into_inner()).push(jobid.to_owned());
                        Ok(())
                    }
                    (code, _) => Err(format!("errcode {}", code.unwrap_or(-1))),
                }
            }
            Self::Sealed { codec, receive_id, errcode } => {
                if !headers.contains_key(codec::H_SIGNATURE) {
                    return Err("unsigned reply".into());
                }
                if !open {
                    return Ok(());
                }
                let got = open_errcode(codec, receive_id, headers, body)?;
                if got == *errcode { Ok(()) } else { Err(format!("errcode {got}")) }
            }
        }
    }
}

/// Verifies and decrypts a sealed reply and returns its `errcode`.
pub fn open_errcode(codec: &LocalCodec, receive_id: &str, headers: &HeaderMap, body: &[u8]) -> Result<i64, String> {
    open_reply(codec, receive_id, headers, body).map(|(errcode, _)| errcode)
}

/// Verifies and decrypts a sealed reply; returns its `errcode` and the plaintext's length.
pub fn open_reply(
    codec: &LocalCodec,
    receive_id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(i64, usize), String> {
    let pairs: Vec<(String, String)> =
        headers.iter().filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned()))).collect();
    let opened = codec.open(&pairs, body).map_err(|e| format!("reply refused ({})", e.code()))?;
    if opened.receive_id != receive_id {
        return Err("reply for another corp".into());
    }
    let value: serde_json::Value = serde_json::from_slice(&opened.message).map_err(|_| "reply not JSON".to_owned())?;
    let value = value.get("output").unwrap_or(&value);
    let errcode =
        value.get("errcode").and_then(serde_json::Value::as_i64).ok_or_else(|| "reply without errcode".to_owned())?;
    Ok((errcode, opened.message.len()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use zone_crypto::cipher::{CallbackCipher, EncodingAesKey};
    use zone_crypto::codec::CodecSettings;

    fn codec() -> LocalCodec {
        let mut keys = BTreeMap::new();
        keys.insert(3, CallbackCipher::new(EncodingAesKey::parse(&"k".repeat(43)).unwrap()));
        LocalCodec::new(CodecSettings { token: SecretString::from("tok"), keys, window_secs: 300, nonce_capacity: 100 })
    }

    fn pairs(req: &Request<Full<Bytes>>) -> Vec<(String, String)> {
        req.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned())).collect()
    }

    async fn body(req: Request<Full<Bytes>>) -> Bytes {
        use http_body_util::BodyExt as _;
        req.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn a_resigned_request_opens_every_time_with_a_fresh_nonce() {
        let (sender, receiver) = (codec(), codec());
        let source = Source::resigned(&sender, SecretString::from("tok"), b"{\"m\":1}", "corp");
        let host = HeaderValue::from_static("127.0.0.1");
        for _ in 0..3 {
            let req = source.next(&host);
            let headers = pairs(&req);
            let opened = receiver.open(&headers, &body(req).await).expect("a fresh signature verifies");
            assert_eq!(opened.message, b"{\"m\":1}");
            assert_eq!(opened.key_ver, 3);
        }
    }

    #[tokio::test]
    async fn a_sealed_source_makes_a_new_message_per_request() {
        let (sender, receiver) = (Arc::new(codec()), codec());
        let make = Box::new(|n: u64| format!("job-{n}").into_bytes());
        let source = Source::Sealed { codec: sender, receive_id: "corp".into(), make, made: AtomicU64::new(0) };
        let host = HeaderValue::from_static("h");
        for n in 0..2 {
            let req = source.next(&host);
            let headers = pairs(&req);
            assert_eq!(receiver.open(&headers, &body(req).await).unwrap().message, format!("job-{n}").as_bytes());
        }
    }

    #[test]
    fn a_reply_with_another_errcode_or_status_is_an_error_of_that_kind() {
        let codec = Arc::new(codec());
        let sealed = codec.seal(br#"{"errcode":900104,"errmsg":"busy"}"#, "corp");
        let mut headers = HeaderMap::new();
        for (k, v) in &sealed.headers {
            headers.insert(hyper::header::HeaderName::try_from(k.as_str()).unwrap(), HeaderValue::try_from(v).unwrap());
        }
        let expect = Expect::Sealed { codec: codec.clone(), receive_id: "corp".into(), errcode: 0 };
        assert_eq!(expect.check(StatusCode::OK, &headers, &sealed.body, false), Ok(()));
        assert_eq!(expect.check(StatusCode::OK, &headers, &sealed.body, true), Err("errcode 900104".into()));
        assert_eq!(expect.check(StatusCode::FORBIDDEN, &headers, b"", true), Err("http 403".into()));
        assert_eq!(Expect::Echo { len: 2 }.check(StatusCode::OK, &headers, b"abc", true), Err("echo length".into()));
    }

    #[test]
    fn padded_input_is_json_of_the_requested_length() {
        for len in [0, 20, 1024, 65_536] {
            let input = padded_input(len);
            serde_json::from_str::<serde_json::Value>(&input).unwrap();
            assert_eq!(input.len(), len.max(20));
        }
    }
}
