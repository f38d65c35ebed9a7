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

/// The only unit test that creates shim contexts, so the process-wide live-object count is its own.
#[tokio::test]
async fn thousands_of_calls_leave_no_shim_object_behind() {
    use zone_crypto::demo::{LOCAL_KEY as DEMO_LOCAL_KEY, LOCAL_TOKEN as DEMO_LOCAL_TOKEN};
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
