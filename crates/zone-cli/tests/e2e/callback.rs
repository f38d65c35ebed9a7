//! `POST /`: verification, replies on every path, limits and header handling.

use std::sync::atomic::Ordering;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zone_crypto::codec::Nonce;

use crate::helpers::{CORP, TestEnv};

fn counts(env: &TestEnv) -> (u64, u64) {
    let m = &env.state.metrics;
    (m.callbacks_answered.load(Ordering::SeqCst), m.callbacks_rejected.load(Ordering::SeqCst))
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test]
async fn a_valid_request_for_an_unknown_ability_gets_an_encrypted_error_reply() {
    let env = TestEnv::spawn().await;
    let reply = env.call("no_such_ability", "{}").await;
    assert_eq!(reply["errcode"], 900_003);
    assert_eq!(reply["errmsg"], "unknown ability");
    assert_eq!(counts(&env), (1, 0));
}

#[tokio::test]
async fn an_event_is_acknowledged_with_errcode_zero() {
    let env = TestEnv::spawn().await;
    let sealed = env.seal_callback(2, "", r#"{"event_type":"conversation_new_message"}"#);
    let reply = env.open_reply(env.post(&sealed).await).await;
    assert_eq!(reply["errcode"], 0);
}

async fn assert_rejected(env: &TestEnv, sealed: &zone_crypto::codec::Sealed) {
    let before = counts(env);
    let res = env.post(sealed).await;
    crate::backend::assert_refused(env, res).await;
    let after = counts(env);
    assert_eq!(after.0, before.0, "a refused request is not dispatched");
    assert_eq!(after.1, before.1 + 1);
}

#[tokio::test]
async fn a_bad_signature_is_refused_and_not_dispatched() {
    let env = TestEnv::spawn().await;
    let mut sealed = env.seal_callback(1, "x", "{}");
    let sig = sealed.headers.iter_mut().find(|(k, _)| k == "ww-signature").unwrap();
    sig.1 = "0".repeat(40);
    assert_rejected(&env, &sealed).await;
}

#[tokio::test]
async fn a_stale_timestamp_is_refused() {
    let env = TestEnv::spawn().await;
    let msg = format!(r#"{{"corp_id":"{CORP}","agent_id":1,"call_type":1,"data":"{{}}"}}"#);
    let sealed = env.wecom.seal_at(1, msg.as_bytes(), CORP, now() - 301, &Nonce::random()).unwrap();
    assert_rejected(&env, &sealed).await;
}

#[tokio::test]
async fn a_replayed_nonce_is_refused() {
    let env = TestEnv::spawn().await;
    let sealed = env.seal_callback(1, "x", "{}");
    assert_eq!(env.post(&sealed).await.status(), 200);
    assert_rejected(&env, &sealed).await;
}

#[tokio::test]
async fn an_unknown_key_version_is_refused() {
    let env = TestEnv::spawn().await;
    let mut sealed = env.seal_callback(1, "x", "{}");
    sealed.headers.iter_mut().find(|(k, _)| k == "ww-secret-ver").unwrap().1 = "7".into();
    assert_rejected(&env, &sealed).await;
}

#[tokio::test]
async fn a_message_for_another_corp_than_its_receive_id_is_refused() {
    let env = TestEnv::spawn().await;
    let msg = r#"{"corp_id":"wwother","agent_id":1,"call_type":1,"data":"{}"}"#;
    let sealed = env.wecom.seal(msg.as_bytes(), CORP);
    assert_rejected(&env, &sealed).await;
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413() {
    let env = TestEnv::spawn_with(|c| {
        c.program.server.body_limit_bytes = 4096;
        c.program.abilities.max_input_bytes = 4096;
    })
    .await;
    let sealed = env.seal_callback(1, "x", &"a".repeat(8192));
    let res = env.post(&sealed).await;
    assert_eq!(res.status(), 413);
    assert_eq!(counts(&env), (0, 0));
}

#[tokio::test]
async fn title_case_ww_headers_are_handled_exactly_like_lower_case() {
    let env = TestEnv::spawn().await;
    let sealed = env.seal_callback(1, "no_such_ability", "{}");
    let mut raw =
        format!("POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nConnection: close\r\n", env.addr);
    for (k, v) in &sealed.headers {
        let title: String = k.split('-').map(|p| p[..1].to_uppercase() + &p[1..]).collect::<Vec<_>>().join("-");
        assert!(title.starts_with("Ww-"));
        raw.push_str(&format!("{title}: {v}\r\n"));
    }
    raw.push_str(&format!("Content-Length: {}\r\n\r\n", sealed.body.len()));
    let mut stream = tokio::net::TcpStream::connect(env.addr).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    stream.write_all(&sealed.body).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    assert!(headers.iter().any(|(k, _)| k == "ww-signature"), "reply headers are copied back");
    let opened = env.wecom.open(&headers, body.as_bytes()).unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&opened.message).unwrap();
    assert_eq!(reply["errcode"], 900_003);
}

#[tokio::test]
async fn other_methods_get_405_and_healthz_answers() {
    let env = TestEnv::spawn().await;
    let res = env.http.get(env.url()).send().await.unwrap();
    assert_eq!(res.status(), 405);
    let res = env.http.get(format!("http://{}/healthz", env.addr)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = env.http.get(format!("http://{}/metrics", env.addr)).send().await.unwrap();
    assert!(res.text().await.unwrap().contains("zone_program_callbacks_answered_total 0"));
}

#[tokio::test]
async fn a_sync_call_still_running_near_the_request_deadline_gets_an_encoded_900009_reply() {
    let env = TestEnv::spawn_with(|c| {
        c.program.server.request_timeout_ms = 800;
        c.program.sdk.invoke_timeout_ms = 10_000;
    })
    .await;
    env.control("faults", serde_json::json!({"api": "sync_msg", "count": 1, "delay_ms": 3000})).await;
    let started = std::time::Instant::now();
    let reply = env.call("invoke_sync_msg", r#"{"limit":1}"#).await;
    assert_eq!(reply["errcode"], 900_009, "{reply}");
    assert_eq!(reply["errmsg"], "request timed out");
    assert!(started.elapsed() < std::time::Duration::from_millis(2500), "cut off, not waited out");
    assert_eq!(counts(&env), (1, 0), "answered with an encoded reply, not the HTTP layer's 408");
    // The next call, without the fault, is answered normally.
    assert_eq!(env.call("invoke_sync_msg", r#"{"limit":1}"#).await["errcode"], 0);
}
