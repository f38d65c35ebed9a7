//! The WeCom data & intelligence zone program. A request's path, top to bottom:
//! [`http`] → [`sdk`]`::decode` → [`dispatch`] → ability / event → [`sdk`]`::encode_reply`.

/// The program's state and its build / run / shutdown.
pub mod app;
/// `zone-program bench`: the load benchmark against the framework floor and the one-thread demo.
pub mod bench;
/// The command line.
pub mod cli;
/// The local codec between the program and the local zone (not WeCom's wire format).
pub mod codec;
/// Typed configuration: defaults, file, `ZONE_PROGRAM_*` overrides, validation.
pub mod config;
/// The WeCom callback cipher (app-side crypto) and its XML shapes.
pub mod crypto;
/// Routes a decoded callback to an ability or an event handler.
pub mod dispatch;
/// The program's error codes and its one error type.
pub mod error;
/// The HTTP server facing the WeCom backend.
pub mod http;
/// The zone SDK seam and its backends.
pub mod sdk;
/// Logging and metrics.
pub mod telemetry;
