//! Off-site copies (`[[copies]]`): a real PostgreSQL database exported into a local primary store
//! and copied to moto (S3, encrypted on the way) and azurite (Azure Blob, as it is); and a Cloud
//! SQL export (the Cloud SQL Admin fake dumps the local server into fake-gcs-server) in
//! `cloud_tasks` mode, whose copy is a task of its own, to azurite (encrypted on the way) and to
//! another prefix of fake-gcs-server (as it is).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use data_backup::store::bucket::Bucket;
use data_backup::store::bucket::object_store::ObjectStoreBucket;
use data_backup::store::layout::Key;
use futures::TryStreamExt;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{PgDb, TestApp, cli, pg_source, required_env, unique_name};

pub(crate) fn s3_options() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("aws_endpoint".to_owned(), required_env("DATA_BACKUP_TEST_S3_ENDPOINT")),
        ("aws_allow_http".to_owned(), "true".to_owned()),
        ("aws_region".to_owned(), "us-east-1".to_owned()),
        ("aws_access_key_id".to_owned(), "test".to_owned()),
        ("aws_secret_access_key".to_owned(), "test".to_owned()),
    ])
}

pub(crate) fn az_options() -> BTreeMap<String, String> {
    BTreeMap::from([("azure_storage_use_emulator".to_owned(), "true".to_owned())])
}

/// A `[[copies]]` entry.
pub(crate) fn copy_toml(name: &str, url: &str, options: &BTreeMap<String, String>, recipients: &[String]) -> String {
    let options: Vec<String> = options.iter().map(|(k, v)| format!("{k} = {}", json!(v))).collect();
    format!(
        "[[copies]]\nname = \"{name}\"\nurl = \"{url}\"\nage_recipients = {}\noptions = {{ {} }}\n",
        json!(recipients),
        options.join(", ")
    )
}

/// Two copies of fresh prefixes: moto S3 encrypted to `identity`, azurite as it is.
pub(crate) struct Copies {
    pub(crate) toml: String,
    pub(crate) az_url: String,
    pub(crate) s3: Arc<dyn Bucket>,
    pub(crate) az: Arc<dyn Bucket>,
    pub(crate) identity: age::x25519::Identity,
}

pub(crate) fn two_copies(tag: &str) -> Copies {
    let identity = age::x25519::Identity::generate();
    let s3_url = format!("s3://{}/{}", required_env("DATA_BACKUP_TEST_S3_BUCKET"), unique_name(tag));
    let az_url = format!("az://{}/{}", required_env("DATA_BACKUP_TEST_AZURE_CONTAINER"), unique_name(tag));
    let toml = format!(
        "{}{}",
        copy_toml("s3-offsite", &s3_url, &s3_options(), &[identity.to_public().to_string()]),
        copy_toml("azure", &az_url, &az_options(), &[])
    );
    let s3 = ObjectStoreBucket::open(&url::Url::parse(&s3_url).unwrap(), &s3_options()).unwrap();
    let az = ObjectStoreBucket::open(&url::Url::parse(&az_url).unwrap(), &az_options()).unwrap();
    Copies { toml, az_url, s3: Arc::new(s3), az: Arc::new(az), identity }
}

pub(crate) fn export_body(database: &str) -> Value {
    json!({"source": "pgsrc", "project": "pgsrc", "instance": "pg", "database": database, "run_date": "2026-11-20"})
}

async fn read_all(bucket: &dyn Bucket, key: &str) -> Option<Vec<u8>> {
    let stream = bucket.get_stream(key).await.unwrap()?;
    let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
    Some(chunks.concat())
}

