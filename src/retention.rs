//! Retention: which class a run date belongs to, how long each class is kept, and the two ways an
//! expired backup goes away: bucket lifecycle rules ([`lifecycle`]) and the prune ([`prune`]).
//!
//! The class is the first segment of a backup's key, so bucket lifecycle rules can expire each
//! class by prefix. `class_of` is pure: the same date always lands in the same class, so every retry
//! of a task writes to the same key. Precedence: yearly (1 January) over quarterly (first day of a
//! quarter) over monthly (first of a month) over weekly (the configured weekday) over daily.
//!
//! One [`RetentionPolicy`], resolved from `[retention]` in the settings, drives both:
//! - A backup of class `c` with run date `d` is **expired** on `as_of` when `as_of - d > keep_days(c)`
//!   (per-source overrides apply to the backups whose project segment is the source's name).
//!   Lifecycle rules delete at object age `keep_days`; both keep a backup at least `keep_days` days.
//! - The prune ([`plan`] then [`prune`]) lists only the class prefixes (and `verifications/`), so
//!   `labels/`, `latest/`, `runs/`, `leases/` and `reports/` are never touched. It deletes an expired
//!   backup's manifest before its dump (no manifest ever points at a missing dump) and its
//!   verification record after the dump, deletes expired orphan dumps, never deletes the newest
//!   backup of a database nor its newest backup with a successful restore drill (see
//!   [`protected_dates`]), leaves any (database, day) with a lease alone (an export may be writing
//!   it), skips and reports an object the store refuses to delete (a retention lock or hold answers
//!   with a permanent refusal), and records what an applied prune did under `reports/prune/`
//!   ([`PruneRecord`]).
//! - Lifecycle rules cannot know which backup is the newest: a database that stops being backed up
//!   loses its last backup to them after `keep_days`. Stores that must keep it use the prune instead.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::model::{DatabaseName, DatabasePath, InstanceName, InvalidField, ProjectId, RunDate, RunId};
use crate::store::bucket::{BucketError, ObjectInfo};
use crate::store::layout::Key;
use crate::store::{BackupStore, StoreError};

pub use crate::model::calendar::{RetentionClass, class_of};
pub use crate::settings::retention::{ClassRule, Colder, ColderStorage, RetentionPolicy};

// ---------------------------------------------------------------------------------------------
// Key prefixes (built from `Key` so that `Layout` stays the one place that encodes segments)
// ---------------------------------------------------------------------------------------------

/// The first `n` segments of `key`'s path, with a trailing `/`.
fn key_prefix(key: &Key, n: usize) -> String {
    let path = key.path();
    let mut prefix: String = path.split('/').take(n).collect::<Vec<_>>().join("/");
    prefix.push('/');
    prefix
}

fn placeholder_db(project: ProjectId) -> DatabasePath {
    DatabasePath {
        project,
        instance: InstanceName::parse("_").expect("valid name"),
        database: DatabaseName::parse("_").expect("valid name"),
    }
}

/// `<class>/`, or `<class>/<project>/` with the project segment encoded as `Layout` encodes it.
fn class_prefix(class: RetentionClass, project: Option<&ProjectId>) -> String {
    let (project, n) = match project {
        Some(p) => (p.clone(), 2),
        None => (ProjectId::parse("_").expect("valid name"), 1),
    };
    let key = Key::Manifest { class, db: placeholder_db(project), date: RunDate::from_date(NaiveDate::MIN) };
    key_prefix(&key, n)
}

/// `leases/`.
fn leases_prefix() -> String {
    let project = ProjectId::parse("_").expect("valid name");
    key_prefix(&Key::Lease { db: placeholder_db(project), date: RunDate::from_date(NaiveDate::MIN), seq: 0 }, 1)
}

/// `holds/`.
fn holds_prefix() -> String {
    let project = ProjectId::parse("_").expect("valid name");
    key_prefix(&Key::Hold { db: placeholder_db(project), date: RunDate::from_date(NaiveDate::MIN) }, 1)
}

// ---------------------------------------------------------------------------------------------
// Prune plan
// ---------------------------------------------------------------------------------------------

/// One backup (or stray object) in the plan and why it is where it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlanEntry {
    /// `project/instance/database`; absent for an object that is no backup's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Retention class (the key's first segment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<RetentionClass>,
    /// Run date (`YYYY-MM-DD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_date: Option<String>,
    /// Object keys, relative to the store's prefix; the manifest first, deleted in this order.
    pub keys: Vec<String>,
    /// Their total size in bytes.
    pub bytes: u64,
    /// Why.
    pub reason: String,
}

/// The answer of a prune: what is kept, what is (or, in a dry run, would be) deleted, what was skipped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PrunePlan {
    /// The day the policy was evaluated for (`YYYY-MM-DD`).
    pub as_of: String,
    /// Whether the deletions were carried out (`false`: dry run).
    pub applied: bool,
    /// Backups kept: not expired, or the newest of their database.
    pub kept: Vec<PlanEntry>,
    /// Backups and orphan dumps deleted (or to delete, in a dry run), in deletion order.
    pub deleted: Vec<PlanEntry>,
    /// Objects left alone: the store refused to delete them (retention lock), an export holds their
    /// lease, the data-loss tripwire holds them (reason starting `held:`), or they are not keys
    /// this service writes.
    pub skipped: Vec<PlanEntry>,
    /// Bytes of `deleted`.
    pub bytes_freed: u64,
    /// Key of the record an applied prune wrote (`reports/prune/<day>/<id>.json`); absent in a dry run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
}

