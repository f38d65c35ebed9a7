//! `[store]`: the embedded store of notify data and jobs.

use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, positive};

/// `[store]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// SQLite file. Default `data/zone-program.sqlite`.
    pub path: PathBuf,
    /// How long notify data stays readable, in seconds; at most 600 (the notify_id's validity).
    pub notify_ttl_secs: u64,
    /// Most notify entries kept at once. Default 10000.
    pub max_notify_entries: u64,
    /// Most bytes of notify data kept at once. Default 64 MiB.
    pub max_notify_bytes: u64,
    /// Interval of the expired-row purge, in seconds. Default 30.
    pub purge_interval_secs: u64,
    /// How long a write waits for another connection's lock on the file (a backup, an operator's
    /// `sqlite3`) before it fails, in milliseconds. Default 5000.
    pub busy_timeout_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("data/zone-program.sqlite"),
            notify_ttl_secs: 600,
            max_notify_entries: 10_000,
            max_notify_bytes: 64 * 1024 * 1024,
            purge_interval_secs: 30,
            busy_timeout_ms: 5000,
        }
    }
}

impl StoreConfig {
    /// Checks the section's values; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("store.notify_ttl_secs", self.notify_ttl_secs)?;
        if self.notify_ttl_secs > 600 {
            return Err(ConfigError::new(
                "store.notify_ttl_secs",
                "must be at most 600 (a notify_id is valid 10 minutes)",
            ));
        }
        positive("store.max_notify_entries", self.max_notify_entries)?;
        positive("store.max_notify_bytes", self.max_notify_bytes)?;
        positive("store.purge_interval_secs", self.purge_interval_secs)
    }
}
