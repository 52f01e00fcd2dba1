//! A run as the store keeps it: the run ledger (the expected set one `/schedule` run wrote), the
//! plan and the problems of a run, and the reads of runs back from the store: the ledgers of a day,
//! the newest ledger, one run by id, and the failures reported for a day.
//!
//! The reads cost: [`ledgers_of`] one listing of `runs/<day>/` then one read per ledger;
//! [`newest_ledger`] that per day, from today back at most [`LEDGER_LOOKBACK_DAYS`] days;
//! [`find_ledger`] one read per day (no listing); [`failures_of`] one listing of
//! `reports/<day>/` then one read per failure marker.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{
    DatabaseName, DatabasePath, DatabaseRef, Engine, InstanceName, ProjectId, RunDate, RunId, SourceName,
};
use crate::runs::scope::RunScope;
use crate::store::layout::{Key, Prefix, any_db};
use crate::store::{BackupStore, StoreError};

/// How many days back the newest run ledger is looked for.
pub const LEDGER_LOOKBACK_DAYS: u32 = 8;

/// How many days back `GET /runs/{id}` looks for a run when no date is given.
pub const RUN_SEARCH_DAYS: u32 = 31;

/// Reads of the store in flight at once.
pub const READS_IN_FLIGHT: usize = 16;

/// A problem met during a run, scoped to what it concerns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunError {
    /// What it concerns (`source:NAME`, `enqueue:PROJECT/INSTANCE/DATABASE`, `ledger`).
    pub scope: String,
    /// What went wrong.
    pub message: String,
}

/// One database of the plan and what the run does with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlannedTask {
    /// Source that found it.
    pub source: String,
    /// Project.
    pub project: String,
    /// Instance.
    pub instance: String,
    /// Database.
    pub database: String,
    /// Engine.
    pub engine: crate::model::Engine,
    /// `export`, or `excluded`.
    #[schema(value_type = String)]
    pub action: PlanAction,
    /// The exclusion pattern that matched, when excluded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded_by: Option<String>,
}

/// What a run does with a database it found (`export` or `excluded` in the JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanAction {
    /// Its export task is enqueued.
    Export,
    /// An exclusion pattern matched it.
    Excluded,
}

impl PlanAction {
    /// The action's name (`export`, `excluded`), as in the JSON.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Export => "export",
            Self::Excluded => "excluded",
        }
    }
}

/// Something discovery passed over on purpose, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SkippedItem {
    /// What was skipped (`PROJECT/INSTANCE`, or `project:PROJECT`).
    pub scope: String,
    /// Why.
    pub reason: String,
}

/// The answer of `POST /schedule`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleSummary {
    /// This run's id.
    pub run_id: String,
    /// The day its backups belong to.
    pub run_date: String,
    /// Whether this was a dry run (nothing written or enqueued).
    pub dry_run: bool,
    /// Databases found.
    pub discovered: usize,
    /// Databases left out by an exclusion pattern.
    pub excluded: usize,
    /// Tasks added to the queue.
    pub enqueued: usize,
    /// Tasks that were already queued or running.
    pub already_queued: usize,
    /// Sources that could not be listed, tasks that could not be enqueued.
    pub errors: Vec<RunError>,
    /// Tasks that could not be enqueued (after the queue's retries); the run should be retried.
    #[serde(default)]
    pub not_enqueued: usize,
    /// Folders walked (`gcp` sources).
    #[serde(default)]
    pub folders: usize,
    /// Projects looked at (`gcp` sources).
    #[serde(default)]
    pub projects: usize,
    /// Instances whose databases were listed (`gcp` sources; a self-hosted server counts as one).
    #[serde(default)]
    pub instances: usize,
    /// Instances and projects passed over on purpose, with the reason.
    #[serde(default)]
    pub skipped: Vec<SkippedItem>,
    /// False when some source, folder, project or region could not be seen, so databases may be
    /// missing from this run (see `errors`).
    #[serde(default = "yes")]
    pub complete: bool,
    /// The scope the request's body narrowed the run to (absent: the configured sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<RunScope>,
    /// The plan (dry run only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<PlannedTask>>,
    /// Requests discovery sent to Google APIs, by source (for the metrics; not part of the answer).
    #[serde(skip)]
    pub api_calls: Vec<(String, crate::discovery::ApiCalls)>,
}

/// The run ledger: the expected set that status and alerts compare with the manifests.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunLedger {
    /// Run id.
    pub run_id: String,
    /// Run date.
    pub run_date: String,
    /// When discovery started.
    pub started_at: DateTime<Utc>,
    /// Every database found, with what the run did with it.
    pub databases: Vec<PlannedTask>,
    /// Problems met.
    pub errors: Vec<RunError>,
    /// Folders walked.
    #[serde(default)]
    pub folders: usize,
    /// Projects looked at.
    #[serde(default)]
    pub projects: usize,
    /// Instances whose databases were listed.
    #[serde(default)]
    pub instances: usize,
    /// What was passed over on purpose, and why.
    #[serde(default)]
    pub skipped: Vec<SkippedItem>,
    /// False when part of some source could not be seen: the expected set may miss databases.
    #[serde(default = "yes")]
    pub complete: bool,
    /// The scope a `POST /schedule` body narrowed the run to (absent: the configured sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<RunScope>,
}

fn yes() -> bool {
    true
}

// ---------------------------------------------------------------------------------------------
// Reading runs back from the store

/// A database as `(project, instance, database)`, the key of the maps read here.
pub type DbKey = (String, String, String);

