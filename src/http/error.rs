//! `ApiError`: the only place domain outcomes become status codes and RFC 9457 problem documents.
//! The error table at the end (`From<domain error> for ApiError`) chooses, for every domain error
//! a handler meets, its status, its problem type and its `Retry-After`; handlers use `?`.
//! [`problem_documents`] turns every other error answer (axum's own rejections: unknown route,
//! method not allowed, body too large, unreadable query) into one as well, so every 4xx and 5xx
//! the service gives is `application/problem+json`.

use std::time::Duration;

use axum::Json;
use axum::extract::Request;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Rejection;
use crate::copy::{CopyError, OpenError};
use crate::export::ExportError;
use crate::export::service::{ScopeError, UnknownSource};
use crate::export::source::EngineError;
use crate::model::InvalidField;
use crate::restore::RestoreError;
use crate::retention::RetentionError;
use crate::runs::scope::RunScopeError;
use crate::store::StoreError;
use crate::verify::VerifyError;

/// An RFC 9457 problem document (`application/problem+json`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong in this case.
    pub detail: String,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Every error answer of the API.
#[derive(Debug)]
pub enum ApiError {
    /// The body is not JSON, or not the expected shape (unknown or missing field, wrong type).
    BadRequest(String),
    /// A field has a value that is not acceptable.
    Invalid(InvalidField),
    /// The body is larger than the limit.
    TooLarge,
    /// No credentials, or not the `Bearer` scheme (401).
    Unauthorized(String),
    /// Credentials that do not verify: wrong token, bad signature, expired, wrong audience (401).
    InvalidToken(String),
    /// A verified caller that may not call this route, or whose email is not verified (403).
    Forbidden(String),
    /// Another export of the same task holds the lease.
    Conflict { detail: String, retry_after: Duration },
    /// Worth retrying later.
    Unavailable { detail: String, retry_after: Duration },
    /// The thing to export does not exist.
    NotFound(String),
    /// A permanent failure the caller cannot fix by retrying.
    Unprocessable(String),
    /// No route answers this path (404).
    NoRoute(String),
    /// The route does not take this method (405, with `Allow`).
    MethodNotAllowed(String),
    /// The request body's content type is not one the route takes (415).
    UnsupportedMediaType(String),
    /// The request names a host this service does not answer to (421).
    MisdirectedRequest(String),
    /// Any other error answer, kept with its status.
    Status { status: StatusCode, detail: String },
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "The request body is not valid"),
            Self::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid-field", "A field has an invalid value"),
            Self::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too-large", "The request body is too large"),
            Self::Unauthorized(_) | Self::InvalidToken(_) => {
                (StatusCode::UNAUTHORIZED, "unauthorized", "The caller is not verified")
            }
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "The caller may not call this route"),
            Self::Conflict { .. } => (StatusCode::CONFLICT, "lease-held", "Another export of this database is running"),
            Self::Unavailable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Temporarily unavailable: retry later")
            }
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            Self::Unprocessable(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "export-failed", "The export failed permanently")
            }
            Self::NoRoute(_) => (StatusCode::NOT_FOUND, "no-route", "No such route"),
            Self::MethodNotAllowed(_) => {
                (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "The route does not take this method")
            }
            Self::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "The request body has a content type the route does not take",
            ),
            Self::MisdirectedRequest(_) => {
                (StatusCode::MISDIRECTED_REQUEST, "misdirected-request", "The request names another host")
            }
            Self::Status { status, .. } => {
                (*status, "http-error", status.canonical_reason().unwrap_or("The request failed"))
            }
        }
    }

    /// What went wrong in this case (the problem document's `detail`).
    #[must_use]
    pub fn detail(&self) -> &str {
        match self {
            Self::Invalid(f) => &f.reason,
            Self::TooLarge => "the body is over the 64 KiB limit",
            Self::Conflict { detail, .. } | Self::Unavailable { detail, .. } | Self::Status { detail, .. } => detail,
            Self::BadRequest(d)
            | Self::Unauthorized(d)
            | Self::InvalidToken(d)
            | Self::Forbidden(d)
            | Self::NotFound(d)
            | Self::Unprocessable(d)
            | Self::NoRoute(d)
            | Self::MethodNotAllowed(d)
            | Self::UnsupportedMediaType(d)
            | Self::MisdirectedRequest(d) => d,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, slug, title) = self.parts();
        // RFC 6750 §3: the challenge, with an error code when credentials were presented.
        let challenge = match &self {
            Self::Unauthorized(_) => Some("Bearer realm=\"data-backup\""),
            Self::InvalidToken(_) => Some("Bearer realm=\"data-backup\", error=\"invalid_token\""),
            Self::Forbidden(_) => Some("Bearer realm=\"data-backup\", error=\"insufficient_scope\""),
            _ => None,
        };
        let detail = self.detail().to_owned();
        let (field, retry_after) = match &self {
            Self::Invalid(f) => (Some(f.field.to_owned()), None),
            Self::Conflict { retry_after, .. } | Self::Unavailable { retry_after, .. } => (None, Some(*retry_after)),
            _ => (None, None),
        };
        let problem = Problem {
            kind: format!("urn:data-backup:problem:{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            field,
        };
        let mut response = (status, Json(problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(after) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(after.as_secs().max(1)));
        }
        if let Some(challenge) = challenge {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::TooLarge;
        }
        match rejection {
            // serde's messages name the field: "unknown field `x`", "missing field `database`".
            JsonRejection::JsonDataError(e) => Self::BadRequest(
                e.body_text().replace("Failed to deserialize the JSON body into the target type: ", ""),
            ),
            JsonRejection::JsonSyntaxError(e) => Self::BadRequest(format!("malformed JSON: {}", e.body_text())),
            JsonRejection::MissingJsonContentType(_) => {
                Self::BadRequest("expected `Content-Type: application/json`".into())
            }
            other => Self::BadRequest(other.body_text()),
        }
    }
}

