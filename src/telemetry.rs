//! Logging and traces.
//!
//! Logs: human-readable on a terminal, JSON in Cloud Logging's structured shape ([`CloudLogging`])
//! when `DATA_BACKUP_LOG_FORMAT=json` or on Cloud Run (`K_SERVICE` set). Level from `RUST_LOG`
//! (default `info`). One event is one line in both: JSON escapes its strings, and the text format
//! ([`text_fields`]) escapes every control character of every field and message, so a value that
//! came from a caller (a token's `kid`, a `Host`, a database name) cannot forge a line or send a
//! terminal escape sequence (tracing-subscriber's own text format prints a `%` field or the
//! message as is, newlines included).
//!
//! Traces: `tracing` spans (`request`, `schedule`, `discovery`, `enqueue`, `export`, `upload`)
//! become OpenTelemetry spans, exported over OTLP (HTTP/protobuf) only when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. An incoming
//! request joins the caller's trace from `traceparent` (W3C) or, failing that,
//! `X-Cloud-Trace-Context` (Cloud Tasks, Cloud Scheduler, Google front ends): see [`request_span`].

use std::sync::OnceLock;

use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

static TRACER_PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

fn otlp_tracer_provider() -> Option<SdkTracerProvider> {
    let configured = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| !v.trim().is_empty()));
    if !configured {
        return None;
    }
    match opentelemetry_otlp::SpanExporter::builder().with_http().build() {
        Ok(exporter) => Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(opentelemetry_sdk::Resource::builder().with_service_name("data-backup").build())
                .build(),
        ),
        Err(e) => {
            eprintln!("warning: OTLP trace exporter not started: {e}");
            None
        }
    }
}

/// Installs the global subscriber once; later calls do nothing.
pub fn init() {
    use opentelemetry::trace::TracerProvider as _;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json =
        std::env::var("DATA_BACKUP_LOG_FORMAT").is_ok_and(|v| v == "json") || std::env::var_os("K_SERVICE").is_some();
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        fmt.fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(CloudLogging::from_env())
            .boxed()
    } else {
        fmt.fmt_fields(text_fields()).boxed()
    };
    let otel = otlp_tracer_provider().map(|provider| {
        let tracer = provider.tracer("data-backup");
        let _ = TRACER_PROVIDER.set(provider);
        tracing_opentelemetry::layer().with_tracer(tracer)
    });
    let _ = tracing_subscriber::registry().with(filter).with(fmt).with(otel).try_init();
}

/// The fields of the human-readable format: the message, then `name=value` pairs, with every
/// control character (newline, carriage return, escape, C1 codes) and line or paragraph separator
/// written as its Rust escape (`\n`, `\u{1b}`).
#[must_use]
pub fn text_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static {
    use tracing_subscriber::field::MakeExt as _;
    tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        let value = format!("{value:?}");
        let value = escape_controls(&value);
        if field.name() == "message" { write!(writer, "{value}") } else { write!(writer, "{}={value}", field.name()) }
    })
    .delimited(" ")
}

