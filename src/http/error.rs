//! `ApiError`: the only place domain outcomes become status codes and RFC 9457 problem documents.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::InvalidField;

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
        let (detail, field, retry_after) = match self {
            Self::Invalid(f) => (f.reason.clone(), Some(f.field.to_owned()), None),
            Self::TooLarge => ("the body is over the 64 KiB limit".to_owned(), None, None),
            Self::Conflict { detail, retry_after } | Self::Unavailable { detail, retry_after } => {
                (detail, None, Some(retry_after))
            }
            Self::BadRequest(d)
            | Self::Unauthorized(d)
            | Self::InvalidToken(d)
            | Self::Forbidden(d)
            | Self::NotFound(d)
            | Self::Unprocessable(d) => (d, None, None),
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

impl From<InvalidField> for ApiError {
    fn from(f: InvalidField) -> Self {
        Self::Invalid(f)
    }
}