pub(crate) async fn manifest(bucket: &dyn Bucket, key: &str) -> Option<Value> {
    bucket.get(key).await.unwrap().map(|b| serde_json::from_slice(&b).unwrap())
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// The manifest key and the encrypted dump key of the dated dump `dump_key`, from the layout.
pub(crate) fn keys_of(dump_key: &str) -> (String, String) {
    let Some(Key::Dump { class, db, date, format, .. }) = Key::parse(dump_key) else { panic!("{dump_key}") };
    let manifest = Key::Manifest { class, db: db.clone(), date }.path();
    (manifest, Key::Dump { class, db, date, format, encrypted: true }.path())
}

async fn decrypt(cipher: Vec<u8>, identity: &age::x25519::Identity) -> Vec<u8> {
    let mut reader =
        data_backup::crypto::decrypting_reader(std::io::Cursor::new(cipher), std::slice::from_ref(identity))
            .await
            .unwrap();
    let mut plain = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut plain).await.unwrap();
    plain
}

pub(crate) fn source_db(prefix: &str) -> PgDb {
    let src = PgDb::create(prefix);
    src.sql("CREATE TABLE t AS SELECT g, md5(g::text) AS h FROM generate_series(1, 20000) g");
    src
}

#[tokio::test]
async fn a_backup_reaches_both_copies_checked_encrypted_where_asked_and_a_repeat_copies_nothing() {
    let src = source_db("copy_two");
    let copies = two_copies("copy-two");
    let app = TestApp::spawn(&format!("{}{}", pg_source("pgsrc", &src.name), copies.toml)).await;

    let (status, _, body) = app.post("/export", &export_body(&src.name)).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "exported");
    let key = body["key"].as_str().unwrap();
    let primary = std::fs::read(app.store_dir.path().join(key)).unwrap();
    let (manifest_key, encrypted_key) = keys_of(key);
    // Azure: the same bytes under the same key, with a manifest that records them.
    let az_dump = read_all(copies.az.as_ref(), key).await.expect("the dump is in the Azure copy");
    assert!(az_dump == primary, "byte-identical copy");
    let az_manifest = manifest(copies.az.as_ref(), &manifest_key).await.expect("the Azure copy has its manifest");
    assert_eq!(az_manifest["sha256"], body["manifest"]["sha256"]);
    assert_eq!(az_manifest["bytes"], primary.len());
    assert_eq!(az_manifest["run_id"], body["manifest"]["run_id"]);
    // S3: encrypted on the way, `.age` as the layout names encrypted dumps, and the manifest says so.
    assert_eq!(read_all(copies.s3.as_ref(), key).await, None, "no plaintext in the encrypted copy");
    let cipher = read_all(copies.s3.as_ref(), &encrypted_key).await.expect("the encrypted dump is in the S3 copy");
    assert!(cipher.starts_with(b"age-encryption.org/v1"));
    let s3_manifest = manifest(copies.s3.as_ref(), &manifest_key).await.expect("the S3 copy has its manifest");
    assert_eq!(s3_manifest["key"], encrypted_key.as_str());
    assert_eq!(s3_manifest["sha256"], sha256_hex(&cipher));
    assert_eq!(s3_manifest["bytes"], cipher.len());
    assert_eq!(
        s3_manifest["encryption"],
        json!({"scheme": "age", "recipients": [copies.identity.to_public().to_string()]})
    );
    assert!(decrypt(cipher, &copies.identity).await == primary, "byte-identical after decryption");

    // A second delivery of the same export finds everything copied: no object is written again.
    let versions = |b: Arc<dyn Bucket>| async move { b.list("").await.unwrap() };
    let (s3_before, az_before) = (versions(copies.s3.clone()).await, versions(copies.az.clone()).await);
    let (again, _, body) = app.post("/export", &export_body(&src.name)).await;
    assert_eq!(again, 200, "{body}");
    assert_eq!(body["status"], "already_exported");
    assert_eq!(versions(copies.s3.clone()).await, s3_before, "the S3 copy is untouched");
    assert_eq!(versions(copies.az.clone()).await, az_before, "the Azure copy is untouched");
    // The dump, its manifest and the copy's `latest/` pointer (status per copy reads it).
    assert_eq!(s3_before.len(), 3, "{s3_before:?}");
    assert_eq!(az_before.len(), 3, "{az_before:?}");
}

