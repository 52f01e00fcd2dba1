//! Caller verification: whether the `Authorization` header of a request names a caller allowed on
//! its route. Every route but `/healthz` needs a verified caller (the middleware is `caller.rs`).
//!
//! Two methods, either or both enabled by `[auth]` (see [`AuthSettings`]):
//! - a **bearer token** (self-hosted deployments), compared in constant time;
//! - a **Google-signed OIDC ID token** (Cloud Scheduler, Cloud Tasks, operators with
//!   `gcloud auth print-identity-token`): RS256 only, signed by a key of the configured JWKS,
//!   `iss` `accounts.google.com` or `https://accounts.google.com`, `aud` exactly the configured
//!   audience, `exp`/`iat`/`nbf` within [`CLOCK_SKEW`], `email_verified` true and `email` on the
//!   allowlist of the route.
//!
//! With neither configured the service only starts on a loopback address (enforced by `Settings`)
//! and logs a warning: anyone on this machine may call it.
//!
//! Answers (built in `error.rs` from a [`Rejection`]): 401 with `WWW-Authenticate: Bearer` when credentials are
//! missing or invalid (`error="invalid_token"` for invalid ones); 403 (`error="insufficient_scope"`)
//! for a valid token whose identity is not allowed or whose email is not verified; 503 with
//! `Retry-After` when the signing keys cannot be fetched, so that Cloud Tasks retries instead of
//! burning its attempts on a rejection that is not the caller's fault. Every rejection is logged at
//! WARN with the caller's identity (when known) and the reason; tokens are never logged.
//!
//! ## Why not `google-cloud-auth`'s `idtoken::verifier`
//! Its verifier (1.18) checks issuer, audience, expiry and one email, but: it takes the algorithm
//! from the token's header (ES256 is accepted too); it refetches the JWKS on *every* unknown `kid`
//! with no rate limit; an unknown `kid` after a refetch and an unreachable JWKS are the same error
//! kind (`is_load_cert`), so it cannot tell a forged token (401) from an outage (503); it holds its
//! cache lock with `try_write` across the fetch, so concurrent first requests fail; it does not
//! check `iat`; and it allows one email, not an allowlist per route. The checks are few, so this
//! module does them with `jsonwebtoken` (already in the tree through google-cloud-auth) and a small
//! `kid` cache refreshed through `reqwest`.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL};
use jsonwebtoken::errors::ErrorKind as JwtError;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::settings::{AuthSettings, SettingsError};

/// Clock skew tolerated on `exp`, `iat` and `nbf` (Google's own verifiers use 10 s).
pub const CLOCK_SKEW: Duration = Duration::from_secs(10);

/// The issuers of Google ID tokens.
const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];

/// How long one JWKS request may take before the keys count as unreachable.
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);

/// How long keys are kept when the JWKS answer has no `Cache-Control: max-age` (Google sends one).
const DEFAULT_KEYS_MAX_AGE: Duration = Duration::from_secs(3600);

/// After a failed JWKS fetch, the next attempt waits this long (or `jwks_min_refresh_secs`, if shorter).
const FAILED_FETCH_BACKOFF: Duration = Duration::from_secs(5);

/// Who called, once verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// No authentication is configured (loopback only): nobody was checked.
    Unchecked,
    /// The configured bearer token.
    BearerToken,
    /// A Google ID token.
    Google {
        /// Its `email` claim.
        email: String,
        /// Its `sub` claim.
        sub: String,
    },
}

/// Why a caller is turned away.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejection {
    /// No `Authorization: Bearer …` header (401, no error code).
    Missing(&'static str),
    /// Credentials that do not verify (401, `error="invalid_token"`).
    Invalid(String),
    /// A verified identity that may not call this route (403).
    Forbidden(String),
    /// The signing keys cannot be fetched: retry later (503).
    Unavailable(String),
}

