//! What the callback receiver has already accepted, kept across its restarts: the signatures of
//! verified callbacks while their timestamp is within the window (so the same request is handed on
//! at most once), and the `NotifyId`s of `program_notify` events for a day (so a notification
//! delivered again, with a new signature, is not handed on twice).
//!
//! Both live in memory and, when a file is given (beside the token cache), in an append-only file of
//! lines `sig <keep_until> <signature>` and `id <seen_at> <receive_id> <notify_id>`, mode 0600. At
//! start the file is read, what has expired is dropped, and the rest is written back compacted. If
//! the file cannot be written the receiver goes on in memory and says so once.

use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use zone_crypto::codec::{CodecError, ReplayCache};

/// How long a NotifyId is remembered (a NotifyId can be used for 10 minutes; WeCom redelivers
/// within minutes).
pub const NOTIFY_ID_RETENTION_SECS: i64 = 24 * 3600;
/// Most NotifyIds remembered; beyond it the oldest is forgotten early.
pub const NOTIFY_ID_CAPACITY: usize = 100_000;

/// The receiver's memory of accepted callbacks.
pub struct Seen {
    signatures: ReplayCache,
    /// The live signatures again, in arrival order, for writing the file back compacted.
    live: VecDeque<(i64, String)>,
    ids: HashMap<(String, String), i64>,
    order: VecDeque<((String, String), i64)>,
    file: Option<(PathBuf, std::fs::File)>,
    /// Lines appended since the file was last written whole.
    appended: usize,
}

/// What [`Seen::signature`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fresh {
    /// Not seen before: now remembered.
    Yes,
    /// This exact request was accepted before.
    Replayed,
    /// Too many live signatures to remember one more.
    Full,
}

impl Seen {
    /// An empty memory of `capacity` signatures, kept in `file` when given (loaded at `now`).
    pub fn open(file: Option<&Path>, capacity: usize, now: i64) -> Self {
        let mut seen = Self {
            signatures: ReplayCache::new(capacity),
            live: VecDeque::new(),
            ids: HashMap::new(),
            order: VecDeque::new(),
            file: None,
            appended: 0,
        };
        if let Some(path) = file {
            seen.load(path, now);
            if let Err(e) = seen.rewrite(path) {
                tracing::warn!(error = %e, path = %path.display(), "cannot keep seen callbacks on disk; memory only");
            }
        }
        seen
    }

    /// Remembers `signature` until `keep_until` (its timestamp + the window).
    pub fn signature(&mut self, signature: &str, now: i64, keep_until: i64) -> Fresh {
        match self.signatures.insert_key(signature, now, keep_until) {
            Ok(()) => {
                while self.live.front().is_some_and(|(until, _)| *until < now) {
                    self.live.pop_front();
                }
                self.live.push_back((keep_until, signature.to_owned()));
                self.append(&format!("sig {keep_until} {signature}\n"), now);
                Fresh::Yes
            }
            Err(CodecError::Replayed) => Fresh::Replayed,
            Err(_) => Fresh::Full,
        }
    }

    /// Remembers a NotifyId; false when it was already there.
    pub fn notify_id(&mut self, receive_id: &str, notify_id: &str, now: i64) -> bool {
        if !self.insert_id((receive_id.to_owned(), notify_id.to_owned()), now) {
            return false;
        }
        self.append(&format!("id {now} {receive_id} {notify_id}\n"), now);
        true
    }

    fn insert_id(&mut self, key: (String, String), now: i64) -> bool {
        while let Some((_, at)) = self.order.front() {
            let expired = *at < now - NOTIFY_ID_RETENTION_SECS;
            if !expired && self.order.len() < NOTIFY_ID_CAPACITY {
                break;
            }
            let (old, at) = self.order.pop_front().expect("front exists");
            if self.ids.get(&old) == Some(&at) {
                self.ids.remove(&old);
            }
        }
        if self.ids.contains_key(&key) {
            return false;
        }
        self.ids.insert(key.clone(), now);
        self.order.push_back((key, now));
        true
    }

