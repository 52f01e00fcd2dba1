//! `Notifier`: report a failure to a monitoring channel; and [`report_once`], which makes sure each
//! failed (database, day) is reported at most once, whatever the number of retries and instances.
//!
//! Contract of a `Notifier`: `notify` delivers one report, retrying as it sees fit; it never fails
//! the export that caused it (a delivery failure is logged by the notifier and returned only for
//! the caller's log).

mod pubsub;
mod webhook;

pub use self::pubsub::PubSubNotifier;
pub use self::webhook::WebhookNotifier;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::export::ExportError;
use crate::model::ExportTask;
use crate::store::BackupStore;

/// One failure report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureReport {
    /// Source of the database.
    pub source: String,
    /// Project.
    pub project: String,
    /// Instance.
    pub instance: String,
    /// Database.
    pub database: String,
    /// Day of the backup.
    pub run_date: String,
    /// Run that asked for it.
    pub run_id: String,
    /// Attempts made.
    pub attempt: u32,
    /// Error class (`gone`, `dump_failed`, `store`, …).
    pub error_class: String,
    /// Whether the failure was transient (and retries ran out).
    pub transient: bool,
    /// What failed and why.
    pub message: String,
    /// When it was reported.
    pub reported_at: DateTime<Utc>,
    /// One line for chat channels (Slack and Teams incoming webhooks display `text`).
    pub text: String,
    /// The Cloud SQL operation the failure is about, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
}

impl FailureReport {
    /// The report of `error` on the `attempt`-th try of `task`.
    #[must_use]
    pub fn new(task: &ExportTask, attempt: u32, error: &ExportError) -> Self {
        let why = if error.is_transient() { "still failing after its last retry" } else { "permanent failure" };
        Self {
            source: task.db.source.to_string(),
            project: task.db.project.to_string(),
            instance: task.db.instance.to_string(),
            database: task.db.database.to_string(),
            run_date: task.run_date.to_string(),
            run_id: task.run_id.to_string(),
            attempt,
            error_class: error.class().to_owned(),
            transient: error.is_transient(),
            message: error.to_string(),
            reported_at: Utc::now(),
            text: format!(
                ":red_circle: data-backup: backup of {} for {} failed ({why}, attempt {attempt}): {error}",
                task.db, task.run_date
            ),
            operation: error.operation().map(str::to_owned),
        }
    }
}

/// The event of one backup made (published only where a channel asks for it: Pub/Sub with
/// `notify.pubsub_success`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SuccessEvent {
    /// Always `export_succeeded`.
    pub kind: String,
    /// Source of the database.
    pub source: String,
    /// Project.
    pub project: String,
    /// Instance.
    pub instance: String,
    /// Database.
    pub database: String,
    /// Day of the backup.
    pub run_date: String,
    /// Run that asked for it.
    pub run_id: String,
    /// Object key of the dump.
    pub key: String,
    /// Stored bytes.
    pub bytes: u64,
    /// Seconds from the export's start to its manifest.
    pub duration_secs: f64,
    /// The Cloud SQL operation that wrote it, for Cloud SQL exports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
}

impl SuccessEvent {
    /// The event of `manifest`.
    #[must_use]
    pub fn new(manifest: &crate::store::manifest::Manifest) -> Self {
        let duration = (manifest.finished_at - manifest.started_at).to_std().unwrap_or_default();
        Self {
            kind: "export_succeeded".to_owned(),
            source: manifest.source.clone(),
            project: manifest.project.clone(),
            instance: manifest.instance.clone(),
            database: manifest.database.clone(),
            run_date: manifest.run_date.clone(),
            run_id: manifest.run_id.clone(),
            key: manifest.key.clone(),
            bytes: manifest.bytes,
            duration_secs: duration.as_secs_f64(),
            operation: manifest.cloud_sql.as_ref().map(|c| c.operation.clone()),
        }
    }
}

/// Why a report could not be delivered.
#[derive(Debug, thiserror::Error)]
#[error("failure report not delivered: {0}")]
pub struct NotifyError(pub String);

