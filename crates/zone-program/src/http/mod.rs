//! The HTTP face towards the WeCom backend: `POST /` for callbacks, `GET /healthz`, `GET /metrics`;
//! a body cap (413), a request deadline, a panic catcher and one log line per request.

mod callback;
pub mod log;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
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
    let limit = state.config.server.body_limit_bytes;
    let timeout = Duration::from_millis(state.config.server.request_timeout_ms);
    Router::new()
        .route("/", post(callback::handle))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(limit))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout))
        .layer(CatchPanicLayer::custom(|_| {
            (StatusCode::INTERNAL_SERVER_ERROR, [("content-type", "application/json")], r#"{"error":"internal"}"#)
                .into_response()
        }))
        .layer(log::RequestLogLayer)
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    ([("content-type", "application/json")], r#"{"status":"ok"}"#)
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    ([("content-type", "text/plain; version=0.0.4")], state.metrics.render())
}
