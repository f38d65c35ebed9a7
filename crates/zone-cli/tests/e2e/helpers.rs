//! Test harness. [`TestEnv::spawn`] starts, on random loopback ports and exactly as production does:
//! the local zone (`LocalZone::bind` + `run_until_stopped`), the program (`App::build` +
//! `run_until_stopped`) pointed at it, and a tiny app receiver for `program_notify`. Typed helpers
//! then play the app ([`TestEnv::app_call`], [`TestEnv::app_async`], [`TestEnv::next_notify`]), the
//! program's SDK ([`TestEnv::sdk`], through the program's own backend), the zone's controls
//! ([`TestEnv::control`]) and the WeCom backend towards the program ([`TestEnv::call`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use base64::Engine as _;
use rsa::pkcs8::DecodePrivateKey;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::sync::{Mutex, OnceCell, mpsc, oneshot};
use zone_crypto::cipher::{self as crypto, CallbackCipher, EncodingAesKey, xml};
use zone_crypto::codec::{LocalCodec, Sealed};
use zone_local::{LocalZone, Shared, keys};
use zone_program::app::{App, AppState};
use zone_program::config::KeyringEntry;
use zone_program::sdk::local::codec_from_config;
use zone_program::sdk::{CallContext, SdkError};
use zone_testkit::DevConfig;

/// The demo corp of the default configuration.
pub const CORP: &str = "wwlocal0000000001";
/// The demo program id.
pub const PROGRAM: &str = "zp_local_demo";
/// The committed test-only RSA key (tests/e2e/keys/README.md); the zone's demo key in tests.
pub const TEST_RSA_KEY: &str = include_str!("keys/test_rsa_private.pem");
/// How long helpers wait for something asynchronous before failing the test.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A `program_notify` the app receiver verified and decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notified {
    /// `NotifyId`.
    pub notify_id: String,
    /// `NotifyScene`, when present.
    pub notify_scene: Option<u8>,
    /// `ToUserName` (the corp id).
    pub to_user: String,
    /// `Event` (always `program_notify`).
    pub event: String,
}

/// The local zone, the program wired to it, and an app receiver.
pub struct TestEnv {
    /// The program's address.
    pub addr: SocketAddr,
    /// The program's state (metrics, config, SDK backend).
    pub state: AppState,
    /// A WeCom-side codec with the program's keys (to post callbacks directly).
    pub wecom: LocalCodec,
    /// A plain HTTP client.
    pub http: reqwest::Client,
    /// The local zone's address.
    pub zone_addr: SocketAddr,
    /// The local zone's state (to assert that rejected calls changed nothing).
    pub zone: Arc<Shared>,
    notifications: Mutex<mpsc::UnboundedReceiver<Result<Notified, String>>>,
    token: OnceCell<String>,
    corp_secret: SecretString,
    _data: tempfile::TempDir,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// A test configuration: defaults, random ports, a private data directory.
pub fn test_config(data: &std::path::Path) -> DevConfig {
    let mut config = DevConfig::load(None, Vec::new()).expect("defaults are valid");
    config.program.server.listen = "127.0.0.1:0".parse().unwrap();
    config.program.store.path = data.join("store.sqlite");
    config.local_zone.listen = "127.0.0.1:0".parse().unwrap();
    config.local_zone.data_dir = data.join("local-zone");
    config
}

impl TestEnv {
    /// Starts everything with the test configuration, adjusted by `tweak` (applied after the
    /// harness's wiring, so a test may override any of it except `sdk.local.zone_url`).
    pub async fn spawn_with(tweak: impl FnOnce(&mut DevConfig)) -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut config = test_config(data.path());
        let (receiver_url, notifications, receiver) = spawn_app_receiver(&config).await;
        config.local_zone.app_callback_url = Some(receiver_url);
        let key_path = config.local_zone.data_dir.join(keys::PRIVATE_KEY_FILE);
        config.program.keyring.keys =
            vec![KeyringEntry { corp_id: CORP.into(), public_key_ver: 1, private_key_path: key_path }];
        tweak(&mut config);
        crate::capture::install(&config);
        install_test_key(&config.local_zone.data_dir);
        let codec = codec_from_config(&config.program.sdk).unwrap();
        let zone = LocalZone::bind(&config.local_zone, codec).await.expect("the local zone starts");
        crate::capture::register_zone(&zone.shared());
        let zone_addr = zone.local_addr();
        config.program.sdk.local.zone_url = zone.url();
        crate::backend::apply(&mut config.program);
        let wecom = codec_from_config(&config.program.sdk).unwrap();
        let corp_secret = config.local_zone.corp_secret.clone();
        let app = App::build(config.program).await.expect("the program starts");
        let addr = app.local_addr();
        let state = app.state().clone();
        let zone_state = zone.shared();
        let (program_stop, program_rx) = oneshot::channel();
        let (zone_stop, zone_rx) = oneshot::channel::<()>();
        let program = tokio::spawn(async move {
            let _ = app.run_until_stopped(async move { drop(program_rx.await) }).await;
        });
        let zone_task = tokio::spawn(async move {
            let _ = zone.run_until_stopped(format!("http://{addr}"), async move { drop(zone_rx.await) }).await;
        });
        Self {
            addr,
            state,
            wecom,
            http: reqwest::Client::new(),
            zone_addr,
            zone: zone_state,
            notifications: Mutex::new(notifications),
            token: OnceCell::new(),
            corp_secret,
            _data: data,
            stops: vec![program_stop, zone_stop],
            tasks: vec![program, zone_task, receiver],
        }
    }

