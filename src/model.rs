//! The domain's nouns: validated names, [`DatabaseRef`], [`RunDate`] and [`ExportTask`].
//!
//! Every value here is parsed once at the edge (HTTP body, CLI argument, discovery result) and is
//! valid from then on: a name can never contain a path separator, `..`, `%`, a control character, or
//! exceed 255 bytes, so no object key built from it can leave its prefix.

use std::fmt;

use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why a value was refused; names the offending field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidField {
    /// The field (JSON key or CLI argument) that was refused.
    pub field: &'static str,
    /// What is wrong with it, in words an operator can act on.
    pub reason: String,
}

impl InvalidField {
    /// A refusal of `field` for `reason`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self { field, reason: reason.into() }
    }
}

/// Longest name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

fn check_name(field: &'static str, value: &str) -> Result<(), InvalidField> {
    if value.is_empty() {
        return Err(InvalidField::new(field, "must not be empty"));
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(InvalidField::new(field, format!("longer than {MAX_NAME_BYTES} bytes")));
    }
    if value == "." || value == ".." {
        return Err(InvalidField::new(field, "must not be `.` or `..`"));
    }
    if let Some(c) = value.chars().find(|c| c.is_control() || matches!(c, '/' | '\\' | '%')) {
        return Err(InvalidField::new(
            field,
            format!("contains the forbidden character {c:?} (no `/`, `\\`, `%` or control characters)"),
        ));
    }
    if value.trim() != value {
        return Err(InvalidField::new(field, "has leading or trailing whitespace"));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses and validates a name.
            pub fn parse(value: impl Into<String>) -> Result<Self, InvalidField> {
                let value = value.into();
                check_name($field, &value)?;
                Ok(Self(value))
            }

            /// The name as text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// Name of a configured source of databases.
    SourceName,
    "source"
);
name_type!(
    /// Google Cloud project id, or a self-hosted source's name.
    ProjectId,
    "project"
);
name_type!(
    /// Cloud SQL instance name, or a self-hosted server's name.
    InstanceName,
    "instance"
);
name_type!(
    /// Database (PostgreSQL) or schema (MySQL) name.
    DatabaseName,
    "database"
);

name_type!(
    /// Name of an on-demand backup (`before-incident-42`), stored under `labels/<label>/…` and
    /// never removed by retention.
    Label,
    "label"
);

/// Database engine, which decides the exporter and the dump format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
    /// Microsoft SQL Server (Cloud SQL only).
    Sqlserver,
}

impl Engine {
    /// Lower-case name, as in settings and manifests.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
            Self::Sqlserver => "sqlserver",
        }
    }
}

/// One database to back up.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DatabaseRef {
    /// The configured source that found it.
    pub source: SourceName,
    /// Google Cloud project, or the self-hosted source's name.
    pub project: ProjectId,
    /// Cloud SQL instance, or the self-hosted server's name.
    pub instance: InstanceName,
    /// The database.
    pub database: DatabaseName,
    /// Its engine.
    pub engine: Engine,
}

impl DatabaseRef {
    /// `project/instance/database`, the path exclusion globs match against.
    #[must_use]
    pub fn path(&self) -> String {
        format!("{}/{}/{}", self.project, self.instance, self.database)
    }
}

impl fmt::Display for DatabaseRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// `PROJECT/INSTANCE/DATABASE` as typed on a command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabasePath {
    /// Project (or self-hosted source name).
    pub project: ProjectId,
    /// Instance (or server name).
    pub instance: InstanceName,
    /// Database.
    pub database: DatabaseName,
}

impl std::str::FromStr for DatabasePath {
    type Err = InvalidField;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let [project, instance, database] = parts.as_slice() else {
            return Err(InvalidField::new("database", "expected PROJECT/INSTANCE/DATABASE"));
        };
        Ok(Self {
            project: ProjectId::parse(*project)?,
            instance: InstanceName::parse(*instance)?,
            database: DatabaseName::parse(*database)?,
        })
    }
}

/// The UTC day a backup belongs to, stamped once by `/schedule` and carried by every retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunDate(NaiveDate);

impl RunDate {
    /// Parses `YYYY-MM-DD`, refusing days after today (UTC).
    pub fn parse(value: &str) -> Result<Self, InvalidField> {
        let date = NaiveDate::parse_from_str(value, "%Y-%m-%d")
            .ok()
            .filter(|_| value.len() == 10)
            .ok_or_else(|| InvalidField::new("run_date", format!("{value:?} is not a date of the form YYYY-MM-DD")))?;
        if date > Utc::now().date_naive() {
            return Err(InvalidField::new("run_date", format!("{value} lies in the future")));
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

/// What the queue carries: one database, the day it is for, and the run that asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportTask {
    /// The database.
    #[serde(flatten)]
    pub db: DatabaseRef,
    /// The day the backup belongs to.
    pub run_date: RunDate,
    /// The run that enqueued it.
    pub run_id: RunId,
}

impl ExportTask {
    /// Deterministic id: a hash of (source, project, instance, database, run date), never a
    /// timestamp, so enqueueing the same task twice is recognised. The hash comes first and the
    /// date (for people reading the queue) last: Cloud Tasks slows down on ids that share a
    /// sequential prefix, as a day's ids would if they began with the date.
    #[must_use]
    pub fn task_id(&self) -> String {
        let mut h = Sha256::new();
        for part in
            [self.db.source.as_str(), self.db.project.as_str(), self.db.instance.as_str(), self.db.database.as_str()]
        {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.update(self.run_date.to_string().as_bytes());
        format!("{}-{}", &hex::encode(h.finalize())[..32], self.run_date.date().format("%Y%m%d"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refuse_what_could_leave_a_prefix() {
        for bad in ["", ".", "..", "a/b", "a\\b", "a%2Fb", "a\0b", "a\nb", " a", &"x".repeat(256)] {
            assert!(DatabaseName::parse(bad).is_err(), "{bad:?} was accepted");
        }
        for good in ["app", "my-db_1.v2", "données", "x".repeat(255).as_str()] {
            assert!(DatabaseName::parse(good).is_ok(), "{good:?} was refused");
        }
    }

    #[test]
    fn run_date_refuses_malformed_and_future_days() {
        assert!(RunDate::parse("2026-02-30").is_err());
        assert!(RunDate::parse("2026-1-5").is_err());
        assert!(RunDate::parse("yesterday").is_err());
        assert!(RunDate::parse("9999-01-01").unwrap_err().reason.contains("future"));
        assert_eq!(RunDate::parse("2024-02-29").unwrap().to_string(), "2024-02-29");
    }

    #[test]
    fn task_id_is_deterministic_and_separates_fields() {
        let task = |project: &str, instance: &str| ExportTask {
            db: DatabaseRef {
                source: SourceName::parse("s").unwrap(),
                project: ProjectId::parse(project).unwrap(),
                instance: InstanceName::parse(instance).unwrap(),
                database: DatabaseName::parse("d").unwrap(),
                engine: Engine::Postgres,
            },
            run_date: RunDate::parse("2026-01-02").unwrap(),
            run_id: RunId::generate(),
        };
        assert_eq!(task("ab", "c").task_id(), task("ab", "c").task_id());
        assert_ne!(task("ab", "c").task_id(), task("a", "bc").task_id());
        let id = task("a", "b").task_id();
        assert!(id.ends_with("-20260102"), "{id}");
        // Ids of one day share no prefix beyond chance (Cloud Tasks' guidance on task names).
        assert_ne!(id[..8], task("a", "c").task_id()[..8]);
    }
}
