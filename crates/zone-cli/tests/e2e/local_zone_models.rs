//! The local zone's model tasks through the program's SDK backend: create → jobid → running → done
//! or failed, per-message failures, deterministic emulated results, and the own model and own
//! program played by the program (reported through `program_async_job_call_back`).

use serde_json::{Value, json};
use zone_program::sdk::CallContext;

use crate::helpers::{CORP, PROGRAM, TestEnv, poll};

/// Archives a customer message with `content` and returns `(msgid, secret_key)`, the key unwrapped
/// from `sync_msg`'s `encrypted_secret_key` as the app would.
async fn message(env: &TestEnv, content: &str, msgtype: i64) -> (String, String) {
    let w = env.world().await;
    let c = &w["customers"][0];
    let body = json!({"sender": c["external_userid"], "receivers": [c["follower"]], "content": content,
                      "msgtype": msgtype, "raise_event": false});
    let added = env.control("messages", body).await;
    let msgid = added["msgid"].as_str().unwrap().to_owned();
    let page = env.sdk("sync_msg", json!({"begin_time": added["send_time"], "limit": 1000})).await;
    let item = page["msg_list"].as_array().unwrap().iter().find(|m| m["msgid"] == msgid.as_str()).unwrap().clone();
    (msgid, env.unwrap_secret_key(item["service_encrypt_info"]["encrypted_secret_key"].as_str().unwrap()))
}

fn entry((msgid, key): &(String, String)) -> Value {
    json!({"msgid": msgid, "encrypt_info": {"secret_key": key}})
}

/// Polls `api` with the jobid until `status` leaves 0; asserts it was 0 at first.
async fn finished(env: &TestEnv, api: &str, jobid: &Value) -> Value {
    assert_eq!(env.sdk(api, json!({"jobid": jobid})).await["status"], 0, "running at first");
    poll(|| env.sdk(api, json!({"jobid": jobid})), |v| v["status"] != 0).await
}

#[tokio::test]
async fn sentiment_is_per_message_with_failures_listed_and_duplicates_refused_at_creation() {
    let env = TestEnv::spawn().await;
    let pos = message(&env, "服务很满意，谢谢", 1).await;
    let neg = message(&env, "我要投诉，太慢了", 1).await;
    let file = message(&env, "文件：合同.pdf", 8).await;
    let wrong_key = (pos.0.clone(), "not-the-key".to_owned());
    let list = json!([entry(&pos), entry(&neg), entry(&pos), entry(&file),
                      {"msgid": "nope", "encrypt_info": {"secret_key": "k"}}]);
    let created = env.sdk("create_sentiment_task", json!({"msg_list": list})).await;
    assert_eq!(created["errcode"], 0, "{created}");
    assert_eq!(created["fail_list"].as_array().unwrap().len(), 1, "the duplicate: {created}");
    assert_eq!(created["fail_list"][0]["errcode"], 710_601);
    let done = finished(&env, "get_sentiment_result", &created["jobid"]).await;
    assert_eq!(done["status"], 1);
    let results = done["analyze_result_list"].as_array().unwrap();
    let sentiments: Vec<Value> = results.iter().map(|r| r["sentiment_result"].clone()).collect();
    assert_eq!(sentiments, [json!(1), json!(2), Value::Null, Value::Null], "{done}");
    assert_eq!(results[2]["errcode"], 710_601, "not text");
    assert_eq!(done["fail_list"].as_array().unwrap().len(), 2);

    let bad_key = env.sdk("create_sentiment_task", json!({"msg_list": [entry(&wrong_key)]})).await;
    let done = finished(&env, "get_sentiment_result", &bad_key["jobid"]).await;
    assert_eq!(done["analyze_result_list"][0]["errcode"], 710_601, "a wrong secret_key fails the message");

    let many: Vec<Value> =
        (0..1001).map(|i| json!({"msgid": format!("m{i}"), "encrypt_info": {"secret_key": "k"}})).collect();
    assert_eq!(env.sdk("create_sentiment_task", json!({"msg_list": many})).await["errcode"], 40058);
    assert_eq!(env.sdk("create_sentiment_task", json!({"msg_list": [{"msgid": "m"}]})).await["errcode"], 40058);
    assert_eq!(env.sdk("get_sentiment_result", json!({"jobid": "JOBnope"})).await["errcode"], 40058);
    assert_eq!(
        env.sdk("get_summary_result", json!({"jobid": created["jobid"]})).await["errcode"],
        40058,
        "another family"
    );
}

