//! Every log line and every error reply of the e2e suite, checked for secrets and message content.
//!
//! [`install`] (called by `TestEnv::spawn*` and the child-process harness) installs, once for the
//! whole test binary, a global tracing subscriber at `info` (`trace` for this crate) whose writer
//! appends each formatted line to an in-memory log. Every line of every in-process program, local
//! zone and HTTP client therefore lands here, whichever test produced it.
//!
//! What must never appear is registered as a *needle*: the static demo secrets (local-codec token
//! and EncodingAESKey, app token and EncodingAESKey, corp secret, the lines of the test RSA private
//! key), and, per environment, each seeded message's content and secret_key and each access_token
//! issued. [`check_new`] scans the lines logged since its last call (every `TestEnv` calls it when
//! dropped, so a leak fails some test however the suite is scheduled); [`check_all`] rescans the
//! whole log with every needle known by then (the secrets test calls it at its end, after its own
//! needles are registered). Error replies and child-process logs are checked as they arrive
//! ([`check_reply`], [`check_text`]).

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Mutex, MutexGuard, Once, OnceLock};

use secrecy::ExposeSecret as _;
use serde_json::Value;
use tracing_subscriber::prelude::*;
use zone_local::Shared;
use zone_testkit::DevConfig;

use crate::helpers::TEST_RSA_KEY;

/// Shorter needles match innocent text by chance (and the shortest seeded lines are all longer).
const MIN_NEEDLE_CHARS: usize = 6;

#[derive(Default)]
struct Log {
    /// Every line, in order.
    lines: Vec<String>,
    /// Lines before this index were checked by [`check_new`].
    checked: usize,
    /// Error replies seen (for the figures of the secrets test).
    replies: usize,
}

static LOG: OnceLock<Mutex<Log>> = OnceLock::new();
static NEEDLES: OnceLock<Mutex<BTreeSet<String>>> = OnceLock::new();
static INSTALL: Once = Once::new();

fn log() -> MutexGuard<'static, Log> {
    LOG.get_or_init(Mutex::default).lock().unwrap_or_else(|p| p.into_inner())
}

fn needles() -> MutexGuard<'static, BTreeSet<String>> {
    NEEDLES.get_or_init(Mutex::default).lock().unwrap_or_else(|p| p.into_inner())
}

/// Installs the capturing subscriber (once) and registers the static secrets of `config`.
pub fn install(config: &DevConfig) {
    INSTALL.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::new("info,zone_program=trace,zone_local=trace,zone_app=trace");
        let layer = tracing_subscriber::fmt::layer().with_ansi(false).with_target(true).with_writer(|| LineWriter);
        let _ = tracing_subscriber::registry().with(filter).with(layer).try_init();
    });
    let mut secrets = vec![
        config.program.sdk.local.token.expose_secret().to_owned(),
        config.local_zone.app_token.expose_secret().to_owned(),
        config.local_zone.app_encoding_aes_key.expose_secret().to_owned(),
        config.local_zone.corp_secret.expose_secret().to_owned(),
        config.app.corp_secret.expose_secret().to_owned(),
        config.app.callback.token.expose_secret().to_owned(),
        config.app.callback.encoding_aes_key.expose_secret().to_owned(),
    ];
    secrets.extend(config.program.sdk.local.keys.iter().map(|k| k.encoding_aes_key.expose_secret().to_owned()));
    secrets.extend(pem_lines(TEST_RSA_KEY));
    register(secrets);
}

/// The Base64 lines of a PEM body (each is key material on its own).
pub fn pem_lines(pem: &str) -> Vec<String> {
    pem.lines().filter(|l| !l.starts_with("-----") && l.len() >= 16).map(str::to_owned).collect()
}

/// Adds needles: text that must never be logged or replied in an error.
pub fn register(secrets: impl IntoIterator<Item = String>) {
    let mut set = needles();
    set.extend(secrets.into_iter().filter(|s| s.chars().count() >= MIN_NEEDLE_CHARS));
}

/// Registers every message content and secret_key the local zone holds right now.
pub fn register_zone(zone: &Shared) {
    let data = zone.data();
    let mut found = Vec::with_capacity(data.messages.len() * 2);
    for m in &data.messages {
        found.push(m.content.clone());
        found.push(m.secret_key.clone());
    }
    drop(data);
    register(found);
}

/// Every needle registered so far.
pub fn all_needles() -> Vec<String> {
    needles().iter().cloned().collect()
}

/// The needles found in `text`.
fn leaks(text: &str, needles: &[String]) -> Vec<String> {
    needles.iter().filter(|n| text.contains(n.as_str())).cloned().collect()
}

/// Fails (unless the thread already panics) when `text`, produced by `source`, holds a needle.
pub fn check_text(source: &str, text: &str) {
    let found = leaks(text, &all_needles());
    if !found.is_empty() && !std::thread::panicking() {
        panic!("{source} leaks {found:?}:\n{text}");
    }
}

/// Checks an app-side or program reply: when it (or the program output inside `response_data`)
/// carries a non-zero errcode, its whole text must hold no needle.
pub fn check_reply(reply: &Value) {
    let inner = reply.get("response_data").and_then(Value::as_str).and_then(|s| serde_json::from_str::<Value>(s).ok());
    let failed = |v: &Value| {
        let v = v.get("output").unwrap_or(v);
        v.get("errcode").and_then(Value::as_i64).is_some_and(|c| c != 0)
    };
    if failed(reply) || inner.as_ref().is_some_and(failed) {
        log().replies += 1;
        check_text("an error reply", &reply.to_string());
    }
}

/// Scans the lines logged since the last call; fails listing the leaking lines.
pub fn check_new() {
    let needles = all_needles();
    let bad: Vec<String> = {
        let mut log = log();
        let start = log.checked;
        log.checked = log.lines.len();
        log.lines[start..].iter().filter(|l| !leaks(l, &needles).is_empty()).cloned().collect()
    };
    if !bad.is_empty() && !std::thread::panicking() {
        panic!("{} log line(s) leak a secret or message content:\n{}", bad.len(), bad.join(""));
    }
}

/// Rescans the whole log with every needle known now; returns (lines scanned, needles, error
/// replies checked so far) for the report.
pub fn check_all() -> (usize, usize, usize) {
    let needles = all_needles();
    let (bad, lines, replies) = {
        let log = log();
        let bad: Vec<String> = log.lines.iter().filter(|l| !leaks(l, &needles).is_empty()).cloned().collect();
        (bad, log.lines.len(), log.replies)
    };
    assert!(bad.is_empty(), "{} log line(s) leak a secret or message content:\n{}", bad.len(), bad.join(""));
    (lines, needles.len(), replies)
}

/// Lines logged so far that contain `pattern` (tests use it to prove the capture works).
pub fn lines_containing(pattern: &str) -> usize {
    log().lines.iter().filter(|l| l.contains(pattern)).count()
}

/// The writer of the capturing subscriber: each formatted event is appended as one line.
struct LineWriter;

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        log().lines.push(String::from_utf8_lossy(buf).into_owned());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
