//! Named on-demand backups (`label`): stored under `labels/<label>/…`, idempotent by label, listed
//! with their label, never touched by the prune, restorable by label, through HTTP and the CLI.

use serde_json::{Value, json};

use crate::restore::{request, restore, target};
use crate::support::{PgDb, TestApp, pg_source, pg_url, unique_name};
use data_backup::model::Label;
use data_backup::restore::Selector;

fn labelled(db: &str, date: &str, label: &str) -> Value {
    json!({"project": "pgsrc", "instance": "pg", "database": db, "run_date": date, "label": label})
}

#[tokio::test]
async fn named_backups_are_stored_under_labels_idempotent_listed_and_kept_by_prune() {
    let src = PgDb::create(&unique_name("lbl"));
    src.sql("CREATE TABLE t AS SELECT generate_series(1, 42) g");
    let app = TestApp::spawn(&pg_source("pgsrc", &src.name)).await;
    let dated = |date: &str| json!({"project": "pgsrc", "instance": "pg", "database": src.name, "run_date": date});

    let (status, _, named) = app.post("/export", &labelled(&src.name, "2025-01-01", "before-incident-42")).await;
    let (status_again, _, again) = app.post("/export", &labelled(&src.name, "2025-01-03", "before-incident-42")).await;
    for date in ["2025-01-02", "2025-01-03"] {
        let (status, _, body) = app.post("/export", &dated(date)).await;
        assert_eq!((status, body["status"].as_str()), (200, Some("exported")), "{body}");
    }

    assert_eq!((status, named["status"].as_str()), (200, Some("exported")), "{named}");
    let prefix = format!("labels/before-incident-42/pgsrc/pg/{}/", src.name);
    let key = named["key"].as_str().unwrap();
    assert_eq!(key, format!("{prefix}{}.dump.zst", src.name));
    assert_eq!((status_again, again["status"].as_str()), (200, Some("already_exported")), "{again}");
    assert_eq!(again["manifest"], named["manifest"], "the same label is the same backup");
    let files = app.store_files();
    assert!(files.contains(&key.to_owned()) && files.contains(&format!("{prefix}{}.manifest.json", src.name)));
    assert!(!files.iter().any(|f| f.starts_with("leases/")), "leases are given back: {files:?}");
    let latest: Value = serde_json::from_slice(
        &std::fs::read(app.store_dir.path().join(format!("latest/pgsrc/pg/{}.json", src.name))).unwrap(),
    )
    .unwrap();
    assert_eq!(latest["run_date"], "2025-01-03", "a named backup leaves latest/ to the dated ones");
    assert!(latest["key"].as_str().unwrap().starts_with("daily/"));

    // Listed with its label, newest first by run date.
    let list = |app: &TestApp| {
        let url = format!("{}/backups?database=pgsrc/pg/{}", app.address, src.name);
        let client = app.client.clone();
        async move { client.get(url).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let page = list(&app).await;
    let rows: Vec<(&str, &str, Option<&str>)> = page["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["run_date"].as_str().unwrap(), b["class"].as_str().unwrap(), b["label"].as_str()))
        .collect();
    assert_eq!(
        rows,
        [
            ("2025-01-03", "daily", None),
            ("2025-01-02", "daily", None),
            ("2025-01-01", "label", Some("before-incident-42"))
        ],
        "{page}"
    );

    // The prune deletes the expired dated backup and never looks at the label.
    let (status, _, plan) = app.post("/prune?apply=true", &json!({})).await;
    assert_eq!(status, 200, "{plan}");
    let deleted: Vec<&str> =
        plan["deleted"].as_array().unwrap().iter().map(|e| e["run_date"].as_str().unwrap()).collect();
    assert_eq!(deleted, ["2025-01-02"], "{plan}");
    assert!(!plan.to_string().contains("labels/"), "{plan}");
    let files = app.store_files();
    assert!(files.contains(&key.to_owned()) && files.contains(&format!("{prefix}{}.manifest.json", src.name)));
    let after: Vec<Option<&str>> = list(&app).await["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["label"].as_str())
        .collect::<Vec<_>>()
        .into_iter()
        .map(|l| l.map(|_| "label"))
        .collect();
    assert_eq!(after, [None, Some("label")]);

    // Restorable by its label, whatever the newer dated backups hold.
    src.sql("INSERT INTO t SELECT generate_series(43, 50)");
    app.post("/export", &dated(&chrono::Utc::now().date_naive().to_string())).await;
    let into = PgDb { name: unique_name("lbl_into") };
    let mut req = request("pgsrc", "pg", &src.name, target(&pg_url(), &into.name));
    req.selector = Selector::Label(Label::parse("before-incident-42").unwrap());
    let report = restore(&app, "", &req).await.unwrap();
    assert_eq!(report.key, key);
    assert_eq!(into.sql("SELECT count(*) FROM t"), "42");
    req.selector = Selector::Label(Label::parse("no-such-label").unwrap());
    let err = restore(&app, "", &req).await.unwrap_err().to_string();
    assert!(err.contains("no-such-label") && err.contains("before-incident-42"), "{err}");
    app.stop().await;
}

#[tokio::test]
async fn a_label_is_refused_only_when_it_cannot_be_stored() {
    let app = TestApp::spawn(&pg_source("pgsrc", "never_matches_*")).await;
    let long = "x".repeat(129);
    for bad in ["", "a\0b", long.as_str()] {
        let (status, _, problem) = app.post("/export", &labelled("app", "2025-01-01", bad)).await;
        assert_eq!((status, problem["field"].as_str()), (422, Some("label")), "{bad:?}: {problem}");
    }
    assert!(!app.store_files().iter().any(|f| f.starts_with("labels/")));
    app.stop().await;
}

#[tokio::test]
async fn cli_exports_lists_and_restores_a_named_backup() {
    let src = PgDb::create(&unique_name("lblcli"));
    src.sql("CREATE TABLE t AS SELECT generate_series(1, 7) g");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("[store]\nurl = \"file://{}\"\n{}", dir.path().join("store").display(), pg_source("pgsrc", &src.name)),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("store")).unwrap();
    let run = |args: &[&str]| crate::support::cli(&config, args);
    let database = format!("pgsrc/pg/{}", src.name);

    let (ok, out, err) = run(&["export", "--database", &database, "--label", "release-1"]);
    assert!(ok, "{err}");
    let manifest: Value = serde_json::from_str(&out).unwrap();
    assert!(manifest["key"].as_str().unwrap().starts_with("labels/release-1/pgsrc/pg/"), "{manifest}");
    let (ok, _, err) = run(&["export", "--database", &database, "--label", "release-1"]);
    assert!(ok && err.contains("already exported"), "{err}");
    let (ok, out, err) = run(&["list", "--database", &database]);
    assert!(ok, "{err}");
    assert!(out.lines().any(|l| l.contains(" label ") && l.contains(" release-1 ")), "{out}");
    let into = PgDb { name: unique_name("lblcli_into") };
    let target = format!("{}/{}", pg_url().trim_end_matches('/'), into.name);
    let (ok, _, err) =
        run(&["restore", "--database", &database, "--label", "release-1", "--target", &target, "--create"]);
    assert!(ok, "{err}");
    assert_eq!(into.sql("SELECT count(*) FROM t"), "7");
    let (ok, _, err) = run(&["export", "--database", &database, "--label", &"x".repeat(129)]);
    assert!(!ok && err.contains("label"), "{err}");
}

#[tokio::test]
async fn call_export_with_a_label_asks_the_running_service_for_a_named_backup() {
    let src = PgDb::create(&unique_name("lblcall"));
    src.sql("CREATE TABLE t AS SELECT generate_series(1, 3) g");
    let app = TestApp::spawn(&pg_source("pgsrc", &src.name)).await;
    let database = format!("pgsrc/pg/{}", src.name);
    let args = ["call", "export", "--database", &database, "--label", "pre-upgrade", "--url", &app.address];

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_data-backup"))
        .args(args)
        .env("DATA_BACKUP_AUTH__BEARER_TOKEN", "unused-by-this-service")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();

    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["status"], "exported", "{answer}");
    let key = format!("labels/pre-upgrade/pgsrc/pg/{0}/{0}.dump.zst", src.name);
    assert_eq!(answer["key"], key.as_str(), "{answer}");
    assert!(app.store_files().contains(&key));
}
