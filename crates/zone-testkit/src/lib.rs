//! The test kit: what runs the program and the local zone together, for the project's own tests, the
//! developer CLI and a provider's tests. The one crate that depends on both the program and the local
//! zone; anything that ships takes it as a dev-dependency only.

/// The developer configuration: the program's sections, `[local_zone]` and `[app]` from one file.
pub mod config;

pub use config::DevConfig;