/// A monitoring channel.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Delivers one report.
    async fn notify(&self, report: &FailureReport) -> Result<(), NotifyError>;
    /// Delivers the one summary of a finished run (default: not delivered on this channel).
    async fn notify_run(&self, report: &RunSummaryReport) -> Result<(), NotifyError> {
        let _ = report;
        Ok(())
    }
    /// Delivers the one report of a data-loss tripwire (default: not delivered on this channel).
    async fn notify_tripwire(&self, report: &crate::tripwire::TripwireReport) -> Result<(), NotifyError> {
        let _ = report;
        Ok(())
    }
    /// Delivers the event of one backup made (default: not delivered on this channel).
    async fn notify_success(&self, event: &SuccessEvent) -> Result<(), NotifyError> {
        let _ = event;
        Ok(())
    }
}

/// The one summary of a run, sent when all its tasks are resolved (see `runs::completion`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummaryReport {
    /// Always `run_summary` (tells it from a failure report on a shared webhook).
    pub kind: String,
    /// Run id.
    pub run_id: String,
    /// Run date.
    pub run_date: String,
    /// Databases discovered.
    pub discovered: usize,
    /// Databases excluded.
    pub excluded: usize,
    /// Databases the run was to back up.
    pub expected: usize,
    /// Of those, backed up.
    pub exported: usize,
    /// Of those, failed.
    pub failed: usize,
    /// Of those, neither backed up nor reported failed.
    pub not_backed_up: usize,
    /// False when discovery could not see everything.
    pub complete: bool,
    /// Problems of the run itself (sources not listed, tasks not enqueued), as `scope: message`.
    pub errors: Vec<String>,
    /// `PROJECT/INSTANCE/DATABASE (outcome[: error])` of every database not backed up.
    pub databases_not_backed_up: Vec<String>,
    /// One line for chat channels.
    pub text: String,
}

impl RunSummaryReport {
    /// Whether every expected database was backed up and discovery saw everything.
    #[must_use]
    pub fn all_backed_up(&self) -> bool {
        self.failed + self.not_backed_up == 0 && self.complete && self.errors.is_empty()
    }
}

/// The channel of last resort: the structured log (always on, whatever else is configured).
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn notify(&self, report: &FailureReport) -> Result<(), NotifyError> {
        tracing::error!(
            db.project = %report.project,
            db.instance = %report.instance,
            db.name = %report.database,
            run.date = %report.run_date,
            run.id = %report.run_id,
            task.attempt = report.attempt,
            error.class = %report.error_class,
            report = true,
            "{}",
            report.text
        );
        Ok(())
    }

    async fn notify_tripwire(&self, report: &crate::tripwire::TripwireReport) -> Result<(), NotifyError> {
        tracing::error!(
            db.project = %report.project,
            db.instance = %report.instance,
            db.name = %report.database,
            run.date = %report.run_date,
            tripwire.held = %report.held_run_date,
            report = true,
            "{}",
            report.text
        );
        Ok(())
    }

    async fn notify_run(&self, report: &RunSummaryReport) -> Result<(), NotifyError> {
        if report.all_backed_up() {
            tracing::info!(run.id = %report.run_id, run.date = %report.run_date, report = true, "{}", report.text);
        } else {
            tracing::warn!(run.id = %report.run_id, run.date = %report.run_date, report = true, "{}", report.text);
        }
        Ok(())
    }
}

/// Reports the failure of `task` unless it was already reported (marker written with a
/// conditional create). Answers whether this call reported it.
pub async fn report_once(
    store: &BackupStore,
    notifiers: &[std::sync::Arc<dyn Notifier>],
    task: &ExportTask,
    attempt: u32,
    error: &ExportError,
) -> bool {
    let report = FailureReport::new(task, attempt, error);
    match store.mark_reported(&task.db, task.run_date, &report).await {
        Ok(false) => return false,
        Ok(true) => {}
        // The marker could not be written: better twice than never.
        Err(e) => tracing::warn!(error = %e, "could not record the failure report marker; reporting anyway"),
    }
    for n in notifiers {
        if let Err(e) = n.notify(&report).await {
            tracing::warn!(error = %e, db.path = %task.db, "{e}");
        }
    }
    true
}
