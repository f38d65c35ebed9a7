//! Events through the whole loop, for every event type: the local zone raises it at the program, the
//! program acknowledges, pulls the follow-up, stores it under a fresh notify_id and calls
//! `spec_notify_app`; the app receiver gets `program_notify`; `get_callback_data` returns the data
//! once, and a second read is "already taken". Also: redelivery, a restart between storing and
//! reading, and a bad event.

use serde_json::{Value, json};

use crate::abilities::{response_data, spawn_declared};
use crate::helpers::{CORP, TestEnv};

/// The next notification must have `scene`; its data is read once, then reported taken.
async fn pull_once(env: &TestEnv, scene: u8) -> Value {
    let n = env.next_notify().await;
    assert_eq!((n.notify_scene, n.to_user.as_str(), n.event.as_str()), (Some(scene), CORP, "program_notify"));
    pull(env, &n.notify_id).await
}

async fn pull(env: &TestEnv, notify_id: &str) -> Value {
    let data = response_data(&env.app_call("get_callback_data", "{}", Some(notify_id)).await);
    assert_eq!(data["errcode"], 0, "{data}");
    let again = response_data(&env.app_call("get_callback_data", "{}", Some(notify_id)).await);
    assert_eq!(again["errcode"], 900_006, "taken once: {again}");
    data
}

async fn raise(env: &TestEnv, body: Value) -> Value {
    let raised = env.control("events", body).await;
    assert_eq!(raised["ack"]["errcode"], 0, "the program acknowledged at once: {raised}");
    raised
}

#[tokio::test]
async fn a_new_message_and_its_keyword_hit_each_reach_the_app_with_the_pulled_records() {
    let env = spawn_declared(|_| {}).await;
    let w = env.world().await;
    let c = &w["customers"][1];
    let body = json!({"sender": c["external_userid"], "receivers": [c["follower"]], "content": "我要退款，太慢了"});
    let added = env.control("messages", body).await;
    let msgid = added["msgid"].as_str().unwrap().to_owned();
    let mut by_scene = std::collections::BTreeMap::new();
    for _ in 0..2 {
        let n = env.next_notify().await;
        by_scene.insert(n.notify_scene.unwrap(), pull(&env, &n.notify_id).await);
    }
    let new = &by_scene[&1];
    assert_eq!(new["event_type"], "conversation_new_message");
    assert!(new["conversation_new_message"]["token"].is_string());
    let pulled: Vec<&Value> =
        new["msg_list"].as_array().unwrap().iter().filter(|m| m["msgid"] == msgid.as_str()).collect();
    assert_eq!(pulled.len(), 1, "{new}");
    assert!(pulled[0]["service_encrypt_info"]["encrypted_secret_key"].is_string());
    assert_eq!((new["has_more"].clone(), new["notify_scene"].clone()), (json!(0), json!(1)));
    let hit = &by_scene[&2];
    assert_eq!(hit["event_type"], "hit_keyword");
    let hits: Vec<&Value> =
        hit["msg_list"].as_array().unwrap().iter().filter(|m| m["msgid"] == msgid.as_str()).collect();
    assert_eq!(hits.len(), 1, "{hit}");
    assert_eq!(hits[0]["hit_rule_list"][0]["rule_id"], "rule_refund");
    assert_eq!(hits[0]["msg_detail"]["send_time"], added["send_time"]);
    assert!(!new.to_string().contains("太慢") && !hit.to_string().contains("太慢"), "no content leaves the zone");

    // The next message continues from the stored cursor: only the new record comes.
    let body = json!({"sender": c["follower"], "receivers": [c["external_userid"]], "content": "好的"});
    let second = env.control("messages", body).await;
    let next = pull_once(&env, 1).await;
    assert_eq!(next["msg_list"].as_array().unwrap().len(), 1, "{next}");
    assert_eq!(next["msg_list"][0]["msgid"], second["msgid"]);
    env.settle_jobs().await;
}