/// `text` with its control characters and line separators escaped (`\n`, `\u{1b}`), everything
/// else as is.
#[must_use]
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    let escaped = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if !text.chars().any(escaped) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if escaped(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Exports the spans still buffered (call before the process exits).
pub fn shutdown() {
    if let Some(provider) = TRACER_PROVIDER.get() {
        let _ = provider.shutdown();
    }
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// `X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=OPTIONS` (32 hex digits, a decimal span id,
/// `o=1` when sampled).
fn cloud_trace_context(value: &str) -> Option<SpanContext> {
    let (trace, rest) = value.trim().split_once('/')?;
    let (span, options) = rest.split_once(';').unwrap_or((rest, ""));
    if trace.len() != 32 {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok().filter(|t| *t != TraceId::INVALID)?;
    let span_id = SpanId::from_bytes(span.parse::<u64>().ok().filter(|s| *s != 0)?.to_be_bytes());
    let flags = if options.trim() == "o=1" { TraceFlags::SAMPLED } else { TraceFlags::default() };
    Some(SpanContext::new(trace_id, span_id, flags, true, TraceState::default()))
}

/// The caller's trace context: `traceparent` (W3C Trace Context) when valid, else
/// `X-Cloud-Trace-Context`.
#[must_use]
pub fn remote_context(headers: &http::HeaderMap) -> Option<opentelemetry::Context> {
    let cx = TraceContextPropagator::new().extract(&Headers(headers));
    if cx.span().span_context().is_valid() {
        return Some(cx);
    }
    let value = headers.get("x-cloud-trace-context")?.to_str().ok()?;
    Some(opentelemetry::Context::new().with_remote_span_context(cloud_trace_context(value)?))
}

/// The span of one HTTP request (tower-http's `make_span_with`), child of the caller's trace.
pub fn request_span<B>(request: &http::Request<B>) -> tracing::Span {
    let span = tracing::info_span!(
        "request",
        http.request.method = %request.method(),
        url.path = %request.uri().path(),
        trace_id = tracing::field::Empty,
    );
    if let Some(cx) = remote_context(request.headers()) {
        // For the logs' `logging.googleapis.com/trace`, whether or not traces are exported.
        span.record("trace_id", cx.span().span_context().trace_id().to_string());
        // Fails only when no OpenTelemetry layer is installed: then there is no trace to join.
        let _ = span.set_parent(cx);
    }
    span
}

/// The OpenTelemetry context of the current span, to carry work (a queued task) into another
/// task that joins the same trace with [`join`].
#[must_use]
pub fn current_context() -> opentelemetry::Context {
    tracing::Span::current().context()
}

/// The W3C `traceparent` header value of `cx`, to put on work handed to another service (a Cloud
/// Tasks HTTP task), so the delivery joins the same trace. `None` when there is no valid trace.
#[must_use]
pub fn traceparent(cx: &opentelemetry::Context) -> Option<String> {
    let mut carrier = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(cx, &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` a child of `cx` (captured by [`current_context`]).
pub fn join(span: &tracing::Span, cx: opentelemetry::Context) {
    let _ = span.set_parent(cx);
}

/// Cloud Logging's structured JSON (one object per line): `severity`, `message`, `time`,
/// `logging.googleapis.com/trace` (`projects/P/traces/T`, from the request's `trace_id` and
/// `GOOGLE_CLOUD_PROJECT`), `logging.googleapis.com/labels` (the Cloud Tasks delivery, the
/// database and the run, so log-based metrics can count errors per database), then the fields of
/// every enclosing span and of the event itself. Needs the layer's field formatter to be
/// `JsonFields`, so span fields are stored as JSON.
pub struct CloudLogging {
    project: Option<String>,
}

/// Fields copied into `logging.googleapis.com/labels` (as strings) when present.
const LABEL_FIELDS: [&str; 9] = [
    "db.path",
    "db.name",
    "run.id",
    "run.date",
    "error.class",
    "cloudtasks.task_name",
    "cloudtasks.queue_name",
    "cloudtasks.retry_count",
    "cloudtasks.execution_count",
];

impl CloudLogging {
    /// The project of the trace names from `GOOGLE_CLOUD_PROJECT` (or `GCP_PROJECT`).
    #[must_use]
    pub fn from_env() -> Self {
        let project = ["GOOGLE_CLOUD_PROJECT", "GCP_PROJECT"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()));
        Self { project }
    }

    /// With an explicit project (tests).
    #[must_use]
    pub fn with_project(project: Option<&str>) -> Self {
        Self { project: project.map(str::to_owned) }
    }
}

struct JsonVisitor<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for CloudLogging
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        use serde_json::Value;
        let mut fields = serde_json::Map::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let stored = extensions.get::<tracing_subscriber::fmt::FormattedFields<N>>();
                if let Some(Ok(Value::Object(map))) = stored.map(|f| serde_json::from_str::<Value>(f.as_str())) {
                    fields.extend(map);
                }
            }
        }
        event.record(&mut JsonVisitor(&mut fields));
        let meta = event.metadata();
        let severity = match *meta.level() {
            tracing::Level::ERROR => "ERROR",
            tracing::Level::WARN => "WARNING",
            tracing::Level::INFO => "INFO",
            _ => "DEBUG",
        };
        let mut entry = serde_json::Map::new();
        entry.insert("severity".into(), severity.into());
        entry.insert("message".into(), fields.remove("message").unwrap_or_else(|| meta.name().into()));
        entry.insert("time".into(), chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true).into());
        entry.insert("target".into(), meta.target().into());
        if let (Some(project), Some(Value::String(trace))) = (&self.project, fields.get("trace_id")) {
            entry.insert("logging.googleapis.com/trace".into(), format!("projects/{project}/traces/{trace}").into());
        }
        let labels: serde_json::Map<String, Value> = LABEL_FIELDS
            .iter()
            .filter_map(|k| {
                let value = fields.get(*k)?;
                Some(((*k).to_owned(), value.as_str().map_or_else(|| value.to_string(), str::to_owned).into()))
            })
            .collect();
        if !labels.is_empty() {
            entry.insert("logging.googleapis.com/labels".into(), Value::Object(labels));
        }
        for (k, v) in fields {
            entry.entry(k).or_insert(v);
        }
        writeln!(writer, "{}", Value::Object(entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn cloud_logging_lines_carry_severity_trace_labels_and_span_fields() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || writer.clone())
                .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                .event_format(CloudLogging::with_project(Some("ops"))),
        );
        tracing::subscriber::with_default(subscriber, || {
            let request = tracing::info_span!("request", trace_id = "4bf92f3577b34da6a3ce929d0e0e4736");
            let _r = request.enter();
            let delivery = tracing::info_span!(
                "delivery",
                cloudtasks.task_name = "projects/ops/locations/l/queues/q/tasks/t1",
                cloudtasks.retry_count = 3_u32
            );
            let _d = delivery.enter();
            tracing::error!(db.path = "p/i/app", error.class = "permission_denied", "export of p/i/app failed");
            tracing::warn!("a warning");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "{text}");
        let error = &lines[0];
        assert_eq!(error["severity"], "ERROR");
        assert_eq!(error["message"], "export of p/i/app failed");
        assert_eq!(error["logging.googleapis.com/trace"], "projects/ops/traces/4bf92f3577b34da6a3ce929d0e0e4736");
        let labels = &error["logging.googleapis.com/labels"];
        assert_eq!(labels["db.path"], "p/i/app");
        assert_eq!(labels["error.class"], "permission_denied");
        assert_eq!(labels["cloudtasks.task_name"], "projects/ops/locations/l/queues/q/tasks/t1");
        assert_eq!(labels["cloudtasks.retry_count"], "3");
        assert_eq!(lines[1]["severity"], "WARNING");
        assert_eq!(lines[1]["cloudtasks.retry_count"], 3, "span fields reach every line: {text}");
    }

    #[test]
    fn text_lines_cannot_be_forged_by_a_value() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .fmt_fields(text_fields()),
        );
        let kid = "k1\nERROR forged line\u{1b}[31m";
        tracing::subscriber::with_default(subscriber, || {
            let request = tracing::info_span!("request", url.path = %"/x\r\ny");
            let _r = request.enter();
            tracing::warn!(reason = %format!("the token's signing key `{kid}` is unknown"), caller.sub = kid, "caller rejected: {kid}");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("caller rejected: k1\\nERROR forged line\\u{1b}[31m"), "{text}");
        assert!(text.contains("reason=the token's signing key `k1\\nERROR"), "{text}");
        assert!(text.contains("url.path=/x\\r\\ny"), "{text}");
    }

    #[test]
    fn traceparent_round_trips_through_remote_context() {
        let mut headers = http::HeaderMap::new();
        let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        headers.insert("traceparent", http::HeaderValue::from_static(value));
        let cx = remote_context(&headers).expect("valid");
        assert_eq!(traceparent(&cx).as_deref(), Some(value));
        assert_eq!(traceparent(&opentelemetry::Context::new()), None);
    }

    #[test]
    fn traceparent_wins_and_cloud_trace_context_is_the_fallback() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-cloud-trace-context", "105445aa7843bc8bf206b12000100000/1;o=1".parse().unwrap());
        let cx = remote_context(&headers).unwrap();
        let sc = cx.span().span_context().clone();
        assert_eq!(sc.trace_id().to_string(), "105445aa7843bc8bf206b12000100000");
        assert_eq!(sc.span_id().to_string(), "0000000000000001");
        assert!(sc.is_sampled() && sc.is_remote());

        headers.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
        let cx = remote_context(&headers).unwrap();
        assert_eq!(cx.span().span_context().trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn malformed_trace_headers_are_ignored() {
        for bad in
            ["", "xyz/1;o=1", "105445aa7843bc8bf206b12000100000/notanumber", "00000000000000000000000000000000/1"]
        {
            let mut headers = http::HeaderMap::new();
            headers.insert("x-cloud-trace-context", bad.parse().unwrap());
            assert!(remote_context(&headers).is_none(), "{bad:?}");
        }
    }
}
