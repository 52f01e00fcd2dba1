//! PostgreSQL: the restore in one transaction (or in parallel into a database nobody uses yet), the
//! `--replace` side database and its swap, and the connections and tools it needs.

use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;

use super::error::{RestoreError, db_error};
use super::names::{PG_MAX_IDENT, old_name, side_name};
use super::parallel;
use super::pump::{Load, Segment, run_load};
use super::request::{Job, RestoreOptions, ToolDirs, Transform};
use super::stream::{Progress, open_dump};
use crate::db::targets::url_password;
use crate::settings::ServerUrl;
use crate::store::manifest::{DumpFormat, Manifest};

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

pub(super) async fn exists(admin: &tokio_postgres::Client, server: &ServerUrl, db: &str) -> Result<bool, RestoreError> {
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
async fn load(job: Job<'_>, db: &str, jobs: Option<usize>) -> Result<(u64, Option<usize>), RestoreError> {
    let Job { manifest, .. } = job;
    if let Some(jobs) = jobs {
        match load_parallel(job, db, jobs).await {
            Ok(bytes) => return Ok((bytes, Some(jobs))),
            Err(parallel::SpoolError::Restore(e)) => return Err(e),
            Err(parallel::SpoolError::Disk(e)) => {
                tracing::warn!(key = %manifest.key, error = %e, "cannot spool the dump for a parallel restore: streaming it instead");
            }
        }
    }
    load_streaming(job, db).await.map(|b| (b, None))
}

/// Spools the checked dump and runs `pg_restore -j jobs` into `db` (module `parallel`).
async fn load_parallel(job: Job<'_>, db: &str, jobs: usize) -> Result<u64, parallel::SpoolError> {
    let Job { store, dirs, manifest, server, ids, options, .. } = job;
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
    parallel::pg_restore(cmd, spooled, db, jobs, options.keep_owners).await.map_err(parallel::SpoolError::Restore)?;
    Ok(bytes)
}

/// Loads the dump into `db` in one transaction with the transforms.
async fn load_streaming(job: Job<'_>, db: &str) -> Result<u64, RestoreError> {
    let Job { store, dirs, manifest, server, ids, transforms, options } = job;
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
pub(super) async fn restore(job: Job<'_>, db: &str) -> Result<(Option<String>, u64, Option<usize>), RestoreError> {
    let Job { manifest, server, transforms, options, .. } = job;
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
        let r = load(job, db, in_place_jobs).await;
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
    let (bytes, jobs) = match load(job, &side, jobs).await {
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
                let _ =
                    admin.batch_execute(&format!("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true", ident(&old))).await;
            }
            tracing::info!(db.name = %db, previous = %old, "swapped the restored database in");
            Ok(Some(old))
        }
        Err(e) => {
            let _ = admin.batch_execute("ROLLBACK").await;
            if terminate {
                let _ = admin.batch_execute(&format!("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true", ident(db))).await;
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
