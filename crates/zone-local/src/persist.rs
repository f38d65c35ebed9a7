//! The zone's memory across restarts: its world ([`ZoneData`]: messages, tokens and cursors it
//! issued, notify ids, jobs and their results, access tokens …), the public keys the app
//! registered, the clock offset and an id of this zone instance, kept in
//! `local_zone.data_dir`/[`STATE_FILE`] (when `local_zone.persist` is on).
//!
//! Every request that may change something (any method but GET) is answered only after the state
//! it left is on disk: concurrent requests share one write (a group commit), so a SIGKILL loses
//! nothing the zone has answered. Changes made in the background (an acknowledgement arriving, a
//! notification pushed, an export finishing) are written within [`BACKGROUND_SAVE`]. The file is
//! written to a temporary name and renamed, so it is always whole.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use super::Shared;
use super::model::ZoneData;

/// The state file in `local_zone.data_dir`.
pub const STATE_FILE: &str = "zone-state.json";
/// The format of [`STATE_FILE`].
const VERSION: u32 = 1;
/// How far past the last kept seq a restored zone numbers new messages and hits (more than could
/// ever have been added, and seen, between the last write and a crash).
pub const SEQ_GAP: u64 = 1_000_000;
/// How far past the kept id counter a restored zone mints new ids (jobids, `job_info`, tokens,
/// notify ids …). A request may hand an id out before the state that counted it is on disk (an async
/// call reaches the program while its reply still waits for the write), so a zone killed in between
/// must not mint that id again: more ids than could ever be minted between the last write and a
/// crash.
pub const ID_GAP: u64 = 1 << 32;
/// Longest a change made outside a request waits to be written.
pub const BACKGROUND_SAVE: Duration = Duration::from_millis(500);

/// What is kept.
#[derive(Serialize, Deserialize)]
pub struct Snapshot {
    /// [`VERSION`].
    pub version: u32,
    /// This zone instance (new when the state is new), so a program store paired with another
    /// zone can be told apart.
    pub zone_id: String,
    /// How far `/local/clock/advance` moved the clock, in seconds.
    pub clock_offset: i64,
    /// Public keys registered with `set_public_key` (version 1, the demo key, is not kept here).
    pub keys: Vec<(u32, String)>,
    /// The world.
    pub data: ZoneData,
}

/// Reads the state file of `dir`, if there is one.
pub fn load(dir: &Path) -> anyhow::Result<Option<Snapshot>> {
    let path = dir.join(STATE_FILE);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading the local zone state {}", path.display())),
    };
    let snapshot: Snapshot = serde_json::from_slice(&text).with_context(|| {
        format!("the local zone state {} does not parse (remove it, or start with --fresh)", path.display())
    })?;
    anyhow::ensure!(
        snapshot.version == VERSION,
        "the local zone state {} has format {} (expected {VERSION}); start with --fresh",
        path.display(),
        snapshot.version
    );
    Ok(Some(snapshot))
}

/// The zone id recorded in `dir`'s state file, if there is one.
pub fn zone_id(dir: &Path) -> anyhow::Result<Option<String>> {
    Ok(load(dir)?.map(|s| s.zone_id))
}

/// Writes of the state: requested generations and the last one written.
pub struct Saver {
    /// `None` when `local_zone.persist` is off.
    path: Option<PathBuf>,
    /// This zone instance.
    pub zone_id: String,
    requested: AtomicU64,
    saved: watch::Sender<u64>,
    wake: Notify,
}

impl Saver {
    /// A saver writing to `dir`/[`STATE_FILE`], or nowhere.
    pub fn new(dir: Option<&Path>, zone_id: String) -> Self {
        Self {
            path: dir.map(|d| d.join(STATE_FILE)),
            zone_id,
            requested: AtomicU64::new(0),
            saved: watch::channel(0).0,
            wake: Notify::new(),
        }
    }

    /// Marks the state changed; it is written within [`BACKGROUND_SAVE`].
    pub fn touch(&self) {
        if self.path.is_some() {
            self.requested.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Waits until the state as it is now is on disk.
    pub async fn save(&self) {
        if self.path.is_none() {
            return;
        }
        let target = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut saved = self.saved.subscribe();
        self.wake.notify_one();
        let _ = saved.wait_for(|s| *s >= target).await;
    }
}

/// Writes the state whenever it is asked to (or changed in the background), until the zone stops.
pub async fn run(shared: Arc<Shared>) {
    let saver = &shared.saver;
    if saver.path.is_none() {
        return;
    }
    loop {
        tokio::select! {
            () = saver.wake.notified() => {}
            () = tokio::time::sleep(BACKGROUND_SAVE) => {}
        }
        let target = saver.requested.load(Ordering::SeqCst);
        if target == *saver.saved.borrow() {
            continue;
        }
        write(&shared).await;
        saver.saved.send_replace(target);
    }
}

/// Writes the state now (at shutdown; and by [`run`]).
pub async fn write(shared: &Arc<Shared>) {
    let Some(path) = shared.saver.path.clone() else { return };
    let text = {
        let snapshot = SnapshotRef {
            version: VERSION,
            zone_id: &shared.saver.zone_id,
            clock_offset: shared.clock.offset(),
            keys: shared.keys().registered(),
            data: &shared.data(),
        };
        serde_json::to_vec(&snapshot).expect("the zone state serialises")
    };
    let written = tokio::task::spawn_blocking(move || {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, &text)?;
        std::fs::rename(&tmp, &path)
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::error!("writing the local zone state failed; a restart may lose recent changes");
    }
}

/// [`Snapshot`] by reference, for writing without copying the world.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    version: u32,
    zone_id: &'a str,
    clock_offset: i64,
    keys: Vec<(u32, String)>,
    data: &'a ZoneData,
}

/// Middleware: a request that may have changed the state is answered once the state is written.
pub async fn save_after(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let changes = request.method() != Method::GET;
    let response = next.run(request).await;
    if changes {
        shared.saver.save().await;
    }
    response
}
