//! Typed configuration: built-in defaults, then one TOML file (`--config`), then environment
//! overrides `ZONE_PROGRAM_<SECTION>__<KEY>` (`__` separates path segments, e.g.
//! `ZONE_PROGRAM_SERVER__LISTEN=0.0.0.0:9000`, `ZONE_PROGRAM_SDK__LOCAL__TOKEN=…`). Unknown keys are
//! errors; [`Config::validate`] names the key of the first bad value. Secrets are [`SecretString`]s
//! and never printed. `config.example.toml` mirrors every field here.
//!
//! One file per section, each with its defaults and its own `validate`; the layering of file and
//! environment is in `layering`.
//!
//! [`SecretString`]: secrecy::SecretString

use std::path::Path;

use serde::Deserialize;

mod abilities;
mod jobs;
mod keyring;
mod layering;
mod log;
mod messages;
mod sdk;
mod server;
mod store;

pub use abilities::{AbilitiesConfig, OutputEnvelope};
pub use jobs::JobsConfig;
pub use keyring::{KeyringConfig, KeyringEntry};
pub use layering::{layered_table, section, with_env_hint};
pub use log::{LogConfig, LogFormat};
pub use messages::MessagesConfig;
pub use sdk::{LocalKey, LocalSdkConfig, NativeSdkConfig, SdkBackend, SdkConfig};
pub use server::ServerConfig;
pub use store::StoreConfig;

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "ZONE_PROGRAM_";

/// A configuration error that names the key at fault.
#[derive(Debug, thiserror::Error)]
#[error("config {key}: {reason}")]
pub struct ConfigError {
    /// The dotted key, e.g. `sdk.local.keys[0].encoding_aes_key`, or the file.
    pub key: String,
    /// What is wrong (never the secret value).
    pub reason: String,
}

impl ConfigError {
    /// An error at `key`.
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { key: key.into(), reason: reason.into() }
    }
}

/// `Ok` when `v` is above 0, else "must be greater than 0" at `key`.
fn positive(key: &str, v: u64) -> Result<(), ConfigError> {
    if v == 0 { Err(ConfigError::new(key, "must be greater than 0")) } else { Ok(()) }
}

/// The whole configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The HTTP server facing the WeCom backend.
    pub server: ServerConfig,
    /// Logging.
    pub log: LogConfig,
    /// The zone SDK backend and its bounds.
    pub sdk: SdkConfig,
    /// The embedded store of notify data and jobs.
    pub store: StoreConfig,
    /// Async job workers.
    pub jobs: JobsConfig,
    /// Ability input and output handling.
    pub abilities: AbilitiesConfig,
    /// RSA private keys that unwrap message secret keys.
    pub keyring: KeyringConfig,
    /// Message access: the index, the budget of calls without an event token, event paging.
    pub messages: MessagesConfig,
}

impl Config {
    /// Why serving this configuration would open the program to anyone who knows the public demo
    /// keys: the local backend with the demo token or key on a non-loopback `server.listen`, unless
    /// `server.allow_public_demo_keys`. `None` when it is safe to serve.
    pub fn public_demo_keys_exposed(&self) -> Option<String> {
        let exposed = self.sdk.backend == SdkBackend::Local
            && self.sdk.local.uses_demo_secrets()
            && !self.server.listen.ip().is_loopback()
            && !self.server.allow_public_demo_keys;
        exposed.then(|| {
            format!(
                "server.listen {} is not a loopback address, and the local backend uses the public demo token or key \
                 of [sdk.local]: anyone on the network could call the program. Listen on 127.0.0.1, set your own \
                 sdk.local.token and keys, use sdk.backend = \"native\", or, on a closed lab network only, pass \
                 --allow-public-demo-keys (server.allow_public_demo_keys)",
                self.server.listen
            )
        })
    }

    /// Defaults, then `file` (if any), then `ZONE_PROGRAM_*` variables from `env`; validated.
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        layered_table(file, env.clone()).and_then(Self::from_table).map_err(|e| with_env_hint(e, &env))
    }

    /// The configuration in `table` (every key optional), validated.
    pub fn from_table(table: toml::Table) -> Result<Self, ConfigError> {
        let config: Config = section(table, "")?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value that has a rule, section by section; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.sdk.validate()?;
        self.store.validate()?;
        self.jobs.validate()?;
        self.abilities.validate(&self.server)?;
        self.keyring.validate()?;
        self.messages.validate()
    }
}

