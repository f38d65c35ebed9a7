//! `POST /`: the one place where a callback's outcome becomes HTTP. Headers go to the SDK with
//! lower-case names and values as received; the SDK's reply headers are copied back verbatim.
//! A request that fails verification gets 403 with a detail-free body (or the SDK-built reply when
//! the backend builds one); every request that decodes gets 200 with an encoded reply.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::log::RequestFacts;
use crate::app::AppState;
use crate::metrics::RefusedReason;
use crate::sdk::{DecodeError, Decoded, Reply};
use crate::telemetry::Metrics;

/// Bodies larger than this are decoded on the blocking pool rather than on the async workers.
const INLINE_DECODE_MAX: usize = 256 * 1024;

pub(super) async fn handle(
    State(state): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let headers = sdk_headers(&headers);
    let decoded = decode(&state, method, headers, body).await;
    let Decoded { callback, reply } = match decoded {
        Ok(decoded) => decoded,
        Err(e) => {
            Metrics::inc(&state.metrics.callbacks_rejected);
            tracing::warn!(code = e.code, "request refused by verification");
            let mut res = match e.reply {
                Some(reply) => reply_response(reply),
                None => rejected(),
            };
            res.extensions_mut().insert(RefusedReason::of_code(e.code));
            return res;
        }
    };
    // For the request's closing log line (`http::log`), not recorded into the span as it runs.
    let facts = RequestFacts {
        corp_id: bounded(&callback.corp_id).to_owned(),
        ability_id: bounded(&callback.ability_id).to_owned(),
        call_type: i64::from(callback.call_type),
    };
    let output = crate::dispatch::handle(&state, callback).await;
    let built = if state.sdk.may_block() {
        // The vendor SDK may make this wait (sdk.native.max_concurrent_calls): off the async workers.
        tokio::task::spawn_blocking(move || reply.build(&output))
            .await
            .unwrap_or_else(|_| Err(crate::sdk::SdkError::Unavailable("building the reply panicked".into())))
    } else {
        reply.build(&output)
    };
    let mut res = match built {
        Ok(reply) => {
            Metrics::inc(&state.metrics.callbacks_answered);
            reply_response(reply)
        }
        Err(e) => {
            tracing::error!(error = %e, "building the reply failed");
            (StatusCode::INTERNAL_SERVER_ERROR, [("content-type", "application/json")], r#"{"error":"internal"}"#)
                .into_response()
        }
    };
    res.extensions_mut().insert(facts);
    res
}

async fn decode(
    state: &AppState,
    method: Method,
    headers: Vec<(String, String)>,
    body: Bytes,
) -> Result<Decoded, DecodeError> {
    if body.len() <= INLINE_DECODE_MAX && !state.sdk.may_block() {
        return state.sdk.decode(method.as_str(), &headers, &body);
    }
    let sdk = state.sdk.clone();
    tokio::task::spawn_blocking(move || sdk.decode(method.as_str(), &headers, &body))
        .await
        .unwrap_or(Err(DecodeError { code: -1, reply: None }))
}

/// Header names in lower case (hyper already normalises them; `Ww-Secret-Ver` arrives as
/// `ww-secret-ver`), values as received. Values that are not text are passed as lossy UTF-8.
fn sdk_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect()
}

fn reply_response(reply: Reply) -> Response {
    let mut res = Response::new(axum::body::Body::from(reply.body));
    *res.status_mut() = StatusCode::OK;
    let h = res.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    for (k, v) in reply.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            h.insert(name, value);
        }
    }
    res
}

/// Longest prefix of an id that goes into a log line.
const LOGGED_ID_BYTES: usize = 64;

/// `id` cut to [`LOGGED_ID_BYTES`] (at a character boundary): a caller chooses these ids, and a
/// 100 KB one must not become a 100 KB log line.
fn bounded(id: &str) -> &str {
    if id.len() <= LOGGED_ID_BYTES {
        return id;
    }
    let mut end = LOGGED_ID_BYTES;
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    &id[..end]
}

fn rejected() -> Response {
    (StatusCode::FORBIDDEN, [("content-type", "application/json")], r#"{"error":"rejected"}"#).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review finding 8: a 100 KB `ability_id` was logged whole.
    #[test]
    fn logged_ids_are_cut_to_a_short_prefix_at_a_character_boundary() {
        assert_eq!(bounded("invoke_sync_msg"), "invoke_sync_msg");
        assert_eq!(bounded(&"a".repeat(100_000)).len(), LOGGED_ID_BYTES);
        let wide = "é".repeat(100);
        let cut = bounded(&wide);
        assert!(cut.len() <= LOGGED_ID_BYTES && cut.len() >= LOGGED_ID_BYTES - 1 && wide.starts_with(cut));
    }
}