/// Largest body of an error answer read to become a problem document's `detail` (axum's
/// rejections are one line).
const PLAIN_ERROR_LIMIT: usize = 4096;

fn is_problem(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"))
}

/// Middleware: an error answer (4xx, 5xx) that is not a problem document already (axum's 404,
/// 405, 413, query and path rejections) becomes one with the same status; its text becomes the
/// `detail`, and its other headers (`Allow`, `Retry-After`, `WWW-Authenticate`) are kept.
pub async fn problem_documents(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_problem(response.headers()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, PLAIN_ERROR_LIMIT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let error = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge,
        StatusCode::NOT_FOUND if text.is_empty() => {
            ApiError::NoRoute(format!("no route answers {method} {}", path.escape_debug()))
        }
        StatusCode::NOT_FOUND => ApiError::NotFound(text),
        StatusCode::METHOD_NOT_ALLOWED => {
            ApiError::MethodNotAllowed(format!("{} does not take {method} (see `Allow`)", path.escape_debug()))
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(text),
        StatusCode::BAD_REQUEST => ApiError::BadRequest(text),
        status => ApiError::Status {
            status,
            detail: if text.is_empty() { status.canonical_reason().unwrap_or("").to_owned() } else { text },
        },
    };
    let mut problem = error.into_response();
    *problem.status_mut() = status;
    for name in parts.headers.keys() {
        if name == header::CONTENT_TYPE || name == header::CONTENT_LENGTH || problem.headers().contains_key(name) {
            continue;
        }
        for value in parts.headers.get_all(name) {
            problem.headers_mut().append(name.clone(), value.clone());
        }
    }
    problem
}

// ---------------------------------------------------------------------------------------------
// The error table: each domain error a handler meets, and the answer it becomes.

/// `Retry-After` of an export that failed transiently without saying when to retry (jittered).
const EXPORT_RETRY_AFTER: Duration = Duration::from_secs(30);
/// `Retry-After` when a source could not tell whether a database is in scope.
const SCOPE_RETRY_AFTER: Duration = Duration::from_secs(30);
/// `Retry-After` of a prune that met a transient store failure.
const PRUNE_RETRY_AFTER: Duration = Duration::from_secs(30);
/// `Retry-After` of a listing of backups that met a transient store failure.
const LIST_RETRY_AFTER: Duration = Duration::from_secs(10);
/// `Retry-After` of one drill that met a transient failure.
const DRILL_RETRY_AFTER: Duration = Duration::from_secs(30);
/// `Retry-After` of the drills due (a batch) that met a transient failure.
const DUE_DRILLS_RETRY_AFTER: Duration = Duration::from_secs(60);
/// `Retry-After` when the store could not be read (status, runs).
const STORE_RETRY_AFTER: Duration = Duration::from_secs(30);
/// `Retry-After` of a request turned away because the ID-token signing keys cannot be fetched.
const JWKS_RETRY_AFTER: Duration = Duration::from_secs(10);
/// `Retry-After` of a schedule run some of whose tasks could not be enqueued.
const ENQUEUE_RETRY_AFTER: Duration = Duration::from_secs(60);

impl ApiError {
    /// A schedule run that could not enqueue `not_enqueued` of its `tasks` tasks: retry it.
    #[must_use]
    pub fn not_enqueued(not_enqueued: usize, tasks: usize) -> Self {
        Self::Unavailable {
            detail: format!("{not_enqueued} of {tasks} tasks could not be enqueued"),
            retry_after: ENQUEUE_RETRY_AFTER,
        }
    }
}

impl From<InvalidField> for ApiError {
    fn from(f: InvalidField) -> Self {
        Self::Invalid(f)
    }
}

/// A caller turned away (RFC 6750): no credentials 401, invalid ones 401 `invalid_token`, an
/// identity not allowed 403, signing keys that cannot be fetched 503 (the reason is logged, not told).
impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        match rejection {
            Rejection::Missing(why) => Self::Unauthorized(why.to_owned()),
            Rejection::Invalid(why) => Self::InvalidToken(why),
            Rejection::Forbidden(why) => Self::Forbidden(why),
            Rejection::Unavailable(_) => Self::Unavailable {
                detail: "the identity provider's signing keys cannot be fetched: retry later".to_owned(),
                retry_after: JWKS_RETRY_AFTER,
            },
        }
    }
}

