//! Logging and metrics. Log lines carry identifiers (request id, corp id, ability id, codes), never
//! request data, bodies, keys or tokens. [`Metrics`] (in [`crate::metrics`]) is served at `GET /metrics`.

use std::io::IsTerminal as _;

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

pub use crate::metrics::Metrics;

/// Log capture for unit tests: the lines tracing emits on this thread while the guard lives.
#[cfg(test)]
pub(crate) mod capture {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt as _;

    /// The captured text, shared with the subscriber's writer.
    #[derive(Clone, Default)]
    pub struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Lines {
        /// Everything written so far.
        pub fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Captures this thread's log lines (plain text, no colours) until the guard is dropped.
    pub fn capture() -> (Lines, tracing::subscriber::DefaultGuard) {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_ansi(false).with_writer(move || writer.clone()));
        (lines, tracing::subscriber::set_default(subscriber))
    }
}