    /// Starts everything with the test configuration.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// The program's callback URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The local zone's base URL.
    pub fn zone_url(&self) -> String {
        format!("http://{}", self.zone_addr)
    }

    /// Seals a callback message as the WeCom backend would.
    pub fn seal_callback(&self, call_type: i64, ability_id: &str, data: &str) -> Sealed {
        let msg = json!({
            "corp_id": CORP, "agent_id": 1000002, "call_type": call_type, "is_async": false,
            "job_info": "job-ctx", "ability_id": ability_id, "notify_id": "", "data": data,
        });
        self.wecom.seal(msg.to_string().as_bytes(), CORP)
    }

    /// POSTs a sealed message to the program.
    pub async fn post(&self, sealed: &Sealed) -> reqwest::Response {
        let mut req = self.http.post(self.url()).header("content-type", "application/json");
        for (k, v) in &sealed.headers {
            req = req.header(k, v);
        }
        req.body(sealed.body.clone()).send().await.unwrap()
    }

    /// Opens a 200 reply of the program and parses its plaintext as JSON.
    pub async fn open_reply(&self, res: reqwest::Response) -> Value {
        assert_eq!(res.status(), 200);
        let headers: Vec<(String, String)> =
            res.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned())).collect();
        let body = res.bytes().await.unwrap();
        let opened = self.wecom.open(&headers, &body).expect("the reply verifies and decrypts");
        assert_eq!(opened.receive_id, CORP);
        let reply = serde_json::from_slice(&opened.message).expect("the reply is JSON");
        crate::capture::check_reply(&reply);
        reply
    }

    /// Sends a callback straight to the program (bypassing the zone) and returns the opened reply.
    pub async fn call(&self, ability_id: &str, data: &str) -> Value {
        let sealed = self.seal_callback(1, ability_id, data);
        let res = self.post(&sealed).await;
        self.open_reply(res).await
    }

    /// A valid app access_token (fetched once per environment).
    pub async fn access_token(&self) -> String {
        let token = self.token.get_or_init(|| async {
            let url = format!("{}/cgi-bin/gettoken", self.zone_url());
            let q = [("corpid", CORP), ("corpsecret", self.corp_secret.expose_secret())];
            let v: Value = self.http.get(url).query(&q).send().await.unwrap().json().await.unwrap();
            assert_eq!(v["errcode"], 0, "{v}");
            let token = v["access_token"].as_str().unwrap().to_owned();
            crate::capture::register([token.clone()]);
            token
        });
        token.await.clone()
    }

    /// POSTs `/cgi-bin/chatdata/<name>` with a valid access_token; returns the reply JSON.
    pub async fn app_post(&self, name: &str, body: &Value) -> Value {
        let url = format!("{}/cgi-bin/chatdata/{name}", self.zone_url());
        let token = self.access_token().await;
        let res = self.http.post(url).query(&[("access_token", token)]).json(body).send().await.unwrap();
        let reply = res.json().await.unwrap();
        crate::capture::check_reply(&reply);
        reply
    }

    /// `sync_call_program` for the demo program; returns the whole reply (`response_data` inside).
    pub async fn app_call(&self, ability_id: &str, request_data: &str, notify_id: Option<&str>) -> Value {
        let mut body = json!({"program_id": PROGRAM, "ability_id": ability_id, "request_data": request_data});
        if let Some(id) = notify_id {
            body["notify_id"] = json!(id);
        }
        self.app_post("sync_call_program", &body).await
    }

    /// `async_program_task` for the demo program; returns the reply (`jobid` inside).
    pub async fn app_async(&self, ability_id: &str, request_data: &str) -> Value {
        let body = json!({"program_id": PROGRAM, "ability_id": ability_id, "request_data": request_data});
        self.app_post("async_program_task", &body).await
    }

    /// `async_program_result` once.
    pub async fn async_result(&self, jobid: &str) -> Value {
        self.app_post("async_program_result", &json!({ "jobid": jobid })).await
    }

    /// Polls `async_program_result` until the job is done (the documented `response_errcode` is
    /// there) or the call failed (errcode ≠ 0). Never reads `status`: the documents give it none.
    pub async fn await_async_result(&self, jobid: &str) -> Value {
        poll(|| self.async_result(jobid), |v| v["errcode"] != 0 || v.get("response_errcode").is_some()).await
    }

    /// Calls an SDK API through the program's own SDK backend (as the program would).
    pub async fn sdk_in(&self, ctx: &CallContext, api: &str, request: &Value) -> Result<Value, SdkError> {
        let text = self.state.sdk.invoke(ctx, api, &request.to_string()).await?;
        Ok(serde_json::from_str(&text).expect("the SDK answers JSON"))
    }

    /// [`Self::sdk_in`] in the demo corp's plain context; panics on an `Invoke` failure.
    pub async fn sdk(&self, api: &str, request: Value) -> Value {
        let ctx = CallContext { corp_id: CORP.into(), agent_id: 1_000_002, ..CallContext::default() };
        self.sdk_in(&ctx, api, &request).await.unwrap_or_else(|e| panic!("{api}: {e}"))
    }

    /// POSTs a `/local/<path>` control with a JSON body.
    pub async fn control(&self, path: &str, body: Value) -> Value {
        let url = format!("{}/local/{path}", self.zone_url());
        self.http.post(url).json(&body).send().await.unwrap().json().await.unwrap()
    }

    /// `GET /local/world`: the seeded ids.
    pub async fn world(&self) -> Value {
        self.http.get(format!("{}/local/world", self.zone_url())).send().await.unwrap().json().await.unwrap()
    }

    /// The next `program_notify` the app receiver got, verified and decrypted (fails after [`DEADLINE`]).
    pub async fn next_notify(&self) -> Notified {
        let mut rx = self.notifications.lock().await;
        let got = tokio::time::timeout(DEADLINE, rx.recv()).await.expect("a program_notify within the deadline");
        got.expect("the receiver is running").unwrap_or_else(|e| panic!("a bad program_notify: {e}"))
    }

    /// Unwraps a message's `encrypted_secret_key` with the test key, as the app would.
    pub fn unwrap_secret_key(&self, encrypted_secret_key: &str) -> String {
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(TEST_RSA_KEY).unwrap();
        let ct = base64::engine::general_purpose::STANDARD.decode(encrypted_secret_key).unwrap();
        String::from_utf8(key.decrypt(rsa::Pkcs1v15Encrypt, &ct).expect("unwraps with the test key")).unwrap()
    }
}

