//! The report-once policy of failed exports: [`report_once`] makes sure each failed (database,
//! day) is reported at most once, whatever the number of retries and instances (the store's report
//! marker is written with a conditional create first; only the call that creates it reports), and
//! [`failure_report`] builds the report of an `ExportError`.

use std::sync::Arc;

use crate::export::ExportError;
use crate::model::ExportTask;
use crate::notify::{FailureReport, Notifier, Subject};
use crate::store::BackupStore;
use crate::store::history;

/// The failure report of `error` on the `attempt`-th try of `task`.
#[must_use]
pub fn failure_report(task: &ExportTask, attempt: u32, error: &ExportError) -> FailureReport {
    let why = if error.is_transient() { "still failing after its last retry" } else { "permanent failure" };
    FailureReport {
        attempt,
        error_class: error.class().to_owned(),
        transient: error.is_transient(),
        message: error.to_string(),
        text: format!(
            ":red_circle: data-backup: backup of {} for {} failed ({why}, attempt {attempt}): {error}",
            task.db, task.run_date
        ),
        operation: error.operation().map(str::to_owned),
        ..FailureReport::about(Subject::of_task(task))
    }
}

/// Reports the failure of `task` unless it was already reported (marker written with a
/// conditional create). Answers whether this call reported it.
pub async fn report_once(
    store: &BackupStore,
    notifiers: &[Arc<dyn Notifier>],
    task: &ExportTask,
    attempt: u32,
    error: &ExportError,
) -> bool {
    let report = failure_report(task, attempt, error);
    match store.mark_reported(&task.db, task.run_date, &report).await {
        Ok(false) => return false,
        Ok(true) => {
            let db = crate::store::layout::path_of(&task.db);
            history::record_failure(store, &db, task.run_date, &report.error_class, &report.message).await;
        }
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
