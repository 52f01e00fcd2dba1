//! Metrics: one OpenTelemetry meter provider per application. Its instruments are read by a
//! Prometheus reader (`GET /metrics`, text format 0.0.4) and, when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`) is set, pushed over OTLP every minute as well.
//!
//! The names follow OpenTelemetry's conventions (dotted, unit in the metadata; `db.system.name`,
//! `db.namespace`, `error.type` where a semantic-convention attribute exists); the Prometheus
//! exporter turns them into `data_backup_…` names with unit and `_total` suffixes. README.md
//! ("Status and metrics") lists every series and label; keep it in step with [`Metrics::new`].
//!
//! Also here: [`TracedBucket`], the `upload` span around every streamed upload (the `Bucket` seam
//! is the one place every dump goes through, whatever the exporter).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram, MeterProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use tracing::Instrument as _;

use crate::model::Engine;
use crate::store::BackupStore;
use crate::store::bucket::{Bucket, BucketError, ByteReader, ByteStream, ObjectInfo, PutOutcome};
use crate::store::manifest::Manifest;

/// Bucket boundaries of the export duration histogram, in seconds (1 s … 8 h).
const DURATION_BUCKETS: [f64; 14] =
    [1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0];

/// Bucket boundaries of the export size histogram, in bytes (1 KiB … 1 TiB, ×4).
fn size_buckets() -> Vec<f64> {
    (0..=15).map(|i| 1024.0 * 4f64.powi(i)).collect()
}

/// `db.system.name` of an engine (OpenTelemetry semantic conventions).
#[must_use]
pub fn db_system_name(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => "postgresql",
        Engine::Mysql => "mysql",
        Engine::Sqlserver => "microsoft.sql_server",
    }
}

/// Unix seconds (with milliseconds) of a time.
fn unix_secs(at: DateTime<Utc>) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "Unix milliseconds fit an f64 exactly until the year 285616")]
    let ms = at.timestamp_millis() as f64;
    ms / 1000.0
}

/// The newest backup of one database, as [`Metrics::observe_status`] records it.
#[derive(Clone, Copy, Debug)]
pub struct LastBackup<'a> {
    /// Project.
    pub project: &'a str,
    /// Instance.
    pub instance: &'a str,
    /// Database.
    pub database: &'a str,
    /// Engine.
    pub engine: Engine,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
    /// Its stored size.
    pub bytes: Option<u64>,
    /// How long its export took, in seconds (from the database's history).
    pub duration_secs: Option<f64>,
    /// When its newest successful restore drill finished.
    pub verified_at: Option<DateTime<Utc>>,
}

/// The application's instruments and the registry `/metrics` encodes.
pub struct Metrics {
    registry: prometheus::Registry,
    provider: SdkMeterProvider,
    exports: Counter<u64>,
    export_duration: Histogram<f64>,
    export_size: Histogram<u64>,
    last_success: Gauge<f64>,
    last_size: Gauge<u64>,
    last_duration: Gauge<f64>,
    last_verification: Gauge<f64>,
    databases: Gauge<u64>,
    copy_databases: Gauge<u64>,
    discovery_calls: Counter<u64>,
    discovery_errors: Counter<u64>,
    queue_retries: Counter<u64>,
    queue_depth: Arc<AtomicU64>,
    /// Serialises `observe_states` so two refreshes never interleave their gauge values.
    states_lock: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn otlp_configured() -> bool {
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"]
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| !v.trim().is_empty()))
}

