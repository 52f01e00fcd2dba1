//! The domain's nouns: validated names, [`DatabaseRef`], [`RunDate`] and [`ExportTask`].
//!
//! Every value here is parsed once at the edge (HTTP body, CLI argument, discovery result) and is
//! valid from then on. Names are data: a database may be called anything its engine allows (any
//! Unicode but NUL, `%`, `/`, quotes, spaces, a leading `-`), and each name is accepted as it is. What
//! keeps such a name inside its prefix is its encoding as a key segment ([`key_segment`]), which is
//! reversible, so every name survives the round trip through every bucket backend.

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

/// Longest name accepted, in bytes of its object-key segment (see [`key_segment`]): a dump's file
/// name is the segment plus at most 16 bytes (`.manifest.json`, `.sql.zst.age`) plus the local
/// store's staging suffix, and a file name may not exceed 255 bytes (`NAME_MAX`). Every PostgreSQL
/// name (63 bytes) and every MySQL/MariaDB name (64 characters of the BMP) fits.
pub const MAX_SEGMENT_BYTES: usize = 200;

/// Longest label accepted, in bytes.
pub const MAX_LABEL_BYTES: usize = 128;

/// Bytes kept as they are in a key segment: ASCII letters, digits, `.`, `_`, `-`.
fn plain_ascii(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// A character kept as it is in a key segment besides [`plain_ascii`]: any non-ASCII character
/// that every backend stores and lists as it is (not a control character, and not U+FFFE/U+FFFF,
/// which XML listings of S3 and Azure cannot carry).
fn plain_unicode(c: char) -> bool {
    !c.is_ascii() && !c.is_control() && !matches!(c, '\u{FFFE}' | '\u{FFFF}')
}

/// A name as one segment of an object key: every ASCII character but letters, digits, `.`, `_`
/// and `-`, every control character and U+FFFE/U+FFFF are percent-encoded (`%` itself as `%25`, `/`
/// as `%2F`), other Unicode is kept as UTF-8, and a trailing `.` becomes `%2E` (Azure Blob Storage
/// drops a segment's trailing dots). So a segment never holds `/`, is never `.` or `..`, and
/// [`from_key_segment`] gives the name back.
#[must_use]
pub fn key_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let last = name.len().saturating_sub(1);
    for (i, c) in name.char_indices() {
        let trailing_dot = c == '.' && i == last;
        if !trailing_dot && ((c.is_ascii() && plain_ascii(c as u8)) || plain_unicode(c)) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// The name a key segment was built from by [`key_segment`]; `None` for a segment [`key_segment`]
/// would not have written (so each name has exactly one key, and each key one name).
#[must_use]
pub fn from_key_segment(segment: &str) -> Option<String> {
    let name = percent_encoding::percent_decode_str(segment).decode_utf8().ok()?.into_owned();
    (key_segment(&name) == segment).then_some(name)
}

fn check_name(field: &'static str, value: &str) -> Result<(), InvalidField> {
    if value.is_empty() {
        return Err(InvalidField::new(field, "must not be empty"));
    }
    if value.contains('\0') {
        return Err(InvalidField::new(field, "contains a NUL character"));
    }
    let segment = key_segment(value).len();
    if segment > MAX_SEGMENT_BYTES {
        return Err(InvalidField::new(
            field,
            format!("too long to be stored: {segment} bytes in an object key (at most {MAX_SEGMENT_BYTES})"),
        ));
    }
    if field == "label" && value.len() > MAX_LABEL_BYTES {
        return Err(InvalidField::new(field, format!("longer than {MAX_LABEL_BYTES} bytes")));
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
    /// `project/instance/database`, the path exclusion globs match against (a `/` inside a name is
    /// written `%2F`, see [`glob_form`], so it cannot pass for a separator).
    #[must_use]
    pub fn path(&self) -> String {
        format!(
            "{}/{}/{}",
            glob_form(self.project.as_str()),
            glob_form(self.instance.as_str()),
            glob_form(self.database.as_str())
        )
    }
}

impl fmt::Display for DatabaseRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// A name as globs see it: a `/` inside it is written `%2F`, so `*` (which never crosses `/`) and
/// segment counts keep their meaning whatever a name holds.
#[must_use]
pub fn glob_form(name: &str) -> std::borrow::Cow<'_, str> {
    if name.contains('/') { name.replace('/', "%2F").into() } else { name.into() }
}

/// `PROJECT/INSTANCE/DATABASE` as typed on a command line. Each segment is percent-decoded, as in
/// object keys: a `/` inside a name is typed `%2F`, a `%` followed by two hex digits `%25`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
        let decode = |field: &'static str, s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(std::borrow::Cow::into_owned)
                .map_err(|_| InvalidField::new(field, "percent-decodes to something that is not UTF-8"))
        };
        Ok(Self {
            project: ProjectId::parse(decode("project", project)?)?,
            instance: InstanceName::parse(decode("instance", instance)?)?,
            database: DatabaseName::parse(decode("database", database)?)?,
        })
    }
}

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
    fn names_are_data_and_only_what_cannot_be_stored_is_refused() {
        for bad in ["", "a\0b", &"x".repeat(MAX_SEGMENT_BYTES + 1), &" ".repeat(67)] {
            assert!(DatabaseName::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let longest_mysql = "é".repeat(64);
        let longest_postgres = "%".repeat(63);
        for good in [
            "app",
            "my-db_1.v2",
            "données",
            "café app",
            ".",
            "..",
            "a/b",
            "a\\b",
            "50%",
            "a%2Fb",
            "a\nb",
            " a ",
            "--result-file=x.txt",
            "'; DROP DATABASE x; --",
            "🦀",
            "e\u{301}",
            &longest_mysql,
            &longest_postgres,
        ] {
            assert!(DatabaseName::parse(good).is_ok(), "{good:?} was refused");
        }
        assert!(Label::parse("x".repeat(MAX_LABEL_BYTES)).is_ok());
        assert!(Label::parse("x".repeat(MAX_LABEL_BYTES + 1)).unwrap_err().reason.contains("128"));
    }

    #[test]
    fn a_key_segment_never_holds_a_separator_and_gives_its_name_back() {
        for (name, segment) in [
            ("app", "app"),
            ("café app", "café%20app"),
            ("50%", "50%25"),
            ("a/b", "a%2Fb"),
            (".", "%2E"),
            ("..", ".%2E"),
            ("..a", "..a"),
            ("a.", "a%2E"),
            ("a\nb", "a%0Ab"),
            ("\u{85}", "%C2%85"),
            ("\u{FFFF}", "%EF%BF%BF"),
            ("-x", "-x"),
        ] {
            assert_eq!(key_segment(name), segment, "{name:?}");
            assert_eq!(from_key_segment(segment).as_deref(), Some(name), "{segment:?}");
        }
        // One key per name: another spelling of the same name is not a key this service wrote.
        for foreign in ["caf%C3%A9", "%61pp", "a%2fb", "a b", "%zz", "%FF"] {
            assert_eq!(from_key_segment(foreign), None, "{foreign:?}");
        }
    }

    #[test]
    fn a_typed_path_is_percent_decoded_and_globs_see_slashes_encoded() {
        let path: DatabasePath = "p/i/a%2Fb%20c".parse().unwrap();
        assert_eq!(path.database.as_str(), "a/b c");
        let path: DatabasePath = "p/i/50%".parse().unwrap();
        assert_eq!(path.database.as_str(), "50%");
        assert!("p/i".parse::<DatabasePath>().is_err());
        assert_eq!(glob_form("a/b"), "a%2Fb");
    }

    #[test]
    fn run_date_refuses_malformed_and_future_days() {
        assert!(RunDate::parse("2026-02-30").is_err());
        assert!(RunDate::parse("2026-1-5").is_err());
        assert!(RunDate::parse("yesterday").is_err());
        assert!(RunDate::parse("9999-01-01").unwrap_err().reason.contains("future"));
        assert!(RunDate::parse("1999-12-31").unwrap_err().reason.contains("2000"));
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
