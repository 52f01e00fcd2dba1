//! The `gcp` source and the `cloud_tasks` queue against stateful fakes of Resource Manager, Cloud
//! SQL Admin, Cloud Asset and Cloud Tasks: a three-level folder tree paged one item at a time,
//! projects in every state, instances of every engine, state and type, a project with the API
//! disabled and one that refuses, `REGION_UNREACHABLE`, 429 bursts, de-duplication across runs,
//! and Cloud Tasks delivering every task to the running service's `/export`.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::support::fakes::asset::AssetFake;
use crate::support::fakes::cloud_tasks::CloudTasksFake;
use crate::support::fakes::google::{FakeInstance, Org, SqlAccess, shared};
use crate::support::fakes::resource_manager::ResourceManagerFake;
use crate::support::fakes::sql_admin::SqlAdminFake;
use crate::support::{PgDb, TestApp, unique_name};

const QUEUE: &str = "projects/ops/locations/europe-west1/queues/backups";

/// The four fakes over one organisation.
struct Google {
    rm: ResourceManagerFake,
    sql: SqlAdminFake,
    asset: AssetFake,
    tasks: CloudTasksFake,
}

impl Google {
    async fn start(org: Org) -> Self {
        let shared = shared(org, 1);
        Self {
            rm: ResourceManagerFake::start(shared.clone()).await,
            sql: SqlAdminFake::start(shared.clone()).await,
            asset: AssetFake::start(shared.clone()).await,
            tasks: CloudTasksFake::start().await,
        }
    }

    /// `[gcp]` pointing every client at the fakes, with fast limits and retries.
    fn gcp_toml(&self) -> String {
        format!(
            "[gcp]\ncredentials = \"anonymous\"\nresource_manager_endpoint = \"{}\"\nsql_admin_endpoint = \"{}\"\n\
             asset_endpoint = \"{}\"\ncloud_tasks_endpoint = \"{}\"\nresource_manager_per_minute = 60000\n\
             sql_admin_per_minute = 60000\nasset_per_minute = 60000\ncloud_tasks_per_minute = 60000\n\
             max_attempts = 5\nretry_initial_ms = 10\n",
            self.rm.server.uri(),
            self.sql.server.uri(),
            self.asset.server.uri(),
            self.tasks.server.uri()
        )
    }

    /// `[queue]` for the Cloud Tasks fake.
    fn queue_toml(target: &str, attempts: u32) -> String {
        format!(
            "[queue]\nkind = \"cloud_tasks\"\nqueue = \"{QUEUE}\"\ntarget_url = \"{target}\"\n\
             service_account = \"tasks@ops.iam.gserviceaccount.com\"\naudience = \"https://data-backup.example\"\n\
             stagger_secs = 120\ncreate_attempts = {attempts}\n"
        )
    }
}

fn source_toml(strategy: &str) -> String {
    format!(
        "[[sources]]\nname = \"org\"\nkind = \"gcp\"\nfolders = [\"folders/1\"]\nprojects = [\"p-outside\"]\nstrategy = \"{strategy}\"\n"
    )
}

