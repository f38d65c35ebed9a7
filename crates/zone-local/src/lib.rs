//! The local zone: an offline emulator of every party the program talks to in the real WeCom zone
//! (DESIGN.md "The local zone"). It is a sibling of the program, not part of it: it talks to the
//! program only over HTTP with the local codec, as the real zone does with its SDK, and no program
//! module imports it.
//!
//! Faces, one module each:
//! - [`sdk_api`]: `POST /sdk/invoke`, the SDK API surface (data APIs in [`sdk_msgs`], [`sdk_search`],
//!   [`sdk_rules`], [`sdk_kb`]; model tasks in [`sdk_models`]) on the seeded world of [`seed`];
//! - [`app_api`]: `/cgi-bin/gettoken` and `/cgi-bin/chatdata/*`, as the app backend sees WeCom;
//! - [`program`]: the WeCom backend towards the program (call_type 1 and 2 requests to its `POST /`);
//! - [`notify`]: the `program_notify` XML pushed to the app's callback URL;
//! - [`control`]: `/local/*`, test and demo controls (inject messages and events, faults, clock).
//!
//! Start-up is two-step so that `serve --local` and the tests can wire both ends on port 0:
//! [`LocalZone::bind`] binds the listener (its URL goes into the program's `sdk.local.zone_url`),
//! then [`LocalZone::run_until_stopped`] serves, given the program's URL.

pub mod analysis;
pub mod app_api;
pub mod config;
pub mod console;
pub mod control;
pub mod events;
pub mod faults;
pub mod keys;
pub mod model;
pub mod notify;
pub mod persist;
pub mod program;
pub mod req;
pub mod sdk_api;
pub mod sdk_kb;
pub mod sdk_models;
pub mod sdk_msgs;
pub mod sdk_rules;
pub mod sdk_search;
pub mod seed;
pub mod timeline;
pub mod timer;

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use anyhow::Context as _;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use zone_crypto::cipher::{CallbackCipher, EncodingAesKey};
use zone_crypto::codec::LocalCodec;

use crate::config::LocalZoneConfig;

/// Largest request body the local zone accepts (a model `msg_list` of 1000 entries fits easily).
const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// A bound, not yet running local zone.
pub struct LocalZone {
    listener: TcpListener,
    shared: Arc<Shared>,
    private_key_path: PathBuf,
}

/// What every face of the zone shares.
pub struct Shared {
    /// `[local_zone]`.
    pub cfg: LocalZoneConfig,
    /// The zone's end of the local codec (same keys as the program's `[sdk.local]`).
    pub codec: LocalCodec,
    /// The app's callback cipher (`local_zone.app_encoding_aes_key`).
    pub app_cipher: CallbackCipher,
    /// Outbound HTTP (to the program and the app callback URL).
    pub http: reqwest::Client,
    /// The program's base URL, set when the zone starts running.
    pub program_url: RwLock<String>,
    /// The zone's logical clock.
    pub clock: model::ZoneClock,
    /// The world.
    data: Mutex<model::ZoneData>,
    /// Registered public keys.
    keys: Mutex<keys::KeyStore>,
    /// Faults armed through `/local/faults`.
    faults: Mutex<faults::Faults>,
    /// Every request to the program and what followed it (`GET /local/calls`, the console).
    pub timeline: timeline::Timeline,
    /// Writes of the zone's state to `data_dir` ([`persist`]).
    pub saver: persist::Saver,
}

