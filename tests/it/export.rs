//! `POST /export` and the dump exporter against the real servers and the local directory store.

use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{MyDb, PgDb, TestApp, mysql_source, pg_source, unzstd};

/// Rows no dump may mangle: NULLs, newlines, quotes, backslashes, unicode, large values, jsonb.
const PG_AWKWARD: &str = r#"
CREATE TABLE people (id bigserial PRIMARY KEY, name text, note text, doc jsonb, photo bytea, born date, score numeric(12,4));
INSERT INTO people (name, note, doc, photo, born, score) VALUES
  ('Zoë O''Brien', E'line one\nline two\ttab', '{"a": [1, 2, {"b": null}], "ü": "\"quoted\""}', '\x00ff10', '1970-01-01', 3.1415),
  (NULL, NULL, NULL, NULL, NULL, NULL),
  ('日本語 🚀', E'back\\slash; DROP TABLE people; --', '[]', '', '2024-02-29', -0.0001),
  ('big', repeat('x', 300000), jsonb_build_object('k', repeat('y', 10000)), decode(repeat('ab', 5000), 'hex'), '2000-12-31', 99999999.9999);
INSERT INTO people (name, note, doc, score) SELECT 'p' || g, md5(g::text), jsonb_build_object('n', g), g FROM generate_series(1, 2000) g;
CREATE TABLE empty_table (id int);
CREATE VIEW adults AS SELECT * FROM people WHERE born < '2000-01-01';
"#;

const MY_AWKWARD: &str = r#"
CREATE TABLE people (id BIGINT AUTO_INCREMENT PRIMARY KEY, name TEXT, note LONGTEXT, doc JSON, photo BLOB, born DATE, score DECIMAL(12,4)) ENGINE=InnoDB;
INSERT INTO people (name, note, doc, photo, born, score) VALUES
  ('Zoë O\'Brien', 'line one\nline two\ttab', '{\"a\": [1, 2, {\"b\": null}]}', X'00ff10', '1970-01-01', 3.1415),
  (NULL, NULL, NULL, NULL, NULL, NULL),
  ('日本語 🚀', 'back\\\\slash; DROP TABLE people; --', '[]', '', '2024-02-29', -0.0001),
  ('big', REPEAT('x', 300000), JSON_OBJECT('k', REPEAT('y', 10000)), UNHEX(REPEAT('ab', 5000)), '2000-12-31', 99999999.9999);
CREATE TABLE empty_table (id INT);
CREATE TRIGGER people_bi BEFORE INSERT ON people FOR EACH ROW SET NEW.name = COALESCE(NEW.name, 'anon');
"#;

fn export_body(source: &str, instance: &str, database: &str) -> Value {
    json!({"source": source, "project": source, "instance": instance, "database": database, "run_date": "2026-11-20"})
}

#[tokio::test]
async fn export_of_postgres_restores_with_pg_restore_to_equal_data() {
    let src = PgDb::create("exp_pg");
    src.sql(PG_AWKWARD);
    let app = TestApp::spawn(&pg_source("pgsrc", &src.name)).await;

    let (status, _, body) = app.post("/export", &export_body("pgsrc", "pg", &src.name)).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "exported");
    let key = body["key"].as_str().unwrap();
    assert_eq!(key, format!("daily/pgsrc/pg/{0}/2026-11-20/{0}.dump.zst", src.name));
    let manifest = &body["manifest"];
    assert_eq!(manifest["engine"], "postgres");
    assert_eq!(manifest["format"], "pg_custom_zstd");
    let stored = std::fs::read(app.store_dir.path().join(key)).unwrap();
    assert_eq!(manifest["bytes"], stored.len());
    assert_eq!(manifest["sha256"], sha256_hex(&stored));
    assert!(manifest["tools"]["dump"].as_str().unwrap().starts_with("pg_dump"));

    let copy = PgDb::create("exp_pg_restored");
    copy.restore(&unzstd(&app.store_dir.path().join(key)));
    assert_eq!(copy.fingerprint(), src.fingerprint());
    assert_eq!(copy.sql("SELECT count(*) FROM adults"), src.sql("SELECT count(*) FROM adults"));
    let latest: Value = serde_json::from_slice(
        &std::fs::read(app.store_dir.path().join(format!("latest/pgsrc/pg/{}.json", src.name))).unwrap(),
    )
    .unwrap();
    assert_eq!(&latest, manifest);
}

