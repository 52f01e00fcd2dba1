//! Restore: find a backup through its manifests, stream it out of the store into the database's
//! own tools, and put it in place without ever leaving the target half-restored.
//!
//! **Finding.** Backups are found by listing the manifests of a database under every retention
//! class and parsing their keys ([`stored_backups`]); a listing's order or last name is never
//! trusted. `--latest` is the newest run date, `--date` that exact day, and `--at T` the newest
//! backup whose run date is on or before T's day *and* whose export started at or before T (a
//! backup that started after T holds data written after T). A manifest whose dump object is
//! missing is skipped with a warning (for `--date` it is an error).
//!
//! **Streaming.** The object is read once, in bounded memory: bucket stream → size and SHA-256
//! (checked against the manifest as it streams) → age decryption (when encrypted) → zstd → the tool.
//! A mismatch fails the restore loudly; nothing is committed before the whole object has been read
//! and checked.
//!
//! **PostgreSQL.** `pg_restore -f -` turns the archive into SQL, which is piped into `psql -v
//! ON_ERROR_STOP=1 -f -` inside `BEGIN; … COMMIT;`, with the transform files in the same
//! transaction after the restore. `COMMIT` is written only after the object's checks passed,
//! `pg_restore` exited 0 and every transform was sent, so any failure (or this process dying) rolls
//! the whole restore back: the target is as it was. (`psql --single-transaction` is deliberately
//! not used: it commits at the end of its input even when the input ended early because the
//! process feeding it died.) A plain restore refuses a target with user tables; `--create` creates a
//! missing target (and drops it again when the restore fails).
//!
//! **In parallel** (module `parallel`, ADR 0016). A custom-format dump restored without transforms,
//! into a database nobody uses yet (the `--replace` side database, a missing `--create` target
//! restored beside its name and renamed when done, a drill's scratch database), is read through the
//! same checks into an unnamed temporary file first, and restored with `pg_restore -j N` only once
//! every check passed. It is not one transaction, which is why it never loads an existing target in
//! place; [`RestoreReport::parallel_jobs`] says which path ran.
//!
//! `--replace` restores into a side database `<target>_restore_<random>`, runs the transforms
//! there, and only then swaps in one transaction: `ALTER DATABASE target RENAME TO
//! target_old_<YYYYMMDDHHMMSS>_<random>; ALTER DATABASE side RENAME TO target`. The old database is
//! kept. Side and old names carry a random part, so two restores of one target never share one.
//! If anything fails, the side database is dropped and the target is untouched.
//! **Open connections:** PostgreSQL refuses to rename a database anyone is connected to, so a swap
//! never happens under an open session. By default the restore then fails at the swap (the side
//! database is dropped, the target untouched, the error says how many sessions were connected).
//! With `--terminate-connections`, new connections to the target are refused (`ALLOW_CONNECTIONS
//! false`), its sessions are terminated (they lose their open transactions), the renames commit,
//! and connections are allowed again on both databases; clients that reconnect by name reach the
//! restored database.
//!
//! **MySQL/MariaDB.** The dump (which has no `CREATE DATABASE`/`USE`; in a Cloud SQL export, which
//! has them, they are pointed at the side schema as it streams, and one naming any other database
//! fails the restore: module `database_lines`) is loaded with the `mysql` client into a side schema
//! `<target>_restore_<random>`, the transforms run there, and the tables
//! are swapped in with one atomic multi-table `RENAME TABLE` (old tables move to
//! `<target>_old_<YYYYMMDDHHMMSS>_<random>`). What MySQL cannot roll back: every DDL statement commits
//! implicitly, so a failed load or transform cannot be undone inside the side schema; it is
//! dropped instead (the target is untouched). The swap itself is several statements: triggers
//! must be dropped before their tables may change schema and views cannot change schema at all,
//! so triggers, views, routines and events are dropped and recreated from their `SHOW CREATE`
//! text around the atomic `RENAME TABLE`. For that moment (normally well under a second) the
//! target's tables exist without their triggers and views: stop writers during a `--replace`. The
//! swap waits at most 30 s for other sessions' metadata locks (an open transaction on a target
//! table holds one). If it fails before the rename, the target's own triggers, views, routines and
//! events are put back and the restore is discarded (only the schemas this restore created are
//! dropped: never one that existed before it, or another restore's); if it fails after, nothing is
//! dropped and the error says where each part is.
//!
//! **Whose privileges.** Restoring runs code the backup holds (PostgreSQL functions behind
//! constraints, defaults and triggers; MySQL objects as their `DEFINER`) with the privileges of the
//! account that restores: a `restore` uses the target URL's, as the operator chose; restore drills
//! restore as a throwaway account that owns only their scratch database ([`DrillAccount`], ADR 0012).
//!
//! **Guards.** A target whose database name or host matches `restore.production_patterns` is
//! refused without `--i-know-this-is-production`. Passwords come from the target URL (or
//! `PGPASSWORD`/`MYSQL_PWD` when the URL has none) and reach the tools through their environment,
//! never their arguments or the logs.

use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Write as _};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use age::x25519::Identity;
use async_compression::tokio::bufread::{GzipDecoder, ZstdDecoder};
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use futures::StreamExt;
use mysql_async::prelude::Queryable;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::model::{DatabasePath, Engine, Label, RunDate};
use crate::settings::{ServerUrl, Settings};
use crate::store::bucket::ByteStream;
use crate::store::catalog::{StoredBackup, labelled_backups, stored_backups, verified_dates};
use crate::store::layout::Key;
use crate::store::manifest::{DumpFormat, Manifest};
use crate::store::verification::{VerificationRecord, VerificationSummary};
use crate::store::{BackupStore, StoreError};
use crate::util::process::tail_stderr;

mod database_lines;
mod definers;
mod drill_account;
mod line_filter;
mod parallel;
mod scratch_server;

pub use drill_account::{ACCOUNT_PREFIX, DrillAccount, SCRATCH_PREFIX};
pub use parallel::MAX_JOBS;
pub use scratch_server::{SCRATCH_DIR_PREFIX, ScratchError, ScratchServer, dumped_major};

/// Copy buffer between the stages.
const PUMP_BUF: usize = 256 * 1024;
/// Longest PostgreSQL identifier (bytes).
const PG_MAX_IDENT: usize = 63;
/// Longest MySQL identifier (characters; names here are ASCII-safe in practice).
const MYSQL_MAX_IDENT: usize = 64;
/// How long a MySQL swap waits for another session's metadata lock before it gives up.
const SWAP_LOCK_WAIT_SECS: u32 = 30;

