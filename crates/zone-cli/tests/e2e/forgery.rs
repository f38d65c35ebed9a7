//! Forged, replayed and reordered requests: a request that fails verification gets the one
//! detail-free 403 and is never dispatched. "Never dispatched" is proven by side effects: the
//! program's store is byte-for-byte unchanged ([`Store::fingerprint`]), no SDK call reaches the
//! local zone (a sentinel fault is armed on every SDK API and none is consumed), and the answered
//! counter does not move.
//!
//! [`Store::fingerprint`]: zone_program::store::Store::fingerprint

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use zone_crypto::cipher::{CallbackCipher, EncodingAesKey};
use zone_crypto::codec::{CodecSettings, LocalCodec, Nonce, Sealed};
use zone_crypto::demo::{LOCAL_KEY as DEMO_LOCAL_KEY, LOCAL_TOKEN as DEMO_LOCAL_TOKEN};
use zone_program::abilities::catalog::SDK_APIS;

use crate::helpers::{CORP, TestEnv};

/// The errcode of the sentinel fault: any SDK call that reaches the zone consumes one.
const SENTINEL: i64 = 777_001;

/// What a request could change.
#[derive(Debug, PartialEq, Eq)]
pub struct Effects {
    /// The store's fingerprint.
    pub store: String,
    /// Sentinel faults left per API (an SDK call consumes one).
    pub sdk_calls_left: Value,
    /// Requests the program answered.
    pub answered: u64,
}

/// Arms the sentinel fault on every SDK API the program can call.
pub async fn arm_sentinels(env: &TestEnv) {
    let plumbing = ["spec_notify_app", "program_async_job_call_back"];
    let apis: std::collections::BTreeSet<&str> = SDK_APIS.iter().map(|a| a.name).chain(plumbing).collect();
    for api in apis {
        let v = env.control("faults", json!({"api": api, "count": 1_000_000, "errcode": SENTINEL})).await;
        assert_eq!(v["errcode"], 0, "{v}");
    }
}

/// The side effects so far.
pub async fn effects(env: &TestEnv) -> Effects {
    let faults: Value =
        env.http.get(format!("{}/local/faults", env.zone_url())).send().await.unwrap().json().await.unwrap();
    Effects {
        store: env.state.store.fingerprint().await.unwrap(),
        sdk_calls_left: faults["pending"].clone(),
        answered: env.state.metrics.callbacks_answered.load(Ordering::SeqCst),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A callback message that, if dispatched, would call the SDK and (async) record a job.
fn message(call_type: i64, is_async: bool, ability_id: &str, data: &str) -> Vec<u8> {
    json!({
        "corp_id": CORP, "agent_id": 1000002, "call_type": call_type, "is_async": is_async,
        "job_info": format!("forged-{}", rand::random::<u64>()), "ability_id": ability_id, "notify_id": "", "data": data,
    })
    .to_string()
    .into_bytes()
}

fn header<'a>(sealed: &'a mut Sealed, name: &str) -> &'a mut String {
    &mut sealed.headers.iter_mut().find(|(k, _)| k == name).unwrap().1
}

fn codec(token: &str, key: &str) -> LocalCodec {
    let mut keys = BTreeMap::new();
    keys.insert(1, CallbackCipher::new(EncodingAesKey::parse(key).unwrap()));
    LocalCodec::new(CodecSettings { token: SecretString::from(token), keys, window_secs: 300, nonce_capacity: 1000 })
}

/// Posts `sealed` and asserts the refusal without detail (the local backend's 403, or the vendor
/// SDK's empty reply) and no side effect.
async fn assert_refused(env: &TestEnv, what: &str, sealed: &Sealed) {
    let before = effects(env).await;
    let rejected = env.state.metrics.callbacks_rejected.load(Ordering::SeqCst);
    crate::backend::assert_refused(env, env.post(sealed).await).await;
    assert_eq!(effects(env).await, before, "{what}: a refused request changed something");
    assert_eq!(env.state.metrics.callbacks_rejected.load(Ordering::SeqCst), rejected + 1, "{what}: counted as refused");
}