/// Calls `f` until `done` holds for its value, or panics after [`DEADLINE`]. No fixed sleeps.
pub async fn poll<F, Fut>(mut f: F, done: impl Fn(&Value) -> bool) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let v = f().await;
        if done(&v) {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "not done before the deadline: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Puts the test key where the zone looks for its demo key, so no RSA key is generated.
pub fn install_test_key(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(keys::PRIVATE_KEY_FILE);
    if !path.exists() {
        std::fs::write(&path, TEST_RSA_KEY).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
}

struct Receiver {
    token: SecretString,
    cipher: CallbackCipher,
    tx: mpsc::UnboundedSender<Result<Notified, String>>,
}

/// Starts the app receiver: verifies the signature, decrypts with the app's EncodingAESKey, checks
/// the receive id, and hands the notification to the test.
async fn spawn_app_receiver(
    config: &DevConfig,
) -> (String, mpsc::UnboundedReceiver<Result<Notified, String>>, tokio::task::JoinHandle<()>) {
    let lz = &config.local_zone;
    let key = EncodingAesKey::parse(lz.app_encoding_aes_key.expose_secret()).unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let state = Arc::new(Receiver { token: lz.app_token.clone(), cipher: CallbackCipher::new(key), tx });
    let router = axum::Router::new().route("/callback", axum::routing::post(receive)).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/callback", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (url, rx, task)
}

async fn receive(
    State(r): State<Arc<Receiver>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    body: String,
) -> (axum::http::StatusCode, &'static str) {
    let outcome = open_notify(&r, &q, &body);
    let ok = outcome.is_ok();
    let _ = r.tx.send(outcome);
    if ok { (axum::http::StatusCode::OK, "success") } else { (axum::http::StatusCode::BAD_REQUEST, "bad") }
}

fn open_notify(r: &Receiver, q: &std::collections::HashMap<String, String>, body: &str) -> Result<Notified, String> {
    let param = |k: &str| q.get(k).cloned().ok_or(format!("missing query {k}"));
    let encrypt = xml::required_field(body, "Encrypt").map_err(|e| e.to_string())?;
    crypto::verify_signature(&r.token, &param("timestamp")?, &param("nonce")?, &encrypt, &param("msg_signature")?)
        .map_err(|e| e.to_string())?;
    let plain = r.cipher.decrypt_for(&encrypt, CORP.as_bytes()).map_err(|e| e.to_string())?;
    let x = String::from_utf8(plain).map_err(|e| e.to_string())?;
    let field = |k: &str| xml::field(&x, k).ok_or(format!("missing {k}"));
    Ok(Notified {
        notify_id: field("NotifyId")?,
        notify_scene: xml::field(&x, "NotifyScene")
            .map(|s| s.parse().map_err(|_| "NotifyScene".to_string()))
            .transpose()?,
        to_user: field("ToUserName")?,
        event: field("Event")?,
    })
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        for task in self.tasks.drain(..) {
            task.abort();
        }
        crate::capture::check_new();
    }
}

/// The program's own state: restarts and job settling (abilities, events and jobs tests).
impl TestEnv {
    /// Stops the program gracefully (as SIGTERM would) and starts a new one on the same address,
    /// store and keys, as a redeploy would; `tweak` adjusts the new configuration. The local zone
    /// and the app receiver keep running.
    pub async fn restart_program(&mut self, tweak: impl FnOnce(&mut DevConfig)) {
        // `stops[0]` and `tasks[0]` are the program's (see `spawn_with`).
        let _ = self.stops.remove(0).send(());
        tokio::time::timeout(DEADLINE, self.tasks.remove(0)).await.expect("the program stops").unwrap();
        let mut config = test_config(self._data.path());
        let key_path = config.local_zone.data_dir.join(keys::PRIVATE_KEY_FILE);
        config.program.keyring.keys =
            vec![KeyringEntry { corp_id: CORP.into(), public_key_ver: 1, private_key_path: key_path }];
        config.program.sdk.local.zone_url = self.zone_url();
        crate::backend::apply(&mut config.program);
        config.program.server.listen = self.addr;
        tweak(&mut config);
        let app = App::build(config.program).await.expect("the program starts again");
        assert_eq!(app.local_addr(), self.addr, "the same address, so the zone reaches it");
        self.state = app.state().clone();
        let (stop, rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            let _ = app.run_until_stopped(async move { drop(rx.await) }).await;
        });
        self.stops.insert(0, stop);
        self.tasks.insert(0, task);
    }

    /// Waits until the program has no queued or running job, and asserts that none failed.
    pub async fn settle_jobs(&self) -> zone_program::store::JobCounts {
        let counts = self.state.jobs.wait_idle(DEADLINE).await.unwrap_or_else(|c| panic!("jobs still busy: {c:?}"));
        assert_eq!(counts.failed, 0, "no job failed: {counts:?}");
        counts
    }
}
