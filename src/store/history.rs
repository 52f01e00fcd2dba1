//! The history of a database: its last [`KEEP_NIGHTS`] nights in one small object, so that the
//! status pages draw a month of nights per database from one read instead of a listing of the
//! bucket (ADR 0022).
//!
//! Contract:
//! - The history of a database is `history/<db>/<seq>.json` ([`Key::History`]); the generation
//!   with the highest `seq` is the history. An update reads the newest generation, adds its entry
//!   and writes generation `seq + 1` with a conditional create; a writer that loses the race reads
//!   again and retries, so concurrent exports and drills never lose an entry. A created generation
//!   counts only when the newest generation, read again, holds the entry: a number freed by the
//!   deletion below can be created again from a stale read, and that write is then not the newest.
//!   Generations older than the one before the new one are deleted afterwards (best effort: a
//!   leftover is harmless).
//! - It is written when an export commits ([`record_backup`]), when a failure is reported
//!   ([`record_failure`]) and when a drill records its verification ([`record_verification`]).
//!   Recording is best effort: the backup, the report or the verdict is already stored, and a
//!   history that could not be written is rebuilt from the manifests ([`rebuild`]).
//! - Reading every history costs one listing of `history/` and one read per database
//!   ([`all_histories`]).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use crate::model::calendar::RetentionClass;
use crate::model::{DatabaseName, DatabasePath, InstanceName, ProjectId, RunDate};
use crate::store::bucket::PutOutcome;
use crate::store::layout::{Key, Prefix};
use crate::store::manifest::Manifest;
use crate::store::{BackupStore, StoreError};

/// Nights a history keeps (two months: the overview shows 30, the database page all of them).
pub const KEEP_NIGHTS: usize = 62;

/// History format version.
pub const HISTORY_VERSION: u32 = 1;

/// Attempts of one update before it gives up (each loses only to another writer's success).
const UPDATE_ATTEMPTS: usize = 64;

/// Reads in flight while reading every history.
const READS_IN_FLIGHT: usize = 16;

/// The backup of one night.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NightBackup {
    /// The run that asked for it.
    pub run_id: String,
    /// Retention class.
    pub class: String,
    /// Stored size in bytes.
    pub bytes: u64,
    /// When the export started.
    pub started_at: DateTime<Utc>,
    /// When the dump was stored.
    pub finished_at: DateTime<Utc>,
    /// Whether the dump is encrypted.
    pub encrypted: bool,
    /// Tables counted in the manifest, when it has row counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<u64>,
    /// Rows over all tables, when the manifest has row counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}

impl NightBackup {
    /// Seconds the export took.
    #[must_use]
    pub fn duration_secs(&self) -> f64 {
        #[expect(clippy::cast_precision_loss, reason = "milliseconds of an export fit an f64")]
        let ms = (self.finished_at - self.started_at).num_milliseconds().max(0) as f64;
        ms / 1000.0
    }
}

/// A failure reported for one night.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NightFailure {
    /// The error class (`dump_failed`, `permission_denied`, …).
    pub error_class: String,
    /// The error in words.
    pub message: String,
    /// When it was reported.
    pub at: DateTime<Utc>,
}

/// The newest restore drill of one night's backup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NightVerification {
    /// `ok`, `failed` or `unverifiable`.
    pub result: String,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
    /// Seconds the restore took, when it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_secs: Option<f64>,
}

/// What is known of one night of one database.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Night {
    /// Its backup, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<NightBackup>,
    /// The failure reported for it, when one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<NightFailure>,
    /// The newest drill of its backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<NightVerification>,
}

/// The last nights of one database, by run date.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Format version.
    pub version: u32,
    /// Project.
    pub project: String,
    /// Instance.
    pub instance: String,
    /// Database.
    pub database: String,
    /// Its nights, by run date (`YYYY-MM-DD`), at most [`KEEP_NIGHTS`].
    pub nights: BTreeMap<NaiveDate, Night>,
}

impl History {
    /// An empty history of `db`.
    #[must_use]
    pub fn new(db: &DatabasePath) -> Self {
        Self {
            version: HISTORY_VERSION,
            project: db.project.to_string(),
            instance: db.instance.to_string(),
            database: db.database.to_string(),
            nights: BTreeMap::new(),
        }
    }

    /// Keeps the newest [`KEEP_NIGHTS`] nights.
    fn trim(&mut self) {
        while self.nights.len() > KEEP_NIGHTS {
            self.nights.pop_first();
        }
    }

    /// The first night with a backup: before it, a night without one is not a gap.
    #[must_use]
    pub fn first_backup(&self) -> Option<NaiveDate> {
        self.nights.iter().find(|(_, n)| n.backup.is_some()).map(|(d, _)| *d)
    }
}