#[tokio::test]
async fn a_copy_killed_before_its_manifest_is_redone_and_checks() {
    let src = source_db("copy_killed");
    let copies = two_copies("copy-killed");
    let app = TestApp::spawn(&format!("{}{}", pg_source("pgsrc", &src.name), copies.toml)).await;
    let (status, _, body) = app.post("/export", &export_body(&src.name)).await;
    assert_eq!(status, 200, "{body}");
    let key = body["key"].as_str().unwrap().to_owned();
    let primary = std::fs::read(app.store_dir.path().join(&key)).unwrap();
    let (manifest_key, encrypted_key) = keys_of(&key);
    // The kill: each copy's dump written (here: corrupted), its manifest never.
    copies.az.delete(&manifest_key).await.unwrap();
    copies.az.put(&key, Bytes::from_static(b"half a dump")).await.unwrap();
    copies.s3.delete(&manifest_key).await.unwrap();
    copies.s3.put(&encrypted_key, Bytes::from_static(b"half a dump")).await.unwrap();

    let (again, _, body) = app.post("/export", &export_body(&src.name)).await;

    assert_eq!(again, 200, "{body}");
    assert_eq!(body["status"], "already_exported");
    assert!(read_all(copies.az.as_ref(), &key).await.unwrap() == primary, "the Azure dump is whole again");
    let az_manifest = manifest(copies.az.as_ref(), &manifest_key).await.expect("the Azure manifest is back");
    assert_eq!(az_manifest["sha256"], sha256_hex(&primary));
    let cipher = read_all(copies.s3.as_ref(), &encrypted_key).await.unwrap();
    let s3_manifest = manifest(copies.s3.as_ref(), &manifest_key).await.expect("the S3 manifest is back");
    assert_eq!(s3_manifest["sha256"], sha256_hex(&cipher));
    assert!(decrypt(cipher, &copies.identity).await == primary);
}

#[tokio::test]
async fn a_copy_whose_dump_was_replaced_behind_its_manifest_is_reported_damaged_not_retried() {
    let src = source_db("copy_damaged");
    let copies = two_copies("copy-damaged");
    let app = TestApp::spawn(&format!("{}{}", pg_source("pgsrc", &src.name), copies.toml)).await;
    let (status, _, body) = app.post("/export", &export_body(&src.name)).await;
    assert_eq!(status, 200, "{body}");
    let key = body["key"].as_str().unwrap().to_owned();
    // Another object of the very same size where the Azure copy's manifest recorded its dump.
    let size = read_all(copies.az.as_ref(), &key).await.unwrap().len();
    copies.az.put(&key, Bytes::from(vec![b'x'; size])).await.unwrap();

    let (again, _, body) = app.post("/export", &export_body(&src.name)).await;

    assert_eq!((again, body["status"].as_str()), (200, Some("already_exported")), "{body}");
    let Some(Key::Dump { db, date, .. }) = Key::parse(&key) else { panic!("{key}") };
    let marker = Key::CopyReport { copy: "azure".to_owned(), db, date }.path();
    let report: Value = serde_json::from_slice(&std::fs::read(app.store_dir.path().join(&marker)).unwrap()).unwrap();
    assert_eq!(report["error_class"], "copy_damaged", "{report}");
    assert_eq!(report["transient"], false, "no retry mends a committed manifest: {report}");
}