/// The [`DbKey`] of a database path.
#[must_use]
pub fn key_of(p: &DatabasePath) -> DbKey {
    (p.project.to_string(), p.instance.to_string(), p.database.to_string())
}

/// A run date written `YYYY-MM-DD` (as ledgers and manifests hold it).
#[must_use]
pub fn date_of(s: &str) -> Option<RunDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().map(RunDate::from_date)
}

/// The database these names denote; `None` when one of them is not a valid name.
#[must_use]
pub fn db_ref(source: &str, project: &str, instance: &str, database: &str, engine: Engine) -> Option<DatabaseRef> {
    Some(DatabaseRef {
        source: SourceName::parse(source).ok()?,
        project: ProjectId::parse(project).ok()?,
        instance: InstanceName::parse(instance).ok()?,
        database: DatabaseName::parse(database).ok()?,
        engine,
    })
}

/// The run ledgers of one day, oldest first.
pub async fn ledgers_of(store: &BackupStore, day: RunDate) -> Result<Vec<RunLedger>, StoreError> {
    let probe = Key::RunLedger { date: day, run_id: RunId::manual() };
    let mut keys: Vec<Key> = store
        .bucket()
        .list(Prefix::of(&probe, 2).as_str())
        .await?
        .into_iter()
        .filter_map(|o| Key::parse(&o.key).filter(|k| matches!(k, Key::RunLedger { .. })))
        .collect();
    keys.sort_by_key(Key::path);
    let mut out = Vec::new();
    for key in keys {
        match store.read::<RunLedger>(&key).await {
            Ok(Some(l)) => out.push(l),
            Ok(None) => {}
            Err(e @ StoreError::Corrupt { .. }) => tracing::warn!(error = %e, "status skips a corrupt ledger: {e}"),
            Err(e) => return Err(e),
        }
    }
    out.sort_by_key(|l| l.started_at);
    Ok(out)
}

/// The newest run ledger, looked for from `today` back [`LEDGER_LOOKBACK_DAYS`] days.
pub async fn newest_ledger(store: &BackupStore, today: NaiveDate) -> Result<Option<RunLedger>, StoreError> {
    for back in 0..LEDGER_LOOKBACK_DAYS {
        let day = RunDate::from_date(today - chrono::Duration::days(i64::from(back)));
        if let Some(ledger) = ledgers_of(store, day).await?.pop() {
            return Ok(Some(ledger));
        }
    }
    Ok(None)
}

/// The ledgers that together say what is expected: the newest one and, when it ran a narrowed scope
/// (a scheduler job's body), the older ones of the lookback window back to and including the
/// newest run of the configured scope, newest first. So a "development weekly" job does not make
/// the production databases of last night's run look gone. Costs [`newest_ledger`]'s reads, and,
/// only after a scoped run, the listing and reads of the rest of the window.
pub async fn expected_ledgers(store: &BackupStore, today: NaiveDate) -> Result<Vec<RunLedger>, StoreError> {
    let mut out = Vec::new();
    for back in 0..LEDGER_LOOKBACK_DAYS {
        let day = RunDate::from_date(today - chrono::Duration::days(i64::from(back)));
        for ledger in ledgers_of(store, day).await?.into_iter().rev() {
            let whole = ledger.scope.is_none();
            out.push(ledger);
            if whole {
                return Ok(out);
            }
        }
    }
    Ok(out)
}

/// The run `run_id`: of `day` when given, else looked for from `today` back [`RUN_SEARCH_DAYS`] days
/// (one read per day, no listing).
pub async fn find_ledger(
    store: &BackupStore,
    run_id: &RunId,
    day: Option<RunDate>,
    today: NaiveDate,
) -> Result<Option<RunLedger>, StoreError> {
    let days: Vec<RunDate> = match day {
        Some(d) => vec![d],
        None => {
            (0..RUN_SEARCH_DAYS).map(|b| RunDate::from_date(today - chrono::Duration::days(i64::from(b)))).collect()
        }
    };
    let found: Vec<_> = futures::stream::iter(days)
        .map(|date| async move { store.read::<RunLedger>(&Key::RunLedger { date, run_id: run_id.clone() }).await })
        .buffered(READS_IN_FLIGHT)
        .collect()
        .await;
    for ledger in found {
        if let Some(l) = ledger? {
            return Ok(Some(l));
        }
    }
    Ok(None)
}

/// The failures reported for `day`: database → message.
pub async fn failures_of(store: &BackupStore, day: RunDate) -> Result<HashMap<DbKey, String>, StoreError> {
    #[derive(Deserialize)]
    struct Marker {
        #[serde(default)]
        message: String,
    }
    let listed = store.bucket().list(Prefix::of(&Key::Report { db: any_db(), date: day }, 2).as_str()).await?;
    let keys: Vec<Key> =
        listed.into_iter().filter_map(|o| Key::parse(&o.key).filter(|k| matches!(k, Key::Report { .. }))).collect();
    let read: Vec<_> = futures::stream::iter(keys)
        .map(|key| async move {
            let marker = store.read::<Marker>(&key).await;
            (key, marker)
        })
        .buffer_unordered(READS_IN_FLIGHT)
        .collect()
        .await;
    let mut out = HashMap::new();
    for (key, marker) in read {
        if let Key::Report { db, .. } = key {
            let message = match marker {
                Ok(Some(m)) if !m.message.is_empty() => m.message,
                Ok(_) | Err(StoreError::Corrupt { .. }) => "failure reported".to_owned(),
                Err(e) => return Err(e),
            };
            out.insert(key_of(&db), message);
        }
    }
    Ok(out)
}