impl Metrics {
    /// A meter provider read by a fresh Prometheus registry (and by OTLP when configured).
    #[must_use]
    pub fn new() -> Self {
        let registry = prometheus::Registry::new();
        let prometheus_reader = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_target_info()
            .scope_info_enabled(false)
            .build()
            .expect("a fresh registry accepts the exporter's collector");
        let mut builder = SdkMeterProvider::builder()
            .with_resource(Resource::builder().with_service_name("data-backup").build())
            .with_reader(prometheus_reader);
        if otlp_configured() {
            match opentelemetry_otlp::MetricExporter::builder().with_http().build() {
                Ok(exporter) => {
                    builder = builder.with_reader(
                        opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
                            .with_interval(Duration::from_secs(60))
                            .build(),
                    );
                }
                Err(e) => tracing::warn!(error = %e, "OTLP metrics exporter not started: {e}"),
            }
        }
        let provider = builder.build();
        let meter = provider.meter("data-backup");
        // The build that serves, as Prometheus' `*_build_info` convention has it: always 1.
        let build_info = meter
            .u64_gauge("data_backup.build_info")
            .with_description("The build of the service (always 1; its version in the labels)")
            .build();
        build_info.record(1, &[KeyValue::new("version", env!("CARGO_PKG_VERSION"))]);
        let queue_depth = Arc::new(AtomicU64::new(0));
        let depth = queue_depth.clone();
        // Observable: read at each collection, so it is never stale.
        let _queue_gauge = meter
            .u64_observable_gauge("data_backup.queue.depth")
            .with_description("Export tasks queued or running in the embedded queue")
            .with_unit("{task}")
            .with_callback(move |o| o.observe(depth.load(Ordering::Relaxed), &[]))
            .build();
        let queue_retries = meter
            .u64_counter("data_backup.queue.retries")
            .with_description("Export attempts retried by the embedded queue")
            .with_unit("{retry}")
            .build();
        // Present (at 0) from the start, so a scrape tells "no retries" from "no such series".
        queue_retries.add(0, &[]);
        Self {
            exports: meter
                .u64_counter("data_backup.exports")
                .with_description("Export attempts, by result (exported, already_exported, lease_held, failed)")
                .with_unit("{export}")
                .build(),
            export_duration: meter
                .f64_histogram("data_backup.export.duration")
                .with_description("Duration of export attempts")
                .with_unit("s")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            export_size: meter
                .u64_histogram("data_backup.export.size")
                .with_description("Stored size of the dumps made")
                .with_unit("By")
                .with_boundaries(size_buckets())
                .build(),
            last_success: meter
                .f64_gauge("data_backup.last_success.timestamp")
                .with_description("When the newest backup of each database finished (Unix time)")
                .with_unit("s")
                .build(),
            last_size: meter
                .u64_gauge("data_backup.last_backup.size")
                .with_description("Stored size of the newest backup of each database")
                .with_unit("By")
                .build(),
            last_duration: meter
                .f64_gauge("data_backup.last_backup.duration")
                .with_description("How long the export of the newest backup of each database took")
                .with_unit("s")
                .build(),
            last_verification: meter
                .f64_gauge("data_backup.last_verification.timestamp")
                .with_description("When the newest successful restore drill of each database finished (Unix time)")
                .with_unit("s")
                .build(),
            databases: meter
                .u64_gauge("data_backup.databases")
                .with_description("Databases by status state (ok, stale, failing, missing, gone, unverified, excluded)")
                .with_unit("{database}")
                .build(),
            copy_databases: meter
                .u64_gauge("data_backup.copy.databases")
                .with_description(
                    "Databases with a backup, by off-site copy and copy state (ok, behind, missing, error)",
                )
                .with_unit("{database}")
                .build(),
            discovery_calls: meter
                .u64_counter("data_backup.discovery.calls")
                .with_description("Discovery calls, by source and API")
                .with_unit("{call}")
                .build(),
            discovery_errors: meter
                .u64_counter("data_backup.discovery.errors")
                .with_description("Failed discovery calls, by source and API")
                .with_unit("{error}")
                .build(),
            queue_retries,
            queue_depth,
            registry,
            provider,
            states_lock: Mutex::new(()),
        }
    }

    /// Records one export attempt: its result (`exported`, `already_exported`, `lease_held`,
    /// `waiting` for a Cloud SQL operation or instance, `failed`), the error class when it failed
    /// or waits, and how long it took.
    pub fn export_attempt(
        &self,
        engine: Engine,
        result: &'static str,
        error_type: Option<&'static str>,
        took: Duration,
    ) {
        let mut attrs = vec![KeyValue::new("result", result), KeyValue::new("db.system.name", db_system_name(engine))];
        self.export_duration.record(took.as_secs_f64(), &attrs);
        if let Some(class) = error_type {
            attrs.push(KeyValue::new("error.type", class));
        }
        self.exports.add(1, &attrs);
    }

