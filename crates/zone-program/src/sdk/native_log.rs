//! Logging through the SDK: with the native backend, the zone keeps only log lines written with the
//! SDK's log functions (`protocol/program-callbacks.md` §10). [`SdkLogLayer`] is a `tracing` layer
//! that forwards each event, as one line, to an [`SdkLog`] at the matching level:
//! ERROR and WARN → ERR, INFO → INFO, DEBUG and TRACE → DBG. The line is the event's target, message
//! and fields, tagged with the `request_id` of the enclosing request span (the SDK's reqid). Events
//! carry identifiers and codes only (the crate's logging rule), so no chat data reaches the SDK log.
//!
//! [`telemetry::init`](crate::telemetry::init) always installs the layer; it forwards nothing until
//! [`install`] gives it a sink (done by `sdk::build` for the native backend).

use std::fmt::Write as _;
use std::sync::{Arc, RwLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The SDK's log levels (`set_log_level`: 1 ERR, 2 INFO, 3 DBG).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdkLogLevel {
    /// 1: errors.
    Err,
    /// 2: information (the zone's default level).
    Info,
    /// 3: debugging.
    Dbg,
}

impl From<Level> for SdkLogLevel {
    fn from(level: Level) -> Self {
        if level <= Level::WARN {
            Self::Err
        } else if level == Level::INFO {
            Self::Info
        } else {
            Self::Dbg
        }
    }
}

/// Where forwarded log lines go (the native backend's SDK log functions).
pub trait SdkLog: Send + Sync {
    /// Writes one line at `level`, tagged with the request id `reqid` (may be empty).
    fn write(&self, level: SdkLogLevel, reqid: &str, line: &str);
}

static GLOBAL: RwLock<Option<Arc<dyn SdkLog>>> = RwLock::new(None);

/// Makes the global layer ([`SdkLogLayer::global`]) forward to `sink` from now on.
pub fn install(sink: Arc<dyn SdkLog>) {
    *GLOBAL.write().unwrap_or_else(|p| p.into_inner()) = Some(sink);
}

/// The `tracing` layer forwarding events to an [`SdkLog`].
pub struct SdkLogLayer {
    sink: Option<Arc<dyn SdkLog>>,
}

impl SdkLogLayer {
    /// A layer forwarding to whatever [`install`] set (nothing until then).
    pub fn global() -> Self {
        Self { sink: None }
    }

    /// A layer forwarding to `sink`.
    pub fn to(sink: Arc<dyn SdkLog>) -> Self {
        Self { sink: Some(sink) }
    }

    fn sink(&self) -> Option<Arc<dyn SdkLog>> {
        match &self.sink {
            Some(sink) => Some(sink.clone()),
            None => GLOBAL.read().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

/// The `request_id` of a span, kept in its extensions.
struct RequestId(String);

impl<S> Layer<S> for SdkLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, id: &tracing::span::Id, ctx: Context<'_, S>) {
        let mut visitor = RequestIdVisitor(None);
        attrs.record(&mut visitor);
        if let (Some(reqid), Some(span)) = (visitor.0, ctx.span(id)) {
            span.extensions_mut().insert(RequestId(reqid));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(sink) = self.sink() else { return };
        let meta = event.metadata();
        let mut line = LineVisitor { line: format!("{}: ", meta.target()), fields: String::new() };
        event.record(&mut line);
        let reqid = ctx
            .event_scope(event)
            .and_then(|scope| {
                scope.from_root().find_map(|span| span.extensions().get::<RequestId>().map(|r| r.0.clone()))
            })
            .unwrap_or_default();
        let level = *meta.level();
        let prefix = if level == Level::WARN { "WARN " } else { "" };
        sink.write(level.into(), &reqid, &format!("{prefix}{}{}", line.line, line.fields));
    }
}

struct RequestIdVisitor(Option<String>);

impl Visit for RequestIdVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "request_id" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "request_id" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

struct LineVisitor {
    line: String,
    fields: String,
}

impl Visit for LineVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.line.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.line, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tracing_subscriber::prelude::*;

    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(SdkLogLevel, String, String)>>);

    impl SdkLog for Recorder {
        fn write(&self, level: SdkLogLevel, reqid: &str, line: &str) {
            self.0.lock().unwrap().push((level, reqid.to_owned(), line.to_owned()));
        }
    }

    #[test]
    fn events_are_forwarded_at_the_matching_level_with_the_request_id() {
        let recorder = Arc::new(Recorder::default());
        let subscriber = tracing_subscriber::registry().with(SdkLogLayer::to(recorder.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", request_id = %"abc123", corp_id = "wwcorp");
            let _entered = span.enter();
            tracing::error!(code = -40001, "request refused");
            tracing::warn!("slow");
            tracing::info!(status = 200, "request finished");
            tracing::debug!("detail");
            tracing::trace!("finer");
        });
        tracing::info!("outside any subscriber: not recorded");
        let lines = recorder.0.lock().unwrap().clone();
        let levels: Vec<SdkLogLevel> = lines.iter().map(|l| l.0).collect();
        use SdkLogLevel::*;
        assert_eq!(levels, [Err, Err, Info, Dbg, Dbg]);
        assert!(lines.iter().all(|l| l.1 == "abc123"), "{lines:?}");
        assert!(lines[0].2.ends_with("request refused code=-40001"), "{:?}", lines[0]);
        assert!(lines[1].2.contains("WARN ") && lines[1].2.contains("slow"), "{:?}", lines[1]);
        assert!(lines[2].2.contains("request finished status=200"), "{:?}", lines[2]);
    }

    #[test]
    fn without_a_request_span_the_request_id_is_empty() {
        let recorder = Arc::new(Recorder::default());
        let subscriber = tracing_subscriber::registry().with(SdkLogLayer::to(recorder.clone()));
        tracing::subscriber::with_default(subscriber, || tracing::info!("started"));
        let lines = recorder.0.lock().unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].1, "");
    }
}
