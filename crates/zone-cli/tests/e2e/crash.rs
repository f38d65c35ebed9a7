//! The program binary as a process: nothing lost across SIGKILL, SIGTERM drains, and it refuses to
//! start (never falls open) when its SDK backend or a key file is not right.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::child::{Program, Zone, start_refused, write_config};
use crate::helpers::{DEADLINE, poll};

/// Async jobs started per crash cycle (two run inside a slow SDK call when the kill comes, the
/// rest wait in the queue).
const JOBS_PER_CYCLE: usize = 5;
/// Kill-and-restart cycles.
const CYCLES: usize = 2;

/// Raises events until `n` notifications are in the zone's outbox; returns them.
async fn store_notify_data(zone: &Zone, n: usize) -> Vec<Value> {
    let before = zone.notifications().await.len();
    for i in 0..n {
        let event = if i % 2 == 0 {
            json!({"event_type": "conversation_new_message"})
        } else {
            // A fresh id each time: the same event in the same second is a redelivery, not news.
            let id = format!("kb-crash-{:08x}", rand::random::<u32>());
            json!({"event_type": "auth_knowledge_base", "knowledge_base_id": id, "knowledge_base_name": "知识集"})
        };
        let v = zone.control("events", event).await;
        assert_eq!(v["ack"]["errcode"], 0, "the program acknowledged the event: {v}");
    }
    let url = format!("{}/local/notifications", zone.url);
    let all = poll(
        || async { reqwest::get(&url).await.unwrap().json::<Value>().await.unwrap() },
        |v| v["notifications"].as_array().is_some_and(|a| a.len() >= before + n),
    )
    .await;
    all["notifications"].as_array().unwrap()[before..].to_vec()
}