/// organizations/1 ─ folders/1 ─┬─ folders/11 ─ folders/111
///                   │          └─ folders/12
///                   └─ p-outside (listed explicitly)
fn org() -> Org {
    let mut org = Org::default();
    org.folder("folders/1", "organizations/1")
        .folder("folders/11", "folders/1")
        .folder("folders/111", "folders/11")
        .folder("folders/12", "folders/1")
        .project("p-top", "folders/1", "ACTIVE", SqlAccess::Enabled)
        .project("p-mid", "folders/11", "ACTIVE", SqlAccess::Enabled)
        .project("p-deep", "folders/111", "ACTIVE", SqlAccess::Enabled)
        .project("p-denied", "folders/111", "ACTIVE", SqlAccess::Denied)
        .project("p-deleted", "folders/12", "DELETE_REQUESTED", SqlAccess::Enabled)
        .project("p-unspecified", "folders/12", "STATE_UNSPECIFIED", SqlAccess::Enabled)
        .project("p-disabled", "folders/12", "ACTIVE", SqlAccess::Disabled)
        .project("p-outside", "organizations/1", "ACTIVE", SqlAccess::Enabled)
        .instance(FakeInstance::runnable(
            "p-top",
            "pg-main",
            "POSTGRES_16",
            &["postgres", "cloudsqladmin", "template0", "template1", "app", "billing"],
        ))
        .instance(FakeInstance::runnable(
            "p-mid",
            "mysql-main",
            "MYSQL_8_0",
            &["mysql", "sys", "information_schema", "performance_schema", "shop"],
        ))
        .instance(FakeInstance {
            instance_type: "READ_REPLICA_INSTANCE".into(),
            ..FakeInstance::runnable("p-mid", "pg-replica", "POSTGRES_16", &["app"])
        })
        .instance(FakeInstance::runnable(
            "p-deep",
            "mssql",
            "SQLSERVER_2019_STANDARD",
            &["master", "model", "msdb", "tempdb", "erp"],
        ))
        .instance(FakeInstance {
            state: "SUSPENDED".into(),
            ..FakeInstance::runnable("p-deep", "pg-suspended", "POSTGRES_15", &["x"])
        })
        .instance(FakeInstance {
            activation_policy: "NEVER".into(),
            ..FakeInstance::runnable("p-deep", "mysql-stopped", "MYSQL_8_0", &["y"])
        })
        .instance(FakeInstance {
            state: "MAINTENANCE".into(),
            ..FakeInstance::runnable("p-deep", "pg-maintenance", "POSTGRES_16", &["m"])
        })
        .instance(FakeInstance {
            instance_type: "ON_PREMISES_INSTANCE".into(),
            ..FakeInstance::runnable("p-deep", "onprem", "MYSQL_5_7", &["z"])
        })
        .instance(FakeInstance {
            asset_attributes: false,
            ..FakeInstance::runnable("p-deep", "pg-legacy", "POSTGRES_14", &["postgres", "ledger", "scratch_tmp"])
        })
        .instance(FakeInstance::runnable("p-denied", "pg-secret", "POSTGRES_16", &["secret"]))
        .instance(FakeInstance::runnable("p-deleted", "pg-old", "POSTGRES_16", &["gone"]))
        .instance(FakeInstance::runnable("p-outside", "pg", "POSTGRES_17", &["explicit"]));
    org
}

fn task_set(plan: &Value) -> Vec<String> {
    let mut out: Vec<String> = plan["tasks"]
        .as_array()
        .expect("a dry run has tasks")
        .iter()
        .map(|t| {
            format!(
                "{}/{}/{} {} {}",
                t["project"].as_str().unwrap(),
                t["instance"].as_str().unwrap(),
                t["database"].as_str().unwrap(),
                t["engine"].as_str().unwrap(),
                t["action"].as_str().unwrap()
            )
        })
        .collect();
    out.sort();
    out
}

