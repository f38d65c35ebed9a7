//! [`TestZone`]: the local zone and a program built from a [`Program`] builder, in process, on random
//! loopback ports, exactly as production starts them (`LocalZone::bind` + `run_until_stopped`,
//! `Program::build` + `run_until_stopped`), plus a small app receiver for `program_notify`. Helpers
//! then play the app ([`TestZone::call_ability`], [`TestZone::call_ability_async`],
//! [`TestZone::get_callback_data`], [`TestZone::next_notify`]), the zone's controls
//! ([`TestZone::post_message`], [`TestZone::raise_event`], [`TestZone::advance_clock`],
//! [`TestZone::inject_fault`]), the program's SDK ([`TestZone::sdk`]) and the WeCom backend towards
//! the program ([`TestZone::call`]). No sleeps: waits poll with a deadline ([`DEADLINE`]).

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
use zone_program::Program;
use zone_program::app::AppState;
use zone_program::config::{Config, KeyringEntry};
use zone_program::sdk::local::codec_from_config;
use zone_program::sdk::{CallContext, SdkError};

use crate::DevConfig;

/// The demo corp of the default configuration.
pub const CORP: &str = zone_crypto::demo::CORP_ID;
/// The demo program id.
pub const PROGRAM: &str = zone_crypto::demo::PROGRAM_ID;
/// The demo app's agent id.
pub const AGENT_ID: i64 = 1_000_002;
/// The committed test-only RSA key (`crates/zone-testkit/keys/README.md`): the zone's demo key in
/// tests, so no RSA key is generated.
pub const TEST_RSA_KEY: &str = include_str!("../keys/test_rsa_private.pem");
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

/// Makes the program of a test zone from its configuration (called again by
/// [`TestZone::restart_program`]).
pub type ProgramFn = Arc<dyn Fn(Config) -> Program + Send + Sync>;

/// An observer of a value the kit sees.
pub type Observer<T> = Arc<dyn Fn(&T) + Send + Sync>;
/// A last change to the program's configuration.
pub type Finisher = Arc<dyn Fn(&mut Config) + Send + Sync>;
type Tweak = Box<dyn FnOnce(&mut DevConfig) + Send>;

/// Observers and finishers a test suite may plug in (the project's e2e suite checks every reply and
/// log line for secrets, and runs on the native backend on request).
#[derive(Default, Clone)]
pub struct Hooks {
    /// Sees the complete configuration before anything starts.
    pub on_config: Option<Observer<DevConfig>>,
    /// Sees the local zone's state once it is seeded.
    pub on_zone: Option<Observer<Arc<Shared>>>,
    /// Completes the program's configuration last (at every start).
    pub finish_program: Option<Finisher>,
    /// Sees every reply the helpers parse.
    pub on_reply: Option<Observer<Value>>,
    /// Sees every secret the helpers obtain (access tokens).
    pub on_secret: Option<Observer<str>>,
}

/// Starts a [`TestZone`].
pub struct TestZoneBuilder {
    program: ProgramFn,
    tweak: Option<Tweak>,
    hooks: Hooks,
}

impl TestZoneBuilder {
    /// The program to run (default: [`Program::stock`]).
    pub fn program(mut self, program: impl Fn(Config) -> Program + Send + Sync + 'static) -> Self {
        self.program = Arc::new(program);
        self
    }

    /// Adjusts the test configuration after the kit's wiring (any of it but `sdk.local.zone_url`).
    pub fn configure(mut self, tweak: impl FnOnce(&mut DevConfig) + Send + 'static) -> Self {
        self.tweak = Some(Box::new(tweak));
        self
    }

    /// Plugs in observers.
    pub fn hooks(mut self, hooks: Hooks) -> Self {
        self.hooks = hooks;
        self
    }

    /// Starts the local zone, the program and the app receiver.
    pub async fn start(self) -> TestZone {
        TestZone::start_with(self, |_| {}).await
    }

    /// [`Self::start`] with a last adjustment of the configuration that need not be `'static`.
    pub async fn start_configured(self, tweak: impl FnOnce(&mut DevConfig)) -> TestZone {
        TestZone::start_with(self, tweak).await
    }
}

