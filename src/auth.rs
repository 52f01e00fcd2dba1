//! Caller verification: every route but `/healthz` needs a verified caller.
//!
//! This version verifies a configured bearer token (compared in constant time). With none
//! configured, the service only starts on a loopback address (enforced by `Settings`) and logs a
//! warning: anyone on this machine may call it.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;

use crate::app::AppState;
use crate::http::error::ApiError;

/// Constant-time comparison of two byte strings (the length is not secret).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Middleware: lets the request through only with the configured bearer token (when one is set).
pub async fn require_caller(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(expected) = state.bearer_token.as_ref() else { return next.run(request).await };
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(token) if same(token.as_bytes(), expected.expose_secret().as_bytes()) => next.run(request).await,
        Some(_) => {
            tracing::warn!(path = %request.uri().path(), reason = "wrong bearer token", "caller rejected");
            ApiError::Unauthorized("the bearer token is not valid".into()).into_response()
        }
        None => {
            tracing::warn!(path = %request.uri().path(), reason = "no bearer token", "caller rejected");
            ApiError::Unauthorized("this route needs `Authorization: Bearer <token>`".into()).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn same_compares_whole_strings() {
        assert!(super::same(b"abc", b"abc"));
        assert!(!super::same(b"abc", b"abd"));
        assert!(!super::same(b"abc", b"abcd"));
    }
}
