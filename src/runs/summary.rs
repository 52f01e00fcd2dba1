//! What became of a run: [`RunReport`] (what it expected, exported, failed and excluded) and
//! [`run_report`], which compares a run's ledger with the manifests and the failures reported for
//! its day.
//!
//! Cost of one report: one listing of the day's failure markers, then one manifest read per
//! expected database, unless the `latest/` copies (when the caller has them) already answer.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{DatabaseRef, Engine};
use crate::runs::ledger::{
    DbKey, PlanAction, PlannedTask, READS_IN_FLIGHT, RunError, RunLedger, date_of, db_ref, failures_of,
};
use crate::store::manifest::Manifest;
use crate::store::{BackupStore, StoreError};

/// One database of a run and what became of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunDatabase {
    /// Project.
    pub project: String,
    /// Instance.
    pub instance: String,
    /// Database.
    pub database: String,
    /// Engine.
    pub engine: Engine,
    /// `exported`, `failed`, `not_backed_up` (still running, or never) or `excluded`.
    pub outcome: String,
    /// The exclusion pattern, when excluded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded_by: Option<String>,
    /// The reported failure, when failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What one run expected, exported, failed and excluded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunReport {
    /// Run id.
    pub run_id: String,
    /// Run date.
    pub run_date: String,
    /// When discovery started.
    pub started_at: DateTime<Utc>,
    /// Databases discovered.
    pub discovered: usize,
    /// Databases excluded by a pattern.
    pub excluded: usize,
    /// Databases the run was to back up.
    pub expected: usize,
    /// Of those, backed up for the run's day.
    pub exported: usize,
    /// Of those, reported failed (and not backed up).
    pub failed: usize,
    /// Of those, neither backed up nor reported (still running, or lost).
    pub not_backed_up: usize,
    /// False when part of some source could not be listed: the expected set may miss databases.
    pub complete: bool,
    /// Problems the run met (sources that could not be listed, tasks not enqueued).
    pub errors: Vec<RunError>,
    /// Every database of the run (`GET /runs/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub databases: Option<Vec<RunDatabase>>,
}

/// What became of one database of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Exported,
    Failed,
    NotBackedUp,
    Excluded,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Exported => "exported",
            Self::Failed => "failed",
            Self::NotBackedUp => "not_backed_up",
            Self::Excluded => "excluded",
        }
    }
}

/// The report of one run: what it expected, exported, failed and excluded. `latest` (the
/// `latest/` copies) answers "backed up" for free when it is as new as the run; other databases
/// cost one manifest read each.
pub async fn run_report(
    store: &BackupStore,
    ledger: &RunLedger,
    latest: Option<&BTreeMap<DbKey, Manifest>>,
    with_databases: bool,
) -> Result<RunReport, StoreError> {
    let day = date_of(&ledger.run_date);
    let failures = match day {
        Some(d) => failures_of(store, d).await?,
        None => HashMap::new(),
    };
    // Decided without a read when possible; the rest need one manifest read each.
    type Planned = (PlannedTask, Option<Outcome>, Option<String>, Option<DatabaseRef>);
    let planned: Vec<Planned> = ledger
        .databases
        .iter()
        .map(|t| {
            let k = (t.project.clone(), t.instance.clone(), t.database.clone());
            let failure = failures.get(&k).cloned();
            let known = if t.action != PlanAction::Export {
                Some(Outcome::Excluded)
            } else if latest.and_then(|l| l.get(&k)).is_some_and(|m| m.run_date >= ledger.run_date) {
                Some(Outcome::Exported)
            } else if latest.is_some() {
                // `latest/` is older than the run: no backup for its day.
                Some(if failure.is_some() { Outcome::Failed } else { Outcome::NotBackedUp })
            } else {
                None
            };
            let db = db_ref(&t.source, &t.project, &t.instance, &t.database, t.engine);
            (t.clone(), known, failure, db)
        })
        .collect();
    let outcomes: Vec<_> = futures::stream::iter(planned)
        .map(|(t, known, failure, db)| async move {
            let what = match (known, db, day) {
                (Some(what), _, _) => what,
                (None, Some(db), Some(d)) if store.manifest(&db, d).await?.is_some() => Outcome::Exported,
                (None, _, _) if failure.is_some() => Outcome::Failed,
                (None, _, _) => Outcome::NotBackedUp,
            };
            let error = if what == Outcome::Failed { failure } else { None };
            Ok::<_, StoreError>((t, what, error))
        })
        .buffered(READS_IN_FLIGHT)
        .collect()
        .await;
    let mut report = RunReport {
        run_id: ledger.run_id.clone(),
        run_date: ledger.run_date.clone(),
        started_at: ledger.started_at,
        discovered: ledger.databases.len(),
        excluded: 0,
        expected: 0,
        exported: 0,
        failed: 0,
        not_backed_up: 0,
        complete: ledger.complete,
        errors: ledger.errors.clone(),
        databases: None,
    };
    let mut rows = Vec::new();
    for outcome in outcomes {
        let (t, what, error) = outcome?;
        match what {
            Outcome::Excluded => report.excluded += 1,
            Outcome::Exported => report.exported += 1,
            Outcome::Failed => report.failed += 1,
            Outcome::NotBackedUp => report.not_backed_up += 1,
        }
        if with_databases {
            rows.push(RunDatabase {
                project: t.project.clone(),
                instance: t.instance.clone(),
                database: t.database.clone(),
                engine: t.engine,
                outcome: what.as_str().to_owned(),
                excluded_by: t.excluded_by.clone(),
                error,
            });
        }
    }
    report.expected = report.discovered - report.excluded;
    if with_databases {
        rows.sort_by(|a, b| (&a.project, &a.instance, &a.database).cmp(&(&b.project, &b.instance, &b.database)));
        report.databases = Some(rows);
    }
    Ok(report)
}