#[tokio::test]
async fn consent_events_carry_the_current_agreement() {
    let env = spawn_declared(|_| {}).await;
    let w = env.world().await;
    let c = &w["customers"][3];
    raise(
        &env,
        json!({"event_type": "chat_archive_audit_approved_single", "userid": c["follower"],
                       "external_userid": c["external_userid"]}),
    )
    .await;
    let single = pull_once(&env, 3).await;
    assert_eq!(single["chat_archive_audit_approved"]["external_userid"], c["external_userid"]);
    assert_eq!(single["agreeinfo"][0]["agree_status"], "Agree", "{single}");

    let vip = w["chats"].as_array().unwrap().iter().find(|ch| ch["name"] == "VIP客户服务群").unwrap()["chatid"].clone();
    raise(
        &env,
        json!({"event_type": "chat_archive_audit_approved_room", "chatid": vip,
                       "external_userid": c["external_userid"]}),
    )
    .await;
    let room = pull_once(&env, 4).await;
    assert_eq!(room["chat_archive_audit_approved"]["chatid"], vip);
    let agreed: Vec<&Value> =
        room["agreeinfo"].as_array().unwrap().iter().filter(|a| a["external_userid"] == c["external_userid"]).collect();
    assert_eq!(agreed[0]["agree_status"], "Agree", "{room}");
    env.settle_jobs().await;
}

#[tokio::test]
async fn knowledge_set_events_reach_the_app_with_their_payload() {
    let env = spawn_declared(|_| {}).await;
    let kb = env.world().await["kb_ids"][0].clone();
    let docid = env.sdk("knowledge_base_detail", json!({"kb_id": kb})).await["doc_list"][0]["docid"].clone();
    raise(&env, json!({"event_type": "knowledge_base_learn_done", "knowledge_base_id": kb, "doc_id": docid})).await;
    let learned = pull_once(&env, 8).await;
    assert_eq!(learned["knowledge_base_learn_done"]["doc_id"], docid);
    assert_eq!(learned["knowledge_base_learn_done"]["learn_status"], 0);

    raise(
        &env,
        json!({"event_type": "auth_knowledge_base", "knowledge_base_id": "kbe2e", "knowledge_base_name": "新知识"}),
    )
    .await;
    let auth = pull_once(&env, 5).await;
    assert_eq!(auth["auth_knowledge_base"], json!({"knowledge_base_id": "kbe2e", "knowledge_base_name": "新知识"}));
    raise(&env, json!({"event_type": "unauth_knowledge_base", "knowledge_base_id": "kbe2e"})).await;
    assert_eq!(pull_once(&env, 6).await["unauth_knowledge_base"]["knowledge_base_id"], "kbe2e");
    raise(&env, json!({"event_type": "delete_knowledge_base", "knowledge_base_id": kb})).await;
    assert_eq!(pull_once(&env, 7).await["delete_knowledge_base"]["knowledge_base_id"], kb);
    env.settle_jobs().await;
}

#[tokio::test]
async fn an_export_event_carries_the_finished_jobs_status() {
    let env = spawn_declared(|c| c.local_zone.export_finish_after_ms = 600_000).await;
    let code = env.control("export_code", json!({})).await["code"].clone();
    let job = env.sdk("create_chatdata_export_job", json!({"code": code, "media_id": "TEMPLATE"})).await;
    raise(&env, json!({"event_type": "chat_archive_export_finished", "jobid": job["jobid"]})).await;
    let data = pull_once(&env, 9).await;
    assert_eq!(data["chat_archive_export_finished"]["jobid"], job["jobid"]);
    assert_eq!(data["export_job"]["status"], 3, "{data}");
    assert_eq!(data["export_job"]["result_errcode"], 0);
    assert!(data["export_job"]["result_id"].as_str().is_some_and(|r| !r.is_empty()));
    env.settle_jobs().await;
}

/// Posts an event straight to the program, as WeCom would (re)deliver it; returns the reply.
async fn deliver(env: &TestEnv, event: &Value) -> Value {
    env.open_reply(env.post(&env.seal_callback(2, "", &event.to_string())).await).await
}

#[tokio::test]
async fn an_undocumented_event_type_is_forwarded_with_scene_zero() {
    let env = TestEnv::spawn().await;
    let event = json!({"event_type": "some_future_event", "timestamp": 1_700_000_000, "some_future_event": {"x": 1}});
    assert_eq!(deliver(&env, &event).await, json!({"errcode": 0, "errmsg": "ok"}));
    let data = pull_once(&env, 0).await;
    assert_eq!(data["some_future_event"], json!({"x": 1}));
    env.settle_jobs().await;
}

