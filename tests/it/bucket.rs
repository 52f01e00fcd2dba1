//! One conformance suite for the `Bucket` seam, run on every backend: the local directory,
//! fake-gcs-server (GCS JSON API), moto (S3) and azurite (Azure Blob).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use data_backup::model::{self, DatabaseName, DatabasePath, InstanceName, Label, ProjectId, RunDate};
use data_backup::retention::RetentionClass;
use data_backup::store::bucket::gcs::GcsBucket;
use data_backup::store::bucket::object_store::ObjectStoreBucket;
use data_backup::store::bucket::{Bucket, BucketError, ByteReader, PutOutcome};
use data_backup::store::layout::Key;
use data_backup::store::manifest::DumpFormat;
use futures::{StreamExt, TryStreamExt};
use proptest::prelude::{any, prop_oneof};
use proptest::strategy::{Strategy, ValueTree};
use serde_json::{Value, json};

use crate::support::{TestApp, required_env, unique_name};

fn reader(chunks: Vec<std::io::Result<Bytes>>) -> ByteReader {
    Box::pin(tokio_util::io::StreamReader::new(futures::stream::iter(chunks)))
}

/// Pseudo-random bytes that do not compress, `len` long.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

async fn read_all(bucket: &dyn Bucket, key: &str) -> Vec<u8> {
    let chunks: Vec<Bytes> = bucket.get_stream(key).await.unwrap().expect("object exists").try_collect().await.unwrap();
    chunks.concat()
}

async fn conformance(bucket: Arc<dyn Bucket>) {
    let b = bucket.as_ref();
    // Streamed put of a multi-part object, read back whole and streamed.
    let big = noise(12 * 1024 * 1024 + 123, 7);
    let chunks = big.chunks(1024 * 1024 - 1).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    let info = b.put_stream("dir/big.bin", reader(chunks)).await.unwrap();
    assert_eq!(info.size, big.len() as u64);
    assert_eq!(b.head("dir/big.bin").await.unwrap().unwrap().size, big.len() as u64);
    let mut streamed = Vec::new();
    let mut s = b.get_stream("dir/big.bin").await.unwrap().unwrap();
    while let Some(chunk) = s.next().await {
        streamed.extend_from_slice(&chunk.unwrap());
    }
    assert!(streamed == big, "streamed read equals what was written");

    // A source failing midway: an error, no new object, the old one untouched.
    b.put("dir/kept.bin", Bytes::from_static(b"old")).await.unwrap();
    let failing =
        reader(vec![Ok(Bytes::from(noise(9 * 1024 * 1024, 3))), Err(std::io::Error::other("dump tool died"))]);
    assert!(matches!(b.put_stream("dir/kept.bin", failing).await, Err(BucketError::Source(_))));
    let failing = reader(vec![Ok(Bytes::from_static(b"partial")), Err(std::io::Error::other("died"))]);
    assert!(matches!(b.put_stream("dir/never.bin", failing).await, Err(BucketError::Source(_))));
    assert_eq!(b.head("dir/never.bin").await.unwrap(), None, "nothing half-written is visible");
    assert_eq!(b.get("dir/kept.bin").await.unwrap().unwrap(), Bytes::from_static(b"old"));

    // Conditional create: exactly one winner, even concurrently.
    assert_eq!(b.put_if_absent("m/one.json", Bytes::from_static(b"first")).await.unwrap(), PutOutcome::Created);
    assert_eq!(b.put_if_absent("m/one.json", Bytes::from_static(b"second")).await.unwrap(), PutOutcome::AlreadyExists);
    assert_eq!(b.get("m/one.json").await.unwrap().unwrap(), Bytes::from_static(b"first"));
    let racers =
        futures::future::join_all((0..8).map(|i| b.put_if_absent("m/race.json", Bytes::from(format!("{i}"))))).await;
    let created = racers.iter().filter(|r| matches!(r, Ok(PutOutcome::Created))).count();
    assert_eq!(created, 1, "{racers:?}");

    // Overwrite, missing objects.
    b.put("m/latest.json", Bytes::from_static(b"v1")).await.unwrap();
    b.put("m/latest.json", Bytes::from_static(b"v2")).await.unwrap();
    assert_eq!(b.get("m/latest.json").await.unwrap().unwrap(), Bytes::from_static(b"v2"));
    assert_eq!(b.get("m/missing.json").await.unwrap(), None);
    assert_eq!(b.head("m/missing.json").await.unwrap(), None);
    assert!(b.get_stream("m/missing.json").await.unwrap().is_none());

    // List: sorted, relative keys, only under the prefix.
    let keys: Vec<String> = b.list("m").await.unwrap().into_iter().map(|o| o.key).collect();
    assert_eq!(keys, ["m/latest.json", "m/one.json", "m/race.json"]);
    let all: Vec<String> = b.list("").await.unwrap().into_iter().map(|o| o.key).collect();
    assert_eq!(all, ["dir/big.bin", "dir/kept.bin", "m/latest.json", "m/one.json", "m/race.json"]);

    // Delete, and delete of a missing object.
    b.delete("m/one.json").await.unwrap();
    assert_eq!(b.head("m/one.json").await.unwrap(), None);
    b.delete("m/one.json").await.unwrap();
    assert_eq!(b.put_if_absent("m/one.json", Bytes::from_static(b"again")).await.unwrap(), PutOutcome::Created);
}

