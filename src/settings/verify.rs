//! `[restore]` (the guards of `data-backup restore`) and `[verify]` (restore drills: scratch
//! servers and checks), with their checks.

use std::path::PathBuf;

use serde::Deserialize;

use super::error::SettingsError;
use super::sources::{ServerUrl, SourceKind};
use crate::util::glob::compile_glob;

/// `[restore]`: guards of `data-backup restore`, and its parallel path (restores and drills).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestoreSettings {
    /// Globs (case-insensitive) over a restore target's database name and host; a match is refused
    /// without `--i-know-this-is-production` (e.g. `["*prod*", "db-main.*"]`).
    pub production_patterns: Vec<String>,
    /// `pg_restore -j` jobs of a parallel PostgreSQL restore (restores and drills of custom-format
    /// backups without transforms); absent: the cores, at most 8; `1`: always stream (ADR 0016).
    pub jobs: Option<usize>,
    /// Where a parallel restore spools the decoded dump (needs free space equal to it); absent:
    /// `$TMPDIR`. The file is unnamed: it is freed when the restore ends, however it ends.
    pub temp_dir: Option<PathBuf>,
}

/// `[verify]`: where restore drills restore, and what they check.
///
/// ```toml
/// [verify]
/// url = "postgres://postgres@127.0.0.1:5432/"   # scratch server for PostgreSQL backups
/// mysql_url = "mysql://root@127.0.0.1:3306/"    # scratch server for MySQL/MariaDB backups
/// identity_file = "/run/secrets/age-identity"   # to verify encrypted backups
/// nightly_count = 3        # drills after each run (and `verify --pick` without a number)
/// nightly_secs = 1800      # no drill of a run's budget starts later than this after the first
/// after_run = true         # `serve`: drill after each run's exports (the nightly timer, --now)
/// scratch = true           # no url for an engine: drill on a throwaway server of its own
/// scratch_dir = "/var/tmp" # where scratch servers live (default the temporary directory)
/// [[verify.checks]]
/// name = "has an admin"
/// sql = "SELECT count(*) > 0 FROM users WHERE role = 'admin'"   # passes when true / non-zero
/// databases = ["*/*/app"]                       # globs over project/instance/database (default all)
/// engine = "postgres"                           # optional
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifySettings {
    /// PostgreSQL server scratch databases are created on (default: a throwaway server of the
    /// drill's own, see `scratch`). Its account creates, for each drill, a
    /// throwaway role owning the scratch database, which restores (ADR 0012): it needs
    /// `CREATEROLE` and `CREATEDB` (or is a superuser).
    pub url: Option<ServerUrl>,
    /// MySQL/MariaDB server scratch schemas are created on. Its account creates, for each drill, a
    /// throwaway user granted only the scratch schema, which restores: it needs `CREATE USER` and
    /// `GRANT OPTION`.
    pub mysql_url: Option<ServerUrl>,
    /// age identity file for verifying encrypted backups (without it they fail verification).
    pub identity_file: Option<PathBuf>,
    /// Databases drilled after each run of `serve` and by `POST /verify/due`, and by `verify --pick`
    /// when no number is given. Default 3: 20 databases are all proven within a week.
    pub nightly_count: usize,
    /// Time budget of those drills in seconds: no drill starts later than this after the first
    /// (a drill running then finishes).
    pub nightly_secs: u64,
    /// Whether `serve` drills after each run's exports (the embedded timer and `--now`).
    pub after_run: bool,
    /// Whether an engine without a configured server (`url`, `mysql_url`) is drilled on a
    /// throwaway server started from the installed server binaries (ADR 0014).
    pub scratch: bool,
    /// Directory the throwaway servers' directories are created in (default the temporary
    /// directory; on Cloud Run that is memory).
    pub scratch_dir: Option<PathBuf>,
    /// Check queries run in every matching restored backup.
    pub checks: Vec<VerifyCheck>,
}

impl Default for VerifySettings {
    fn default() -> Self {
        Self {
            url: None,
            mysql_url: None,
            identity_file: None,
            nightly_count: 3,
            nightly_secs: 1800,
            after_run: true,
            scratch: true,
            scratch_dir: None,
            checks: Vec::new(),
        }
    }
}

/// `[[verify.checks]]`: a query whose first value must be true (or a non-zero number).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyCheck {
    /// Name shown in records and reports.
    pub name: String,
    /// The query, run in the restored database.
    pub sql: String,
    /// Globs over `project/instance/database`; empty: every database.
    #[serde(default)]
    pub databases: Vec<String>,
    /// Only backups of this engine (`postgres` or `mysql`).
    #[serde(default)]
    pub engine: Option<SourceKind>,
}

impl RestoreSettings {
    /// Checks the production patterns and the job count.
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        for (i, pattern) in self.production_patterns.iter().enumerate() {
            globset::GlobBuilder::new(pattern)
                .case_insensitive(true)
                .build()
                .map_err(|e| SettingsError::new(format!("restore.production_patterns[{i}]"), e.to_string()))?;
        }
        if self.jobs == Some(0) {
            return Err(SettingsError::new("restore.jobs", "must be at least 1 (1: never parallel)"));
        }
        Ok(())
    }
}

impl VerifySettings {
    /// Checks the scratch servers' URLs, the nightly count and the checks.
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        for (key, url, scheme) in
            [("verify.url", &self.url, "postgres"), ("verify.mysql_url", &self.mysql_url, "mysql")]
        {
            if let Some(url) = url
                && url.scheme != scheme
            {
                return Err(SettingsError::new(key, format!("needs a {scheme}:// URL")));
            }
        }
        if self.nightly_count == 0 {
            return Err(SettingsError::new("verify.nightly_count", "must be at least 1"));
        }
        for (i, check) in self.checks.iter().enumerate() {
            if check.sql.trim().is_empty() {
                return Err(SettingsError::new(format!("verify.checks[{i}].sql"), "must not be empty"));
            }
            for (j, pattern) in check.databases.iter().enumerate() {
                compile_glob(pattern)
                    .map_err(|e| SettingsError::new(format!("verify.checks[{i}].databases[{j}]"), e.to_string()))?;
            }
        }
        Ok(())
    }
}
