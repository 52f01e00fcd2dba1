//! `[auth]`: who may call the service (a bearer token, Google ID tokens and their allowlists),
//! with its checks.

use std::collections::BTreeMap;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use super::error::SettingsError;
use super::secret::read_secret_file;

/// `[auth]`: who may call the service. Every route but `/healthz` needs a verified caller once
/// either method is configured; both may be on together (see `src/http/auth.rs`).
///
/// ```toml
/// [auth]
/// bearer_token_file = "/run/secrets/data-backup-token"   # or DATA_BACKUP_AUTH__BEARER_TOKEN
/// oidc_audience = "https://data-backup-xyz.a.run.app"    # turns Google ID-token verification on
/// oidc_allowed_emails = ["ops@example.com"]              # allowed on every protected route
/// [auth.route_emails]                                    # allowed on one route only, besides those
/// schedule = ["scheduler@ops.iam.gserviceaccount.com"]
/// export = ["tasks@ops.iam.gserviceaccount.com"]
/// ```
/// `route_emails` is keyed by the route's first path segment (`schedule`, `export`, `prune`,
/// `verify`, `backups`, …), so it can be set from the environment too:
/// `DATA_BACKUP_AUTH__ROUTE_EMAILS__EXPORT='["tasks@ops.iam.gserviceaccount.com"]'`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Bearer token callers must present (prefer `bearer_token_file` or the environment); empty: none.
    pub bearer_token: Option<SecretString>,
    /// File holding the bearer token (its first line).
    pub bearer_token_file: Option<PathBuf>,
    /// The exact `aud` Google ID tokens must carry (Cloud Run: the service URL, as the Scheduler job
    /// and the Tasks queue set it). Setting it turns ID-token verification on.
    pub oidc_audience: Option<String>,
    /// Identities (the token's `email`) allowed on every protected route: operators, and service
    /// accounts that need every route.
    pub oidc_allowed_emails: Vec<String>,
    /// Identities allowed on one route only, keyed by its first path segment (`schedule`, `export`).
    pub route_emails: BTreeMap<String, Vec<String>>,
    /// Where Google's signing keys are published (tests point it at a fake).
    pub jwks_url: Url,
    /// A token signed by a key the cache does not know refetches the keys at most this often, in seconds.
    pub jwks_min_refresh_secs: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            bearer_token: None,
            bearer_token_file: None,
            oidc_audience: None,
            oidc_allowed_emails: Vec::new(),
            route_emails: BTreeMap::new(),
            jwks_url: Url::parse("https://www.googleapis.com/oauth2/v3/certs").expect("valid URL"),
            jwks_min_refresh_secs: 60,
        }
    }
}

impl AuthSettings {
    /// The configured bearer token, read from its file if needed; an empty token counts as none.
    pub fn token(&self) -> Result<Option<SecretString>, SettingsError> {
        if let Some(path) = &self.bearer_token_file {
            return read_secret_file(path).map(Some).map_err(|r| SettingsError::new("auth.bearer_token_file", r));
        }
        Ok(self.bearer_token.clone().filter(|t| !t.expose_secret().trim().is_empty()))
    }

    /// Whether any authentication method is configured.
    pub fn is_enabled(&self) -> Result<bool, SettingsError> {
        Ok(self.token()?.is_some() || self.oidc_audience.is_some())
    }

    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        self.token()?;
        let emails = || self.oidc_allowed_emails.iter().chain(self.route_emails.values().flatten());
        match &self.oidc_audience {
            Some(aud) if aud.trim().is_empty() || aud.trim() != aud => {
                return Err(SettingsError::new("auth.oidc_audience", "must be the exact audience, without spaces"));
            }
            Some(_) if emails().next().is_none() => {
                return Err(SettingsError::new(
                    "auth.oidc_allowed_emails",
                    "ID-token verification needs an allowlist (any Google account can mint a token for any \
                     audience): list the callers' emails here or in auth.route_emails",
                ));
            }
            None if emails().next().is_some() => {
                return Err(SettingsError::new(
                    "auth.oidc_audience",
                    "allowed emails are set but no audience: set the audience the callers' ID tokens carry",
                ));
            }
            _ => {}
        }
        for (i, email) in self.oidc_allowed_emails.iter().enumerate() {
            check_email(email).map_err(|r| SettingsError::new(format!("auth.oidc_allowed_emails[{i}]"), r))?;
        }
        for (route, list) in &self.route_emails {
            if route.is_empty() || !route.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            {
                return Err(SettingsError::new(
                    format!("auth.route_emails.{route}"),
                    "the key is a route's first path segment without slashes (`schedule`, `export`)",
                ));
            }
            for (i, email) in list.iter().enumerate() {
                check_email(email).map_err(|r| SettingsError::new(format!("auth.route_emails.{route}[{i}]"), r))?;
            }
        }
        if !matches!(self.jwks_url.scheme(), "http" | "https") {
            return Err(SettingsError::new("auth.jwks_url", "must be an http:// or https:// URL"));
        }
        Ok(())
    }
}

fn check_email(email: &str) -> Result<(), String> {
    match email.split_once('@') {
        Some((user, domain)) if !user.is_empty() && domain.contains('.') && !email.contains(char::is_whitespace) => {
            Ok(())
        }
        _ => Err(format!("`{email}` is not an email address")),
    }
}