    fn load(&mut self, path: &Path, now: i64) {
        let Ok(text) = std::fs::read_to_string(path) else { return };
        for line in text.lines() {
            let mut parts = line.splitn(4, ' ');
            match (parts.next(), parts.next().and_then(|t| t.parse::<i64>().ok())) {
                (Some("sig"), Some(keep_until)) if keep_until >= now => {
                    if let Some(sig) = parts.next()
                        && self.signatures.insert_key(sig, now, keep_until).is_ok()
                    {
                        self.live.push_back((keep_until, sig.to_owned()));
                    }
                }
                (Some("id"), Some(at)) => {
                    let (Some(rid), Some(id)) = (parts.next(), parts.next()) else { continue };
                    if at >= now - NOTIFY_ID_RETENTION_SECS {
                        self.insert_id((rid.to_owned(), id.to_owned()), at);
                    }
                }
                _ => {}
            }
        }
    }

    /// Writes what is remembered to `path` (through a temporary file, mode 0600) and keeps it open
    /// for appending.
    fn rewrite(&mut self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        let mut out = std::io::BufWriter::new(create_private(&tmp, true)?);
        for (keep_until, sig) in &self.live {
            writeln!(out, "sig {keep_until} {sig}")?;
        }
        for ((rid, id), at) in &self.order {
            if self.ids.get(&(rid.clone(), id.clone())) == Some(at) {
                writeln!(out, "id {at} {rid} {id}")?;
            }
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        self.file = Some((path.to_owned(), create_private(path, false)?));
        self.appended = 0;
        Ok(())
    }

    fn append(&mut self, line: &str, now: i64) {
        let Some((path, file)) = &mut self.file else { return };
        if let Err(e) = file.write_all(line.as_bytes()) {
            tracing::warn!(error = %e, path = %path.display(), "cannot keep seen callbacks on disk; memory only");
            self.file = None;
            return;
        }
        self.appended += 1;
        if self.appended > 2 * (self.live.len() + self.ids.len()) + 1024 {
            let path = path.clone();
            while self.live.front().is_some_and(|(until, _)| *until < now) {
                self.live.pop_front();
            }
            if let Err(e) = self.rewrite(&path) {
                tracing::warn!(error = %e, path = %path.display(), "cannot keep seen callbacks on disk; memory only");
                self.file = None;
            }
        }
    }
}

/// Opens `path` for writing, created with mode 0600: truncated, or for appending.
fn create_private(path: &Path, truncate: bool) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true);
    if truncate {
        options.write(true).truncate(true);
    } else {
        options.append(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review finding 2: a `program_notify` was printed again after 10 001 others.
    #[test]
    fn a_notify_id_is_remembered_past_ten_thousand_others_and_forgotten_after_a_day() {
        let mut seen = Seen::open(None, 16, 0);
        assert!(seen.notify_id("c", "first", 0));
        for i in 0..10_001 {
            assert!(seen.notify_id("c", &i.to_string(), 1));
        }
        assert!(!seen.notify_id("c", "first", 2));
        assert!(seen.notify_id("other-corp", "first", 2), "ids are per receive id");
        assert!(seen.notify_id("c", "first", NOTIFY_ID_RETENTION_SECS + 1), "a day later it is forgotten");
    }

    #[test]
    fn the_memory_survives_a_restart_without_what_expired() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub").join("seen");
        let mut seen = Seen::open(Some(&file), 16, 1000);
        assert_eq!(seen.signature("s1", 1000, 1300), Fresh::Yes);
        assert_eq!(seen.signature("s2", 1000, 1001), Fresh::Yes);
        assert_eq!(seen.signature("s1", 1000, 1300), Fresh::Replayed);
        assert!(seen.notify_id("c", "n1", 1000));
        drop(seen);
        let mut seen = Seen::open(Some(&file), 16, 1100);
        assert_eq!(seen.signature("s1", 1100, 1400), Fresh::Replayed);
        assert_eq!(seen.signature("s2", 1100, 1400), Fresh::Yes, "s2 expired at 1001");
        assert!(!seen.notify_id("c", "n1", 1100));
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().filter(|l| l.starts_with("sig ")).count(), 2, "compacted: {text}");
    }

    #[test]
    fn a_full_memory_says_so_instead_of_forgetting() {
        let mut seen = Seen::open(None, 1, 0);
        assert_eq!(seen.signature("a", 0, 10), Fresh::Yes);
        assert_eq!(seen.signature("b", 0, 10), Fresh::Full);
        assert_eq!(seen.signature("b", 11, 20), Fresh::Yes);
    }
}