/// Why a restore (or a listing) failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// No backup matches the request.
    #[error("{0}")]
    NotFound(String),
    /// A guard refused the target (production, non-empty, missing).
    #[error("{0}")]
    Refused(String),
    /// The request is not usable (unreadable transform or identity file, bad page token, wrong engine).
    #[error("{0}")]
    Invalid(String),
    /// The backup is encrypted and no identity was given.
    #[error(
        "backup {key} is encrypted with age (recipients: {recipients}): pass --identity FILE with a matching \
         age identity (AGE-SECRET-KEY-…)"
    )]
    Encrypted {
        /// The dump's key.
        key: String,
        /// Its recipients, comma-separated.
        recipients: String,
    },
    /// The backup could not be decrypted with the given identity.
    #[error("{0}")]
    Decrypt(String),
    /// The stored object is not what its manifest describes.
    #[error("{key} is corrupt: {reason}")]
    Integrity {
        /// The dump's key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A restore tool failed (the target is left as it was; see the module docs for MySQL).
    #[error("{tool} failed ({status}): {stderr}")]
    Tool {
        /// `pg_restore`, `psql`, `mysql`.
        tool: String,
        /// Its exit status, or what went wrong with it.
        status: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// The backup's format cannot be restored by this version.
    #[error("{0}")]
    Unsupported(String),
    /// The target server failed or could not be reached.
    #[error("target {server}: {message}")]
    Target {
        /// The server (without password).
        server: String,
        /// What failed.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RestoreError {
    /// True when retrying may help.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Store(e) => e.is_transient(),
            Self::Target { .. } => true,
            _ => false,
        }
    }

    /// A short class name for logs and records.
    #[must_use]
    pub fn class(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::Refused(_) => "refused",
            Self::Invalid(_) => "invalid",
            Self::Encrypted { .. } => "encrypted",
            Self::Decrypt(_) => "decrypt",
            Self::Integrity { .. } => "integrity",
            Self::Tool { .. } => "tool",
            Self::Unsupported(_) => "unsupported",
            Self::Target { .. } => "target",
            Self::Store(_) => "store",
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Finding backups
// ------------------------------------------------------------------------------------------------

/// Which backup of a database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// The named backup with this label (`labels/<label>/…`).
    Label(Label),
    /// The newest.
    Latest,
    /// The one of this run date.
    Date(RunDate),
    /// The newest whose run date is on or before this time's day and whose export started at or before it.
    At(DateTime<Utc>),
}

fn no_backup(db: &DatabasePath, what: &str, all: &[StoredBackup]) -> RestoreError {
    let dates: Vec<String> = all.iter().take(5).map(|b| b.date.to_string()).collect();
    let available = if dates.is_empty() {
        "it has no backups".to_owned()
    } else {
        format!("newest backups: {}{}", dates.join(", "), if all.len() > 5 { ", …" } else { "" })
    };
    RestoreError::NotFound(format!("no backup of {} {what} ({available})", path_text(db)))
}

/// `project/instance/database`.
#[must_use]
pub fn path_text(db: &DatabasePath) -> String {
    use crate::model::glob_form;
    format!(
        "{}/{}/{}",
        glob_form(db.project.as_str()),
        glob_form(db.instance.as_str()),
        glob_form(db.database.as_str())
    )
}

/// Finds the backup `selector` names, through the manifests (see the module docs).
pub async fn find_backup(store: &BackupStore, db: &DatabasePath, selector: Selector) -> Result<Manifest, RestoreError> {
    if let Selector::Label(label) = &selector {
        let key = Key::LabelManifest { label: label.clone(), db: db.clone() };
        let Some(manifest) = store.read::<Manifest>(&key).await? else {
            let labels: Vec<String> =
                labelled_backups(store, db).await?.into_iter().map(|(l, _)| l.to_string()).collect();
            let available =
                if labels.is_empty() { "it has none".to_owned() } else { format!("it has: {}", labels.join(", ")) };
            return Err(RestoreError::NotFound(format!(
                "no backup of {} labelled `{label}` ({available})",
                path_text(db)
            )));
        };
        if store.bucket().head(&manifest.key).await.map_err(StoreError::from)?.is_none() {
            return Err(RestoreError::Integrity {
                key: key.path(),
                reason: "the manifest exists but its dump object is missing".into(),
            });
        }
        return Ok(manifest);
    }
    let all = stored_backups(store, db).await?;
    let candidates: Vec<&StoredBackup> = match selector {
        Selector::Label(_) => Vec::new(),
        Selector::Latest => all.iter().collect(),
        Selector::Date(d) => all.iter().filter(|b| b.date == d).collect(),
        Selector::At(t) => all.iter().filter(|b| b.date.date() <= t.date_naive()).collect(),
    };
    for b in candidates {
        if b.dump.is_none() {
            if let Selector::Date(_) = selector {
                return Err(RestoreError::Integrity {
                    key: b.manifest.path(),
                    reason: "the manifest exists but its dump object is missing".into(),
                });
            }
            tracing::warn!(key = %b.manifest.path(), "skipping a backup whose dump object is missing");
            continue;
        }
        let Some(manifest) = store.read::<Manifest>(&b.manifest).await? else { continue };
        if let Selector::At(t) = selector
            && manifest.started_at > t
        {
            tracing::info!(key = %b.manifest.path(), started_at = %manifest.started_at, "skipping a backup that started after --at");
            continue;
        }
        return Ok(manifest);
    }
    let what = match selector {
        Selector::Label(_) | Selector::Latest => "at all".to_owned(),
        Selector::Date(d) => format!("for {d}"),
        Selector::At(t) => format!("started at or before {}", t.to_rfc3339()),
    };
    Err(no_backup(db, &what, &all))
}

// ------------------------------------------------------------------------------------------------
// Listing
// ------------------------------------------------------------------------------------------------

/// One backup in a listing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BackupSummary {
    /// The day it belongs to.
    pub run_date: String,
    /// Retention class (`label` for a named backup, which retention never removes).
    pub class: String,
    /// The name of an on-demand backup (`labels/<label>/…`); absent for the dated ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Engine.
    pub engine: Engine,
    /// Stored format.
    pub format: DumpFormat,
    /// Object key of the dump.
    pub key: String,
    /// Size of the stored object in bytes.
    pub bytes: u64,
    /// When the dump was stored.
    pub finished_at: DateTime<Utc>,
    /// Whether the dump is encrypted (age).
    pub encrypted: bool,
    /// The age recipients that can decrypt it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    /// The last verification of this backup, if it was verified.
    pub verification: Option<VerificationSummary>,
}

/// A page of backups, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BackupPage {
    /// `project/instance/database`.
    pub database: String,
    /// Backups, newest first.
    pub backups: Vec<BackupSummary>,
    /// Pass as `page_token` for the next (older) page; absent on the last page.
    pub next_page_token: Option<String>,
}

/// Largest page of [`list_backups`].
pub const MAX_PAGE_SIZE: usize = 200;

/// One page of the backups of `db`, newest first (by run date; on one day the dated backup, then
/// the named ones by label). `page_token` is the `next_page_token` of the previous page (the run
/// date of its last backup: the next page starts before it, so a page holds every backup of the
/// days it shows and may exceed `page_size` by the named backups of its last day).
pub async fn list_backups(
    store: &BackupStore,
    db: &DatabasePath,
    page_token: Option<&str>,
    page_size: usize,
) -> Result<BackupPage, RestoreError> {
    let before = match page_token {
        Some(token) => {
            Some(NaiveDate::parse_from_str(token, "%Y-%m-%d").ok().filter(|_| token.len() == 10).ok_or_else(|| {
                RestoreError::Invalid(format!("page_token {token:?} is not a token this service gave"))
            })?)
        }
        None => None,
    };
    let page_size = page_size.clamp(1, MAX_PAGE_SIZE);
    // (run date, label, manifest key): dated backups from the listing, named ones from their manifests.
    let mut entries: Vec<(RunDate, Option<Label>, Key, Option<Manifest>)> =
        stored_backups(store, db).await?.into_iter().map(|b| (b.date, None, b.manifest, None)).collect();
    for (label, key) in labelled_backups(store, db).await? {
        let Some(m) = store.read::<Manifest>(&key).await? else { continue };
        let Ok(date) = RunDate::try_from(m.run_date.clone()) else { continue };
        entries.push((date, Some(label), key, Some(m)));
    }
    entries.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    entries.retain(|e| before.is_none_or(|d| e.0.date() < d));
    let mut shown = entries.len().min(page_size);
    while shown < entries.len() && entries[shown].0 == entries[shown - 1].0 {
        shown += 1;
    }
    let verified: std::collections::HashSet<RunDate> = verified_dates(store, db).await?;
    let mut backups = Vec::new();
    let mut last = None;
    for (date, label, key, manifest) in entries.iter().take(shown) {
        last = Some(*date);
        let m = match manifest {
            Some(m) => m.clone(),
            None => match store.read::<Manifest>(key).await? {
                Some(m) => m,
                None => continue,
            },
        };
        // Restore drills verify the dated backups; a named one shows none.
        let verification = if label.is_none() && verified.contains(date) {
            store
                .read::<VerificationRecord>(&Key::Verification { db: db.clone(), date: *date })
                .await
                .ok()
                .flatten()
                .map(|r| r.summary())
        } else {
            None
        };
        backups.push(BackupSummary {
            run_date: m.run_date,
            class: if label.is_some() { "label".to_owned() } else { m.class },
            label: label.as_ref().map(ToString::to_string),
            engine: m.engine,
            format: m.format,
            key: m.key,
            bytes: m.bytes,
            finished_at: m.finished_at,
            encrypted: m.encryption.is_some(),
            recipients: m.encryption.map(|e| e.recipients).unwrap_or_default(),
            verification,
        });
    }
    let next_page_token = if entries.len() > shown { last.map(|d| d.to_string()) } else { None };
    Ok(BackupPage { database: path_text(db), backups, next_page_token })
}

// ------------------------------------------------------------------------------------------------
// Requests
// ------------------------------------------------------------------------------------------------

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

