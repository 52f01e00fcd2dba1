//! Logging and traces.
//!
//! Logs: human-readable on a terminal, JSON (Cloud Logging's shape) when
//! `DATA_BACKUP_LOG_FORMAT=json` or on Cloud Run (`K_SERVICE` set). Level from `RUST_LOG`
//! (default `info`).
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
    let fmt = if json { fmt.json().flatten_event(true).with_current_span(false).boxed() } else { fmt.boxed() };
    let otel = otlp_tracer_provider().map(|provider| {
        let tracer = provider.tracer("data-backup");
        let _ = TRACER_PROVIDER.set(provider);
        tracing_opentelemetry::layer().with_tracer(tracer)
    });
    let _ = tracing_subscriber::registry().with(filter).with(fmt).with(otel).try_init();
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
    );
    if let Some(cx) = remote_context(request.headers()) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
