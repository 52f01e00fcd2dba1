//! Failure reports, run summaries and (optionally) success events published to a Pub/Sub topic.
//!
//! Each is one message: `data` is the report as JSON, the attributes carry what a subscription
//! filter needs (`kind`, `database` as `project/instance/database`, `run_date`, `run_id`, and
//! `error_class` for failures).
//!
//! Why REST and not the official client: `google-cloud-pubsub` speaks gRPC only, which neither
//! a wiremock fake nor any emulator installable here can be tested against with the service's
//! own code path; the REST `topics.publish` call is one POST, authorised with the same
//! `google-cloud-auth` credentials as every other Google call of the service.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use google_cloud_auth::credentials::{CacheableResource, Credentials};
use serde::Serialize;
use serde_json::json;

use super::{FailureReport, Notifier, NotifyError, RunSummaryReport, SuccessEvent, TripwireReport};
use crate::settings::GcpSettings;

/// Google's Pub/Sub endpoint.
const DEFAULT_ENDPOINT: &str = "https://pubsub.googleapis.com";

/// Publishes reports to a topic.
pub struct PubSubNotifier {
    /// `{endpoint}/v1/projects/P/topics/T:publish`.
    url: String,
    credentials: Credentials,
    http: reqwest::Client,
    attempts: u32,
    success_events: bool,
}

impl PubSubNotifier {
    /// A notifier publishing to `topic` (`projects/P/topics/T`), with the `[gcp]` credentials and
    /// endpoint; `success_events` also publishes one event per backup made.
    pub fn new(topic: &str, gcp: &GcpSettings, attempts: u32, success_events: bool) -> Result<Self, String> {
        let endpoint =
            gcp.pubsub_endpoint.as_ref().map_or(DEFAULT_ENDPOINT, |u| u.as_str()).trim_end_matches('/').to_owned();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("building the Pub/Sub client: {e}"))?;
        Ok(Self {
            url: format!("{endpoint}/v1/{topic}:publish"),
            credentials: crate::gcp::credentials::credentials(gcp)?,
            http,
            attempts: attempts.max(1),
            success_events,
        })
    }

    async fn publish<T: Serialize + Sync>(
        &self,
        body: &T,
        attributes: BTreeMap<&str, String>,
    ) -> Result<(), NotifyError> {
        let data = serde_json::to_vec(body).map_err(|e| NotifyError(format!("encoding the message: {e}")))?;
        let message = json!({"messages": [{
            "data": base64::engine::general_purpose::STANDARD.encode(data),
            "attributes": attributes,
        }]});
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            match self.send(&message).await {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            tracing::warn!(attempt, topic = %self.url, "Pub/Sub message not published: {last}");
            if attempt < self.attempts {
                tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt - 1))).await;
            }
        }
        Err(NotifyError(format!("{last} after {} attempts", self.attempts)))
    }

    async fn send(&self, message: &serde_json::Value) -> Result<(), String> {
        let headers = match self.credentials.headers(http::Extensions::new()).await {
            Ok(CacheableResource::New { data, .. }) => data,
            Ok(CacheableResource::NotModified) => http::HeaderMap::new(),
            Err(e) => return Err(format!("no credentials for Pub/Sub: {e}")),
        };
        let response = self
            .http
            .post(&self.url)
            .headers(headers)
            .json(message)
            .send()
            .await
            .map_err(|e| format!("Pub/Sub is unreachable ({})", e.without_url()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let detail: String = response.text().await.unwrap_or_default().chars().take(300).collect();
        Err(format!("Pub/Sub answered {status}: {detail}"))
    }
}

fn database(project: &str, instance: &str, database: &str) -> String {
    format!("{project}/{instance}/{database}")
}

#[async_trait]
impl Notifier for PubSubNotifier {
    async fn notify(&self, report: &FailureReport) -> Result<(), NotifyError> {
        let attributes = BTreeMap::from([
            ("kind", "export_failed".to_owned()),
            ("database", database(&report.subject.project, &report.subject.instance, &report.subject.database)),
            ("run_date", report.subject.run_date.clone()),
            ("run_id", report.subject.run_id.clone()),
            ("error_class", report.error_class.clone()),
        ]);
        self.publish(report, attributes).await
    }

    async fn notify_run(&self, report: &RunSummaryReport) -> Result<(), NotifyError> {
        let attributes = BTreeMap::from([
            ("kind", "run_summary".to_owned()),
            ("run_date", report.run_date.clone()),
            ("run_id", report.run_id.clone()),
        ]);
        self.publish(report, attributes).await
    }

    async fn notify_tripwire(&self, report: &TripwireReport) -> Result<(), NotifyError> {
        let attributes = BTreeMap::from([
            ("kind", report.kind.clone()),
            ("database", database(&report.project, &report.instance, &report.database)),
            ("run_date", report.run_date.clone()),
        ]);
        self.publish(report, attributes).await
    }

    async fn notify_success(&self, event: &SuccessEvent) -> Result<(), NotifyError> {
        if !self.success_events {
            return Ok(());
        }
        let attributes = BTreeMap::from([
            ("kind", "export_succeeded".to_owned()),
            ("database", database(&event.subject.project, &event.subject.instance, &event.subject.database)),
            ("run_date", event.subject.run_date.clone()),
            ("run_id", event.subject.run_id.clone()),
        ]);
        self.publish(event, attributes).await
    }
}
