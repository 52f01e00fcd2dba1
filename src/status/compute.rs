//! Computing the status from the store (see `crate::status` for the states and the rules).
//!
//! What is read, per computation (never the whole history of backups):
//! - `latest/`: one listing, then one read per database (the copy of its newest manifest);
//! - the newest run ledger, and after a run of a narrowed scope the older ones back to the newest
//!   whole run (`crate::runs::ledger::expected_ledgers`);
//! - `reports/<run date>/`: one listing (the failures reported for the newest run's day);
//! - `verifications/`: one listing (one record per verified backup), then one read per database;
//! - the previous day's manifest of each database (one read, for the size trend);
//! - `holds/`: one listing, then one read per hold (holds are rare: each is a suspected data loss);
//! - each off-site copy's `latest/`: one listing, then one read per database
//!   (`crate::status::copies`).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use serde::Deserialize;

use crate::model::{DatabasePath, DatabaseRef, RunDate};
use crate::runs::ledger::{
    DbKey, PlanAction, PlannedTask, READS_IN_FLIGHT, RunLedger, date_of, db_ref, expected_ledgers, failures_of, key_of,
};
use crate::runs::summary::run_report;
use crate::settings::StatusSettings;
use crate::status::copies::{StatusCopy, copy_states};
use crate::status::{
    DatabaseStatus, DbState, Expectation, Facts, StatusReport, VerificationSeen, classify, hours_since,
};
use crate::store::layout::Key;
use crate::store::manifest::Manifest;
use crate::store::{BackupStore, StoreError};

/// Verification records as status reads them.
#[derive(Clone, Debug, Default)]
pub struct Verifications {
    /// The newest drill of each database.
    pub last: Option<VerificationSeen>,
    /// When the newest successful drill finished.
    pub last_ok_at: Option<DateTime<Utc>>,
}

/// Every `latest/` manifest, by database.
async fn latest_manifests(store: &BackupStore) -> Result<BTreeMap<DbKey, Manifest>, StoreError> {
    Ok(crate::store::catalog::latest_manifests(store).await?.into_iter().map(|(db, m)| (key_of(&db), m)).collect())
}

/// Why each database with a hold is held (the newest hold's reason), by database.
async fn holds(store: &BackupStore) -> Result<HashMap<DbKey, String>, StoreError> {
    let mut out = HashMap::new();
    for hold in crate::store::holds::holds(store).await? {
        let release =
            crate::store::holds::release_command(&hold.project, &hold.instance, &hold.database, &hold.run_date);
        let why = format!("{} (release: {release})", hold.reason);
        out.insert((hold.project, hold.instance, hold.database), why);
    }
    Ok(out)
}
/// The restore drills of every database: the newest one, and when the newest successful one
/// finished (reading back at most three records per database).
///
/// This is the one place status reads verification records (`Key::Verification`, written by
/// `verify/` as `store::verification::VerificationRecord`; only `result`, `finished_at`, `run_date` and the restore
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
    let dates: HashMap<DbKey, (DatabasePath, Vec<RunDate>)> = crate::store::catalog::verifications(store)
        .await?
        .into_iter()
        .map(|(db, dates)| (key_of(&db), (db, dates.into_iter().collect())))
        .collect();
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

/// Computes the status of every database as of `now` (see the module docs for what is read), with
/// the state of each off-site copy of `copies` (a copy that cannot be read is reported, not fatal).
pub async fn compute(
    store: &BackupStore,
    settings: &StatusSettings,
    copies: &[StatusCopy],
    now: DateTime<Utc>,
) -> Result<StatusReport, StoreError> {
    let (latest, ledgers, verified) =
        tokio::try_join!(latest_manifests(store), expected_ledgers(store, now.date_naive()), verifications(store))?;
    let ledger = ledgers.first();
    let previous = previous_sizes(store, &latest).await;
    let held = holds(store).await?;
    let (mut copy_rows, copy_summaries) = copy_states(store, &latest, copies, now, settings.copy_grace_minutes).await;
    let latest_run = match ledger {
        Some(l) => Some(run_report(store, l, Some(&latest), false).await?),
        None => None,
    };
    // A database is expected as the newest ledger that lists it says, for that ledger's run date
    // (older ledgers only count after a run of a narrowed scope, see `expected_ledgers`); the
    // failures reported on each of those days, the newest first.
    let mut planned: HashMap<DbKey, (&PlannedTask, Option<RunDate>)> = HashMap::new();
    let mut failures = HashMap::new();
    let mut days = Vec::new();
    for l in &ledgers {
        let day = date_of(&l.run_date);
        if let Some(d) = day.filter(|d| !days.contains(d)) {
            days.push(d);
            for (k, why) in failures_of(store, d).await? {
                failures.entry(k).or_insert(why);
            }
        }
        for t in &l.databases {
            planned.entry((t.project.clone(), t.instance.clone(), t.database.clone())).or_insert((t, day));
        }
    }
    let mut all: Vec<DbKey> = latest.keys().cloned().collect();
    all.extend(planned.keys().filter(|k| !latest.contains_key(*k)).cloned());
    all.sort();
    let mut rows = Vec::with_capacity(all.len());
    let (mut backed_up, mut proven) = (0, 0);
    for k in all {
        let m = latest.get(&k);
        let (task, run_day) = match planned.get(&k) {
            Some((t, day)) => (Some(*t), *day),
            None => (None, ledger.and_then(|l| date_of(&l.run_date))),
        };
        let expectation = match (ledger, task) {
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
            copies: copy_rows.remove(&k).unwrap_or_default(),
        });
    }
    rows.sort_by(|a, b| {
        (a.state, &a.project, &a.instance, &a.database).cmp(&(b.state, &b.project, &b.instance, &b.database))
    });
    let healthy = !rows.iter().any(|r| r.state.is_alarm());
    let copies_behind = rows.iter().filter(|r| r.state.in_scope() && r.copy_alarm()).count();
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
        copies_behind,
        copies: copy_summaries,
    })
}
