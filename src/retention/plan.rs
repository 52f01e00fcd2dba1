//! The prune's plan, pure: given the listings of the class prefixes, `leases/`, `holds/` and the
//! restore drills, which backups are kept, deleted or skipped, and why ([`plan`], [`PrunePlan`]).
//! A database's newest backups are never planned for deletion ([`protected_dates`]).

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::calendar::RetentionClass;
use crate::model::database::DatabasePath;
use crate::model::names::{DatabaseName, InstanceName, ProjectId};
use crate::settings::retention::RetentionPolicy;
use crate::store::bucket::ObjectInfo;
use crate::store::layout::Key;

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
#[derive(Default, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
    /// The same plan run against each off-site copy (`[[copies]]`); absent without copies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<CopyPrune>,
}

/// The prune of one off-site copy: the primary's policy against the copy's own listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CopyPrune {
    /// The copy (`[[copies]]` name).
    pub name: String,
    /// Backups kept in the copy.
    pub kept: Vec<PlanEntry>,
    /// Backups deleted (or to delete, in a dry run) from the copy.
    pub deleted: Vec<PlanEntry>,
    /// Objects of the copy left alone, with the reason (a store that refused the delete).
    pub skipped: Vec<PlanEntry>,
    /// Bytes of `deleted`.
    pub bytes_freed: u64,
    /// Key of the record an applied prune wrote in the copy's store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// Why the copy's prune failed or stopped early, if it did (the primary's prune is not affected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CopyPrune {
    /// The answer of the copy `name` from its `plan`, with the `error` that stopped it, if any.
    #[must_use]
    pub fn of(name: &str, plan: PrunePlan, error: Option<String>) -> Self {
        Self {
            name: name.to_owned(),
            kept: plan.kept,
            deleted: plan.deleted,
            skipped: plan.skipped,
            bytes_freed: plan.bytes_freed,
            record: plan.record,
            error,
        }
    }

    /// The answer of a copy whose prune failed before it planned anything.
    #[must_use]
    pub fn failed(name: &str, error: String) -> Self {
        Self::of(name, PrunePlan::default(), Some(error))
    }
}

impl PrunePlan {
    /// Every key of `deleted`, in the order they are (or would be) deleted.
    pub fn actions(&self) -> impl Iterator<Item = &str> {
        self.deleted.iter().flat_map(|e| e.keys.iter().map(String::as_str))
    }
}

pub(super) type DbId = (ProjectId, InstanceName, DatabaseName);

pub(super) fn db_id(db: DatabasePath) -> DbId {
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
/// data-loss tripwire, see `crate::export::tripwire`) is skipped until an operator releases it.
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
        copies: Vec::new(),
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
            let release = crate::store::holds::release_command(
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

#[cfg(test)]
mod tests {
    use chrono::Weekday;
    use proptest::prelude::*;

    use super::*;
    use crate::model::calendar::class_of;
    use crate::model::run::RunDate;
    use crate::settings::retention::ClassRule;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn db(project: &str, database: &str) -> DatabasePath {
        DatabasePath {
            project: ProjectId::parse(project).unwrap(),
            instance: InstanceName::parse("i").unwrap(),
            database: DatabaseName::parse(database).unwrap(),
        }
    }

    /// The key of a plain daily custom-format dump of `db` on `date`.
    fn daily_dump(db: &DatabasePath, date: RunDate) -> Key {
        Key::Dump {
            class: RetentionClass::Daily,
            db: db.clone(),
            date,
            format: crate::store::manifest::DumpFormat::PgCustomZstd,
            encrypted: false,
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
        let dump = daily_dump(&db, date);
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
            let dump = daily_dump(&db, date);
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
