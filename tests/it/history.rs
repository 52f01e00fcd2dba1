//! Each database's history and the pages drawn from it: an export and a drill through the service
//! record their night, concurrent writers lose no night, a lost history is rebuilt from the
//! manifests, headless Chromium renders the overview, a database's and a run's page from a month of
//! seeded nights (a failure, a gap, a size jump, a drill), the overview of 1,000 databases × 30
//! nights costs a counted number of store reads, and `data-backup status` prints the strips.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use data_backup::metrics::Metrics;
use data_backup::model::{
    DatabaseName, DatabasePath, DatabaseRef, Engine, InstanceName, ProjectId, RunDate, RunId, SourceName,
};
use data_backup::settings::StatusSettings;
use data_backup::status::StatusFilter;
use data_backup::status::page::{Histories, SortBy, render_overview};
use data_backup::status::service::StatusService;
use data_backup::store::BackupStore;
use data_backup::store::bucket::{Bucket, BucketError, ByteReader, ByteStream, ObjectInfo, PutOutcome};
use data_backup::store::history::{self, History};
use data_backup::store::layout::{Key, path_of};
use data_backup::store::manifest::{DumpFormat, MANIFEST_VERSION, Manifest, ToolVersions};
use serde_json::json;

use crate::restore::export;
use crate::status::{headless, headless_with, pixels_of};
use crate::support::{PgDb, TestApp, mysql_url, pg_source, pg_url};

const RUN_ID: &str = "010000-month";

/// The page's background in the dark colour scheme (`--bg` under `prefers-color-scheme: dark`).
const DARK_BACKGROUND: [u8; 3] = [0x0b, 0x12, 0x20];

/// The colour of a failed night's cell (`.cell-failed` in the pages' CSS: #e11d48).
const FAILED_CELL: [u8; 3] = [0xe1, 0x1d, 0x48];

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

/// Commits the backup of `name` for `day` as an export does: the manifest (and `latest/`), then
/// the night in its history. It finished `n` days and an hour ago and took `secs`.
async fn night(store: &BackupStore, name: &str, day: NaiveDate, bytes: u64, secs: i64, rows: u64) -> Manifest {
    let d = db(name);
    let date = RunDate::from_date(day);
    let back = (Utc::now().date_naive() - day).num_days();
    let finished_at: DateTime<Utc> = Utc::now() - chrono::Duration::days(back) - chrono::Duration::hours(1);
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        source: "pgsrc".into(),
        project: d.project.to_string(),
        instance: d.instance.to_string(),
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
        started_at: finished_at - chrono::Duration::seconds(secs),
        finished_at,
        tools: ToolVersions { dump: "pg_dump (PostgreSQL) 15".into(), server: "15".into(), data_backup: "test".into() },
        encryption: None,
        row_counts: Some(BTreeMap::from([("public.t".to_owned(), rows)])),
        row_counts_exact: Some(true),
        cloud_sql: None,
    };
    store.commit(&d, date, &manifest).await.unwrap();
    history::record_backup(store, &path_of(&d), date, &manifest).await;
    manifest
}

/// A successful drill of `name`'s backup of `day`, recorded as `verify.rs` records it.
async fn drill(store: &BackupStore, name: &str, day: NaiveDate) {
    let finished_at = Utc::now() - chrono::Duration::hours(20);
    let record = json!({
        "version": 1, "project": "pgsrc", "instance": "pg", "database": name, "engine": "postgres",
        "run_date": day.format("%Y-%m-%d").to_string(), "key": "k", "result": "ok",
        "started_at": finished_at, "finished_at": finished_at, "duration_secs": 9.0, "server": "s",
        "scratch_database": "x", "bytes_checked": 1, "row_counts_compared": true, "tables": [], "checks": [],
        "errors": [], "restore_secs": 7.5, "bytes_per_sec": 1048576.0,
    });
    let key = Key::Verification { db: path_of(&db(name)), date: RunDate::from_date(day) };
    store.bucket().put(&key.path(), serde_json::to_vec(&record).unwrap().into()).await.unwrap();
    history::record_verification(store, &path_of(&db(name)), RunDate::from_date(day), &record).await;
}

