//! Freshness and coverage: `/status` over a store seeded with every state, the HTML page in
//! headless Chromium, `/runs`, `/metrics` through a Prometheus parser, the run summary, the trace
//! context of a delivery, and `data-backup status`'s exit codes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use data_backup::model::{DatabaseName, DatabaseRef, Engine, InstanceName, ProjectId, RunDate, RunId, SourceName};
use data_backup::store::BackupStore;
use data_backup::store::layout::{Key, path_of};
use data_backup::store::manifest::{DumpFormat, MANIFEST_VERSION, Manifest, ToolVersions};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{FAST_QUEUE, PgDb, TestApp, pg_source, pg_url, unique_name};

const RUN_ID: &str = "010000-seeded";

fn db(name: &str) -> DatabaseRef {
    DatabaseRef {
        source: SourceName::parse("pgsrc").unwrap(),
        project: ProjectId::parse("pgsrc").unwrap(),
        instance: InstanceName::parse("pg").unwrap(),
        database: DatabaseName::parse(name).unwrap(),
        engine: Engine::Postgres,
    }
}

fn days_ago(n: i64) -> NaiveDate {
    Utc::now().date_naive() - chrono::Duration::days(n)
}

/// Commits a backup of `name` for `day`, finished `hours_ago`, through the store (manifest, then `latest/`).
async fn backup(store: &BackupStore, name: &str, day: NaiveDate, hours_ago: i64, bytes: u64) {
    let d = db(name);
    let finished_at = Utc::now() - chrono::Duration::hours(hours_ago);
    let date = RunDate::from_date(day);
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        source: "pgsrc".into(),
        project: "pgsrc".into(),
        instance: "pg".into(),
        database: name.into(),
        engine: Engine::Postgres,
        run_date: date.to_string(),
        run_id: RUN_ID.into(),
        class: store.layout().class(date).as_str().into(),
        key: store.layout().dump(&d, date, DumpFormat::PgCustomZstd, false).path(),
        format: DumpFormat::PgCustomZstd,
        compression: "zstd".into(),
        compression_level: Some(3),
        bytes,
        raw_bytes: None,
        sha256: None,
        object_version: None,
        started_at: finished_at - chrono::Duration::minutes(1),
        finished_at,
        tools: ToolVersions { dump: "pg_dump (PostgreSQL) 15".into(), server: "15".into(), data_backup: "test".into() },
        encryption: None,
        row_counts: None,
        row_counts_exact: None,
        cloud_sql: None,
    };
    store.commit(&d, date, &manifest).await.unwrap();
}

/// A restore drill's record (the fields `verify/` writes that status reads).
async fn verification(store: &BackupStore, name: &str, day: NaiveDate, result: &str, hours_ago: i64) {
    let finished_at = Utc::now() - chrono::Duration::hours(hours_ago);
    let record = json!({
        "version": 1, "project": "pgsrc", "instance": "pg", "database": name, "engine": "postgres",
        "run_date": day.format("%Y-%m-%d").to_string(), "key": "k", "result": result,
        "started_at": finished_at, "finished_at": finished_at, "duration_secs": 1.0, "server": "s",
        "scratch_database": "x", "bytes_checked": 1, "row_counts_compared": false, "tables": [], "checks": [],
        "errors": if result == "ok" { json!([]) } else { json!(["row counts differ"]) },
    });
    let key = Key::Verification { db: path_of(&db(name)), date: RunDate::from_date(day) };
    store.bucket().put(&key.path(), serde_json::to_vec(&record).unwrap().into()).await.unwrap();
}

fn planned(name: &str, excluded_by: Option<&str>) -> Value {
    let mut t = json!({"source": "pgsrc", "project": "pgsrc", "instance": "pg", "database": name, "engine": "postgres",
        "action": if excluded_by.is_some() { "excluded" } else { "export" }});
    if let Some(p) = excluded_by {
        t["excluded_by"] = json!(p);
    }
    t
}

