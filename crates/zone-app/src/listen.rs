//! The app's callback receiver: `GET <path>` answers WeCom's URL verification with the bare echo,
//! `POST <path>` verifies and decrypts an event, answers `success` at once and hands the event on
//! through a channel (the work, e.g. fetching the data, happens after the reply).
//!
//! A callback is refused with 403 and no detail (the log line carries only the code) when it fails
//! verification or its `timestamp` is not a number within ±`replay_window_secs` of now. A callback
//! accepted before (the same signature, within the window) and a `NotifyId` seen before (within a
//! day) are answered `success` but not handed on again; both memories survive a restart of the
//! receiver when it has a file ([`seen`](super::seen)). The receiver serves under the same
//! connection and body limits as the program ([`zone_serve`]).

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use serde_json::{Value, json};
use zone_crypto::clock::{Clock, SystemClock};
use zone_crypto::codec::within_window;
use zone_serve::{self as serve, BodyLimits, ConnLimits, ConnStats};

use super::AppClient;
use super::notify::{CallbackKeys, CallbackQuery, Event, ProgramNotify, parse_event};
use super::seen::{Fresh, Seen};
use crate::config::AppCallbackConfig;

/// Largest callback body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Events waiting for the consumer; beyond this WeCom gets 503 and may deliver again.
pub const QUEUE_CAPACITY: usize = 1024;

/// A verified callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A URL verification was answered.
    UrlVerified {
        /// The ReceiveId it was encrypted for.
        receive_id: String,
    },
    /// A `program_notify` arrived (first delivery of its NotifyId).
    ProgramNotify {
        /// The ReceiveId it was encrypted for.
        receive_id: String,
        /// The notification.
        notify: ProgramNotify,
    },
    /// Another event arrived.
    Other {
        /// The ReceiveId it was encrypted for.
        receive_id: String,
        /// Its `Event`, `InfoType` or `MsgType`.
        kind: String,
    },
}

/// How the receiver protects itself: connection and body limits, the replay window, and where it
/// keeps what it has accepted.
#[derive(Clone)]
pub struct ReceiverSettings {
    /// Connection limits.
    pub conn: ConnLimits,
    /// Body limits (the body size is [`MAX_BODY_BYTES`]).
    pub bodies: BodyLimits,
    /// Accepted skew of a callback's timestamp, in seconds (±).
    pub replay_window_secs: i64,
    /// Most signatures remembered within the window.
    pub replay_cache_capacity: usize,
    /// The file of accepted signatures and NotifyIds (`None`: memory only).
    pub seen_file: Option<PathBuf>,
    /// The clock of the window.
    pub clock: Arc<dyn Clock>,
}

impl ReceiverSettings {
    /// From `[app.callback]`, keeping its memory in `seen_file`; the connection cap is lowered to
    /// fit the open-file limit (raised to its hard limit first).
    pub fn from_config(cb: &AppCallbackConfig, seen_file: Option<PathBuf>) -> Self {
        Self {
            conn: ConnLimits {
                max_connections: serve::connection_cap(cb.max_connections, serve::raise_fd_limit()),
                header_read_timeout: Duration::from_millis(cb.header_read_timeout_ms),
            },
            bodies: BodyLimits {
                max_body_bytes: MAX_BODY_BYTES,
                max_buffered_bytes: cb.max_buffered_body_bytes,
                body_read_timeout: Duration::from_millis(cb.body_read_timeout_ms),
            },
            replay_window_secs: cb.replay_window_secs,
            replay_cache_capacity: cb.replay_cache_capacity,
            seen_file,
            clock: Arc::new(SystemClock),
        }
    }
}

/// The file beside the token cache where `app listen` keeps what it has accepted.
pub fn seen_file_beside(token_cache: &std::path::Path) -> PathBuf {
    token_cache.with_file_name("app-callbacks-seen")
}

