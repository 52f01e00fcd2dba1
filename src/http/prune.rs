//! `POST /prune`: parse `apply` and `as_of` (query or JSON body), run one prune of the primary and
//! of every off-site copy, answer the plan (each copy's in `copies`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, Problem};
use super::state::AppState;
use crate::retention::{PrunePlan, parse_as_of, prune_with_copies};

/// Options of `POST /prune`, as query parameters or as a JSON body (not both for the same option).
#[derive(Clone, Debug, Default, Deserialize, IntoParams, ToSchema)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
#[schema(example = json!({"apply": false, "as_of": "2026-11-21"}))]
pub struct PruneRequest {
    /// Delete what the plan says; default `false` (a dry run: answer the plan, delete nothing).
    #[serde(default)]
    pub apply: Option<bool>,
    /// Evaluate the policy as if today were this day (`YYYY-MM-DD`; default today, UTC). Only a dry
    /// run may look ahead.
    #[serde(default)]
    pub as_of: Option<String>,
}

fn merge(query: PruneRequest, body: PruneRequest) -> Result<PruneRequest, ApiError> {
    if query.apply.is_some() && body.apply.is_some() {
        return Err(ApiError::BadRequest("`apply` is given both in the query and in the body".into()));
    }
    if query.as_of.is_some() && body.as_of.is_some() {
        return Err(ApiError::BadRequest("`as_of` is given both in the query and in the body".into()));
    }
    Ok(PruneRequest { apply: query.apply.or(body.apply), as_of: query.as_of.or(body.as_of) })
}

/// Delete backups past their class's keep-for (dry run unless `apply`), and answer the plan.
#[utoipa::path(
    post,
    path = "/prune",
    tag = "backups",
    params(PruneRequest),
    request_body(content = Option<PruneRequest>, description = "The same options as the query, as JSON (optional)"),
    responses(
        (status = 200, description = "The plan: kept, deleted (or to delete), skipped with reasons, bytes freed; each copy's in `copies`", body = PrunePlan),
        (status = 400, description = "Malformed query or JSON, unknown field, an option given twice", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`as_of` is not a date, or lies in the future with `apply`; or the store refused the listing", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is temporarily unavailable: retry after `Retry-After` seconds", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn prune(
    State(state): State<AppState>,
    query: Result<Query<PruneRequest>, QueryRejection>,
    body: Bytes,
) -> Result<Json<PrunePlan>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let body: PruneRequest = if body.iter().all(u8::is_ascii_whitespace) {
        PruneRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?
    };
    let request = merge(query, body)?;
    let as_of = match request.as_of.as_deref() {
        Some(value) => parse_as_of(value)?,
        None => chrono::Utc::now().date_naive(),
    };
    let copies = state.copies.as_ref().map(|c| c.stores()).unwrap_or_default();
    let plan =
        prune_with_copies(&state.service.store, &copies, &state.retention, as_of, request.apply.unwrap_or(false))
            .await?;
    Ok(Json(plan))
}