/// Runs one `data-backup restore`: guard, find, restore.
pub async fn restore(
    store: &BackupStore,
    settings: &Settings,
    req: &RestoreRequest,
) -> Result<RestoreReport, RestoreError> {
    let database = req
        .target
        .dbname
        .clone()
        .ok_or_else(|| RestoreError::Invalid(format!("the target URL names no database: {}DBNAME", req.target)))?;
    production_guard(&settings.restore.production_patterns, &req.target, &database, req.production_ok)?;
    let transforms = read_transforms(&req.transforms)?;
    let identities =
        req.identity.as_deref().map(crate::crypto::read_identity_file).transpose().map_err(RestoreError::Invalid)?;
    let manifest = find_backup(store, &req.db, req.selector.clone()).await?;
    tracing::info!(key = %manifest.key, run_date = %manifest.run_date, target = %req.target, db.name = %database, "restoring");
    let mut options = req.options.clone();
    options.jobs = options.jobs.or(settings.restore.jobs);
    options.temp_dir = options.temp_dir.or_else(|| settings.restore.temp_dir.clone());
    restore_manifest(
        store,
        &ToolDirs::from_settings(settings),
        &manifest,
        &req.target,
        &database,
        identities.as_deref(),
        &transforms,
        &options,
    )
    .await
}

/// Why the backup `manifest` describes cannot be restored by this service at all, if it cannot:
/// SQL Server BAK files (restore drills record them `unverifiable` with this reason).
#[must_use]
pub fn unrestorable(manifest: &Manifest) -> Option<&'static str> {
    (manifest.format == DumpFormat::SqlServerBak || manifest.engine == Engine::Sqlserver)
        .then_some("SQL Server BAK files need a SQL Server to restore; none is configured")
}

/// Restores the backup `manifest` describes into `database` on `target` (no guard, no lookup).
#[expect(
    clippy::too_many_arguments,
    reason = "one call site each in restore and verify; a struct would only rename them"
)]
pub async fn restore_manifest(
    store: &BackupStore,
    tools: &ToolDirs,
    manifest: &Manifest,
    target: &ServerUrl,
    database: &str,
    identities: Option<&[Identity]>,
    transforms: &[Transform],
    options: &RestoreOptions,
) -> Result<RestoreReport, RestoreError> {
    let started = Instant::now();
    let expected = match (manifest.format, manifest.engine) {
        (DumpFormat::PgCustomZstd, _) | (DumpFormat::CloudSqlGz, Engine::Postgres) => "postgres",
        // A Cloud SQL MySQL export names its database: `my::load` points it at the target.
        (DumpFormat::MysqlSqlZstd, _) | (DumpFormat::CloudSqlGz, Engine::Mysql) => "mysql",
        _ => {
            return Err(RestoreError::Unsupported(format!(
                "{} is a Cloud SQL {} export: {} (import it with `gcloud sql import`)",
                manifest.key,
                manifest.engine.as_str(),
                unrestorable(manifest).unwrap_or("this version cannot restore it")
            )));
        }
    };
    if target.scheme != expected {
        return Err(RestoreError::Invalid(format!(
            "{} is a {expected} backup; the target is a {}:// server",
            manifest.key, target.scheme
        )));
    }
    let encrypted = manifest.encryption.is_some() || manifest.key.ends_with(".age");
    if encrypted && identities.is_none() {
        return Err(RestoreError::Encrypted {
            key: manifest.key.clone(),
            recipients: manifest.encryption.as_ref().map(|e| e.recipients.join(", ")).unwrap_or_default(),
        });
    }
    let ids = if encrypted { identities } else { None };
    let (previous, bytes, parallel_jobs) = if expected == "postgres" {
        pg::restore(store, tools, manifest, target, database, ids, transforms, options).await?
    } else {
        let (previous, bytes) = my::restore(store, tools, manifest, target, database, ids, transforms, options).await?;
        (previous, bytes, None)
    };
    Ok(RestoreReport {
        key: manifest.key.clone(),
        run_date: manifest.run_date.clone(),
        server: target.to_string(),
        database: database.to_owned(),
        previous,
        bytes,
        transforms: transforms.len(),
        seconds: started.elapsed().as_secs_f64(),
        parallel_jobs,
    })
}

// ------------------------------------------------------------------------------------------------
// Streaming the object out of the store, checked
// ------------------------------------------------------------------------------------------------

/// The decoded dump, and the task that reads and checks the stored object.
struct Fetch {
    reader: Pin<Box<dyn AsyncRead + Send>>,
    checked: JoinHandle<Result<(), RestoreError>>,
    cancel: CancellationToken,
    read: Arc<AtomicU64>,
}

/// Reads the object, hashing and counting, and forwards it to `tx` while anyone listens. It keeps
/// reading to the end (unless cancelled) so the verdict covers every byte even when the decoder
/// stopped early; a mismatch is also sent down the stream so the consumer fails with it.
async fn read_checked(
    mut stream: ByteStream,
    manifest: Manifest,
    tx: mpsc::Sender<io::Result<Bytes>>,
    cancel: CancellationToken,
    read: Arc<AtomicU64>,
) -> Result<(), RestoreError> {
    let mut hasher = Sha256::new();
    let mut n = 0u64;
    let mut open = true;
    let integrity = |reason: String| RestoreError::Integrity { key: manifest.key.clone(), reason };
    loop {
        let next = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            next = stream.next() => next,
        };
        let chunk = match next {
            None => break,
            Some(Ok(chunk)) => chunk,
            Some(Err(e)) => {
                if open {
                    let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
                }
                return Err(RestoreError::Store(e.into()));
            }
        };
        hasher.update(&chunk);
        n += chunk.len() as u64;
        read.store(n, Ordering::Relaxed);
        if n > manifest.bytes {
            let reason = format!("the object is longer than the {} bytes its manifest records", manifest.bytes);
            if open {
                let _ = tx.send(Err(io::Error::new(io::ErrorKind::InvalidData, reason.clone()))).await;
            }
            return Err(integrity(reason));
        }
        if open {
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                sent = tx.send(Ok(chunk)) => open = sent.is_ok(),
            }
        }
    }
    let sha = hex::encode(hasher.finalize());
    let problem = if n < manifest.bytes {
        Some(format!("truncated: the object has {n} bytes, its manifest records {}", manifest.bytes))
    } else if let Some(expected) = manifest.sha256.as_deref()
        && !expected.eq_ignore_ascii_case(&sha)
    {
        Some(format!("SHA-256 mismatch: the object's is {sha}, its manifest records {expected}"))
    } else {
        None
    };
    if manifest.sha256.is_none() {
        tracing::warn!(key = %manifest.key, "the manifest records no SHA-256: only the size was checked");
    }
    match problem {
        Some(reason) => {
            if open {
                let _ = tx.send(Err(io::Error::new(io::ErrorKind::InvalidData, reason.clone()))).await;
            }
            Err(integrity(reason))
        }
        None => Ok(()),
    }
}

/// Opens the dump for reading: checked, decrypted when `identities` are given, decompressed.
async fn open_dump(
    store: &BackupStore,
    manifest: &Manifest,
    identities: Option<&[Identity]>,
) -> Result<Fetch, RestoreError> {
    let Some(stream) = store.bucket().get_stream(&manifest.key).await.map_err(StoreError::from)? else {
        return Err(RestoreError::Integrity { key: manifest.key.clone(), reason: "the dump object is missing".into() });
    };
    let (tx, mut rx) = mpsc::channel::<io::Result<Bytes>>(8);
    let cancel = CancellationToken::new();
    let read = Arc::new(AtomicU64::new(0));
    let checked = tokio::spawn(read_checked(stream, manifest.clone(), tx, cancel.clone(), read.clone()));
    let raw = tokio_util::io::StreamReader::new(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let plain: Pin<Box<dyn AsyncRead + Send>> = match identities {
        Some(ids) => match crate::crypto::decrypting_reader(raw, ids).await {
            Ok(r) => Box::pin(r),
            Err(e) => {
                cancel.cancel();
                // A damaged header is the object's fault, not the identity's: say so when the check agrees.
                if let Ok(Err(integrity)) = checked.await {
                    return Err(integrity);
                }
                return Err(RestoreError::Decrypt(format!("{}: {e}", manifest.key)));
            }
        },
        None => Box::pin(raw),
    };
    let buffered = BufReader::with_capacity(PUMP_BUF, plain);
    let reader: Pin<Box<dyn AsyncRead + Send>> = if manifest.format == DumpFormat::CloudSqlGz {
        let mut gz = GzipDecoder::new(buffered);
        gz.multiple_members(true);
        Box::pin(gz)
    } else {
        Box::pin(ZstdDecoder::new(buffered))
    };
    Ok(Fetch { reader, checked, cancel, read })
}

/// Prints bytes read, rate and ETA on stderr (only when it is a terminal).
struct Progress {
    stop: Arc<AtomicBool>,
    task: Option<JoinHandle<()>>,
}

impl Progress {
    fn start(enabled: bool, read: Arc<AtomicU64>, total: u64, what: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let task = (enabled && io::stderr().is_terminal()).then(|| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let t0 = Instant::now();
                let mut tick = tokio::time::interval(Duration::from_millis(500));
                loop {
                    tick.tick().await;
                    let done = stop.load(Ordering::Relaxed);
                    let n = read.load(Ordering::Relaxed);
                    let secs = t0.elapsed().as_secs_f64().max(0.001);
                    let rate = n as f64 / secs;
                    let eta = if rate > 0.0 && total > n { (total - n) as f64 / rate } else { 0.0 };
                    let pct = if total > 0 { n as f64 * 100.0 / total as f64 } else { 100.0 };
                    let eta = eta as u64;
                    let line = if total > 0 && n >= total {
                        format!(
                            "{what}: {} read and checked; the database is finishing (indexes, constraints)",
                            human_bytes(n)
                        )
                    } else {
                        format!(
                            "{what}: {} / {} ({pct:.0}%)  {}/s  ETA {}:{:02}",
                            human_bytes(n),
                            human_bytes(total),
                            human_bytes(rate as u64),
                            eta / 60,
                            eta % 60
                        )
                    };
                    let mut err = io::stderr().lock();
                    // \r and "erase to the end of the line": each report replaces the previous one.
                    let _ = write!(err, "\r{line}\x1b[K");
                    if done {
                        let _ = writeln!(err);
                        return;
                    }
                }
            })
        });
        Self { stop, task }
    }

    async fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// `1.5 GiB`.
