//! Holds: a backup the data-loss tripwire found suspect keeps the backup before it from expiring
//! until an operator releases it. This file owns the hold objects: the marker
//! `holds/<db>/<day>.json` ([`Hold`], with the [`Trip`] that set it), the object holds on GCS
//! (`temporaryHold` on the held manifest and dump, which lifecycle rules respect), and the reads and
//! the release that retention, status and the CLI use.
//!
//! Contract:
//! - A marker is written once (conditional create) by the tripwire (`crate::export::tripwire`).
//! - Prune skips a held backup; status shows a database with a hold as `suspect` until
//!   [`release`] deletes the marker (and clears the object holds).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{DatabasePath, RunDate};
use crate::store::layout::{Key, Prefix};
use crate::store::manifest::Manifest;
use crate::store::{BackupStore, StoreError};

/// One table that lost rows between two backups.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TableLoss {
    /// `schema.table`.
    pub table: String,
    /// Rows in the previous backup.
    pub rows_before: u64,
    /// Rows in the new backup; absent when the table vanished.
    pub rows_after: Option<u64>,
}

/// Why a new backup is suspect against the previous one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Trip {
    /// Tables that lost more than the allowed share of their rows, or vanished.
    pub tables: Vec<TableLoss>,
    /// Stored size of the previous backup.
    pub bytes_before: u64,
    /// Stored size of the new backup.
    pub bytes_after: u64,
    /// Whether the dump shrank past `shrink_share`.
    pub shrunk: bool,
}

impl Trip {
    /// The trip in words: `public.orders 10000 → 1000 rows; public.audit vanished (5000 rows)`.
    #[must_use]
    pub fn words(&self) -> String {
        let mut parts: Vec<String> = self
            .tables
            .iter()
            .map(|t| match t.rows_after {
                Some(after) => format!("{} {} → {after} rows", t.table, t.rows_before),
                None => format!("{} vanished ({} rows)", t.table, t.rows_before),
            })
            .collect();
        if self.shrunk {
            parts.push(format!("dump shrank from {} to {} bytes", self.bytes_before, self.bytes_after));
        }
        parts.join("; ")
    }
}

/// The hold marker of a backup (`holds/<project>/<instance>/<database>/<YYYY-MM-DD>.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Hold {
    /// Project.
    pub project: String,
    /// Instance.
    pub instance: String,
    /// Database.
    pub database: String,
    /// Run date of the held backup (the last one before the drop).
    pub run_date: String,
    /// Run date of the suspect backup that tripped.
    pub suspect_run_date: String,
    /// Why, in words.
    pub reason: String,
    /// What tripped.
    pub trip: Trip,
    /// When the hold was set.
    pub held_at: DateTime<Utc>,
    /// Whether the store also holds the objects (GCS `temporaryHold`, S3 Object Lock legal hold).
    pub object_hold: bool,
}

/// Sets or clears the object holds of a backup's manifest and dump; `true` when the store has them.
pub async fn set_object_holds(
    store: &BackupStore,
    db: &DatabasePath,
    date: RunDate,
    manifest: &Manifest,
    on: bool,
) -> bool {
    let manifest_key = manifest_key(store, db, date).path();
    for key in [manifest.key.as_str(), manifest_key.as_str()] {
        match store.bucket().set_hold(key, on).await {
            Ok(true) => {}
            Ok(false) => return false,
            Err(e) => {
                tracing::warn!(error = %e, key, "could not set the object hold of {key} to {on}");
                return false;
            }
        }
    }
    true
}

/// The command that releases the hold of `project/instance/database`'s backup of `date`: each name
/// as its key segment, which the CLI decodes back, so it is one shell word whatever the name holds.
#[must_use]
pub fn release_command(project: &str, instance: &str, database: &str, date: &str) -> String {
    use crate::model::key_segment;
    format!(
        "data-backup hold release --database {}/{}/{} --date {date}",
        key_segment(project),
        key_segment(instance),
        key_segment(database)
    )
}

/// Every hold in the store, oldest first.
pub async fn holds(store: &BackupStore) -> Result<Vec<Hold>, StoreError> {
    let mut out = Vec::new();
    for (_, key) in hold_keys(store).await? {
        if let Some(hold) = store.read::<Hold>(&key).await? {
            out.push(hold);
        }
    }
    out.sort_by(|a, b| {
        (&a.run_date, &a.project, &a.instance, &a.database).cmp(&(&b.run_date, &b.project, &b.instance, &b.database))
    });
    Ok(out)
}

/// The keys under `holds/`, with the database each holds.
pub async fn hold_keys(store: &BackupStore) -> Result<Vec<(DatabasePath, Key)>, StoreError> {
    let probe = Key::Hold { db: placeholder(), date: RunDate::from_date(NaiveDate::MIN) };
    let prefix = Prefix::of(&probe, 1);
    Ok(store
        .bucket()
        .list(prefix.as_str())
        .await?
        .into_iter()
        .filter_map(|o| match Key::parse(&o.key)? {
            Key::Hold { db, date } => Some((db.clone(), Key::Hold { db, date })),
            _ => None,
        })
        .collect())
}

pub fn manifest_key(store: &BackupStore, db: &DatabasePath, date: RunDate) -> Key {
    Key::Manifest { class: store.layout().class(date), db: db.clone(), date }
}

fn placeholder() -> DatabasePath {
    DatabasePath {
        project: crate::model::ProjectId::parse("_").expect("valid name"),
        instance: crate::model::InstanceName::parse("_").expect("valid name"),
        database: crate::model::DatabaseName::parse("_").expect("valid name"),
    }
}

/// Releases the hold of `db`'s backup of `date`: clears the object holds, then deletes the
/// marker (so prune may expire the backup again and status stops calling the database
/// `suspect`). Answers the released hold, `None` when there was none.
pub async fn release(store: &BackupStore, db: &DatabasePath, date: RunDate) -> Result<Option<Hold>, StoreError> {
    let key = Key::Hold { db: db.clone(), date };
    let Some(hold) = store.read::<Hold>(&key).await? else { return Ok(None) };
    // Cleared whatever the marker says: a hold set on the dump only (the manifest's failed) is
    // recorded as none, and clearing is idempotent.
    if let Some(manifest) = store.read::<Manifest>(&manifest_key(store, db, date)).await? {
        set_object_holds(store, db, date, &manifest, false).await;
    }
    store.bucket().delete(&key.path()).await?;
    tracing::info!(db.path = %path_text(db), run.date = %date, "hold released");
    Ok(Some(hold))
}

/// `project/instance/database` with each `/` in a name written `%2F`, as logs name a database.
fn path_text(db: &DatabasePath) -> String {
    use crate::model::glob_form;
    format!(
        "{}/{}/{}",
        glob_form(db.project.as_str()),
        glob_form(db.instance.as_str()),
        glob_form(db.database.as_str())
    )
}
