//! S3 Object Lock on moto: a bucket made with Object Lock on, the store's retention and legal
//! hold calls against it (and against a bucket without it), and a `[[copies]]` entry with `lock`
//! and its own `[copies.retention]`: each copied object is retained until its class expires in
//! the copy, a delete of that version before then is refused, and the copy's prune follows its
//! own policy while the primary follows `[retention]`.

use chrono::{DateTime, NaiveDate, Utc};
use data_backup::store::bucket::Bucket;
use data_backup::store::bucket::object_store::ObjectStoreBucket;
use serde_json::json;

use crate::copies::{copy_toml, entries, export_body, keys_of, manifest, s3_options, source_db};
use crate::support::{TestApp, pg_source, required_env, unique_name};

/// moto checks no signature but wants one present before it answers the Object Lock calls.
const AUTH: &str =
    "AWS4-HMAC-SHA256 Credential=test/20261206/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";

fn endpoint() -> String {
    required_env("DATA_BACKUP_TEST_S3_ENDPOINT").trim_end_matches('/').to_owned()
}

/// A new moto bucket, with Object Lock on when `locked`; its name.
async fn new_bucket(tag: &str, locked: bool) -> String {
    let name = unique_name(tag).replace('_', "-").to_lowercase();
    let mut put = reqwest::Client::new().put(format!("{}/{name}", endpoint())).header("authorization", AUTH);
    if locked {
        put = put.header("x-amz-bucket-object-lock-enabled", "true");
    }
    let status = put.send().await.unwrap().status();
    assert!(status.is_success(), "creating the bucket {name}: {status}");
    name
}

/// The URL of the object `key` (as S3 names it) in `bucket`.
fn object_url(bucket: &str, key: &str) -> String {
    const SET: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');
    format!("{}/{bucket}/{}", endpoint(), percent_encoding::utf8_percent_encode(key, SET))
}

/// The Object Lock headers of `key` (its mode, retain-until date, legal hold) and its version.
async fn lock_of(bucket: &str, key: &str) -> (Option<String>, Option<DateTime<Utc>>, Option<String>, String) {
    let url = object_url(bucket, key);
    let head = reqwest::Client::new().head(url).header("authorization", AUTH).send().await.unwrap();
    assert!(head.status().is_success(), "HEAD {key}: {}", head.status());
    let header = |name: &str| head.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    let until = header("x-amz-object-lock-retain-until-date")
        .map(|d| DateTime::parse_from_rfc3339(&d).unwrap().with_timezone(&Utc));
    let version = header("x-amz-version-id").expect("a version (Object Lock buckets are versioned)");
    (header("x-amz-object-lock-mode"), until, header("x-amz-object-lock-legal-hold"), version)
}

/// The status of deleting the version `version` of `key`.
async fn delete_version(bucket: &str, key: &str, version: &str) -> u16 {
    let url = format!("{}?versionId={version}", object_url(bucket, key));
    reqwest::Client::new().delete(url).header("authorization", AUTH).send().await.unwrap().status().as_u16()
}

/// The one key under `bucket` (all of it, as S3 names it) that ends with `/{key}` and does not
/// begin with `besides`.
async fn stored_key(bucket: &str, key: &str, besides: &str) -> String {
    let whole = ObjectStoreBucket::open(&url::Url::parse(&format!("s3://{bucket}")).unwrap(), &s3_options()).unwrap();
    let keys: Vec<String> = whole.list("").await.unwrap().into_iter().map(|o| o.key).collect();
    let found: Vec<&String> =
        keys.iter().filter(|k| k.ends_with(&format!("/{key}")) && !k.starts_with(besides)).collect();
    assert_eq!(found.len(), 1, "{keys:?}");
    found[0].clone()
}

fn open(bucket: &str, prefix: &str) -> ObjectStoreBucket {
    ObjectStoreBucket::open(&url::Url::parse(&format!("s3://{bucket}/{prefix}")).unwrap(), &s3_options()).unwrap()
}

