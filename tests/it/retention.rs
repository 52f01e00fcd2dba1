//! Retention on real stores: a year of synthetic daily backups pruned to exactly the expected set
//! (local directory and fake-gcs-server), refusals of a locked object, `POST /prune`, the prune after
//! `/schedule`, the CLI, and the lifecycle rules (snapshots, fake-gcs-server's bucket update, moto's
//! lifecycle configuration).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{NaiveDate, Utc, Weekday};
use data_backup::model::{DatabaseRef, Engine, InstanceName, ProjectId, RunDate, SourceName};
use data_backup::retention::{ClassRule, LifecycleFormat, RetentionClass, RetentionPolicy, class_of, lifecycle, prune};
use data_backup::settings::Settings;
use data_backup::store::BackupStore;
use data_backup::store::bucket::gcs::GcsBucket;
use data_backup::store::bucket::object_store::ObjectStoreBucket;
use data_backup::store::bucket::{Bucket, BucketError, ByteReader, ByteStream, ObjectInfo, PutOutcome};
use data_backup::store::layout::{Key, Layout, path_of};
use data_backup::store::manifest::{DumpFormat, Manifest};
use data_backup::verify::VerificationRecord;
use serde_json::{Value, json};

use crate::support::{TestApp, pg_source, required_env, unique_name};

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn database(project: &str, name: &str) -> DatabaseRef {
    DatabaseRef {
        source: SourceName::parse(project).unwrap(),
        project: ProjectId::parse(project).unwrap(),
        instance: InstanceName::parse("pg").unwrap(),
        database: data_backup::model::DatabaseName::parse(name).unwrap(),
        engine: Engine::Postgres,
    }
}

/// Writes one small backup the way an export does: the dump, then its manifest (and `latest/`).
/// Answers (manifest key, dump key).
async fn write_backup(store: &BackupStore, db: &DatabaseRef, date: NaiveDate) -> (String, String) {
    let date = RunDate::from_date(date);
    let dump = store.layout().dump(db, date, DumpFormat::PgCustomZstd, false);
    let body = format!("dump of {db} on {date}").into_bytes();
    let reader: ByteReader = Box::pin(std::io::Cursor::new(body.clone()));
    let info = store.put_dump(&dump, reader).await.unwrap();
    let manifest: Manifest = serde_json::from_value(json!({
        "version": 1, "source": db.source, "project": db.project, "instance": db.instance,
        "database": db.database, "engine": "postgres", "run_date": date.to_string(), "run_id": "test",
        "class": store.layout().class(date).as_str(), "key": dump.path(), "format": "pg_custom_zstd",
        "compression": "zstd", "bytes": info.size, "started_at": "2026-01-01T00:00:00Z",
        "finished_at": "2026-01-01T00:00:01Z",
        "tools": {"dump": "pg_dump (PostgreSQL) 15", "server": "15", "data_backup": "test"}
    }))
    .unwrap();
    assert_eq!(store.commit(db, date, &manifest).await.unwrap(), PutOutcome::Created);
    (store.layout().manifest(db, date).path(), dump.path())
}

async fn keys(bucket: &dyn Bucket) -> BTreeSet<String> {
    bucket.list("").await.unwrap().into_iter().map(|o| o.key).collect()
}

