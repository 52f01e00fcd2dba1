//! A run: the [`RunDate`] a backup belongs to and the [`RunId`] of the `/schedule` run that asked.

use std::fmt;

use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::names::InvalidField;

/// The UTC day a backup belongs to, stamped once by `/schedule` and carried by every retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunDate(NaiveDate);

impl RunDate {
    /// Parses `YYYY-MM-DD`, refusing days after today (UTC) and before 2000.
    pub fn parse(value: &str) -> Result<Self, InvalidField> {
        let date = NaiveDate::parse_from_str(value, "%Y-%m-%d")
            .ok()
            .filter(|_| value.len() == 10)
            .ok_or_else(|| InvalidField::new("run_date", format!("{value:?} is not a date of the form YYYY-MM-DD")))?;
        if date > Utc::now().date_naive() {
            return Err(InvalidField::new("run_date", format!("{value} lies in the future")));
        }
        if date < NaiveDate::from_ymd_opt(2000, 1, 1).expect("a date") {
            return Err(InvalidField::new("run_date", format!("{value} lies before 2000")));
        }
        Ok(Self(date))
    }

    /// Today, UTC.
    #[must_use]
    pub fn today() -> Self {
        Self(Utc::now().date_naive())
    }

    /// Wraps a date without the not-in-the-future check (dates read back from the store).
    #[must_use]
    pub fn from_date(date: NaiveDate) -> Self {
        Self(date)
    }

    /// The calendar date.
    #[must_use]
    pub fn date(self) -> NaiveDate {
        self.0
    }
}

impl fmt::Display for RunDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

impl TryFrom<String> for RunDate {
    type Error = InvalidField;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        NaiveDate::parse_from_str(&value, "%Y-%m-%d")
            .map(Self)
            .map_err(|_| InvalidField::new("run_date", format!("{value:?} is not a date of the form YYYY-MM-DD")))
    }
}

impl From<RunDate> for String {
    fn from(value: RunDate) -> Self {
        value.to_string()
    }
}

/// Identifier of one `/schedule` run: `[A-Za-z0-9_-]`, 1 to 64 characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct RunId(String);

impl RunId {
    /// Parses a run id given by a caller.
    pub fn parse(value: impl Into<String>) -> Result<Self, InvalidField> {
        let value = value.into();
        let ok = (1..=64).contains(&value.len())
            && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(value))
        } else {
            Err(InvalidField::new("run_id", "must be 1 to 64 characters of A-Z, a-z, 0-9, `-` and `_`"))
        }
    }

    /// A fresh id: the UTC time of day plus random hex, so ids sort by time within a day.
    #[must_use]
    pub fn generate() -> Self {
        let random: u32 = rand::random();
        Self(format!("{}-{random:08x}", Utc::now().format("%H%M%S")))
    }

    /// The id for an export started by hand (`/export` or the CLI without a run id).
    #[must_use]
    pub fn manual() -> Self {
        Self("manual".to_owned())
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for RunId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_date_refuses_malformed_and_future_days() {
        assert!(RunDate::parse("2026-02-30").is_err());
        assert!(RunDate::parse("2026-1-5").is_err());
        assert!(RunDate::parse("yesterday").is_err());
        assert!(RunDate::parse("9999-01-01").unwrap_err().reason.contains("future"));
        assert!(RunDate::parse("1999-12-31").unwrap_err().reason.contains("2000"));
        assert_eq!(RunDate::parse("2024-02-29").unwrap().to_string(), "2024-02-29");
    }
}
