//! Names are data: databases whose names hold spaces, accents, `=` or a leading `-` back up once,
//! are found again by everything that lists the store, and restore with the stock tools; a name
//! never changes what a command does.

use std::path::Path;

use data_backup::model::calendar::{RetentionClass, class_of};
use serde_json::{Value, json};

use crate::support::db::{MyDb, PgDb};
use crate::support::{TestApp, mysql_source, mysql_url, pg_source, pg_url, unzstd};

/// Days before today, as `YYYY-MM-DD`.
fn days_ago(n: u64) -> String {
    (chrono::Utc::now().date_naive() - chrono::Days::new(n)).to_string()
}

/// A daily-class day about three weeks ago (past the daily class's 9 days; not a Monday or a first
/// of the month, whose backups are weekly or monthly and kept longer).
fn an_old_daily_day() -> String {
    (20..=30)
        .map(|n| chrono::Utc::now().date_naive() - chrono::Days::new(n))
        .find(|d| class_of(*d, chrono::Weekday::Mon) == RetentionClass::Daily)
        .unwrap()
        .to_string()
}

async fn get(app: &TestApp, path_and_query: &str) -> Value {
    let r = app.client.get(format!("{}{path_and_query}", app.address)).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path_and_query}");
    r.json().await.unwrap()
}

/// Exports `database` of `source`/`instance` for two days (twice each), then checks that every
/// reader of the store finds it: `/backups`, `/status`, `/verify`, `/prune`. Answers the newest
/// export's answer.
async fn export_and_find(app: &TestApp, source: &str, instance: &str, database: &str) -> Value {
    let body = |date: &str| json!({"project": source, "instance": instance, "database": database, "run_date": date});
    let mut newest = Value::Null;
    let old = an_old_daily_day();
    for date in [old.clone(), days_ago(1)] {
        let (status, _, first) = app.post("/export", &body(&date)).await;
        assert_eq!((status, first["status"].as_str()), (200, Some("exported")), "{first}");
        let (status, _, again) = app.post("/export", &body(&date)).await;
        assert_eq!((status, again["status"].as_str()), (200, Some("already_exported")), "{again}");
        assert_eq!(again["manifest"]["sha256"], first["manifest"]["sha256"]);
        newest = first;
    }
    let files = app.store_files();
    assert!(!files.iter().any(|f| f.starts_with("leases/")), "every lease was found and given back: {files:?}");
    assert!(!files.iter().any(|f| f.contains("%25")), "no key is encoded twice: {files:?}");

    // Listed: a `/` in the query's path is typed `%2F`, anything else as it is.
    let path = format!("{source}/{instance}/{database}");
    let query: String = url::form_urlencoded::byte_serialize(path.as_bytes()).collect();
    let listed = get(app, &format!("/backups?database={query}")).await;
    let dates: Vec<&str> =
        listed["backups"].as_array().unwrap().iter().map(|b| b["run_date"].as_str().unwrap()).collect();
    assert_eq!(dates, [days_ago(1), old.clone()], "{listed}");

    // Shown by /status.
    let status = get(app, "/status").await;
    let rows: Vec<&Value> =
        status["databases"].as_array().unwrap().iter().filter(|r| r["database"] == database).collect();
    assert_eq!(rows.len(), 1, "{status}");
    assert!(["ok", "unverified"].contains(&rows[0]["state"].as_str().unwrap()), "{status}");

    // Verified by a restore drill.
    let (code, _, record) =
        app.post("/verify", &json!({"project": source, "instance": instance, "database": database})).await;
    assert_eq!((code, record["result"].as_str()), (200, Some("ok")), "{record}");

    // Pruned: the older day is past its class (daily: 9 days), the newest is kept.
    let (code, _, plan) = app.post("/prune", &json!({"apply": true})).await;
    assert_eq!(code, 200, "{plan}");
    let deleted: Vec<&str> =
        plan["deleted"].as_array().unwrap().iter().map(|e| e["run_date"].as_str().unwrap()).collect();
    assert_eq!(deleted, [old], "{plan}");
    let listed = get(app, &format!("/backups?database={query}")).await;
    assert_eq!(listed["backups"].as_array().unwrap().len(), 1, "{listed}");
    newest
}

#[tokio::test]
async fn a_postgres_database_called_cafe_app_backs_up_once_and_every_reader_finds_it() {
    let src = PgDb::named(&format!("café app {:08x}", rand::random::<u32>()));
    src.sql("CREATE TABLE t AS SELECT g AS n, md5(g::text) AS s FROM generate_series(1, 500) g");
    let app = TestApp::spawn(&format!("{}[verify]\nurl = \"{}\"\n", pg_source("pgsrc", &src.name), pg_url())).await;

    let answer = export_and_find(&app, "pgsrc", "pg", &src.name).await;

    let key = answer["key"].as_str().unwrap();
    assert!(key.contains(&format!("/{}/", src.name.replace(' ', "%20"))), "{key}");
    let copy = PgDb::create("cafe_restored");
    copy.restore(&unzstd(&app.store_dir.path().join(key)));
    assert_eq!(copy.fingerprint(), src.fingerprint());
}

#[tokio::test]
async fn a_mariadb_schema_called_like_an_option_is_dumped_as_a_name() {
    let file = format!("x_{:08x}.txt", rand::random::<u32>());
    let src = MyDb::named(&format!("--result-file={file}"));
    src.sql("CREATE TABLE t (n INT PRIMARY KEY, s TEXT); INSERT INTO t SELECT seq, md5(seq) FROM seq_1_to_300");
    let app =
        TestApp::spawn(&format!("{}[verify]\nmysql_url = \"{}\"\n", mysql_source("mysrc", &src.name), mysql_url()))
            .await;

    let answer = export_and_find(&app, "mysrc", "maria", &src.name).await;

    assert!(!Path::new(&file).exists(), "the name reached mariadb-dump as an option and wrote {file}");
    let dump = String::from_utf8(unzstd(&app.store_dir.path().join(answer["key"].as_str().unwrap()))).unwrap();
    assert!(dump.contains("CREATE TABLE `t`"), "the schema's own table is in the dump");
    assert!(!dump.contains("global_priv") && !dump.contains("`mysql`"), "no other schema is in the dump");
    let copy = MyDb::create("opt_restored");
    copy.restore(dump.as_bytes());
    assert_eq!(copy.fingerprint(), src.fingerprint());
}
