//! [`CopyService`]: the configured off-site copies (`[[copies]]`) and what a committed backup goes
//! through: each copy in turn ([`crate::copy::target::CopyTarget::copy`]), its outcome logged, its
//! failure reported once ([`crate::copy::report::report_once`]). A copy never changes what the
//! export answered: the backup is made once its primary manifest commits.

use std::sync::Arc;

use tracing::Instrument as _;

use crate::copy::report::report_once;
use crate::copy::target::{CopyError, CopyOutcome, CopyTarget};
use crate::model::ExportTask;
use crate::notify::Notifier;
use crate::settings::{RetentionPolicy, Settings, SettingsError};
use crate::store::manifest::Manifest;
use crate::store::{BackupStore, StoreError, open_bucket};

/// Why the copies could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A copy's settings cannot work.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// No `[[copies]]` entry has this name (`--from`, `from`).
    #[error("no copy is named `{name}`; the configured copies: {configured}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The configured names, comma-separated (`none` without copies).
        configured: String,
    },
    /// A copy's store could not be opened.
    #[error("cannot open the copy store `{name}`: {source}")]
    Store {
        /// The copy.
        name: String,
        /// Why.
        source: StoreError,
    },
}

/// Opens the store of the copy named `name` under the layout of `primary` (for `--from NAME`:
/// list, restore and verify read the copy's catalog instead of the primary's).
pub async fn open_copy_store(settings: &Settings, primary: &BackupStore, name: &str) -> Result<BackupStore, OpenError> {
    let Some((i, copy)) = settings.copies.iter().enumerate().find(|(_, c)| c.name == name) else {
        let names: Vec<&str> = settings.copies.iter().map(|c| c.name.as_str()).collect();
        let configured = if names.is_empty() { "none".to_owned() } else { names.join(", ") };
        return Err(OpenError::Unknown { name: name.to_owned(), configured });
    };
    let bucket = open_bucket(&copy.url, &copy.options, &settings.gcp, &format!("copies[{i}].url"))
        .await
        .map_err(|source| OpenError::Store { name: copy.name.clone(), source })?;
    Ok(primary.with_bucket(bucket))
}

/// The configured copies, with the primary store they copy from and the report channels.
pub struct CopyService {
    primary: BackupStore,
    targets: Vec<CopyTarget>,
    notifiers: Vec<Arc<dyn Notifier>>,
}

impl CopyService {
    /// Opens every `[[copies]]` store of `settings` (under the layout of `primary`).
    pub async fn open(
        settings: &Settings,
        primary: BackupStore,
        notifiers: Vec<Arc<dyn Notifier>>,
    ) -> Result<Self, OpenError> {
        let policy = RetentionPolicy::from_settings(settings)?;
        let mut targets = Vec::new();
        for (i, copy) in settings.copies.iter().enumerate() {
            let store = open_copy_store(settings, &primary, &copy.name).await?;
            if copy.lock != crate::settings::RetentionLock::Off {
                crate::store::ensure_retention(store.bucket().as_ref(), &format!("copies[{i}].lock")).await?;
            }
            let target = CopyTarget::new(copy.clone(), store, policy.for_copy(&copy.name))
                .map_err(|e| SettingsError { key: format!("copies[{i}].age_recipients"), reason: e })?;
            targets.push(target);
        }
        Ok(Self { primary, targets, notifiers })
    }

    /// Each copy's name and store (the prune runs the retention policy on each).
    #[must_use]
    pub fn stores(&self) -> Vec<(String, BackupStore)> {
        self.targets.iter().map(|t| (t.name.clone(), t.store.clone())).collect()
    }

    /// True when no copy is configured.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Copies the backup of `task` (its primary manifest `manifest`) to every copy; a failure is
    /// logged and reported once per copy, database and day. Answers each copy's outcome.
    pub async fn copy_backup(
        &self,
        task: &ExportTask,
        manifest: &Manifest,
    ) -> Vec<(String, Result<CopyOutcome, CopyError>)> {
        let mut outcomes = Vec::with_capacity(self.targets.len());
        for target in &self.targets {
            let span =
                tracing::info_span!("copy", copy.name = %target.name, db.path = %task.db, run.date = %task.run_date);
            let outcome = target.copy(&self.primary, manifest).instrument(span).await;
            match &outcome {
                Ok(CopyOutcome::Copied { key, bytes }) => {
                    tracing::info!(copy.name = %target.name, db.path = %task.db, key = %key, bytes, "backup copied");
                }
                Ok(CopyOutcome::AlreadyCopied | CopyOutcome::NotCopied) => {}
                Err(e) => {
                    tracing::error!(
                        copy.name = %target.name,
                        db.path = %task.db,
                        run.date = %task.run_date,
                        error.class = e.class(),
                        error.transient = e.is_transient(),
                        error.message = %e,
                        "copy `{}` of the backup of {} for {} failed: {e}",
                        target.name,
                        task.db,
                        task.run_date,
                    );
                    report_once(&self.primary, &self.notifiers, &target.name, task, e).await;
                }
            }
            outcomes.push((target.name.clone(), outcome));
        }
        outcomes
    }
}
