//! The native backend specifically: the C ABI shim over the stub vendor SDK (`native/build.sh`).
//! Strings across the boundary, invoke return codes, the blocking pool's bound, concurrency, start
//! errors, debug mode and logging through the SDK. Skipped when the shim is not built, unless
//! `ZONE_TEST_REQUIRE_NATIVE=1` (scripts/test.sh).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::{Value, json};
use zone_program::app::App;
use zone_program::config::SdkBackend;
use zone_program::sdk::native::{DECODE_BAD_CALL_TYPE, DECODE_NOT_UTF8};
use zone_program::sdk::{CallContext, CallType, SdkError};
use zone_testkit::DevConfig;

use crate::backend::{native_available, shim_path, stub_options, stub_sdk_path};
use crate::helpers::{CORP, TestEnv, test_config};

/// Starts the program (and the local zone) on the native backend with extra stub options and a config tweak.
async fn spawn_native(stub: &str, tweak: impl FnOnce(&mut DevConfig)) -> TestEnv {
    let stub = stub.to_owned();
    TestEnv::spawn_with(move |c| {
        c.program.sdk.backend = SdkBackend::Native;
        c.program.sdk.native.init_options = SecretString::from(stub);
        tweak(c);
    })
    .await
}

/// The demo corp's plain SDK context.
fn context() -> CallContext {
    CallContext { corp_id: CORP.into(), agent_id: 1_000_002, ..CallContext::default() }
}

#[tokio::test]
async fn decoded_fields_carry_nul_bytes_non_ascii_and_empty_values_across_the_boundary() {
    if !native_available() {
        return;
    }
    let env = spawn_native("", |_| {}).await;
    let data = "a\u{0}b ünï 中文 😀 \"quoted\" \\ \n";
    let msg = json!({
        "corp_id": CORP, "agent_id": -7, "call_type": 2, "is_async": true,
        "job_info": "", "ability_id": "", "notify_id": "n\u{0}1", "data": data,
    });
    let sealed = env.wecom.seal(msg.to_string().as_bytes(), CORP);
    let decoded = env.state.sdk.decode("POST", &sealed.headers, &sealed.body).expect("the stub accepts it");
    let cb = &decoded.callback;
    assert_eq!((cb.corp_id.as_str(), cb.agent_id, cb.call_type, cb.is_async), (CORP, -7, CallType::Event, true));
    assert_eq!((cb.job_info.as_str(), cb.ability_id.as_str(), cb.notify_id.as_str()), ("", "", "n\u{0}1"));
    assert_eq!(cb.data, data);
    let plaintext = "{\"errcode\":0}\u{0}trailing ünï";
    let reply = decoded.reply.build(plaintext).unwrap();
    let opened = env.wecom.open(&reply.headers, &reply.body).unwrap();
    assert_eq!(opened.message, plaintext.as_bytes());
    assert_eq!(opened.receive_id, CORP);
    let empty = env
        .wecom
        .seal(json!({"corp_id": CORP, "agent_id": 1, "call_type": 1, "data": ""}).to_string().as_bytes(), CORP);
    let decoded = env.state.sdk.decode("POST", &empty.headers, &empty.body).unwrap();
    assert_eq!(decoded.callback.data, "");
    let reply = decoded.reply.build("").unwrap();
    assert!(env.wecom.open(&reply.headers, &reply.body).unwrap().message.is_empty());
}

