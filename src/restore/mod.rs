//! Restore: find a backup through its manifests, stream it out of the store into the database's
//! own tools, and put it in place without ever leaving the target half-restored. This file is the
//! public entry ([`restore`], [`restore_manifest`], and the drill's row counts and check queries);
//! each job has its file: `error`, `find`, `list`, `request`, `stream` (the checked stream), `pump`
//! (the tool pump), `names`, `pg`, `my`, `parallel`, and the drill's account and scratch server.
//!
//! **Finding.** Backups are found by listing the manifests of a database under every retention
//! class and parsing their keys (the store's catalog, module `find`); a listing's order or last name is never
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

mod database_lines;
mod definers;
mod drill_account;
pub mod error;
pub mod find;
mod line_filter;
pub mod list;
mod my;
mod names;
mod parallel;
mod pg;
mod pump;
pub mod request;
mod scratch_server;
pub mod stream;

pub use drill_account::{ACCOUNT_PREFIX, DrillAccount, SCRATCH_PREFIX};
pub use error::RestoreError;
pub use find::{Selector, find_backup, path_text};
pub use list::{BackupPage, BackupSummary, MAX_PAGE_SIZE, list_backups};
pub use parallel::MAX_JOBS;
pub use request::{
    RestoreOptions, RestoreReport, RestoreRequest, ToolDirs, Transform, production_guard, read_transforms,
};
pub use scratch_server::{SCRATCH_DIR_PREFIX, ScratchError, ScratchServer, dumped_major};
pub use stream::human_bytes;

use std::collections::BTreeMap;
use std::time::Instant;

use age::x25519::Identity;
use mysql_async::prelude::Queryable;

use self::error::db_error;
use self::request::Job;
use crate::model::Engine;
use crate::settings::{ServerUrl, Settings};
use crate::store::BackupStore;
use crate::store::manifest::{DumpFormat, Manifest};

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
    let job = Job { store, dirs: tools, manifest, server: target, ids, transforms, options };
    let (previous, bytes, parallel_jobs) = if expected == "postgres" {
        pg::restore(job, database).await?
    } else {
        let (previous, bytes) = my::restore(job, database).await?;
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
