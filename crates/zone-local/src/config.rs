//! `[local_zone]` of the developer configuration: the emulator's settings. Demo values; offline use only.

use std::net::SocketAddr;
use std::path::PathBuf;

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use zone_crypto::cipher::{self as crypto, EncodingAesKey};
use zone_crypto::demo;

/// `[local_zone]`: the emulator of the WeCom side. Demo values; offline use only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalZoneConfig {
    /// Where the local zone listens. Default `127.0.0.1:8081`.
    pub listen: SocketAddr,
    /// Where it sends callbacks (the program). Default `http://127.0.0.1:8080`.
    pub program_url: String,
    /// The demo corp id.
    pub corp_id: String,
    /// The demo app's agent id.
    pub agent_id: i64,
    /// The program id the app calls.
    pub program_id: String,
    /// The app's secret for `gettoken`.
    pub corp_secret: SecretString,
    /// Seed of the demo data.
    pub seed: u64,
    /// Where the demo data and key pair are kept. Default `data/local-zone`.
    pub data_dir: PathBuf,
    /// Keep the zone's world (messages, tokens, notify ids, jobs, registered keys, the clock) in
    /// `data_dir` across restarts, as the real WeCom side forgets nothing. Default true.
    pub persist: bool,
    /// The app's callback URL for `program_notify`. Default `http://127.0.0.1:9090/callback`, where
    /// `zone-program app listen` receives by default; empty: notifications are only kept in the
    /// outbox (`GET /local/notifications`).
    pub app_callback_url: Option<String>,
    /// The app callback token (1–32 of `[A-Za-z0-9]`).
    pub app_token: SecretString,
    /// The app callback EncodingAESKey (43 of `[A-Za-z0-9]`).
    pub app_encoding_aes_key: SecretString,
    /// Lifetime of an access_token from `gettoken`, in seconds. Default 7200.
    pub access_token_ttl_secs: u64,
    /// How long the zone waits for the program's reply to a request, in milliseconds. Default 10000.
    pub program_timeout_ms: u64,
    /// Result polls a model task or export job answers "running" before it is done. Default 1.
    pub ready_after_polls: u32,
    /// Listing calls without an event token (`sync_msg`, `get_hit_msg_list`) the corp may make in
    /// any 60 s; more are refused with 45009. WeCom says only "strictly limited": this figure is the
    /// emulator's choice. 0: no limit. Default 30.
    pub tokenless_calls_per_minute: u32,
    /// The id of the own model (`create_model_task`); the program plays it. Default `zm_local_demo`.
    pub own_model_id: String,
    /// An export job finishes (and `chat_archive_export_finished` is raised) this long after its
    /// creation, in milliseconds; 0 = only through `/local/events`. Default 2000.
    pub export_finish_after_ms: u64,
    /// The `is_async` flag of the calls that SDK-routed `create_program_task` / `create_model_task`
    /// send to the program (with a fresh `job_info` either way). WeCom does not document it; false
    /// plays a zone that sends them as plain app calls (the program's `abilities.always_async`
    /// covers that). Default true.
    pub task_calls_async: bool,
    /// Declared abilities with their protocols; when the list is non-empty, other ability ids are refused.
    pub abilities: Vec<AbilityProtocol>,
    /// Listen on a non-loopback address. The zone's controls (`/local/*`) need no credentials and
    /// its keys are public, so this is for a closed lab network only (`serve
    /// --allow-public-demo-keys`). Default false.
    pub allow_public_demo_keys: bool,
}

/// One declared ability of the program, with the JSON examples the zone matches calls against.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbilityProtocol {
    /// The ability id.
    pub id: String,
    /// Input protocol (a JSON example); `request_data` must match it or the app gets 790016.
    pub input_protocol: Option<String>,
    /// Output protocol (a JSON example); the output must match it or the app gets 790014.
    pub output_protocol: Option<String>,
}

impl Default for LocalZoneConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            program_url: "http://127.0.0.1:8080".into(),
            corp_id: demo::CORP_ID.into(),
            agent_id: 1_000_002,
            program_id: demo::PROGRAM_ID.into(),
            corp_secret: SecretString::from(demo::CORP_SECRET),
            seed: 42,
            data_dir: PathBuf::from("data/local-zone"),
            persist: true,
            app_callback_url: Some("http://127.0.0.1:9090/callback".into()),
            app_token: SecretString::from(demo::APP_TOKEN),
            app_encoding_aes_key: SecretString::from(demo::APP_KEY),
            access_token_ttl_secs: 7200,
            program_timeout_ms: 10_000,
            ready_after_polls: 1,
            tokenless_calls_per_minute: 30,
            own_model_id: "zm_local_demo".into(),
            export_finish_after_ms: 2000,
            task_calls_async: true,
            abilities: Vec::new(),
            allow_public_demo_keys: false,
        }
    }
}

impl LocalZoneConfig {
    /// Why the local zone must not listen where it is configured to: a non-loopback `listen`
    /// without `allow_public_demo_keys`. `None` when it may.
    pub fn exposed(&self) -> Option<String> {
        (!self.listen.ip().is_loopback() && !self.allow_public_demo_keys).then(|| {
            format!(
                "local_zone.listen {} is not a loopback address: the local zone's controls need no credentials and its \
                 keys are public. Listen on 127.0.0.1, or, on a closed lab network only, pass --allow-public-demo-keys \
                 (local_zone.allow_public_demo_keys)",
                self.listen
            )
        })
    }

    /// Checks every value that has a rule; the error names the key (`local_zone.…`).
    pub fn validate(&self) -> anyhow::Result<()> {
        let lz = self;
        let positive = |key: &str, v: u64| if v == 0 { Err(invalid(key, "must be greater than 0")) } else { Ok(()) };
        crypto::parse_token(lz.app_token.expose_secret()).map_err(|r| invalid("local_zone.app_token", r))?;
        EncodingAesKey::parse(lz.app_encoding_aes_key.expose_secret())
            .map_err(|_| invalid("local_zone.app_encoding_aes_key", "must be 43 characters of [A-Za-z0-9]"))?;
        if lz.corp_id.is_empty() || lz.program_id.is_empty() {
            return Err(invalid("local_zone.corp_id", "corp_id and program_id must not be empty"));
        }
        positive("local_zone.access_token_ttl_secs", lz.access_token_ttl_secs)?;
        positive("local_zone.program_timeout_ms", lz.program_timeout_ms)?;
        for (i, a) in lz.abilities.iter().enumerate() {
            let protocols = [("input_protocol", &a.input_protocol), ("output_protocol", &a.output_protocol)];
            for (name, text) in protocols {
                if text.as_deref().is_some_and(|t| serde_json::from_str::<serde_json::Value>(t).is_err()) {
                    return Err(invalid(format!("local_zone.abilities[{i}].{name}"), "must be a JSON example"));
                }
            }
        }
        Ok(())
    }
}

fn invalid(key: impl std::fmt::Display, reason: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("config {key}: {reason}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review finding 3: the local zone's controls answered on any address.
    #[test]
    fn the_local_zone_listens_beyond_loopback_only_when_allowed() {
        let mut c = LocalZoneConfig::default();
        assert_eq!(c.exposed(), None);
        c.listen = "[::]:8081".parse().unwrap();
        assert!(c.exposed().expect("exposed").contains("local_zone.listen [::]:8081"));
        c.allow_public_demo_keys = true;
        assert_eq!(c.exposed(), None);
    }
}
