//! The listing of a database's backups, page by page and newest first, with each dated backup's
//! last verification (`GET /backups`, `data-backup list`).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::RestoreError;
use super::find::path_text;
use crate::model::{DatabasePath, Engine, Label, RunDate};
use crate::store::BackupStore;
use crate::store::catalog::{labelled_backups, stored_backups, verified_dates};
use crate::store::layout::Key;
use crate::store::manifest::{DumpFormat, Manifest};
use crate::store::verification::{VerificationRecord, VerificationSummary};

/// One backup in a listing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BackupSummary {
    /// The day it belongs to.
    pub run_date: String,
    /// Retention class (`label` for a named backup, which retention never removes).
    pub class: String,
    /// The name of an on-demand backup (`labels/<label>/…`); absent for the dated ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Engine.
    pub engine: Engine,
    /// Stored format.
    pub format: DumpFormat,
    /// Object key of the dump.
    pub key: String,
    /// Size of the stored object in bytes.
    pub bytes: u64,
    /// When the dump was stored.
    pub finished_at: DateTime<Utc>,
    /// Whether the dump is encrypted (age).
    pub encrypted: bool,
    /// The age recipients that can decrypt it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    /// The last verification of this backup, if it was verified.
    pub verification: Option<VerificationSummary>,
}

/// A page of backups, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BackupPage {
    /// `project/instance/database`.
    pub database: String,
    /// Backups, newest first.
    pub backups: Vec<BackupSummary>,
    /// Pass as `page_token` for the next (older) page; absent on the last page.
    pub next_page_token: Option<String>,
}

/// Largest page of [`list_backups`].
pub const MAX_PAGE_SIZE: usize = 200;

/// One page of the backups of `db`, newest first (by run date; on one day the dated backup, then
/// the named ones by label). `page_token` is the `next_page_token` of the previous page (the run
/// date of its last backup: the next page starts before it, so a page holds every backup of the
/// days it shows and may exceed `page_size` by the named backups of its last day).
pub async fn list_backups(
    store: &BackupStore,
    db: &DatabasePath,
    page_token: Option<&str>,
    page_size: usize,
) -> Result<BackupPage, RestoreError> {
    let before = match page_token {
        Some(token) => {
            Some(NaiveDate::parse_from_str(token, "%Y-%m-%d").ok().filter(|_| token.len() == 10).ok_or_else(|| {
                RestoreError::Invalid(format!("page_token {token:?} is not a token this service gave"))
            })?)
        }
        None => None,
    };
    let page_size = page_size.clamp(1, MAX_PAGE_SIZE);
    // (run date, label, manifest key): dated backups from the listing, named ones from their manifests.
    let mut entries: Vec<(RunDate, Option<Label>, Key, Option<Manifest>)> =
        stored_backups(store, db).await?.into_iter().map(|b| (b.date, None, b.manifest, None)).collect();
    for (label, key) in labelled_backups(store, db).await? {
        let Some(m) = store.read::<Manifest>(&key).await? else { continue };
        let Ok(date) = RunDate::try_from(m.run_date.clone()) else { continue };
        entries.push((date, Some(label), key, Some(m)));
    }
    entries.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    entries.retain(|e| before.is_none_or(|d| e.0.date() < d));
    let mut shown = entries.len().min(page_size);
    while shown < entries.len() && entries[shown].0 == entries[shown - 1].0 {
        shown += 1;
    }
    let verified: std::collections::HashSet<RunDate> = verified_dates(store, db).await?;
    let mut backups = Vec::new();
    let mut last = None;
    for (date, label, key, manifest) in entries.iter().take(shown) {
        last = Some(*date);
        let m = match manifest {
            Some(m) => m.clone(),
            None => match store.read::<Manifest>(key).await? {
                Some(m) => m,
                None => continue,
            },
        };
        // Restore drills verify the dated backups; a named one shows none.
        let verification = if label.is_none() && verified.contains(date) {
            store
                .read::<VerificationRecord>(&Key::Verification { db: db.clone(), date: *date })
                .await
                .ok()
                .flatten()
                .map(|r| r.summary())
        } else {
            None
        };
        backups.push(BackupSummary {
            run_date: m.run_date,
            class: if label.is_some() { "label".to_owned() } else { m.class },
            label: label.as_ref().map(ToString::to_string),
            engine: m.engine,
            format: m.format,
            key: m.key,
            bytes: m.bytes,
            finished_at: m.finished_at,
            encrypted: m.encryption.is_some(),
            recipients: m.encryption.map(|e| e.recipients).unwrap_or_default(),
            verification,
        });
    }
    let next_page_token = if entries.len() > shown { last.map(|d| d.to_string()) } else { None };
    Ok(BackupPage { database: path_text(db), backups, next_page_token })
}
