//! Status per off-site copy: a real PostgreSQL database backed up into a local primary store and
//! copied to `file://` stores and moto (S3); how each copy holds it shows in `/status`, the
//! overview page, `/metrics` and the exit status of `data-backup status`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::support::{PgDb, TestApp, cli_output, pg_source, required_env, unique_name};

/// Status settings that judge a copy at once (no grace: every test's backup is minutes old), with
/// drills not required (so a fresh backup is `ok`) and no cache (each request computes).
const STATUS: &str = "[status]\nverify_within_days = 0\ncache_secs = 0\ncopy_grace_minutes = 0\n";

fn s3_options() -> String {
    let options = BTreeMap::from([
        ("aws_endpoint", required_env("DATA_BACKUP_TEST_S3_ENDPOINT")),
        ("aws_allow_http", "true".to_owned()),
        ("aws_region", "us-east-1".to_owned()),
        ("aws_access_key_id", "test".to_owned()),
        ("aws_secret_access_key", "test".to_owned()),
    ]);
    let pairs: Vec<String> = options.iter().map(|(k, v)| format!("{k} = {}", json!(v))).collect();
    format!("options = {{ {} }}\n", pairs.join(", "))
}

/// A `[[copies]]` entry; `more` is added as it is (options, classes).
fn copy_toml(name: &str, url: &str, more: &str) -> String {
    format!("[[copies]]\nname = \"{name}\"\nurl = \"{url}\"\n{more}")
}

fn file_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

fn source_db(prefix: &str) -> PgDb {
    let src = PgDb::create(prefix);
    src.sql("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g");
    src
}

async fn export(app: &TestApp, database: &str, run_date: &str) {
    let body =
        json!({"source": "pgsrc", "project": "pgsrc", "instance": "pg", "database": database, "run_date": run_date});
    let (status, _, answer) = app.post("/export", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "exported", "{answer}");
}

async fn get(app: &TestApp, path: &str) -> String {
    let r = app.client.get(format!("{}{path}", app.address)).send().await.expect("request");
    assert_eq!(r.status().as_u16(), 200, "{path}");
    r.text().await.expect("body")
}

async fn status(app: &TestApp) -> Value {
    serde_json::from_str(&get(app, "/status").await).unwrap()
}

/// The `copies` of the row of `database`.
fn copies_of(status: &Value, database: &str) -> Value {
    let rows = status["databases"].as_array().unwrap();
    rows.iter().find(|r| r["database"] == database).unwrap_or_else(|| panic!("{database} in {status}"))["copies"]
        .clone()
}

/// Whether `/metrics` has `data_backup_copy_databases{copy=…,state=…} n`.
fn has_copy_gauge(metrics: &str, copy: &str, state: &str, n: u64) -> bool {
    metrics.lines().any(|l| {
        l.starts_with("data_backup_copy_databases{")
            && l.contains(&format!("copy=\"{copy}\""))
            && l.contains(&format!("state=\"{state}\""))
            && l.ends_with(&format!(" {n}"))
    })
}

/// The address of the page of `database` (source `pgsrc`, instance `pg`).
fn detail_href(database: &str) -> String {
    format!("/database?project=pgsrc&instance=pg&database={database}")
}

/// The value of the tile `id` of a page.
fn tile(page: &str, id: &str) -> String {
    let after = page.split(&format!("data-tile=\"{id}\"")).nth(1).unwrap_or_else(|| panic!("tile {id} in {page}"));
    let value = after.split("<div class=\"value\">").nth(1).unwrap();
    value.split("</div>").next().unwrap().to_owned()
}

/// The Copies cell of the backup row of `date` on a database page (the ninth cell).
fn copies_cell(page: &str, date: &str) -> String {
    let row = page.split(&format!("data-date=\"{date}\">")).nth(1).unwrap_or_else(|| panic!("row {date} in {page}"));
    let row = row.split("</tr>").next().unwrap();
    let cell = row.split("<td").nth(9).unwrap_or_else(|| panic!("nine cells in {row}"));
    let cell = cell.split_once('>').unwrap().1;
    cell.split("</td>").next().unwrap().to_owned()
}