fn url(s: &str) -> url::Url {
    url::Url::parse(s).unwrap()
}

/// Each backend, empty under a fresh prefix: the local directory (kept alive by the returned guard),
/// fake-gcs-server, moto and azurite.
async fn every_backend(tag: &str) -> (tempfile::TempDir, Vec<(&'static str, Arc<dyn Bucket>)>) {
    let dir = tempfile::tempdir().unwrap();
    let local = ObjectStoreBucket::open(&url(&format!("file://{}", dir.path().display())), &BTreeMap::new()).unwrap();
    let gcs = GcsBucket::new(
        &required_env("DATA_BACKUP_TEST_GCS_BUCKET"),
        &unique_name(tag),
        Some(&required_env("DATA_BACKUP_TEST_GCS_ENDPOINT")),
        true,
    )
    .await
    .unwrap();
    let s3_options = BTreeMap::from([
        ("aws_endpoint".to_owned(), required_env("DATA_BACKUP_TEST_S3_ENDPOINT")),
        ("aws_allow_http".to_owned(), "true".to_owned()),
        ("aws_region".to_owned(), "us-east-1".to_owned()),
        ("aws_access_key_id".to_owned(), "test".to_owned()),
        ("aws_secret_access_key".to_owned(), "test".to_owned()),
    ]);
    let s3_url = format!("s3://{}/{}", required_env("DATA_BACKUP_TEST_S3_BUCKET"), unique_name(tag));
    let s3 = ObjectStoreBucket::open(&url(&s3_url), &s3_options).unwrap();
    let az_options = BTreeMap::from([("azure_storage_use_emulator".to_owned(), "true".to_owned())]);
    let az_url = format!("az://{}/{}", required_env("DATA_BACKUP_TEST_AZURE_CONTAINER"), unique_name(tag));
    let az = ObjectStoreBucket::open(&url(&az_url), &az_options).unwrap();
    let backends: Vec<(&'static str, Arc<dyn Bucket>)> =
        vec![("local", Arc::new(local)), ("gcs", Arc::new(gcs)), ("s3", Arc::new(s3)), ("azure", Arc::new(az))];
    (dir, backends)
}

/// Names as hostile as a database can hold: any Unicode, `%`, `+`, `#`, `?`, quotes, spaces, `/`,
/// `\`, newlines, a leading `-`, combining marks, dots, up to the longest a key segment allows.
fn hostile_name() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => proptest::sample::select(vec![
            " ", "%", "%25", "%2F", "+", "#", "?", "&", "=", "'", "\"", "`", "-", "--", ".", "..", "/", "\\", "\n",
            "\t", "*", "~", "<!channel>", "é", "\u{301}", "🦀", "\u{FFFF}", "\u{85}", "\u{202E}", "ß", "日本",
        ])
        .prop_map(str::to_owned),
        2 => "[a-zA-Z0-9_]{1,8}",
        1 => any::<char>().prop_filter("no NUL", |c| *c != '\0').prop_map(String::from),
    ];
    prop_oneof![
        8 => proptest::collection::vec(piece, 1..12).prop_map(|p| p.concat()),
        1 => (1..=model::MAX_SEGMENT_BYTES).prop_map(|n| "x".repeat(n)),
        1 => (1..=model::MAX_SEGMENT_BYTES / 2).prop_map(|n| "é".repeat(n)),
    ]
}

