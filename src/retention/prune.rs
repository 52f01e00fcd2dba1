//! The prune: lists the store, plans (see `plan`) and, when applied, deletes in the plan's order
//! and records what it did ([`prune`], [`PruneRecord`]); the nightly prune after a schedule run
//! ([`prune_after_schedule`]); and the restore drills the plan protects.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::RetentionError;
use super::plan::{DbId, Drills, PlanEntry, PrunePlan, db_id, plan};
use super::prefixes::{class_prefix, holds_prefix, leases_prefix};
use crate::model::calendar::RetentionClass;
use crate::model::database::DatabasePath;
use crate::model::run::{RunDate, RunId};
use crate::settings::retention::RetentionPolicy;
use crate::store::bucket::{BucketError, ObjectInfo};
use crate::store::layout::{Key, Prefix, any_date, any_db};
use crate::store::{BackupStore, StoreError};

/// What an applied prune leaves in the store, under `reports/prune/<day it ran>/<id>.json`: its
/// plan as carried out (kept, deleted, skipped with reasons, bytes freed), when it ran, and why it
/// stopped early if it did. Written once (conditional create); never read back by the service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PruneRecord {
    /// The record's id: the run id of the `/schedule` run it followed, else its own.
    pub id: String,
    /// The `/schedule` run it followed (`retention.prune_after_schedule`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// When the prune started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// Why it stopped before the end of its plan (a transient store failure), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What it did.
    #[serde(flatten)]
    pub plan: PrunePlan,
}

/// Lists the store, plans as of `as_of` and, when `apply`, deletes what the plan says (manifest
/// first, then dump, then its verification record) and records what it did (see [`PruneRecord`]).
/// An object the store refuses to delete (`BucketError::Permanent`: a retention lock or hold, a
/// missing permission) is skipped and reported, and the rest of its backup is left as it is; a
/// transient failure stops the prune (what was deleted so far is consistent, recorded, and a later
/// prune carries on).
pub async fn prune(
    store: &BackupStore,
    policy: &RetentionPolicy,
    as_of: NaiveDate,
    apply: bool,
) -> Result<PrunePlan, RetentionError> {
    prune_as(store, store, policy, as_of, apply, None).await
}

/// The verification records (a listing of `verifications/`) and, per database, the record of its
/// newest backup whose drill succeeded (one read per record, newest backup first, until one is `ok`).
async fn drills(store: &BackupStore, objects: &[ObjectInfo]) -> Result<Drills, BucketError> {
    #[derive(Deserialize)]
    struct Verdict {
        result: crate::store::verification::VerificationResult,
    }
    let probe = Key::Verification { db: any_db(), date: any_date() };
    let records = store.bucket().list(Prefix::of(&probe, 1).as_str()).await?;
    let mut manifests: BTreeSet<(DbId, NaiveDate)> = BTreeSet::new();
    let mut dumps: BTreeSet<(DbId, NaiveDate)> = BTreeSet::new();
    for o in objects {
        match Key::parse(&o.key) {
            Some(Key::Manifest { db, date, .. }) => {
                manifests.insert((db_id(db), date.date()));
            }
            Some(Key::Dump { db, date, .. }) => {
                dumps.insert((db_id(db), date.date()));
            }
            _ => {}
        }
    }
    let mut by_db: BTreeMap<DbId, (DatabasePath, BTreeSet<RunDate>)> = BTreeMap::new();
    for o in &records {
        if let Some(Key::Verification { db, date }) = Key::parse(&o.key) {
            let day = (db_id(db.clone()), date.date());
            if manifests.contains(&day) && dumps.contains(&day) {
                by_db.entry(day.0).or_insert_with(|| (db, BTreeSet::new())).1.insert(date);
            }
        }
    }
    let mut newest_ok = Vec::new();
    for (db, dates) in by_db.into_values() {
        for date in dates.into_iter().rev() {
            let key = Key::Verification { db: db.clone(), date };
            match store.read::<Verdict>(&key).await {
                Ok(Some(v)) if v.result == crate::store::verification::VerificationResult::Ok => {
                    newest_ok.push(key);
                    break;
                }
                Ok(_) | Err(StoreError::Corrupt { .. }) => {}
                Err(StoreError::Bucket(e)) => return Err(e),
            }
        }
    }
    Ok(Drills { records, newest_ok })
}

