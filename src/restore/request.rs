//! What a restore is asked: the request, its options, the transform files, where the tools are,
//! the production guard, and the report of what it did.

use std::path::PathBuf;

use age::x25519::Identity;
use serde::{Deserialize, Serialize};

use super::error::RestoreError;
use super::find::Selector;
use crate::model::DatabasePath;
use crate::settings::{ServerUrl, Settings};
use crate::store::BackupStore;
use crate::store::manifest::Manifest;

/// How to put the backup in place.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Create the target database when it does not exist.
    pub create: bool,
    /// Restore beside the target and swap it in (keeps the old one under a dated name).
    pub replace: bool,
    /// PostgreSQL `--replace`: refuse new connections and terminate the target's sessions for the swap.
    pub terminate_connections: bool,
    /// PostgreSQL: keep the dump's owners and privileges (the roles must exist on the target).
    pub keep_owners: bool,
    /// MySQL: remove the dump's `DEFINER=` clauses, so its views, routines, triggers and events
    /// are defined by (and run as) the restoring account. Restore drills set it: they restore as
    /// a throwaway account that may not name another definer.
    pub strip_definers: bool,
    /// Print progress on stderr when it is a terminal.
    pub progress: bool,
    /// PostgreSQL custom-format backups: `pg_restore -j` jobs (module `parallel`); `None` for
    /// `restore.jobs`, else the cores; `Some(1)` always streams.
    pub jobs: Option<usize>,
    /// Where a parallel restore spools the decoded dump (`restore.temp_dir`, else `$TMPDIR`).
    pub temp_dir: Option<PathBuf>,
    /// The target is a scratch database its caller drops whatever happens (a restore drill): a
    /// parallel restore may load it in place, since a half-restored scratch database harms nobody.
    pub scratch: bool,
}

/// A transform file, read before the restore starts.
#[derive(Clone, Debug)]
pub struct Transform {
    /// Its path, as given.
    pub path: PathBuf,
    /// Its SQL.
    pub sql: String,
}

/// Reads the transform files (all of them, before anything is restored).
pub fn read_transforms(paths: &[PathBuf]) -> Result<Vec<Transform>, RestoreError> {
    paths
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .map(|sql| Transform { path: p.clone(), sql })
                .map_err(|e| RestoreError::Invalid(format!("cannot read the transform {}: {e}", p.display())))
        })
        .collect()
}

/// One `data-backup restore`.
#[derive(Clone, Debug)]
pub struct RestoreRequest {
    /// The database whose backup to restore.
    pub db: DatabasePath,
    /// Which backup.
    pub selector: Selector,
    /// Where to (`postgres://…/DBNAME` or `mysql://…/SCHEMA`).
    pub target: ServerUrl,
    /// SQL files run after the restore, in the same transaction (PostgreSQL).
    pub transforms: Vec<PathBuf>,
    /// age identity file for encrypted backups.
    pub identity: Option<PathBuf>,
    /// The operator knows the target matches a production pattern.
    pub production_ok: bool,
    /// How to put it in place.
    pub options: RestoreOptions,
}

/// What a restore did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RestoreReport {
    /// The dump restored.
    pub key: String,
    /// Its run date.
    pub run_date: String,
    /// The target server (without password).
    pub server: String,
    /// The target database (schema).
    pub database: String,
    /// Where the previous contents went (`--replace`), if there were any.
    pub previous: Option<String>,
    /// Stored bytes read and checked.
    pub bytes: u64,
    /// Transform files applied.
    pub transforms: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// The `pg_restore -j` jobs of a parallel restore; absent when the dump was streamed through
    /// one transaction (ADR 0016).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_jobs: Option<usize>,
}

/// One restore as the engine modules (`pg`, `my`) take it: what to read, with which tools and
/// identities, into which server, and how. The database it loads into is passed beside it (the
/// target, or the side database of a `--replace`).
#[derive(Clone, Copy)]
pub(super) struct Job<'a> {
    pub(super) store: &'a BackupStore,
    pub(super) dirs: &'a ToolDirs,
    pub(super) manifest: &'a Manifest,
    pub(super) server: &'a ServerUrl,
    pub(super) ids: Option<&'a [Identity]>,
    pub(super) transforms: &'a [Transform],
    pub(super) options: &'a RestoreOptions,
}

/// Where the restore tools live (`export.pg_bin_dir`, `export.mysql_bin_dir`).
#[derive(Clone, Debug, Default)]
pub struct ToolDirs {
    /// Directory of `pg_restore` and `psql`.
    pub pg_bin_dir: Option<PathBuf>,
    /// Directory of `mysql`/`mariadb`.
    pub mysql_bin_dir: Option<PathBuf>,
}

impl ToolDirs {
    /// The directories the settings name.
    #[must_use]
    pub fn from_settings(settings: &Settings) -> Self {
        Self { pg_bin_dir: settings.export.pg_bin_dir.clone(), mysql_bin_dir: settings.export.mysql_bin_dir.clone() }
    }
}

/// Refuses a target whose database name or host matches a production pattern, unless overridden.
pub fn production_guard(
    patterns: &[String],
    target: &ServerUrl,
    database: &str,
    production_ok: bool,
) -> Result<(), RestoreError> {
    for pattern in patterns {
        let Ok(glob) = globset::GlobBuilder::new(pattern).case_insensitive(true).build() else { continue };
        let m = glob.compile_matcher();
        for (what, value) in [("database", database), ("host", target.host.as_str())] {
            if m.is_match(value) {
                if production_ok {
                    tracing::warn!(target.host = %target.host, db.name = %database, pattern = %pattern, "restoring into a production target (--i-know-this-is-production)");
                    return Ok(());
                }
                return Err(RestoreError::Refused(format!(
                    "the target's {what} `{value}` matches the production pattern `{pattern}` \
                     (restore.production_patterns): pass --i-know-this-is-production to restore into it anyway"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> ServerUrl {
        ServerUrl::try_from(s.to_owned()).unwrap()
    }

    #[test]
    fn production_guard_matches_name_or_host_and_can_be_overridden() {
        let patterns = vec!["*prod*".to_owned(), "db-main.*".to_owned()];
        let t = url("postgres://u@db-main.internal/app");
        assert!(matches!(production_guard(&patterns, &t, "app", false), Err(RestoreError::Refused(_))));
        assert!(production_guard(&patterns, &t, "app", true).is_ok());
        let t = url("postgres://u@localhost/x");
        let err = production_guard(&patterns, &t, "App_PROD", false).unwrap_err().to_string();
        assert!(err.contains("`App_PROD`") && err.contains("--i-know-this-is-production"), "{err}");
        assert!(production_guard(&patterns, &t, "staging", false).is_ok());
    }
}
