//! [`ExportService`]: everything an export needs (store, sources, lease length, notifiers,
//! metrics, object retention), the checks before an export asked for by hand ([`ScopeError`],
//! [`UnknownSource`]), and what follows an attempt: metrics, object retention, the data-loss
//! tripwire and the success and failure reports.

use std::sync::Arc;
use std::time::Duration;

use crate::export::run::run_export;
use crate::export::source::Source;
use crate::export::{ExportError, ExportOutcome, tripwire};
use crate::model::{DatabaseRef, ExportTask, InstanceName, ProjectId, SourceName};
use crate::notify::Notifier;
use crate::store::BackupStore;
use crate::store::manifest::Manifest;

/// Everything an export needs: the store, the sources, the report channels. One per process,
/// shared by the HTTP handlers, the local queue and the CLI.
pub struct ExportService {
    /// Where backups go.
    pub store: BackupStore,
    /// The configured sources.
    pub sources: Vec<Source>,
    /// How long an export's lease lasts without renewal.
    pub lease_ttl: Duration,
    /// Where failures are reported (the log is always one of them).
    pub notifiers: Vec<Arc<dyn Notifier>>,
    /// Export, queue and discovery metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// A transient failure delivered by Cloud Tasks is reported once its retries reach this.
    pub report_after_retries: u32,
    /// Object retention of new backups: the policy that dates it, and whether it is locked.
    pub retention_lock: Option<(Arc<crate::settings::RetentionPolicy>, bool)>,
    /// What follows a dated backup that is in the primary store (made now or found already
    /// made): the off-site copies, run here or enqueued as a task; set by the wiring (`app.rs`).
    pub after_backup: Option<AfterBackup>,
}

/// See [`ExportService::after_backup`]: called with the task and the backup's primary manifest.
pub type AfterBackup = Arc<dyn Fn(ExportTask, Manifest) -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

/// An export asked for by hand that lies outside what the service is configured to back up.
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    /// An exclusion pattern, the source's `databases` globs or (gcp) its folders and projects leave
    /// the database out; `field` is the request field that points outside.
    #[error("{why}; to export it anyway, ask with `\"ignore_scope\": true` (CLI: `--ignore-scope`)")]
    Outside {
        /// `database` or `project`.
        field: &'static str,
        /// The rule, in words.
        why: String,
    },
    /// The source could not tell (its API or server failed).
    #[error(transparent)]
    Unknown(#[from] crate::discovery::DiscoveryError),
}

impl ExportService {
    /// Whether `db` lies inside what the service backs up: not excluded by a pattern, inside its
    /// source's `databases` globs, and (gcp) in one of its projects or under one of its folders.
    /// Exports asked for by hand check it; the tasks of `/schedule` are in scope by construction.
    pub async fn check_scope(
        &self,
        source: &Source,
        db: &DatabaseRef,
        exclusions: &crate::discovery::Exclusions,
    ) -> Result<(), ScopeError> {
        if let Some(pattern) = exclusions.excluded_by(db) {
            let why = format!("`{db}` is excluded by the pattern `{pattern}` of `[exclude] patterns`");
            return Err(ScopeError::Outside { field: "database", why });
        }
        match source.discovery.out_of_scope(db).await? {
            Some(why) => {
                Err(ScopeError::Outside { field: if source.any_instance { "project" } else { "database" }, why })
            }
            None => Ok(()),
        }
    }
}

/// A request names no configured source.
#[derive(Debug, thiserror::Error)]
pub enum UnknownSource {
    /// `source` was given and is not configured.
    #[error("no source named `{0}` is configured")]
    Name(String),
    /// `source` was left out and several sources are configured.
    #[error("several sources are configured: say which one with `source`")]
    Ambiguous,
    /// The source does not have this project/instance.
    #[error("source `{source_name}` backs up `{project}/{instance}`, not `{asked}`")]
    Mismatch {
        /// The source.
        source_name: String,
        /// Its project.
        project: String,
        /// Its instance.
        instance: String,
        /// What was asked.
        asked: String,
    },
}

impl ExportService {
    /// The source that `source` (or the only one) names, checked against `project/instance`.
    pub fn source_for(
        &self,
        source: Option<&SourceName>,
        project: &ProjectId,
        instance: &InstanceName,
    ) -> Result<&Source, UnknownSource> {
        let found = match source {
            Some(name) => {
                self.sources.iter().find(|s| &s.name == name).ok_or_else(|| UnknownSource::Name(name.to_string()))?
            }
            None => match self.sources.as_slice() {
                [only] => only,
                _ => {
                    let exact = self.sources.iter().find(|s| &s.project == project && &s.instance == instance);
                    let mut any = self.sources.iter().filter(|s| s.any_instance);
                    let only_any = match (any.next(), any.next()) {
                        (Some(s), None) => Some(s),
                        _ => None,
                    };
                    exact.or(only_any).ok_or(UnknownSource::Ambiguous)?
                }
            },
        };
        if !found.any_instance && (&found.project != project || &found.instance != instance) {
            return Err(UnknownSource::Mismatch {
                source_name: found.name.to_string(),
                project: found.project.to_string(),
                instance: found.instance.to_string(),
                asked: format!("{project}/{instance}"),
            });
        }
        Ok(found)
    }

