//! `GET /backups` (the backups of one database, newest first, paged), `POST /verify` (a restore
//! drill of one backup) and `POST /verify/due` (the drills due, for a scheduler): parse, call the
//! domain, map the outcome. `from` on the first two reads an off-site copy (`[[copies]]`, ADR 0023)
//! instead of the primary store.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, DueDrillsError, Problem};
use super::state::AppState;
use crate::model::{DatabaseName, DatabasePath, InstanceName, InvalidField, ProjectId, RunDate};
use crate::restore::BackupPage;
use crate::verify::VerificationRecord;

/// Default page size of `GET /backups`.
pub const DEFAULT_PAGE_SIZE: usize = 50;

/// Query of `GET /backups`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BackupsQuery {
    /// `PROJECT/INSTANCE/DATABASE`.
    pub database: String,
    /// `next_page_token` of the previous page.
    #[serde(default)]
    pub page_token: Option<String>,
    /// Backups per page (1–200, default 50).
    #[serde(default)]
    pub page_size: Option<usize>,
    /// List the backups in this off-site copy (a `[[copies]]` name) instead of the primary store.
    #[serde(default)]
    pub from: Option<String>,
}

/// List the backups of one database, newest first.
#[utoipa::path(
    get,
    path = "/backups",
    tag = "backups",
    params(BackupsQuery),
    responses(
        (status = 200, description = "One page of backups, newest first", body = BackupPage),
        (status = 400, description = "Malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No copy has the name `from` gives (the answer names the configured copies)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid `database`, `page_token` or `page_size`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is temporarily unavailable", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn list_backups(
    State(state): State<AppState>,
    query: Result<Query<BackupsQuery>, QueryRejection>,
) -> Result<Json<BackupPage>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let db: DatabasePath = query.database.parse()?;
    let size = query.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=crate::restore::MAX_PAGE_SIZE).contains(&size) {
        return Err(
            InvalidField::new("page_size", format!("must be between 1 and {}", crate::restore::MAX_PAGE_SIZE)).into()
        );
    }
    let store = match query.from.as_deref() {
        None => state.service.store.clone(),
        Some(name) => crate::copy::open_copy_store(&state.settings, &state.service.store, name).await?,
    };
    let page = crate::restore::list_backups(&store, &db, query.page_token.as_deref(), size).await?;
    Ok(Json(page))
}

/// Body of `POST /verify`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"project": "local", "instance": "127.0.0.1", "database": "app"}))]
pub struct VerifyRequest {
    /// Project (for a self-hosted server: the source's name).
    pub project: String,
    /// Instance.
    pub instance: String,
    /// Database.
    pub database: String,
    /// The backup's run date (`YYYY-MM-DD`); default the newest backup.
    #[serde(default)]
    pub run_date: Option<String>,
    /// Drill the backup in this off-site copy (a `[[copies]]` name) instead of the primary store;
    /// the record is written in the copy's store and names the copy.
    #[serde(default)]
    pub from: Option<String>,
}

/// Restore one backup into a scratch database, compare its row counts and run the checks.
#[utoipa::path(
    post,
    path = "/verify",
    tag = "backups",
    request_body = VerifyRequest,
    responses(
        (status = 200, description = "The drill ran; `result` says whether the backup is good (failures are also reported through the notifiers)", body = VerificationRecord),
        (status = 400, description = "Malformed JSON, unknown or missing field", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such backup, or no copy has the name `from` gives (the answer names the configured copies)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field has an invalid value, or no verification server is configured for the engine", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is temporarily unavailable", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn verify(
    State(state): State<AppState>,
    body: Result<Json<VerifyRequest>, JsonRejection>,
) -> Result<Json<VerificationRecord>, ApiError> {
    let Json(req) = body?;
    let db = DatabasePath {
        project: ProjectId::parse(req.project)?,
        instance: InstanceName::parse(req.instance)?,
        database: DatabaseName::parse(req.database)?,
    };
    let date = req.run_date.as_deref().map(RunDate::parse).transpose()?;
    let record = match req.from.as_deref() {
        None => state.verifier.verify(&db, date).await?,
        Some(name) => {
            let store = crate::copy::open_copy_store(&state.settings, &state.service.store, name).await?;
            state.verifier.verify_from(name, &store, &db, date).await?
        }
    };
    Ok(Json(record))
}

/// Run the drills due: the least recently verified databases (in the primary store and in each
/// off-site copy, each record naming its copy), never-verified first, within the
/// `[verify]` budget (`nightly_count` drills, none started after `nightly_secs`). Cloud Scheduler
/// calls it after the nightly run (`serve` on the embedded queue drills after each run by itself).
/// The drills run to their end even when the caller stops waiting.
#[utoipa::path(
    post,
    path = "/verify/due",
    tag = "backups",
    responses(
        (status = 200, description = "The drills ran, one record each (failures are also reported through the notifiers); empty when nothing is due", body = Vec<VerificationRecord>),
        (status = 503, description = "The store is temporarily unavailable, or the service is stopping", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn verify_due(State(state): State<AppState>) -> Result<Json<Vec<VerificationRecord>>, ApiError> {
    let verifier = state.verifier.clone();
    let drills = tokio::spawn(async move { verifier.drill_due().await });
    let records = drills
        .await
        .map_err(|e| ApiError::Unprocessable(format!("the drills stopped: {e}")))?
        .map_err(DueDrillsError)?;
    state.status.invalidate().await;
    Ok(Json(records))
}
