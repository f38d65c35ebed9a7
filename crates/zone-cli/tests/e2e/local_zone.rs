//! The local zone's app API and notify path, black-box over HTTP: tokens, the full
//! app → zone → program → reply loop, protocol checks, async jobs, and `program_notify` delivery.

use serde_json::{Value, json};
use zone_local::config::AbilityProtocol;
use zone_program::sdk::CallContext;
use zone_testkit::DevConfig;

use crate::helpers::{CORP, PROGRAM, TestEnv};

async fn get(env: &TestEnv, path: &str) -> Value {
    env.http.get(format!("{}{path}", env.zone_url())).send().await.unwrap().json().await.unwrap()
}

async fn post_with_token(env: &TestEnv, name: &str, token: Option<&str>, body: &Value) -> Value {
    let mut req = env.http.post(format!("{}/cgi-bin/chatdata/{name}", env.zone_url()));
    if let Some(t) = token {
        req = req.query(&[("access_token", t)]);
    }
    req.json(body).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn gettoken_checks_the_corp_and_its_secret() {
    let env = TestEnv::spawn().await;
    let ok = get(&env, &format!("/cgi-bin/gettoken?corpid={CORP}&corpsecret={}", zone_crypto::demo::CORP_SECRET)).await;
    assert_eq!(ok["errcode"], 0);
    assert_eq!(ok["expires_in"], 7200);
    assert!(ok["access_token"].as_str().unwrap().len() >= 32);
    assert_eq!(get(&env, &format!("/cgi-bin/gettoken?corpid={CORP}&corpsecret=wrong")).await["errcode"], 40001);
    assert_eq!(get(&env, "/cgi-bin/gettoken?corpid=wwother&corpsecret=x").await["errcode"], 40013);
    assert_eq!(get(&env, "/cgi-bin/gettoken").await["errcode"], 41002);
    assert_eq!(get(&env, &format!("/cgi-bin/gettoken?corpid={CORP}")).await["errcode"], 41004);
}

#[tokio::test]
async fn an_app_call_needs_a_live_access_token() {
    let env = TestEnv::spawn().await;
    let body = json!({"program_id": PROGRAM, "ability_id": "x", "request_data": "{}"});
    assert_eq!(post_with_token(&env, "sync_call_program", None, &body).await["errcode"], 41001);
    assert_eq!(post_with_token(&env, "sync_call_program", Some("nope"), &body).await["errcode"], 40014);
    let token = env.access_token().await;
    env.control("clock/advance", json!({"secs": 7201})).await;
    assert_eq!(post_with_token(&env, "sync_call_program", Some(&token), &body).await["errcode"], 42001);
}

#[tokio::test]
async fn sync_call_program_reaches_the_program_and_returns_its_reply_as_response_data() {
    let env = TestEnv::spawn().await;
    let reply = env.app_call("invoke_sync_msg", r#"{"limit":2}"#, None).await;
    assert_eq!(reply["errcode"], 0, "{reply}");
    let data: Value = serde_json::from_str(reply["response_data"].as_str().unwrap()).unwrap();
    assert_eq!(data["errcode"], 0, "the zone's sync_msg reply, through the program: {data}");
    assert_eq!((data["msg_list"].as_array().unwrap().len(), data["has_more"].as_i64()), (2, Some(1)));
    let unknown = env.app_call("no_such_ability", "{}", None).await;
    let data: Value = serde_json::from_str(unknown["response_data"].as_str().unwrap()).unwrap();
    assert_eq!(data["errcode"], 900_003, "{data}");
    let m = &env.state.metrics;
    assert_eq!(
        m.callbacks_answered.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "exactly two requests reached the program"
    );
}

#[tokio::test]
async fn sync_call_program_refuses_an_unknown_program_and_a_missing_request_data() {
    let env = TestEnv::spawn().await;
    let body = json!({"program_id": "zp_other", "ability_id": "a", "request_data": "{}"});
    let reply = env.app_post("sync_call_program", &body).await;
    assert_eq!(reply["errcode"], 40058);
    assert!(reply["errmsg"].as_str().unwrap().contains("program_id"));
    let reply = env.app_post("sync_call_program", &json!({"program_id": PROGRAM, "ability_id": "a"})).await;
    assert_eq!(reply["errcode"], 40058);
    let reply = env.app_post("sync_call_program", &json!([1])).await;
    assert_eq!(reply["errcode"], 47001);
}

fn with_protocols(c: &mut DevConfig) {
    c.local_zone.abilities = vec![AbilityProtocol {
        id: "digest".into(),
        input_protocol: Some(r#"{"chatid":"","limit":1}"#.into()),
        output_protocol: Some(r#"{"summary":""}"#.into()),
    }];
}

#[tokio::test]
async fn request_data_outside_the_input_protocol_gets_790016_and_never_reaches_the_program() {
    let env = TestEnv::spawn_with(with_protocols).await;
    assert_eq!(env.app_call("digest", r#"{"chatid":1}"#, None).await["errcode"], 790_016);
    assert_eq!(env.app_call("digest", r#"{"unknown":"x"}"#, None).await["errcode"], 790_016);
    assert_eq!(env.app_call("digest", "not json", None).await["errcode"], 790_016);
    assert_eq!(env.app_call("other", "{}", None).await["errcode"], 40058, "undeclared ability");
    assert_eq!(env.state.metrics.callbacks_answered.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn output_outside_the_output_protocol_gets_790014() {
    let env = TestEnv::spawn_with(with_protocols).await;
    // The program answers {"errcode":900003,"errmsg":…}: keys the output protocol does not have.
    let reply = env.app_call("digest", r#"{"chatid":"wr1","limit":5}"#, None).await;
    assert_eq!(reply["errcode"], 790_014, "{reply}");
    assert!(reply.get("response_data").is_none());
}

#[tokio::test]
async fn an_unreachable_program_is_connect_fail() {
    let env = TestEnv::spawn().await;
    env.access_token().await; // the zone is serving, so it has taken the program URL it was given
    *env.zone.program_url.write().unwrap() = "http://127.0.0.1:1".into();
    assert_eq!(env.app_call("x", "{}", None).await["errcode"], 710_674);
}

#[tokio::test]
async fn an_async_task_reaches_the_program_and_its_reported_result_is_returned() {
    let env = TestEnv::spawn().await;
    let reply = env.app_async("long_job", r#"{"n":1}"#).await;
    assert_eq!(reply["errcode"], 0, "{reply}");
    let jobid = reply["jobid"].as_str().unwrap().to_owned();
    let job_info = env.zone.data().program_jobs[&jobid].job_info.clone();
    let ctx = CallContext { corp_id: CORP.into(), agent_id: 1_000_002, ability_id: "long_job".into(), job_info };
    let missing = env.sdk_in(&ctx, "program_async_job_call_back", &json!({"result": "{}"})).await.unwrap();
    assert_eq!(missing["errcode"], 40058, "errcode is required, and a refused report changes nothing");
    // The program knows no `long_job`: it refuses the call and reports the refusal itself.
    let done = env.await_async_result(&jobid).await;
    assert!(done.get("status").is_none(), "the documented fields only: {done}");
    assert_eq!(done["response_errcode"].as_i64(), Some(900_003), "{done}");
    let reported: Value = serde_json::from_str(done["response_data"].as_str().unwrap()).unwrap();
    assert_eq!(reported["errcode"], 900_003);
    let report = json!({"errcode": 0, "result": "{\"summary\":\"done\"}"});
    let again = env.sdk_in(&ctx, "program_async_job_call_back", &report).await.unwrap();
    assert_eq!(again["errcode"], 40058, "a job reports once");
    let same = json!({"errcode": 900_003, "result": done["response_data"]});
    let repeated = env.sdk_in(&ctx, "program_async_job_call_back", &same).await.unwrap();
    assert_eq!(repeated["errcode"], 0, "the same report again changes nothing: {repeated}");
    assert_eq!(env.async_result(&jobid).await, done);
    let stranger = CallContext { job_info: "JIunknown".into(), ..ctx };
    assert_eq!(env.sdk_in(&stranger, "program_async_job_call_back", &report).await.unwrap()["errcode"], 40058);
    assert_eq!(env.async_result("JOBnope").await["errcode"], 40058);
}

#[tokio::test]
async fn an_async_result_that_breaks_the_output_protocol_is_790014() {
    let env = TestEnv::spawn_with(with_protocols).await;
    // The program knows no `digest`: the refusal it reports has no `summary`.
    let jobid = env.app_async("digest", r#"{"chatid":"wr1"}"#).await["jobid"].as_str().unwrap().to_owned();
    assert_eq!(env.await_async_result(&jobid).await["errcode"], 790_014);
}

#[tokio::test]
async fn spec_notify_app_pushes_a_signed_encrypted_program_notify_to_the_app() {
    let env = TestEnv::spawn().await;
    let reply = env.sdk("spec_notify_app", json!({"notify_id": "NID-e2e-1", "notify_scene": 7})).await;
    assert_eq!(reply["errcode"], 0, "{reply}");
    assert_eq!(reply["notify_id"], "NID-e2e-1");
    let n = env.next_notify().await;
    assert_eq!((n.notify_id.as_str(), n.notify_scene, n.to_user.as_str()), ("NID-e2e-1", Some(7), CORP));
    assert_eq!(n.event, "program_notify");

    let minted = env.sdk("spec_notify_app", json!({"notify_scene": 300})).await;
    let id = minted["notify_id"].as_str().unwrap();
    assert!(!id.is_empty() && id.len() <= 64);
    let n = env.next_notify().await;
    assert_eq!((n.notify_id.as_str(), n.notify_scene), (id, None), "a scene outside 0-255 is ignored");
}

#[tokio::test]
async fn a_notify_id_over_64_bytes_is_refused_and_nothing_is_sent() {
    let env = TestEnv::spawn().await;
    let reply = env.sdk("spec_notify_app", json!({"notify_id": "n".repeat(65)})).await;
    assert_eq!(reply["errcode"], 40058);
    assert!(env.zone.data().notify_ids.is_empty());
    assert_eq!(env.sdk("spec_notify_app", json!({"notify_scene": "1"})).await["errcode"], 40058);
}

#[tokio::test]
async fn a_notify_id_is_usable_by_the_app_for_ten_minutes_only() {
    let env = TestEnv::spawn().await;
    env.sdk("spec_notify_app", json!({"notify_id": "NID-ttl"})).await;
    let n = env.next_notify().await;
    let live = env.app_call("get_callback_data", "{}", Some(&n.notify_id)).await;
    assert_eq!(live["errcode"], 0, "the call reaches the program: {live}");
    assert_eq!(env.app_call("get_callback_data", "{}", Some("NID-never")).await["errcode"], 40058);
    env.control("clock/advance", json!({"secs": 601})).await;
    assert_eq!(env.app_call("get_callback_data", "{}", Some(&n.notify_id)).await["errcode"], 40058);
}

#[tokio::test]
async fn without_an_app_callback_url_notifications_are_kept_in_the_outbox() {
    let env = TestEnv::spawn_with(|c| c.local_zone.app_callback_url = None).await;
    env.sdk("spec_notify_app", json!({"notify_id": "kept", "notify_scene": 2})).await;
    let outbox = crate::helpers::poll(
        || async {
            env.http.get(format!("{}/local/notifications", env.zone_url())).send().await.unwrap().json().await.unwrap()
        },
        |v: &Value| !v["notifications"].as_array().unwrap().is_empty(),
    )
    .await;
    assert_eq!(outbox["notifications"][0]["notify_id"], "kept");
    assert_eq!(outbox["notifications"][0]["delivered"], Value::Null);
}

#[tokio::test]
async fn the_app_configuration_apis_keep_their_rules() {
    let env = TestEnv::spawn().await;
    let set = |level: i64| json!({"program_id": PROGRAM, "log_level": level});
    assert_eq!(env.app_post("get_log_level", &json!({"program_id": PROGRAM})).await["log_level"], 2);
    assert_eq!(env.app_post("set_log_level", &set(3)).await["errcode"], 0);
    assert_eq!(env.app_post("get_log_level", &json!({"program_id": PROGRAM})).await["log_level"], 3);
    assert_eq!(env.app_post("set_log_level", &set(4)).await["errcode"], 40058);
    assert_eq!(env.app_post("set_log_level", &json!({"program_id": "zp_x", "log_level": 1})).await["errcode"], 40058);
    assert_eq!(env.app_post("set_receive_callback", &json!({"program_id": PROGRAM})).await["errcode"], 0);
    assert_eq!(env.app_post("set_receive_callback", &json!({"program_id": "zp_x"})).await["errcode"], 40058);
    let auth = env.app_post("get_corp_auth_info", &json!({})).await;
    let users = auth["auth_edition_list"][0]["auth_scope"]["userid_list"].as_array().unwrap().len();
    assert_eq!(users, 5, "five of the six seeded staff are in scope: {auth}");
}

#[tokio::test]
async fn the_app_api_lists_authorised_users_and_serves_the_hide_config_rest_twins() {
    let env = TestEnv::spawn().await;
    let first = env.app_post("get_auth_user_list", &json!({"limit": 3})).await;
    assert_eq!(
        (first["has_more"].as_i64(), first["auth_user_list"].as_array().unwrap().len()),
        (Some(1), 3),
        "{first}"
    );
    let rest = env.app_post("get_auth_user_list", &json!({"cursor": first["next_cursor"]})).await;
    assert_eq!(rest["auth_user_list"].as_array().unwrap().len(), 2, "five staff are in scope");
    assert_eq!(env.app_post("get_auth_user_list", &json!({"limit": 1001})).await["errcode"], 40058);
    let user = first["auth_user_list"][0]["userid"].clone();
    let set = json!({"userid": user, "config": {"hide_mobile": true}});
    assert_eq!(env.app_post("set_hide_sensitiveinfo_config", &set).await["errcode"], 0);
    let via_sdk = env.sdk("get_hide_sensitiveinfo_config", json!({"userid": user})).await;
    assert_eq!(via_sdk["config"]["hide_mobile"], true, "one config behind both routes");
    assert_eq!(env.app_post("get_hide_sensitiveinfo_config", &json!({"userid": "wonobody"})).await["errcode"], 40058);
}

#[tokio::test]
async fn faults_apply_to_app_api_calls_too() {
    let env = TestEnv::spawn().await;
    env.access_token().await;
    env.control("faults", json!({"api": "sync_call_program", "count": 1, "errcode": -1})).await;
    assert_eq!(env.app_call("invoke_sync_msg", "{}", None).await["errcode"], -1);
    env.control("faults", json!({"api": "gettoken", "count": 1, "http_status": 502})).await;
    let url =
        format!("{}/cgi-bin/gettoken?corpid={CORP}&corpsecret={}", env.zone_url(), zone_crypto::demo::CORP_SECRET);
    assert_eq!(env.http.get(&url).send().await.unwrap().status(), 502);
    assert_eq!(env.http.get(&url).send().await.unwrap().status(), 200);
    env.control("faults", json!({"api": "async_program_result", "count": 2, "delay_ms": 1})).await;
    let pending = env.http.get(format!("{}/local/faults", env.zone_url())).send().await.unwrap();
    assert_eq!(pending.json::<Value>().await.unwrap()["pending"]["async_program_result"], 2);
    let cleared = env.http.delete(format!("{}/local/faults", env.zone_url())).send().await.unwrap();
    assert_eq!(cleared.json::<Value>().await.unwrap()["errcode"], 0);
    assert_eq!(env.app_call("invoke_sync_msg", r#"{"limit":1}"#, None).await["errcode"], 0);
}
