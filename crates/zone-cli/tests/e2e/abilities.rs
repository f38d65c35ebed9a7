//! The program's abilities through the app API of the local zone, with the zone checking every call
//! against the protocols `list_abilities` publishes: each `invoke_<api>` once, `get_callback_data`'s
//! codes, `list_abilities` itself, and bad inputs that must change nothing.

use serde_json::{Value, json};
use zone_local::config::AbilityProtocol;
use zone_program::abilities::catalog::{PROGRAM_APIS, SDK_APIS};
use zone_program::config::OutputEnvelope;
use zone_program::sdk::CallContext;
use zone_testkit::DevConfig;

use crate::helpers::{CORP, TestEnv, poll};

/// The app-level reply must be errcode 0; its `response_data` parsed.
pub fn response_data(reply: &Value) -> Value {
    assert_eq!(reply["errcode"], 0, "{reply}");
    serde_json::from_str(reply["response_data"].as_str().unwrap()).expect("response_data is JSON")
}

/// The protocols `list_abilities` publishes for a deployment configured by `tweak`, read from a
/// program that declares none.
pub async fn published_protocols(tweak: impl Fn(&mut DevConfig)) -> Vec<AbilityProtocol> {
    let env = TestEnv::spawn_with(&tweak).await;
    let listed = response_data(&env.app_call("list_abilities", "{}", None).await);
    let listed = match listed.get("output") {
        Some(inner) => inner.clone(),
        None => listed,
    };
    listed["abilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| AbilityProtocol {
            id: a["ability_id"].as_str().unwrap().to_owned(),
            input_protocol: Some(a["input_protocol"].as_str().unwrap().to_owned()),
            output_protocol: Some(a["output_protocol"].as_str().unwrap().to_owned()),
        })
        .collect()
}

/// The local zone and the program, with every ability's published protocols declared in the zone
/// (so a request or an output outside them fails with 790016 / 790014), adjusted by `tweak`.
pub async fn spawn_declared(tweak: impl Fn(&mut DevConfig) + Clone) -> TestEnv {
    let protocols = published_protocols(tweak.clone()).await;
    TestEnv::spawn_with(move |c| {
        tweak(c);
        c.local_zone.abilities = protocols;
    })
    .await
}

fn chat<'a>(world: &'a Value, name: &str) -> &'a Value {
    world["chats"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()
}

