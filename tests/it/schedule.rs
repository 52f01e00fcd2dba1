//! `POST /schedule` → local queue → exports, on both engines; exclusions; dry runs.

use serde_json::{Value, json};

use crate::support::{FAST_QUEUE, MyDb, PgDb, TestApp, unique_name, unzstd};

fn sources(prefix: &str) -> String {
    format!(
        "{}{}",
        crate::support::pg_source("pgsrc", &format!("{prefix}*")),
        crate::support::mysql_source("mysrc", &format!("{prefix}*"))
    )
}

#[tokio::test]
async fn schedule_backs_up_every_database_of_both_engines_and_each_restores() {
    let prefix = unique_name("sch");
    let pg: Vec<PgDb> = (0..3).map(|i| PgDb::create(&format!("{prefix}_pg{i}"))).collect();
    let my: Vec<MyDb> = (0..2).map(|i| MyDb::create(&format!("{prefix}_my{i}"))).collect();
    for (i, db) in pg.iter().enumerate() {
        db.sql(&format!(
            "CREATE TABLE t AS SELECT g, repeat('ü', g % 50) AS s FROM generate_series(1, {}) g",
            1000 * (i + 1)
        ));
    }
    for (i, db) in my.iter().enumerate() {
        db.sql(&format!("CREATE TABLE t (g INT, s TEXT); INSERT INTO t VALUES ({i}, 'é\\n\"'), (NULL, NULL)"));
    }
    let app = TestApp::spawn(&format!("{}{FAST_QUEUE}", sources(&prefix))).await;

    let (status, _, summary) = app.post("/schedule", &json!(null)).await;
    app.wait_idle().await;

    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["discovered"], 5);
    assert_eq!(summary["enqueued"], 5);
    assert_eq!(summary["excluded"], 0);
    assert_eq!(summary["errors"], json!([]));
    let run_date = summary["run_date"].as_str().unwrap();
    let ledger_key = format!("runs/{run_date}/{}.json", summary["run_id"].as_str().unwrap());
    let ledger: Value =
        serde_json::from_slice(&std::fs::read(app.store_dir.path().join(&ledger_key)).unwrap()).unwrap();
    assert_eq!(ledger["databases"].as_array().unwrap().len(), 5);
    let class = data_backup::retention::class_of(
        chrono::NaiveDate::parse_from_str(run_date, "%Y-%m-%d").unwrap(),
        chrono::Weekday::Mon,
    )
    .as_str();
    for db in &pg {
        let dump = app.store_dir.path().join(format!("{class}/pgsrc/pg/{0}/{run_date}/{0}.dump.zst", db.name));
        let copy = PgDb::create("sch_restored");
        copy.restore(&unzstd(&dump));
        assert_eq!(copy.fingerprint(), db.fingerprint());
    }
    for db in &my {
        let dump = app.store_dir.path().join(format!("{class}/mysrc/maria/{0}/{run_date}/{0}.sql.zst", db.name));
        let copy = MyDb::create("sch_restored");
        copy.restore(&unzstd(&dump));
        assert_eq!(copy.fingerprint(), db.fingerprint());
    }
}

#[tokio::test]
async fn schedule_takes_the_run_date_from_cloud_scheduler_and_a_second_run_exports_nothing_new() {
    let prefix = unique_name("schdate");
    let db = PgDb::create(&format!("{prefix}_a"));
    let app =
        TestApp::spawn(&format!("{}{FAST_QUEUE}", crate::support::pg_source("pgsrc", &format!("{prefix}*")))).await;
    let post = |time: &'static str| {
        app.client.post(format!("{}/schedule", app.address)).header("X-CloudScheduler-ScheduleTime", time).send()
    };

    let first: Value = post("2026-03-31T23:59:59-05:00").await.unwrap().json().await.unwrap();
    app.wait_idle().await;
    let files = app.store_files();
    let second: Value = post("2026-04-01T04:59:59Z").await.unwrap().json().await.unwrap();
    app.wait_idle().await;

    assert_eq!(first["run_date"], "2026-04-01", "UTC day of the schedule time");
    assert_eq!(second["run_date"], "2026-04-01");
    let manifest = format!("quarterly/pgsrc/pg/{0}/2026-04-01/{0}.manifest.json", db.name);
    assert!(files.contains(&manifest), "{files:?}");
    let new: Vec<_> = app.store_files().into_iter().filter(|f| !files.contains(f)).collect();
    assert_eq!(new.len(), 1, "only the second run's ledger is new: {new:?}");
    assert!(new[0].starts_with("runs/2026-04-01/"));
}

