//! `zone-program keygen`: one RSA-2048 key pair per corp for `set_public_key` (`protocol/app-side.md`
//! §5). The private key is written as PKCS#8 PEM with mode 0600 (never overwritten), the public key
//! beside it, and the version is the next one after every key already known for the corp: key files
//! `<corp_id>.<ver>.pem` in the keys directory and the configured `[keyring]` entries.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use clap::Args;
use rand::{CryptoRng, RngCore};
use rsa::RsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use serde::Serialize;

/// The RSA modulus size WeCom requires.
pub const KEY_BITS: usize = 2048;

/// A key generation failure. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    /// The corp id cannot name a key file.
    #[error("corp id must be 1 to 64 characters of [A-Za-z0-9_-]")]
    BadCorpId,
    /// The requested version is not above an existing one.
    #[error("public_key_ver {asked} is not greater than {existing}, the highest already known for this corp")]
    VersionNotIncreasing {
        /// The version asked for.
        asked: u32,
        /// The highest version already known.
        existing: u32,
    },
    /// The key file exists already (it is never overwritten).
    #[error("{0} exists already; keys are never overwritten")]
    Exists(PathBuf),
    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The RSA library failed.
    #[error("generating the RSA key failed: {0}")]
    Rsa(String),
}

/// A key already known to the program (a `[keyring]` entry): the next version goes above it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownKey {
    /// The corp.
    pub corp_id: String,
    /// Its `public_key_ver`.
    pub public_key_ver: u32,
}

/// A freshly generated key pair, as the CLI prints it.
#[derive(Debug, Clone, Serialize)]
pub struct GeneratedKey {
    /// The corp the key belongs to.
    pub corp_id: String,
    /// The version to register with `set_public_key` and in the keyring.
    pub public_key_ver: u32,
    /// The private key file (PKCS#8 PEM, mode 0600).
    pub private_key_path: PathBuf,
    /// The public key file (SubjectPublicKeyInfo PEM).
    pub public_key_path: PathBuf,
    /// The public key PEM, ending with a newline.
    pub public_key: String,
}

impl GeneratedKey {
    /// The `[keyring]` entry for `config.toml`, as an inline TOML table.
    pub fn keyring_entry_toml(&self) -> String {
        let s = |v: &str| toml::Value::String(v.to_owned()).to_string();
        format!(
            "{{ corp_id = {}, public_key_ver = {}, private_key_path = {} }}",
            s(&self.corp_id),
            self.public_key_ver,
            s(&self.private_key_path.to_string_lossy())
        )
    }

    /// The annotated text `keygen` prints: where the files are, the keyring entry, the request body
    /// and the command that registers the key.
    pub fn render(&self) -> String {
        format!(
            "# private key (PKCS#8 PEM, mode 0600; keep it secret): {private}\n\
             # public key: {public}\n\
             # [keyring] entry for config.toml (only if the program itself unwraps secret keys):\n\
             keys = [{entry}]\n\
             # set_public_key request body:\n\
             {body}\n\
             # register it (self-built apps: paste the PEM in the admin console instead):\n\
             zone-program app set-public-key --public-key-file {public} --ver {ver}\n",
            private = self.private_key_path.display(),
            public = self.public_key_path.display(),
            entry = self.keyring_entry_toml(),
            body = self.set_public_key_body(),
            ver = self.public_key_ver,
        )
    }

    /// The `set_public_key` request body: the PEM JSON-escaped (newlines as `\n`) and the version.
    pub fn set_public_key_body(&self) -> serde_json::Value {
        serde_json::json!({ "public_key": self.public_key, "public_key_ver": self.public_key_ver })
    }
}

/// Options of `keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The corp the key is for (default: app.corp_id).
    #[arg(long)]
    pub corp_id: Option<String>,
    /// Directory of the key files `<corp_id>.<ver>.pem` (created with mode 0700).
    #[arg(long, default_value = "keys", value_name = "DIR")]
    pub keys_dir: PathBuf,
    /// The version (default: one above the highest in the keys directory and the keyring).
    #[arg(long)]
    pub ver: Option<u32>,
    /// Print one JSON object instead of the annotated text.
    #[arg(long)]
    pub json: bool,
}

/// `zone-program keygen`: generates with the OS random generator and prints the result.
/// `default_corp_id` is `app.corp_id`; `keyring` lists the `(corp_id, public_key_ver)` of the
/// program's configured `[keyring]` entries.
pub fn run_cli(args: &KeygenArgs, default_corp_id: &str, keyring: &[KnownKey]) -> anyhow::Result<()> {
    let corp_id = args.corp_id.as_deref().unwrap_or(default_corp_id);
    let key = generate(&args.keys_dir, corp_id, args.ver, keyring, &mut rand::rngs::OsRng)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&key)?);
    } else {
        print!("{}", key.render());
    }
    Ok(())
}

