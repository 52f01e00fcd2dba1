//! The verdict of a drill as it is recorded and reported: the record of a backup no drill can
//! restore (`unverifiable`), and the failure report sent through the notifiers.

use chrono::Utc;

use super::Verifier;
use crate::model::DatabasePath;
use crate::notify::{FailureReport, Subject};
use crate::store::manifest::Manifest;
use crate::store::verification::{RECORD_VERSION, VerificationRecord, VerificationResult};

impl Verifier {
    /// The record of the backup `manifest` describes, with `result` and nothing measured yet (no
    /// server, no time spent): each verdict fills in what it did.
    pub(super) fn record_of(db: &DatabasePath, manifest: &Manifest, result: VerificationResult) -> VerificationRecord {
        let now = Utc::now();
        VerificationRecord {
            version: RECORD_VERSION,
            project: db.project.to_string(),
            instance: db.instance.to_string(),
            database: db.database.to_string(),
            engine: manifest.engine,
            run_date: manifest.run_date.clone(),
            key: manifest.key.clone(),
            result,
            reason: None,
            started_at: now,
            finished_at: now,
            duration_secs: 0.0,
            server: String::new(),
            scratch_database: String::new(),
            bytes_checked: 0,
            row_counts_compared: false,
            tables: Vec::new(),
            checks: Vec::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
            restore_secs: None,
            bytes_per_sec: None,
            rows_per_sec: None,
            restore_jobs: None,
            copy: None,
        }
    }

    /// The honest verdict on a backup no drill can restore: no server, no account, nothing run.
    pub(super) fn unverifiable(db: &DatabasePath, manifest: &Manifest, reason: &str) -> VerificationRecord {
        VerificationRecord {
            reason: Some(reason.to_owned()),
            ..Self::record_of(db, manifest, VerificationResult::Unverifiable)
        }
    }

    pub(super) async fn report(&self, manifest: &Manifest, record: &VerificationRecord) {
        let message = record.errors.join("; ");
        let report = FailureReport {
            error_class: "verification_failed".into(),
            message: message.clone(),
            text: format!(
                ":red_circle: data-backup: the restore drill of {}/{}/{} (backup of {}{}) failed: {message}",
                record.project,
                record.instance,
                record.database,
                record.run_date,
                record.copy.as_deref().map_or_else(String::new, |c| format!(", off-site copy `{c}`"))
            ),
            ..FailureReport::about(Subject {
                source: manifest.source.clone(),
                project: record.project.clone(),
                instance: record.instance.clone(),
                database: record.database.clone(),
                run_date: record.run_date.clone(),
                run_id: manifest.run_id.clone(),
            })
        };
        for n in &self.notifiers {
            if let Err(e) = n.notify(&report).await {
                tracing::warn!(error = %e, "{e}");
            }
        }
    }
}
