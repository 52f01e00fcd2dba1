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
//! exports, and `POST /verify/due` (Cloud Scheduler) on Cloud Run.
//!
//! **Where a drill restores.** On the configured server of the backup's engine (`url`,
//! `mysql_url`); without one (and with `scratch`, the default), on a throwaway server the drill
//! starts from the installed server binaries, private to it, and stops afterwards
//! (`restore::scratch_server`, ADR 0014). Nothing is ever created on a source server. A drill
//! interrupted by [`Verifier::interrupt`] (the service is stopping) stops its scratch server,
//! drops what it created and records nothing.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::model::{DatabaseName, DatabasePath, Engine, InstanceName, ProjectId, RunDate};
use crate::notify::{FailureReport, Notifier};
use crate::restore::{
    DrillAccount, RestoreError, RestoreOptions, SCRATCH_PREFIX, ScratchServer, ToolDirs, count_rows, dumped_major,
    path_text, query_value, restore_manifest, stored_backups,
};
use crate::settings::{ServerUrl, Settings, SourceKind, VerifyCheck, VerifySettings};
use crate::store::layout::Key;
use crate::store::manifest::Manifest;
use crate::store::{BackupStore, StoreError};

/// Version of the record format.
pub const RECORD_VERSION: u32 = 1;

/// Outcome of a verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerificationResult {
    /// The backup restored, its row counts match and every check passed.
    Ok,
    /// Something failed: see `errors`.
    Failed,
    /// The backup cannot be restored here at all (a SQL Server BAK file): see `reason`. Neither a
    /// proof nor a failure; never reported.
    Unverifiable,
}

/// One table's rows: what the manifest recorded and what the restore holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TableCount {
    /// `schema.table` (PostgreSQL) or `table` (MySQL).
    pub table: String,
    /// Rows the manifest recorded, if it has the table.
    pub expected: Option<u64>,
    /// Rows in the restored database, if it has the table.
    pub restored: Option<u64>,
    /// Whether the two agree.
    pub matches: bool,
}

/// One check query's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckOutcome {
    /// The check's name.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// The value it returned, or its error.
    pub detail: String,
}

/// The verdict on one backup, stored under `verifications/…/<run date>.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VerificationRecord {
    /// Record format version.
    pub version: u32,
    /// Project.
    pub project: String,
    /// Instance.
    pub instance: String,
    /// Database.
    pub database: String,
    /// Engine.
    pub engine: Engine,
    /// The backup's run date.
    pub run_date: String,
    /// The dump verified.
    pub key: String,
    /// `ok`, `failed` or `unverifiable`.
    pub result: VerificationResult,
    /// Why the backup cannot be verified (when `result` is `unverifiable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the verification started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// Seconds it took.
    pub duration_secs: f64,
    /// The verification server (without password).
    pub server: String,
    /// The scratch database it restored into (dropped afterwards).
    pub scratch_database: String,
    /// Stored bytes read and checked against the manifest's size and SHA-256.
    pub bytes_checked: u64,
    /// Whether row counts were compared (false: no counts, or not exact; then they are information only).
    pub row_counts_compared: bool,
    /// Per-table row counts.
    pub tables: Vec<TableCount>,
    /// Check queries.
    pub checks: Vec<CheckOutcome>,
    /// What failed (empty when `result` is `ok`).
    pub errors: Vec<String>,
    /// Problems that do not fail the backup (e.g. the scratch database could not be dropped).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Seconds the restore itself took (read, decrypt, decompress, restore tool): the measured
    /// restore time of the database. Absent when the restore did not finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_secs: Option<f64>,
    /// Stored bytes restored per second of `restore_secs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_sec: Option<f64>,
    /// Rows restored per second of `restore_secs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_per_sec: Option<f64>,
    /// The `pg_restore -j` jobs when the drill restored in parallel (a PostgreSQL custom-format
    /// backup); absent when the dump was streamed (ADR 0016).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_jobs: Option<usize>,
}

