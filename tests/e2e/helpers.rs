//! Test harness: starts the program exactly as production does (`App::build` + `run_until_stopped`)
//! on 127.0.0.1:0, and plays the WeCom backend with the same local-codec keys.

use std::net::SocketAddr;

use serde_json::{Value, json};
use tokio::sync::oneshot;
use wecom_zone_program::app::{App, AppState};
use wecom_zone_program::codec::{LocalCodec, Sealed};
use wecom_zone_program::config::Config;
use wecom_zone_program::sdk::local::codec_from_config;

/// The demo corp of the default configuration.
pub const CORP: &str = "wwlocal0000000001";

/// A running program and a WeCom-side codec for it.
pub struct TestEnv {
    pub addr: SocketAddr,
    pub state: AppState,
    pub wecom: LocalCodec,
    pub http: reqwest::Client,
    _data: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A test configuration: defaults, random port, a private data directory.
pub fn test_config(data: &std::path::Path) -> Config {
    let mut config = Config::load(None, Vec::new()).expect("defaults are valid");
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.store.path = data.join("store.sqlite");
    config.local_zone.data_dir = data.join("local-zone");
    config
}

impl TestEnv {
    /// Starts the program with the test configuration, adjusted by `tweak`.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut config = test_config(data.path());
        tweak(&mut config);
        crate::backend::apply(&mut config);
        let wecom = codec_from_config(&config.sdk).unwrap();
        let app = App::build(config).await.expect("the program starts");
        let addr = app.local_addr();
        let state = app.state().clone();
        let (tx, rx) = oneshot::channel();
        let server = tokio::spawn(app.run_until_stopped(async move {
            let _ = rx.await;
        }));
        Self { addr, state, wecom, http: reqwest::Client::new(), _data: data, stop: Some(tx), server: Some(server) }
    }

    /// Starts the program with the test configuration.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// The callback URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Seals a callback message as the WeCom backend would.
    pub fn seal_callback(&self, call_type: i64, ability_id: &str, data: &str) -> Sealed {
        let msg = json!({
            "corp_id": CORP, "agent_id": 1000002, "call_type": call_type, "is_async": false,
            "job_info": "job-ctx", "ability_id": ability_id, "notify_id": "", "data": data,
        });
        self.wecom.seal(msg.to_string().as_bytes(), CORP)
    }

    /// POSTs a sealed message.
    pub async fn post(&self, sealed: &Sealed) -> reqwest::Response {
        let mut req = self.http.post(self.url()).header("content-type", "application/json");
        for (k, v) in &sealed.headers {
            req = req.header(k, v);
        }
        req.body(sealed.body.clone()).send().await.unwrap()
    }

    /// Opens a 200 reply and parses its plaintext as JSON.
    pub async fn open_reply(&self, res: reqwest::Response) -> Value {
        assert_eq!(res.status(), 200);
        let headers: Vec<(String, String)> =
            res.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned())).collect();
        let body = res.bytes().await.unwrap();
        let opened = self.wecom.open(&headers, &body).expect("the reply verifies and decrypts");
        assert_eq!(opened.receive_id, CORP);
        serde_json::from_slice(&opened.message).expect("the reply is JSON")
    }

    /// Sends a callback and returns the opened reply.
    pub async fn call(&self, ability_id: &str, data: &str) -> Value {
        let sealed = self.seal_callback(1, ability_id, data);
        let res = self.post(&sealed).await;
        self.open_reply(res).await
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}
