//! The HTTP face towards the WeCom backend: `POST /` for callbacks, `GET /healthz`, `GET /metrics`;
//! a body cap (413), a request deadline, a panic catcher and one log line per request.

mod callback;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::app::AppState;

/// The program's router.
pub fn router(state: AppState) -> Router {
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
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| {
                    tracing::info_span!(
                        "request",
                        request_id = %crate::telemetry::request_id(),
                        method = %req.method(),
                        path = %req.uri().path(),
                        corp_id = tracing::field::Empty,
                        ability_id = tracing::field::Empty,
                        call_type = tracing::field::Empty,
                    )
                })
                .on_request(())
                .on_response(|res: &axum::response::Response, latency: Duration, _span: &tracing::Span| {
                    tracing::info!(
                        status = res.status().as_u16(),
                        latency_us = latency.as_micros() as u64,
                        "request finished"
                    );
                })
                .on_failure(()),
        )
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    ([("content-type", "application/json")], r#"{"status":"ok"}"#)
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([("content-type", "text/plain; version=0.0.4")], state.metrics.render())
}
