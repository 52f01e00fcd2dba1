//! `POST /export`: parse and validate the request, run one export attempt, map the outcome. With a
//! queue that follows up (`cloud_tasks`, `export.follow_up`), an export still waiting for its Cloud
//! SQL operation or its busy instance leaves a follow-up check and answers 200
//! `started`/`running`/`waiting` (ADR 0021); a delivery of the queue then does not wait at all.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;
use utoipa::ToSchema;

use super::error::{ApiError, CopyRetry, Problem};
use super::state::AppState;
use crate::export::follow_up::{FollowUpPolicy, NextCheck};
use crate::export::job::JobStep;
use crate::export::run::{log_failed_attempt, log_waiting};
use crate::export::{ExportError, ExportOutcome};
use crate::model::{
    DatabaseName, ExportTask, InstanceName, InvalidField, Label, ProjectId, RunDate, RunId, SourceName,
};
use crate::store::manifest::Manifest;

/// Body of `POST /export`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"project": "local", "instance": "127.0.0.1", "database": "app", "run_date": "2026-11-21"}))]
pub struct ExportRequest {
    /// Configured source; may be left out when one source is configured.
    #[serde(default)]
    pub source: Option<String>,
    /// Project (for a self-hosted server: the source's name).
    pub project: String,
    /// Instance (for a self-hosted server: its configured instance, default the host).
    pub instance: String,
    /// Database.
    pub database: String,
    /// Engine of the database. Default: the instance's (a `gcp` source reads the instance's
    /// `databaseVersion`) or the self-hosted source's own. One that contradicts it is refused with
    /// 422 before anything starts.
    #[serde(default)]
    pub engine: Option<crate::model::Engine>,
    /// Day the backup belongs to (`YYYY-MM-DD`, from 2000 on, not in the future, and not older than
    /// the longest retention class keeps backups); default today (UTC).
    #[serde(default)]
    pub run_date: Option<String>,
    /// The run that asked; default `manual`.
    #[serde(default)]
    pub run_id: Option<String>,
    /// Name of an on-demand backup (`before-incident-42`): stored under
    /// `labels/<label>/<project>/<instance>/<database>/`, listed with its label, never removed by
    /// retention. A label names one backup of a database: exporting it again answers
    /// `already_exported`. Its failures are answered, not reported through the notifiers.
    #[serde(default)]
    pub label: Option<String>,
    /// Export even when the database lies outside what the service is configured to back up (an
    /// `[exclude]` pattern, the source's `databases` globs, or a project outside a `gcp` source's
    /// folders and projects); without it such a request is refused with 422 naming the rule.
    /// Deliveries of the queue (`X-CloudTasks-TaskName`) are not checked: `/schedule` made them.
    #[serde(default)]
    pub ignore_scope: bool,
    /// The follow-up check this delivery is (`cloud_tasks` mode sets it on the follow-up tasks it
    /// creates; 0 or absent: the original task).
    #[serde(default)]
    pub check: Option<u32>,
    /// Copy the backup, which must already be in the primary store, to the off-site copies
    /// (`[[copies]]`) instead of exporting (`cloud_tasks` mode sets it on the copy task it creates
    /// once a backup is made; ADR 0023). Answers `already_exported`; a copy that fails is reported
    /// once, whatever the deliveries: a transient failure answers 503 with `Retry-After` (the queue
    /// delivers the task again, the copies already made are skipped), a permanent one answers 200
    /// `already_exported` with `retryable: false` and the copy's `error`.
    #[serde(default)]
    pub copy: bool,
}

/// What happened to the export.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ExportStatus {
    /// This call made the backup.
    Exported,
    /// The backup already existed; nothing was done.
    AlreadyExported,
    /// The export failed permanently and was reported (answered to Cloud Tasks so it stops retrying).
    Failed,
    /// This call started the Cloud SQL export operation; a follow-up checks it at `next_check_at`.
    Started,
    /// The export operation is still running; a follow-up checks it at `next_check_at`.
    Running,
    /// The instance is busy with another operation; a follow-up tries again at `next_check_at`,
    /// when that operation is expected to end.
    Waiting,
}

