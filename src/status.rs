//! Freshness and coverage: the state of every database, computed from the store.
//!
//! What is read, per computation (never the whole history of backups):
//! - `latest/`: one listing, then one read per database (the copy of its newest manifest);
//! - the newest run ledger: one listing of `runs/<day>/` per day, from today back at most
//!   [`LEDGER_LOOKBACK_DAYS`](crate::runs::ledger::LEDGER_LOOKBACK_DAYS) days, then one read;
//! - `reports/<run date>/`: one listing (the failures reported for the newest run's day);
//! - `verifications/`: one listing (one record per verified backup), then one read per database;
//! - the previous day's manifest of each database (one read, for the size trend);
//! - `holds/`: one listing, then one read per hold (holds are rare: each is a suspected data loss).
//!
//! States, first match wins ([`classify`]):
//! `excluded` (the newest run excluded it on purpose) · `gone` (has a backup, the newest run did not
//! discover it, and its source was listed without error) · `failing` (expected by the newest run,
//! a failure was reported for that day, no backup for it) · `missing` (expected by the newest run,
//! never backed up) · `suspect` (the data-loss tripwire holds one of its backups: a table lost
//! most of its rows or vanished, or the dump shrank, until an operator releases the hold) ·
//! `stale` (newest backup older than `slo_hours`) · `unverifiable` (fresh, but no
//! drill can restore it: a SQL Server BAK file; neutral, never counted as proven) · `unverified` (no
//! successful restore drill within `verify_within_days`; 0 turns both off) · `ok`.
//!
//! **Proven** is what the badge and the totals count: a database in state `ok` with a successful
//! drill on record (within `verify_within_days` when drills are required). `backed_up` counts the
//! databases with a backup that are still in scope (not `gone` or `excluded`), so "4 backed up,
//! 0 proven" is never "fine": [`StatusReport::all_proven`] is false, the page's badge says so, and
//! `data-backup status` exits 3 ([`exit_status`]).
//!
//! [`StatusService`] caches a computed status for `cache_secs` and per-run reports (for good once
//! their day is two days past). The run reports and the one summary notification per run are
//! `crate::runs`'s.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::metrics::Metrics;
use crate::model::{DatabasePath, DatabaseRef, Engine, RunDate, RunId};
use crate::runs::ledger::{
    DbKey, PlanAction, PlannedTask, READS_IN_FLIGHT, RunLedger, date_of, db_ref, failures_of, find_ledger, key_of,
    ledgers_of, newest_ledger, placeholder_db, prefix,
};
use crate::runs::summary::{RunReport, run_report};
use crate::settings::StatusSettings;
use crate::store::layout::Key;
use crate::store::manifest::Manifest;
use crate::store::{BackupStore, StoreError};

/// The state of one database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DbState {
    /// A failure was reported for the newest run's day and there is no backup for it.
    Failing,
    /// Expected by the newest run, never backed up.
    Missing,
    /// The data-loss tripwire holds one of its backups (a possible data loss) until released.
    Suspect,
    /// The newest backup is older than the SLO.
    Stale,
    /// Fresh, but no successful restore drill within `verify_within_days`.
    Unverified,
    /// Fresh, but no drill can restore it here (a SQL Server BAK file): not proven, not an alarm.
    Unverifiable,
    /// Fresh (and verified, when drills are required).
    Ok,
    /// Backed up before, no longer discovered.
    Gone,
    /// Discovered, and excluded by a pattern.
    Excluded,
}

impl DbState {
    /// Every state, most severe first.
    pub const ALL: [Self; 9] = [
        Self::Failing,
        Self::Missing,
        Self::Suspect,
        Self::Stale,
        Self::Unverified,
        Self::Unverifiable,
        Self::Ok,
        Self::Gone,
        Self::Excluded,
    ];

