//! The RSA private keys that unwrap each message's `encrypted_secret_key` into the `secret_key`
//! that model tasks need (app-side.md §5): indexed by `(corp_id, public_key_ver)`, loaded from PEM
//! files (PKCS#1 `BEGIN RSA PRIVATE KEY` or PKCS#8 `BEGIN PRIVATE KEY`) that only their owner may
//! read, and decrypted with RSAES-PKCS1-v1_5 (app-side.md §5.2). Key material is zeroized on drop
//! and no type here prints it. An unknown version is a per-message error, never a panic.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::{Pkcs1v15Encrypt, RsaPrivateKey};
use zeroize::Zeroizing;

use crate::config::KeyringConfig;

/// The RSA modulus size WeCom requires of the message keys (`set_public_key`).
pub const KEY_BITS: usize = 2048;

/// Largest accepted PEM file.
const MAX_PEM_BYTES: u64 = 64 * 1024;
/// Largest accepted `encrypted_secret_key` (Base64 of a 4096-bit ciphertext is 684 characters).
const MAX_WRAPPED_BYTES: usize = 1024;
/// Largest accepted unwrapped `secret_key`.
const MAX_SECRET_KEY_BYTES: usize = 256;

/// The private keys of this deployment.
#[derive(Default)]
pub struct Keyring {
    keys: HashMap<(String, u32), PrivateKey>,
}

/// One private key. Its `Debug` prints nothing of it.
struct PrivateKey(RsaPrivateKey);

/// An unwrapped message key: use it only through [`SecretKey::expose_secret`], at the SDK call.
pub struct SecretKey(Zeroizing<String>);

/// Why the keyring could not be loaded. Names the config key and the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// The file could not be read.
    #[error("keyring.keys[{index}].private_key_path: cannot read {path}")]
    Read {
        /// Index in `keyring.keys`.
        index: usize,
        /// The file.
        path: String,
    },
    /// The file is readable by its group or others.
    #[error("keyring.keys[{index}].private_key_path: {path} has mode {mode:o}; allow its owner only (chmod 600)")]
    Permissions {
        /// Index in `keyring.keys`.
        index: usize,
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not an RSA private key in PKCS#1 or PKCS#8 PEM.
    #[error("keyring.keys[{index}].private_key_path: {path} is not an RSA private key in PKCS#1 or PKCS#8 PEM")]
    Pem {
        /// Index in `keyring.keys`.
        index: usize,
        /// The file.
        path: String,
    },
    /// Two entries share a corp and version.
    #[error("keyring.keys[{index}]: a second key for the same corp_id and public_key_ver")]
    Duplicate {
        /// Index in `keyring.keys`.
        index: usize,
    },
}

/// Why one `encrypted_secret_key` could not be unwrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnwrapError {
    /// No key for this corp and `public_key_ver`.
    #[error("no private key for this public_key_ver")]
    UnknownKey,
    /// Not Base64, or too long.
    #[error("encrypted_secret_key is not valid Base64")]
    BadEncoding,
    /// RSA decryption failed (wrong key or padding).
    #[error("encrypted_secret_key does not decrypt")]
    Decrypt,
    /// The result is not a short printable string.
    #[error("the unwrapped secret_key is malformed")]
    Malformed,
}

impl Keyring {
    /// Loads every key of `[keyring]`, refusing files that others may read.
    pub fn load(config: &KeyringConfig) -> Result<Self, KeyringError> {
        let mut ring = Self::default();
        for (index, entry) in config.keys.iter().enumerate() {
            let pem = read_private_file(index, &entry.private_key_path)?;
            let key = parse_pem(&pem)
                .ok_or_else(|| KeyringError::Pem { index, path: entry.private_key_path.display().to_string() })?;
            if ring.keys.insert((entry.corp_id.clone(), entry.public_key_ver), PrivateKey(key)).is_some() {
                return Err(KeyringError::Duplicate { index });
            }
        }
        Ok(ring)
    }

    /// Adds a key from PEM text (PKCS#1 or PKCS#8); `false` if it does not parse.
    pub fn insert_pem(&mut self, corp_id: &str, public_key_ver: u32, pem: &str) -> bool {
        match parse_pem(pem) {
            Some(key) => {
                self.keys.insert((corp_id.to_owned(), public_key_ver), PrivateKey(key));
                true
            }
            None => false,
        }
    }

    /// How many keys are loaded.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is loaded.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a key for `(corp_id, public_key_ver)` is loaded.
    pub fn has_key(&self, corp_id: &str, public_key_ver: i64) -> bool {
        u32::try_from(public_key_ver).is_ok_and(|v| self.keys.contains_key(&(corp_id.to_owned(), v)))
    }

