//! `Notifier`: deliver a report to a monitoring channel, and the plain reports it delivers: a
//! failure ([`FailureReport`]), the one summary of a run ([`RunSummaryReport`]), the one report of a
//! data-loss tripwire ([`TripwireReport`]) and the event of a backup made ([`SuccessEvent`]). Who
//! decides what to report, and when, lives with them (the report-once policy in
//! `crate::export::report`, the run summary in `crate::runs::completion`, the tripwire in
//! `crate::export::tripwire`); this module only carries plain data.
//!
//! Contract of a `Notifier`: `notify` delivers one report, retrying as it sees fit; it never fails
//! the export that caused it (a delivery failure is logged by the notifier and returned only for
//! the caller's log).
//!
//! The channels are `webhook::WebhookNotifier`, `pubsub::PubSubNotifier` and [`LogNotifier`]; the
//! children import this file, so it names none of them.

pub mod pubsub;
pub mod webhook;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::store::holds::TableLoss;

/// The backup a report or an event is about: the database, the day and the run that asked for it.
/// Flattened into its report, so the JSON a channel receives names them at the top level.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
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
}

impl Subject {
    /// The backup `task` makes.
    #[must_use]
    pub fn of_task(task: &crate::model::ExportTask) -> Self {
        Self {
            source: task.db.source.to_string(),
            project: task.db.project.to_string(),
            instance: task.db.instance.to_string(),
            database: task.db.database.to_string(),
            run_date: task.run_date.to_string(),
            run_id: task.run_id.to_string(),
        }
    }

    /// The backup `manifest` describes.
    #[must_use]
    pub fn of_manifest(manifest: &crate::store::manifest::Manifest) -> Self {
        Self {
            source: manifest.source.clone(),
            project: manifest.project.clone(),
            instance: manifest.instance.clone(),
            database: manifest.database.clone(),
            run_date: manifest.run_date.clone(),
            run_id: manifest.run_id.clone(),
        }
    }
}

/// One failure report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureReport {
    /// The backup that failed.
    #[serde(flatten)]
    pub subject: Subject,
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
    /// A report about `subject`, reported now; the caller fills in what failed
    /// (`FailureReport { error_class, message, text, ..FailureReport::about(subject) }`).
    #[must_use]
    pub fn about(subject: Subject) -> Self {
        Self {
            subject,
            attempt: 1,
            error_class: String::new(),
            transient: false,
            message: String::new(),
            reported_at: Utc::now(),
            text: String::new(),
            operation: None,
        }
    }
}

/// The event of one backup made (published only where a channel asks for it: Pub/Sub with
/// `notify.pubsub_success`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SuccessEvent {
    /// Always `export_succeeded`.
    pub kind: String,
    /// The backup made.
    #[serde(flatten)]
    pub subject: Subject,
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
            subject: Subject::of_manifest(manifest),
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
    async fn notify_tripwire(&self, report: &TripwireReport) -> Result<(), NotifyError> {
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

/// The one report of a trip, sent through every notifier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TripwireReport {
    /// Always `data_loss_suspected` (tells it from other reports on a shared webhook).
    pub kind: String,
    /// Source of the database.
    pub source: String,
    /// Project.
    pub project: String,
    /// Instance.
    pub instance: String,
    /// Database.
    pub database: String,
    /// Run date of the suspect backup.
    pub run_date: String,
    /// Run date of the held backup.
    pub held_run_date: String,
    /// Tables that lost rows or vanished.
    pub tables: Vec<TableLoss>,
    /// Stored size before.
    pub bytes_before: u64,
    /// Stored size after.
    pub bytes_after: u64,
    /// One line for chat channels.
    pub text: String,
}

/// The channel of last resort: the structured log (always on, whatever else is configured).
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn notify(&self, report: &FailureReport) -> Result<(), NotifyError> {
        tracing::error!(
            db.project = %report.subject.project,
            db.instance = %report.subject.instance,
            db.name = %report.subject.database,
            run.date = %report.subject.run_date,
            run.id = %report.subject.run_id,
            task.attempt = report.attempt,
            error.class = %report.error_class,
            report = true,
            "{}",
            report.text
        );
        Ok(())
    }

    async fn notify_tripwire(&self, report: &TripwireReport) -> Result<(), NotifyError> {
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
