//! Follow-up checks of Cloud SQL exports in `cloud_tasks` mode (ADR 0021), against the stateful
//! Cloud SQL Admin fake (its exports really dump the local PostgreSQL server into fake-gcs-server)
//! and the Cloud Tasks fake, whose deliveries the test plays in `scheduleTime` order: a long
//! export finishes through follow-ups with no 503 and one operation; a duplicate delivery creates
//! one follow-up; a busy instance defers to the expected end of the operation in its way and its
//! databases run one after another; a chain past its bound is reported once; a follow-up that
//! cannot be created answers 503 and its retry loses nothing; an operator's call waits
//! `export.wait_secs`, then gets the same answers and leaves a follow-up behind; a self-hosted
//! dump whose previous backup took 40 minutes runs as a Cloud Run job execution (the Cloud Run
//! Admin fake runs the service's binary) that follow-ups attach to, and completes. The set-up
//! ([`FollowUps`]) serves the off-site copy tests of Cloud SQL exports too (`copies.rs`).

use std::time::Duration;

use data_backup::export::follow_up::AIM_SHARE;
use data_backup::model::{
    DatabaseName, DatabaseRef, Engine, ExportTask, InstanceName, ProjectId, RunDate, RunId, SourceName,
};
use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::fakes::cloud_run::CloudRunFake;
use crate::support::fakes::cloud_tasks::{CloudTasksFake, Delivery};
use crate::support::fakes::google::{FakeInstance, Org, SqlAccess, shared};
use crate::support::fakes::sql_admin::SqlAdminFake;
use crate::support::{PgDb, TestApp, required_env, unique_name};

pub(crate) const QUEUE: &str = "projects/ops/locations/europe-west1/queues/backups";
pub(crate) const RUN_DATE: &str = "2026-11-20";

/// The fakes, the databases of instance `p-fu:pg` and the service of one test.
pub(crate) struct FollowUps {
    pub(crate) sql: SqlAdminFake,
    pub(crate) tasks: CloudTasksFake,
    pub(crate) hook: MockServer,
    pub(crate) dbs: Vec<PgDb>,
    pub(crate) bucket_name: String,
    pub(crate) prefix: String,
    pub(crate) app: TestApp,
}

