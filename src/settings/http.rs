//! `[http]`: limits of the HTTP service (timeouts, concurrency, connections), with their checks.

use serde::Deserialize;

use super::error::SettingsError;

/// `[http]`: limits of the HTTP service. Requests beyond `max_concurrent_requests` are answered 503
/// with `Retry-After` at once (not queued); `/healthz` is not counted. Connections beyond
/// `max_connections` are closed as soon as they are accepted, and a connection that has not sent a
/// request's complete headers within `header_read_timeout_secs` (an idle keep-alive connection
/// included) is closed, so slow or half-open clients cannot hold file descriptors.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Longest request, in seconds, on quick routes (`/openapi.json` and any route not below).
    pub request_timeout_secs: u64,
    /// Longest request, in seconds, on the routes that do the work: `/export` (runs a whole dump in
    /// self-hosted mode), `/schedule` (discovery), `/prune`, `/verify` (a restore drill) and
    /// `/backups` (bucket listings). Cloud Run allows at most 3600; Cloud Tasks waits at most 1800.
    pub long_request_timeout_secs: u64,
    /// Requests served at once (protected routes together).
    pub max_concurrent_requests: usize,
    /// Longest wait, in seconds, for a request's headers once a connection is open or idle.
    pub header_read_timeout_secs: u64,
    /// Open connections at once; more are closed at once, until some close.
    pub max_connections: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            request_timeout_secs: 30,
            long_request_timeout_secs: 3600,
            max_concurrent_requests: 64,
            header_read_timeout_secs: 10,
            max_connections: 1024,
        }
    }
}

impl HttpSettings {
    /// Checks that no limit is zero.
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        if self.request_timeout_secs == 0 {
            return Err(SettingsError::new("http.request_timeout_secs", "must be at least 1 second"));
        }
        if self.long_request_timeout_secs == 0 {
            return Err(SettingsError::new("http.long_request_timeout_secs", "must be at least 1 second"));
        }
        if self.max_concurrent_requests == 0 {
            return Err(SettingsError::new("http.max_concurrent_requests", "must be at least 1"));
        }
        if self.header_read_timeout_secs == 0 {
            return Err(SettingsError::new("http.header_read_timeout_secs", "must be at least 1 second"));
        }
        if self.max_connections < 2 {
            // One for a liveness probe, one for the caller.
            return Err(SettingsError::new("http.max_connections", "must be at least 2"));
        }
        Ok(())
    }
}
