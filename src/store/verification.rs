//! The verification records: the verdict of the last restore drill on one backup, stored under
//! `verifications/<project>/<instance>/<database>/<run date>.json` ([`Key::Verification`]) and
//! overwritten by each drill. Written by the drills (`verify/`), read by the listing of backups,
//! status and prune (which keeps the newest verified backup); the catalog lists them.
//!
//! [`Key::Verification`]: crate::store::layout::Key::Verification

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::Engine;

/// Version of the record format.
pub const RECORD_VERSION: u32 = 1;

/// Outcome of a verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerificationResult {
    /// The backup restored, its row counts match and every check passed.
    Ok,
    /// Something failed: see `errors`.
    Failed,
    /// The backup cannot be restored here at all (a SQL Server BAK file): see `reason`. Neither a
    /// proof nor a failure; never reported.
    Unverifiable,
}

/// One table's rows: what the manifest recorded and what the restore holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TableCount {
    /// `schema.table` (PostgreSQL) or `table` (MySQL).
    pub table: String,
    /// Rows the manifest recorded, if it has the table.
    pub expected: Option<u64>,
    /// Rows in the restored database, if it has the table.
    pub restored: Option<u64>,
    /// Whether the two agree.
    pub matches: bool,
}

/// One check query's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckOutcome {
    /// The check's name.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// The value it returned, or its error.
    pub detail: String,
}

/// The verdict on one backup, stored under `verifications/…/<run date>.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VerificationRecord {
    /// Record format version.
    pub version: u32,
    /// Project.
    pub project: String,
    /// Instance.
    pub instance: String,
    /// Database.
    pub database: String,
    /// Engine.
    pub engine: Engine,
    /// The backup's run date.
    pub run_date: String,
    /// The dump verified.
    pub key: String,
    /// `ok`, `failed` or `unverifiable`.
    pub result: VerificationResult,
    /// Why the backup cannot be verified (when `result` is `unverifiable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the verification started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// Seconds it took.
    pub duration_secs: f64,
    /// The verification server (without password).
    pub server: String,
    /// The scratch database it restored into (dropped afterwards).
    pub scratch_database: String,
    /// Stored bytes read and checked against the manifest's size and SHA-256.
    pub bytes_checked: u64,
    /// Whether row counts were compared (false: no counts, or not exact; then they are information only).
    pub row_counts_compared: bool,
    /// Per-table row counts.
    pub tables: Vec<TableCount>,
    /// Check queries.
    pub checks: Vec<CheckOutcome>,
    /// What failed (empty when `result` is `ok`).
    pub errors: Vec<String>,
    /// Problems that do not fail the backup (e.g. the scratch database could not be dropped).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Seconds the restore itself took (read, decrypt, decompress, restore tool): the measured
    /// restore time of the database. Absent when the restore did not finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_secs: Option<f64>,
    /// Stored bytes restored per second of `restore_secs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_sec: Option<f64>,
    /// Rows restored per second of `restore_secs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_per_sec: Option<f64>,
    /// The `pg_restore -j` jobs when the drill restored in parallel (a PostgreSQL custom-format
    /// backup); absent when the dump was streamed (ADR 0016).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_jobs: Option<usize>,
    /// The off-site copy (`[[copies]]` name) the drill restored from, whose store holds this
    /// record; absent for the primary store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<String>,
}

/// The part of a record a listing shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VerificationSummary {
    /// `ok`, `failed` or `unverifiable`.
    pub result: VerificationResult,
    /// When it was verified.
    pub verified_at: DateTime<Utc>,
    /// The first error, when it failed; why not, when it is unverifiable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Seconds the restore itself took, when it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_secs: Option<f64>,
    /// Stored bytes restored per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_sec: Option<f64>,
}

impl VerificationRecord {
    /// What a listing shows of it.
    #[must_use]
    pub fn summary(&self) -> VerificationSummary {
        VerificationSummary {
            result: self.result,
            verified_at: self.finished_at,
            error: self.errors.first().or(self.reason.as_ref()).cloned(),
            restore_secs: self.restore_secs,
            bytes_per_sec: self.bytes_per_sec,
        }
    }
}
