//! `zone-program preflight`: the start check run inside the image (and by the start script before
//! serving). It verifies what would otherwise fail late or obscurely in the zone: the configuration
//! (the same validation as `check-config`), the keyring's private key files and their permissions,
//! the SDK library, a writable data directory and a free port. Every failure says what to fix.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::traits::PublicKeyParts as _;
use zeroize::Zeroizing;

use crate::config::{Config, KeyringConfig, KeyringEntry, SdkBackend, SdkConfig};
use crate::keyring::Keyring;
use crate::sdk::native::NativeSdk;
use crate::sdk::pool::InvokeLimiter;

/// Largest key file read (a 4096-bit PEM is about 3.3 KiB).
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Passed, with a short note.
    Ok(String),
    /// Passed, but worth attention (does not fail the preflight).
    Warn(String),
    /// Failed: what is wrong and what to do about it.
    Fail {
        /// What is wrong (never a secret).
        problem: String,
        /// What to do.
        fix: String,
    },
}

/// One named check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked, e.g. `config`, `keyring.keys[0]`, `data directory`.
    pub what: String,
    /// How it went.
    pub outcome: Outcome,
}

/// Every check of one preflight run.
#[derive(Debug, Default)]
pub struct Report {
    /// The checks, in the order they ran.
    pub checks: Vec<Check>,
}

impl Report {
    /// True when no check failed.
    pub fn passed(&self) -> bool {
        self.failures() == 0
    }

    /// How many checks failed.
    pub fn failures(&self) -> usize {
        self.checks.iter().filter(|c| matches!(c.outcome, Outcome::Fail { .. })).count()
    }

    /// The report as printed: one line per check, each failure followed by its fix, then the verdict.
    pub fn render(&self) -> String {
        let mut out = self.render_checks();
        let verdict = match self.failures() {
            0 => "preflight passed".to_owned(),
            n => format!("preflight FAILED: {n} problem(s); the program will not start until they are fixed"),
        };
        out.push_str(&verdict);
        out.push('\n');
        out
    }

    /// One line per check, each failure followed by its fix (no verdict).
    pub fn render_checks(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            match &c.outcome {
                Outcome::Ok(note) => writeln!(out, "ok    {}: {note}", c.what),
                Outcome::Warn(note) => writeln!(out, "warn  {}: {note}", c.what),
                Outcome::Fail { problem, fix } => writeln!(out, "FAIL  {}: {problem}\n      fix: {fix}", c.what),
            }
            .expect("writing to a String");
        }
        out
    }

    fn push(&mut self, what: impl Into<String>, outcome: Outcome) {
        self.checks.push(Check { what: what.into(), outcome });
    }
}