#[tokio::test]
async fn every_name_round_trips_through_layout_bucket_list_and_parse_on_every_backend() {
    // Sampled once with a fixed seed, so every backend sees the same names and a failure repeats.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let triple = (hostile_name(), hostile_name(), hostile_name());
    let mut paths = Vec::new();
    while paths.len() < 48 {
        let (p, i, d) = triple.new_tree(&mut runner).unwrap().current();
        let (Ok(project), Ok(instance), Ok(database)) =
            (ProjectId::parse(&p), InstanceName::parse(&i), DatabaseName::parse(&d))
        else {
            // Only what no object key can hold is refused.
            for name in [&p, &i, &d] {
                assert!(
                    name.contains('\0') || model::key_segment(name).len() > model::MAX_SEGMENT_BYTES,
                    "{name:?} was refused"
                );
            }
            continue;
        };
        paths.push(DatabasePath { project, instance, database });
    }
    // The names that found the faults, always.
    for (p, i, d) in [("local", "127.0.0.1", "café app"), ("-p", "%", "--result-file=x.txt"), (".", "..", "a/b")] {
        paths.push(DatabasePath {
            project: ProjectId::parse(p).unwrap(),
            instance: InstanceName::parse(i).unwrap(),
            database: DatabaseName::parse(d).unwrap(),
        });
    }
    let date = RunDate::parse("2026-11-23").unwrap();
    let label = Label::parse("before <!here> 100% -x").unwrap();
    let keys: Vec<Key> = paths
        .iter()
        .flat_map(|db| {
            [
                Key::Dump {
                    class: RetentionClass::Weekly,
                    db: db.clone(),
                    date,
                    format: DumpFormat::MysqlSqlZstd,
                    encrypted: true,
                },
                Key::Manifest { class: RetentionClass::Weekly, db: db.clone(), date },
                Key::Latest { db: db.clone() },
                Key::Lease { db: db.clone(), date, seq: 1 },
                Key::Report { db: db.clone(), date },
                Key::Verification { db: db.clone(), date },
                Key::LabelManifest { label: label.clone(), db: db.clone() },
                Key::LabelDump {
                    label: label.clone(),
                    db: db.clone(),
                    format: DumpFormat::PgCustomZstd,
                    encrypted: false,
                },
                Key::LabelLease { label: label.clone(), db: db.clone(), seq: 2 },
                Key::Hold { db: db.clone(), date },
            ]
        })
        .collect();

    let (_dir, backends) = every_backend("names").await;
    for (backend, bucket) in backends {
        for key in &keys {
            let outcome = bucket.put_if_absent(&key.path(), Bytes::from(key.path())).await;
            assert!(matches!(outcome, Ok(PutOutcome::Created)), "{backend}: {key:?}: {outcome:?}");
        }
        let listed = bucket.list("").await.unwrap();
        let mut parsed = Vec::new();
        for object in &listed {
            let key = Key::parse(&object.key)
                .unwrap_or_else(|| panic!("{backend}: listed key {:?} does not parse", object.key));
            assert_eq!(key.path(), object.key, "{backend}: one spelling per key");
            parsed.push(key);
        }
        for key in &keys {
            assert!(parsed.contains(key), "{backend}: {key:?} not listed back as itself");
            let body = bucket.get(&key.path()).await.unwrap();
            assert_eq!(body, Some(Bytes::from(key.path())), "{backend}: {key:?}");
            assert_eq!(
                bucket.put_if_absent(&key.path(), Bytes::new()).await.unwrap(),
                PutOutcome::AlreadyExists,
                "{backend}: the second write of {key:?} finds the first"
            );
        }
        assert_eq!(listed.len(), keys.len(), "{backend}: nothing more, nothing less");
    }
}

#[tokio::test]
async fn local_directory_bucket_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = ObjectStoreBucket::open(&url(&format!("file://{}", dir.path().display())), &BTreeMap::new()).unwrap();
    conformance(Arc::new(bucket)).await;
}

#[tokio::test]
async fn gcs_bucket_keeps_the_contract_on_fake_gcs_server() {
    let endpoint = required_env("DATA_BACKUP_TEST_GCS_ENDPOINT");
    let name = required_env("DATA_BACKUP_TEST_GCS_BUCKET");
    let bucket = GcsBucket::new(&name, &unique_name("conf"), Some(&endpoint), true).await.unwrap();
    conformance(Arc::new(bucket)).await;
}