#[tokio::test]
async fn exclusions_and_dry_run_answer_the_plan_and_write_nothing() {
    let prefix = unique_name("schex");
    let keep = PgDb::create(&format!("{prefix}_keep"));
    let scratch = PgDb::create(&format!("{prefix}_scratch"));
    let my = MyDb::create(&format!("{prefix}_tmp"));
    let app = TestApp::spawn(&format!(
        "{}[exclude]\npatterns = [\"*/*/*_scratch_*\", \"mysrc/**\"]\n{FAST_QUEUE}",
        sources(&prefix)
    ))
    .await;

    let (status, _, plan) = app.post("/schedule?dry_run=true", &json!(null)).await;

    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["dry_run"], true);
    assert_eq!(
        (plan["discovered"].as_u64(), plan["excluded"].as_u64(), plan["enqueued"].as_u64()),
        (Some(3), Some(2), Some(0))
    );
    let tasks = plan["tasks"].as_array().unwrap();
    let by_name = |n: &str| tasks.iter().find(|t| t["database"] == n).unwrap().clone();
    assert_eq!(by_name(&keep.name)["action"], "export");
    assert_eq!(by_name(&scratch.name)["excluded_by"], "*/*/*_scratch_*");
    assert_eq!(by_name(&my.name)["excluded_by"], "mysrc/**");
    assert!(app.store_files().is_empty(), "a dry run writes nothing: {:?}", app.store_files());

    let (status, _, real) = app.post("/schedule", &json!(null)).await;
    app.wait_idle().await;
    assert_eq!(status, 200);
    assert_eq!(real["enqueued"], 1);
    let ledger_key = format!("runs/{}/{}.json", real["run_date"].as_str().unwrap(), real["run_id"].as_str().unwrap());
    let ledger: Value = serde_json::from_slice(&std::fs::read(app.store_dir.path().join(ledger_key)).unwrap()).unwrap();
    let excluded: Vec<_> =
        ledger["databases"].as_array().unwrap().iter().filter(|d| d["action"] == "excluded").collect();
    assert_eq!(excluded.len(), 2, "the ledger records what each pattern excluded: {ledger}");
    let dumps: Vec<_> = app.store_files().into_iter().filter(|f| f.ends_with(".zst")).collect();
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    assert!(dumps[0].contains(&keep.name));
}

#[tokio::test]
async fn an_unreachable_source_is_named_in_the_summary_and_the_others_are_backed_up() {
    let prefix = unique_name("schdown");
    let db = PgDb::create(&format!("{prefix}_up"));
    let app = TestApp::spawn(&format!(
        "{}[[sources]]\nname = \"down\"\nkind = \"postgres\"\nurl = \"postgres://postgres@127.0.0.1:1/\"\n{FAST_QUEUE}",
        crate::support::pg_source("pgsrc", &format!("{prefix}*"))
    ))
    .await;

    let (status, _, summary) = app.post("/schedule", &json!(null)).await;
    app.wait_idle().await;

    assert_eq!(status, 200);
    assert_eq!(summary["enqueued"], 1);
    assert_eq!(summary["errors"][0]["scope"], "source:down");
    assert!(app.store_files().iter().any(|f| f.ends_with(&format!("{}.manifest.json", db.name))));
}