/// The local zone, a program wired to it, and an app receiver. Dropping it stops them.
pub struct TestZone {
    /// The program's address.
    pub addr: SocketAddr,
    /// The program's state (metrics, config, store, jobs, SDK backend).
    pub state: AppState,
    /// A WeCom-side codec with the program's keys (to post callbacks directly).
    pub wecom: LocalCodec,
    /// A plain HTTP client.
    pub http: reqwest::Client,
    /// The local zone's address.
    pub zone_addr: SocketAddr,
    /// The local zone's state (to assert that rejected calls changed nothing).
    pub zone: Arc<Shared>,
    program: ProgramFn,
    hooks: Hooks,
    notifications: Mutex<mpsc::UnboundedReceiver<Result<Notified, String>>>,
    token: OnceCell<String>,
    corp_secret: SecretString,
    data: tempfile::TempDir,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// A test configuration: defaults, random ports, a private data directory.
pub fn test_config(data: &std::path::Path) -> DevConfig {
    let mut config = DevConfig::load(None, Vec::new()).expect("defaults are valid");
    config.program.server.listen = "127.0.0.1:0".parse().expect("an address");
    config.program.store.path = data.join("store.sqlite");
    config.local_zone.listen = "127.0.0.1:0".parse().expect("an address");
    config.local_zone.data_dir = data.join("local-zone");
    config
}

/// The keyring entry of the zone's demo key.
fn demo_keyring(config: &mut DevConfig) {
    let key_path = config.local_zone.data_dir.join(keys::PRIVATE_KEY_FILE);
    config.program.keyring.keys =
        vec![KeyringEntry { corp_id: CORP.into(), public_key_ver: 1, private_key_path: key_path }];
}

impl TestZone {
    /// A builder: the stock program, the test configuration, no hooks.
    pub fn builder() -> TestZoneBuilder {
        TestZoneBuilder { program: Arc::new(Program::stock), tweak: None, hooks: Hooks::default() }
    }

    /// Starts the stock program with the test configuration.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// Starts `program` (e.g. `|config| Program::stock(config).ability(MyAbility)`) with the test
    /// configuration.
    pub async fn with_program(program: impl Fn(Config) -> Program + Send + Sync + 'static) -> Self {
        Self::builder().program(program).start().await
    }

