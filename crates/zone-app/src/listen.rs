//! The app's callback receiver: `GET <path>` answers WeCom's URL verification with the bare echo,
//! `POST <path>` verifies and decrypts an event, answers `success` at once and hands the event on
//! through a channel (the work, e.g. fetching the data, happens after the reply). A `NotifyId` seen
//! before is answered but not handed on again. Anything that fails verification gets 403 with no
//! detail; the log line carries only the crypto code.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use serde_json::{Value, json};

use super::AppClient;
use super::notify::{CallbackKeys, CallbackQuery, Event, ProgramNotify, parse_event};

/// Largest callback body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How many NotifyIds are remembered for de-duplication.
pub const DEDUP_CAPACITY: usize = 10_000;
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

/// The receiver's router for `path`, handing events to `tx`.
pub fn router(keys: CallbackKeys, path: &str, tx: mpsc::Sender<Received>) -> Router {
    let state = ReceiverState { keys: Arc::new(keys), tx, seen: Arc::new(Mutex::new(Recent::default())) };
    Router::new()
        .route(path, get(verify_url).post(event))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
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
    pub async fn bind(addr: SocketAddr, path: &str, keys: CallbackKeys) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, events) = mpsc::channel(QUEUE_CAPACITY);
        let app = router(keys, path, tx);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                tracing::error!(error = %e, "the callback receiver stopped");
            }
        });
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
    seen: Arc<Mutex<Recent>>,
}

/// NotifyIds (with their ReceiveId) seen lately, oldest evicted first.
#[derive(Default)]
struct Recent {
    set: HashSet<(String, String)>,
    order: VecDeque<(String, String)>,
}

impl Recent {
    /// Records `key`; false when it was already there.
    fn insert(&mut self, key: (String, String)) -> bool {
        if !self.set.insert(key.clone()) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > DEDUP_CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }

    fn remove(&mut self, key: &(String, String)) {
        self.set.remove(key);
        self.order.retain(|k| k != key);
    }
}

async fn verify_url(State(s): State<ReceiverState>, Query(q): Query<CallbackQuery>) -> Response {
    match s.keys.verify_url(&q) {
        Ok(opened) => {
            let _ = s.tx.try_send(Received::UrlVerified { receive_id: opened.receive_id });
            ([("content-type", "text/plain")], opened.msg).into_response()
        }
        Err(e) => rejected(e.code()),
    }
}

async fn event(State(s): State<ReceiverState>, Query(q): Query<CallbackQuery>, body: String) -> Response {
    let opened = match s.keys.open_event(&q, &body) {
        Ok(opened) => opened,
        Err(e) => return rejected(e.code()),
    };
    let receive_id = opened.receive_id;
    let received = match parse_event(&opened.msg) {
        Ok(Event::ProgramNotify(notify)) => {
            let key = (receive_id.clone(), notify.notify_id.as_str().to_owned());
            if !s.seen.lock().expect("dedup lock").insert(key.clone()) {
                tracing::info!(receive_id, "program_notify delivered again; already handled");
                return success();
            }
            match s.tx.try_send(Received::ProgramNotify { receive_id, notify }) {
                Ok(()) => return success(),
                Err(_) => {
                    s.seen.lock().expect("dedup lock").remove(&key);
                    tracing::warn!("the callback queue is full; asking WeCom to deliver again");
                    return (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response();
                }
            }
        }
        Ok(Event::Other { kind }) => Received::Other { receive_id, kind },
        Err(e) => {
            tracing::warn!(error = %e, "a verified callback is not a valid event; ignored");
            return success();
        }
    };
    let _ = s.tx.try_send(received);
    success()
}

fn success() -> Response {
    ([("content-type", "text/plain")], "success").into_response()
}

fn rejected(code: i32) -> Response {
    tracing::warn!(code, "callback refused by verification");
    (StatusCode::FORBIDDEN, [("content-type", "text/plain")], "rejected").into_response()
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

    const KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
    const TOKEN: &str = "QDG6eK";
    const CORP: &str = "wx5823bf96d3bd56c7";

    fn app() -> (Router, mpsc::Receiver<Received>) {
        let (tx, rx) = mpsc::channel(8);
        let keys = CallbackKeys::new(TOKEN, KEY, vec![CORP.into()]).unwrap();
        (router(keys, "/cb", tx), rx)
    }

    fn notify_post(notify_id: &str, nonce: &str) -> Request<Body> {
        let msg = format!(
            "<xml><ToUserName>{}</ToUserName><CreateTime>1</CreateTime><Event>program_notify</Event>\
             <NotifyId>{}</NotifyId><NotifyScene>7</NotifyScene></xml>",
            xml::cdata(CORP),
            xml::cdata(notify_id)
        );
        let cipher = CallbackCipher::new(EncodingAesKey::parse(KEY).unwrap());
        let enc = cipher.encrypt(msg.as_bytes(), CORP.as_bytes(), &mut rand::rngs::StdRng::seed_from_u64(1));
        let sig = signature(&SecretString::from(TOKEN), "1700000000", nonce, &enc);
        let uri = format!("/cb?msg_signature={sig}&timestamp=1700000000&nonce={nonce}");
        Request::post(uri).body(Body::from(xml::encrypted_envelope(CORP, "1", &enc))).unwrap()
    }

    async fn text(res: Response) -> String {
        String::from_utf8(axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_url_verification_of_vector_a_is_answered_with_the_bare_echo() {
        let (app, mut rx) = app();
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
    fn the_dedup_memory_forgets_the_oldest_beyond_its_capacity() {
        let mut r = Recent::default();
        for i in 0..=DEDUP_CAPACITY {
            assert!(r.insert(("c".into(), i.to_string())));
        }
        assert!(!r.insert(("c".into(), DEDUP_CAPACITY.to_string())));
        assert!(r.insert(("c".into(), "0".into())), "the oldest id is forgotten");
        assert_eq!(r.set.len(), DEDUP_CAPACITY);
    }
}
