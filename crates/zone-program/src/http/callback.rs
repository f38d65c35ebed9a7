//! `POST /`: the one place where a callback's outcome becomes HTTP. Headers go to the SDK with
//! lower-case names and values as received; the SDK's reply headers are copied back verbatim.
//! A request that fails verification gets 403 with a detail-free body (or the SDK-built reply when
//! the backend builds one); every request that decodes gets 200 with an encoded reply.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::sdk::{DecodeError, Decoded, Reply};
use crate::telemetry::Metrics;

/// Bodies larger than this are decoded on the blocking pool rather than on the async workers.
const INLINE_DECODE_MAX: usize = 256 * 1024;

pub(super) async fn handle(State(state): State<AppState>, method: Method, headers: HeaderMap, body: Bytes) -> Response {
    let headers = sdk_headers(&headers);
    let decoded = decode(&state, method, headers, body).await;
    let Decoded { callback, reply } = match decoded {
        Ok(decoded) => decoded,
        Err(e) => {
            Metrics::inc(&state.metrics.callbacks_rejected);
            tracing::warn!(code = e.code, "request refused by verification");
            return match e.reply {
                Some(reply) => reply_response(reply),
                None => rejected(),
            };
        }
    };
    let span = tracing::Span::current();
    span.record("corp_id", callback.corp_id.as_str());
    span.record("ability_id", callback.ability_id.as_str());
    span.record("call_type", i64::from(callback.call_type));
    let output = crate::dispatch::handle(&state, callback).await;
    let built = if state.sdk.may_block() {
        // The vendor SDK may make this wait (sdk.native.max_concurrent_calls): off the async workers.
        tokio::task::spawn_blocking(move || reply.build(&output))
            .await
            .unwrap_or_else(|_| Err(crate::sdk::SdkError::Unavailable("building the reply panicked".into())))
    } else {
        reply.build(&output)
    };
    match built {
        Ok(reply) => {
            Metrics::inc(&state.metrics.callbacks_answered);
            reply_response(reply)
        }
        Err(e) => {
            tracing::error!(error = %e, "building the reply failed");
            (StatusCode::INTERNAL_SERVER_ERROR, [("content-type", "application/json")], r#"{"error":"internal"}"#)
                .into_response()
        }
    }
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

fn rejected() -> Response {
    (StatusCode::FORBIDDEN, [("content-type", "application/json")], r#"{"error":"rejected"}"#).into_response()
}
