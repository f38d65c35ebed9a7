//! The whole promise under restarts (issue 13): for 20 s (`ZONE_CHAOS_SECS=60` for the documented
//! minute; `scripts/test.sh` runs it alone after the suite, as it is `#[ignore]`d), async calls (every kind of workflow, `invoke_` calls, ~10% bad input),
//! posted messages raising events and notify reads run against the program and the local zone, each
//! its own process, while both are restarted five times (SIGKILL and SIGTERM) and another connection
//! holds the program's SQLite file locked for 3 s. Then, by content: every submitted jobid has a
//! final result of its own request and no `job_info` reached the program with two requests; every
//! posted message is in exactly one notification; no job is left unfinished or claimed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};

use crate::helpers::{CORP, PROGRAM, install_test_key};

/// How long the mixed load runs: 20 s by default (the five restarts and the lock fit in it),
/// `ZONE_CHAOS_SECS` to change (the README's figures are of a 60 s run).
fn load_secs() -> u64 {
    std::env::var("ZONE_CHAOS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(20)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One of the two processes, restartable on the same port and files.
struct Proc {
    args: Vec<String>,
    config: PathBuf,
    log: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Proc {
    async fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_zone-program"));
        cmd.arg("--config").arg(&self.config).args(&self.args);
        for (name, _) in std::env::vars() {
            if name.starts_with("ZONE_PROGRAM_") || name == "RUST_LOG" {
                cmd.env_remove(name);
            }
        }
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::from(log)).spawn().unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(Instant::now() < deadline, "{:?} did not listen: see {}", self.args, self.log.display());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(&mut self, kill: bool) {
        let Some(mut child) = self.child.take() else { return };
        if kill {
            child.kill().unwrap();
        } else {
            let sent = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
            assert!(sent.success());
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "{:?} did not exit", self.args);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the load submitted and saw.
#[derive(Default)]
struct Record {
    /// jobid → (ability, request_data, bad input?).
    jobs: BTreeMap<String, (String, Value, bool)>,
    /// Posted msgids.
    posted: BTreeSet<String>,
    /// msgid → how many notifications carried it.
    delivered: BTreeMap<String, u32>,
    /// Notifications read (or found already taken, which must never happen).
    read: BTreeSet<String>,
    /// Notifications found already taken (their data went to a read whose reply was lost).
    taken_twice: Vec<String>,
    /// Reads repeated as a retry after finding the data taken (an earlier reply was lost).
    retried: u32,
    refused_calls: u32,
    /// Notifications whose data could not be read, with the code.
    unreadable: BTreeMap<String, i64>,
}

struct Client {
    http: reqwest::Client,
    zone: String,
    token: Mutex<Option<String>>,
    /// One reader of notifications at a time (as one app would be): two workers reading the same
    /// notification would see one of them find it taken.
    reading: tokio::sync::Mutex<()>,
}

impl Client {
    /// POSTs an app API; `None` while the zone is down.
    async fn app(&self, name: &str, body: &Value) -> Option<Value> {
        for _ in 0..2 {
            let token = self.token().await?;
            let url = format!("{}/cgi-bin/chatdata/{name}", self.zone);
            let res = self.http.post(url).query(&[("access_token", token)]).json(body).send().await.ok()?;
            let v: Value = res.json().await.ok()?;
            if v["errcode"] == 40014 || v["errcode"] == 42001 {
                *self.token.lock().unwrap() = None;
                continue;
            }
            return Some(v);
        }
        None
    }

    async fn token(&self) -> Option<String> {
        if let Some(t) = self.token.lock().unwrap().clone() {
            return Some(t);
        }
        let url = format!("{}/cgi-bin/gettoken", self.zone);
        let q = [("corpid", CORP), ("corpsecret", zone_crypto::demo::CORP_SECRET)];
        let v: Value = self.http.get(url).query(&q).send().await.ok()?.json().await.ok()?;
        let t = v["access_token"].as_str()?.to_owned();
        *self.token.lock().unwrap() = Some(t.clone());
        Some(t)
    }

    async fn control(&self, path: &str, body: &Value) -> Option<Value> {
        let url = format!("{}/local/{path}", self.zone);
        self.http.post(url).json(body).send().await.ok()?.json().await.ok()
    }

    async fn get(&self, path: &str) -> Option<Value> {
        self.http.get(format!("{}/local/{path}", self.zone)).send().await.ok()?.json().await.ok()
    }

    /// Reads every scene-1 notification not read yet, counting the msgids each carries. A read
    /// whose reply was lost (the zone or the program died after the program answered) finds the
    /// data taken the next time, and repeats the read as a retry.
    async fn read_notifications(&self, record: &Mutex<Record>) {
        let _one_reader = self.reading.lock().await;
        let Some(outbox) = self.get("notifications").await else { return };
        for n in outbox["notifications"].as_array().cloned().unwrap_or_default() {
            let id = n["notify_id"].as_str().unwrap_or_default().to_owned();
            if n["notify_scene"] != 1 || record.lock().unwrap().read.contains(&id) {
                continue;
            }
            let mut data = Value::Null;
            for request in ["{}", r#"{"retry":true}"#] {
                let body = json!({"program_id": PROGRAM, "ability_id": "get_callback_data", "request_data": request, "notify_id": id});
                let Some(reply) = self.app("sync_call_program", &body).await else { return };
                let Some(text) = reply["response_data"].as_str() else { break };
                data = serde_json::from_str(text).unwrap();
                if data["errcode"] == 900_006 && request == "{}" {
                    record.lock().unwrap().retried += 1;
                    continue;
                }
                break;
            }
            let mut r = record.lock().unwrap();
            match data["errcode"].as_i64() {
                Some(0) => {
                    r.unreadable.remove(&id);
                    r.read.insert(id);
                    for m in data["msg_list"].as_array().cloned().unwrap_or_default() {
                        *r.delivered.entry(m["msgid"].as_str().unwrap().to_owned()).or_default() += 1;
                    }
                }
                Some(900_006) => {
                    r.read.insert(id.clone());
                    r.taken_twice.push(id);
                }
                Some(code) => {
                    r.unreadable.insert(id, code);
                }
                None => {}
            }
        }
    }
}

/// One async call of the mix: `(ability, request_data, bad input?)`.
fn pick_call(
    rng: &mut impl rand::Rng,
    chats: &[Value],
    kb: &Value,
    customer: &Value,
    tags: &Value,
) -> (String, Value, bool) {
    let chat = chats[rng.gen_range(0..chats.len())]["chatid"].clone();
    match rng.gen_range(0..10) {
        0 => ("chat_digest".into(), json!({"chatid": chat, "bogus": 1}), true),
        1 | 2 => ("chat_digest".into(), json!({"chatid": chat}), false),
        3 => ("reply_suggestions".into(), json!({"kb_id": kb, "chatid": chat}), false),
        4 => ("keyword_report".into(), json!({}), false),
        5 => ("customer_profile".into(), json!({"external_userid": customer, "tag_group_ids": [tags]}), false),
        6 | 7 => ("invoke_sync_msg".into(), json!({"limit": rng.gen_range(1..20)}), false),
        _ => ("list_abilities".into(), json!({}), false),
    }
}

/// Whether `done` (a final `async_program_result`) is the answer to this request.
fn belongs(ability: &str, request: &Value, bad: bool, done: &Value) -> bool {
    if done["errcode"] == 710_674 {
        // The zone could not deliver it (the program was down): final, with no output.
        return true;
    }
    let Some(text) = done["response_data"].as_str() else { return false };
    let Ok(out) = serde_json::from_str::<Value>(text) else { return false };
    let code = out["errcode"].as_i64().unwrap_or(0);
    if done["response_errcode"].as_i64() != Some(code) {
        return false;
    }
    if bad {
        return code == 900_001;
    }
    if code != 0 {
        // An SDK or internal failure (a zone restart mid-call) is reported with its code.
        return code != 900_001 && code != 900_003;
    }
    match ability {
        "list_abilities" => out["abilities"].is_array(),
        "invoke_sync_msg" => {
            out["msg_list"].as_array().is_some_and(|l| l.len() as u64 <= request["limit"].as_u64().unwrap())
        }
        "chat_digest" => out.get("message_count").is_some(),
        "reply_suggestions" => out.get("message_count").is_some() || out.get("suggestions").is_some(),
        "keyword_report" | "customer_profile" => out.is_object(),
        _ => false,
    }
}

fn write_config(dir: &Path, program_port: u16, zone_port: u16) -> PathBuf {
    let data_dir = dir.join("zone");
    install_test_key(&data_dir);
    let key = data_dir.join(zone_local::keys::PRIVATE_KEY_FILE);
    let text = format!(
        "[log]\nformat = \"json\"\nlevel = \"info\"\n\n\
         [server]\nlisten = \"127.0.0.1:{program_port}\"\nshutdown_grace_ms = 5000\n\n\
         [store]\npath = \"{store}\"\nbusy_timeout_ms = 1000\n\n\
         [jobs]\nreport_backoff_ms = 100\nmax_runs = 8\nclaim_lease_secs = 6\n\n\
         [sdk.local]\nzone_url = \"http://127.0.0.1:{zone_port}\"\n\n\
         [keyring]\nkeys = [{{ corp_id = \"{CORP}\", public_key_ver = 1, private_key_path = \"{key}\" }}]\n\n\
         [local_zone]\nlisten = \"127.0.0.1:{zone_port}\"\nprogram_url = \"http://127.0.0.1:{program_port}\"\n\
         data_dir = \"{data}\"\n",
        store = dir.join("program.sqlite").display(),
        key = key.display(),
        data = data_dir.display(),
    );
    let path = dir.join("chaos.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs alone (scripts/test.sh runs it after the suite): its load beside the parallel suite slows \
            the 1 s promptness checks of hostile.rs and faults.rs past their limits"]
async fn nothing_is_lost_and_every_call_ends_under_restarts_of_both_sides_and_a_locked_store() {
    if crate::child::skip_on_native_pass() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (program_port, zone_port) = (free_port(), free_port());
    let config = write_config(dir.path(), program_port, zone_port);
    let mut zone = Proc {
        args: vec!["local-zone".into()],
        config: config.clone(),
        log: dir.path().join("zone.log"),
        port: zone_port,
        child: None,
    };
    let mut program = Proc {
        args: vec!["serve".into()],
        config: config.clone(),
        log: dir.path().join("program.log"),
        port: program_port,
        child: None,
    };
    zone.start().await;
    program.start().await;
    let client = Arc::new(Client {
        http: reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap(),
        zone: format!("http://127.0.0.1:{zone_port}"),
        token: Mutex::new(None),
        reading: tokio::sync::Mutex::new(()),
    });
    let world = client.get("world").await.unwrap();
    let chats = world["chats"].as_array().unwrap().clone();
    let kb = world["kb_ids"][0].clone();
    let customer = world["customers"][2].clone();
    let tags = world["tag_groups"][0]["group_id"].clone();
    assert!(tags.is_string(), "the world has a tag group: {world}");
    let record = Arc::new(Mutex::new(Record::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = Instant::now();

    let mut load = Vec::new();
    for worker in 0..3u64 {
        let (client, record, stop, chats, kb, customer) =
            (client.clone(), record.clone(), stop.clone(), chats.clone(), kb.clone(), customer.clone());
        let tags = tags.clone();
        load.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(worker);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match rng.gen_range(0..10) {
                    0..=4 => {
                        let (ability, data, bad) =
                            pick_call(&mut rng, &chats, &kb, &customer["external_userid"], &tags);
                        let body =
                            json!({"program_id": PROGRAM, "ability_id": ability, "request_data": data.to_string()});
                        match client.app("async_program_task", &body).await {
                            Some(v) if v["jobid"].is_string() => {
                                let jobid = v["jobid"].as_str().unwrap().to_owned();
                                record.lock().unwrap().jobs.insert(jobid, (ability, data, bad));
                            }
                            _ => record.lock().unwrap().refused_calls += 1,
                        }
                    }
                    5..=7 => {
                        let body = json!({"sender": customer["external_userid"], "receivers": [customer["follower"]],
                                          "content": format!("第{}条", rng.gen_range(0..1_000_000))});
                        if let Some(v) = client.control("messages", &body).await
                            && let Some(id) = v["msgid"].as_str()
                        {
                            record.lock().unwrap().posted.insert(id.to_owned());
                        }
                    }
                    _ => client.read_notifications(&record).await,
                }
                tokio::time::sleep(Duration::from_millis(rng.gen_range(10..60))).await;
            }
        }));
    }

    // The disruptions, spread over the load.
    let secs = load_secs();
    let at = |n: u64| started + Duration::from_secs(secs * n / 8);
    let until = |t: Instant| tokio::time::sleep_until(tokio::time::Instant::from_std(t));
    let mut restarts = Vec::new();
    until(at(1)).await;
    program.stop(true).await;
    program.start().await;
    restarts.push("program SIGKILL");
    until(at(2)).await;
    zone.stop(false).await;
    zone.start().await;
    restarts.push("zone SIGTERM");
    until(at(3)).await;
    let store = dir.path().join("program.sqlite");
    let lock = tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open(&store).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        std::thread::sleep(Duration::from_secs(3));
        conn.execute_batch("COMMIT").unwrap();
    });
    lock.await.unwrap();
    until(at(4)).await;
    zone.stop(true).await;
    zone.start().await;
    restarts.push("zone SIGKILL");
    until(at(5)).await;
    program.stop(false).await;
    program.start().await;
    restarts.push("program SIGTERM");
    until(at(6)).await;
    program.stop(true).await;
    zone.stop(true).await;
    zone.start().await;
    program.start().await;
    restarts.push("both SIGKILL");
    until(at(8)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for l in load {
        l.await.unwrap();
    }

    // Afterwards: one more message brings whatever is still behind the cursor; every message
    // arrives in exactly one notification, every job ends with its own result.
    let body = json!({"sender": customer["external_userid"], "receivers": [customer["follower"]], "content": "最后"});
    let last = client.control("messages", &body).await.unwrap();
    record.lock().unwrap().posted.insert(last["msgid"].as_str().unwrap().to_owned());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        client.read_notifications(&record).await;
        let (missing, unreadable, taken) = {
            let r = record.lock().unwrap();
            let missing: Vec<String> = r.posted.iter().filter(|m| !r.delivered.contains_key(*m)).cloned().collect();
            (missing, r.unreadable.clone(), r.taken_twice.clone())
        };
        if missing.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            keep_files(dir.path());
            let log = std::fs::read_to_string(dir.path().join("program.log")).unwrap_or_default();
            let errors: Vec<&str> = log.lines().filter(|l| l.contains("\"ERROR\"") || l.contains("\"WARN\"")).collect();
            panic!(
                "{} posted messages never delivered: {missing:?}; unreadable notifications: {:?}; notifications \
                 found already taken: {taken:?}; the program's warnings and errors:\n{}",
                missing.len(),
                unreadable,
                errors[errors.len().saturating_sub(30)..].join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let jobs = record.lock().unwrap().jobs.clone();
    let (mut by_program, mut undelivered) = (0, 0);
    // ability → [submitted, ended with output, ended with an error code, undeliverable].
    let mut by_kind: BTreeMap<String, [u32; 4]> = BTreeMap::new();
    let mut codes: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for (jobid, (ability, data, bad)) in &jobs {
        let deadline = Instant::now() + Duration::from_secs(60);
        let done = loop {
            if let Some(v) = client.app("async_program_result", &json!({"jobid": jobid})).await
                && (v.get("response_errcode").is_some() || v["errcode"] != 0)
            {
                break v;
            }
            if Instant::now() >= deadline {
                keep_files(dir.path());
                panic!("{jobid} ({ability}) never ended (logs and stores kept in {})", kept_dir().display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(belongs(ability, data, *bad, &done), "{jobid}: {ability} {data} got {done}");
        let kind = by_kind.entry(if *bad { format!("{ability} (bad input)") } else { ability.clone() }).or_default();
        kind[0] += 1;
        if done["errcode"] == 710_674 {
            undelivered += 1;
            kind[3] += 1;
        } else {
            by_program += 1;
            kind[if done["response_errcode"] == 0 { 1 } else { 2 }] += 1;
            if let Some(code) = done["response_errcode"].as_i64().filter(|c| *c != 0) {
                codes.entry(ability.clone()).or_default().insert(code);
            }
        }
    }
    let r = record.lock().unwrap();
    let twice: Vec<(&String, &u32)> = r.delivered.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "messages delivered more than once: {twice:?}");
    assert!(r.taken_twice.is_empty(), "notifications found already taken: {:?}", r.taken_twice);
    // The program's store: nothing unfinished, nothing claimed.
    let conn = rusqlite::Connection::open(dir.path().join("program.sqlite")).unwrap();
    let (unfinished, claimed, failed): (i64, i64, i64) = conn
        .query_row(
            "SELECT COALESCE(SUM(phase IN ('run','report')),0), COALESCE(SUM(claimed),0), COALESCE(SUM(phase = 'failed'),0) FROM jobs",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap();
    if (unfinished, claimed) != (0, 0) {
        let mut stmt = conn
            .prepare("SELECT id, kind, phase, claimed, runs, attempts, next_ms, created_ms, ctx FROM jobs WHERE phase IN ('run','report') OR claimed = 1")
            .unwrap();
        let rows: Vec<String> = stmt
            .query_map([], |r| {
                let cells: Vec<String> = (0..9)
                    .map(|i| r.get::<_, rusqlite::types::Value>(i).map(|v| format!("{v:?}")).unwrap_or_default())
                    .collect();
                Ok(cells.join(" "))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        keep_files(dir.path());
        panic!(
            "jobs left unfinished {unfinished} or claimed {claimed}: {rows:#?} (logs kept in {})",
            kept_dir().display()
        );
    }
    // Every job_info the zone minted reached the program with one request only: a repeated one
    // (a zone restarted from a state older than the ids it handed out) could cross-answer.
    let log = std::fs::read_to_string(dir.path().join("program.log")).unwrap();
    let reused = log.lines().filter(|l| l.contains("reuses the job_info of a different earlier request")).count();
    assert_eq!(reused, 0, "job_info repeated by the zone");
    let bad = jobs.values().filter(|(_, _, b)| *b).count();
    let kinds: Vec<String> = by_kind
        .iter()
        .map(|(k, [n, ok, err, lost])| format!("{k} {n} ({ok} output, {err} error code, {lost} undeliverable)"))
        .collect();
    let delivered_once = r.posted.iter().filter(|m| r.delivered.get(*m) == Some(&1)).count();
    eprintln!(
        "chaos: {secs} s of load, restarts {restarts:?}, one 3 s SQLite lock (BEGIN EXCLUSIVE); {} async jobs ({bad} bad \
         input) all ended with their own result ({by_program} reported by the program, {undelivered} undeliverable while \
         it was down); by kind: {}; error codes by ability: {codes:?}; {} calls refused by a zone that was down; {} messages posted, {delivered_once} \
         delivered, each in exactly one of {} notifications read ({} reads repeated as a retry after a lost reply); \
         job rows: 0 unfinished, 0 claimed, {failed} failed",
        jobs.len(),
        kinds.join(", "),
        r.refused_calls,
        r.posted.len(),
        r.read.len(),
        r.retried,
    );
}

/// Where a failed run's logs and stores are kept for reading.
fn kept_dir() -> PathBuf {
    std::env::temp_dir().join("zone-chaos-failed")
}

/// Copies the run's logs, the program's store and the zone's state to [`kept_dir`].
fn keep_files(dir: &Path) {
    let keep = kept_dir();
    let _ = std::fs::create_dir_all(&keep);
    for f in ["program.log", "zone.log", "program.sqlite", "program.sqlite-wal"] {
        let _ = std::fs::copy(dir.join(f), keep.join(f));
    }
    let _ = std::fs::copy(dir.join("zone/zone-state.json"), keep.join("zone-state.json"));
}
