//! The HTTP face towards the WeCom backend: `POST /` for callbacks, `GET /healthz`, `GET /metrics`;
//! a body cap (413), a shared budget of body bytes (503), a body-read timeout, a request deadline, a
//! panic catcher and one log line per request. [`zone_serve::serve`] adds the connection limits.

mod callback;
pub mod log;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use crate::app::AppState;

/// The program's router.
pub fn router(state: AppState) -> Router {
    // Shared behind one `Arc`: axum clones the state for every request, and a clone of `AppState`
    // itself is a dozen reference-count updates (4–5% of the CPU of a short request, measured).
    let state = Arc::new(state);
    let server = &state.config.server;
    let timeout = Duration::from_millis(server.request_timeout_ms);
    let bodies = zone_serve::BodyLimits {
        max_body_bytes: server.body_limit_bytes,
        max_buffered_bytes: server.max_buffered_body_bytes,
        body_read_timeout: Duration::from_millis(server.body_read_timeout_ms),
    };
    let routes = Router::new()
        .route("/", post(callback::handle))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics));
    zone_serve::limit_bodies(routes, bodies)
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout))
        .layer(CatchPanicLayer::custom(|_| {
            (StatusCode::INTERNAL_SERVER_ERROR, [("content-type", "application/json")], r#"{"error":"internal"}"#)
                .into_response()
        }))
        .layer(axum::middleware::from_fn_with_state(state.clone(), count_request))
        .layer(log::RequestLogLayer)
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    ([("content-type", "application/json")], r#"{"status":"ok"}"#)
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    state.metrics.set_open_connections(state.conn_stats.open.load(std::sync::atomic::Ordering::Relaxed));
    ([("content-type", crate::metrics::CONTENT_TYPE)], state.metrics.render(&state.store, state.sdk.as_ref()).await)
}

/// Counts and times every request to `POST /` (outside the body cap and the deadline, so their 413
/// and 408 are seen), by outcome and refusal reason.
async fn count_request(
    State(state): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if req.uri().path() != "/" || req.method() != axum::http::Method::POST {
        return next.run(req).await;
    }
    let started = std::time::Instant::now();
    let res = next.run(req).await;
    let refused = res.extensions().get::<crate::metrics::RefusedReason>().copied();
    state.metrics.request_done(res.status().as_u16(), refused, started.elapsed());
    res
}
