//! [`StatusService`]: the status and every database's history computed at most once per
//! `cache_secs` (each computation also updates the per-state, per-database and per-copy metrics),
//! and the run reports of `/runs`, cached (for good once their day is two days past).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::metrics::{LastBackup, Metrics};
use crate::model::{DatabasePath, RunDate, RunId};
use crate::runs::ledger::{RunLedger, date_of, find_ledger, ledgers_of};
use crate::runs::summary::{RunReport, run_report};
use crate::settings::StatusSettings;
use crate::status::compute::compute;
use crate::status::copies::StatusCopy;
use crate::status::detail::render_database;
use crate::status::page::Histories;
use crate::status::{DbState, StatusReport};
use crate::store::history::{all_histories, rebuild};
use crate::store::{BackupStore, StoreError};

/// Status with a cache, and run reports.
pub struct StatusService {
    store: BackupStore,
    settings: StatusSettings,
    copies: Vec<StatusCopy>,
    metrics: Arc<Metrics>,
    cached: tokio::sync::Mutex<Option<(Instant, Overview)>>,
    runs: Mutex<HashMap<String, (Instant, bool, RunReport)>>,
}

/// The status and the histories it was computed with.
pub type Overview = (Arc<StatusReport>, Arc<Histories>);

/// Most run reports kept in memory.
const RUN_CACHE_ENTRIES: usize = 1024;

