//! Building and running the program: [`App::build`] creates the SDK backend and binds the listener
//! (port 0 allowed, so tests start the program exactly as production does); [`App::run_until_stopped`]
//! serves until the shutdown future resolves, then drains in-flight requests within the grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use zone_serve::{self as serve, ConnLimits, ConnStats};

use crate::abilities::Registry;
use crate::config::Config;
use crate::events::Events;
use crate::jobs::{JobSettings, Jobs};
use crate::keyring::Keyring;
use crate::metrics::Metrics;
use crate::program::Program;
use crate::sdk::ZoneSdk;
use crate::store::Store;

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The zone SDK backend, bounded by the SDK pool.
    pub sdk: Arc<dyn ZoneSdk>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Notify data, job rows and cursors.
    pub store: Store,
    /// The async job system.
    pub jobs: Jobs,
    /// The private keys that unwrap message keys.
    pub keyring: Arc<Keyring>,
    /// The abilities of this deployment.
    pub abilities: Arc<Registry>,
    /// The event handlers and their state (cursor locks).
    pub events: Arc<Events>,
    /// What the connection limits did (accepted, evicted, refused).
    pub conn_stats: Arc<ConnStats>,
    /// The per-corp budget of listing calls without an event token (`[messages]`).
    pub tokenless: Arc<crate::abilities::tokenless::TokenlessBudget>,
}

impl AppState {
    /// The context of one ability call in `ctx`, due within `budget`.
    pub(crate) fn ability_cx(
        &self,
        ctx: crate::sdk::CallContext,
        notify_id: String,
        budget: Duration,
    ) -> crate::context::AbilityCx {
        crate::context::AbilityCx::new(&self.parts(), ctx, notify_id, tokio::time::Instant::now() + budget)
    }

    /// What every handler context is made of.
    pub(crate) fn parts(&self) -> crate::context::Parts {
        crate::context::Parts {
            sdk: self.sdk.clone(),
            store: self.store.clone(),
            keyring: self.keyring.clone(),
            poll_interval: Duration::from_millis(self.config.jobs.model_poll_interval_ms),
            tokenless: self.tokenless.clone(),
            pages_per_notify: self.config.messages.pages_per_notify,
        }
    }
}

/// A built, bound, not yet running program.
pub struct App {
    listener: TcpListener,
    state: AppState,
}

impl App {
    /// The stock program: [`Program::stock`]`(config).build()` (the configured SDK backend, refusing
    /// to start if it cannot, and `server.listen` bound).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Program::stock(config).build().await
    }

    /// Like [`App::build`] with a given backend.
    pub async fn build_with_sdk(config: Config, sdk: Arc<dyn ZoneSdk>) -> anyhow::Result<Self> {
        Program::stock(config).sdk(sdk).build().await
    }

    /// Binds the listener, opens the store and loads the keyring around the assembled parts.
    /// Refuses, before binding, to serve the public demo keys on a non-loopback address
    /// ([`Config::public_demo_keys_exposed`]), whichever way the program was built.
    pub(crate) async fn assemble(
        config: Config,
        sdk: Arc<dyn ZoneSdk>,
        abilities: Registry,
        events: Events,
    ) -> anyhow::Result<Self> {
        if let Some(why) = config.public_demo_keys_exposed() {
            anyhow::bail!("refusing to start: {why}");
        }
        let listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("binding server.listen {}", config.server.listen))?;
        let store = Store::open(&config.store)
            .with_context(|| format!("opening store.path {}", config.store.path.display()))?;
        let keyring = Keyring::load(&config.keyring)?;
        tracing::info!(keys = keyring.len(), "keyring loaded");
        let metrics = Arc::new(Metrics::new());
        let sdk: Arc<dyn ZoneSdk> = Arc::new(crate::metrics::Metered::new(sdk, metrics.clone()));
        let jobs = Jobs::new(store.clone(), sdk.clone(), JobSettings::from_config(&config.jobs));
        let tokenless = Arc::new(crate::abilities::tokenless::TokenlessBudget::new(&config.messages));
        let state = AppState {
            config: Arc::new(config),
            sdk,
            metrics,
            store,
            jobs,
            keyring: Arc::new(keyring),
            abilities: Arc::new(abilities),
            events: Arc::new(events),
            conn_stats: Arc::default(),
            tokenless,
        };
        Ok(Self { listener, state })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The shared state (for tests that inspect metrics or the store).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves; then stops accepting, and waits up to
    /// `server.shutdown_grace_ms` for in-flight requests. The job workers and the store purge run
    /// alongside and stop with the same signal; an interrupted job resumes at the next start.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let grace = Duration::from_millis(self.state.config.server.shutdown_grace_ms);
        let router = crate::http::router(self.state.clone());
        let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
        let (stop_background, background_stop) = tokio::sync::watch::channel(false);
        let mut background = self
            .state
            .jobs
            .spawn_workers(crate::jobs::runner::Runner::new(self.state.clone()), background_stop.clone());
        background.push(tokio::spawn(purge_loop(
            self.state.store.clone(),
            Duration::from_secs(self.state.config.store.purge_interval_secs),
            background_stop,
        )));
        let server = &self.state.config.server;
        let limits = ConnLimits {
            max_connections: serve::connection_cap(server.max_connections, serve::raise_fd_limit()),
            header_read_timeout: Duration::from_millis(server.header_read_timeout_ms),
        };
        if limits.max_connections < server.max_connections {
            tracing::warn!(
                connections.max = limits.max_connections,
                "server.max_connections lowered to fit the open-file limit"
            );
        }
        let serve = serve::serve(self.listener, router, limits, self.state.conn_stats.clone(), async move {
            shutdown.await;
            tracing::info!("shutdown requested; draining in-flight requests");
            let _ = stopping_tx.send(true);
        });
        let deadline = async move {
            let _ = stopping_rx.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(grace).await;
        };
        let served = tokio::select! {
            () = serve => Ok(()),
            () = deadline => {
                tracing::warn!(grace_ms = grace.as_millis() as u64, "grace period over; closing remaining connections");
                Ok(())
            }
        };
        // Workers finish the step they are in (bounded by the grace period), then stop.
        let _ = stop_background.send(true);
        let drain = async {
            for task in background.iter_mut() {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(grace, drain).await.is_err() {
            tracing::warn!("job workers did not stop within the grace period; abandoning them");
            for task in &background {
                task.abort();
            }
        }
        served
    }
}

/// Purges expired notify data and old job rows every `interval` until `stop` turns true.
async fn purge_loop(store: Store, interval: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => match store.purge().await {
                Ok(p) if p.expired + p.deleted > 0 => tracing::info!(expired = p.expired, deleted = p.deleted, "store purged"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "store purge failed"),
            },
            changed = stop.changed() => if changed.is_err() || *stop.borrow() {
                return;
            },
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