/// A year of daily backups of two databases (`main/pg/app`, `legacy/pg/old`, the second with an
/// override), plus a label, a ledger and `latest/`; pruned as of yesterday, the store must hold
/// exactly the backups the policy promises to keep, and everything else it holds.
async fn a_year_of_backups_is_pruned_to_exactly_the_promised_set(store: BackupStore) {
    let as_of = Utc::now().date_naive() - chrono::Duration::days(1);
    let policy = RetentionPolicy::default()
        .with_source_rule("legacy", RetentionClass::Daily, ClassRule::keep(3))
        .with_source_rule("legacy", RetentionClass::Monthly, ClassRule::keep(100));
    let dbs = [database("main", "app"), database("legacy", "old")];
    let mut expected_kept = BTreeSet::new();
    let mut expected_deleted = BTreeSet::new();
    for db in &dbs {
        for age in 0..365 {
            let date = as_of - chrono::Duration::days(age);
            let (manifest, dump) = write_backup(&store, db, date).await;
            let class = class_of(date, Weekday::Mon);
            let keep = match (db.project.as_str(), class) {
                ("legacy", RetentionClass::Daily) => 3,
                ("legacy", RetentionClass::Monthly) => 100,
                _ => class.default_keep_days(),
            };
            let set = if age <= i64::from(keep) { &mut expected_kept } else { &mut expected_deleted };
            set.insert(manifest);
            set.insert(dump);
        }
    }
    let bucket = store.bucket().clone();
    bucket.put("labels/main/pg/app/release-1/app.dump.zst", Bytes::from_static(b"named")).await.unwrap();
    bucket.put("runs/2020-01-01/000000-test.json", Bytes::from_static(b"{}")).await.unwrap();
    let before = keys(bucket.as_ref()).await;
    let untouched: BTreeSet<String> =
        before.iter().filter(|k| !expected_kept.contains(*k) && !expected_deleted.contains(*k)).cloned().collect();
    assert!(untouched.contains("latest/main/pg/app.json") && untouched.len() == 4, "{untouched:?}");

    let dry = prune(&store, &policy, as_of, false).await.unwrap();
    assert!(!dry.applied);
    assert_eq!(dry.actions().map(str::to_owned).collect::<BTreeSet<_>>(), expected_deleted);
    assert_eq!(keys(bucket.as_ref()).await, before, "a dry run deletes nothing");

    let applied = prune(&store, &policy, as_of, true).await.unwrap();
    assert!(applied.applied && applied.skipped.is_empty(), "{:?}", applied.skipped);
    assert_eq!(applied.deleted, dry.deleted);
    assert_eq!(applied.bytes_freed, dry.bytes_freed);
    let after = keys(bucket.as_ref()).await;
    let mut expected: BTreeSet<String> = expected_kept.union(&untouched).cloned().collect();
    expected.insert(applied.record.clone().expect("the applied prune is recorded"));
    assert_eq!(after, expected);
    // Kept: 10 daily of main (and 4 of legacy), ~6 weeks of Mondays, every first of a month (main),
    // the last 100 days' firsts (legacy).
    assert!(applied.kept.len() > 40, "{}", applied.kept.len());

    let again = prune(&store, &policy, as_of, true).await.unwrap();
    assert!(again.deleted.is_empty() && again.bytes_freed == 0);
}

fn local_store(dir: &std::path::Path) -> BackupStore {
    let url = url::Url::parse(&format!("file://{}", dir.display())).unwrap();
    BackupStore::new(Arc::new(ObjectStoreBucket::open(&url, &BTreeMap::new()).unwrap()), Layout::default())
}

#[tokio::test]
async fn prune_keeps_exactly_the_promised_year_of_backups_in_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    a_year_of_backups_is_pruned_to_exactly_the_promised_set(local_store(dir.path())).await;
}

#[tokio::test]
async fn prune_keeps_exactly_the_promised_year_of_backups_on_fake_gcs_server() {
    let endpoint = required_env("DATA_BACKUP_TEST_GCS_ENDPOINT");
    let name = required_env("DATA_BACKUP_TEST_GCS_BUCKET");
    let bucket = GcsBucket::new(&name, &unique_name("prune"), Some(&endpoint), true).await.unwrap();
    a_year_of_backups_is_pruned_to_exactly_the_promised_set(BackupStore::new(Arc::new(bucket), Layout::default()))
        .await;
}

#[tokio::test]
async fn prune_never_deletes_the_newest_backup_even_when_expired() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path());
    let db = database("main", "app");
    let (old_manifest, old_dump) = write_backup(&store, &db, d("2025-01-06")).await; // a Monday: weekly
    let (newest_manifest, newest_dump) = write_backup(&store, &db, d("2025-01-08")).await;

    let plan = prune(&store, &RetentionPolicy::default(), d("2025-12-31"), true).await.unwrap();

    assert_eq!(plan.actions().collect::<Vec<_>>(), [old_manifest.as_str(), old_dump.as_str()]);
    let left = keys(store.bucket().as_ref()).await;
    assert!(left.contains(&newest_manifest) && left.contains(&newest_dump), "{left:?}");
    assert!(plan.kept[0].reason.contains("newest"), "{plan:?}");
}