#[must_use]
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

// ------------------------------------------------------------------------------------------------
// Pumping into the tools
// ------------------------------------------------------------------------------------------------

/// Which side of a copy failed.
#[derive(Debug)]
enum PumpError {
    /// Reading the source.
    Read(io::Error),
    /// Writing into the tool.
    Write(io::Error),
}

/// Copies `from` into `to`; counts newlines into `lines` when given (to place errors in transforms).
async fn pump<R, W>(from: &mut R, to: &mut W, mut lines: Option<&mut u64>) -> Result<u64, PumpError>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut buf = vec![0u8; PUMP_BUF];
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buf).await.map_err(PumpError::Read)?;
        if n == 0 {
            break;
        }
        if let Some(lines) = lines.as_deref_mut() {
            *lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        }
        to.write_all(&buf[..n]).await.map_err(PumpError::Write)?;
        total += n as u64;
    }
    to.flush().await.map_err(PumpError::Write)?;
    Ok(total)
}

/// A piece of the loader's input written after the checks passed; `label` names a transform.
struct Segment {
    label: Option<String>,
    bytes: Vec<u8>,
}

/// What runs where: an optional converter (`pg_restore`) feeding the loader (`psql`, `mysql`).
struct Load {
    converter: Option<(String, Command)>,
    loader: (String, Command),
    prelude: &'static [u8],
    epilogue: Vec<Segment>,
}

fn spawn(name: &str, cmd: &mut Command, stdout: bool) -> Result<Child, RestoreError> {
    cmd.stdin(Stdio::piped())
        .stdout(if stdout { Stdio::piped() } else { Stdio::null() })
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| RestoreError::Tool {
            tool: name.to_owned(),
            status: "could not start".into(),
            stderr: e.to_string(),
        })
}

fn status_text(s: io::Result<ExitStatus>) -> (bool, String) {
    match s {
        Ok(s) => (s.success(), s.to_string()),
        Err(e) => (false, e.to_string()),
    }
}

/// Adds "(line N of transform FILE)" to a tool's error when its line number falls in a transform.
fn annotate(stderr: &str, segments: &[(u64, u64, String)]) -> String {
    let line = stderr.lines().find_map(|l| {
        let after = l.split_once("<stdin>:").map(|(_, a)| a).or_else(|| l.split_once(" at line ").map(|(_, a)| a))?;
        after.split(|c: char| !c.is_ascii_digit()).next()?.parse::<u64>().ok()
    });
    match line.and_then(|n| segments.iter().find(|(a, b, _)| (*a..=*b).contains(&n)).map(|s| (n, s))) {
        Some((n, (start, _, label))) => format!("{stderr} (line {} of transform {label})", n - start + 1),
        None => stderr.to_owned(),
    }
}

/// Streams `fetch` through the tools; writes the epilogue (transforms, `COMMIT`) only after every
/// check passed. On failure the loader is killed before its input can end normally.
async fn run_load(fetch: Fetch, key: &str, load: Load) -> Result<u64, RestoreError> {
    let Fetch { mut reader, checked, cancel, read } = fetch;
    let (loader_name, mut loader_cmd) = load.loader;
    let mut converter = match load.converter {
        Some((name, mut cmd)) => Some((spawn(&name, &mut cmd, true)?, name)),
        None => None,
    };
    let mut loader = spawn(&loader_name, &mut loader_cmd, false)?;
    let loader_err = tail_stderr(loader.stderr.take());
    let mut lin = loader.stdin.take().expect("piped");
    let mut lines = load.prelude.iter().filter(|&&b| b == b'\n').count() as u64;
    // Line numbers matter only to point into a transform.
    let count = load.epilogue.iter().any(|s| s.label.is_some());

    let (feed, mid, converter_err) = if let Some((conv, _)) = converter.as_mut() {
        let conv_err = tail_stderr(conv.stderr.take());
        let mut cin = conv.stdin.take().expect("piped");
        let cout = conv.stdout.take().expect("piped");
        let feed = async {
            let r = pump(&mut reader, &mut cin, None).await;
            drop(cin);
            r
        };
        // Each pump owns the pipe it reads: when the loader dies, the converter's stdout closes
        // with it, so the converter stops and the feed ends instead of both waiting on full pipes.
        let mid = async {
            let mut cout = cout;
            lin.write_all(load.prelude).await.map_err(PumpError::Write)?;
            pump(&mut cout, &mut lin, count.then_some(&mut lines)).await
        };
        let (feed, mid) = tokio::join!(feed, mid);
        (Some(feed), mid, Some(conv_err))
    } else {
        let mid = async {
            lin.write_all(load.prelude).await.map_err(PumpError::Write)?;
            pump(&mut reader, &mut lin, count.then_some(&mut lines)).await
        };
        (None, mid.await, None)
    };
    drop(reader);

    // A decoder or converter that fails may be failing on a damaged object: let the check read to
    // the end so the error names the damage. Only a loader that stopped reading (the target's
    // side) stops the download at once.
    let source_failed = matches!((&feed, &mid), (Some(Err(PumpError::Read(_))), _) | (None, Err(PumpError::Read(_))));
    if matches!(mid, Err(PumpError::Write(_))) {
        cancel.cancel();
    }
    let converter_status = match converter.as_mut() {
        Some((c, name)) => Some((status_text(c.wait().await), name.clone())),
        None => None,
    };
    let converter_err = match converter_err {
        Some(h) => h.await.unwrap_or_default(),
        None => String::new(),
    };
    let verdict = checked.await.unwrap_or_else(|e| Err(RestoreError::Invalid(format!("the object check died: {e}"))));

    let abort = async |mut loader: Child, lin: tokio::process::ChildStdin| {
        let _ = loader.start_kill();
        drop(lin);
        let _ = loader.wait().await;
    };
    if let Err(e) = verdict {
        abort(loader, lin).await;
        return Err(e);
    }
    if source_failed {
        let e = match (&feed, &mid) {
            (Some(Err(PumpError::Read(e))), _) | (_, Err(PumpError::Read(e))) => e.to_string(),
            _ => String::new(),
        };
        abort(loader, lin).await;
        return Err(RestoreError::Integrity {
            key: key.to_owned(),
            reason: format!("the object matches its manifest but does not decode: {e}"),
        });
    }
    // The loader stopped reading: it failed first (a failing converter only ends the loader's input).
    if matches!(mid, Err(PumpError::Write(_))) {
        drop(lin);
        let status = status_text(loader.wait().await);
        let stderr = loader_err.await.unwrap_or_default();
        return Err(RestoreError::Tool { tool: loader_name, status: status.1, stderr });
    }
    if let Some(((false, status), name)) = converter_status {
        abort(loader, lin).await;
        return Err(RestoreError::Tool { tool: name, status, stderr: converter_err });
    }
    if let Some(Err(PumpError::Write(e))) = &feed {
        let message = e.to_string();
        abort(loader, lin).await;
        return Err(RestoreError::Tool { tool: "pipe".into(), status: message, stderr: converter_err });
    }

    // Everything checked: the transforms, then the end of the transaction.
    let mut segments = Vec::new();
    let mut write_failed = false;
    for seg in load.epilogue {
        let start = lines + 1;
        lines += seg.bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        if let Some(label) = seg.label {
            segments.push((start, lines, label));
        }
        if lin.write_all(&seg.bytes).await.is_err() {
            write_failed = true;
            break;
        }
    }
    let _ = lin.flush().await;
    drop(lin);
    let status = status_text(loader.wait().await);
    let stderr = loader_err.await.unwrap_or_default();
    if !status.0 || write_failed {
        return Err(RestoreError::Tool { tool: loader_name, status: status.1, stderr: annotate(&stderr, &segments) });
    }
    Ok(read.load(Ordering::Relaxed))
}

