//! Every request answered, with the right code, while the SDK fails in every way it can; and
//! back-pressure instead of a queue when the SDK pool is saturated.
//!
//! The load test runs the program binary as its own process (so its memory can be measured alone)
//! against the local zone in the test process, and drives app calls through the zone's app API
//! (`sync_call_program` → the program → `/sdk/invoke` → back), round after round. In each round
//! every API gets its own fault class armed for exactly the calls of that round, so the code each
//! reply must carry is known in advance although the calls run concurrently.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::child::{Program, Zone, write_config};
use crate::helpers::{DEADLINE, TestEnv};

/// Calls per API per round (4 APIs per round).
const PER_ROUND: usize = 100;
/// Calls in flight at once.
const IN_FLIGHT: usize = 64;
/// The program's request deadline in the load test; no reply may take longer.
const REQUEST_DEADLINE_MS: u64 = 5_000;
/// The program's SDK call deadline in the load test.
const INVOKE_TIMEOUT_MS: u64 = 1_500;
/// The largest SDK response the program accepts in the load test.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// How much the program's resident memory may grow between the warm-up and the end of the load.
const MAX_RSS_GROWTH_KIB: u64 = 48 * 1024;

/// The code a reply must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The API's own answer without a fault (probed first).
    Healthy,
    /// The SDK's `errcode`, passed through unchanged by `invoke_<api>`.
    Passthrough(i64),
    /// The program's own code, with `sdk_ret` when the SDK's `Invoke` failed.
    Program(i64, Option<i64>),
}

/// Every fault class the zone can inject, with the reply it must produce.
fn classes() -> Vec<(String, Option<Value>, Expect)> {
    let mut out = vec![("healthy".to_owned(), None, Expect::Healthy)];
    // WeCom's error classes: system busy, invalid parameter, frequency limit, API forbidden,
    // no privilege, archive expired, content too long.
    for code in [-1, 40058, 45009, 48002, 60011, 301052, 790040] {
        out.push((format!("errcode {code}"), Some(json!({ "errcode": code })), Expect::Passthrough(code)));
    }
    for ret in -10007..=-10001 {
        out.push((format!("Invoke {ret}"), Some(json!({ "invoke_ret": ret })), Expect::Program(900_101, Some(ret))));
    }
    out.push((
        "slow past the invoke timeout".into(),
        Some(json!({ "delay_ms": INVOKE_TIMEOUT_MS * 2 })),
        Expect::Program(900_103, None),
    ));
    out.push((
        "oversized response".into(),
        Some(json!({ "oversized_bytes": MAX_RESPONSE_BYTES + 4096 })),
        Expect::Program(900_105, None),
    ));
    for status in [500, 503] {
        out.push((
            format!("zone HTTP {status}"),
            Some(json!({ "http_status": status })),
            Expect::Program(900_101, Some(-10006)),
        ));
    }
    out.push(("dropped connection".into(), Some(json!({ "drop": true })), Expect::Program(900_101, Some(-10006))));
    out
}

fn load_config() -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nrequest_timeout_ms = {REQUEST_DEADLINE_MS}\nshutdown_grace_ms = 2000\n\n\
         [sdk]\npool_size = 128\nqueue_wait_ms = 2000\ninvoke_timeout_ms = {INVOKE_TIMEOUT_MS}\n\
         max_response_bytes = {MAX_RESPONSE_BYTES}\n"
    )
}

/// What one call produced: the zone's errcode, the program's output, and how long it took.
struct Outcome {
    zone_errcode: i64,
    output: Value,
    took: Duration,
}