impl Rejection {
    /// Why, for the log line (for [`Rejection::Unavailable`] the fetch's failure, which the caller
    /// is not told).
    #[must_use]
    pub fn reason(&self) -> &str {
        match self {
            Self::Missing(why) => why,
            Self::Invalid(why) | Self::Forbidden(why) | Self::Unavailable(why) => why,
        }
    }
}

/// The identity a rejected token claimed, for the log line (never the token).
#[derive(Debug, Default)]
pub struct Claimed {
    /// The `email` claim of a token whose signature verified.
    pub email: Option<String>,
    /// The `sub` claim of a token whose signature verified.
    pub sub: Option<String>,
}

/// Checks callers against the configured methods. Built once at start, shared by every request.
pub struct Authenticator {
    bearer: Option<SecretString>,
    oidc: Option<OidcVerifier>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("bearer", &self.bearer.as_ref().map(|_| "***"))
            .field("oidc_audience", &self.oidc.as_ref().map(|o| o.audience.as_str()))
            .finish()
    }
}

impl Authenticator {
    /// Builds the configured methods (reads the bearer token file).
    pub fn from_settings(settings: &AuthSettings) -> Result<Self, SettingsError> {
        let oidc = settings.oidc_audience.as_ref().map(|audience| OidcVerifier {
            audience: audience.clone(),
            allowed: settings.oidc_allowed_emails.iter().map(|e| e.trim().to_ascii_lowercase()).collect(),
            route_allowed: settings
                .route_emails
                .iter()
                .map(|(route, emails)| {
                    (route.to_ascii_lowercase(), emails.iter().map(|e| e.trim().to_ascii_lowercase()).collect())
                })
                .collect(),
            keys: JwksCache::new(settings.jwks_url.clone(), Duration::from_secs(settings.jwks_min_refresh_secs)),
        });
        Ok(Self { bearer: settings.token()?, oidc })
    }

    /// Whether any method is configured.
    #[must_use]
    pub fn is_enabled(&self) -> bool {
        self.bearer.is_some() || self.oidc.is_some()
    }

    /// Whether `caller` may widen a run beyond the configured sources (`POST /schedule` with a
    /// scope naming roots the configuration does not cover): the bearer token, an unchecked loopback
    /// caller, and identities allowed on every route may; one allowed on `/schedule` alone (the
    /// scheduler's service account) may only narrow.
    #[must_use]
    pub fn may_widen(&self, caller: &Caller) -> bool {
        match caller {
            Caller::Unchecked | Caller::BearerToken => true,
            Caller::Google { email, .. } => {
                self.oidc.as_ref().is_some_and(|o| o.allowed.contains(&email.to_ascii_lowercase()))
            }
        }
    }

    /// Checks the `Authorization` header of a request to `route` (the matched route, e.g. `/export`).
    pub async fn check(&self, headers: &HeaderMap, route: &str) -> Result<Caller, (Rejection, Claimed)> {
        if !self.is_enabled() {
            return Ok(Caller::Unchecked);
        }
        let missing = |why| Err((Rejection::Missing(why), Claimed::default()));
        let Some(value) = headers.get(AUTHORIZATION) else {
            return missing("this route needs `Authorization: Bearer <token>`");
        };
        let Ok(value) = value.to_str() else {
            return Err((Rejection::Invalid("the Authorization header is not text".into()), Claimed::default()));
        };
        let (scheme, credentials) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return missing("this route needs the `Bearer` authorization scheme");
        }
        let token = credentials.trim();
        if token.is_empty() {
            return Err((Rejection::Invalid("the bearer token is empty".into()), Claimed::default()));
        }
        if let Some(expected) = &self.bearer
            && same(token.as_bytes(), expected.expose_secret().as_bytes())
        {
            return Ok(Caller::BearerToken);
        }
        match &self.oidc {
            Some(oidc) if looks_like_jwt(token) => oidc.verify(token, route).await,
            Some(_) if self.bearer.is_none() => {
                Err((Rejection::Invalid("the token is not a well-formed JWT".into()), Claimed::default()))
            }
            _ => Err((Rejection::Invalid("the bearer token is not valid".into()), Claimed::default())),
        }
    }
}