/// Loads the configuration like `serve` does (defaults, `file`, `ZONE_PROGRAM_*` from `env`) and runs
/// every check. A configuration that does not load is itself a failure; nothing else is checked then.
pub fn run(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Report {
    let mut report = Report::default();
    let source = file.map_or_else(|| "built-in defaults".to_owned(), |f| f.display().to_string());
    match Config::load(file, env) {
        Ok(config) => {
            report.push(
                "config",
                Outcome::Ok(format!(
                    "{source} is valid (sdk backend: {:?}, listen: {})",
                    config.sdk.backend, config.server.listen
                )),
            );
            check_loaded(&config, &mut report);
        }
        Err(e) => report.push(
            "config",
            Outcome::Fail {
                problem: format!("{source}: {e}"),
                fix: format!(
                    "correct `{}` in the configuration file (every key is documented in config.example.toml) \
                     or its ZONE_PROGRAM_* variable",
                    e.key
                ),
            },
        ),
    }
    report
}

/// What `check-config` checks beyond loading the configuration: the keyring's key files (they are
/// named by the configuration, so a missing or unreadable one is a configuration error). The SDK
/// library, the data directory and the port are checked by [`run`] (`preflight`) and at start.
pub fn check_keys(config: &Config) -> Report {
    let mut report = Report::default();
    check_keyring(&config.keyring, &mut report);
    report
}

/// The checks that need a loaded configuration.
pub fn check_loaded(config: &Config, report: &mut Report) {
    check_keyring(&config.keyring, report);
    check_sdk(config, report);
    check_data_dir(&config.store.path, report);
    check_port(config, report);
}

fn check_keyring(keyring: &KeyringConfig, report: &mut Report) {
    let keys = &keyring.keys;
    if keys.is_empty() {
        report.push(
            "keyring",
            Outcome::Ok("no private keys configured (message secret keys are unwrapped on the app side)".into()),
        );
        return;
    }
    let mut seen = BTreeSet::new();
    for (i, entry) in keys.iter().enumerate() {
        let what = format!("keyring.keys[{i}]");
        if !seen.insert((entry.corp_id.as_str(), entry.public_key_ver)) {
            report.push(
                what,
                Outcome::Fail {
                    problem: format!("corp {} public_key_ver {} is listed twice", entry.corp_id, entry.public_key_ver),
                    fix: "keep one entry per (corp_id, public_key_ver)".into(),
                },
            );
            continue;
        }
        report.push(what, check_key_file(entry));
    }
    if report.passed() {
        let outcome = match Keyring::load(keyring) {
            Ok(ring) => Outcome::Ok(format!("{} key(s) load as the program loads them", ring.len())),
            Err(e) => Outcome::Fail { problem: e.to_string(), fix: "correct the file named above".into() },
        };
        report.push("keyring", outcome);
    }
}

/// Checks one private key file: a regular file, owner-only, readable, an RSA-2048 PEM key.
pub fn check_key_file(entry: &KeyringEntry) -> Outcome {
    let path = &entry.private_key_path;
    let shown = path.display();
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) => {
            return Outcome::Fail {
                problem: format!("{shown}: {e}"),
                fix: format!(
                    "create it with `zone-program keygen --corp-id {}` (and set_public_key), or correct private_key_path",
                    entry.corp_id
                ),
            };
        }
    };
    if !meta.is_file() {
        return Outcome::Fail {
            problem: format!("{shown} is not a regular file"),
            fix: "point private_key_path at the PEM file".into(),
        };
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Outcome::Fail {
            problem: format!("{shown} is readable or writable by group or others (mode {mode:04o})"),
            fix: format!("chmod 600 {shown}"),
        };
    }
    let pem = match read_small(path) {
        Ok(pem) => pem,
        Err(e) => {
            return Outcome::Fail {
                problem: format!("{shown} cannot be read: {e}"),
                fix: format!("make it readable by the user the program runs as (chown that user, chmod 600 {shown})"),
            };
        }
    };
    let key = RsaPrivateKey::from_pkcs8_pem(&pem).ok().or_else(|| RsaPrivateKey::from_pkcs1_pem(&pem).ok());
    match key {
        None => Outcome::Fail {
            problem: format!("{shown} is not an RSA private key in PEM (PKCS#8 or PKCS#1)"),
            fix: format!("generate one with `zone-program keygen --corp-id {}`", entry.corp_id),
        },
        Some(key) if key.size() * 8 != crate::keyring::KEY_BITS => Outcome::Fail {
            problem: format!("{shown} is an RSA-{} key; WeCom requires RSA-2048", key.size() * 8),
            fix: format!("generate one with `zone-program keygen --corp-id {}`", entry.corp_id),
        },
        Some(_) => Outcome::Ok(format!(
            "{shown}: RSA-2048, mode {mode:04o}, corp {} public_key_ver {}",
            entry.corp_id, entry.public_key_ver
        )),
    }
}

fn read_small(path: &Path) -> std::io::Result<Zeroizing<String>> {
    let mut text = Zeroizing::new(String::new());
    fs::File::open(path)?.take(MAX_KEY_FILE_BYTES).read_to_string(&mut text)?;
    Ok(text)
}

fn check_sdk(config: &Config, report: &mut Report) {
    match config.sdk.backend {
        SdkBackend::Local => report.push(
            "sdk",
            Outcome::Fail {
                problem: format!(
                    "local backend ({}): for development only, and its default keys are public",
                    config.sdk.local.zone_url
                ),
                fix: "set sdk.backend = \"native\" with sdk.native.library (the zone has no local zone)".into(),
            },
        ),
        SdkBackend::Native => report.push("sdk", check_native(&config.sdk)),
    }
    if config.sdk.backend == SdkBackend::Native && config.server.listen.ip().is_loopback() {
        report.push(
            "listen address",
            Outcome::Warn(format!(
                "server.listen {} is a loopback address: the zone's backend cannot reach it there; in the zone set \
                 server.listen = \"0.0.0.0:8080\"",
                config.server.listen
            )),
        );
    }
}

