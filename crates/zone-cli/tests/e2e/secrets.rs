//! No message content, secret_key, access token, EncodingAESKey, local-codec token or private key
//! in any log line or error reply (see `capture.rs` for how every line of the suite is captured).
//! This test drives a representative flow, failures included, with content and keys it knows, then
//! rescans the whole log of the suite so far with every needle.

use serde_json::{Value, json};

use crate::capture;
use crate::forgery::effects;
use crate::helpers::{CORP, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_message_content_reaches_a_log_line_or_an_error_reply() {
    let env = TestEnv::spawn_with(|c| {
        c.program.sdk.invoke_timeout_ms = 1_000;
        // Every faulted listing below must really reach the SDK: no budget refusal first.
        c.program.messages.tokenless_burst = 100;
    })
    .await;
    let world = env.world().await;
    let customer = world["customers"][0]["external_userid"].as_str().unwrap().to_owned();
    let staff = world["customers"][0]["follower"].as_str().unwrap().to_owned();

    // A message whose content only this test knows: archived, raised as an event, stored, notified.
    let content = format!("机密内容-{:016x}-请勿外传", rand::random::<u64>());
    capture::register([content.clone()]);
    let added = env.control("messages", json!({"sender": customer, "receivers": [staff], "content": content})).await;
    assert_eq!(added["errcode"], 0, "{added}");
    let notified = env.next_notify().await;
    let data = env.app_call("get_callback_data", "{}", Some(&notified.notify_id)).await;
    assert_eq!(data["errcode"], 0, "{data}");
    let again = env.app_call("get_callback_data", "{}", Some(&notified.notify_id)).await;
    let again: Value = serde_json::from_str(again["response_data"].as_str().unwrap()).unwrap();
    assert_eq!(again["errcode"], 900_006);

    // The message's key, unwrapped as the app would, then handed back to the program.
    let listed = env.call("invoke_sync_msg", r#"{"limit":1000}"#).await;
    let item = listed["msg_list"].as_array().unwrap().iter().find(|m| m["msgid"] == added["msgid"]).cloned();
    let item = item.expect("the new message is listed");
    let secret_key = env.unwrap_secret_key(item["service_encrypt_info"]["encrypted_secret_key"].as_str().unwrap());
    capture::register([secret_key.clone()]);
    let msgid = item["msgid"].as_str().unwrap();

    // Workflows that unwrap keys and send them to models, and ones that fail doing so.
    for (ability, input) in [
        ("chat_digest", json!({"participants": [customer, staff]})),
        ("chat_digest", json!({"msg_list": [{"msgid": msgid, "secret_key": secret_key}]})),
        ("reply_suggestions", json!({"kb_id": "kb-none", "msg_list": [{"msgid": msgid, "secret_key": secret_key}]})),
        ("customer_profile", json!({"external_userid": customer, "tag_group_ids": ["tg-none"]})),
        ("keyword_report", json!({})),
    ] {
        let reply = env.app_call(ability, &input.to_string(), None).await;
        assert_eq!(reply["errcode"], 0, "{ability}: {reply}");
    }
    // Bad input whose values are secrets: the error names fields, never values.
    for bad in [
        json!({"chatid": 1, "start_time": content}),
        json!({"msg_list": [{"msgid": msgid, "secret_key": 5, "x": secret_key}]}),
        json!({"participants": [secret_key, secret_key]}),
        json!({ secret_key.clone(): content }),
    ] {
        let reply = env.call("chat_digest", &bad.to_string()).await;
        assert_ne!(reply["errcode"], 0, "{reply}");
    }
    let reply = env.call("chat_digest", &format!("{{\"chatid\": \"{content}\"")).await;
    assert_eq!(reply["errcode"], 900_001);

    // SDK failures of every kind while keys are in the requests.
    // Each range starts before the 5-day window the message index can cover, so each call lists (and fails).
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    for (i, fault) in
        [json!({"errcode": 45009}), json!({"invoke_ret": -10003}), json!({"drop": true}), json!({"delay_ms": 2_000})]
            .into_iter()
            .enumerate()
    {
        let mut arm = fault.clone();
        arm["api"] = json!("sync_msg");
        arm["count"] = json!(1);
        env.control("faults", arm).await;
        let start = now - 6 * 24 * 3600 - 3600 * i as i64;
        let input = json!({"participants": [customer, staff], "start_time": start});
        let reply = env.call("chat_digest", &input.to_string()).await;
        assert_ne!(reply["errcode"], 0, "{fault}: {reply}");
    }

    // A forged request and an async job.
    let mut forged = env.seal_callback(1, "chat_digest", &json!({"chatid": content}).to_string());
    forged.headers.iter_mut().find(|(k, _)| k == "ww-signature").unwrap().1 = "0".repeat(40);
    let before = effects(&env).await;
    crate::backend::assert_refused(&env, env.post(&forged).await).await;
    assert_eq!(effects(&env).await, before);
    let job = env
        .app_async("chat_digest", &json!({"msg_list": [{"msgid": msgid, "secret_key": secret_key}]}).to_string())
        .await;
    let result = env.await_async_result(job["jobid"].as_str().unwrap()).await;
    assert!(result.get("response_errcode").is_some(), "{result}");
    capture::check_reply(&result);

    // Every message of this zone (contents and keys), then the whole log of the suite so far.
    capture::register_zone(&env.zone);
    assert!(capture::lines_containing(CORP) > 0, "the capture sees the program's lines");
    let (lines, needles, replies) = capture::check_all();
    eprintln!("secrets: {lines} log lines and {replies} error replies checked against {needles} secrets and contents");
}

#[test]
fn the_leak_check_finds_a_needle_in_a_line() {
    capture::register(["needle-for-the-self-test-0001".to_owned()]);
    let found = std::panic::catch_unwind(|| capture::check_text("a line", "x needle-for-the-self-test-0001 y"));
    assert!(found.is_err(), "a leak is reported");
    capture::check_text("a line", "nothing here");
}