/// Writes the record of a restore drill of `db`'s backup of `date`, as `verify` does. Answers its key.
async fn write_verification(store: &BackupStore, db: &DatabaseRef, date: NaiveDate, ok: bool) -> String {
    let key = Key::Verification { db: path_of(db), date: RunDate::from_date(date) };
    let record: VerificationRecord = serde_json::from_value(json!({
        "version": 1, "project": db.project, "instance": db.instance, "database": db.database,
        "engine": "postgres", "run_date": date.to_string(), "key": "k",
        "result": if ok { "ok" } else { "failed" },
        "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:05Z", "duration_secs": 5.0,
        "server": "postgres://127.0.0.1:5432/", "scratch_database": "data_backup_verify_0", "bytes_checked": 10,
        "row_counts_compared": true, "tables": [], "checks": [],
        "errors": if ok { json!([]) } else { json!(["row count of public.t: the manifest records 3, the restore holds 2"]) }
    }))
    .unwrap();
    store.bucket().put(&key.path(), Bytes::from(serde_json::to_vec(&record).unwrap())).await.unwrap();
    key.path()
}

#[tokio::test]
async fn prune_keeps_the_newest_verified_backup_even_when_expired_and_older_than_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path());
    let db = database("main", "app");
    let verified = write_backup(&store, &db, d("2025-01-08")).await;
    let failed_drill = write_backup(&store, &db, d("2025-01-09")).await;
    let newest = write_backup(&store, &db, d("2025-01-10")).await;
    let verified_record = write_verification(&store, &db, d("2025-01-08"), true).await;
    write_verification(&store, &db, d("2025-01-09"), false).await;

    let plan = prune(&store, &RetentionPolicy::default(), d("2025-12-31"), true).await.unwrap();

    let left = keys(store.bucket().as_ref()).await;
    for kept in [&verified.0, &verified.1, &verified_record, &newest.0, &newest.1] {
        assert!(left.contains(kept), "{kept} was deleted: {left:?}");
    }
    assert!(!left.contains(&failed_drill.0) && !left.contains(&failed_drill.1), "a failed drill protects nothing");
    let reasons: Vec<(&str, &str)> =
        plan.kept.iter().map(|e| (e.run_date.as_deref().unwrap(), e.reason.as_str())).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].0 == "2025-01-08" && reasons[0].1.contains("newest verified backup"), "{reasons:?}");
    assert!(reasons[1].0 == "2025-01-10" && reasons[1].1.contains("newest backup"), "{reasons:?}");

    // Once a newer backup is verified, the older verified one is no longer protected.
    write_verification(&store, &db, d("2025-01-10"), true).await;
    let plan = prune(&store, &RetentionPolicy::default(), d("2025-12-31"), true).await.unwrap();
    assert_eq!(plan.deleted.iter().map(|e| e.run_date.as_deref().unwrap()).collect::<Vec<_>>(), ["2025-01-08"]);
}

#[tokio::test]
async fn prune_deletes_a_backups_verification_record_after_its_dump() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path());
    let db = database("main", "app");
    let (old_manifest, old_dump) = write_backup(&store, &db, d("2025-01-07")).await;
    let (newest_manifest, _) = write_backup(&store, &db, d("2025-01-10")).await;
    let old_record = write_verification(&store, &db, d("2025-01-07"), false).await;
    let newest_record = write_verification(&store, &db, d("2025-01-10"), true).await;

    let dry = prune(&store, &RetentionPolicy::default(), d("2025-12-31"), false).await.unwrap();
    let applied = prune(&store, &RetentionPolicy::default(), d("2025-12-31"), true).await.unwrap();

    let expected = [old_manifest.as_str(), old_dump.as_str(), old_record.as_str()];
    assert_eq!(dry.actions().collect::<Vec<_>>(), expected, "manifest, dump, then the record");
    assert_eq!(applied.actions().collect::<Vec<_>>(), expected);
    assert_eq!(applied.bytes_freed, dry.bytes_freed);
    assert!(applied.deleted[0].bytes > 0);
    let left = keys(store.bucket().as_ref()).await;
    assert!(!left.contains(&old_record) && left.contains(&newest_record) && left.contains(&newest_manifest));
}