#[tokio::test]
async fn export_of_mariadb_restores_with_mysql_to_equal_data() {
    let src = MyDb::create("exp_my");
    src.sql(MY_AWKWARD);
    let app = TestApp::spawn(&mysql_source("mysrc", &src.name)).await;

    let (status, _, body) = app.post("/export", &export_body("mysrc", "maria", &src.name)).await;

    assert_eq!(status, 200, "{body}");
    let key = body["key"].as_str().unwrap();
    assert!(key.ends_with(".sql.zst"), "{key}");
    let dump = unzstd(&app.store_dir.path().join(key));
    let text = String::from_utf8_lossy(&dump);
    assert!(!text.contains("CREATE DATABASE"), "the dump must restore into any schema name");
    let copy = MyDb::create("exp_my_restored");
    copy.restore(&dump);
    assert_eq!(copy.fingerprint(), src.fingerprint());
    assert_eq!(copy.sql("SHOW TRIGGERS").lines().count(), 1, "triggers are part of the dump");
}

#[tokio::test]
async fn second_export_answers_already_exported_and_writes_nothing() {
    let src = PgDb::create("exp_idem");
    src.sql("CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
    let app = TestApp::spawn(&pg_source("pgsrc", &src.name)).await;
    let (first, _, body1) = app.post("/export", &export_body("pgsrc", "pg", &src.name)).await;
    assert_eq!(first, 200);
    let files_before = app.store_files();
    let stamps: Vec<_> = files_before
        .iter()
        .map(|f| std::fs::metadata(app.store_dir.path().join(f)).unwrap().modified().unwrap())
        .collect();
    src.sql("INSERT INTO t VALUES (2)");

    let (second, _, body2) = app.post("/export", &export_body("pgsrc", "pg", &src.name)).await;

    assert_eq!(second, 200);
    assert_eq!(body2["status"], "already_exported");
    assert_eq!(body2["manifest"], body1["manifest"]);
    assert_eq!(app.store_files(), files_before);
    let stamps_after: Vec<_> = files_before
        .iter()
        .map(|f| std::fs::metadata(app.store_dir.path().join(f)).unwrap().modified().unwrap())
        .collect();
    assert_eq!(stamps, stamps_after, "nothing was rewritten");
}

#[tokio::test]
async fn concurrent_exports_of_the_same_task_make_exactly_one_backup() {
    let src = PgDb::create("exp_race");
    src.sql("CREATE TABLE t AS SELECT g, md5(g::text) FROM generate_series(1, 200000) g");
    let app = TestApp::spawn(&pg_source("pgsrc", &src.name)).await;
    let body = export_body("pgsrc", "pg", &src.name);

    let answers = futures::future::join_all((0..4).map(|_| app.post("/export", &body))).await;

    let statuses: Vec<(u16, String)> =
        answers.iter().map(|(s, _, b)| (*s, b["status"].as_str().unwrap_or("").to_owned())).collect();
    assert_eq!(statuses.iter().filter(|(s, st)| *s == 200 && st == "exported").count(), 1, "{statuses:?}");
    for (s, st) in &statuses {
        assert!((*s == 200 && (st == "exported" || st == "already_exported")) || *s == 409, "{statuses:?}");
    }
    for (s, headers, _) in &answers {
        if *s == 409 {
            assert!(headers.contains_key("retry-after"));
        }
    }
    let dumps: Vec<_> = app.store_files().into_iter().filter(|f| f.contains(".dump.zst")).collect();
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    assert!(
        app.store_files().iter().all(|f| !f.starts_with("leases/")),
        "leases are given back: {:?}",
        app.store_files()
    );
}

#[tokio::test]
async fn dump_failing_midway_leaves_no_backup_and_is_reported_once() {
    // A role that may read one table but not the other: pg_dump fails after it has started streaming.
    let src = PgDb::create("exp_fail");
    let role = format!("{}_reader", src.name);
    src.sql(&format!(
        "CREATE TABLE a AS SELECT g FROM generate_series(1, 50000) g; CREATE TABLE z_secret (x int);
         DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN; GRANT SELECT ON a TO {role};"
    ));
    let hook = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&hook).await;
    let source = pg_source("pgsrc", &src.name).replace("postgres://postgres@", &format!("postgres://{role}@"));
    let app = TestApp::spawn(&format!("{source}\n[notify]\nwebhook_url = \"{}/hook\"\n", hook.uri())).await;

    let (status, _, body) = app.post("/export", &export_body("pgsrc", "pg", &src.name)).await;
    let (again, _, _) = app.post("/export", &export_body("pgsrc", "pg", &src.name)).await;

    assert_eq!(status, 422, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("permission denied"), "{body}");
    assert_eq!(again, 422);
    let files = app.store_files();
    assert!(
        files.iter().all(|f| !f.contains(".manifest.json") && !f.contains(".dump.zst") && !f.starts_with("latest/")),
        "{files:?}"
    );
    let reports = hook.received_requests().await.unwrap();
    assert_eq!(reports.len(), 1, "reported exactly once");
    let report: Value = serde_json::from_slice(&reports[0].body).unwrap();
    assert_eq!(report["database"], src.name.as_str());
    assert_eq!(report["error_class"], "dump_failed");
    assert!(report["text"].as_str().unwrap().contains("permission denied"));
    src.sql(&format!("DROP OWNED BY {role}; DROP ROLE {role}"));
}

