//! [`run_export`]: the idempotent state machine every delivery of an export (HTTP, local queue,
//! CLI) goes through, and the one log event of a failed attempt.
//!
//! Manifest present → `AlreadyExported`; another live lease → `LeaseHeld`; otherwise take the
//! lease, renew it while the exporter runs, commit the manifest (conditional create), update
//! `latest/`, give the lease back. A dropped export (request cancelled, shutdown) still gives its
//! lease back.

use std::time::Duration;

use chrono::Utc;

use crate::export::{ExportError, ExportOutcome, Exporter};
use crate::model::ExportTask;
use crate::store::BackupStore;
use crate::store::bucket::PutOutcome;
use crate::store::history;
use crate::store::layout::path_of;
use crate::store::lease::{Lease, LeaseOutcome};

/// Exports `task` idempotently (see the module docs).
pub async fn run_export(
    exporter: &dyn Exporter,
    store: &BackupStore,
    task: &ExportTask,
    lease_ttl: Duration,
    wait: Option<Duration>,
) -> Result<ExportOutcome, ExportError> {
    if let Some(m) = store.manifest(&task.db, task.run_date).await? {
        return Ok(ExportOutcome::AlreadyExported(Box::new(m)));
    }
    let mut lease = match store.acquire_lease(&task.db, task.run_date, lease_ttl).await? {
        LeaseOutcome::Acquired(lease) => lease,
        LeaseOutcome::Held { until } => {
            let wait = (until - Utc::now()).to_std().unwrap_or_default().clamp(Duration::from_secs(1), lease_ttl);
            return Ok(ExportOutcome::LeaseHeld { retry_after: wait });
        }
    };
    // Someone may have finished between our manifest check and our lease.
    if let Some(m) = store.manifest(&task.db, task.run_date).await? {
        let _ = store.release_lease(&lease).await;
        return Ok(ExportOutcome::AlreadyExported(Box::new(m)));
    }
    // Dropped before it is disarmed (request cancelled, shutdown), the guard still gives the lease back.
    let mut guard = LeaseGuard { store: store.clone(), lease: Some(lease.clone()) };
    let result = {
        let export = match wait {
            Some(wait) => exporter.export_within(task, store, wait),
            None => exporter.export(task, store),
        };
        tokio::pin!(export);
        let every = lease.renew_every();
        loop {
            tokio::select! {
                r = &mut export => break r,
                () = tokio::time::sleep(every) => {
                    if !store.renew_lease(&mut lease).await? {
                        break Err(ExportError::LeaseLost);
                    }
                    guard.lease = Some(lease.clone());
                }
            }
        }
    };
    let outcome = match result {
        Ok(manifest) => match store.commit(&task.db, task.run_date, &manifest).await {
            Ok(PutOutcome::Created) => {
                if store.layout().label().is_none() {
                    history::record_backup(store, &path_of(&task.db), task.run_date, &manifest).await;
                }
                Ok(ExportOutcome::Exported(Box::new(manifest)))
            }
            Ok(PutOutcome::AlreadyExists) => match store.manifest(&task.db, task.run_date).await {
                Ok(Some(m)) => Ok(ExportOutcome::AlreadyExported(Box::new(m))),
                Ok(None) => Ok(ExportOutcome::Exported(Box::new(manifest))),
                Err(e) => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        },
        Err(e) => Err(e),
    };
    guard.lease = None;
    if let Err(e) = store.release_lease(&lease).await {
        tracing::warn!(error = %e, db.path = %task.db, "could not release the export lease; it expires by itself");
    }
    outcome
}

/// Gives a lease back when an export is dropped midway.
struct LeaseGuard {
    store: BackupStore,
    lease: Option<Lease>,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if let (Some(lease), Ok(handle)) = (self.lease.take(), tokio::runtime::Handle::try_current()) {
            let store = self.store.clone();
            handle.spawn(async move {
                let _ = store.release_lease(&lease).await;
            });
        }
    }
}

/// One tracing event at `$level` about an export task, with the task's database and run as fields
/// (`db.source`, `db.project`, `db.instance`, `db.name`, `run.date`, `run.id`) before the rest.
macro_rules! task_event {
    ($level:ident, $task:expr, $($rest:tt)+) => {
        tracing::$level!(
            db.source = %$task.db.source,
            db.project = %$task.db.project,
            db.instance = %$task.db.instance,
            db.name = %$task.db.database,
            run.date = %$task.run_date,
            run.id = %$task.run_id,
            $($rest)+
        )
    };
}

/// Logs an attempt that found the export still waiting (its operation running, its instance busy)
/// and checked again by a follow-up: one INFO event, never counted as a failure.
pub fn log_waiting(task: &ExportTask, check: u32, error: &ExportError, next_check_at: chrono::DateTime<Utc>) {
    task_event!(
        info,
        task,
        task.check = check,
        wait.class = error.class(),
        wait.next_check_at = %next_check_at,
        "export of {} for {} is waiting ({error}); checked again at {next_check_at}",
        task.db,
        task.run_date,
    );
}

/// Logs one failed attempt as one structured ERROR event.
pub fn log_failed_attempt(task: &ExportTask, attempt: u32, error: &ExportError) {
    task_event!(
        error,
        task,
        task.attempt = attempt,
        error.class = error.class(),
        error.transient = error.is_transient(),
        error.message = %error,
        "export of {} for {} failed: {error}",
        task.db,
        task.run_date,
    );
}