#[tokio::test]
async fn every_applied_prune_is_recorded_in_the_store_and_a_dry_run_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path());
    let db = database("main", "app");
    write_backup(&store, &db, d("2025-01-07")).await;
    write_backup(&store, &db, d("2025-01-08")).await;
    let locked_dump = write_backup(&store, &db, d("2025-01-09")).await.1;
    write_backup(&store, &db, d("2025-01-10")).await;
    let locked = LockedBucket { inner: store.bucket().clone(), locked: [locked_dump.clone()].into() };
    let locked = BackupStore::new(Arc::new(locked), Layout::default());

    let dry = prune(&locked, &RetentionPolicy::default(), d("2025-12-31"), false).await.unwrap();
    assert_eq!(dry.record, None);
    assert!(
        !keys(store.bucket().as_ref()).await.iter().any(|k| k.starts_with("reports/")),
        "a dry run records nothing"
    );

    let applied = prune(&locked, &RetentionPolicy::default(), d("2025-12-31"), true).await.unwrap();

    let key = applied.record.clone().expect("an applied prune names its record");
    let today = Utc::now().date_naive().to_string();
    assert!(key.starts_with(&format!("reports/prune/{today}/")) && key.ends_with(".json"), "{key}");
    let record: Value = serde_json::from_slice(&store.bucket().get(&key).await.unwrap().unwrap()).unwrap();
    let answered = serde_json::to_value(&applied).unwrap();
    for field in ["as_of", "applied", "kept", "deleted", "skipped", "bytes_freed"] {
        assert_eq!(record[field], answered[field], "{field}: {record}");
    }
    assert_eq!(record["deleted"].as_array().unwrap().len(), 3, "{record}");
    assert!(record["skipped"][0]["reason"].as_str().unwrap().contains("retention lock"), "{record}");
    assert!(record["bytes_freed"].as_u64().unwrap() > 0);
    assert_eq!(record["id"].as_str(), key.rsplit('/').next().unwrap().strip_suffix(".json"));
    assert!(record["started_at"].is_string() && record["finished_at"].is_string() && record.get("run_id").is_none());
}

/// A bucket whose objects in `locked` cannot be deleted, as under a retention lock or hold (GCS
/// answers 403 `retentionPolicyNotMet`/object hold, classified `Permanent`).
#[derive(Debug)]
struct LockedBucket {
    inner: Arc<dyn Bucket>,
    locked: BTreeSet<String>,
}

#[async_trait]
impl Bucket for LockedBucket {
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
        if self.locked.contains(key) {
            return Err(BucketError::Permanent(format!("HTTP 403: object {key} is subject to a retention policy")));
        }
        self.inner.delete(key).await
    }
}

#[tokio::test]
async fn prune_skips_and_reports_objects_under_a_retention_lock_and_deletes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let plain = local_store(dir.path());
    let db = database("main", "app");
    let (a_manifest, a_dump) = write_backup(&plain, &db, d("2025-01-13")).await;
    let (b_manifest, b_dump) = write_backup(&plain, &db, d("2025-01-14")).await;
    let (c_manifest, c_dump) = write_backup(&plain, &db, d("2025-01-15")).await;
    let newest = write_backup(&plain, &db, d("2025-01-16")).await;
    let locked = LockedBucket { inner: plain.bucket().clone(), locked: [a_manifest.clone(), b_dump.clone()].into() };
    let store = BackupStore::new(Arc::new(locked), Layout::default());

    let plan = prune(&store, &RetentionPolicy::default(), d("2025-03-01"), true).await.unwrap();

    let left = keys(plain.bucket().as_ref()).await;
    // A: its manifest is locked, so nothing of it goes (the dump stays with its manifest).
    assert!(left.contains(&a_manifest) && left.contains(&a_dump));
    // B: the manifest went first; the locked dump stays, an orphan no manifest points at.
    assert!(!left.contains(&b_manifest) && left.contains(&b_dump));
    // C: deleted whole; the newest: kept.
    assert!(!left.contains(&c_manifest) && !left.contains(&c_dump));
    assert!(left.contains(&newest.0) && left.contains(&newest.1));
    let skipped: Vec<(Vec<String>, bool)> =
        plan.skipped.iter().map(|e| (e.keys.clone(), e.reason.contains("retention lock"))).collect();
    assert_eq!(skipped, [(vec![a_manifest, a_dump], true), (vec![b_dump], true)]);
    let deleted: Vec<&str> = plan.actions().collect();
    assert_eq!(deleted, [b_manifest.as_str(), c_manifest.as_str(), c_dump.as_str()]);
}

