//! The HTTP API: one file per route group, `error.rs` for every error answer, and here the routes,
//! declared once (`utoipa-axum`'s `routes!`): the router and the OpenAPI document both come from
//! each handler's `#[utoipa::path]`. Handlers parse, call one domain function, and map its outcome;
//! nothing more.

pub mod auth;
pub mod backups;
pub mod caller;
pub mod error;
pub mod export;
pub mod guard;
pub mod health;
pub mod limits;
pub mod prune;
pub mod schedule;
pub mod server;
pub mod state;
pub mod status;

use std::net::SocketAddr;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::{Json, Router};
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use state::AppState;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The document's frame: its info, the schemas every route shares, the bearer scheme and the tags.
/// Its paths come from the routes themselves ([`protected_routes`], [`open_routes`]).
#[derive(OpenApi)]
#[openapi(
    info(title = "data-backup", description = "Backs up every database, every night, and proves the backups are good."),
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
    }
}

/// The routes behind caller verification, each declared once: a handler's `#[utoipa::path]` gives
/// both its route in the router and its operation in the OpenAPI document.
fn protected_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(schedule::schedule))
        .routes(routes!(export::export))
        .routes(routes!(prune::prune))
        .routes(routes!(backups::list_backups))
        .routes(routes!(backups::verify))
        .routes(routes!(backups::verify_due))
        .routes(routes!(openapi_document))
        .routes(routes!(status::page))
        .routes(routes!(status::status))
        .routes(routes!(status::database))
        .routes(routes!(status::runs))
        .routes(routes!(status::run))
        .routes(routes!(status::metrics))
        .routes(routes!(health::doctor))
}

/// The routes open to every caller (the liveness probe).
fn open_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health::healthz))
}

/// The OpenAPI document: the frame of [`ApiDoc`], the operations of every route, the bearer
/// requirement of every route in [`protected_routes`] (`limits::require_bearer`: a route is
/// documented as protected because it sits behind caller verification, not because its handler
/// says so), and the answers the middleware adds to them (`limits::document_protected_answers`).
#[must_use]
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut protected = protected_routes();
    limits::require_bearer(protected.get_openapi_mut());
    let mut doc = OpenApiRouter::with_openapi(ApiDoc::openapi()).merge(open_routes()).merge(protected).into_openapi();
    limits::document_protected_answers(&mut doc);
    doc
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses(
        (status = 200, description = "This document (OpenAPI 3.1)", body = Object),
    ),
)]
async fn openapi_document() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}

/// The router of the service bound to `local`: `/healthz` open, everything else behind caller
/// verification, then (inside it) the concurrency limit and the time limit of `limits.rs`. Around
/// all routes: without `[auth]`, the loopback guard of `guard.rs`; every error answer a problem
/// document (`error::problem_documents`); `X-Content-Type-Options: nosniff` on every answer. The
/// `Authorization` header is marked sensitive so that no trace layer can print it.
pub fn router(state: AppState, local: SocketAddr) -> Router {
    let (protected, _) = protected_routes().split_for_parts();
    let protected = protected
        .route_layer(axum::middleware::from_fn_with_state(state.http.clone(), limits::time_limit))
        .route_layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(limits::overloaded))
                .load_shed()
                .layer(GlobalConcurrencyLimitLayer::new(state.http.max_concurrent_requests)),
        )
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), caller::require_caller));
    let (open, _) = open_routes().split_for_parts();
    let routes = open.merge(protected).layer(DefaultBodyLimit::max(BODY_LIMIT));
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