fn scopes(summary: &Value, field: &str) -> BTreeSet<String> {
    summary[field].as_array().unwrap().iter().map(|e| e["scope"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn an_export_by_hand_outside_the_folders_projects_and_exclusions_is_refused_naming_the_rule() {
    let google = Google::start(org()).await;
    let source = "[[sources]]\nname = \"org\"\nkind = \"gcp\"\nfolders = [\"folders/11\"]\nprojects = [\"p-outside\"]\n\
                  [exclude]\npatterns = [\"*/*/billing\"]\n";
    let app = TestApp::spawn(&format!("{source}{}", google.gcp_toml())).await;
    let export = |project: &str, instance: &str, database: &str, ignore_scope: bool| json!({"project": project, "instance": instance, "database": database, "ignore_scope": ignore_scope});
    let refused_for_scope = |problem: &Value| problem["detail"].as_str().unwrap_or("").contains("ignore_scope");

    // p-top sits in folders/1, above the configured folders/11.
    let (status, _, outside) = app.post("/export", &export("p-top", "pg-main", "app", false)).await;
    assert_eq!((status, outside["field"].as_str()), (422, Some("project")), "{outside}");
    assert!(outside["detail"].as_str().unwrap().contains("folders/1 → organizations/1"), "{outside}");
    // A project nobody can read (or that does not exist) is outside too.
    let (status, _, unknown) = app.post("/export", &export("p-nowhere", "pg", "app", false)).await;
    assert_eq!((status, unknown["field"].as_str()), (422, Some("project")), "{unknown}");
    // An exclusion pattern.
    let (status, _, excluded) = app.post("/export", &export("p-outside", "pg", "billing", false)).await;
    assert_eq!(status, 422, "{excluded}");
    assert!(excluded["detail"].as_str().unwrap().contains("*/*/billing"), "{excluded}");
    assert!(app.store_files().is_empty(), "nothing was exported: {:?}", app.store_files());
    // Inside: two levels under folders/11, or listed in `projects`; or outside but asked explicitly.
    for (project, instance, database, ignore) in
        [("p-deep", "mssql", "erp", false), ("p-outside", "pg", "app", false), ("p-top", "pg-main", "app", true)]
    {
        let (_, _, answer) = app.post("/export", &export(project, instance, database, ignore)).await;
        assert!(!refused_for_scope(&answer), "{project}: {answer}");
        // It reached the exporter, which wants a gs:// store (this test's is a local directory).
        assert!(answer["detail"].as_str().unwrap().contains("Cloud SQL writes its exports"), "{project}: {answer}");
    }
}

#[tokio::test]
async fn walk_finds_every_database_of_a_three_level_tree_paged_one_by_one_and_says_what_it_skipped() {
    let google = Google::start(org()).await;
    let app = TestApp::spawn(&format!("{}{}", source_toml("walk"), google.gcp_toml())).await;

    let (status, _, plan) = app.post("/schedule?dry_run=true", &json!(null)).await;

    assert_eq!(status, 200, "{plan}");
    insta::assert_json_snapshot!("gcp_walk_task_set", task_set(&plan));
    assert_eq!(plan["folders"], 4, "{plan}");
    assert_eq!(plan["projects"], 6, "ACTIVE projects under the tree plus the explicit one: {plan}");
    assert_eq!(plan["instances"], 5, "{plan}");
    let skipped: Vec<String> = plan["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{}: {}", s["scope"].as_str().unwrap(), s["reason"].as_str().unwrap()))
        .collect();
    insta::assert_json_snapshot!("gcp_walk_skipped", skipped);
    assert_eq!(
        scopes(&plan, "errors"),
        BTreeSet::from(["source:org:project:p-denied".to_owned(), "source:org:project:p-disabled".to_owned()]),
        "{plan}"
    );
    assert_eq!(plan["complete"], false, "a project that refuses leaves the run incomplete");
    assert!(app.store_files().is_empty(), "a dry run writes nothing");
}

#[tokio::test]
async fn asset_inventory_finds_the_same_tasks_as_the_walk_with_far_fewer_calls() {
    let walk_google = Google::start(org()).await;
    let walk_app = TestApp::spawn(&format!("{}{}", source_toml("walk"), walk_google.gcp_toml())).await;
    let asset_google = Google::start(org()).await;
    let asset_app = TestApp::spawn(&format!("{}{}", source_toml("asset_inventory"), asset_google.gcp_toml())).await;

    let (_, _, walk) = walk_app.post("/schedule?dry_run=true", &json!(null)).await;
    let (status, _, asset) = asset_app.post("/schedule?dry_run=true", &json!(null)).await;

    assert_eq!(status, 200, "{asset}");
    assert_eq!(task_set(&asset), task_set(&walk));
    assert_eq!(asset_google.rm.api.calls(), 0, "the asset strategy never walks folders");
    let walk_calls = walk_google.rm.api.calls() + walk_google.sql.api.calls();
    let asset_calls = asset_google.asset.api.calls() + asset_google.sql.api.calls();
    assert!(asset_calls < walk_calls, "asset {asset_calls} calls, walk {walk_calls}");
    let by_path = asset_google.sql.api.by_path.lock().unwrap().clone();
    assert_eq!(
        by_path.get("/v1/projects/p-deep/instances/pg-legacy"),
        Some(&1),
        "an asset without attributes is read with instances.get: {by_path:?}"
    );
    assert!(
        scopes(&asset, "errors").contains("source:org:instance:p-denied/pg-secret"),
        "the refused project is named: {asset}"
    );
}

#[tokio::test]
async fn a_folder_that_refuses_is_named_and_marks_the_run_incomplete_while_its_siblings_are_backed_up() {
    let mut org = org();
    org.denied_folders.insert("folders/11".into());
    let google = Google::start(org).await;
    let app = TestApp::spawn(&format!("{}{}", source_toml("walk"), google.gcp_toml())).await;

    let (status, _, plan) = app.post("/schedule?dry_run=true", &json!(null)).await;

    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["complete"], false, "{plan}");
    let errors: Vec<&Value> = plan["errors"].as_array().unwrap().iter().collect();
    let about_folder: Vec<&str> = errors
        .iter()
        .filter(|e| e["scope"] == "source:org:folder:folders/11")
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(about_folder.len(), 2, "its folders and its projects could not be listed: {plan}");
    assert!(about_folder.iter().all(|m| m.contains("permission denied")), "{about_folder:?}");
    let tasks = task_set(&plan);
    let projects: BTreeSet<&str> = tasks.iter().map(|t| t.split('/').next().unwrap()).collect();
    assert_eq!(projects, BTreeSet::from(["p-outside", "p-top"]), "what the refusal hides is missing, the rest is not");
}

#[tokio::test]
async fn region_unreachable_marks_the_run_and_its_ledger_incomplete() {
    let mut org = Org::default();
    org.folder("folders/1", "organizations/1")
        .project("p-ok", "folders/1", "ACTIVE", SqlAccess::Enabled)
        .project("p-partial", "folders/1", "ACTIVE", SqlAccess::RegionUnreachable)
        .instance(FakeInstance::runnable("p-ok", "pg", "POSTGRES_16", &["a"]))
        .instance(FakeInstance::runnable("p-partial", "pg", "POSTGRES_16", &["b"]));
    let google = Google::start(org).await;
    let app = TestApp::spawn(&format!(
        "[[sources]]\nname = \"org\"\nkind = \"gcp\"\nfolders = [\"1\"]\n{}{}",
        google.gcp_toml(),
        Google::queue_toml("https://data-backup.example/export", 3)
    ))
    .await;

    let (status, _, summary) = app.post("/schedule", &json!(null)).await;

    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["enqueued"], 2, "what could be seen is still backed up: {summary}");
    assert_eq!(summary["complete"], false);
    let error = &summary["errors"][0];
    assert_eq!(error["scope"], "source:org:project:p-partial");
    assert!(error["message"].as_str().unwrap().contains("REGION_UNREACHABLE"), "{error}");
    let key = format!("runs/{}/{}.json", summary["run_date"].as_str().unwrap(), summary["run_id"].as_str().unwrap());
    let ledger: Value = serde_json::from_slice(&std::fs::read(app.store_dir.path().join(key)).unwrap()).unwrap();
    assert_eq!(ledger["complete"], false, "{ledger}");
    assert_eq!(ledger["errors"][0]["scope"], "source:org:project:p-partial");
}

