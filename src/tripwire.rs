//! The data-loss tripwire: each new dated backup is compared with the previous backup of its
//! database (per-table row counts and stored size, from the manifests); a backup that looks like
//! data was lost is `suspect`, and the backup before the drop is **held** until an operator releases it.
//!
//! Contract:
//! - A trip is a table of at least `min_rows` rows that lost more than `table_loss_share` of them
//!   or vanished, or a dump of at least `min_bytes` that shrank by more than `shrink_share`
//!   ([`compare`], pure). Growth and smaller changes stay quiet.
//! - On a trip the hold marker `holds/<db>/<previous day>.json` ([`Hold`]) is written with a
//!   conditional create; only the call that creates it reports ([`TripwireReport`] through every
//!   notifier), so retries and several instances report once. On GCS the held backup's manifest
//!   and dump also get an object hold (`temporaryHold`), which lifecycle rules respect.
//! - Prune skips a held backup (`retention::plan`); status shows a database with a hold as
//!   `suspect` (an alarm) until [`release`] deletes the marker (and clears the object holds).
//! - Only dated backups are compared, and only against an older one: a named backup, a late
//!   backfill of an older day and a database's first backup are never compared.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{DatabasePath, DatabaseRef, RunDate};
use crate::notify::{Notifier, TableLoss, TripwireReport};
use crate::settings::TripwireSettings;
use crate::store::bucket::PutOutcome;
use crate::store::layout::{Key, path_of};
use crate::store::manifest::Manifest;
use crate::store::{BackupStore, StoreError};

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

/// Compares `new` with `previous` (the database's backup before it); `None` when nothing trips.
#[must_use]
pub fn compare(previous: &Manifest, new: &Manifest, settings: &TripwireSettings) -> Option<Trip> {
    let mut tables = Vec::new();
    if let (Some(before), Some(after)) = (&previous.row_counts, &new.row_counts) {
        for (table, &rows_before) in before {
            if rows_before < settings.min_rows.max(1) {
                continue;
            }
            let rows_after = after.get(table).copied();
            let lost = rows_before.saturating_sub(rows_after.unwrap_or(0));
            #[expect(clippy::cast_precision_loss, reason = "a share needs no more than f64's 52 bits")]
            let share = lost as f64 / rows_before as f64;
            if rows_after.is_none() || share > settings.table_loss_share {
                tables.push(TableLoss { table: table.clone(), rows_before, rows_after });
            }
        }
    }
    #[expect(clippy::cast_precision_loss, reason = "a share needs no more than f64's 52 bits")]
    let shrunk = previous.bytes >= settings.min_bytes.max(1)
        && (previous.bytes.saturating_sub(new.bytes) as f64 / previous.bytes as f64) > settings.shrink_share;
    (shrunk || !tables.is_empty()).then_some(Trip {
        tables,
        bytes_before: previous.bytes,
        bytes_after: new.bytes,
        shrunk,
    })
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
    /// Whether the store also holds the objects (GCS `temporaryHold`).
    pub object_hold: bool,
}

/// After a dated backup `new` of `db` was committed: compares it with `previous` (the `latest/`
/// copy read before the commit) and, on a trip, holds `previous` and reports once. Failures are
/// logged, never fatal: the backup itself is good.
pub async fn check(
    store: &BackupStore,
    notifiers: &[std::sync::Arc<dyn Notifier>],
    db: &DatabaseRef,
    previous: Option<&Manifest>,
    new: &Manifest,
) {
    let (Some(settings), Some(previous)) = (store.tripwire(), previous) else { return };
    if store.layout().label().is_some() || previous.run_date >= new.run_date {
        return;
    }
    let Some(trip) = compare(previous, new, settings) else { return };
    let Ok(held_date) = NaiveDate::parse_from_str(&previous.run_date, "%Y-%m-%d").map(RunDate::from_date) else {
        return;
    };
    let key = Key::Hold { db: path_of(db), date: held_date };
    let reason = format!(
        "possible data loss in the backup of {}: {}; the backup of {} is held until released",
        new.run_date,
        trip.words(),
        previous.run_date
    );
    let mut hold = Hold {
        project: new.project.clone(),
        instance: new.instance.clone(),
        database: new.database.clone(),
        run_date: previous.run_date.clone(),
        suspect_run_date: new.run_date.clone(),
        reason: reason.clone(),
        trip: trip.clone(),
        held_at: Utc::now(),
        object_hold: false,
    };
    hold.object_hold = set_object_holds(store, &path_of(db), held_date, previous, true).await;
    match store.create_json(&key, &hold).await {
        Ok(PutOutcome::Created) => {}
        Ok(PutOutcome::AlreadyExists) => return,
        Err(e) => {
            tracing::error!(error = %e, db.path = %db, "could not write the hold of {}: {e}", previous.run_date);
            // No marker, no way to release it: an object hold without one would outlive every rule.
            if hold.object_hold {
                set_object_holds(store, &path_of(db), held_date, previous, false).await;
            }
            return;
        }
    }
    tracing::warn!(db.path = %db, run.date = %new.run_date, tripwire.held = %previous.run_date, "{reason}");
    let report = TripwireReport {
        kind: "data_loss_suspected".to_owned(),
        source: new.source.clone(),
        project: new.project.clone(),
        instance: new.instance.clone(),
        database: new.database.clone(),
        run_date: new.run_date.clone(),
        held_run_date: previous.run_date.clone(),
        tables: trip.tables.clone(),
        bytes_before: trip.bytes_before,
        bytes_after: trip.bytes_after,
        text: format!(":warning: data-backup: {db}: {reason}"),
    };
    for n in notifiers {
        if let Err(e) = n.notify_tripwire(&report).await {
            tracing::warn!(error = %e, db.path = %db, "{e}");
        }
    }
}