impl FollowUps {
    /// `n` real databases on one PostgreSQL instance whose exports take `export`, and the service
    /// in `cloud_tasks` mode with `[export]` `extra` (and `[queue]` `queue_extra`) settings.
    pub(crate) async fn start(n: usize, export: Duration, extra: &str, queue_extra: &str) -> Self {
        let endpoint = required_env("DATA_BACKUP_TEST_GCS_ENDPOINT");
        let bucket_name = required_env("DATA_BACKUP_TEST_GCS_BUCKET");
        let prefix = unique_name("followup");
        let dbs: Vec<PgDb> = (0..n).map(|_| PgDb::create("fu_src")).collect();
        for db in &dbs {
            db.sql("CREATE TABLE t AS SELECT g FROM generate_series(1, 500) g");
        }
        let mut names: Vec<&str> = vec!["postgres"];
        names.extend(dbs.iter().map(|d| d.name.as_str()));
        let mut org = Org::default();
        org.project("p-fu", "folders/1", "ACTIVE", SqlAccess::Enabled).instance(FakeInstance::runnable(
            "p-fu",
            "pg",
            "POSTGRES_16",
            &names,
        ));
        let sql = SqlAdminFake::start_with_storage(shared(org, 2), &endpoint).await;
        sql.exports.set_duration(export);
        let tasks = CloudTasksFake::start().await;
        let hook = MockServer::start().await;
        Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&hook).await;
        let toml = format!(
            "[[sources]]\nname = \"org\"\nkind = \"gcp\"\nprojects = [\"p-fu\"]\n\
             [store]\nurl = \"gs://{bucket_name}/{prefix}\"\n\
             [gcp]\ncredentials = \"anonymous\"\nstorage_endpoint = \"{endpoint}\"\nsql_admin_endpoint = \"{}\"\n\
             cloud_tasks_endpoint = \"{}\"\nsql_admin_per_minute = 60000\ncloud_tasks_per_minute = 60000\n\
             retry_initial_ms = 10\n\
             [notify]\nwebhook_url = \"{}/hook\"\n\
             [queue]\nkind = \"cloud_tasks\"\nqueue = \"{QUEUE}\"\ntarget_url = \"https://data-backup.example/export\"\n\
             service_account = \"tasks@ops.iam.gserviceaccount.com\"\nstagger_secs = 0\n{queue_extra}\n\
             [export]\npoll_initial_ms = 50\nfollow_up_min_secs = 1\n{extra}\n",
            sql.server.uri(),
            tasks.server.uri(),
            hook.uri(),
        );
        let app = TestApp::spawn(&toml).await;
        Self { sql, tasks, hook, dbs, bucket_name, prefix, app }
    }

    pub(crate) fn task(&self, i: usize) -> ExportTask {
        ExportTask {
            db: DatabaseRef {
                source: SourceName::parse("org").unwrap(),
                project: ProjectId::parse("p-fu").unwrap(),
                instance: InstanceName::parse("pg").unwrap(),
                database: DatabaseName::parse(self.dbs[i].name.clone()).unwrap(),
                engine: Engine::Postgres,
            },
            run_date: RunDate::parse(RUN_DATE).unwrap(),
            run_id: RunId::generate(),
        }
    }

    /// Enqueues the original task of every database, as `/schedule` does.
    pub(crate) async fn enqueue_all(&self) {
        for i in 0..self.dbs.len() {
            self.app.state.queue.enqueue(self.task(i)).await.expect("enqueued");
        }
    }

    /// Plays Cloud Tasks until no task is left (each delivered at its time, at most 300 ms early).
    pub(crate) async fn deliver_everything(&self) -> Vec<Delivery> {
        let mut out = Vec::new();
        while let Some(d) =
            self.tasks.deliver_next(&self.app.client, &self.app.address, Duration::from_millis(300)).await
        {
            out.push(d);
            assert!(out.len() < 200, "the chain does not end: {out:?}");
        }
        out
    }

    pub(crate) fn uri(&self, i: usize) -> String {
        // 2026-11-20 is a Friday: the daily class.
        let (bucket, prefix, db) = (&self.bucket_name, &self.prefix, &self.dbs[i].name);
        format!("gs://{bucket}/{prefix}/daily/p-fu/pg/{db}/{RUN_DATE}/{db}.sql.gz")
    }

    pub(crate) async fn reports(&self) -> Vec<Value> {
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

fn statuses(deliveries: &[Delivery]) -> Vec<String> {
    deliveries.iter().map(|d| d.body["status"].as_str().unwrap_or_default().to_owned()).collect()
}

fn at(v: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("no time: {v}"))).unwrap().into()
}

#[tokio::test]
async fn a_long_export_finishes_through_follow_ups_with_no_503_and_one_operation() {
    let t = FollowUps::start(1, Duration::from_secs(3), "follow_up_max_secs = 1\nfollow_up_default_secs = 1", "").await;
    t.enqueue_all().await;

    let deliveries = t.deliver_everything().await;

    let id = t.task(0).task_id();
    assert!(deliveries.iter().all(|d| d.status == 200), "no 503, no 409: {deliveries:?}");
    let st = statuses(&deliveries);
    assert_eq!(st.first().map(String::as_str), Some("started"), "{st:?}");
    assert_eq!(st.last().map(String::as_str), Some("exported"), "{st:?}");
    assert!(st[1..st.len() - 1].iter().all(|s| s == "running"), "{st:?}");
    assert!(deliveries.len() >= 3, "the export outlasted a check: {st:?}");
    for (n, d) in deliveries.iter().enumerate() {
        let name = if n == 0 { id.clone() } else { format!("{id}-c{n}") };
        assert_eq!(d.name, name);
        if n + 1 < deliveries.len() {
            assert_eq!(d.body["check"], n + 1, "{:?}", d.body);
            assert!(d.body["next_check_at"].is_string(), "{:?}", d.body);
        }
    }
    assert_eq!(t.sql.exports.started_for(&t.uri(0)), 1, "one operation across the chain");
    let manifest = &deliveries.last().unwrap().body["manifest"];
    assert!(manifest["cloud_sql"]["crc32c"].is_string(), "{manifest}");
    assert!(t.reports().await.is_empty(), "waiting is never reported");
}

