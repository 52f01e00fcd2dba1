//! [`FollowUpPolicy`]: when a Cloud SQL export that is not done yet is checked again (ADR 0021).
//!
//! In `cloud_tasks` mode an `/export` delivery never waits for its operation: it starts, attaches
//! to or adopts it, then asks the queue for a follow-up task for the same database and day, to be
//! delivered when the operation is expected to end, and answers 200. The expected end is the
//! operation's start plus [`AIM_SHARE`] of the database's previous backup's duration (its manifest's
//! `finished_at - started_at`), or `export.follow_up_default_secs` without one; a busy instance
//! aims at the end of the operation in its way the same way (another database's export: that
//! database's previous duration). The delay is kept between `follow_up_min_secs` and
//! `follow_up_max_secs`; an operation already past that is checked again after an eighth of its
//! age so far ([`OVERDUE_DIVISOR`], within the same bounds). Check `n` of a day names its task
//! `<task id>-c<n>`: a duplicate delivery asks for the same name and creates nothing. A chain
//! is bounded: the check that would be number `follow_up_max_checks + 1` is not made; the export
//! is a failure instead ([`NextCheck::Exhausted`]), reported once.
//!
//! Pure: no I/O, the clock is an argument.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::settings::ExportSettings;

/// The share of the expected duration a check aims at: a night's durations vary by some 15%
/// around the last one, and a check that comes early costs one request while one that comes late
/// leaves the instance idle (bench/night: 1.12× the per-instance floor at 0.85, 1.19× at 1.0).
pub const AIM_SHARE: f64 = 0.85;
/// An overdue operation is checked again after its age so far divided by this.
pub const OVERDUE_DIVISOR: u32 = 8;

/// The bounds of a day's chain of checks, from `[export] follow_up_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowUpPolicy {
    /// The earliest a check comes after the previous one.
    pub min: Duration,
    /// The latest a check comes after the previous one.
    pub max: Duration,
    /// The expected duration of an export with no previous backup to learn it from.
    pub default_expected: Duration,
    /// The most checks of one database's day.
    pub max_checks: u32,
}

/// What comes after a check that found the export not done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextCheck {
    /// Check again: check number `check`, at `at`.
    At {
        /// The next check's number (the original delivery is 0).
        check: u32,
        /// When.
        at: DateTime<Utc>,
    },
    /// The chain reached its bound after `checks` checks: a failure, reported once.
    Exhausted {
        /// Checks made.
        checks: u32,
    },
}

impl FollowUpPolicy {
    /// The policy of the `[export]` settings.
    #[must_use]
    pub fn from_settings(s: &ExportSettings) -> Self {
        Self {
            min: Duration::from_secs(s.follow_up_min_secs),
            max: Duration::from_secs(s.follow_up_max_secs),
            default_expected: Duration::from_secs(s.follow_up_default_secs),
            max_checks: s.follow_up_max_checks,
        }
    }

    /// The check after check number `check` (0: the original delivery), made `now`, of an
    /// operation inserted at `since` (unknown: just now) expected to take `expected` (unknown:
    /// the default).
    #[must_use]
    pub fn next_check(
        &self,
        now: DateTime<Utc>,
        check: u32,
        since: Option<DateTime<Utc>>,
        expected: Option<Duration>,
    ) -> NextCheck {
        let next = check.saturating_add(1);
        if next > self.max_checks {
            return NextCheck::Exhausted { checks: check };
        }
        let since = since.unwrap_or(now).min(now);
        let expected = expected.unwrap_or(self.default_expected).mul_f64(AIM_SHARE);
        let end = since + chrono::Duration::from_std(expected).unwrap_or(chrono::Duration::MAX);
        let delay = if end > now {
            (end - now).to_std().unwrap_or_default()
        } else {
            // Overdue: back off with the operation's age.
            (now - since).to_std().unwrap_or_default() / OVERDUE_DIVISOR
        };
        let delay = delay.clamp(self.min, self.max);
        NextCheck::At { check: next, at: now + chrono::Duration::from_std(delay).unwrap_or_default() }
    }
}

/// How long a backup took, from its manifest's times (`None` when they make no sense).
#[must_use]
pub fn took(started_at: DateTime<Utc>, finished_at: DateTime<Utc>) -> Option<Duration> {
    (finished_at - started_at).to_std().ok().filter(|d| !d.is_zero())
}

/// The name suffix of check `check` of a task (`<task id>-c<check>`).
#[must_use]
pub fn check_suffix(check: u32) -> String {
    format!("c{check}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> FollowUpPolicy {
        FollowUpPolicy {
            min: Duration::from_secs(60),
            max: Duration::from_secs(1800),
            default_expected: Duration::from_secs(600),
            max_checks: 3,
        }
    }

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn at(next: NextCheck) -> (u32, i64) {
        match next {
            NextCheck::At { check, at } => (check, (at - t(0)).num_seconds()),
            NextCheck::Exhausted { .. } => panic!("exhausted"),
        }
    }

    #[test]
    fn a_check_aims_at_the_expected_end_within_the_bounds() {
        let p = policy();
        // Started now, the last backup took 20 minutes: back after 85% of that, 17 minutes.
        assert_eq!(at(p.next_check(t(0), 0, Some(t(0)), Some(Duration::from_secs(1200)))), (1, 1020));
        // Started 15 minutes ago: back 2 minutes from now.
        assert_eq!(at(p.next_check(t(0), 1, Some(t(-900)), Some(Duration::from_secs(1200)))), (2, 120));
        // No previous backup: the default.
        assert_eq!(at(p.next_check(t(0), 0, None, None)), (1, 510));
        // Never sooner than min, never later than max.
        assert_eq!(at(p.next_check(t(0), 0, Some(t(0)), Some(Duration::from_secs(5)))), (1, 60));
        assert_eq!(at(p.next_check(t(0), 0, Some(t(0)), Some(Duration::from_secs(7200)))), (1, 1800));
    }

    #[test]
    fn an_overdue_operation_is_checked_after_an_eighth_of_its_age() {
        let p = policy();
        assert_eq!(at(p.next_check(t(0), 1, Some(t(-2400)), Some(Duration::from_secs(600)))), (2, 300));
        assert_eq!(at(p.next_check(t(0), 1, Some(t(-100)), Some(Duration::from_secs(10)))), (2, 60));
    }

    #[test]
    fn the_chain_stops_at_its_bound() {
        let p = policy();
        assert_eq!(at(p.next_check(t(0), 2, None, None)).0, 3);
        assert_eq!(p.next_check(t(0), 3, None, None), NextCheck::Exhausted { checks: 3 });
        assert_eq!(p.next_check(t(0), u32::MAX, None, None), NextCheck::Exhausted { checks: u32::MAX });
    }

    #[test]
    fn a_backup_took_its_manifest_times() {
        assert_eq!(took(t(0), t(90)), Some(Duration::from_secs(90)));
        assert_eq!(took(t(90), t(0)), None);
        assert_eq!(took(t(0), t(0)), None);
    }
}
