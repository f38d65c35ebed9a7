//! The app's access_token, cached until shortly before it expires: in memory, and in a file (mode
//! 0600) so that consecutive CLI invocations share one token instead of calling `gettoken` each time.
//! The file is keyed by base URL and corp id; a token of another key is ignored. The clock is a
//! parameter so that expiry is tested deterministically.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// A token and the Unix second after which it is not used any more.
#[derive(Clone)]
pub struct AccessToken {
    /// The token. Never logged.
    pub token: SecretString,
    /// Unix seconds; the token is refreshed at or after this instant.
    pub refresh_at: u64,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken").field("refresh_at", &self.refresh_at).finish_non_exhaustive()
    }
}

impl AccessToken {
    /// A token returned with `expires_in` seconds of life at `now`: it is refreshed a margin before
    /// then (5 minutes, or half the life when that is shorter).
    pub fn issued(token: SecretString, expires_in: u64, now: u64) -> Self {
        let margin = (expires_in / 2).min(300);
        Self { token, refresh_at: now.saturating_add(expires_in - margin) }
    }

    /// True while the token may still be used at `now`.
    pub fn is_fresh(&self, now: u64) -> bool {
        now < self.refresh_at
    }
}

/// The current Unix time in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The on-disk form.
#[derive(Serialize, Deserialize)]
struct Stored {
    key: String,
    access_token: String,
    refresh_at: u64,
}

/// A file holding one cached token.
#[derive(Debug, Clone)]
pub struct TokenFile {
    path: PathBuf,
    key: String,
}

impl TokenFile {
    /// The cache file at `path` for tokens of `base_url` and `corp_id`.
    pub fn new(path: impl Into<PathBuf>, base_url: &str, corp_id: &str) -> Self {
        Self { path: path.into(), key: format!("{base_url}|{corp_id}") }
    }

    /// The cache file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cached token if there is one for this key and it is fresh at `now`. A missing, unreadable
    /// or foreign file is simply no token.
    pub fn load(&self, now: u64) -> Option<AccessToken> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let stored: Stored = serde_json::from_str(&text).ok()?;
        let token = AccessToken { token: SecretString::from(stored.access_token), refresh_at: stored.refresh_at };
        (stored.key == self.key && token.is_fresh(now)).then_some(token)
    }

    /// Writes `token` atomically (a 0600 temporary file renamed over the cache file).
    pub fn store(&self, token: &AccessToken) -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;

        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let stored = Stored {
            key: self.key.clone(),
            access_token: token.token.expose_secret().to_owned(),
            refresh_at: token.refresh_at,
        };
        let text = zeroize::Zeroizing::new(serde_json::to_string(&stored).map_err(std::io::Error::other)?);
        let tmp = self.path.with_extension(format!("tmp{}", std::process::id()));
        let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }

    /// Removes the cached token (after WeCom refused it).
    pub fn clear(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_two_hour_token_is_refreshed_five_minutes_early_and_a_short_one_at_half_life() {
        let t = AccessToken::issued(SecretString::from("t"), 7200, 1000);
        assert!(t.is_fresh(1000 + 6899));
        assert!(!t.is_fresh(1000 + 6900));
        let short = AccessToken::issued(SecretString::from("t"), 60, 0);
        assert_eq!(short.refresh_at, 30);
    }

    #[test]
    fn a_stored_token_is_owner_only_and_read_back_for_its_key_only_until_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache/token.json");
        let file = TokenFile::new(&path, "http://127.0.0.1:8081", "wwcorp");
        assert!(file.load(0).is_none());
        file.store(&AccessToken::issued(SecretString::from("tok"), 7200, 100)).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(file.load(200).unwrap().token.expose_secret(), "tok");
        assert!(file.load(100 + 6900).is_none());
        assert!(TokenFile::new(&path, "https://qyapi.weixin.qq.com", "wwcorp").load(200).is_none());
        assert!(TokenFile::new(&path, "http://127.0.0.1:8081", "wwother").load(200).is_none());
        file.clear();
        assert!(file.load(200).is_none());
    }

    #[test]
    fn a_corrupt_cache_file_is_no_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.json");
        std::fs::write(&path, "{not json").unwrap();
        assert!(TokenFile::new(&path, "b", "c").load(0).is_none());
    }

    #[test]
    fn the_debug_form_hides_the_token() {
        let t = AccessToken::issued(SecretString::from("very-secret-token"), 7200, 0);
        assert!(!format!("{t:?}").contains("very-secret-token"));
    }
}