    /// The state's name (`ok`, `stale`, …).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failing => "failing",
            Self::Missing => "missing",
            Self::Suspect => "suspect",
            Self::Stale => "stale",
            Self::Unverified => "unverified",
            Self::Unverifiable => "unverifiable",
            Self::Ok => "ok",
            Self::Gone => "gone",
            Self::Excluded => "excluded",
        }
    }

    /// Parses a state's name.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// Whether this state needs someone (the CLI exits non-zero): stale, failing, missing or suspect.
    #[must_use]
    pub fn is_alarm(self) -> bool {
        matches!(self, Self::Failing | Self::Missing | Self::Suspect | Self::Stale)
    }

    /// Whether a database in this state counts towards the totals (not `gone`, not `excluded`).
    fn in_scope(self) -> bool {
        !matches!(self, Self::Gone | Self::Excluded)
    }
}

/// The last restore drill of a database.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VerificationSeen {
    /// `ok` or `failed`.
    pub result: String,
    /// When it finished.
    pub verified_at: DateTime<Utc>,
    /// The run date of the backup it restored.
    pub run_date: String,
    /// Seconds its restore took (the database's measured restore time), when it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_secs: Option<f64>,
    /// Stored bytes restored per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_sec: Option<f64>,
}

/// A drill's restore time in words: `restore 12.3 s at 45.6 MiB/s`; `None` without a figure.
#[must_use]
pub fn restore_time_words(restore_secs: Option<f64>, bytes_per_sec: Option<f64>) -> Option<String> {
    let secs = restore_secs?;
    let rate = bytes_per_sec
        .filter(|b| b.is_finite() && *b >= 0.0)
        .map(|b| {
            #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "a non-negative rate")]
            let b = b as u64;
            format!(" at {}/s", crate::restore::human_bytes(b))
        })
        .unwrap_or_default();
    Some(format!("restore {secs:.1} s{rate}"))
}

/// Verification records as status reads them.
#[derive(Clone, Debug, Default)]
pub struct Verifications {
    /// The newest drill of each database.
    pub last: Option<VerificationSeen>,
    /// When the newest successful drill finished.
    pub last_ok_at: Option<DateTime<Utc>>,
}

/// One database's row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DatabaseStatus {
    /// Project (self-hosted: the source's name).
    pub project: String,
    /// Instance.
    pub instance: String,
    /// Database.
    pub database: String,
    /// Source that found it, when known.
    pub source: Option<String>,
    /// Engine, when known.
    pub engine: Option<Engine>,
    /// Its state.
    pub state: DbState,
    /// Why, in words.
    pub reason: String,
    /// When its newest backup finished.
    pub last_backup_at: Option<DateTime<Utc>>,
    /// Age of that backup in hours (one decimal).
    pub age_hours: Option<f64>,
    /// Run date of that backup.
    pub last_backup_date: Option<String>,
    /// Stored size of that backup.
    pub bytes: Option<u64>,
    /// Stored size of the backup of the day before, when there is one.
    pub previous_bytes: Option<u64>,
    /// Size change against the day before, in percent (one decimal).
    pub bytes_change_percent: Option<f64>,
    /// Its last restore drill.
    pub last_verification: Option<VerificationSeen>,
}

/// The whole status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatusReport {
    /// When it was computed.
    pub generated_at: DateTime<Utc>,
    /// Hours after which a backup is stale.
    pub slo_hours: u32,
    /// Days within which a successful restore drill is required (0: not required).
    pub verify_within_days: u32,
    /// False when any database is stale, failing, missing or suspect.
    pub healthy: bool,
    /// Databases with a backup, `gone` and `excluded` ones left out.
    pub backed_up: usize,
    /// Of those, the ones proven restorable: state `ok` with a successful restore drill on record
    /// (within `verify_within_days` when drills are required).
    pub proven: usize,
    /// True when nothing is in an alarm state and every database backed up is proven (`unverified`
    /// and `unverifiable` ones are not).
    pub all_proven: bool,
    /// Databases per state (every state, zeros included), over all databases.
    pub counts: BTreeMap<String, usize>,
    /// The newest run (without its database list).
    pub latest_run: Option<RunReport>,
    /// One row per database, most severe first (filtered when the request asked).
    pub databases: Vec<DatabaseStatus>,
}

/// A filter over the rows (`?project=&instance=&state=`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatusFilter {
    /// Only this project.
    pub project: Option<String>,
    /// Only this instance.
    pub instance: Option<String>,
    /// Only this state.
    pub state: Option<DbState>,
}

