//! Cloud SQL exports against the stateful Cloud SQL Admin fake, whose exports really dump the
//! local PostgreSQL server into fake-gcs-server: success restored with `psql` and compared with the
//! source; a deadline then a resume that attaches (one operation across all attempts); a busy
//! instance; a crash between export and manifest (adopted, not exported again); an object left by
//! an earlier attempt, complete or truncated; a permission error reported once, with the fix, on
//! the webhook and on Pub/Sub; the retry threshold of transient failures; two concurrent
//! deliveries of one task. Every engine (PostgreSQL, MySQL, SQL Server's BAK, the serverless
//! `offload` path) exported with only project, instance and database, the engine read from the
//! instance; an `engine` that contradicts the instance refused before anything starts; the object
//! an earlier wrong-engine attempt left adopted; `data-backup export` of a Cloud SQL database.

use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use data_backup::store::bucket::Bucket;
use data_backup::store::bucket::gcs::GcsBucket;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::fakes::google::{FakeInstance, Org, SqlAccess, shared};
use crate::support::fakes::pubsub::PubSubFake;
use crate::support::fakes::sql_admin::SqlAdminFake;
use crate::support::{MyDb, PgDb, TestApp, required_env, unique_name};

const TOPIC: &str = "projects/ops/topics/backup-reports";
const RUN_DATE: &str = "2026-11-20";

/// The fakes, the bucket and the service of one test.
struct CloudSql {
    sql: SqlAdminFake,
    pubsub: PubSubFake,
    hook: MockServer,
    bucket: GcsBucket,
    bucket_name: String,
    prefix: String,
    src: PgDb,
    app: TestApp,
    /// The service's settings (TOML), for the command line.
    toml: String,
}

impl CloudSql {
    /// A PostgreSQL instance `p-sql:pg` holding one real database, and the service with `[export]`
    /// `extra` settings.
    async fn start(export: &str) -> Self {
        Self::start_beside(export, Vec::new()).await
    }