/// [`prune`], recording an applied prune under `run_id` (the `/schedule` run it follows) when given.
/// The holds are those of `holds_of`: the store itself, or for an off-site copy the primary, where
/// the tripwire places them (a held backup stays in every copy too).
pub(super) async fn prune_as(
    store: &BackupStore,
    holds_of: &BackupStore,
    policy: &RetentionPolicy,
    as_of: NaiveDate,
    apply: bool,
    run_id: Option<&RunId>,
) -> Result<PrunePlan, RetentionError> {
    if apply && as_of > Utc::now().date_naive() {
        return Err(RetentionError::AsOfInFuture(as_of));
    }
    let started_at = Utc::now();
    let bucket = store.bucket();
    let mut objects = Vec::new();
    for class in RetentionClass::ALL {
        objects.extend(bucket.list(&class_prefix(class, None)).await?);
    }
    let leases = bucket.list(&leases_prefix()).await?;
    let holds = holds_of.bucket().list(&holds_prefix()).await?;
    let drills = drills(store, &objects).await?;
    let mut result = plan(&objects, &leases, &holds, &drills, policy, as_of);
    let mut stopped = None;
    if apply {
        let sizes: HashMap<&str, u64> =
            objects.iter().chain(&drills.records).map(|o| (o.key.as_str(), o.size)).collect();
        let planned = std::mem::take(&mut result.deleted);
        result.bytes_freed = 0;
        result.applied = true;
        'entries: for entry in planned {
            let mut done = 0;
            let mut refusal = None;
            for key in &entry.keys {
                match bucket.delete(key).await {
                    Ok(()) => {
                        tracing::info!(prune.key = %key, prune.as_of = %result.as_of, "pruned {key}");
                        done += 1;
                    }
                    Err(BucketError::Permanent(reason)) => {
                        tracing::warn!(prune.key = %key, error = %reason, "the store refused to delete {key}: skipped");
                        refusal =
                            Some(format!("the store refused to delete {key} (retention lock or permission): {reason}"));
                        break;
                    }
                    Err(e) => {
                        tracing::error!(prune.key = %key, error = %e, "prune stopped: {e}");
                        stopped = Some(e);
                        break;
                    }
                }
            }
            let (deleted, left) = entry.keys.split_at(done);
            let bytes_of = |keys: &[String]| keys.iter().map(|k| sizes.get(k.as_str()).copied().unwrap_or(0)).sum();
            if !deleted.is_empty() {
                let part = PlanEntry { keys: deleted.to_vec(), bytes: bytes_of(deleted), ..entry.clone() };
                result.bytes_freed += part.bytes;
                result.deleted.push(part);
            }
            if let Some(reason) = refusal {
                result.skipped.push(PlanEntry { keys: left.to_vec(), bytes: bytes_of(left), reason, ..entry });
            }
            if stopped.is_some() {
                break 'entries;
            }
        }
        let id = run_id.cloned().unwrap_or_else(RunId::generate);
        let key = Key::PruneReport { date: RunDate::from_date(started_at.date_naive()), id: id.clone() };
        let record = PruneRecord {
            id: id.to_string(),
            run_id: run_id.map(ToString::to_string),
            started_at,
            finished_at: Utc::now(),
            error: stopped.as_ref().map(ToString::to_string),
            plan: result.clone(),
        };
        match store.create_json(&key, &record).await {
            Ok(_) => result.record = Some(key.path()),
            Err(e) => {
                tracing::error!(prune.record = %key.path(), error = %e, "the prune's record was not written: {e}")
            }
        }
    }
    tracing::info!(
        prune.as_of = %result.as_of, prune.applied = result.applied, prune.kept = result.kept.len(),
        prune.deleted = result.deleted.len(), prune.skipped = result.skipped.len(),
        prune.bytes_freed = result.bytes_freed, prune.record = result.record.as_deref().unwrap_or(""), "prune done"
    );
    match stopped {
        Some(e) => Err(e.into()),
        None => Ok(result),
    }
}

/// The nightly prune run by `/schedule` when `retention.prune_after_schedule` is set: applied, as
/// of the run date, and recorded under the run's id (`reports/prune/<day>/<run id>.json`, next to
/// the run ledger `runs/<run date>/<run id>.json`). Exports of the run may still be running: they
/// write the run date's backups, which are never expired (keep_days is at least 1), and hold a
/// lease while they do. Failures are logged, never fatal to the schedule.
pub async fn prune_after_schedule(store: &BackupStore, policy: &RetentionPolicy, run_date: RunDate, run_id: &str) {
    let id = RunId::parse(run_id).ok();
    match prune_as(store, store, policy, run_date.date(), true, id.as_ref()).await {
        Ok(plan) => tracing::info!(
            run.id = run_id,
            prune.deleted = plan.deleted.len(),
            prune.skipped = plan.skipped.len(),
            prune.bytes_freed = plan.bytes_freed,
            prune.record = plan.record.as_deref().unwrap_or(""),
            "pruned after the schedule run"
        ),
        Err(e) => tracing::error!(run.id = run_id, error = %e, "the prune after the schedule run failed: {e}"),
    }
}
