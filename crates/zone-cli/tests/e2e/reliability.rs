//! Nothing lost, every call ends (issue 13): an async call refused in its acknowledgement is still
//! reported; a reused `job_info` never cross-answers and a redelivered finished job is answered
//! again; a store locked by another connection strands no job; a full notify store keeps an
//! event's messages until there is room.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rsa::pkcs8::DecodePrivateKey as _;
use serde_json::{Value, json};
use zone_local::model::{JobKind, ProgramJob};
use zone_program::store::JobCounts;

use crate::abilities::response_data;
use crate::helpers::{CORP, DEADLINE, TestEnv, poll};

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The async result's output, once the job is done.
fn done_output(done: &Value) -> Value {
    assert!(done["errcode"] == 0 && done.get("response_errcode").is_some(), "{done}");
    serde_json::from_str(done["response_data"].as_str().unwrap()).unwrap()
}

/// Polls the zone until the program's acknowledgement of `jobid` arrived; returns its errcode.
async fn ack_errcode(env: &TestEnv, jobid: &str) -> i64 {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(code) = env.zone.data().program_jobs[jobid].ack_errcode {
            return code;
        }
        assert!(Instant::now() < deadline, "{jobid}: no acknowledgement");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn every_async_call_refused_in_its_acknowledgement_still_ends_with_the_sync_calls_answer() {
    let env = TestEnv::spawn().await;
    let w = env.world().await;
    let chatid = w["chats"][0]["chatid"].clone();
    let now = now_secs();
    let cases = [
        ("chat_digest", json!({"chatid": chatid, "bogus": 1})),
        ("no_such_ability", json!({})),
        ("chat_digest", json!({"chatid": chatid, "start_time": now - 32 * 86_400, "end_time": now})),
        ("reply_suggestions", json!({"kb_id": "kb1"})),
    ];
    for (ability, data) in cases {
        let data = data.to_string();
        let sync = response_data(&env.app_call(ability, &data, None).await);
        let code = sync["errcode"].as_i64().unwrap();
        assert_ne!(code, 0, "{ability} {data}: the sync call is refused: {sync}");
        let jobid = env.app_async(ability, &data).await["jobid"].as_str().unwrap().to_owned();
        let done = env.await_async_result(&jobid).await;
        assert_eq!(done["response_errcode"], code, "{ability} {data}: {done}");
        assert_eq!(done_output(&done), sync, "{ability} {data}: the same answer as the sync call");
        assert_eq!(ack_errcode(&env, &jobid).await, code, "the zone kept the acknowledgement's errcode");
    }
    assert_eq!(env.state.jobs.counts().await.unwrap(), JobCounts::default(), "no job was recorded");
}

#[tokio::test]
async fn an_async_call_without_job_info_is_refused_in_its_acknowledgement_and_records_nothing() {
    let env = TestEnv::spawn().await;
    let before = env.state.store.fingerprint().await.unwrap();
    let msg = json!({"corp_id": CORP, "agent_id": 1_000_002, "call_type": 1, "is_async": true, "job_info": "",
                     "ability_id": "list_abilities", "notify_id": "", "data": "{}"});
    let ack = env.open_reply(env.post(&env.wecom.seal(msg.to_string().as_bytes(), CORP)).await).await;
    assert_eq!(ack["errcode"], 900_001, "{ack}");
    assert!(ack["errmsg"].as_str().unwrap().contains("job_info"), "{ack}");
    assert_eq!(env.state.store.fingerprint().await.unwrap(), before);
}

/// An async call delivered straight to the program with `job_info`, as WeCom would (re)deliver it.
async fn deliver_async(env: &TestEnv, job_info: &str, ability: &str, data: &str) -> Value {
    let msg = json!({"corp_id": CORP, "agent_id": 1_000_002, "call_type": 1, "is_async": true,
                     "job_info": job_info, "ability_id": ability, "notify_id": "", "data": data});
    env.open_reply(env.post(&env.wecom.seal(msg.to_string().as_bytes(), CORP)).await).await
}

/// Makes the zone expect a new job under an old `job_info` (as a zone that forgot its ids would).
fn expect_job(env: &TestEnv, jobid: &str, job_info: &str, ability: &str) {
    let job = ProgramJob {
        kind: JobKind::App,
        jobid: jobid.into(),
        job_info: job_info.into(),
        ability_id: ability.into(),
        created: now_secs(),
        report: None,
        delivery_error: None,
        ack_errcode: None,
        pending_delivery: None,
        protocol_mismatch: false,
        fail_list: Vec::new(),
    };
    env.zone.data().add_program_job(job);
}

#[tokio::test]
async fn a_reused_job_info_never_gets_another_requests_result_and_a_finished_redelivery_is_answered_again() {
    let env = TestEnv::spawn().await;
    let w = env.world().await;
    let chatid = w["chats"][0]["chatid"].clone();
    let digest_input = json!({"chatid": chatid}).to_string();
    let first = env.app_async("chat_digest", &digest_input).await["jobid"].as_str().unwrap().to_owned();
    let digest = done_output(&env.await_async_result(&first).await);
    assert!(digest.get("message_count").is_some(), "{digest}");
    let job_info = env.zone.data().program_jobs[&first].job_info.clone();

    // Another request under the same job_info: a new job with its own result.
    expect_job(&env, "JOB-REUSED", &job_info, "list_abilities");
    assert_eq!(deliver_async(&env, &job_info, "list_abilities", "{}").await["errcode"], 0);
    let reused = done_output(&env.await_async_result("JOB-REUSED").await);
    assert!(reused["abilities"].is_array(), "its own result, not the digest: {reused}");

    // The same request again after it finished: not run again, but its result is reported again.
    expect_job(&env, "JOB-AGAIN", &job_info, "list_abilities");
    assert_eq!(deliver_async(&env, &job_info, "list_abilities", "{}").await["errcode"], 0);
    let again = done_output(&env.await_async_result("JOB-AGAIN").await);
    assert_eq!(again, reused);
    let counts = env.settle_jobs().await;
    assert_eq!(counts.done, 2, "two requests, two jobs; the redelivery ran nothing: {counts:?}");
}

/// Holds `BEGIN EXCLUSIVE` on `path` from another connection for `hold`; returns once it is held.
async fn lock_store(path: &Path, hold: Duration) -> tokio::task::JoinHandle<()> {
    let (held_tx, held_rx) = tokio::sync::oneshot::channel();
    let path: PathBuf = path.to_owned();
    let task = tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        held_tx.send(()).unwrap();
        std::thread::sleep(hold);
        conn.execute_batch("COMMIT").unwrap();
    });
    held_rx.await.unwrap();
    task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_locked_by_another_connection_delays_writes_and_strands_no_job() {
    let env = TestEnv::spawn_with(|c| {
        c.program.store.busy_timeout_ms = 1500;
        c.program.jobs.report_backoff_ms = 50;
    })
    .await;
    let store = env.state.config.store.path.clone();
    // A job inside a slow SDK call when the lock is taken: its outcome is recorded after it.
    env.control("faults", json!({"api": "sync_msg", "count": 1, "delay_ms": 1000})).await;
    let stuck = env.app_async("invoke_sync_msg", r#"{"limit":1}"#).await["jobid"].as_str().unwrap().to_owned();
    let pending = || async {
        let v: Value =
            env.http.get(format!("{}/local/faults", env.zone_url())).send().await.unwrap().json().await.unwrap();
        v["pending"].clone()
    };
    poll(pending, |p| p.get("sync_msg").is_none()).await;
    let held = lock_store(&store, Duration::from_secs(4)).await;
    // Longer than the busy timeout: the call is refused with 900999 after waiting, and reported.
    let started = Instant::now();
    let refused = env.app_async("list_abilities", "{}").await["jobid"].as_str().unwrap().to_owned();
    assert_eq!(ack_errcode(&env, &refused).await, 900_999);
    assert!(started.elapsed() >= Duration::from_millis(1000), "it waited out the busy timeout first");
    let done = env.await_async_result(&refused).await;
    assert_eq!(done["response_errcode"], 900_999, "{done}");
    held.await.unwrap();
    let done = poll(|| env.async_result(&stuck), |v| v.get("response_errcode").is_some() || v["errcode"] != 0).await;
    assert_eq!(done_output(&done)["errcode"], 0, "the job cut off by the lock finished: {done}");

    // Shorter than the busy timeout: the call simply waits.
    let held = lock_store(&store, Duration::from_millis(500)).await;
    let started = Instant::now();
    let waited = env.app_async("list_abilities", "{}").await["jobid"].as_str().unwrap().to_owned();
    assert_eq!(ack_errcode(&env, &waited).await, 0);
    assert!(started.elapsed() >= Duration::from_millis(300), "it waited for the lock");
    held.await.unwrap();
    assert!(done_output(&env.await_async_result(&waited).await)["abilities"].is_array());
    let counts = env.settle_jobs().await;
    assert_eq!((counts.running, counts.done), (0, 2), "no job left claimed (the refused call has none): {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_notify_store_keeps_an_events_messages_until_there_is_room() {
    let env = TestEnv::spawn_with(|c| {
        c.program.store.max_notify_entries = 1;
        c.program.jobs.report_backoff_ms = 50;
    })
    .await;
    let w = env.world().await;
    let c = &w["customers"][2];
    let pending = || async {
        let v: Value =
            env.http.get(format!("{}/local/faults", env.zone_url())).send().await.unwrap().json().await.unwrap();
        v["pending"].clone()
    };
    // A first message brings the listing's cursor past the seeded archive.
    env.control("messages", json!({"sender": c["external_userid"], "receivers": [c["follower"]], "content": "你好"}))
        .await;
    let first = env.next_notify().await;
    assert_eq!(response_data(&env.app_call("get_callback_data", "{}", Some(&first.notify_id)).await)["errcode"], 0);
    env.settle_jobs().await;
    // M1's follow-up is held inside `sync_msg` while another event fills the only slot.
    env.control("faults", json!({"api": "sync_msg", "count": 1, "delay_ms": 1000})).await;
    let m1 = env
        .control("messages", json!({"sender": c["external_userid"], "receivers": [c["follower"]], "content": "在吗"}))
        .await;
    assert_eq!(m1["event_ack"]["errcode"], 0, "{m1}");
    poll(pending, |p| p.get("sync_msg").is_none()).await;
    let kb = json!({"event_type": "auth_knowledge_base", "knowledge_base_id": "kbfull", "knowledge_base_name": "满"});
    assert_eq!(env.control("events", kb).await["ack"]["errcode"], 0);
    let filler = env.next_notify().await;
    assert_eq!(filler.notify_scene, Some(5));
    // M1's job found no room and waits (released, not failed).
    poll(|| async { json!(env.state.jobs.counts().await.unwrap().queued) }, |q| q == 1).await;
    let counts = env.state.jobs.counts().await.unwrap();
    assert_eq!((counts.running, counts.failed), (0, 0), "{counts:?}");
    // The app reads the filler: there is room, and M1 arrives.
    assert_eq!(response_data(&env.app_call("get_callback_data", "{}", Some(&filler.notify_id)).await)["errcode"], 0);
    let first = env.next_notify().await;
    assert_eq!(first.notify_scene, Some(1));
    let data = response_data(&env.app_call("get_callback_data", "{}", Some(&first.notify_id)).await);
    let ids: Vec<&Value> = data["msg_list"].as_array().unwrap().iter().map(|m| &m["msgid"]).collect();
    assert_eq!(ids, [&m1["msgid"]], "M1, once: {data}");
    let m2 = env
        .control("messages", json!({"sender": c["follower"], "receivers": [c["external_userid"]], "content": "在的"}))
        .await;
    let second = env.next_notify().await;
    let data = response_data(&env.app_call("get_callback_data", "{}", Some(&second.notify_id)).await);
    let ids: Vec<&Value> = data["msg_list"].as_array().unwrap().iter().map(|m| &m["msgid"]).collect();
    assert_eq!(ids, [&m2["msgid"]], "M2 alone: {data}");
    let counts = env.settle_jobs().await;
    assert_eq!(counts.done, 4, "{counts:?}");
}

/// The msgids of a notification's data, read once by the app.
async fn delivered(env: &TestEnv, notify_id: &str) -> Vec<String> {
    let data = response_data(&env.app_call("get_callback_data", "{}", Some(notify_id)).await);
    assert_eq!(data["errcode"], 0, "{data}");
    data["msg_list"].as_array().unwrap().iter().map(|m| m["msgid"].as_str().unwrap().to_owned()).collect()
}

/// Posts a message from a customer; returns its msgid.
async fn post_message(env: &TestEnv, content: &str) -> String {
    let w = env.world().await;
    let c = &w["customers"][2];
    let m = env
        .control("messages", json!({"sender": c["external_userid"], "receivers": [c["follower"]], "content": content}))
        .await;
    assert_eq!(m["event_ack"]["errcode"], 0, "{m}");
    m["msgid"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_zone_forgets_nothing_across_restarts_of_either_side_and_never_repeats_an_id() {
    let mut env = TestEnv::spawn_with(|c| c.program.jobs.report_backoff_ms = 50).await;
    post_message(&env, "你好").await;
    delivered(&env, &env.next_notify().await.notify_id).await; // past the seeded archive
    let public = rsa::RsaPublicKey::from(&rsa::RsaPrivateKey::from_pkcs8_pem(crate::helpers::TEST_RSA_KEY).unwrap());
    let pem = rsa::pkcs8::EncodePublicKey::to_public_key_pem(&public, rsa::pkcs8::LineEnding::LF).unwrap();
    let set = env.app_post("set_public_key", &json!({"public_key": pem, "public_key_ver": 2})).await;
    assert_eq!(set["errcode"], 0, "{set}");
    let finished = env.app_async("list_abilities", "{}").await["jobid"].as_str().unwrap().to_owned();
    let finished_result = env.await_async_result(&finished).await;
    // A job inside an SDK call when the zone is told to stop.
    env.control("faults", json!({"api": "sync_msg", "count": 1, "delay_ms": 1000})).await;
    let in_flight = env.app_async("invoke_sync_msg", r#"{"limit":1}"#).await["jobid"].as_str().unwrap().to_owned();
    let pending = || async {
        let v: Value =
            env.http.get(format!("{}/local/faults", env.zone_url())).send().await.unwrap().json().await.unwrap();
        v["pending"].clone()
    };
    poll(pending, |p| p.get("sync_msg").is_none()).await;
    let mut jobids = vec![finished.clone(), in_flight.clone()];
    let mut job_infos: Vec<String> = jobids.iter().map(|j| env.zone.data().program_jobs[j].job_info.clone()).collect();

    env.restart_zone().await;
    assert_eq!(env.world().await["public_key_ver"], 2, "the registered key is kept");
    assert_eq!(env.async_result(&finished).await, finished_result, "the access token and the finished job are kept");
    let resumed = env.await_async_result(&in_flight).await;
    assert!(resumed["errcode"] == 0 && resumed.get("response_errcode").is_some(), "{resumed}");
    let m2 = post_message(&env, "在吗").await;
    let n2 = env.next_notify().await;
    assert_eq!(delivered(&env, &n2.notify_id).await, [m2], "exactly the message posted since the last one");

    for round in 0..2 {
        env.restart_program(|c| c.program.jobs.report_backoff_ms = 50).await;
        if round == 1 {
            env.restart_zone().await;
        }
        let jobid = env.app_async("list_abilities", "{}").await["jobid"].as_str().unwrap().to_owned();
        let done = env.await_async_result(&jobid).await;
        assert_eq!(done_output(&done), done_output(&finished_result), "round {round}: its own result");
        let job_info = env.zone.data().program_jobs[&jobid].job_info.clone();
        assert!(!jobids.contains(&jobid) && !job_infos.contains(&job_info), "round {round}: ids never repeat");
        jobids.push(jobid);
        job_infos.push(job_info);
        let m = post_message(&env, "好的").await;
        let n = env.next_notify().await;
        assert_eq!(delivered(&env, &n.notify_id).await, [m], "round {round}: nothing lost, nothing repeated");
    }
    env.settle_jobs().await;
}

/// Runs `zone-program --config CONFIG serve --local [--fresh]` until it prints its first-call
/// banner (then kills it) or exits. Returns whether it started, and what it wrote.
fn serve_local(config: &Path, fresh: bool) -> (bool, String) {
    use std::io::BufRead as _;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_zone-program"));
    cmd.arg("--config").arg(config).args(["serve", "--local"]);
    if fresh {
        cmd.arg("--fresh");
    }
    for (name, _) in std::env::vars() {
        if name.starts_with("ZONE_PROGRAM_") || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = String::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => {
                let started = line.starts_with("local zone:");
                out.push_str(&line);
                out.push('\n');
                if started {
                    child.kill().unwrap();
                    child.wait().unwrap();
                    return (true, out);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().unwrap();
                assert!(!status.success(), "it exited without starting:\n{out}");
                return (false, out);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        assert!(Instant::now() < deadline, "serve --local neither started nor exited:\n{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_local_names_a_zone_and_a_store_that_do_not_belong_together_and_fresh_starts_both_anew() {
    if crate::child::skip_on_native_pass() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("zone");
    crate::helpers::install_test_key(&data_dir);
    let store = dir.path().join("program.sqlite");
    let config = dir.path().join("local.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[store]\npath = \"{}\"\n\n[local_zone]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n",
            store.display(),
            data_dir.display()
        ),
    )
    .unwrap();
    let state = data_dir.join(zone_local::persist::STATE_FILE);
    let outcome = tokio::task::spawn_blocking(move || {
        let (started, out) = serve_local(&config, false);
        assert!(started && state.exists() && store.exists(), "a first start makes both:\n{out}");
        assert!(serve_local(&config, false).0, "they start again together");
        std::fs::remove_file(&state).unwrap();
        let (started, out) = serve_local(&config, false);
        assert!(!started, "a store without its zone's state is refused:\n{out}");
        assert!(out.contains(&store.display().to_string()) && out.contains("--fresh"), "{out}");
        let (started, out) = serve_local(&config, true);
        assert!(started, "--fresh starts both anew:\n{out}");
        let mut mark = store.clone().into_os_string();
        mark.push(".local-zone");
        std::fs::write(&mark, "0000000000000000").unwrap();
        let (started, out) = serve_local(&config, false);
        assert!(!started && out.contains("another local zone"), "a store paired with another zone is refused:\n{out}");
    });
    outcome.await.unwrap();
}

/// The data of a notification is taken when the program answers `get_callback_data`, and that
/// answer can be lost on its way to the app (the chaos test lost messages so when the program or
/// the zone died in between). The app repeats the read with `{"retry":true}` and gets the same
/// data; a plain second read is still refused as taken (900006).
#[tokio::test]
async fn a_get_callback_data_whose_reply_was_lost_is_read_again_with_retry() {
    let env = TestEnv::spawn().await;
    let w = env.world().await;
    let c = &w["customers"][0];
    let added = env
        .control("messages", json!({"sender": c["external_userid"], "receivers": [c["follower"]], "content": "在吗"}))
        .await;
    let msgid = added["msgid"].as_str().unwrap().to_owned();
    let notified = env.next_notify().await;
    let armed = env.control("faults", json!({"api": "sync_call_program", "lose_reply": true})).await;
    assert_eq!(armed["errcode"], 0, "{armed}");
    let body = json!({"program_id": crate::helpers::PROGRAM, "ability_id": "get_callback_data", "request_data": "{}",
                      "notify_id": notified.notify_id});
    let lost = reqwest::Client::new()
        .post(format!("{}/cgi-bin/chatdata/sync_call_program", env.zone_url()))
        .query(&[("access_token", env.access_token().await)])
        .json(&body)
        .send()
        .await;
    let lost = match lost {
        Ok(res) => res.bytes().await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(lost.is_err(), "the reply never arrived");
    let nid = Some(notified.notify_id.as_str());
    let again = response_data(&env.app_call("get_callback_data", "{}", nid).await);
    assert_eq!(again["errcode"], 900_006, "the program answered, so the data is taken: {again}");
    let retried = response_data(&env.app_call("get_callback_data", r#"{"retry":true}"#, nid).await);
    assert_eq!(retried["errcode"], 0, "{retried}");
    let ids: Vec<&str> = retried["msg_list"].as_array().unwrap().iter().filter_map(|m| m["msgid"].as_str()).collect();
    assert!(ids.contains(&msgid.as_str()), "the lost read's data, once more: {ids:?}");
}

/// A zone hands an id out before the state that counted it is on disk (an async call reaches the
/// program while the app's reply waits for the write). Killed in between, it restarted from the
/// older state and minted the same jobid and `job_info` again (the chaos test saw a new
/// `chat_digest` call get an older `invoke_sync_msg` call's report). A restored zone mints past
/// whatever it may have handed out.
#[tokio::test]
async fn a_zone_restored_from_a_state_older_than_the_ids_it_handed_out_never_repeats_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = zone_testkit::zone::test_config(dir.path());
    crate::helpers::install_test_key(&config.local_zone.data_dir);
    let bind = || async {
        let codec = zone_program::sdk::local::codec_from_config(&config.program.sdk).unwrap();
        zone_local::LocalZone::bind(&config.local_zone, codec).await.unwrap()
    };
    let first = bind().await;
    let handed_out: Vec<String> = (0..3).map(|_| first.shared().data().mint("JOB")).collect();
    drop(first); // killed before the state that counted them was written
    let second = bind().await;
    let minted: Vec<String> = (0..3).map(|_| second.shared().data().mint("JOB")).collect();
    assert!(minted.iter().all(|id| !handed_out.contains(id)), "{handed_out:?} minted again: {minted:?}");
}
