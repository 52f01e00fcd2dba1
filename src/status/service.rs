//! [`StatusService`]: the status computed at most once per `cache_secs` (each computation also
//! updates the `databases` and `last_success` metrics), and the run reports of `/runs`, cached
//! (for good once their day is two days past).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::metrics::{LastBackup, Metrics};
use crate::model::{RunDate, RunId};
use crate::runs::ledger::{RunLedger, date_of, find_ledger, ledgers_of};
use crate::runs::summary::{RunReport, run_report};
use crate::settings::StatusSettings;
use crate::status::compute::compute;
use crate::status::{DbState, StatusReport};
use crate::store::{BackupStore, StoreError};

/// Status with a cache, and run reports.
pub struct StatusService {
    store: BackupStore,
    settings: StatusSettings,
    metrics: Arc<Metrics>,
    cached: tokio::sync::Mutex<Option<(Instant, Arc<StatusReport>)>>,
    runs: Mutex<HashMap<String, (Instant, bool, RunReport)>>,
}

/// Most run reports kept in memory.
const RUN_CACHE_ENTRIES: usize = 1024;

impl StatusService {
    /// A service over `store`.
    #[must_use]
    pub fn new(store: BackupStore, settings: StatusSettings, metrics: Arc<Metrics>) -> Self {
        Self { store, settings, metrics, cached: tokio::sync::Mutex::new(None), runs: Mutex::new(HashMap::new()) }
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
    /// computation). Each computation also updates the `databases` and `last_success` metrics.
    pub async fn status(&self) -> Result<Arc<StatusReport>, StoreError> {
        let mut cached = self.cached.lock().await;
        if let Some((at, report)) = cached.as_ref()
            && at.elapsed() < self.ttl()
        {
            return Ok(report.clone());
        }
        let report = Arc::new(compute(&self.store, &self.settings, Utc::now()).await?);
        let counts: Vec<(&str, usize)> = DbState::ALL
            .into_iter()
            .map(|state| (state.as_str(), report.counts.get(state.as_str()).copied().unwrap_or(0)))
            .collect();
        let backups: Vec<LastBackup<'_>> = report
            .databases
            .iter()
            .filter_map(|row| {
                Some(LastBackup {
                    project: &row.project,
                    instance: &row.instance,
                    database: &row.database,
                    engine: row.engine?,
                    finished_at: row.last_backup_at?,
                })
            })
            .collect();
        self.metrics.observe_status(&counts, &backups);
        *cached = Some((Instant::now(), report.clone()));
        Ok(report)
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
