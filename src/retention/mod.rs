//! Retention: the two ways an expired backup goes away, bucket lifecycle rules ([`lifecycle()`]) and
//! the prune ([`plan()`] then [`prune()`]).
//!
//! The calendar (the class a run date belongs to, the first segment of a backup's key) lives in
//! `crate::model::calendar`; the [`RetentionPolicy`] (how long each class is kept, resolved from
//! `[retention]` in the settings) in `crate::settings::retention`. Both are re-exported here. The
//! policy drives both ways:
//! - A backup of class `c` with run date `d` is **expired** on `as_of` when `as_of - d > keep_days(c)`
//!   (per-source overrides apply to the backups whose project segment is the source's name).
//!   Lifecycle rules delete at object age `keep_days`; both keep a backup at least `keep_days` days.
//! - The prune ([`plan()`] then [`prune()`]) lists only the class prefixes (and `verifications/`), so
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
//!
//! - Off-site copies (`[[copies]]`) are pruned by the same policy and plan, each against its own
//!   listing, after the primary ([`prune_with_copies`]); a copy's failure is in its [`CopyPrune`].
//!
//! The files: `plan.rs` (pure), `prune.rs` (the store side), `copies.rs` (the copies' prunes), `lifecycle.rs`, `prefixes.rs` (the
//! key prefixes both list or match) and `error.rs`; they name each other by their own path.

pub mod copies;
pub mod error;
pub mod lifecycle;
pub mod plan;
mod prefixes;
pub mod prune;

use chrono::NaiveDate;

pub use crate::model::calendar::{RetentionClass, class_of};
pub use crate::settings::retention::{ClassRule, Colder, ColderStorage, RetentionPolicy};
pub use copies::{prune_copies, prune_copies_after_schedule, prune_with_copies};
pub use error::RetentionError;
pub use lifecycle::{ABORT_MULTIPART_AFTER_DAYS, LifecycleFormat, lifecycle};
pub use plan::{CopyPrune, Drills, PlanEntry, PrunePlan, plan, protected_dates};
pub use prune::{PruneRecord, prune, prune_after_schedule};

use crate::model::names::InvalidField;

/// Parses `as_of` (`YYYY-MM-DD`).
pub fn parse_as_of(value: &str) -> Result<NaiveDate, InvalidField> {
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .filter(|_| value.len() == 10)
        .ok_or_else(|| InvalidField::new("as_of", format!("{value:?} is not a date of the form YYYY-MM-DD")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn as_of_must_be_a_date() {
        assert_eq!(parse_as_of("2026-02-28").unwrap(), d("2026-02-28"));
        for bad in ["2026-02-30", "2026-2-28", "yesterday", ""] {
            assert_eq!(parse_as_of(bad).unwrap_err().field, "as_of", "{bad}");
        }
    }
}