/// An export attempt that failed: transient ones are retried (after the failure's own hint, else a
/// jittered 30 s), a database that is gone is 404, anything else 422.
impl From<ExportError> for ApiError {
    fn from(e: ExportError) -> Self {
        if e.is_transient() {
            Self::Unavailable {
                detail: e.to_string(),
                retry_after: e.retry_after().unwrap_or_else(|| crate::util::backoff::spread(EXPORT_RETRY_AFTER, 0.5)),
            }
        } else if e.is_gone() {
            Self::NotFound(e.to_string())
        } else {
            Self::Unprocessable(e.to_string())
        }
    }
}

/// The engine of a database to export: a contradicting `engine` is the field's fault; else as
/// the export's own failures.
impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Contradicts { .. } => Self::Invalid(InvalidField::new("engine", e.to_string())),
            EngineError::Export(e) => e.into(),
        }
    }
}

/// A request whose source and instance do not go together is the `instance` field's fault; any
/// other unknown source the `source` field's.
impl From<UnknownSource> for ApiError {
    fn from(e: UnknownSource) -> Self {
        let field = if matches!(e, UnknownSource::Mismatch { .. }) { "instance" } else { "source" };
        Self::Invalid(InvalidField::new(field, e.to_string()))
    }
}

/// A database outside what the service backs up is the field's fault that points outside; a
/// source that could not tell is retried when the failure is transient.
impl From<ScopeError> for ApiError {
    fn from(e: ScopeError) -> Self {
        match e {
            ScopeError::Outside { field, .. } => Self::Invalid(InvalidField::new(field, e.to_string())),
            ScopeError::Unknown(d) if d.is_transient() => {
                Self::Unavailable { detail: d.to_string(), retry_after: SCOPE_RETRY_AFTER }
            }
            ScopeError::Unknown(d) => {
                Self::Invalid(InvalidField::new("project", format!("cannot tell whether it is in scope: {d}")))
            }
        }
    }
}