#[tokio::test]
async fn a_copy_to_a_failing_store_is_reported_once_and_the_backup_still_counts_as_exported() {
    let src = source_db("copy_fails");
    let hook = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&hook).await;
    // A bucket that does not exist: every write to it is refused.
    let missing = format!("s3://{}/p", unique_name("no-such-bucket").replace('_', "-").to_lowercase());
    let az = two_copies("copy-fails");
    let app = TestApp::spawn(&format!(
        "{}{}{}[notify]\nwebhook_url = \"{}/hook\"\n",
        pg_source("pgsrc", &src.name),
        copy_toml("gone", &missing, &s3_options(), &[]),
        copy_toml("azure", &az.az_url, &az_options(), &[]),
        hook.uri()
    ))
    .await;

    let (status, _, body) = app.post("/export", &export_body(&src.name)).await;
    let (again, _, body2) = app.post("/export", &export_body(&src.name)).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "exported", "the primary backup is made whatever its copies do");
    assert_eq!(again, 200, "{body2}");
    assert_eq!(body2["status"], "already_exported");
    let key = body["key"].as_str().unwrap();
    let (manifest_key, _) = keys_of(key);
    assert!(app.store_dir.path().join(&manifest_key).is_file());
    let reports = hook.received_requests().await.unwrap();
    assert_eq!(reports.len(), 1, "reported exactly once");
    let report: Value = serde_json::from_slice(&reports[0].body).unwrap();
    assert_eq!(report["database"], src.name.as_str());
    assert_eq!(report["error_class"], "copy_store");
    assert!(report["message"].as_str().unwrap().starts_with("copy `gone`"), "{report}");
    // The other copy is not held back by the failing one.
    assert!(manifest(az.az.as_ref(), &manifest_key).await.is_some(), "the Azure copy has its manifest");
    let files = app.store_files();
    assert!(files.iter().any(|f| f.starts_with("reports/copies/gone/2026-11-20/")), "{files:?}");
}

#[tokio::test]
async fn a_cloud_sql_export_enqueues_its_copy_task_and_its_plaintext_sql_gz_is_encrypted_on_the_way() {
    let identity = age::x25519::Identity::generate();
    let az_url = format!("az://{}/{}", required_env("DATA_BACKUP_TEST_AZURE_CONTAINER"), unique_name("copy-csql"));
    // A second copy in fake-gcs-server, under a prefix of its own, kept as it is.
    let (gcs_bucket, gcs_prefix) = (required_env("DATA_BACKUP_TEST_GCS_BUCKET"), unique_name("copy-csql-gcs"));
    let copy = format!(
        "{}{}",
        copy_toml("azure", &az_url, &az_options(), &[identity.to_public().to_string()]),
        copy_toml("gcs", &format!("gs://{gcs_bucket}/{gcs_prefix}"), &BTreeMap::new(), &[])
    );
    let t = crate::follow_up::FollowUps::start(
        1,
        std::time::Duration::from_millis(200),
        "follow_up_max_secs = 1\nfollow_up_default_secs = 1",
        &copy,
    )
    .await;
    t.enqueue_all().await;

    let deliveries = t.deliver_everything().await;

    let id = t.task(0).task_id();
    let export = deliveries.iter().find(|d| d.body["status"] == "exported").expect("the export finished");
    let copied: Vec<_> = deliveries.iter().filter(|d| d.name == format!("{id}-copy")).collect();
    assert_eq!(copied.len(), 1, "one copy task, delivered after the export: {deliveries:?}");
    assert_eq!((copied[0].status, copied[0].body["status"].as_str()), (200, Some("already_exported")));
    let task = t.tasks.recorded().into_iter().find(|r| r.name.ends_with("-copy")).unwrap();
    assert_eq!(task.body["copy"], true, "{:?}", task.body);
    // The copy: the plaintext Cloud SQL export, encrypted client-side, under the layout's `.age` key.
    let key = export.body["key"].as_str().unwrap();
    assert!(key.ends_with(".sql.gz"), "{key}");
    let (manifest_key, encrypted_key) = keys_of(key);
    let primary = read_all(t.app.state.service.store.bucket().as_ref(), key).await.expect("the export is in GCS");
    let az = ObjectStoreBucket::open(&url::Url::parse(&az_url).unwrap(), &az_options()).unwrap();
    let copy_manifest = manifest(&az, &manifest_key).await.expect("the copy has its manifest");
    assert_eq!(copy_manifest["key"], encrypted_key.as_str());
    assert_eq!(copy_manifest["encryption"]["scheme"], "age");
    assert_eq!(copy_manifest["format"], "cloud_sql_gz");
    let cipher = read_all(&az, &encrypted_key).await.expect("the encrypted copy");
    assert_eq!(copy_manifest["sha256"], sha256_hex(&cipher));
    assert!(decrypt(cipher, &identity).await == primary, "byte-identical after decryption");
    // The GCS copy: the same bytes under the same key, with its manifest.
    let gcs = data_backup::store::bucket::gcs::GcsBucket::new(
        &gcs_bucket,
        &gcs_prefix,
        Some(&required_env("DATA_BACKUP_TEST_GCS_ENDPOINT")),
        true,
    )
    .await
    .unwrap();
    let gcs_manifest = manifest(&gcs, &manifest_key).await.expect("the GCS copy has its manifest");
    assert_eq!(gcs_manifest["key"], key);
    assert_eq!(gcs_manifest["sha256"], sha256_hex(&primary));
    assert!(read_all(&gcs, key).await.expect("the GCS copy's dump") == primary, "byte-identical");
    assert!(t.reports().await.is_empty(), "nothing failed");
}

