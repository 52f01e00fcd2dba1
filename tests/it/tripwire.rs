//! The data-loss tripwire end to end through `/export` with a real PostgreSQL database: a table
//! that lost 90% of its rows marks the database `suspect`, is reported once, and holds the backup
//! before the drop through a prune a year later until `data-backup hold release`; growth and a 5%
//! shrink stay quiet.

use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{PgDb, TestApp, cli, cli_output, pg_source, unique_name};

async fn hook() -> MockServer {
    let hook = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&hook).await;
    hook
}

async fn reports(hook: &MockServer) -> Vec<Value> {
    hook.received_requests().await.unwrap().iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect()
}

fn settings(db: &str, hook: &MockServer) -> String {
    format!(
        "{}[status]\ncache_secs = 0\nverify_within_days = 0\n[notify]\nwebhook_url = \"{}/hook\"\nwebhook_attempts = 1\n",
        pg_source("pgsrc", db),
        hook.uri()
    )
}

async fn export(app: &TestApp, db: &str, date: &str) -> Value {
    let (status, _, body) =
        app.post("/export", &json!({"project": "pgsrc", "instance": "pg", "database": db, "run_date": date})).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn row(app: &TestApp, db: &str) -> (Value, Value) {
    let status: Value = app.client.get(format!("{}/status", app.address)).send().await.unwrap().json().await.unwrap();
    let row = status["databases"].as_array().unwrap().iter().find(|r| r["database"] == db).cloned().unwrap();
    (row, status["counts"].clone())
}

async fn prune_as_of(app: &TestApp, as_of: &str) -> Value {
    let (status, _, plan) = app.post(&format!("/prune?apply=true&as_of={as_of}"), &json!({})).await;
    assert_eq!(status, 200, "{plan}");
    plan
}

fn dates(entries: &Value) -> Vec<&str> {
    entries.as_array().unwrap().iter().filter_map(|e| e["run_date"].as_str()).collect()
}

#[tokio::test]
async fn a_table_that_lost_most_rows_makes_the_backup_suspect_reports_once_and_holds_the_one_before() {
    let src = PgDb::create(&unique_name("trip"));
    src.sql("CREATE TABLE orders AS SELECT generate_series(1, 10000) g; CREATE TABLE tiny AS SELECT 1 g");
    let hook = hook().await;
    let app = TestApp::spawn(&settings(&src.name, &hook)).await;

    // Two days' backups (Tuesday, Wednesday: daily class); 90% of `orders` deleted in between, and
    // the tiny table (under min_rows) dropped, which trips nothing by itself.
    assert_eq!(export(&app, &src.name, "2025-01-14").await["status"], "exported");
    src.sql("DELETE FROM orders WHERE g > 1000; DROP TABLE tiny");
    assert_eq!(export(&app, &src.name, "2025-01-15").await["status"], "exported");
    // A retry of the same day and the next day's backup report nothing more.
    assert_eq!(export(&app, &src.name, "2025-01-15").await["status"], "already_exported");
    assert_eq!(export(&app, &src.name, "2025-01-16").await["status"], "exported");

    let sent = reports(&hook).await;
    assert_eq!(sent.len(), 1, "one report: {sent:?}");
    let report = &sent[0];
    assert_eq!(report["kind"], "data_loss_suspected");
    assert_eq!(
        (report["run_date"].as_str(), report["held_run_date"].as_str()),
        (Some("2025-01-15"), Some("2025-01-14"))
    );
    assert_eq!(report["tables"], json!([{"table": "public.orders", "rows_before": 10000, "rows_after": 1000}]));
    assert!(report["text"].as_str().unwrap().contains("public.orders 10000 → 1000 rows"), "{report}");

    let hold_key = format!("holds/pgsrc/pg/{}/2025-01-14.json", src.name);
    assert!(app.store_files().contains(&hold_key), "{:?}", app.store_files());
    let (db_row, counts) = row(&app, &src.name).await;
    assert_eq!(db_row["state"], "suspect", "{db_row}");
    assert!(db_row["reason"].as_str().unwrap().contains("public.orders"), "{db_row}");
    assert_eq!(counts["suspect"], 1, "{counts}");

    // A year later the prune deletes the expired backups but the held one.
    let plan = prune_as_of(&app, "2026-01-16").await;
    assert_eq!(dates(&plan["deleted"]), ["2025-01-15"], "{plan}");
    let held: Vec<&Value> =
        plan["skipped"].as_array().unwrap().iter().filter(|e| e["run_date"] == "2025-01-14").collect();
    assert_eq!(held.len(), 1, "{plan}");
    assert!(held[0]["reason"].as_str().unwrap().starts_with("held:"), "{plan}");
    let manifest = format!("daily/pgsrc/pg/{0}/2025-01-14/{0}.manifest.json", src.name);
    assert!(app.store_files().contains(&manifest));

    // Listed, then released by the command; the next prune may delete it and the alarm is gone.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let store = format!("[store]\nurl = \"file://{}\"\n", app.store_dir.path().display());
    std::fs::write(&config, format!("{store}{}", pg_source("pgsrc", &src.name))).unwrap();
    let metrics = app.client.get(format!("{}/metrics", app.address)).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("data_backup_databases{") && l.contains("state=\"suspect\"") && l.ends_with(" 1")),
        "{metrics}"
    );
    let status = cli_output(&config, &["status", "--json"]);
    assert_eq!(status.status.code(), Some(2), "a suspect database is an alarm");
    let (ok, out, err) = cli(&config, &["hold", "list", "--json"]);
    assert!(ok, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed[0]["run_date"], "2025-01-14", "{listed}");
    let database = format!("pgsrc/pg/{}", src.name);
    let (ok, _, err) = cli(&config, &["hold", "release", "--database", &database, "--date", "2025-01-14"]);
    assert!(ok, "{err}");
    assert!(!app.store_files().contains(&hold_key));
    let (ok, _, err) = cli(&config, &["hold", "release", "--database", &database, "--date", "2025-01-14"]);
    assert!(!ok && err.contains("no hold"), "{err}");
    assert_ne!(row(&app, &src.name).await.0["state"], "suspect");
    let plan = prune_as_of(&app, "2026-01-16").await;
    assert_eq!(dates(&plan["deleted"]), ["2025-01-14"], "{plan}");
    assert_eq!(reports(&hook).await.len(), 1, "nothing more was reported");
    app.stop().await;
}

