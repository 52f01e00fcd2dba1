//! The `cloud_tasks` queue: one Cloud Tasks HTTP task per export, delivered by Google to the
//! service's `POST /export` with an OIDC token.
//!
//! - The task's name is `<queue>/tasks/<ExportTask::task_id()>`, a hash of (source, project,
//!   instance, database, run date): creating it again answers `ALREADY_EXISTS` (409), which is
//!   [`Enqueued::AlreadyQueued`]. Cloud Tasks remembers names for about an hour after a task ran;
//!   later the bucket's manifest makes the repeated export a no-op.
//! - The body is the `/export` request for the task (`source`, `project`, `instance`, `database`,
//!   `engine`, `run_date`, `run_id`), `content-type: application/json`; the OIDC token is minted by Cloud
//!   Tasks for the configured service account and audience.
//! - Tasks of the same instance are scheduled `stagger_secs` apart (Cloud SQL runs one operation
//!   per instance at a time), counted per run in the order they are enqueued.
//! - Follow-up checks (`export.follow_up`, ADR 0021): check `n` of a task is the task
//!   `<task id>-c<n>`, scheduled for the time the export is expected to end, its body the task's
//!   with `"check": n`. A duplicate delivery asks for the same name: `ALREADY_EXISTS`, nothing new.
//! - Off-site copies (`[[copies]]`, ADR 0023): the copy of a task's backup is the task `<id>-copy`,
//!   an `/export` delivery with `"copy": true`, created once the backup is in the primary store.
//! - createTask calls are rate limited, at most `create_concurrency` in flight, and retried on
//!   429/5xx honouring `Retry-After` (`create_attempts`); a task still not created is a
//!   [`QueueError`], so `/schedule` answers 503 and Cloud Scheduler retries the run.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use google_cloud_gax::retry_policy::NeverRetry;
use google_cloud_tasks_v2::client::CloudTasks;
use google_cloud_tasks_v2::model::{HttpMethod, HttpRequest, OidcToken, Task};
use tokio::sync::OnceCell;

use super::{Enqueued, QueueError, TaskQueue};
use crate::gcp::api::{Api, CallError};
use crate::gcp::credentials::credentials;
use crate::model::ExportTask;
use crate::settings::{GcpSettings, QueueSettings};

/// The Cloud Tasks queue.
pub struct CloudTasksQueue {
    queue: String,
    target_url: String,
    service_account: String,
    audience: String,
    stagger: Duration,
    concurrency: usize,
    gcp: GcpSettings,
    api: Api,
    client: OnceCell<CloudTasks>,
    /// Tasks enqueued per instance in the current run: (run id, instance path → count).
    per_instance: Mutex<(String, HashMap<String, u32>)>,
    /// How long Cloud Tasks waits for `/export` to answer (`None`: the queue's default, 10 min).
    dispatch_deadline: Option<Duration>,
    /// Whether exports not done yet are checked again by follow-up tasks.
    follow_up: bool,
}

/// What a queue's retry configuration says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per task; -1 is unlimited.
    pub max_attempts: i64,
    /// Seconds after the first attempt during which a task is retried; `None` or 0: unlimited.
    pub max_retry_duration_secs: Option<u64>,
}

impl CloudTasksQueue {
    /// A queue from validated settings (`queue`, `target_url` and `service_account` are set); the
    /// client is built on first use.
    #[must_use]
    pub fn new(queue: &QueueSettings, gcp: &GcpSettings) -> Self {
        let target = queue.target_url.clone().expect("validated: target_url is set");
        let audience = queue.audience.clone().unwrap_or_else(|| target.origin().ascii_serialization());
        Self {
            queue: queue.queue.clone().expect("validated: queue is set"),
            target_url: target.to_string(),
            service_account: queue.service_account.clone().expect("validated: service_account is set"),
            audience,
            stagger: Duration::from_secs(queue.stagger_secs),
            concurrency: queue.create_concurrency,
            gcp: gcp.clone(),
            api: Api::new(
                "cloudtasks",
                gcp.cloud_tasks_per_minute,
                queue.create_concurrency,
                queue.create_attempts,
                Duration::from_millis(gcp.retry_initial_ms),
            ),
            client: OnceCell::new(),
            per_instance: Mutex::new((String::new(), HashMap::new())),
            dispatch_deadline: None,
            follow_up: false,
        }
    }

    /// Exports not done yet are checked again by follow-up tasks (`export.follow_up`).
    #[must_use]
    pub fn with_follow_up(mut self, on: bool) -> Self {
        self.follow_up = on;
        self
    }

    /// Tasks ask Cloud Tasks to wait this long for `/export` (clamped to Cloud Tasks' 15 s – 30 min).
    #[must_use]
    pub fn with_dispatch_deadline(mut self, deadline: Duration) -> Self {
        self.dispatch_deadline = Some(deadline.clamp(Duration::from_secs(15), Duration::from_secs(1800)));
        self
    }

    /// The queue's retry configuration (`queues.get`), or why it cannot be read.
    pub async fn retry_config(&self) -> Result<RetryPolicy, String> {
        let client = self.client().await.map_err(|e| e.to_string())?;
        let queue = self
            .api
            .call("queues.get", || client.get_queue().set_name(self.queue.clone()).send())
            .await
            .map_err(|e| format!("queue {}: {e}", self.queue))?;
        let retry = queue.retry_config.unwrap_or_default();
        Ok(RetryPolicy {
            max_attempts: i64::from(retry.max_attempts),
            max_retry_duration_secs: retry.max_retry_duration.map(|d| u64::try_from(d.seconds()).unwrap_or(0)),
        })
    }