/// Generates a key pair for `corp_id` in `keys_dir` (created with mode 0700 when missing). The
/// version is `ver` when given (it must exceed every known one), else the next after them.
pub fn generate(
    keys_dir: &Path,
    corp_id: &str,
    ver: Option<u32>,
    keyring: &[KnownKey],
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<GeneratedKey, KeygenError> {
    check_corp_id(corp_id)?;
    let existing = highest_known_version(keys_dir, corp_id, keyring)?;
    let public_key_ver = match (ver, existing) {
        (Some(asked), Some(existing)) if asked <= existing => {
            return Err(KeygenError::VersionNotIncreasing { asked, existing });
        }
        (Some(asked), _) => asked,
        (None, Some(existing)) => existing + 1,
        (None, None) => 1,
    };
    let private_key_path = keys_dir.join(format!("{corp_id}.{public_key_ver}.pem"));
    let public_key_path = keys_dir.join(format!("{corp_id}.{public_key_ver}.pub.pem"));
    for path in [&private_key_path, &public_key_path] {
        if path.exists() {
            return Err(KeygenError::Exists(path.clone()));
        }
    }
    let key = RsaPrivateKey::new(rng, KEY_BITS).map_err(|e| KeygenError::Rsa(e.to_string()))?;
    let private_pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| KeygenError::Rsa(e.to_string()))?;
    let public_key =
        key.to_public_key().to_public_key_pem(LineEnding::LF).map_err(|e| KeygenError::Rsa(e.to_string()))?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(keys_dir)
        .map_err(|source| KeygenError::Io { path: keys_dir.to_owned(), source })?;
    write_new(&private_key_path, private_pem.as_bytes(), 0o600)?;
    write_new(&public_key_path, public_key.as_bytes(), 0o644)?;
    Ok(GeneratedKey { corp_id: corp_id.to_owned(), public_key_ver, private_key_path, public_key_path, public_key })
}

/// The highest `public_key_ver` known for `corp_id`: key files `<corp_id>.<ver>.pem` in `keys_dir`
/// (a missing directory counts as empty) and keyring entries.
pub fn highest_known_version(keys_dir: &Path, corp_id: &str, keyring: &[KnownKey]) -> Result<Option<u32>, KeygenError> {
    let from_keyring = keyring.iter().filter(|k| k.corp_id == corp_id).map(|k| k.public_key_ver).max();
    let entries = match fs::read_dir(keys_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(from_keyring),
        Err(source) => return Err(KeygenError::Io { path: keys_dir.to_owned(), source }),
    };
    let mut highest = from_keyring;
    for entry in entries {
        let entry = entry.map_err(|source| KeygenError::Io { path: keys_dir.to_owned(), source })?;
        if let Some(ver) = entry.file_name().to_str().and_then(|name| key_file_version(name, corp_id)) {
            highest = highest.max(Some(ver));
        }
    }
    Ok(highest)
}

