//! The HTTP API: one file per route group, `error.rs` for every error answer, and the OpenAPI
//! document. Handlers parse, call one domain function, and map its outcome; nothing more.

pub mod error;
pub mod export;
pub mod health;
pub mod prune;
pub mod schedule;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::app::AppState;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(title = "data-backup", description = "Backs up every database, every night, and proves the backups are good."),
    paths(schedule::schedule, export::export, prune::prune, health::healthz),
    components(schemas(error::Problem, crate::store::manifest::Manifest, crate::schedule::ScheduleSummary, crate::retention::PrunePlan)),
    modifiers(&BearerAuth),
    tags((name = "backups", description = "Discovery and export"), (name = "operations", description = "Health and metadata"))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document.
#[must_use]
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The router: `/healthz` open, everything else behind caller verification.
pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/schedule", post(schedule::schedule))
        .route("/export", post(export::export))
        .route("/prune", post(prune::prune))
        .route("/openapi.json", get(health::openapi))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::auth::require_caller));
    Router::new()
        .route("/healthz", get(health::healthz))
        .merge(protected)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