/// The receiver's router for `path`, handing events to `tx`.
pub fn router(keys: CallbackKeys, path: &str, tx: mpsc::Sender<Received>, settings: &ReceiverSettings) -> Router {
    let now = settings.clock.now_secs();
    let seen = Seen::open(settings.seen_file.as_deref(), settings.replay_cache_capacity, now);
    let state = ReceiverState {
        keys: Arc::new(keys),
        tx,
        seen: Arc::new(Mutex::new(seen)),
        clock: settings.clock.clone(),
        window: settings.replay_window_secs,
    };
    serve::limit_bodies(Router::new().route(path, get(verify_url).post(event)).with_state(state), settings.bodies)
}

/// A running receiver on its own task.
pub struct Listener {
    addr: SocketAddr,
    path: String,
    events: mpsc::Receiver<Received>,
    stop: Option<oneshot::Sender<()>>,
}

impl Listener {
    /// Binds `addr` (port 0 allowed) and serves `path` until dropped.
    pub async fn bind(
        addr: SocketAddr,
        path: &str,
        keys: CallbackKeys,
        settings: &ReceiverSettings,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, events) = mpsc::channel(QUEUE_CAPACITY);
        let app = router(keys, path, tx, settings);
        let (stop, stopped) = oneshot::channel::<()>();
        let stats = Arc::new(ConnStats::default());
        tokio::spawn(serve::serve(listener, app, settings.conn, stats, async move {
            let _ = stopped.await;
        }));
        Ok(Self { addr, path: path.to_owned(), events, stop: Some(stop) })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The callback URL to configure (`http://addr/path`).
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.path)
    }

    /// The next verified callback.
    pub async fn next(&mut self) -> Option<Received> {
        self.events.recv().await
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// What to fetch with each notification's NotifyId (`sync_call_program`).
#[derive(Debug, Clone)]
pub struct Fetch {
    /// The program.
    pub program_id: String,
    /// The ability that returns notify data, e.g. `get_callback_data`.
    pub ability_id: String,
    /// Its `request_data`, e.g. `{}`.
    pub request_data: String,
}

/// Handles what `listener` receives until `count` `program_notify` events were handled, `stop`
/// resolves or the receiver ends; returns how many were handled. Each callback becomes one JSON
/// object for `emit` (`url_verification`, `program_notify`, or the other event's kind); with
/// `fetch`, each notification's data is fetched right away and emitted as `callback_data`
/// (`response_data`, or `errcode` and `error`).
pub async fn run(
    listener: &mut Listener,
    client: &AppClient,
    fetch: Option<&Fetch>,
    count: Option<u64>,
    stop: impl Future<Output = ()>,
    mut emit: impl FnMut(Value),
) -> u64 {
    let mut handled = 0u64;
    tokio::pin!(stop);
    while count.is_none_or(|n| handled < n) {
        let received = tokio::select! {
            r = listener.next() => r,
            () = &mut stop => None,
        };
        let Some(received) = received else { break };
        match received {
            Received::UrlVerified { receive_id } => {
                emit(json!({ "event": "url_verification", "receive_id": receive_id }))
            }
            Received::Other { receive_id, kind } => emit(json!({ "event": kind, "receive_id": receive_id })),
            Received::ProgramNotify { receive_id, notify } => {
                handled += 1;
                emit(json!({
                    "event": "program_notify", "receive_id": receive_id, "corp_id": notify.corp_id,
                    "notify_id": notify.notify_id, "notify_scene": notify.notify_scene, "create_time": notify.create_time,
                }));
                if let Some(f) = fetch {
                    let id = notify.notify_id.as_str();
                    let line = match client
                        .sync_call_program(&f.program_id, &f.ability_id, &f.request_data, Some(id))
                        .await
                    {
                        Ok(data) => json!({
                            "event": "callback_data", "notify_id": id, "response_data": super::as_json(&data),
                        }),
                        Err(e) => {
                            json!({ "event": "callback_data", "notify_id": id, "errcode": e.errcode(), "error": chain(&e) })
                        }
                    };
                    emit(line);
                }
            }
        }
    }
    handled
}

/// An error and its causes, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[derive(Clone)]
struct ReceiverState {
    keys: Arc<CallbackKeys>,
    tx: mpsc::Sender<Received>,
    seen: Arc<Mutex<Seen>>,
    clock: Arc<dyn Clock>,
    window: i64,
}

impl ReceiverState {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The callback's timestamp when it is a number within the window of now.
    fn fresh_timestamp(&self, q: &CallbackQuery) -> Option<i64> {
        let ts = q.timestamp.parse::<i64>().ok().filter(|_| q.timestamp.bytes().all(|b| b.is_ascii_digit()))?;
        within_window(self.clock.now_secs(), ts, self.window).then_some(ts)
    }
}

/// Codes of the receiver's own refusals (the crypto codes are −40001…).
const STALE: i32 = -41003;

async fn verify_url(State(s): State<ReceiverState>, Query(q): Query<CallbackQuery>) -> Response {
    if s.fresh_timestamp(&q).is_none() {
        return rejected(STALE);
    }
    match s.keys.verify_url(&q) {
        Ok(opened) => {
            let _ = s.tx.try_send(Received::UrlVerified { receive_id: opened.receive_id });
            ([("content-type", "text/plain")], opened.msg).into_response()
        }
        Err(e) => rejected(e.code()),
    }
}

async fn event(State(s): State<ReceiverState>, Query(q): Query<CallbackQuery>, body: String) -> Response {
    let Some(ts) = s.fresh_timestamp(&q) else { return rejected(STALE) };
    let opened = match s.keys.open_event(&q, &body) {
        Ok(opened) => opened,
        Err(e) => return rejected(e.code()),
    };
    // A place in the queue first: a callback answered 503 leaves no trace, so its redelivery is
    // handled as new.
    let Ok(slot) = s.tx.try_reserve() else {
        tracing::warn!("the callback queue is full; asking WeCom to deliver again");
        return busy();
    };
    // Only a verified callback may occupy the memory; it is needed while the request passes the
    // timestamp check: until ts + window.
    let now = s.clock.now_secs();
    match s.seen().signature(&q.msg_signature, now, ts.saturating_add(s.window)) {
        Fresh::Yes => {}
        Fresh::Replayed => {
            tracing::info!("callback delivered again (same signature); already handled");
            return success();
        }
        Fresh::Full => {
            tracing::warn!("the replay memory is full; asking WeCom to deliver again later");
            return busy();
        }
    }
    let receive_id = opened.receive_id;
    let received = match parse_event(&opened.msg) {
        Ok(Event::ProgramNotify(notify)) => {
            if !s.seen().notify_id(&receive_id, notify.notify_id.as_str(), now) {
                tracing::info!(receive_id, "program_notify delivered again; already handled");
                return success();
            }
            Received::ProgramNotify { receive_id, notify }
        }
        Ok(Event::Other { kind }) => Received::Other { receive_id, kind },
        Err(e) => {
            tracing::warn!(error = %e, "a verified callback is not a valid event; ignored");
            return success();
        }
    };
    slot.send(received);
    success()
}

fn busy() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response()
}

