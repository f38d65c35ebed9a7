//! `[keyring]`: RSA private keys that unwrap message secret keys.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// `[keyring]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyringConfig {
    /// Private keys by corp and `public_key_ver`.
    pub keys: Vec<KeyringEntry>,
}

/// One private key file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyringEntry {
    /// The corp the key belongs to.
    pub corp_id: String,
    /// The `public_key_ver` it was registered under.
    pub public_key_ver: u32,
    /// PEM file (PKCS#1 or PKCS#8), readable by the owner only.
    pub private_key_path: PathBuf,
}

impl KeyringConfig {
    /// Checks every entry names its corp; the error names the key. (The key files are read, and
    /// their modes checked, when the keyring loads.)
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, k) in self.keys.iter().enumerate() {
            if k.corp_id.is_empty() {
                return Err(ConfigError::new(format!("keyring.keys[{i}].corp_id"), "must not be empty"));
            }
        }
        Ok(())
    }
}