/// Sets or clears the object holds of a backup's manifest and dump; `true` when the store has them.
async fn set_object_holds(
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
    let path = probe.path();
    let prefix = format!("{}/", path.split('/').next().unwrap_or_default());
    Ok(store
        .bucket()
        .list(&prefix)
        .await?
        .into_iter()
        .filter_map(|o| match Key::parse(&o.key)? {
            Key::Hold { db, date } => Some((db.clone(), Key::Hold { db, date })),
            _ => None,
        })
        .collect())
}

fn manifest_key(store: &BackupStore, db: &DatabasePath, date: RunDate) -> Key {
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
    tracing::info!(db.path = %crate::restore::path_text(db), run.date = %date, "hold released");
    Ok(Some(hold))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(bytes: u64, rows: &[(&str, u64)]) -> Manifest {
        let json = serde_json::json!({
            "version": 1, "source": "s", "project": "p", "instance": "i", "database": "d",
            "engine": "postgres", "run_date": "2026-11-22", "run_id": "r", "class": "daily",
            "key": "daily/p/i/d/2026-11-22/d.dump.zst", "format": "pg_custom_zstd", "compression": "zstd",
            "compression_level": 3, "bytes": bytes, "raw_bytes": null, "sha256": null, "object_version": null,
            "started_at": "2026-11-22T02:00:00Z", "finished_at": "2026-11-22T02:01:00Z",
            "tools": {"dump": "pg_dump", "server": "pg", "data_backup": "x"},
            "row_counts": rows.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect::<std::collections::BTreeMap<_, _>>(),
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn losses_past_the_share_trip_and_growth_and_small_changes_do_not() {
        let s = TripwireSettings::default();
        let before = manifest(10 << 20, &[("public.orders", 10_000), ("public.tiny", 10), ("public.audit", 5_000)]);
        let table = [
            (manifest(10 << 20, &[("public.orders", 12_000), ("public.tiny", 0), ("public.audit", 5_000)]), None),
            (manifest(10 << 20, &[("public.orders", 9_500), ("public.tiny", 10), ("public.audit", 4_750)]), None),
            (manifest(10 << 20, &[("public.orders", 5_000), ("public.audit", 2_500)]), None),
            (
                manifest(10 << 20, &[("public.orders", 1_000), ("public.audit", 5_000)]),
                Some(vec![TableLoss { table: "public.orders".into(), rows_before: 10_000, rows_after: Some(1_000) }]),
            ),
            (
                manifest(10 << 20, &[("public.orders", 10_000)]),
                Some(vec![TableLoss { table: "public.audit".into(), rows_before: 5_000, rows_after: None }]),
            ),
        ];
        for (after, expected) in table {
            assert_eq!(compare(&before, &after, &s).map(|t| t.tables), expected, "{:?}", after.row_counts);
        }
        let shrunk = compare(&before, &manifest(4 << 20, &[("public.orders", 10_000), ("public.audit", 5_000)]), &s)
            .expect("a dump that lost 60% trips");
        assert!(shrunk.shrunk && shrunk.tables.is_empty());
        let small = manifest(1000, &[]);
        assert_eq!(compare(&small, &manifest(10, &[]), &s), None, "dumps under min_bytes are not compared");
    }
}
