//! Restore drills (`POST /verify`, `Verifier::pick`) and the listing (`GET /backups`) against the
//! real servers: tampered objects and manifests are caught, records are written, failures reported.

use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::restore::export;
use crate::support::{MyDb, PgDb, TestApp, mysql_source, mysql_url, pg_source, pg_url, unique_name};

/// `[verify]` pointing at the test servers, plus a webhook for failure reports.
fn verify_settings(hook: &MockServer, extra: &str) -> String {
    format!(
        "[verify]\nurl = \"{}\"\nmysql_url = \"{}\"\n{extra}\n[notify]\nwebhook_url = \"{}/hook\"\nwebhook_attempts = 1\n",
        pg_url(),
        mysql_url(),
        hook.uri()
    )
}

async fn hook() -> MockServer {
    let hook = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&hook).await;
    hook
}

async fn verify(app: &TestApp, source: &str, instance: &str, db: &str) -> (u16, Value) {
    let (status, _, body) =
        app.post("/verify", &json!({"project": source, "instance": instance, "database": db})).await;
    (status, body)
}

fn pg_exists(name: &str) -> bool {
    let out = std::process::Command::new("psql")
        .args(["-X", "-A", "-t", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c"])
        .arg(format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "1"
}

#[tokio::test]
async fn verify_restores_counts_checks_records_and_drops_the_scratch_database() {
    let src = PgDb::create("ver_ok");
    src.sql(
        "CREATE TABLE a (n int); INSERT INTO a SELECT generate_series(1, 1234);
         CREATE SCHEMA s2; CREATE TABLE s2.b (x text); INSERT INTO s2.b VALUES ('x'), ('y');",
    );
    let hook = hook().await;
    let checks = "[[verify.checks]]\nname = \"has rows\"\nsql = \"SELECT count(*) > 1000 FROM a\"\n\
                  [[verify.checks]]\nname = \"other databases only\"\nsql = \"SELECT false\"\ndatabases = [\"*/*/nothing_*\"]\n";
    let app = TestApp::spawn(&format!("{}\n{}", pg_source("pgsrc", &src.name), verify_settings(&hook, checks))).await;
    export(&app, "pgsrc", "pg", &src.name, "2026-11-19").await;
    export(&app, "pgsrc", "pg", &src.name, "2026-11-20").await;

    let (status, record) = verify(&app, "pgsrc", "pg", &src.name).await;

    assert_eq!(status, 200, "{record}");
    assert_eq!(record["result"], "ok", "{record}");
    assert_eq!(record["run_date"], "2026-11-20", "the newest by default");
    assert_eq!(record["row_counts_compared"], true);
    let tables: Vec<(String, u64)> = record["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["table"].as_str().unwrap().to_owned(), t["restored"].as_u64().unwrap()))
        .collect();
    assert_eq!(tables, [("public.a".to_owned(), 1234), ("s2.b".to_owned(), 2)]);
    assert_eq!(record["checks"], json!([{"name": "has rows", "passed": true, "detail": "t"}]));
    assert!(!pg_exists(record["scratch_database"].as_str().unwrap()), "scratch database dropped");
    let stored: Value = serde_json::from_slice(
        &std::fs::read(app.store_dir.path().join(format!("verifications/pgsrc/pg/{}/2026-11-20.json", src.name)))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(stored, record);
    assert!(hook.received_requests().await.unwrap().is_empty(), "nothing to report");

    let body = json!({"project": "pgsrc", "instance": "pg", "database": src.name, "run_date": "2026-11-19"});
    let (status, _, older) = app.post("/verify", &body).await;
    assert_eq!(status, 200, "{older}");
    assert_eq!((older["run_date"].as_str(), older["result"].as_str()), (Some("2026-11-19"), Some("ok")));
    let (missing, _, problem) =
        app.post("/verify", &json!({"project": "pgsrc", "instance": "pg", "database": "no_such_db"})).await;
    assert_eq!(missing, 404, "{problem}");
}

/// Exports one backup, lets `tamper` change the stored files, verifies, and answers the record and
/// the reports the webhook received.
async fn verify_tampered(prefix: &str, tamper: impl FnOnce(&std::path::Path, &Value)) -> (Value, Vec<Value>) {
    let src = PgDb::create(prefix);
    src.sql("CREATE TABLE t (n int, s text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g");
    let hook = hook().await;
    let app = TestApp::spawn(&format!("{}\n{}", pg_source("pgsrc", &src.name), verify_settings(&hook, ""))).await;
    let manifest = export(&app, "pgsrc", "pg", &src.name, "2026-11-20").await;
    tamper(app.store_dir.path(), &manifest);

    let (status, record) = verify(&app, "pgsrc", "pg", &src.name).await;

    assert_eq!(status, 200, "{record}");
    assert!(!pg_exists(record["scratch_database"].as_str().unwrap()), "scratch database dropped: {record}");
    let reports =
        hook.received_requests().await.unwrap().iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect();
    (record, reports)
}

#[tokio::test]
async fn verify_catches_a_truncated_object_and_reports_it() {
    let (record, reports) = verify_tampered("ver_trunc", |dir, m| {
        let path = dir.join(m["key"].as_str().unwrap());
        let data = std::fs::read(&path).unwrap();
        std::fs::write(&path, &data[..data.len() * 2 / 3]).unwrap();
    })
    .await;

    assert_eq!(record["result"], "failed");
    let errors = record["errors"].to_string();
    assert!(errors.contains("truncated"), "{errors}");
    assert_eq!(reports.len(), 1, "reported once");
    assert_eq!(reports[0]["error_class"], "verification_failed");
    assert!(reports[0]["text"].as_str().unwrap().contains("truncated"), "{}", reports[0]);
}

#[tokio::test]
async fn verify_catches_a_corrupted_byte_wherever_it_is() {
    // Early, middle and late: whichever stage trips over it first (zstd, pg_restore, psql or none),
    // the verdict names the damage.
    for tenths in [1, 5, 9] {
        let (record, reports) = verify_tampered("ver_flip", |dir, m| {
            let path = dir.join(m["key"].as_str().unwrap());
            let mut data = std::fs::read(&path).unwrap();
            let at = data.len() * tenths / 10;
            data[at] ^= 0x40;
            std::fs::write(&path, &data).unwrap();
        })
        .await;

        assert_eq!(record["result"], "failed");
        let errors = record["errors"].to_string();
        assert!(errors.contains("SHA-256 mismatch"), "byte at {tenths}/10: {errors}");
        assert_eq!(reports.len(), 1);
    }
}

#[tokio::test]
async fn verify_catches_a_row_count_mismatch() {
    let (record, reports) = verify_tampered("ver_count", |dir, m| {
        let path = dir.join(m["key"].as_str().unwrap().replace(".dump.zst", ".manifest.json"));
        let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        manifest["row_counts"]["public.t"] = json!(20001);
        std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    })
    .await;

    assert_eq!(record["result"], "failed");
    assert_eq!(record["errors"], json!(["row count of public.t: the manifest records 20001, the restore holds 20000"]));
    assert_eq!(record["tables"][0]["matches"], false);
    assert_eq!(reports.len(), 1);
}

#[tokio::test]
async fn row_counts_are_those_of_the_dump_while_writers_keep_inserting() {
    let src = PgDb::create("ver_busy");
    src.sql("CREATE TABLE busy (id bigserial PRIMARY KEY, pad text); INSERT INTO busy (pad) SELECT repeat('p', 200) FROM generate_series(1, 300000)");
    let hook = hook().await;
    let app = TestApp::spawn(&format!("{}\n{}", pg_source("pgsrc", &src.name), verify_settings(&hook, ""))).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (client, conn) =
        tokio_postgres::connect(&format!("host=127.0.0.1 user=postgres dbname={}", src.name), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(conn);
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut inserted = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                client.execute("INSERT INTO busy (pad) VALUES ('during the dump')", &[]).await.unwrap();
                inserted += 1;
            }
            inserted
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    let manifest = export(&app, "pgsrc", "pg", &src.name, "2026-11-20").await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let inserted = writer.await.unwrap();
    let (status, record) = verify(&app, "pgsrc", "pg", &src.name).await;

    assert!(inserted > 0);
    let counted = manifest["row_counts"]["public.busy"].as_u64().unwrap();
    let now: u64 = src.sql("SELECT count(*) FROM busy").parse().unwrap();
    assert_eq!(manifest["row_counts_exact"], true);
    assert!(counted > 300_000 && counted < now, "counted {counted} of {now} rows: the writer ran during the dump");
    assert_eq!(status, 200);
    assert_eq!(record["result"], "ok", "{record}");
    assert_eq!(record["tables"][0]["restored"], counted, "the dump holds exactly the rows its manifest counted");
}

#[tokio::test]
async fn verify_of_mariadb_restores_and_counts() {
    let src = MyDb::create("ver_my");
    src.sql("CREATE TABLE t (n INT); INSERT INTO t VALUES (1), (2), (3); CREATE VIEW v AS SELECT n FROM t;");
    let hook = hook().await;
    let app = TestApp::spawn(&format!("{}\n{}", mysql_source("mysrc", &src.name), verify_settings(&hook, ""))).await;
    export(&app, "mysrc", "maria", &src.name, "2026-11-20").await;

    let (status, record) = verify(&app, "mysrc", "maria", &src.name).await;

    assert_eq!(status, 200, "{record}");
    assert_eq!(record["result"], "ok", "{record}");
    assert_eq!(record["tables"][0]["table"], "t");
    assert_eq!(record["tables"][0]["restored"], 3);
    let scratch = record["scratch_database"].as_str().unwrap();
    let left =
        src.sql(&format!("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '{scratch}%'"));
    assert_eq!(left, "0", "scratch schema dropped");
}

/// Runs SQL in the `postgres` database; answers psql's unaligned output.
fn pg_admin(sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres"])
        .args(["-c", sql])
        .output()
        .unwrap();
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The drill's account, from its scratch database's name (they share their random part).
fn drill_account(record: &Value) -> String {
    let scratch = record["scratch_database"].as_str().unwrap();
    let id = scratch.strip_prefix(data_backup::restore::SCRATCH_PREFIX).expect("a drill's scratch name");
    format!("{}{id}", data_backup::restore::ACCOUNT_PREFIX)
}

#[tokio::test]
async fn a_drill_runs_the_backups_code_without_the_verification_servers_privileges() {
    let victim = unique_name("ver_victim");
    let evil = unique_name("ver_evil");
    pg_admin(&format!("CREATE ROLE {victim} NOLOGIN"));
    let src = PgDb::create("ver_hostile");
    // A CHECK constraint runs its function for every restored row; it reaches for the restoring
    // role's privileges only in a drill's scratch database (not here, at set-up), and once, so
    // that with a superuser the restore would succeed and commit.
    src.sql(&format!(
        "CREATE FUNCTION public.escalate(n int) RETURNS boolean LANGUAGE plpgsql AS $$
         BEGIN
           IF current_database() LIKE 'data_backup_verify%'
              AND NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{evil}') THEN
             EXECUTE 'ALTER ROLE {victim} SUPERUSER';
             EXECUTE 'CREATE ROLE {evil} SUPERUSER LOGIN';
           END IF;
           RETURN true;
         END $$;
         CREATE TABLE t (n int CHECK (public.escalate(n)));
         INSERT INTO t VALUES (1), (2);"
    ));
    let superusers = || pg_admin("SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolsuper");
    let before = superusers();
    let hook = hook().await;
    let app = TestApp::spawn(&format!("{}\n{}", pg_source("pgsrc", &src.name), verify_settings(&hook, ""))).await;
    export(&app, "pgsrc", "pg", &src.name, "2026-11-20").await;

    let (status, record) = verify(&app, "pgsrc", "pg", &src.name).await;

    let evil_exists = pg_admin(&format!("SELECT count(*) FROM pg_roles WHERE rolname = '{evil}'"));
    let victim_super = pg_admin(&format!("SELECT rolsuper FROM pg_roles WHERE rolname = '{victim}'"));
    let account_left = pg_admin(&format!("SELECT count(*) FROM pg_roles WHERE rolname = '{}'", drill_account(&record)));
    let after = superusers();
    pg_admin(&format!("DROP ROLE IF EXISTS {evil}; DROP ROLE {victim}"));
    assert_eq!(status, 200, "{record}");
    assert_eq!((victim_super.as_str(), evil_exists.as_str()), ("f", "0"), "the backup's code escalated: {record}");
    assert_eq!(after, before, "superusers of the verification server");
    assert_eq!(record["result"], "failed", "a restore that failed is no ok: {record}");
    let errors = record["errors"].to_string();
    assert!(errors.contains("restore failed") && errors.contains("ALTER ROLE"), "{errors}");
    assert!(!pg_exists(record["scratch_database"].as_str().unwrap()), "scratch database dropped");
    assert_eq!(account_left, "0", "the drill's role is dropped");
}

#[tokio::test]
async fn a_mariadb_drill_runs_views_and_routines_as_its_own_throwaway_user() {
    let loot = MyDb::create("ver_loot");
    loot.sql("CREATE TABLE loot (who TEXT)");
    let src = MyDb::create("ver_my_hostile");
    // Defined by root: without the drill's own account, selecting the view would run the function
    // as root, and root may write into any schema of the verification server.
    let schema = format!(
        "CREATE TABLE t (n INT); INSERT INTO t VALUES (1), (2);\nDELIMITER //\n\
         CREATE FUNCTION grab() RETURNS INT MODIFIES SQL DATA SQL SECURITY DEFINER \
           BEGIN INSERT INTO `{}`.loot VALUES (CURRENT_USER()); RETURN 1; END //\nDELIMITER ;\n\
         CREATE SQL SECURITY DEFINER VIEW v AS SELECT grab() AS g;\n",
        loot.name
    );
    let args = ["-h", "127.0.0.1", "-u", "root", "--protocol=TCP", "--", &src.name];
    crate::support::run_with_stdin("mariadb", &args, schema.as_bytes());
    let hook = hook().await;
    let checks = "[[verify.checks]]\nname = \"the view answers\"\nsql = \"SELECT g FROM v\"\n";
    let app =
        TestApp::spawn(&format!("{}\n{}", mysql_source("mysrc", &src.name), verify_settings(&hook, checks))).await;
    export(&app, "mysrc", "maria", &src.name, "2026-11-20").await;

    let (status, record) = verify(&app, "mysrc", "maria", &src.name).await;

    assert_eq!(status, 200, "{record}");
    assert_eq!(loot.sql("SELECT COUNT(*) FROM loot"), "0", "the backup's code wrote outside its schema: {record}");
    assert_eq!(record["result"], "failed", "{record}");
    assert_eq!(record["tables"][0]["restored"], 2, "the restore itself worked: {record}");
    let check = record["checks"][0]["detail"].as_str().unwrap();
    assert!(check.contains(&drill_account(&record)), "the function ran as the drill's user: {check}");
    let scratch = record["scratch_database"].as_str().unwrap();
    let left = src.sql(&format!(
        "SELECT (SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '{scratch}%') + \
                (SELECT COUNT(*) FROM mysql.user WHERE user = '{}')",
        drill_account(&record)
    ));
    assert_eq!(left, "0", "scratch schemas and the drill's user are dropped");
}

#[tokio::test]
async fn the_listing_pages_newest_first_with_class_size_encryption_and_verification() {
    let src = PgDb::create("ver_list");
    src.sql("CREATE TABLE t (n int); INSERT INTO t VALUES (1)");
    let hook = hook().await;
    let app = TestApp::spawn(&format!("{}\n{}", pg_source("pgsrc", &src.name), verify_settings(&hook, ""))).await;
    // 2026-11-16 is a Monday (weekly), 2026-11-01 the first of a month.
    for day in ["2026-11-01", "2026-11-16", "2026-11-20"] {
        export(&app, "pgsrc", "pg", &src.name, day).await;
    }
    app.post("/verify", &json!({"project": "pgsrc", "instance": "pg", "database": src.name, "run_date": "2026-11-16"}))
        .await;
    let get = |query: String| {
        let client = app.client.clone();
        let url = format!("{}/backups?{query}", app.address);
        async move {
            let r = client.get(url).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let db = format!("pgsrc/pg/{}", src.name);

    let (status, first) = get(format!("database={db}&page_size=2")).await;
    let token = first["next_page_token"].as_str().unwrap().to_owned();
    let (_, second) = get(format!("database={db}&page_size=2&page_token={token}")).await;

    assert_eq!(status, 200, "{first}");
    let summary = |page: &Value| -> Vec<(String, String, Option<String>)> {
        page["backups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                assert!(b["bytes"].as_u64().unwrap() > 0);
                assert_eq!(b["encrypted"], false);
                (
                    b["run_date"].as_str().unwrap().to_owned(),
                    b["class"].as_str().unwrap().to_owned(),
                    b["verification"]["result"].as_str().map(str::to_owned),
                )
            })
            .collect()
    };
    assert_eq!(
        summary(&first),
        [("2026-11-20".into(), "daily".into(), None), ("2026-11-16".into(), "weekly".into(), Some("ok".into()))]
    );
    assert_eq!(summary(&second), [("2026-11-01".into(), "monthly".into(), None)]);
    assert!(second["next_page_token"].is_null());
    let (bad, problem) = get(format!("database={db}&page_token=garbage")).await;
    assert_eq!(bad, 422, "{problem}");
    assert_eq!(problem["field"], "page_token");
    let (bad, problem) = get("database=not-a-path".into()).await;
    assert_eq!(bad, 422, "{problem}");

    // The CLI lists the same, as a table.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, format!("[store]\nurl = \"file://{}\"\n", app.store_dir.path().display())).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_data-backup"))
        .arg("--config")
        .arg(&config)
        .args(["list", "--database", &db])
        .output()
        .await
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{table}");
    assert!(rows[0].starts_with("2026-11-20  daily") && rows[0].ends_with("never"), "{table}");
    assert!(rows[1].starts_with("2026-11-16  weekly") && rows[1].contains(" ok 2026-"), "{table}");
}

#[tokio::test]
async fn the_nightly_pick_verifies_the_least_recently_verified_first() {
    let prefix = crate::support::unique_name("ver_pick");
    let a = PgDb { name: format!("{prefix}_a") };
    let b = PgDb { name: format!("{prefix}_b") };
    for db in [&a, &b] {
        let created = std::process::Command::new("psql")
            .args(["-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c"])
            .arg(format!("CREATE DATABASE {}", db.name))
            .status()
            .unwrap();
        assert!(created.success());
        db.sql("CREATE TABLE t (n int); INSERT INTO t VALUES (1)");
    }
    let hook = hook().await;
    let app =
        TestApp::spawn(&format!("{}\n{}", pg_source("pgsrc", &format!("{prefix}_*")), verify_settings(&hook, "")))
            .await;
    export(&app, "pgsrc", "pg", &a.name, "2026-11-20").await;
    export(&app, "pgsrc", "pg", &b.name, "2026-11-20").await;
    let (_, first) = verify(&app, "pgsrc", "pg", &a.name).await;
    assert_eq!(first["result"], "ok");

    let picked = app.state.verifier.pick(1).await.unwrap();
    assert_eq!(picked.len(), 1);
    assert_eq!(picked[0].database, b.name, "never verified goes first");
    let picked = app.state.verifier.pick(1).await.unwrap();
    assert_eq!(picked[0].database, a.name, "then the one verified longest ago");
    let order = data_backup::verify::least_recently_verified(&app.state.service.store).await.unwrap();
    assert_eq!(
        order.iter().map(|(db, _)| db.database.to_string()).collect::<Vec<_>>(),
        [b.name.clone(), a.name.clone()]
    );
}

#[tokio::test]
async fn the_drills_due_keep_to_their_budget_least_recently_verified_first() {
    let prefix = crate::support::unique_name("ver_due");
    let dbs: Vec<PgDb> = ["a", "b", "c"].iter().map(|s| PgDb::named(&format!("{prefix}_{s}"))).collect();
    for db in &dbs {
        db.sql("CREATE TABLE t (n int); INSERT INTO t VALUES (1)");
    }
    let hook = hook().await;
    let budget = "nightly_count = 2\nnightly_secs = 3600";
    let app =
        TestApp::spawn(&format!("{}\n{}", pg_source("pgsrc", &format!("{prefix}_*")), verify_settings(&hook, budget)))
            .await;
    for db in &dbs {
        export(&app, "pgsrc", "pg", &db.name, "2026-11-20").await;
    }
    let (_, first) = verify(&app, "pgsrc", "pg", &dbs[0].name).await;
    assert_eq!(first["result"], "ok");

    let (status, _, due) = app.post("/verify/due", &Value::Null).await;
    assert_eq!(status, 200, "{due}");
    let drilled: Vec<&str> = due.as_array().unwrap().iter().map(|r| r["database"].as_str().unwrap()).collect();
    assert_eq!(drilled, [dbs[1].name.as_str(), dbs[2].name.as_str()], "nightly_count, never verified first");
    assert!(due.as_array().unwrap().iter().all(|r| r["result"] == "ok"), "{due:#}");

    let (_, _, due) = app.post("/verify/due", &Value::Null).await;
    assert_eq!(due[0]["database"], dbs[0].name.as_str(), "then the one verified longest ago");
}

#[tokio::test]
async fn a_spent_time_budget_stops_the_drills_due_after_the_first() {
    let prefix = crate::support::unique_name("ver_budget");
    let dbs: Vec<PgDb> = ["a", "b"].iter().map(|s| PgDb::named(&format!("{prefix}_{s}"))).collect();
    for db in &dbs {
        db.sql("CREATE TABLE t (n int); INSERT INTO t VALUES (1)");
    }
    let hook = hook().await;
    let budget = "nightly_count = 5\nnightly_secs = 0";
    let app =
        TestApp::spawn(&format!("{}\n{}", pg_source("pgsrc", &format!("{prefix}_*")), verify_settings(&hook, budget)))
            .await;
    for db in &dbs {
        export(&app, "pgsrc", "pg", &db.name, "2026-11-20").await;
    }

    let records = app.state.verifier.drill_due().await.unwrap();

    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0].database, dbs[0].name);
}
