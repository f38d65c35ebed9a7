//! One INFO line per request, and the request span every other line of the request is tagged with.
//!
//! The span carries only the request id, formatted once when the request arrives. What is learnt
//! while the request runs (corp id, ability id, call type) is not recorded into the span, which
//! would re-format the span's fields at every step: the callback handler puts it in a response
//! extension ([`RequestFacts`]), and the closing line carries it with the status and latency:
//!
//! ```text
//! INFO request{request_id=5f0c…}: zone_program::http::log: request finished corp_id=wwcorp ability_id=invoke_sync_msg call_type=1 status=200 latency_us=412
//! ```
//!
//! A WARN or ERROR line inside the request carries the same `request_id`, which joins it to that
//! closing line (the `request finished` line and the span are INFO: at `warn` neither exists, as
//! before). Nothing here reads a body or a header value.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::http::{Method, Request, Uri};
use axum::response::Response;
use tracing::Instrument as _;
use tracing::instrument::Instrumented;

/// What the handler learnt about a request, for its closing log line (a response extension).
#[derive(Debug, Clone)]
pub struct RequestFacts {
    /// The decoded corp id.
    pub corp_id: String,
    /// The ability (or event) the request asked for.
    pub ability_id: String,
    /// 1 app call, 2 event.
    pub call_type: i64,
}

/// A request id: 64 random bits, shown as 16 hex digits (formatted only when a line is written).
#[derive(Debug, Clone, Copy)]
pub struct RequestId(u64);

impl RequestId {
    /// A fresh random id.
    pub fn new() -> Self {
        Self(rand::random())
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The layer: a request span and one closing line per request.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestLogLayer;

impl<S> tower::Layer<S> for RequestLogLayer {
    type Service = RequestLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestLog { inner }
    }
}

/// The service of [`RequestLogLayer`].
#[derive(Debug, Clone)]
pub struct RequestLog<S> {
    inner: S,
}

impl<S, B> tower::Service<Request<B>> for RequestLog<S>
where
    S: tower::Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = LogFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let span = tracing::info_span!("request", request_id = %RequestId::new());
        let method = req.method().clone();
        let uri = req.uri().clone();
        let inner = span.in_scope(|| self.inner.call(req)).instrument(span);
        LogFuture { inner, start: Instant::now(), method, uri }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`RequestLog`]: writes the closing line when the response is ready.
    pub struct LogFuture<F> {
        #[pin]
        inner: Instrumented<F>,
        start: Instant,
        method: Method,
        uri: Uri,
    }
}

impl<F, E> Future for LogFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let result = std::task::ready!(this.inner.as_mut().poll(cx));
        let latency = this.start.elapsed();
        let _entered = this.inner.span().enter();
        match &result {
            Ok(res) => finished(res, this.method, this.uri, latency),
            // The router's errors are `Infallible`; a service that fails still gets a line.
            Err(_) => {
                tracing::warn!(method = %this.method, path = this.uri.path(), "request failed without a response")
            }
        }
        Poll::Ready(result)
    }
}

fn finished(res: &Response, method: &Method, uri: &Uri, latency: Duration) {
    let status = res.status().as_u16();
    let latency_us = latency.as_micros() as u64;
    match res.extensions().get::<RequestFacts>() {
        // A callback: the path is always `POST /`, the facts say what it was.
        Some(f) => tracing::info!(
            corp_id = f.corp_id.as_str(),
            ability_id = f.ability_id.as_str(),
            call_type = f.call_type,
            status,
            latency_us,
            "request finished"
        ),
        None => tracing::info!(method = %method, path = uri.path(), status, latency_us, "request finished"),
    }
}

#[cfg(test)]
mod tests {

    use axum::Router;
    use axum::routing::get;
    use tower::ServiceExt as _;

    use super::*;

    #[tokio::test]
    async fn every_request_gets_one_closing_line_with_its_facts_and_inner_lines_share_its_id() {
        let (lines, _default) = crate::telemetry::capture::capture();
        let app = Router::new()
            .route(
                "/",
                get(|| async {
                    tracing::warn!("inside");
                    let mut res = Response::new(axum::body::Body::empty());
                    res.extensions_mut().insert(RequestFacts {
                        corp_id: "wwcorp".into(),
                        ability_id: "invoke_sync_msg".into(),
                        call_type: 1,
                    });
                    res
                }),
            )
            .route("/healthz", get(|| async { "ok" }))
            .layer(RequestLogLayer);
        for uri in ["/", "/healthz"] {
            let res = app.clone().oneshot(Request::get(uri).body(axum::body::Body::empty()).unwrap()).await.unwrap();
            assert_eq!(res.status(), 200);
        }
        let text = lines.text();
        let text: Vec<&str> = text.lines().collect();
        assert_eq!(text.len(), 3, "{text:?}");
        let id = |line: &str| line.split("request_id=").nth(1).map(|s| s[..16].to_owned());
        assert!(text[0].contains("WARN") && text[0].contains("inside"), "{text:?}");
        assert_eq!(id(text[0]), id(text[1]), "the inner line and the closing line share the request id");
        assert!(
            text[1]
                .contains("request finished corp_id=\"wwcorp\" ability_id=\"invoke_sync_msg\" call_type=1 status=200"),
            "{text:?}"
        );
        assert!(text[2].contains("request finished method=GET path=\"/healthz\" status=200"), "{text:?}");
        assert_ne!(id(text[1]), id(text[2]), "each request has its own id");
    }
}