/// A store with one database in each state:
/// fresh_db ok · stale_db stale · failing_db failing · missing_db missing · gone_db gone ·
/// unverified_db unverified · scratch_tmp excluded.
async fn seed_every_state(store: &BackupStore) {
    let today = days_ago(0);
    backup(store, "fresh_db", days_ago(1), 25, 1000).await;
    backup(store, "fresh_db", today, 1, 1100).await;
    verification(store, "fresh_db", days_ago(1), "ok", 20).await;
    backup(store, "stale_db", days_ago(3), 73, 5000).await;
    verification(store, "stale_db", days_ago(3), "ok", 70).await;
    backup(store, "failing_db", days_ago(2), 49, 700).await;
    store
        .mark_reported(
            &db("failing_db"),
            RunDate::from_date(today),
            &json!({"message": "pg_dump failed (exit status 1): permission denied for table t"}),
        )
        .await
        .unwrap();
    backup(store, "gone_db", days_ago(1), 20, 300).await;
    verification(store, "gone_db", days_ago(1), "ok", 19).await;
    backup(store, "unverified_db", today, 2, 4096).await;
    verification(store, "unverified_db", days_ago(1), "failed", 10).await;
    backup(store, "scratch_tmp", days_ago(30), 30 * 24, 10).await;
    let ledger = json!({
        "run_id": RUN_ID, "run_date": today.format("%Y-%m-%d").to_string(),
        "started_at": Utc::now() - chrono::Duration::hours(3),
        "databases": [planned("fresh_db", None), planned("stale_db", None), planned("failing_db", None),
                      planned("missing_db", None), planned("unverified_db", None), planned("scratch_tmp", Some("*/*/scratch_*"))],
        "errors": [], "complete": true,
    });
    let key = Key::RunLedger { date: RunDate::from_date(today), run_id: RunId::parse(RUN_ID).unwrap() };
    store.write_ledger(&key, &ledger).await.unwrap();
}