#[tokio::test]
async fn bursts_of_429_are_waited_out_and_nothing_is_lost() {
    let google = Google::start(org()).await;
    let app = TestApp::spawn(&format!("{}{}", source_toml("walk"), google.gcp_toml())).await;
    let (_, _, calm) = app.post("/schedule?dry_run=true", &json!(null)).await;
    google.rm.api.throttle_next(3);
    google.sql.api.throttle_next(3);

    let (status, _, stormy) = app.post("/schedule?dry_run=true", &json!(null)).await;

    assert_eq!(status, 200, "{stormy}");
    assert_eq!(task_set(&stormy), task_set(&calm));
    assert_eq!(scopes(&stormy, "errors"), scopes(&calm, "errors"));
    assert_eq!(google.rm.api.throttled.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_eq!(google.sql.api.throttled.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[tokio::test]
async fn exclusions_apply_to_cloud_sql_databases() {
    let google = Google::start(org()).await;
    let app = TestApp::spawn(&format!(
        "{}{}[exclude]\npatterns = [\"*/*/scratch_*\", \"p-top/pg-main/billing\"]\n",
        source_toml("walk"),
        google.gcp_toml()
    ))
    .await;

    let (_, _, plan) = app.post("/schedule?dry_run=true", &json!(null)).await;

    assert_eq!(plan["excluded"], 2, "{plan}");
    let tasks = plan["tasks"].as_array().unwrap();
    let by_db = |n: &str| tasks.iter().find(|t| t["database"] == n).unwrap().clone();
    assert_eq!(by_db("scratch_tmp")["excluded_by"], "*/*/scratch_*");
    assert_eq!(by_db("billing")["excluded_by"], "p-top/pg-main/billing");
}

#[tokio::test]
async fn cloud_tasks_gets_one_named_task_per_database_and_a_second_run_creates_nothing_new() {
    let google = Google::start(org()).await;
    let app = TestApp::spawn(&format!(
        "{}{}{}",
        source_toml("asset_inventory"),
        google.gcp_toml(),
        Google::queue_toml("https://data-backup.example/export", 3)
    ))
    .await;
    google.tasks.api.throttle_next(2);

    let (status, _, first) = app.post("/schedule", &json!(null)).await;
    let (status2, _, second) = app.post("/schedule", &json!(null)).await;

    assert_eq!(status, 200, "{first}");
    assert_eq!((first["enqueued"].as_u64(), first["already_queued"].as_u64()), (Some(7), Some(0)), "{first}");
    assert_eq!(status2, 200, "{second}");
    assert_eq!((second["enqueued"].as_u64(), second["already_queued"].as_u64()), (Some(0), Some(7)), "{second}");
    let recorded = google.tasks.recorded();
    assert_eq!(recorded.len(), 7);
    let run_date = first["run_date"].as_str().unwrap();
    for t in &recorded {
        let id = t.name.strip_prefix(&format!("{QUEUE}/tasks/")).expect("named in the queue");
        // A hash first (no shared sequential prefix), the run date last.
        assert!(id.ends_with(&format!("-{}", run_date.replace('-', ""))), "{id}");
        let http = &t.task["httpRequest"];
        assert_eq!(http["url"], "https://data-backup.example/export");
        assert_eq!(http["headers"]["content-type"], "application/json");
        assert_eq!(
            http["oidcToken"],
            json!({"serviceAccountEmail": "tasks@ops.iam.gserviceaccount.com", "audience": "https://data-backup.example"})
        );
        assert_eq!(t.body["run_date"], run_date);
        assert_eq!(t.body["run_id"], first["run_id"]);
        assert_eq!(t.body["source"], "org");
        // Cloud Tasks waits for /export as long as the export's wait (300 s) plus two minutes.
        assert_eq!(t.task["dispatchDeadline"], "420s");
    }
    let mut bodies: Vec<Value> = recorded
        .iter()
        .map(|t| {
            let mut b = t.body.clone();
            b["run_date"] = json!("[date]");
            b["run_id"] = json!("[run]");
            b
        })
        .collect();
    bodies.sort_by_key(ToString::to_string);
    insta::assert_json_snapshot!("gcp_cloud_tasks_bodies", bodies);
    // Two databases of one instance are scheduled stagger_secs apart.
    let times: Vec<chrono::DateTime<chrono::Utc>> = recorded
        .iter()
        .filter(|t| t.body["instance"] == "pg-legacy")
        .map(|t| t.task["scheduleTime"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(times.len(), 2);
    let gap = (times[1] - times[0]).num_seconds().abs();
    assert!((119..=121).contains(&gap), "{times:?}");
}

#[tokio::test]
async fn tasks_that_cannot_be_created_make_schedule_answer_503_and_the_summary_counts_them() {
    let google = Google::start(org()).await;
    let app = TestApp::spawn(&format!(
        "{}{}{}",
        source_toml("walk"),
        google.gcp_toml(),
        Google::queue_toml("https://data-backup.example/export", 2)
    ))
    .await;
    google.tasks.api.throttle_next(1_000_000);

    let (status, headers, problem) = app.post("/schedule", &json!(null)).await;
    let summary = app.state.schedule(data_backup::model::RunDate::today(), false).await;

    assert_eq!(status, 503, "{problem}");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(summary.not_enqueued, 7, "{summary:?}");
    assert_eq!(summary.enqueued, 0);
    assert!(summary.errors.iter().any(|e| e.scope.starts_with("enqueue:")));
}

#[tokio::test]
async fn cloud_tasks_delivers_every_task_to_export_which_backs_each_database_up_once() {
    let prefix = unique_name("gcpe2e");
    let dbs: Vec<PgDb> = (0..2).map(|i| PgDb::create(&format!("{prefix}_{i}"))).collect();
    for db in &dbs {
        db.sql("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g");
    }
    let google = Google::start(Org::default()).await;
    let app = TestApp::spawn(&format!(
        "{}{}{}",
        crate::support::pg_source("pgsrc", &format!("{prefix}*")),
        google.gcp_toml(),
        Google::queue_toml("https://data-backup.example/export", 3)
    ))
    .await;

    let (status, _, summary) = app.post("/schedule", &json!(null)).await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["enqueued"], 2);
    let delivered = google.tasks.deliver_all(&app.client, Some(&app.address)).await;
    let again = google.tasks.deliver_all(&app.client, Some(&app.address)).await;

    assert_eq!(delivered.len(), 2);
    for (task, status, body) in &delivered {
        assert_eq!(*status, 200, "{task}: {body}");
        assert_eq!(body["status"], "exported", "{body}");
    }
    for (_, status, body) in &again {
        assert_eq!(*status, 200);
        assert_eq!(body["status"], "already_exported", "a second delivery exports nothing: {body}");
    }
    let files = app.store_files();
    for db in &dbs {
        assert!(files.iter().any(|f| f.ends_with(&format!("{}.manifest.json", db.name))), "{files:?}");
    }
}

/// The samples of `name` in a Prometheus text exposition, as (labels, value).
fn samples(text: &str, name: &str) -> Vec<(std::collections::HashMap<String, String>, f64)> {
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text format");
    scrape
        .samples
        .into_iter()
        .filter(|s| s.metric == name)
        .map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                other => panic!("{name} is not a counter: {other:?}"),
            };
            (s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(), value)
        })
        .collect()
}

/// Sum of the samples whose labels include every `(label, value)` of `with`.
fn sum(samples: &[(std::collections::HashMap<String, String>, f64)], with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(l, _)| with.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.1)
        .sum()
}