#[tokio::test]
async fn growth_and_a_five_percent_shrink_stay_ok_and_quiet() {
    let src = PgDb::create(&unique_name("tripok"));
    src.sql("CREATE TABLE orders AS SELECT generate_series(1, 10000) g");
    let hook = hook().await;
    let app = TestApp::spawn(&settings(&src.name, &hook)).await;
    let today = chrono::Utc::now().date_naive();
    let day = |n: i64| (today - chrono::Duration::days(n)).format("%Y-%m-%d").to_string();

    export(&app, &src.name, &day(2)).await;
    src.sql("INSERT INTO orders SELECT generate_series(10001, 15000)");
    export(&app, &src.name, &day(1)).await;
    src.sql("DELETE FROM orders WHERE g > 14250");
    export(&app, &src.name, &day(0)).await;

    assert!(reports(&hook).await.is_empty(), "nothing to report");
    assert!(!app.store_files().iter().any(|f| f.starts_with("holds/")), "{:?}", app.store_files());
    let (db_row, counts) = row(&app, &src.name).await;
    assert_eq!(db_row["state"], "ok", "{db_row}");
    assert_eq!(counts["suspect"], 0, "{counts}");
    app.stop().await;
}

#[tokio::test]
async fn a_drill_records_its_restore_time_and_status_the_page_and_the_listing_show_it() {
    let src = PgDb::create(&unique_name("rto"));
    src.sql("CREATE TABLE orders AS SELECT generate_series(1, 5000) g");
    let hook = hook().await;
    let extra = format!("{}[verify]\nurl = \"{}\"\n", settings(&src.name, &hook), crate::support::pg_url());
    let app = TestApp::spawn(&extra).await;
    let today = chrono::Utc::now().date_naive().format("%Y-%m-%d").to_string();
    export(&app, &src.name, &today).await;

    let (status, _, records) =
        app.post("/verify", &json!({"project": "pgsrc", "instance": "pg", "database": src.name})).await;
    assert_eq!(status, 200, "{records}");
    let record = if records.is_array() { records[0].clone() } else { records };
    assert_eq!(record["result"], "ok", "{record}");
    let restore_secs = record["restore_secs"].as_f64().expect("the drill records its restore time");
    assert!(restore_secs > 0.0 && restore_secs <= record["duration_secs"].as_f64().unwrap(), "{record}");
    assert!(record["bytes_per_sec"].as_f64().unwrap() > 0.0, "{record}");
    assert!(record["rows_per_sec"].as_f64().unwrap() > 0.0, "{record}");

    let (db_row, _) = row(&app, &src.name).await;
    assert_eq!(db_row["last_verification"]["restore_secs"].as_f64(), Some(restore_secs), "{db_row}");
    assert_eq!(db_row["last_verification"]["bytes_per_sec"], record["bytes_per_sec"], "{db_row}");
    let page = app.client.get(format!("{}/", app.address)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(&format!("restore {restore_secs:.1} s at ")), "the page shows the restore time");
    let url = format!("{}/backups?database=pgsrc/pg/{}", app.address, src.name);
    let listing: Value = app.client.get(url).send().await.unwrap().json().await.unwrap();
    assert_eq!(listing["backups"][0]["verification"]["restore_secs"].as_f64(), Some(restore_secs), "{listing}");
    app.stop().await;
}

