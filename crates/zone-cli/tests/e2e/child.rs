//! The program as a separate process, for what an in-process program cannot show: SIGKILL and
//! SIGTERM, refusing to start, and the memory of the program alone. [`Program`] runs the real
//! binary (`zone-program --config FILE serve`) with a TOML file written by the test and JSON logs on
//! stderr, which are collected (and checked for secrets when it is dropped); [`Zone`] is the local
//! zone in the test process, playing WeCom and the app towards it.
//!
//! The binary lives in the shared target directory of the worktrees; if a test here fails strangely
//! on a developer machine, another build may have replaced it mid-run: rerun before debugging.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use tokio::sync::{OnceCell, oneshot};
use zone_local::{LocalZone, Shared, keys};

use crate::helpers::{CORP, DEADLINE, PROGRAM, install_test_key, poll, test_config};

/// True on the suite's native-backend pass: the child-process tests configure their program
/// themselves (local backend) and ran on the first pass, so they skip the second.
pub fn skip_on_native_pass() -> bool {
    let skip = crate::backend::native_selected();
    if skip {
        eprintln!("skipped: the child-process tests run on the local-backend pass");
    }
    skip
}

/// How long a child gets to start listening or to exit.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// The local zone in the test process, serving the app API and the SDK API to a child program.
pub struct Zone {
    /// The zone's shared state.
    pub shared: Arc<Shared>,
    /// `http://127.0.0.1:port`.
    pub url: String,
    /// The data directory (zone data, the program's store and config files).
    pub dir: tempfile::TempDir,
    http: reqwest::Client,
    token: OnceCell<String>,
    corp_secret: String,
    stop: Option<oneshot::Sender<()>>,
}