    /// Records a new backup: its size and export time, and the database's last success time.
    pub fn backup_made(&self, manifest: &Manifest) {
        self.export_size.record(manifest.bytes, &[KeyValue::new("db.system.name", db_system_name(manifest.engine))]);
        let labels = Self::db_labels(&manifest.project, &manifest.instance, &manifest.database, manifest.engine);
        self.last_size.record(manifest.bytes, &labels);
        #[expect(clippy::cast_precision_loss, reason = "milliseconds of an export fit an f64")]
        let secs = (manifest.finished_at - manifest.started_at).num_milliseconds().max(0) as f64 / 1000.0;
        self.last_duration.record(secs, &labels);
        self.record_last_success(
            &manifest.project,
            &manifest.instance,
            &manifest.database,
            manifest.engine,
            manifest.finished_at,
        );
    }

    /// The labels of one database's series. No label is named `instance`: Prometheus sets that
    /// one on every scraped series (the target), so the Cloud SQL instance is `cloudsql_instance`.
    fn db_labels(project: &str, instance: &str, database: &str, engine: Engine) -> [KeyValue; 4] {
        [
            KeyValue::new("project", project.to_owned()),
            KeyValue::new("cloudsql_instance", instance.to_owned()),
            KeyValue::new("db.namespace", database.to_owned()),
            KeyValue::new("db.system.name", db_system_name(engine)),
        ]
    }

    fn record_last_success(&self, project: &str, instance: &str, database: &str, engine: Engine, at: DateTime<Utc>) {
        self.last_success.record(unix_secs(at), &Self::db_labels(project, instance, database, engine));
    }

    /// Records `count` discovery calls of `source` to `method` of `api`: a Google API
    /// (`resourcemanager`, `sqladmin`, `cloudasset`) and one of its methods (`instances.list`, …),
    /// or a server (`postgres`, `mysql`) and `list_databases`. `error` is the error type of failed
    /// calls (an HTTP status code or `transport` for Google APIs; `unavailable` or `partial` for a
    /// server), counted in the errors too.
    pub fn discovery_calls(&self, source: &str, api: &str, method: &str, error: Option<&str>, count: u64) {
        let attrs = [
            KeyValue::new("source", source.to_owned()),
            KeyValue::new("api", api.to_owned()),
            KeyValue::new("method", method.to_owned()),
        ];
        self.discovery_calls.add(count, &attrs);
        if let Some(class) = error {
            let mut attrs = attrs.to_vec();
            attrs.push(KeyValue::new("error.type", class.to_owned()));
            self.discovery_errors.add(count, &attrs);
        }
    }

    /// Counts one retry scheduled by the embedded queue.
    pub fn queue_retry(&self) {
        self.queue_retries.add(1, &[]);
    }

