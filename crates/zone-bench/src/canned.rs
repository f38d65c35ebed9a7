//! `--sdk canned`: a benchmark instrument that stands where the local zone stands and does only what
//! the baselines do for an SDK call: wait, then answer. It serves `POST /sdk/invoke` on loopback in
//! the bench process; each call waits the given delay (to within the OS timer's slack) and answers a
//! canned SDK response of a given size, sealed once for the corp and signed afresh per reply (a
//! fresh timestamp and nonce: the program's replay cache refuses a nonce twice). It does not open
//! the request, so the program's figures carry no emulator work.
//!
//! It is never a backend of the program: the program runs unchanged, with its local backend pointed
//! at this server's URL, exactly as at the local zone.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::requests::Source;
use super::{BenchEnv, RunningZone};

/// The canned response: `{"errcode":0,"errmsg":"ok","pad":"…"}` of `len` bytes (at least the frame).
pub fn canned_response(len: usize) -> String {
    let frame = r#"{"errcode":0,"errmsg":"ok","pad":""}"#;
    format!(r#"{{"errcode":0,"errmsg":"ok","pad":"{}"}}"#, "x".repeat(len.saturating_sub(frame.len())))
}

struct Canned {
    reply: Source,
    delay: Duration,
}

/// Starts the canned SDK server with the run's codec keys; dropping the result stops it.
pub async fn start(env: &BenchEnv, delay: Duration, reply_bytes: usize) -> anyhow::Result<RunningZone> {
    let config = env.fresh_config()?;
    let codec = zone_program::sdk::local::codec_from_config(&config.program.sdk)?;
    let corp = config.local_zone.corp_id.clone();
    let reply = Source::resigned(
        &codec,
        config.program.sdk.local.token.clone(),
        canned_response(reply_bytes).as_bytes(),
        &corp,
    );
    let canned = Arc::new(Canned { reply, delay });
    let router = Router::new()
        .route("/sdk/invoke", post(invoke))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(16 * 1024 * 1024))
        .with_state(canned);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await?;
        Ok::<_, anyhow::Error>(())
    });
    Ok(RunningZone { url, reports: None, guard: Box::new(AbortOnDrop(task)) })
}

/// Stops a server task when dropped.
pub(super) struct AbortOnDrop(pub(super) tokio::task::JoinHandle<anyhow::Result<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn invoke(State(canned): State<Arc<Canned>>, _body: Bytes) -> Response {
    zone_local::timer::sleep(canned.delay).await;
    let host = HeaderValue::from_static("127.0.0.1");
    let (parts, body) = canned.reply.next(&host).into_parts();
    let mut res = Response::new(axum::body::Body::new(body));
    for (name, value) in parts.headers {
        if let Some(name) = name.filter(|n| n.as_str().starts_with("ww-") || n == "content-type") {
            res.headers_mut().insert(name, value);
        }
    }
    res.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canned_response_is_a_success_of_the_asked_size() {
        let text = canned_response(6144);
        assert_eq!(text.len(), 6144);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["errcode"], 0);
        assert!(canned_response(0).len() < 64, "never shorter than its frame");
    }
}