/// `data-backup status` over the app's primary store with `copies` (its exit code and output).
fn status_command(app: &TestApp, dir: &Path, copies: &str) -> (Option<i32>, String) {
    let config = dir.join("config.toml");
    std::fs::write(&config, format!("[store]\nurl = \"{}\"\n{STATUS}{copies}", file_url(app.store_dir.path())))
        .unwrap();
    let out = cli_output(&config, &["status"]);
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test]
async fn copies_holding_the_newest_backup_are_ok_and_an_emptied_copy_is_missing_everywhere_status_shows() {
    let src = source_db("copy_status");
    let near = tempfile::tempdir().unwrap();
    let s3_url = format!("s3://{}/{}", required_env("DATA_BACKUP_TEST_S3_BUCKET"), unique_name("copy-status"));
    let copies =
        format!("{}{}", copy_toml("near", &file_url(near.path()), ""), copy_toml("offsite", &s3_url, &s3_options()));
    let app = TestApp::spawn(&format!("{}{copies}{STATUS}", pg_source("pgsrc", &src.name))).await;
    let cli_dir = tempfile::tempdir().unwrap();
    export(&app, &src.name, "2026-11-20").await;

    let both = status(&app).await;
    let both_detail = get(&app, &detail_href(&src.name)).await;
    let (both_code, both_table) = status_command(&app, cli_dir.path(), &copies);

    assert_eq!(
        copies_of(&both, &src.name),
        json!([
            {"name": "near", "newest_run_date": "2026-11-20", "state": "ok"},
            {"name": "offsite", "newest_run_date": "2026-11-20", "state": "ok"},
        ])
    );
    assert_eq!(both["copies_behind"], 0);
    assert_eq!(both_code, Some(0), "{both_table}");
    assert!(both_table.contains("near ok, offsite ok"), "{both_table}");
    assert_eq!(tile(&both_detail, "off-site"), "near ok, offsite ok", "{both_detail}");
    assert!(copies_cell(&both_detail, "2026-11-20").ends_with("; off-site: near, offsite"), "{both_detail}");

    // The near copy loses everything it held.
    std::fs::remove_dir_all(near.path()).unwrap();
    std::fs::create_dir(near.path()).unwrap();
    let one = status(&app).await;
    let page = get(&app, "/").await;
    let one_detail = get(&app, &detail_href(&src.name)).await;
    let metrics = get(&app, "/metrics").await;
    let (one_code, one_table) = status_command(&app, cli_dir.path(), &copies);

    assert_eq!(
        copies_of(&one, &src.name),
        json!([
            {"name": "near", "newest_run_date": null, "state": "missing"},
            {"name": "offsite", "newest_run_date": "2026-11-20", "state": "ok"},
        ])
    );
    assert_eq!(one["copies_behind"], 1);
    assert_eq!(one["healthy"], true, "a copy behind does not change the primary's health");
    let near_summary = one["copies"].as_array().unwrap().iter().find(|c| c["name"] == "near").unwrap().clone();
    assert_eq!(near_summary["counts"]["missing"], 1, "{near_summary}");
    assert!(page.contains("copy-alarm") && page.contains("near missing"), "{page}");
    assert!(page.contains("1 databases with a copy behind or missing"), "{page}");
    assert_eq!(tile(&one_detail, "off-site"), "near missing, offsite ok", "{one_detail}");
    assert!(copies_cell(&one_detail, "2026-11-20").ends_with("; off-site: offsite"), "{one_detail}");
    assert!(has_copy_gauge(&metrics, "near", "missing", 1), "{metrics}");
    assert!(has_copy_gauge(&metrics, "offsite", "ok", 1), "{metrics}");
    assert_eq!(one_code, Some(4), "a copy missing makes the exit status 4: {one_table}");
    assert!(one_table.contains("near missing"), "{one_table}");
}

#[tokio::test]
async fn a_monthly_copy_is_not_behind_on_a_daily_day_a_copy_that_missed_one_is_and_an_unreadable_copy_is_an_error() {
    let src = source_db("copy_classes");
    let (monthly, every) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let no_bucket = format!("s3://{}/p", unique_name("no-such-bucket").replace('_', "-").to_lowercase());
    let copies = format!(
        "{}{}{}",
        copy_toml("monthly", &file_url(monthly.path()), "classes = [\"monthly\"]\n"),
        copy_toml("every", &file_url(every.path()), ""),
        copy_toml("unreadable", &no_bucket, &s3_options()),
    );
    let app = TestApp::spawn(&format!("{}{copies}{STATUS}", pg_source("pgsrc", &src.name))).await;
    // 2026-11-01 is the month's first (monthly); 2026-11-20 a Friday (daily). The `every` copy
    // cannot be written on the 20th: its directory is a file meanwhile.
    export(&app, &src.name, "2026-11-01").await;
    let aside = every.path().with_extension("aside");
    std::fs::rename(every.path(), &aside).unwrap();
    std::fs::write(every.path(), b"not a directory").unwrap();
    export(&app, &src.name, "2026-11-20").await;
    std::fs::remove_file(every.path()).unwrap();
    std::fs::rename(&aside, every.path()).unwrap();

    let status = status(&app).await;
    let metrics = get(&app, "/metrics").await;

    assert_eq!(
        copies_of(&status, &src.name),
        json!([
            {"name": "monthly", "newest_run_date": "2026-11-01", "state": "ok"},
            {"name": "every", "newest_run_date": "2026-11-01", "state": "behind"},
            {"name": "unreadable", "newest_run_date": null, "state": "error"},
        ])
    );
    assert_eq!(status["copies_behind"], 1);
    let unreadable = status["copies"].as_array().unwrap().iter().find(|c| c["name"] == "unreadable").unwrap().clone();
    assert!(unreadable["error"].is_string(), "the copy's summary says why: {unreadable}");
    assert!(has_copy_gauge(&metrics, "every", "behind", 1), "{metrics}");
    assert!(has_copy_gauge(&metrics, "monthly", "ok", 1), "{metrics}");
    assert!(has_copy_gauge(&metrics, "unreadable", "error", 1), "{metrics}");
}

#[test]
fn the_openapi_document_describes_the_copy_fields_of_status() {
    let doc = serde_json::to_value(data_backup::http::openapi()).unwrap();
    let schemas = &doc["components"]["schemas"];

    let report = &schemas["StatusReport"]["properties"];
    let row = &schemas["DatabaseStatus"]["properties"];

    assert!(report.get("copies_behind").is_some() && report.get("copies").is_some(), "{report}");
    assert!(row.get("copies").is_some(), "{row}");
    for schema in ["CopyStatus", "CopyState", "CopySummary"] {
        assert!(schemas.get(schema).is_some(), "{schema} in {schemas}");
    }
}