#[tokio::test]
async fn a_summary_is_extractive_and_deterministic() {
    let env = TestEnv::spawn().await;
    let a = message(&env, "你好，我想咨询一下这款产品的价格", 1).await;
    let b = message(&env, "好的", 1).await;
    let req = json!({"msg_list": [entry(&a), entry(&b)]});
    let one = env.sdk("create_summary_task", req.clone()).await;
    let two = env.sdk("create_summary_task", req).await;
    let r1 = finished(&env, "get_summary_result", &one["jobid"]).await;
    let r2 = finished(&env, "get_summary_result", &two["jobid"]).await;
    let text = r1["response_data"].as_str().unwrap();
    assert!(text.starts_with("【本地模拟摘要】") && text.contains("咨询一下这款产品的价格"), "{text}");
    assert_eq!(r1["response_data"], r2["response_data"]);
    assert_eq!(env.sdk("create_summary_task", json!({})).await["errcode"], 40058);
    let many: Vec<Value> = (0..1001).map(|_| entry(&a)).collect();
    assert_eq!(env.sdk("create_summary_task", json!({"msg_list": many})).await["errcode"], 40058, "≤ 1000 in total");
}

#[tokio::test]
async fn customer_tags_match_tag_words_and_report_unknown_groups() {
    let env = TestEnv::spawn().await;
    let m = message(&env, "这个价格可以的话我就下单，但上次的退款还没到", 1).await;
    let groups = json!([{"group_id": "etgroup_intent"}, {"group_id": "etgroup_issue"}, {"group_id": "nope"}]);
    let created = env.sdk("create_customer_tag_task", json!({"tag_group_list": groups, "msg_list": [entry(&m)]})).await;
    assert_eq!(created["fail_tag_group_id_list"], json!(["nope"]));
    let done = finished(&env, "get_customer_tag_result", &created["jobid"]).await;
    assert_eq!(
        done["tag_result_list"],
        json!([{"group_id": "etgroup_intent", "tag_id": "ettag_high"},
                                                {"group_id": "etgroup_issue", "tag_id": "ettag_refund"}])
    );
    assert_eq!(env.sdk("create_customer_tag_task", json!({"msg_list": [entry(&m)]})).await["errcode"], 40058);
}

#[tokio::test]
async fn a_reply_recommendation_needs_a_knowledge_set_and_is_grounded_in_it() {
    let env = TestEnv::spawn().await;
    let m = message(&env, "请问退款多久到账？", 1).await;
    let created =
        env.sdk("create_recommend_dialog_task", json!({"kb_id": "kblocalfaq0001", "msg_list": [entry(&m)]})).await;
    let done = finished(&env, "get_recommend_dialog_result", &created["jobid"]).await;
    assert!(done["response_data"].as_str().unwrap().contains("退款3个工作日"), "{done}");
    assert_eq!(env.sdk("create_recommend_dialog_task", json!({"msg_list": [entry(&m)]})).await["errcode"], 40058);
    let unknown = json!({"kb_id": "kbnope", "msg_list": [entry(&m)]});
    assert_eq!(env.sdk("create_recommend_dialog_task", unknown).await["errcode"], 40058);
}

#[tokio::test]
async fn the_general_model_takes_var_args_and_fails_with_790040_over_the_input_limit() {
    let env = TestEnv::spawn().await;
    let m = message(&env, "产品很好，谢谢", 1).await;
    let req = json!({"ability_id": "qa", "kb_id": "kblocalprod0002", "kb_retrieval_words": "优惠",
                     "msg_list": [entry(&m)], "var_args": [{"name": "task", "value": "数据分析"}]});
    let created = env.sdk("create_ww_model_task", req).await;
    let done = finished(&env, "get_ww_model_result", &created["jobid"]).await;
    let text = done["response_data"].as_str().unwrap();
    assert!(text.contains("task=数据分析") && text.contains("正面 1 条"), "{text}");
    let long = message(&env, &"a".repeat(30_001), 1).await;
    let created = env.sdk("create_ww_model_task", json!({"ability_id": "qa", "msg_list": [entry(&long)]})).await;
    let failed = finished(&env, "get_ww_model_result", &created["jobid"]).await;
    assert_eq!((failed["status"].as_i64(), failed["errcode"].as_i64()), (Some(2), Some(790_040)), "{failed}");
    let args: Vec<Value> = (0..51).map(|i| json!({"name": format!("v{i}"), "value": "x"})).collect();
    assert_eq!(env.sdk("create_ww_model_task", json!({"ability_id": "qa", "var_args": args})).await["errcode"], 40058);
    assert_eq!(env.sdk("create_ww_model_task", json!({"msg_list": [entry(&m)]})).await["errcode"], 40058);
}

