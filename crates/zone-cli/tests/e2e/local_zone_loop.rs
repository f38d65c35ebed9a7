//! The whole loops, with no program-side shortcut: the app, the local zone and the real program.
//! - an event: a new message → `conversation_new_message` → the program pulls with the token →
//!   `spec_notify_app` → `program_notify` at the app receiver → `get_callback_data` with its notify_id;
//! - an async app call: `async_program_task` → the program's job → `program_async_job_call_back` →
//!   `async_program_result`;
//! - an own-program task: SDK `create_program_task` → the program (async) → its report →
//!   `get_program_task_result`.

use serde_json::{Value, json};
use zone_local::config::AbilityProtocol;

use crate::helpers::{PROGRAM, TestEnv, poll};

fn response_data(reply: &Value) -> Value {
    assert_eq!(reply["errcode"], 0, "{reply}");
    serde_json::from_str(reply["response_data"].as_str().unwrap()).expect("response_data is JSON")
}

#[tokio::test]
async fn a_new_message_reaches_the_app_through_the_event_the_program_and_program_notify() {
    let env = TestEnv::spawn().await;
    let w = env.world().await;
    let c = &w["customers"][0];
    let added = env
        .control("messages", json!({"sender": c["external_userid"], "receivers": [c["follower"]], "content": "在吗"}))
        .await;
    assert_eq!(added["event_ack"]["errcode"], 0, "{added}");
    let notified = env.next_notify().await;
    assert_eq!(notified.notify_scene, Some(1), "conversation_new_message");
    let data = response_data(&env.app_call("get_callback_data", "{}", Some(&notified.notify_id)).await);
    assert_eq!(data["event_type"], "conversation_new_message", "{data}");
    let ids: Vec<&str> = data["msg_list"].as_array().unwrap().iter().map(|m| m["msgid"].as_str().unwrap()).collect();
    assert!(ids.contains(&added["msgid"].as_str().unwrap()), "the new message is in the pulled data");
    assert!(!data.to_string().contains("在吗"), "no content leaves the zone");
    let again = response_data(&env.app_call("get_callback_data", "{}", Some(&notified.notify_id)).await);
    assert_eq!(again["errcode"], 900_006, "notify data is taken once: {again}");
}

#[tokio::test]
async fn an_async_app_call_is_run_by_the_program_and_its_result_read_back() {
    let env = TestEnv::spawn().await;
    let reply = env.app_async("invoke_search_chat", r#"{"query_word":"VIP"}"#).await;
    let jobid = reply["jobid"].as_str().unwrap().to_owned();
    let done = env.await_async_result(&jobid).await;
    assert_eq!(done["response_errcode"].as_i64(), Some(0), "{done}");
    assert_eq!(done.as_object().unwrap().len(), 4, "exactly errcode, errmsg, response_errcode, response_data: {done}");
    let data: Value = serde_json::from_str(done["response_data"].as_str().unwrap()).unwrap();
    assert_eq!(data["chat_list"].as_array().unwrap().len(), 1, "{data}");
}

#[tokio::test]
async fn an_own_program_task_is_run_by_the_program_and_its_report_read_back() {
    let env = TestEnv::spawn_with(|c| {
        c.local_zone.abilities = vec![AbilityProtocol {
            id: "list_abilities".into(),
            input_protocol: Some("{}".into()),
            output_protocol: None,
        }];
    })
    .await;
    let jobid = json!(create_list_abilities_task(&env).await);
    let running = env.sdk("get_program_task_result", json!({"jobid": jobid})).await;
    assert!(running.get("status").is_none(), "no status field, running or not: {running}");
    let done =
        poll(|| env.sdk("get_program_task_result", json!({"jobid": jobid})), |v| v.get("response_errcode").is_some())
            .await;
    assert!(done.get("status").is_none(), "{done}");
    assert_eq!(done["response_errcode"], 0, "{done}");
    let data: Value = serde_json::from_str(done["response_data"].as_str().unwrap()).unwrap();
    assert!(data.to_string().contains("get_callback_data"), "the program's own list of abilities: {data}");
}

/// SDK `create_program_task` of `list_abilities` over the first listed message (its key unwrapped
/// as the program would); returns the task's jobid.
async fn create_list_abilities_task(env: &TestEnv) -> String {
    let page = env.sdk("sync_msg", json!({"limit": 1})).await;
    let m = &page["msg_list"][0];
    let key = env.unwrap_secret_key(m["service_encrypt_info"]["encrypted_secret_key"].as_str().unwrap());
    let entry = json!({"msgid": m["msgid"], "encrypt_info": {"secret_key": key}});
    let task = json!({"program_id": PROGRAM, "ability_id": "list_abilities", "msg_list": [entry]});
    env.sdk("create_program_task", task).await["jobid"].as_str().unwrap().to_owned()
}

/// Issue 18: which `is_async` an SDK-routed task call carries is undocumented. Played by a zone that
/// sends it as a plain call (`local_zone.task_calls_async = false`): without `abilities.always_async`
/// the program answers the call itself, the zone takes the answer as the acknowledgement and the task
/// never gets a report; with it, the program runs the call as a job and reports it.
#[tokio::test]
async fn a_task_sent_as_a_plain_call_is_reported_when_its_ability_is_always_async() {
    for always_async in [false, true] {
        let env = TestEnv::spawn_with(move |c| {
            c.local_zone.task_calls_async = false;
            c.local_zone.abilities = vec![AbilityProtocol {
                id: "list_abilities".into(),
                input_protocol: Some("{}".into()),
                output_protocol: None,
            }];
            if always_async {
                c.program.abilities.always_async = vec!["list_abilities".into()];
            }
        })
        .await;
        let jobid = create_list_abilities_task(&env).await;
        let acked = poll(|| async { json!(env.zone.data().program_jobs[&jobid].ack_errcode) }, |v| !v.is_null()).await;
        assert_eq!(acked, 0, "the program acknowledged the call");
        let jobs = env.settle_jobs().await;
        let result = env.sdk("get_program_task_result", json!({"jobid": jobid})).await;
        if always_async {
            assert_eq!(jobs.done, 1, "it ran as a job");
            assert_eq!(result["response_errcode"], 0, "{result}");
            let data: Value = serde_json::from_str(result["response_data"].as_str().unwrap()).unwrap();
            assert!(data.to_string().contains("get_callback_data"), "the program's list of abilities: {data}");
        } else {
            assert_eq!(jobs.done, 0, "answered in the call, no job");
            assert!(result.get("response_errcode").is_none(), "no report ever comes: {result}");
        }
    }
}
