//! The workflows through the app API of the local zone, each checked against what the test computes
//! on its own: the conversation's messages picked from one direct `sync_msg` / `get_hit_msg_list`,
//! their keys unwrapped with the test key, and the same model run directly through the SDK.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::abilities::{response_data, spawn_declared};
use crate::helpers::{TestEnv, poll};

const DAY: i64 = 24 * 3600;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A range inside the zone's 5-day window: the whole seeded archive.
fn range() -> (i64, i64) {
    let end = now() + 60;
    (end - 5 * DAY + 300, end)
}

fn chatid(world: &Value, name: &str) -> String {
    world["chats"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()["chatid"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Every listed message from `start`, in listing order (one direct call: < 1000 are seeded).
async fn listed(env: &TestEnv, start: i64) -> Vec<Value> {
    let page = env.sdk("sync_msg", json!({"begin_time": start, "limit": 1000})).await;
    assert_eq!(page["has_more"], 0, "the seeded archive fits one page");
    page["msg_list"].as_array().unwrap().clone()
}

fn ids(items: &[Value]) -> Vec<String> {
    items.iter().map(|m| m["msgid"].as_str().unwrap().to_owned()).collect()
}

/// The model `msg_list` of `items`, with keys unwrapped by the test.
fn model_list(env: &TestEnv, items: &[Value]) -> Value {
    Value::Array(
        items
            .iter()
            .map(|m| {
                let key = env.unwrap_secret_key(m["service_encrypt_info"]["encrypted_secret_key"].as_str().unwrap());
                json!({"msgid": m["msgid"], "encrypt_info": {"secret_key": key}})
            })
            .collect(),
    )
}

/// Runs a model task directly through the SDK and returns its finished result.
async fn run_model(env: &TestEnv, create: &str, result: &str, request: Value) -> Value {
    let created = env.sdk(create, request).await;
    assert_eq!(created["errcode"], 0, "{created}");
    let done = poll(|| env.sdk(result, json!({"jobid": created["jobid"]})), |v| v["status"] != 0).await;
    assert_eq!(done["status"], 1, "{done}");
    done
}

async fn call(env: &TestEnv, ability: &str, input: Value) -> Value {
    let out = response_data(&env.app_call(ability, &input.to_string(), None).await);
    assert_eq!(out["errcode"], 0, "{ability}: {out}");
    out
}

#[tokio::test]
async fn chat_digest_matches_the_summary_and_sentiment_of_the_chats_messages() {
    let env = spawn_declared(|_| {}).await;
    let w = env.world().await;
    let vip = chatid(&w, "VIP客户服务群");
    let (start, end) = range();
    let chat: Vec<Value> = listed(&env, start).await.into_iter().filter(|m| m["chatid"] == vip.as_str()).collect();
    assert!(chat.len() >= 5, "the seeded chat has messages");

    let out = call(&env, "chat_digest", json!({"chatid": vip, "start_time": start, "end_time": end})).await;
    assert_eq!(out["message_count"], chat.len());
    assert_eq!(out["msgids"], json!(ids(&chat)), "every message of the chat, in order, and no other");

    let list = model_list(&env, &chat);
    let summary = run_model(&env, "create_summary_task", "get_summary_result", json!({"msg_list": list})).await;
    assert_eq!(out["summary"], summary["response_data"], "{out}");
    let sentiment = run_model(&env, "create_sentiment_task", "get_sentiment_result", json!({"msg_list": list})).await;
    let mut expected = BTreeMap::from([("positive", 0), ("negative", 0), ("neutral", 0), ("failed", 0)]);
    for r in sentiment["analyze_result_list"].as_array().unwrap() {
        let key = match (r["errcode"].as_i64(), r["sentiment_result"].as_i64()) {
            (Some(0), Some(1)) => "positive",
            (Some(0), Some(2)) => "negative",
            (Some(0), Some(0)) => "neutral",
            _ => "failed",
        };
        *expected.get_mut(key).unwrap() += 1;
    }
    assert_eq!(out["sentiment"], json!(expected));
    let skipped: BTreeSet<String> =
        out["skipped"].as_array().unwrap().iter().map(|s| s["msgid"].as_str().unwrap().to_owned()).collect();
    let not_text: BTreeSet<String> = chat
        .iter()
        .filter(|m| m["msgtype"] != 1 && m["msgtype"] != 2)
        .map(|m| m["msgid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(skipped, not_text, "the model's per-message failures are listed: {out}");
    assert_eq!(out["truncated"], false);
    env.settle_jobs().await;
}

#[tokio::test]
async fn chat_digest_of_a_one_to_one_chat_and_of_given_messages_agree() {
    let env = TestEnv::spawn().await;
    let w = env.world().await;
    let c = &w["customers"][0];
    let (customer, follower) = (c["external_userid"].as_str().unwrap(), c["follower"].as_str().unwrap());
    let (start, end) = range();
    let pair: Vec<Value> = listed(&env, start)
        .await
        .into_iter()
        .filter(|m| {
            let parties: BTreeSet<&str> = std::iter::once(&m["sender"])
                .chain(m["receiver_list"].as_array().unwrap())
                .map(|p| p["id"].as_str().unwrap())
                .collect();
            m["chatid"] == "" && parties == BTreeSet::from([customer, follower])
        })
        .collect();
    assert!(!pair.is_empty());
    let listed_out =
        call(&env, "chat_digest", json!({"participants": [follower, customer], "start_time": start, "end_time": end}))
            .await;
    assert_eq!(listed_out["msgids"], json!(ids(&pair)));
    let given: Vec<Value> = model_list(&env, &pair)
        .as_array()
        .unwrap()
        .iter()
        .map(|m| json!({"msgid": m["msgid"], "secret_key": m["encrypt_info"]["secret_key"]}))
        .collect();
    let given_out = call(&env, "chat_digest", json!({"msg_list": given})).await;
    for key in ["msgids", "summary", "sentiment", "skipped"] {
        assert_eq!(listed_out[key], given_out[key], "{key}");
    }
}

#[tokio::test]
async fn keyword_report_groups_every_hit_by_rule_and_chat() {
    let env = spawn_declared(|_| {}).await;
    let (start, end) = range();
    let hits = env.sdk("get_hit_msg_list", json!({"begin_time": start, "limit": 1000, "need_detail": 1})).await;
    let mut expected: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for h in hits["msg_list"].as_array().unwrap() {
        let d = &h["msg_detail"];
        let chat = match d["chatid"].as_str().unwrap() {
            "" => {
                let mut p: Vec<&str> = std::iter::once(&d["sender"])
                    .chain(d["receiver_list"].as_array().unwrap())
                    .map(|p| p["id"].as_str().unwrap())
                    .collect();
                p.sort_unstable();
                p.dedup();
                format!("single:{}", p.join(","))
            }
            id => id.to_owned(),
        };
        for r in h["hit_rule_list"].as_array().unwrap() {
            let rule = r["rule_id"].as_str().unwrap().to_owned();
            expected
                .entry(rule)
                .or_default()
                .entry(chat.clone())
                .or_default()
                .push(h["msgid"].as_str().unwrap().into());
        }
    }
    assert!(!expected.is_empty(), "the seeded world has hits");
    let names = env.sdk("get_rule_list", json!({"limit": 100})).await;

    let out = call(&env, "keyword_report", json!({"start_time": start, "end_time": end})).await;
    let mut got: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for r in out["rules"].as_array().unwrap() {
        let name = names["rule_list"].as_array().unwrap().iter().find(|n| n["rule_id"] == r["rule_id"]).unwrap();
        assert_eq!(r["name"], name["name"]);
        for c in r["chats"].as_array().unwrap() {
            let key = match c["chatid"].as_str().unwrap() {
                "" => format!(
                    "single:{}",
                    c["participants"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| p.as_str().unwrap())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                id => id.to_owned(),
            };
            let msgids: Vec<String> =
                c["msgids"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_owned()).collect();
            assert_eq!(c["hits"], msgids.len());
            got.entry(r["rule_id"].as_str().unwrap().to_owned()).or_default().insert(key, msgids);
        }
    }
    assert_eq!(got, expected);
    let total: usize = expected.values().flat_map(|chats| chats.values()).map(Vec::len).sum();
    assert_eq!(out["total_hits"], total);

    let one = expected.keys().next().unwrap().clone();
    let only = call(&env, "keyword_report", json!({"rule_id": one, "start_time": start, "end_time": end})).await;
    assert_eq!(only["rules"].as_array().unwrap().len(), 1);
    assert_eq!(only["rules"][0]["rule_id"], one.as_str());
}

#[tokio::test]
async fn customer_profile_matches_the_tag_model_on_the_customers_own_messages() {
    let env = spawn_declared(|_| {}).await;
    let w = env.world().await;
    let groups: Vec<String> =
        w["tag_groups"].as_array().unwrap().iter().map(|g| g["group_id"].as_str().unwrap().to_owned()).collect();
    let (start, end) = range();
    let all = listed(&env, start).await;
    // A customer with tags to find: the first whose messages the model tags.
    for c in w["customers"].as_array().unwrap() {
        let customer = c["external_userid"].as_str().unwrap();
        let own: Vec<Value> = all
            .iter()
            .filter(|m| {
                let party = |p: &Value| p["id"] == customer;
                party(&m["sender"]) || (m["chatid"] == "" && m["receiver_list"].as_array().unwrap().iter().any(party))
            })
            .cloned()
            .collect();
        if own.is_empty() {
            continue;
        }
        let request = json!({"tag_group_list": groups.iter().map(|g| json!({"group_id": g})).collect::<Vec<_>>(),
                             "msg_list": model_list(&env, &own)});
        let direct = run_model(&env, "create_customer_tag_task", "get_customer_tag_result", request).await;
        let expected: Vec<Value> = direct["tag_result_list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| json!({"group_id": t["group_id"], "tag_id": t["tag_id"], "votes": 1}))
            .collect();
        let input = json!({"external_userid": customer, "tag_group_ids": groups, "start_time": start, "end_time": end});
        let out = call(&env, "customer_profile", input).await;
        assert_eq!(out["message_count"], own.len());
        let mut got = out["tags"].as_array().unwrap().clone();
        let mut want = expected;
        got.sort_by_key(|t| t["group_id"].to_string());
        want.sort_by_key(|t| t["group_id"].to_string());
        assert_eq!(got, want, "{customer}: {out}");
        if !want.is_empty() {
            return;
        }
    }
    panic!("no seeded customer has tags to find");
}

#[tokio::test]
async fn reply_suggestions_recommend_from_the_knowledge_set_for_the_latest_messages() {
    let env = spawn_declared(|_| {}).await;
    let w = env.world().await;
    let vip = chatid(&w, "VIP客户服务群");
    let kb = w["kb_ids"][0].as_str().unwrap().to_owned();
    let (start, end) = range();
    let chat: Vec<Value> = listed(&env, start).await.into_iter().filter(|m| m["chatid"] == vip.as_str()).collect();
    let last: Vec<Value> = chat[chat.len().saturating_sub(3)..].to_vec();
    let direct = run_model(
        &env,
        "create_recommend_dialog_task",
        "get_recommend_dialog_result",
        json!({"kb_id": kb, "msg_list": model_list(&env, &last)}),
    )
    .await;
    let out = call(
        &env,
        "reply_suggestions",
        json!({"kb_id": kb, "chatid": vip, "last_n": 3, "start_time": start, "end_time": end}),
    )
    .await;
    assert_eq!(out["msgids"], json!(ids(&last)));
    assert_eq!(out["suggestion"], direct["response_data"]);
    assert!(out["suggestion"].as_str().unwrap().contains("话术推荐"), "{out}");
    let _ = end;
}

/// Under the zone's emulated limit on calls without an event token (a handful a minute), workflows
/// keep working: one event-driven pull (with its token) fills the program's message index, and 50
/// workflow calls back to back are answered from it.
#[tokio::test]
async fn fifty_workflow_calls_succeed_on_the_index_with_at_most_a_handful_of_tokenless_calls() {
    let env = spawn_declared(|c| {
        c.local_zone.tokenless_calls_per_minute = 5;
        c.program.jobs.model_poll_interval_ms = 5;
    })
    .await;
    let w = env.world().await;
    let vip = chatid(&w, "VIP客户服务群");
    let c = &w["customers"][1];
    let body = json!({"sender": c["external_userid"], "receivers": [c["follower"]], "content": "你好"});
    env.control("messages", body).await;
    env.next_notify().await;
    env.settle_jobs().await;
    let coverage =
        env.state.store.index_coverage(crate::helpers::CORP).await.unwrap().expect("the pull filled the index");
    assert!(coverage.from <= now() - 5 * DAY + 60 && coverage.until >= now() - 5, "{coverage:?}");

    let before = env.zone.data().tokenless_calls;
    let (start, end) = (now() - DAY, now());
    let mut digested = BTreeSet::new();
    for _ in 0..50 {
        let out = call(&env, "chat_digest", json!({"chatid": vip, "start_time": start, "end_time": end})).await;
        digested.insert(out["msgids"].to_string());
    }
    let tokenless = env.zone.data().tokenless_calls - before;
    assert!(tokenless <= 3, "{tokenless} calls without an event token for 50 workflow calls");
    assert_eq!(digested.len(), 1, "every call saw the same messages");
    // The index answers what a direct listing answers.
    let direct: Vec<String> = ids(&listed(&env, start).await).into_iter().filter(|_| true).collect::<Vec<_>>();
    let out = call(&env, "chat_digest", json!({"chatid": vip, "start_time": start, "end_time": end})).await;
    let from_index: Vec<String> = serde_json::from_value(out["msgids"].clone()).unwrap();
    assert!(from_index.iter().all(|m| direct.contains(m)), "only listed messages");
    assert!(!from_index.is_empty());
}

/// Without an index to read, a workflow lists its range once without a token; when the corp's budget
/// of such calls is spent, the next one that needs a listing is answered 900106 with
/// `retry_after_ms` instead of calling.
#[tokio::test]
async fn a_spent_tokenless_budget_is_answered_900106_instead_of_calling() {
    let env = spawn_declared(|c| {
        c.program.messages.tokenless_burst = 1;
        c.program.messages.tokenless_per_minute = 1;
        c.program.jobs.model_poll_interval_ms = 5;
    })
    .await;
    let vip = chatid(&env.world().await, "VIP客户服务群");
    let before = env.zone.data().tokenless_calls;
    call(&env, "chat_digest", json!({"chatid": vip, "start_time": now() - 3600})).await;
    call(&env, "chat_digest", json!({"chatid": vip, "start_time": now() - 1800})).await;
    assert_eq!(env.zone.data().tokenless_calls - before, 1, "the second range was covered by the first listing");
    let out = response_data(
        &env.app_call("chat_digest", &json!({"chatid": vip, "start_time": now() - 2 * DAY}).to_string(), None).await,
    );
    assert_eq!(out["errcode"], 900_106, "{out}");
    assert!(out["retry_after_ms"].as_u64().is_some_and(|ms| ms > 1000 && ms <= 60_000), "{out}");
    assert_eq!(env.zone.data().tokenless_calls - before, 1, "no call was made");
}