#[tokio::test]
async fn s3_bucket_keeps_the_contract_on_moto() {
    let endpoint = required_env("DATA_BACKUP_TEST_S3_ENDPOINT");
    let name = required_env("DATA_BACKUP_TEST_S3_BUCKET");
    let options = BTreeMap::from([
        ("aws_endpoint".to_owned(), endpoint),
        ("aws_allow_http".to_owned(), "true".to_owned()),
        ("aws_region".to_owned(), "us-east-1".to_owned()),
        ("aws_access_key_id".to_owned(), "test".to_owned()),
        ("aws_secret_access_key".to_owned(), "test".to_owned()),
    ]);
    let bucket = ObjectStoreBucket::open(&url(&format!("s3://{name}/{}", unique_name("conf"))), &options).unwrap();
    conformance(Arc::new(bucket)).await;
}

#[tokio::test]
async fn azure_bucket_keeps_the_contract_on_azurite() {
    let container = required_env("DATA_BACKUP_TEST_AZURE_CONTAINER");
    let options = BTreeMap::from([("azure_storage_use_emulator".to_owned(), "true".to_owned())]);
    let bucket = ObjectStoreBucket::open(&url(&format!("az://{container}/{}", unique_name("conf"))), &options).unwrap();
    conformance(Arc::new(bucket)).await;
}

#[tokio::test]
async fn export_into_gcs_writes_the_same_backup_layout() {
    let endpoint = required_env("DATA_BACKUP_TEST_GCS_ENDPOINT");
    let name = required_env("DATA_BACKUP_TEST_GCS_BUCKET");
    let prefix = unique_name("export");
    let src = crate::support::PgDb::create("gcs_src");
    src.sql("CREATE TABLE t AS SELECT g, md5(g::text) AS h FROM generate_series(1, 5000) g");
    let app = TestApp::spawn(&format!(
        "{}[store]\nurl = \"gs://{name}/{prefix}\"\n[gcp]\ncredentials = \"anonymous\"\nstorage_endpoint = \"{endpoint}\"\n",
        crate::support::pg_source("pgsrc", &src.name)
    ))
    .await;
    let body = json!({"project": "pgsrc", "instance": "pg", "database": src.name, "run_date": "2026-11-20"});

    let (status, _, answer) = app.post("/export", &body).await;
    let (again, _, second) = app.post("/export", &body).await;

    assert_eq!(status, 200, "{answer}");
    assert_eq!(again, 200);
    assert_eq!(second["status"], "already_exported");
    let bucket = GcsBucket::new(&name, &prefix, Some(&endpoint), true).await.unwrap();
    let key = answer["key"].as_str().unwrap();
    let dump = read_all(&bucket, key).await;
    assert_eq!(answer["manifest"]["bytes"], dump.len());
    let copy = crate::support::PgDb::create("gcs_restored");
    copy.restore(&zstd::decode_all(dump.as_slice()).unwrap());
    assert_eq!(copy.fingerprint(), src.fingerprint());
    let keys: Vec<String> = bucket.list("").await.unwrap().into_iter().map(|o| o.key).collect();
    assert!(keys.iter().any(|k| k.starts_with("latest/pgsrc/pg/")), "{keys:?}");
}