    /// [`CloudSql::start`], with more instances in project `p-sql`.
    async fn start_beside(export: &str, others: Vec<FakeInstance>) -> Self {
        let endpoint = required_env("DATA_BACKUP_TEST_GCS_ENDPOINT");
        let bucket_name = required_env("DATA_BACKUP_TEST_GCS_BUCKET");
        let prefix = unique_name("cloudsql");
        let src = PgDb::create("csql_src");
        src.sql("CREATE TABLE customers (id int PRIMARY KEY, email text NOT NULL)");
        src.sql("INSERT INTO customers SELECT g, 'user' || g || '@example.com' FROM generate_series(1, 2000) g");
        let mut org = Org::default();
        org.project("p-sql", "folders/1", "ACTIVE", SqlAccess::Enabled).instance(FakeInstance::runnable(
            "p-sql",
            "pg",
            "POSTGRES_16",
            &["postgres", src.name.as_str()],
        ));
        for other in others {
            org.instance(other);
        }
        let sql = SqlAdminFake::start_with_storage(shared(org, 2), &endpoint).await;
        let pubsub = PubSubFake::start(&[TOPIC]).await;
        let hook = MockServer::start().await;
        Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&hook).await;
        let toml = format!(
            "[[sources]]\nname = \"org\"\nkind = \"gcp\"\nprojects = [\"p-sql\"]\n\
             [store]\nurl = \"gs://{bucket_name}/{prefix}\"\n\
             [gcp]\ncredentials = \"anonymous\"\nstorage_endpoint = \"{endpoint}\"\nsql_admin_endpoint = \"{}\"\n\
             pubsub_endpoint = \"{}\"\nsql_admin_per_minute = 60000\nretry_initial_ms = 10\n\
             [notify]\nwebhook_url = \"{}/hook\"\npubsub_topic = \"{TOPIC}\"\npubsub_success = true\n\
             [verify]\nurl = \"{}\"\n\
             [export]\npoll_initial_ms = 50\n{export}\n",
            sql.server.uri(),
            pubsub.server.uri(),
            hook.uri(),
            crate::support::pg_url(),
        );
        let app = TestApp::spawn(&toml).await;
        let bucket = GcsBucket::new(&bucket_name, &prefix, Some(&endpoint), true).await.unwrap();
        Self { sql, pubsub, hook, bucket, bucket_name, prefix, src, app, toml }
    }

    fn body(&self) -> Value {
        json!({"project": "p-sql", "instance": "pg", "database": self.src.name, "run_date": RUN_DATE})
    }

    /// The object key of the export and its `gs://` URI.
    fn key(&self) -> String {
        // 2026-11-20 is a Friday: the daily class.
        format!("daily/p-sql/pg/{0}/{RUN_DATE}/{0}.sql.gz", self.src.name)
    }

    fn uri(&self) -> String {
        format!("gs://{}/{}/{}", self.bucket_name, self.prefix, self.key())
    }

    /// Delivers the task as Cloud Tasks does, as its `retry`-th retry.
    async fn deliver(&self, retry: u32) -> (u16, reqwest::header::HeaderMap, Value) {
        let r = self
            .app
            .client
            .post(format!("{}/export", self.app.address))
            .header("X-CloudTasks-TaskName", "0123abcd")
            .header("X-CloudTasks-QueueName", "backups")
            .header("X-CloudTasks-TaskRetryCount", retry.to_string())
            .header("X-CloudTasks-TaskExecutionCount", retry.to_string())
            .json(&self.body())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, headers, r.json().await.unwrap_or(Value::Null))
    }

    /// Delivers until the answer is not 503/409 (at most `tries`); answers the last.
    async fn deliver_until_done(&self, tries: u32) -> (u16, Value, u32) {
        for attempt in 0..tries {
            let (status, _, body) = self.deliver(attempt).await;
            if status != 503 && status != 409 {
                return (status, body, attempt + 1);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("still not done after {tries} deliveries");
    }

    async fn object(&self) -> Option<Vec<u8>> {
        self.object_at(&self.key()).await
    }

    async fn object_at(&self, key: &str) -> Option<Vec<u8>> {
        let stream = self.bucket.get_stream(key).await.unwrap()?;
        let chunks: Vec<Bytes> = futures::TryStreamExt::try_collect(stream).await.unwrap();
        Some(chunks.concat())
    }

    async fn hook_reports(&self) -> Vec<Value> {
        self.hook
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .filter(|v| v.get("error_class").is_some())
            .collect()
    }
}

/// An instance of project `p-sql` holding `databases`.
fn instance(name: &str, version: &str, databases: &[&str]) -> FakeInstance {
    FakeInstance::runnable("p-sql", name, version, databases)
}

/// A MariaDB schema with a table of 300 customers.
fn mysql_source() -> MyDb {
    let db = MyDb::create("csql_my");
    db.sql("CREATE TABLE customers (id int PRIMARY KEY, email varchar(100) NOT NULL)");
    let rows: Vec<String> = (1..=300).map(|i| format!("({i}, 'user{i}@example.com')")).collect();
    db.sql(&format!("INSERT INTO customers VALUES {}", rows.join(", ")));
    db
}

/// Restores a Cloud SQL MySQL export (it creates and uses its own schema) with the stock client.
fn mysql_restore(sql: &[u8]) {
    crate::support::run_with_stdin(
        "mysql",
        &["-h", "127.0.0.1", "-P", "3306", "-u", "root", "--protocol=TCP", "--default-character-set=utf8mb4"],
        sql,
    );
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data).read_to_end(&mut out).unwrap();
    out
}

fn psql_restore(db: &PgDb, sql: &[u8]) {
    crate::support::run_with_stdin(
        "psql",
        &["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-d", &db.name],
        sql,
    );
}

#[tokio::test]
async fn cloud_sql_export_is_checked_and_restores_like_the_source() {
    let t = CloudSql::start("").await;

    let (status, _, answer) = t.app.post("/export", &t.body()).await;
    let (again, _, second) = t.app.post("/export", &t.body()).await;

    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "exported");
    assert_eq!(answer["key"], t.key());
    let m = &answer["manifest"];
    assert_eq!(m["format"], "cloud_sql_gz");
    assert_eq!(m["compression"], "gzip");
    assert_eq!(m["tools"]["server"], "POSTGRES_16");
    let operation = m["cloud_sql"]["operation"].as_str().unwrap().to_owned();
    assert_eq!(t.sql.exports.ops.lock().unwrap()[0].name, operation);
    assert!(m["cloud_sql"]["crc32c"].as_str().is_some_and(|c| !c.is_empty()), "{m}");
    assert!(m["object_version"].as_str().is_some(), "generation recorded: {m}");
    assert_eq!((again, second["status"].as_str()), (200, Some("already_exported")));
    assert_eq!(t.sql.exports.started_for(&t.uri()), 1, "exactly one operation");

    let dump = t.object().await.expect("the export is in the bucket");
    assert_eq!(m["bytes"], dump.len());
    let copy = PgDb::create("csql_copy");
    psql_restore(&copy, &gunzip(&dump));
    assert_eq!(copy.fingerprint(), t.src.fingerprint());
    // The success event (notify.pubsub_success) names the operation.
    let events = t.pubsub.of_kind("export_succeeded");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].data["operation"], operation.as_str());
    assert_eq!(events[0].attributes["database"], format!("p-sql/pg/{}", t.src.name));
}

