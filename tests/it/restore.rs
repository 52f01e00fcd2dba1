//! `data-backup restore` against the real servers: finding the backup, transforms in the restore's
//! transaction, `--replace` swaps, the guards, encrypted backups, and the binary itself.

use std::path::{Path, PathBuf};

use data_backup::restore::{RestoreError, RestoreOptions, RestoreReport, RestoreRequest, Selector};
use data_backup::settings::{ServerUrl, Settings};
use serde_json::{Value, json};

use crate::support::{MyDb, PgDb, TestApp, mysql_source, mysql_url, pg_source, pg_url, unique_name};

/// Exports `db` of `source` for `date` through `POST /export`; answers the manifest.
pub async fn export(app: &TestApp, source: &str, instance: &str, db: &str, date: &str) -> Value {
    let body = json!({"source": source, "project": source, "instance": instance, "database": db, "run_date": date});
    let (status, _, body) = app.post("/export", &body).await;
    assert_eq!(status, 200, "{body}");
    body["manifest"].clone()
}

/// `postgres://…/db` (or `mysql://…/db`) on the test server.
pub fn target(server: &str, db: &str) -> ServerUrl {
    ServerUrl::try_from(format!("{}/{db}", server.trim_end_matches('/'))).unwrap()
}

/// A restore request for `source/instance/db` into `into`, plain, latest.
pub fn request(source: &str, instance: &str, db: &str, into: ServerUrl) -> RestoreRequest {
    RestoreRequest {
        db: format!("{source}/{instance}/{db}").parse().unwrap(),
        selector: Selector::Latest,
        target: into,
        transforms: Vec::new(),
        identity: None,
        production_ok: false,
        options: RestoreOptions { create: true, ..RestoreOptions::default() },
    }
}

/// Runs a restore with the app's store and `extra` settings.
pub async fn restore(app: &TestApp, extra: &str, req: &RestoreRequest) -> Result<RestoreReport, RestoreError> {
    let settings: Settings = crate::support::settings(app.store_dir.path(), extra);
    data_backup::restore::restore(&app.state.service.store, &settings, req).await
}

/// Writes `sql` to a temp file.
fn sql_file(dir: &Path, name: &str, sql: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, sql).unwrap();
    path
}

