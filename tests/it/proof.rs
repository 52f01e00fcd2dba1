//! Every backup proven restorable, and a status that counts only what is proven: a Cloud SQL MySQL
//! export (the Cloud SQL Admin fake's real `mariadb-dump` output, gzip) verifies into the drill's
//! scratch schema and never into a schema of its original name; a SQL Server BAK export is
//! `unverifiable`, with its reason, and never reported; backed-up but never-drilled databases are
//! not "fine" in the JSON, on the page, in `data-backup status`'s exit status or in `/metrics`.

use chrono::Utc;
use data_backup::model::{DatabaseName, DatabaseRef, Engine, InstanceName, ProjectId, RunDate, SourceName};
use data_backup::store::BackupStore;
use data_backup::store::layout::{Key, path_of};
use data_backup::store::manifest::{DumpFormat, MANIFEST_VERSION, Manifest, ToolVersions};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::fakes::google::{FakeInstance, Org, SqlAccess, shared};
use crate::support::fakes::sql_admin::SqlAdminFake;
use data_backup::verify::VerificationResult;

use crate::support::{MyDb, TestApp, mysql_url, pg_source, pg_url, required_env, unique_name};

const RUN_DATE: &str = "2026-11-20";

/// A Cloud SQL project `p-sql` with a MySQL instance `my`, whose exports dump one real MariaDB
/// schema, and the service with `[verify] mysql_url` and a webhook.
struct Fleet {
    _sql: SqlAdminFake,
    hook: MockServer,
    src: MyDb,
    app: TestApp,
}

impl Fleet {
    async fn start() -> Self {
        let endpoint = required_env("DATA_BACKUP_TEST_GCS_ENDPOINT");
        let bucket = required_env("DATA_BACKUP_TEST_GCS_BUCKET");
        let prefix = unique_name("proof");
        let src = MyDb::create("proof_my");
        src.sql(
            "CREATE TABLE customers (id int PRIMARY KEY, email varchar(100) NOT NULL);
             INSERT INTO customers SELECT seq, CONCAT('user', seq, '@example.com') FROM seq_1_to_500;
             CREATE VIEW recent AS SELECT id FROM customers WHERE id > 490;",
        );
        let mut org = Org::default();
        org.project("p-sql", "folders/1", "ACTIVE", SqlAccess::Enabled).instance(FakeInstance::runnable(
            "p-sql",
            "my",
            "MYSQL_8_0",
            &[src.name.as_str()],
        ));
        let sql = SqlAdminFake::start_with_storage(shared(org, 2), &endpoint).await;
        let hook = hook().await;
        let app = TestApp::spawn(&format!(
            "[[sources]]\nname = \"org\"\nkind = \"gcp\"\nprojects = [\"p-sql\"]\n\
             [store]\nurl = \"gs://{bucket}/{prefix}\"\n\
             [gcp]\ncredentials = \"anonymous\"\nstorage_endpoint = \"{endpoint}\"\nsql_admin_endpoint = \"{}\"\n\
             sql_admin_per_minute = 60000\nretry_initial_ms = 10\n\
             [notify]\nwebhook_url = \"{}/hook\"\nwebhook_attempts = 1\n\
             [verify]\nmysql_url = \"{}\"\n\
             [status]\ncache_secs = 0\n\
             [export]\npoll_initial_ms = 50\n",
            sql.server.uri(),
            hook.uri(),
            mysql_url(),
        ))
        .await;
        Self { _sql: sql, hook, src, app }
    }

    /// Exports the database as the schedule's task for a Cloud SQL MySQL database does.
    async fn export(&self) -> Value {
        let body = json!({"project": "p-sql", "instance": "my", "database": self.src.name, "engine": "mysql", "run_date": RUN_DATE});
        let (status, _, answer) = self.app.post("/export", &body).await;
        assert_eq!((status, answer["status"].as_str()), (200, Some("exported")), "{answer}");
        answer["manifest"].clone()
    }
}

async fn hook() -> MockServer {
    let hook = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&hook).await;
    hook
}

async fn verify(app: &TestApp, project: &str, instance: &str, database: &str) -> Value {
    let body = json!({"project": project, "instance": instance, "database": database});
    let (status, _, record) = app.post("/verify", &body).await;
    assert_eq!(status, 200, "{record}");
    record
}

/// The failure reports `hook` received.
async fn reports(hook: &MockServer) -> Vec<Value> {
    hook.received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter(|v| v.get("error_class").is_some())
        .collect()
}

