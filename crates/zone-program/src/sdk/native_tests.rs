//! Tests of the native backend that need no zone: start errors, the code mapping and, over the
//! built shim and stub SDK, a leak check by the shim's live-object count.

use super::*;

fn config(library: &str) -> SdkConfig {
    let mut c = SdkConfig::default();
    c.native.library = PathBuf::from(library);
    c
}

fn load_error(library: &str) -> String {
    let c = config(library);
    match NativeSdk::load(&c, InvokeLimiter::new(&c)) {
        Ok(_) => panic!("{library} is not a shim"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_missing_library_is_a_start_error_naming_its_path() {
    let err = load_error("/nonexistent/dir/libzone_shim.so");
    assert!(err.contains("/nonexistent/dir/libzone_shim.so"), "{err}");
}

#[test]
fn a_library_without_the_shim_symbols_is_a_start_error_naming_path_and_symbol() {
    let err = load_error("libc.so.6");
    assert!(err.contains("libc.so.6") && err.contains("zone_shim_abi_version"), "{err}");
}

/// The shim built by native/build.sh; None (test skipped) when it is not built, unless
/// `ZONE_TEST_REQUIRE_NATIVE=1` (scripts/test.sh) makes that a failure.
fn built_shim() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../native/build/libzone_shim.so");
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("ZONE_TEST_REQUIRE_NATIVE").map_or(true, |v| v != "1"),
        "{} is missing: run native/build.sh",
        path.display()
    );
    None
}

/// Held by every test that creates shim contexts, so the process-wide live-object count of the leak
/// test is its own (declared first in a test, it is released after the test's objects are dropped).
static SHIM_TESTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn thousands_of_calls_leave_no_shim_object_behind() {
    use zone_crypto::demo::{LOCAL_KEY as DEMO_LOCAL_KEY, LOCAL_TOKEN as DEMO_LOCAL_TOKEN};
    let _serial = SHIM_TESTS.lock().await;
    let Some(path) = built_shim() else { return };
    let mut c = SdkConfig::default();
    c.native.library = path;
    c.native.init_options = SecretString::from(format!(
        "token={DEMO_LOCAL_TOKEN};key.1={DEMO_LOCAL_KEY};fault.fail=ret:-10003;fault.big=bytes:100000"
    ));
    let sdk = NativeSdk::load(&c, InvokeLimiter::new(&c)).unwrap();
    let wecom = crate::sdk::local::codec_from_config(&c).unwrap();
    let ctx = CallContext { corp_id: "wwcorp".into(), agent_id: 1, ..CallContext::default() };
    let before = sdk.live_objects();
    assert!(before >= 1, "the context itself is live");
    for i in 0..2000 {
        let msg = format!(r#"{{"corp_id":"wwcorp","agent_id":1,"call_type":1,"data":"{i}"}}"#);
        let sealed = wecom.seal(msg.as_bytes(), "wwcorp");
        let decoded = sdk.decode("POST", &sealed.headers, &sealed.body).unwrap();
        assert_eq!(decoded.callback.data, i.to_string());
        decoded.reply.build("{\"errcode\":0}").unwrap();
        let replayed = sdk.decode("POST", &sealed.headers, &sealed.body).unwrap_err();
        assert!(replayed.reply.is_some());
        let unused = wecom.seal(msg.as_bytes(), "wwcorp");
        drop(sdk.decode("POST", &unused.headers, &unused.body).unwrap());
        assert_eq!(sdk.invoke(&ctx, "fail", "{}").await, Err(SdkError::Invoke { api: "fail".into(), ret: -10003 }));
        assert_eq!(sdk.invoke(&ctx, "big", "{}").await.unwrap().len(), 100_000);
        sdk.generate_notify_id().unwrap();
        sdk.log_sink().write(SdkLogLevel::Info, "req", "line");
    }
    assert_eq!(sdk.live_objects(), before, "every request, reply and string went back to the shim");
}

#[test]
fn shim_codes_map_to_sdk_errors() {
    for ret in [-10001, -10002, -10003, -10004, -10006, -10007, -10042] {
        assert_eq!(sdk_error(ret, "sync_msg"), SdkError::Invoke { api: "sync_msg".into(), ret });
    }
    for code in [E_ARGUMENT, E_EXCEPTION, E_NO_MEMORY, E_INIT] {
        assert!(matches!(sdk_error(code, "sync_msg"), SdkError::Unavailable(_)), "{code}");
    }
}

fn stub_sdk(extra: &str, max_concurrent_calls: usize) -> Option<(NativeSdk, zone_crypto::codec::LocalCodec)> {
    use zone_crypto::demo::{LOCAL_KEY as DEMO_LOCAL_KEY, LOCAL_TOKEN as DEMO_LOCAL_TOKEN};
    let path = built_shim()?;
    let mut c = SdkConfig::default();
    c.native.library = path;
    c.native.max_concurrent_calls = max_concurrent_calls;
    c.native.init_options = SecretString::from(format!("token={DEMO_LOCAL_TOKEN};key.1={DEMO_LOCAL_KEY};{extra}"));
    let sdk = NativeSdk::load(&c, InvokeLimiter::new(&c)).unwrap();
    let wecom = crate::sdk::local::codec_from_config(&c).unwrap();
    Some((sdk, wecom))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_calls_caps_the_calls_inside_the_vendor_sdk() {
    let _serial = SHIM_TESTS.lock().await;
    let Some((sdk, _)) = stub_sdk("fault.slow=slow:60,ret:-10006", 2) else { return };
    assert!(sdk.may_block(), "a capped SDK may block: the HTTP layer decodes off the async workers");
    let sdk = Arc::new(sdk);
    let ctx = CallContext { corp_id: "wwcorp".into(), agent_id: 1, ..CallContext::default() };
    let start = std::time::Instant::now();
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let (sdk, ctx) = (sdk.clone(), ctx.clone());
            tokio::spawn(async move { sdk.invoke(&ctx, "slow", "{}").await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), Err(SdkError::Invoke { api: "slow".into(), ret: -10006 }));
    }
    assert_eq!(sdk.peak_concurrent_calls(), 2, "never more than 2 calls inside the SDK, and the cap was reached");
    assert!(start.elapsed() >= std::time::Duration::from_millis(180), "6 calls of 60 ms, 2 at a time: 3 rounds");
}

#[tokio::test]
async fn serialised_calls_run_one_at_a_time_and_uncapped_ones_are_not_gated() {
    let _serial = SHIM_TESTS.lock().await;
    let Some((serial, _)) = stub_sdk("fault.slow=slow:20,ret:-10006", 1) else { return };
    let ctx = CallContext { corp_id: "wwcorp".into(), agent_id: 1, ..CallContext::default() };
    let (a, b) = tokio::join!(serial.invoke(&ctx, "slow", "{}"), serial.invoke(&ctx, "slow", "{}"));
    assert!(a.is_err() && b.is_err());
    assert_eq!(serial.peak_concurrent_calls(), 1);
    let Some((free, _)) = stub_sdk("", 0) else { return };
    assert!(!free.may_block());
    assert_eq!(free.peak_concurrent_calls(), 0);
}

#[test]
fn the_sdk_version_and_the_shim_build_are_reported() {
    let _serial = SHIM_TESTS.blocking_lock();
    let Some((sdk, _)) = stub_sdk("", 0) else { return };
    let version = sdk.sdk_version().expect("the stub exposes GetSDKVersion");
    assert!(version.starts_with("stub-sdk "), "{version}");
    let info = sdk.build_info().expect("the shim says how it was built");
    assert!(info.contains("sdk=stub") && info.contains("invoke=") && info.contains("log="), "{info}");
}

#[test]
fn a_call_type_other_than_1_or_2_is_answered_with_an_error_reply() {
    let _serial = SHIM_TESTS.blocking_lock();
    let Some((sdk, wecom)) = stub_sdk("", 0) else { return };
    let msg = r#"{"corp_id":"wwcorp","agent_id":1,"call_type":3,"data":"{}"}"#;
    let sealed = wecom.seal(msg.as_bytes(), "wwcorp");
    let err = sdk.decode("POST", &sealed.headers, &sealed.body).unwrap_err();
    assert_eq!(err.code, DECODE_BAD_CALL_TYPE);
    let reply = err.reply.expect("answered, not refused");
    let opened = wecom.open(&reply.headers, &reply.body).expect("the zone can decrypt the answer");
    let output: serde_json::Value = serde_json::from_slice(&opened.message).unwrap();
    assert_eq!(output["errcode"], 900_010, "{output}");
    assert_eq!(opened.receive_id, "wwcorp");
}

#[test]
fn the_sdks_notify_ids_are_used() {
    let _serial = SHIM_TESTS.blocking_lock();
    let Some((sdk, _)) = stub_sdk("", 0) else { return };
    assert!(sdk.native_notify_ids());
    let id = sdk.generate_notify_id().unwrap();
    assert!(crate::store::NotifyId::parse(&id).is_ok() && id.len() <= crate::store::MAX_OWN_NOTIFY_ID_BYTES);
}