/// A config for the binary: the app's primary store, the copies, drills on the local server.
fn cli_config(dir: &std::path::Path, app: &TestApp, copies: &Copies) -> std::path::PathBuf {
    use secrecy::ExposeSecret;
    let identity = dir.join("identity.txt");
    std::fs::write(&identity, format!("{}\n", copies.identity.to_string().expose_secret())).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"file://{}\"\n[verify]\nurl = \"{}\"\nidentity_file = \"{}\"\n{}",
            app.store_dir.path().display(),
            crate::support::pg_url(),
            identity.display(),
            copies.toml
        ),
    )
    .unwrap();
    config
}

#[tokio::test]
async fn a_backup_is_listed_restored_and_verified_from_each_copy_and_a_copy_without_its_dump_fails_alone() {
    let src = source_db("copy_from");
    let copies = two_copies("copy-from");
    let app = TestApp::spawn(&format!("{}{}", pg_source("pgsrc", &src.name), copies.toml)).await;
    let (status, _, body) = app.post("/export", &export_body(&src.name)).await;
    assert_eq!(status, 200, "{body}");
    let key = body["key"].as_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let config = cli_config(dir.path(), &app, &copies);
    let identity = dir.path().join("identity.txt");
    let path = format!("pgsrc/pg/{}", src.name);
    let db: data_backup::model::DatabasePath = path.parse().unwrap();
    let record_key = Key::Verification { db, date: data_backup::model::RunDate::parse("2026-11-20").unwrap() }.path();

    for (copy, bucket, encrypted) in [("azure", copies.az.clone(), false), ("s3-offsite", copies.s3.clone(), true)] {
        // Listed from the copy: its own key (`.age` when encrypted on the way).
        let (ok, out, err) = cli(&config, &["list", "--json", "--from", copy, "--database", &path]);
        assert!(ok, "{copy}: {err}");
        let listed: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(listed.as_array().unwrap().len(), 1, "{copy}: {listed}");
        assert_eq!(listed[0]["encrypted"], encrypted, "{copy}: {listed}");
        assert_eq!(listed[0]["key"].as_str().unwrap().ends_with(".age"), encrypted, "{copy}: {listed}");

        // Restored from the copy into a fresh database: the source's rows.
        let into = PgDb { name: unique_name(&format!("copy_from_{}", copy.replace('-', "_"))) };
        let target = format!("{}{}", crate::support::pg_url(), into.name);
        let mut args = vec!["restore", "--create", "--from", copy, "--database", &path, "--target", &target];
        let identity_arg = identity.to_str().unwrap();
        if encrypted {
            args.extend(["--identity", identity_arg]);
        }
        let (ok, out, err) = cli(&config, &args);
        assert!(ok, "{copy}: {err}");
        let report: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["key"], listed[0]["key"], "{copy}: restored from the copy's object");
        assert_eq!(into.fingerprint(), src.fingerprint(), "{copy}");

        // Verified from the copy: the verdict lands in the copy's store, not the primary's.
        let (ok, out, err) = cli(&config, &["verify", "--from", copy, "--database", &path]);
        assert!(ok, "{copy}: {err}");
        let records: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(records[0]["result"], "ok", "{copy}: {records}");
        let record = manifest(bucket.as_ref(), &record_key).await.expect("the copy holds its verification record");
        assert_eq!(record["result"], "ok", "{copy}");
        assert!(!app.store_dir.path().join(&record_key).exists(), "{copy}: the primary's record is not written");
    }

    // An unknown copy is refused with the configured names.
    let (ok, _, err) = cli(&config, &["list", "--from", "nowhere", "--database", &path]);
    assert!(!ok);
    assert!(err.contains("`nowhere`") && err.contains("s3-offsite, azure"), "{err}");

    // The Azure copy loses its dump: a restore from it fails clearly, the primary still restores.
    copies.az.delete(&key).await.unwrap();
    let lost = PgDb { name: unique_name("copy_from_lost") };
    let target = format!("{}{}", crate::support::pg_url(), lost.name);
    let (ok, _, err) =
        cli(&config, &["restore", "--create", "--from", "azure", "--database", &path, "--target", &target]);
    assert!(!ok, "a copy without its dump cannot restore");
    assert!(err.contains("2026-11-20") || err.contains("missing") || err.contains("no backup"), "{err}");
    let (ok, _, err) = cli(&config, &["restore", "--create", "--database", &path, "--target", &target]);
    assert!(ok, "the primary still restores: {err}");
    assert_eq!(lost.fingerprint(), src.fingerprint());
}