#[tokio::test]
async fn metrics_count_discovery_calls_and_errors_by_google_api_and_method() {
    for strategy in ["walk", "asset_inventory"] {
        let google = Google::start(org()).await;
        let app = TestApp::spawn(&format!("{}{}", source_toml(strategy), google.gcp_toml())).await;
        google.sql.api.throttle_next(2);

        let (status, _, summary) = app.post("/schedule?dry_run=true", &json!(null)).await;
        let text = app.client.get(format!("{}/metrics", app.address)).send().await.unwrap().text().await.unwrap();

        assert_eq!(status, 200, "{summary}");
        let calls = samples(&text, "data_backup_discovery_calls_total");
        let errors = samples(&text, "data_backup_discovery_errors_total");
        // Every request each fake received is counted, under its API.
        let per_api = [
            ("resourcemanager", google.rm.api.calls()),
            ("sqladmin", google.sql.api.calls()),
            ("cloudasset", google.asset.api.calls()),
        ];
        for (api, received) in per_api {
            let counted = sum(&calls, &[("source", "org"), ("api", api)]);
            assert_eq!(counted, received as f64, "{strategy}: {api}\n{text}");
        }
        assert!(calls.iter().all(|(l, _)| l.get("api").map(String::as_str) != Some("gcp")), "{text}");
        assert!(calls.iter().all(|(l, _)| l.contains_key("method")), "{text}");
        let methods: Vec<(&str, &str)> = if strategy == "walk" {
            vec![
                ("resourcemanager", "folders.list"),
                ("resourcemanager", "projects.list"),
                ("sqladmin", "instances.list"),
                ("sqladmin", "databases.list"),
            ]
        } else {
            vec![("cloudasset", "searchAllResources"), ("sqladmin", "instances.get"), ("sqladmin", "databases.list")]
        };
        for (api, method) in methods {
            assert!(sum(&calls, &[("api", api), ("method", method)]) >= 1.0, "{strategy}: {api} {method}\n{text}");
        }
        // The 429 burst and (walk) the refused and disabled projects are errors of their method.
        assert_eq!(sum(&errors, &[("api", "sqladmin"), ("error_type", "429")]), 2.0, "{strategy}\n{text}");
        if strategy == "walk" {
            let refused = sum(&errors, &[("api", "sqladmin"), ("method", "instances.list"), ("error_type", "403")]);
            assert!(refused >= 2.0, "p-denied and p-disabled answer 403: {text}");
        }
        assert_eq!(sum(&errors, &[("api", "resourcemanager")]), 0.0, "{text}");
    }
}