#[tokio::test]
async fn truncated_mysql_dump_is_refused_and_nothing_is_published() {
    // The real mariadb-dump with its output cut short and its exit status hidden, as `| head` would.
    let src = MyDb::create("exp_trunc");
    src.sql("CREATE TABLE t (x LONGTEXT); INSERT INTO t VALUES (REPEAT('a', 100000))");
    let bin = tempfile::tempdir().unwrap();
    let script = bin.path().join("mariadb-dump");
    std::fs::write(&script, "#!/bin/sh\n[ \"$1\" = --version ] && exec mariadb-dump --version\nmariadb-dump \"$@\" | head -c 2000\nexit 0\n").unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(&mut std::fs::metadata(&script).unwrap().permissions(), 0o755);
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let app = TestApp::spawn(&format!(
        "{}\n[export]\nmysql_bin_dir = \"{}\"\n",
        mysql_source("mysrc", &src.name),
        bin.path().display()
    ))
    .await;

    let (status, _, body) = app.post("/export", &export_body("mysrc", "maria", &src.name)).await;

    assert_eq!(status, 422, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("Dump completed"), "{body}");
    // Only the failure's report marker and the failed night in the database's history.
    assert!(
        app.store_files().iter().all(|f| f.starts_with("reports/") || f.starts_with("history/")),
        "{:?}",
        app.store_files()
    );
}

#[tokio::test]
async fn export_of_a_database_that_no_longer_exists_is_a_reported_permanent_failure() {
    let hook = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(500)).mount(&hook).await;
    let app = TestApp::spawn(&format!(
        "{}\n[notify]\nwebhook_url = \"{}/hook\"\nwebhook_attempts = 2\n",
        pg_source("pgsrc", "gone_*"),
        hook.uri()
    ))
    .await;
    let body = export_body("pgsrc", "pg", "gone_never_existed");

    let (status, _, problem) = app.post("/export", &body).await;
    let (queued, _, answer) = app
        .client
        .post(format!("{}/export", app.address))
        .header("X-CloudTasks-TaskName", "t1")
        .json(&body)
        .send()
        .await
        .map(|r| (r.status().as_u16(), (), r))
        .unwrap();
    let answer: Value = answer.json().await.unwrap();

    assert_eq!(status, 404, "{problem}");
    assert_eq!(problem["status"], 404);
    assert!(problem["detail"].as_str().unwrap().contains("does not exist"));
    assert_eq!(queued, 200, "a queue delivery is acknowledged so it stops retrying");
    assert_eq!(answer["status"], "failed");
    assert_eq!(answer["retryable"], false);
    // The webhook was down: tried twice for the single report, and the export answered anyway.
    assert_eq!(hook.received_requests().await.unwrap().len(), 2);
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

#[tokio::test]
async fn encrypted_export_is_stored_as_age_and_restores_only_with_the_identity() {
    let src = PgDb::create("exp_age");
    src.sql("CREATE TABLE secrets AS SELECT g, 'card-' || g AS card FROM generate_series(1, 3000) g");
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let app =
        TestApp::spawn(&format!("{}[export]\nage_recipients = [\"{recipient}\"]\n", pg_source("pgsrc", &src.name)))
            .await;

    let (status, _, body) = app.post("/export", &export_body("pgsrc", "pg", &src.name)).await;

    assert_eq!(status, 200, "{body}");
    let key = body["key"].as_str().unwrap();
    assert!(key.ends_with(".dump.zst.age"), "{key}");
    assert_eq!(body["manifest"]["encryption"], json!({"scheme": "age", "recipients": [recipient]}));
    let cipher = std::fs::read(app.store_dir.path().join(key)).unwrap();
    assert!(cipher.starts_with(b"age-encryption.org/v1"));
    assert!(!cipher.windows(8).any(|w| w == b"card-123"), "no plaintext in the stored object");
    let other = age::x25519::Identity::generate();
    assert!(data_backup::crypto::decrypting_reader(std::io::Cursor::new(cipher.clone()), &[other]).await.is_err());
    let mut plain = Vec::new();
    let mut reader = data_backup::crypto::decrypting_reader(std::io::Cursor::new(cipher), &[identity]).await.unwrap();
    tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut plain).await.unwrap();
    let copy = PgDb::create("exp_age_restored");
    copy.restore(&zstd::decode_all(plain.as_slice()).unwrap());
    assert_eq!(copy.fingerprint(), src.fingerprint());
}