#[tokio::test]
async fn prune_refuses_to_apply_as_of_a_day_that_has_not_come() {
    let dir = tempfile::tempdir().unwrap();
    let tomorrow = Utc::now().date_naive() + chrono::Duration::days(1);
    let store = local_store(dir.path());
    let err = prune(&store, &RetentionPolicy::default(), tomorrow, true).await.unwrap_err();
    assert!(err.to_string().contains("future"), "{err}");
    assert!(prune(&store, &RetentionPolicy::default(), tomorrow, false).await.is_ok(), "a dry run may look ahead");
}

// --- POST /prune and the prune after /schedule ------------------------------------------------

/// Three weeks of January 2025 for `pgsrc/pg/app`.
pub(crate) async fn january(app: &TestApp) {
    let db = database("pgsrc", "app");
    for day in 1..=21 {
        write_backup(&app.state.service.store, &db, NaiveDate::from_ymd_opt(2025, 1, day).unwrap()).await;
    }
}

/// The plan with its byte counts checked and replaced by `"[bytes]"`, so the snapshot does not
/// depend on the size of a manifest.
fn without_sizes(plan: &Value) -> Value {
    let mut plan = plan.clone();
    let deleted: u64 = plan["deleted"].as_array().unwrap().iter().map(|e| e["bytes"].as_u64().unwrap()).sum();
    assert_eq!(plan["bytes_freed"], deleted);
    plan["bytes_freed"] = json!("[bytes]");
    for list in ["kept", "deleted", "skipped"] {
        for entry in plan[list].as_array_mut().unwrap() {
            assert!(entry["bytes"].as_u64().unwrap() > 0);
            entry["bytes"] = json!("[bytes]");
        }
    }
    plan
}

fn backups_in(files: &[String]) -> Vec<String> {
    files.iter().filter(|f| f.ends_with(".manifest.json") && !f.starts_with("latest/")).cloned().collect()
}

