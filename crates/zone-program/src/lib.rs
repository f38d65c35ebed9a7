//! The WeCom data & intelligence zone program. A request's path, top to bottom:
//! [`http`] → [`sdk`]`::decode` → [`dispatch`] → ability / event → the decoded request's `ReplyBuilder`.

/// The call_type 1 abilities: registry, `invoke_<api>`, `get_callback_data`, workflows.
pub mod abilities;
/// The program's state and its build / run / shutdown.
pub mod app;
/// The `serve` / `check-config` / `preflight` command line of the image's binary (and its start-up).
pub mod cli;
/// Typed configuration: defaults, file, `ZONE_PROGRAM_*` overrides, validation.
pub mod config;
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
/// `preflight`: the start check (config, key files, SDK library, data directory, port).
pub mod preflight;
/// The zone SDK seam and its backends.
pub mod sdk;
/// Durable state: notify data, job rows, listing cursors (embedded SQLite).
pub mod store;
/// Logging and metrics.
pub mod telemetry;