/// Checks the native backend as `serve` starts it: the shim is a readable regular file, it loads,
/// it has every symbol of the shim ABI in the right version, and the SDK initialises.
pub fn check_native(sdk: &SdkConfig) -> Outcome {
    let path = &sdk.native.library;
    let shown = path.display();
    let fix = "build the shim (native/build.sh --sdk-dir <vendor SDK>) and the image with the vendor SDK, and \
               set sdk.native.library to its path";
    match fs::File::open(path).and_then(|f| f.metadata()) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => return Outcome::Fail { problem: format!("{shown} is not a regular file"), fix: fix.into() },
        Err(e) => return Outcome::Fail { problem: format!("{shown}: {e}"), fix: fix.into() },
    }
    match NativeSdk::load(sdk, InvokeLimiter::new(sdk)) {
        Ok(native) => sdk_version_report(&shown.to_string(), &native, sdk.native.max_concurrent_calls),
        Err(e) => Outcome::Fail {
            problem: e.to_string(),
            fix: format!(
                "{fix}; a library the shim needs (libWeWorkSpecSDK.so, OpenSSL 3, libstdc++) must sit beside it or on \
                 LD_LIBRARY_PATH"
            ),
        },
    }
}

/// What preflight says of a loaded SDK: its version or build date when the library exposes one
/// (`GetSDKVersion`), how the shim was built, and the call cap. SDK builds before 2024-12-27 had a
/// network-handle limit under multithreading: without a version to show, that is a warning unless
/// the calls are serialised.
fn sdk_version_report(shown: &str, native: &NativeSdk, max_concurrent_calls: usize) -> Outcome {
    let build = native.build_info().unwrap_or_else(|| "build info not exposed".into());
    let cap = match max_concurrent_calls {
        0 => "vendor calls not capped beyond sdk.pool_size".to_owned(),
        1 => "vendor calls serialised".to_owned(),
        n => format!("at most {n} vendor calls at once"),
    };
    match native.sdk_version() {
        Some(version) => Outcome::Ok(format!(
            "{shown} loads: shim ABI complete ({build}), SDK initialised, SDK version {version:?}; {cap}"
        )),
        None if max_concurrent_calls == 1 => Outcome::Ok(format!(
            "{shown} loads: shim ABI complete ({build}), SDK initialised; the SDK exposes no version; {cap}"
        )),
        None => Outcome::Warn(format!(
            "{shown} loads: shim ABI complete ({build}), SDK initialised; the SDK exposes no version, so whether it \
             predates the 2024-12-27 fix of its network-handle limit under multithreading is unknown: check the \
             download date, or set sdk.native.max_concurrent_calls = 1; {cap}"
        )),
    }
}

fn check_data_dir(store_path: &Path, report: &mut Report) {
    let dir = match store_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    report.push("data directory", check_writable_dir(&dir, store_path));
}

/// Checks that `dir` exists (creating it) and takes a new file, and that `store`, if present, opens
/// for writing.
pub fn check_writable_dir(dir: &Path, store: &Path) -> Outcome {
    let shown = dir.display();
    let fix = format!(
        "make {shown} writable by the user the program runs as, or set store.path to a file in a writable directory"
    );
    if let Err(e) = fs::create_dir_all(dir) {
        return Outcome::Fail { problem: format!("{shown} cannot be created: {e}"), fix };
    }
    let probe = dir.join(format!(".preflight-{}", std::process::id()));
    let written = fs::write(&probe, b"probe");
    let _ = fs::remove_file(&probe);
    if let Err(e) = written {
        return Outcome::Fail { problem: format!("{shown} does not take new files: {e}"), fix };
    }
    if store.exists()
        && let Err(e) = fs::OpenOptions::new().append(true).open(store)
    {
        return Outcome::Fail { problem: format!("{} cannot be opened for writing: {e}", store.display()), fix };
    }
    Outcome::Ok(format!("{shown} is writable"))
}