#[tokio::test]
async fn a_scheduler_body_narrows_one_run_which_the_ledger_records_and_status_keeps_the_rest_expected() {
    let prefix = unique_name("schscope");
    let pg = PgDb::named(&format!("{prefix}_pg"));
    let pg_tmp = PgDb::named(&format!("{prefix}_pg_tmp"));
    let my = MyDb::create(&format!("{prefix}_my"));
    let app = TestApp::spawn(&format!("{}{FAST_QUEUE}", sources(&prefix))).await;

    let (status, _, whole) = app.post("/schedule", &json!(null)).await;
    app.wait_idle().await;
    assert_eq!((status, whole["enqueued"].as_u64()), (200, Some(3)), "{whole}");
    assert!(whole.get("scope").is_none(), "a run without a body has no scope: {whole}");

    // The same run by body: the configured sources named, nothing else.
    let (_, _, same) = app.post("/schedule?dry_run=true", &json!({"sources": ["pgsrc", "mysrc"]})).await;
    let (_, _, none) = app.post("/schedule?dry_run=true", &json!({})).await;
    let plan = |v: &Value| v["tasks"].as_array().unwrap().clone();
    assert_eq!(plan(&same), plan(&none), "a body naming the whole configuration plans as no body does");

    let body = json!({"sources": ["pgsrc"], "exclude": ["*/*/*_pg_tmp"]});
    let (status, _, narrow) = app.post("/schedule", &body).await;
    app.wait_idle().await;

    assert_eq!(status, 200, "{narrow}");
    assert_eq!((narrow["discovered"].as_u64(), narrow["excluded"].as_u64()), (Some(2), Some(1)), "{narrow}");
    assert_eq!(narrow["scope"], body, "the answer records the scope");
    let ledger_key =
        format!("runs/{}/{}.json", narrow["run_date"].as_str().unwrap(), narrow["run_id"].as_str().unwrap());
    let ledger: Value = serde_json::from_slice(&std::fs::read(app.store_dir.path().join(ledger_key)).unwrap()).unwrap();
    assert_eq!(ledger["scope"], body, "the ledger records the scope: {ledger}");
    let planned: Vec<(&str, &str)> = ledger["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["database"].as_str().unwrap(), d["action"].as_str().unwrap()))
        .collect();
    assert_eq!(planned, [(pg.name.as_str(), "export"), (pg_tmp.name.as_str(), "excluded")]);

    // The newest run left MariaDB out on purpose: its database is still expected, not gone.
    let status: Value = app.client.get(format!("{}/status", app.address)).send().await.unwrap().json().await.unwrap();
    let state = |name: &str| {
        status["databases"].as_array().unwrap().iter().find(|d| d["database"] == name).unwrap()["state"].clone()
    };
    assert_eq!(state(&my.name), "unverified", "{status}");
    assert_eq!(state(&pg.name), "unverified", "{status}");
    assert_eq!(state(&pg_tmp.name), "excluded", "{status}");
}

#[tokio::test]
async fn a_scheduler_body_that_is_not_a_valid_scope_is_refused_and_runs_nothing() {
    let prefix = unique_name("schbad");
    let _db = PgDb::create(&format!("{prefix}_a"));
    let app = TestApp::spawn(&format!("{}{FAST_QUEUE}", sources(&prefix))).await;

    let cases = [
        (json!({"sources": ["nope"]}), 422, "no source is named `nope`"),
        (json!({"exclude": ["[unclosed"]}), 422, "`[unclosed` is not a valid pattern"),
        (json!({"folders": ["folders/abc"]}), 422, "`folders/abc` is not a folder"),
        (json!({"folders": ["folders/1"]}), 422, "no `gcp` source"),
        (json!({"projects": [""]}), 400, "must not be empty"),
        (json!({"bogus": 1}), 400, "unknown field `bogus`"),
        (json!(["pgsrc"]), 400, "the body is not a run scope"),
    ];
    for (body, want, says) in cases {
        let (status, _, answer) = app.post("/schedule", &body).await;
        assert_eq!(status, want, "{body}: {answer}");
        assert!(answer["detail"].as_str().unwrap().contains(says), "{body}: {answer}");
    }
    app.wait_idle().await;
    assert!(app.store_files().is_empty(), "a refused scope runs nothing: {:?}", app.store_files());
}