#[tokio::test]
async fn manifest_carries_row_counts_of_every_table() {
    let pg = PgDb::create("exp_counts");
    pg.sql("CREATE SCHEMA s2; CREATE TABLE a AS SELECT generate_series(1, 1234) g; CREATE TABLE s2.\"Odd \"\"name\" (x int); INSERT INTO s2.\"Odd \"\"name\" VALUES (1), (2)");
    let my = MyDb::create("exp_counts");
    my.sql("CREATE TABLE a (x INT); INSERT INTO a VALUES (1), (2), (3)");
    let app = TestApp::spawn(&format!("{}{}", pg_source("pgsrc", &pg.name), mysql_source("mysrc", &my.name))).await;

    let (_, _, pg_body) = app.post("/export", &export_body("pgsrc", "pg", &pg.name)).await;
    let (_, _, my_body) = app.post("/export", &export_body("mysrc", "maria", &my.name)).await;

    assert_eq!(pg_body["manifest"]["row_counts"], json!({"public.a": 1234, "s2.Odd \"name": 2}));
    assert_eq!(pg_body["manifest"]["row_counts_exact"], true);
    assert_eq!(my_body["manifest"]["row_counts"], json!({"a": 3}));
    assert_eq!(my_body["manifest"]["row_counts_exact"], false);
}

#[tokio::test]
async fn an_unreachable_server_is_a_transient_failure_answered_503_with_retry_after() {
    let app = TestApp::spawn(
        "[[sources]]\nname = \"down\"\nkind = \"postgres\"\nurl = \"postgres://postgres@127.0.0.1:1/\"\ninstance = \"pg\"\n",
    )
    .await;

    let (status, headers, problem) = app.post("/export", &export_body("down", "pg", "app")).await;

    assert_eq!(status, 503, "{problem}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((30..=45).contains(&retry), "{retry}");
    assert!(problem["detail"].as_str().unwrap().contains("127.0.0.1:1"), "{problem}");
    assert!(app.store_files().is_empty(), "a transient failure is not reported yet: {:?}", app.store_files());
}

#[tokio::test]
async fn the_local_queue_reports_a_transient_failure_once_when_its_retries_run_out() {
    let hook = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&hook).await;
    let app = TestApp::spawn(&format!(
        "[[sources]]\nname = \"down\"\nkind = \"postgres\"\nurl = \"postgres://postgres@127.0.0.1:1/\"\ninstance = \"pg\"\n\
         [notify]\nwebhook_url = \"{}/hook\"\n{}",
        hook.uri(),
        crate::support::FAST_QUEUE
    ))
    .await;
    let source = &app.state.service.sources[0];
    let task = data_backup::model::ExportTask {
        db: source.database(data_backup::model::DatabaseName::parse("app").unwrap()),
        run_date: data_backup::model::RunDate::today(),
        run_id: data_backup::model::RunId::manual(),
    };

    let first = app.state.queue.enqueue(task.clone()).await.unwrap();
    let second = app.state.queue.enqueue(task.clone()).await.unwrap();
    app.wait_idle().await;

    assert_eq!(first, data_backup::queue::Enqueued::Enqueued);
    assert_eq!(second, data_backup::queue::Enqueued::AlreadyQueued, "the queue never holds a task twice");
    let reports = hook.received_requests().await.unwrap();
    assert_eq!(reports.len(), 1);
    let report: Value = serde_json::from_slice(&reports[0].body).unwrap();
    assert_eq!(report["transient"], true);
    assert!(report["attempt"].as_u64().unwrap() >= 2, "retried before giving up: {report}");
    assert_eq!(report["error_class"], "source_unavailable");
}