/// The part of a record a listing shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VerificationSummary {
    /// `ok`, `failed` or `unverifiable`.
    pub result: VerificationResult,
    /// When it was verified.
    pub verified_at: DateTime<Utc>,
    /// The first error, when it failed; why not, when it is unverifiable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Seconds the restore itself took, when it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_secs: Option<f64>,
    /// Stored bytes restored per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_sec: Option<f64>,
}

impl VerificationRecord {
    /// What a listing shows of it.
    #[must_use]
    pub fn summary(&self) -> VerificationSummary {
        VerificationSummary {
            result: self.result,
            verified_at: self.finished_at,
            error: self.errors.first().or(self.reason.as_ref()).cloned(),
            restore_secs: self.restore_secs,
            bytes_per_sec: self.bytes_per_sec,
        }
    }
}

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

fn placeholder_db() -> DatabasePath {
    DatabasePath {
        project: ProjectId::parse("p").expect("valid"),
        instance: InstanceName::parse("i").expect("valid"),
        database: DatabaseName::parse("d").expect("valid"),
    }
}

/// The run dates of `db` that have a verification record.
pub async fn verified_dates(store: &BackupStore, db: &DatabasePath) -> Result<HashSet<RunDate>, StoreError> {
    let probe = Key::Verification { db: db.clone(), date: RunDate::from_date(chrono::NaiveDate::MIN) };
    let prefix = crate::restore::key_prefix(&probe, 4);
    Ok(store
        .bucket()
        .list(&prefix)
        .await?
        .into_iter()
        .filter_map(|o| match Key::parse(&o.key) {
            Some(Key::Verification { db: of, date }) if &of == db => Some(date),
            _ => None,
        })
        .collect())
}

/// Every database with a backup, least recently verified first (never verified first of all),
/// with the time of its last verification.
pub async fn least_recently_verified(
    store: &BackupStore,
) -> Result<Vec<(DatabasePath, Option<DateTime<Utc>>)>, StoreError> {
    let latest_prefix = crate::restore::key_prefix(&Key::Latest { db: placeholder_db() }, 1);
    let records_prefix = crate::restore::key_prefix(
        &Key::Verification { db: placeholder_db(), date: RunDate::from_date(chrono::NaiveDate::MIN) },
        1,
    );
    let mut dbs: BTreeSet<DatabasePath> = BTreeSet::new();
    for o in store.bucket().list(&latest_prefix).await? {
        if let Some(Key::Latest { db }) = Key::parse(&o.key) {
            dbs.insert(db);
        }
    }
    let mut newest: BTreeMap<DatabasePath, RunDate> = BTreeMap::new();
    for o in store.bucket().list(&records_prefix).await? {
        if let Some(Key::Verification { db, date }) = Key::parse(&o.key) {
            let e = newest.entry(db).or_insert(date);
            if date > *e {
                *e = date;
            }
        }
    }
    let mut out = Vec::new();
    for db in dbs {
        let last = match newest.get(&db) {
            Some(&date) => store
                .read::<VerificationRecord>(&Key::Verification { db: db.clone(), date })
                .await
                .ok()
                .flatten()
                .map(|r| r.finished_at),
            None => None,
        };
        out.push((db, last));
    }
    // `None` sorts before `Some`: never-verified databases first, then the oldest verification.
    out.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    Ok(out)
}

/// Whether a check query's answer means "passed": true, `t`, `yes`, `on`, or a non-zero number.
fn truthy(value: Option<&str>) -> bool {
    let Some(v) = value.map(|v| v.trim().to_ascii_lowercase()) else { return false };
    matches!(v.as_str(), "t" | "true" | "yes" | "on") || v.parse::<f64>().is_ok_and(|n| n != 0.0)
}