    async fn start_with(builder: TestZoneBuilder, last_tweak: impl FnOnce(&mut DevConfig)) -> Self {
        let TestZoneBuilder { program, tweak, hooks } = builder;
        let data = tempfile::tempdir().expect("a temporary directory");
        let mut config = test_config(data.path());
        let (receiver_url, notifications, receiver) = spawn_app_receiver(&config).await;
        config.local_zone.app_callback_url = Some(receiver_url);
        demo_keyring(&mut config);
        if let Some(tweak) = tweak {
            tweak(&mut config);
        }
        last_tweak(&mut config);
        if let Some(f) = &hooks.on_config {
            f(&config);
        }
        install_test_key(&config.local_zone.data_dir);
        let codec = codec_from_config(&config.program.sdk).expect("the test codec settings are valid");
        let zone = LocalZone::bind(&config.local_zone, codec).await.expect("the local zone starts");
        let zone_state = zone.shared();
        if let Some(f) = &hooks.on_zone {
            f(&zone_state);
        }
        let zone_addr = zone.local_addr();
        config.program.sdk.local.zone_url = zone.url();
        if let Some(f) = &hooks.finish_program {
            f(&mut config.program);
        }
        let wecom = codec_from_config(&config.program.sdk).expect("the test codec settings are valid");
        let corp_secret = config.local_zone.corp_secret.clone();
        let app = program(config.program).build().await.expect("the program starts");
        let addr = app.local_addr();
        let state = app.state().clone();
        let (program_stop, program_rx) = oneshot::channel();
        let (zone_stop, zone_rx) = oneshot::channel::<()>();
        let program_task = tokio::spawn(async move {
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
            program,
            hooks,
            notifications: Mutex::new(notifications),
            token: OnceCell::new(),
            corp_secret,
            data,
            stops: vec![program_stop, zone_stop],
            tasks: vec![program_task, zone_task, receiver],
        }
    }

    fn saw_reply(&self, reply: &Value) {
        if let Some(f) = &self.hooks.on_reply {
            f(reply);
        }
    }

    /// The program's callback URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The local zone's base URL.
    pub fn zone_url(&self) -> String {
        format!("http://{}", self.zone_addr)
    }

    /// The data directory of this zone (store, local zone data).
    pub fn data_dir(&self) -> &std::path::Path {
        self.data.path()
    }

    // ---- the WeCom backend towards the program ----

    /// Seals a callback message as the WeCom backend would.
    pub fn seal_callback(&self, call_type: i64, ability_id: &str, data: &str) -> Sealed {
        let msg = json!({
            "corp_id": CORP, "agent_id": AGENT_ID, "call_type": call_type, "is_async": false,
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
        req.body(sealed.body.clone()).send().await.expect("the program answers")
    }

    /// Opens a 200 reply of the program and parses its plaintext as JSON.
    pub async fn open_reply(&self, res: reqwest::Response) -> Value {
        assert_eq!(res.status(), 200);
        let headers: Vec<(String, String)> = res
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().expect("ASCII headers").to_owned()))
            .collect();
        let body = res.bytes().await.expect("a body");
        let opened = self.wecom.open(&headers, &body).expect("the reply verifies and decrypts");
        assert_eq!(opened.receive_id, CORP);
        let reply = serde_json::from_slice(&opened.message).expect("the reply is JSON");
        self.saw_reply(&reply);
        reply
    }

    /// Sends a callback straight to the program (bypassing the zone) and returns the opened reply.
    pub async fn call(&self, ability_id: &str, data: &str) -> Value {
        let sealed = self.seal_callback(1, ability_id, data);
        let res = self.post(&sealed).await;
        self.open_reply(res).await
    }

    // ---- the app ----

    /// A valid app access_token (fetched once per zone).
    pub async fn access_token(&self) -> String {
        let token = self.token.get_or_init(|| async {
            let url = format!("{}/cgi-bin/gettoken", self.zone_url());
            let q = [("corpid", CORP), ("corpsecret", self.corp_secret.expose_secret())];
            let v: Value = self.http.get(url).query(&q).send().await.expect("gettoken").json().await.expect("JSON");
            assert_eq!(v["errcode"], 0, "{v}");
            let token = v["access_token"].as_str().expect("an access_token").to_owned();
            if let Some(f) = &self.hooks.on_secret {
                f(&token);
            }
            token
        });
        token.await.clone()
    }

    /// POSTs `/cgi-bin/chatdata/<name>` with a valid access_token; returns the reply JSON.
    pub async fn app_post(&self, name: &str, body: &Value) -> Value {
        let url = format!("{}/cgi-bin/chatdata/{name}", self.zone_url());
        let token = self.access_token().await;
        let res =
            self.http.post(url).query(&[("access_token", token)]).json(body).send().await.expect("the zone answers");
        let reply = res.json().await.expect("JSON");
        self.saw_reply(&reply);
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

    /// Calls ability `id` with `input` as the app would (`sync_call_program`) and returns the
    /// ability's output, decoded (and out of its `{"output": …}` envelope, if configured). Fails
    /// the test when the zone refuses the call itself.
    pub async fn call_ability(&self, id: &str, input: &Value) -> Value {
        let reply = self.app_call(id, &input.to_string(), None).await;
        decode_output(&reply, "response_data")
    }

    /// Calls ability `id` as an async job (`async_program_task`), waits for its result and returns
    /// the ability's output, decoded.
    pub async fn call_ability_async(&self, id: &str, input: &Value) -> Value {
        let accepted = self.app_async(id, &input.to_string()).await;
        assert_eq!(accepted["errcode"], 0, "async_program_task refused: {accepted}");
        let jobid = accepted["jobid"].as_str().expect("a jobid").to_owned();
        let result = self.await_async_result(&jobid).await;
        decode_output(&result, "response_data")
    }

    /// `get_callback_data` with `notify_id`, decoded: what an event handler stored.
    pub async fn get_callback_data(&self, notify_id: &str) -> Value {
        let reply = self.app_call("get_callback_data", "{}", Some(notify_id)).await;
        decode_output(&reply, "response_data")
    }

    /// The next `program_notify` the app receiver got, verified and decrypted (fails after [`DEADLINE`]).
    pub async fn next_notify(&self) -> Notified {
        let mut rx = self.notifications.lock().await;
        let got = tokio::time::timeout(DEADLINE, rx.recv()).await.expect("a program_notify within the deadline");
        got.expect("the receiver is running").unwrap_or_else(|e| panic!("a bad program_notify: {e}"))
    }

    /// Unwraps a message's `encrypted_secret_key` with the test key, as the app would.
    pub fn unwrap_secret_key(&self, encrypted_secret_key: &str) -> String {
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(TEST_RSA_KEY).expect("the test key parses");
        let ct = base64::engine::general_purpose::STANDARD.decode(encrypted_secret_key).expect("Base64");
        String::from_utf8(key.decrypt(rsa::Pkcs1v15Encrypt, &ct).expect("unwraps with the test key")).expect("UTF-8")
    }

    // ---- the zone's controls ----

    /// POSTs a `/local/<path>` control with a JSON body.
    pub async fn control(&self, path: &str, body: Value) -> Value {
        let url = format!("{}/local/{path}", self.zone_url());
        self.http.post(url).json(&body).send().await.expect("the zone answers").json().await.expect("JSON")
    }

    /// `GET /local/world`: the seeded ids (staff, customers, chats, rules, knowledge sets).
    pub async fn world(&self) -> Value {
        let url = format!("{}/local/world", self.zone_url());
        self.http.get(url).send().await.expect("the zone answers").json().await.expect("JSON")
    }

    /// Archives a message (`{sender, receivers, content, chatid?, msgtype?, raise_event?}`) and
    /// raises `conversation_new_message` (and `hit_keyword` when it hits a rule) at the program.
    pub async fn post_message(&self, message: Value) -> Value {
        let v = self.control("messages", message).await;
        assert_eq!(v["errcode"], 0, "the zone refused the message: {v}");
        v
    }

    /// Raises an event (`{event_type, …}`: consent, knowledge sets, exports) at the program.
    pub async fn raise_event(&self, event: Value) -> Value {
        let v = self.control("events", event).await;
        assert_eq!(v["errcode"], 0, "the zone refused the event: {v}");
        v
    }

    /// Moves the zone's clock (token, notify and window expiry) by `secs`.
    pub async fn advance_clock(&self, secs: u64) -> Value {
        self.control("clock/advance", json!({ "secs": secs })).await
    }

    /// Arms a fault (`{api, count, errcode? | delay_ms? | …}`, see the README's local-zone section).
    pub async fn inject_fault(&self, fault: Value) -> Value {
        let v = self.control("faults", fault).await;
        assert_eq!(v["errcode"], 0, "the zone refused the fault: {v}");
        v
    }

    // ---- the program's SDK ----

    /// Calls an SDK API through the program's own SDK backend (as the program would).
    pub async fn sdk_in(&self, ctx: &CallContext, api: &str, request: &Value) -> Result<Value, SdkError> {
        let text = self.state.sdk.invoke(ctx, api, &request.to_string()).await?;
        Ok(serde_json::from_str(&text).expect("the SDK answers JSON"))
    }

    /// [`Self::sdk_in`] in the demo corp's plain context; panics on an `Invoke` failure.
    pub async fn sdk(&self, api: &str, request: Value) -> Value {
        let ctx = CallContext { corp_id: CORP.into(), agent_id: AGENT_ID, ..CallContext::default() };
        self.sdk_in(&ctx, api, &request).await.unwrap_or_else(|e| panic!("{api}: {e}"))
    }

    // ---- the program's own state ----

    /// Stops the program gracefully (as SIGTERM would) and starts a new one on the same address,
    /// store and keys, as a redeploy would; `tweak` adjusts the new configuration. The local zone
    /// and the app receiver keep running.
    pub async fn restart_program(&mut self, tweak: impl FnOnce(&mut DevConfig)) {
        // `stops[0]` and `tasks[0]` are the program's (see `start_with`).
        let _ = self.stops.remove(0).send(());
        tokio::time::timeout(DEADLINE, self.tasks.remove(0)).await.expect("the program stops").expect("no panic");
        let mut config = test_config(self.data.path());
        demo_keyring(&mut config);
        config.program.sdk.local.zone_url = self.zone_url();
        if let Some(f) = &self.hooks.finish_program {
            f(&mut config.program);
        }
        config.program.server.listen = self.addr;
        tweak(&mut config);
        let app = (self.program)(config.program).build().await.expect("the program starts again");
        assert_eq!(app.local_addr(), self.addr, "the same address, so the zone reaches it");
        self.state = app.state().clone();
        let (stop, rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            let _ = app.run_until_stopped(async move { drop(rx.await) }).await;
        });
        self.stops.insert(0, stop);
        self.tasks.insert(0, task);
    }

    /// Stops the local zone gracefully and starts it again on the same address and `data_dir`, as
    /// a redeploy of the WeCom side would (with `local_zone.persist` its world is restored). The
    /// program and the app receiver keep running. (An in-process zone cannot be killed: its open
    /// connections would keep serving the old state; kill a zone process for that.)
    pub async fn restart_zone(&mut self) {
        // `stops[1]` and `tasks[1]` are the zone's (see `start_with`).
        let _ = self.stops.remove(1).send(());
        tokio::time::timeout(DEADLINE, self.tasks.remove(1)).await.expect("the zone stops").expect("no panic");
        let mut cfg = self.zone.cfg.clone();
        cfg.listen = self.zone_addr;
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let zone = loop {
            let codec = codec_from_config(&self.state.config.sdk).expect("the test codec settings are valid");
            match LocalZone::bind(&cfg, codec).await {
                Ok(zone) => break zone,
                Err(e) => {
                    assert!(tokio::time::Instant::now() < deadline, "the zone does not start again: {e:#}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        if let Some(f) = &self.hooks.on_zone {
            f(&zone.shared());
        }
        self.zone = zone.shared();
        let addr = self.addr;
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = zone.run_until_stopped(format!("http://{addr}"), async move { drop(rx.await) }).await;
        });
        self.stops.insert(1, stop);
        self.tasks.insert(1, task);
    }

    /// Waits until the program has no queued or running job, and asserts that none failed.
    pub async fn settle_jobs(&self) -> zone_program::store::JobCounts {
        let counts = self.state.jobs.wait_idle(DEADLINE).await.unwrap_or_else(|c| panic!("jobs still busy: {c:?}"));
        assert_eq!(counts.failed, 0, "no job failed: {counts:?}");
        counts
    }
}

impl Drop for TestZone {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

/// The ability output inside a zone reply's `field` (a JSON string), out of its envelope.
fn decode_output(reply: &Value, field: &str) -> Value {
    assert_eq!(reply["errcode"], 0, "the zone refused the call: {reply}");
    let text = reply[field].as_str().unwrap_or_else(|| panic!("no `{field}` in {reply}"));
    let output: Value = serde_json::from_str(text).expect("the output is JSON");
    match output.get("output") {
        Some(inner) if output.as_object().is_some_and(|o| o.len() == 1) => inner.clone(),
        _ => output,
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
    std::fs::create_dir_all(dir).expect("the data directory");
    let path = dir.join(keys::PRIVATE_KEY_FILE);
    if !path.exists() {
        std::fs::write(&path, TEST_RSA_KEY).expect("the key file");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("owner-only");
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
    let key = EncodingAesKey::parse(lz.app_encoding_aes_key.expose_secret()).expect("the app key is valid");
    let (tx, rx) = mpsc::unbounded_channel();
    let state = Arc::new(Receiver { token: lz.app_token.clone(), cipher: CallbackCipher::new(key), tx });
    let router = axum::Router::new().route("/callback", axum::routing::post(receive)).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let url = format!("http://{}/callback", listener.local_addr().expect("bound"));
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