/// Answer of `POST /export`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ExportResponse {
    /// What happened.
    pub status: ExportStatus,
    /// Object key of the dump.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The backup's manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Manifest>,
    /// For `failed`, and a copy delivery whose copy failed permanently: whether retrying could
    /// help (always false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// For `failed`, and a copy delivery whose copy failed permanently: what went wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For `started`, `running`, `waiting`: when the follow-up check is due.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_check_at: Option<chrono::DateTime<chrono::Utc>>,
    /// For `started`, `running`, `waiting`: the follow-up check's number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<u32>,
    /// For `started`, `running`, `waiting`: the Cloud SQL operation waited for (the export's
    /// own, or the one in the instance's way), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// For `started`, `running`, `waiting`: why the export is not done yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

async fn task_of(
    state: &AppState,
    req: ExportRequest,
    from_queue: bool,
) -> Result<(ExportTask, Option<Label>), ApiError> {
    let label = req.label.map(Label::parse).transpose()?;
    let source = req.source.map(SourceName::parse).transpose()?;
    let project = ProjectId::parse(req.project)?;
    let instance = InstanceName::parse(req.instance)?;
    let database = DatabaseName::parse(req.database)?;
    let run_date = req.run_date.as_deref().map(RunDate::parse).transpose()?.unwrap_or_else(RunDate::today);
    // A day older than the longest retention class keeps its backups would be pruned at once.
    let longest = crate::retention::RetentionClass::ALL
        .into_iter()
        .map(|class| state.retention.rule(class, project.as_str()).keep_days)
        .max()
        .unwrap_or(0);
    let age = (RunDate::today().date() - run_date.date()).num_days();
    if age > i64::from(longest) {
        return Err(InvalidField::new(
            "run_date",
            format!(
                "{run_date} is {age} days ago, older than the longest retention class keeps backups ({longest} days)"
            ),
        )
        .into());
    }
    let run_id = req.run_id.map(RunId::parse).transpose()?.unwrap_or_else(RunId::manual);
    let source = state.service.source_for(source.as_ref(), &project, &instance)?;
    let mut db = source.database_in(&project, &instance, database, req.engine);
    if !req.ignore_scope && !from_queue {
        state.service.check_scope(source, &db, &state.exclusions).await?;
    }
    // A queue delivery carries the engine discovery read from the instance (the exporter checks it
    // again); any other request learns it from the source now, so an `engine` that contradicts the
    // instance is refused before anything starts.
    if !(from_queue && req.engine.is_some()) {
        db.engine = source.engine_of(&db, req.engine).await?;
    }
    Ok((ExportTask { db, run_date, run_id }, label))
}

fn header_u32(headers: &HeaderMap, name: &str) -> Option<u32> {
    headers.get(name)?.to_str().ok()?.parse().ok()
}

