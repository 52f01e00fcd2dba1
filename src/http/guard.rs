//! Browser-facing hardening of the no-authentication mode (no `[auth]`, loopback `bind`).
//!
//! Without credentials, the only thing between the service and any web page its operator opens is
//! the browser's same-origin policy, which lets a page *send* requests it cannot read: a
//! cross-site `text/plain` or form POST (a CORS "simple request", sent without a preflight), and,
//! after DNS rebinding, a request whose `Host` is the attacker's name. In this mode:
//!
//! - a `Host` (or absolute request target) other than the bound address, `localhost`,
//!   `127.0.0.1` or `[::1]` on the bound port is answered 421 (every route, `/healthz` included);
//! - a state-changing request (any method but GET, HEAD and OPTIONS) is answered 403 when it
//!   carries a foreign or opaque (`null`) `Origin` or `Sec-Fetch-Site: cross-site`/`same-site`,
//!   and 415 when its body has a content type other than JSON (a browser sends JSON cross-origin
//!   only after a CORS preflight, which this service never grants).
//!
//! A command-line client (`curl -X POST …/schedule`, `data-backup call`) sends neither `Origin`
//! nor `Sec-Fetch-Site` and either no content type or JSON, so it is not affected.
//!
//! With `[auth]` configured none of this applies: credentials are a bearer token the browser never
//! attaches by itself, and behind Cloud Run or a proxy the host names vary.

use std::net::SocketAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// The addresses a request may name in no-authentication mode.
#[derive(Clone, Debug)]
pub struct LoopbackGuard {
    /// The bound address (its port is the one every allowed host must carry).
    local: SocketAddr,
}

impl LoopbackGuard {
    /// The guard of a service bound to `local`.
    #[must_use]
    pub fn new(local: SocketAddr) -> Self {
        Self { local }
    }

    /// Whether `authority` (`host[:port]`, as in `Host`) names this service.
    #[must_use]
    pub fn allows_host(&self, authority: &str) -> bool {
        let Ok(authority) = authority.parse::<axum::http::uri::Authority>() else { return false };
        if authority.port_u16().unwrap_or(80) != self.local.port() {
            return false;
        }
        let host = authority.host().to_ascii_lowercase();
        let bound = match self.local {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        };
        ["localhost", "127.0.0.1", "[::1]", bound.as_str()].contains(&host.as_str())
    }

    /// Whether `origin` (an `Origin` header) is this service's own.
    #[must_use]
    pub fn allows_origin(&self, origin: &str) -> bool {
        origin.strip_prefix("http://").is_some_and(|authority| self.allows_host(authority))
    }

    /// Why `request` is refused, if it is.
    fn refusal(&self, method: &Method, uri: &axum::http::Uri, headers: &HeaderMap) -> Option<ApiError> {
        let host =
            headers.get(header::HOST).map(|h| h.to_str().unwrap_or("")).or_else(|| uri.authority().map(|a| a.as_str()));
        match host {
            Some(host) if self.allows_host(host) => {}
            Some(host) => {
                return Some(ApiError::MisdirectedRequest(format!(
                    "this service answers only to its loopback address (127.0.0.1:{port}, localhost:{port}), not to `{}`",
                    host.escape_debug(),
                    port = self.local.port()
                )));
            }
            None => return Some(ApiError::MisdirectedRequest("the request names no host".into())),
        }
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return None;
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            if !self.allows_origin(origin) {
                return Some(ApiError::Forbidden(format!(
                    "cross-origin requests (Origin `{}`) may not change anything without [auth]",
                    origin.escape_debug()
                )));
            }
        }
        if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
            && (site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site"))
        {
            return Some(ApiError::Forbidden(format!(
                "requests from other sites (Sec-Fetch-Site: {site}) may not change anything without [auth]"
            )));
        }
        if let Some(kind) = headers.get(header::CONTENT_TYPE)
            && !is_json(kind.to_str().unwrap_or(""))
        {
            return Some(ApiError::UnsupportedMediaType(format!(
                "request bodies are JSON (`Content-Type: application/json`), not `{}`",
                kind.to_str().unwrap_or("?").escape_debug()
            )));
        }
        None
    }
}

/// `application/json` or `application/<anything>+json`, with or without parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Middleware (no-authentication mode only): refuses what [`LoopbackGuard`] refuses.
pub async fn refuse_foreign(State(guard): State<LoopbackGuard>, request: Request, next: Next) -> Response {
    match guard.refusal(request.method(), request.uri(), request.headers()) {
        None => next.run(request).await,
        Some(error) => {
            tracing::warn!(
                http.request.method = request.method().as_str(),
                url.path = request.uri().path(),
                reason = error.detail(),
                "request refused: no [auth], and it may come from a web page"
            );
            error.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> LoopbackGuard {
        LoopbackGuard::new("127.0.0.1:8080".parse().unwrap())
    }

    fn refused(method: &Method, headers: &[(&str, &str)]) -> Option<String> {
        let mut map = HeaderMap::new();
        map.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        for (name, value) in headers {
            map.insert(axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        guard().refusal(method, &"/prune".parse().unwrap(), &map).map(|e| e.detail().to_owned())
    }

    #[test]
    fn only_loopback_names_on_the_bound_port_are_this_service() {
        let g = guard();
        for host in ["127.0.0.1:8080", "localhost:8080", "LocalHost:8080", "[::1]:8080"] {
            assert!(g.allows_host(host), "{host}");
        }
        for host in ["evil.example", "evil.example:8080", "127.0.0.1", "localhost:8081", "127.0.0.2:8080", "", "a b"] {
            assert!(!g.allows_host(host), "{host}");
        }
        assert!(LoopbackGuard::new("127.0.0.2:80".parse().unwrap()).allows_host("127.0.0.2"));
        assert!(LoopbackGuard::new("[::1]:9000".parse().unwrap()).allows_host("[::1]:9000"));
        assert!(g.allows_origin("http://localhost:8080"));
        assert!(!g.allows_origin("https://localhost:8080") && !g.allows_origin("null"));
    }

    #[test]
    fn a_browser_may_not_change_anything_but_a_command_line_client_may() {
        assert_eq!(refused(&Method::POST, &[]), None);
        assert_eq!(refused(&Method::POST, &[("content-type", "application/json; charset=utf-8")]), None);
        assert_eq!(refused(&Method::POST, &[("origin", "http://127.0.0.1:8080")]), None);
        assert_eq!(refused(&Method::GET, &[("origin", "https://evil.example"), ("content-type", "text/plain")]), None);
        for headers in [
            &[("content-type", "text/plain")][..],
            &[("content-type", "application/x-www-form-urlencoded")],
            &[("origin", "https://evil.example")],
            &[("origin", "null")],
            &[("sec-fetch-site", "cross-site")],
        ] {
            assert!(refused(&Method::POST, headers).is_some(), "{headers:?}");
        }
    }
}