#[tokio::test]
async fn a_duplicate_delivery_creates_one_follow_up() {
    let t =
        FollowUps::start(1, Duration::from_secs(30), "follow_up_max_secs = 60\nfollow_up_default_secs = 30", "").await;
    t.enqueue_all().await;
    let id = t.task(0).task_id();

    let first = t.tasks.deliver_again(&t.app.client, &t.app.address, &id).await;
    let again = t.tasks.deliver_again(&t.app.client, &t.app.address, &id).await;
    let check = t.tasks.deliver_again(&t.app.client, &t.app.address, &format!("{id}-c1")).await;
    let check_again = t.tasks.deliver_again(&t.app.client, &t.app.address, &format!("{id}-c1")).await;

    assert_eq!((first.status, first.body["status"].as_str()), (200, Some("started")), "{:?}", first.body);
    assert_eq!((again.status, again.body["status"].as_str()), (200, Some("running")), "{:?}", again.body);
    assert_eq!(again.body["operation"], first.body["operation"], "the duplicate attached");
    assert_eq!((check.status, check_again.status), (200, 200));
    let names: Vec<String> = t.tasks.recorded().iter().map(|r| r.name.rsplit('/').next().unwrap().to_owned()).collect();
    assert_eq!(names, [id.clone(), format!("{id}-c1"), format!("{id}-c2")]);
    assert_eq!(t.tasks.duplicates.load(std::sync::atomic::Ordering::SeqCst), 2, "each duplicate asked once, got 409");
    assert_eq!(t.sql.exports.started_for(&t.uri(0)), 1);
}

#[tokio::test]
async fn a_busy_instance_defers_to_the_end_of_the_operation_in_its_way_and_its_databases_run_one_after_another() {
    let t =
        FollowUps::start(3, Duration::from_secs(2), "follow_up_max_secs = 60\nfollow_up_default_secs = 30", "").await;
    t.enqueue_all().await;

    let deliveries = t.deliver_everything().await;

    assert!(deliveries.iter().all(|d| d.status == 200), "no 503: {deliveries:?}");
    // The first delivery started its export; the next two found the instance busy with it and
    // aim at its expected end (its insert time plus the share the policy aims at of the expected
    // duration, 30 s here).
    let (first, waiting) = (&deliveries[0].body, &deliveries[1..3]);
    assert_eq!(first["status"], "started", "{first}");
    let op = first["operation"].as_str().unwrap().to_owned();
    let inserted = t.sql.exports.ops.lock().unwrap().iter().find(|o| o.name == op).unwrap().inserted;
    for w in waiting {
        assert_eq!(w.body["status"], "waiting", "{:?}", w.body);
        assert_eq!(w.body["operation"], op.as_str(), "it names the operation in its way");
        let aim = at(&w.body["next_check_at"]) - inserted;
        let expected = chrono::Duration::from_std(Duration::from_secs(30).mul_f64(AIM_SHARE)).unwrap();
        assert!((aim - expected).num_milliseconds().abs() < 1000, "{aim:?}");
    }
    // Every database exported, each by one operation, one after another.
    for i in 0..3 {
        assert_eq!(t.sql.exports.started_for(&t.uri(i)), 1, "database {i}");
    }
    assert_eq!(statuses(&deliveries).iter().filter(|s| *s == "exported").count(), 3);
    let ops = t.sql.exports.ops.lock().unwrap().clone();
    for pair in ops.windows(2) {
        assert!(pair[1].inserted - pair[0].inserted >= chrono::Duration::seconds(2), "overlapping: {ops:?}");
    }
    assert!(t.reports().await.is_empty(), "waiting is never reported");
}