#[tokio::test]
async fn a_deadline_then_a_resume_attaches_to_the_one_running_operation() {
    let t = CloudSql::start("wait_secs = 1").await;
    t.sql.exports.set_duration(Duration::from_secs(4));

    let (first, headers, problem) = t.deliver(0).await;

    assert_eq!(first, 503, "{problem}");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((30..=60).contains(&retry_after), "{retry_after}");
    assert!(problem["detail"].as_str().unwrap().contains("still running"), "{problem}");
    let (status, body, deliveries) = t.deliver_until_done(30).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "exported");
    assert!(deliveries >= 2, "the wait ended before the operation: {deliveries}");
    assert_eq!(t.sql.exports.started_for(&t.uri()), 1, "every attempt attached to the same operation");
    assert!(t.hook_reports().await.is_empty(), "a resumed export is no failure");
}

#[tokio::test]
async fn a_busy_instance_answers_503_with_a_jittered_retry_after_and_exports_later() {
    let t = CloudSql::start("wait_secs = 10").await;
    t.sql.exports.occupy("p-sql", "pg", Duration::from_millis(1500));

    let (busy, headers, problem) = t.deliver(0).await;

    assert_eq!(busy, 503, "{problem}");
    assert!(headers.contains_key("retry-after"));
    assert!(problem["detail"].as_str().unwrap().contains("operationInProgress"), "{problem}");
    assert_eq!(t.sql.exports.busy_answers.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(t.sql.exports.started_for(&t.uri()), 0);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (status, body, _) = t.deliver_until_done(20).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("exported")), "{body}");
}

#[tokio::test]
async fn a_crash_between_export_and_manifest_is_adopted_not_exported_again() {
    let t = CloudSql::start("").await;
    let (status, _, first) = t.app.post("/export", &t.body()).await;
    assert_eq!(status, 200, "{first}");
    let generation = first["manifest"]["object_version"].clone();
    // The crash: the manifest and latest/ were never written.
    let manifest_key = t.key().replace(".sql.gz", ".manifest.json");
    t.bucket.delete(&manifest_key).await.unwrap();

    let (status, _, adopted) = t.app.post("/export", &t.body()).await;

    assert_eq!(status, 200, "{adopted}");
    assert_eq!(adopted["status"], "exported");
    assert_eq!(adopted["manifest"]["object_version"], generation, "the same object");
    assert_eq!(adopted["manifest"]["cloud_sql"]["operation"], first["manifest"]["cloud_sql"]["operation"]);
    // Again, with the operation gone from the instance's list: the object is checked whole.
    t.bucket.delete(&manifest_key).await.unwrap();
    t.sql.exports.ops.lock().unwrap().clear();
    let (status, _, adopted) = t.app.post("/export", &t.body()).await;
    assert_eq!(status, 200, "{adopted}");
    assert_eq!(adopted["manifest"]["cloud_sql"]["operation"], "adopted");
    assert_eq!(adopted["manifest"]["object_version"], generation);
    assert_eq!(t.sql.exports.started(), 0, "no export was started after the first");
}

