//! `zone-program app …` and `keygen` as a provider runs them: the real binary against the local zone
//! (with the program behind it), checked through their output and the zone's state. The callback
//! receiver is also run in-process (`app_client::listen::run`) so the local zone itself can push a
//! `program_notify` to it.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use zone_app::AppClient;
use zone_app::config::AppConfig;
use zone_app::listen::{self, Fetch, Listener, ReceiverSettings};
use zone_app::notify::CallbackKeys;
use zone_crypto::cipher::{CallbackCipher, EncodingAesKey, signature, xml};
use zone_crypto::demo;
use zone_program::config::{KeyringConfig, KeyringEntry};
use zone_program::keyring::Keyring;

use crate::helpers::{CORP, DEADLINE, PROGRAM, TestEnv};

const BIN: &str = env!("CARGO_BIN_EXE_zone-program");

/// What a command printed and how it ended.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    /// Standard output as one JSON value.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}\nstderr: {}", self.stdout, self.stderr))
    }

    fn ok(self) -> Self {
        assert_eq!(self.code, Some(0), "stdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }

    fn failed(self) -> Self {
        assert_eq!(self.code, Some(1), "stdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }
}

/// The CLI pointed at one test environment's local zone, with its own token cache and key folder.
struct Cli {
    base_url: String,
    dir: tempfile::TempDir,
}

impl Cli {
    fn new(env: &TestEnv) -> Self {
        Self { base_url: env.zone_url(), dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_remove("ZONE_PROGRAM_CONFIG")
            .env("ZONE_PROGRAM_APP__BASE_URL", &self.base_url)
            .env("ZONE_PROGRAM_APP__TOKEN_CACHE", self.path("token.json"))
            .env("RUST_LOG", "warn")
            .kill_on_drop(true);
        cmd
    }

    async fn run(&self, args: &[&str]) -> Ran {
        self.run_with_stdin(args, None).await
    }

    async fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Ran {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).await.unwrap();
        }
        drop(input);
        let out =
            tokio::time::timeout(DEADLINE * 3, child.wait_with_output()).await.expect("the command ends").unwrap();
        Ran {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn cached_token(&self) -> String {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(self.path("token.json")).unwrap()).unwrap();
        v["access_token"].as_str().unwrap().to_owned()
    }
}

/// Adds a message from the first customer to their follower; the program then notifies the app.
async fn new_message(env: &TestEnv) -> String {
    let world = env.world().await;
    let (staff, customer) = (&world["customers"][0]["follower"], &world["customers"][0]["external_userid"]);
    let added =
        env.control("messages", json!({"sender": customer, "receivers": [staff], "content": "发票开好了吗"})).await;
    assert_eq!(added["errcode"], 0, "{added}");
    added["msgid"].as_str().unwrap().to_owned()
}

fn msgids(callback_data: &Value) -> Vec<&str> {
    callback_data["response_data"]["msg_list"]
        .as_array()
        .map_or(Vec::new(), |l| l.iter().filter_map(|m| m["msgid"].as_str()).collect())
}

#[tokio::test]
async fn the_token_is_fetched_once_cached_owner_only_and_replaced_when_the_zone_refuses_it() {
    let env = TestEnv::spawn().await;
    let cli = Cli::new(&env);
    let first = cli.run(&["app", "token"]).await.ok().json();
    let token = first["access_token"].as_str().unwrap().to_owned();
    assert!(first["valid_for_secs"].as_u64().unwrap() > 6000, "{first}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(cli.path("token.json")).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(cli.run(&["app", "token"]).await.ok().json()["access_token"], token, "the second run uses the cache");

    let refreshed = cli.run(&["app", "token", "--refresh"]).await.ok().json();
    assert_ne!(refreshed["access_token"], token);
    assert_eq!(cli.cached_token(), refreshed["access_token"].as_str().unwrap());

    // Two hours later, by the zone's clock, the cached token is expired (42001): the next command
    // gets a fresh one and succeeds.
    env.control("clock/advance", json!({"secs": 7300})).await;
    let before = cli.cached_token();
    assert_eq!(cli.run(&["app", "log-level", "get"]).await.ok().json()["log_level"], 2);
    assert_ne!(cli.cached_token(), before);
}

#[tokio::test]
async fn a_wrong_secret_is_reported_with_the_meaning_of_its_errcode_and_without_the_secret() {
    let env = TestEnv::spawn().await;
    let cli = Cli::new(&env);
    let mut cmd = cli.command(&["app", "token"]);
    cmd.env("ZONE_PROGRAM_APP__CORP_SECRET", "WrongSecret123");
    let out = cmd.output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("gettoken: errcode 40001 (invalid secret"), "{stderr}");
    assert!(!stderr.contains("WrongSecret123"), "{stderr}");
    assert!(!cli.path("token.json").exists());
}

#[tokio::test]
async fn call_prints_response_data_and_fails_with_the_meaning_of_any_errcode() {
    let env = TestEnv::spawn().await;
    let cli = Cli::new(&env);
    let list = cli.run(&["app", "call", "list_abilities"]).await.ok().json();
    assert_eq!(list["errcode"], 0, "{list}");
    assert!(list.to_string().contains("get_callback_data"), "{list}");
    let from_stdin = cli.run_with_stdin(&["app", "call", "list_abilities", "-"], Some("{}")).await.ok().json();
    assert_eq!(from_stdin["errcode"], 0);

    let bad_input = cli.run(&["app", "call", "list_abilities", r#"{"unexpected":1}"#]).await.failed();
    assert_eq!(bad_input.json()["errcode"], 900_001, "the program's answer is still printed");
    assert!(bad_input.stderr.contains("the program answered errcode 900001 (invalid input)"), "{}", bad_input.stderr);

    let unknown = cli.run(&["app", "--program-id", "no_such_program", "call", "list_abilities"]).await.failed();
    assert!(
        unknown.stderr.contains("sync_call_program: errcode 40058 (invalid parameter"),
        "WeCom's errcode with its meaning: {}",
        unknown.stderr
    );

    let not_json = cli.run(&["app", "call", "list_abilities", "{oops"]).await.failed();
    assert!(not_json.stderr.contains("request_data is not JSON"), "{}", not_json.stderr);
}

#[tokio::test]
async fn async_returns_a_jobid_whose_result_waits_until_the_program_reports() {
    let env = TestEnv::spawn().await;
    let cli = Cli::new(&env);
    let jobid = cli.run(&["app", "async", "list_abilities"]).await.ok().json()["jobid"].as_str().unwrap().to_owned();
    let done = cli.run(&["app", "result", &jobid, "--wait", "30"]).await.ok().json();
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["response_errcode"], 0);
    assert!(done["response_data"].to_string().contains("get_callback_data"), "{done}");

    let missing = cli.run(&["app", "result", "JOB-never-issued"]).await.failed();
    assert!(missing.stderr.contains("errcode 40058"), "{}", missing.stderr);
}

#[tokio::test]
async fn a_keygen_key_is_accepted_by_set_public_key_and_wraps_the_zones_message_keys() {
    let env = TestEnv::spawn().await;
    let cli = Cli::new(&env);
    // The zone already holds version 1 (its demo key): keygen goes above it, and the two agree.
    let second = cli.run(&["keygen", "--corp-id", CORP, "--keys-dir", "keys", "--json"]).await.ok().json();
    assert_eq!(second["public_key_ver"], 2, "above the local zone's demo key");
    let set = cli.run(&["app", "set-public-key", "--public-key-file", "keys/wwlocal0000000001.2.pub.pem"]).await;
    assert_eq!(set.ok().json()["public_key_ver"], 2);
    // A version that does not increase is refused, naming the field and the current version.
    let again = cli.run(&["app", "set-public-key", "--public-key-file", "keys/wwlocal0000000001.2.pub.pem"]).await;
    let stderr = again.failed().stderr;
    assert!(stderr.contains("set_public_key: errcode 40058"), "{stderr}");
    assert!(stderr.contains("`public_key_ver`: 2 is not greater than the current version 2"), "{stderr}");

    let listed = env.sdk("sync_msg", json!({"limit": 1})).await;
    let info = &listed["msg_list"][0]["service_encrypt_info"];
    assert_eq!(info["public_key_ver"], 2, "{listed}");
    let private_key_path = cli.path(second["private_key_path"].as_str().unwrap());
    let ring = Keyring::load(&KeyringConfig {
        keys: vec![KeyringEntry { corp_id: CORP.into(), public_key_ver: 2, private_key_path }],
    })
    .expect("the keyring accepts keygen's file (mode 0600)");
    let secret = ring.unwrap_secret_key(CORP, 2, info["encrypted_secret_key"].as_str().unwrap());
    assert!(secret.is_ok(), "the zone wrapped the message key with the keygen public key");
}

#[tokio::test]
async fn set_receive_callback_and_log_level_change_the_zone() {
    let env = TestEnv::spawn().await;
    let cli = Cli::new(&env);
    env.zone.data().receive_program.clear();
    cli.run(&["app", "set-receive-callback"]).await.ok();
    assert_eq!(env.zone.data().receive_program, PROGRAM);

    assert_eq!(cli.run(&["app", "log-level", "get"]).await.ok().json()["log_level"], 2);
    assert_eq!(cli.run(&["app", "log-level", "set", "dbg"]).await.ok().json()["log_level"], 3);
    let got = cli.run(&["app", "log-level", "get"]).await.ok().json();
    assert_eq!((got["log_level"].as_i64(), got["name"].as_str()), (Some(3), Some("DBG")));
    assert_eq!(env.zone.data().log_levels.get(PROGRAM), Some(&3));
    let wrong = cli.run(&["app", "--program-id", "other", "log-level", "set", "err"]).await.failed();
    assert!(wrong.stderr.contains("set_log_level: errcode 40058"), "{}", wrong.stderr);
    assert_eq!(env.zone.data().log_levels.get(PROGRAM), Some(&3), "a refused call changes nothing");
}

#[tokio::test]
async fn debug_mode_commands_send_their_requests_and_report_that_the_local_zone_lacks_them() {
    // The local zone does not serve open/close/check_debug_mode; the commands must say so plainly.
    let env = TestEnv::spawn().await;
    let cli = Cli::new(&env);
    for (args, api) in [
        (vec!["app", "debug", "open", "--debug-token", "DebugToken123"], "open_debug_mode"),
        (vec!["app", "debug", "close"], "close_debug_mode"),
        (vec!["app", "debug", "status"], "check_debug_mode"),
    ] {
        let ran = cli.run(&args).await.failed();
        assert!(ran.stderr.contains(&format!("{api}: errcode 48002 (")), "{}", ran.stderr);
        assert!(!ran.stderr.contains("DebugToken123"), "{}", ran.stderr);
    }
}

/// An app callback receiver, a zone that notifies it, and an app client of that zone.
async fn receiver_and_zone() -> (Listener, TestEnv, AppClient) {
    let keys = CallbackKeys::new(demo::APP_TOKEN, demo::APP_KEY, vec![CORP.into()]);
    let settings = ReceiverSettings::from_config(&AppConfig::default().callback, None);
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), "/callback", keys.unwrap(), &settings).await.unwrap();
    let url = listener.url();
    let env = TestEnv::spawn_with(|c| c.local_zone.app_callback_url = Some(url)).await;
    let app = AppConfig { base_url: env.zone_url(), ..AppConfig::default() };
    let client = AppClient::from_config(&app).unwrap().without_token_file();
    (listener, env, client)
}

#[tokio::test]
async fn the_receiver_gets_a_real_program_notify_from_the_zone_and_fetches_its_data_at_once() {
    let (mut listener, env, client) = receiver_and_zone().await;
    let msgid = new_message(&env).await;

    let fetch = Fetch { program_id: PROGRAM.into(), ability_id: "get_callback_data".into(), request_data: "{}".into() };
    let mut lines = Vec::new();
    let run = listen::run(&mut listener, &client, Some(&fetch), Some(1), std::future::pending(), |l| lines.push(l));
    let handled = tokio::time::timeout(DEADLINE, run).await.expect("a program_notify within the deadline");
    assert_eq!(handled, 1);
    assert_eq!(lines[0]["event"], "program_notify", "{lines:?}");
    assert_eq!((lines[0]["corp_id"].as_str(), lines[0]["notify_scene"].as_u64()), (Some(CORP), Some(1)));
    assert_eq!(lines[1]["event"], "callback_data", "{lines:?}");
    assert_eq!(lines[1]["notify_id"], lines[0]["notify_id"]);
    assert_eq!(lines[1]["response_data"]["errcode"], 0, "{lines:?}");
    assert!(msgids(&lines[1]).contains(&msgid.as_str()), "the new message is in the data: {lines:?}");
}

/// A fetch whose reply is lost on the way (the program answered, so its data counts as taken) is
/// read again with `"retry": true` and still gets the data.
#[tokio::test]
async fn the_receiver_reads_a_notifications_data_again_when_the_reply_was_lost() {
    let (mut listener, env, client) = receiver_and_zone().await;
    let armed = env.control("faults", json!({"api": "sync_call_program", "count": 1, "lose_reply": true})).await;
    assert_eq!(armed["errcode"], 0, "{armed}");
    let msgid = new_message(&env).await;

    let fetch = Fetch { program_id: PROGRAM.into(), ability_id: "get_callback_data".into(), request_data: "{}".into() };
    let mut lines = Vec::new();
    let run = listen::run(&mut listener, &client, Some(&fetch), Some(1), std::future::pending(), |l| lines.push(l));
    tokio::time::timeout(DEADLINE, run).await.expect("a program_notify within the deadline");
    assert_eq!(lines[1]["event"], "callback_data", "{lines:?}");
    assert_eq!(lines[1]["retries"], 1, "one read lost, one retried: {lines:?}");
    assert_eq!(lines[1]["response_data"]["errcode"], 0, "{lines:?}");
    assert!(msgids(&lines[1]).contains(&msgid.as_str()), "the lost read's data: {lines:?}");
}

/// Reads JSON lines of a running `app listen`.
struct Lines(tokio::io::Lines<BufReader<ChildStdout>>);

impl Lines {
    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(DEADLINE, self.0.next_line()).await.expect("a line in time").unwrap();
        serde_json::from_str(&line.expect("the listener is still running")).unwrap()
    }
}

fn spawn_listen(cli: &Cli) -> (Child, Lines) {
    let mut cmd = cli.command(&["app", "listen", "--listen", "127.0.0.1:0", "--fetch", "--count", "1"]);
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let lines = Lines(BufReader::new(child.stdout.take().unwrap()).lines());
    (child, lines)
}

/// Encrypts `msg` for the corp and signs it as WeCom does for the app callback URL.
fn sealed(msg: &str, nonce: &str) -> (String, [(&'static str, String); 3]) {
    let cipher = CallbackCipher::new(EncodingAesKey::parse(demo::APP_KEY).unwrap());
    let encrypt = cipher.encrypt(msg.as_bytes(), CORP.as_bytes(), &mut rand::thread_rng());
    // Now: the receiver refuses a timestamp outside ±app.callback.replay_window_secs.
    let timestamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string();
    let sig = signature(&SecretString::from(demo::APP_TOKEN), &timestamp, nonce, &encrypt);
    (encrypt, [("msg_signature", sig), ("timestamp", timestamp), ("nonce", nonce.to_owned())])
}

#[tokio::test]
async fn the_listen_command_answers_url_verification_and_fetches_a_notifications_data() {
    let env = TestEnv::spawn().await;
    let cli = Cli::new(&env);
    let (mut child, mut lines) = spawn_listen(&cli);
    let listening = lines.next().await;
    let url = listening["url"].as_str().unwrap().to_owned();

    let (echostr, query) = sealed("echo-4711", "n1");
    let res = env.http.get(&url).query(&query).query(&[("echostr", &echostr)]).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "echo-4711", "the bare echo, nothing else");
    assert_eq!(lines.next().await, json!({"event": "url_verification", "receive_id": CORP}));
    let forged = env.http.get(&url).query(&[("msg_signature", "0".repeat(40))]).query(&query[1..]);
    assert_eq!(forged.query(&[("echostr", &echostr)]).send().await.unwrap().status(), 403);

    // The program notifies the app of a new message (received by the harness's own receiver); the
    // same notification, as WeCom would deliver it, goes to `app listen`.
    let msgid = new_message(&env).await;
    let n = env.next_notify().await;
    let msg = format!(
        "<xml><ToUserName>{}</ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1700000000</CreateTime>\
         <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[program_notify]]></Event><NotifyId>{}</NotifyId>\
         <NotifyScene>1</NotifyScene></xml>",
        xml::cdata(CORP),
        xml::cdata(&n.notify_id)
    );
    let (encrypt, query) = sealed(&msg, "n2");
    let body = xml::encrypted_envelope(CORP, "1000002", &encrypt);
    let res = env.http.post(&url).query(&query).body(body).send().await.unwrap();
    assert_eq!(res.text().await.unwrap(), "success");
    let notify = lines.next().await;
    assert_eq!(
        (notify["event"].as_str(), notify["notify_id"].as_str()),
        (Some("program_notify"), Some(n.notify_id.as_str()))
    );
    let data = lines.next().await;
    assert_eq!(data["event"], "callback_data", "{data}");
    assert!(msgids(&data).contains(&msgid.as_str()), "{data}");
    let status = tokio::time::timeout(DEADLINE, child.wait()).await.expect("--count 1 ends the command").unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn keygen_refuses_a_version_that_does_not_increase_and_keeps_existing_files() {
    let env = TestEnv::spawn().await;
    let cli = Cli::new(&env);
    cli.run(&["keygen", "--corp-id", CORP, "--keys-dir", "keys", "--ver", "3"]).await.ok();
    let before = std::fs::read(cli.path("keys/wwlocal0000000001.3.pem")).unwrap();
    let again = cli.run(&["keygen", "--corp-id", CORP, "--keys-dir", "keys", "--ver", "3"]).await.failed();
    assert!(again.stderr.contains("not greater than 3"), "{}", again.stderr);
    assert_eq!(std::fs::read(cli.path("keys/wwlocal0000000001.3.pem")).unwrap(), before);
    let text = cli.run(&["keygen", "--corp-id", CORP, "--keys-dir", "keys"]).await.ok().stdout;
    assert!(text.contains("public_key_ver = 4"), "{text}");
    assert!(
        text.contains("zone-program app set-public-key --public-key-file keys/wwlocal0000000001.4.pub.pem --ver 4")
    );
    assert!(Path::new(&cli.path("keys/wwlocal0000000001.4.pem")).is_file());
}

#[tokio::test]
async fn a_reader_that_closes_the_pipe_early_ends_the_command_quietly() {
    let env = TestEnv::spawn().await;
    let cli = Cli::new(&env);
    let mut cmd = cli.command(&["app", "call", "list_abilities"]);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    drop(child.stdout.take()); // `| head -c0`: the reader is gone before anything is printed
    let out = tokio::time::timeout(DEADLINE * 3, child.wait_with_output()).await.expect("the command ends").unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
}