#[tokio::test]
async fn spam_results_follow_the_marker_phrases() {
    let env = TestEnv::spawn().await;
    let clean = message(&env, "你好", 1).await;
    let political = message(&env, "【示例违规内容：政治敏感】", 1).await;
    let porn = message(&env, "【示例违规内容：色情】", 1).await;
    let created =
        env.sdk("create_spam_task", json!({"msg_list": [entry(&clean), entry(&political), entry(&porn)]})).await;
    let done = finished(&env, "get_spam_result", &created["jobid"]).await;
    let results: Vec<i64> =
        done["analyze_result_list"].as_array().unwrap().iter().map(|r| r["spam_result"].as_i64().unwrap()).collect();
    assert_eq!(results, [0, 1, 2]);
    assert_eq!(env.sdk("get_spam_result", json!({})).await["errcode"], 40058);
}

/// Reports a result for the task whose jobid is `jobid`, as the program would.
async fn report(env: &TestEnv, jobid: &str, ability: &str, result: &str) -> Value {
    let job_info = env.zone.data().program_jobs[jobid].job_info.clone();
    let ctx = CallContext { corp_id: CORP.into(), agent_id: 1_000_002, ability_id: ability.into(), job_info };
    env.sdk_in(&ctx, "program_async_job_call_back", &json!({"errcode": 0, "result": result})).await.unwrap()
}

#[tokio::test]
async fn the_own_model_task_reaches_the_program_and_returns_what_it_reports() {
    let env = TestEnv::spawn().await;
    let m = message(&env, "公司几点上班？", 1).await;
    let req = json!({"model_id": "zm_local_demo", "ability_id": "qa", "kb_id": "kblocalfaq0001", "msg_list": [entry(&m)], "escape_type": 1});
    let created = env.sdk("create_model_task", req).await;
    let jobid = created["jobid"].as_str().unwrap().to_owned();
    let running = env.sdk("get_model_task_result", json!({"jobid": jobid})).await;
    assert!(running.get("response_data").is_none(), "{running}");
    poll(
        || async { json!(env.state.metrics.callbacks_answered.load(std::sync::atomic::Ordering::SeqCst)) },
        |v| v == 1,
    )
    .await;
    assert_eq!(
        report(&env, &jobid, "qa", r#"{"result":"九点","input_token":83,"total_token":199}"#).await["errcode"],
        0
    );
    let done = env.sdk("get_private_task_result", json!({"jobid": jobid})).await;
    assert_eq!(done["response_errcode"], 0, "{done}");
    assert_eq!(done["response_data"], r#"{"result":"九点","input_token":83,"total_token":199}"#);
    assert_eq!(
        env.sdk("get_program_task_result", json!({"jobid": jobid})).await["errcode"],
        40058,
        "not a program task"
    );
    let wrong = json!({"model_id": "zm_other", "ability_id": "qa", "msg_list": [entry(&m)]});
    assert_eq!(env.sdk("create_model_task", wrong).await["errcode"], 40058);
    let bad_debug =
        json!({"model_id": "zm_local_demo", "ability_id": "qa", "msg_list": [entry(&m)], "debug_info": {"chat": "x"}});
    assert_eq!(env.sdk("create_model_task", bad_debug).await["errcode"], 40058);
    let bad_escape =
        json!({"model_id": "zm_local_demo", "ability_id": "qa", "msg_list": [entry(&m)], "escape_type": 2});
    assert_eq!(env.sdk("create_model_task", bad_escape).await["errcode"], 40058);
}

#[tokio::test]
async fn the_own_program_task_fails_when_the_program_cannot_be_reached() {
    let env = TestEnv::spawn().await;
    let m = message(&env, "你好", 1).await;
    let req = json!({"program_id": PROGRAM, "ability_id": "stats", "msg_list": [entry(&m)]});
    let ok = env.sdk("create_program_task", req.clone()).await;
    let jobid = ok["jobid"].as_str().unwrap().to_owned();
    poll(
        || async { json!(env.state.metrics.callbacks_answered.load(std::sync::atomic::Ordering::SeqCst)) },
        |v| v == 1,
    )
    .await;
    report(&env, &jobid, "stats", r#"{"avg_reply_time":8}"#).await;
    let done = env.sdk("get_program_task_result", json!({"jobid": jobid})).await;
    assert_eq!(done["response_data"], r#"{"avg_reply_time":8}"#);

    *env.zone.program_url.write().unwrap() = "http://127.0.0.1:1".into();
    let lost = env.sdk("create_program_task", req).await["jobid"].clone();
    let failed = poll(|| env.sdk("get_program_task_result", json!({"jobid": lost})), |v| v["errcode"] != 0).await;
    assert_eq!(failed["errcode"], 710_674);
    let other = json!({"program_id": "zp_other", "ability_id": "stats", "msg_list": [entry(&m)]});
    assert_eq!(env.sdk("create_program_task", other).await["errcode"], 40058);
}
