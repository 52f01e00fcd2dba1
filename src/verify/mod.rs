//! Restore drills: prove a backup restores by restoring it.
//!
//! [`Verifier::verify`] restores one backup (default: the newest) into a scratch database on the
//! configured verification server (`[verify] url` for PostgreSQL, `mysql_url` for MySQL/MariaDB),
//! compares the row count of every table with the manifest's `row_counts`, runs the configured
//! check queries, **always** drops the scratch database, writes a [`VerificationRecord`] under
//! `verifications/<project>/<instance>/<database>/<run date>.json`, and reports a failure through
//! the notifiers. A backup no drill can restore (a SQL Server BAK file: restoring it needs a SQL
//! Server) gets the record `unverifiable` with its reason instead, without a drill: neither a
//! proof nor a failure, and never reported.
//!
//! **The backup's code never runs with the configured account's privileges.** The configured URL
//! only creates a throwaway account owning nothing but the scratch database, and drops both
//! afterwards; the restore, the row counts and the checks connect as that account (see
//! `restore::drill_account` and ADR 0012). A backup whose code reaches for more fails its drill.
//!
//! Row counts are compared exactly when the manifest says they were counted in the dump's own
//! snapshot (`row_counts_exact`, always true for PostgreSQL); otherwise (MySQL/MariaDB, whose counts
//! come from a snapshot taken just before the dump's) they are recorded as information only.
//!
//! The record is **overwritten** by each attempt (a plain `put`, like `latest/`): it is the current
//! verdict on one backup, derived from the backup and reproducible by verifying again. A later
//! attempt must be able to replace an earlier verdict (a failure caused by an unreachable
//! verification server must not stick), and two concurrent attempts each write a complete, valid
//! verdict, so the last writer winning is correct. The history of attempts lives in the logs and
//! the notifications; keeping one object per attempt would need a second key shape and a listing
//! to find the newest, for no decision anyone takes on it.
//!
//! The nightly drill ([`Verifier::pick`]) verifies the N least recently verified databases: every
//! database with a `latest/` copy, never-verified ones first, then by the time of the record of
//! their newest verified backup. [`Verifier::drill_due`] is that pick within the `[verify]` budget
//! (`nightly_count` drills, none started after `nightly_secs`): `serve` runs it after each run's
//! exports, and `POST /verify/due` (Cloud Scheduler) on Cloud Run. With off-site copies
//! ([`Verifier::with_copies`]) the pick is over (store, database) pairs: each database once in the
//! primary and once in each copy, ordered by the last drill in that store, so the copies are
//! proven in turn too (ADR 0023).
//!
//! **A drill of a copy** ([`Verifier::verify_from`], the nightly pick) reads the copy's catalog,
//! manifest and object, decrypts an encrypted copy with `verify.identity_file`, and writes its
//! record (naming the copy in `copy`) in the copy's store, never in the primary's.
//!
//! **Where a drill restores.** On the configured server of the backup's engine (`url`,
//! `mysql_url`); without one (and with `scratch`, the default), on a throwaway server the drill
//! starts from the installed server binaries, private to it, and stops afterwards
//! (`restore::scratch_server`, ADR 0014). Nothing is ever created on a source server. A drill
//! interrupted by [`Verifier::interrupt`] (the service is stopping) stops its scratch server,
//! drops what it created and records nothing.

mod drill;
mod due;
mod record;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::model::{DatabasePath, Engine, RunDate};
use crate::notify::Notifier;
use crate::restore::{ToolDirs, path_text};
use crate::settings::{ServerUrl, Settings, VerifySettings};
use crate::store::layout::Key;
use crate::store::manifest::Manifest;
use crate::store::{BackupStore, StoreError};

pub use crate::store::catalog::least_recently_verified;
pub use crate::store::verification::{
    CheckOutcome, RECORD_VERSION, TableCount, VerificationRecord, VerificationResult, VerificationSummary,
};

/// Why a verification could not run (a backup that fails verification is a record, not an error).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// No such backup.
    #[error("{0}")]
    NotFound(String),
    /// No verification server is configured for the backup's engine.
    #[error("{0}")]
    NotConfigured(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The service is stopping: the drill was stopped and recorded nothing.
    #[error("the service is stopping: the drill was interrupted")]
    Interrupted,
}

impl VerifyError {
    /// True when retrying may help.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Interrupted) || matches!(self, Self::Store(e) if e.is_transient())
    }
}

/// The server a drill restores into.
enum Target {
    /// The configured verification server.
    Configured(ServerUrl),
    /// A throwaway server of the drill's own.
    Scratch,
}

/// Runs restore drills; one per process, shared by the CLI and `POST /verify`.
pub struct Verifier {
    store: BackupStore,
    /// The off-site copies (`[[copies]]`: name and store) the nightly pick drills besides the
    /// primary ([`Verifier::with_copies`]).
    copies: Vec<(String, BackupStore)>,
    settings: VerifySettings,
    tools: ToolDirs,
    /// `restore.jobs` and `restore.temp_dir`: a drill restores as `data-backup restore` does.
    restore_jobs: Option<usize>,
    temp_dir: Option<std::path::PathBuf>,
    notifiers: Vec<Arc<dyn Notifier>>,
    stop: CancellationToken,
    /// Held (shared) by every running drill; [`Verifier::stopped`] takes it exclusively.
    running: tokio::sync::RwLock<()>,
    /// Held by the one [`Verifier::drill_due`] running: overlapping runs (or a Cloud Scheduler call
    /// meeting the embedded timer) would otherwise pick, and drill, the same databases twice.
    due: tokio::sync::Mutex<()>,
}

