//! The two baselines the program is measured against, served by hidden `bench` subcommands in their
//! own processes:
//! - `serve-echo`: a bare axum server answering `POST /` with the request body, on the default
//!   multi-threaded runtime. No decoding, no middleware: the framework floor.
//! - `serve-one-thread`: what the official demos deploy (protocol/README.md §9): one thread that
//!   takes one request at a time and, for each, decodes it with the same codec code as the program,
//!   blocks for a simulated SDK call as long as the local zone's, and encodes the reply. It is the
//!   JDK `HttpServer` with a null executor: connections are kept alive and multiplexed by the one
//!   thread, but handlers run on it and block it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::Subcommand;

use zone_program::config::Config;
use zone_program::sdk::ZoneSdk as _;
use zone_program::sdk::local::LocalSdk;

/// A baseline server (run by the benchmark in a child process).
#[derive(Debug, Clone, Subcommand)]
pub enum BaselineServer {
    /// Bare axum echo server (the framework floor).
    #[command(hide = true)]
    ServeEcho {
        /// Listen address.
        #[arg(long)]
        listen: SocketAddr,
    },
    /// One-thread server doing the demos' work per request (decode, blocking SDK call, encode).
    #[command(hide = true)]
    ServeOneThread {
        /// Listen address.
        #[arg(long)]
        listen: SocketAddr,
        /// How long the simulated blocking SDK call takes, in microseconds.
        #[arg(long)]
        sdk_latency_us: u64,
        /// Size of the reply's plaintext, in bytes (the SDK response the pass-through returns).
        #[arg(long)]
        reply_bytes: usize,
    },
}

/// Serves a baseline until the process is killed.
pub fn serve(server: BaselineServer, config: &Config) -> anyhow::Result<()> {
    let limit = config.server.body_limit_bytes;
    match server {
        BaselineServer::ServeEcho { listen } => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(serve_router(listen, echo_router(limit)))
        }
        BaselineServer::ServeOneThread { listen, sdk_latency_us, reply_bytes } => {
            let demo = OneThread {
                sdk: LocalSdk::new(&config.sdk)?,
                sdk_latency: Duration::from_micros(sdk_latency_us),
                reply: padded_reply(reply_bytes),
            };
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(serve_router(listen, one_thread_router(Arc::new(demo), limit)))
        }
    }
}

async fn serve_router(listen: SocketAddr, router: Router) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, router).await?;
    Ok(())
}

/// The echo floor's router: `POST /` answers the body, `GET /healthz` answers ok.
pub fn echo_router(body_limit: usize) -> Router {
    async fn echo(body: Bytes) -> impl IntoResponse {
        ([("content-type", "application/json")], body)
    }
    Router::new()
        .route("/", post(echo))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(body_limit))
}

struct OneThread {
    sdk: LocalSdk,
    sdk_latency: Duration,
    reply: String,
}

fn one_thread_router(demo: Arc<OneThread>, body_limit: usize) -> Router {
    Router::new()
        .route("/", post(one_thread_handle))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(demo)
}

/// The demo's handler: everything inline, on the only thread.
async fn one_thread_handle(State(demo): State<Arc<OneThread>>, headers: HeaderMap, body: Bytes) -> Response {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let decoded = match demo.sdk.decode("POST", &headers, &body) {
        Ok(decoded) => decoded,
        Err(_) => return (StatusCode::FORBIDDEN, r#"{"error":"rejected"}"#).into_response(),
    };
    // The demos call the blocking SDK `Invoke` on the request thread; so does this one.
    std::thread::sleep(demo.sdk_latency);
    let reply = match decoded.reply.build(&demo.reply) {
        Ok(r) => r,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let mut res = Response::new(axum::body::Body::from(reply.body));
    let h = res.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    for (k, v) in reply.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            h.insert(name, value);
        }
    }
    res
}

/// `{"errcode":0,"errmsg":"ok","pad":"…"}` of about `len` bytes.
fn padded_reply(len: usize) -> String {
    let frame = r#"{"errcode":0,"errmsg":"ok","pad":""}"#;
    format!(r#"{{"errcode":0,"errmsg":"ok","pad":"{}"}}"#, "x".repeat(len.saturating_sub(frame.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_padded_reply_is_a_success_of_the_asked_size() {
        let reply = padded_reply(500);
        assert_eq!(reply.len(), 500);
        let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(v["errcode"], 0);
    }
}
