//! Hardening of the protected routes: a time limit per request (long for the routes that do the
//! work, short for the rest), a global concurrency limit that sheds load with 503 + `Retry-After`
//! instead of queueing, and the OpenAPI description of the answers every protected route may give
//! because of them, of caller verification and of axum's extractors (400, 401, 403, 413, 503), and
//! of the loopback guard of `guard.rs` on every route (421; 403 and 415 on POST routes).
//!
//! The 64 KiB body limit stays where it was (`DefaultBodyLimit` in [`super::router`]); `/healthz`
//! is under none of these, so a saturated service still answers its liveness probe.

use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{ContentBuilder, Object, Ref, ResponseBuilder, Type};

use super::error::ApiError;
use crate::settings::HttpSettings;

/// First path segments of the routes that run a dump, a discovery, a bucket-wide listing or a
/// restore drill: they get `http.long_request_timeout_secs`, every other route `request_timeout_secs`.
pub const LONG_ROUTES: [&str; 5] = ["export", "schedule", "prune", "verify", "backups"];

/// `Retry-After` of a request cut by its time limit.
const TIMEOUT_RETRY_AFTER: Duration = Duration::from_secs(30);

/// `Retry-After` of a request shed because the service is saturated.
const OVERLOAD_RETRY_AFTER: Duration = Duration::from_secs(5);

/// The time limit of a request to `route` (a matched route such as `/export`).
#[must_use]
pub fn timeout_for(http: &HttpSettings, route: &str) -> Duration {
    let segment = route.trim_start_matches('/').split('/').next().unwrap_or("");
    Duration::from_secs(if LONG_ROUTES.contains(&segment) {
        http.long_request_timeout_secs
    } else {
        http.request_timeout_secs
    })
}

/// Middleware: answers 503 + `Retry-After` when the request outlives its time limit (the handler's
/// future is dropped; an export cut this way leaves at most its lease and an orphan upload, which
/// the retry replaces).
pub async fn time_limit(State(http): State<HttpSettings>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| request.uri().path().to_owned(), |m| m.as_str().to_owned());
    let limit = timeout_for(&http, &route);
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(http.route = %route, timeout_secs = limit.as_secs(), "request cut by its time limit");
            ApiError::Unavailable {
                detail: format!("the request took longer than {} s and was stopped", limit.as_secs()),
                retry_after: TIMEOUT_RETRY_AFTER,
            }
            .into_response()
        }
    }
}

/// Answer of a request refused by the concurrency limit (`LoadShed` reports `Overloaded`).
pub async fn overloaded(error: tower::BoxError) -> Response {
    let detail = if error.is::<tower::load_shed::error::Overloaded>() {
        "the service is serving as many requests as it is configured to: retry later".to_owned()
    } else {
        tracing::error!(error = %error, "request failed in a middleware");
        "the request could not be served: retry later".to_owned()
    };
    tracing::warn!(%detail, "request shed");
    ApiError::Unavailable { detail, retry_after: OVERLOAD_RETRY_AFTER }.into_response()
}

/// Every operation of a path item.
fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

/// Marks every operation of `openapi` (the routes behind `caller::require_caller`) as requiring the
/// bearer scheme, and with it the middleware's answers of [`document_protected_answers`], its 401
/// above all.
pub fn require_bearer(openapi: &mut utoipa::openapi::OpenApi) {
    for item in openapi.paths.paths.values_mut() {
        for operation in operations_mut(item) {
            operation.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
        }
    }
}

/// Adds to every operation that requires the bearer scheme the answers the middleware may give:
/// 401 (not verified), 403 (not allowed) and 503 (signing keys unreachable, saturated, time limit);
/// 400 to those with parameters or a body, 413 to those with a body; and to every operation the
/// loopback guard's 421 (415 to POST operations); unless the operation documents the code itself.
pub fn document_protected_answers(openapi: &mut utoipa::openapi::OpenApi) {
    let problem = || ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
    let header = |description: &str, kind: Type| {
        HeaderBuilder::new().schema(Object::with_type(kind)).description(Some(description)).build()
    };
    let answers = [
        (
            "401",
            ResponseBuilder::new()
                .description("Caller not verified: no, malformed, expired or wrong-audience credentials")
                .header("WWW-Authenticate", header("`Bearer realm=\"data-backup\"`, with `error=\"invalid_token\"` for invalid credentials", Type::String))
                .content("application/problem+json", problem())
                .build(),
        ),
        (
            "403",
            ResponseBuilder::new()
                .description("Verified caller not allowed on this route, or its email is not verified; without `[auth]`, a state-changing request from a web page (foreign `Origin`, `Sec-Fetch-Site: cross-site`)")
                .header("WWW-Authenticate", header("`Bearer realm=\"data-backup\", error=\"insufficient_scope\"`", Type::String))
                .content("application/problem+json", problem())
                .build(),
        ),
        (
            "503",
            ResponseBuilder::new()
                .description("Retry after `Retry-After` seconds: the identity provider's keys cannot be fetched, the service is saturated, or the request outlived its time limit")
                .header("Retry-After", header("Seconds to wait before retrying", Type::Integer))
                .content("application/problem+json", problem())
                .build(),
        ),
    ];
    let bad_request = ResponseBuilder::new()
        .description("Malformed request: a query, path parameter or body the route cannot parse")
        .content("application/problem+json", problem())
        .build();
    let too_large = ResponseBuilder::new()
        .description("Body over the 64 KiB limit")
        .content("application/problem+json", problem())
        .build();
    let misdirected = ResponseBuilder::new()
        .description("Without `[auth]`: the `Host` is not the service's loopback address (DNS rebinding)")
        .content("application/problem+json", problem())
        .build();
    let unsupported = ResponseBuilder::new()
        .description("Without `[auth]`: a body whose content type is not JSON")
        .content("application/problem+json", problem())
        .build();
    for item in openapi.paths.paths.values_mut() {
        // The loopback guard (guard.rs) answers on every route, and 415 on state-changing ones.
        if let Some(post) = item.post.as_mut() {
            post.responses.responses.entry("415".to_owned()).or_insert_with(|| unsupported.clone().into());
        }
        for operation in operations_mut(item) {
            operation.responses.responses.entry("421".to_owned()).or_insert_with(|| misdirected.clone().into());
            if operation.security.as_ref().is_none_or(Vec::is_empty) {
                continue;
            }
            let responses = &mut operation.responses.responses;
            for (code, response) in &answers {
                responses.entry((*code).to_owned()).or_insert_with(|| response.clone().into());
            }
            // Extractors answer 400 to what they cannot parse, and the body limit 413.
            if operation.parameters.as_ref().is_some_and(|p| !p.is_empty()) || operation.request_body.is_some() {
                responses.entry("400".to_owned()).or_insert_with(|| bad_request.clone().into());
            }
            if operation.request_body.is_some() {
                responses.entry("413".to_owned()).or_insert_with(|| too_large.clone().into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_routes_that_do_the_work_get_the_long_time_limit() {
        let http =
            HttpSettings { request_timeout_secs: 30, long_request_timeout_secs: 3600, ..HttpSettings::default() };
        assert_eq!(timeout_for(&http, "/export").as_secs(), 3600);
        assert_eq!(timeout_for(&http, "/schedule").as_secs(), 3600);
        assert_eq!(timeout_for(&http, "/backups/{id}").as_secs(), 3600);
        assert_eq!(timeout_for(&http, "/openapi.json").as_secs(), 30);
        assert_eq!(timeout_for(&http, "/exported").as_secs(), 30);
    }
}