/// Export one database, idempotently.
#[utoipa::path(
    post,
    path = "/export",
    tag = "backups",
    request_body = ExportRequest,
    responses(
        (status = 200, description = "Exported, already exported, (to Cloud Tasks) failed permanently and reported, or (with follow-ups) started, running or waiting for the instance, checked again at `next_check_at`", body = ExportResponse),
        (status = 400, description = "Malformed JSON, unknown or missing field", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The database does not exist (reported)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another export of the same task holds the lease", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field has an invalid value (an `engine` that is not the instance's), the database lies outside what the service backs up (without `ignore_scope`), or the export failed permanently (reported)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Transient failure (of the export, or of a copy delivery's copy; or, with follow-ups, the follow-up check could not be created): retry after `Retry-After` seconds", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn export(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<ExportRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body?;
    let mut delivery = Delivery::from_headers(&headers);
    delivery.check = req.check.unwrap_or(0);
    let copy = req.copy;
    let (task, label) = task_of(&state, req, delivery.task_name.is_some()).await?;
    // Every event of this request carries the Cloud Tasks delivery it belongs to.
    let span = tracing::info_span!(
        "delivery",
        cloudtasks.task_name = delivery.task_name.as_deref(),
        cloudtasks.queue_name = delivery.queue_name.as_deref(),
        cloudtasks.retry_count = delivery.retry_count,
        cloudtasks.execution_count = delivery.execution_count,
    );
    if copy && label.is_none() {
        return copy_task(&state, &task).instrument(span).await;
    }
    export_task(&state, &task, label, &delivery).instrument(span).await
}

/// A copy delivery: copies the backup of `task`, already in the primary store, to every copy. A
/// copy that failed transiently answers 503 with `Retry-After`, so the queue delivers the task
/// again (the copies already made are skipped then); one that failed permanently answers 200
/// `already_exported` with `retryable: false` and its `error`. Either is reported once
/// (`copy::report`), whatever the number of deliveries.
async fn copy_task(state: &AppState, task: &ExportTask) -> Result<Response, ApiError> {
    let Some(manifest) = state.service.store.manifest(&task.db, task.run_date).await? else {
        return Err(ApiError::NotFound(format!("no backup of {} for {} to copy", task.db, task.run_date)));
    };
    let Some(copies) = &state.copies else { return Ok(ok(ExportStatus::AlreadyExported, manifest)) };
    let failed: Vec<(String, crate::copy::CopyError)> =
        copies.copy_backup(task, &manifest).await.into_iter().filter_map(|(name, o)| Some((name, o.err()?))).collect();
    if let Some(i) = failed.iter().position(|(_, e)| e.is_transient()) {
        let (copy, error) = failed.into_iter().nth(i).expect("found above");
        return Err(CopyRetry { copy, error }.into());
    }
    let mut body = answer(ExportStatus::AlreadyExported, manifest);
    if !failed.is_empty() {
        body.retryable = Some(false);
        body.error = Some(failed.iter().map(|(name, e)| format!("copy `{name}`: {e}")).collect::<Vec<_>>().join("; "));
    }
    Ok((StatusCode::OK, Json(body)).into_response())
}

/// What Cloud Tasks says of a delivery (`X-CloudTasks-*`; absent for operators' calls).
struct Delivery {
    task_name: Option<String>,
    queue_name: Option<String>,
    retry_count: Option<u32>,
    execution_count: Option<u32>,
    /// The follow-up check this is (0: the original task or an operator's call).
    check: u32,
}

impl Delivery {
    fn from_headers(headers: &HeaderMap) -> Self {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Self {
            task_name: text("x-cloudtasks-taskname"),
            queue_name: text("x-cloudtasks-queuename"),
            retry_count: header_u32(headers, "x-cloudtasks-taskretrycount"),
            execution_count: header_u32(headers, "x-cloudtasks-taskexecutioncount"),
            check: 0,
        }
    }

    /// The attempt this is, counting from 1.
    fn attempt(&self) -> u32 {
        self.retry_count.map_or(1, |n| n.saturating_add(1))
    }
}

async fn export_task(
    state: &AppState,
    task: &ExportTask,
    label: Option<Label>,
    delivery: &Delivery,
) -> Result<Response, ApiError> {
    let store = match &label {
        Some(label) => state.service.store.with_label(label.clone()),
        None => state.service.store.clone(),
    };
    // With follow-ups, a queue delivery never waits for its operation (ADR 0021); an operator's
    // call waits `export.wait_secs` as before, then gets the same answers.
    let follows_up = label.is_none() && state.queue.follows_up();
    let wait = (follows_up && delivery.task_name.is_some()).then_some(std::time::Duration::ZERO);
    let outcome = match (&state.jobs, follows_up) {
        (Some(jobs), true) => {
            let self_hosted = state.service.sources.iter().any(|s| s.name == task.db.source && !s.any_instance);
            match jobs.step(&store, task, self_hosted).await {
                Ok(JobStep::Inline) => state.service.export_within(&store, task, wait).await,
                Ok(JobStep::Done(m)) => Ok(ExportOutcome::Exported(m)),
                Err(e) => Err(e),
            }
        }
        _ => state.service.export_within(&store, task, wait).await,
    };
    let outcome = match outcome {
        Err(e) if follows_up && e.is_waiting() => match follow_up(state, task, delivery, &e).await {
            FollowedUp::Answer(response) => return response,
            FollowedUp::Exhausted(failure) => Err(failure),
        },
        other => other,
    };
    let resolved = match &outcome {
        Ok(ExportOutcome::Exported(_) | ExportOutcome::AlreadyExported(_)) => true,
        Ok(ExportOutcome::LeaseHeld { .. }) => false,
        Err(e) => !e.is_transient(),
    };
    let response = respond(state, task, label.as_ref(), delivery, outcome).await;
    if resolved && label.is_none() {
        state.after_export(task).await;
    }
    response
}

/// What a follow-up made of an export that is waiting.
enum FollowedUp {
    /// Answered: 200 with the next check, or 503 when it could not be created.
    Answer(Result<Response, ApiError>),
    /// The day's chain is at its bound: the failure to report.
    Exhausted(ExportError),
}

/// An export still waiting (its operation runs, its instance is busy): creates the follow-up check
/// aimed at the expected end and answers 200 `started`/`running`/`waiting`; 503 when the check
/// cannot be created (the delivery is retried: nothing is lost); past the chain's bound, the
/// failure to report. Waiting is logged at INFO, never reported.
async fn follow_up(state: &AppState, task: &ExportTask, delivery: &Delivery, waiting: &ExportError) -> FollowedUp {
    let policy = FollowUpPolicy::from_settings(&state.settings.export);
    let (status, operation, since) = match waiting {
        ExportError::Running { operation, started, since, .. } => {
            let status = if *started { ExportStatus::Started } else { ExportStatus::Running };
            (status, Some(operation.clone()), *since)
        }
        ExportError::Busy { blocking, .. } => (
            ExportStatus::Waiting,
            blocking.as_ref().map(|b| b.operation.clone()),
            blocking.as_ref().and_then(|b| b.since),
        ),
        _ => (ExportStatus::Waiting, None, None),
    };
    let expected = state.service.expected_duration(task, waiting).await;
    let (check, at) = match policy.next_check(chrono::Utc::now(), delivery.check, since, expected) {
        NextCheck::At { check, at } => (check, at),
        NextCheck::Exhausted { checks } => {
            return FollowedUp::Exhausted(ExportError::FollowUpsExhausted { checks, reason: waiting.to_string() });
        }
    };
    if let Err(e) = state.queue.enqueue_follow_up(task, check, at).await {
        tracing::warn!(db.path = %task.db, error = %e, "the follow-up check could not be created; the delivery is retried");
        return FollowedUp::Answer(Err(ApiError::Unavailable {
            detail: format!("{waiting}; and its follow-up check could not be created: {e}"),
            retry_after: crate::util::backoff::spread(std::time::Duration::from_secs(30), 0.5),
        }));
    }
    log_waiting(task, delivery.check, waiting, at);
    let body = ExportResponse {
        status,
        key: None,
        manifest: None,
        retryable: None,
        error: None,
        next_check_at: Some(at),
        check: Some(check),
        operation,
        reason: Some(waiting.to_string()),
    };
    FollowedUp::Answer(Ok((StatusCode::OK, Json(body)).into_response()))
}

async fn respond(
    state: &AppState,
    task: &ExportTask,
    label: Option<&Label>,
    delivery: &Delivery,
    outcome: Result<ExportOutcome, ExportError>,
) -> Result<Response, ApiError> {
    let attempt = delivery.attempt();
    let from_queue = delivery.task_name.is_some();
    match outcome {
        Ok(ExportOutcome::Exported(m)) => Ok(ok(ExportStatus::Exported, *m)),
        Ok(ExportOutcome::AlreadyExported(m)) => Ok(ok(ExportStatus::AlreadyExported, *m)),
        Ok(ExportOutcome::LeaseHeld { retry_after }) => Err(ApiError::Conflict {
            detail: format!("another export of {} for {} is running", task.db, task.run_date),
            retry_after,
        }),
        Err(e) => {
            log_failed_attempt(task, attempt, &e);
            if e.is_transient() {
                // A task still failing after this many retries is reported (once per task); its
                // retries go on.
                let threshold = state.service.report_after_retries;
                if from_queue && label.is_none() && delivery.retry_count.unwrap_or(0) >= threshold {
                    state.service.report(task, attempt, &e).await;
                }
                return Err(e.into());
            }
            // A named backup's caller gets the answer; its failure marker would stand for the day's.
            if label.is_none() {
                state.service.report(task, attempt, &e).await;
            }
            if from_queue {
                let body = ExportResponse {
                    status: ExportStatus::Failed,
                    key: None,
                    manifest: None,
                    retryable: Some(false),
                    error: Some(e.to_string()),
                    next_check_at: None,
                    check: None,
                    operation: None,
                    reason: None,
                };
                return Ok((StatusCode::OK, Json(body)).into_response());
            }
            Err(e.into())
        }
    }
}

fn ok(status: ExportStatus, manifest: Manifest) -> Response {
    (StatusCode::OK, Json(answer(status, manifest))).into_response()
}

fn answer(status: ExportStatus, manifest: Manifest) -> ExportResponse {
    ExportResponse {
        status,
        key: Some(manifest.key.clone()),
        manifest: Some(manifest),
        retryable: None,
        error: None,
        next_check_at: None,
        check: None,
        operation: None,
        reason: None,
    }
}