#[tokio::test]
async fn a_field_that_is_not_utf8_is_refused_and_a_bad_call_type_is_answered_with_an_error() {
    if !native_available() {
        return;
    }
    let env = spawn_native("", |_| {}).await;
    let mut raw = format!(r#"{{"corp_id":"{CORP}","agent_id":1,"call_type":1,"data":"x"#).into_bytes();
    raw.extend_from_slice(b"\xff\xfe\"}");
    let sealed = env.wecom.seal(&raw, CORP);
    let err = env.state.sdk.decode("POST", &sealed.headers, &sealed.body).unwrap_err();
    assert_eq!(err.code, DECODE_NOT_UTF8);
    let reply = err.reply.expect("the SDK still builds a reply");
    assert!(env.wecom.open(&reply.headers, &reply.body).unwrap().message.is_empty());

    let sealed = env
        .wecom
        .seal(json!({"corp_id": CORP, "agent_id": 1, "call_type": 3, "data": "{}"}).to_string().as_bytes(), CORP);
    let output = env.open_reply(env.post(&sealed).await).await;
    assert_eq!(output["errcode"], 900_010, "a verified request of an unknown call_type is answered: {output}");
    let m = &env.state.metrics;
    assert_eq!((m.callbacks_answered.load(Ordering::SeqCst), m.callbacks_rejected.load(Ordering::SeqCst)), (0, 1));
    let err = env.state.sdk.decode("POST", &[], b"").unwrap_err();
    assert_eq!(err.code, -20002, "no headers: the vendor's constructor code");
    assert!(err.reply.is_some());
    assert_ne!(DECODE_BAD_CALL_TYPE, DECODE_NOT_UTF8);
}

#[tokio::test]
async fn multi_megabyte_bodies_and_replies_cross_the_boundary() {
    if !native_available() {
        return;
    }
    let env = spawn_native("", |c| {
        c.program.server.body_limit_bytes = 8 << 20;
        c.program.abilities.max_input_bytes = 8 << 20;
    })
    .await;
    let data: String = (0..3_000_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let reply = env.call("no_such_ability", &data).await;
    assert_eq!(reply["errcode"], 900_003);

    let msg = json!({"corp_id": CORP, "agent_id": 1, "call_type": 1, "data": data});
    let sealed = env.wecom.seal(msg.to_string().as_bytes(), CORP);
    let decoded = env.state.sdk.decode("POST", &sealed.headers, &sealed.body).unwrap();
    assert_eq!(decoded.callback.data, data);
    let big_reply = "r".repeat(5 << 20);
    let reply = decoded.reply.build(&big_reply).unwrap();
    assert_eq!(env.wecom.open(&reply.headers, &reply.body).unwrap().message.len(), 5 << 20);
}

#[tokio::test]
async fn many_parallel_requests_through_the_native_backend_each_get_their_reply() {
    if !native_available() {
        return;
    }
    let env = Arc::new(spawn_native("", |_| {}).await);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let env = env.clone();
            tokio::spawn(async move { env.call(&format!("no_such_ability_{i}"), &format!("{{\"i\":{i}}}")).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap()["errcode"], 900_003);
    }
    let m = &env.state.metrics;
    assert_eq!((m.callbacks_answered.load(Ordering::SeqCst), m.callbacks_rejected.load(Ordering::SeqCst)), (200, 0));
}

#[tokio::test]
async fn with_serialised_sdk_calls_parallel_requests_and_sdk_calls_are_all_answered() {
    if !native_available() {
        return;
    }
    let env = Arc::new(spawn_native("", |c| c.program.sdk.native.max_concurrent_calls = 1).await);
    assert!(env.state.sdk.may_block(), "decode and reply run on the blocking pool");
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let env = env.clone();
            tokio::spawn(async move {
                if i % 2 == 0 {
                    env.call("invoke_sync_msg", r#"{"limit":1}"#).await
                } else {
                    env.call(&format!("no_such_ability_{i}"), "{}").await
                }
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let reply = task.await.unwrap();
        assert_eq!(reply["errcode"], if i % 2 == 0 { 0 } else { 900_003 }, "{reply}");
    }
    let m = &env.state.metrics;
    assert_eq!((m.callbacks_answered.load(Ordering::SeqCst), m.callbacks_rejected.load(Ordering::SeqCst)), (40, 0));
}

#[tokio::test]
async fn native_invoke_reaches_the_local_zone_and_maps_every_return_code() {
    if !native_available() {
        return;
    }
    let env = spawn_native("fault.injected=ret:-10004;fault.big=bytes:5000000;fault.huge=bytes:9000000", |c| {
        c.program.sdk.max_response_bytes = 8 << 20;
    })
    .await;
    let sdk = &env.state.sdk;
    let rsp: Value =
        serde_json::from_str(&sdk.invoke(&context(), "sync_msg", r#"{"limit":2}"#).await.unwrap()).unwrap();
    assert_eq!(rsp["errcode"], 0, "{rsp}");
    assert_eq!(rsp["msg_list"].as_array().map(Vec::len), Some(2), "{rsp}");

    for ret in [-10001, -10002, -10003, -10004, -10006, -10007] {
        let armed = env.control("faults", json!({"api": "sync_msg", "count": 1, "invoke_ret": ret})).await;
        assert_eq!(armed["errcode"], 0, "{armed}");
        let got = sdk.invoke(&context(), "sync_msg", r#"{"limit":1}"#).await;
        assert_eq!(got, Err(SdkError::Invoke { api: "sync_msg".into(), ret }));
    }
    let invoke = |api: &'static str, ctx: CallContext| async move { sdk.invoke(&ctx, api, "{}").await };
    assert_eq!(invoke("injected", context()).await, Err(SdkError::Invoke { api: "injected".into(), ret: -10004 }));
    assert_eq!(invoke("big", context()).await.unwrap().len(), 5_000_000);
    assert_eq!(invoke("huge", context()).await, Err(SdkError::BadResponse), "over sdk.max_response_bytes");
    let no_corp = CallContext { corp_id: String::new(), ..context() };
    assert_eq!(invoke("sync_msg", no_corp).await, Err(SdkError::Invoke { api: "sync_msg".into(), ret: -10001 }));
    let a = sdk.generate_notify_id().unwrap();
    assert!(a.len() == 32 && a.bytes().all(|b| b.is_ascii_hexdigit()), "{a}");
    assert_ne!(a, sdk.generate_notify_id().unwrap());
}

#[tokio::test]
async fn a_timed_out_native_call_keeps_its_slot_so_calls_cannot_pile_up() {
    if !native_available() {
        return;
    }
    let env = spawn_native("fault.slow=slow:1500;fault.fast=ret:-10006", |c| {
        c.program.sdk.pool_size = 2;
        c.program.sdk.invoke_timeout_ms = 100;
        c.program.sdk.queue_wait_ms = 20;
    })
    .await;
    let sdk = &env.state.sdk;
    let ctx = context();
    let (a, b) = tokio::join!(sdk.invoke(&ctx, "slow", "{}"), sdk.invoke(&ctx, "slow", "{}"));
    assert_eq!((a, b), (Err(SdkError::Timeout), Err(SdkError::Timeout)));
    assert_eq!(sdk.invoke(&context(), "fast", "{}").await, Err(SdkError::Busy), "both slots are still taken");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match sdk.invoke(&context(), "fast", "{}").await {
            Err(SdkError::Busy) => assert!(Instant::now() < deadline, "the slots come back when the calls end"),
            other => break assert_eq!(other, Err(SdkError::Invoke { api: "fast".into(), ret: -10006 })),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start_error(tweak: impl FnOnce(&mut DevConfig)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.program.sdk.backend = SdkBackend::Native;
    config.program.sdk.native.library = shim_path();
    config.program.sdk.native.init_options = SecretString::from(stub_options(&config.program.sdk));
    tweak(&mut config);
    match App::build(config.program).await {
        Ok(_) => panic!("the program must refuse to start"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn the_program_refuses_to_start_when_the_native_backend_cannot_load() {
    if !native_available() {
        return;
    }
    let err = start_error(|c| c.program.sdk.native.library = "/nonexistent/libzone_shim.so".into()).await;
    assert!(err.contains("/nonexistent/libzone_shim.so"), "{err}");
    let err = start_error(|c| c.program.sdk.native.library = stub_sdk_path()).await;
    assert!(err.contains("libWeWorkSpecSDK.so") && err.contains("zone_shim_abi_version"), "{err}");
    let err =
        start_error(|c| c.program.sdk.native.init_options = SecretString::from("token=SecretValue1;key.1=tooshort"))
            .await;
    assert!(err.contains("key.1") && !err.contains("tooshort") && !err.contains("SecretValue1"), "{err}");
    let err = start_error(|c| {
        c.program.sdk.native.init_options =
            SecretString::from(format!("{};debug_mode=refuse", stub_options(&c.program.sdk)));
        c.program.sdk.native.debug_token = Some(SecretString::from("DbgTok1"));
        c.program.sdk.native.access_token = Some(SecretString::from("AccTok1"));
    })
    .await;
    assert!(err.contains("debug mode") && !err.contains("DbgTok1") && !err.contains("AccTok1"), "{err}");
}

#[tokio::test]
async fn program_log_lines_reach_the_sdk_log_at_their_level() {
    if !native_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sdk.log");
    let mut config = test_config(dir.path());
    config.program.sdk.native.library = shim_path();
    config.program.sdk.native.init_options =
        SecretString::from(format!("{};log_file={}", stub_options(&config.program.sdk), log.display()));
    let limiter = zone_program::sdk::pool::InvokeLimiter::new(&config.program.sdk);
    let native = zone_program::sdk::native::NativeSdk::load(&config.program.sdk, limiter).unwrap();
    use tracing_subscriber::prelude::*;
    let layer = zone_program::sdk::native_log::SdkLogLayer::to(native.log_sink());
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let span = tracing::info_span!("request", request_id = %"req42");
        let _in = span.enter();
        tracing::error!(code = -40001, "refused");
        tracing::info!(status = 200, "request finished");
        tracing::debug!("detail");
    });
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].contains(" ERR [req42] ") && lines[0].ends_with("refused code=-40001"), "{text}");
    assert!(lines[1].contains(" INFO [req42] ") && lines[1].ends_with("request finished status=200"), "{text}");
    assert!(lines[2].contains(" DBG [req42] ") && lines[2].ends_with("detail"), "{text}");
}

#[test]
fn serve_with_debug_tokens_opens_debug_mode_and_logs_through_the_sdk_or_refuses_to_start() {
    if !native_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sdk.log");
    let options = format!("{};log_file={}", stub_options(&test_config(dir.path()).program.sdk), log.display());
    let serve = |library: &std::path::Path, options: &str| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_zone-program"));
        cmd.args(["serve", "--sdk", "native", "--listen", "127.0.0.1:0"])
            .args(["--debug-token", "DebugTok", "--access-token", "AccessTok"])
            .env("ZONE_PROGRAM_SDK__NATIVE__LIBRARY", library)
            .env("ZONE_PROGRAM_SDK__NATIVE__INIT_OPTIONS", options)
            .env("ZONE_PROGRAM_STORE__PATH", dir.path().join("store.sqlite"))
            .env_remove("RUST_LOG")
            .env_remove("ZONE_PROGRAM_CONFIG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null());
        cmd
    };

    let failed = serve(std::path::Path::new("/nonexistent/libzone_shim.so"), &options).output().unwrap();
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("/nonexistent/libzone_shim.so"), "{stderr}");
    let refused = serve(&shim_path(), &format!("{options};debug_mode=refuse")).output().unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("debug mode") && !stderr.contains("DebugTok") && !stderr.contains("AccessTok"), "{stderr}");

    let mut child = serve(&shim_path(), &options).stderr(std::process::Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("zone program listening") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(text.contains("INFO [] debug mode opened"), "{text}");
    assert!(text.contains("INFO [] zone_program::") || text.contains("INFO [] zone_program::"), "{text}");
    assert!(text.contains("zone program listening"), "{text}");
    assert!(!text.contains("DebugTok") && !text.contains("AccessTok"), "no token in the SDK log: {text}");
}

#[test]
fn serve_local_with_the_native_backend_is_refused_rather_than_silently_run_on_the_local_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zone-program"))
        .args(["serve", "--local", "--sdk", "native", "--listen", "127.0.0.1:0"])
        .env("ZONE_PROGRAM_STORE__PATH", dir.path().join("store.sqlite"))
        .env_remove("ZONE_PROGRAM_CONFIG")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot be combined with --sdk native"), "{stderr}");
}
