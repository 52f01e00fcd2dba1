//! The state of each off-site copy (`[[copies]]`, ADR 0023) per database: which run date the
//! copy's newest backup has, and whether that is the backup it should hold ([`copy_states`]).
//!
//! What is read, per copy: its `latest/` (one listing, then one read per database; each copy
//! advances its own `latest/` as the export advances the primary's, `crate::copy::target`), and
//! rarely one primary manifest (below). A copy whose store cannot be read is an `error` for the
//! whole copy (every database's state in it, and the copy's summary says why); the status still
//! answers.
//!
//! The rule, per database with a primary backup and per copy ([`due_date`], [`copy_state`]):
//! - the copy is judged against the **due** backup: the newest run date, up to the primary's
//!   newest, whose retention class (`crate::model::calendar`, the layout's `weekly_on`) the copy
//!   takes (`classes`; all by default). A copy of `monthly` only is due the 1st of the month's
//!   backup all month long, never the daily ones;
//! - **grace**: when the due backup is the primary's newest and it finished less than
//!   `status.copy_grace_minutes` (60 by default) ago, the copy is judged against the one due
//!   before it instead (the copy may still be in flight);
//! - `ok` when the copy's newest run date is the due one or later; also `ok` when the due date is
//!   not the primary's newest and the primary has no backup on that day (one read: a missed
//!   night is not the copy's fault, and older backups are not looked for); else `missing` when
//!   the copy holds no backup of the database, `behind` when it holds an older one.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Days, NaiveDate, Utc};

use crate::model::RunDate;
use crate::runs::ledger::{DbKey, date_of, db_ref, key_of};
use crate::settings::CopySettings;
use crate::status::{CopyState, CopyStatus, CopySummary};
use crate::store::BackupStore;
use crate::store::manifest::Manifest;

/// How far back a due date is looked for: a year and a day (every class falls in it).
const DUE_LOOKBACK_DAYS: u64 = 366;

/// One off-site copy as the status reads it: its settings (name, classes) and its store.
#[derive(Clone, Debug)]
pub struct StatusCopy {
    /// Its `[[copies]]` entry.
    pub settings: CopySettings,
    /// Its store, under the primary's layout.
    pub store: BackupStore,
}

/// The run date a copy is judged against, for a database whose newest primary backup is of
/// `primary_newest` and finished at `finished_at`, with `grace` for a copy in flight; `takes`
/// says whether the copy takes the backup of a date (by its class). `None`: no backup is due in
/// the copy (yet).
#[must_use]
pub fn due_date(
    primary_newest: NaiveDate,
    finished_at: DateTime<Utc>,
    now: DateTime<Utc>,
    grace: chrono::Duration,
    takes: impl Fn(NaiveDate) -> bool,
) -> Option<NaiveDate> {
    let mut due = (0..=DUE_LOOKBACK_DAYS)
        .filter_map(|back| primary_newest.checked_sub_days(Days::new(back)))
        .filter(|d| takes(*d));
    let first = due.next()?;
    let in_flight = first == primary_newest && now - finished_at < grace;
    if in_flight { due.next() } else { Some(first) }
}

/// The state of a copy whose newest backup is of `copy_newest`, judged against `due`;
/// `primary_holds_due` says whether the primary has a backup on the due date.
#[must_use]
pub fn copy_state(copy_newest: Option<NaiveDate>, due: Option<NaiveDate>, primary_holds_due: bool) -> CopyState {
    match (due, copy_newest) {
        (None, _) => CopyState::Ok,
        (Some(due), Some(newest)) if newest >= due => CopyState::Ok,
        _ if !primary_holds_due => CopyState::Ok,
        (_, None) => CopyState::Missing,
        (_, Some(_)) => CopyState::Behind,
    }
}

/// The state of `copy` for the database whose newest primary manifest is `m`, given the copy's
/// newest run date; reads the primary's due manifest only when the copy does not hold it.
async fn state_of(
    primary: &BackupStore,
    copy: &StatusCopy,
    m: &Manifest,
    copy_newest: Option<NaiveDate>,
    now: DateTime<Utc>,
    grace: chrono::Duration,
) -> CopyState {
    let Some(newest) = date_of(&m.run_date).map(RunDate::date) else { return CopyState::Ok };
    let takes = |d: NaiveDate| copy.settings.copies_class(primary.layout().class(RunDate::from_date(d)));
    let due = due_date(newest, m.finished_at, now, grace, takes);
    let holds = match due {
        Some(d) if d != newest && copy_newest.is_none_or(|c| c < d) => {
            match db_ref(&m.source, &m.project, &m.instance, &m.database, m.engine) {
                // A failed read counts as held: an unknown is not hidden as `ok`.
                Some(db) => !matches!(primary.manifest(&db, RunDate::from_date(d)).await, Ok(None)),
                None => true,
            }
        }
        _ => true,
    };
    copy_state(copy_newest, due, holds)
}