#[tokio::test]
async fn an_object_from_an_earlier_attempt_is_adopted_when_complete_and_refused_when_truncated() {
    let t = CloudSql::start("").await;
    let plain = std::process::Command::new("pg_dump")
        .args(["--no-owner", "--no-acl", "-h", "127.0.0.1", "-U", "postgres", "-d", &t.src.name])
        .output()
        .unwrap()
        .stdout;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &plain).unwrap();
    let complete = gz.finish().unwrap();
    // Truncated: a valid gzip stream of the dump's first half (no trailer line).
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &plain[..plain.len() / 2]).unwrap();
    let truncated = gz.finish().unwrap();

    t.bucket.put(&t.key(), Bytes::from(truncated)).await.unwrap();
    let (refused, _, problem) = t.deliver(0).await;
    assert_eq!(refused, 200, "answered to the queue so it stops retrying: {problem}");
    assert_eq!(problem["status"], "failed");
    let error = problem["error"].as_str().unwrap();
    assert!(error.contains("truncated") && error.contains("gcloud storage rm"), "{error}");
    assert_eq!(t.sql.exports.started(), 0, "never exported over");

    t.bucket.delete(&t.key()).await.unwrap();
    t.bucket.put(&t.key(), Bytes::from(complete)).await.unwrap();
    let (status, _, adopted) = t.app.post("/export", &t.body()).await;
    assert_eq!(status, 200, "{adopted}");
    assert_eq!(adopted["manifest"]["cloud_sql"]["operation"], "adopted");
    assert_eq!(t.sql.exports.started(), 0);
}

#[tokio::test]
async fn an_export_failing_because_its_object_appeared_adopts_the_object() {
    let t = CloudSql::start("wait_secs = 20").await;
    t.sql.exports.set_duration(Duration::from_secs(2));
    let plain = std::process::Command::new("pg_dump")
        .args(["--no-owner", "-h", "127.0.0.1", "-U", "postgres", "-d", &t.src.name])
        .output()
        .unwrap()
        .stdout;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &plain).unwrap();
    let body = Bytes::from(gz.finish().unwrap());

    let delivery = t.deliver(0);
    let racer = async {
        // Once the operation is started (it writes after a fifth of its 2 s), another writer wins.
        while t.sql.exports.started() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        t.bucket.put(&t.key(), body).await.unwrap();
    };
    let ((status, _, answer), ()) = tokio::join!(delivery, racer);

    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "exported");
    assert_eq!(answer["manifest"]["cloud_sql"]["operation"], "adopted");
    let op = t.sql.exports.ops.lock().unwrap()[0].clone();
    assert!(op.error.as_ref().is_some_and(|(_, m)| m.contains("already exists")), "{op:?}");
}

#[tokio::test]
async fn a_bucket_permission_error_is_reported_once_with_the_fix() {
    let t = CloudSql::start("").await;
    t.sql.exports.bucket_denied.lock().unwrap().insert("p-sql/pg".to_owned());
    let account = FakeInstance::runnable("p-sql", "pg", "POSTGRES_16", &[]).service_account();

    let (status, _, answer) = t.deliver(0).await;
    let (again, _, _) = t.deliver(1).await;
    let (operator, _, problem) = t.app.post("/export", &t.body()).await;

    assert_eq!(status, 200, "permanent: answered 2xx to the queue: {answer}");
    assert_eq!((answer["status"].as_str(), answer["retryable"].as_bool()), (Some("failed"), Some(false)));
    let error = answer["error"].as_str().unwrap();
    for needle in [account.as_str(), "roles/storage.objectCreator", t.bucket_name.as_str(), "storage.objects.create"] {
        assert!(error.contains(needle), "{needle} missing from {error}");
    }
    assert_eq!(again, 200);
    assert_eq!(operator, 422, "{problem}");
    let reports = t.hook_reports().await;
    assert_eq!(reports.len(), 1, "reported once: {reports:?}");
    assert_eq!(reports[0]["error_class"], "permission_denied");
    let published = t.pubsub.of_kind("export_failed");
    assert_eq!(published.len(), 1, "{published:?}");
    let message = &published[0];
    assert_eq!(message.topic, TOPIC);
    assert_eq!(message.attributes["error_class"], "permission_denied");
    assert_eq!(message.attributes["database"], format!("p-sql/pg/{}", t.src.name));
    assert_eq!(message.data["run_date"], RUN_DATE);
    assert_eq!(message.data["attempt"], 1);
    assert!(message.data["message"].as_str().unwrap().contains(&account));
    let first_op = t.sql.exports.ops.lock().unwrap()[0].name.clone();
    assert_eq!(message.data["operation"], first_op.as_str());
    assert!(t.object().await.is_none(), "nothing was written");
}

