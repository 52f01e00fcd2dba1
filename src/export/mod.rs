//! `Exporter`: export one `ExportTask` into the `BackupStore`, and [`run_export`], the idempotent
//! state machine every delivery (HTTP, local queue, CLI) goes through.
//!
//! Contract of an `Exporter`: it writes the dump under the layout's key (streamed; visible only when
//! complete) and returns the manifest to commit. It never writes the manifest itself, so a dump
//! without a manifest is at most an orphan that the next attempt replaces. Errors say whether a
//! retry can help ([`ExportError::is_transient`]). An exporter that learns a database's engine from
//! its server (Cloud SQL: the instance's `databaseVersion`) says it through [`Exporter::engine`],
//! a read that starts nothing, and refuses a task whose engine contradicts it.
//!
//! `run_export`: manifest present → `AlreadyExported`; another live lease → `LeaseHeld`;
//! otherwise take the lease, renew it while the exporter runs, commit the manifest (conditional
//! create), update `latest/`, give the lease back.

pub mod cloudsql;
pub mod dump;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;

use crate::discovery::servers::{MysqlServer, PostgresServer};
use crate::discovery::{Discovery, DiscoveryError};
use crate::model::{DatabaseName, DatabaseRef, Engine, ExportTask, InstanceName, ProjectId, SourceName};
use crate::notify::Notifier;
use crate::settings::{Settings, SourceKind};
use crate::store::bucket::PutOutcome;
use crate::store::manifest::Manifest;
use crate::store::{BackupStore, LeaseOutcome, StoreError};

/// Why an export failed, classified where it happened.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The database no longer exists.
    #[error("database {0} does not exist (dropped or renamed since it was discovered)")]
    Gone(String),
    /// The dump tool failed.
    #[error("{tool} failed ({status}): {stderr}")]
    DumpFailed {
        /// The tool (`pg_dump`).
        tool: String,
        /// Its exit status, or what went wrong with its output.
        status: String,
        /// The end of its stderr.
        stderr: String,
        /// Whether a retry may help.
        transient: bool,
    },
    /// The dump tool cannot dump this server, or is missing.
    #[error("{0}")]
    Tool(String),
    /// Could not reach the database server.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The lease expired while the export ran and another export took it over.
    #[error("the export's lease was lost to another export")]
    LeaseLost,
    /// The service is shutting down.
    #[error("the export was abandoned because the service is shutting down")]
    Abandoned,
    /// The Cloud SQL instance is busy with another operation (409 `operationInProgress`).
    #[error("{detail}")]
    Busy {
        /// What is busy.
        detail: String,
        /// When to try again.
        retry_after: Duration,
    },
    /// The Cloud SQL export operation is still running after the wait; the retry attaches to it.
    #[error("Cloud SQL export operation {operation} is still running after {waited_secs} s; the retry attaches to it")]
    Running {
        /// The operation's name.
        operation: String,
        /// How long this attempt waited.
        waited_secs: u64,
        /// When to try again.
        retry_after: Duration,
    },
    /// A Cloud SQL export operation ended with an error.
    #[error("{message}")]
    OperationFailed {
        /// The operation's name.
        operation: String,
        /// What the error means for the export.
        kind: OperationFailure,
        /// What failed, why, and what to fix.
        message: String,
    },
    /// A Google API kept failing (429, 5xx, timeouts) after its retries.
    #[error("{0}")]
    Upstream(String),
    /// A permission is missing; the message names the account, the role and the resource.
    #[error("{0}")]
    Denied(String),
    /// The request or the configuration cannot work (a Cloud SQL source without a gs:// store, a
    /// rejected export request, an object in the way that is not a complete export).
    #[error("{0}")]
    Invalid(String),
}

/// What a failed Cloud SQL export operation means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperationFailure {
    /// The instance's service account may not write the bucket: permanent until someone grants it.
    Denied,
    /// The database no longer exists.
    Gone,
    /// Anything else: retried.
    Failed,
}