/// A retention asked again with an earlier date or a weaker mode (`keep_days` shortened, the lock
/// dropped) leaves the object's own as it is: fake-gcs-server, as GCS, refuses to shorten or unlock
/// a `Locked` one, so asking would fail the copy or export that asks. A later date extends an
/// `Unlocked` one. (GCS also extends a `Locked` one; fake-gcs-server refuses any change to it.)
#[tokio::test]
async fn a_gcs_retention_asked_again_is_never_shortened_or_weakened() {
    let endpoint = required_env("DATA_BACKUP_TEST_GCS_ENDPOINT");
    let name = required_env("DATA_BACKUP_TEST_GCS_BUCKET");
    let prefix = unique_name("keep");
    let bucket = GcsBucket::new(&name, &prefix, Some(&endpoint), true).await.unwrap();
    let (locked, unlocked) =
        ("daily/p/i/caf\u{e9} %x/2026-11-20/dump.manifest.json", "daily/p/i/d/2026-11-20/dump.manifest.json");
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&chrono::Utc);
    let retention = |key: &'static str| {
        let url = format!(
            "{endpoint}/storage/v1/b/{name}/o/{}",
            percent_encoding::utf8_percent_encode(&format!("{prefix}/{key}"), percent_encoding::NON_ALPHANUMERIC)
        );
        async move {
            let meta: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
            let mode = meta["retention"]["mode"].as_str().unwrap().to_owned();
            (mode, at(meta["retention"]["retainUntilTime"].as_str().unwrap()))
        }
    };
    for key in [locked, unlocked] {
        bucket.put(key, bytes::Bytes::from_static(b"{}")).await.unwrap();
    }

    assert!(bucket.retain_until(locked, at("2030-01-02T00:00:00Z"), true).await.unwrap());
    let asked_less = bucket.retain_until(locked, at("2029-01-02T00:00:00Z"), false).await;
    let kept = retention(locked).await;
    assert!(bucket.retain_until(unlocked, at("2030-01-02T00:00:00Z"), false).await.unwrap());
    assert!(bucket.retain_until(unlocked, at("2029-01-02T00:00:00Z"), false).await.unwrap());
    let unlocked_kept = retention(unlocked).await;
    assert!(bucket.retain_until(unlocked, at("2031-01-02T00:00:00Z"), false).await.unwrap());
    let extended = retention(unlocked).await;

    assert!(asked_less.is_ok(), "nothing is asked of a longer locked retention: {asked_less:?}");
    assert_eq!(kept, ("Locked".to_owned(), at("2030-01-02T00:00:00Z")), "never shortened nor unlocked");
    assert_eq!(unlocked_kept, ("Unlocked".to_owned(), at("2030-01-02T00:00:00Z")), "never shortened");
    assert_eq!(extended, ("Unlocked".to_owned(), at("2031-01-02T00:00:00Z")), "extended");
}

#[tokio::test]
async fn with_retention_lock_a_new_backup_is_retained_until_its_class_expires() {
    let endpoint = required_env("DATA_BACKUP_TEST_GCS_ENDPOINT");
    let name = required_env("DATA_BACKUP_TEST_GCS_BUCKET");
    let prefix = unique_name("locked");
    let src = crate::support::PgDb::create("lock_src");
    src.sql("CREATE TABLE t AS SELECT generate_series(1, 100) g");
    let app = TestApp::spawn(&format!(
        "{}[store]\nurl = \"gs://{name}/{prefix}\"\n[gcp]\ncredentials = \"anonymous\"\nstorage_endpoint = \"{endpoint}\"\n\
         [retention]\nlock = \"unlocked\"\n[retention.monthly]\nkeep_days = 400\n",
        crate::support::pg_source("pgsrc", &src.name)
    ))
    .await;
    let mut keys = Vec::new();
    // A Friday (daily: 9 days) and the first of a month (monthly: 400 days, as configured).
    for (date, until) in [("2026-11-20", "2026-11-30T00:00:00Z"), ("2026-11-01", "2027-12-07T00:00:00Z")] {
        let body = json!({"project": "pgsrc", "instance": "pg", "database": src.name, "run_date": date});
        let (status, _, answer) = app.post("/export", &body).await;
        assert_eq!(status, 200, "{answer}");
        let dump = answer["key"].as_str().unwrap().to_owned();
        keys.push((dump.replace(".dump.zst", ".manifest.json"), until));
        keys.push((dump, until));
    }

    let http = reqwest::Client::new();
    for (key, until) in keys {
        let object = format!("{prefix}/{key}");
        let url = format!(
            "{endpoint}/storage/v1/b/{name}/o/{}",
            percent_encoding::utf8_percent_encode(&object, percent_encoding::NON_ALPHANUMERIC)
        );
        let meta: Value = http.get(url).send().await.unwrap().json().await.unwrap();
        assert_eq!(meta["retention"]["mode"], "Unlocked", "{key}: {meta}");
        assert_eq!(meta["retention"]["retainUntilTime"], until, "{key}");
    }
}

#[test]
fn retention_lock_needs_a_gcs_store() {
    let err = data_backup::settings::Settings::from_toml(
        "[store]\nurl = \"file:///tmp/x\"\n[retention]\nlock = \"locked\"\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("retention.lock"), "{err}");
}