/// Every copy's state for each database of `latest` (the primary's `latest/` manifests), by
/// database, in the order of `copies`; and each copy's summary. `grace_minutes`:
/// `status.copy_grace_minutes`.
pub async fn copy_states(
    primary: &BackupStore,
    latest: &BTreeMap<DbKey, Manifest>,
    copies: &[StatusCopy],
    now: DateTime<Utc>,
    grace_minutes: u32,
) -> (HashMap<DbKey, Vec<CopyStatus>>, Vec<CopySummary>) {
    let grace = chrono::Duration::minutes(i64::from(grace_minutes));
    let mut rows: HashMap<DbKey, Vec<CopyStatus>> = HashMap::new();
    let mut summaries = Vec::with_capacity(copies.len());
    for copy in copies {
        let name = copy.settings.name.clone();
        let mut counts: BTreeMap<String, usize> = CopyState::ALL.iter().map(|s| (s.as_str().to_owned(), 0)).collect();
        let (held, error) = match crate::store::catalog::latest_manifests(&copy.store).await {
            Ok(held) => (Some(held.into_iter().map(|(db, m)| (key_of(&db), m)).collect::<HashMap<_, _>>()), None),
            Err(e) => {
                tracing::warn!(copy.name = %name, error = %e, "status cannot read the copy `{name}`: {e}");
                (None, Some(e.to_string()))
            }
        };
        for (k, m) in latest {
            let (newest_run_date, state) = match &held {
                None => (None, CopyState::Error),
                Some(held) => {
                    let newest = held.get(k).map(|c| c.run_date.clone());
                    let date = newest.as_deref().and_then(date_of).map(RunDate::date);
                    (newest, state_of(primary, copy, m, date, now, grace).await)
                }
            };
            *counts.entry(state.as_str().to_owned()).or_default() += 1;
            rows.entry(k.clone()).or_default().push(CopyStatus { name: name.clone(), newest_run_date, state });
        }
        summaries.push(CopySummary { name, counts, error });
    }
    (rows, summaries)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone as _, Weekday};

    use super::*;
    use crate::model::calendar::{RetentionClass, class_of};

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn at(day: &str, hour: u32) -> DateTime<Utc> {
        Utc.from_utc_datetime(&d(day).and_hms_opt(hour, 0, 0).unwrap())
    }

    fn takes(classes: &'static [RetentionClass]) -> impl Fn(NaiveDate) -> bool {
        move |day| classes.contains(&class_of(day, Weekday::Mon))
    }

    const ALL: &[RetentionClass] = &RetentionClass::ALL;
    const HOUR: chrono::Duration = chrono::Duration::hours(1);
    const MONTHLY: &[RetentionClass] = &[RetentionClass::Monthly];

    #[test]
    fn a_copy_of_every_class_is_due_the_newest_backup_once_its_grace_is_over() {
        // 2026-12-09 is a Wednesday (daily); the backup finished at 02:00.
        let finished = at("2026-12-09", 2);
        assert_eq!(due_date(d("2026-12-09"), finished, at("2026-12-09", 4), HOUR, takes(ALL)), Some(d("2026-12-09")));
        // Within the grace the copy is judged against the backup before.
        assert_eq!(due_date(d("2026-12-09"), finished, at("2026-12-09", 2), HOUR, takes(ALL)), Some(d("2026-12-08")));
        let no_grace = chrono::Duration::zero();
        assert_eq!(due_date(d("2026-12-09"), finished, finished, no_grace, takes(ALL)), Some(d("2026-12-09")));
        let due = Some(d("2026-12-09"));
        assert_eq!(copy_state(Some(d("2026-12-09")), due, true), CopyState::Ok);
        assert_eq!(copy_state(Some(d("2026-12-10")), due, true), CopyState::Ok);
        assert_eq!(copy_state(Some(d("2026-12-08")), due, true), CopyState::Behind);
        assert_eq!(copy_state(None, due, true), CopyState::Missing);
    }

    #[test]
    fn a_monthly_copy_is_due_the_first_of_the_month_all_month_long() {
        let now = at("2026-12-20", 12);
        let due = due_date(d("2026-12-20"), at("2026-12-20", 2), now, HOUR, takes(MONTHLY));
        assert_eq!(due, Some(d("2026-12-01")));
        assert_eq!(copy_state(Some(d("2026-12-01")), due, true), CopyState::Ok, "not behind on a daily day");
        assert_eq!(copy_state(Some(d("2026-11-01")), due, true), CopyState::Behind);
        // 1 January is yearly, not monthly: a monthly-only copy is due the 1st of December then.
        assert_eq!(due_date(d("2027-01-05"), at("2027-01-05", 2), now, HOUR, takes(MONTHLY)), Some(d("2026-12-01")));
        // The 1st's own backup gets the grace too.
        assert_eq!(
            due_date(d("2026-12-01"), at("2026-12-01", 2), at("2026-12-01", 2), HOUR, takes(MONTHLY)),
            Some(d("2026-11-01"))
        );
    }

    #[test]
    fn a_night_the_primary_missed_is_not_the_copy_s_fault() {
        let due = Some(d("2026-12-01"));
        assert_eq!(copy_state(Some(d("2026-11-01")), due, false), CopyState::Ok);
        assert_eq!(copy_state(None, due, false), CopyState::Ok);
        assert_eq!(copy_state(None, None, true), CopyState::Ok, "nothing due yet");
    }
}
