//! A database: its [`Engine`], the [`DatabaseRef`] discovery finds, the [`DatabasePath`] typed on a
//! command line, and [`glob_form`], the form of a name exclusion globs match against.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::names::{DatabaseName, InstanceName, InvalidField, ProjectId, SourceName};

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

/// `/` and `%` inside a segment: what [`DatabasePath`]'s parser decodes back (controls too, so the
/// typed form stays one printable line).
const TYPED_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'/').add(b'%');

impl fmt::Display for DatabasePath {
    /// The typed form [`FromStr`](std::str::FromStr) reads back: each segment percent-encoded.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let enc = |s: &str| percent_encoding::utf8_percent_encode(s, TYPED_SEGMENT).to_string();
        write!(f, "{}/{}/{}", enc(self.project.as_str()), enc(self.instance.as_str()), enc(self.database.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_written_out_reads_back_whatever_its_names_hold() {
        for name in ["-x", "a/b c", "50%", "%41", "d\u{e9}j\u{e0} vu", "'q\"", "tab\there"] {
            let typed = format!("p/-i/{}", percent_encoding::utf8_percent_encode(name, TYPED_SEGMENT));
            let path: DatabasePath = typed.parse().unwrap();
            assert_eq!(path.database.as_str(), name);
            assert_eq!(path.to_string().parse::<DatabasePath>().unwrap(), path);
            assert_eq!(path.to_string(), typed);
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
}
