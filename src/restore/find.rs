//! Finding the backup a restore asks for ([`Selector`]): through the catalog's manifests, never a
//! listing's order (see the `restore` module docs for `--latest`, `--date`, `--at` and labels).

use chrono::{DateTime, Utc};

use super::error::RestoreError;
use crate::model::{DatabasePath, Label, RunDate};
use crate::store::catalog::{StoredBackup, labelled_backups, stored_backups};
use crate::store::layout::Key;
use crate::store::manifest::Manifest;
use crate::store::{BackupStore, StoreError};

/// Which backup of a database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// The named backup with this label (`labels/<label>/…`).
    Label(Label),
    /// The newest.
    Latest,
    /// The one of this run date.
    Date(RunDate),
    /// The newest whose run date is on or before this time's day and whose export started at or before it.
    At(DateTime<Utc>),
}

fn no_backup(db: &DatabasePath, what: &str, all: &[StoredBackup]) -> RestoreError {
    let dates: Vec<String> = all.iter().take(5).map(|b| b.date.to_string()).collect();
    let available = if dates.is_empty() {
        "it has no backups".to_owned()
    } else {
        format!("newest backups: {}{}", dates.join(", "), if all.len() > 5 { ", …" } else { "" })
    };
    RestoreError::NotFound(format!("no backup of {} {what} ({available})", path_text(db)))
}

/// `project/instance/database`.
#[must_use]
pub fn path_text(db: &DatabasePath) -> String {
    use crate::model::glob_form;
    format!(
        "{}/{}/{}",
        glob_form(db.project.as_str()),
        glob_form(db.instance.as_str()),
        glob_form(db.database.as_str())
    )
}

/// Finds the backup `selector` names, through the manifests (see the module docs).
pub async fn find_backup(store: &BackupStore, db: &DatabasePath, selector: Selector) -> Result<Manifest, RestoreError> {
    if let Selector::Label(label) = &selector {
        let key = Key::LabelManifest { label: label.clone(), db: db.clone() };
        let Some(manifest) = store.read::<Manifest>(&key).await? else {
            let labels: Vec<String> =
                labelled_backups(store, db).await?.into_iter().map(|(l, _)| l.to_string()).collect();
            let available =
                if labels.is_empty() { "it has none".to_owned() } else { format!("it has: {}", labels.join(", ")) };
            return Err(RestoreError::NotFound(format!(
                "no backup of {} labelled `{label}` ({available})",
                path_text(db)
            )));
        };
        if store.bucket().head(&manifest.key).await.map_err(StoreError::from)?.is_none() {
            return Err(RestoreError::Integrity {
                key: key.path(),
                reason: "the manifest exists but its dump object is missing".into(),
            });
        }
        return Ok(manifest);
    }
    let all = stored_backups(store, db).await?;
    let candidates: Vec<&StoredBackup> = match selector {
        Selector::Label(_) => Vec::new(),
        Selector::Latest => all.iter().collect(),
        Selector::Date(d) => all.iter().filter(|b| b.date == d).collect(),
        Selector::At(t) => all.iter().filter(|b| b.date.date() <= t.date_naive()).collect(),
    };
    for b in candidates {
        if b.dump.is_none() {
            if let Selector::Date(_) = selector {
                return Err(RestoreError::Integrity {
                    key: b.manifest.path(),
                    reason: "the manifest exists but its dump object is missing".into(),
                });
            }
            tracing::warn!(key = %b.manifest.path(), "skipping a backup whose dump object is missing");
            continue;
        }
        let Some(manifest) = store.read::<Manifest>(&b.manifest).await? else { continue };
        if let Selector::At(t) = selector
            && manifest.started_at > t
        {
            tracing::info!(key = %b.manifest.path(), started_at = %manifest.started_at, "skipping a backup that started after --at");
            continue;
        }
        return Ok(manifest);
    }
    let what = match selector {
        Selector::Label(_) | Selector::Latest => "at all".to_owned(),
        Selector::Date(d) => format!("for {d}"),
        Selector::At(t) => format!("started at or before {}", t.to_rfc3339()),
    };
    Err(no_backup(db, &what, &all))
}
