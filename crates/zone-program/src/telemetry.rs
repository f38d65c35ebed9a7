//! Logging and metrics. Log lines carry identifiers (request id, corp id, ability id, codes), never
//! request data, bodies, keys or tokens. [`Metrics`] holds the counters served at `GET /metrics`.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

use crate::config::{LogConfig, LogFormat};

/// Keeps the log writer's thread alive; dropping it flushes every line still queued. Hold it for as
/// long as the command runs.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    _writer: Option<tracing_appender::non_blocking::WorkerGuard>,
}

impl std::fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogGuard")
    }
}

/// Lines that may wait for the writer thread before a request blocks on logging (nothing is dropped).
const QUEUED_LINES: usize = 64 * 1024;

/// Installs the global subscriber: `RUST_LOG` if set, else `log.level`; text or JSON lines on stderr,
/// and the same lines through the SDK's log functions once the native backend installs its sink
/// ([`crate::sdk::native_log`]). Calling it twice is harmless (the second call does nothing).
///
/// A log line is formatted on the request's thread but written by a writer thread, buffered, so
/// logging never puts a `write(2)` on the request path; when the queue is full, logging waits rather
/// than dropping lines. Colours are used only when stderr is a terminal.
pub fn init(config: &LogConfig) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.level));
    let registry = tracing_subscriber::registry().with(filter).with(crate::sdk::native_log::SdkLogLayer::global());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("zone-program-log")
        .finish(std::io::BufWriter::new(std::io::stderr()));
    let ansi = std::io::stderr().is_terminal();
    let installed = match config.format {
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().with_current_span(true).with_writer(writer))
            .try_init(),
        LogFormat::Text => {
            registry.with(tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(writer)).try_init()
        }
    };
    LogGuard { _writer: installed.is_ok().then_some(guard) }
}

/// A fresh request id: 16 hex characters.
pub fn request_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Process-wide counters. Names follow Prometheus conventions; no label carries request data.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests that decoded and were answered with an encoded reply.
    pub callbacks_answered: AtomicU64,
    /// Requests refused by verification (signature, window, nonce, key version, decryption).
    pub callbacks_rejected: AtomicU64,
    /// Replies that carried a non-zero errcode.
    pub error_replies: AtomicU64,
    /// SDK calls that failed (any reason).
    pub sdk_failures: AtomicU64,
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let rows = [
            (
                "zone_program_callbacks_answered_total",
                "Requests answered with an encoded reply.",
                &self.callbacks_answered,
            ),
            ("zone_program_callbacks_rejected_total", "Requests refused by verification.", &self.callbacks_rejected),
            ("zone_program_error_replies_total", "Replies with a non-zero errcode.", &self.error_replies),
            ("zone_program_sdk_failures_total", "Failed SDK calls.", &self.sdk_failures),
        ];
        let mut out = String::new();
        for (name, help, value) in rows {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                value.load(Ordering::Relaxed)
            ));
        }
        out
    }
}