#[tokio::test]
async fn a_redelivered_event_is_acknowledged_again_but_notified_once() {
    let env = TestEnv::spawn().await;
    let kb = env.world().await["kb_ids"][0].clone();
    let event = json!({"event_type": "auth_knowledge_base", "timestamp": 1_700_000_000,
                       "auth_knowledge_base": {"knowledge_base_id": kb, "knowledge_base_name": "客服知识"}});
    let reordered: Value = serde_json::from_str(&format!(
        r#"{{"auth_knowledge_base":{{"knowledge_base_name":"客服知识","knowledge_base_id":{kb}}},"timestamp":1700000000,"event_type":"auth_knowledge_base"}}"#
    ))
    .unwrap();
    let before = env.zone.data().notify_ids.len();
    for e in [&event, &event, &reordered] {
        assert_eq!(deliver(&env, e).await["errcode"], 0);
    }
    let counts = env.settle_jobs().await;
    assert_eq!(counts.done, 1, "one job for three deliveries");
    assert_eq!(env.zone.data().notify_ids.len(), before + 1, "spec_notify_app was called once");
    pull_once(&env, 5).await;
}

#[tokio::test]
async fn notify_data_survives_a_restart_of_the_program_and_is_still_taken_once() {
    let mut env = TestEnv::spawn().await;
    let w = env.world().await;
    let c = &w["customers"][2];
    let added = env
        .control("messages", json!({"sender": c["external_userid"], "receivers": [c["follower"]], "content": "在吗"}))
        .await;
    let n = env.next_notify().await;
    env.settle_jobs().await;
    env.restart_program(|_| {}).await;
    let data = pull(&env, &n.notify_id).await;
    let ids: Vec<&Value> = data["msg_list"].as_array().unwrap().iter().map(|m| &m["msgid"]).collect();
    assert!(ids.contains(&&added["msgid"]), "{data}");
    // The restarted program keeps serving events, from the stored cursor.
    let next = env
        .control("messages", json!({"sender": c["follower"], "receivers": [c["external_userid"]], "content": "在的"}))
        .await;
    let after = pull_once(&env, 1).await;
    assert_eq!(after["msg_list"].as_array().unwrap().len(), 1);
    assert_eq!(after["msg_list"][0]["msgid"], next["msgid"]);
}

#[tokio::test]
async fn a_bad_event_gets_the_invalid_input_code_and_changes_nothing() {
    let env = TestEnv::spawn().await;
    let before = env.state.store.fingerprint().await.unwrap();
    for bad in ["not json", "[]", r#"{"timestamp":1}"#, r#"{"event_type":7}"#] {
        let reply = env.open_reply(env.post(&env.seal_callback(2, "", bad)).await).await;
        assert_eq!(reply["errcode"], 900_001, "{bad}: {reply}");
    }
    assert_eq!(env.state.store.fingerprint().await.unwrap(), before);
    assert_eq!(env.state.jobs.counts().await.unwrap().unfinished(), 0);
}

#[tokio::test]
async fn an_event_that_arrives_while_the_notify_store_is_full_is_refused_and_changes_nothing() {
    let env = TestEnv::spawn_with(|c| c.program.store.max_notify_entries = 1).await;
    let kb = env.world().await["kb_ids"][0].clone();
    let event = |ts: i64| {
        json!({"event_type": "auth_knowledge_base", "timestamp": ts,
               "auth_knowledge_base": {"knowledge_base_id": kb, "knowledge_base_name": "客服知识"}})
    };
    assert_eq!(deliver(&env, &event(1)).await["errcode"], 0);
    let n = env.next_notify().await;
    env.settle_jobs().await;
    let before = env.state.store.fingerprint().await.unwrap();
    let refused = deliver(&env, &event(2)).await;
    assert_eq!(refused["errcode"], 900_008, "{refused}");
    assert_eq!(env.state.store.fingerprint().await.unwrap(), before);
    // Once the app takes the data, there is room again.
    pull(&env, &n.notify_id).await;
    assert_eq!(deliver(&env, &event(2)).await["errcode"], 0);
    pull_once(&env, 5).await;
}