/// Two text messages with their unwrapped keys, as a model `msg_list`.
async fn model_msg_list(env: &TestEnv) -> Value {
    let page = env.sdk("sync_msg", json!({"limit": 50})).await;
    let items: Vec<Value> = page["msg_list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["msgtype"] == 1)
        .take(2)
        .map(|m| {
            let key = env.unwrap_secret_key(m["service_encrypt_info"]["encrypted_secret_key"].as_str().unwrap());
            json!({"msgid": m["msgid"], "encrypt_info": {"secret_key": key}})
        })
        .collect();
    assert_eq!(items.len(), 2);
    Value::Array(items)
}

/// Calls `invoke_<api>` through the app API and returns the SDK response it passed through.
async fn invoke(env: &TestEnv, api: &str, request: Value) -> Value {
    let reply = env.app_call(&format!("invoke_{api}"), &request.to_string(), None).await;
    assert_eq!(reply["errcode"], 0, "invoke_{api}: {reply}");
    response_data(&reply)
}

#[tokio::test]
async fn every_invoke_ability_passes_its_sdk_response_through_within_the_published_protocols() {
    // The program's own APIs are abilities only when listed (README "Reliability and security").
    let env = spawn_declared(|c| {
        c.program.abilities.expose_program_apis = PROGRAM_APIS.iter().map(|s| s.to_string()).collect();
    })
    .await;
    let w = env.world().await;
    let c = &w["customers"];
    let internal = chat(&w, "产品讨论组")["chatid"].clone();
    let vip = chat(&w, "VIP客户服务群")["chatid"].clone();
    let staff = w["staff"][0]["userid"].clone();
    let msg_list = model_msg_list(&env).await;
    let mut done: Vec<&str> = Vec::new();
    let mut ok = |api: &'static str, reply: &Value| {
        assert_eq!(reply["errcode"], 0, "{api}: {reply}");
        done.push(api);
    };

    ok("sync_msg", &invoke(&env, "sync_msg", json!({"limit": 5})).await);
    let paged = env.sdk("sync_msg", json!({"limit": 5, "mode": 1})).await;
    let page_id = paged["page_id_list"][0].clone();
    ok("get_msg_list_by_page_id", &invoke(&env, "get_msg_list_by_page_id", json!({"page_id": page_id})).await);
    ok("get_group_chat", &invoke(&env, "get_group_chat", json!({"chatid": internal})).await);
    let pair = json!({"userid": c[0]["follower"], "external_userid": c[0]["external_userid"]});
    ok("get_agree_status_single", &invoke(&env, "get_agree_status_single", json!({"item": [pair]})).await);
    ok("get_agree_status_room", &invoke(&env, "get_agree_status_room", json!({"chatid": vip})).await);
    let hide = json!({"userid": staff, "config": {"hide_mobile": true, "hide_idcard": false, "hide_bankno": false}});
    ok("set_hide_sensitiveinfo_config", &invoke(&env, "set_hide_sensitiveinfo_config", hide).await);
    let got = invoke(&env, "get_hide_sensitiveinfo_config", json!({"userid": staff})).await;
    assert_eq!(got["config"]["hide_mobile"], true, "the set took effect");
    ok("get_hide_sensitiveinfo_config", &got);
    ok("search_chat", &invoke(&env, "search_chat", json!({"query_word": "VIP"})).await);
    ok("search_msg", &invoke(&env, "search_msg", json!({"query_word": "退款"})).await);
    let who = json!({"query_word": "zhang", "query_user_type": 1});
    ok("search_contact_or_customer", &invoke(&env, "search_contact_or_customer", who).await);
    let rule = json!({"name": "e2e退货", "keyword": {"word_list": ["退货"]}});
    let created = invoke(&env, "create_rule", rule).await;
    let rule_id = created["rule_id"].clone();
    ok("create_rule", &created);
    ok("get_rule_list", &invoke(&env, "get_rule_list", json!({"limit": 10})).await);
    ok("get_rule_detail", &invoke(&env, "get_rule_detail", json!({"rule_id": rule_id})).await);
    ok("update_rule", &invoke(&env, "update_rule", json!({"rule_id": rule_id, "name": "e2e换货"})).await);
    ok("delete_rule", &invoke(&env, "delete_rule", json!({"rule_id": rule_id})).await);
    ok("get_hit_msg_list", &invoke(&env, "get_hit_msg_list", json!({"limit": 10, "need_detail": 1})).await);
    ok("knowledge_base_list", &invoke(&env, "knowledge_base_list", json!({})).await);
    ok("document_list", &invoke(&env, "document_list", json!({})).await);
    let kb_req = json!({"kb_name": "e2e知识", "doc_list": [{"doc_name": "官网", "type": 101, "web_url": "https://example.com"}]});
    let kb = invoke(&env, "knowledge_base_create", kb_req).await;
    let kb_id = kb["kb_id"].clone();
    ok("knowledge_base_create", &kb);
    ok("knowledge_base_detail", &invoke(&env, "knowledge_base_detail", json!({"kb_id": kb_id})).await);
    let doc = json!({"kb_id": kb_id, "doc_list": [{"doc_name": "a.docx", "type": 6, "file_media_id": "M"}]});
    let added = invoke(&env, "knowledge_base_add_doc", doc).await;
    ok("knowledge_base_add_doc", &added);
    let docid = added["doc_list"][0]["docid"].clone();
    let remove = json!({"kb_id": kb_id, "docid_list": [docid]});
    ok("knowledge_base_remove_doc", &invoke(&env, "knowledge_base_remove_doc", remove).await);
    let rename = json!({"kb_id": kb_id, "kb_name": "新名字"});
    ok("knowledge_base_modify_name", &invoke(&env, "knowledge_base_modify_name", rename).await);
    ok("knowledge_base_delete", &invoke(&env, "knowledge_base_delete", json!({"kb_id": kb_id})).await);
    let code = env.control("export_code", json!({})).await["code"].clone();
    let export = invoke(&env, "create_chatdata_export_job", json!({"code": code, "media_id": "TEMPLATE"})).await;
    ok("create_chatdata_export_job", &export);
    let status = invoke(&env, "get_chatdata_export_job_status", json!({"jobid": export["jobid"]})).await;
    ok("get_chatdata_export_job_status", &status);

    let group = w["tag_groups"][0]["group_id"].clone();
    let kb_seeded = w["kb_ids"][0].clone();
    let models = [
        ("create_sentiment_task", "get_sentiment_result", json!({"msg_list": msg_list})),
        ("create_summary_task", "get_summary_result", json!({"msg_list": msg_list})),
        (
            "create_customer_tag_task",
            "get_customer_tag_result",
            json!({"tag_group_list": [{"group_id": group}], "msg_list": msg_list}),
        ),
        (
            "create_recommend_dialog_task",
            "get_recommend_dialog_result",
            json!({"kb_id": kb_seeded, "msg_list": msg_list}),
        ),
        ("create_ww_model_task", "get_ww_model_result", json!({"ability_id": "qa", "msg_list": msg_list})),
        ("create_spam_task", "get_spam_result", json!({"msg_list": msg_list})),
    ];
    for (create, result, request) in models {
        let created = invoke(&env, create, request).await;
        ok(create, &created);
        let finished =
            poll(|| async { invoke(&env, result, json!({"jobid": created["jobid"]})).await }, |v| v["status"] != 0)
                .await;
        assert_eq!(finished["status"], 1, "{result}: {finished}");
        ok(result, &finished);
    }
    // The own model and own program are played by this program: list_abilities, run as a task.
    let own_model = json!({"model_id": w["own_model_id"], "ability_id": "list_abilities", "msg_list": msg_list});
    let own_program =
        json!({"program_id": crate::helpers::PROGRAM, "ability_id": "list_abilities", "msg_list": msg_list});
    let owns = [
        ("create_model_task", "get_model_task_result", own_model.clone()),
        ("create_private_task", "get_private_task_result", own_model),
        ("create_program_task", "get_program_task_result", own_program),
    ];
    for (create, result, request) in owns {
        let created = invoke(&env, create, request).await;
        ok(create, &created);
        let reported = poll(
            || async { invoke(&env, result, json!({"jobid": created["jobid"]})).await },
            |v| v.get("response_errcode").is_some() || v["errcode"] != 0,
        )
        .await;
        assert_eq!(reported["response_errcode"], 0, "{result}: {reported}");
        let listed: Value = serde_json::from_str(reported["response_data"].as_str().unwrap()).unwrap();
        assert!(listed["abilities"].as_array().unwrap().len() > 40, "{result}: the program's own report");
        ok(result, &reported);
    }

    // Plumbing APIs pass the SDK's answer through, errors included: a sync call has no job to report.
    let report = invoke(&env, "program_async_job_call_back", json!({"errcode": 0, "result": "{}"})).await;
    assert_eq!(report["errcode"], 40058, "the SDK's own errcode, unchanged: {report}");
    done.push("program_async_job_call_back");
    let notified = invoke(&env, "spec_notify_app", json!({"notify_id": "NID-invoke-e2e", "notify_scene": 200})).await;
    assert_eq!(notified["notify_id"], "NID-invoke-e2e");
    done.push("spec_notify_app");
    // Other notifications (of the tasks above) may still be on their way; this one must arrive too.
    let mut seen = Vec::new();
    let pushed = loop {
        let n = env.next_notify().await;
        if n.notify_id == "NID-invoke-e2e" {
            break n;
        }
        seen.push(n.notify_id);
        assert!(seen.len() < 8, "spec_notify_app's notify never came: {seen:?}");
    };
    assert_eq!(pushed.notify_scene, Some(200));

    for api in SDK_APIS {
        assert!(done.contains(&api.name), "invoke_{} was not exercised", api.name);
    }
    assert_eq!(done.len(), SDK_APIS.len());
    env.settle_jobs().await;
}