/// A child's stderr message for a database error.
fn db_error(server: &ServerUrl, e: &dyn std::fmt::Display) -> RestoreError {
    RestoreError::Target { server: server.to_string(), message: e.to_string() }
}

/// `base` cut (at a character boundary) so that `base + suffix` fits in `max` bytes.
fn fit(base: &str, suffix: &str, max: usize) -> String {
    let room = max.saturating_sub(suffix.len());
    let mut cut = base.len().min(room);
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &base[..cut])
}

fn side_name(base: &str, max: usize) -> String {
    fit(base, &format!("_restore_{:08x}", rand::random::<u32>()), max)
}

/// `<base>_old_<YYYYMMDDHHMMSS>_<random>`: dated for people, unique per restore (two restores in
/// one second must not meet in one schema, or one's cleanup could drop the other's).
fn old_name(base: &str, max: usize) -> String {
    fit(base, &format!("_old_{}_{:08x}", Utc::now().format("%Y%m%d%H%M%S"), rand::random::<u32>()), max)
}

use crate::db::targets::url_password;
use crate::db::tools::version_major;

// ------------------------------------------------------------------------------------------------
// PostgreSQL
// ------------------------------------------------------------------------------------------------

mod pg {
    use super::*;

    pub(super) use crate::db::ident::pg as ident;

    /// `pg_restore` (the newest installed, or the configured directory's) and the `psql` beside it.
    async fn tools(dirs: &ToolDirs) -> Result<(PathBuf, PathBuf), RestoreError> {
        let pg_restore = crate::db::tools::newest_pg(dirs.pg_bin_dir.as_deref(), "pg_restore")
            .await
            .ok_or_else(|| RestoreError::Tool {
                tool: "pg_restore".into(),
                status: "not found".into(),
                stderr: "install the PostgreSQL client or set export.pg_bin_dir".into(),
            })?
            .path;
        let beside = pg_restore.with_file_name("psql");
        let psql = if beside.is_file() { beside } else { PathBuf::from("psql") };
        Ok((pg_restore, psql))
    }

