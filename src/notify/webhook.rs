//! Failure reports and run summaries POSTed as JSON to an incoming webhook (Slack, Teams, or any
//! JSON receiver; a summary has `"kind": "run_summary"`, a data-loss tripwire's report
//! `"kind": "data_loss_suspected"`).
//! Retries a few times with backoff; a webhook that stays down never fails the export.
//!
//! The `text` field is what a chat channel displays, and it carries names and error messages that
//! come from the databases. Slack reads `<…>` as a control sequence (`<!channel>`, `<@U123>`,
//! `<https://x|link>`), and Teams renders the `text` of an incoming webhook's card as Markdown
//! with HTML (an `<at>` mention, an `<a>` link). So `&`, `<` and `>` are sent as `&amp;`, `&lt;`
//! and `&gt;` ([`chat_escape`]): Slack's own escaping, which both display as the characters
//! themselves and neither turns into a mention, a link or markup. The other fields stay raw.

use std::time::Duration;

use async_trait::async_trait;

use super::{FailureReport, Notifier, NotifyError, RunSummaryReport, TripwireReport};
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

    async fn notify_tripwire(&self, report: &TripwireReport) -> Result<(), NotifyError> {
        self.post(report).await
    }
}

impl WebhookNotifier {
    /// POSTs `report` as JSON (its `text` escaped for chat), retrying with backoff.
    async fn post<T: serde::Serialize + Sync>(&self, report: &T) -> Result<(), NotifyError> {
        let mut report =
            serde_json::to_value(report).map_err(|e| NotifyError(format!("the report cannot be encoded: {e}")))?;
        if let Some(serde_json::Value::String(text)) = report.get_mut("text") {
            *text = chat_escape(text);
        }
        let report = &report;
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

/// `text` for Slack's and Teams' `text` fields: `&`, `<` and `>` as entities, nothing else changed.
#[must_use]
pub fn chat_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::chat_escape;

    #[test]
    fn mentions_and_links_in_names_do_nothing_in_chat() {
        assert_eq!(
            chat_escape("backup of p/i/<!channel> & <@U123> <https://evil.example|x> failed"),
            "backup of p/i/&lt;!channel&gt; &amp; &lt;@U123&gt; &lt;https://evil.example|x&gt; failed"
        );
        assert_eq!(chat_escape("&lt;"), "&amp;lt;", "already escaped text is escaped again");
        assert_eq!(chat_escape(":red_circle: app_db"), ":red_circle: app_db");
    }
}
