//! Retention classes: which class a run date belongs to.
//!
//! The class is the first segment of a backup's key, so bucket lifecycle rules can expire each
//! class by prefix. `class_of` is pure: the same date always lands in the same class, so every retry
//! of a task writes to the same key. Precedence: yearly (1 January) over quarterly (first day of a
//! quarter) over monthly (first of a month) over weekly (the configured weekday) over daily.

use chrono::{Datelike, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};

/// A retention class, the first segment of a backup key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetentionClass {
    /// Every day that is no other class.
    Daily,
    /// The weekly weekday (Monday by default).
    Weekly,
    /// The first day of a month.
    Monthly,
    /// The first day of January, April, July and October (but 1 January is yearly).
    Quarterly,
    /// 1 January.
    Yearly,
}

impl RetentionClass {
    /// Every class, shortest-lived first.
    pub const ALL: [Self; 5] = [Self::Daily, Self::Weekly, Self::Monthly, Self::Quarterly, Self::Yearly];

    /// The key segment.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
            Self::Quarterly => "quarterly",
            Self::Yearly => "yearly",
        }
    }

    /// Parses a key segment.
    #[must_use]
    pub fn from_segment(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// The class of `date` when weekly backups fall on `weekly_on`.
#[must_use]
pub fn class_of(date: NaiveDate, weekly_on: Weekday) -> RetentionClass {
    match (date.month(), date.day()) {
        (1, 1) => RetentionClass::Yearly,
        (4 | 7 | 10, 1) => RetentionClass::Quarterly,
        (_, 1) => RetentionClass::Monthly,
        _ if date.weekday() == weekly_on => RetentionClass::Weekly,
        _ => RetentionClass::Daily,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_of_follows_the_precedence_around_boundaries() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let cases = [
            ("2026-01-01", RetentionClass::Yearly),    // a Thursday
            ("2024-01-01", RetentionClass::Yearly),    // a Monday: yearly wins over weekly
            ("2026-04-01", RetentionClass::Quarterly), // quarter start
            ("2026-06-01", RetentionClass::Monthly),   // a Monday: monthly wins over weekly
            ("2026-02-01", RetentionClass::Monthly),
            ("2024-02-29", RetentionClass::Daily), // leap day, a Thursday
            ("2024-03-01", RetentionClass::Monthly),
            ("2026-11-23", RetentionClass::Weekly), // a Monday
            ("2026-11-22", RetentionClass::Daily),  // a Sunday
            ("2026-12-31", RetentionClass::Daily),
        ];
        for (date, class) in cases {
            assert_eq!(class_of(d(date), Weekday::Mon), class, "{date}");
        }
        assert_eq!(class_of(d("2026-11-22"), Weekday::Sun), RetentionClass::Weekly);
    }
}