impl ExportError {
    /// True when a retry may help.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Gone(_) | Self::Tool(_) | Self::Denied(_) | Self::Invalid(_) => false,
            Self::Busy { .. } | Self::Running { .. } | Self::Upstream(_) => true,
            Self::OperationFailed { kind, .. } => *kind == OperationFailure::Failed,
            Self::DumpFailed { transient, .. } => *transient,
            Self::Discovery(e) => e.is_transient(),
            Self::Store(e) => e.is_transient(),
            Self::LeaseLost | Self::Abandoned => true,
        }
    }

    /// A short class name for logs, reports and metrics.
    #[must_use]
    pub fn class(&self) -> &'static str {
        match self {
            Self::Gone(_) => "gone",
            Self::DumpFailed { .. } => "dump_failed",
            Self::Tool(_) => "tool",
            Self::Discovery(_) => "source_unavailable",
            Self::Store(_) => "store",
            Self::LeaseLost => "lease_lost",
            Self::Abandoned => "abandoned",
            Self::Busy { .. } => "instance_busy",
            Self::Running { .. } => "still_running",
            Self::Upstream(_) => "upstream",
            Self::OperationFailed { kind: OperationFailure::Denied, .. } => "permission_denied",
            Self::OperationFailed { kind: OperationFailure::Gone, .. } => "gone",
            Self::OperationFailed { kind: OperationFailure::Failed, .. } => "operation_failed",
            Self::Denied(_) => "permission_denied",
            Self::Invalid(_) => "invalid",
        }
    }

    /// The Cloud SQL operation the failure is about, when there is one.
    #[must_use]
    pub fn operation(&self) -> Option<&str> {
        match self {
            Self::Running { operation, .. } | Self::OperationFailed { operation, .. } => Some(operation),
            _ => None,
        }
    }

    /// True when the database (or its instance) no longer exists.
    #[must_use]
    pub fn is_gone(&self) -> bool {
        matches!(self, Self::Gone(_) | Self::OperationFailed { kind: OperationFailure::Gone, .. })
    }

    /// When a retry should come, if the failure says (busy instance, running operation).
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Busy { retry_after, .. } | Self::Running { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

/// Exports one database; see the module contract.
#[async_trait]
pub trait Exporter: Send + Sync {
    /// Writes the dump of `task` into `store` and returns the manifest to commit.
    async fn export(&self, task: &ExportTask, store: &BackupStore) -> Result<Manifest, ExportError>;

    /// The engine of `db` as its server says it, with the words that say where it comes from
    /// (`Cloud SQL instance p:i is MYSQL_8_0`), for an exporter that learns it there; `None` when
    /// the source's configured engine is the answer. A read: nothing is started or written.
    async fn engine(&self, _db: &DatabaseRef) -> Result<Option<(Engine, String)>, ExportError> {
        Ok(None)
    }
}

/// What [`run_export`] did.
#[derive(Clone, Debug)]
pub enum ExportOutcome {
    /// This call made the backup.
    Exported(Box<Manifest>),
    /// The backup already existed; nothing was done.
    AlreadyExported(Box<Manifest>),
    /// Another export of the same task holds the lease.
    LeaseHeld {
        /// When to try again.
        retry_after: Duration,
    },
}

/// Exports `task` idempotently (see the module docs).
pub async fn run_export(
    exporter: &dyn Exporter,
    store: &BackupStore,
    task: &ExportTask,
    lease_ttl: Duration,
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
        let export = exporter.export(task, store);
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
            Ok(PutOutcome::Created) => Ok(ExportOutcome::Exported(Box::new(manifest))),
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
    lease: Option<crate::store::Lease>,
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

/// Logs one failed attempt as one structured ERROR event.
pub fn log_failed_attempt(task: &ExportTask, attempt: u32, error: &ExportError) {
    tracing::error!(
        db.source = %task.db.source,
        db.project = %task.db.project,
        db.instance = %task.db.instance,
        db.name = %task.db.database,
        run.date = %task.run_date,
        run.id = %task.run_id,
        task.attempt = attempt,
        error.class = error.class(),
        error.transient = error.is_transient(),
        error.message = %error,
        "export of {} for {} failed: {error}",
        task.db,
        task.run_date,
    );
}

/// A configured source: how to discover its databases and how to export them.
#[derive(Clone)]
pub struct Source {
    /// The source's name.
    pub name: SourceName,
    /// The `project` of its databases.
    pub project: ProjectId,
    /// The `instance` of its databases.
    pub instance: InstanceName,
    /// The engine of its databases.
    pub engine: Engine,
    /// Finds the source's databases.
    pub discovery: Arc<dyn Discovery>,
    /// Exports them.
    pub exporter: Arc<dyn Exporter>,
    /// A `gcp` source: its databases live in any project and instance it discovers, and their
    /// engine is the instance's (`project`, `instance` and `engine` above are placeholders).
    pub any_instance: bool,
}

impl Source {
    /// The sources the settings configure.
    pub fn from_settings(settings: &Settings) -> Vec<Self> {
        let apis = Arc::new(crate::gcp::clients::GcpApis::new(&settings.gcp));
        let gcp = settings.gcp_sources.iter().map(|source| Self {
            name: source.name.clone(),
            project: ProjectId::parse(source.name.as_str()).expect("a source name is a valid project id"),
            instance: InstanceName::parse("any").expect("valid"),
            engine: Engine::Postgres,
            discovery: Arc::new(crate::discovery::gcp::GcpDiscovery::new(
                source.clone(),
                settings.gcp.clone(),
                apis.clone(),
            )),
            exporter: Arc::new(cloudsql::CloudSqlExporter::new(
                settings.export.clone(),
                settings.gcp.clone(),
                apis.clone(),
            )),
            any_instance: true,
        });
        let self_hosted: Vec<Self> = settings
            .effective_sources()
            .into_iter()
            .map(|source| {
                let (engine, discovery): (Engine, Arc<dyn Discovery>) = match source.kind {
                    SourceKind::Postgres => (Engine::Postgres, Arc::new(PostgresServer::new(source.clone()))),
                    SourceKind::Mysql => (Engine::Mysql, Arc::new(MysqlServer::new(source.clone()))),
                };
                Self {
                    name: source.name.clone(),
                    project: ProjectId::parse(source.name.as_str()).expect("a source name is a valid project id"),
                    instance: source.instance_name(),
                    engine,
                    exporter: Arc::new(dump::DumpExporter::new(source, discovery.clone(), settings.export.clone())),
                    discovery,
                    any_instance: false,
                }
            })
            .collect();
        self_hosted.into_iter().chain(gcp).collect()
    }

    /// The reference to `project/instance/database` of this source: for a `gcp` source the given
    /// project and instance with the `presumed` engine (default PostgreSQL, until
    /// [`Source::engine_of`] says the instance's); for a self-hosted one its own.
    #[must_use]
    pub fn database_in(
        &self,
        project: &ProjectId,
        instance: &InstanceName,
        database: DatabaseName,
        presumed: Option<Engine>,
    ) -> DatabaseRef {
        if !self.any_instance {
            return self.database(database);
        }
        DatabaseRef {
            source: self.name.clone(),
            project: project.clone(),
            instance: instance.clone(),
            database,
            engine: presumed.unwrap_or(self.engine),
        }
    }

    /// The engine of `db`: for a `gcp` source the instance's (`instances.get` through the
    /// exporter), for a self-hosted one its own. An engine `stated` by the caller that contradicts
    /// it is refused. Nothing is started or written either way.
    pub async fn engine_of(&self, db: &DatabaseRef, stated: Option<Engine>) -> Result<Engine, EngineError> {
        let (actual, said) = if self.any_instance {
            match self.exporter.engine(db).await? {
                Some(found) => found,
                None => return Ok(stated.unwrap_or(self.engine)),
            }
        } else {
            (self.engine, format!("source `{}` is a {} server", self.name, self.engine.as_str()))
        };
        match stated {
            Some(stated) if stated != actual => Err(EngineError::Contradicts { stated, actual, said }),
            _ => Ok(actual),
        }
    }

    /// The reference to one of its databases.
    #[must_use]
    pub fn database(&self, database: DatabaseName) -> DatabaseRef {
        DatabaseRef {
            source: self.name.clone(),
            project: self.project.clone(),
            instance: self.instance.clone(),
            database,
            engine: self.engine,
        }
    }
}

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
    pub retention_lock: Option<(Arc<crate::retention::RetentionPolicy>, bool)>,
}

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

/// The engine of a database asked for by hand could not be settled.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The caller named an engine that is not the database's.
    #[error(
        "`engine` is {}, but {said}: leave `engine` out (it defaults to the instance's) or name {}",
        stated.as_str(),
        actual.as_str()
    )]
    Contradicts {
        /// What the caller said.
        stated: Engine,
        /// What the database is.
        actual: Engine,
        /// Who says so (`Cloud SQL instance p:i is MYSQL_8_0`).
        said: String,
    },
    /// Reading the instance failed (gone, denied, unreachable).
    #[error(transparent)]
    Export(#[from] ExportError),
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
    /// the database's previous one by the data-loss tripwire ([`crate::tripwire::check`]).
    #[tracing::instrument(
        name = "export",
        skip_all,
        fields(db.path = %task.db, db.system.name = crate::metrics::db_system_name(task.db.engine), run.id = %task.run_id, run.date = %task.run_date)
    )]
    pub async fn export_into(&self, store: &BackupStore, task: &ExportTask) -> Result<ExportOutcome, ExportError> {
        let started = std::time::Instant::now();
        // The previous backup, read before the commit overwrites `latest/` (the tripwire compares).
        let previous = match (store.tripwire(), store.layout().label()) {
            (Some(_), None) => store.latest(&task.db).await.ok().flatten(),
            _ => None,
        };
        let outcome = match self.sources.iter().find(|s| s.name == task.db.source) {
            Some(source) => run_export(source.exporter.as_ref(), store, task, self.lease_ttl).await,
            None => Err(ExportError::Tool(format!("no source named `{}` is configured", task.db.source))),
        };
        let (result, error_type) = match &outcome {
            Ok(ExportOutcome::Exported(m)) => {
                self.metrics.backup_made(m);
                self.retain(store, task, m).await;
                crate::tripwire::check(store, &self.notifiers, &task.db, previous.as_ref(), m).await;
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
            Err(e) => ("failed", Some(e.class())),
        };
        self.metrics.export_attempt(task.db.engine, result, error_type, started.elapsed());
        outcome
    }

    /// With `retention.lock`, retains the new backup's dump and manifest until its class's
    /// `keep_days` have passed. Set only once the manifest is committed, so an orphan dump of a
    /// failed attempt stays replaceable. A failure here leaves a valid backup without retention:
    /// logged, not fatal.
    async fn retain(&self, store: &BackupStore, task: &ExportTask, manifest: &Manifest) {
        let Some((policy, locked)) = &self.retention_lock else { return };
        let Some(class) = crate::retention::RetentionClass::from_segment(&manifest.class) else { return };
        let keep = policy.rule(class, &manifest.project).keep_days;
        // Expired once more than keep_days have passed (RetentionPolicy::is_expired): retained
        // through the end of that last day.
        let until = task.run_date.date().and_time(chrono::NaiveTime::MIN).and_utc()
            + chrono::Duration::days(i64::from(keep) + 1);
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

    /// Reports a final failure of `task`, once.
    pub async fn report(&self, task: &ExportTask, attempt: u32, error: &ExportError) -> bool {
        crate::notify::report_once(&self.store, &self.notifiers, task, attempt, error).await
    }
}
