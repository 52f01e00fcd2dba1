//! `POST /schedule`: stamp the run date, take the run's scope from the body (optional), run one
//! schedule, answer its summary.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::Caller;
use super::error::{ApiError, Problem};
use super::state::AppState;
use crate::model::{InvalidField, RunDate};
use crate::runs::ledger::ScheduleSummary;
use crate::runs::scope::{RunScope, narrow};

/// Query of `POST /schedule`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
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

/// The run's scope from the body: none when the body is empty, `null` or `{}`.
fn scope_of(body: &Bytes) -> Result<Option<RunScope>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let scope: Option<RunScope> =
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("the body is not a run scope: {e}")))?;
    let Some(mut scope) = scope.filter(|s| !s.is_empty()) else { return Ok(None) };
    scope.validate()?;
    Ok(Some(scope))
}

/// Discover every database and enqueue one export task per database.
///
/// The optional body narrows this run (a Cloud Scheduler job per scope: production nightly,
/// development weekly): only the named `sources`, the `gcp` sources walking the named `folders`
/// and `projects` instead of their configured roots, and `exclude` patterns on top of the
/// configured ones. A root that no configured `gcp` source covers widens the run: only callers
/// allowed on every route (the bearer token, `auth.oidc_allowed_emails`) may do that; the
/// scheduler's account (`auth.route_emails.schedule`) may only narrow. The ledger and the answer
/// record the scope; a body naming exactly the configured roots answers as no body does.
#[utoipa::path(
    post,
    path = "/schedule",
    tag = "backups",
    params(ScheduleQuery),
    request_body(content = Option<RunScope>, description = "The run's scope (optional; empty: the configured sources)", content_type = "application/json"),
    responses(
        (status = 200, description = "Run summary (with the plan on a dry run)", body = ScheduleSummary),
        (status = 400, description = "The body is not a run scope", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The scope reaches beyond the configured sources and the caller may only narrow", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid X-CloudScheduler-ScheduleTime, or a scope naming an unknown source, a malformed folder or pattern", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Some tasks could not be enqueued: retry", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn schedule(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    query: Result<Query<ScheduleQuery>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Result<Json<ScheduleSummary>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let date = run_date(&headers)?;
    let Some(scope) = scope_of(&body)? else {
        return answer(state.schedule(date, query.dry_run).await);
    };
    let narrowed = narrow(&state.service.sources, &state.exclusions, &scope).await?;
    let caller = caller.map_or(Caller::Unchecked, |Extension(c)| c);
    if !narrowed.beyond.is_empty() && !state.auth.may_widen(&caller) {
        let who = match &caller {
            Caller::Google { email, .. } => format!("`{email}`"),
            _ => "this caller".to_owned(),
        };
        return Err(ApiError::Forbidden(format!(
            "{who} may only narrow a run to what the configured sources cover; beyond them: {}",
            narrowed.beyond.join("; ")
        )));
    }
    answer(state.schedule_scoped(date, query.dry_run, Some((&scope, &narrowed))).await)
}

/// 503 when some task could not be enqueued (the scheduler retries the run), else the summary.
fn answer(summary: ScheduleSummary) -> Result<Json<ScheduleSummary>, ApiError> {
    if summary.errors.iter().any(|e| e.scope.starts_with("enqueue:")) {
        return Err(ApiError::not_enqueued(summary.not_enqueued, summary.discovered - summary.excluded));
    }
    Ok(Json(summary))
}