impl Shared {
    /// The world, locked. Never hold the guard across an `await`.
    pub fn data(&self) -> MutexGuard<'_, model::ZoneData> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The key store, locked.
    pub fn keys(&self) -> MutexGuard<'_, keys::KeyStore> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The fault table, locked.
    pub fn faults(&self) -> MutexGuard<'_, faults::Faults> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The program's base URL.
    pub fn program_url(&self) -> String {
        self.program_url.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl LocalZone {
    /// Loads (or, on first start, generates) the demo key pair, seeds the world and binds
    /// `local_zone.listen` (port 0 allowed). `codec` holds the program's keys (its `[sdk.local]`).
    /// With `local_zone.persist` the world kept in `data_dir` is restored ([`persist`]).
    pub async fn bind(config: &LocalZoneConfig, codec: LocalCodec) -> anyhow::Result<Self> {
        Self::bind_with(config, codec, config.persist).await
    }

    /// [`LocalZone::bind`], with a fresh world that is not kept (whatever `local_zone.persist` says).
    pub async fn bind_stateless(config: &LocalZoneConfig, codec: LocalCodec) -> anyhow::Result<Self> {
        Self::bind_with(config, codec, false).await
    }

    async fn bind_with(config: &LocalZoneConfig, codec: LocalCodec, persist: bool) -> anyhow::Result<Self> {
        if let Some(why) = config.exposed() {
            anyhow::bail!("refusing to start the local zone: {why}");
        }
        let mut cfg = config.clone();
        cfg.persist = persist;
        let app_key = EncodingAesKey::parse(cfg.app_encoding_aes_key.expose_secret())
            .map_err(|_| anyhow::anyhow!("local_zone.app_encoding_aes_key is not a valid EncodingAESKey"))?;
        let (demo_key, private_key_path) = keys::load_or_generate(&cfg.data_dir)?;
        let mut key_store = keys::KeyStore::new(demo_key);
        let kept = if cfg.persist { persist::load(&cfg.data_dir)? } else { None };
        let (clock, data, zone_id) = match kept {
            Some(kept) => {
                for (ver, pem) in &kept.keys {
                    key_store.register(pem, *ver).map_err(|why| anyhow::anyhow!("a kept public key: {why}"))?;
                }
                tracing::info!(
                    dir = %cfg.data_dir.display(),
                    messages = kept.data.messages.len(),
                    jobs = kept.data.program_jobs.len(),
                    "local zone state restored"
                );
                let mut data = kept.data;
                let last = data.messages.last().map_or(0, |m| m.seq).max(data.hits.last().map_or(0, |h| h.seq));
                data.seq_floor = data.seq_floor.max(last + persist::SEQ_GAP);
                data.next_id = data.next_id.wrapping_add(persist::ID_GAP);
                (model::ZoneClock::with_offset(kept.clock_offset), data, kept.zone_id)
            }
            None => {
                let clock = model::ZoneClock::default();
                let mut data = seed::world(cfg.seed, clock.now());
                data.receive_program = cfg.program_id.clone();
                // Ids minted from now on (jobids, job_info, tokens, notify ids) start at a random
                // point of the 2^64 sequence, so they never repeat those of an earlier zone.
                data.next_id = rand::random();
                (clock, data, format!("{:016x}", rand::random::<u64>()))
            }
        };
        let saver = persist::Saver::new(cfg.persist.then_some(cfg.data_dir.as_path()), zone_id);
        let listener =
            TcpListener::bind(cfg.listen).await.with_context(|| format!("binding local_zone.listen {}", cfg.listen))?;
        let http = reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(2)).build()?;
        let shared = Arc::new(Shared {
            program_url: RwLock::new(cfg.program_url.clone()),
            cfg,
            codec,
            app_cipher: CallbackCipher::new(app_key),
            http,
            clock,
            data: Mutex::new(data),
            keys: Mutex::new(key_store),
            faults: Mutex::new(faults::Faults::default()),
            timeline: timeline::Timeline::default(),
            saver,
        });
        // A new world is on disk before anything refers to it.
        persist::write(&shared).await;
        Ok(Self { listener, shared, private_key_path })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// `http://<bound address>`, the value for the program's `sdk.local.zone_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr())
    }

    /// Where the demo private key is (for the program's `[keyring]`).
    pub fn private_key_path(&self) -> &Path {
        &self.private_key_path
    }

    /// This zone instance's id (kept with its state; new with a new world).
    pub fn zone_id(&self) -> &str {
        &self.shared.saver.zone_id
    }

    /// The zone's shared state (tests inspect it; the program never does).
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Serves until `shutdown` resolves, sending the program's requests to `program_url`.
    pub async fn run_until_stopped(
        self,
        program_url: impl Into<String>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        *self.shared.program_url.write().unwrap_or_else(|p| p.into_inner()) = program_url.into();
        let router = router(self.shared.clone());
        let saver = tokio::spawn(persist::run(self.shared.clone()));
        app_api::resume_deliveries(&self.shared);
        let served = axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown)
            .into_future()
            .await
            .context("local zone");
        saver.abort();
        persist::write(&self.shared).await;
        served
    }
}

/// The zone's router: every face, one state.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .merge(sdk_api::router())
        .merge(app_api::router())
        .merge(control::router())
        .merge(console::router())
        .layer(axum::middleware::from_fn_with_state(shared.clone(), persist::save_after))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared)
}