impl StatusService {
    /// A service over `store`.
    #[must_use]
    pub fn new(store: BackupStore, settings: StatusSettings, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            settings,
            copies: Vec::new(),
            metrics,
            cached: tokio::sync::Mutex::new(None),
            runs: Mutex::new(HashMap::new()),
        }
    }

    /// The same service, also reporting how each of `copies` (the off-site copies) holds each
    /// database (`crate::status::copies`).
    #[must_use]
    pub fn with_copies(mut self, copies: Vec<StatusCopy>) -> Self {
        self.copies = copies;
        self
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> &StatusSettings {
        &self.settings
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(self.settings.cache_secs)
    }

    /// The status, computed at most once per `cache_secs` (concurrent callers wait for one
    /// computation). Each computation also updates the metrics.
    pub async fn status(&self) -> Result<Arc<StatusReport>, StoreError> {
        Ok(self.overview().await?.0)
    }

    /// The status and every database's history (one listing of `history/` and one read per
    /// database more than the status), computed together at most once per `cache_secs`.
    pub async fn overview(&self) -> Result<Overview, StoreError> {
        let mut cached = self.cached.lock().await;
        if let Some((at, overview)) = cached.as_ref()
            && at.elapsed() < self.ttl()
        {
            return Ok(overview.clone());
        }
        let (report, histories) = tokio::try_join!(
            compute(&self.store, &self.settings, &self.copies, Utc::now()),
            all_histories(&self.store)
        )?;
        let histories: Histories =
            histories.into_values().map(|h| ((h.project.clone(), h.instance.clone(), h.database.clone()), h)).collect();
        let report = Arc::new(report);
        self.observe(&report, &histories);
        let overview = (report, Arc::new(histories));
        *cached = Some((Instant::now(), overview.clone()));
        Ok(overview)
    }

    fn observe(&self, report: &StatusReport, histories: &Histories) {
        let counts: Vec<(&str, usize)> = DbState::ALL
            .into_iter()
            .map(|state| (state.as_str(), report.counts.get(state.as_str()).copied().unwrap_or(0)))
            .collect();
        let backups: Vec<LastBackup<'_>> = report
            .databases
            .iter()
            .filter_map(|row| {
                let history = histories.get(&(row.project.clone(), row.instance.clone(), row.database.clone()));
                let newest = history.and_then(|h| h.nights.values().rev().find_map(|n| n.backup.as_ref()));
                Some(LastBackup {
                    project: &row.project,
                    instance: &row.instance,
                    database: &row.database,
                    engine: row.engine?,
                    finished_at: row.last_backup_at?,
                    bytes: row.bytes,
                    duration_secs: newest.map(crate::store::history::NightBackup::duration_secs),
                    verified_at: row.last_verification.as_ref().filter(|v| v.result == "ok").map(|v| v.verified_at),
                })
            })
            .collect();
        self.metrics.observe_status(&counts, &backups);
        let copies: Vec<(&str, &str, usize)> = report
            .copies
            .iter()
            .flat_map(|c| c.counts.iter().map(|(state, n)| (c.name.as_str(), state.as_str(), *n)))
            .collect();
        self.metrics.observe_copies(&copies);
    }

    /// The page of `db` (`crate::status::detail`), `None` when nothing is known of it. Its reads:
    /// the cached overview, the catalog's listing of its backups (`crate::restore::list_backups`,
    /// the newest [`crate::restore::MAX_PAGE_SIZE`] days), the holds, and its history (rebuilt
    /// from its manifests when it has none yet).
    pub async fn database_page(&self, db: &DatabasePath) -> Result<Option<String>, StoreError> {
        let (report, histories) = self.overview().await?;
        let key = (db.project.to_string(), db.instance.to_string(), db.database.to_string());
        let row = report.databases.iter().find(|r| (&r.project, &r.instance, &r.database) == (&key.0, &key.1, &key.2));
        let backups = match crate::restore::list_backups(&self.store, db, None, crate::restore::MAX_PAGE_SIZE).await {
            Ok(page) => page,
            Err(crate::restore::RestoreError::Store(e)) => return Err(e),
            Err(e) => return Err(StoreError::Corrupt { key: crate::restore::path_text(db), reason: e.to_string() }),
        };
        let history = match histories.get(&key) {
            Some(h) => Some(h.clone()),
            None if !backups.backups.is_empty() => Some(rebuild(&self.store, db, Utc::now().date_naive()).await?),
            None => None,
        };
        if row.is_none() && backups.backups.is_empty() && history.is_none() {
            return Ok(None);
        }
        let holds: Vec<_> = crate::store::holds::holds(&self.store)
            .await?
            .into_iter()
            .filter(|h| (&h.project, &h.instance, &h.database) == (&key.0, &key.1, &key.2))
            .collect();
        Ok(Some(render_database(db, row, &backups, history.as_ref(), &holds, Utc::now())))
    }

    /// Forgets the cached status (the next call computes).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn report_of(&self, ledger: &RunLedger, with_databases: bool) -> Result<RunReport, StoreError> {
        let key = format!("{}/{}/{with_databases}", ledger.run_date, ledger.run_id);
        if let Some((at, settled, r)) = self.runs.lock().expect("lock").get(&key)
            && (*settled || at.elapsed() < self.ttl())
        {
            return Ok(r.clone());
        }
        let report = run_report(&self.store, ledger, None, with_databases).await?;
        // A run two days past has had its retries: its report no longer changes.
        let settled =
            date_of(&ledger.run_date).is_some_and(|d| d.date() + chrono::Duration::days(2) <= Utc::now().date_naive());
        let mut runs = self.runs.lock().expect("lock");
        if runs.len() >= RUN_CACHE_ENTRIES {
            runs.clear();
        }
        runs.insert(key, (Instant::now(), settled, report.clone()));
        Ok(report)
    }

    /// The runs of the last `days` days (today included), newest first, without database lists.
    pub async fn runs(&self, days: u32) -> Result<Vec<RunReport>, StoreError> {
        let today = Utc::now().date_naive();
        let mut out = Vec::new();
        for back in 0..days.max(1) {
            let day = RunDate::from_date(today - chrono::Duration::days(i64::from(back)));
            let mut ledgers = ledgers_of(&self.store, day).await?;
            ledgers.reverse();
            for ledger in ledgers {
                out.push(self.report_of(&ledger, false).await?);
            }
        }
        Ok(out)
    }

    /// One run with its databases; `None` when no ledger has this id.
    pub async fn run(&self, run_id: &RunId, day: Option<RunDate>) -> Result<Option<RunReport>, StoreError> {
        match find_ledger(&self.store, run_id, day, Utc::now().date_naive()).await? {
            Some(ledger) => Ok(Some(self.report_of(&ledger, true).await?)),
            None => Ok(None),
        }
    }
}