#[tokio::test]
async fn transient_failures_are_reported_once_their_retries_reach_the_threshold() {
    let t = CloudSql::start("report_after_retries = 2").await;
    t.sql.exports.occupy("p-sql", "pg", Duration::from_secs(60));

    for retry in 0..2 {
        let (status, _, _) = t.deliver(retry).await;
        assert_eq!(status, 503);
    }
    assert!(t.hook_reports().await.is_empty(), "below the threshold nothing is reported");
    for retry in 2..5 {
        let (status, _, _) = t.deliver(retry).await;
        assert_eq!(status, 503, "retries go on after the report");
    }

    let reports = t.hook_reports().await;
    assert_eq!(reports.len(), 1, "once per task: {reports:?}");
    assert_eq!(reports[0]["error_class"], "instance_busy");
    assert_eq!(reports[0]["attempt"], 3);
    assert_eq!(reports[0]["transient"], true);
    assert_eq!(t.pubsub.of_kind("export_failed").len(), 1);
}

#[tokio::test]
async fn two_concurrent_deliveries_of_one_task_start_one_operation() {
    let t = Arc::new(CloudSql::start("wait_secs = 20").await);
    t.sql.exports.set_duration(Duration::from_millis(1500));

    let (a, b) = tokio::join!(t.deliver(0), t.deliver(0));

    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    assert!(statuses == [200, 409] || statuses == [200, 200], "{statuses:?} {} {}", a.2, b.2);
    let (status, body, _) = t.deliver_until_done(10).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(t.sql.exports.started_for(&t.uri()), 1, "one operation for both deliveries");
}

