//! Building and running the program: [`App::build`] creates the SDK backend and binds the listener
//! (port 0 allowed, so tests start the program exactly as production does); [`App::run_until_stopped`]
//! serves until the shutdown future resolves, then drains in-flight requests within the grace period.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::abilities::Registry;
use crate::config::Config;
use crate::events::Events;
use crate::jobs::{JobSettings, Jobs};
use crate::keyring::Keyring;
use crate::sdk::{self, ZoneSdk};
use crate::store::Store;
use crate::telemetry::Metrics;

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
    /// Event handling state (cursor locks).
    pub events: Arc<Events>,
    /// The per-corp budget of listing calls without an event token (`[messages]`).
    pub tokenless: Arc<crate::abilities::tokenless::TokenlessBudget>,
}

/// A built, bound, not yet running program.
pub struct App {
    listener: TcpListener,
    state: AppState,
}

impl App {
    /// Builds the configured SDK backend (refusing to start if it cannot) and binds `server.listen`.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let sdk = sdk::build(&config).context("starting the SDK backend")?;
        Self::build_with_sdk(config, sdk).await
    }

    /// Like [`App::build`] with a given backend.
    pub async fn build_with_sdk(config: Config, sdk: Arc<dyn ZoneSdk>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("binding server.listen {}", config.server.listen))?;
        let store = Store::open(&config.store)
            .with_context(|| format!("opening store.path {}", config.store.path.display()))?;
        let keyring = Keyring::load(&config.keyring)?;
        tracing::info!(keys = keyring.len(), "keyring loaded");
        let jobs = Jobs::new(store.clone(), sdk.clone(), JobSettings::from_config(&config.jobs));
        let abilities = Registry::new(config.abilities.max_input_bytes, config.abilities.output_envelope);
        let tokenless = Arc::new(crate::abilities::tokenless::TokenlessBudget::new(&config.messages));
        let state = AppState {
            config: Arc::new(config),
            sdk,
            metrics: Arc::new(Metrics::default()),
            store,
            jobs,
            keyring: Arc::new(keyring),
            abilities: Arc::new(abilities),
            events: Arc::new(Events::default()),
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
        let mut background =
            self.state.jobs.spawn_workers(crate::dispatch::Runner::new(self.state.clone()), background_stop.clone());
        background.push(tokio::spawn(purge_loop(
            self.state.store.clone(),
            Duration::from_secs(self.state.config.store.purge_interval_secs),
            background_stop,
        )));
        let serve = axum::serve(self.listener, router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                tracing::info!("shutdown requested; draining in-flight requests");
                let _ = stopping_tx.send(true);
            })
            .into_future();
        let deadline = async move {
            let _ = stopping_rx.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(grace).await;
        };
        let served = tokio::select! {
            result = serve => result.context("serving HTTP"),
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