/// Compares restored row counts with the manifest's. Answers (tables, errors, compared).
fn compare(manifest: &Manifest, restored: &BTreeMap<String, u64>) -> (Vec<TableCount>, Vec<String>, bool) {
    let Some(expected) = &manifest.row_counts else {
        let tables = restored
            .iter()
            .map(|(t, n)| TableCount { table: t.clone(), expected: None, restored: Some(*n), matches: true })
            .collect();
        return (tables, Vec::new(), false);
    };
    let exact = manifest.row_counts_exact.unwrap_or(manifest.engine == Engine::Postgres);
    let names: std::collections::BTreeSet<&String> = expected.keys().chain(restored.keys()).collect();
    let mut tables = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        let (e, r) = (expected.get(name).copied(), restored.get(name).copied());
        let matches = e == r;
        if !matches && exact {
            errors.push(match (e, r) {
                (Some(e), Some(r)) => format!("row count of {name}: the manifest records {e}, the restore holds {r}"),
                (Some(_), None) => format!("table {name} is in the manifest but not in the restore"),
                _ => format!("table {name} is in the restore but not in the manifest"),
            });
        }
        tables.push(TableCount { table: name.clone(), expected: e, restored: r, matches });
    }
    (tables, errors, exact)
}

impl Verifier {
    /// A verifier over `store` with the settings' `[verify]` section and tool directories.
    #[must_use]
    pub fn new(store: BackupStore, settings: &Settings, notifiers: Vec<Arc<dyn Notifier>>) -> Self {
        Self {
            store,
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

    /// Runs the drill on its target: the configured server, or a scratch server started for it and
    /// stopped after it, also when the drill fails or is interrupted.
    async fn drill_on(
        &self,
        db: &DatabasePath,
        manifest: &Manifest,
        target: Target,
    ) -> Result<VerificationRecord, VerifyError> {
        let _running = self.running.read().await;
        if self.stop.is_cancelled() {
            return Err(VerifyError::Interrupted);
        }
        match target {
            Target::Configured(url) => {
                // Not raced with the stop: the drill abandons its restore itself and still drops
                // its account and database on the configured server.
                let record = self.drill(db, manifest, &url).await;
                if self.stop.is_cancelled() { Err(VerifyError::Interrupted) } else { Ok(record) }
            }
            Target::Scratch => {
                let started_at = Utc::now();
                let min = if manifest.engine == Engine::Postgres { dumped_major(&manifest.tools.server) } else { None };
                let start =
                    ScratchServer::start(manifest.engine, &self.tools, min, self.settings.scratch_dir.as_deref());
                let server = tokio::select! {
                    s = start => s,
                    () = self.stop.cancelled() => return Err(VerifyError::Interrupted),
                };
                let server = match server {
                    Ok(s) => s,
                    Err(e) => {
                        let mut record = Self::unverifiable(db, manifest, "");
                        record.result = VerificationResult::Failed;
                        record.reason = None;
                        record.started_at = started_at;
                        record.server = "scratch".into();
                        record.errors = vec![format!("cannot start a scratch server for the drill: {e}")];
                        return Ok(record);
                    }
                };
                let outcome = tokio::select! {
                    record = self.drill(db, manifest, server.url()) => Ok(record),
                    () = self.stop.cancelled() => Err(VerifyError::Interrupted),
                };
                server.stop().await;
                outcome
            }
        }
    }

    fn applies(check: &VerifyCheck, db: &DatabasePath, engine: Engine) -> bool {
        let engine_ok = match check.engine {
            Some(SourceKind::Postgres) => engine == Engine::Postgres,
            Some(SourceKind::Mysql) => engine == Engine::Mysql,
            None => true,
        };
        let path = path_text(db);
        engine_ok
            && (check.databases.is_empty()
                || check.databases.iter().any(|g| crate::util::glob::compile_glob(g).is_ok_and(|m| m.is_match(&path))))
    }

    /// Verifies the backup of `db` for `date` (default: the newest); see the module docs.
    pub async fn verify(&self, db: &DatabasePath, date: Option<RunDate>) -> Result<VerificationRecord, VerifyError> {
        // Every manifest counts here, also one whose dump is missing: that is what a drill is for.
        let all = stored_backups(&self.store, db).await?;
        let chosen = match date {
            Some(d) => all.iter().find(|b| b.date == d),
            None => all.first(),
        };
        let what = date.map_or_else(String::new, |d| format!(" for {d}"));
        let Some(chosen) = chosen else {
            return Err(VerifyError::NotFound(format!("no backup of {}{what}", path_text(db))));
        };
        let Some(manifest) = self.store.read::<Manifest>(&chosen.manifest).await? else {
            return Err(VerifyError::NotFound(format!("no backup of {}{what}", path_text(db))));
        };
        let record = match crate::restore::unrestorable(&manifest) {
            Some(reason) => Self::unverifiable(db, &manifest, reason),
            None => self.drill_on(db, &manifest, self.server_for(manifest.engine)?).await?,
        };
        if record.result == VerificationResult::Failed {
            self.report(&manifest, &record).await;
        }
        let key = Key::Verification { db: db.clone(), date: chosen.date };
        let body = serde_json::to_vec_pretty(&record).expect("plain data serialises");
        self.store.bucket().put(&key.path(), body.into()).await.map_err(StoreError::from)?;
        crate::store::history::record_verification(&self.store, db, chosen.date, &record).await;
        tracing::info!(
            db.path = %path_text(db), run.date = %record.run_date, result = ?record.result,
            duration_secs = record.duration_secs, "verification finished"
        );
        Ok(record)
    }

    /// The honest verdict on a backup no drill can restore: no server, no account, nothing run.
    fn unverifiable(db: &DatabasePath, manifest: &Manifest, reason: &str) -> VerificationRecord {
        let now = Utc::now();
        VerificationRecord {
            version: RECORD_VERSION,
            project: db.project.to_string(),
            instance: db.instance.to_string(),
            database: db.database.to_string(),
            engine: manifest.engine,
            run_date: manifest.run_date.clone(),
            key: manifest.key.clone(),
            result: VerificationResult::Unverifiable,
            reason: Some(reason.to_owned()),
            started_at: now,
            finished_at: now,
            duration_secs: 0.0,
            server: String::new(),
            scratch_database: String::new(),
            bytes_checked: 0,
            row_counts_compared: false,
            tables: Vec::new(),
            checks: Vec::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
            restore_secs: None,
            bytes_per_sec: None,
            rows_per_sec: None,
            restore_jobs: None,
        }
    }

    async fn drill(&self, db: &DatabasePath, manifest: &Manifest, server: &ServerUrl) -> VerificationRecord {
        let started_at = Utc::now();
        let t0 = Instant::now();
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let (mut tables, mut checks, mut compared, mut bytes) = (Vec::new(), Vec::new(), false, 0);
        let mut restore_secs = None;
        let mut restore_jobs = None;
        let identities = match &self.settings.identity_file {
            Some(path) => match crate::crypto::read_identity_file(path) {
                Ok(ids) => Some(ids),
                Err(e) => {
                    errors.push(format!("verify.identity_file: {e}"));
                    None
                }
            },
            None => None,
        };
        // The backup's code runs during the restore and the checks: all of it as a throwaway
        // account that owns only the scratch database (module `restore::drill_account`, ADR 0012).
        let account = if errors.is_empty() {
            match DrillAccount::create(server).await {
                Ok(a) => Some(a),
                Err(e) => {
                    errors.push(format!("cannot create the drill's scratch database and account: {e}"));
                    None
                }
            }
        } else {
            None
        };
        let scratch = account.as_ref().map_or_else(|| format!("{SCRATCH_PREFIX}-"), |a| a.database().to_owned());
        // Interrupted (the service stops), the restore is abandoned but the account and its
        // database are still dropped below: the drill leaves nothing on the server.
        let mut interrupted = false;
        if let Some(account) = &account {
            interrupted = tokio::select! {
                () = async {
                    let as_account = account.url();
                    // The scratch database is dropped whatever happens: a parallel restore may load it in place.
                    let options = RestoreOptions {
                        create: true,
                        strip_definers: true,
                        jobs: self.restore_jobs,
                        temp_dir: self.temp_dir.clone(),
                        scratch: true,
                        ..RestoreOptions::default()
                    };
                    let restore_started = Instant::now();
                    match restore_manifest(
                        &self.store,
                        &self.tools,
                        manifest,
                        as_account,
                        &scratch,
                        identities.as_deref(),
                        &[],
                        &options,
                    )
                    .await
                    {
                        Ok(report) => {
                            bytes = report.bytes;
                            restore_jobs = report.parallel_jobs;
                            restore_secs = Some(restore_started.elapsed().as_secs_f64());
                            match count_rows(as_account, &scratch).await {
                                Ok(restored) => {
                                    let (t, e, c) = compare(manifest, &restored);
                                    (tables, compared) = (t, c);
                                    errors.extend(e);
                                }
                                Err(e) => errors.push(format!("cannot count the restored rows: {e}")),
                            }
                            for check in self.settings.checks.iter().filter(|c| Self::applies(c, db, manifest.engine)) {
                                let outcome = match query_value(as_account, &scratch, &check.sql).await {
                                    Ok(v) => CheckOutcome {
                                        name: check.name.clone(),
                                        passed: truthy(v.as_deref()),
                                        detail: v.unwrap_or_else(|| "no value".into()),
                                    },
                                    Err(e) => CheckOutcome { name: check.name.clone(), passed: false, detail: e.to_string() },
                                };
                                if !outcome.passed {
                                    errors.push(format!("check `{}` failed: {}", outcome.name, outcome.detail));
                                }
                                checks.push(outcome);
                            }
                        }
                        Err(RestoreError::Encrypted { .. }) => errors.push(
                            "the backup is encrypted and `verify.identity_file` is not set: it cannot be verified here".into(),
                        ),
                        Err(e) => errors.push(format!("restore failed: {e}")),
                    }
                } => false,
                () = self.stop.cancelled() => true,
            };
        }
        if interrupted {
            errors.push("interrupted: the service is stopping".into());
        }
        if let Some(account) = &account
            && let Err(e) = account.remove().await
        {
            warnings.push(format!("the scratch database or the drill's account was not dropped: {e}"));
        }
        let rows: u64 = tables.iter().filter_map(|t| t.restored).sum();
        #[expect(clippy::cast_precision_loss, reason = "a rate needs no more than f64's 52 bits")]
        let per_sec = |n: u64| restore_secs.filter(|s| *s > 0.0).map(|s| (n as f64 / s).round());
        let (bytes_per_sec, rows_per_sec) = (per_sec(bytes), per_sec(rows));
        VerificationRecord {
            version: RECORD_VERSION,
            project: db.project.to_string(),
            instance: db.instance.to_string(),
            database: db.database.to_string(),
            engine: manifest.engine,
            run_date: manifest.run_date.clone(),
            key: manifest.key.clone(),
            result: if errors.is_empty() { VerificationResult::Ok } else { VerificationResult::Failed },
            reason: None,
            started_at,
            finished_at: Utc::now(),
            duration_secs: t0.elapsed().as_secs_f64(),
            server: server.to_string(),
            scratch_database: scratch,
            bytes_checked: bytes,
            row_counts_compared: compared,
            tables,
            checks,
            errors,
            warnings,
            restore_secs,
            bytes_per_sec,
            rows_per_sec,
            restore_jobs,
        }
    }

    async fn report(&self, manifest: &Manifest, record: &VerificationRecord) {
        let message = record.errors.join("; ");
        let report = FailureReport {
            source: manifest.source.clone(),
            project: record.project.clone(),
            instance: record.instance.clone(),
            database: record.database.clone(),
            run_date: record.run_date.clone(),
            run_id: manifest.run_id.clone(),
            attempt: 1,
            error_class: "verification_failed".into(),
            transient: false,
            message: message.clone(),
            reported_at: Utc::now(),
            text: format!(
                ":red_circle: data-backup: the restore drill of {}/{}/{} (backup of {}) failed: {message}",
                record.project, record.instance, record.database, record.run_date
            ),
            operation: None,
        };
        for n in &self.notifiers {
            if let Err(e) = n.notify(&report).await {
                tracing::warn!(error = %e, "{e}");
            }
        }
    }

    /// The nightly drill: verifies the newest backups of the `n` least recently verified databases
    /// (databases whose engine has no verification server are skipped; an `unverifiable` verdict
    /// is recorded and returned but does not count towards `n`).
    pub async fn pick(&self, n: usize) -> Result<Vec<VerificationRecord>, VerifyError> {
        self.pick_within(n, None).await
    }

    /// The drills due after a run: [`Verifier::pick`] of `nightly_count` databases, none but the
    /// first started later than `nightly_secs` after the first.
    pub async fn drill_due(&self) -> Result<Vec<VerificationRecord>, VerifyError> {
        let Ok(_due) = self.due.try_lock() else {
            tracing::info!("the drills due are already running: nothing more to do");
            return Ok(Vec::new());
        };
        let budget = Duration::from_secs(self.settings.nightly_secs);
        let records = self.pick_within(self.settings.nightly_count, Some(budget)).await?;
        tracing::info!(drills = records.len(), "the drills due after the run are done");
        Ok(records)
    }

    async fn pick_within(&self, n: usize, budget: Option<Duration>) -> Result<Vec<VerificationRecord>, VerifyError> {
        let t0 = Instant::now();
        let mut records = Vec::new();
        let mut drilled = 0;
        for (db, last) in least_recently_verified(&self.store).await? {
            if drilled >= n {
                break;
            }
            // The time budget never starves the first drill.
            if !records.is_empty() && budget.is_some_and(|b| t0.elapsed() >= b) {
                tracing::info!(db.path = %path_text(&db), "the drills' time budget is spent: left for the next run");
                break;
            }
            match self.verify(&db, None).await {
                Ok(r) => {
                    drilled += usize::from(r.result != VerificationResult::Unverifiable);
                    records.push(r);
                }
                Err(e @ (VerifyError::NotConfigured(_) | VerifyError::NotFound(_))) => {
                    tracing::info!(db.path = %path_text(&db), last_verified = ?last, "skipped by the drill: {e}");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::manifest::{DumpFormat, ToolVersions};

    fn manifest(counts: &[(&str, u64)], exact: Option<bool>, engine: Engine) -> Manifest {
        Manifest {
            version: 1,
            source: "s".into(),
            project: "p".into(),
            instance: "i".into(),
            database: "d".into(),
            engine,
            run_date: "2026-11-20".into(),
            run_id: "r".into(),
            class: "daily".into(),
            key: "k".into(),
            format: DumpFormat::PgCustomZstd,
            compression: "zstd".into(),
            compression_level: None,
            bytes: 1,
            raw_bytes: None,
            sha256: None,
            object_version: None,
            started_at: Utc::now(),
            finished_at: Utc::now(),
            tools: ToolVersions { dump: String::new(), server: String::new(), data_backup: String::new() },
            encryption: None,
            row_counts: Some(counts.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect()),
            row_counts_exact: exact,
            cloud_sql: None,
        }
    }

    #[test]
    fn exact_counts_must_match_table_by_table() {
        let m = manifest(&[("public.a", 3), ("public.b", 0)], Some(true), Engine::Postgres);
        let restored: BTreeMap<String, u64> = [("public.a".to_owned(), 2), ("public.c".to_owned(), 1)].into();
        let (tables, errors, compared) = compare(&m, &restored);
        assert!(compared);
        assert_eq!(tables.len(), 3);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].contains("manifest records 3, the restore holds 2"));
    }

    #[test]
    fn inexact_counts_are_information_only() {
        let m = manifest(&[("a", 3)], Some(false), Engine::Mysql);
        let (tables, errors, compared) = compare(&m, &[("a".to_owned(), 4)].into());
        assert!(!compared && errors.is_empty());
        assert!(!tables[0].matches);
    }

    #[test]
    fn check_answers_are_read_as_booleans() {
        for yes in ["t", "true", "1", " 42 ", "YES"] {
            assert!(truthy(Some(yes)), "{yes}");
        }
        for no in ["f", "false", "0", "", "nope"] {
            assert!(!truthy(Some(no)), "{no}");
        }
        assert!(!truthy(None));
    }
}
