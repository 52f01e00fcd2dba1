//! `GET /healthz` (open to all) and `GET /openapi.json`.

use axum::Json;

/// Liveness: answers 200 while the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// The OpenAPI 3.1 document of this API.
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(super::openapi())
}
