//! Failure reports and run summaries POSTed as JSON to an incoming webhook (Slack, Teams, or any
//! JSON receiver; a summary has `"kind": "run_summary"`).
//! Retries a few times with backoff; a webhook that stays down never fails the export.

use std::time::Duration;

use async_trait::async_trait;

use super::{FailureReport, Notifier, NotifyError, RunSummaryReport};
use crate::settings::SecretUrl;

/// Posts reports to a webhook.
pub struct WebhookNotifier {
    url: SecretUrl,
    attempts: u32,
    client: reqwest::Client,
}

impl WebhookNotifier {
    /// A notifier posting to `url`, trying each report up to `attempts` times.
    #[must_use]
    pub fn new(url: SecretUrl, attempts: u32) -> Self {
        let client =
            reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("static client settings");
        Self { url, attempts: attempts.max(1), client }
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    async fn notify(&self, report: &FailureReport) -> Result<(), NotifyError> {
        self.post(report).await
    }

    async fn notify_run(&self, report: &RunSummaryReport) -> Result<(), NotifyError> {
        self.post(report).await
    }
}

impl WebhookNotifier {
    /// POSTs `report` as JSON, retrying with backoff.
    async fn post<T: serde::Serialize + Sync>(&self, report: &T) -> Result<(), NotifyError> {
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            // The URL is a secret (it carries the webhook's token): errors are stripped of it.
            match self.client.post(self.url.expose().clone()).json(report).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => last = format!("the webhook answered {}", r.status()),
                Err(e) => last = format!("the webhook is unreachable ({})", e.without_url()),
            }
            tracing::warn!(attempt, webhook = ?self.url, "report not delivered: {last}");
            if attempt < self.attempts {
                tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt - 1))).await;
            }
        }
        Err(NotifyError(format!("{last} after {} attempts", self.attempts)))
    }
}