#[tokio::test]
async fn on_gcs_the_held_backup_also_gets_an_object_hold_and_release_removes_the_hold() {
    let endpoint = crate::support::required_env("DATA_BACKUP_TEST_GCS_ENDPOINT");
    let bucket = crate::support::required_env("DATA_BACKUP_TEST_GCS_BUCKET");
    let prefix = unique_name("hold");
    let src = PgDb::create(&unique_name("tripgcs"));
    src.sql("CREATE TABLE orders AS SELECT generate_series(1, 10000) g");
    let store = format!(
        "[store]\nurl = \"gs://{bucket}/{prefix}\"\n[gcp]\ncredentials = \"anonymous\"\nstorage_endpoint = \"{endpoint}\"\n"
    );
    let source = pg_source("pgsrc", &src.name);
    let app = TestApp::spawn(&format!("{source}{store}")).await;
    export(&app, &src.name, "2025-01-14").await;
    src.sql("DELETE FROM orders WHERE g > 1000");
    export(&app, &src.name, "2025-01-15").await;

    // fake-gcs-server accepts `temporaryHold` in an object PATCH but does not keep it, so what is
    // checked here is that the store took both PATCHes (set, then cleared), as the hold records.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, format!("{source}{store}")).unwrap();
    let (ok, out, err) = cli(&config, &["hold", "list", "--json"]);
    assert!(ok, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((&listed[0]["run_date"], &listed[0]["object_hold"]), (&json!("2025-01-14"), &json!(true)), "{listed}");
    let database = format!("pgsrc/pg/{}", src.name);
    let (ok, _, err) = cli(&config, &["hold", "release", "--database", &database, "--date", "2025-01-14"]);
    assert!(ok, "{err}");
    let (ok, out, err) = cli(&config, &["hold", "list", "--json"]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!([]), "released");
    app.stop().await;
}
