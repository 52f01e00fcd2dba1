//! `[notify]`: where failures and run summaries are reported, with [`SecretUrl`] for webhook URLs
//! that carry a secret.

use std::fmt;

use serde::Deserialize;
use url::Url;

use super::error::SettingsError;

/// `[notify]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifySettings {
    /// Incoming-webhook URL (Slack, Teams, or anything taking JSON) for failure reports.
    pub webhook_url: Option<SecretUrl>,
    /// Attempts per report before giving up (the log event stays).
    pub webhook_attempts: u32,
    /// Pub/Sub topic (`projects/P/topics/T`) that receives failure reports and run summaries.
    pub pubsub_topic: Option<String>,
    /// Also publish one `export_succeeded` event per backup made (bytes, duration).
    pub pubsub_success: bool,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self { webhook_url: None, webhook_attempts: 3, pubsub_topic: None, pubsub_success: false }
    }
}

/// A URL that may carry a secret (webhook URLs do): printed without its path and query.
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct SecretUrl(Url);

impl SecretUrl {
    /// The full URL, for the HTTP client only.
    #[must_use]
    pub fn expose(&self) -> &Url {
        &self.0
    }
}

impl TryFrom<String> for SecretUrl {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let url = Url::parse(&value).map_err(|e| format!("not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("unsupported scheme `{}` (expected http or https)", url.scheme()));
        }
        Ok(Self(url))
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}/***", self.0.scheme(), self.0.host_str().unwrap_or(""))
    }
}

impl NotifySettings {
    /// Checks the Pub/Sub topic's name.
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        if let Some(topic) = &self.pubsub_topic {
            let parts: Vec<&str> = topic.split('/').collect();
            let valid = matches!(parts.as_slice(), ["projects", p, "topics", t] if !p.is_empty() && !t.is_empty());
            if !valid {
                return Err(SettingsError::new("notify.pubsub_topic", "must be `projects/PROJECT/topics/TOPIC`"));
            }
        }
        Ok(())
    }
}