fn check_port(config: &Config, report: &mut Report) {
    let addr = config.server.listen;
    let outcome = match std::net::TcpListener::bind(addr) {
        Ok(_) => Outcome::Ok(format!("{addr} is free")),
        Err(e) => Outcome::Fail {
            problem: format!("{addr} cannot be bound: {e}"),
            fix: "stop the process that holds the port (another copy of the program?) or change server.listen".into(),
        },
    };
    report.push("port", outcome);
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;

    use rand::SeedableRng as _;

    use super::*;

    fn env(pairs: &[(&str, String)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    fn failure_of<'a>(report: &'a Report, what: &str) -> Option<(&'a str, &'a str)> {
        report.checks.iter().find(|c| c.what == what).and_then(|c| match &c.outcome {
            Outcome::Fail { problem, fix } => Some((problem.as_str(), fix.as_str())),
            _ => None,
        })
    }

    fn good_env(dir: &Path) -> Vec<(String, String)> {
        env(&[
            ("ZONE_PROGRAM_SERVER__LISTEN", "127.0.0.1:0".into()),
            ("ZONE_PROGRAM_STORE__PATH", dir.join("data/store.sqlite").display().to_string()),
        ])
    }

    #[test]
    fn a_sound_configuration_passes_but_for_its_local_backend_and_creates_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let report = run(None, good_env(dir.path()));
        assert_eq!(report.failures(), 1, "{}", report.render());
        let (problem, fix) = failure_of(&report, "sdk").expect("the local backend fails (review finding 3)");
        assert!(problem.contains("development only") && fix.contains("native"), "{problem} / {fix}");
        assert!(dir.path().join("data").is_dir());
        assert!(report.render().contains("preflight FAILED: 1 problem(s)"), "{}", report.render());
    }

    #[test]
    fn the_native_backend_on_a_loopback_address_is_warned_about() {
        let config = Config::load(
            None,
            env(&[
                ("ZONE_PROGRAM_SDK__BACKEND", "native".into()),
                ("ZONE_PROGRAM_SDK__NATIVE__LIBRARY", "/x.so".into()),
            ]),
        )
        .unwrap();
        let mut report = Report::default();
        check_sdk(&config, &mut report);
        let warned = report.checks.iter().find(|c| c.what == "listen address").map(|c| &c.outcome);
        let ok = matches!(warned, Some(Outcome::Warn(note)) if note.contains("127.0.0.1:8080") && note.contains("0.0.0.0:8080"));
        assert!(ok, "{}", report.render());
    }

    #[test]
    fn a_broken_configuration_fails_naming_the_key_and_nothing_else_runs() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        fs::write(&file, "[store]\nnotify_ttl_secs = 9000\n").unwrap();
        let report = run(Some(&file), Vec::new());
        assert_eq!(report.checks.len(), 1);
        let (problem, fix) = failure_of(&report, "config").unwrap();
        assert!(problem.contains("store.notify_ttl_secs"), "{problem}");
        assert!(fix.contains("store.notify_ttl_secs"), "{fix}");
        assert!(report.render().contains("preflight FAILED: 1 problem"));
    }

    #[test]
    fn a_key_readable_by_others_fails_with_the_chmod_to_run() {
        let dir = tempfile::tempdir().unwrap();
        let k = zone_app::keygen::generate(dir.path(), "wwcorp", None, &[], &mut rand::rngs::StdRng::seed_from_u64(1))
            .unwrap();
        let entry = KeyringEntry { corp_id: "wwcorp".into(), public_key_ver: 1, private_key_path: k.private_key_path };
        assert!(matches!(check_key_file(&entry), Outcome::Ok(_)));
        fs::set_permissions(&entry.private_key_path, fs::Permissions::from_mode(0o644)).unwrap();
        let Outcome::Fail { problem, fix } = check_key_file(&entry) else { panic!("a 0644 key must fail") };
        assert!(problem.contains("mode 0644"), "{problem}");
        assert_eq!(fix, format!("chmod 600 {}", entry.private_key_path.display()));
    }

    #[test]
    fn a_sound_keyring_passes_and_is_loaded_by_the_programs_own_loader() {
        let dir = tempfile::tempdir().unwrap();
        let k = zone_app::keygen::generate(dir.path(), "wwcorp", None, &[], &mut rand::rngs::StdRng::seed_from_u64(2))
            .unwrap();
        let keyring = KeyringConfig {
            keys: vec![KeyringEntry {
                corp_id: "wwcorp".into(),
                public_key_ver: 1,
                private_key_path: k.private_key_path,
            }],
        };
        let mut report = Report::default();
        check_keyring(&keyring, &mut report);
        assert!(report.passed(), "{}", report.render());
        assert!(
            report.render().contains("ok    keyring: 1 key(s) load as the program loads them"),
            "{}",
            report.render()
        );
    }

    #[test]
    fn a_missing_or_non_rsa_key_file_fails_with_the_keygen_command() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wwcorp.1.pem");
        let entry = KeyringEntry { corp_id: "wwcorp".into(), public_key_ver: 1, private_key_path: path.clone() };
        let Outcome::Fail { fix, .. } = check_key_file(&entry) else { panic!("missing file must fail") };
        assert!(fix.contains("zone-program keygen --corp-id wwcorp"), "{fix}");
        let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).unwrap();
        f.write_all(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n").unwrap();
        let Outcome::Fail { problem, .. } = check_key_file(&entry) else { panic!("garbage must fail") };
        assert!(problem.contains("not an RSA private key"), "{problem}");
    }

    #[test]
    fn duplicate_keyring_entries_fail() {
        let entry =
            || KeyringEntry { corp_id: "ww".into(), public_key_ver: 1, private_key_path: "/nonexistent".into() };
        let mut report = Report::default();
        check_keyring(&KeyringConfig { keys: vec![entry(), entry()] }, &mut report);
        assert!(failure_of(&report, "keyring.keys[1]").unwrap().0.contains("listed twice"));
    }

    #[test]
    fn a_native_backend_without_its_library_fails_with_how_to_build_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut e = good_env(dir.path());
        e.push(("ZONE_PROGRAM_SDK__BACKEND".into(), "native".into()));
        e.push(("ZONE_PROGRAM_SDK__NATIVE__LIBRARY".into(), dir.path().join("missing.so").display().to_string()));
        let report = run(None, e);
        let (problem, fix) = failure_of(&report, "sdk").unwrap();
        assert!(problem.contains("missing.so"), "{problem}");
        assert!(fix.contains("native/build.sh"), "{fix}");
    }

    #[test]
    fn a_native_library_that_does_not_load_fails_with_the_loaders_reason() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("libzone_shim.so");
        fs::write(&fake, b"not an ELF object").unwrap();
        let mut sdk = SdkConfig::default();
        sdk.native.library = fake.clone();
        let Outcome::Fail { problem, fix } = check_native(&sdk) else { panic!("garbage must not load") };
        assert!(problem.contains("cannot load the native SDK shim") && problem.contains(&*fake.to_string_lossy()));
        assert!(fix.contains("LD_LIBRARY_PATH"), "{fix}");
    }

    #[test]
    fn a_port_in_use_fails() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut e = good_env(dir.path());
        e[0].1 = held.local_addr().unwrap().to_string();
        let report = run(None, e);
        assert!(failure_of(&report, "port").unwrap().1.contains("server.listen"));
    }

    #[test]
    fn a_data_directory_that_cannot_be_created_fails_with_the_key_to_change() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"").unwrap();
        let mut e = good_env(dir.path());
        e[1].1 = blocker.join("data/store.sqlite").display().to_string();
        let report = run(None, e);
        let (problem, fix) = failure_of(&report, "data directory").unwrap();
        assert!(problem.contains("cannot be created"), "{problem}");
        assert!(fix.contains("store.path"), "{fix}");
    }

    #[test]
    fn a_read_only_data_directory_fails_when_permissions_bind() {
        let dir = tempfile::tempdir().unwrap();
        let ro = dir.path().join("ro");
        fs::create_dir(&ro).unwrap();
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o500)).unwrap();
        let root_ignores_modes = fs::write(ro.join("x"), b"").is_ok();
        let outcome = check_writable_dir(&ro, &ro.join("store.sqlite"));
        assert_eq!(matches!(outcome, Outcome::Fail { .. }), !root_ignores_modes, "{outcome:?}");
    }
}
