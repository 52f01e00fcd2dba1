//! The caller-verification middleware of the protected routes: checks a request's credentials with
//! the [`Authenticator`](super::auth::Authenticator) (see `auth.rs`), puts the verified [`Caller`]
//! in the request's extensions, and answers a rejection (the answer is `error.rs`'s), logging it
//! once at WARN with the identity the token claimed (never the token).

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::Caller;
use super::error::ApiError;
use super::state::AppState;

/// Middleware: lets the request through only with a verified caller (when a method is configured);
/// the [`Caller`] is put in the request's extensions.
pub async fn require_caller(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| request.uri().path().to_owned(), |m| m.as_str().to_owned());
    match state.auth.check(request.headers(), &route).await {
        Ok(caller) => {
            if let Caller::Google { email, sub } = &caller {
                tracing::debug!(http.route = %route, caller.email = %email, caller.sub = %sub, "caller verified");
            }
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err((rejection, claimed)) => {
            tracing::warn!(
                http.route = %route,
                caller.email = claimed.email.as_deref().unwrap_or("-"),
                caller.sub = claimed.sub.as_deref().unwrap_or("-"),
                reason = %rejection.reason(),
                "caller rejected"
            );
            ApiError::from(rejection).into_response()
        }
    }
}