fn success() -> Response {
    ([("content-type", "text/plain")], "success").into_response()
}

fn rejected(code: i32) -> Response {
    tracing::warn!(code, check = refusal_hint(code), "callback refused by verification");
    (StatusCode::FORBIDDEN, [("content-type", "text/plain")], "rejected").into_response()
}

/// What to check when a callback is refused with `code` (the −4000x codes of the WeCom callback
/// cipher). Logged, never answered.
pub fn refusal_hint(code: i32) -> &'static str {
    match code {
        -40001 => "the signature does not match: check app.callback.token (the Token set with the callback URL)",
        -40002 => "the body is not the callback XML: is WeCom (or the local zone) posting to this URL?",
        -40005 => {
            "the receive id is not this corp: check app.corp_id and app.callback.encoding_aes_key \
             (both must be the ones of the app whose callback URL this is)"
        }
        -40007 | -40008 => {
            "decryption failed: check app.callback.encoding_aes_key (the EncodingAESKey set with the callback URL)"
        }
        -40010 => "the ciphertext is not Base64: the body was altered or does not come from WeCom",
        _ => "an internal cipher error: see the code in the WeCom error-code table (README)",
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use rand::SeedableRng as _;
    use secrecy::SecretString;
    use tower::ServiceExt as _;

    use super::*;
    use zone_crypto::cipher::{CallbackCipher, EncodingAesKey, signature, xml};
    use zone_crypto::clock::ManualClock;

    const KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
    const TOKEN: &str = "QDG6eK";
    const CORP: &str = "wx5823bf96d3bd56c7";

    /// The clock of the tests: the timestamp of `notify_post`.
    const NOW: i64 = 1_700_000_000;

    fn settings(now: i64, seen_file: Option<PathBuf>) -> ReceiverSettings {
        let mut settings = ReceiverSettings::from_config(&AppCallbackConfig::default(), seen_file);
        settings.clock = Arc::new(ManualClock::new(now * 1000));
        settings
    }

    fn app_at(now: i64, seen_file: Option<PathBuf>) -> (Router, mpsc::Receiver<Received>) {
        let (tx, rx) = mpsc::channel(8);
        let keys = CallbackKeys::new(TOKEN, KEY, vec![CORP.into()]).unwrap();
        (router(keys, "/cb", tx, &settings(now, seen_file)), rx)
    }

    fn app() -> (Router, mpsc::Receiver<Received>) {
        app_at(NOW, None)
    }

    fn notify_post(notify_id: &str, nonce: &str) -> Request<Body> {
        notify_post_at(notify_id, nonce, "1700000000")
    }

    fn notify_post_at(notify_id: &str, nonce: &str, timestamp: &str) -> Request<Body> {
        let msg = format!(
            "<xml><ToUserName>{}</ToUserName><CreateTime>1</CreateTime><Event>program_notify</Event>\
             <NotifyId>{}</NotifyId><NotifyScene>7</NotifyScene></xml>",
            xml::cdata(CORP),
            xml::cdata(notify_id)
        );
        let cipher = CallbackCipher::new(EncodingAesKey::parse(KEY).unwrap());
        let enc = cipher.encrypt(msg.as_bytes(), CORP.as_bytes(), &mut rand::rngs::StdRng::seed_from_u64(1));
        let sig = signature(&SecretString::from(TOKEN), timestamp, nonce, &enc);
        let uri = format!("/cb?msg_signature={sig}&timestamp={timestamp}&nonce={nonce}");
        Request::post(uri).body(Body::from(xml::encrypted_envelope(CORP, "1", &enc))).unwrap()
    }

    async fn text(res: Response) -> String {
        String::from_utf8(axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_url_verification_of_vector_a_is_answered_with_the_bare_echo() {
        let (app, mut rx) = app_at(1_409_659_589, None);
        let uri = "/cb?msg_signature=5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3&timestamp=1409659589&nonce=263014780\
                   &echostr=P9nAzCzyDtyTWESHep1vC5X9xho%2FqYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp%2B4RPcs8TgAE7OaBO%2BFZXvnaqQ%3D%3D";
        let res = app.oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(text(res).await, "1616140317555161061");
        assert_eq!(rx.recv().await, Some(Received::UrlVerified { receive_id: CORP.into() }));
    }

    #[tokio::test]
    async fn a_program_notify_is_answered_success_and_handed_on_once() {
        let (app, mut rx) = app();
        let res = app.clone().oneshot(notify_post("N1", "a")).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(text(res).await, "success");
        let Some(Received::ProgramNotify { receive_id, notify }) = rx.recv().await else { panic!("no notify") };
        assert_eq!((receive_id.as_str(), notify.notify_id.as_str(), notify.notify_scene), (CORP, "N1", 7));
        let again = app.clone().oneshot(notify_post("N1", "b")).await.unwrap();
        assert_eq!(text(again).await, "success");
        let other = app.oneshot(notify_post("N2", "c")).await.unwrap();
        assert_eq!(other.status(), 200);
        let Some(Received::ProgramNotify { notify, .. }) = rx.recv().await else { panic!("no second notify") };
        assert_eq!(notify.notify_id.as_str(), "N2", "the repeated N1 was handed on again");
    }

    #[tokio::test]
    async fn a_tampered_or_unsigned_callback_gets_403_without_detail_and_nothing_is_handed_on() {
        let (app, mut rx) = app();
        let mut req = notify_post("N1", "a");
        *req.uri_mut() = req.uri().to_string().replace("nonce=a", "nonce=z").parse().unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), 403);
        assert_eq!(text(res).await, "rejected");
        let res = app.oneshot(Request::get("/cb?echostr=abc").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(res.status(), 403);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn each_refusal_code_says_which_setting_to_check() {
        assert!(refusal_hint(-40001).contains("app.callback.token"));
        assert!(refusal_hint(-40008).contains("app.callback.encoding_aes_key"));
        assert!(refusal_hint(-40005).contains("app.corp_id"));
    }

    /// Review finding 2: a callback from 2010, or with a timestamp that is no number, was accepted.
    #[tokio::test]
    async fn a_callback_with_a_stale_or_malformed_timestamp_gets_403_and_is_not_handed_on() {
        let (app, mut rx) = app();
        for ts in ["1262304000", "notatime", "1700000301", "1699999699", "-1", "+1700000000", "99999999999999999999"] {
            let res = app.clone().oneshot(notify_post_at("N1", "a", ts)).await.unwrap();
            assert_eq!(res.status(), 403, "timestamp {ts}");
            assert_eq!(text(res).await, "rejected");
        }
        let res = app.oneshot(notify_post_at("N1", "a", "1700000300")).await.unwrap();
        assert_eq!(text(res).await, "success", "the edge of the window is inside");
        assert!(matches!(rx.try_recv(), Ok(Received::ProgramNotify { .. })));
        assert!(rx.try_recv().is_err());
    }

    /// Review finding 2: the same POST was printed three times, and again after a restart.
    #[tokio::test]
    async fn the_same_callback_posted_again_is_answered_but_handed_on_once_even_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("seen");
        let (app, mut rx) = app_at(NOW, Some(file.clone()));
        for _ in 0..3 {
            let res = app.clone().oneshot(notify_post("N1", "a")).await.unwrap();
            assert_eq!(text(res).await, "success");
        }
        assert!(matches!(rx.try_recv(), Ok(Received::ProgramNotify { .. })));
        assert!(rx.try_recv().is_err(), "handed on more than once");
        drop(app);
        let (restarted, mut rx) = app_at(NOW + 10, Some(file.clone()));
        let res = restarted.clone().oneshot(notify_post("N1", "a")).await.unwrap();
        assert_eq!(text(res).await, "success");
        let res = restarted.clone().oneshot(notify_post("N1", "fresh")).await.unwrap();
        assert_eq!(text(res).await, "success");
        assert!(rx.try_recv().is_err(), "a replay, or a redelivery of N1, was handed on after the restart");
        let res = restarted.oneshot(notify_post("N2", "b")).await.unwrap();
        assert_eq!(text(res).await, "success");
        assert!(matches!(rx.try_recv(), Ok(Received::ProgramNotify { .. })));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    /// When the queue is full the callback gets 503 and leaves no trace: its redelivery is new.
    #[tokio::test]
    async fn a_callback_refused_busy_is_handed_on_when_delivered_again() {
        let (tx, mut rx) = mpsc::channel(1);
        let keys = CallbackKeys::new(TOKEN, KEY, vec![CORP.into()]).unwrap();
        let app = router(keys, "/cb", tx, &settings(NOW, None));
        assert_eq!(text(app.clone().oneshot(notify_post("N1", "a")).await.unwrap()).await, "success");
        let res = app.clone().oneshot(notify_post("N2", "b")).await.unwrap();
        assert_eq!(res.status(), 503);
        assert!(matches!(rx.recv().await, Some(Received::ProgramNotify { .. })));
        assert_eq!(text(app.oneshot(notify_post("N2", "b")).await.unwrap()).await, "success");
        let Some(Received::ProgramNotify { notify, .. }) = rx.recv().await else { panic!("N2 never handed on") };
        assert_eq!(notify.notify_id.as_str(), "N2");
    }
}