impl StatusFilter {
    fn keeps(&self, row: &DatabaseStatus) -> bool {
        let empty = |v: &Option<String>| v.as_deref().is_none_or(str::is_empty);
        (empty(&self.project) || self.project.as_deref() == Some(row.project.as_str()))
            && (empty(&self.instance) || self.instance.as_deref() == Some(row.instance.as_str()))
            && self.state.is_none_or(|s| s == row.state)
    }
}

impl StatusReport {
    /// The same report with only the rows `filter` keeps (counts stay over all databases).
    #[must_use]
    pub fn filtered(&self, filter: &StatusFilter) -> Self {
        let mut out = self.clone();
        out.databases.retain(|r| filter.keeps(r));
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Classification (pure)

/// How the newest run saw a database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expectation {
    /// No run ledger was found.
    NoRun,
    /// The run was to back it up.
    Expected,
    /// The run discovered it and excluded it by this pattern.
    Excluded(Option<String>),
    /// The run did not discover it; `source_failed` when its source could not be (fully) listed.
    NotListed {
        /// Its source met an error in that run.
        source_failed: bool,
    },
}

/// What is known of one database, the input of [`classify`].
#[derive(Clone, Debug)]
pub struct Facts<'a> {
    /// Copy of its newest manifest.
    pub latest: Option<&'a Manifest>,
    /// How the newest run saw it.
    pub expectation: Expectation,
    /// The newest run's date.
    pub run_date: Option<NaiveDate>,
    /// The failure reported for the newest run's day, if any.
    pub failure: Option<&'a str>,
    /// When its newest successful restore drill finished.
    pub verified_ok_at: Option<DateTime<Utc>>,
    /// Why the data-loss tripwire holds one of its backups, if it does.
    pub held: Option<&'a str>,
}

fn age_words(hours: f64) -> String {
    if hours < 48.0 { format!("{hours:.1} h") } else { format!("{:.1} days", hours / 24.0) }
}

fn hours_since(t: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "ages in seconds are far below 2^52")]
    let secs = (now - t).num_seconds() as f64;
    (secs / 360.0).round() / 10.0
}

/// The state of a database and why (see the module docs for the rules).
#[must_use]
pub fn classify(facts: &Facts<'_>, now: DateTime<Utc>, settings: &StatusSettings) -> (DbState, String) {
    let backed_up_for_run = match (facts.latest, facts.run_date) {
        (Some(m), Some(day)) => NaiveDate::parse_from_str(&m.run_date, "%Y-%m-%d").is_ok_and(|d| d >= day),
        _ => false,
    };
    match &facts.expectation {
        Expectation::Excluded(pattern) => {
            let by = pattern.as_deref().map(|p| format!(" by `{p}`")).unwrap_or_default();
            return (DbState::Excluded, format!("discovered by the newest run and excluded{by}"));
        }
        Expectation::NotListed { source_failed: false } if facts.latest.is_some() => {
            return (DbState::Gone, "backed up before, not discovered by the newest run".into());
        }
        Expectation::Expected if !backed_up_for_run => {
            if let Some(error) = facts.failure {
                return (DbState::Failing, format!("the newest run's export failed: {error}"));
            }
            if facts.latest.is_none() {
                return (DbState::Missing, "expected by the newest run, never backed up".into());
            }
        }
        _ => {}
    }
    let Some(latest) = facts.latest else {
        return (DbState::Missing, "never backed up".into());
    };
    if let Some(why) = facts.held {
        return (DbState::Suspect, why.to_owned());
    }
    let age = hours_since(latest.finished_at, now);
    if age > f64::from(settings.slo_hours) {
        return (DbState::Stale, format!("newest backup is {} old (SLO {} h)", age_words(age), settings.slo_hours));
    }
    if settings.verify_within_days > 0
        && let Some(why) = crate::restore::unrestorable(latest)
    {
        return (DbState::Unverifiable, format!("fresh backup, not provable here: {why}"));
    }
    if settings.verify_within_days > 0 {
        let within = chrono::Duration::days(i64::from(settings.verify_within_days));
        if facts.verified_ok_at.is_none_or(|t| now - t > within) {
            let days = settings.verify_within_days;
            let why = match facts.verified_ok_at {
                Some(_) => format!("last successful restore drill is older than {days} days"),
                None => "no successful restore drill on record".to_owned(),
            };
            return (DbState::Unverified, why);
        }
    }
    (DbState::Ok, format!("fresh backup ({} old)", age_words(age)))
}

