//! Message keys as the real zone handles them (app-side.md §5): the app registers RSA-2048 public
//! keys with `set_public_key` (`public_key_ver` strictly increasing), and every listed message
//! carries `service_encrypt_info.encrypted_secret_key` = Base64(RSAES-PKCS1-v1_5(current public key,
//! secret_key)) with that `public_key_ver`.
//!
//! At first start the local zone writes a demo key pair into `local_zone.data_dir`
//! ([`PRIVATE_KEY_FILE`], mode 0600, and [`PUBLIC_KEY_FILE`]) and registers its public half as
//! version 1, so the program's keyring can be pointed at the private file:
//! `[keyring] keys = [{ corp_id = <local_zone.corp_id>, public_key_ver = 1, private_key_path = "<data_dir>/demo_rsa_private.pem" }]`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Encrypt, RsaPrivateKey, RsaPublicKey};

/// The demo private key (PKCS#8 PEM), readable by its owner only.
pub const PRIVATE_KEY_FILE: &str = "demo_rsa_private.pem";
/// The demo public key (SubjectPublicKeyInfo PEM).
pub const PUBLIC_KEY_FILE: &str = "demo_rsa_public.pem";

/// The registered public keys and the wrapped keys already handed out.
pub struct KeyStore {
    keys: BTreeMap<u32, RsaPublicKey>,
    /// (msgid, ver) → encrypted_secret_key, so a message's wrapped key is stable per version.
    wrapped: HashMap<(String, u32), String>,
}

impl KeyStore {
    /// A store whose version 1 is `demo`.
    pub fn new(demo: RsaPublicKey) -> Self {
        Self { keys: BTreeMap::from([(1, demo)]), wrapped: HashMap::new() }
    }

    /// The current (highest) version.
    pub fn current_ver(&self) -> u32 {
        *self.keys.keys().next_back().expect("at least the demo key")
    }

    /// Registers `pem` as `ver`; `ver` must be greater than the current one.
    pub fn register(&mut self, pem: &str, ver: u32) -> Result<(), &'static str> {
        if ver <= self.current_ver() {
            return Err("public_key_ver must be greater than the current version");
        }
        let key = parse_public_pem(pem)?;
        self.keys.insert(ver, key);
        Ok(())
    }

    /// `(encrypted_secret_key, public_key_ver)` of a message under the current key.
    pub fn wrap(&mut self, msgid: &str, secret_key: &str) -> (String, u32) {
        let ver = self.current_ver();
        let key = &self.keys[&ver];
        let wrapped = self
            .wrapped
            .entry((msgid.to_owned(), ver))
            .or_insert_with(|| {
                let ct = key
                    .encrypt(&mut rand::thread_rng(), Pkcs1v15Encrypt, secret_key.as_bytes())
                    .expect("a short secret fits an RSA-2048 block");
                BASE64.encode(ct)
            })
            .clone();
        (wrapped, ver)
    }
}

/// Parses an RSA-2048 public key in SPKI (`BEGIN PUBLIC KEY`) or PKCS#1 (`BEGIN RSA PUBLIC KEY`) PEM.
pub fn parse_public_pem(pem: &str) -> Result<RsaPublicKey, &'static str> {
    let key = RsaPublicKey::from_public_key_pem(pem.trim())
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem.trim()))
        .map_err(|_| "public_key must be an RSA public key in PEM")?;
    if key.size() != 256 {
        return Err("public_key must be RSA-2048");
    }
    Ok(key)
}

/// Loads the demo key pair from `dir`, generating and writing it on first start. Returns the
/// public key and the private key's path.
pub fn load_or_generate(dir: &Path) -> anyhow::Result<(RsaPublicKey, PathBuf)> {
    let private_path = dir.join(PRIVATE_KEY_FILE);
    if private_path.exists() {
        let pem = std::fs::read_to_string(&private_path)
            .with_context(|| format!("reading the demo private key {}", private_path.display()))?;
        let key = RsaPrivateKey::from_pkcs8_pem(&pem)
            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(&pem))
            .with_context(|| format!("{} is not an RSA private key in PEM", private_path.display()))?;
        return Ok((RsaPublicKey::from(&key), private_path));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating local_zone.data_dir {}", dir.display()))?;
    tracing::info!(dir = %dir.display(), "generating the local zone's demo RSA-2048 key pair (first start only)");
    let key = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).context("generating the demo RSA key")?;
    let pem = key.to_pkcs8_pem(LineEnding::LF).context("encoding the demo private key")?;
    write_private(&private_path, pem.as_bytes())?;
    let public = RsaPublicKey::from(&key);
    let public_pem = public.to_public_key_pem(LineEnding::LF).context("encoding the demo public key")?;
    std::fs::write(dir.join(PUBLIC_KEY_FILE), public_pem).context("writing the demo public key")?;
    Ok((public, private_path))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A committed test-only key (tests/e2e/keys), so unit tests never generate RSA keys.
    const TEST_PRIVATE: &str = include_str!("../../zone-cli/tests/e2e/keys/test_rsa_private.pem");

    #[test]
    fn a_wrapped_key_unwraps_with_the_private_key_and_is_stable_per_version() {
        let private = RsaPrivateKey::from_pkcs8_pem(TEST_PRIVATE).unwrap();
        let mut store = KeyStore::new(RsaPublicKey::from(&private));
        let (wrapped, ver) = store.wrap("m1", "secret-1");
        assert_eq!(ver, 1);
        let plain = private.decrypt(Pkcs1v15Encrypt, &BASE64.decode(&wrapped).unwrap()).unwrap();
        assert_eq!(plain, b"secret-1");
        assert_eq!(store.wrap("m1", "secret-1").0, wrapped);
    }

    #[test]
    fn a_public_key_version_must_increase_and_be_rsa_2048_pem() {
        let private = RsaPrivateKey::from_pkcs8_pem(TEST_PRIVATE).unwrap();
        let public = RsaPublicKey::from(&private);
        let pem = public.to_public_key_pem(LineEnding::LF).unwrap();
        let mut store = KeyStore::new(public);
        assert!(store.register(&pem, 1).is_err());
        assert!(store.register("not a key", 2).is_err());
        store.register(&pem, 3).unwrap();
        assert_eq!(store.current_ver(), 3);
        assert_eq!(store.wrap("m", "k").1, 3);
    }

    #[test]
    fn an_existing_private_key_file_is_loaded_not_regenerated() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(PRIVATE_KEY_FILE), TEST_PRIVATE).unwrap();
        let (public, path) = load_or_generate(dir.path()).unwrap();
        assert_eq!(path, dir.path().join(PRIVATE_KEY_FILE));
        assert_eq!(public.size(), 256);
    }
}
