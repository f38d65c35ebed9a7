//! The local zone's SDK surface through the program's own backend: chat records (paging, window,
//! tokens, limits), message keys, and faults on demand.

use serde_json::{Value, json};
use zone_program::sdk::{CallContext, SdkError};

use crate::helpers::{CORP, TestEnv};

fn ctx() -> CallContext {
    CallContext { corp_id: CORP.into(), agent_id: 1_000_002, ..CallContext::default() }
}

/// Pulls every message with `sync_msg` pages of `limit`; returns the msgids in order.
async fn pull_all(env: &TestEnv, limit: usize) -> Vec<String> {
    let mut cursor = Value::Null;
    let mut ids = Vec::new();
    for _ in 0..100 {
        let page = env.sdk("sync_msg", json!({"cursor": cursor, "limit": limit})).await;
        assert_eq!(page["errcode"], 0, "{page}");
        let list = page["msg_list"].as_array().unwrap();
        assert!(list.len() <= limit);
        ids.extend(list.iter().map(|m| m["msgid"].as_str().unwrap().to_owned()));
        cursor = page["next_cursor"].clone();
        assert!(cursor.as_str().unwrap().len() <= 128);
        if page["has_more"] == 0 {
            return ids;
        }
    }
    panic!("sync_msg never finished");
}

#[tokio::test]
async fn sync_msg_pages_through_the_window_in_order_and_then_only_returns_new_messages() {
    let env = TestEnv::spawn().await;
    let small = pull_all(&env, 37).await;
    let big = pull_all(&env, 1000).await;
    assert_eq!(small, big, "page size does not change what is seen");
    assert!(big.len() > 150, "most of the 240 seeded messages are in scope: {}", big.len());
    let mut dedup = big.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), big.len(), "no message twice");

    let last = env.sdk("sync_msg", json!({"limit": 1000})).await;
    let cursor = last["next_cursor"].clone();
    let world = env.world().await;
    let (staff, customer) =
        (world["customers"][0]["follower"].clone(), world["customers"][0]["external_userid"].clone());
    let added = env.control("messages", json!({"sender": customer, "receivers": [staff], "content": "在吗"})).await;
    assert_eq!(added["errcode"], 0, "{added}");
    let new = env.sdk("sync_msg", json!({"cursor": cursor, "token": added["token"]})).await;
    let list = new["msg_list"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{new}");
    assert_eq!(list[0]["msgid"], added["msgid"]);
    assert!(list[0].get("content").is_none(), "no content leaves the zone");
}

#[tokio::test]
async fn a_page_as_large_as_the_rest_of_the_window_has_no_more_and_one_smaller_has_exactly_one_more() {
    let env = TestEnv::spawn().await;
    let all = pull_all(&env, 1000).await;
    let exact = env.sdk("sync_msg", json!({"limit": all.len()})).await;
    assert_eq!((exact["msg_list"].as_array().unwrap().len(), exact["has_more"].as_i64()), (all.len(), Some(0)));
    let short = env.sdk("sync_msg", json!({"limit": all.len() - 1})).await;
    assert_eq!(short["has_more"], 1);
    let rest = env.sdk("sync_msg", json!({"cursor": short["next_cursor"], "limit": 1000})).await;
    let rest = rest["msg_list"].as_array().unwrap();
    assert_eq!((rest.len(), rest[0]["msgid"].as_str()), (1, all.last().map(String::as_str)));
}

#[tokio::test]
async fn sync_msg_enforces_its_limits_and_token_rules() {
    let env = TestEnv::spawn().await;
    for bad in [
        json!({"limit": 1001}),
        json!({"limit": 0}),
        json!({"cursor": "c".repeat(129)}),
        json!({"cursor": "made-up"}),
        json!({"token": "t".repeat(129)}),
        json!({"token": "ENCunknown"}),
        json!({"mode": 3}),
        json!({"limit": "10"}),
    ] {
        let reply = env.sdk("sync_msg", bad.clone()).await;
        assert_eq!(reply["errcode"], 40058, "{bad} → {reply}");
    }
    let event = env.control("events", json!({"event_type": "conversation_new_message"})).await;
    let token = event["conversation_new_message"]["token"].clone();
    assert_eq!(env.sdk("sync_msg", json!({"token": token, "limit": 1})).await["errcode"], 0);
    env.control("clock/advance", json!({"secs": 601})).await;
    assert_eq!(env.sdk("sync_msg", json!({"token": token, "limit": 1})).await["errcode"], 40058, "tokens live 10 min");
}