impl Verifier {
    /// A verifier over `store` with the settings' `[verify]` section and tool directories.
    #[must_use]
    pub fn new(store: BackupStore, settings: &Settings, notifiers: Vec<Arc<dyn Notifier>>) -> Self {
        Self {
            store,
            copies: Vec::new(),
            settings: settings.verify.clone(),
            tools: ToolDirs::from_settings(settings),
            restore_jobs: settings.restore.jobs,
            temp_dir: settings.restore.temp_dir.clone(),
            notifiers,
            stop: CancellationToken::new(),
            running: tokio::sync::RwLock::new(()),
            due: tokio::sync::Mutex::new(()),
        }
    }

    /// This verifier with the off-site copies `copies` (name and store): the nightly pick drills
    /// their backups too, each recorded in its copy's store.
    #[must_use]
    pub fn with_copies(mut self, copies: Vec<(String, BackupStore)>) -> Self {
        self.copies = copies;
        self
    }

    /// Stops every running drill (their scratch servers are stopped and removed, nothing is
    /// recorded) and refuses new ones: the service is stopping.
    pub fn interrupt(&self) {
        self.stop.cancel();
    }

    /// Completes when no drill is running (after [`Verifier::interrupt`]: when every interrupted
    /// drill has stopped its scratch server and removed its directory).
    pub async fn stopped(&self) {
        let _ = self.running.write().await;
    }

    fn server_for(&self, engine: Engine) -> Result<Target, VerifyError> {
        let (url, key) = match engine {
            Engine::Postgres => (&self.settings.url, "verify.url"),
            Engine::Mysql => (&self.settings.mysql_url, "verify.mysql_url"),
            Engine::Sqlserver => (&None, "verify"),
        };
        match url {
            Some(url) => Ok(Target::Configured(url.clone())),
            None if self.settings.scratch && engine != Engine::Sqlserver => Ok(Target::Scratch),
            None => Err(VerifyError::NotConfigured(format!(
                "no verification server is configured for {} backups: set `{key}` (or `verify.scratch = true`)",
                engine.as_str()
            ))),
        }
    }

    /// Verifies the backup of `db` for `date` (default: the newest); see the module docs.
    pub async fn verify(&self, db: &DatabasePath, date: Option<RunDate>) -> Result<VerificationRecord, VerifyError> {
        self.verify_in(&self.store, None, db, date).await
    }

    /// Verifies the backup of `db` for `date` (default: the newest) in the off-site copy `copy`,
    /// whose store is `store` (`copy::open_copy_store`): its catalog, its manifest and object, its
    /// record (the copy is itself proven; the primary's verdict is never overwritten by a copy's).
    /// An encrypted copy is decrypted with `verify.identity_file`.
    pub async fn verify_from(
        &self,
        copy: &str,
        store: &BackupStore,
        db: &DatabasePath,
        date: Option<RunDate>,
    ) -> Result<VerificationRecord, VerifyError> {
        self.verify_in(store, Some(copy), db, date).await
    }

    /// Verifies the backup of `db` for `date` in `store`, the primary or (`copy`) an off-site copy.
    async fn verify_in(
        &self,
        store: &BackupStore,
        copy: Option<&str>,
        db: &DatabasePath,
        date: Option<RunDate>,
    ) -> Result<VerificationRecord, VerifyError> {
        // Every manifest counts here, also one whose dump is missing: that is what a drill is for.
        let all = crate::store::catalog::stored_backups(store, db).await?;
        let chosen = match date {
            Some(d) => all.iter().find(|b| b.date == d),
            None => all.first(),
        };
        let what = date.map_or_else(String::new, |d| format!(" for {d}"));
        let Some(chosen) = chosen else {
            return Err(VerifyError::NotFound(format!("no backup of {}{what}", path_text(db))));
        };
        let Some(manifest) = store.read::<Manifest>(&chosen.manifest).await? else {
            return Err(VerifyError::NotFound(format!("no backup of {}{what}", path_text(db))));
        };
        let mut record = match crate::restore::unrestorable(&manifest) {
            Some(reason) => Self::unverifiable(db, &manifest, reason),
            None => self.drill_on(store, db, &manifest, self.server_for(manifest.engine)?).await?,
        };
        record.copy = copy.map(str::to_owned);
        if record.result == VerificationResult::Failed {
            self.report(&manifest, &record).await;
        }
        let key = Key::Verification { db: db.clone(), date: chosen.date };
        let body = serde_json::to_vec_pretty(&record).expect("plain data serialises");
        store.bucket().put(&key.path(), body.into()).await.map_err(StoreError::from)?;
        crate::store::history::record_verification(store, db, chosen.date, &record).await;
        tracing::info!(
            db.path = %path_text(db), run.date = %record.run_date, result = ?record.result, copy.name = copy,
            duration_secs = record.duration_secs, "verification finished"
        );
        Ok(record)
    }
}
