//! Cloud Run Admin v2 fake, shaped by Google's REST reference: `jobs.run`
//! (`POST /v2/projects/P/locations/L/jobs/J:run` with `overrides.containerOverrides[0].args`)
//! answers a long-running `Operation` whose `metadata` is the new `Execution`;
//! `jobs.executions.list` (`GET /v2/…/jobs/J/executions`) lists them newest first with
//! `createTime`, `completionTime` once ended, `succeededCount`/`failedCount` and
//! `template.containers[0].args`. An execution really runs: the service's own binary with the
//! overridden args and the test's settings file (the job runs the service's image with its
//! settings), for at least [`CloudRunFake::min_duration`].

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::google::error;

/// One execution of the fake.
#[derive(Clone, Debug)]
pub struct FakeExecution {
    /// `projects/P/locations/L/jobs/J/executions/E`.
    pub name: String,
    /// The container's args.
    pub args: Vec<String>,
    /// `createTime`.
    pub created: DateTime<Utc>,
    /// `completionTime`, once ended.
    pub completed: Option<DateTime<Utc>>,
    /// Whether its task succeeded.
    pub succeeded: bool,
}

impl FakeExecution {
    fn json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "createTime": self.created.to_rfc3339(),
            "taskCount": 1,
            "runningCount": u32::from(self.completed.is_none()),
            "succeededCount": u32::from(self.completed.is_some() && self.succeeded),
            "failedCount": u32::from(self.completed.is_some() && !self.succeeded),
            "template": {"containers": [{"image": "data-backup", "args": self.args}]},
        });
        if let Some(done) = self.completed {
            v["completionTime"] = json!(done.to_rfc3339());
        }
        v
    }
}

/// What the fake shares with its handlers.
#[derive(Debug, Default)]
pub struct Jobs {
    /// Every execution, oldest first.
    pub executions: Mutex<Vec<FakeExecution>>,
    /// The settings file an execution runs with.
    pub config: Mutex<Option<PathBuf>>,
    /// The least time an execution takes.
    pub min_duration: Mutex<Duration>,
}

/// The running fake.
pub struct CloudRunFake {
    /// The server.
    pub server: MockServer,
    /// Its executions.
    pub jobs: Arc<Jobs>,
}

struct Run(Arc<Jobs>);

impl Respond for Run {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let job = request.url.path().trim_start_matches("/v2/").trim_end_matches(":run").to_owned();
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let args: Vec<String> = body["overrides"]["containerOverrides"][0]["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect();
        let Some(config) = self.0.config.lock().unwrap().clone() else {
            return error(400, "FAILED_PRECONDITION", "the fake has no settings file", "FAILED_PRECONDITION");
        };
        let mut executions = self.0.executions.lock().unwrap();
        let short = job.rsplit('/').next().unwrap_or_default().to_owned();
        let name = format!("{job}/executions/{short}-{:05}", executions.len());
        let execution = FakeExecution {
            name: name.clone(),
            args: args.clone(),
            created: Utc::now(),
            completed: None,
            succeeded: false,
        };
        executions.push(execution.clone());
        let (jobs, least) = (self.0.clone(), *self.0.min_duration.lock().unwrap());
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let status = std::process::Command::new(env!("CARGO_BIN_EXE_data-backup"))
                .arg("--config")
                .arg(&config)
                .args(&args)
                .env_remove("DATA_BACKUP_CONFIG")
                .env("RUST_LOG", "warn")
                .status();
            std::thread::sleep(least.saturating_sub(started.elapsed()));
            let mut executions = jobs.executions.lock().unwrap();
            let e = executions.iter_mut().find(|e| e.name == name).expect("recorded");
            e.completed = Some(Utc::now());
            e.succeeded = status.is_ok_and(|s| s.success());
        });
        let project_location = job.split("/jobs/").next().unwrap_or_default();
        let mut metadata = execution.json();
        metadata["@type"] = json!("type.googleapis.com/google.cloud.run.v2.Execution");
        ResponseTemplate::new(200).set_body_json(json!({
            "name": format!("{project_location}/operations/{}", uuid::Uuid::new_v4()),
            "metadata": metadata,
            "done": false,
        }))
    }
}

struct List(Arc<Jobs>);

impl Respond for List {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let job = request.url.path().trim_start_matches("/v2/").trim_end_matches("/executions").to_owned();
        let executions: Vec<Value> = self
            .0
            .executions
            .lock()
            .unwrap()
            .iter()
            .rev()
            .filter(|e| e.name.starts_with(&format!("{job}/executions/")))
            .map(FakeExecution::json)
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({"executions": executions}))
    }
}

impl CloudRunFake {
    /// Starts the fake; executions run once [`Jobs::config`] names a settings file.
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let jobs = Arc::new(Jobs::default());
        Mock::given(method("POST"))
            .and(path_regex(r"^/v2/projects/[^/]+/locations/[^/]+/jobs/[^/:]+:run$"))
            .respond_with(Run(jobs.clone()))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/v2/projects/[^/]+/locations/[^/]+/jobs/[^/]+/executions$"))
            .respond_with(List(jobs.clone()))
            .mount(&server)
            .await;
        Self { server, jobs }
    }

    /// The executions so far.
    pub fn executions(&self) -> Vec<FakeExecution> {
        self.jobs.executions.lock().unwrap().clone()
    }
}