fn planned(name: &str, excluded_by: Option<&str>) -> serde_json::Value {
    let mut t = json!({"source": "pgsrc", "project": "pgsrc", "instance": "pg", "database": name, "engine": "postgres",
        "action": if excluded_by.is_some() { "excluded" } else { "export" }});
    if let Some(p) = excluded_by {
        t["excluded_by"] = json!(p);
    }
    t
}

/// Thirty nights of two databases and tonight's run:
/// - `steady`: every night, ~1 MB, a minute each; a successful drill of yesterday's backup;
/// - `flaky`: a gap 10 nights ago, a reported failure 5 nights ago, and tonight 10× the size
///   (and 5 minutes) of the night before;
/// - tonight's run also expected `newdb` (never backed up: skipped) and excluded `tmp_scratch`.
async fn seed_month(store: &BackupStore) {
    for n in (0..30).rev() {
        night(store, "steady", days_ago(n), 1_000_000 + 1000 * (29 - n).unsigned_abs(), 60, 1000).await;
        match n {
            10 => {}
            5 => {
                let d = path_of(&db("flaky"));
                history::record_failure(store, &d, RunDate::from_date(days_ago(5)), "dump_failed", "pg_dump exited 1")
                    .await;
            }
            0 => {
                night(store, "flaky", days_ago(0), 10_000_000, 300, 5000).await;
            }
            _ => {
                night(store, "flaky", days_ago(n), 1_000_000, 30, 4000).await;
            }
        }
    }
    drill(store, "steady", days_ago(1)).await;
    let today = days_ago(0);
    let ledger = json!({
        "run_id": RUN_ID, "run_date": today.format("%Y-%m-%d").to_string(),
        "started_at": Utc::now() - chrono::Duration::hours(2),
        "databases": [planned("steady", None), planned("flaky", None), planned("newdb", None),
                      planned("tmp_scratch", Some("*/*/tmp_*"))],
        "errors": [], "complete": true,
    });
    let key = Key::RunLedger { date: RunDate::from_date(today), run_id: RunId::parse(RUN_ID).unwrap() };
    store.write_ledger(&key, &ledger).await.unwrap();
}