/// The run summaries a webhook received.
async fn run_summaries(hook: &wiremock::MockServer) -> Vec<Value> {
    hook.received_requests()
        .await
        .unwrap()
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter(|b| b["kind"] == "run_summary")
        .collect()
}

/// The service in `cloud_tasks` mode over the fakes, backing up the local databases named
/// `{prefix}*`, reporting to a webhook (answered 200).
async fn cloud_tasks_app(prefix: &str) -> (wiremock::MockServer, Google, TestApp) {
    let hook = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200))
        .mount(&hook)
        .await;
    let google = Google::start(Org::default()).await;
    let app = TestApp::spawn(&format!(
        "{}{}{}[notify]\nwebhook_url = \"{}/hook\"\n",
        crate::support::pg_source("pgsrc", &format!("{prefix}*")),
        google.gcp_toml(),
        Google::queue_toml("https://data-backup.example/export", 3),
        hook.uri()
    ))
    .await;
    (hook, google, app)
}

#[tokio::test]
async fn cloud_tasks_mode_sends_one_run_summary_when_the_last_task_of_the_run_resolves() {
    let prefix = unique_name("gcpsum");
    let kept = PgDb::create(&format!("{prefix}_kept"));
    kept.sql("CREATE TABLE t AS SELECT g FROM generate_series(1, 10) g");
    let dropped = PgDb::create(&format!("{prefix}_dropped"));
    let (hook, google, app) = cloud_tasks_app(&prefix).await;
    let (status, _, summary) = app.post("/schedule", &json!(null)).await;
    assert_eq!((status, summary["enqueued"].as_u64()), (200, Some(2)), "{summary}");
    let dropped_name = dropped.name.clone();
    drop(dropped); // its task fails permanently: "gone", reported once

    // The first task alone resolves nothing: no summary yet.
    let recorded = google.tasks.recorded();
    let first = recorded.iter().find(|t| t.body["database"] == kept.name).unwrap();
    let (code, _, body) = app.post("/export", &first.body).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("exported")), "{body}");
    assert_eq!(run_summaries(&hook).await, Vec::<Value>::new(), "a task of the run is still open");

    let delivered = google.tasks.deliver_all(&app.client, Some(&app.address)).await;
    let again = google.tasks.deliver_all(&app.client, Some(&app.address)).await;

    assert!(delivered.iter().chain(&again).all(|(_, code, _)| *code == 200), "{delivered:?} {again:?}");
    let sent = run_summaries(&hook).await;
    assert_eq!(sent.len(), 1, "one summary, whatever the deliveries: {sent:?}");
    let s = &sent[0];
    assert_eq!(s["run_id"], summary["run_id"]);
    assert_eq!(
        (s["expected"].as_u64(), s["exported"].as_u64(), s["failed"].as_u64(), s["not_backed_up"].as_u64()),
        (Some(2), Some(1), Some(1), Some(0)),
        "{s}"
    );
    let not_backed_up = s["databases_not_backed_up"].as_array().unwrap();
    assert!(not_backed_up[0].as_str().unwrap().contains(&format!("{dropped_name} (failed")), "{s}");
    let marker =
        format!("reports/runs/{}/{}.json", summary["run_date"].as_str().unwrap(), summary["run_id"].as_str().unwrap());
    assert!(app.store_files().contains(&marker), "sent once, marked by {marker}");
}

