//! `[server]`: the HTTP server facing the WeCom backend.

use std::net::SocketAddr;

use serde::Deserialize;

use super::{ConfigError, positive};

/// `[server]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:8080`; in the zone `0.0.0.0:8080` (its port), which
    /// `preflight` reminds of with the native backend.
    pub listen: SocketAddr,
    /// Largest request body in bytes; larger gets 413. Default 2 MiB.
    pub body_limit_bytes: usize,
    /// Deadline of one request in milliseconds. Default 30000.
    pub request_timeout_ms: u64,
    /// How long graceful shutdown waits for in-flight requests, in milliseconds. Default 10000.
    pub shutdown_grace_ms: u64,
    /// Most connections open at once (lowered to the open-file limit less 256). At the cap a new
    /// connection replaces the longest-idle one; when all are busy it gets a 503. Default 4096.
    pub max_connections: usize,
    /// Time a connection gets to send a whole request head, after opening or after its previous
    /// reply (so also the idle keep-alive timeout), in milliseconds. Default 10000.
    pub header_read_timeout_ms: u64,
    /// Longest pause while a request body arrives, in milliseconds (then 400). Default 10000.
    pub body_read_timeout_ms: u64,
    /// Most bytes of request bodies being received at once, across all connections; a request that
    /// does not fit gets 503 before its body is read. At least `body_limit_bytes`. Default 64 MiB.
    pub max_buffered_body_bytes: usize,
    /// Serve with the local backend and the public demo token or key (`[sdk.local]` defaults) on a
    /// non-loopback address: anyone on the network who reads the README can then call the program.
    /// For a closed lab network only (`serve --allow-public-demo-keys`). Default false.
    pub allow_public_demo_keys: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 2 * 1024 * 1024,
            request_timeout_ms: 30_000,
            shutdown_grace_ms: 10_000,
            max_connections: 4096,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 10_000,
            max_buffered_body_bytes: 64 * 1024 * 1024,
            allow_public_demo_keys: false,
        }
    }
}

impl ServerConfig {
    /// Checks the section's values; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("server.body_limit_bytes", self.body_limit_bytes as u64)?;
        positive("server.request_timeout_ms", self.request_timeout_ms)?;
        positive("server.max_connections", self.max_connections as u64)?;
        positive("server.header_read_timeout_ms", self.header_read_timeout_ms)?;
        positive("server.body_read_timeout_ms", self.body_read_timeout_ms)?;
        if self.max_buffered_body_bytes < self.body_limit_bytes || self.max_buffered_body_bytes > u32::MAX as usize {
            return Err(ConfigError::new(
                "server.max_buffered_body_bytes",
                "must be at least server.body_limit_bytes and at most 4 GiB",
            ));
        }
        Ok(())
    }
}
