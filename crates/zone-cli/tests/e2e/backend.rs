//! Which SDK backend the suite runs against. `ZONE_TEST_BACKEND=native` runs every test on the native
//! backend: the C ABI shim over the stub vendor SDK, built by `native/build.sh`; the default is the
//! local backend. `scripts/test.sh` runs the suite once per backend.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use zone_program::config::{Config, SdkBackend, SdkConfig};

use crate::helpers::TestEnv;

/// True when `ZONE_TEST_BACKEND=native` selects the native backend for the whole suite.
pub fn native_selected() -> bool {
    std::env::var("ZONE_TEST_BACKEND").is_ok_and(|b| b == "native")
}

/// The shim built by `native/build.sh`.
pub fn shim_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../native/build/libzone_shim.so")
}

/// The stub vendor library (a real shared object that is not a shim).
pub fn stub_sdk_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../native/build/stub/libWeWorkSpecSDK.so")
}

/// Whether native-only tests can run. Without the build they are skipped, unless the native backend
/// is required (`ZONE_TEST_BACKEND=native` or `ZONE_TEST_REQUIRE_NATIVE=1`, as scripts/test.sh sets):
/// then a missing build fails the test instead of hiding it.
pub fn native_available() -> bool {
    if shim_path().exists() {
        return true;
    }
    let required = native_selected() || std::env::var("ZONE_TEST_REQUIRE_NATIVE").is_ok_and(|v| v == "1");
    assert!(!required, "{} is missing: run native/build.sh", shim_path().display());
    eprintln!("skipped: {} is not built (native/build.sh)", shim_path().display());
    false
}

/// The stub SDK's init options for `sdk`: the same codec settings as `[sdk.local]`, so the WeCom side
/// of the tests (and the local zone) talk to it exactly as to the local backend.
pub fn stub_options(sdk: &SdkConfig) -> String {
    let local = &sdk.local;
    let mut options = format!(
        "token={};window_secs={};nonce_capacity={};zone_url={}",
        local.token.expose_secret(),
        local.replay_window_secs,
        local.nonce_cache_capacity,
        local.zone_url
    );
    for key in &local.keys {
        options.push_str(&format!(";key.{}={}", key.ver, key.encoding_aes_key.expose_secret()));
    }
    options
}

/// Completes `config` for the selected backend, after the test's own tweaks: with the native backend
/// (selected for the suite, or chosen by the test) it points at the built shim and puts the stub's
/// codec settings before any stub options the test set (faults, log file).
pub fn apply(config: &mut Config) {
    if native_selected() {
        config.sdk.backend = SdkBackend::Native;
    }
    if config.sdk.backend != SdkBackend::Native {
        return;
    }
    assert!(native_available(), "the native backend needs native/build.sh");
    config.sdk.native.library = shim_path();
    config.sdk.native.log_to_sdk = false;
    let extra = config.sdk.native.init_options.expose_secret().to_owned();
    config.sdk.native.init_options = SecretString::from(format!("{};{extra}", stub_options(&config.sdk)));
}

/// Asserts the answer to a request that failed verification: the local backend answers 403 with no
/// detail; the vendor SDK (here the stub) builds a reply from "" that the HTTP layer sends as is.
pub async fn assert_refused(env: &TestEnv, res: reqwest::Response) {
    if env.state.config.sdk.backend != SdkBackend::Native {
        assert_eq!(res.status(), 403);
        assert_eq!(res.text().await.unwrap(), r#"{"error":"rejected"}"#, "no detail for an attacker");
        return;
    }
    assert_eq!(res.status(), 200);
    let headers: Vec<(String, String)> =
        res.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned())).collect();
    let body = res.bytes().await.unwrap();
    let opened = env.wecom.open(&headers, &body).expect("the SDK-built refusal verifies");
    assert!(opened.message.is_empty(), "the refusal carries no detail");
}