#[tokio::test]
async fn forged_requests_are_refused_and_never_dispatched() {
    let env = TestEnv::spawn().await;
    arm_sentinels(&env).await;
    let sync_call = || message(1, false, "invoke_sync_msg", r#"{"limit":1}"#);
    let async_call = || message(1, true, "invoke_sync_msg", r#"{"limit":1}"#);
    let event = || message(2, false, "", r#"{"event_type":"auth_knowledge_base"}"#);

    let mut tampered = env.wecom.seal(&async_call(), CORP);
    let body = String::from_utf8(tampered.body.clone()).unwrap();
    let flip = body.find("\"}").unwrap() - 8;
    let replaced = if &body[flip..=flip] == "A" { "B" } else { "A" };
    tampered.body = format!("{}{replaced}{}", &body[..flip], &body[flip + 1..]).into_bytes();
    assert_refused(&env, "a ciphertext changed under its signature", &tampered).await;

    let wrong_token = codec("AttackerToken", DEMO_LOCAL_KEY).seal(&async_call(), CORP);
    assert_refused(&env, "signed with another token", &wrong_token).await;

    // An attacker who knows the token but not the EncodingAESKey signs correctly, and still fails.
    let wrong_key = codec(DEMO_LOCAL_TOKEN, "AttackerKey0123456789abcdefghijklmnopqrstuv").seal(&event(), CORP);
    assert_refused(&env, "encrypted with another key", &wrong_key).await;

    let a = env.wecom.seal(&sync_call(), CORP);
    let b = env.wecom.seal(&event(), CORP);
    let spliced = Sealed { headers: a.headers.clone(), body: b.body.clone() };
    assert_refused(&env, "headers of one request on the body of another", &spliced).await;

    let mut moved = env.wecom.seal(&sync_call(), CORP);
    *header(&mut moved, "ww-timestamp") = (now() - 1).to_string();
    assert_refused(&env, "a timestamp changed under its signature", &moved).await;

    let mut renonced = env.wecom.seal(&sync_call(), CORP);
    *header(&mut renonced, "ww-nonce") = "fresh0nonce".into();
    assert_refused(&env, "a nonce changed under its signature", &renonced).await;

    for name in ["ww-timestamp", "ww-nonce", "ww-secret-ver", "ww-signature"] {
        let mut missing = env.wecom.seal(&sync_call(), CORP);
        missing.headers.retain(|(k, _)| k != name);
        assert_refused(&env, &format!("without {name}"), &missing).await;
    }

    let other_corp = env.wecom.seal(&sync_call(), "wwattacker");
    assert_refused(&env, "sealed for another receive id", &other_corp).await;

    let not_json = env.wecom.seal(&[0xff, 0xfe, 0x80, b'{', 0xc3], CORP);
    assert_refused(&env, "a message that is not UTF-8 JSON", &not_json).await;

    // What a fail-open program would accept: the plain message, no envelope.
    let plain = Sealed { headers: a.headers.clone(), body: sync_call() };
    assert_refused(&env, "a plaintext request", &plain).await;
    let unsigned = Sealed { headers: vec![], body: sync_call() };
    assert_refused(&env, "a plaintext request without headers", &unsigned).await;

    // The sentinels work: the one genuine request reaches the SDK and gets its fault.
    let before = effects(&env).await;
    let reply = env.open_reply(env.post(&a).await).await;
    assert_eq!(reply["errcode"], SENTINEL, "{reply}");
    let after = effects(&env).await;
    assert_ne!(after.sdk_calls_left, before.sdk_calls_left, "a dispatched request is visible");
    assert_eq!(after.answered, before.answered + 1);
}

#[tokio::test]
async fn replayed_requests_are_refused_even_when_raced_and_never_dispatched() {
    let env = Arc::new(TestEnv::spawn_with(|c| c.program.jobs.report_attempts = 1).await);
    arm_sentinels(&env).await;
    let sealed = env.wecom.seal(&message(1, true, "invoke_sync_msg", "{}"), CORP);
    let before = effects(&env).await;
    let rejected = env.state.metrics.callbacks_rejected.load(Ordering::SeqCst);
    let mut set = JoinSet::new();
    for _ in 0..20 {
        let (env, sealed) = (env.clone(), sealed.clone());
        set.spawn(async move { env.post(&sealed).await.status().as_u16() });
    }
    while let Some(status) = set.join_next().await {
        assert!(matches!(status.unwrap(), 200 | 403), "every copy gets an answer");
    }
    let after = effects(&env).await;
    assert_eq!(after.answered, before.answered + 1, "exactly one of 20 concurrent copies is served");
    assert_eq!(env.state.metrics.callbacks_rejected.load(Ordering::SeqCst), rejected + 19);
    let jobs = env.state.jobs.counts().await.unwrap();
    assert_eq!(jobs.queued + jobs.running + jobs.done + jobs.failed, 1, "one job, not twenty: {jobs:?}");
    // The one served copy's job reports through the SDK in the background (one attempt, which the
    // sentinel fails); let it end, so that the replay's "no side effect" check sees only what the
    // replay itself would cause.
    env.state.jobs.wait_idle(crate::helpers::DEADLINE).await.expect("the served job ends");
    assert_refused(&env, "a replay after the race", &sealed).await;
}

#[tokio::test]
async fn reordered_requests_are_served_once_each_and_the_window_bounds_them() {
    let env = TestEnv::spawn().await;
    let msg = |n: u32| message(1, false, "no_such_ability", &format!("{{\"n\":{n}}}"));
    let older = env.wecom.seal_at(1, &msg(1), CORP, now() - 200, &Nonce::random()).unwrap();
    let newer = env.wecom.seal_at(1, &msg(2), CORP, now(), &Nonce::random()).unwrap();
    let future = env.wecom.seal_at(1, &msg(3), CORP, now() + 200, &Nonce::random()).unwrap();
    for (what, sealed) in
        [("the newer first", &newer), ("the older after it", &older), ("one from the future", &future)]
    {
        let reply = env.open_reply(env.post(sealed).await).await;
        assert_eq!(reply["errcode"], 900_003, "{what}");
    }
    assert_refused(&env, "the older one again", &older).await;
    assert_refused(&env, "the newer one again", &newer).await;
    let stale = env.wecom.seal_at(1, &msg(4), CORP, now() - 301, &Nonce::random()).unwrap();
    assert_refused(&env, "older than the window", &stale).await;
    let early = env.wecom.seal_at(1, &msg(5), CORP, now() + 301, &Nonce::random()).unwrap();
    assert_refused(&env, "further ahead than the window", &early).await;
}

#[tokio::test]
async fn a_full_replay_cache_refuses_new_requests_rather_than_forgetting_a_nonce() {
    let env = TestEnv::spawn_with(|c| c.program.sdk.local.nonce_cache_capacity = 3).await;
    for n in 0..3 {
        let sealed = env.wecom.seal(&message(1, false, "no_such_ability", &n.to_string()), CORP);
        assert_eq!(env.post(&sealed).await.status(), 200);
    }
    let fourth = env.wecom.seal(&message(1, true, "invoke_sync_msg", "{}"), CORP);
    assert_refused(&env, "a fourth request while three nonces are live", &fourth).await;
}