#[tokio::test]
async fn post_prune_answers_the_plan_and_deletes_only_when_asked() {
    let app = TestApp::spawn(&pg_source("pgsrc", "never_matches_*")).await;
    january(&app).await;
    let before = app.store_files();

    let (status, _, plan) = app.post("/prune", &json!({"as_of": "2025-01-25"})).await;

    assert_eq!(status, 200, "{plan}");
    assert_eq!(app.store_files(), before, "a dry run deletes nothing");
    insta::assert_json_snapshot!("post_prune_dry_run", without_sizes(&plan));

    let r = app.client.post(format!("{}/prune?apply=true&as_of=2025-01-25", app.address)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let applied: Value = r.json().await.unwrap();
    assert_eq!(applied["applied"], true);
    assert_eq!(applied["deleted"], plan["deleted"]);
    let record = applied["record"].as_str().expect("the applied prune's record");
    assert!(app.store_files().iter().any(|f| f == record), "{record} is in the store");
    assert_eq!(plan.get("record"), None, "a dry run records nothing");
    // As of 2025-01-25: daily kept 9 days, weekly (Mondays) 40, 1 January is yearly.
    assert_eq!(
        backups_in(&app.store_files()),
        [
            "daily/pgsrc/pg/app/2025-01-16/app.manifest.json",
            "daily/pgsrc/pg/app/2025-01-17/app.manifest.json",
            "daily/pgsrc/pg/app/2025-01-18/app.manifest.json",
            "daily/pgsrc/pg/app/2025-01-19/app.manifest.json",
            "daily/pgsrc/pg/app/2025-01-21/app.manifest.json",
            "weekly/pgsrc/pg/app/2025-01-06/app.manifest.json",
            "weekly/pgsrc/pg/app/2025-01-13/app.manifest.json",
            "weekly/pgsrc/pg/app/2025-01-20/app.manifest.json",
            "yearly/pgsrc/pg/app/2025-01-01/app.manifest.json",
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn post_prune_refuses_bad_options_naming_them() {
    let app = TestApp::spawn(&pg_source("pgsrc", "never_matches_*")).await;
    let tomorrow = (Utc::now().date_naive() + chrono::Duration::days(1)).to_string();
    let cases = [
        ("/prune", json!({"as_of": "2025-13-01"}), 422, "as_of"),
        ("/prune", json!({"as_of": tomorrow, "apply": true}), 422, "as_of"),
        ("/prune", json!({"colour": 1}), 400, "unknown field `colour`"),
        ("/prune?as_of=2025-01-01", json!({"as_of": "2025-01-02"}), 400, "as_of"),
        ("/prune?apply=maybe", json!({}), 400, "apply"),
    ];
    for (path, body, status, expected) in cases {
        let (got, headers, problem) = app.post(path, &body).await;
        assert_eq!(got, status, "{path} {body}: {problem}");
        assert_eq!(headers["content-type"], "application/problem+json");
        let text = format!("{} {}", problem["detail"], problem["field"]);
        assert!(text.contains(expected), "{path} {body}: {problem}");
    }
    let (status, _, plan) = app.post("/prune", &json!({"as_of": tomorrow})).await;
    assert_eq!((status, &plan["applied"]), (200, &json!(false)), "a dry run may look ahead: {plan}");
    app.stop().await;
}

#[tokio::test]
async fn schedule_prunes_after_enqueueing_when_configured() {
    let off = TestApp::spawn(&pg_source("pgsrc", "never_matches_*")).await;
    let on =
        TestApp::spawn(&format!("{}[retention]\nprune_after_schedule = true\n", pg_source("pgsrc", "never_matches_*")))
            .await;
    january(&off).await;
    january(&on).await;

    let (status_off, _, _) = off.post("/schedule", &json!({})).await;
    let (status_on, _, summary) = on.post("/schedule", &json!({})).await;

    assert_eq!((status_off, status_on), (200, 200), "{summary}");
    assert_eq!(backups_in(&off.store_files()).len(), 21, "no prune unless configured");
    // As of today every January 2025 backup is expired but the yearly one and the newest.
    assert_eq!(
        backups_in(&on.store_files()),
        ["daily/pgsrc/pg/app/2025-01-21/app.manifest.json", "yearly/pgsrc/pg/app/2025-01-01/app.manifest.json"]
    );
    assert!(on.store_files().iter().any(|f| f.starts_with("runs/")), "the run ledger stays");
    // The prune is recorded under the run's id, next to its ledger.
    let record = format!("reports/prune/{}/{}.json", Utc::now().date_naive(), summary["run_id"].as_str().unwrap());
    let recorded: Value =
        serde_json::from_str(&std::fs::read_to_string(on.store_dir.path().join(&record)).unwrap()).unwrap();
    assert_eq!((recorded["run_id"].as_str(), recorded["applied"].as_bool()), (summary["run_id"].as_str(), Some(true)));
    assert_eq!(recorded["deleted"].as_array().unwrap().len(), 19, "{recorded}");
    assert!(!off.store_files().iter().any(|f| f.starts_with("reports/prune/")));
    off.stop().await;
    on.stop().await;
}

// --- the CLI -------------------------------------------------------------------------------

#[tokio::test]
async fn cli_prune_prints_the_plan_and_applies_it_only_with_apply() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"file://{}\"\n{}[retention.daily]\nkeep_days = 2\n",
            store_dir.display(),
            pg_source("pgsrc", "never_matches_*")
        ),
    )
    .unwrap();
    std::fs::create_dir_all(&store_dir).unwrap();
    let store = local_store(&store_dir);
    let db = database("pgsrc", "app");
    for day in 7..=10 {
        write_backup(&store, &db, NaiveDate::from_ymd_opt(2025, 1, day).unwrap()).await;
    }

    let (ok, out, err) = crate::support::cli(&config, &["prune", "--as-of", "2025-01-11"]);
    assert!(ok, "{err}");
    let dry: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((dry["applied"].as_bool(), dry["deleted"].as_array().map(Vec::len)), (Some(false), Some(2)), "{dry}");
    assert_eq!(backups_in(&crate::support::files_under(&store_dir)).len(), 4);

    let (ok, out, err) = crate::support::cli(&config, &["prune", "--apply", "--as-of", "2025-01-11"]);
    assert!(ok, "{err}");
    let applied: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(applied["deleted"], dry["deleted"]);
    assert_eq!(
        backups_in(&crate::support::files_under(&store_dir)),
        ["daily/pgsrc/pg/app/2025-01-09/app.manifest.json", "daily/pgsrc/pg/app/2025-01-10/app.manifest.json"]
    );

    let (ok, _, err) = crate::support::cli(&config, &["prune", "--as-of", "11/01/2025"]);
    assert!(!ok && err.contains("as_of"), "{err}");
    let (ok, out, err) = crate::support::cli(&config, &["lifecycle", "--format", "gcs"]);
    assert!(ok, "{err}");
    let settings = Settings::load(Some(&config)).unwrap();
    let policy = RetentionPolicy::from_settings(&settings).unwrap();
    assert_eq!(out, lifecycle(&policy, &settings.store.url, LifecycleFormat::Gcs).unwrap());
    let (ok, _, err) = crate::support::cli(&config, &["lifecycle", "--format", "azure"]);
    assert!(!ok && err.contains("gcs"), "{err}");
}

// --- lifecycle rules ------------------------------------------------------------------------

/// A policy with every feature: colder storage per class, and an override for one source.
fn full_policy(store_url: &str) -> (Settings, RetentionPolicy) {
    let settings = Settings::from_toml(&format!(
        "[store]\nurl = \"{store_url}\"\n\
         [[sources]]\nname = \"main\"\nkind = \"postgres\"\nurl = \"postgres://db/\"\n\
         [[sources]]\nname = \"legacy\"\nkind = \"mysql\"\nurl = \"mysql://db/\"\n\
         [retention.weekly]\ncolder_after_days = 30\n\
         [retention.monthly]\ncolder_after_days = 60\ncolder_storage = \"coldline\"\n\
         [retention.quarterly]\ncolder_after_days = 90\ncolder_storage = \"archive\"\n\
         [retention.yearly]\ncolder_after_days = 365\ncolder_storage = \"archive\"\n\
         [retention.sources.legacy.daily]\nkeep_days = 30\n"
    ))
    .unwrap();
    let policy = RetentionPolicy::from_settings(&settings).unwrap();
    (settings, policy)
}

#[test]
fn lifecycle_rules_render_the_policy_for_gcs_s3_and_terraform() {
    let (_, policy) = full_policy("gs://backups/prod/db");
    let gcs: Value =
        serde_json::from_str(&lifecycle(&policy, "gs://backups/prod/db", LifecycleFormat::Gcs).unwrap()).unwrap();
    insta::assert_json_snapshot!("lifecycle_gcs", gcs);
    let s3: Value =
        serde_json::from_str(&lifecycle(&policy, "s3://backups/prod", LifecycleFormat::S3).unwrap()).unwrap();
    insta::assert_json_snapshot!("lifecycle_s3", s3);
    insta::assert_snapshot!(
        "lifecycle_terraform_gcs",
        lifecycle(&policy, "gs://backups/prod/db", LifecycleFormat::Terraform).unwrap()
    );
    insta::assert_snapshot!(
        "lifecycle_terraform_s3",
        lifecycle(&policy, "s3://backups/prod", LifecycleFormat::Terraform).unwrap()
    );
    let defaults = Settings::from_toml("").unwrap();
    let default_policy = RetentionPolicy::from_settings(&defaults).unwrap();
    let gcs: Value =
        serde_json::from_str(&lifecycle(&default_policy, "gs://backups", LifecycleFormat::Gcs).unwrap()).unwrap();
    insta::assert_json_snapshot!("lifecycle_gcs_defaults", gcs);
}

#[tokio::test]
async fn gcs_lifecycle_json_is_accepted_by_fake_gcs_servers_bucket_update() {
    let endpoint = required_env("DATA_BACKUP_TEST_GCS_ENDPOINT");
    let http = reqwest::Client::new();
    let bucket = unique_name("lifecycle").to_lowercase().replace('_', "-");
    let created = http.post(format!("{endpoint}/storage/v1/b")).json(&json!({"name": bucket})).send().await.unwrap();
    assert!(created.status().is_success(), "{}", created.text().await.unwrap());
    let (_, policy) = full_policy(&format!("gs://{bucket}/prod"));
    let body: Value =
        serde_json::from_str(&lifecycle(&policy, &format!("gs://{bucket}/prod"), LifecycleFormat::Gcs).unwrap())
            .unwrap();

    let patched = http.patch(format!("{endpoint}/storage/v1/b/{bucket}")).json(&body).send().await.unwrap();

    let status = patched.status();
    let answer: Value = patched.json().await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["name"], bucket.as_str());
    // fake-gcs-server's bucket update stores only versioning and defaultEventBasedHold and drops
    // `lifecycle` without checking it; should it ever keep it, it must be what we sent.
    if let Some(stored) = answer.get("lifecycle") {
        assert_eq!(stored, &body["lifecycle"]);
    }
}

