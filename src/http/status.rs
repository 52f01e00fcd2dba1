//! `GET /status` (JSON, or the overview page when asked for HTML), `GET /` (the overview page),
//! `GET /database` (the page of one database), `GET /runs`, `GET /runs/{id}` (JSON, or the run's
//! page when asked for HTML) and `GET /metrics` (Prometheus text format). The state of each
//! database is computed (and cached) by `status::service::StatusService` and the pages rendered by
//! `status::page` and `status::detail`; this file parses queries and negotiates.
//!
//! HTML is answered when the query says `format=html` or, without `format`, when the `Accept`
//! header names `text/html` (a browser); JSON stays the default for API clients.
//!
//! The pages are plain server-rendered HTML with inline CSS and SVG: no JavaScript, no fonts or
//! assets from the network; their filters are a GET form. [`PAGE_CSP`] says exactly that to the
//! browser, so that a name that escaped the escaping still could not run a script, load anything
//! or frame the page.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, Problem};
use super::state::AppState;
use crate::model::{DatabaseName, DatabasePath, InstanceName, ProjectId, RunDate, RunId};
use crate::runs::summary::RunReport;
use crate::status::page::{SortBy, render_overview};
use crate::status::{DbState, StatusFilter, StatusReport};

/// `?format=`: the answer's form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// JSON (the default).
    Json,
    /// The HTML page.
    Html,
}

/// Whether to answer HTML: `format=html`, or no `format` and an `Accept` naming `text/html`.
fn wants_html(format: Option<Format>, headers: &HeaderMap) -> bool {
    match format {
        Some(f) => f == Format::Html,
        None => headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|m| m.trim().starts_with("text/html"))),
    }
}

/// An HTML page with the page headers (CSP, no referrer, no framing).
fn html(body: String) -> Response {
    let headers = [
        (header::CONTENT_SECURITY_POLICY, PAGE_CSP),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    (headers, Html(body)).into_response()
}

/// Query of `GET /status`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatusQuery {
    /// Only this project.
    pub project: Option<String>,
    /// Only this instance.
    pub instance: Option<String>,
    /// Only this state.
    pub state: Option<DbState>,
    /// `json` (default) or `html` (the overview page); without it, an `Accept` naming `text/html` asks for the page.
    pub format: Option<Format>,
    /// The page's order: `state` (default), `name`, `size`, `age`, `duration`.
    pub sort: Option<SortBy>,
}

/// The state of every database, and the newest run's summary.
#[utoipa::path(
    get,
    path = "/status",
    tag = "status",
    params(StatusQuery),
    responses(
        (status = 200, description = "One row per database (filtered by the query), the counts per state over all databases, the newest run; the overview page when asked for HTML", content(
            (StatusReport = "application/json"),
            (String = "text/html"),
        )),
        (status = 400, description = "Unknown state or malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store could not be read: retry", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn status(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<StatusQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let filter = StatusFilter { project: query.project, instance: query.instance, state: query.state };
    if wants_html(query.format, &headers) {
        let (report, histories) = state.status.overview().await?;
        return Ok(html(render_overview(&report, &histories, &filter, query.sort.unwrap_or_default())));
    }
    let report = state.status.status().await?;
    Ok(Json(report.filtered(&filter)).into_response())
}

/// Query of `GET /` (the form sends empty values for "any").
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Only this project.
    pub project: Option<String>,
    /// Only this instance.
    pub instance: Option<String>,
    /// Only this state (`ok`, `stale`, `failing`, `missing`, `suspect`, `gone`, `unverified`, `unverifiable`, `excluded`).
    pub state: Option<String>,
    /// The order: `state` (default), `name`, `size`, `age`, `duration`.
    pub sort: Option<SortBy>,
}

/// The page's `Content-Security-Policy`: inline CSS only; no script, image, font, connection or
/// frame; the filter form submits to the page itself; no site may frame it.
pub const PAGE_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The status page (HTML).
#[utoipa::path(
    get,
    path = "/",
    tag = "status",
    params(PageQuery),
    responses(
        (status = 200, description = "The status page", body = String, content_type = "text/html",
            headers(("Content-Security-Policy" = String, description = "No script; inline CSS only; not to be framed"),
                    ("Referrer-Policy" = String, description = "`no-referrer`"))),
        (status = 503, description = "The store could not be read: retry", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn page(
    State(state): State<AppState>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let wanted_state = match query.state.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(DbState::parse(s).ok_or_else(|| ApiError::BadRequest(format!("unknown state `{s}`")))?),
        None => None,
    };
    let filter = StatusFilter { project: query.project, instance: query.instance, state: wanted_state };
    let (report, histories) = state.status.overview().await?;
    Ok(html(render_overview(&report, &histories, &filter, query.sort.unwrap_or_default())))
}

/// Query of `GET /database`: the database's names as query values (any Unicode but NUL).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DatabaseQuery {
    /// Project (or self-hosted source name).
    pub project: String,
    /// Instance (or server name).
    pub instance: String,
    /// Database.
    pub database: String,
}

/// The page of one database: every backup, its nights, failures, drills and holds.
#[utoipa::path(
    get,
    path = "/database",
    tag = "status",
    params(DatabaseQuery),
    responses(
        (status = 200, description = "The database's page", body = String, content_type = "text/html",
            headers(("Content-Security-Policy" = String, description = "No script; inline CSS only; not to be framed"))),
        (status = 400, description = "Malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No backup, history or status of this database", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store could not be read: retry", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn database(
    State(state): State<AppState>,
    query: Result<Query<DatabaseQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let db = DatabasePath {
        project: ProjectId::parse(query.project)?,
        instance: InstanceName::parse(query.instance)?,
        database: DatabaseName::parse(query.database)?,
    };
    match state.status.database_page(&db).await? {
        Some(page) => Ok(html(page)),
        None => Err(ApiError::NotFound(format!(
            "no backup, history or status of {}/{}/{}",
            db.project, db.instance, db.database
        ))),
    }
}

/// Query of `GET /runs`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    /// Days back, today included (default `status.runs_days`, at most 366).
    pub days: Option<u32>,
}

/// Answer of `GET /runs`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunList {
    /// The runs, newest first, without their database lists.
    pub runs: Vec<RunReport>,
}

