//! The catalog, the read side of the store: what backups a database has (dated and labelled), which
//! databases have a `latest/` copy (and those copies), which backups have a verification record,
//! and which databases were verified least recently. Every answer comes from listing keys and
//! parsing them back with [`Key::parse`]: a listing's order or last name is never trusted, and a
//! key this version cannot parse is not a backup.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Utc};
use futures::StreamExt as _;

use crate::model::{DatabasePath, Label, RetentionClass, RunDate};
use crate::store::bucket::ObjectInfo;
use crate::store::layout::{Key, Prefix, any_date, any_db};
use crate::store::manifest::Manifest;
use crate::store::verification::VerificationRecord;
use crate::store::{BackupStore, StoreError};

/// One dated backup: its manifest's key and the dump object next to it.
#[derive(Clone, Debug)]
pub struct StoredBackup {
    /// The run date.
    pub date: RunDate,
    /// Its retention class.
    pub class: RetentionClass,
    /// The manifest's key.
    pub manifest: Key,
    /// The dump object, when the listing has it.
    pub dump: Option<ObjectInfo>,
}

/// Every dated backup of `db` (a manifest makes a backup), newest first, found by listing each
/// class. On a day held by two classes, the first class listed answers.
pub async fn stored_backups(store: &BackupStore, db: &DatabasePath) -> Result<Vec<StoredBackup>, StoreError> {
    let mut manifests: BTreeMap<RunDate, (RetentionClass, Key)> = BTreeMap::new();
    let mut dumps: BTreeMap<(RunDate, RetentionClass), ObjectInfo> = BTreeMap::new();
    for class in RetentionClass::ALL {
        let prefix = Prefix::of(&Key::Manifest { class, db: db.clone(), date: any_date() }, 4);
        for object in store.bucket().list(prefix.as_str()).await? {
            match Key::parse(&object.key) {
                Some(Key::Manifest { class, db: of, date }) if &of == db => {
                    manifests.entry(date).or_insert((class, Key::Manifest { class, db: of, date }));
                }
                Some(Key::Dump { class, db: of, date, .. }) if &of == db => {
                    dumps.insert((date, class), object);
                }
                _ => {}
            }
        }
    }
    Ok(manifests
        .into_iter()
        .rev()
        .map(|(date, (class, manifest))| StoredBackup { date, class, manifest, dump: dumps.remove(&(date, class)) })
        .collect())
}

/// The named backups of `db` (a manifest under `labels/<label>/…` makes one), by label. Labels are
/// few: this lists `labels/` whole.
pub async fn labelled_backups(store: &BackupStore, db: &DatabasePath) -> Result<Vec<(Label, Key)>, StoreError> {
    let probe = Key::LabelManifest { label: Label::parse("_").expect("valid label"), db: db.clone() };
    let mut out: Vec<(Label, Key)> = store
        .bucket()
        .list(Prefix::of(&probe, 1).as_str())
        .await?
        .into_iter()
        .filter_map(|o| match Key::parse(&o.key)? {
            Key::LabelManifest { label, db: of } if &of == db => {
                Some((label.clone(), Key::LabelManifest { label, db: of }))
            }
            _ => None,
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Every database with a `latest/` copy of its newest manifest (every database with a backup).
pub async fn latest_databases(store: &BackupStore) -> Result<BTreeSet<DatabasePath>, StoreError> {
    Ok(store
        .bucket()
        .list(Prefix::of(&Key::Latest { db: any_db() }, 1).as_str())
        .await?
        .into_iter()
        .filter_map(|o| match Key::parse(&o.key) {
            Some(Key::Latest { db }) => Some(db),
            _ => None,
        })
        .collect())
}

/// Reads in flight when reading one object per database.
const READS_IN_FLIGHT: usize = 16;

/// The `latest/` manifest of every database (one listing, then one read per database); a corrupt
/// one is logged and skipped.
pub async fn latest_manifests(store: &BackupStore) -> Result<BTreeMap<DatabasePath, Manifest>, StoreError> {
    let keys = latest_databases(store).await?;
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
                out.insert(db, m);
            }
            Ok(None) => {}
            Err(e @ StoreError::Corrupt { .. }) => {
                tracing::warn!(error = %e, "a corrupt latest/ copy is skipped: {e}");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The run dates of `db` that have a verification record.
pub async fn verified_dates(store: &BackupStore, db: &DatabasePath) -> Result<HashSet<RunDate>, StoreError> {
    let probe = Key::Verification { db: db.clone(), date: any_date() };
    Ok(store
        .bucket()
        .list(Prefix::of(&probe, 4).as_str())
        .await?
        .into_iter()
        .filter_map(|o| match Key::parse(&o.key) {
            Some(Key::Verification { db: of, date }) if &of == db => Some(date),
            _ => None,
        })
        .collect())
}

/// Every verification record in the store (one listing of `verifications/`): each database with
/// the run dates of its records.
pub async fn verifications(store: &BackupStore) -> Result<BTreeMap<DatabasePath, BTreeSet<RunDate>>, StoreError> {
    let probe = Key::Verification { db: any_db(), date: any_date() };
    let mut out: BTreeMap<DatabasePath, BTreeSet<RunDate>> = BTreeMap::new();
    for o in store.bucket().list(Prefix::of(&probe, 1).as_str()).await? {
        if let Some(Key::Verification { db, date }) = Key::parse(&o.key) {
            out.entry(db).or_default().insert(date);
        }
    }
    Ok(out)
}

/// Every database with a backup, least recently verified first (never verified first of all),
/// with the time of its last verification.
pub async fn least_recently_verified(
    store: &BackupStore,
) -> Result<Vec<(DatabasePath, Option<DateTime<Utc>>)>, StoreError> {
    let dbs = crate::store::catalog::latest_databases(store).await?;
    least_recently_verified_among(store, dbs).await
}

/// The databases `dbs`, least recently verified in `store` first (never verified first of all),
/// with the time of their last verification there. The nightly pick asks each off-site copy about
/// the primary's databases (what the primary holds is what every copy should be proven to hold).
pub async fn least_recently_verified_among(
    store: &BackupStore,
    dbs: BTreeSet<DatabasePath>,
) -> Result<Vec<(DatabasePath, Option<DateTime<Utc>>)>, StoreError> {
    let newest: BTreeMap<DatabasePath, RunDate> = crate::store::catalog::verifications(store)
        .await?
        .into_iter()
        .filter_map(|(db, dates)| Some((db, *dates.last()?)))
        .collect();
    let mut out = Vec::new();
    for db in dbs {
        let last = match newest.get(&db) {
            Some(&date) => store
                .read::<VerificationRecord>(&Key::Verification { db: db.clone(), date })
                .await
                .ok()
                .flatten()
                .map(|r| r.finished_at),
            None => None,
        };
        out.push((db, last));
    }
    // `None` sorts before `Some`: never-verified databases first, then the oldest verification.
    out.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    Ok(out)
}
