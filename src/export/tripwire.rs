//! The data-loss tripwire: each new dated backup is compared with the previous backup of its
//! database (per-table row counts and stored size, from the manifests); a backup that looks like
//! data was lost is `suspect`, and the backup before the drop is **held** (`crate::store::holds`)
//! until an operator releases it.
//!
//! Contract:
//! - A trip is a table of at least `min_rows` rows that lost more than `table_loss_share` of them
//!   or vanished, or a dump of at least `min_bytes` that shrank by more than `shrink_share`
//!   ([`compare`], pure). Growth and smaller changes stay quiet.
//! - On a trip the hold marker `holds/<db>/<previous day>.json` is written with a conditional
//!   create; only the call that creates it answers a [`TripwireReport`] (which the export service
//!   sends through every notifier), so retries and several instances report once. On GCS the held
//!   backup's manifest and dump also get an object hold (`temporaryHold`).
//! - Only dated backups are compared, and only against an older one: a named backup, a late
//!   backfill of an older day and a database's first backup are never compared.

use chrono::{NaiveDate, Utc};

use crate::model::{DatabaseRef, RunDate};
use crate::notify::TripwireReport;
use crate::settings::TripwireSettings;
use crate::store::BackupStore;
use crate::store::bucket::PutOutcome;
use crate::store::holds::{Hold, TableLoss, Trip, set_object_holds};
use crate::store::layout::{Key, path_of};
use crate::store::manifest::Manifest;

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

/// After a dated backup `new` of `db` was committed: compares it with `previous` (the `latest/`
/// copy read before the commit) and, on a trip, holds `previous` and answers the one report to
/// send (`None` when nothing tripped or another call already held it). Failures are logged, never
/// fatal: the backup itself is good.
pub async fn check(
    store: &BackupStore,
    db: &DatabaseRef,
    previous: Option<&Manifest>,
    new: &Manifest,
) -> Option<TripwireReport> {
    let (Some(settings), Some(previous)) = (store.tripwire(), previous) else { return None };
    if store.layout().label().is_some() || previous.run_date >= new.run_date {
        return None;
    }
    let trip = compare(previous, new, settings)?;
    let Ok(held_date) = NaiveDate::parse_from_str(&previous.run_date, "%Y-%m-%d").map(RunDate::from_date) else {
        return None;
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
        Ok(PutOutcome::AlreadyExists) => return None,
        Err(e) => {
            tracing::error!(error = %e, db.path = %db, "could not write the hold of {}: {e}", previous.run_date);
            // No marker, no way to release it: an object hold without one would outlive every rule.
            if hold.object_hold {
                set_object_holds(store, &path_of(db), held_date, previous, false).await;
            }
            return None;
        }
    }
    tracing::warn!(db.path = %db, run.date = %new.run_date, tripwire.held = %previous.run_date, "{reason}");
    Some(TripwireReport {
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
    })
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