#[cfg(test)]
mod tests {
    use zone_crypto::demo;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_defaults_are_valid_and_serve_the_local_backend_on_8080() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.server.listen.port(), 8080);
        assert_eq!(c.sdk.backend, SdkBackend::Local);
        assert_eq!(c.store.notify_ttl_secs, 600);
    }

    /// Review finding 3: the defaults served the public demo keys on 0.0.0.0:8080.
    #[test]
    fn the_public_demo_keys_are_served_only_on_loopback_unless_allowed() {
        let c = Config::load(None, env(&[])).unwrap();
        assert!(c.server.listen.ip().is_loopback(), "the default listens on loopback");
        assert_eq!(c.public_demo_keys_exposed(), None);
        let open = [("ZONE_PROGRAM_SERVER__LISTEN", "0.0.0.0:8080")];
        let c = Config::load(None, env(&open)).unwrap();
        let why = c.public_demo_keys_exposed().expect("exposed");
        assert!(why.contains("server.listen 0.0.0.0:8080") && why.contains("--allow-public-demo-keys"), "{why}");
        let own_keys = [
            open[0],
            ("ZONE_PROGRAM_SDK__LOCAL__TOKEN", "MyOwnToken"),
            (
                "ZONE_PROGRAM_SDK__LOCAL__KEYS",
                r#"[{ ver = 1, encoding_aes_key = "MyOwnKey0123456789abcdefghijklmnopqrstuvwxy" }]"#,
            ),
        ];
        assert_eq!(Config::load(None, env(&own_keys)).unwrap().public_demo_keys_exposed(), None, "own keys");
        let native = [open[0], ("ZONE_PROGRAM_SDK__BACKEND", "native"), ("ZONE_PROGRAM_SDK__NATIVE__LIBRARY", "/x.so")];
        assert_eq!(Config::load(None, env(&native)).unwrap().public_demo_keys_exposed(), None, "native");
        let allowed = [open[0], ("ZONE_PROGRAM_SERVER__ALLOW_PUBLIC_DEMO_KEYS", "true")];
        assert_eq!(Config::load(None, env(&allowed)).unwrap().public_demo_keys_exposed(), None);
    }

    #[test]
    fn each_section_validates_itself_and_names_its_full_key() {
        let c = Config::default();
        c.server.validate().unwrap();
        c.sdk.validate().unwrap();
        c.store.validate().unwrap();
        c.jobs.validate().unwrap();
        c.abilities.validate(&c.server).unwrap();
        c.keyring.validate().unwrap();
        c.messages.validate().unwrap();
        let jobs = JobsConfig { claim_lease_secs: 0, ..JobsConfig::default() };
        assert_eq!(jobs.validate().unwrap_err().key, "jobs.claim_lease_secs");
        let messages = MessagesConfig { pages_per_notify: 101, ..MessagesConfig::default() };
        assert_eq!(messages.validate().unwrap_err().key, "messages.pages_per_notify");
        let server = ServerConfig { body_limit_bytes: 512, max_buffered_body_bytes: 512, ..ServerConfig::default() };
        let err = c.abilities.validate(&server).unwrap_err();
        assert_eq!(
            (err.key.as_str(), err.reason.as_str()),
            ("abilities.max_input_bytes", "must not exceed server.body_limit_bytes")
        );
    }

    #[test]
    fn environment_overrides_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[server]\nlisten = \"127.0.0.1:1\"\nbody_limit_bytes = 10\n[abilities]\nmax_input_bytes = 5\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), env(&[("ZONE_PROGRAM_SERVER__LISTEN", "127.0.0.1:9")])).unwrap();
        assert_eq!(c.server.listen.port(), 9);
        assert_eq!(c.server.body_limit_bytes, 10);
    }

    #[test]
    fn an_unknown_key_is_an_error_that_names_it() {
        let err = Config::load(None, env(&[("ZONE_PROGRAM_SERVER__LISTN", "x")])).unwrap_err();
        assert_eq!(err.key, "server.listn", "{err}");
        let err = Config::load(None, env(&[("ZONE_PROGRAM_JOBS__WORKERS", "many")])).unwrap_err();
        assert_eq!(err.key, "jobs.workers", "{err}");
    }

    #[test]
    fn a_bad_value_is_an_error_that_names_its_key_and_not_the_secret() {
        let err = Config::load(None, env(&[("ZONE_PROGRAM_SDK__LOCAL__TOKEN", "not valid!secret")])).unwrap_err();
        assert_eq!(err.key, "sdk.local.token");
        assert!(!err.to_string().contains("secret"), "{err}");
        let err = Config::load(None, env(&[("ZONE_PROGRAM_STORE__NOTIFY_TTL_SECS", "1200")])).unwrap_err();
        assert_eq!(err.key, "store.notify_ttl_secs");
        let err =
            Config::load(None, env(&[("ZONE_PROGRAM_SDK__LOCAL__KEYS", "[{ver = 1, encoding_aes_key = \"short\"}]")]))
                .unwrap_err();
        assert_eq!(err.key, "sdk.local.keys[0].encoding_aes_key");
    }

    #[test]
    fn a_toml_syntax_error_has_its_line_and_column_and_a_number_is_said_in_words() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:1\"\nbody_limit_bytes = = 3\n").unwrap();
        let err = Config::load(Some(&path), env(&[])).unwrap_err();
        assert!(err.reason.starts_with("line 3, column "), "{err}");
        std::fs::write(&path, "[server]\nbody_limit_bytes = \"big\"\n").unwrap();
        let err = Config::load(Some(&path), env(&[])).unwrap_err();
        assert_eq!(
            (err.key.as_str(), err.reason.as_str()),
            ("server.body_limit_bytes", "invalid type, expected a whole number (0 or more)")
        );
    }

    #[test]
    fn a_mistyped_secret_is_not_quoted_in_the_error() {
        let err = Config::load(None, env(&[("ZONE_PROGRAM_SDK__LOCAL__KEYS", "TopSecretKeyMaterial")])).unwrap_err();
        assert_eq!(err.key, "sdk.local.keys");
        assert!(err.reason.starts_with("invalid type, expected a list, e.g. [\"a\", \"b\"]"), "{err}");
        assert!(err.reason.contains("ZONE_PROGRAM_SDK__LOCAL__KEYS"), "names the variable: {err}");
        assert!(!err.reason.contains("TopSecret"), "{err}");
        let err = Config::load(None, env(&[("ZONE_PROGRAM_SDK__LOCAL__TOKEN", "123456")])).unwrap_err();
        assert!(!err.to_string().contains("123456"), "{err}");
        let err = Config::load(None, env(&[("ZONE_PROGRAM_SDK__BACKEND", "plaintext")])).unwrap_err();
        assert!(err.reason.contains("expected") && !err.reason.contains("plaintext"), "{err}");
    }

    #[test]
    fn secrets_do_not_appear_in_debug_output() {
        let c = Config::load(None, env(&[])).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains(demo::LOCAL_KEY) && !dbg.contains(demo::LOCAL_TOKEN), "{dbg}");
    }

    #[test]
    fn debug_mode_needs_the_native_backend_and_both_tokens() {
        let debug =
            [("ZONE_PROGRAM_SDK__NATIVE__DEBUG_TOKEN", "dbg"), ("ZONE_PROGRAM_SDK__NATIVE__ACCESS_TOKEN", "acc")];
        let err = Config::load(None, env(&debug)).unwrap_err();
        assert_eq!(err.key, "sdk.native.debug_token");
        assert!(err.to_string().contains("native") && !err.to_string().contains("dbg"), "{err}");
        let native = [debug[0], debug[1], ("ZONE_PROGRAM_SDK__BACKEND", "native")];
        let c = Config::load(None, env(&native)).unwrap();
        assert_eq!(c.sdk.backend, SdkBackend::Native);
        let err = Config::load(None, env(&native[..1])).unwrap_err();
        assert_eq!(err.key, "sdk.native.debug_token");
    }
}