    /// Runs one export attempt of `task` (in an `export` span; counted and timed in the metrics).
    pub async fn export(&self, task: &ExportTask) -> Result<ExportOutcome, ExportError> {
        self.export_into(&self.store, task).await
    }

    /// [`ExportService::export`] into `store`: this service's store, or a labelled view of it
    /// ([`BackupStore::with_label`]) for a named backup. A dated backup made here is compared with
    /// the database's previous one by the data-loss tripwire ([`tripwire::check`]).
    pub async fn export_into(&self, store: &BackupStore, task: &ExportTask) -> Result<ExportOutcome, ExportError> {
        self.export_within(store, task, None).await
    }

    /// [`ExportService::export_into`], waiting at most `wait` (when given) for an operation that
    /// runs elsewhere; `Some(Duration::ZERO)`: start or attach, and answer at once.
    #[tracing::instrument(
        name = "export",
        skip_all,
        fields(db.path = %task.db, db.system.name = crate::metrics::db_system_name(task.db.engine), run.id = %task.run_id, run.date = %task.run_date)
    )]
    pub async fn export_within(
        &self,
        store: &BackupStore,
        task: &ExportTask,
        wait: Option<Duration>,
    ) -> Result<ExportOutcome, ExportError> {
        let started = std::time::Instant::now();
        // The previous backup, read before the commit overwrites `latest/` (the tripwire compares).
        let previous = match (store.tripwire(), store.layout().label()) {
            (Some(_), None) => store.latest(&task.db).await.ok().flatten(),
            _ => None,
        };
        let outcome = match self.sources.iter().find(|s| s.name == task.db.source) {
            Some(source) => run_export(source.exporter.as_ref(), store, task, self.lease_ttl, wait).await,
            None => Err(ExportError::Tool(format!("no source named `{}` is configured", task.db.source))),
        };
        let (result, error_type) = match &outcome {
            Ok(ExportOutcome::Exported(m)) => {
                self.metrics.backup_made(m);
                self.retain(store, task, m).await;
                if let Some(report) = tripwire::check(store, &task.db, previous.as_ref(), m).await {
                    for n in &self.notifiers {
                        if let Err(e) = n.notify_tripwire(&report).await {
                            tracing::warn!(error = %e, db.path = %task.db, "{e}");
                        }
                    }
                }
                let event = crate::notify::SuccessEvent::new(m);
                for n in &self.notifiers {
                    if let Err(e) = n.notify_success(&event).await {
                        tracing::warn!(error = %e, db.path = %task.db, "{e}");
                    }
                }
                ("exported", None)
            }
            Ok(ExportOutcome::AlreadyExported(_)) => ("already_exported", None),
            Ok(ExportOutcome::LeaseHeld { .. }) => ("lease_held", None),
            // An operation still running, an instance busy: not a failure (ADR 0021).
            Err(e) if e.is_waiting() => ("waiting", Some(e.class())),
            Err(e) => ("failed", Some(e.class())),
        };
        self.metrics.export_attempt(task.db.engine, result, error_type, started.elapsed());
        if let (Some(after), None, Ok(ExportOutcome::Exported(m) | ExportOutcome::AlreadyExported(m))) =
            (&self.after_backup, store.layout().label(), &outcome)
        {
            after(task.clone(), m.as_ref().clone()).await;
        }
        outcome
    }

    /// With `retention.lock`, retains the new backup's dump and manifest until its class's
    /// `keep_days` have passed. Set only once the manifest is committed, so an orphan dump of a
    /// failed attempt stays replaceable. A failure here leaves a valid backup without retention:
    /// logged, not fatal.
    async fn retain(&self, store: &BackupStore, task: &ExportTask, manifest: &Manifest) {
        let Some((policy, locked)) = &self.retention_lock else { return };
        let Some(class) = crate::model::RetentionClass::from_segment(&manifest.class) else { return };
        let until = policy.retain_until(class, &manifest.project, task.run_date.date());
        let manifest_key = store.layout().manifest(&task.db, task.run_date).path();
        for key in [manifest.key.as_str(), manifest_key.as_str()] {
            match store.bucket().retain_until(key, until, *locked).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => tracing::warn!(error = %e, key, "could not set the backup's retention; it stays unprotected"),
            }
        }
        tracing::info!(db.path = %task.db, until = %until, locked = *locked, "backup retained");
    }

    /// How long the export `waiting` waits for is expected to take: its own database's previous
    /// backup's duration (still running), or that of the database whose export is in the way (busy
    /// instance); `None` when there is no such backup (the policy's default applies).
    pub async fn expected_duration(&self, task: &ExportTask, waiting: &ExportError) -> Option<Duration> {
        let db = match waiting {
            ExportError::Busy { blocking: Some(b), .. } => {
                let name = crate::model::DatabaseName::parse(b.database.clone()?).ok()?;
                DatabaseRef { database: name, ..task.db.clone() }
            }
            ExportError::Running { .. } => task.db.clone(),
            _ => return None,
        };
        let previous = self.store.latest(&db).await.ok().flatten()?;
        crate::export::follow_up::took(previous.started_at, previous.finished_at)
    }

    /// Reports a final failure of `task`, once.
    pub async fn report(&self, task: &ExportTask, attempt: u32, error: &ExportError) -> bool {
        crate::export::report::report_once(&self.store, &self.notifiers, task, attempt, error).await
    }
}