#[tokio::test]
async fn a_chain_past_its_bound_fails_and_is_reported_once() {
    let t = FollowUps::start(
        1,
        Duration::from_secs(60),
        "follow_up_max_secs = 1\nfollow_up_default_secs = 1\nfollow_up_max_checks = 2",
        "",
    )
    .await;
    t.enqueue_all().await;
    let id = t.task(0).task_id();

    let deliveries = t.deliver_everything().await;
    let again = t.tasks.deliver_again(&t.app.client, &t.app.address, &format!("{id}-c2")).await;

    assert_eq!(statuses(&deliveries), ["started", "running", "failed"]);
    let last = &deliveries[2].body;
    assert!(last["error"].as_str().unwrap().contains("follow_up_max_checks"), "{last}");
    assert_eq!((again.status, again.body["status"].as_str()), (200, Some("failed")));
    let reports = t.reports().await;
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0]["error_class"], "follow_ups_exhausted");
}

#[tokio::test]
async fn a_follow_up_that_cannot_be_created_answers_503_and_its_retry_loses_nothing() {
    let t = FollowUps::start(
        1,
        Duration::from_secs(2),
        "follow_up_max_secs = 1\nfollow_up_default_secs = 1",
        "create_attempts = 1",
    )
    .await;
    t.enqueue_all().await;
    t.tasks.api.throttle_next(1);

    let deliveries = t.deliver_everything().await;

    assert_eq!(deliveries[0].status, 503, "{:?}", deliveries[0].body);
    let st = statuses(&deliveries[1..]);
    assert_eq!(st.first().map(String::as_str), Some("running"), "the retry attached: {st:?}");
    assert_eq!(st.last().map(String::as_str), Some("exported"), "{st:?}");
    assert_eq!(t.sql.exports.started_for(&t.uri(0)), 1, "one operation");
    assert!(t.reports().await.is_empty());
}

#[tokio::test]
async fn an_operators_call_waits_its_wait_secs_then_answers_running_and_leaves_a_follow_up() {
    let t = FollowUps::start(
        1,
        Duration::from_secs(30),
        "wait_secs = 1\nfollow_up_max_secs = 60\nfollow_up_default_secs = 30",
        "",
    )
    .await;
    let body =
        serde_json::json!({"project": "p-fu", "instance": "pg", "database": t.dbs[0].name, "run_date": RUN_DATE});

    let (status, _, answer) = t.app.post("/export", &body).await;

    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "started", "{answer}");
    assert!(answer["next_check_at"].is_string(), "{answer}");
    assert!(answer["reason"].as_str().unwrap().contains("still running after 1 s"), "{answer}");
    let names: Vec<String> = t.tasks.recorded().iter().map(|r| r.name.rsplit('/').next().unwrap().to_owned()).collect();
    assert_eq!(names, [format!("{}-c1", t.task(0).task_id())], "the follow-up finishes it");
    assert_eq!(t.tasks.recorded()[0].body["check"], 1);
}