#[tokio::test]
async fn an_s3_store_retains_and_holds_objects_with_object_lock_and_says_when_its_bucket_cannot() {
    let bucket = new_bucket("lock-on", true).await;
    // A key with a space, a `%` and non-ASCII, as the layout writes names.
    let key = "daily/p/i/caf%C3%A9%20%25x/2026-11-20/dump.sql.gz";
    let store = open(&bucket, "locked");
    store.put(key, bytes::Bytes::from_static(b"backup")).await.unwrap();
    let until = DateTime::parse_from_rfc3339("2030-01-02T00:00:00Z").unwrap().with_timezone(&Utc);

    assert!(store.retain_until(key, until, true).await.unwrap(), "an Object Lock bucket retains");
    assert!(store.set_hold(key, true).await.unwrap(), "and holds");

    let (mode, retained, hold, version) = lock_of(&bucket, &format!("locked/{key}")).await;
    assert_eq!(mode.as_deref(), Some("COMPLIANCE"), "`locked` is compliance mode");
    assert_eq!(retained, Some(until));
    assert_eq!(hold.as_deref(), Some("ON"));
    assert_eq!(delete_version(&bucket, &format!("locked/{key}"), &version).await, 403, "a locked version stays");

    // Asked again after `keep_days` was shortened and the lock dropped (S3 refuses to shorten or
    // weaken a compliance retention): the object keeps what it has. Asked for longer: extended,
    // and still compliance.
    let shorter = until - chrono::Duration::days(365);
    let longer = until + chrono::Duration::days(30);
    store.retain_until(key, shorter, false).await.unwrap();
    let (kept_mode, kept_until, _, _) = lock_of(&bucket, &format!("locked/{key}")).await;
    store.retain_until(key, longer, false).await.unwrap();
    let (longer_mode, longer_until, _, _) = lock_of(&bucket, &format!("locked/{key}")).await;
    assert_eq!((kept_mode.as_deref(), kept_until), (Some("COMPLIANCE"), Some(until)), "never shortened");
    assert_eq!((longer_mode.as_deref(), longer_until), (Some("COMPLIANCE"), Some(longer)), "extended, as strict");

    // Without Object Lock on the bucket: no holds (as a file:// store), and a retention that
    // cannot be set is an error that says why.
    // A store whose URL's prefix is hostile (a space, `~`, `%`, non-ASCII): the lock names the very
    // object the store wrote.
    let hostile = open(&bucket, "off site~%25é");
    hostile.put(key, bytes::Bytes::from_static(b"backup")).await.unwrap();
    hostile.retain_until(key, until, false).await.unwrap();
    let (mode, retained, _, _) = lock_of(&bucket, &stored_key(&bucket, key, "locked/").await).await;
    assert_eq!((mode.as_deref(), retained), (Some("GOVERNANCE"), Some(until)));
    assert!(hostile.retention_available().await.unwrap(), "the bucket says it has Object Lock");

    let plain = open(&new_bucket("lock-off", false).await, "p");
    plain.put(key, bytes::Bytes::from_static(b"backup")).await.unwrap();
    assert!(!plain.set_hold(key, true).await.unwrap(), "no legal hold without Object Lock");
    let err = plain.retain_until(key, until, false).await.unwrap_err().to_string();
    assert!(err.contains("Object Lock"), "{err}");
    assert!(!plain.retention_available().await.unwrap(), "and says so before anything is written");
}

#[tokio::test]
async fn a_lock_asked_of_a_bucket_without_object_lock_refuses_to_start() {
    let plain = new_bucket("lock-none", false).await;
    for (toml, key) in [
        (
            format!("{}lock = \"locked\"\n", copy_toml("vault", &format!("s3://{plain}/c"), &s3_options(), &[])),
            "copies[0].lock",
        ),
        (
            format!(
                "[retention]\nlock = \"unlocked\"\n[store]\nurl = \"s3://{plain}/p\"\noptions = {}\n",
                serde_json::to_string(&s3_options()).unwrap().replace("\":", "\" =")
            ),
            "retention.lock",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let settings = crate::support::settings(dir.path(), &toml);
        let Err(err) = data_backup::app::Application::build(&settings).await else {
            panic!("{key} on a bucket without Object Lock must not start");
        };
        let err = err.to_string();
        assert!(err.contains(key) && err.contains("Object Lock"), "{err}");
    }
}

#[tokio::test]
async fn a_locked_copy_is_retained_until_its_own_class_expires_and_its_prune_keeps_its_own_policy() {
    let src = source_db("copy_lock");
    let bucket = new_bucket("copy-lock", true).await;
    let url = format!("s3://{bucket}/backups");
    // The copy keeps daily backups 400 days (the primary: 9) and locks them in governance mode.
    let copy = format!(
        "{}lock = \"unlocked\"\n[copies.retention.daily]\nkeep_days = 400\n",
        copy_toml("vault", &url, &s3_options(), &[])
    );
    let app = TestApp::spawn(&format!("{}{copy}", pg_source("pgsrc", &src.name))).await;

    let (status, _, body) = app.post("/export", &export_body(&src.name)).await;

    assert_eq!(status, 200, "{body}");
    let key = body["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("daily/"), "2026-11-20 is a daily-class day: {key}");
    let (manifest_key, _) = keys_of(&key);
    let vault = open(&bucket, "backups");
    assert!(manifest(&vault, &manifest_key).await.is_some(), "the copy committed");
    // Retained through the end of its 400th day in the copy: 2026-11-20 + 401 days.
    let expiry = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc()
        + chrono::Duration::days(401);
    for object in [&key, &manifest_key] {
        let (mode, until, _, version) = lock_of(&bucket, &format!("backups/{object}")).await;
        assert_eq!(mode.as_deref(), Some("GOVERNANCE"), "{object}");
        assert_eq!(until, Some(expiry), "{object}");
        assert_eq!(delete_version(&bucket, &format!("backups/{object}"), &version).await, 403, "{object} stays");
    }
    // A repeat copies nothing and keeps the lock.
    let (again, _, body) = app.post("/export", &export_body(&src.name)).await;
    assert_eq!((again, body["status"].as_str()), (200, Some("already_exported")), "{body}");
    assert_eq!(lock_of(&bucket, &format!("backups/{key}")).await.1, Some(expiry));

    // A week later's backup, so 2026-11-20's is not the newest (never pruned).
    let mut later = export_body(&src.name);
    later["run_date"] = json!("2026-11-27");
    assert_eq!(app.post("/export", &later).await.0, 200);

    // Half a year on, the primary's daily backup has expired (9 days), the copy's has not (400).
    let (status, _, plan) = app.post("/prune", &json!({"as_of": "2027-06-01"})).await;

    assert_eq!(status, 200, "{plan}");
    let backup = (format!("pgsrc/pg/{}", src.name), "daily".to_owned(), "2026-11-20".to_owned());
    assert!(entries(&plan, "deleted").contains(&backup), "the primary lets it go: {plan}");
    let vault_plan = &plan["copies"][0];
    assert_eq!(vault_plan["name"], "vault");
    assert!(entries(vault_plan, "kept").contains(&backup), "the copy keeps it: {vault_plan}");
    assert!(entries(vault_plan, "deleted").is_empty(), "{vault_plan}");
}
