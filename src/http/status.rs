//! `GET /status` (JSON), `GET /` (the HTML status page), `GET /runs`, `GET /runs/{id}` and
//! `GET /metrics` (Prometheus text format). The state of each database is computed (and cached) by
//! `status::service::StatusService`; this file parses queries and renders.
//!
//! The page is plain server-rendered HTML with inline CSS: no JavaScript, no fonts or assets from
//! the network; its filters are a GET form. Its [`PAGE_CSP`] says exactly that to the browser, so
//! that a name that escaped the escaping still could not run a script, load anything or frame the
//! page.

use std::fmt::Write as _;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, Problem};
use super::state::AppState;
use crate::model::{RunDate, RunId};
use crate::runs::summary::RunReport;
use crate::status::render::{age_text, size_and_trend};
use crate::status::{DatabaseStatus, DbState, StatusFilter, StatusReport};

/// The state of every database, and the newest run's summary.
#[utoipa::path(
    get,
    path = "/status",
    tag = "status",
    params(StatusFilter),
    responses(
        (status = 200, description = "One row per database (filtered by the query), the counts per state over all databases, the newest run", body = StatusReport),
        (status = 400, description = "Unknown state or malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Caller not verified", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store could not be read: retry", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn status(
    State(state): State<AppState>,
    query: Result<Query<StatusFilter>, QueryRejection>,
) -> Result<Json<StatusReport>, ApiError> {
    let Query(filter) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let report = state.status.status().await?;
    Ok(Json(report.filtered(&filter)))
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
        (status = 401, description = "Caller not verified", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store could not be read: retry", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
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
    let report = state.status.status().await?;
    let headers = [
        (header::CONTENT_SECURITY_POLICY, PAGE_CSP),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    Ok((headers, Html(render_page(&report, &filter))))
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
        (status = 401, description = "Caller not verified", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store could not be read: retry", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
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
}

/// One run: every database it discovered and what became of it.
#[utoipa::path(
    get,
    path = "/runs/{id}",
    tag = "status",
    params(("id" = String, Path, description = "Run id (as `POST /schedule` answered it)"), RunQuery),
    responses(
        (status = 200, description = "The run with its databases", body = RunReport),
        (status = 401, description = "Caller not verified", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No run with this id", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Malformed run id or date", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store could not be read: retry", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn run(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<RunQuery>, QueryRejection>,
) -> Result<Json<RunReport>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let run_id = RunId::parse(id)?;
    let day = query.date.as_deref().map(RunDate::parse).transpose()?;
    match state.status.run(&run_id, day).await? {
        Some(report) => Ok(Json(report)),
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
        (status = 401, description = "Caller not verified", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
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

// ---------------------------------------------------------------------------------------------
// The page

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query value.
fn q(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

const STYLE: &str = r#"
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #111827; background: #ffffff; }
header { padding: 12px 24px; background: #111827; color: #f9fafb; display: flex; align-items: baseline; gap: 24px; }
header h1 { font-size: 20px; margin: 0; }
.overall { font-weight: 600; padding: 2px 10px; border-radius: 4px; }
.overall.healthy { background: #15803d; }
.overall.alarm { background: #dc2626; }
.overall.unproven { background: #b45309; }
.overall.empty { background: #4b5563; }
main { padding: 16px 24px; }
.run { border: 1px solid #d1d5db; border-radius: 6px; padding: 10px 14px; margin-bottom: 14px; }
.run h2 { font-size: 15px; margin: 0 0 6px 0; }
.run dl { display: flex; flex-wrap: wrap; gap: 4px 22px; margin: 0; }
.run dt { color: #6b7280; font-size: 12px; }
.run dd { margin: 0; font-weight: 600; font-size: 16px; }
.warning { color: #b91c1c; font-weight: 600; }
.counts { display: flex; flex-wrap: wrap; gap: 8px; margin-bottom: 12px; }
.chip { padding: 2px 10px; border-radius: 12px; text-decoration: none; color: #111827; border: 1px solid #d1d5db; }
form { display: flex; gap: 10px; align-items: center; margin-bottom: 12px; }
table { border-collapse: collapse; width: 100%; }
th { text-align: left; font-size: 12px; color: #374151; border-bottom: 2px solid #9ca3af; padding: 6px 8px; }
td { padding: 6px 8px; border-bottom: 1px solid #ffffff; vertical-align: top; }
.badge { display: inline-block; min-width: 72px; text-align: center; padding: 1px 6px; border-radius: 4px; font-weight: 600; color: #ffffff; }
tr.state-ok { background: #dcfce7; } .state-ok .badge, .chip.state-ok { background: #15803d; color: #ffffff; }
tr.state-unverified { background: #fef3c7; } .state-unverified .badge, .chip.state-unverified { background: #b45309; color: #ffffff; }
tr.state-unverifiable { background: #f1f5f9; } .state-unverifiable .badge, .chip.state-unverifiable { background: #475569; color: #ffffff; }
tr.state-suspect { background: #fecaca; } .state-suspect .badge, .chip.state-suspect { background: #7c2d12; color: #ffffff; }
tr.state-stale { background: #fecaca; } .state-stale .badge, .chip.state-stale { background: #dc2626; color: #ffffff; }
tr.state-failing { background: #fecaca; } .state-failing .badge, .chip.state-failing { background: #991b1b; color: #ffffff; }
tr.state-missing { background: #fecaca; } .state-missing .badge, .chip.state-missing { background: #7f1d1d; color: #ffffff; }
tr.state-gone { background: #f3f4f6; color: #6b7280; } .state-gone .badge, .chip.state-gone { background: #6b7280; color: #ffffff; }
tr.state-excluded { background: #f3f4f6; color: #6b7280; } .state-excluded .badge, .chip.state-excluded { background: #9ca3af; color: #ffffff; }
.num { text-align: right; white-space: nowrap; }
footer { padding: 8px 24px 24px; color: #6b7280; font-size: 12px; }
"#;

fn options(name: &str, values: &[String], selected: Option<&str>) -> String {
    let mut out = format!("<option value=\"\">any {name}</option>");
    for v in values {
        let sel = if selected == Some(v.as_str()) { " selected" } else { "" };
        let _ = write!(out, "<option value=\"{0}\"{sel}>{0}</option>", esc(v));
    }
    out
}

fn run_section(run: Option<&RunReport>) -> String {
    let Some(r) = run else {
        return "<section class=\"run\"><h2>Newest run</h2><p class=\"warning\">No run in the last days.</p></section>"
            .to_owned();
    };
    let mut out = format!(
        "<section class=\"run\"><h2>Newest run <a href=\"/runs/{id}?date={date}\">{id_text}</a> for {date_text} \
         <small>(started {started})</small></h2><dl>",
        id = q(&r.run_id),
        date = q(&r.run_date),
        id_text = esc(&r.run_id),
        date_text = esc(&r.run_date),
        started = r.started_at.format("%Y-%m-%d %H:%M UTC"),
    );
    for (label, n) in [
        ("discovered", r.discovered),
        ("excluded", r.excluded),
        ("expected", r.expected),
        ("exported", r.exported),
        ("failed", r.failed),
        ("not backed up", r.not_backed_up),
    ] {
        let _ = write!(out, "<div><dt>{label}</dt><dd>{n}</dd></div>");
    }
    out.push_str("</dl>");
    if !r.complete {
        out.push_str("<p class=\"warning\">Discovery was incomplete: some databases may be missing from this run.</p>");
    }
    if !r.errors.is_empty() {
        out.push_str("<ul class=\"warning\">");
        for e in &r.errors {
            let _ = write!(out, "<li>{}: {}</li>", esc(&e.scope), esc(&e.message));
        }
        out.push_str("</ul>");
    }
    out.push_str("</section>");
    out
}

fn row(r: &DatabaseStatus) -> String {
    let state = r.state.as_str();
    let verified = r.last_verification.as_ref().map_or_else(
        || "never".to_owned(),
        |v| {
            let rto = crate::status::render::restore_time_words(v.restore_secs, v.bytes_per_sec)
                .map(|w| format!(" · {}", esc(&w)))
                .unwrap_or_default();
            format!("{} {}{rto}", esc(&v.result), v.verified_at.format("%Y-%m-%d %H:%M"))
        },
    );
    format!(
        "<tr class=\"state-{state}\" data-state=\"{state}\" data-database=\"{path}\"><td><span class=\"badge\">{state}</span></td>\
         <td>{project}</td><td>{instance}</td><td>{database}</td><td>{last}</td><td class=\"num\">{age}</td>\
         <td class=\"num\">{size}</td><td>{verified}</td><td>{reason}</td></tr>",
        path = esc(&format!("{}/{}/{}", r.project, r.instance, r.database)),
        project = esc(&r.project),
        instance = esc(&r.instance),
        database = esc(&r.database),
        last = r.last_backup_at.map_or_else(|| "never".to_owned(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string()),
        age = esc(&age_text(r.age_hours)),
        size = esc(&size_and_trend(r)),
        reason = esc(&r.reason),
    )
}

/// The badge's class and words: only what is proven counts as fine ("4 backed up, 0 proven" is not).
fn overall(report: &StatusReport) -> (&'static str, String) {
    let alarms = report.databases.iter().filter(|r| r.state.is_alarm()).count();
    let total = report.databases.len();
    let tally = format!("{} backed up, {} proven", report.backed_up, report.proven);
    let unverifiable = report.counts.get(DbState::Unverifiable.as_str()).copied().unwrap_or(0);
    let unverifiable = if unverifiable > 0 { format!(", {unverifiable} unverifiable") } else { String::new() };
    if !report.healthy {
        ("alarm", format!("{alarms} of {total} databases need attention · {tally}{unverifiable}"))
    } else if report.backed_up == 0 {
        ("empty", "no database backed up".to_owned())
    } else if report.all_proven {
        ("healthy", format!("all {} databases backed up and proven", report.proven))
    } else {
        ("unproven", format!("{tally}{unverifiable}"))
    }
}

/// The whole status page for `report`, rows kept by `filter`.
#[must_use]
pub fn render_page(report: &StatusReport, filter: &StatusFilter) -> String {
    let (class, overall) = overall(report);
    let shown = report.filtered(filter);
    let mut projects: Vec<String> = report.databases.iter().map(|r| r.project.clone()).collect();
    projects.sort();
    projects.dedup();
    let mut instances: Vec<String> = report.databases.iter().map(|r| r.instance.clone()).collect();
    instances.sort();
    instances.dedup();
    let states: Vec<String> = DbState::ALL.iter().map(|s| s.as_str().to_owned()).collect();
    let mut chips = String::new();
    for (state, n) in DbState::ALL.iter().map(|s| (s.as_str(), report.counts.get(s.as_str()).copied().unwrap_or(0))) {
        if n > 0 {
            let _ = write!(chips, "<a class=\"chip state-{state}\" href=\"/?state={state}\">{state} {n}</a>");
        }
    }
    let mut rows = String::new();
    for r in &shown.databases {
        rows.push_str(&row(r));
    }
    if shown.databases.is_empty() {
        rows.push_str("<tr><td colspan=\"9\">No database matches.</td></tr>");
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>data-backup status</title><style>{STYLE}</style></head><body>\
         <header><h1>data-backup</h1><span class=\"overall {class}\">{overall}</span></header><main>\
         {run}<nav class=\"counts\">{chips}</nav>\
         <form method=\"get\" action=\"/\"><select name=\"project\">{p}</select><select name=\"instance\">{i}</select>\
         <select name=\"state\">{s}</select><button type=\"submit\">Filter</button> <a href=\"/\">all</a></form>\
         <table><thead><tr><th>State</th><th>Project</th><th>Instance</th><th>Database</th><th>Last backup</th>\
         <th class=\"num\">Age</th><th class=\"num\">Size (vs day before)</th><th>Last verification</th><th>Why</th></tr></thead>\
         <tbody>{rows}</tbody></table></main>\
         <footer>Generated {generated}. Stale after {slo} h{verify}. \
         <a href=\"/status\">JSON</a> · <a href=\"/runs\">runs</a> · <a href=\"/metrics\">metrics</a></footer>\
         </body></html>\n",
        run = run_section(report.latest_run.as_ref()),
        p = options("project", &projects, filter.project.as_deref()),
        i = options("instance", &instances, filter.instance.as_deref()),
        s = options("state", &states, filter.state.map(DbState::as_str)),
        generated = report.generated_at.format("%Y-%m-%d %H:%M:%S UTC"),
        slo = report.slo_hours,
        verify = if report.verify_within_days > 0 {
            format!("; a successful restore drill is due every {} days", report.verify_within_days)
        } else {
            String::new()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_text_is_escaped() {
        assert_eq!(esc("<a href=\"x\">&'</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
        assert_eq!(q("a b/c"), "a%20b%2Fc");
    }
}