#[tokio::test]
async fn doctor_finds_a_missing_bucket_grant_a_short_queue_retry_and_no_lifecycle_rules() {
    use crate::support::fakes::cloud_tasks::CloudTasksFake;
    use crate::support::fakes::storage_iam::StorageIamFake;
    let endpoint = required_env("DATA_BACKUP_TEST_GCS_ENDPOINT");
    let bucket = required_env("DATA_BACKUP_TEST_GCS_BUCKET");
    let mut org = Org::default();
    org.project("p-doc", "folders/1", "ACTIVE", SqlAccess::Enabled)
        .instance(FakeInstance::runnable("p-doc", "pg-granted", "POSTGRES_16", &["app"]))
        .instance(FakeInstance::runnable("p-doc", "pg-forgotten", "POSTGRES_16", &["billing"]))
        .instance(FakeInstance {
            instance_type: "READ_REPLICA_INSTANCE".into(),
            ..FakeInstance::runnable("p-doc", "pg-replica", "POSTGRES_16", &["app"])
        });
    let granted = FakeInstance::runnable("p-doc", "pg-granted", "POSTGRES_16", &[]).service_account();
    let forgotten = FakeInstance::runnable("p-doc", "pg-forgotten", "POSTGRES_16", &[]).service_account();
    let sql = SqlAdminFake::start(shared(org, 2)).await;
    let iam = StorageIamFake::start().await;
    iam.grant(&bucket, "roles/storage.objectCreator", &[&format!("serviceAccount:{granted}")]);
    iam.grant(&bucket, "roles/storage.objectViewer", &[&format!("serviceAccount:{forgotten}")]);
    let tasks = CloudTasksFake::start().await;
    let queue = "projects/ops/locations/europe-west1/queues/backups";
    tasks.add_queue(queue, 2, "600s");
    let toml = format!(
        "[[sources]]\nname = \"org\"\nkind = \"gcp\"\nprojects = [\"p-doc\"]\n\
         [store]\nurl = \"gs://{bucket}/{}\"\n\
         [queue]\nkind = \"cloud_tasks\"\nqueue = \"{queue}\"\ntarget_url = \"https://data-backup.example/export\"\n\
         service_account = \"tasks@ops.iam.gserviceaccount.com\"\n\
         [gcp]\ncredentials = \"anonymous\"\nstorage_endpoint = \"{endpoint}\"\nstorage_iam_endpoint = \"{}\"\n\
         sql_admin_endpoint = \"{}\"\ncloud_tasks_endpoint = \"{}\"\nsql_admin_per_minute = 60000\nretry_initial_ms = 10\n",
        unique_name("doctor"),
        iam.server.uri(),
        sql.server.uri(),
        tasks.server.uri(),
    );
    let app = TestApp::spawn(&toml).await;

    let r = app.client.get(format!("{}/doctor", app.address)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.unwrap();

    assert_eq!(report["instances_checked"], 2, "{report:#}");
    let findings = report["findings"].as_array().unwrap();
    let problems: Vec<&Value> = findings.iter().filter(|f| f["level"] == "problem").collect();
    let access: Vec<&&Value> = problems.iter().filter(|f| f["check"] == "bucket_access").collect();
    assert_eq!(access.len(), 1, "only the instance without a grant: {report:#}");
    assert_eq!(access[0]["scope"], "p-doc/pg-forgotten");
    let fix = access[0]["fix"].as_str().unwrap();
    assert!(fix.contains(&forgotten) && fix.contains("roles/storage.objectCreator") && fix.contains(&bucket), "{fix}");
    let queue_problems: Vec<String> =
        problems.iter().filter(|f| f["check"] == "queue").map(|f| f["problem"].as_str().unwrap().to_owned()).collect();
    assert_eq!(queue_problems.len(), 2, "{queue_problems:?}");
    assert!(queue_problems.iter().any(|p| p.contains("after 2 attempts")));
    assert!(queue_problems.iter().any(|p| p.contains("600 s")));
    assert!(problems.iter().any(|f| f["check"] == "lifecycle"), "fake-gcs-server keeps no lifecycle rules");
    assert!(
        findings.iter().any(|f| f["level"] == "note" && f["scope"].as_str().unwrap().contains("pg-replica")),
        "{report:#}"
    );

    // The CLI prints the same, one line per finding, and exits 2.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, format!("{toml}[schedule]\ndaily_at = \"\"\n")).unwrap();
    let out = crate::support::cli_output(&cfg, &["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.lines().any(|l| l.starts_with("PROBLEM") && l.contains("p-doc/pg-forgotten") && l.contains("fix: gcloud")),
        "{text}"
    );
    assert!(text.contains("2 instance(s) checked, 4 problem(s)"), "{text}");
}

#[tokio::test]
async fn a_cloud_sql_export_is_verified_and_restored_with_a_transform_in_one_transaction() {
    let t = CloudSql::start("").await;
    let (status, _, answer) = t.app.post("/export", &t.body()).await;
    assert_eq!(status, 200, "{answer}");

    let body = json!({"project": "p-sql", "instance": "pg", "database": t.src.name});
    let (status, _, record) = t.app.post("/verify", &body).await;

    assert_eq!(status, 200, "{record}");
    assert_eq!(record["result"], "ok", "{record}");
    assert_eq!(record["run_date"], RUN_DATE);

    // `data-backup restore` of the sql.gz, sanitised inside the restore transaction.
    let target = PgDb::create("csql_restored");
    let dir = tempfile::tempdir().unwrap();
    let transform = dir.path().join("anonymise.sql");
    std::fs::write(&transform, "UPDATE customers SET email = 'user' || id || '@invalid';").unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[store]\nurl = \"gs://{}/{}\"\n[gcp]\ncredentials = \"anonymous\"\nstorage_endpoint = \"{}\"\n[schedule]\ndaily_at = \"\"\n",
            t.bucket_name,
            t.prefix,
            required_env("DATA_BACKUP_TEST_GCS_ENDPOINT")
        ),
    )
    .unwrap();
    let (database, target_url) =
        (format!("p-sql/pg/{}", t.src.name), format!("{}{}", crate::support::pg_url(), target.name));
    let transform = transform.to_str().unwrap();
    let (ok, out, err) = crate::support::cli(
        &cfg,
        &["restore", "--database", &database, "--latest", "--target", &target_url, "--transform", transform],
    );
    assert!(ok, "{out}{err}");
    assert_eq!(target.sql("SELECT count(*) FROM customers"), "2000");
    assert_eq!(target.sql("SELECT count(*) FROM customers WHERE email LIKE '%@example.com'"), "0");
}

/// The `/export` body of `database` on instance `instance` of `p-sql`: no engine.
fn body_of(instance: &str, database: &str) -> Value {
    json!({"project": "p-sql", "instance": instance, "database": database, "run_date": RUN_DATE})
}

/// The daily key of `database` on `instance`, with the dump's extension.
fn key_of(instance: &str, database: &str, extension: &str) -> String {
    format!("daily/p-sql/{instance}/{database}/{RUN_DATE}/{database}.{extension}")
}