/// The S3 JSON as the XML body of `PUT ?lifecycle` (element names are the JSON keys; `Rules` and
/// `Transitions` are repeated `Rule` and `Transition` elements).
fn s3_xml(config: &Value) -> String {
    fn element(name: &str, value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                out.push_str(&format!("<{name}>"));
                for (k, v) in map {
                    element(k, v, out);
                }
                out.push_str(&format!("</{name}>"));
            }
            Value::Array(items) => {
                let single = name.strip_suffix('s').unwrap_or(name);
                for item in items {
                    element(single, item, out);
                }
            }
            Value::String(s) => out.push_str(&format!("<{name}>{s}</{name}>")),
            other => out.push_str(&format!("<{name}>{other}</{name}>")),
        }
    }
    let mut out = String::from("<LifecycleConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    element("Rules", &config["Rules"], &mut out);
    out.push_str("</LifecycleConfiguration>");
    out
}

#[tokio::test]
async fn s3_lifecycle_rules_are_accepted_and_stored_by_moto() {
    let endpoint = required_env("DATA_BACKUP_TEST_S3_ENDPOINT");
    let http = reqwest::Client::new();
    let bucket = unique_name("lifecycle").to_lowercase().replace('_', "-");
    let created = http.put(format!("{endpoint}/{bucket}")).send().await.unwrap();
    assert!(created.status().is_success(), "{}", created.text().await.unwrap());
    let url = format!("s3://{bucket}/prod");
    let (_, policy) = full_policy(&url);
    let config: Value = serde_json::from_str(&lifecycle(&policy, &url, LifecycleFormat::S3).unwrap()).unwrap();

    let put = http
        .put(format!("{endpoint}/{bucket}?lifecycle"))
        .header("content-type", "application/xml")
        .body(s3_xml(&config))
        .send()
        .await
        .unwrap();
    let put_status = put.status();
    assert!(put_status.is_success(), "{put_status}: {}", put.text().await.unwrap());
    let stored = http.get(format!("{endpoint}/{bucket}?lifecycle")).send().await.unwrap().text().await.unwrap();

    let rules = config["Rules"].as_array().unwrap();
    assert_eq!(stored.matches("<Rule>").count(), rules.len(), "{stored}");
    for rule in rules {
        for text in [&rule["ID"], &rule["Filter"]["Prefix"]] {
            assert!(stored.contains(&format!(">{}<", text.as_str().unwrap())), "{text} in {stored}");
        }
        assert!(stored.contains(&format!("<Days>{}</Days>", rule["Expiration"]["Days"])), "{stored}");
    }
    assert!(stored.contains("<StorageClass>GLACIER_IR</StorageClass>") && stored.contains("<DaysAfterInitiation>2<"));
}