/// A run's scope naming what does not exist is the field's fault; ancestry that could not be read
/// is retried when the failure is transient.
impl From<RunScopeError> for ApiError {
    fn from(e: RunScopeError) -> Self {
        match e {
            RunScopeError::Invalid(field) => Self::Invalid(field),
            RunScopeError::Discovery(d) if d.is_transient() => {
                Self::Unavailable { detail: d.to_string(), retry_after: SCOPE_RETRY_AFTER }
            }
            RunScopeError::Discovery(d) => {
                Self::Invalid(InvalidField::new("folders", format!("cannot tell whether the scope is covered: {d}")))
            }
        }
    }
}

/// A prune: a future `as_of` with `apply` is the field's fault; store failures are retried when
/// transient.
impl From<RetentionError> for ApiError {
    fn from(e: RetentionError) -> Self {
        match e {
            RetentionError::AsOfInFuture(_) => Self::Invalid(InvalidField::new("as_of", e.to_string())),
            e if e.is_transient() => Self::Unavailable { detail: e.to_string(), retry_after: PRUNE_RETRY_AFTER },
            e => Self::Unprocessable(e.to_string()),
        }
    }
}

/// A listing of backups (`GET /backups`, the one route that reads through `restore`): the only
/// input it finds invalid is the page token.
impl From<RestoreError> for ApiError {
    fn from(e: RestoreError) -> Self {
        match e {
            RestoreError::Invalid(reason) => Self::Invalid(InvalidField::new("page_token", reason)),
            e if e.is_transient() => Self::Unavailable { detail: e.to_string(), retry_after: LIST_RETRY_AFTER },
            e => Self::Unprocessable(e.to_string()),
        }
    }
}

/// One restore drill: no backup is 404, no verification server for its engine the `database`
/// field's fault, transient failures (the service stopping too) are retried.
impl From<VerifyError> for ApiError {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::NotFound(detail) => Self::NotFound(detail),
            VerifyError::NotConfigured(reason) => Self::Invalid(InvalidField::new("database", reason)),
            e if e.is_transient() => Self::Unavailable { detail: e.to_string(), retry_after: DRILL_RETRY_AFTER },
            e => Self::Unprocessable(e.to_string()),
        }
    }
}

/// The failure of the drills due (`POST /verify/due`), a batch: retried later than one drill.
#[derive(Debug)]
pub struct DueDrillsError(pub VerifyError);

impl From<DueDrillsError> for ApiError {
    fn from(DueDrillsError(e): DueDrillsError) -> Self {
        if e.is_transient() {
            Self::Unavailable { detail: e.to_string(), retry_after: DUE_DRILLS_RETRY_AFTER }
        } else {
            Self::Unprocessable(e.to_string())
        }
    }
}

/// The store could not be read (status, runs): retry, whatever the failure.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::Unavailable { detail: format!("the store could not be read: {e}"), retry_after: STORE_RETRY_AFTER }
    }
}

/// The copy a `from` names (`GET /backups`, `POST /verify`): an unknown name is 404 naming the
/// configured copies; a copy whose settings cannot work is permanent; a store that cannot be
/// opened now is retried.
impl From<OpenError> for ApiError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Unknown { .. } => Self::NotFound(e.to_string()),
            OpenError::Store { ref source, .. } if source.is_transient() => {
                Self::Unavailable { detail: e.to_string(), retry_after: STORE_RETRY_AFTER }
            }
            e => Self::Unprocessable(e.to_string()),
        }
    }
}

/// A copy delivery (`/export` with `"copy": true`) whose copy `copy` failed transiently: retried
/// by the queue after a jittered 30 s (its failure is reported once, whatever the deliveries).
#[derive(Debug)]
pub struct CopyRetry {
    /// The copy's name.
    pub copy: String,
    /// Why it failed.
    pub error: CopyError,
}

impl From<CopyRetry> for ApiError {
    fn from(CopyRetry { copy, error }: CopyRetry) -> Self {
        Self::Unavailable {
            detail: format!("the copy `{copy}` failed and may succeed later: {error}"),
            retry_after: crate::util::backoff::spread(EXPORT_RETRY_AFTER, 0.5),
        }
    }
}