#[tokio::test]
async fn cloud_tasks_mode_summarises_at_schedule_a_run_whose_exports_finished_before_its_ledger() {
    // Tasks are created while discovery runs and the ledger is written after them, so every
    // export of a run can finish before its ledger exists; none of them can then complete the
    // run. A second run the same day is the extreme case: its databases are all backed up already.
    let prefix = unique_name("gcpearly");
    let _pg = PgDb::create(&format!("{prefix}_a"));
    let (hook, google, app) = cloud_tasks_app(&prefix).await;
    let (status, _, first) = app.post("/schedule", &json!(null)).await;
    assert_eq!((status, first["enqueued"].as_u64()), (200, Some(1)), "{first}");
    let delivered = google.tasks.deliver_all(&app.client, Some(&app.address)).await;
    assert!(delivered.iter().all(|(_, code, _)| *code == 200), "{delivered:?}");
    assert_eq!(run_summaries(&hook).await.len(), 1, "the first run is summarised by its export");

    let (status, _, second) = app.post("/schedule", &json!(null)).await;

    assert_eq!((status, second["already_queued"].as_u64()), (200, Some(1)), "{second}");
    let sent = run_summaries(&hook).await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[1]["run_id"], second["run_id"]);
    assert_eq!((sent[1]["expected"].as_u64(), sent[1]["exported"].as_u64()), (Some(1), Some(1)), "{}", sent[1]);
}

#[tokio::test]
async fn cloud_tasks_mode_sends_the_summary_of_a_run_past_its_deadline_at_the_next_schedule() {
    let prefix = unique_name("gcpdl");
    let pg = PgDb::create(&format!("{prefix}_a"));
    let (hook, _google, app) = cloud_tasks_app(&prefix).await;
    // Yesterday's run expected the database; its task was never delivered.
    let yesterday = chrono::Utc::now().date_naive() - chrono::Duration::days(1);
    let started = chrono::Utc::now() - chrono::Duration::hours(25);
    let ledger = json!({
        "run_id": "010000-deadbeef", "run_date": yesterday.to_string(), "started_at": started,
        "databases": [{"source": "pgsrc", "project": "pgsrc", "instance": "pg", "database": pg.name,
                       "engine": "postgres", "action": "export"}],
        "errors": [], "complete": true
    });
    let key = format!("runs/{yesterday}/010000-deadbeef.json");
    std::fs::create_dir_all(app.store_dir.path().join(format!("runs/{yesterday}"))).unwrap();
    std::fs::write(app.store_dir.path().join(&key), serde_json::to_vec(&ledger).unwrap()).unwrap();

    let (status, _, _) = app.post("/schedule", &json!(null)).await;
    let (status2, _, _) = app.post("/schedule", &json!(null)).await;

    assert_eq!((status, status2), (200, 200));
    let sent = run_summaries(&hook).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["run_id"], "010000-deadbeef");
    assert_eq!((sent[0]["expected"].as_u64(), sent[0]["not_backed_up"].as_u64()), (Some(1), Some(1)), "{}", sent[0]);
}