/// The `/status` row of the database on `instance`.
async fn status_row(app: &TestApp, instance: &str) -> Value {
    let status: Value = serde_json::from_str(&get(app, "/status").await).unwrap();
    status["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["instance"] == instance)
        .unwrap_or_else(|| panic!("{instance} not in {status}"))
        .clone()
}

fn schema_exists(name: &str) -> bool {
    let out = std::process::Command::new("mysql")
        .args(["-h", "127.0.0.1", "-P", "3306", "-u", "root", "--protocol=TCP", "-N", "-B", "-e"])
        .arg(format!("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{name}'"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "1"
}

#[tokio::test]
async fn a_cloud_sql_mysql_export_verifies_into_the_scratch_schema_and_leaves_its_original_name_alone() {
    let t = Fleet::start().await;
    let manifest = t.export().await;
    // The schema of the export's original name, on the verification server, becomes a decoy.
    t.src.sql(
        "DROP VIEW recent; DROP TABLE customers;
         CREATE TABLE decoy (note varchar(20)); INSERT INTO decoy VALUES ('untouched');",
    );
    let decoy = t.src.fingerprint();

    let record = verify(&t.app, "p-sql", "my", &t.src.name).await;

    assert_eq!((manifest["format"].as_str(), manifest["engine"].as_str()), (Some("cloud_sql_gz"), Some("mysql")));
    assert_eq!(record["result"], "ok", "{record}");
    assert_eq!(record["tables"], json!([{"table": "customers", "expected": null, "restored": 500, "matches": true}]));
    let scratch = record["scratch_database"].as_str().unwrap();
    assert!(scratch.starts_with("data_backup_verify_"), "{record}");
    assert!(!schema_exists(scratch), "the scratch schema is dropped");
    assert_eq!(t.src.fingerprint(), decoy, "the schema of the original name is untouched");
    assert_eq!(reports(&t.hook).await, Vec::<Value>::new(), "nothing to report");
    assert_eq!(status_row(&t.app, "my").await["state"], "ok");
}

#[tokio::test]
async fn a_sql_server_export_is_unverifiable_with_its_reason_and_is_never_reported() {
    let hook = hook().await;
    let app = TestApp::spawn(&format!(
        "{}[verify]\nurl = \"{}\"\nmysql_url = \"{}\"\n[notify]\nwebhook_url = \"{}/hook\"\nwebhook_attempts = 1\n[status]\ncache_secs = 0\n",
        pg_source("pgsrc", "never_matches_*"),
        pg_url(),
        mysql_url(),
        hook.uri()
    ))
    .await;
    let store = &app.state.service.store;
    let ss = cloud_sql_db("ss", "sales", Engine::Sqlserver);
    let manifest = backup(store, &ss, DumpFormat::SqlServerBak).await;
    // What Cloud SQL writes: a Microsoft Tape Format file.
    store.bucket().put(&manifest.key, b"TAPE\0\0\0\0 a SQL Server backup set".to_vec().into()).await.unwrap();

    let record = verify(&app, "p-sql", "ss", "sales").await;
    let row = status_row(&app, "ss").await;
    let picked = app.state.verifier.pick(1).await.unwrap();

    assert_eq!(record["result"], "unverifiable", "{record}");
    let reason = record["reason"].as_str().unwrap();
    assert!(reason.contains("SQL Server BAK files need a SQL Server to restore; none is configured"), "{reason}");
    assert_eq!(record["errors"], json!([]));
    assert_eq!(row["state"], "unverifiable", "{row}");
    assert!(row["reason"].as_str().unwrap().contains("need a SQL Server"), "{row}");
    assert_eq!(row["last_verification"]["result"], "unverifiable", "{row}");
    let nightly: Vec<VerificationResult> = picked.iter().map(|r| r.result).collect();
    assert_eq!(nightly, [VerificationResult::Unverifiable], "the nightly drill records it too, never as a failure");
    assert_eq!(reports(&hook).await, Vec::<Value>::new(), "an unverifiable backup is never reported");
}

fn database(source: &str, project: &str, instance: &str, name: &str, engine: Engine) -> DatabaseRef {
    DatabaseRef {
        source: SourceName::parse(source).unwrap(),
        project: ProjectId::parse(project).unwrap(),
        instance: InstanceName::parse(instance).unwrap(),
        database: DatabaseName::parse(name).unwrap(),
        engine,
    }
}

fn cloud_sql_db(instance: &str, name: &str, engine: Engine) -> DatabaseRef {
    database("org", "p-sql", instance, name, engine)
}

fn pg_db(name: &str) -> DatabaseRef {
    database("pgsrc", "pgsrc", "pg", name, Engine::Postgres)
}

/// Commits a backup of `d` for today in `format`, finished an hour ago (manifest, then `latest/`).
async fn backup(store: &BackupStore, d: &DatabaseRef, format: DumpFormat) -> Manifest {
    let date = RunDate::today();
    let finished_at = Utc::now() - chrono::Duration::hours(1);
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        source: d.source.to_string(),
        project: d.project.to_string(),
        instance: d.instance.to_string(),
        database: d.database.to_string(),
        engine: d.engine,
        run_date: date.to_string(),
        run_id: "010000-seeded".into(),
        class: store.layout().class(date).as_str().into(),
        key: store.layout().dump(d, date, format, false).path(),
        format,
        compression: format.compression().into(),
        compression_level: None,
        bytes: 1000,
        raw_bytes: None,
        sha256: None,
        object_version: None,
        started_at: finished_at - chrono::Duration::minutes(1),
        finished_at,
        tools: ToolVersions { dump: "test".into(), server: "test".into(), data_backup: "test".into() },
        encryption: None,
        row_counts: None,
        row_counts_exact: None,
        cloud_sql: None,
    };
    store.commit(d, date, &manifest).await.unwrap();
    manifest
}

/// A successful drill of today's backup of `name` (the fields status reads).
async fn drilled(store: &BackupStore, name: &str) {
    let now = Utc::now();
    let record = json!({
        "version": 1, "project": "pgsrc", "instance": "pg", "database": name, "engine": "postgres",
        "run_date": RunDate::today().to_string(), "key": "k", "result": "ok",
        "started_at": now, "finished_at": now, "duration_secs": 1.0, "server": "s",
        "scratch_database": "x", "bytes_checked": 1, "row_counts_compared": false, "tables": [], "checks": [],
        "errors": [],
    });
    let key = Key::Verification { db: path_of(&pg_db(name)), date: RunDate::today() };
    store.bucket().put(&key.path(), serde_json::to_vec(&record).unwrap().into()).await.unwrap();
}

async fn get(app: &TestApp, path: &str) -> String {
    let r = app.client.get(format!("{}{path}", app.address)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

fn gauge(metrics: &str, state: &str) -> Option<f64> {
    let prefix = format!("data_backup_databases{{state=\"{state}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&prefix)).map(|v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn backed_up_but_never_drilled_databases_are_not_reported_all_fine() {
    let app = TestApp::spawn(&format!("{}[status]\ncache_secs = 0\n", pg_source("pgsrc", "never_matches_*"))).await;
    let store = &app.state.service.store;
    let names = ["billing", "orders", "users", "audit"];
    for name in names {
        backup(store, &pg_db(name), DumpFormat::PgCustomZstd).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cli.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"file://{}\"\n{}[schedule]\ndaily_at = \"\"\n",
            app.store_dir.path().display(),
            pg_source("pgsrc", "never_matches_*")
        ),
    )
    .unwrap();
    let cli_status = || crate::support::cli_output(&config, &["status"]);

    let status: Value = serde_json::from_str(&get(&app, "/status").await).unwrap();
    let page = get(&app, "/").await;
    let metrics = get(&app, "/metrics").await;
    let unproven = cli_status();

    assert_eq!(status["counts"]["unverified"], 4, "{status}");
    assert_eq!((status["counts"]["ok"].as_u64(), status["counts"]["unverifiable"].as_u64()), (Some(0), Some(0)));
    assert_eq!((status["backed_up"].as_u64(), status["proven"].as_u64()), (Some(4), Some(0)), "{status}");
    assert_eq!((status["healthy"].as_bool(), status["all_proven"].as_bool()), (Some(true), Some(false)));
    assert!(page.contains(r#"<span class="overall unproven">4 backed up, 0 proven</span>"#), "{page}");
    assert!(!page.contains("fine"), "4 backed up and 0 proven is not fine");
    assert_eq!(gauge(&metrics, "unverified"), Some(4.0), "{metrics}");
    assert_eq!((gauge(&metrics, "ok"), gauge(&metrics, "unverifiable")), (Some(0.0), Some(0.0)), "{metrics}");
    let stdout = String::from_utf8_lossy(&unproven.stdout);
    assert_eq!(unproven.status.code(), Some(3), "{stdout}{}", String::from_utf8_lossy(&unproven.stderr));
    assert!(stdout.contains("4 backed up, 0 proven"), "{stdout}");

    for name in names {
        drilled(store, name).await;
    }
    let status: Value = serde_json::from_str(&get(&app, "/status").await).unwrap();
    let page = get(&app, "/").await;
    let proven = cli_status();

    assert_eq!((status["proven"].as_u64(), status["all_proven"].as_bool()), (Some(4), Some(true)), "{status}");
    assert!(page.contains(r#"<span class="overall healthy">all 4 databases backed up and proven</span>"#), "{page}");
    assert_eq!(proven.status.code(), Some(0), "{}", String::from_utf8_lossy(&proven.stdout));
}
