//! `POST /schedule`: stamp the run date, run one schedule, answer its summary.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, Problem};
use super::state::AppState;
use crate::model::{InvalidField, RunDate};
use crate::runs::ledger::ScheduleSummary;

/// Query of `POST /schedule`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ScheduleQuery {
    /// Answer the plan; write and enqueue nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// The run date: the UTC day of `X-CloudScheduler-ScheduleTime` when present (constant across the
/// scheduler's retries), else today (UTC).
fn run_date(headers: &HeaderMap) -> Result<RunDate, InvalidField> {
    let Some(value) = headers.get("x-cloudscheduler-scheduletime") else { return Ok(RunDate::today()) };
    let bad = || InvalidField::new("X-CloudScheduler-ScheduleTime", "is not an RFC 3339 time");
    let time = DateTime::parse_from_rfc3339(value.to_str().map_err(|_| bad())?).map_err(|_| bad())?;
    RunDate::parse(&time.with_timezone(&Utc).date_naive().to_string())
        .map_err(|e| InvalidField::new("X-CloudScheduler-ScheduleTime", e.reason))
}

/// Discover every database and enqueue one export task per database.
#[utoipa::path(
    post,
    path = "/schedule",
    tag = "backups",
    params(ScheduleQuery),
    responses(
        (status = 200, description = "Run summary (with the plan on a dry run)", body = ScheduleSummary),
        (status = 401, description = "Caller not verified", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid X-CloudScheduler-ScheduleTime", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Some tasks could not be enqueued: retry", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn schedule(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ScheduleQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ScheduleSummary>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let date = run_date(&headers)?;
    let summary = state.schedule(date, query.dry_run).await;
    if summary.errors.iter().any(|e| e.scope.starts_with("enqueue:")) {
        return Err(ApiError::not_enqueued(summary.not_enqueued, summary.discovered - summary.excluded));
    }
    Ok(Json(summary))
}