/// `org()` with a development folder beside folders/1 that no source is configured to walk.
fn org_with_dev() -> Org {
    let mut o = org();
    o.folder("folders/2", "organizations/1")
        .project("p-dev", "folders/2", "ACTIVE", SqlAccess::Enabled)
        .instance(FakeInstance::runnable("p-dev", "pg-dev", "POSTGRES_16", &["devdb"]));
    o
}

#[tokio::test]
async fn a_scheduler_body_narrows_a_gcp_run_and_only_an_operator_may_widen_it() {
    use crate::support::fakes::jwks::{self, Jwks, auth_toml, claims};

    let google = Google::start(org_with_dev()).await;
    let key = jwks::key(1);
    let keys = Jwks::serving(&[&key]).await;
    let scheduler = "scheduler@ops.iam.gserviceaccount.com";
    let app = TestApp::spawn(&format!(
        "{}{}{}{}",
        source_toml("walk"),
        google.gcp_toml(),
        Google::queue_toml("https://data-backup.example/export", 3),
        auth_toml(&keys.url(), &format!("[auth.route_emails]\nschedule = [\"{scheduler}\"]\n"))
    ))
    .await;
    let post = |email: &str, path: &str, body: Value| {
        app.client
            .post(format!("{}{path}", app.address))
            .bearer_auth(jwks::sign(&key, &claims(email)))
            .json(&body)
            .send()
    };
    let answer = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap_or(Value::Null))
    };

    let (_, whole) = answer(post(scheduler, "/schedule?dry_run=true", json!(null)).await.unwrap()).await;
    let (_, same) = answer(
        post(scheduler, "/schedule?dry_run=true", json!({"folders": ["1"], "projects": ["p-outside"]})).await.unwrap(),
    )
    .await;
    assert_eq!(task_set(&same), task_set(&whole), "the configured roots by body plan as no body does");
    assert_eq!(same["scope"], json!({"folders": ["folders/1"], "projects": ["p-outside"]}), "{same}");

    // A subfolder and a project under the configured folder narrow the run: the scheduler may.
    let body = json!({"folders": ["folders/111"], "projects": ["p-top"]});
    let (status, narrow) = answer(post(scheduler, "/schedule", body.clone()).await.unwrap()).await;
    assert_eq!(status, 200, "{narrow}");
    let tasked: BTreeSet<String> = google
        .tasks
        .recorded()
        .iter()
        .map(|t| format!("{}/{}/{}", t.body["project"], t.body["instance"], t.body["database"]).replace('"', ""))
        .collect();
    assert_eq!(
        tasked,
        BTreeSet::from(
            [
                "p-deep/mssql/erp",
                "p-deep/pg-legacy/ledger",
                "p-deep/pg-legacy/scratch_tmp",
                "p-top/pg-main/app",
                "p-top/pg-main/billing"
            ]
            .map(str::to_owned)
        ),
        "only the databases under folders/111 and in p-top: {narrow}"
    );
    let ledger_key =
        format!("runs/{}/{}.json", narrow["run_date"].as_str().unwrap(), narrow["run_id"].as_str().unwrap());
    let ledger: Value = serde_json::from_slice(&std::fs::read(app.store_dir.path().join(ledger_key)).unwrap()).unwrap();
    assert_eq!(ledger["scope"], json!({"folders": ["folders/111"], "projects": ["p-top"]}), "{ledger}");

    // A folder no source covers widens the run: refused to the scheduler, allowed to an operator.
    let dev = json!({"folders": ["folders/2"]});
    let (status, refused) = answer(post(scheduler, "/schedule", dev.clone()).await.unwrap()).await;
    assert_eq!(status, 403, "{refused}");
    let detail = refused["detail"].as_str().unwrap();
    assert!(detail.contains(scheduler) && detail.contains("`folders/2`"), "{detail}");
    assert!(detail.contains("organizations/1"), "names the ancestry it walked: {detail}");
    assert_eq!(google.tasks.recorded().len(), 5, "a refused scope enqueues nothing");

    let (status, widened) = answer(post("ops@example.com", "/schedule?dry_run=true", dev).await.unwrap()).await;
    assert_eq!(status, 200, "{widened}");
    assert_eq!(task_set(&widened), ["p-dev/pg-dev/devdb postgres export"], "{widened}");
}
