//! The `Exporter` seam: export one `ExportTask` into the `BackupStore`. This file holds the trait,
//! its errors ([`ExportError`], [`OperationFailure`]) and what an export did ([`ExportOutcome`]);
//! the children hold the rest: `run` (the idempotent state machine every delivery goes through),
//! `service` (the checks before an export and what follows one), `source` (the configured
//! sources), `dump` and `cloudsql` (the two exporters), `tripwire` (the comparison after a backup),
//! `follow_up` (when a Cloud SQL export still running, or waiting for its instance, is checked again).
//!
//! Contract of an `Exporter`: it writes the dump under the layout's key (streamed; visible only when
//! complete) and returns the manifest to commit. It never writes the manifest itself, so a dump
//! without a manifest is at most an orphan that the next attempt replaces. Errors say whether a
//! retry can help ([`ExportError::is_transient`]). An exporter that learns a database's engine from
//! its server (Cloud SQL: the instance's `databaseVersion`) says it through [`Exporter::engine`],
//! a read that starts nothing, and refuses a task whose engine contradicts it.

pub mod cloudsql;
pub mod dump;
pub mod follow_up;
pub mod job;
pub mod report;
pub mod run;
pub mod service;
pub mod source;
pub mod tripwire;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::discovery::DiscoveryError;
use crate::model::{DatabaseRef, Engine, ExportTask};
use crate::store::manifest::Manifest;
use crate::store::{BackupStore, StoreError};

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
        /// The operation in the way, when the instance's operations name it.
        blocking: Option<Blocking>,
    },
    /// The Cloud SQL export operation (or the Cloud Run job execution of a long dump) is still
    /// running after the wait; the retry attaches to it.
    #[error("export operation {operation} is still running after {waited_secs} s; the retry attaches to it")]
    Running {
        /// The operation's name.
        operation: String,
        /// How long this attempt waited.
        waited_secs: u64,
        /// When to try again.
        retry_after: Duration,
        /// Whether this attempt started it (else it attached to it).
        started: bool,
        /// When the operation was inserted, when Cloud SQL says.
        since: Option<DateTime<Utc>>,
    },
    /// A day's chain of follow-up checks reached `export.follow_up_max_checks` and the export is
    /// still not done.
    #[error("the export is still not done after {checks} follow-up checks (export.follow_up_max_checks): {reason}")]
    FollowUpsExhausted {
        /// Checks made.
        checks: u32,
        /// What the last check found (the operation still running, the instance still busy).
        reason: String,
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
            Self::Gone(_) | Self::Tool(_) | Self::Denied(_) | Self::Invalid(_) | Self::FollowUpsExhausted { .. } => {
                false
            }
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
            Self::FollowUpsExhausted { .. } => "follow_ups_exhausted",
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

    /// True when the export is waiting, not failing: its operation still runs, or its instance is
    /// busy with another operation.
    #[must_use]
    pub fn is_waiting(&self) -> bool {
        matches!(self, Self::Busy { .. } | Self::Running { .. })
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

    /// [`Exporter::export`], waiting at most `wait` for an operation that runs elsewhere (Cloud
    /// SQL) before answering [`ExportError::Running`]; `Duration::ZERO` starts or attaches and
    /// answers at once. An exporter that does the work itself ignores `wait`.
    async fn export_within(
        &self,
        task: &ExportTask,
        store: &BackupStore,
        _wait: Duration,
    ) -> Result<Manifest, ExportError> {
        self.export(task, store).await
    }

    /// The engine of `db` as its server says it, with the words that say where it comes from
    /// (`Cloud SQL instance p:i is MYSQL_8_0`), for an exporter that learns it there; `None` when
    /// the source's configured engine is the answer. A read: nothing is started or written.
    async fn engine(&self, _db: &DatabaseRef) -> Result<Option<(Engine, String)>, ExportError> {
        Ok(None)
    }
}

/// The Cloud SQL operation a busy instance runs (`operations.list`): what an export waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocking {
    /// The operation's name.
    pub operation: String,
    /// Its type (`EXPORT`, `BACKUP_VOLUME`, `UPDATE`, …).
    pub kind: String,
    /// When it was inserted, when Cloud SQL says.
    pub since: Option<DateTime<Utc>>,
    /// For an `EXPORT`: the database it exports.
    pub database: Option<String>,
}

/// What [`run::run_export`] did.
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