    /// `secret_key = RSA_Decrypt(private_key[corp_id, public_key_ver], Base64Decode(encrypted))`.
    /// CPU-bound (one RSA private operation): call it off the async executor for many messages.
    pub fn unwrap_secret_key(
        &self,
        corp_id: &str,
        public_key_ver: i64,
        encrypted_secret_key: &str,
    ) -> Result<SecretKey, UnwrapError> {
        let ver = u32::try_from(public_key_ver).map_err(|_| UnwrapError::UnknownKey)?;
        let key = self.keys.get(&(corp_id.to_owned(), ver)).ok_or(UnwrapError::UnknownKey)?;
        if encrypted_secret_key.len() > MAX_WRAPPED_BYTES {
            return Err(UnwrapError::BadEncoding);
        }
        let wrapped = BASE64.decode(encrypted_secret_key.trim()).map_err(|_| UnwrapError::BadEncoding)?;
        let plain = Zeroizing::new(key.0.decrypt(Pkcs1v15Encrypt, &wrapped).map_err(|_| UnwrapError::Decrypt)?);
        let ok = !plain.is_empty() && plain.len() <= MAX_SECRET_KEY_BYTES && plain.iter().all(u8::is_ascii_graphic);
        if !ok {
            return Err(UnwrapError::Malformed);
        }
        let text = std::str::from_utf8(&plain).map_err(|_| UnwrapError::Malformed)?;
        Ok(SecretKey(Zeroizing::new(text.to_owned())))
    }
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<_> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("Keyring").field("keys", &ids).finish()
    }
}

impl SecretKey {
    /// A key the app unwrapped itself and sent in (app-side.md §5.4).
    pub fn from_given(key: String) -> Self {
        Self(Zeroizing::new(key))
    }

    /// The key text, for the SDK request that needs it. Never log it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

fn parse_pem(pem: &str) -> Option<RsaPrivateKey> {
    RsaPrivateKey::from_pkcs8_pem(pem).or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem)).ok()
}