impl Zone {
    /// Binds and runs the local zone with the test configuration (no app callback URL: every
    /// `program_notify` is kept in `/local/notifications`).
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        // The fault load calls `invoke_sync_msg` without a token thousands of times: it measures
        // fault handling, not the emulated limit on such calls.
        config.local_zone.tokenless_calls_per_minute = 0;
        crate::capture::install(&config);
        install_test_key(&config.local_zone.data_dir);
        let codec = zone_program::sdk::local::codec_from_config(&config.program.sdk).unwrap();
        let zone = LocalZone::bind(&config.local_zone, codec).await.expect("the local zone starts");
        let shared = zone.shared();
        crate::capture::register_zone(&shared);
        let url = zone.url();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = zone.run_until_stopped("http://127.0.0.1:9", async move { drop(stopped.await) }).await;
        });
        Self {
            shared,
            url,
            dir,
            http: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap(),
            token: OnceCell::new(),
            corp_secret: config.local_zone.corp_secret.expose_secret().to_owned(),
            stop: Some(stop),
        }
    }

    /// Sends the zone's calls to `program` from now on.
    pub fn point_at(&self, program: &Program) {
        *self.shared.program_url.write().unwrap() = format!("http://{}", program.addr);
    }

    /// The private key the program's keyring uses (the zone's demo key, mode 0600).
    pub fn key_path(&self) -> PathBuf {
        test_config(self.dir.path()).local_zone.data_dir.join(keys::PRIVATE_KEY_FILE)
    }

    /// A valid access_token (fetched once).
    pub async fn access_token(&self) -> String {
        let token = self.token.get_or_init(|| async {
            let q = [("corpid", CORP), ("corpsecret", self.corp_secret.as_str())];
            let url = format!("{}/cgi-bin/gettoken", self.url);
            let v: Value = self.http.get(url).query(&q).send().await.unwrap().json().await.unwrap();
            let token = v["access_token"].as_str().expect("gettoken answers a token").to_owned();
            crate::capture::register([token.clone()]);
            token
        });
        token.await.clone()
    }

    /// POSTs `/cgi-bin/chatdata/<name>`; returns the reply JSON (checked for leaks).
    pub async fn app_post(&self, name: &str, body: &Value) -> Value {
        let url = format!("{}/cgi-bin/chatdata/{name}", self.url);
        let token = self.access_token().await;
        let res = self.http.post(url).query(&[("access_token", token)]).json(body).send().await.unwrap();
        let reply = res.json().await.unwrap();
        crate::capture::check_reply(&reply);
        reply
    }

    /// `sync_call_program`; returns `(zone errcode, the program's output parsed)`.
    pub async fn call(&self, ability_id: &str, request_data: &str, notify_id: Option<&str>) -> (i64, Value) {
        let mut body = json!({"program_id": PROGRAM, "ability_id": ability_id, "request_data": request_data});
        if let Some(id) = notify_id {
            body["notify_id"] = json!(id);
        }
        let reply = self.app_post("sync_call_program", &body).await;
        let output = reply["response_data"].as_str().map_or(Value::Null, |s| serde_json::from_str(s).unwrap());
        (reply["errcode"].as_i64().unwrap(), output)
    }

    /// `async_program_task`; returns the jobid.
    pub async fn start_job(&self, ability_id: &str, request_data: &str) -> String {
        let body = json!({"program_id": PROGRAM, "ability_id": ability_id, "request_data": request_data});
        let reply = self.app_post("async_program_task", &body).await;
        reply["jobid"].as_str().unwrap_or_else(|| panic!("no jobid: {reply}")).to_owned()
    }

    /// Polls `async_program_result` until the job is reported (or the zone gives an error).
    pub async fn job_result(&self, jobid: &str) -> Value {
        let body = json!({ "jobid": jobid });
        poll(
            || self.app_post("async_program_result", &body),
            |v| v["errcode"] != 0 || v.get("response_errcode").is_some(),
        )
        .await
    }

    /// POSTs a `/local/<path>` control.
    pub async fn control(&self, path: &str, body: Value) -> Value {
        let url = format!("{}/local/{path}", self.url);
        self.http.post(url).json(&body).send().await.unwrap().json().await.unwrap()
    }

    /// Arms a fault (`fault` is one of the kinds of `/local/faults`) for the next `count` calls of `api`.
    pub async fn arm(&self, api: &str, count: u32, fault: Value) {
        let mut body = fault;
        body["api"] = json!(api);
        body["count"] = json!(count);
        let v = self.control("faults", body).await;
        assert_eq!(v["errcode"], 0, "{v}");
    }

    /// Calls of `api` still armed with a fault.
    pub async fn pending(&self, api: &str) -> u64 {
        let url = format!("{}/local/faults", self.url);
        let v: Value = self.http.get(url).send().await.unwrap().json().await.unwrap();
        v["pending"][api].as_u64().unwrap_or(0)
    }

    /// The `program_notify` outbox.
    pub async fn notifications(&self) -> Vec<Value> {
        let url = format!("{}/local/notifications", self.url);
        let v: Value = self.http.get(url).send().await.unwrap().json().await.unwrap();
        v["notifications"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Zone {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        crate::capture::check_new();
    }
}

/// Writes a program configuration: the test defaults (port 0, JSON logs, the zone's URL, a store
/// and the zone's key in `dir`) followed by `extra` TOML (whole sections).
pub fn write_config(zone: &Zone, name: &str, extra: &str) -> PathBuf {
    let dir = zone.dir.path();
    let path = dir.join(format!("{name}.toml"));
    let store = dir.join(format!("{name}.sqlite"));
    let text = format!(
        "[log]\nformat = \"json\"\nlevel = \"info\"\n\n\
         [sdk.local]\nzone_url = \"{zone}\"\n\n\
         [store]\npath = \"{store}\"\n\n\
         [keyring]\nkeys = [{{ corp_id = \"{CORP}\", public_key_ver = 1, private_key_path = \"{key}\" }}]\n\n{extra}\n",
        zone = zone.url,
        store = store.display(),
        key = zone.key_path().display(),
    );
    let text = if extra.contains("[server]") {
        text
    } else {
        format!("[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_ms = 10000\n\n{text}")
    };
    std::fs::write(&path, text).unwrap();
    path
}

/// A running `zone-program serve`.
pub struct Program {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Program {
    /// Starts the binary with `config` and waits until it logs that it listens.
    pub async fn start(config: &Path) -> Self {
        let (child, log) = spawn(config);
        let mut program = Self { addr: SocketAddr::from(([127, 0, 0, 1], 0)), child, log };
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(addr) = program.listening_addr() {
                program.addr = addr;
                return program;
            }
            if let Ok(Some(status)) = program.child.try_wait() {
                panic!("the program exited ({status}) before listening:\n{}", program.log_text());
            }
            assert!(Instant::now() < deadline, "the program did not listen in time:\n{}", program.log_text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn listening_addr(&self) -> Option<SocketAddr> {
        let log = self.log.lock().unwrap();
        log.iter().find_map(|line| {
            let v: Value = serde_json::from_str(line).ok()?;
            (v["fields"]["message"] == "zone program listening").then(|| v["fields"]["addr"].as_str()?.parse().ok())?
        })
    }

    /// Requests it answered (`zone_program_callbacks_answered_total` of `/metrics`).
    pub async fn answered(&self) -> u64 {
        let url = format!("http://{}/metrics", self.addr);
        let text = reqwest::get(url).await.unwrap().text().await.unwrap();
        let line = text.lines().find(|l| l.starts_with("zone_program_callbacks_answered_total "));
        line.and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).expect("the answered counter")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in /proc/pid/status");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// SIGKILL, then reaps the process.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends SIGTERM (graceful shutdown).
    pub fn terminate(&self) {
        let status = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status().unwrap();
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits (polling) until the process exits; panics after `deadline`.
    pub async fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        wait_exit(&mut self.child, deadline, &self.log).await
    }

    /// Everything it logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        crate::capture::check_text("the program's log", &self.log_text());
    }
}

/// Runs the binary with `config` expecting it to refuse to start: returns its exit status and stderr.
pub async fn start_refused(config: &Path) -> (ExitStatus, String) {
    let (mut child, log) = spawn(config);
    let status = wait_exit(&mut child, START_DEADLINE, &log).await;
    // The reader thread may still be draining the pipe; it ends at EOF, right after exit.
    let deadline = Instant::now() + DEADLINE;
    while Arc::strong_count(&log) > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let text = log.lock().unwrap().join("\n");
    crate::capture::check_text("the refused program's output", &text);
    (status, text)
}

fn spawn(config: &Path) -> (Child, Arc<Mutex<Vec<String>>>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zone-program"));
    cmd.arg("--config").arg(config).arg("serve");
    for (name, _) in std::env::vars() {
        if name.starts_with("ZONE_PROGRAM_") || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    (child, log)
}

async fn wait_exit(child: &mut Child, deadline: Duration, log: &Mutex<Vec<String>>) -> ExitStatus {
    let until = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < until, "the program did not exit in time:\n{}", log.lock().unwrap().join("\n"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