#[tokio::test]
async fn the_pass_through_returns_the_sdk_text_byte_for_byte() {
    let env = TestEnv::spawn().await;
    let w = env.world().await;
    let request = json!({"chatid": chat(&w, "产品讨论组")["chatid"]}).to_string();
    let ctx = CallContext { corp_id: CORP.into(), agent_id: 1_000_002, ..CallContext::default() };
    let direct = env.state.sdk.invoke(&ctx, "get_group_chat", &request).await.unwrap();
    let reply = env.app_call("invoke_get_group_chat", &request, None).await;
    assert_eq!(reply["response_data"].as_str().unwrap(), direct);
    let wrapped = env.app_call("invoke_get_group_chat", &format!(r#"{{"input":{request}}}"#), None).await;
    assert_eq!(wrapped["response_data"].as_str().unwrap(), direct, "the input envelope is accepted");
}

#[tokio::test]
async fn list_abilities_describes_every_ability_with_parsable_protocols() {
    let env = TestEnv::spawn().await;
    let listed = response_data(&env.app_call("list_abilities", "{}", None).await);
    assert_eq!(listed["output_envelope"], "bare");
    let abilities = listed["abilities"].as_array().unwrap();
    // The program's own APIs are not offered unless abilities.expose_program_apis lists them.
    assert_eq!(abilities.len(), SDK_APIS.len() - PROGRAM_APIS.len() + 6);
    for a in abilities {
        for key in ["input_protocol", "output_protocol"] {
            let proto: Value = serde_json::from_str(a[key].as_str().unwrap()).unwrap();
            assert!(proto.is_object(), "{a}");
        }
        let output: Value = serde_json::from_str(a["output_protocol"].as_str().unwrap()).unwrap();
        assert_eq!((output["errcode"].clone(), output["errmsg"].clone()), (json!(0), json!("ok")), "{a}");
    }
    let ids: Vec<&str> = abilities.iter().map(|a| a["ability_id"].as_str().unwrap()).collect();
    for id in [
        "get_callback_data",
        "list_abilities",
        "chat_digest",
        "keyword_report",
        "customer_profile",
        "reply_suggestions",
    ] {
        assert!(ids.contains(&id), "{id}");
    }
}

#[tokio::test]
async fn the_output_envelope_wraps_every_output_and_its_published_protocol() {
    let envelope = |c: &mut DevConfig| c.program.abilities.output_envelope = OutputEnvelope::Output;
    let env = spawn_declared(envelope).await;
    let listed = response_data(&env.app_call("list_abilities", "{}", None).await);
    assert_eq!(listed["output"]["output_envelope"], "output");
    let missing_notify = response_data(&env.app_call("get_callback_data", "{}", None).await);
    assert_eq!(missing_notify["output"]["errcode"], 900_007, "errors are wrapped too: {missing_notify}");
    let w = env.world().await;
    let request = json!({"chatid": chat(&w, "产品讨论组")["chatid"]});
    let group = response_data(&env.app_call("invoke_get_group_chat", &request.to_string(), None).await);
    assert_eq!(group["output"]["errcode"], 0, "{group}");
}

#[tokio::test]
async fn get_callback_data_names_a_missing_an_unknown_and_a_malformed_notify_id() {
    let env = TestEnv::spawn().await;
    let missing = response_data(&env.app_call("get_callback_data", "{}", None).await);
    assert_eq!(missing["errcode"], 900_007, "{missing}");
    // A notify_id the zone issued (so the app may use it) under which the program stored nothing.
    env.sdk("spec_notify_app", json!({"notify_id": "NID-not-stored"})).await;
    env.next_notify().await;
    let unknown = response_data(&env.app_call("get_callback_data", "{}", Some("NID-not-stored")).await);
    assert_eq!(unknown["errcode"], 900_004, "{unknown}");
    // Straight to the program: a notify_id no app could hold.
    let msg = json!({"corp_id": CORP, "agent_id": 1_000_002, "call_type": 1, "ability_id": "get_callback_data",
                     "notify_id": "has space", "data": "{}"});
    let sealed = env.wecom.seal(msg.to_string().as_bytes(), CORP);
    let malformed = env.open_reply(env.post(&sealed).await).await;
    assert_eq!(malformed["errcode"], 900_007, "{malformed}");
}

#[tokio::test]
async fn notify_data_past_its_ttl_is_reported_expired() {
    let env = TestEnv::spawn_with(|c| c.program.store.notify_ttl_secs = 1).await;
    let w = env.world().await;
    let c = &w["customers"][0];
    env.control("messages", json!({"sender": c["external_userid"], "receivers": [c["follower"]], "content": "你好"}))
        .await;
    let notified = env.next_notify().await;
    // Unread until its second is over.
    poll(|| async { json!(env.state.store.notify_stats().await.unwrap().live) }, |v| v == 0).await;
    let expired = response_data(&env.app_call("get_callback_data", "{}", Some(&notified.notify_id)).await);
    assert_eq!(expired["errcode"], 900_005, "{expired}");
}

/// A request that must be refused with `code` and change nothing in the program's store.
async fn refused(env: &TestEnv, ability: &str, request_data: &str, notify_id: Option<&str>, code: i64) {
    let before = env.state.store.fingerprint().await.unwrap();
    let reply = response_data(&env.app_call(ability, request_data, notify_id).await);
    assert_eq!(reply["errcode"], code, "{ability} {request_data}: {reply}");
    assert!(reply["errmsg"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(!reply.to_string().contains("SECRET"), "no input value is echoed: {reply}");
    assert_eq!(env.state.store.fingerprint().await.unwrap(), before, "{ability} {request_data} changed the store");
}

#[tokio::test]
async fn bad_inputs_get_their_code_and_change_nothing() {
    let env = TestEnv::spawn_with(|c| c.program.abilities.max_input_bytes = 4096).await;
    // Store something first, so that "nothing changed" is a real claim.
    let w = env.world().await;
    let c = &w["customers"][0];
    env.control("messages", json!({"sender": c["external_userid"], "receivers": [c["follower"]], "content": "在吗"}))
        .await;
    let notified = env.next_notify().await;
    env.settle_jobs().await;
    let nid = Some(notified.notify_id.as_str());

    refused(&env, "get_callback_data", r#"{"unexpected":"SECRET"}"#, nid, 900_001).await;
    refused(&env, "get_callback_data", r#"{"input":{"x":1}}"#, nid, 900_001).await;
    refused(&env, "get_callback_data", "[1,2]", nid, 900_001).await;
    refused(&env, "get_callback_data", "{}", None, 900_007).await;
    refused(&env, "chat_digest", r#"{"chatid":"wr1","max_messages":"SECRET"}"#, None, 900_001).await;
    refused(&env, "chat_digest", r#"{"chatid":"wr1","participants":["a","b"]}"#, None, 900_001).await;
    refused(&env, "chat_digest", r#"{"chatid":"wr1","start_time":10,"end_time":5}"#, None, 900_001).await;
    refused(&env, "customer_profile", r#"{"tag_group_ids":["G1"]}"#, None, 900_001).await;
    let many_groups = json!({"external_userid": "wm1", "tag_group_ids": vec!["G"; 101]}).to_string();
    refused(&env, "customer_profile", &many_groups, None, 900_002).await;
    refused(&env, "reply_suggestions", &json!({"kb_id": "k".repeat(200), "chatid": "wr1"}).to_string(), None, 900_002)
        .await;
    refused(&env, "keyword_report", r#"{"rule_id":["SECRET"]}"#, None, 900_001).await;
    let oversize = json!({"limit": 1, "pad": "x".repeat(5000)}).to_string();
    refused(&env, "invoke_sync_msg", &oversize, None, 900_002).await;
    refused(&env, "invoke_sync_msg", "not json SECRET", None, 900_001).await;
    refused(&env, "no_such_ability", "{}", None, 900_003).await;

    // An async call with bad input is refused before anything is recorded.
    let counts = env.state.jobs.counts().await.unwrap();
    let before = env.state.store.fingerprint().await.unwrap();
    let answered = || env.state.metrics.callbacks_answered.load(std::sync::atomic::Ordering::SeqCst);
    let answered_before = answered();
    let jobid =
        env.app_async("chat_digest", r#"{"chatid":"wr1","bogus":1}"#).await["jobid"].as_str().unwrap().to_owned();
    poll(|| async { json!(answered()) }, |v| v.as_u64() > Some(answered_before)).await;
    assert_eq!(env.state.store.fingerprint().await.unwrap(), before);
    assert_eq!(env.state.jobs.counts().await.unwrap(), counts);
    let refused = env.await_async_result(&jobid).await;
    assert_eq!(refused["response_errcode"].as_i64(), Some(900_001), "nothing ran; the refusal is reported: {refused}");

    // The stored data is still there, once.
    let data = response_data(&env.app_call("get_callback_data", "{}", nid).await);
    assert_eq!(data["event_type"], "conversation_new_message", "{data}");
}

#[tokio::test]
async fn list_abilities_describes_one_ability_when_asked_and_refuses_an_unknown_one() {
    let env = spawn_declared(|_| {}).await;
    let all = response_data(&env.app_call("list_abilities", "{}", None).await);
    let everything = all["abilities"].as_array().unwrap().len();
    assert!(everything > 40, "{everything}");
    let one = response_data(&env.app_call("list_abilities", r#"{"ability_id":"invoke_sync_msg"}"#, None).await);
    let listed = one["abilities"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{one}");
    let from_all = all["abilities"].as_array().unwrap().iter().find(|a| a["ability_id"] == "invoke_sync_msg");
    assert_eq!(Some(&listed[0]), from_all, "the same description as in the whole list");
    assert_eq!((one["errcode"].as_i64(), one["output_envelope"].as_str()), (Some(0), Some("bare")));
    let empty = response_data(&env.app_call("list_abilities", r#"{"ability_id":""}"#, None).await);
    assert_eq!(empty["abilities"].as_array().unwrap().len(), everything, "an empty id lists every ability");
    let unknown = response_data(&env.app_call("list_abilities", r#"{"ability_id":"no_such_ability"}"#, None).await);
    assert_eq!(unknown["errcode"], 900_001, "{unknown}");
    let long = json!({ "ability_id": "x".repeat(129) }).to_string();
    assert_eq!(response_data(&env.app_call("list_abilities", &long, None).await)["errcode"], 900_001);
}

/// A sync output over `abilities.max_reply_bytes` is answered 900011 (the size limit of a
/// `sync_call_program` response is undocumented); a smaller one passes unchanged.
#[tokio::test]
async fn an_output_over_the_reply_size_guard_is_answered_900011() {
    let env = TestEnv::spawn_with(|c| c.program.abilities.max_reply_bytes = 4096).await;
    let small = response_data(&env.app_call("invoke_sync_msg", r#"{"limit":1}"#, None).await);
    assert_eq!(small["errcode"], 0, "{small}");
    let big = response_data(&env.app_call("invoke_sync_msg", r#"{"limit":100}"#, None).await);
    assert_eq!(big["errcode"], 900_011, "{big}");
    assert!(big.get("msg_list").is_none(), "nothing of the oversized output is sent");
}