/// Every `latest/` manifest, by database.
async fn latest_manifests(store: &BackupStore) -> Result<BTreeMap<DbKey, Manifest>, StoreError> {
    let listed = store.bucket().list(&prefix(&Key::Latest { db: placeholder_db() }, 1)).await?;
    let keys: Vec<DatabasePath> = listed
        .iter()
        .filter_map(|o| match Key::parse(&o.key) {
            Some(Key::Latest { db }) => Some(db),
            _ => None,
        })
        .collect();
    let read: Vec<_> = futures::stream::iter(keys)
        .map(|db| async move {
            let m = store.read::<Manifest>(&Key::Latest { db: db.clone() }).await;
            (db, m)
        })
        .buffer_unordered(READS_IN_FLIGHT)
        .collect()
        .await;
    let mut out = BTreeMap::new();
    for (db, m) in read {
        match m {
            Ok(Some(m)) => {
                out.insert(key_of(&db), m);
            }
            Ok(None) => {}
            Err(e @ StoreError::Corrupt { .. }) => {
                tracing::warn!(error = %e, "status skips a corrupt latest/ copy: {e}")
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Why each database with a hold is held (the newest hold's reason), by database.
async fn holds(store: &BackupStore) -> Result<HashMap<DbKey, String>, StoreError> {
    let mut out = HashMap::new();
    for hold in crate::tripwire::holds(store).await? {
        let release = crate::tripwire::release_command(&hold.project, &hold.instance, &hold.database, &hold.run_date);
        let why = format!("{} (release: {release})", hold.reason);
        out.insert((hold.project, hold.instance, hold.database), why);
    }
    Ok(out)
}
/// The restore drills of every database: the newest one, and when the newest successful one
/// finished (reading back at most three records per database).
///
/// This is the one place status reads verification records (`Key::Verification`, written by
/// `verify.rs` as `VerificationRecord`; only `result`, `finished_at`, `run_date` and the restore
/// time and throughput are read here).
pub async fn verifications(store: &BackupStore) -> Result<HashMap<DbKey, Verifications>, StoreError> {
    #[derive(Deserialize)]
    struct Record {
        result: String,
        finished_at: DateTime<Utc>,
        run_date: String,
        #[serde(default)]
        restore_secs: Option<f64>,
        #[serde(default)]
        bytes_per_sec: Option<f64>,
    }
    let probe = Key::Verification { db: placeholder_db(), date: RunDate::from_date(NaiveDate::MIN) };
    let mut dates: HashMap<DbKey, (DatabasePath, Vec<RunDate>)> = HashMap::new();
    for o in store.bucket().list(&prefix(&probe, 1)).await? {
        if let Some(Key::Verification { db, date }) = Key::parse(&o.key) {
            dates.entry(key_of(&db)).or_insert_with(|| (db, Vec::new())).1.push(date);
        }
    }
    let read: Vec<_> = futures::stream::iter(dates)
        .map(|(k, (db, mut ds))| async move {
            ds.sort_unstable_by(|a, b| b.cmp(a));
            let mut seen = Verifications::default();
            for date in ds.into_iter().take(3) {
                let record = match store.read::<Record>(&Key::Verification { db: db.clone(), date }).await {
                    Ok(Some(r)) => r,
                    Ok(None) | Err(StoreError::Corrupt { .. }) => continue,
                    Err(e) => return Err(e),
                };
                let ok = record.result == "ok";
                if seen.last.as_ref().is_none_or(|l| record.finished_at > l.verified_at) {
                    seen.last = Some(VerificationSeen {
                        result: record.result,
                        verified_at: record.finished_at,
                        run_date: record.run_date,
                        restore_secs: record.restore_secs,
                        bytes_per_sec: record.bytes_per_sec,
                    });
                }
                if ok {
                    seen.last_ok_at = seen.last_ok_at.max(Some(record.finished_at));
                    break;
                }
            }
            Ok((k, seen))
        })
        .buffer_unordered(READS_IN_FLIGHT)
        .collect()
        .await;
    read.into_iter().collect()
}

/// The stored size of each database's backup of the day before its newest.
async fn previous_sizes(store: &BackupStore, latest: &BTreeMap<DbKey, Manifest>) -> HashMap<DbKey, u64> {
    let wanted: Vec<(DbKey, DatabaseRef, RunDate)> = latest
        .iter()
        .filter_map(|(k, m)| {
            let db = db_ref(&m.source, &m.project, &m.instance, &m.database, m.engine)?;
            let day = date_of(&m.run_date)?.date().pred_opt()?;
            Some((k.clone(), db, RunDate::from_date(day)))
        })
        .collect();
    let read: Vec<_> = futures::stream::iter(wanted)
        .map(|(k, db, day)| async move {
            let previous = store.manifest(&db, day).await.ok().flatten()?;
            Some((k, previous.bytes))
        })
        .buffer_unordered(READS_IN_FLIGHT)
        .collect()
        .await;
    read.into_iter().flatten().collect()
}

fn source_failed(ledger: &RunLedger, source: &str) -> bool {
    let exact = format!("source:{source}");
    let part = format!("source:{source}:");
    ledger.errors.iter().any(|e| e.scope == exact || e.scope.starts_with(&part))
}

fn counts_of(rows: &[DatabaseStatus]) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = DbState::ALL.iter().map(|s| (s.as_str().to_owned(), 0)).collect();
    for r in rows {
        *counts.entry(r.state.as_str().to_owned()).or_default() += 1;
    }
    counts
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Computes the status of every database as of `now` (see the module docs for what is read).
pub async fn compute(
    store: &BackupStore,
    settings: &StatusSettings,
    now: DateTime<Utc>,
) -> Result<StatusReport, StoreError> {
    let (latest, ledger, verified) =
        tokio::try_join!(latest_manifests(store), newest_ledger(store, now.date_naive()), verifications(store))?;
    let previous = previous_sizes(store, &latest).await;
    let held = holds(store).await?;
    let run_day = ledger.as_ref().and_then(|l| date_of(&l.run_date));
    let failures = match run_day {
        Some(d) => failures_of(store, d).await?,
        None => HashMap::new(),
    };
    let latest_run = match &ledger {
        Some(l) => Some(run_report(store, l, Some(&latest), false).await?),
        None => None,
    };
    let mut planned: HashMap<DbKey, &PlannedTask> = HashMap::new();
    if let Some(l) = &ledger {
        for t in &l.databases {
            planned.insert((t.project.clone(), t.instance.clone(), t.database.clone()), t);
        }
    }
    let mut all: Vec<DbKey> = latest.keys().cloned().collect();
    all.extend(planned.keys().filter(|k| !latest.contains_key(*k)).cloned());
    all.sort();
    let mut rows = Vec::with_capacity(all.len());
    let (mut backed_up, mut proven) = (0, 0);
    for k in all {
        let m = latest.get(&k);
        let task = planned.get(&k);
        let expectation = match (&ledger, task) {
            (None, _) => Expectation::NoRun,
            (Some(_), Some(t)) if t.action == PlanAction::Export => Expectation::Expected,
            (Some(_), Some(t)) => Expectation::Excluded(t.excluded_by.clone()),
            (Some(l), None) => Expectation::NotListed { source_failed: m.is_none_or(|m| source_failed(l, &m.source)) },
        };
        let v = verified.get(&k);
        let facts = Facts {
            latest: m,
            expectation,
            run_date: run_day.map(RunDate::date),
            failure: failures.get(&k).map(String::as_str),
            verified_ok_at: v.and_then(|v| v.last_ok_at),
            held: held.get(&k).map(String::as_str),
        };
        let (state, reason) = classify(&facts, now, settings);
        if m.is_some() && state.in_scope() {
            backed_up += 1;
            proven += usize::from(state == DbState::Ok && facts.verified_ok_at.is_some());
        }
        let previous_bytes = previous.get(&k).copied();
        #[expect(clippy::cast_precision_loss, reason = "a percentage needs no more than f64's 52 bits")]
        let change = match (m.map(|m| m.bytes), previous_bytes) {
            (Some(now), Some(before)) if before > 0 => {
                Some(round1((now as f64 - before as f64) * 100.0 / before as f64))
            }
            _ => None,
        };
        rows.push(DatabaseStatus {
            project: k.0.clone(),
            instance: k.1.clone(),
            database: k.2.clone(),
            source: m.map(|m| m.source.clone()).or_else(|| task.map(|t| t.source.clone())),
            engine: m.map(|m| m.engine).or_else(|| task.map(|t| t.engine)),
            state,
            reason,
            last_backup_at: m.map(|m| m.finished_at),
            age_hours: m.map(|m| hours_since(m.finished_at, now)),
            last_backup_date: m.map(|m| m.run_date.clone()),
            bytes: m.map(|m| m.bytes),
            previous_bytes,
            bytes_change_percent: change,
            last_verification: v.and_then(|v| v.last.clone()),
        });
    }
    rows.sort_by(|a, b| {
        (a.state, &a.project, &a.instance, &a.database).cmp(&(b.state, &b.project, &b.instance, &b.database))
    });
    let healthy = !rows.iter().any(|r| r.state.is_alarm());
    Ok(StatusReport {
        generated_at: now,
        slo_hours: settings.slo_hours,
        verify_within_days: settings.verify_within_days,
        healthy,
        backed_up,
        proven,
        all_proven: healthy && proven == backed_up,
        counts: counts_of(&rows),
        latest_run,
        databases: rows,
    })
}

// ---------------------------------------------------------------------------------------------
// The cached service

/// Status with a cache, run reports, and the per-run summary notification.
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
        self.metrics.observe_status(&report);
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

#[cfg(test)]
fn placeholder_manifest() -> Manifest {
    Manifest {
        version: 0,
        source: String::new(),
        project: String::new(),
        instance: String::new(),
        database: String::new(),
        engine: Engine::Postgres,
        run_date: String::new(),
        run_id: String::new(),
        class: String::new(),
        key: String::new(),
        format: crate::store::manifest::DumpFormat::PgCustomZstd,
        compression: String::new(),
        compression_level: None,
        bytes: 0,
        raw_bytes: None,
        sha256: None,
        object_version: None,
        started_at: DateTime::<Utc>::MIN_UTC,
        finished_at: DateTime::<Utc>::MIN_UTC,
        tools: crate::store::manifest::ToolVersions {
            dump: String::new(),
            server: String::new(),
            data_backup: String::new(),
        },
        encryption: None,
        row_counts: None,
        row_counts_exact: None,
        cloud_sql: None,
    }
}

// ---------------------------------------------------------------------------------------------
// The terminal table (`data-backup status`)

fn size_words(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    #[expect(clippy::cast_precision_loss, reason = "display only")]
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

/// Human words for a size and its trend (`12.3 MiB (+4.0%)`).
#[must_use]
pub fn size_and_trend(row: &DatabaseStatus) -> String {
    match (row.bytes, row.bytes_change_percent) {
        (Some(b), Some(c)) => format!("{} ({c:+.1}%)", size_words(b)),
        (Some(b), None) => size_words(b),
        _ => "-".to_owned(),
    }
}

/// Human words for an age in hours.
#[must_use]
pub fn age_text(hours: Option<f64>) -> String {
    hours.map_or_else(|| "-".to_owned(), age_words)
}

/// ANSI colour of a state.
fn ansi(state: DbState) -> &'static str {
    match state {
        DbState::Failing | DbState::Missing | DbState::Suspect | DbState::Stale => "\x1b[1;31m",
        DbState::Unverified => "\x1b[33m",
        DbState::Unverifiable => "\x1b[36m",
        DbState::Ok => "\x1b[32m",
        DbState::Gone | DbState::Excluded => "\x1b[2m",
    }
}

/// The status as a terminal table (coloured when `color`), the newest run's summary on top.
#[must_use]
pub fn render_table(report: &StatusReport, color: bool) -> String {
    let mut out = String::new();
    match &report.latest_run {
        Some(r) => {
            let _ = writeln!(
                out,
                "newest run {} ({}): discovered {}, excluded {}, expected {}, exported {}, failed {}, not backed up {}{}",
                r.run_id,
                r.run_date,
                r.discovered,
                r.excluded,
                r.expected,
                r.exported,
                r.failed,
                r.not_backed_up,
                if r.complete { "" } else { ", DISCOVERY INCOMPLETE" }
            );
        }
        None => out.push_str("no run in the last days\n"),
    }
    let counts: Vec<String> = report.counts.iter().filter(|(_, n)| **n > 0).map(|(s, n)| format!("{s} {n}")).collect();
    let _ = writeln!(
        out,
        "{} databases: {}; {} backed up, {} proven\n",
        report.databases.len(),
        counts.join(", "),
        report.backed_up,
        report.proven
    );
    let header = ["STATE", "DATABASE", "LAST BACKUP", "AGE", "SIZE", "VERIFIED", "WHY"];
    let rows: Vec<[String; 7]> = report
        .databases
        .iter()
        .map(|r| {
            [
                r.state.as_str().to_owned(),
                format!("{}/{}/{}", r.project, r.instance, r.database),
                r.last_backup_at.map_or_else(|| "-".to_owned(), |t| t.format("%Y-%m-%d %H:%M").to_string()),
                age_text(r.age_hours),
                size_and_trend(r),
                r.last_verification
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |v| format!("{} {}", v.result, v.verified_at.format("%Y-%m-%d"))),
                r.reason.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                let _ = write!(s, "{cell:<w$}  ");
            }
        }
        s.trim_end().to_owned()
    };
    let _ = writeln!(out, "{}", line(&header.map(str::to_owned)));
    for (row, r) in rows.iter().zip(&report.databases) {
        let text = line(row);
        if color {
            let _ = writeln!(out, "{}{text}\x1b[0m", ansi(r.state));
        } else {
            let _ = writeln!(out, "{text}");
        }
    }
    out
}

/// The rows whose state needs someone (stale, failing, missing): the CLI exits non-zero when any.
#[must_use]
pub fn alarming(report: &StatusReport) -> Vec<&DatabaseStatus> {
    report.databases.iter().filter(|r| r.state.is_alarm()).collect()
}

/// Exit status of `data-backup status` for the rows `report` shows: 2 when any is stale, failing
/// or missing; else 3 when any is `unverified` (backed up, not proven by a recent drill); else 0
/// (every database proven, or `unverifiable` by nature, `gone` or `excluded`). 1 is left for
/// errors.
#[must_use]
pub fn exit_status(report: &StatusReport) -> u8 {
    if !alarming(report).is_empty() {
        2
    } else if report.databases.iter().any(|r| r.state == DbState::Unverified) {
        3
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(run_date: &str, finished_hours_ago: i64, now: DateTime<Utc>) -> Manifest {
        Manifest {
            run_date: run_date.to_owned(),
            finished_at: now - chrono::Duration::hours(finished_hours_ago),
            ..placeholder_manifest()
        }
    }

    #[test]
    fn each_fact_pattern_gets_its_state_first_match_wins() {
        let now = Utc::now();
        let today = now.date_naive();
        let settings = StatusSettings::default();
        let d = |n: i64| (today - chrono::Duration::days(n)).format("%Y-%m-%d").to_string();
        let fresh = manifest(&d(0), 1, now);
        let old = manifest(&d(3), 72, now);
        let verified = Some(now - chrono::Duration::days(1));
        let long_ago = Some(now - chrono::Duration::days(30));
        let sql_server = |m: &Manifest| Manifest {
            engine: Engine::Sqlserver,
            format: crate::store::manifest::DumpFormat::SqlServerBak,
            ..m.clone()
        };
        let (bak, old_bak) = (sql_server(&fresh), sql_server(&old));
        let facts = |latest, expectation, failure, verified_ok_at| Facts {
            latest,
            expectation,
            run_date: Some(today),
            failure,
            verified_ok_at,
            held: None,
        };
        let table: Vec<(Facts<'_>, DbState)> = vec![
            (facts(Some(&fresh), Expectation::Expected, None, verified), DbState::Ok),
            (facts(Some(&old), Expectation::Expected, None, verified), DbState::Stale),
            (facts(Some(&old), Expectation::Expected, Some("boom"), verified), DbState::Failing),
            (facts(Some(&fresh), Expectation::Expected, Some("reported, then a retry made it"), verified), DbState::Ok),
            (facts(None, Expectation::Expected, None, None), DbState::Missing),
            (facts(None, Expectation::Expected, Some("boom"), None), DbState::Failing),
            (facts(Some(&fresh), Expectation::NotListed { source_failed: false }, None, verified), DbState::Gone),
            (facts(Some(&old), Expectation::NotListed { source_failed: true }, None, verified), DbState::Stale),
            (facts(Some(&fresh), Expectation::Excluded(Some("*/*/tmp_*".into())), None, None), DbState::Excluded),
            (facts(Some(&fresh), Expectation::Expected, None, long_ago), DbState::Unverified),
            (facts(Some(&fresh), Expectation::NoRun, None, None), DbState::Unverified),
            (facts(Some(&old), Expectation::NoRun, None, None), DbState::Stale),
            (facts(Some(&bak), Expectation::Expected, None, None), DbState::Unverifiable),
            (facts(Some(&old_bak), Expectation::Expected, None, None), DbState::Stale),
        ];
        for (i, (f, want)) in table.iter().enumerate() {
            let (got, why) = classify(f, now, &settings);
            assert_eq!(got, *want, "case {i}: {why}");
        }
        let off = StatusSettings { verify_within_days: 0, ..StatusSettings::default() };
        assert_eq!(classify(&facts(Some(&fresh), Expectation::NoRun, None, None), now, &off).0, DbState::Ok);
        assert_eq!(classify(&facts(Some(&bak), Expectation::NoRun, None, None), now, &off).0, DbState::Ok);
        // A hold makes a backed-up database suspect, before staleness and drills; not a failing one.
        let held = |f| Facts { held: Some("possible data loss"), ..f };
        assert_eq!(
            classify(&held(facts(Some(&old), Expectation::Expected, None, None)), now, &settings).0,
            DbState::Suspect
        );
        assert_eq!(
            classify(&held(facts(Some(&fresh), Expectation::NoRun, None, verified)), now, &settings).0,
            DbState::Suspect
        );
        assert_eq!(
            classify(&held(facts(Some(&old), Expectation::Expected, Some("boom"), None)), now, &settings).0,
            DbState::Failing
        );
    }

    #[test]
    fn alarm_states_are_stale_failing_missing_and_suspect() {
        let alarms: Vec<_> = DbState::ALL.into_iter().filter(|s| s.is_alarm()).map(DbState::as_str).collect();
        assert_eq!(alarms, ["failing", "missing", "suspect", "stale"]);
        assert_eq!(DbState::parse("gone"), Some(DbState::Gone));
    }

    #[test]
    fn sizes_and_trends_read_as_words() {
        let mut row = DatabaseStatus {
            project: "p".into(),
            instance: "i".into(),
            database: "d".into(),
            source: None,
            engine: None,
            state: DbState::Ok,
            reason: String::new(),
            last_backup_at: None,
            age_hours: Some(50.0),
            last_backup_date: None,
            bytes: Some(3 * 1024 * 1024),
            previous_bytes: Some(2 * 1024 * 1024),
            bytes_change_percent: Some(50.0),
            last_verification: None,
        };
        assert_eq!(size_and_trend(&row), "3.0 MiB (+50.0%)");
        row.bytes_change_percent = None;
        assert_eq!(size_and_trend(&row), "3.0 MiB");
        assert_eq!(age_text(Some(50.0)), "2.1 days");
        assert_eq!(age_text(Some(3.25)), "3.2 h");
    }
}