    /// The createTask calls sent and the 429s received.
    #[must_use]
    pub fn api(&self) -> &Api {
        &self.api
    }

    async fn client(&self) -> Result<&CloudTasks, QueueError> {
        self.client
            .get_or_try_init(|| async {
                let creds = credentials(&self.gcp)?;
                let mut b = CloudTasks::builder().with_credentials(creds).with_retry_policy(NeverRetry);
                if let Some(ep) = &self.gcp.cloud_tasks_endpoint {
                    b = b.with_endpoint(ep.as_str().trim_end_matches('/'));
                }
                b.build().await.map_err(|e| format!("building the Cloud Tasks client: {e}"))
            })
            .await
            .map_err(QueueError::Refused)
    }

    /// The delay of the next task of `task`'s instance in this run.
    fn delay_for(&self, task: &ExportTask) -> Duration {
        let mut state = self.per_instance.lock().expect("lock");
        if state.0 != task.run_id.as_str() {
            *state = (task.run_id.to_string(), HashMap::new());
        }
        let key = format!("{}/{}/{}", task.db.source, task.db.project, task.db.instance);
        let n = state.1.entry(key).or_insert(0);
        let delay = self.stagger * *n;
        *n += 1;
        delay
    }

    /// The `/export` request body of `task`.
    #[must_use]
    pub fn body(task: &ExportTask) -> serde_json::Value {
        serde_json::json!({
            "source": task.db.source,
            "project": task.db.project,
            "instance": task.db.instance,
            "database": task.db.database,
            "engine": task.db.engine,
            "run_date": task.run_date.to_string(),
            "run_id": task.run_id,
        })
    }
}

impl CloudTasksQueue {
    /// Creates the task `<queue>/tasks/<id>` delivering `body` to the target no sooner than `at`.
    async fn create(
        &self,
        id: &str,
        db: &crate::model::DatabaseRef,
        body: &serde_json::Value,
        at: chrono::DateTime<Utc>,
    ) -> Result<Enqueued, QueueError> {
        let client = self.client().await?;
        let name = format!("{}/tasks/{id}", self.queue);
        let body = bytes::Bytes::from(serde_json::to_vec(body).expect("JSON"));
        // The delivery joins the trace of the /schedule run that enqueued it.
        let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        if let Some(tp) = crate::telemetry::traceparent(&crate::telemetry::current_context()) {
            headers.push(("traceparent".to_owned(), tp));
        }
        let request = HttpRequest::new()
            .set_url(self.target_url.clone())
            .set_http_method(HttpMethod::Post)
            .set_headers(headers)
            .set_body(body)
            .set_oidc_token(
                OidcToken::new()
                    .set_service_account_email(self.service_account.clone())
                    .set_audience(self.audience.clone()),
            );
        let mut new_task = Task::new()
            .set_name(name.clone())
            .set_schedule_time(google_cloud_wkt::Timestamp::clamp(
                at.timestamp(),
                i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
            ))
            .set_http_request(request);
        if let Some(deadline) = self.dispatch_deadline {
            let secs = i64::try_from(deadline.as_secs()).unwrap_or(1800);
            new_task = new_task.set_dispatch_deadline(google_cloud_wkt::Duration::clamp(secs, 0));
        }
        let result = self
            .api
            .call("tasks.create", || {
                client.create_task().set_parent(self.queue.clone()).set_task(new_task.clone()).send()
            })
            .await;
        match result {
            Ok(_) => {
                tracing::debug!(task.name = %name, db.path = %db, "task created");
                Ok(Enqueued::Enqueued)
            }
            Err(CallError::AlreadyExists(_)) => Ok(Enqueued::AlreadyQueued),
            Err(e @ (CallError::Denied(_) | CallError::Disabled(_) | CallError::NotFound(_))) => {
                Err(QueueError::Refused(e.to_string()))
            }
            Err(e) => Err(QueueError::Unavailable(e.to_string())),
        }
    }
}

#[async_trait]
impl TaskQueue for CloudTasksQueue {
    async fn enqueue(&self, task: ExportTask) -> Result<Enqueued, QueueError> {
        let at = Utc::now() + chrono::Duration::from_std(self.delay_for(&task)).unwrap_or_default();
        self.create(&task.task_id(), &task.db, &Self::body(&task), at).await
    }

    async fn wait_idle(&self) {}

    fn max_in_flight(&self) -> usize {
        self.concurrency
    }

    fn follows_up(&self) -> bool {
        self.follow_up
    }

    async fn enqueue_follow_up(
        &self,
        task: &ExportTask,
        check: u32,
        at: chrono::DateTime<Utc>,
    ) -> Result<Enqueued, QueueError> {
        let id = format!("{}-{}", task.task_id(), crate::export::follow_up::check_suffix(check));
        let mut body = Self::body(task);
        body["check"] = serde_json::json!(check);
        self.create(&id, &task.db, &body, at).await
    }

    async fn enqueue_copy(&self, task: &ExportTask) -> Result<Enqueued, QueueError> {
        let id = format!("{}-copy", task.task_id());
        let mut body = Self::body(task);
        body["copy"] = serde_json::json!(true);
        self.create(&id, &task.db, &body, Utc::now()).await
    }
}