pub(crate) fn entries(plan: &Value, list: &str) -> std::collections::BTreeSet<(String, String, String)> {
    plan[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let field = |f: &str| e[f].as_str().unwrap_or("-").to_owned();
            (field("database"), field("class"), field("run_date"))
        })
        .collect()
}

#[tokio::test]
async fn a_prune_a_year_later_keeps_in_each_copy_exactly_what_it_keeps_in_the_primary() {
    let src = source_db("copy_prune");
    let copies = two_copies("copy-prune");
    let app = TestApp::spawn(&format!("{}{}", pg_source("pgsrc", &src.name), copies.toml)).await;
    let mut held = String::new();
    for date in ["2026-10-01", "2026-10-02", "2026-11-01", "2026-11-15", "2026-11-19", "2026-11-20"] {
        let mut body = export_body(&src.name);
        body["run_date"] = json!(date);
        let (status, _, answer) = app.post("/export", &body).await;
        assert_eq!(status, 200, "{date}: {answer}");
        if date == "2026-10-02" {
            held = answer["key"].as_str().unwrap().to_owned();
        }
    }
    // The tripwire holds the daily backup of 2026-10-02 in the primary (`holds/<db>/<date>.json`):
    // every copy keeps it too.
    let segments: Vec<&str> = held.split('/').collect();
    let hold =
        app.store_dir.path().join(format!("holds/{}/{}/{}/2026-10-02.json", segments[1], segments[2], segments[3]));
    std::fs::create_dir_all(hold.parent().unwrap()).unwrap();
    std::fs::write(&hold, b"{}").unwrap();
    let policy = app.state.retention.clone();
    let as_of = chrono::NaiveDate::from_ymd_opt(2027, 11, 20).unwrap();
    let primary_alone = data_backup::retention::prune(&app.state.service.store, &policy, as_of, false).await.unwrap();

    let (status, _, plan) = app.post("/prune", &json!({"as_of": "2027-11-20"})).await;

    assert_eq!(status, 200, "{plan}");
    // The primary's answer is the prune it always was, with the copies beside it.
    let mut primary: Value = plan.clone();
    primary.as_object_mut().unwrap().remove("copies");
    assert_eq!(primary, serde_json::to_value(&primary_alone).unwrap());
    let (kept, deleted) = (entries(&plan, "kept"), entries(&plan, "deleted"));
    assert!(!kept.is_empty() && !deleted.is_empty(), "a year on, some go and some stay: {plan}");
    let answered: Vec<&str> = plan["copies"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(answered, ["s3-offsite", "azure"], "{plan}");
    let skipped_dates = |p: &Value| -> Vec<String> {
        p["skipped"].as_array().unwrap().iter().filter_map(|e| e["run_date"].as_str().map(str::to_owned)).collect()
    };
    assert_eq!(skipped_dates(&plan), ["2026-10-02"], "the held backup stays in the primary: {plan}");
    for copy in plan["copies"].as_array().unwrap() {
        assert_eq!(skipped_dates(copy), ["2026-10-02"], "and in the copy: {copy}");
        assert_eq!(entries(copy, "kept"), kept, "{copy}");
        assert_eq!(entries(copy, "deleted"), deleted, "{copy}");
        assert!(copy["error"].is_null(), "{copy}");
    }
    // The plain copy names the primary's very keys.
    let keys = |p: &Value, list: &str| -> Vec<Value> {
        p[list].as_array().unwrap().iter().map(|e| e["keys"].clone()).collect()
    };
    assert_eq!(keys(&plan["copies"][1], "kept"), keys(&plan, "kept"));
    assert_eq!(keys(&plan["copies"][1], "deleted"), keys(&plan, "deleted"));
}

#[tokio::test]
async fn an_applied_prune_deletes_from_a_copy_and_a_failing_copy_is_answered_not_fatal() {
    let src = source_db("copy_prune_apply");
    let copies = two_copies("copy-prune-apply");
    let missing = format!("s3://{}/p", unique_name("no-such-bucket").replace('_', "-").to_lowercase());
    let app = TestApp::spawn(&format!(
        "{}{}{}[retention.daily]\nkeep_days = 3\n[retention.weekly]\nkeep_days = 3\n[retention.monthly]\nkeep_days = 3\n\
         [retention.quarterly]\nkeep_days = 3\n",
        pg_source("pgsrc", &src.name),
        copy_toml("azure", &copies.az_url, &az_options(), &[]),
        copy_toml("gone", &missing, &s3_options(), &[]),
    ))
    .await;
    let today = chrono::Utc::now().date_naive();
    // Ten days ago, never a January 1 (a yearly backup, kept for years).
    let old =
        [10, 11].map(|n| today - chrono::Days::new(n)).into_iter().find(|d| chrono::Datelike::ordinal(d) != 1).unwrap();
    let mut keys = Vec::new();
    for date in [old, today] {
        let mut body = export_body(&src.name);
        body["run_date"] = json!(date.format("%Y-%m-%d").to_string());
        let (status, _, answer) = app.post("/export", &body).await;
        assert_eq!(status, 200, "{date}: {answer}");
        keys.push(answer["key"].as_str().unwrap().to_owned());
    }

    let (status, _, plan) = app.post("/prune", &json!({"apply": true})).await;

    assert_eq!(status, 200, "{plan}");
    assert!(!app.store_dir.path().join(&keys[0]).exists(), "expired in the primary: {plan}");
    assert_eq!(read_all(copies.az.as_ref(), &keys[0]).await, None, "and deleted from the copy: {plan}");
    let azure = plan["copies"].as_array().unwrap().iter().find(|c| c["name"] == "azure").expect("answered");
    assert!(azure["record"].is_string() && azure["error"].is_null(), "{azure}");
    assert!(read_all(copies.az.as_ref(), &keys[1]).await.is_some(), "today's stays");
    let gone = plan["copies"].as_array().unwrap().iter().find(|c| c["name"] == "gone").expect("answered");
    assert!(gone["error"].is_string(), "{gone}");
    assert!(plan["applied"] == true && plan["record"].is_string(), "the primary pruned: {plan}");
}