/// What each recent run expected, exported, failed and excluded.
#[utoipa::path(
    get,
    path = "/runs",
    tag = "status",
    params(RunsQuery),
    responses(
        (status = 200, description = "The runs of the last days, newest first", body = RunList),
        (status = 400, description = "Malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store could not be read: retry", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn runs(
    State(state): State<AppState>,
    query: Result<Query<RunsQuery>, QueryRejection>,
) -> Result<Json<RunList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let days = query.days.unwrap_or(state.status.settings().runs_days).clamp(1, 366);
    let runs = state.status.runs(days).await?;
    Ok(Json(RunList { runs }))
}

/// Query of `GET /runs/{id}`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    /// The run's date (`YYYY-MM-DD`); without it the last 31 days are searched.
    pub date: Option<String>,
    /// `json` (default) or `html` (the run's page); without it, an `Accept` naming `text/html` asks for the page.
    pub format: Option<Format>,
}

/// One run: every database it discovered and what became of it.
#[utoipa::path(
    get,
    path = "/runs/{id}",
    tag = "status",
    params(("id" = String, Path, description = "Run id (as `POST /schedule` answered it)"), RunQuery),
    responses(
        (status = 200, description = "The run with its databases; its page when asked for HTML", content(
            (RunReport = "application/json"),
            (String = "text/html"),
        )),
        (status = 404, description = "No run with this id", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Malformed run id or date", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store could not be read: retry", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn run(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<RunQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let run_id = RunId::parse(id)?;
    let day = query.date.as_deref().map(RunDate::parse).transpose()?;
    match state.status.run(&run_id, day).await? {
        Some(report) if wants_html(query.format, &headers) => {
            let (_, histories) = state.status.overview().await?;
            Ok(html(crate::status::detail::render_run(&report, &histories)))
        }
        Some(report) => Ok(Json(report).into_response()),
        None => Err(ApiError::NotFound(format!(
            "no run `{run_id}` {}",
            day.map_or_else(
                || format!("in the last {} days", crate::runs::ledger::RUN_SEARCH_DAYS),
                |d| format!("on {d}")
            )
        ))),
    }
}

/// Prometheus metrics (text format 0.0.4); see README.md "Status and metrics".
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "status",
    responses(
        (status = 200, description = "Every metric in the Prometheus text format", body = String, content_type = "text/plain"),
    ),
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    // Per-state counts and last-success times come from the (cached) status: refresh it first.
    if let Err(e) = state.status.status().await {
        tracing::warn!(error = %e, "metrics served without a fresh status: {e}");
    }
    let mut response = state.metrics.encode().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(crate::metrics::Metrics::CONTENT_TYPE));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_answered_when_asked_by_format_or_by_a_browser() {
        let mut browser = HeaderMap::new();
        browser.insert(header::ACCEPT, HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"));
        let api = HeaderMap::new();
        assert!(wants_html(None, &browser));
        assert!(!wants_html(None, &api));
        assert!(wants_html(Some(Format::Html), &api));
        assert!(!wants_html(Some(Format::Json), &browser));
    }
}