#[tokio::test]
async fn a_long_self_hosted_dump_runs_as_a_job_execution_that_follow_ups_attach_to() {
    const PREVIOUS: &str = "2026-11-19";
    let db = PgDb::create("fu_job");
    db.sql("CREATE TABLE t AS SELECT g FROM generate_series(1, 500) g");
    let tasks = CloudTasksFake::start().await;
    let run = CloudRunFake::start().await;
    *run.jobs.min_duration.lock().unwrap() = Duration::from_secs(2);
    let store = tempfile::tempdir().unwrap();
    let job = "projects/ops/locations/europe-west1/jobs/data-backup-export";
    let toml = format!(
        "{}[store]\nurl = \"file://{}\"\n\
         [gcp]\ncredentials = \"anonymous\"\ncloud_tasks_endpoint = \"{}\"\nrun_endpoint = \"{}\"\n\
         cloud_tasks_per_minute = 60000\nretry_initial_ms = 10\n\
         [queue]\nkind = \"cloud_tasks\"\nqueue = \"{QUEUE}\"\ntarget_url = \"https://data-backup.example/export\"\n\
         service_account = \"tasks@ops.iam.gserviceaccount.com\"\nstagger_secs = 0\n\
         [export]\nfollow_up_min_secs = 1\nfollow_up_max_secs = 1\njob = \"{job}\"\njob_after_secs = 1200\n",
        crate::support::pg_source("self", &db.name),
        store.path().display(),
        tasks.server.uri(),
        run.server.uri(),
    );
    let config = store.path().join("job-settings.toml");
    std::fs::write(&config, format!("bind = \"127.0.0.1:0\"\n{toml}")).unwrap();
    *run.jobs.config.lock().unwrap() = Some(config);
    let app = TestApp::spawn(&toml).await;
    // Yesterday's backup, made in the request (no previous one), then said to have taken 40 minutes.
    let body = serde_json::json!({"project": "self", "instance": "pg", "database": db.name, "run_date": PREVIOUS});
    let (status, _, answer) = app.post("/export", &body).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("exported")), "{answer}");
    let latest = store.path().join(format!("latest/self/pg/{}.json", db.name));
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&latest).unwrap()).unwrap();
    let finished = at(&manifest["finished_at"]);
    manifest["started_at"] = serde_json::json!(finished - chrono::Duration::minutes(40));
    std::fs::write(&latest, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let doctor: Value = app.client.get(format!("{}/doctor", app.address)).send().await.unwrap().json().await.unwrap();
    let notes: Vec<&Value> = doctor["findings"].as_array().unwrap().iter().filter(|f| f["check"] == "job").collect();
    assert_eq!(notes.len(), 1, "doctor says which databases take the job path: {doctor}");
    assert_eq!(notes[0]["scope"], format!("self/pg/{}", db.name));
    assert!(notes[0]["problem"].as_str().unwrap().contains("took 40 min"), "{doctor}");
    let task = ExportTask {
        db: DatabaseRef {
            source: SourceName::parse("self").unwrap(),
            project: ProjectId::parse("self").unwrap(),
            instance: InstanceName::parse("pg").unwrap(),
            database: DatabaseName::parse(db.name.clone()).unwrap(),
            engine: Engine::Postgres,
        },
        run_date: RunDate::parse(RUN_DATE).unwrap(),
        run_id: RunId::generate(),
    };
    app.state.queue.enqueue(task).await.unwrap();

    let mut deliveries = Vec::new();
    while let Some(d) = tasks.deliver_next(&app.client, &app.address, Duration::from_millis(300)).await {
        deliveries.push(d);
        assert!(deliveries.len() < 100, "{deliveries:?}");
    }

    assert!(deliveries.iter().all(|d| d.status == 200), "no 503: {deliveries:?}");
    let st = statuses(&deliveries);
    assert_eq!(st.first().map(String::as_str), Some("started"), "{st:?}");
    assert_eq!(st.last().map(String::as_str), Some("exported"), "{st:?}");
    let executions = run.executions();
    assert_eq!(executions.len(), 1, "one execution across the chain: {executions:?}");
    assert_eq!(deliveries[0].body["operation"], executions[0].name.as_str());
    // The path travels as one `--opt=value` argument: a name starting with `-` stays a value.
    assert_eq!(
        executions[0].args,
        [
            "export".to_owned(),
            format!("--database=self/pg/{}", db.name),
            format!("--date={RUN_DATE}"),
            "--source=self".to_owned(),
            "--ignore-scope".to_owned()
        ]
    );
    for _ in 0..100 {
        if run.executions()[0].completed.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(run.executions()[0].succeeded, "the job's export succeeded");
    let made = &deliveries.last().unwrap().body["manifest"];
    assert_eq!(made["run_date"], RUN_DATE, "{made}");
    assert!(made["tools"]["dump"].as_str().unwrap().contains("pg_dump"), "the job dumped it: {made}");
}
