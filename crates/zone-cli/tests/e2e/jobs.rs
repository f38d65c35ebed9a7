//! Async calls: acknowledged at once, run as durable jobs, reported with
//! `program_async_job_call_back` and read back with `async_program_result`; a failed report is
//! retried, a redelivered request runs once, and a job cut off by a restart resumes.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::abilities::{response_data, spawn_declared};
use crate::helpers::{CORP, TestEnv};

fn done_data(done: &Value) -> Value {
    assert_eq!(done["errcode"].as_i64(), Some(0), "{done}");
    assert!(done.get("status").is_none(), "async_program_result has no status field: {done}");
    serde_json::from_str(done["response_data"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn an_async_workflow_reports_the_same_result_as_the_sync_call() {
    let env = spawn_declared(|_| {}).await;
    let w = env.world().await;
    let vip = w["chats"].as_array().unwrap().iter().find(|c| c["name"] == "VIP客户服务群").unwrap()["chatid"].clone();
    let end = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 + 60;
    let input = json!({"chatid": vip, "start_time": end - 4 * 86_400, "end_time": end}).to_string();
    let jobid = env.app_async("chat_digest", &input).await["jobid"].as_str().unwrap().to_owned();
    let done = env.await_async_result(&jobid).await;
    assert_eq!(done["response_errcode"], 0);
    let sync = response_data(&env.app_call("chat_digest", &input, None).await);
    assert_eq!(done_data(&done), sync);
    assert!(sync["message_count"].as_u64().unwrap() > 0);
    let counts = env.settle_jobs().await;
    assert_eq!(counts.done, 1);
}

#[tokio::test]
async fn an_async_error_is_reported_with_its_code() {
    let env = TestEnv::spawn().await;
    // Valid input, but the SDK refuses the call: the job reports the program's code for it.
    let jobid =
        env.app_async("invoke_get_group_chat", r#"{"chatid":"wrnope"}"#).await["jobid"].as_str().unwrap().to_owned();
    let done = env.await_async_result(&jobid).await;
    assert_eq!(done["response_errcode"], 40058, "the errcode of the output is the reported errcode: {done}");
    assert_eq!(done_data(&done)["errcode"], 40058, "and the SDK's reply is the result, as is");
    let jobid = env.app_async("reply_suggestions", r#"{"kb_id":"kbnope","chatid":"wrnope"}"#).await["jobid"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = env.await_async_result(&jobid).await;
    assert_eq!(done["response_errcode"], 0, "no messages: nothing to recommend from: {done}");
    assert_eq!(done_data(&done)["message_count"], 0);
    env.settle_jobs().await;
}

#[tokio::test]
async fn a_failed_report_is_retried_until_the_zone_takes_it() {
    let env = TestEnv::spawn_with(|c| c.program.jobs.report_backoff_ms = 20).await;
    let armed =
        env.control("faults", json!({"api": "program_async_job_call_back", "count": 2, "invoke_ret": -10006})).await;
    assert_eq!(armed["errcode"], 0, "{armed}");
    let jobid = env.app_async("list_abilities", "{}").await["jobid"].as_str().unwrap().to_owned();
    let done = env.await_async_result(&jobid).await;
    assert!(done_data(&done)["abilities"].is_array());
    let faults = env.http.get(format!("{}/local/faults", env.zone_url())).send().await.unwrap();
    assert_eq!(faults.json::<Value>().await.unwrap()["pending"], json!({}), "both failures were met");
    assert_eq!(env.settle_jobs().await.done, 1);
}

#[tokio::test]
async fn a_redelivered_async_request_runs_once() {
    let env = TestEnv::spawn().await;
    let jobid = env.app_async("list_abilities", "{}").await["jobid"].as_str().unwrap().to_owned();
    env.await_async_result(&jobid).await;
    let job_info = env.zone.data().program_jobs[&jobid].job_info.clone();
    let msg = json!({"corp_id": CORP, "agent_id": 1_000_002, "call_type": 1, "is_async": true, "job_info": job_info,
                     "ability_id": "list_abilities", "notify_id": "", "data": "{}"});
    let ack = env.open_reply(env.post(&env.wecom.seal(msg.to_string().as_bytes(), CORP)).await).await;
    assert_eq!(ack, json!({"errcode": 0, "errmsg": "ok"}));
    let counts = env.settle_jobs().await;
    assert_eq!(counts.done, 1, "the second delivery was recognised, not run (its report would fail)");
}

#[tokio::test]
async fn an_async_request_is_acknowledged_before_its_slow_work_is_done() {
    let env = TestEnv::spawn_with(|c| {
        c.program.jobs.report_attempts = 2;
        c.program.jobs.report_backoff_ms = 10;
    })
    .await;
    env.control("faults", json!({"api": "search_chat", "count": 1, "delay_ms": 2000})).await;
    let msg = json!({"corp_id": CORP, "agent_id": 1_000_002, "call_type": 1, "is_async": true, "job_info": "JI-slow",
                     "ability_id": "invoke_search_chat", "notify_id": "", "data": r#"{"query_word":"VIP"}"#});
    let started = Instant::now();
    let ack = env.open_reply(env.post(&env.wecom.seal(msg.to_string().as_bytes(), CORP)).await).await;
    assert_eq!(ack["errcode"], 0);
    assert!(started.elapsed() < Duration::from_millis(1500), "answered within the 5 s rule, before the work");
    let counts = env.state.jobs.wait_idle(Duration::from_secs(10)).await.unwrap();
    // The zone knows no job "JI-slow": the report is refused until the attempts run out.
    assert_eq!((counts.done, counts.failed), (0, 1), "the failure is recorded, not dropped");
    assert!(started.elapsed() >= Duration::from_millis(2000), "the work itself took its time");
}

#[tokio::test]
async fn an_async_job_cut_off_by_a_restart_resumes_and_reports() {
    let mut env = TestEnv::spawn_with(|c| c.program.server.shutdown_grace_ms = 50).await;
    env.control("faults", json!({"api": "search_chat", "count": 1, "delay_ms": 5000})).await;
    let jobid =
        env.app_async("invoke_search_chat", r#"{"query_word":"VIP"}"#).await["jobid"].as_str().unwrap().to_owned();
    crate::helpers::poll(|| async { json!(env.state.jobs.counts().await.unwrap().running) }, |v| v == 1).await;
    env.restart_program(|_| {}).await;
    let done = env.await_async_result(&jobid).await;
    assert_eq!(done_data(&done)["chat_list"].as_array().unwrap().len(), 1, "{done}");
    let counts = env.settle_jobs().await;
    assert_eq!(counts.done, 1);
}

#[tokio::test]
async fn a_call_refused_for_a_full_job_queue_is_reported_so_its_result_ends() {
    let env = TestEnv::spawn_with(|c| c.program.jobs.max_pending = 1).await;
    env.control("faults", json!({"api": "search_chat", "count": 1, "delay_ms": 3000})).await;
    let busy =
        env.app_async("invoke_search_chat", r#"{"query_word":"VIP"}"#).await["jobid"].as_str().unwrap().to_owned();
    crate::helpers::poll(|| async { json!(env.state.jobs.counts().await.unwrap().unfinished()) }, |v| v == 1).await;
    let refused = env.app_async("list_abilities", "{}").await["jobid"].as_str().unwrap().to_owned();
    let done = env.await_async_result(&refused).await;
    assert_eq!(done["response_errcode"], 900_301, "{done}");
    assert_eq!(done_data(&done)["errcode"], 900_301);
    let first = env.await_async_result(&busy).await;
    assert_eq!(done_data(&first)["chat_list"].as_array().unwrap().len(), 1);
    assert_eq!(env.settle_jobs().await.done, 1, "only the accepted job was recorded");
}

#[tokio::test]
async fn a_burst_refused_while_the_sdk_pool_is_taken_is_still_reported_call_by_call() {
    // One SDK slot, held by the accepted job's slow call: the refusals' reports first find the pool
    // busy (900104 after the queue wait) and must be retried, not dropped.
    let env = TestEnv::spawn_with(|c| {
        c.program.jobs.max_pending = 1;
        c.program.jobs.report_backoff_ms = 100;
        c.program.sdk.pool_size = 1;
        c.program.sdk.queue_wait_ms = 100;
    })
    .await;
    env.control("faults", json!({"api": "search_chat", "count": 1, "delay_ms": 1500})).await;
    let busy =
        env.app_async("invoke_search_chat", r#"{"query_word":"VIP"}"#).await["jobid"].as_str().unwrap().to_owned();
    // The slow call is inside the zone (its fault was taken), holding the only slot.
    let faults = format!("{}/local/faults", env.zone_url());
    crate::helpers::poll(
        || async { env.http.get(&faults).send().await.unwrap().json::<Value>().await.unwrap()["pending"].clone() },
        |v| *v == json!({}),
    )
    .await;
    let mut refused = Vec::new();
    for _ in 0..6 {
        refused.push(env.app_async("list_abilities", "{}").await["jobid"].as_str().unwrap().to_owned());
    }
    for (n, jobid) in refused.iter().enumerate() {
        let done = crate::helpers::poll(
            || async { json!({"refused": n, "result": env.async_result(jobid).await}) },
            |v| v["result"]["errcode"] != 0 || v["result"].get("response_errcode").is_some(),
        )
        .await;
        assert_eq!(done["result"]["response_errcode"], 900_301, "{done}");
    }
    let first = crate::helpers::poll(
        || async { json!({"accepted": env.async_result(&busy).await}) },
        |v| v["accepted"]["errcode"] != 0 || v["accepted"].get("response_errcode").is_some(),
    )
    .await;
    assert_eq!(done_data(&first["accepted"])["chat_list"].as_array().unwrap().len(), 1, "{first}");
    assert_eq!(env.settle_jobs().await.done, 1, "only the accepted job was recorded");
}