/// Constant-time comparison of two secrets: their SHA-256 digests are compared, so neither the
/// content nor the length leaks through timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    let (x, y) = (Sha256::digest(a), Sha256::digest(b));
    x.iter().zip(y.iter()).fold(0u8, |acc, (p, q)| acc | (p ^ q)) == 0
}

/// Three base64url segments separated by dots.
fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts[..2].iter().all(|p| !p.is_empty())
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
}

/// Google ID token verification: signature, issuer, audience, times, email and allowlist.
struct OidcVerifier {
    audience: String,
    /// Lower-cased emails allowed on every protected route.
    allowed: HashSet<String>,
    /// Lower-cased emails allowed on one route (keyed by its first path segment) besides `allowed`.
    route_allowed: HashMap<String, HashSet<String>>,
    keys: JwksCache,
}

impl OidcVerifier {
    async fn verify(&self, token: &str, route: &str) -> Result<Caller, (Rejection, Claimed)> {
        let invalid = |why: String| (Rejection::Invalid(why), Claimed::default());
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("the token's header is not a JWT header this service accepts".into()))?;
        if header.alg != Algorithm::RS256 {
            return Err(invalid(format!("the token is signed with {:?}; only RS256 is accepted", header.alg)));
        }
        let kid = header.kid.ok_or_else(|| invalid("the token's header has no `kid`".into()))?;
        let key = match self.keys.key(&kid).await {
            Ok(key) => key,
            Err(KeyError::Unknown) => {
                return Err(invalid(format!("the token's signing key {kid:?} is not among the current keys")));
            }
            Err(KeyError::Unreachable(why)) => return Err((Rejection::Unavailable(why), Claimed::default())),
        };
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = CLOCK_SKEW.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&GOOGLE_ISSUERS);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| invalid(jwt_reason(e.kind())))?
            .claims;
        let claimed = Claimed {
            email: claims.get("email").and_then(Value::as_str).map(str::to_owned),
            sub: claims.get("sub").and_then(Value::as_str).map(str::to_owned),
        };
        let rejected = |r: Rejection, claimed: Claimed| Err((r, claimed));
        // The signature is good from here on: what follows is about the claims' values.
        if claims.get("aud").and_then(Value::as_str) != Some(self.audience.as_str()) {
            return rejected(Rejection::Invalid("the token's audience is not this service".into()), claimed);
        }
        let now = jsonwebtoken::get_current_timestamp();
        match claims.get("iat").and_then(Value::as_u64) {
            None => return rejected(Rejection::Invalid("the token has no valid `iat` claim".into()), claimed),
            Some(iat) if iat > now + CLOCK_SKEW.as_secs() => {
                return rejected(Rejection::Invalid("the token was issued in the future (`iat`)".into()), claimed);
            }
            Some(_) => {}
        }
        let Some(email) = claimed.email.clone() else {
            return rejected(
                Rejection::Forbidden("the token carries no `email` claim (mint it with the email included)".into()),
                claimed,
            );
        };
        let verified = match claims.get("email_verified") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "true",
            _ => false,
        };
        if !verified {
            return rejected(Rejection::Forbidden(format!("the email `{email}` is not verified")), claimed);
        }
        if !self.allows(&email, route) {
            return rejected(Rejection::Forbidden(format!("`{email}` may not call {route}")), claimed);
        }
        Ok(Caller::Google { email, sub: claimed.sub.unwrap_or_default() })
    }

    /// Whether `email` is on the allowlist of every route, or on that of `route`'s first segment.
    fn allows(&self, email: &str, route: &str) -> bool {
        let email = email.to_ascii_lowercase();
        let segment = route.trim_start_matches('/').split('/').next().unwrap_or("").to_ascii_lowercase();
        self.allowed.contains(&email) || self.route_allowed.get(&segment).is_some_and(|list| list.contains(&email))
    }
}