impl PrunePlan {
    /// Every key of `deleted`, in the order they are (or would be) deleted.
    pub fn actions(&self) -> impl Iterator<Item = &str> {
        self.deleted.iter().flat_map(|e| e.keys.iter().map(String::as_str))
    }
}

type DbId = (ProjectId, InstanceName, DatabaseName);

fn db_id(db: DatabasePath) -> DbId {
    (db.project, db.instance, db.database)
}

fn db_label(db: &DbId) -> String {
    format!("{}/{}/{}", db.0, db.1, db.2)
}

fn days(n: i64) -> String {
    if n == 1 { "1 day".to_owned() } else { format!("{n} days") }
}

/// The objects of one (database, run date, class).
#[derive(Default)]
struct Group<'a> {
    manifest: Option<&'a ObjectInfo>,
    dumps: Vec<&'a ObjectInfo>,
}

impl Group<'_> {
    fn is_backup(&self) -> bool {
        self.manifest.is_some() && !self.dumps.is_empty()
    }
}

/// The run dates of one database's backups (manifest and dump) that prune never deletes, however
/// old: its newest backup, its newest backup on or before `as_of` (the newest as the audited day
/// saw it), and its newest backup whose restore drill succeeded (`newest_verified`, see [`Drills`]).
#[must_use]
pub fn protected_dates(
    backup_dates: &BTreeSet<NaiveDate>,
    newest_verified: Option<NaiveDate>,
    as_of: NaiveDate,
) -> BTreeSet<NaiveDate> {
    backup_dates
        .last()
        .into_iter()
        .chain(backup_dates.range(..=as_of).next_back())
        .chain(newest_verified.iter().filter(|d| backup_dates.contains(d)))
        .copied()
        .collect()
}

/// What the prune knows of restore drills: the listing of `verifications/` (a record goes with its
/// backup: it is deleted after the dump), and the records of each database's newest backup whose
/// drill succeeded (that backup is never deleted, see [`protected_dates`]).
#[derive(Clone, Debug, Default)]
pub struct Drills {
    /// Every verification record (a listing of `verifications/`).
    pub records: Vec<ObjectInfo>,
    /// `Key::Verification` of the newest backup of each database with a successful drill.
    pub newest_ok: Vec<Key>,
}