/// What a manifest tells the history.
#[must_use]
pub fn night_backup(m: &Manifest) -> NightBackup {
    NightBackup {
        run_id: m.run_id.clone(),
        class: m.class.clone(),
        bytes: m.bytes,
        started_at: m.started_at,
        finished_at: m.finished_at,
        encrypted: m.encryption.is_some(),
        tables: m.row_counts.as_ref().map(|r| u64::try_from(r.len()).unwrap_or(u64::MAX)),
        rows: m.row_counts.as_ref().map(|r| r.values().sum()),
    }
}

/// The newest generation of `db`'s history and its number (0 when there is none).
async fn newest(store: &BackupStore, db: &DatabasePath) -> Result<(u32, Option<History>, Vec<u32>), StoreError> {
    let prefix = Prefix::of(&Key::History { db: db.clone(), seq: 0 }, 4);
    let mut seqs: Vec<u32> = store
        .bucket()
        .list(prefix.as_str())
        .await?
        .iter()
        .filter_map(|o| match Key::parse(&o.key) {
            Some(Key::History { db: of, seq }) if &of == db => Some(seq),
            _ => None,
        })
        .collect();
    seqs.sort_unstable();
    for &seq in seqs.iter().rev() {
        match store.read::<History>(&Key::History { db: db.clone(), seq }).await {
            Ok(Some(h)) => return Ok((seq, Some(h), seqs)),
            Ok(None) | Err(StoreError::Corrupt { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok((seqs.last().copied().unwrap_or(0), None, seqs))
}

/// The history of `db` (its newest generation), if it has one.
pub async fn history(store: &BackupStore, db: &DatabasePath) -> Result<Option<History>, StoreError> {
    Ok(newest(store, db).await?.1)
}

/// Applies `change` to `db`'s history as a new generation (see the module contract).
pub async fn update(
    store: &BackupStore,
    db: &DatabasePath,
    change: impl Fn(&mut History) + Send + Sync,
) -> Result<(), StoreError> {
    for _ in 0..UPDATE_ATTEMPTS {
        let (seq, current, seqs) = newest(store, db).await?;
        let mut h = current.unwrap_or_else(|| History::new(db));
        change(&mut h);
        h.trim();
        let next = Key::History { db: db.clone(), seq: seq + 1 };
        let body = serde_json::to_vec(&h).expect("plain data serialises");
        if store.bucket().put_if_absent(&next.path(), body.into()).await? == PutOutcome::Created
            && holds(store, db, &change).await?
        {
            for old in seqs.into_iter().filter(|s| *s < seq) {
                let _ = store.bucket().delete(&Key::History { db: db.clone(), seq: old }.path()).await;
            }
            return Ok(());
        }
        // Another writer won this generation: read its history again, a little later.
        tokio::time::sleep(std::time::Duration::from_millis(rand::random_range(1..25))).await;
    }
    Err(StoreError::Corrupt {
        key: Key::History { db: db.clone(), seq: 0 }.path(),
        reason: format!("{UPDATE_ATTEMPTS} concurrent updates in a row won the race"),
    })
}

/// Whether the newest generation of `db`'s history already holds `change` (applying it again
/// changes nothing). A generation number freed by a deletion can be created again by a writer that
/// read before the deletion: that write succeeds but is not the newest, so the change is applied
/// again unless the newest holds it.
async fn holds(
    store: &BackupStore,
    db: &DatabasePath,
    change: &(impl Fn(&mut History) + Send + Sync),
) -> Result<bool, StoreError> {
    let Some(newest) = newest(store, db).await?.1 else { return Ok(false) };
    let mut again = newest.clone();
    change(&mut again);
    again.trim();
    Ok(again == newest)
}

fn warn_unrecorded(db: &DatabasePath, what: &str, e: &StoreError) {
    tracing::warn!(
        error = %e, db.project = %db.project, db.instance = %db.instance, db.name = %db.database,
        "the history of {}/{}/{} misses a {what}: {e}", db.project, db.instance, db.database
    );
}

/// Records a committed backup (best effort: logged when it cannot).
pub async fn record_backup(store: &BackupStore, db: &DatabasePath, date: RunDate, manifest: &Manifest) {
    let backup = night_backup(manifest);
    let result = update(store, db, |h| {
        let night = h.nights.entry(date.date()).or_default();
        night.backup = Some(backup.clone());
    })
    .await;
    if let Err(e) = result {
        warn_unrecorded(db, "backup", &e);
    }
}

/// Records a reported failure (best effort).
pub async fn record_failure(store: &BackupStore, db: &DatabasePath, date: RunDate, error_class: &str, message: &str) {
    let failure = NightFailure { error_class: error_class.to_owned(), message: message.to_owned(), at: Utc::now() };
    let result = update(store, db, |h| {
        h.nights.entry(date.date()).or_default().failure = Some(failure.clone());
    })
    .await;
    if let Err(e) = result {
        warn_unrecorded(db, "failure", &e);
    }
}

/// Records a restore drill's verdict, given as the verification record (only its `result`,
/// `finished_at` and `restore_secs` are read, as they are stored); best effort.
pub async fn record_verification<T: Serialize + Sync>(
    store: &BackupStore,
    db: &DatabasePath,
    date: RunDate,
    record: &T,
) {
    let verification = match serde_json::to_value(record).and_then(serde_json::from_value::<NightVerification>) {
        Ok(v) => v,
        Err(e) => {
            let e =
                StoreError::Corrupt { key: Key::Verification { db: db.clone(), date }.path(), reason: e.to_string() };
            return warn_unrecorded(db, "drill", &e);
        }
    };
    let result = update(store, db, |h| {
        h.nights.entry(date.date()).or_default().verification = Some(verification.clone());
    })
    .await;
    if let Err(e) = result {
        warn_unrecorded(db, "drill", &e);
    }
}

/// Every history in the store, by database: one listing of `history/`, one read per database.
pub async fn all_histories(store: &BackupStore) -> Result<HashMap<DatabasePath, History>, StoreError> {
    let placeholder = DatabasePath {
        project: ProjectId::parse("p").expect("valid"),
        instance: InstanceName::parse("i").expect("valid"),
        database: DatabaseName::parse("d").expect("valid"),
    };
    let probe = Key::History { db: placeholder, seq: 0 };
    let mut newest: HashMap<DatabasePath, u32> = HashMap::new();
    for o in store.bucket().list(Prefix::of(&probe, 1).as_str()).await? {
        if let Some(Key::History { db, seq }) = Key::parse(&o.key) {
            let e = newest.entry(db).or_insert(seq);
            *e = (*e).max(seq);
        }
    }
    let read: Vec<_> = futures::stream::iter(newest)
        .map(|(db, seq)| async move {
            let h = store.read::<History>(&Key::History { db: db.clone(), seq }).await;
            (db, h)
        })
        .buffer_unordered(READS_IN_FLIGHT)
        .collect()
        .await;
    let mut out = HashMap::new();
    for (db, h) in read {
        match h {
            Ok(Some(h)) => {
                out.insert(db, h);
            }
            // Replaced and deleted between the listing and the read, or unreadable: the page
            // shows the database without its history rather than failing.
            Ok(None) | Err(StoreError::Corrupt { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Rebuilds `db`'s history from its manifests and verification records of the last
/// [`KEEP_NIGHTS`] nights before `today` (failures are not in manifests: a rebuilt history has
/// none), and stores it as a new generation. One listing per retention class and one of
/// `verifications/<db>/`, one read per backup and drill.
pub async fn rebuild(store: &BackupStore, db: &DatabasePath, today: NaiveDate) -> Result<History, StoreError> {
    let since = today - chrono::Duration::days(i64::try_from(KEEP_NIGHTS).unwrap_or(62));
    let mut h = History::new(db);
    for class in RetentionClass::ALL {
        let probe = Key::Manifest { class, db: db.clone(), date: RunDate::from_date(today) };
        for o in store.bucket().list(Prefix::of(&probe, 4).as_str()).await? {
            let Some(Key::Manifest { db: of, date, class }) = Key::parse(&o.key) else { continue };
            if &of != db || date.date() < since {
                continue;
            }
            if let Ok(Some(m)) = store.read::<Manifest>(&Key::Manifest { class, db: of, date }).await {
                h.nights.entry(date.date()).or_default().backup = Some(night_backup(&m));
            }
        }
    }
    let probe = Key::Verification { db: db.clone(), date: RunDate::from_date(today) };
    for o in store.bucket().list(Prefix::of(&probe, 4).as_str()).await? {
        let Some(Key::Verification { date, .. }) = Key::parse(&o.key) else { continue };
        if date.date() < since {
            continue;
        }
        if let Ok(Some(v)) = store.read::<NightVerification>(&Key::Verification { db: db.clone(), date }).await {
            h.nights.entry(date.date()).or_default().verification = Some(v);
        }
    }
    h.trim();
    let nights = h.nights.clone();
    update(store, db, |current| {
        for (date, night) in &nights {
            let entry = current.nights.entry(*date).or_default();
            if entry.backup.is_none() {
                entry.backup.clone_from(&night.backup);
            }
            if entry.verification.is_none() {
                entry.verification.clone_from(&night.verification);
            }
        }
    })
    .await?;
    Ok(history(store, db).await?.unwrap_or(h))
}