/// A short reason for a token jsonwebtoken refused.
fn jwt_reason(kind: &JwtError) -> String {
    match kind {
        JwtError::ExpiredSignature => "the token has expired".into(),
        JwtError::ImmatureSignature => "the token is not valid yet (`nbf`)".into(),
        JwtError::InvalidAudience => "the token's audience is not this service".into(),
        JwtError::InvalidIssuer => "the token was not issued by Google".into(),
        JwtError::InvalidSignature => "the token's signature does not verify".into(),
        JwtError::InvalidAlgorithm => "the token's algorithm does not match its key".into(),
        JwtError::MissingRequiredClaim(claim) => format!("the token has no `{claim}` claim"),
        JwtError::InvalidClaimFormat(claim) => format!("the token's `{claim}` claim is malformed"),
        _ => "the token is not a valid JWT".into(),
    }
}

/// Why no key could be found for a `kid`.
#[derive(Debug)]
enum KeyError {
    /// The JWKS (fetched recently enough) has no such key.
    Unknown,
    /// The JWKS could not be fetched.
    Unreachable(String),
}

/// The signing keys of the JWKS, cached by `kid` for the answer's `max-age`. An unknown `kid`
/// refreshes them, at most once per `min_refresh`; when a refresh fails, known keys stay in use.
struct JwksCache {
    url: url::Url,
    http: reqwest::Client,
    min_refresh: Duration,
    state: RwLock<KeySet>,
    /// One fetch at a time; requests that waited for it then read its result.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct KeySet {
    keys: HashMap<String, DecodingKey>,
    expires: Option<Instant>,
    last_attempt: Option<Instant>,
    last_failed: bool,
}

impl KeySet {
    /// The key for `kid`, if known and the set has not expired.
    fn fresh(&self, kid: &str, now: Instant) -> Option<DecodingKey> {
        self.keys.get(kid).filter(|_| self.expires.is_some_and(|e| now < e)).cloned()
    }
}