/// The version in a key file name `<corp_id>.<ver>.pem` or `<corp_id>.<ver>.pub.pem`.
pub fn key_file_version(file_name: &str, corp_id: &str) -> Option<u32> {
    let rest = file_name.strip_prefix(corp_id)?.strip_prefix('.')?;
    let digits = rest.strip_suffix(".pub.pem").or_else(|| rest.strip_suffix(".pem"))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn check_corp_id(corp_id: &str) -> Result<(), KeygenError> {
    let ok = !corp_id.is_empty()
        && corp_id.len() <= 64
        && corp_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok { Ok(()) } else { Err(KeygenError::BadCorpId) }
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeygenError> {
    let io = |source| KeygenError::Io { path: path.to_owned(), source };
    let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use rand::SeedableRng as _;
    use rsa::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
    use rsa::traits::PublicKeyParts as _;
    use rsa::{Pkcs1v15Encrypt, RsaPublicKey};

    use super::*;

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    fn entry(corp: &str, ver: u32) -> KnownKey {
        KnownKey { corp_id: corp.into(), public_key_ver: ver }
    }

    /// The shape of the program's `[keyring]` entry (`zone_program::config::KeyringEntry`).
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct KeyringEntry {
        corp_id: String,
        public_key_ver: u32,
        private_key_path: PathBuf,
    }

    #[test]
    fn a_generated_pair_is_rsa_2048_owner_only_and_the_halves_match() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let k = generate(&keys, "wwcorp", None, &[], &mut rng()).unwrap();
        assert_eq!(k.public_key_ver, 1);
        assert_eq!(k.private_key_path, keys.join("wwcorp.1.pem"));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&k.private_key_path), 0o600);
        assert_eq!(mode(&keys), 0o700);
        let private_pem = fs::read_to_string(&k.private_key_path).unwrap();
        assert!(private_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(
            k.public_key.starts_with("-----BEGIN PUBLIC KEY-----\n")
                && k.public_key.ends_with("-----END PUBLIC KEY-----\n")
        );
        assert_eq!(fs::read_to_string(&k.public_key_path).unwrap(), k.public_key);
        let private = RsaPrivateKey::from_pkcs8_pem(&private_pem).unwrap();
        let public = RsaPublicKey::from_public_key_pem(&k.public_key).unwrap();
        assert_eq!(public.size() * 8, KEY_BITS);
        let wrapped = public.encrypt(&mut rng(), Pkcs1v15Encrypt, b"secret-key").unwrap();
        assert_eq!(private.decrypt(Pkcs1v15Encrypt, &wrapped).unwrap(), b"secret-key");
    }

    #[test]
    fn the_next_version_follows_key_files_and_keyring_entries_of_the_same_corp_only() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["wwcorp.3.pem", "wwcorp.7.pub.pem", "wwother.9.pem", "wwcorp.x.pem", "wwcorpx.8.pem"] {
            fs::write(dir.path().join(name), "").unwrap();
        }
        assert_eq!(highest_known_version(dir.path(), "wwcorp", &[]).unwrap(), Some(7));
        assert_eq!(highest_known_version(dir.path(), "wwcorp", &[entry("wwcorp", 12)]).unwrap(), Some(12));
        assert_eq!(highest_known_version(dir.path(), "wwnew", &[entry("wwcorp", 12)]).unwrap(), None);
        assert_eq!(highest_known_version(&dir.path().join("missing"), "wwcorp", &[]).unwrap(), None);
    }

    #[test]
    fn a_version_that_does_not_increase_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("wwcorp.2.pem"), "").unwrap();
        let err = generate(dir.path(), "wwcorp", Some(2), &[], &mut rng()).unwrap_err();
        assert!(matches!(err, KeygenError::VersionNotIncreasing { asked: 2, existing: 2 }), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_existing_public_key_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("wwcorp.1.pub.pem"), "keep").unwrap();
        let err = generate(dir.path(), "wwcorp", Some(1), &[], &mut rng());
        // version 1 is known from the .pub file, so it is refused before any file is touched
        assert!(matches!(err, Err(KeygenError::VersionNotIncreasing { .. })));
        assert_eq!(fs::read_to_string(dir.path().join("wwcorp.1.pub.pem")).unwrap(), "keep");
    }

    #[test]
    fn a_corp_id_that_could_escape_the_keys_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "../etc", "a/b", "a.b", &"x".repeat(65)] {
            assert!(matches!(generate(dir.path(), bad, None, &[], &mut rng()), Err(KeygenError::BadCorpId)), "{bad}");
        }
    }

    #[test]
    fn the_printed_forms_are_a_toml_keyring_entry_and_the_set_public_key_json() {
        let k = GeneratedKey {
            corp_id: "wwcorp".into(),
            public_key_ver: 4,
            private_key_path: PathBuf::from("keys/wwcorp.4.pem"),
            public_key_path: PathBuf::from("keys/wwcorp.4.pub.pem"),
            public_key: "-----BEGIN PUBLIC KEY-----\nAB\n-----END PUBLIC KEY-----\n".into(),
        };
        let entry: KeyringEntry = toml::from_str::<toml::Table>(&format!("e = {}", k.keyring_entry_toml()))
            .unwrap()
            .remove("e")
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!((entry.corp_id.as_str(), entry.public_key_ver), ("wwcorp", 4));
        assert_eq!(entry.private_key_path, PathBuf::from("keys/wwcorp.4.pem"));
        assert_eq!(
            k.set_public_key_body().to_string(),
            r#"{"public_key":"-----BEGIN PUBLIC KEY-----\nAB\n-----END PUBLIC KEY-----\n","public_key_ver":4}"#
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)))]

        #[test]
        fn key_file_names_round_trip_and_arbitrary_names_never_panic(ver in 0u32.., name in ".{0,40}") {
            proptest::prop_assert_eq!(key_file_version(&format!("ww.{ver}.pem"), "ww"), Some(ver));
            proptest::prop_assert_eq!(key_file_version(&format!("ww.{ver}.pub.pem"), "ww"), Some(ver));
            let _ = key_file_version(&name, "ww");
        }
    }
}