/// Replaces times and dates (which move with the clock) by placeholders.
fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match k.as_str() {
                    "generated_at" | "last_backup_at" | "started_at" | "verified_at" if !v.is_null() => {
                        *v = json!("[time]");
                    }
                    "run_date" | "last_backup_date" if !v.is_null() => *v = json!("[date]"),
                    _ => redact(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

async fn get(app: &TestApp, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let r = app.client.get(format!("{}{path}", app.address)).send().await.expect("request");
    (r.status().as_u16(), r.headers().clone(), r.text().await.expect("body"))
}

fn state_of(status: &Value, name: &str) -> String {
    status["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["database"] == name)
        .unwrap_or_else(|| panic!("{name} not in {status}"))["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn status_gives_every_seeded_database_its_state() {
    let app = TestApp::spawn(&pg_source("pgsrc", "never_matches_*")).await;
    seed_every_state(&app.state.service.store).await;

    let (code, _, body) = get(&app, "/status").await;

    assert_eq!(code, 200, "{body}");
    let mut status: Value = serde_json::from_str(&body).unwrap();
    for (name, state) in [
        ("fresh_db", "ok"),
        ("stale_db", "stale"),
        ("failing_db", "failing"),
        ("missing_db", "missing"),
        ("gone_db", "gone"),
        ("unverified_db", "unverified"),
        ("scratch_tmp", "excluded"),
    ] {
        assert_eq!(state_of(&status, name), state, "{name}");
    }
    assert_eq!(status["healthy"], false);
    redact(&mut status);
    insta::assert_json_snapshot!("status_every_state", status);
}

#[tokio::test]
async fn status_filters_by_project_instance_and_state() {
    let app = TestApp::spawn(&pg_source("pgsrc", "never_matches_*")).await;
    seed_every_state(&app.state.service.store).await;

    let (_, _, stale) = get(&app, "/status?state=stale").await;
    let (_, _, other) = get(&app, "/status?project=elsewhere").await;
    let (bad, _, _) = get(&app, "/status?state=purple").await;

    let stale: Value = serde_json::from_str(&stale).unwrap();
    let names: Vec<&str> =
        stale["databases"].as_array().unwrap().iter().map(|d| d["database"].as_str().unwrap()).collect();
    assert_eq!(names, ["stale_db"]);
    assert_eq!(stale["counts"]["ok"], 1, "counts stay over all databases");
    let other: Value = serde_json::from_str(&other).unwrap();
    assert_eq!(other["databases"], json!([]));
    assert_eq!(bad, 400);
}

#[tokio::test]
async fn runs_list_what_each_run_expected_exported_failed_and_excluded() {
    let app = TestApp::spawn(&pg_source("pgsrc", "never_matches_*")).await;
    seed_every_state(&app.state.service.store).await;

    let (code, _, runs) = get(&app, "/runs").await;
    let (one_code, _, one) = get(&app, &format!("/runs/{RUN_ID}")).await;
    let (missing_code, headers, missing) = get(&app, "/runs/235959-nosuchrun").await;

    assert_eq!(code, 200, "{runs}");
    let runs: Value = serde_json::from_str(&runs).unwrap();
    let run = &runs["runs"][0];
    assert_eq!(run["run_id"], RUN_ID);
    let counts: Vec<u64> = ["discovered", "excluded", "expected", "exported", "failed", "not_backed_up"]
        .iter()
        .map(|k| run[*k].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [6, 1, 5, 2, 1, 2], "{run}");
    assert!(run.get("databases").is_none());
    assert_eq!(one_code, 200, "{one}");
    let one: Value = serde_json::from_str(&one).unwrap();
    let outcome = |name: &str| {
        one["databases"].as_array().unwrap().iter().find(|d| d["database"] == name).unwrap()["outcome"].clone()
    };
    assert_eq!(outcome("fresh_db"), "exported");
    assert_eq!(outcome("failing_db"), "failed");
    assert_eq!(outcome("missing_db"), "not_backed_up");
    assert_eq!(outcome("scratch_tmp"), "excluded");
    assert_eq!(missing_code, 404, "{missing}");
    assert_eq!(headers["content-type"], "application/problem+json");
}

pub fn chromium() -> PathBuf {
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(candidate).is_file() {
            return PathBuf::from(candidate);
        }
    }
    panic!("chromium is not installed: run the tests through scripts/test.sh (it installs Debian's chromium)")
}

/// Runs headless Chromium on `url` with `mode` (`--dump-dom` or `--screenshot=FILE`); answers stdout.
pub async fn headless(url: &str, mode: &str) -> String {
    headless_with(url, &[mode]).await
}

/// [`headless`] with more flags (`--force-dark-mode`: the page in its dark colour scheme).
pub async fn headless_with(url: &str, flags: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--force-color-profile=srgb",
                "--window-size=1200,800",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(flags)
            .arg(url)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium finishes")
    .expect("chromium runs");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Pixels of `png` within 3 of `rgb` on every channel.
pub fn pixels_of(png: &Path, rgb: [u8; 3]) -> usize {
    let decoder = png::Decoder::new(std::fs::File::open(png).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    buf[..info.buffer_size()]
        .chunks(channels)
        .filter(|px| px[..3].iter().zip(rgb).all(|(a, b)| a.abs_diff(b) <= 3))
        .count()
}

/// The background of a stale, failing or missing row (`tr.state-stale` in the page's CSS: #fecaca).
const ALARM_RED: [u8; 3] = [0xfe, 0xca, 0xca];

#[tokio::test]
async fn status_page_renders_in_chromium_with_the_stale_row_red() {
    let app = TestApp::spawn(&pg_source("pgsrc", "never_matches_*")).await;
    seed_every_state(&app.state.service.store).await;
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let (full, stale, ok) = (
        artifacts.join("status-page.png"),
        artifacts.join("status-page-stale.png"),
        artifacts.join("status-page-ok.png"),
    );
    for f in [&full, &stale, &ok] {
        let _ = std::fs::remove_file(f);
    }

    let dom = headless(&format!("{}/?state=stale", app.address), "--dump-dom").await;
    headless(&format!("{}/", app.address), &format!("--screenshot={}", full.display())).await;
    headless(&format!("{}/?state=stale", app.address), &format!("--screenshot={}", stale.display())).await;
    headless(&format!("{}/?state=ok", app.address), &format!("--screenshot={}", ok.display())).await;

    assert!(
        dom.contains(r#"<tr class="state-stale" data-state="stale" data-database="pgsrc/pg/stale_db">"#),
        "the stale row is marked stale: {dom}"
    );
    assert!(dom.contains("Newest run") && dom.contains(RUN_ID), "the newest run's summary is on top");
    assert!(!dom.contains("fresh_db"), "the state filter applies");
    assert!(dom.contains("tr.state-stale { background: #fecaca; }"), "stale rows are red");
    assert!(full.is_file(), "a screenshot is kept in target/test-artifacts");
    assert!(pixels_of(&full, ALARM_RED) > 5000, "the full page shows red rows");
    assert!(pixels_of(&stale, ALARM_RED) > 5000, "the stale row is red on screen");
    assert_eq!(pixels_of(&ok, ALARM_RED), 0, "and the red comes from that row: an ok-only page has none");
}

#[tokio::test]
async fn metrics_endpoint_serves_every_documented_series_in_prometheus_text_format() {
    let prefix = unique_name("met");
    let pg = PgDb::create(&format!("{prefix}_a"));
    pg.sql("CREATE TABLE t AS SELECT generate_series(1, 100) g");
    let app = TestApp::spawn(&format!(
        "{}[[sources]]\nname = \"down\"\nkind = \"postgres\"\nurl = \"postgres://postgres@127.0.0.1:1/\"\n{FAST_QUEUE}",
        pg_source("pgsrc", &format!("{prefix}*"))
    ))
    .await;
    let (status, _, summary) = app.post("/schedule", &json!(null)).await;
    assert_eq!(status, 200, "{summary}");
    app.wait_idle().await;

    let (code, headers, text) = get(&app, "/metrics").await;

    assert_eq!(code, 200);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text format");
    let series = |name: &str| scrape.samples.iter().filter(|s| s.metric == name).collect::<Vec<_>>();
    let value = |s: &prometheus_parse::Sample| match &s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => *v,
        other => panic!("{} is not a single value: {other:?}", s.metric),
    };
    // Every series README.md documents.
    let exported = series("data_backup_exports_total");
    assert!(
        exported.iter().any(|s| s.labels.get("result") == Some("exported")
            && s.labels.get("db_system_name") == Some("postgresql")
            && value(s) >= 1.0),
        "{text}"
    );
    for histogram in ["data_backup_export_duration_seconds", "data_backup_export_size_bytes"] {
        let h = series(histogram);
        assert!(
            h.iter().any(|s| matches!(&s.value, prometheus_parse::Value::Histogram(b) if !b.is_empty())),
            "{histogram} is a histogram: {text}"
        );
    }
    let last = series("data_backup_last_success_timestamp_seconds");
    let mine = last.iter().find(|s| s.labels.get("db_namespace") == Some(pg.name.as_str())).expect("last success");
    assert!((value(mine) - Utc::now().timestamp() as f64).abs() < 3600.0);
    assert_eq!(mine.labels.get("cloudsql_instance"), Some("pg"), "the instance label is cloudsql_instance");
    assert!(
        scrape.samples.iter().all(|s| s.labels.get("instance").is_none()),
        "no series carries a label named `instance` (Prometheus' own target label): {text}"
    );
    for gauge in ["data_backup_last_backup_size_bytes", "data_backup_last_backup_duration_seconds"] {
        let g = series(gauge);
        let mine = g.iter().find(|s| s.labels.get("db_namespace") == Some(pg.name.as_str()));
        assert!(mine.is_some_and(|s| value(s) > 0.0), "{gauge} of {}: {text}", pg.name);
    }
    let build = series("data_backup_build_info");
    assert!(
        build.iter().any(|s| value(s) == 1.0 && s.labels.get("version") == Some(env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    let states = series("data_backup_databases");
    for state in ["ok", "stale", "failing", "missing", "suspect", "gone", "unverified", "unverifiable", "excluded"] {
        assert!(states.iter().any(|s| s.labels.get("state") == Some(state)), "state {state}: {text}");
    }
    let calls = series("data_backup_discovery_calls_total");
    assert!(calls.iter().any(|s| s.labels.get("source") == Some("pgsrc") && s.labels.get("api") == Some("postgres")));
    let errors = series("data_backup_discovery_errors_total");
    assert!(errors.iter().any(|s| s.labels.get("source") == Some("down")), "{text}");
    assert_eq!(series("data_backup_queue_depth").iter().map(|s| value(s)).collect::<Vec<_>>(), [0.0]);
    assert_eq!(series("data_backup_queue_retries_total").len(), 1);
}

#[tokio::test]
async fn a_finished_run_sends_one_summary_through_the_notifiers() {
    let prefix = unique_name("sum");
    let _pg = PgDb::create(&format!("{prefix}_a"));
    let hook = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&hook).await;
    let app = TestApp::spawn(&format!(
        "{}[notify]\nwebhook_url = \"{}/hook\"\n{FAST_QUEUE}",
        pg_source("pgsrc", &format!("{prefix}*")),
        hook.uri()
    ))
    .await;

    let (status, _, summary) = app.post("/schedule", &json!(null)).await;
    app.wait_idle().await;
    app.state.flush_run_reports().await;

    assert_eq!(status, 200, "{summary}");
    let bodies: Vec<Value> =
        hook.received_requests().await.unwrap().iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect();
    let summaries: Vec<&Value> = bodies.iter().filter(|b| b["kind"] == "run_summary").collect();
    assert_eq!(summaries.len(), 1, "{bodies:?}");
    let s = summaries[0];
    assert_eq!(s["run_id"], summary["run_id"]);
    assert_eq!((s["expected"].as_u64(), s["exported"].as_u64(), s["failed"].as_u64()), (Some(1), Some(1), Some(0)));
    assert_eq!(s["databases_not_backed_up"], json!([]));
    assert!(s["text"].as_str().unwrap().contains("1 of 1 databases backed up"), "{s}");
}

/// A free port on 127.0.0.1 (bound, then released for the child process).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs `data-backup serve` as its own process with OTLP pointed at a fake collector: the
/// production subscriber, propagator and exporter, isolated from the other tests' spans.
#[tokio::test]
async fn a_traceparent_on_export_reaches_the_export_and_upload_spans_exported_over_otlp() {
    use prost::Message as _;
    let collector = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&collector).await;
    let pg = PgDb::create("trace");
    pg.sql("CREATE TABLE t AS SELECT 1 AS x");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    let port = free_port();
    std::fs::write(
        &cfg,
        format!(
            "bind = \"127.0.0.1:{port}\"\n[store]\nurl = \"file://{}\"\n{}[schedule]\ndaily_at = \"\"\n",
            dir.path().join("store").display(),
            pg_source("pgsrc", "trace*")
        ),
    )
    .unwrap();
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_data-backup"))
        .arg("--config")
        .arg(&cfg)
        .arg("serve")
        .env_remove("DATA_BACKUP_CONFIG")
        .env("RUST_LOG", "info")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", collector.uri())
        .kill_on_drop(true)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..200 {
        if client.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status() == 200) {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "serve did not come up");
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";

    let r = client
        .post(format!("{base}/export"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&json!({"project": "pgsrc", "instance": "pg", "database": pg.name}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    // SIGTERM: the service shuts down gracefully and flushes its spans on the way out.
    let pid = server.id().unwrap().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let exited = tokio::time::timeout(Duration::from_secs(60), server.wait()).await.expect("serve exits").unwrap();

    assert_eq!(status, 200, "{body}");
    assert!(exited.success(), "{exited:?}");
    let mut spans = Vec::new();
    for request in collector.received_requests().await.unwrap().iter().filter(|r| r.url.path() == "/v1/traces") {
        let export = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
            request.body.as_slice(),
        )
        .expect("OTLP protobuf");
        for resource in export.resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans.into_iter().map(|s| (s.name, hex::encode(s.trace_id))));
            }
        }
    }
    for name in ["request", "export", "upload"] {
        assert!(spans.iter().any(|(n, t)| n == name && t == trace_id), "{name} not in the caller's trace: {spans:?}");
    }
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_data-backup"));
    c.env_remove("DATA_BACKUP_CONFIG").env("RUST_LOG", "warn").env("NO_COLOR", "1");
    c
}

#[tokio::test]
async fn status_command_prints_the_table_and_exits_non_zero_when_anything_is_stale() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[store]\nurl = \"file://{}\"\n[[sources]]\nname = \"pgsrc\"\nkind = \"postgres\"\nurl = \"{}\"\ninstance = \"pg\"\n[schedule]\ndaily_at = \"\"\n",
            store_dir.display(),
            pg_url()
        ),
    )
    .unwrap();
    let settings = data_backup::settings::Settings::load(Some(&cfg)).unwrap();
    let store = BackupStore::open(&settings).await.unwrap();
    backup(&store, "fresh_db", days_ago(0), 1, 1000).await;
    verification(&store, "fresh_db", days_ago(0), "ok", 1).await;
    let status = || bin().arg("--config").arg(&cfg).arg("status").output().unwrap();

    let healthy = status();
    backup(&store, "stale_db", days_ago(3), 80, 1000).await;
    let unhealthy = status();
    let json = bin().arg("--config").arg(&cfg).args(["status", "--json", "--state", "stale"]).output().unwrap();
    let only_fresh = bin().arg("--config").arg(&cfg).args(["status", "--state", "ok"]).output().unwrap();
    let bad = bin().arg("--config").arg(&cfg).args(["status", "--state", "purple"]).output().unwrap();

    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(healthy.status.code(), Some(0), "{}{}", text(&healthy), String::from_utf8_lossy(&healthy.stderr));
    assert!(text(&healthy).contains("pgsrc/pg/fresh_db") && text(&healthy).contains("ok"), "{}", text(&healthy));
    assert!(!text(&healthy).contains('\x1b'), "no colour off a terminal");
    assert_eq!(unhealthy.status.code(), Some(2), "{}", text(&unhealthy));
    let stale_line = text(&unhealthy).lines().find(|l| l.contains("stale_db")).unwrap().to_owned();
    assert!(stale_line.starts_with("stale"), "{stale_line}");
    assert_eq!(json.status.code(), Some(2));
    let json: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["databases"][0]["database"], "stale_db");
    assert_eq!(only_fresh.status.code(), Some(0), "a filter narrows what the exit status judges");
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown state"));
}