fn read_private_file(index: usize, path: &Path) -> Result<Zeroizing<String>, KeyringError> {
    let shown = || path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|_| KeyringError::Read { index, path: shown() })?;
    if !meta.is_file() || meta.len() > MAX_PEM_BYTES {
        return Err(KeyringError::Read { index, path: shown() });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyringError::Permissions { index, path: shown(), mode });
        }
    }
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|_| KeyringError::Read { index, path: shown() })?);
    let text = std::str::from_utf8(&bytes).map_err(|_| KeyringError::Pem { index, path: shown() })?;
    Ok(Zeroizing::new(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use proptest::prelude::*;
    use rsa::RsaPublicKey;
    use rsa::pkcs8::DecodePublicKey as _;

    use super::*;
    use crate::config::KeyringEntry;

    /// Made with OpenSSL (tests/fixtures/README.md):
    /// `printf 'SK-local-test-0001' | openssl pkeyutl -encrypt -pubin -inkey test_rsa_public.pem
    ///  -pkeyopt rsa_padding_mode:pkcs1 | base64 -w0`
    const VECTOR: &str = "Yw5YgwJiqJ/ixTXWUdPqJ8wq/rdqtdngoazOXmbOc5IrTZ7/8Hn4Taw+ZqS6XtINuRIlGSAlXus/HoFGwZfiwvngNWdjsMkEWdbS5Rl92um2CE9ZV2TqqrgB2YqF7Z0urRtWhClYoeaJmmfZeQ75H3BnkpPLtzfWeVjYFjdWCb5RQG5+v2+p3Q/xI56rxfHUpWJJ3zEwsS9r2Qd7OQ3zq2/daxg5QF5IQPXBIwQJGpA24evpwHSLmOBwj3nmv0eElWhv269NzIRtXt52uVdffAZoS2ZrZPQjhIZomnCmZHfgDEA77IFbnAIIZgbiGho96Ro6UpuOaLq8TmJSI1ErOg==";

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
    }

    fn private_copy(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::copy(fixture(name), &path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        path
    }

    fn entry(ver: u32, path: PathBuf) -> KeyringEntry {
        KeyringEntry { corp_id: "corp".into(), public_key_ver: ver, private_key_path: path }
    }

    fn ring() -> Keyring {
        let mut ring = Keyring::default();
        assert!(ring.insert_pem("corp", 1, &std::fs::read_to_string(fixture("test_rsa_pkcs8.pem")).unwrap()));
        ring
    }

    #[test]
    fn the_openssl_vector_unwraps_with_the_pkcs8_and_the_pkcs1_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = KeyringConfig {
            keys: vec![
                entry(1, private_copy(dir.path(), "test_rsa_pkcs8.pem", 0o600)),
                entry(2, private_copy(dir.path(), "test_rsa_pkcs1.pem", 0o400)),
            ],
        };
        let ring = Keyring::load(&config).unwrap();
        assert_eq!(ring.len(), 2);
        for ver in [1, 2] {
            assert_eq!(ring.unwrap_secret_key("corp", ver, VECTOR).unwrap().expose_secret(), "SK-local-test-0001");
        }
    }

    #[test]
    fn an_unknown_corp_or_version_is_a_per_message_error() {
        let ring = ring();
        assert_eq!(ring.unwrap_secret_key("corp", 2, VECTOR).unwrap_err(), UnwrapError::UnknownKey);
        assert_eq!(ring.unwrap_secret_key("other", 1, VECTOR).unwrap_err(), UnwrapError::UnknownKey);
        assert_eq!(ring.unwrap_secret_key("corp", -1, VECTOR).unwrap_err(), UnwrapError::UnknownKey);
        assert!(ring.has_key("corp", 1) && !ring.has_key("corp", 1 << 40));
    }

    #[test]
    fn garbage_and_a_ciphertext_for_another_key_are_refused() {
        let ring = ring();
        assert_eq!(ring.unwrap_secret_key("corp", 1, "not base64!").unwrap_err(), UnwrapError::BadEncoding);
        assert_eq!(ring.unwrap_secret_key("corp", 1, &"A".repeat(2000)).unwrap_err(), UnwrapError::BadEncoding);
        let mut flipped = BASE64.decode(VECTOR).unwrap();
        flipped[10] ^= 1;
        assert_eq!(ring.unwrap_secret_key("corp", 1, &BASE64.encode(flipped)).unwrap_err(), UnwrapError::Decrypt);
    }

    #[test]
    fn a_wrapped_value_that_is_not_printable_is_malformed() {
        let ring = ring();
        let public =
            RsaPublicKey::from_public_key_pem(&std::fs::read_to_string(fixture("test_rsa_public.pem")).unwrap())
                .unwrap();
        let wrapped = public.encrypt(&mut rand::thread_rng(), Pkcs1v15Encrypt, b"bad\nkey").unwrap();
        assert_eq!(ring.unwrap_secret_key("corp", 1, &BASE64.encode(wrapped)).unwrap_err(), UnwrapError::Malformed);
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_that_others_may_read_is_refused_without_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o640, 0o604, 0o644] {
            let config = KeyringConfig { keys: vec![entry(1, private_copy(dir.path(), "test_rsa_pkcs8.pem", mode))] };
            let err = Keyring::load(&config).unwrap_err();
            assert!(matches!(err, KeyringError::Permissions { index: 0, .. }), "{err}");
            assert!(err.to_string().contains("keyring.keys[0].private_key_path"), "{err}");
        }
    }

    #[test]
    fn a_missing_file_a_non_key_and_a_duplicate_are_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = KeyringConfig { keys: vec![entry(1, dir.path().join("nope.pem"))] };
        assert!(matches!(Keyring::load(&missing), Err(KeyringError::Read { index: 0, .. })));
        let public = KeyringConfig { keys: vec![entry(1, private_copy(dir.path(), "test_rsa_public.pem", 0o600))] };
        assert!(matches!(Keyring::load(&public), Err(KeyringError::Pem { index: 0, .. })));
        let key = private_copy(dir.path(), "test_rsa_pkcs8.pem", 0o600);
        let twice = KeyringConfig { keys: vec![entry(1, key.clone()), entry(1, key)] };
        assert!(matches!(Keyring::load(&twice), Err(KeyringError::Duplicate { index: 1 })));
    }

    #[test]
    fn debug_output_shows_ids_and_never_key_material() {
        let ring = ring();
        let secret = ring.unwrap_secret_key("corp", 1, VECTOR).unwrap();
        let shown = format!("{ring:?} {secret:?}");
        assert_eq!(shown, r#"Keyring { keys: [("corp", 1)] } SecretKey(..)"#);
    }

    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(32)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases()))]

        #[test]
        fn unwrapping_arbitrary_text_never_panics(s in "\\PC{0,400}", ver in any::<i64>()) {
            let ring = ring();
            let _ = ring.unwrap_secret_key("corp", ver, &s);
            let _ = ring.unwrap_secret_key("corp", 1, &s);
        }

        #[test]
        fn any_printable_key_round_trips(key in "[!-~]{1,200}") {
            let ring = ring();
            let public = RsaPublicKey::from(&ring.keys[&("corp".to_owned(), 1)].0);
            let wrapped = BASE64.encode(public.encrypt(&mut rand::thread_rng(), Pkcs1v15Encrypt, key.as_bytes()).unwrap());
            let unwrapped = ring.unwrap_secret_key("corp", 1, &wrapped).unwrap();
            prop_assert_eq!(unwrapped.expose_secret(), key.as_str());
        }
    }
}