impl JwksCache {
    fn new(url: url::Url, min_refresh: Duration) -> Self {
        let http = reqwest::Client::builder().timeout(JWKS_TIMEOUT).connect_timeout(JWKS_TIMEOUT).build();
        Self {
            url,
            http: http.unwrap_or_default(),
            min_refresh,
            state: RwLock::new(KeySet::default()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, KeySet> {
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, KeyError> {
        if let Some(key) = self.read().fresh(kid, Instant::now()) {
            return Ok(key);
        }
        let _one_fetch = self.fetching.lock().await;
        let now = Instant::now();
        let (stale, may_fetch, last_failed) = {
            let set = self.read();
            if let Some(key) = set.fresh(kid, now) {
                return Ok(key);
            }
            // After a failure, wait a little (an outage must not make every request wait for a
            // fetch); after a success, refetch when the set expired, or for an unknown `kid` once
            // `min_refresh` has passed.
            let expired = set.expires.is_none_or(|e| now >= e);
            let wait = if set.last_failed {
                self.min_refresh.min(FAILED_FETCH_BACKOFF)
            } else if expired {
                Duration::ZERO
            } else {
                self.min_refresh
            };
            let may_fetch = set.last_attempt.is_none_or(|t| now.duration_since(t) >= wait);
            (set.keys.get(kid).cloned(), may_fetch, set.last_failed)
        };
        if !may_fetch {
            return match stale {
                Some(key) => Ok(key),
                None if last_failed => Err(KeyError::Unreachable("the JWKS was unreachable moments ago".into())),
                None => Err(KeyError::Unknown),
            };
        }
        let fetched = self.fetch().await;
        let mut set = self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        set.last_attempt = Some(Instant::now());
        match fetched {
            Ok((keys, max_age)) => {
                tracing::info!(jwks.url = %self.url, jwks.keys = keys.len(), "fetched the ID-token signing keys");
                set.keys = keys;
                set.expires = Some(Instant::now() + max_age);
                set.last_failed = false;
                set.keys.get(kid).cloned().ok_or(KeyError::Unknown)
            }
            Err(why) => {
                set.last_failed = true;
                match stale {
                    Some(key) => {
                        tracing::warn!(jwks.url = %self.url, error = %why, "cannot refresh the ID-token signing keys; using the cached ones");
                        Ok(key)
                    }
                    None => {
                        tracing::error!(jwks.url = %self.url, error = %why, "cannot fetch the ID-token signing keys");
                        Err(KeyError::Unreachable(why))
                    }
                }
            }
        }
    }

    /// GETs the JWKS: its RSA keys by `kid`, and how long to keep them.
    async fn fetch(&self) -> Result<(HashMap<String, DecodingKey>, Duration), String> {
        let response = self.http.get(self.url.clone()).send().await.map_err(|e| format!("GET {}: {e}", self.url))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("GET {} answered {status}", self.url));
        }
        let max_age = response
            .headers()
            .get(CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age)
            .map_or(DEFAULT_KEYS_MAX_AGE, |s| Duration::from_secs(s.clamp(60, 86_400)));
        let set: JwkSet =
            response.json().await.map_err(|e| format!("GET {}: not a JSON Web Key Set: {e}", self.url))?;
        let keys = set
            .keys
            .iter()
            .filter(|jwk| matches!(jwk.algorithm, AlgorithmParameters::RSA(_)))
            .filter_map(|jwk| Some((jwk.common.key_id.clone()?, DecodingKey::from_jwk(jwk).ok()?)))
            .collect::<HashMap<_, _>>();
        if keys.is_empty() {
            return Err(format!("GET {}: the key set has no RSA key with a `kid`", self.url));
        }
        Ok((keys, max_age))
    }
}

/// The `max-age` of a `Cache-Control` value.
fn max_age(value: &str) -> Option<u64> {
    value.split(',').find_map(|d| d.trim().strip_prefix("max-age=")?.trim_matches('"').parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_compares_whole_strings() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"a"));
    }

    #[test]
    fn only_three_dotted_base64url_segments_look_like_a_jwt() {
        assert!(looks_like_jwt("eyJh.eyJz.c2ln"));
        assert!(looks_like_jwt("eyJh.eyJz."));
        assert!(!looks_like_jwt("s3cret-token"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt("a b.c.d"));
    }

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(max_age("public, max-age=19800, must-revalidate, no-transform"), Some(19_800));
        assert_eq!(max_age("no-cache"), None);
    }

    fn verifier(global: &[&str], routes: &[(&str, &[&str])]) -> OidcVerifier {
        OidcVerifier {
            audience: "https://svc".into(),
            allowed: global.iter().map(|s| (*s).to_owned()).collect(),
            route_allowed: routes
                .iter()
                .map(|(r, l)| ((*r).to_owned(), l.iter().map(|s| (*s).to_owned()).collect()))
                .collect(),
            keys: JwksCache::new("http://127.0.0.1:9/certs".parse().unwrap(), Duration::from_secs(60)),
        }
    }

    #[test]
    fn route_allowlists_add_to_the_global_one() {
        let v = verifier(&["ops@x.com"], &[("export", &["tasks@x.com"]), ("schedule", &["scheduler@x.com"])]);
        assert!(v.allows("ops@x.com", "/export"));
        assert!(v.allows("OPS@x.com", "/prune"));
        assert!(v.allows("tasks@x.com", "/export"));
        assert!(!v.allows("tasks@x.com", "/schedule"));
        assert!(v.allows("scheduler@x.com", "/schedule"));
        assert!(!v.allows("scheduler@x.com", "/export"));
        assert!(!v.allows("someone@x.com", "/export"));
    }
}