#[tokio::test]
async fn messages_older_than_five_days_are_no_longer_listed() {
    let env = TestEnv::spawn().await;
    let before = pull_all(&env, 1000).await.len();
    env.control("clock/advance", json!({"secs": 2 * 86_400})).await;
    let after = pull_all(&env, 1000).await.len();
    assert!(after < before * 3 / 4 && after > 0, "{before} → {after}");
}

#[tokio::test]
async fn pre_paging_returns_page_ids_that_together_hold_the_same_messages() {
    let env = TestEnv::spawn().await;
    let all = pull_all(&env, 1000).await;
    let paged = env.sdk("sync_msg", json!({"mode": 1, "limit": 50})).await;
    let pages = paged["page_id_list"].as_array().unwrap();
    assert_eq!(pages.len(), all.len().div_ceil(50));
    let mut ids = Vec::new();
    for page in pages {
        let list = env.sdk("get_msg_list_by_page_id", json!({"page_id": page})).await;
        ids.extend(list["msg_list"].as_array().unwrap().iter().map(|m| m["msgid"].as_str().unwrap().to_owned()));
    }
    assert_eq!(ids, all);
    let adaptive = env.sdk("sync_msg", json!({"mode": 2, "limit": 1000})).await;
    assert_eq!(adaptive["msg_list"].as_array().unwrap().len(), all.len(), "one page holds everything");
    let adaptive = env.sdk("sync_msg", json!({"mode": 2, "limit": 50})).await;
    assert_eq!(adaptive["page_id_list"].as_array().unwrap().len(), pages.len(), "too many for one page: paged");
    assert_eq!(env.sdk("get_msg_list_by_page_id", json!({"page_id": "PAGEnope"})).await["errcode"], 40058);
    assert_eq!(env.sdk("get_msg_list_by_page_id", json!({})).await["errcode"], 40058);
}

#[tokio::test]
async fn each_message_key_unwraps_with_the_current_public_key_version() {
    let env = TestEnv::spawn().await;
    let page = env.sdk("sync_msg", json!({"limit": 3})).await;
    let info = &page["msg_list"][0]["service_encrypt_info"];
    assert_eq!(info["public_key_ver"], 1);
    let secret = env.unwrap_secret_key(info["encrypted_secret_key"].as_str().unwrap());
    assert_eq!(secret.len(), 32);

    let pem = include_str!("../../../zone-testkit/keys/test_rsa_public.pem");
    let set = |ver: i64| json!({"public_key": pem, "public_key_ver": ver});
    assert_eq!(env.app_post("set_public_key", &set(1)).await["errcode"], 40058, "the version must increase");
    assert_eq!(
        env.app_post("set_public_key", &json!({"public_key": "x", "public_key_ver": 2})).await["errcode"],
        40058
    );
    assert_eq!(env.app_post("set_public_key", &set(2)).await["errcode"], 0);
    let page = env.sdk("sync_msg", json!({"limit": 3})).await;
    let info = &page["msg_list"][0]["service_encrypt_info"];
    assert_eq!(info["public_key_ver"], 2);
    assert_eq!(env.unwrap_secret_key(info["encrypted_secret_key"].as_str().unwrap()), secret, "same key, new wrap");
}

