//! The report-once policy of failed copies: [`report_once`] reports the failure of one copy of a
//! database's backup of a day at most once, whatever the number of attempts and instances (the
//! marker `reports/copies/<copy>/…` is created in the primary store first; only the call that
//! creates it reports). The primary backup stays what it is: exported.

use std::sync::Arc;

use crate::copy::target::CopyError;
use crate::model::ExportTask;
use crate::notify::{FailureReport, Notifier, Subject};
use crate::store::BackupStore;
use crate::store::bucket::PutOutcome;
use crate::store::layout::{Key, path_of};

/// The failure report of the copy `copy` of `task`'s backup.
#[must_use]
pub fn failure_report(copy: &str, task: &ExportTask, error: &CopyError) -> FailureReport {
    FailureReport {
        attempt: 1,
        error_class: error.class().to_owned(),
        transient: error.is_transient(),
        message: format!("copy `{copy}`: {error}"),
        text: format!(
            ":red_circle: data-backup: the off-site copy `{copy}` of the backup of {} for {} failed (the backup \
             itself is in the primary store): {error}",
            task.db, task.run_date
        ),
        ..FailureReport::about(Subject::of_task(task))
    }
}

/// Reports the failure of the copy `copy` of `task`'s backup unless it was already reported.
/// Answers whether this call reported it.
pub async fn report_once(
    primary: &BackupStore,
    notifiers: &[Arc<dyn Notifier>],
    copy: &str,
    task: &ExportTask,
    error: &CopyError,
) -> bool {
    let report = failure_report(copy, task, error);
    let marker = Key::CopyReport { copy: copy.to_owned(), db: path_of(&task.db), date: task.run_date };
    match primary.create_json(&marker, &report).await {
        Ok(PutOutcome::AlreadyExists) => return false,
        Ok(PutOutcome::Created) => {}
        // The marker could not be written: better twice than never.
        Err(e) => tracing::warn!(error = %e, "could not record the copy's failure report marker; reporting anyway"),
    }
    for n in notifiers {
        if let Err(e) = n.notify(&report).await {
            tracing::warn!(error = %e, db.path = %task.db, "{e}");
        }
    }
    true
}
