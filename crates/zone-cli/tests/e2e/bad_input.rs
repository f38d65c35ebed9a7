//! Bad input through the real program: malformed JSON, wrong types, unknown and missing fields,
//! oversize strings and lists, escapes that are not Unicode, deep nesting; as sync calls, async
//! calls and events. Each gets its documented code (README "Error codes") in an encrypted reply,
//! and changes nothing: the store is byte-for-byte unchanged and no SDK call reaches the zone.

use serde_json::{Value, json};

use crate::forgery::{arm_sentinels, effects};
use crate::helpers::{CORP, TestEnv};

const INVALID: i64 = 900_001;
const TOO_LARGE: i64 = 900_002;
const UNKNOWN: i64 = 900_003;

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// (what, ability, request_data, expected errcode): each must be refused before any work.
fn cases() -> Vec<(&'static str, String, String, i64)> {
    let s = |v: &str| v.to_owned();
    let many = |n: usize, item: Value| Value::Array(vec![item; n]);
    vec![
        ("truncated JSON", s("chat_digest"), s(r#"{"chatid": "#), INVALID),
        ("not JSON at all", s("keyword_report"), s("chatid=wr1"), INVALID),
        ("not an object", s("chat_digest"), s("[1,2]"), INVALID),
        ("a wrong type", s("chat_digest"), s(r#"{"chatid": 5}"#), INVALID),
        (
            "a wrong type in a list",
            s("customer_profile"),
            json!({"external_userid": "wm1", "tag_group_ids": [1]}).to_string(),
            INVALID,
        ),
        ("an unknown field", s("chat_digest"), json!({"chatid": "wr1", "bogus": 1}).to_string(), INVALID),
        ("an unknown field in the envelope", s("keyword_report"), json!({"input": {"nope": 1}}).to_string(), INVALID),
        ("a missing field", s("customer_profile"), json!({"tag_group_ids": ["g"]}).to_string(), INVALID),
        ("an input to an input-less ability", s("get_callback_data"), json!({"x": 1}).to_string(), INVALID),
        ("a lone surrogate escape", s("chat_digest"), s(r#"{"chatid": "\ud800"}"#), INVALID),
        ("deep nesting", s("chat_digest"), nested(100_000), INVALID),
        ("deep nesting in a field", s("chat_digest"), format!(r#"{{"chatid": {}}}"#, nested(50_000)), INVALID),
        (
            "deep nesting to a pass-through",
            s("invoke_sync_msg"),
            format!(r#"{{"cursor": {}}}"#, nested(50_000)),
            INVALID,
        ),
        (
            "an oversize id",
            s("customer_profile"),
            json!({"external_userid": "w".repeat(10_000), "tag_group_ids": ["g"]}).to_string(),
            TOO_LARGE,
        ),
        ("an oversize chat id", s("chat_digest"), json!({"chatid": "w".repeat(100_000)}).to_string(), TOO_LARGE),
        (
            "an oversize list",
            s("customer_profile"),
            json!({"external_userid": "wm1", "tag_group_ids": many(101, json!("g"))}).to_string(),
            TOO_LARGE,
        ),
        (
            "an oversize msg_list",
            s("chat_digest"),
            json!({"msg_list": many(10_001, json!({"msgid": "m", "secret_key": "k"}))}).to_string(),
            TOO_LARGE,
        ),
        (
            "an oversize count",
            s("chat_digest"),
            json!({"chatid": "wr1", "max_messages": 10_001}).to_string(),
            TOO_LARGE,
        ),
        (
            "more than max_input_bytes",
            s("invoke_sync_msg"),
            format!(r#"{{"cursor":"{}"}}"#, "c".repeat(1024 * 1024)),
            TOO_LARGE,
        ),
        (
            "both a chat and participants",
            s("chat_digest"),
            json!({"chatid": "wr1", "participants": ["a", "b"]}).to_string(),
            INVALID,
        ),
        (
            "three participants",
            s("reply_suggestions"),
            json!({"kb_id": "kb1", "participants": ["a", "b", "c"]}).to_string(),
            INVALID,
        ),
        (
            "a reversed time range",
            s("chat_digest"),
            json!({"chatid": "wr1", "start_time": 10, "end_time": 5}).to_string(),
            INVALID,
        ),
        (
            "a range over 31 days",
            s("keyword_report"),
            json!({"start_time": 0, "end_time": 40 * 86_400}).to_string(),
            INVALID,
        ),
        ("an unknown ability", s("no_such_ability"), s("{}"), UNKNOWN),
        ("an oversize ability id", "invoke_".repeat(2000), s("{}"), UNKNOWN),
        ("a prefix-only ability id", s("invoke_"), s("{}"), UNKNOWN),
    ]
}

async fn assert_refused_cleanly(
    env: &TestEnv,
    what: &str,
    call_type: i64,
    is_async: bool,
    ability: &str,
    data: &str,
    want: i64,
) {
    let before = effects(env).await;
    let msg = json!({
        "corp_id": CORP, "agent_id": 1000002, "call_type": call_type, "is_async": is_async,
        "job_info": format!("job-{}", rand::random::<u64>()), "ability_id": ability, "notify_id": "", "data": data,
    });
    let reply = env.open_reply(env.post(&env.wecom.seal(msg.to_string().as_bytes(), CORP)).await).await;
    assert_eq!(reply["errcode"], want, "{what} (call_type {call_type}, async {is_async}): {reply}");
    let errmsg = reply["errmsg"].as_str().unwrap_or_default();
    assert!(errmsg.len() < 200, "{what}: the reason is short and does not echo the input: {errmsg}");
    let after = effects(env).await;
    assert_eq!((after.store, after.sdk_calls_left), (before.store, before.sdk_calls_left), "{what} changed something");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_app_input_gets_its_documented_code_and_changes_nothing_sync_or_async() {
    let env = TestEnv::spawn().await;
    arm_sentinels(&env).await;
    for (what, ability, data, want) in cases() {
        assert_refused_cleanly(&env, what, 1, false, &ability, &data, want).await;
        assert_refused_cleanly(&env, what, 1, true, &ability, &data, want).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_events_get_their_documented_code_and_change_nothing() {
    let env = TestEnv::spawn().await;
    arm_sentinels(&env).await;
    let big = json!({"event_type": "auth_knowledge_base", "pad": "p".repeat(1024 * 1024)}).to_string();
    for (what, data, want) in [
        ("not JSON", "event_type=conversation_new_message".to_owned(), INVALID),
        ("not an object", r#"["conversation_new_message"]"#.to_owned(), INVALID),
        ("no event_type", r#"{"token": "T"}"#.to_owned(), INVALID),
        ("a numeric event_type", r#"{"event_type": 7}"#.to_owned(), INVALID),
        ("an oversize event_type", json!({"event_type": "e".repeat(65)}).to_string(), INVALID),
        ("deep nesting", format!(r#"{{"event_type": "hit_keyword", "hit_keyword": {}}}"#, nested(50_000)), INVALID),
        ("a lone surrogate", r#"{"event_type": "\udc00"}"#.to_owned(), INVALID),
        ("more than max_input_bytes", big, TOO_LARGE),
    ] {
        assert_refused_cleanly(&env, what, 2, false, "", &data, want).await;
    }
}