/// The plan for `objects` (a listing of the class prefixes) on `as_of`. `leases` is a listing of
/// `leases/`: a (database, day) with a lease is left alone, since an export may be writing it.
/// `drills` protects each database's newest verified backup and deletes a deleted backup's
/// verification record after its dump. `holds` is a listing of `holds/`: a held backup (the
/// data-loss tripwire, see `crate::tripwire`) is skipped until an operator releases it.
#[must_use]
pub fn plan(
    objects: &[ObjectInfo],
    leases: &[ObjectInfo],
    holds: &[ObjectInfo],
    drills: &Drills,
    policy: &RetentionPolicy,
    as_of: NaiveDate,
) -> PrunePlan {
    let busy: BTreeSet<(DbId, NaiveDate)> = leases
        .iter()
        .filter_map(|o| match Key::parse(&o.key) {
            Some(Key::Lease { db, date, .. }) => Some((db_id(db), date.date())),
            _ => None,
        })
        .collect();
    let held: BTreeSet<(DbId, NaiveDate)> = holds
        .iter()
        .filter_map(|o| match Key::parse(&o.key) {
            Some(Key::Hold { db, date }) => Some((db_id(db), date.date())),
            _ => None,
        })
        .collect();
    let mut result = PrunePlan {
        as_of: as_of.format("%Y-%m-%d").to_string(),
        applied: false,
        kept: Vec::new(),
        deleted: Vec::new(),
        skipped: Vec::new(),
        bytes_freed: 0,
        record: None,
    };
    let mut groups: BTreeMap<(DbId, NaiveDate, RetentionClass), Group<'_>> = BTreeMap::new();
    for object in objects {
        match Key::parse(&object.key) {
            Some(Key::Manifest { class, db, date }) => {
                groups.entry((db_id(db), date.date(), class)).or_default().manifest = Some(object);
            }
            Some(Key::Dump { class, db, date, .. }) => {
                groups.entry((db_id(db), date.date(), class)).or_default().dumps.push(object);
            }
            _ => result.skipped.push(PlanEntry {
                database: None,
                class: None,
                run_date: None,
                keys: vec![object.key.clone()],
                bytes: object.size,
                reason: "not a backup key this service writes: left alone".to_owned(),
            }),
        }
    }
    let mut backup_dates: BTreeMap<&DbId, BTreeSet<NaiveDate>> = BTreeMap::new();
    for ((db, date, _), group) in &groups {
        if group.is_backup() {
            backup_dates.entry(db).or_default().insert(*date);
        }
    }
    let verified: BTreeMap<DbId, NaiveDate> = drills
        .newest_ok
        .iter()
        .filter_map(|k| match k {
            Key::Verification { db, date } => Some((db_id(db.clone()), date.date())),
            _ => None,
        })
        .collect();
    let protected: BTreeMap<&DbId, BTreeSet<NaiveDate>> = backup_dates
        .iter()
        .map(|(db, dates)| (*db, protected_dates(dates, verified.get(*db).copied(), as_of)))
        .collect();
    let records: BTreeMap<(DbId, NaiveDate), &ObjectInfo> = drills
        .records
        .iter()
        .filter_map(|o| match Key::parse(&o.key) {
            Some(Key::Verification { db, date }) => Some(((db_id(db), date.date()), o)),
            _ => None,
        })
        .collect();
    // A (database, day) some of whose objects stay keeps its verification record.
    let mut staying: BTreeSet<(DbId, NaiveDate)> = BTreeSet::new();

    for ((db, date, class), group) in &groups {
        let keep = policy.rule(*class, db.0.as_str()).keep_days;
        let age = (as_of - *date).num_days();
        let mut objects: Vec<&ObjectInfo> = group.manifest.into_iter().collect();
        objects.extend(group.dumps.iter().copied());
        let mut entry = PlanEntry {
            database: Some(db_label(db)),
            class: Some(*class),
            run_date: Some(date.format("%Y-%m-%d").to_string()),
            keys: objects.iter().map(|o| o.key.clone()).collect(),
            bytes: objects.iter().map(|o| o.size).sum(),
            reason: String::new(),
        };
        let what = match (group.manifest.is_some(), group.dumps.is_empty()) {
            (true, false) => "",
            (true, true) => " (a manifest without its dump)",
            (false, _) => " (a dump without a manifest: an unfinished export)",
        };
        if age <= i64::from(keep) {
            entry.reason = if age < 0 {
                format!("run date after as_of{what}")
            } else {
                format!("{} old, kept for {keep}{what}", days(age))
            };
            result.kept.push(entry);
        } else if group.is_backup() && protected.get(db).is_some_and(|dates| dates.contains(date)) {
            let newest = backup_dates.get(db).and_then(|d| d.range(..=as_of).next_back()) == Some(date)
                || backup_dates.get(db).and_then(|d| d.last()) == Some(date);
            let which = if newest { "newest" } else { "newest verified" };
            entry.reason =
                format!("the {which} backup of its database is never pruned ({} old, kept for {keep})", days(age));
            result.kept.push(entry);
        } else if held.contains(&(db.clone(), *date)) {
            let (p, i, d) = db;
            let release = crate::tripwire::release_command(
                p.as_str(),
                i.as_str(),
                d.as_str(),
                &date.format("%Y-%m-%d").to_string(),
            );
            entry.reason =
                format!("held: expired{what}, but held by the data-loss tripwire until released ({release})");
            result.skipped.push(entry);
        } else if busy.contains(&(db.clone(), *date)) {
            entry.reason =
                format!("expired{what}, but an export of this database and day holds a lease: left for later");
            result.skipped.push(entry);
        } else {
            entry.reason = format!("expired: {} old, kept for {keep}{what}", days(age));
            result.deleted.push(entry);
            continue;
        }
        staying.insert((db.clone(), *date));
    }
    // A deleted backup's verification record goes last, after its dump (once per database and day).
    let mut placed: BTreeSet<(DbId, NaiveDate)> = BTreeSet::new();
    for entry in &mut result.deleted {
        let Some(Key::Manifest { db, date, .. } | Key::Dump { db, date, .. }) =
            entry.keys.first().and_then(|k| Key::parse(k))
        else {
            continue;
        };
        let day = (db_id(db), date.date());
        if staying.contains(&day) || placed.contains(&day) {
            continue;
        }
        if let Some(record) = records.get(&day) {
            entry.keys.push(record.key.clone());
            entry.bytes += record.size;
            placed.insert(day);
        }
    }
    result.bytes_freed = result.deleted.iter().map(|e| e.bytes).sum();
    result
}

/// Errors of the prune and of the lifecycle rules.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// A prune that deletes was asked to evaluate a day that has not come yet.
    #[error("as_of {0} lies in the future: only a dry run may look ahead")]
    AsOfInFuture(NaiveDate),
    /// Listing the store failed, or a deletion failed in a way worth retrying.
    #[error(transparent)]
    Bucket(#[from] BucketError),
    /// The policy cannot be written as lifecycle rules for this format.
    #[error("cannot render lifecycle rules: {0}")]
    Lifecycle(String),
}

impl RetentionError {
    /// True when retrying may help.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Bucket(e) if e.is_transient())
    }
}