fn pg_exists(name: &str) -> bool {
    let out = std::process::Command::new("psql")
        .args(["-X", "-A", "-t", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c"])
        .arg(format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "1"
}

/// Databases whose name starts with `prefix`, each dropped when the guard goes.
fn pg_like(prefix: &str) -> Vec<PgDb> {
    let out = std::process::Command::new("psql")
        .args(["-X", "-A", "-t", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c"])
        .arg(format!("SELECT datname FROM pg_database WHERE datname LIKE '{prefix}%'"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(|l| PgDb { name: l.trim().to_owned() }).collect()
}

/// Rewrites the `started_at` of every stored manifest to 02:00 UTC of its run date, as the nightly
/// schedule would have written it (the tests export past days now).
fn as_if_nightly(app: &TestApp) {
    for f in app.store_files().into_iter().filter(|f| f.ends_with(".manifest.json")) {
        let path = app.store_dir.path().join(&f);
        let mut m: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        m["started_at"] = json!(format!("{}T02:00:00Z", m["run_date"].as_str().unwrap()));
        std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    }
}

#[tokio::test]
async fn restore_finds_the_latest_the_dated_and_the_point_in_time_backup() {
    let src = PgDb::create("rst_sel");
    src.sql("CREATE TABLE t (n int); INSERT INTO t VALUES (1)");
    let app = TestApp::spawn(&pg_source("pgsrc", &src.name)).await;
    for (day, n) in [("2026-11-18", 2), ("2026-11-19", 3), ("2026-11-20", 4)] {
        export(&app, "pgsrc", "pg", &src.name, day).await;
        src.sql(&format!("INSERT INTO t VALUES ({n})"));
    }
    as_if_nightly(&app);
    let cases = [
        (Selector::Latest, "3"),
        (Selector::Date(data_backup::model::RunDate::parse("2026-11-19").unwrap()), "2"),
        (Selector::At("2026-11-19T12:00:00Z".parse().unwrap()), "2"),
        // The 19th's backup started at 02:00: at 01:00 only the 18th's existed.
        (Selector::At("2026-11-19T01:00:00Z".parse().unwrap()), "1"),
    ];

    for (selector, rows) in cases {
        let into = PgDb { name: unique_name("rst_sel_into") };
        let mut req = request("pgsrc", "pg", &src.name, target(&pg_url(), &into.name));
        req.selector = selector.clone();
        let report = restore(&app, "", &req).await.unwrap_or_else(|e| panic!("{selector:?}: {e}"));
        assert_eq!(into.sql("SELECT count(*) FROM t"), rows, "{selector:?} restored {}", report.key);
    }

    let mut req = request("pgsrc", "pg", &src.name, target(&pg_url(), "never_created"));
    req.selector = Selector::At("2026-11-17T23:59:59Z".parse().unwrap());
    let err = restore(&app, "", &req).await.unwrap_err();
    assert!(matches!(err, RestoreError::NotFound(_)), "{err}");
    assert!(err.to_string().contains("2026-11-20, 2026-11-19, 2026-11-18"), "{err}");
}

#[tokio::test]
async fn the_binary_restores_the_latest_backup_quietly_off_a_terminal() {
    let src = PgDb::create("rst_cli");
    src.sql("CREATE TABLE people (id int PRIMARY KEY, email text); INSERT INTO people SELECT g, 'u' || g || '@corp.example' FROM generate_series(1, 500) g");
    let app = TestApp::spawn(&pg_source("pgsrc", &src.name)).await;
    export(&app, "pgsrc", "pg", &src.name, "2026-11-20").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, format!("[store]\nurl = \"file://{}\"\n", app.store_dir.path().display())).unwrap();
    let anon = sql_file(dir.path(), "anon.sql", "UPDATE people SET email = 'user' || id || '@example.invalid';");
    let into = PgDb { name: unique_name("rst_cli_into") };

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_data-backup"))
        .arg("--config")
        .arg(&config)
        .args(["restore", "--latest", "--create", "--database", &format!("pgsrc/pg/{}", src.name), "--target"])
        .arg(format!("{}{}", pg_url(), into.name))
        .arg("--transform")
        .arg(&anon)
        .output()
        .await
        .unwrap();

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["database"], into.name.as_str());
    assert_eq!(report["transforms"], 1);
    assert!(!stderr.contains('\r'), "no progress off a terminal: {stderr}");
    assert_eq!(into.sql("SELECT count(*) FROM people WHERE email LIKE '%@example.invalid'"), "500");
    assert_eq!(src.sql("SELECT count(*) FROM people WHERE email LIKE '%@corp.example'"), "500");
}

#[tokio::test]
async fn a_sanitising_transform_runs_inside_the_restore() {
    let src = PgDb::create("rst_san");
    src.sql(
        "CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL, name text);
         INSERT INTO users SELECT g, 'person' || g || '@real.example', 'Name ' || g FROM generate_series(1, 1000) g;
         CREATE TABLE orders (id int, user_id int REFERENCES users); INSERT INTO orders SELECT g, g FROM generate_series(1, 1000) g;",
    );
    let app = TestApp::spawn(&pg_source("pgsrc", &src.name)).await;
    export(&app, "pgsrc", "pg", &src.name, "2026-11-20").await;
    let dir = tempfile::tempdir().unwrap();
    let into = PgDb::create("rst_san_into");
    let mut req = request("pgsrc", "pg", &src.name, target(&pg_url(), &into.name));
    req.transforms = vec![
        sql_file(dir.path(), "1-emails.sql", "UPDATE users SET email = md5(email) || '@anon.invalid';"),
        sql_file(dir.path(), "2-names.sql", "UPDATE users SET name = 'user ' || id"),
    ];

    let report = restore(&app, "", &req).await.unwrap();

    assert_eq!(report.transforms, 2);
    assert_eq!(into.sql("SELECT count(*) FROM users WHERE email LIKE '%@real.example'"), "0");
    assert_eq!(into.sql("SELECT count(*) FROM users WHERE email LIKE '%@anon.invalid' AND name LIKE 'user %'"), "1000");
    assert_eq!(into.sql("SELECT count(*) FROM orders"), "1000");
}

#[tokio::test]
async fn a_failing_transform_leaves_the_target_as_it_was() {
    let src = PgDb::create("rst_fail");
    src.sql("CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 100)");
    let app = TestApp::spawn(&pg_source("pgsrc", &src.name)).await;
    export(&app, "pgsrc", "pg", &src.name, "2026-11-20").await;
    let dir = tempfile::tempdir().unwrap();
    let good = sql_file(dir.path(), "good.sql", "DELETE FROM t WHERE n > 50;");
    let bad = sql_file(dir.path(), "bad.sql", "UPDATE t SET n = n + 1;\nUPDATE no_such_table SET x = 1;\n");

    // Plain restore into an existing empty database: nothing of the restore remains.
    let empty = PgDb::create("rst_fail_empty");
    let mut req = request("pgsrc", "pg", &src.name, target(&pg_url(), &empty.name));
    req.transforms = vec![good.clone(), bad.clone()];
    let err = restore(&app, "", &req).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("no_such_table") && text.contains("line 2 of transform") && text.contains("bad.sql"),
        "{text}"
    );
    assert_eq!(empty.sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"), "0");

    // Plain restore with --create: the database it created is gone again.
    let created = unique_name("rst_fail_created");
    let mut req = request("pgsrc", "pg", &src.name, target(&pg_url(), &created));
    req.transforms = vec![bad.clone()];
    assert!(restore(&app, "", &req).await.is_err());
    assert!(!pg_exists(&created));

    // --replace: the existing database keeps its data, no side or old database is left behind.
    let existing = PgDb::create("rst_fail_existing");
    existing.sql("CREATE TABLE mine (x text); INSERT INTO mine VALUES ('precious')");
    let mut req = request("pgsrc", "pg", &src.name, target(&pg_url(), &existing.name));
    req.options.replace = true;
    req.transforms = vec![good, bad];
    assert!(restore(&app, "", &req).await.is_err());
    assert_eq!(existing.sql("SELECT x FROM mine"), "precious");
    let leftovers = pg_like(&format!("{}_", existing.name));
    assert!(leftovers.is_empty(), "{:?}", leftovers.iter().map(|d| &d.name).collect::<Vec<_>>());
}

#[tokio::test]
async fn psql_failing_midway_through_the_dump_fails_the_restore_without_hanging() {
    let src = PgDb::create("rst_mid");
    src.sql("CREATE TABLE t AS SELECT g, md5(g::text) AS m FROM generate_series(1, 300000) g");
    let app = TestApp::spawn(&pg_source("pgsrc", &src.name)).await;
    export(&app, "pgsrc", "pg", &src.name, "2026-11-20").await;
    // No user table, so the restore starts; but `CREATE TABLE t` fails on the view in its way.
    let into = PgDb::create("rst_mid_into");
    into.sql("CREATE VIEW t AS SELECT 1 AS one");
    let req = request("pgsrc", "pg", &src.name, target(&pg_url(), &into.name));

    let outcome = tokio::time::timeout(std::time::Duration::from_secs(60), restore(&app, "", &req)).await;

    let err = outcome.expect("the restore ends").unwrap_err();
    assert!(matches!(&err, RestoreError::Tool { tool, .. } if tool == "psql"), "{err}");
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(into.sql("SELECT one FROM t"), "1", "the target is as it was");
}

#[tokio::test]
async fn replace_swaps_the_restore_in_and_keeps_the_old_database() {
    let src = PgDb::create("rst_swap");
    src.sql("CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 10)");
    let app = TestApp::spawn(&pg_source("pgsrc", &src.name)).await;
    export(&app, "pgsrc", "pg", &src.name, "2026-11-20").await;
    let existing = PgDb::create("rst_swap_existing");
    existing.sql("CREATE TABLE mine (x text); INSERT INTO mine VALUES ('old')");

    // Not without --replace.
    let mut req = request("pgsrc", "pg", &src.name, target(&pg_url(), &existing.name));
    let err = restore(&app, "", &req).await.unwrap_err();
    assert!(matches!(err, RestoreError::Refused(_)) && err.to_string().contains("--replace"), "{err}");
    assert_eq!(existing.sql("SELECT x FROM mine"), "old");

    req.options.replace = true;
    let report = restore(&app, "", &req).await.unwrap();

    let old = PgDb { name: report.previous.clone().expect("the old database is kept") };
    assert!(old.name.starts_with(&format!("{}_old_", existing.name)), "{}", old.name);
    assert_eq!(existing.sql("SELECT count(*) FROM t"), "10");
    assert_eq!(existing.sql("SELECT count(*) FROM pg_tables WHERE tablename = 'mine'"), "0");
    assert_eq!(old.sql("SELECT x FROM mine"), "old");
}

#[tokio::test]
async fn replace_with_an_open_session_fails_untouched_or_terminates_it_when_asked() {
    let src = PgDb::create("rst_conn");
    src.sql("CREATE TABLE t (n int); INSERT INTO t VALUES (1)");
    let app = TestApp::spawn(&pg_source("pgsrc", &src.name)).await;
    export(&app, "pgsrc", "pg", &src.name, "2026-11-20").await;
    let existing = PgDb::create("rst_conn_existing");
    existing.sql("CREATE TABLE mine (x int)");
    let (client, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 user=postgres dbname={}", existing.name),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    client.simple_query("SELECT 1").await.unwrap();
    let mut req = request("pgsrc", "pg", &src.name, target(&pg_url(), &existing.name));
    req.options.replace = true;

    let err = restore(&app, "", &req).await.unwrap_err();
    assert!(err.to_string().contains("--terminate-connections"), "{err}");
    assert_eq!(existing.sql("SELECT count(*) FROM pg_tables WHERE tablename = 'mine'"), "1");
    assert!(pg_like(&format!("{}_restore_", existing.name)).is_empty());

    req.options.terminate_connections = true;
    let report = restore(&app, "", &req).await.unwrap();
    let _old = PgDb { name: report.previous.unwrap() };
    assert!(client.simple_query("SELECT 1").await.is_err(), "the session was terminated");
    assert_eq!(existing.sql("SELECT count(*) FROM t"), "1");
    let _ = conn.await;
}

#[tokio::test]
async fn production_targets_are_refused_unless_the_operator_insists() {
    let src = PgDb::create("rst_prod");
    src.sql("CREATE TABLE t (n int)");
    let app = TestApp::spawn(&pg_source("pgsrc", &src.name)).await;
    export(&app, "pgsrc", "pg", &src.name, "2026-11-20").await;
    let settings = "[restore]\nproduction_patterns = [\"*_prod_*\", \"db-main.*\"]\n";
    let into = PgDb { name: unique_name("rst_x_prod") };
    let mut req = request("pgsrc", "pg", &src.name, target(&pg_url(), &into.name));

    let err = restore(&app, settings, &req).await.unwrap_err();

    assert!(matches!(err, RestoreError::Refused(_)), "{err}");
    assert!(err.to_string().contains("--i-know-this-is-production"), "{err}");
    assert!(!pg_exists(&into.name), "refused before anything was created");
    req.production_ok = true;
    restore(&app, settings, &req).await.unwrap();
    assert_eq!(into.sql("SELECT count(*) FROM t"), "0");
}

#[tokio::test]
async fn an_encrypted_backup_restores_with_its_identity_and_is_refused_without() {
    use secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    let src = PgDb::create("rst_age");
    src.sql("CREATE TABLE secrets (s text); INSERT INTO secrets SELECT md5(g::text) FROM generate_series(1, 3000) g");
    let app = TestApp::spawn(&format!(
        "{}\n[export]\nage_recipients = [\"{}\"]\n",
        pg_source("pgsrc", &src.name),
        id.to_public()
    ))
    .await;
    let manifest = export(&app, "pgsrc", "pg", &src.name, "2026-11-20").await;
    assert!(manifest["key"].as_str().unwrap().ends_with(".dump.zst.age"), "{manifest}");
    let into = PgDb { name: unique_name("rst_age_into") };
    let mut req = request("pgsrc", "pg", &src.name, target(&pg_url(), &into.name));

    let err = restore(&app, "", &req).await.unwrap_err();
    assert!(matches!(err, RestoreError::Encrypted { .. }) && err.to_string().contains("--identity"), "{err}");
    assert!(!pg_exists(&into.name));

    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.key");
    std::fs::write(&wrong, age::x25519::Identity::generate().to_string().expose_secret()).unwrap();
    req.identity = Some(wrong);
    let err = restore(&app, "", &req).await.unwrap_err();
    assert!(matches!(err, RestoreError::Decrypt(_)), "{err}");
    assert!(!pg_exists(&into.name));

    let key = dir.path().join("identity.key");
    std::fs::write(&key, format!("# test identity\n{}\n", id.to_string().expose_secret())).unwrap();
    req.identity = Some(key);
    restore(&app, "", &req).await.unwrap();
    assert_eq!(into.fingerprint(), src.fingerprint());
}

const MY_SCHEMA: &str = r"
CREATE TABLE users (id INT PRIMARY KEY, email VARCHAR(200), created DATE);
INSERT INTO users VALUES (1, 'a@real.example', '2024-01-01'), (2, 'b@real.example', '2024-02-01'), (3, NULL, NULL);
CREATE TABLE audit (n INT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(50));
CREATE TRIGGER users_ai AFTER INSERT ON users FOR EACH ROW INSERT INTO audit (what) VALUES (CONCAT('new ', NEW.id));
CREATE VIEW with_email AS SELECT id, email FROM users WHERE email IS NOT NULL;
CREATE FUNCTION twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2;
";

#[tokio::test]
async fn mariadb_restores_through_a_side_schema_with_triggers_views_and_routines() {
    let src = MyDb::create("rst_my");
    src.sql(MY_SCHEMA);
    let app = TestApp::spawn(&mysql_source("mysrc", &src.name)).await;
    export(&app, "mysrc", "maria", &src.name, "2026-11-20").await;
    let dir = tempfile::tempdir().unwrap();
    let anon = sql_file(
        dir.path(),
        "anon.sql",
        "UPDATE users SET email = CONCAT('user', id, '@anon.invalid') WHERE email IS NOT NULL;",
    );
    let bad = sql_file(dir.path(), "bad.sql", "UPDATE users SET email = NULL;\nUPDATE no_such_table SET x = 1;");
    let into = MyDb { name: unique_name("rst_my_into") };

    let mut req = request("mysrc", "maria", &src.name, target(&mysql_url(), &into.name));
    req.transforms = vec![anon.clone()];
    restore(&app, "", &req).await.unwrap();

    assert_eq!(into.sql("SELECT COUNT(*) FROM with_email WHERE email LIKE '%@anon.invalid'"), "2");
    assert_eq!(into.sql("SELECT twice(21)"), "42");
    into.sql("INSERT INTO users VALUES (4, 'd@x', NULL)");
    assert_eq!(into.sql("SELECT what FROM audit"), "new 4", "the trigger came along");

    // A failing transform leaves the target as it was, with --replace too.
    req.transforms = vec![bad];
    req.options.replace = true;
    let err = restore(&app, "", &req).await.unwrap_err();
    assert!(err.to_string().contains("no_such_table") && err.to_string().contains("bad.sql"), "{err}");
    assert_eq!(into.sql("SELECT COUNT(*) FROM users"), "4");

    // --replace swaps the tables in; the previous ones (and their trigger and view) move to a dated schema.
    req.transforms = vec![anon];
    let report = restore(&app, "", &req).await.unwrap();
    let old = MyDb { name: report.previous.clone().expect("previous tables kept") };
    assert_eq!(into.sql("SELECT COUNT(*) FROM users"), "3");
    assert_eq!(old.sql("SELECT COUNT(*) FROM users"), "4");
    assert_eq!(old.sql("SELECT COUNT(*) FROM with_email"), "3");
    into.sql("INSERT INTO users VALUES (5, 'e@x', NULL)");
    assert_eq!(into.sql("SELECT what FROM audit ORDER BY n DESC LIMIT 1"), "new 5");
    let side = src.sql(&format!(
        "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '{}\\_restore\\_%'",
        into.name
    ));
    assert_eq!(side, "0", "no side schema is left behind");
    assert_eq!(into.sql("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"), "3");

    // Not into a non-empty schema without --replace.
    req.options.replace = false;
    let err = restore(&app, "", &req).await.unwrap_err();
    assert!(matches!(err, RestoreError::Refused(_)), "{err}");
}

#[tokio::test]
async fn a_mariadb_replace_never_meets_nor_drops_a_schema_named_like_its_dated_one() {
    let src = MyDb::create("rst_myuniq");
    src.sql("CREATE TABLE t (n INT); INSERT INTO t VALUES (1), (2)");
    let app = TestApp::spawn(&mysql_source("mysrc", &src.name)).await;
    export(&app, "mysrc", "maria", &src.name, "2026-11-20").await;
    let into = MyDb::create("rst_myuniq_into");
    into.sql("CREATE TABLE mine (n INT); INSERT INTO mine VALUES (7)");
    // What another restore of the same target, in the same seconds, would have made its dated
    // schema: someone else's, with tables in it.
    let now = chrono::Utc::now();
    let others: Vec<MyDb> = (0..6)
        .map(|s| {
            let name = format!("{}_old_{}", into.name, (now + chrono::Duration::seconds(s)).format("%Y%m%d%H%M%S"));
            into.sql(&format!(
                "CREATE DATABASE `{name}`; CREATE TABLE `{name}`.keep (n INT); INSERT INTO `{name}`.keep VALUES (1)"
            ));
            MyDb { name }
        })
        .collect();
    let mut req = request("mysrc", "maria", &src.name, target(&mysql_url(), &into.name));
    req.options.replace = true;

    let report = restore(&app, "", &req).await.unwrap();

    let previous = MyDb { name: report.previous.clone().expect("the previous tables were kept") };
    assert!(others.iter().all(|o| o.name != previous.name), "{}", previous.name);
    assert_eq!(previous.sql("SELECT n FROM mine"), "7");
    assert_eq!(into.sql("SELECT COUNT(*) FROM t"), "2");
    for other in &others {
        assert_eq!(other.sql("SELECT COUNT(*) FROM keep"), "1", "{} was left alone", other.name);
    }
}

#[tokio::test]
async fn a_mariadb_swap_blocked_by_an_open_transaction_gives_up_and_puts_the_target_back() {
    use mysql_async::prelude::Queryable;
    let src = MyDb::create("rst_mylock");
    src.sql(MY_SCHEMA);
    let app = TestApp::spawn(&mysql_source("mysrc", &src.name)).await;
    export(&app, "mysrc", "maria", &src.name, "2026-11-20").await;
    let into = MyDb::create("rst_mylock_into");
    into.sql(MY_SCHEMA);
    into.sql("INSERT INTO users VALUES (9, 'mine@x', NULL)");
    // An open transaction that has read `audit` holds its metadata lock until it ends: the trigger,
    // view and function of the target are dropped, then the atomic RENAME TABLE waits and gives up.
    let url = format!("{}{}", mysql_url(), into.name);
    let mut holder = mysql_async::Conn::new(mysql_async::Opts::from_url(&url).unwrap()).await.unwrap();
    holder.query_drop("START TRANSACTION").await.unwrap();
    holder.query_drop("SELECT COUNT(*) FROM audit").await.unwrap();
    let mut req = request("mysrc", "maria", &src.name, target(&mysql_url(), &into.name));
    req.options.replace = true;

    let err = restore(&app, "", &req).await.unwrap_err();

    let text = err.to_string();
    assert!(text.contains("before any table moved") && text.contains("as it was"), "{text}");
    assert!(!text.contains("could not put back"), "{text}");
    holder.query_drop("COMMIT").await.unwrap();
    drop(holder);
    assert_eq!(into.sql("SELECT COUNT(*) FROM users"), "4");
    assert_eq!(into.sql("SELECT COUNT(*) FROM with_email"), "3", "the view is back");
    assert_eq!(into.sql("SELECT twice(2)"), "4", "the function is back");
    into.sql("INSERT INTO users VALUES (10, 'j@x', NULL)");
    assert_eq!(into.sql("SELECT what FROM audit ORDER BY n DESC LIMIT 1"), "new 10", "the trigger is back");
    let leftovers = src
        .sql(&format!("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '{}\\_%'", into.name));
    assert_eq!(leftovers, "0", "no side or old schema is left behind");
}