/// Rounds of the load test: `ZONE_LOAD_ROUNDS`, by default one per 4 fault classes (each class met
/// once). More rounds shift the classes over the APIs, so 20 rounds meet every class on every API.
fn rounds(classes: usize) -> usize {
    std::env::var("ZONE_LOAD_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(classes.div_ceil(4))
}

async fn fire(zone: &Arc<Zone>, calls: Vec<(usize, String, String)>) -> Vec<(usize, Outcome)> {
    let mut set = JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    for (tag, ability, request) in calls {
        let zone = zone.clone();
        let slots = slots.clone();
        set.spawn(async move {
            let _slot = slots.acquire_owned().await.unwrap();
            let start = Instant::now();
            let (zone_errcode, output) = zone.call(&ability, &request, None).await;
            (tag, Outcome { zone_errcode, output, took: start.elapsed() })
        });
    }
    let mut out = Vec::new();
    while let Some(done) = set.join_next().await {
        out.push(done.expect("a call task ends"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_the_right_code_while_the_sdk_fails_in_every_way_and_memory_stays_bounded() {
    if crate::child::skip_on_native_pass() {
        return;
    }
    let zone = Arc::new(Zone::start().await);
    let mut program = Program::start(&write_config(&zone, "load", &load_config())).await;
    zone.point_at(&program);
    let world: Value =
        reqwest::get(format!("{}/local/world", zone.url)).await.unwrap().json().await.expect("the seeded world");
    let chatid = world["chats"][0]["chatid"].as_str().unwrap().to_owned();
    let apis = [
        ("sync_msg", r#"{"limit":1}"#.to_owned()),
        ("get_group_chat", json!({ "chatid": chatid }).to_string()),
        ("get_agree_status_room", json!({ "chatid": chatid }).to_string()),
        ("get_hide_sensitiveinfo_config", "{}".to_owned()),
    ];
    let mut healthy = Vec::new();
    for (api, request) in &apis {
        let (zone_errcode, output) = zone.call(&format!("invoke_{api}"), request, None).await;
        assert_eq!(zone_errcode, 0, "{api}: {output}");
        healthy.push(output["errcode"].as_i64().unwrap_or(0));
    }
    let healthy_round: Vec<_> = (0..PER_ROUND * apis.len())
        .map(|n| (n % apis.len(), format!("invoke_{}", apis[n % apis.len()].0), apis[n % apis.len()].1.clone()))
        .collect();
    for (_, o) in fire(&zone, healthy_round).await {
        assert_eq!((o.zone_errcode, o.output["errcode"].as_i64().is_some()), (0, true), "warm-up: {}", o.output);
    }
    let rss_warm = program.rss_kib();

    let classes = classes();
    let (mut driven, mut injected, mut answered, mut slowest) = (0usize, 0usize, 0usize, Duration::ZERO);
    let started = Instant::now();
    let rounds = rounds(classes.len());
    for round in 0..rounds {
        // Round r gives API i class (4r + i + r/5) mod n: the first rounds meet every class once,
        // later ones shift the classes to other APIs.
        let chosen: Vec<usize> =
            (0..apis.len()).map(|i| (round * apis.len() + i + round / 5) % classes.len()).collect();
        for (i, &c) in chosen.iter().enumerate() {
            if let Some(fault) = &classes[c].1 {
                zone.arm(apis[i].0, PER_ROUND as u32, fault.clone()).await;
                injected += PER_ROUND;
            }
        }
        let calls = (0..PER_ROUND * apis.len())
            .map(|n| (n % apis.len(), format!("invoke_{}", apis[n % apis.len()].0), apis[n % apis.len()].1.clone()))
            .collect();
        let outcomes = fire(&zone, calls).await;
        driven += outcomes.len();
        for (i, o) in outcomes {
            let (name, _, expect) = &classes[chosen[i]];
            assert_eq!(o.zone_errcode, 0, "{name} on {}: the program did not answer: {}", apis[i].0, o.output);
            answered += 1;
            slowest = slowest.max(o.took);
            let got = (o.output["errcode"].as_i64(), o.output["sdk_ret"].as_i64());
            let want = match *expect {
                Expect::Healthy => (Some(healthy[i]), None),
                Expect::Passthrough(code) => (Some(code), None),
                Expect::Program(code, ret) => (Some(code), ret),
            };
            assert_eq!(got, want, "{name} on {}: {}", apis[i].0, o.output);
            assert!(
                o.took < Duration::from_millis(REQUEST_DEADLINE_MS),
                "{name} on {}: a reply took {:?}",
                apis[i].0,
                o.took
            );
        }
        for (api, _) in &apis {
            assert_eq!(zone.pending(api).await, 0, "round {round}: every armed fault met its call");
        }
    }
    let rss_end = program.rss_kib();
    let metrics = reqwest::get(format!("http://{}/metrics", program.addr)).await.unwrap().text().await.unwrap();
    let counter = |name: &str| -> u64 {
        metrics.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or_else(|| panic!("{name}"))
    };
    let expected_total = (driven + PER_ROUND * apis.len() + apis.len()) as u64;
    assert_eq!(counter("zone_program_callbacks_answered_total"), expected_total, "every request was answered");
    assert_eq!(counter("zone_program_callbacks_rejected_total"), 0);
    eprintln!(
        "load: {driven} requests in {:?} ({rounds} rounds over {} fault classes), {injected} with an injected SDK fault, \
         {answered} answered with the expected code, slowest reply {slowest:?}; program RSS {rss_warm} KiB after \
         warm-up, {rss_end} KiB after the load",
        started.elapsed(),
        classes.len(),
    );
    assert!(
        rss_end <= rss_warm + MAX_RSS_GROWTH_KIB,
        "the program's memory grew from {rss_warm} KiB to {rss_end} KiB under load"
    );
    program.terminate();
    assert!(program.wait_exit(DEADLINE).await.success(), "a graceful stop after the load");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_sdk_pool_answers_busy_at_once_instead_of_queueing_and_recovers_by_itself() {
    let env = Arc::new(
        TestEnv::spawn_with(|c| {
            c.program.sdk.pool_size = 2;
            c.program.sdk.queue_wait_ms = 50;
            c.program.sdk.invoke_timeout_ms = 5_000;
        })
        .await,
    );
    let armed = env.control("faults", json!({"api": "sync_msg", "count": 2, "delay_ms": 1500})).await;
    assert_eq!(armed["errcode"], 0);
    let mut set = JoinSet::new();
    for _ in 0..30 {
        let env = env.clone();
        set.spawn(async move {
            let start = Instant::now();
            let reply = env.call("invoke_sync_msg", r#"{"limit":1}"#).await;
            (reply["errcode"].as_i64().unwrap(), start.elapsed())
        });
    }
    let (mut ok, mut busy, mut slowest_busy) = (0, 0, Duration::ZERO);
    while let Some(done) = set.join_next().await {
        let (code, took) = done.unwrap();
        match code {
            0 => ok += 1,
            900_104 => {
                busy += 1;
                slowest_busy = slowest_busy.max(took);
            }
            other => panic!("unexpected errcode {other}"),
        }
    }
    assert!(ok >= 2 && busy >= 20, "{ok} answered, {busy} busy");
    assert!(slowest_busy < Duration::from_millis(1000), "busy took {slowest_busy:?}: the program queued");
    eprintln!("back-pressure: 30 calls on 2 slots: {ok} answered, {busy} busy, slowest busy reply {slowest_busy:?}");

    // Abandoned calls (the caller gives up while the SDK is slow) do not keep the pool saturated.
    env.control("faults", json!({"api": "sync_msg", "count": 2, "delay_ms": 3000})).await;
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    for _ in 0..2 {
        let sealed = env.seal_callback(1, "invoke_sync_msg", r#"{"limit":1}"#);
        let mut req = impatient.post(env.url());
        for (k, v) in &sealed.headers {
            req = req.header(k, v);
        }
        assert!(req.body(sealed.body).send().await.is_err(), "the caller gave up");
    }
    let recovered = crate::helpers::poll(|| env.call("invoke_sync_msg", r#"{"limit":1}"#), |v| v["errcode"] == 0).await;
    assert_eq!(recovered["errcode"], 0);
    let answered = env.state.metrics.callbacks_answered.load(Ordering::SeqCst);
    assert!(answered >= 31, "every call was answered: {answered}");
}