    pub(super) async fn connect(server: &ServerUrl, db: &str) -> Result<tokio_postgres::Client, RestoreError> {
        let (client, conn) = crate::db::targets::url_pg(server, db)
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| db_error(server, &crate::util::error::error_chain_of(&e)))?;
        tokio::spawn(conn);
        Ok(client)
    }

    /// A connection to the server's maintenance database (`postgres`, else `template1`).
    pub(super) async fn admin(server: &ServerUrl) -> Result<tokio_postgres::Client, RestoreError> {
        match connect(server, "postgres").await {
            Ok(c) => Ok(c),
            Err(first) => connect(server, "template1").await.map_err(|_| first),
        }
    }

    pub(super) async fn exists(
        admin: &tokio_postgres::Client,
        server: &ServerUrl,
        db: &str,
    ) -> Result<bool, RestoreError> {
        let rows = admin
            .query("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
            .await
            .map_err(|e| db_error(server, &crate::util::error::error_chain_of(&e)))?;
        Ok(!rows.is_empty())
    }

    /// Drops `db` (terminating its sessions); failures are logged, not returned.
    pub(super) async fn drop_database(admin: &tokio_postgres::Client, db: &str) {
        let force = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(db));
        if let Err(e) = admin.batch_execute(&force).await
            && let Err(e2) = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {}", ident(db))).await
        {
            tracing::warn!(db.name = %db, error = %e, retry_error = %e2, "could not drop a database this restore created");
        }
    }

    async fn user_tables(server: &ServerUrl, db: &str) -> Result<i64, RestoreError> {
        let client = connect(server, db).await?;
        let row = client
            .query_one(&format!("SELECT count(*) FROM {}", crate::db::rows::PG_USER_TABLES), &[])
            .await
            .map_err(|e| db_error(server, &crate::util::error::error_chain_of(&e)))?;
        Ok(row.get(0))
    }

    pub(super) fn env(cmd: &mut Command, server: &ServerUrl, db: &str) {
        let conn = crate::db::tools::PgConn {
            host: &server.host,
            port: server.port,
            user: &server.user,
            database: db,
            application: "data-backup restore",
        };
        crate::db::tools::pg_env(cmd, conn, url_password(server, "PGPASSWORD").as_ref());
    }

    /// The `pg_restore -j` jobs of this restore, or `None` for the streaming path: a custom-format
    /// dump without transforms (they keep the one transaction: ADR 0016), more than one job.
    fn parallel_jobs(manifest: &Manifest, transforms: &[Transform], options: &RestoreOptions) -> Option<usize> {
        (manifest.format == DumpFormat::PgCustomZstd && transforms.is_empty())
            .then(|| parallel::jobs(options.jobs))
            .flatten()
    }

    /// Loads the dump into `db`: with `jobs`, spooled and `pg_restore -j` (falling back to
    /// streaming when the temporary file cannot be written); else streamed in one transaction
    /// with the transforms. Answers (bytes read, the jobs used).
    #[expect(clippy::too_many_arguments, reason = "internal")]
    async fn load(
        store: &BackupStore,
        dirs: &ToolDirs,
        manifest: &Manifest,
        server: &ServerUrl,
        db: &str,
        ids: Option<&[Identity]>,
        transforms: &[Transform],
        options: &RestoreOptions,
        jobs: Option<usize>,
    ) -> Result<(u64, Option<usize>), RestoreError> {
        if let Some(jobs) = jobs {
            match load_parallel(store, dirs, manifest, server, db, ids, options, jobs).await {
                Ok(bytes) => return Ok((bytes, Some(jobs))),
                Err(parallel::SpoolError::Restore(e)) => return Err(e),
                Err(parallel::SpoolError::Disk(e)) => {
                    tracing::warn!(key = %manifest.key, error = %e, "cannot spool the dump for a parallel restore: streaming it instead");
                }
            }
        }
        load_streaming(store, dirs, manifest, server, db, ids, transforms, options).await.map(|b| (b, None))
    }

    /// Spools the checked dump and runs `pg_restore -j jobs` into `db` (module `parallel`).
    #[expect(clippy::too_many_arguments, reason = "internal")]
    async fn load_parallel(
        store: &BackupStore,
        dirs: &ToolDirs,
        manifest: &Manifest,
        server: &ServerUrl,
        db: &str,
        ids: Option<&[Identity]>,
        options: &RestoreOptions,
        jobs: usize,
    ) -> Result<u64, parallel::SpoolError> {
        let (pg_restore, _) = tools(dirs).await.map_err(parallel::SpoolError::Restore)?;
        let fetch = open_dump(store, manifest, ids).await.map_err(parallel::SpoolError::Restore)?;
        let progress = Progress::start(options.progress, fetch.read.clone(), manifest.bytes, format!("restoring {db}"));
        let dir = options.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
        let spooled = parallel::spool(fetch, &manifest.key, &dir).await;
        progress.finish().await;
        let spooled = spooled?;
        let (bytes, size) = (spooled.bytes, spooled.size);
        tracing::info!(key = %manifest.key, db.name = %db, jobs, spooled_bytes = size, "checked; restoring with pg_restore -j");
        let mut cmd = Command::new(&pg_restore);
        env(&mut cmd, server, db);
        parallel::pg_restore(cmd, spooled, db, jobs, options.keep_owners)
            .await
            .map_err(parallel::SpoolError::Restore)?;
        Ok(bytes)
    }

    /// Loads the dump into `db` in one transaction with the transforms.
    #[expect(clippy::too_many_arguments, reason = "internal")]
    async fn load_streaming(
        store: &BackupStore,
        dirs: &ToolDirs,
        manifest: &Manifest,
        server: &ServerUrl,
        db: &str,
        ids: Option<&[Identity]>,
        transforms: &[Transform],
        options: &RestoreOptions,
    ) -> Result<u64, RestoreError> {
        let (pg_restore, psql) = tools(dirs).await?;
        let mut conv = Command::new(&pg_restore);
        if !options.keep_owners {
            conv.args(["--no-owner", "--no-acl"]);
        }
        conv.args(["-f", "-"]);
        let mut loader = Command::new(&psql);
        loader.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"]);
        env(&mut loader, server, db);
        // The dump empties search_path and sets its own session settings: the transforms run with
        // the database's defaults, like any SQL file an operator would write.
        let mut epilogue = vec![Segment { label: None, bytes: b"\nRESET ALL;\n".to_vec() }];
        for t in transforms {
            let mut bytes = t.sql.clone().into_bytes();
            bytes.extend_from_slice(b"\n;\n");
            epilogue.push(Segment { label: Some(t.path.display().to_string()), bytes });
        }
        epilogue.push(Segment { label: None, bytes: b"COMMIT;\n".to_vec() });
        let fetch = open_dump(store, manifest, ids).await?;
        let progress = Progress::start(options.progress, fetch.read.clone(), manifest.bytes, format!("restoring {db}"));
        // A Cloud SQL export is already SQL: psql reads it directly.
        let converter = (manifest.format == DumpFormat::PgCustomZstd).then(|| ("pg_restore".to_owned(), conv));
        let r = run_load(
            fetch,
            &manifest.key,
            Load { converter, loader: ("psql".into(), loader), prelude: b"BEGIN;\n", epilogue },
        )
        .await;
        progress.finish().await;
        r
    }

    /// See the module docs. Answers (where the previous database went, bytes read, the
    /// `pg_restore -j` jobs when the restore was parallel).
    #[expect(clippy::too_many_arguments, reason = "internal")]
    pub(super) async fn restore(
        store: &BackupStore,
        dirs: &ToolDirs,
        manifest: &Manifest,
        server: &ServerUrl,
        db: &str,
        ids: Option<&[Identity]>,
        transforms: &[Transform],
        options: &RestoreOptions,
    ) -> Result<(Option<String>, u64, Option<usize>), RestoreError> {
        let admin = admin(server).await?;
        let exists = exists(&admin, server, db).await?;
        if !exists && !options.create {
            return Err(RestoreError::Refused(format!(
                "database `{db}` does not exist on {server}: pass --create to create it"
            )));
        }
        let jobs = parallel_jobs(manifest, transforms, options);
        // A parallel restore is not one transaction: it loads a database nobody uses yet (a side
        // database swapped in afterwards, or a drill's scratch database), never an existing
        // target in place (ADR 0016).
        let in_place_jobs = jobs.filter(|_| options.scratch);
        if !options.replace && (exists || jobs.is_none() || options.scratch) {
            if exists {
                let n = user_tables(server, db).await?;
                if n > 0 {
                    return Err(RestoreError::Refused(format!(
                        "database `{db}` on {server} is not empty ({n} user table{}): pass --replace to restore \
                         beside it and swap it in (the old one is kept under a dated name)",
                        if n == 1 { "" } else { "s" }
                    )));
                }
            } else {
                admin
                    .batch_execute(&format!("CREATE DATABASE {}", ident(db)))
                    .await
                    .map_err(|e| db_error(server, &crate::util::error::error_chain_of(&e)))?;
            }
            let r = load(store, dirs, manifest, server, db, ids, transforms, options, in_place_jobs).await;
            if r.is_err() && !exists {
                drop_database(&admin, db).await;
            }
            return r.map(|(bytes, jobs)| (None, bytes, jobs));
        }
        let side = side_name(db, PG_MAX_IDENT);
        admin
            .batch_execute(&format!("CREATE DATABASE {}", ident(&side)))
            .await
            .map_err(|e| db_error(server, &crate::util::error::error_chain_of(&e)))?;
        let (bytes, jobs) = match load(store, dirs, manifest, server, &side, ids, transforms, options, jobs).await {
            Ok(b) => b,
            Err(e) => {
                drop_database(&admin, &side).await;
                return Err(e);
            }
        };
        match swap(&admin, server, db, &side, exists, options.terminate_connections).await {
            Ok(old) => Ok((old, bytes, jobs)),
            Err(e) => {
                drop_database(&admin, &side).await;
                Err(e)
            }
        }
    }

    /// Renames `db` to a dated name and `side` to `db`, in one transaction.
    async fn swap(
        admin: &tokio_postgres::Client,
        server: &ServerUrl,
        db: &str,
        side: &str,
        exists: bool,
        terminate: bool,
    ) -> Result<Option<String>, RestoreError> {
        let err = |e: tokio_postgres::Error| crate::util::error::error_chain_of(&e);
        if !exists {
            admin
                .batch_execute(&format!("ALTER DATABASE {} RENAME TO {}", ident(side), ident(db)))
                .await
                .map_err(|e| db_error(server, &err(e)))?;
            return Ok(None);
        }
        let old = old_name(db, PG_MAX_IDENT);
        if terminate {
            admin
                .batch_execute(&format!("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false", ident(db)))
                .await
                .map_err(|e| db_error(server, &err(e)))?;
            let _ = admin
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&db],
                )
                .await;
            for _ in 0..100 {
                let n: i64 = admin
                    .query_one("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", &[&db])
                    .await
                    .map(|r| r.get(0))
                    .unwrap_or(0);
                if n == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let renames = format!(
            "BEGIN; ALTER DATABASE {} RENAME TO {}; ALTER DATABASE {} RENAME TO {}; COMMIT;",
            ident(db),
            ident(&old),
            ident(side),
            ident(db)
        );
        match admin.batch_execute(&renames).await {
            Ok(()) => {
                if terminate {
                    let _ = admin
                        .batch_execute(&format!("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true", ident(&old)))
                        .await;
                }
                tracing::info!(db.name = %db, previous = %old, "swapped the restored database in");
                Ok(Some(old))
            }
            Err(e) => {
                let _ = admin.batch_execute("ROLLBACK").await;
                if terminate {
                    let _ =
                        admin.batch_execute(&format!("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true", ident(db))).await;
                }
                let sessions: i64 = admin
                    .query_one("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", &[&db])
                    .await
                    .map(|r| r.get(0))
                    .unwrap_or(0);
                let hint = if sessions > 0 {
                    format!(
                        " ({sessions} sessions are connected to `{db}`; PostgreSQL cannot rename a database in use: \
                         stop them, or pass --terminate-connections)"
                    )
                } else {
                    String::new()
                };
                Err(RestoreError::Target {
                    server: server.to_string(),
                    message: format!("the swap failed, `{db}` is untouched: {}{hint}", err(e)),
                })
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// MySQL / MariaDB
// ------------------------------------------------------------------------------------------------

mod my {
    use super::*;

    pub(super) use crate::db::ident::my as ident;
    use crate::db::targets::is_socket;

    async fn client(dirs: &ToolDirs) -> Result<PathBuf, RestoreError> {
        if let Some(tool) = crate::db::tools::first_of(dirs.mysql_bin_dir.as_deref(), &["mariadb", "mysql"]).await {
            return Ok(tool.path);
        }
        Err(RestoreError::Tool {
            tool: "mysql".into(),
            status: "not found".into(),
            stderr: "install the MariaDB or MySQL client or set export.mysql_bin_dir".into(),
        })
    }

    pub(super) async fn connect(server: &ServerUrl) -> Result<mysql_async::Conn, RestoreError> {
        mysql_async::Conn::new(crate::db::targets::url_my(server)).await.map_err(|e| db_error(server, &e))
    }

    type Res<T> = Result<T, RestoreError>;

    async fn run(conn: &mut mysql_async::Conn, server: &ServerUrl, sql: &str) -> Res<()> {
        conn.query_drop(sql).await.map_err(|e| db_error(server, &e))
    }

    /// A stored object recreated from its `SHOW CREATE` text.
    #[derive(Clone, Debug)]
    struct Stored {
        kind: &'static str,
        name: String,
        create: String,
        sql_mode: Option<String>,
    }

    /// What a schema holds.
    #[derive(Debug, Default)]
    struct Objects {
        tables: Vec<String>,
        views: Vec<Stored>,
        triggers: Vec<Stored>,
        routines: Vec<Stored>,
        events: Vec<Stored>,
    }

    impl Objects {
        fn is_empty(&self) -> bool {
            self.tables.is_empty()
                && self.views.is_empty()
                && self.triggers.is_empty()
                && self.routines.is_empty()
                && self.events.is_empty()
        }
    }

    fn col(row: &mysql_async::Row, name: &str) -> Option<String> {
        row.get_opt::<Option<String>, &str>(name).and_then(Result::ok).flatten()
    }

    async fn objects(conn: &mut mysql_async::Conn, server: &ServerUrl, schema: &str) -> Res<Objects> {
        let e = |e: mysql_async::Error| db_error(server, &e);
        let mut o = Objects {
            tables: conn
                .exec(
                    "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? \
                     AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED', 'SEQUENCE') ORDER BY 1",
                    (schema,),
                )
                .await
                .map_err(e)?,
            ..Objects::default()
        };
        let q = ident(schema);
        let views: Vec<String> = conn
            .exec("SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ? ORDER BY 1", (schema,))
            .await
            .map_err(e)?;
        for v in views {
            let row: Option<mysql_async::Row> =
                conn.query_first(format!("SHOW CREATE VIEW {q}.{}", ident(&v))).await.map_err(e)?;
            if let Some(create) = row.as_ref().and_then(|r| col(r, "Create View")) {
                o.views.push(Stored { kind: "VIEW", name: v, create, sql_mode: None });
            }
        }
        let triggers: Vec<String> = conn
            .exec("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? ORDER BY 1", (schema,))
            .await
            .map_err(e)?;
        for t in triggers {
            let row: Option<mysql_async::Row> =
                conn.query_first(format!("SHOW CREATE TRIGGER {q}.{}", ident(&t))).await.map_err(e)?;
            if let Some(r) = row
                && let Some(create) = col(&r, "SQL Original Statement")
            {
                o.triggers.push(Stored { kind: "TRIGGER", name: t, create, sql_mode: col(&r, "sql_mode") });
            }
        }
        let routines: Vec<(String, String)> = conn
            .exec(
                "SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ? ORDER BY 1",
                (schema,),
            )
            .await
            .map_err(e)?;
        for (name, kind) in routines {
            let (kind, column) = if kind == "FUNCTION" {
                ("FUNCTION", "Create Function")
            } else if kind == "PACKAGE" || kind == "PACKAGE BODY" {
                continue;
            } else {
                ("PROCEDURE", "Create Procedure")
            };
            let row: Option<mysql_async::Row> =
                conn.query_first(format!("SHOW CREATE {kind} {q}.{}", ident(&name))).await.map_err(e)?;
            if let Some(r) = row
                && let Some(create) = col(&r, column)
            {
                o.routines.push(Stored { kind, name, create, sql_mode: col(&r, "sql_mode") });
            }
        }
        let events: Vec<String> = conn
            .exec("SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ? ORDER BY 1", (schema,))
            .await
            .map_err(e)?;
        for ev in events {
            let row: Option<mysql_async::Row> =
                conn.query_first(format!("SHOW CREATE EVENT {q}.{}", ident(&ev))).await.map_err(e)?;
            if let Some(r) = row
                && let Some(create) = col(&r, "Create Event")
            {
                o.events.push(Stored { kind: "EVENT", name: ev, create, sql_mode: col(&r, "sql_mode") });
            }
        }
        Ok(o)
    }

    /// Creates `objs` (their text moved from schema `from` to `to`) in `to`; views are retried
    /// until no more can be created, since one may select from another. Answers what failed.
    async fn create_objects(conn: &mut mysql_async::Conn, objs: &[Stored], from: &str, to: &str) -> Vec<String> {
        if let Err(e) = conn.query_drop(format!("USE {}", ident(to))).await {
            return vec![e.to_string()];
        }
        let (qf, qt) = (format!("{}.", ident(from)), format!("{}.", ident(to)));
        let mut pending: Vec<&Stored> = objs.iter().collect();
        let mut errors = Vec::new();
        while !pending.is_empty() {
            let mut failed = Vec::new();
            errors.clear();
            for o in &pending {
                if let Some(mode) = &o.sql_mode {
                    let _ = conn.exec_drop("SET SESSION sql_mode = ?", (mode,)).await;
                }
                if let Err(e) = conn.query_drop(o.create.replace(&qf, &qt)).await {
                    errors.push(format!("{} {}: {e}", o.kind, o.name));
                    failed.push(*o);
                }
            }
            if failed.len() == pending.len() {
                break;
            }
            pending = failed;
        }
        let _ = conn.query_drop("SET SESSION sql_mode = DEFAULT").await;
        errors
    }

    async fn recreate(
        conn: &mut mysql_async::Conn,
        server: &ServerUrl,
        objs: &[Stored],
        from: &str,
        to: &str,
    ) -> Res<()> {
        let errors = create_objects(conn, objs, from, to).await;
        if errors.is_empty() { Ok(()) } else { Err(db_error(server, &errors.join("; "))) }
    }

    /// Everything up to and including the atomic `RENAME TABLE`: the schemas it needs, then the
    /// triggers and views (which cannot move with their tables) and the target's routines and
    /// events dropped, then the rename. `names` is (target, side, old); each schema it creates is
    /// pushed on `created` as soon as it exists, so a cleanup drops those and nothing else.
    async fn before_rename(
        conn: &mut mysql_async::Conn,
        server: &ServerUrl,
        (db, side, old): (&str, &str, Option<&str>),
        charset: Option<&str>,
        new: &Objects,
        previous: &Objects,
        created: &mut Vec<String>,
    ) -> Res<()> {
        if charset.is_none() {
            let cs = schema_exists(conn, server, side).await?.unwrap_or_default();
            run(conn, server, &format!("CREATE DATABASE {}{cs}", ident(db))).await?;
            created.push(db.to_owned());
        }
        if let Some(o) = old {
            run(conn, server, &format!("CREATE DATABASE {}{}", ident(o), charset.unwrap_or_default())).await?;
            created.push(o.to_owned());
        }
        for (schema, objs) in [(side, new), (db, previous)] {
            for t in &objs.triggers {
                run(conn, server, &format!("DROP TRIGGER {}.{}", ident(schema), ident(&t.name))).await?;
            }
            for v in &objs.views {
                run(conn, server, &format!("DROP VIEW {}.{}", ident(schema), ident(&v.name))).await?;
            }
        }
        for r in &previous.routines {
            run(conn, server, &format!("DROP {} {}.{}", r.kind, ident(db), ident(&r.name))).await?;
        }
        for ev in &previous.events {
            run(conn, server, &format!("DROP EVENT {}.{}", ident(db), ident(&ev.name))).await?;
        }
        // The one atomic step: every table out of the target and every restored table in.
        let mut renames: Vec<String> = Vec::new();
        if let Some(o) = old {
            renames.extend(
                previous.tables.iter().map(|t| format!("{}.{} TO {}.{}", ident(db), ident(t), ident(o), ident(t))),
            );
        }
        renames
            .extend(new.tables.iter().map(|t| format!("{}.{} TO {}.{}", ident(side), ident(t), ident(db), ident(t))));
        if !renames.is_empty() {
            run(conn, server, &format!("RENAME TABLE {}", renames.join(", "))).await?;
        }
        Ok(())
    }

    async fn schema_exists(conn: &mut mysql_async::Conn, server: &ServerUrl, schema: &str) -> Res<Option<String>> {
        let row: Option<(String, String)> = conn
            .exec_first(
                "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
                (schema,),
            )
            .await
            .map_err(|e| db_error(server, &e))?;
        Ok(row.map(|(cs, coll)| format!(" CHARACTER SET {cs} COLLATE {coll}")))
    }

    /// See the module docs. Answers (where the previous tables went, bytes read).
    #[expect(clippy::too_many_arguments, reason = "internal")]
    pub(super) async fn restore(
        store: &BackupStore,
        dirs: &ToolDirs,
        manifest: &Manifest,
        server: &ServerUrl,
        db: &str,
        ids: Option<&[Identity]>,
        transforms: &[Transform],
        options: &RestoreOptions,
    ) -> Result<(Option<String>, u64), RestoreError> {
        let mut conn = connect(server).await?;
        let charset = schema_exists(&mut conn, server, db).await?;
        let exists = charset.is_some();
        if !exists && !options.create {
            return Err(RestoreError::Refused(format!(
                "schema `{db}` does not exist on {server}: pass --create to create it"
            )));
        }
        if exists && !options.replace {
            let n: Option<u64> = conn
                .exec_first("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?", (db,))
                .await
                .map_err(|e| db_error(server, &e))?;
            let n = n.unwrap_or(0);
            if n > 0 {
                return Err(RestoreError::Refused(format!(
                    "schema `{db}` on {server} is not empty ({n} tables): pass --replace to restore beside it and \
                     swap it in (the old tables are kept in a dated schema)"
                )));
            }
        }
        let side = side_name(db, MYSQL_MAX_IDENT);
        run(&mut conn, server, &format!("CREATE DATABASE {}{}", ident(&side), charset.clone().unwrap_or_default()))
            .await?;
        let loaded = load(store, dirs, manifest, server, &side, ids, transforms, options).await;
        let bytes = match loaded {
            Ok(b) => b,
            Err(e) => {
                let _ = conn.query_drop(format!("DROP DATABASE IF EXISTS {}", ident(&side))).await;
                return Err(e);
            }
        };
        let old = swap(&mut conn, server, db, &side, charset.as_deref()).await?;
        let _ = conn.disconnect().await;
        Ok((old, bytes))
    }

    #[expect(clippy::too_many_arguments, reason = "internal")]
    async fn load(
        store: &BackupStore,
        dirs: &ToolDirs,
        manifest: &Manifest,
        server: &ServerUrl,
        side: &str,
        ids: Option<&[Identity]>,
        transforms: &[Transform],
        options: &RestoreOptions,
    ) -> Result<u64, RestoreError> {
        let mysql = client(dirs).await?;
        let mut cmd = Command::new(&mysql);
        if is_socket(server) {
            cmd.arg("--protocol=SOCKET").arg(format!("--socket={}", server.host));
        } else {
            cmd.arg("--protocol=TCP").arg(format!("--host={}", server.host)).arg(format!("--port={}", server.port));
        }
        cmd.args(["--default-character-set=utf8mb4", "--max-allowed-packet=1073741824"])
            .arg(format!("--user={}", server.user))
            // After `--`, the schema is a name whatever it starts with, never an option.
            .arg("--")
            .arg(side);
        crate::db::tools::my_env(&mut cmd, url_password(server, "MYSQL_PWD").as_ref());
        let mut epilogue = vec![Segment { label: None, bytes: b"\n".to_vec() }];
        epilogue.extend(transforms.iter().map(|t| {
            let mut bytes = t.sql.clone().into_bytes();
            bytes.extend_from_slice(b"\n;\n");
            Segment { label: Some(t.path.display().to_string()), bytes }
        }));
        let mut fetch = open_dump(store, manifest, ids).await?;
        if manifest.format == DumpFormat::CloudSqlGz {
            fetch.reader = Box::pin(database_lines::point_at(fetch.reader, &manifest.database, side));
        }
        if options.strip_definers {
            fetch.reader = Box::pin(definers::strip_definers(fetch.reader));
        }
        let progress =
            Progress::start(options.progress, fetch.read.clone(), manifest.bytes, format!("restoring {side}"));
        let r = run_load(
            fetch,
            &manifest.key,
            Load { converter: None, loader: ("mysql".into(), cmd), prelude: b"", epilogue },
        )
        .await;
        progress.finish().await;
        r
    }

    /// Moves the side schema's tables (and recreates its other objects) into `db`; the previous
    /// tables and objects go to a dated schema. See the module docs for what is not atomic.
    async fn swap(
        conn: &mut mysql_async::Conn,
        server: &ServerUrl,
        db: &str,
        side: &str,
        charset: Option<&str>,
    ) -> Result<Option<String>, RestoreError> {
        // A RENAME or DROP TRIGGER waits for the metadata locks of open transactions on the
        // target; MySQL's default wait is a year. Give up after a bounded wait instead.
        run(conn, server, &format!("SET SESSION lock_wait_timeout = {SWAP_LOCK_WAIT_SECS}")).await?;
        let new = objects(conn, server, side).await?;
        let previous = match charset {
            Some(_) => objects(conn, server, db).await?,
            None => Objects::default(),
        };
        let old = (!previous.is_empty()).then(|| old_name(db, MYSQL_MAX_IDENT));
        let others = |o: &Objects| -> Vec<Stored> {
            o.views.iter().chain(&o.routines).chain(&o.triggers).chain(&o.events).cloned().collect()
        };
        let mut created = vec![side.to_owned()];
        let before =
            before_rename(conn, server, (db, side, old.as_deref()), charset, &new, &previous, &mut created).await;
        if let Err(e) = before {
            // Nothing has moved: put back those of the target's own triggers, views, routines and
            // events that were already dropped, and discard the restore and the schemas this
            // restore created (a schema it failed to create is someone else's: it stays).
            let still: std::collections::HashSet<(&str, String)> = match objects(conn, server, db).await {
                Ok(now) => others(&now).into_iter().map(|o| (o.kind, o.name)).collect(),
                Err(_) => std::collections::HashSet::new(),
            };
            let missing: Vec<Stored> =
                others(&previous).into_iter().filter(|o| !still.contains(&(o.kind, o.name.clone()))).collect();
            let lost = create_objects(conn, &missing, db, db).await;
            for schema in &created {
                let _ = conn.query_drop(format!("DROP DATABASE IF EXISTS {}", ident(schema))).await;
            }
            let lost = if lost.iter().all(|l| l.contains("already exists")) {
                String::new()
            } else {
                format!("; could not put back: {}", lost.join("; "))
            };
            return Err(RestoreError::Target {
                server: server.to_string(),
                message: format!("the swap failed before any table moved, `{db}` is as it was{lost}: {e}"),
            });
        }
        let after = |what: &str, e: RestoreError| RestoreError::Target {
            server: server.to_string(),
            message: format!(
                "the restored tables are in `{db}`{}, but {what} failed (their definitions are still in `{side}`): {e}",
                old.as_ref().map(|o| format!(" and the previous ones in `{o}`")).unwrap_or_default()
            ),
        };
        recreate(conn, server, &others(&new), side, db)
            .await
            .map_err(|e| after("recreating the views, routines and triggers", e))?;
        if let Some(o) = &old {
            recreate(conn, server, &others(&previous), db, o)
                .await
                .map_err(|e| after("recreating the previous views, routines and triggers", e))?;
        }
        run(conn, server, &format!("DROP DATABASE {}", ident(side)))
            .await
            .map_err(|e| after("dropping the side schema", e))?;
        tracing::info!(db.name = %db, previous = ?old, "swapped the restored tables in");
        Ok(old)
    }
}

/// Counts the rows of every user table of `database` (`schema.table` for PostgreSQL, `table` for
/// MySQL, as the manifest's `row_counts` name them).
pub async fn count_rows(target: &ServerUrl, database: &str) -> Result<BTreeMap<String, u64>, RestoreError> {
    if target.scheme == "postgres" {
        let client = pg::connect(target, database).await?;
        crate::db::rows::pg(&client).await.map_err(|e| db_error(target, &crate::util::error::error_chain_of(&e)))
    } else {
        let mut conn = my::connect(target).await?;
        let counts = crate::db::rows::my(&mut conn, database).await.map_err(|e| db_error(target, &e))?;
        let _ = conn.disconnect().await;
        Ok(counts)
    }
}

/// Runs a check query in `database`; answers the first column of its first row as text (`None`
/// when it returned no row or NULL).
pub async fn query_value(target: &ServerUrl, database: &str, sql: &str) -> Result<Option<String>, RestoreError> {
    if target.scheme == "postgres" {
        let client = pg::connect(target, database).await?;
        let messages =
            client.simple_query(sql).await.map_err(|e| db_error(target, &crate::util::error::error_chain_of(&e)))?;
        Ok(messages
            .into_iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_owned)),
                _ => None,
            })
            .flatten())
    } else {
        let mut conn = my::connect(target).await?;
        conn.query_drop(format!("USE {}", my::ident(database))).await.map_err(|e| db_error(target, &e))?;
        let row: Option<mysql_async::Row> = conn.query_first(sql).await.map_err(|e| db_error(target, &e))?;
        let _ = conn.disconnect().await;
        Ok(row.and_then(|r| r.get_opt::<Option<String>, usize>(0).and_then(Result::ok).flatten()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> ServerUrl {
        ServerUrl::try_from(s.to_owned()).unwrap()
    }

    #[test]
    fn names_fit_the_identifier_limits() {
        let long = "x".repeat(80);
        assert_eq!(side_name(&long, PG_MAX_IDENT).len(), PG_MAX_IDENT);
        assert!(side_name("app", PG_MAX_IDENT).starts_with("app_restore_"));
        assert_eq!(old_name("app", PG_MAX_IDENT).len(), "app_old_".len() + 14 + 9);
        assert_ne!(old_name("app", PG_MAX_IDENT), old_name("app", PG_MAX_IDENT), "unique within a second");
        assert_eq!(fit("ééé", "_s", 5), "é_s");
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

    #[test]
    fn tool_errors_point_into_the_transform_that_failed() {
        let segs = vec![(101, 110, "anon.sql".to_owned())];
        let psql = "psql:<stdin>:103: ERROR:  relation \"nope\" does not exist";
        assert!(annotate(psql, &segs).ends_with("(line 3 of transform anon.sql)"));
        let mysql = "ERROR 1146 (42S02) at line 101: Table 'x.nope' doesn't exist";
        assert!(annotate(mysql, &segs).ends_with("(line 1 of transform anon.sql)"));
        assert_eq!(annotate("psql:<stdin>:5: ERROR: x", &segs), "psql:<stdin>:5: ERROR: x");
    }

    #[test]
    fn human_bytes_reads_well() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
