//! The HTTP API: one file per route group, `error.rs` for every error answer, and the OpenAPI
//! document. Handlers parse, call one domain function, and map its outcome; nothing more.

pub mod backups;
pub mod error;
pub mod export;
pub mod guard;
pub mod health;
pub mod limits;
pub mod prune;
pub mod schedule;
pub mod server;
pub mod status;

use std::net::SocketAddr;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::app::AppState;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(title = "data-backup", description = "Backs up every database, every night, and proves the backups are good."),
    paths(schedule::schedule, export::export, prune::prune, backups::list_backups, backups::verify, backups::verify_due, status::status, status::page, status::runs, status::run, status::metrics, health::healthz, health::doctor),
    components(schemas(error::Problem, crate::store::manifest::Manifest, crate::runs::ledger::ScheduleSummary, crate::retention::PrunePlan, crate::restore::BackupPage, crate::verify::VerificationRecord, crate::status::StatusReport, crate::runs::summary::RunReport, status::RunList)),
    modifiers(&BearerAuth),
    tags((name = "backups", description = "Discovery, export, listing and restore drills"), (name = "status", description = "Freshness, coverage, runs and metrics"), (name = "operations", description = "Health and metadata"))
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
        limits::document_protected_answers(openapi);
    }
}

/// The OpenAPI document.
#[must_use]
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The router of the service bound to `local`: `/healthz` open, everything else behind caller
/// verification, then (inside it) the concurrency limit and the time limit of `limits.rs`. Around
/// all routes: without `[auth]`, the loopback guard of `guard.rs`; every error answer a problem
/// document (`error::problem_documents`); `X-Content-Type-Options: nosniff` on every answer. The
/// `Authorization` header is marked sensitive so that no trace layer can print it.
pub fn router(state: AppState, local: SocketAddr) -> Router {
    let protected = Router::new()
        .route("/schedule", post(schedule::schedule))
        .route("/export", post(export::export))
        .route("/prune", post(prune::prune))
        .route("/backups", get(backups::list_backups))
        .route("/verify", post(backups::verify))
        .route("/verify/due", post(backups::verify_due))
        .route("/openapi.json", get(health::openapi))
        .route("/", get(status::page))
        .route("/status", get(status::status))
        .route("/runs", get(status::runs))
        .route("/runs/{id}", get(status::run))
        .route("/metrics", get(status::metrics))
        .route("/doctor", get(health::doctor))
        .route_layer(axum::middleware::from_fn_with_state(state.http.clone(), limits::time_limit))
        .route_layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(limits::overloaded))
                .load_shed()
                .layer(GlobalConcurrencyLimitLayer::new(state.http.max_concurrent_requests)),
        )
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::auth::require_caller));
    let routes =
        Router::new().route("/healthz", get(health::healthz)).merge(protected).layer(DefaultBodyLimit::max(BODY_LIMIT));
    let routes = if state.auth.is_enabled() {
        routes
    } else {
        routes.layer(axum::middleware::from_fn_with_state(guard::LoopbackGuard::new(local), guard::refuse_foreign))
    };
    routes
        .layer(axum::middleware::from_fn(error::problem_documents))
        .layer(axum::middleware::from_fn(nosniff))
        .layer(TraceLayer::new_for_http().make_span_with(crate::telemetry::request_span))
        .layer(SetSensitiveRequestHeadersLayer::new([axum::http::header::AUTHORIZATION]))
        .with_state(state)
}

/// Middleware: `X-Content-Type-Options: nosniff` on every answer, so that no browser reads a JSON
/// or text answer as anything else.
async fn nosniff(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}