#[tokio::test]
async fn faults_reach_the_program_as_the_vendor_sdk_reports_them() {
    let env = TestEnv::spawn_with(|c| {
        c.program.sdk.invoke_timeout_ms = 1500; // generous: only the slow fault may reach it, even on a loaded machine
        c.program.sdk.max_response_bytes = 64 * 1024;
    })
    .await;
    let arm = |kind: Value| {
        let mut body = json!({"api": "sync_msg", "count": 1});
        body.as_object_mut().unwrap().extend(kind.as_object().unwrap().clone());
        env.control("faults", body)
    };
    let (c, req) = (ctx(), json!({"limit": 1}));
    let call = || env.sdk_in(&c, "sync_msg", &req);
    assert_eq!(arm(json!({"invoke_ret": -10001})).await["errcode"], 0);
    assert!(matches!(call().await, Err(SdkError::Invoke { ret: -10001, .. })));
    arm(json!({"errcode": 45009})).await;
    assert_eq!(call().await.unwrap()["errcode"], 45009);
    arm(json!({"http_status": 503})).await;
    assert!(matches!(call().await, Err(SdkError::Invoke { ret: -10006, .. })));
    arm(json!({"drop": true})).await;
    assert!(matches!(call().await, Err(SdkError::Invoke { ret: -10006, .. })));
    arm(json!({"oversized_bytes": 100_000})).await;
    assert_eq!(call().await, Err(SdkError::BadResponse));
    arm(json!({"delay_ms": 4000})).await;
    assert_eq!(call().await, Err(SdkError::Timeout));
    assert_eq!(call().await.unwrap()["errcode"], 0, "faults apply to the next N calls only");
    assert_eq!(env.control("faults", json!({"api": "sync_msg", "invoke_ret": -5})).await["errcode"], 40058);
}

/// The emulator takes no liberty the documents do not give it: booleans are booleans, only
/// documented upper limits, errors name the full field path, an unknown app endpoint answers a
/// WeCom code.
#[tokio::test]
async fn documented_types_limits_and_field_paths_only() {
    let env = TestEnv::spawn().await;
    let errmsg = |v: &Value| v["errmsg"].as_str().unwrap_or_default().to_owned();
    let user = env.world().await["staff"][0]["userid"].clone();
    let int_flag =
        env.sdk("set_hide_sensitiveinfo_config", json!({"userid": user, "config": {"hide_mobile": 1}})).await;
    assert_eq!(int_flag["errcode"], 40058, "1 is not a boolean: {int_flag}");
    assert!(errmsg(&int_flag).contains("`config.hide_mobile`"), "{int_flag}");
    let int_flag = env.sdk("search_msg", json!({"query_word": "退款", "skip_stop_words": 1})).await;
    assert!(errmsg(&int_flag).contains("`skip_stop_words`"), "{int_flag}");
    assert_eq!(env.sdk("search_msg", json!({"query_word": "退款", "skip_stop_words": true})).await["errcode"], 0);

    // No upper limit where the documents set none.
    let long_query = "退款".repeat(80);
    assert_eq!(env.sdk("search_chat", json!({"query_word": long_query})).await["errcode"], 0);
    assert_eq!(env.sdk("get_rule_list", json!({"limit": 5000})).await["errcode"], 0);

    // Full paths in errors.
    let chat_type = env.sdk("search_msg", json!({"query_word": "退款", "chat_info": {"chat_type": 3}})).await;
    assert!(errmsg(&chat_type).contains("`chat_info.chat_type`"), "{chat_type}");
    let doc_type = env
        .sdk("knowledge_base_create", json!({"kb_name": "k", "doc_list": [{"doc_name": "a.pdf", "type": "pdf"}]}))
        .await;
    assert!(errmsg(&doc_type).contains("`doc_list.type`"), "{doc_type}");
    let stale = env.app_post("set_public_key", &json!({"public_key": "PEM", "public_key_ver": 1})).await;
    assert_eq!(stale["errcode"], 40058);
    assert!(errmsg(&stale).contains("`public_key_ver`") && errmsg(&stale).contains("current version 1"), "{stale}");

    // An unknown app endpoint: WeCom's global 48002, not an HTTP status in errcode.
    assert_eq!(env.app_post("no_such_api", &json!({})).await["errcode"], 48002);
}