#[tokio::test]
async fn every_engine_exports_through_export_with_only_project_instance_and_database() {
    let my = mysql_source();
    let t = CloudSql::start_beside(
        "",
        vec![
            instance("my", "MYSQL_8_0", &["mysql", my.name.as_str()]),
            instance("ms", "SQLSERVER_2019_STANDARD", &["master", "billing"]),
        ],
    )
    .await;
    let my_before = my.fingerprint();

    let (pg_status, _, pg) = t.app.post("/export", &t.body()).await;
    let (my_status, _, mysql) = t.app.post("/export", &body_of("my", &my.name)).await;
    let (ms_status, _, sqlserver) = t.app.post("/export", &body_of("ms", "billing")).await;

    assert_eq!((pg_status, pg["status"].as_str()), (200, Some("exported")), "{pg}");
    assert_eq!((pg["manifest"]["engine"].as_str(), pg["key"].as_str()), (Some("postgres"), Some(t.key().as_str())));
    assert_eq!(pg["manifest"]["tools"]["server"], "POSTGRES_16");
    let copy = PgDb::create("csql_copy");
    psql_restore(&copy, &gunzip(&t.object().await.unwrap()));
    assert_eq!(copy.fingerprint(), t.src.fingerprint());

    assert_eq!((my_status, mysql["status"].as_str()), (200, Some("exported")), "{mysql}");
    let my_key = key_of("my", &my.name, "sql.gz");
    assert_eq!((mysql["manifest"]["engine"].as_str(), mysql["key"].as_str()), (Some("mysql"), Some(my_key.as_str())));
    assert_eq!(mysql["manifest"]["format"], "cloud_sql_gz");
    assert_eq!(mysql["manifest"]["tools"]["server"], "MYSQL_8_0");
    let dump = gunzip(&t.object_at(&my_key).await.expect("the MySQL export is in the bucket"));
    my.sql("DROP TABLE customers");
    mysql_restore(&dump);
    assert_eq!(my.fingerprint(), my_before, "the export restores like the source");

    assert_eq!((ms_status, sqlserver["status"].as_str()), (200, Some("exported")), "{sqlserver}");
    let ms_key = key_of("ms", "billing", "bak");
    assert_eq!(sqlserver["manifest"]["engine"], "sqlserver");
    assert_eq!(
        (sqlserver["manifest"]["format"].as_str(), sqlserver["key"].as_str()),
        (Some("sql_server_bak"), Some(ms_key.as_str()))
    );
    assert!(t.object_at(&ms_key).await.expect("the BAK is in the bucket").starts_with(b"TAPE"));
    let ops = t.sql.exports.ops.lock().unwrap().clone();
    let file_types: Vec<(&str, &str)> = ops.iter().map(|o| (o.instance.as_str(), o.file_type.as_str())).collect();
    assert_eq!(file_types, [("pg", "SQL"), ("my", "SQL"), ("ms", "BAK")], "one operation each");
    assert!(t.hook_reports().await.is_empty());
}

#[tokio::test]
async fn an_offloaded_export_of_a_mysql_instance_needs_no_engine_either() {
    let my = mysql_source();
    let mut offloaded = instance("my", "MYSQL_8_0", &["mysql", my.name.as_str()]);
    offloaded.labels.insert("data-backup-offload".into(), "true".into());
    let t = CloudSql::start_beside("", vec![offloaded]).await;

    let (status, _, answer) = t.app.post("/export", &body_of("my", &my.name)).await;

    assert_eq!((status, answer["status"].as_str()), (200, Some("exported")), "{answer}");
    let m = &answer["manifest"];
    assert_eq!((m["engine"].as_str(), m["cloud_sql"]["offload"].as_bool()), (Some("mysql"), Some(true)), "{m}");
    let op = t.sql.exports.ops.lock().unwrap()[0].clone();
    assert!(op.offload, "serverless export asked for: {op:?}");
    let dump = gunzip(&t.object_at(&key_of("my", &my.name, "sql.gz")).await.unwrap());
    let text = String::from_utf8_lossy(&dump);
    assert!(text.contains("CREATE TABLE `customers`") && text.contains("-- Dump completed"), "{text}");
}

