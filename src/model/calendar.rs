//! The retention calendar: the [`RetentionClass`] a run date belongs to ([`class_of`]), the first
//! segment of a backup's key.
//!
//! The class is the first segment of a backup's key, so bucket lifecycle rules can expire each
//! class by prefix. `class_of` is pure: the same date always lands in the same class, so every retry
//! of a task writes to the same key. Precedence: yearly (1 January) over quarterly (first day of a
//! quarter) over monthly (first of a month) over weekly (the configured weekday) over daily.

use chrono::{Datelike, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A retention class, the first segment of a backup key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
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

    /// Days a backup of this class is kept unless the settings say otherwise: daily 9, weekly 40,
    /// monthly 365, quarterly 2190 (6 years), yearly 43800 (120 years, "forever").
    #[must_use]
    pub fn default_keep_days(self) -> u32 {
        match self {
            Self::Daily => 9,
            Self::Weekly => 40,
            Self::Monthly => 365,
            Self::Quarterly => 2190,
            Self::Yearly => 43800,
        }
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
    use std::collections::BTreeMap;

    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn class_of_follows_the_precedence_around_boundaries() {
        let cases = [
            ("2026-01-01", RetentionClass::Yearly),    // a Thursday
            ("2024-01-01", RetentionClass::Yearly),    // a Monday: yearly wins over weekly
            ("2025-12-31", RetentionClass::Daily),     // the day before a year starts
            ("2026-03-31", RetentionClass::Daily),     // the day before a quarter starts
            ("2026-04-01", RetentionClass::Quarterly), // quarter start
            ("2026-07-01", RetentionClass::Quarterly),
            ("2026-09-30", RetentionClass::Daily),
            ("2024-04-01", RetentionClass::Quarterly), // a Monday: quarterly wins over weekly
            ("2026-10-01", RetentionClass::Quarterly),
            ("2026-06-01", RetentionClass::Monthly), // a Monday: monthly wins over weekly
            ("2026-02-01", RetentionClass::Monthly),
            ("2026-05-31", RetentionClass::Daily),
            ("2024-02-29", RetentionClass::Daily),  // leap day, a Thursday
            ("2028-02-28", RetentionClass::Weekly), // a Monday before a leap day
            ("2028-02-29", RetentionClass::Daily),  // leap day, a Tuesday
            ("2000-02-29", RetentionClass::Daily),  // leap century, a Tuesday
            ("2024-03-01", RetentionClass::Monthly),
            ("2100-03-01", RetentionClass::Monthly), // a Monday after a non-leap century February
            ("2026-11-23", RetentionClass::Weekly),  // a Monday
            ("2026-11-22", RetentionClass::Daily),   // a Sunday
            ("2026-12-31", RetentionClass::Daily),
        ];
        for (date, class) in cases {
            assert_eq!(class_of(d(date), Weekday::Mon), class, "{date}");
        }
        assert_eq!(class_of(d("2026-11-22"), Weekday::Sun), RetentionClass::Weekly);
        assert_eq!(class_of(d("2032-02-29"), Weekday::Sun), RetentionClass::Weekly); // a leap-day Sunday
    }

    fn weekday() -> impl Strategy<Value = Weekday> {
        (0u8..7).prop_map(|n| Weekday::try_from(n).unwrap())
    }

    proptest! {
        #[test]
        fn class_of_gives_each_year_one_yearly_three_quarterly_eight_monthly_and_every_weekday_weekly(
            year in 1900i32..2400, weekly_on in weekday()
        ) {
            let mut counts: BTreeMap<RetentionClass, u32> = BTreeMap::new();
            let mut weekly_days = 0;
            let mut date = NaiveDate::from_ymd_opt(year, 1, 1).unwrap();
            while date.year() == year {
                *counts.entry(class_of(date, weekly_on)).or_default() += 1;
                if date.weekday() == weekly_on && date.day() != 1 {
                    weekly_days += 1;
                }
                date = date.succ_opt().unwrap();
            }
            let days = if NaiveDate::from_ymd_opt(year, 2, 29).is_some() { 366 } else { 365 };
            prop_assert_eq!(counts.get(&RetentionClass::Yearly).copied(), Some(1));
            prop_assert_eq!(counts.get(&RetentionClass::Quarterly).copied(), Some(3));
            prop_assert_eq!(counts.get(&RetentionClass::Monthly).copied(), Some(8));
            prop_assert_eq!(counts.get(&RetentionClass::Weekly).copied().unwrap_or(0), weekly_days);
            prop_assert_eq!(counts.values().sum::<u32>(), days);
        }

        #[test]
        fn class_of_puts_firsts_above_weekly_and_weekly_only_on_its_weekday(
            days in 0i64..200_000, weekly_on in weekday()
        ) {
            let date = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap() + chrono::Duration::days(days);
            let class = class_of(date, weekly_on);
            prop_assert_eq!(class >= RetentionClass::Monthly, date.day() == 1);
            prop_assert_eq!(class == RetentionClass::Weekly, date.day() != 1 && date.weekday() == weekly_on);
            prop_assert_eq!(class == RetentionClass::Yearly, date.ordinal() == 1);
            prop_assert_eq!(class_of(date, weekly_on), class);
        }
    }
}