/// Parses `as_of` (`YYYY-MM-DD`).
pub fn parse_as_of(value: &str) -> Result<NaiveDate, InvalidField> {
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .filter(|_| value.len() == 10)
        .ok_or_else(|| InvalidField::new("as_of", format!("{value:?} is not a date of the form YYYY-MM-DD")))
}

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
    prune_as(store, policy, as_of, apply, None).await
}

/// The verification records (a listing of `verifications/`) and, per database, the record of its
/// newest backup whose drill succeeded (one read per record, newest backup first, until one is `ok`).
async fn drills(store: &BackupStore, objects: &[ObjectInfo]) -> Result<Drills, BucketError> {
    #[derive(Deserialize)]
    struct Verdict {
        result: crate::verify::VerificationResult,
    }
    let probe = Key::Verification {
        db: placeholder_db(ProjectId::parse("_").expect("valid name")),
        date: RunDate::from_date(NaiveDate::MIN),
    };
    let records = store.bucket().list(&key_prefix(&probe, 1)).await?;
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
                Ok(Some(v)) if v.result == crate::verify::VerificationResult::Ok => {
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
async fn prune_as(
    store: &BackupStore,
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
    let holds = bucket.list(&holds_prefix()).await?;
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
    match prune_as(store, policy, run_date.date(), true, id.as_ref()).await {
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

// ---------------------------------------------------------------------------------------------
// Lifecycle rules
// ---------------------------------------------------------------------------------------------

/// Output format of [`lifecycle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LifecycleFormat {
    /// GCS bucket `lifecycle` JSON: the body of a bucket PATCH, or `gcloud storage buckets update --lifecycle-file`.
    Gcs,
    /// S3 `LifecycleConfiguration` JSON (`aws s3api put-bucket-lifecycle-configuration --lifecycle-configuration`).
    S3,
    /// Terraform: `lifecycle_rule` blocks for a `google_storage_bucket`, or for an `s3://` store an
    /// `aws_s3_bucket_lifecycle_configuration` resource.
    Terraform,
}

/// Days after which S3 aborts a multipart upload that never completed (an export killed midway).
pub const ABORT_MULTIPART_AFTER_DAYS: u32 = 2;
/// Most lifecycle rules a GCS bucket takes.
const GCS_MAX_RULES: usize = 100;
/// Most lifecycle rules an S3 bucket takes.
const S3_MAX_RULES: usize = 1000;
/// S3 refuses a transition to Standard-IA earlier than this.
const S3_IA_MIN_DAYS: u32 = 30;

/// The retention of one key prefix.
struct PrefixRule {
    id: String,
    prefix: String,
    rule: ClassRule,
}

/// One rule per class prefix; a class with per-source overrides gets one rule per configured
/// source instead (prefix rules cannot exclude, and the shortest matching rule wins), so backups
/// of sources no longer configured are left to the prune for those classes.
fn prefix_rules(policy: &RetentionPolicy, store_prefix: &str) -> Vec<PrefixRule> {
    let full = |p: String| if store_prefix.is_empty() { p } else { format!("{store_prefix}/{p}") };
    let mut rules = Vec::new();
    for class in RetentionClass::ALL {
        let default = policy.class_rule(class);
        if policy.has_source_overrides(class) {
            for source in policy.sources() {
                // Source names are valid project segments; were one not, its backups would match
                // no rule and be left to the prune (never deleted early).
                let Ok(project) = ProjectId::parse(source) else { continue };
                let prefix = class_prefix(class, Some(&project));
                rules.push(PrefixRule {
                    id: format!("data-backup-{}", prefix.trim_end_matches('/').replace('/', "-")),
                    prefix: full(prefix),
                    rule: policy.rule(class, source),
                });
            }
        } else {
            rules.push(PrefixRule {
                id: format!("data-backup-{}", class.as_str()),
                prefix: full(class_prefix(class, None)),
                rule: default,
            });
        }
    }
    rules
}

/// (scheme, bucket, prefix) of a store URL.
fn store_location(store_url: &str) -> Result<(String, String, String), RetentionError> {
    let url = url::Url::parse(store_url).map_err(|e| RetentionError::Lifecycle(format!("store.url: {e}")))?;
    let scheme = url.scheme().to_owned();
    if scheme == "file" {
        return Ok((scheme, String::new(), String::new()));
    }
    Ok((scheme, url.host_str().unwrap_or_default().to_owned(), url.path().trim_matches('/').to_owned()))
}

fn gcs_rules(rules: &[PrefixRule]) -> Result<Vec<Value>, RetentionError> {
    // Rules with the same action and age are merged into one with several prefixes; deletions
    // first, then moves, each by age.
    let mut merged: BTreeMap<(bool, u32, Option<&'static str>), Vec<String>> = BTreeMap::new();
    for r in rules {
        merged.entry((false, r.rule.keep_days, None)).or_default().push(r.prefix.clone());
        if let Some(colder) = r.rule.colder {
            merged.entry((true, colder.after_days, Some(colder.storage.gcs()))).or_default().push(r.prefix.clone());
        }
    }
    if merged.len() > GCS_MAX_RULES {
        return Err(RetentionError::Lifecycle(format!(
            "{} rules, over the {GCS_MAX_RULES} a GCS bucket takes: fewer per-source overrides, or use prune",
            merged.len()
        )));
    }
    Ok(merged
        .into_iter()
        .map(|((_, age, storage), prefixes)| {
            let action = match storage {
                None => json!({"type": "Delete"}),
                Some(class) => json!({"type": "SetStorageClass", "storageClass": class}),
            };
            json!({"action": action, "condition": {"age": age, "matchesPrefix": prefixes}})
        })
        .collect())
}

fn s3_rules(rules: &[PrefixRule]) -> Result<Vec<Value>, RetentionError> {
    if rules.len() > S3_MAX_RULES {
        return Err(RetentionError::Lifecycle(format!("{} rules, over the {S3_MAX_RULES} S3 takes", rules.len())));
    }
    rules
        .iter()
        .map(|r| {
            if r.id.len() > 255 {
                return Err(RetentionError::Lifecycle(format!("rule id {} is longer than S3's 255 characters", r.id)));
            }
            let mut rule = json!({
                "ID": r.id,
                "Status": "Enabled",
                "Filter": {"Prefix": r.prefix},
                "Expiration": {"Days": r.rule.keep_days},
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_MULTIPART_AFTER_DAYS},
            });
            if let Some(colder) = r.rule.colder {
                if colder.storage == ColderStorage::Nearline && colder.after_days < S3_IA_MIN_DAYS {
                    return Err(RetentionError::Lifecycle(format!(
                        "{}: S3 moves objects to STANDARD_IA after {S3_IA_MIN_DAYS} days at the earliest, not {}",
                        r.prefix, colder.after_days
                    )));
                }
                rule["Transitions"] = json!([{"Days": colder.after_days, "StorageClass": colder.storage.s3()}]);
            }
            Ok(rule)
        })
        .collect()
}

/// A Terraform (HCL) string literal.
fn hcl(s: &str) -> String {
    let escaped = s.replace('\\', "\\\\").replace('"', "\\\"").replace("${", "$${").replace("%{", "%%{");
    format!("\"{escaped}\"")
}

fn terraform_gcs(rules: &[Value], location: &str) -> String {
    let mut out = format!(
        "# Lifecycle rules for {location}, rendered by `data-backup lifecycle --format terraform` from the\n\
         # [retention] settings: put these blocks in the bucket's google_storage_bucket resource.\n"
    );
    for rule in rules {
        let prefixes: Vec<String> = rule["condition"]["matchesPrefix"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(hcl)
            .collect();
        let _ = write!(
            out,
            "lifecycle_rule {{\n  condition {{\n    age            = {}\n    matches_prefix = [{}]\n  }}\n  action {{\n    type = {}\n",
            rule["condition"]["age"],
            prefixes.join(", "),
            hcl(rule["action"]["type"].as_str().unwrap_or_default()),
        );
        if let Some(class) = rule["action"]["storageClass"].as_str() {
            let _ = writeln!(out, "    storage_class = {}", hcl(class));
        }
        out.push_str("  }\n}\n");
    }
    out
}

fn terraform_s3(rules: &[Value], bucket: &str, location: &str) -> String {
    let mut out = format!(
        "# Lifecycle rules for {location}, rendered by `data-backup lifecycle --format terraform` from the\n\
         # [retention] settings.\nresource \"aws_s3_bucket_lifecycle_configuration\" \"data_backup\" {{\n  bucket = {}\n",
        hcl(bucket)
    );
    for rule in rules {
        let _ = write!(
            out,
            "\n  rule {{\n    id     = {}\n    status = \"Enabled\"\n    filter {{\n      prefix = {}\n    }}\n",
            hcl(rule["ID"].as_str().unwrap_or_default()),
            hcl(rule["Filter"]["Prefix"].as_str().unwrap_or_default()),
        );
        for t in rule["Transitions"].as_array().into_iter().flatten() {
            let _ = write!(
                out,
                "    transition {{\n      days          = {}\n      storage_class = {}\n    }}\n",
                t["Days"],
                hcl(t["StorageClass"].as_str().unwrap_or_default())
            );
        }
        let _ = write!(
            out,
            "    expiration {{\n      days = {}\n    }}\n    abort_incomplete_multipart_upload {{\n      days_after_initiation = {}\n    }}\n  }}\n",
            rule["Expiration"]["Days"], rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
        );
    }
    out.push_str("}\n");
    out
}

/// Renders the policy as bucket lifecycle rules for the store at `store_url` (its prefix, if any,
/// is part of every rule's prefix). Every rule matches a class prefix (`daily/`, `weekly/…/`, …):
/// none touches `labels/`, `latest/`, `runs/`, `leases/` or `reports/`. Per class: delete at age
/// `keep_days`, and move to colder storage at `colder_after_days` when set; S3 rules also abort
/// multipart uploads left unfinished for [`ABORT_MULTIPART_AFTER_DAYS`] days (GCS has no such
/// leftovers: the `gs://` store uploads with resumable sessions, which expire on their own).
pub fn lifecycle(policy: &RetentionPolicy, store_url: &str, format: LifecycleFormat) -> Result<String, RetentionError> {
    let (scheme, bucket, prefix) = store_location(store_url)?;
    let rules = prefix_rules(policy, &prefix);
    let pretty = |v: &Value| serde_json::to_string_pretty(v).expect("plain JSON") + "\n";
    let location = if scheme == "file" { store_url.to_owned() } else { format!("{scheme}://{bucket}/{prefix}") };
    let location = location.trim_end_matches('/');
    match format {
        LifecycleFormat::Gcs => Ok(pretty(&json!({"lifecycle": {"rule": gcs_rules(&rules)?}}))),
        LifecycleFormat::S3 => Ok(pretty(&json!({"Rules": s3_rules(&rules)?}))),
        LifecycleFormat::Terraform if scheme == "s3" => Ok(terraform_s3(&s3_rules(&rules)?, &bucket, location)),
        LifecycleFormat::Terraform => Ok(terraform_gcs(&gcs_rules(&rules)?, location)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Weekday;
    use proptest::prelude::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn lifecycle_rules_never_touch_anything_but_class_prefixes() {
        let policy = RetentionPolicy::default()
            .with_class_rule(
                RetentionClass::Daily,
                ClassRule { keep_days: 60, colder: Some(Colder { after_days: 30, storage: ColderStorage::Nearline }) },
            )
            .with_source_rule("main", RetentionClass::Daily, ClassRule::keep(60))
            .with_source_rule("legacy", RetentionClass::Weekly, ClassRule::keep(3));
        for url in ["file:///tmp/x", "gs://b", "gs://b/some/prefix", "s3://b/p"] {
            let prefix = store_location(url).unwrap().2;
            let expected_start = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
            let gcs: Value = serde_json::from_str(&lifecycle(&policy, url, LifecycleFormat::Gcs).unwrap()).unwrap();
            let s3: Value = serde_json::from_str(&lifecycle(&policy, url, LifecycleFormat::S3).unwrap()).unwrap();
            let mut prefixes: Vec<String> = Vec::new();
            for rule in gcs["lifecycle"]["rule"].as_array().unwrap() {
                let matches = rule["condition"]["matchesPrefix"].as_array().unwrap();
                assert!(!matches.is_empty(), "every GCS rule is limited to prefixes: {rule}");
                prefixes.extend(matches.iter().map(|p| p.as_str().unwrap().to_owned()));
            }
            for rule in s3["Rules"].as_array().unwrap() {
                prefixes.push(rule["Filter"]["Prefix"].as_str().unwrap().to_owned());
            }
            for p in prefixes {
                let rest = p.strip_prefix(&expected_start).unwrap_or_else(|| panic!("{p} is under {expected_start}"));
                let class = rest.split('/').next().unwrap();
                assert!(RetentionClass::from_segment(class).is_some() && rest.ends_with('/'), "{p}");
            }
        }
    }

    #[test]
    fn s3_lifecycle_refuses_standard_ia_before_thirty_days() {
        let policy = RetentionPolicy::default().with_class_rule(
            RetentionClass::Daily,
            ClassRule { keep_days: 9, colder: Some(Colder { after_days: 3, storage: ColderStorage::Nearline }) },
        );
        let err = lifecycle(&policy, "s3://b", LifecycleFormat::S3).unwrap_err().to_string();
        assert!(err.contains("STANDARD_IA after 30 days"), "{err}");
        assert!(lifecycle(&policy, "gs://b", LifecycleFormat::Gcs).is_ok());
    }

    #[test]
    fn as_of_must_be_a_date() {
        assert_eq!(parse_as_of("2026-02-28").unwrap(), d("2026-02-28"));
        for bad in ["2026-02-30", "2026-2-28", "yesterday", ""] {
            assert_eq!(parse_as_of(bad).unwrap_err().field, "as_of", "{bad}");
        }
    }

    // --- the plan, on arbitrary histories ---------------------------------------------------

    fn db(project: &str, database: &str) -> DatabasePath {
        DatabasePath {
            project: ProjectId::parse(project).unwrap(),
            instance: InstanceName::parse("i").unwrap(),
            database: DatabaseName::parse(database).unwrap(),
        }
    }

    /// What exists for one (database, day): 0 both, 1 manifest only, 2 dump only.
    #[derive(Clone, Copy, Debug)]
    struct Day {
        offset: i64,
        shape: u8,
        weekly_on: u8,
    }

    fn day() -> impl Strategy<Value = Day> {
        (
            0i64..900,
            prop_oneof![6 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
            prop_oneof![8 => Just(0u8), 1 => 1u8..7],
        )
            .prop_map(|(offset, shape, weekly_on)| Day { offset, shape, weekly_on })
    }

    fn history_objects(base: NaiveDate, history: &[Vec<Day>], labels: usize) -> Vec<ObjectInfo> {
        let mut objects = Vec::new();
        for (n, days) in history.iter().enumerate() {
            let project = if n % 2 == 0 { "main" } else { "legacy" };
            let db = db(project, &format!("db{n}"));
            for day in days {
                let date = RunDate::from_date(base - chrono::Duration::days(day.offset));
                // Mostly today's calendar; sometimes a key written under another weekly weekday.
                let class = class_of(date.date(), Weekday::try_from(day.weekly_on).unwrap());
                if day.shape != 2 {
                    let key = Key::Manifest { class, db: db.clone(), date };
                    objects.push(ObjectInfo { key: key.path(), size: 100, version: None });
                }
                if day.shape != 1 {
                    let format = crate::store::manifest::DumpFormat::PgCustomZstd;
                    let key = Key::Dump { class, db: db.clone(), date, format, encrypted: false };
                    objects.push(ObjectInfo { key: key.path(), size: 10_000 + day.offset as u64, version: None });
                }
            }
        }
        for n in 0..labels {
            objects.push(ObjectInfo { key: format!("daily/labels/{n}.json"), size: 1, version: None });
            objects.push(ObjectInfo {
                key: format!("labels/p/i/db0/release-{n}/db0.dump.zst"),
                size: 1,
                version: None,
            });
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        objects.dedup_by(|a, b| a.key == b.key);
        objects
    }

    fn keep_days() -> impl Strategy<Value = u32> {
        prop_oneof![1u32..15, 1u32..400, Just(43800u32)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn the_plan_keeps_the_newest_and_the_young_and_deletes_manifests_before_dumps(
            history in prop::collection::vec(prop::collection::vec(day(), 0..40), 1..5),
            keeps in prop::array::uniform5(keep_days()),
            legacy_daily in prop::option::of(keep_days()),
            as_of_offset in -30i64..1000,
            labels in 0usize..3,
            verified_pick in prop::collection::vec(prop::option::of(0usize..40), 5),
        ) {
            let base = d("2026-06-15");
            let as_of = base - chrono::Duration::days(as_of_offset);
            let mut policy = RetentionPolicy::default();
            for (class, keep) in RetentionClass::ALL.into_iter().zip(keeps) {
                policy = policy.with_class_rule(class, ClassRule::keep(keep));
            }
            if let Some(keep) = legacy_daily {
                policy = policy.with_source_rule("legacy", RetentionClass::Daily, ClassRule::keep(keep));
            }
            let objects = history_objects(base, &history, labels);
            // Some databases have a verified backup (any of their backups, maybe an old one).
            let mut drills = Drills::default();
            for (n, days) in history.iter().enumerate() {
                let Some(day) = verified_pick[n].and_then(|i| days.get(i)) else { continue };
                let project = if n % 2 == 0 { "main" } else { "legacy" };
                let date = RunDate::from_date(base - chrono::Duration::days(day.offset));
                let key = Key::Verification { db: db(project, &format!("db{n}")), date };
                drills.records.push(ObjectInfo { key: key.path(), size: 7, version: None });
                drills.newest_ok.push(key);
            }
            let result = plan(&objects, &[], &[], &drills, &policy, as_of);
            let deleted: BTreeSet<&str> = result.actions().collect();

            // Every object lands in exactly one list (a verification record only with its deleted backup).
            let records: BTreeSet<&str> = drills.records.iter().map(|o| o.key.as_str()).collect();
            let mut seen: Vec<&str> = result.kept.iter().chain(&result.deleted).chain(&result.skipped)
                .flat_map(|e| e.keys.iter().map(String::as_str)).filter(|k| !records.contains(k)).collect();
            seen.sort_unstable();
            let all: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
            prop_assert_eq!(seen, all);
            // The newest verified backup survives, and with it its record; a record goes only
            // after the dump of its deleted backup.
            for key in &drills.newest_ok {
                let Key::Verification { db, date } = key else { unreachable!() };
                let manifest = Key::Manifest { class: class_of(date.date(), Weekday::Mon), db: db.clone(), date: *date }.path();
                let dump = Key::Dump { class: class_of(date.date(), Weekday::Mon), db: db.clone(), date: *date,
                    format: crate::store::manifest::DumpFormat::PgCustomZstd, encrypted: false }.path();
                let keys: BTreeSet<&str> = objects.iter().map(|o| o.key.as_str()).collect();
                if keys.contains(manifest.as_str()) && keys.contains(dump.as_str()) {
                    prop_assert!(!deleted.contains(manifest.as_str()) && !deleted.contains(dump.as_str()),
                        "the newest verified backup {} was deleted", manifest);
                    prop_assert!(!deleted.contains(key.path().as_str()));
                }
            }
            for entry in &result.deleted {
                if let Some(i) = entry.keys.iter().position(|k| records.contains(k.as_str())) {
                    prop_assert_eq!(i, entry.keys.len() - 1, "a record goes last: {:?}", entry.keys);
                }
            }

            // The newest backup (manifest and dump) of each database survives, expired or not.
            let keys: BTreeSet<&str> = objects.iter().map(|o| o.key.as_str()).collect();
            let mut backups = Vec::new();
            for o in &objects {
                if let Some(Key::Manifest { class, db, date }) = Key::parse(&o.key) {
                    let format = crate::store::manifest::DumpFormat::PgCustomZstd;
                    let dump = Key::Dump { class, db: db.clone(), date, format, encrypted: false }.path();
                    if keys.contains(dump.as_str()) {
                        backups.push((db_id(db), date.date(), o.key.clone(), dump));
                    }
                }
            }
            let mut newest: BTreeMap<&DbId, NaiveDate> = BTreeMap::new();
            for (db, date, _, _) in &backups {
                let e = newest.entry(db).or_insert(*date);
                *e = (*e).max(*date);
            }
            prop_assert_eq!(newest.len(), history.iter().enumerate().filter(|(_, days)| days.iter().any(|d| d.shape == 0)).count());
            for (db, date, manifest, dump) in &backups {
                if newest[db] == *date {
                    prop_assert!(!deleted.contains(manifest.as_str()) && !deleted.contains(dump.as_str()), "the newest backup {} was deleted", manifest);
                }
            }

            // Nothing younger than its keep-for is deleted; nothing but backup keys is touched.
            for key in deleted.iter().filter(|k| !records.contains(*k)) {
                let (class, db, date) = match Key::parse(key) {
                    Some(Key::Manifest { class, db, date } | Key::Dump { class, db, date, .. }) => (class, db, date),
                    other => { prop_assert!(false, "deleted a key that is no backup's: {key} ({other:?})"); unreachable!() }
                };
                prop_assert!(policy.is_expired(class, db.project.as_str(), date.date(), as_of), "{key} is not expired on {as_of}");
                prop_assert!(!key.starts_with("labels/"));
            }
            for o in &objects {
                if o.key.starts_with("labels/") || o.key.starts_with("daily/labels/") {
                    prop_assert!(!deleted.contains(o.key.as_str()));
                }
            }

            // A manifest is always deleted before the dump of the same backup.
            let order: Vec<&str> = result.actions().collect();
            for (i, key) in order.iter().enumerate() {
                if let Some(Key::Dump { class, db, date, .. }) = Key::parse(key) {
                    let manifest = Key::Manifest { class, db, date }.path();
                    if let Some(j) = order.iter().position(|k| *k == manifest) {
                        prop_assert!(j < i, "{manifest} after {key}");
                    } else {
                        prop_assert!(!keys.contains(manifest.as_str()), "{key} deleted but its manifest {manifest} kept");
                    }
                }
            }
            prop_assert_eq!(result.bytes_freed, result.deleted.iter().map(|e| e.bytes).sum::<u64>());
            prop_assert!(!result.applied);
        }
    }

    #[test]
    fn the_plan_leaves_a_day_with_a_lease_alone() {
        let db = db("main", "app");
        let date = RunDate::from_date(d("2026-01-05"));
        let dump = Key::Dump {
            class: RetentionClass::Daily,
            db: db.clone(),
            date,
            format: crate::store::manifest::DumpFormat::PgCustomZstd,
            encrypted: false,
        };
        let lease = Key::Lease { db: db.clone(), date, seq: 1 };
        let objects = [ObjectInfo { key: dump.path(), size: 5, version: None }];
        let leases = [ObjectInfo { key: lease.path(), size: 5, version: None }];
        let as_of = d("2026-03-01");
        let result = plan(&objects, &leases, &[], &Drills::default(), &RetentionPolicy::default(), as_of);
        assert_eq!(result.skipped.len(), 1, "{result:?}");
        assert!(result.skipped[0].reason.contains("lease"));
        let result = plan(&objects, &[], &[], &Drills::default(), &RetentionPolicy::default(), as_of);
        assert_eq!(result.actions().collect::<Vec<_>>(), [dump.path()]);
        assert!(result.deleted[0].reason.contains("without a manifest"), "{result:?}");
    }

    #[test]
    fn the_plan_skips_a_held_backup_until_its_hold_is_gone() {
        let db = db("main", "app");
        let (old, new) = (RunDate::from_date(d("2026-01-05")), RunDate::from_date(d("2026-01-06")));
        let mut objects = Vec::new();
        for date in [old, new] {
            let manifest = Key::Manifest { class: RetentionClass::Daily, db: db.clone(), date };
            let dump = Key::Dump {
                class: RetentionClass::Daily,
                db: db.clone(),
                date,
                format: crate::store::manifest::DumpFormat::PgCustomZstd,
                encrypted: false,
            };
            objects.push(ObjectInfo { key: manifest.path(), size: 1, version: None });
            objects.push(ObjectInfo { key: dump.path(), size: 5, version: None });
        }
        let holds = [ObjectInfo { key: Key::Hold { db: db.clone(), date: old }.path(), size: 1, version: None }];
        let as_of = d("2027-03-01");
        let result = plan(&objects, &[], &holds, &Drills::default(), &RetentionPolicy::default(), as_of);
        assert_eq!(result.deleted, [], "{result:?}");
        assert_eq!(result.skipped.len(), 1, "{result:?}");
        assert!(result.skipped[0].reason.starts_with("held:"), "{result:?}");
        let result = plan(&objects, &[], &[], &Drills::default(), &RetentionPolicy::default(), as_of);
        assert_eq!(result.deleted.len(), 1, "{result:?}");
    }
}
