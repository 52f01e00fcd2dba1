//! `GET /healthz` (open to all) and `GET /doctor`.

use axum::Json;

/// Liveness: answers 200 while the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// What would make tonight's Cloud SQL exports fail: the instances' bucket access, the queue's
/// retry configuration, the bucket's lifecycle rules (one finding per problem, with its fix).
#[utoipa::path(
    get,
    path = "/doctor",
    tag = "operations",
    responses(
        (status = 200, description = "Every check ran; `findings` lists problems (and notes)", body = crate::doctor::DoctorReport),
    ),
)]
pub async fn doctor(
    axum::extract::State(state): axum::extract::State<super::state::AppState>,
) -> Json<crate::doctor::DoctorReport> {
    Json(crate::doctor::run(&state.settings).await)
}