#[tokio::test]
async fn an_engine_that_contradicts_the_instance_is_refused_with_422_before_anything_starts() {
    let my = mysql_source();
    let t = CloudSql::start_beside("", vec![instance("my", "MYSQL_8_0", &["mysql", my.name.as_str()])]).await;
    let mut on_postgres = t.body();
    on_postgres["engine"] = json!("mysql");
    let mut on_mysql = body_of("my", &my.name);
    on_mysql["engine"] = json!("postgres");

    let (pg_status, _, pg_problem) = t.app.post("/export", &on_postgres).await;
    let (my_status, _, my_problem) = t.app.post("/export", &on_mysql).await;

    for (status, problem, version) in [(pg_status, &pg_problem, "POSTGRES_16"), (my_status, &my_problem, "MYSQL_8_0")] {
        assert_eq!(status, 422, "{problem}");
        assert_eq!(problem["field"], "engine", "{problem}");
        assert!(problem["detail"].as_str().unwrap().contains(version), "{problem}");
    }
    assert_eq!(t.sql.exports.started(), 0, "no operation was started");
    assert!(t.bucket.list("").await.unwrap().is_empty(), "nothing was written");
    assert!(t.hook_reports().await.is_empty(), "a refused request is answered, not reported");
    // The instance's own engine, named or not, exports.
    on_mysql["engine"] = json!("mysql");
    let (status, _, answer) = t.app.post("/export", &on_mysql).await;
    assert_eq!((status, answer["manifest"]["engine"].as_str()), (200, Some("mysql")), "{answer}");
}

#[tokio::test]
async fn an_object_left_by_an_earlier_wrong_engine_attempt_is_adopted_by_the_next() {
    let my = mysql_source();
    let t = CloudSql::start_beside("", vec![instance("my", "MYSQL_8_0", &["mysql", my.name.as_str()])]).await;
    let key = key_of("my", &my.name, "sql.gz");
    let uri = format!("gs://{}/{}/{key}", t.bucket_name, t.prefix);
    // The earlier attempt, as the service made it when a request without `engine` meant PostgreSQL:
    // an SQL export under the key, which its check then refused ("does not start like a postgres dump").
    let started = reqwest::Client::new()
        .post(format!("{}/v1/projects/p-sql/instances/my/export", t.sql.server.uri()))
        .json(&json!({"exportContext": {"kind": "sql#exportContext", "uri": uri, "databases": [my.name], "fileType": "SQL"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 200);
    while t.sql.exports.ops.lock().unwrap()[0].status != "DONE" {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = t.object_at(&key).await.expect("the earlier attempt left its object");

    let (status, _, answer) = t.app.post("/export", &body_of("my", &my.name)).await;

    assert_eq!((status, answer["status"].as_str()), (200, Some("exported")), "{answer}");
    assert_eq!(answer["manifest"]["engine"], "mysql");
    assert_eq!(answer["manifest"]["bytes"], left.len(), "the object left in the way is the backup");
    assert_eq!(t.sql.exports.started_for(&uri), 1, "never exported again");
    // With the operation gone from the instance's list, it is read whole and adopted all the same.
    t.bucket.delete(&key.replace(".sql.gz", ".manifest.json")).await.unwrap();
    t.sql.exports.ops.lock().unwrap().clear();
    let (status, _, adopted) = t.app.post("/export", &body_of("my", &my.name)).await;
    assert_eq!(status, 200, "{adopted}");
    assert_eq!(adopted["manifest"]["cloud_sql"]["operation"], "adopted");
    assert_eq!(adopted["manifest"]["engine"], "mysql");
}

#[tokio::test]
async fn data_backup_export_of_a_cloud_sql_database_takes_the_instance_and_its_engine() {
    let my = mysql_source();
    let t = CloudSql::start_beside("", vec![instance("my", "MYSQL_8_0", &["mysql", my.name.as_str()])]).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, format!("{}[schedule]\ndaily_at = \"\"\n", t.toml)).unwrap();

    let database = format!("p-sql/my/{}", my.name);
    let (ok, out, err) = crate::support::cli(&cfg, &["export", "--database", &database, "--date", RUN_DATE]);

    assert!(ok, "{out}{err}");
    let manifest: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (manifest["project"].as_str(), manifest["instance"].as_str(), manifest["engine"].as_str()),
        (Some("p-sql"), Some("my"), Some("mysql")),
        "{manifest}"
    );
    assert_eq!(manifest["key"], key_of("my", &my.name, "sql.gz"));
    assert_eq!(t.sql.exports.started(), 1);
}
