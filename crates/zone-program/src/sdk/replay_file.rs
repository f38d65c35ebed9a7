//! The local backend's replay protection, kept in a file beside the store so that it outlives the
//! process ([`LocalCodec::remembering`]): the newest timestamp accepted on its own line, then one
//! line per nonce accepted with it. A newer second rewrites the file (written over, then cut to
//! length: a crash in between leaves extra nonce lines, never a file without its second); the same
//! second appends a line. One small `pwrite` per accepted message, no `fsync`: a crash of the
//! process loses nothing, one of the machine may lose the last seconds.

use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::Mutex;

use zone_crypto::codec::{AcceptLog, Nonce};

/// The file of the newest accepted second and its nonces.
pub struct ReplayFile {
    inner: Mutex<Inner>,
}

struct Inner {
    file: std::fs::File,
    second: i64,
    len: u64,
}

impl ReplayFile {
    /// Opens (creating with mode 0600, in a 0700 directory if missing) the file at `path`; returns
    /// it with what it held: the newest second (`i64::MIN` when new) and its nonces.
    pub fn open(path: &Path) -> std::io::Result<(Self, i64, Vec<Nonce>)> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path)?;
        let text = std::io::read_to_string(&file)?;
        let mut lines = text.lines();
        let second = lines.next().and_then(|l| l.parse::<i64>().ok()).unwrap_or(i64::MIN);
        let nonces = lines.filter_map(|l| Nonce::parse(l).ok()).collect();
        let inner = Inner { file, second, len: text.len() as u64 };
        Ok((Self { inner: Mutex::new(inner) }, second, nonces))
    }
}

impl AcceptLog for ReplayFile {
    /// A failed write is not retried: the protection then rests on what the file held before.
    fn accepted(&self, ts: i64, nonce: &Nonce) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if ts < inner.second {
            return;
        }
        if ts > inner.second {
            let text = format!("{ts}\n{}\n", nonce.as_str());
            let written = inner.file.write_all_at(text.as_bytes(), 0);
            if written.and_then(|()| inner.file.set_len(text.len() as u64)).is_ok() {
                inner.second = ts;
                inner.len = text.len() as u64;
            }
            return;
        }
        let line = format!("{}\n", nonce.as_str());
        let at = inner.len;
        if inner.file.write_all_at(line.as_bytes(), at).is_ok() {
            inner.len += line.len() as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn the_file_keeps_the_newest_second_and_its_nonces_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join("p.replay");
        let (log, second, nonces) = ReplayFile::open(&path).unwrap();
        assert_eq!((second, nonces.len()), (i64::MIN, 0));
        let n = |s: &str| Nonce::parse(s).unwrap();
        log.accepted(100, &n("a"));
        log.accepted(101, &n("bb"));
        log.accepted(99, &n("old"));
        log.accepted(101, &n("c"));
        drop(log);
        let (log, second, nonces) = ReplayFile::open(&path).unwrap();
        assert_eq!(second, 101);
        assert_eq!(nonces, vec![n("bb"), n("c")]);
        log.accepted(102, &n("d"));
        drop(log);
        let (_, second, nonces) = ReplayFile::open(&path).unwrap();
        assert_eq!((second, nonces), (102, vec![n("d")]), "a newer second rewrites the file");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
    }
}