#[tokio::test]
async fn an_export_and_a_drill_through_the_service_record_their_nights() {
    let src = PgDb::create("hist_e2e");
    src.sql("CREATE TABLE a (n int); INSERT INTO a SELECT generate_series(1, 321);");
    let verify = format!("[verify]\nurl = \"{}\"\nmysql_url = \"{}\"\n", pg_url(), mysql_url());
    let app = TestApp::spawn(&format!("{}\n{verify}", pg_source("pgsrc", &src.name))).await;
    let store = app.state.service.store.clone();

    let first = export(&app, "pgsrc", "pg", &src.name, "2026-11-19").await;
    let second = export(&app, "pgsrc", "pg", &src.name, "2026-11-20").await;
    let (code, _, record) =
        app.post("/verify", &json!({"project": "pgsrc", "instance": "pg", "database": src.name})).await;

    assert_eq!(code, 200, "{record}");
    let path: DatabasePath = format!("pgsrc/pg/{}", src.name).parse().unwrap();
    let h = history::history(&store, &path).await.unwrap().expect("the exports wrote a history");
    let nights: Vec<String> = h.nights.keys().map(ToString::to_string).collect();
    assert_eq!(nights, ["2026-11-19", "2026-11-20"]);
    let newest = &h.nights[&NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()];
    let backup = newest.backup.as_ref().unwrap();
    assert_eq!(backup.bytes, second["bytes"].as_u64().unwrap());
    assert_eq!(backup.rows, Some(321), "the night keeps the manifest's row counts");
    assert_eq!(newest.verification.as_ref().map(|v| v.result.as_str()), Some("ok"), "the drill is recorded");
    assert!(h.nights[&NaiveDate::from_ymd_opt(2026, 11, 19).unwrap()].verification.is_none());
    assert!(first["bytes"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn concurrent_writers_lose_no_night_and_old_generations_go() {
    let app = TestApp::spawn("").await;
    let store = app.state.service.store.clone();
    let d = path_of(&db("busy"));

    let writers = (0..20).map(|n| {
        let (store, d) = (store.clone(), d.clone());
        tokio::spawn(async move {
            let date = RunDate::from_date(days_ago(n));
            history::record_failure(&store, &d, date, "dump_failed", &format!("night {n}")).await;
        })
    });
    futures::future::join_all(writers).await;

    let h = history::history(&store, &d).await.unwrap().unwrap();
    assert_eq!(h.nights.len(), 20, "every writer's night is there");
    let generations = app.store_files().iter().filter(|f| f.starts_with("history/")).count();
    assert!(generations <= 3, "older generations are deleted: {generations} left");
}

#[tokio::test]
async fn a_database_page_rebuilds_a_missing_history_from_the_manifests() {
    let app = TestApp::spawn("").await;
    let store = app.state.service.store.clone();
    night(&store, "lost", days_ago(2), 2048, 10, 7).await;
    night(&store, "lost", days_ago(1), 4096, 10, 9).await;
    for f in app.store_files().iter().filter(|f| f.starts_with("history/")) {
        store.bucket().delete(f).await.unwrap();
    }

    let page = app
        .client
        .get(format!("{}/database?project=pgsrc&instance=pg&database=lost", app.address))
        .send()
        .await
        .unwrap();

    assert_eq!(page.status(), 200);
    let text = page.text().await.unwrap();
    assert!(text.contains("9 (+2)"), "row-count change from the rebuilt history: {text}");
    let h = history::history(&store, &path_of(&db("lost"))).await.unwrap().expect("rebuilt and stored");
    assert_eq!(h.nights.len(), 2);
    let none = app.client.get(format!("{}/database?project=p&instance=i&database=nothing", app.address)).send().await;
    assert_eq!(none.unwrap().status(), 404);
}

#[tokio::test]
async fn json_stays_the_default_and_browsers_get_the_pages() {
    let app = TestApp::spawn("").await;
    seed_month(&app.state.service.store).await;
    let get = |path: &str, accept: Option<&str>| {
        let mut r = app.client.get(format!("{}{path}", app.address));
        if let Some(a) = accept {
            r = r.header("accept", a);
        }
        async move {
            let r = r.send().await.unwrap();
            let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
            (r.status().as_u16(), ct, r.text().await.unwrap())
        }
    };
    let run = format!("/runs/{RUN_ID}?date={}", days_ago(0));

    let api = get("/status", None).await;
    let browser = get("/status", Some("text/html,application/xhtml+xml,*/*;q=0.8")).await;
    let asked = get("/status?format=html&sort=name", None).await;
    let run_api = get(&run, None).await;
    let run_page = get(&format!("{run}&format=html"), None).await;

    assert!(api.1.starts_with("application/json"), "{api:?}");
    assert!(browser.1.starts_with("text/html") && browser.2.contains("data-database=\"pgsrc/pg/flaky\""));
    assert!(asked.2.find("pgsrc/pg/flaky").unwrap() < asked.2.find("pgsrc/pg/steady").unwrap(), "sorted by name");
    assert!(run_api.1.starts_with("application/json"), "{run_api:?}");
    assert!(run_page.1.starts_with("text/html") && run_page.2.contains("Slowest exports"), "{run_page:?}");
}

#[tokio::test]
async fn pages_render_in_chromium_from_a_month_of_nights() {
    let app = TestApp::spawn("").await;
    seed_month(&app.state.service.store).await;
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = |name: &str| artifacts.join(format!("history-{name}.png"));
    for name in ["overview", "overview-ok", "overview-dark", "flaky", "steady", "run"] {
        let _ = std::fs::remove_file(shot(name));
    }
    let today = days_ago(0).to_string();
    let flaky = format!("{}/database?project=pgsrc&instance=pg&database=flaky", app.address);
    let steady = format!("{}/database?project=pgsrc&instance=pg&database=steady", app.address);
    let run = format!("{}/runs/{RUN_ID}?date={today}&format=html", app.address);

    let overview_dom = headless(&format!("{}/", app.address), "--dump-dom").await;
    let flaky_dom = headless(&flaky, "--dump-dom").await;
    let run_dom = headless(&run, "--dump-dom").await;
    for (url, name) in [
        (format!("{}/", app.address), "overview"),
        (format!("{}/?state=ok", app.address), "overview-ok"),
        (flaky.clone(), "flaky"),
        (steady, "steady"),
        (run, "run"),
    ] {
        headless(&url, &format!("--screenshot={}", shot(name).display())).await;
    }

    let dark = shot("overview-dark");
    headless_with(&format!("{}/", app.address), &["--force-dark-mode", &format!("--screenshot={}", dark.display())])
        .await;

    // The overview: the failed night of `flaky` is a red cell, the gap an amber one, tonight's
    // size jump is in its size column, the tiles add up.
    let flaky_row =
        overview_dom.split("data-database=\"pgsrc/pg/flaky\"").nth(1).unwrap().split("</tr>").next().unwrap();
    let failed_title = format!("title=\"{}: failed (dump_failed): pg_dump exited 1\"", days_ago(5));
    assert!(flaky_row.contains(&format!("cell cell-failed\" {failed_title}")), "{flaky_row}");
    assert!(flaky_row.contains(&format!("cell cell-missing\" title=\"{}: no backup", days_ago(10))), "{flaky_row}");
    assert_eq!(flaky_row.matches("cell cell-").count(), 30, "thirty nights");
    assert!(flaky_row.contains("9.5 MiB (+900.0%)"), "the size jump: {flaky_row}");
    assert!(flaky_row.contains("<polyline points="), "a sparkline");
    assert!(flaky_row.contains("5 min 00 s"), "tonight's export time");
    let tile = |id: &str| {
        let t = overview_dom.split(&format!("data-tile=\"{id}\"")).nth(1).unwrap();
        t.split("class=\"value\">").nth(1).unwrap().split('<').next().unwrap().to_owned()
    };
    assert_eq!(tile("databases"), "3", "steady, flaky and newdb (tmp_scratch is excluded)");
    assert_eq!(tile("protected"), "2");
    assert_eq!(tile("proven"), "1");
    assert_eq!(tile("bytes"), "10.5 MiB", "1,029,000 + 10,000,000 bytes");
    assert!(overview_dom.contains("http-equiv=\"refresh\""), "it refreshes itself");
    assert!(!overview_dom.contains("<script"), "no JavaScript");

    // The database page: every backup with its restore command, the failure, the row changes.
    assert!(flaky_dom.contains(&format!("data-backup restore --database pgsrc/pg/flaky --date {today}")));
    assert!(flaky_dom.contains("pg_dump exited 1 (dump_failed)"), "its failures are listed");
    assert!(flaky_dom.contains("5000 (+1000)"), "row-count change against the night before");
    assert_eq!(flaky_dom.matches("data-date=").count(), 28, "28 backups: 30 nights less a gap and a failure");

    // The run page: what it expected, skipped (with the reason), excluded (with the pattern) and
    // the slowest exports, slowest first.
    assert!(run_dom.contains("Skipped (1)") && run_dom.contains("pgsrc/pg/newdb"), "{run_dom}");
    assert!(run_dom.contains("Excluded (1)") && run_dom.contains("*/*/tmp_*"));
    let slowest = run_dom.split("Slowest exports").nth(1).unwrap();
    assert!(slowest.find("pgsrc/pg/flaky").unwrap() < slowest.find("pgsrc/pg/steady").unwrap());

    // On screen: the failed cell's red is there, and it comes from that cell.
    let (overview, overview_ok) =
        (pixels_of(&shot("overview"), FAILED_CELL), pixels_of(&shot("overview-ok"), FAILED_CELL));
    assert!(overview >= overview_ok + 150, "the failed night is red on the overview: {overview} vs {overview_ok}");
    assert!(pixels_of(&shot("flaky"), FAILED_CELL) >= 150, "and on flaky's page");
    assert_eq!(pixels_of(&shot("steady"), FAILED_CELL), 0, "a database that never failed shows no red cell");
    assert!(shot("run").is_file());
    // The dark colour scheme follows the browser's: its background, and the failed cell still red.
    assert!(pixels_of(&dark, DARK_BACKGROUND) > 100_000, "a dark page in a dark browser");
    assert_eq!(pixels_of(&shot("overview"), DARK_BACKGROUND), 0, "a light one otherwise");
    assert!(pixels_of(&dark, FAILED_CELL) >= overview_ok + 150);
}

/// A bucket that counts the reads (`get`, `get_stream`, `head`) and listings made through it.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn Bucket>,
    reads: AtomicUsize,
    lists: AtomicUsize,
}

#[async_trait]
impl Bucket for Counting {
    async fn put_stream(&self, key: &str, body: ByteReader) -> Result<ObjectInfo, BucketError> {
        self.inner.put_stream(key, body).await
    }
    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<PutOutcome, BucketError> {
        self.inner.put_if_absent(key, body).await
    }
    async fn put(&self, key: &str, body: Bytes) -> Result<(), BucketError> {
        self.inner.put(key, body).await
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>, BucketError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.get(key).await
    }
    async fn get_stream(&self, key: &str) -> Result<Option<ByteStream>, BucketError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.get_stream(key).await
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, BucketError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BucketError> {
        self.lists.fetch_add(1, Ordering::Relaxed);
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), BucketError> {
        self.inner.delete(key).await
    }
}

/// Databases and nights of the counted overview.
const MANY: usize = 1000;
const NIGHTS: i64 = 30;

#[tokio::test]
async fn the_overview_of_1000_databases_over_30_nights_costs_three_reads_per_database() {
    let app = TestApp::spawn("").await;
    let store = app.state.service.store.clone();
    let names: Vec<String> = (0..MANY).map(|n| format!("db{n:04}")).collect();
    // Seeded as the exports leave it: each database's newest backup, and a history of 30 nights.
    futures::future::join_all(names.iter().map(|name| {
        let store = store.clone();
        async move {
            night(&store, name, days_ago(0), 1000, 10, 1).await;
            let first = night_backup_of(name);
            history::update(&store, &path_of(&db(name)), |h: &mut History| {
                for n in 1..NIGHTS {
                    h.nights.entry(days_ago(n)).or_default().backup = Some(first.clone());
                }
            })
            .await
            .unwrap();
        }
    }))
    .await;
    let counting = Arc::new(Counting { inner: store.bucket().clone(), reads: 0.into(), lists: 0.into() });
    let service =
        StatusService::new(store.with_bucket(counting.clone()), StatusSettings::default(), Arc::new(Metrics::new()));

    let (report, histories): (_, Arc<Histories>) = service.overview().await.unwrap();
    let html = render_overview(&report, &histories, &StatusFilter::default(), SortBy::State);

    assert_eq!(report.databases.len(), MANY);
    assert_eq!(histories.len(), MANY);
    assert_eq!(html.matches("<tr class=\"state-").count(), MANY);
    assert_eq!(html.matches("cell cell-backed-up\" title=").count(), MANY * 30, "30 nights of each database");
    let (reads, lists) = (counting.reads.load(Ordering::Relaxed), counting.lists.load(Ordering::Relaxed));
    // Per database: its `latest/` copy, the manifest of the day before (the size trend) and its
    // history; never one read per night.
    assert!(reads <= 3 * MANY + 10, "{reads} reads for {MANY} databases");
    assert!(lists <= 40, "{lists} listings (prefixes, not per database)");
}

fn night_backup_of(name: &str) -> history::NightBackup {
    let at = Utc::now() - chrono::Duration::days(2);
    history::NightBackup {
        run_id: format!("010000-{name}"),
        class: "daily".into(),
        bytes: 900,
        started_at: at,
        finished_at: at + chrono::Duration::seconds(9),
        encrypted: false,
        tables: Some(1),
        rows: Some(1),
    }
}

#[tokio::test]
async fn status_command_prints_the_totals_and_each_databases_strip() {
    let app = TestApp::spawn("").await;
    seed_month(&app.state.service.store).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cli.toml");
    std::fs::write(
        &cfg,
        format!("[store]\nurl = \"file://{}\"\n[schedule]\ndaily_at = \"\"\n", app.store_dir.path().display()),
    )
    .unwrap();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_data-backup"))
        .env_remove("DATA_BACKUP_CONFIG")
        .env("NO_COLOR", "1")
        .args(["--config", cfg.to_str().unwrap(), "status"])
        .output()
        .unwrap();

    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2 backed up, 1 proven, 10.5 MiB stored"), "{text}");
    let flaky = text.lines().find(|l| l.contains("pgsrc/pg/flaky")).unwrap();
    let strip: String = flaky.chars().filter(|c| "█▓✗·░".contains(*c)).collect();
    assert!(strip.ends_with("▓·▓▓▓▓✗▓▓▓▓▓"), "the gap 10 nights ago, the failure 5 nights ago: {flaky}");
    let steady = text.lines().find(|l| l.contains("pgsrc/pg/steady")).unwrap();
    assert!(steady.contains("▓█▓"), "yesterday's proven night: {steady}");
}
