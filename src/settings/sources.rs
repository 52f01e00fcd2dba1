//! `[[sources]]` (self-hosted servers: [`SourceSettings`], [`ServerUrl`]) and `[exclude]`, with
//! their checks. The `gcp` sources are in the `gcp` section's file.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use super::error::SettingsError;
use crate::model::names::{InstanceName, SourceName};
use crate::util::glob::compile_glob;

/// `[[sources]]`: one self-hosted database server.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSettings {
    /// Unique name; the `project` segment of its backups.
    pub name: SourceName,
    /// `postgres` or `mysql` (MariaDB too).
    pub kind: SourceKind,
    /// `postgres://user[:password]@host[:port]/[db]` or `mysql://user[:password]@host[:port]/`.
    pub url: ServerUrl,
    /// File holding the password (its first line); overrides a password in the URL.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The `instance` segment of its backups; defaults to the URL's host.
    #[serde(default)]
    pub instance: Option<InstanceName>,
    /// Only the databases whose names match one of these globs (default: every database).
    #[serde(default)]
    pub databases: Option<Vec<String>>,
    /// age recipients for this source's dumps (overrides `export.age_recipients`; `[]` turns encryption off).
    #[serde(default)]
    pub age_recipients: Option<Vec<String>>,
    /// Count rows per table in the dump's snapshot (overrides `export.row_counts`; turn off for huge databases).
    #[serde(default)]
    pub row_counts: Option<bool>,
}

impl SourceSettings {
    /// The instance name of this server's backups.
    #[must_use]
    pub fn instance_name(&self) -> InstanceName {
        self.instance.clone().unwrap_or_else(|| {
            InstanceName::parse(self.url.host.replace('/', "_"))
                .unwrap_or_else(|_| InstanceName::parse("server").expect("valid"))
        })
    }
}

/// Kind of a self-hosted source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A PostgreSQL server.
    Postgres,
    /// A MySQL or MariaDB server.
    Mysql,
}

/// A server's connection URL, split up; the password is a secret and never printed.
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct ServerUrl {
    /// `postgres` or `mysql`.
    pub scheme: String,
    /// Host name, address, or (PostgreSQL) socket directory.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// User name.
    pub user: String,
    /// Password, if any.
    pub password: Option<SecretString>,
    /// Database to connect to for discovery (PostgreSQL; default `postgres`).
    pub dbname: Option<String>,
}

impl fmt::Debug for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pw = if self.password.is_some() { ":***" } else { "" };
        write!(f, "{}://{}{pw}@{}:{}/", self.scheme, self.user, self.host, self.port)
    }
}

impl TryFrom<String> for ServerUrl {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let url = Url::parse(&value).map_err(|e| format!("not a URL ({e})"))?;
        let (scheme, default_port, default_user) = match url.scheme() {
            "postgres" | "postgresql" => ("postgres", 5432, "postgres"),
            "mysql" | "mariadb" => ("mysql", 3306, "root"),
            other => return Err(format!("unsupported scheme `{other}` (expected postgres:// or mysql://)")),
        };
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or("the URL has no host")?;
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
        let dbname = url.path().trim_start_matches('/');
        Ok(Self {
            scheme: scheme.to_owned(),
            host: decode(host.trim_start_matches('[').trim_end_matches(']')),
            port: url.port().unwrap_or(default_port),
            user: if url.username().is_empty() { default_user.to_owned() } else { decode(url.username()) },
            password: url.password().map(|p| SecretString::from(decode(p))),
            dbname: (!dbname.is_empty()).then(|| decode(dbname)),
        })
    }
}

/// `[exclude]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExcludeSettings {
    /// Globs over `project/instance/database` (`*` does not cross `/`).
    pub patterns: Vec<String>,
}

/// Checks the self-hosted sources: unique names, age recipients, a URL of the source's kind, and
/// the database globs.
pub(crate) fn validate_sources(sources: &[SourceSettings]) -> Result<(), SettingsError> {
    let mut names = HashSet::new();
    for (i, source) in sources.iter().enumerate() {
        if !names.insert(source.name.as_str()) {
            return Err(SettingsError::new(format!("sources[{i}].name"), format!("`{}` is used twice", source.name)));
        }
        if let Some(list) = &source.age_recipients {
            crate::crypto::parse_recipients(list)
                .map_err(|e| SettingsError::new(format!("sources[{i}].age_recipients"), e))?;
        }
        let expected = match source.kind {
            SourceKind::Postgres => "postgres",
            SourceKind::Mysql => "mysql",
        };
        if source.url.scheme != expected {
            return Err(SettingsError::new(
                format!("sources[{i}].url"),
                format!("a `{expected}` source needs a {expected}:// URL"),
            ));
        }
    }
    for (i, source) in sources.iter().enumerate() {
        for (j, pattern) in source.databases.iter().flatten().enumerate() {
            compile_glob(pattern)
                .map_err(|e| SettingsError::new(format!("sources[{i}].databases[{j}]"), e.to_string()))?;
        }
    }
    Ok(())
}

impl ExcludeSettings {
    /// Checks the globs.
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        for (i, pattern) in self.patterns.iter().enumerate() {
            compile_glob(pattern).map_err(|e| SettingsError::new(format!("exclude.patterns[{i}]"), e.to_string()))?;
        }
        Ok(())
    }
}