/// Starts jobs and returns their ids once the program has acknowledged all of them (a job it never
/// acknowledged is the zone's "connect fail", not the program's to keep) and two are stuck inside a
/// slow SDK call.
async fn start_jobs_in_flight(zone: &Zone, program: &Program) -> Vec<String> {
    zone.arm("sync_msg", 2, json!({"delay_ms": 20_000})).await;
    let answered = program.answered().await;
    let mut jobs = Vec::new();
    for _ in 0..JOBS_PER_CYCLE {
        jobs.push(zone.start_job("invoke_sync_msg", r#"{"limit":1}"#).await);
    }
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while zone.pending("sync_msg").await > 0 || program.answered().await < answered + JOBS_PER_CYCLE as u64 {
        assert!(tokio::time::Instant::now() < deadline, "the jobs were not acknowledged or did not reach the SDK");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    jobs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_and_restart_notify_data_is_readable_once_and_every_job_is_reported() {
    if crate::child::skip_on_native_pass() {
        return;
    }
    let zone = Zone::start().await;
    let config = write_config(&zone, "crash", "[jobs]\nworkers = 2\nreport_backoff_ms = 100\n");
    let mut program = Program::start(&config).await;
    zone.point_at(&program);
    let (mut notifications, mut jobs) = (Vec::new(), Vec::new());
    for _ in 0..CYCLES {
        notifications.extend(store_notify_data(&zone, 3).await);
        jobs.extend(start_jobs_in_flight(&zone, &program).await);
        program.kill();
        program = Program::start(&config).await;
        zone.point_at(&program);
    }
    for jobid in &jobs {
        let result = zone.job_result(jobid).await;
        assert_eq!(result["errcode"].as_i64(), Some(0), "{jobid}: {result}");
        let code = result["response_errcode"].as_i64().unwrap();
        assert!(code == 0 || code == 900_999, "{jobid}: completed, or reported failed: {result}");
        let data: Value = serde_json::from_str(result["response_data"].as_str().unwrap()).unwrap();
        assert_eq!(data["errcode"].as_i64(), Some(code), "{result}");
    }
    for n in &notifications {
        let id = n["notify_id"].as_str().unwrap();
        let (zone_errcode, data) = zone.call("get_callback_data", "{}", Some(id)).await;
        assert_eq!((zone_errcode, data["errcode"].as_i64()), (0, Some(0)), "{id}: {data}");
        assert!(data["event_type"].is_string(), "{data}");
        assert_eq!(data["notify_scene"], n["notify_scene"], "{data}");
        let (_, again) = zone.call("get_callback_data", "{}", Some(id)).await;
        assert_eq!(again["errcode"], 900_006, "read once: {again}");
    }
    eprintln!(
        "crash: {CYCLES} SIGKILLs survived with {} async jobs (each kill with 2 inside an SDK call) and {} stored \
         notifications: every job reported, every notification read once",
        jobs.len(),
        notifications.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_request_in_flight_and_takes_no_new_one() {
    if crate::child::skip_on_native_pass() {
        return;
    }
    let zone = Arc::new(Zone::start().await);
    let mut program = Program::start(&write_config(&zone, "term", "")).await;
    zone.point_at(&program);
    zone.arm("sync_msg", 1, json!({"delay_ms": 3000})).await;
    let in_flight = {
        let zone = zone.clone();
        tokio::spawn(async move { zone.call("invoke_sync_msg", r#"{"limit":1}"#, None).await })
    };
    while zone.pending("sync_msg").await > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    program.terminate();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while tokio::net::TcpStream::connect(program.addr).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "the program still accepts connections");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!in_flight.is_finished(), "new connections were refused while the request was still in flight");
    let (zone_errcode, output) = in_flight.await.unwrap();
    assert_eq!(
        (zone_errcode, output["errcode"].as_i64()),
        (0, Some(0)),
        "the request in flight was answered: {output}"
    );
    let (refused, _) = zone.call("invoke_sync_msg", r#"{"limit":1}"#, None).await;
    assert_eq!(refused, 710_674, "a new call finds no program");
    assert!(program.wait_exit(DEADLINE).await.success(), "a graceful exit");
    assert!(program.log_text().contains("shutdown requested"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_sdk_backend_that_cannot_load_stops_the_start_with_no_fallback() {
    if crate::child::skip_on_native_pass() {
        return;
    }
    let zone = Zone::start().await;
    let not_a_library = zone.dir.path().join("not-a-library.so");
    std::fs::write(&not_a_library, "plain text").unwrap();
    for (what, library) in [
        ("a missing library", "/nonexistent/dir/libzone_shim.so".to_owned()),
        ("a file that is no library", not_a_library.display().to_string()),
    ] {
        let extra = format!("[sdk]\nbackend = \"native\"\n\n[sdk.native]\nlibrary = \"{library}\"\n");
        let (status, text) = start_refused(&write_config(&zone, "native", &extra)).await;
        assert!(!status.success(), "{what}: the start fails");
        assert!(text.contains("native"), "{what}: the error names the backend:\n{text}");
        assert!(!text.contains("listening"), "{what}: it never listened:\n{text}");
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_key_file_others_may_read_stops_the_start() {
    if crate::child::skip_on_native_pass() {
        return;
    }
    use std::os::unix::fs::PermissionsExt as _;
    let zone = Zone::start().await;
    for mode in [0o644, 0o640, 0o604] {
        let open_key = zone.dir.path().join(format!("key-{mode:o}.pem"));
        std::fs::copy(zone.key_path(), &open_key).unwrap();
        std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(mode)).unwrap();
        let config = write_config(&zone, "perm", "");
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, text.replace(&zone.key_path().display().to_string(), &open_key.display().to_string()))
            .unwrap();
        let (status, text) = start_refused(&config).await;
        assert!(!status.success(), "mode {mode:o}: the start fails");
        assert!(text.contains("keyring.keys[0].private_key_path") && text.contains("chmod 600"), "{text}");
        assert!(!text.contains("listening"), "{text}");
    }
}
