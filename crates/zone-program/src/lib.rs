//! The WeCom data & intelligence zone program, as a library a provider builds on. A request's path,
//! top to bottom: [`http`] → [`sdk`]`::decode` → [`dispatch`] → ability / event handler → the decoded
//! request's `ReplyBuilder`.
//!
//! The extension API is re-exported here: build a program with [`Program::builder`], add
//! [`Handler`]s (abilities) and [`EventHandler`]s; they run with an [`AbilityCx`] / [`EventCx`]
//! whose [`Sdk`] has a typed method per documented SDK API.

#![deny(missing_docs)]

/// The call_type 1 abilities: registry, `invoke_<api>`, `get_callback_data`, workflows.
pub mod abilities;
/// The program's state and its build / run / shutdown.
pub mod app;
/// The `serve` / `check-config` / `preflight` command line of the image's binary (and its start-up).
pub mod cli;
/// Typed configuration: defaults, file, `ZONE_PROGRAM_*` overrides, validation.
pub mod config;
/// What handlers may use: [`AbilityCx`], [`EventCx`], [`context::NotifyStore`].
pub mod context;
/// Routes a decoded callback to an ability or an event handler.
pub mod dispatch;
/// The program's error codes and its one error type.
pub mod error;
/// The call_type 2 event handlers: store, follow up, notify the app.
pub mod events;
/// Fuzz runs of every decoder of untrusted input (tests only; `ZONE_FUZZ_CASES`).
#[cfg(test)]
mod fuzz;
/// The HTTP server facing the WeCom backend.
pub mod http;
/// Durable async jobs on bounded workers, result reports, model-task polling.
pub mod jobs;
/// RSA private keys by corp and `public_key_ver`; unwraps a message's `encrypted_secret_key`.
pub mod keyring;
/// Prometheus metrics (`GET /metrics`): families, the metered SDK wrapper, the counting listener.
pub mod metrics;
/// `preflight`: the start check (config, key files, SDK library, data directory, port).
pub mod preflight;
/// The builder: configuration + abilities + event handlers → [`app::App`].
pub mod program;
/// The zone SDK seam, its backends and the typed client ([`sdk::api`]).
pub mod sdk;
/// Durable state: notify data, job rows, listing cursors (embedded SQLite).
pub mod store;
/// Logging and metrics.
pub mod telemetry;

/// The one clock of every part (from `zone-crypto`): [`clock::Clock`], [`clock::SystemClock`], [`clock::ManualClock`].
pub use zone_crypto::clock;

pub use abilities::{Ability, AbilityInfo, Handler, Output, Validate, ok_with};
pub use context::{AbilityCx, EventCx, NotifyStore};
pub use error::{AppError, ErrorCode};
pub use events::{Event, EventHandler, EventStep, EventType};
pub use program::Program;
pub use sdk::api::Sdk;