    /// Sets the number of tasks queued or running in the embedded queue.
    pub fn set_queue_depth(&self, depth: usize) {
        self.queue_depth.store(u64::try_from(depth).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Records a computed status: `counts` holds the databases per state name (every state, zeros
    /// included), `backups` the newest backup of every database with one (its last success time).
    pub fn observe_status(&self, counts: &[(&str, usize)], backups: &[LastBackup<'_>]) {
        let _one_at_a_time = self.states_lock.lock().expect("lock");
        for &(state, n) in counts {
            self.databases.record(u64::try_from(n).unwrap_or(u64::MAX), &[KeyValue::new("state", state.to_owned())]);
        }
        for b in backups {
            let labels = Self::db_labels(b.project, b.instance, b.database, b.engine);
            self.last_success.record(unix_secs(b.finished_at), &labels);
            if let Some(bytes) = b.bytes {
                self.last_size.record(bytes, &labels);
            }
            if let Some(secs) = b.duration_secs {
                self.last_duration.record(secs, &labels);
            }
            if let Some(at) = b.verified_at {
                self.last_verification.record(unix_secs(at), &labels);
            }
        }
    }

    /// Records the state of each off-site copy: (copy name, copy state, databases), every state of
    /// every copy, zeros included (labels `copy` and `state`: copies times four series).
    pub fn observe_copies(&self, counts: &[(&str, &str, usize)]) {
        let _one_at_a_time = self.states_lock.lock().expect("lock");
        for &(copy, state, n) in counts {
            self.copy_databases.record(
                u64::try_from(n).unwrap_or(u64::MAX),
                &[KeyValue::new("copy", copy.to_owned()), KeyValue::new("state", state.to_owned())],
            );
        }
    }

    /// The Prometheus text exposition of every instrument.
    #[must_use]
    pub fn encode(&self) -> String {
        use prometheus::Encoder as _;
        let mut out = Vec::new();
        if let Err(e) = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "could not encode the metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// Content type of [`Metrics::encode`].
    pub const CONTENT_TYPE: &'static str = "text/plain; version=0.0.4; charset=utf-8";

    /// Pushes what is left (OTLP) and stops the readers.
    pub fn shutdown(&self) {
        let _ = self.provider.shutdown();
    }
}

/// A bucket whose streamed uploads run in an `upload` span (object key, bytes stored).
#[derive(Debug)]
pub struct TracedBucket {
    inner: Arc<dyn Bucket>,
}

impl TracedBucket {
    /// `store` with its bucket wrapped.
    #[must_use]
    pub fn wrap(store: &BackupStore) -> BackupStore {
        store.with_bucket(Arc::new(Self { inner: store.bucket().clone() }))
    }
}

#[async_trait]
impl Bucket for TracedBucket {
    async fn put_stream(&self, key: &str, body: ByteReader) -> Result<ObjectInfo, BucketError> {
        let span = tracing::info_span!("upload", object.key = %key, object.size = tracing::field::Empty);
        let result = self.inner.put_stream(key, body).instrument(span.clone()).await;
        if let Ok(info) = &result {
            span.record("object.size", info.size);
        }
        result
    }
    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<PutOutcome, BucketError> {
        self.inner.put_if_absent(key, body).await
    }
    async fn put(&self, key: &str, body: Bytes) -> Result<(), BucketError> {
        self.inner.put(key, body).await
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>, BucketError> {
        self.inner.get(key).await
    }
    async fn get_stream(&self, key: &str) -> Result<Option<ByteStream>, BucketError> {
        self.inner.get_stream(key).await
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, BucketError> {
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BucketError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), BucketError> {
        self.inner.delete(key).await
    }
    fn gs_uri(&self, key: &str) -> Option<String> {
        self.inner.gs_uri(key)
    }
    async fn retain_until(&self, key: &str, until: DateTime<Utc>, locked: bool) -> Result<bool, BucketError> {
        self.inner.retain_until(key, until, locked).await
    }
    async fn retention_available(&self) -> Result<bool, BucketError> {
        self.inner.retention_available().await
    }
    async fn set_hold(&self, key: &str, on: bool) -> Result<bool, BucketError> {
        self.inner.set_hold(key, on).await
    }
    async fn crc32c(&self, key: &str) -> Result<Option<String>, BucketError> {
        self.inner.crc32c(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_get_prometheus_names_with_units_and_suffixes() {
        let m = Metrics::new();
        m.export_attempt(Engine::Postgres, "exported", None, Duration::from_millis(1500));
        m.export_attempt(Engine::Mysql, "failed", Some("dump_failed"), Duration::from_secs(2));
        m.discovery_calls("local", "postgres", "list_databases", Some("unavailable"), 1);
        m.discovery_calls("org", "sqladmin", "instances.list", None, 3);
        m.discovery_calls("org", "sqladmin", "instances.list", Some("403"), 1);
        m.queue_retry();
        m.set_queue_depth(3);
        let text = m.encode();
        for series in [
            "data_backup_exports_total{db_system_name=\"postgresql\",result=\"exported\"} 1",
            "data_backup_exports_total{db_system_name=\"mysql\",error_type=\"dump_failed\",result=\"failed\"} 1",
            "data_backup_export_duration_seconds_bucket{db_system_name=\"postgresql\",result=\"exported\",le=\"5\"} 1",
            "data_backup_discovery_calls_total{api=\"postgres\",method=\"list_databases\",source=\"local\"} 1",
            "data_backup_discovery_errors_total{api=\"postgres\",error_type=\"unavailable\",method=\"list_databases\",source=\"local\"} 1",
            "data_backup_discovery_calls_total{api=\"sqladmin\",method=\"instances.list\",source=\"org\"} 4",
            "data_backup_discovery_errors_total{api=\"sqladmin\",error_type=\"403\",method=\"instances.list\",source=\"org\"} 1",
            "data_backup_queue_retries_total 1",
            "data_backup_queue_depth 3",
        ] {
            assert!(text.contains(series), "{series} missing from:\n{text}");
        }
    }
}
