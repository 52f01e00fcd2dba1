//! Off-site copies proven and retried through the service (issue 17, ADR 0023): the nightly pick
//! drills the least recently verified (store, database) pair, a copy among them, and records in
//! the copy; `GET /backups` and `POST /verify` read a copy with `from`; a copy delivery whose copy
//! store fails transiently answers a retryable status and is reported once. A real PostgreSQL
//! database, a local primary store, moto (S3, encrypted on the way), azurite and a local copy.

use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::copies::{Copies, copy_toml, export_body, keys_of, manifest, source_db, two_copies};
use crate::support::{TestApp, pg_source, pg_url};

/// `[verify]` on the local server, decrypting with the copies' identity (written in `dir`).
fn verify_toml(dir: &std::path::Path, copies: &Copies) -> String {
    use secrecy::ExposeSecret;
    let identity = dir.join("identity.txt");
    std::fs::write(&identity, format!("{}\n", copies.identity.to_string().expose_secret())).unwrap();
    format!("[verify]\nurl = \"{}\"\nidentity_file = \"{}\"\n", pg_url(), identity.display())
}

async fn get(app: &TestApp, path_and_query: &str) -> (u16, Value) {
    let r = app.client.get(format!("{}{path_and_query}", app.address)).send().await.expect("request");
    let status = r.status().as_u16();
    (status, serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_nightly_pick_drills_the_one_copy_never_verified_first_and_records_it_in_that_copy() {
    let src = source_db("copy_pick");
    let copies = two_copies("copy-pick");
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&format!(
        "{}{}{}",
        pg_source("pgsrc", &src.name),
        copies.toml,
        verify_toml(dir.path(), &copies)
    ))
    .await;
    let (status, _, body) = app.post("/export", &export_body(&src.name)).await;
    assert_eq!(status, 200, "{body}");
    let db = json!({"project": "pgsrc", "instance": "pg", "database": src.name});
    let path: data_backup::model::DatabasePath = format!("pgsrc/pg/{}", src.name).parse().unwrap();
    let record_key = data_backup::store::layout::Key::Verification {
        db: path,
        date: data_backup::model::RunDate::parse("2026-11-20").unwrap(),
    }
    .path();

    // The primary and the Azure copy are verified; the S3 copy never was.
    let (status, _, primary) = app.post("/verify", &db).await;
    assert_eq!((status, primary["result"].as_str()), (200, Some("ok")), "{primary}");
    assert!(primary.get("copy").is_none(), "a drill of the primary names no copy: {primary}");
    let mut from_azure = db.clone();
    from_azure["from"] = json!("azure");
    let (status, _, azure) = app.post("/verify", &from_azure).await;
    assert_eq!((status, azure["result"].as_str(), azure["copy"].as_str()), (200, Some("ok"), Some("azure")), "{azure}");
    let primary_record = std::fs::read(app.store_dir.path().join(&record_key)).expect("the primary's record");

    let picked = app.state.verifier.pick(1).await.unwrap();

    assert_eq!(picked.len(), 1, "{picked:?}");
    assert_eq!(picked[0].copy.as_deref(), Some("s3-offsite"), "the copy never verified goes first");
    assert_eq!(
        picked[0].result,
        data_backup::verify::VerificationResult::Ok,
        "decrypted and restored: {:?}",
        picked[0]
    );
    assert!(picked[0].key.ends_with(".age"), "restored from the copy's own encrypted object: {}", picked[0].key);
    let record = manifest(copies.s3.as_ref(), &record_key).await.expect("the S3 copy holds its record");
    assert_eq!((record["result"].as_str(), record["copy"].as_str()), (Some("ok"), Some("s3-offsite")));
    assert_eq!(
        std::fs::read(app.store_dir.path().join(&record_key)).unwrap(),
        primary_record,
        "the primary's verdict is not overwritten by a copy's"
    );
    let azure_record = manifest(copies.az.as_ref(), &record_key).await.expect("the Azure copy holds its record");
    assert_eq!(azure_record["copy"], "azure");

    // Now every store is verified: the least recently verified (the primary) is next.
    let next = app.state.verifier.pick(1).await.unwrap();
    assert_eq!(next[0].copy, None, "{next:?}");
}

#[tokio::test]
async fn backups_are_listed_from_a_copy_and_an_unknown_copy_is_answered_with_the_configured_names() {
    let src = source_db("copy_list");
    let copies = two_copies("copy-list");
    let app = TestApp::spawn(&format!("{}{}", pg_source("pgsrc", &src.name), copies.toml)).await;
    let (status, _, body) = app.post("/export", &export_body(&src.name)).await;
    assert_eq!(status, 200, "{body}");
    let database = format!("pgsrc/pg/{}", src.name);

    let (status, primary) = get(&app, &format!("/backups?database={database}")).await;
    let (s3_status, s3) = get(&app, &format!("/backups?database={database}&from=s3-offsite")).await;
    let (unknown, problem) = get(&app, &format!("/backups?database={database}&from=nowhere")).await;

    assert_eq!(status, 200, "{primary}");
    assert_eq!(s3_status, 200, "{s3}");
    let (primary_key, s3_key) = (&primary["backups"][0]["key"], &s3["backups"][0]["key"]);
    assert_eq!(s3["backups"].as_array().unwrap().len(), 1, "{s3}");
    assert_eq!(s3_key.as_str(), Some(keys_of(primary_key.as_str().unwrap()).1.as_str()), "the copy's own `.age` key");
    assert_eq!(unknown, 404, "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("`nowhere`") && detail.contains("s3-offsite, azure"), "{detail}");
    let (status, _, problem) = app
        .post("/verify", &json!({"project": "pgsrc", "instance": "pg", "database": src.name, "from": "nowhere"}))
        .await;
    assert_eq!(status, 404, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("s3-offsite, azure"), "{problem}");
}

#[tokio::test]
async fn a_copy_task_whose_copy_store_fails_transiently_is_retried_and_reported_once() {
    let src = source_db("copy_retry");
    // The backup, made by an instance without copies.
    let maker = TestApp::spawn(&pg_source("pgsrc", &src.name)).await;
    let (status, _, body) = maker.post("/export", &export_body(&src.name)).await;
    assert_eq!(status, 200, "{body}");
    let (manifest_key, _) = keys_of(body["key"].as_str().unwrap());
    // A local copy whose first key segment is a file: every read and write under it fails, and
    // the failure is not one that says the copy can never work.
    let copy_dir = tempfile::tempdir().unwrap();
    let top = manifest_key.split('/').next().unwrap();
    std::fs::write(copy_dir.path().join(top), b"in the way").unwrap();
    let hook = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&hook).await;
    let app = TestApp::spawn(&format!(
        "[store]\nurl = \"file://{}\"\n{}{}[notify]\nwebhook_url = \"{}/hook\"\n",
        maker.store_dir.path().display(),
        pg_source("pgsrc", &src.name),
        copy_toml("local", &format!("file://{}", copy_dir.path().display()), &Default::default(), &[]),
        hook.uri()
    ))
    .await;
    let mut task = export_body(&src.name);
    task["copy"] = json!(true);

    let (first, headers, problem) = app.post("/export", &task).await;
    let (second, _, again) = app.post("/export", &task).await;

    assert_eq!(first, 503, "a transient copy failure is retried by the queue: {problem}");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1, "{retry_after}");
    assert!(problem["detail"].as_str().unwrap().contains("`local`"), "{problem}");
    assert_eq!(second, 503, "{again}");
    let reports = hook.received_requests().await.unwrap();
    assert_eq!(reports.len(), 1, "reported once across both deliveries");
    let report: Value = serde_json::from_slice(&reports[0].body).unwrap();
    assert!(report["message"].as_str().unwrap().starts_with("copy `local`"), "{report}");
    assert_eq!(report["transient"], true, "{report}");

    // The store recovers: the next delivery copies and answers success.
    std::fs::remove_file(copy_dir.path().join(top)).unwrap();
    let (third, _, done) = app.post("/export", &task).await;
    assert_eq!((third, done["status"].as_str()), (200, Some("already_exported")), "{done}");
    assert!(copy_dir.path().join(&manifest_key).is_file(), "the copy has its manifest");
    assert_eq!(hook.received_requests().await.unwrap().len(), 1, "nothing more reported");
}

#[tokio::test]
async fn a_copy_whose_store_fails_never_stops_the_nightly_drills_of_the_primary() {
    let src = source_db("copy_pick_fails");
    let copy_dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&format!(
        "{}{}[verify]\nurl = \"{}\"\n",
        pg_source("pgsrc", &src.name),
        copy_toml("local", &format!("file://{}", copy_dir.path().display()), &Default::default(), &[]),
        pg_url()
    ))
    .await;
    let (status, _, body) = app.post("/export", &export_body(&src.name)).await;
    assert_eq!(status, 200, "{body}");
    let (manifest_key, _) = keys_of(body["key"].as_str().unwrap());
    // The copy's backups can no longer be listed: its first key segment is now a file.
    let top = copy_dir.path().join(manifest_key.split('/').next().unwrap());
    std::fs::remove_dir_all(&top).unwrap();
    std::fs::write(&top, b"in the way").unwrap();

    let picked = app.state.verifier.pick(2).await.expect("the copy's failure is not the pick's");

    assert_eq!(picked.len(), 1, "{picked:?}");
    assert_eq!((picked[0].copy.as_deref(), picked[0].result), (None, data_backup::verify::VerificationResult::Ok));
}
