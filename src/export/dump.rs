//! The `dump` exporter: `pg_dump` or `mariadb-dump`/`mysqldump` as a child process, streamed through
//! zstd into the store, with the size and SHA-256 of the stored bytes computed on the way.
//!
//! Nothing is trusted that was not checked: the child's exit status, the dump's own framing
//! (PostgreSQL custom format starts with `PGDMP`; a MySQL dump ends with `-- Dump completed`) and the
//! stored size. The checks run *before* the upload is allowed to complete: the reader fed to the
//! store answers an error at end of stream when the child failed, so the upload is aborted and no
//! object appears. Passwords reach the child through its environment, never its arguments.
//!
//! **Names are data.** A database name reaches a tool only where it cannot be read as anything
//! else: `pg_dump` gets it in `PGDATABASE` (never expanded as a connection string, unlike `-d`),
//! `mariadb-dump` after `--` (so `--all-databases` or `--result-file=x` is a schema, not an
//! option), and SQL quotes it as an identifier.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use async_compression::Level;
use async_compression::tokio::bufread::ZstdEncoder;
use async_compression::zstd::CParameter;
use async_trait::async_trait;
use chrono::Utc;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use mysql_async::prelude::Queryable;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, BufReader, ReadBuf};
use tokio::process::{ChildStdout, Command};
use tokio_util::io::InspectReader;

use super::{ExportError, Exporter};
use crate::db::targets::{source_my, source_password, source_pg};
use crate::db::tools::{self, PgConn, Tool};
use crate::discovery::Discovery;
use crate::model::{Engine, ExportTask};
use crate::settings::{ExportSettings, SourceKind, SourceSettings};
use crate::store::BackupStore;
use crate::store::manifest::{DumpFormat, Encryption, MANIFEST_VERSION, Manifest, ToolVersions};

/// Exports the databases of one self-hosted server.
pub struct DumpExporter {
    source: SourceSettings,
    discovery: Arc<dyn Discovery>,
    settings: ExportSettings,
    recipients: Vec<age::x25519::Recipient>,
    recipient_names: Vec<String>,
    row_counts: bool,
}

impl DumpExporter {
    /// An exporter for `source` (its age recipients were validated with the settings).
    #[must_use]
    pub fn new(source: SourceSettings, discovery: Arc<dyn Discovery>, settings: ExportSettings) -> Self {
        let recipient_names = source.age_recipients.clone().unwrap_or_else(|| settings.age_recipients.clone());
        let recipients = crate::crypto::parse_recipients(&recipient_names).unwrap_or_default();
        let row_counts = source.row_counts.unwrap_or(settings.row_counts);
        Self { source, discovery, settings, recipients, recipient_names, row_counts }
    }

    fn tool_error(&self, e: impl std::fmt::Display) -> ExportError {
        ExportError::Tool(format!("{}: {e}", self.source.name))
    }
}

/// The `pg_dump` to use for a server of `server_major`: the configured directory's, else the newest
/// installed one (Debian keeps each major under /usr/lib/postgresql/N/bin), else `PATH`'s.
async fn find_pg_dump(bin_dir: Option<&Path>, server_major: u32) -> Result<Tool, String> {
    let tool = tools::newest_pg(bin_dir, "pg_dump")
        .await
        .ok_or_else(|| "pg_dump was not found: install the PostgreSQL client or set export.pg_bin_dir".to_owned())?;
    pg_dump_fits(tool.major, server_major)?;
    Ok(tool)
}

/// pg_dump dumps servers of its own major version and older, never newer ones.
fn pg_dump_fits(client_major: u32, server_major: u32) -> Result<(), String> {
    if client_major < server_major {
        return Err(format!(
            "pg_dump {client_major} cannot dump a PostgreSQL {server_major} server (pg_dump refuses newer servers): \
             install the PostgreSQL {server_major} client or newer and set export.pg_bin_dir"
        ));
    }
    Ok(())
}

async fn find_mysqldump(bin_dir: Option<&Path>) -> Result<Tool, String> {
    tools::first_of(bin_dir, &["mariadb-dump", "mysqldump"]).await.ok_or_else(|| {
        "neither mariadb-dump nor mysqldump was found: install the MariaDB or MySQL client or set export.mysql_bin_dir"
            .to_owned()
    })
}

/// Connects and returns (server version text, major version).
async fn pg_server_version(source: &SourceSettings, db: &str) -> Result<(String, u32), String> {
    let (client, conn) = source_pg(source, db)?
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| crate::util::error::error_chain_of(&e))?;
    let conn = tokio::spawn(conn);
    let row = client.query_one("SELECT version(), current_setting('server_version_num')::int", &[]).await;
    drop(client);
    let _ = conn.await;
    let row = row.map_err(|e| crate::util::error::error_chain_of(&e))?;
    let num: i32 = row.get(1);
    Ok((row.get(0), u32::try_from(num / 10000).unwrap_or(0)))
}

async fn mysql_server_version(source: &SourceSettings) -> Result<String, String> {
    let mut conn = mysql_async::Conn::new(source_my(source)?).await.map_err(|e| e.to_string())?;
    let v: Option<String> = conn.query_first("SELECT VERSION()").await.map_err(|e| e.to_string())?;
    let _ = conn.disconnect().await;
    Ok(v.unwrap_or_default())
}

/// A PostgreSQL transaction holding an exported snapshot: `pg_dump --snapshot` reads exactly what
/// the row counts counted. Dropping it ends the transaction.
struct PgSnapshot {
    id: String,
    client: tokio_postgres::Client,
}

fn count_error(e: &dyn std::fmt::Display) -> ExportError {
    let message = e.to_string();
    ExportError::DumpFailed {
        tool: "row count".into(),
        status: "query failed".into(),
        transient: transient_stderr(&message),
        stderr: message,
    }
}

async fn pg_snapshot(source: &SourceSettings, db: &str) -> Result<PgSnapshot, ExportError> {
    let cfg = source_pg(source, db).map_err(|e| count_error(&e))?;
    let (client, conn) =
        cfg.connect(tokio_postgres::NoTls).await.map_err(|e| count_error(&crate::util::error::error_chain_of(&e)))?;
    tokio::spawn(conn);
    client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.map_err(pg_err)?;
    let id: String = client.query_one("SELECT pg_export_snapshot()", &[]).await.map_err(pg_err)?.get(0);
    Ok(PgSnapshot { id, client })
}

#[expect(clippy::needless_pass_by_value, reason = "used as `map_err(pg_err)`")]
fn pg_err(e: tokio_postgres::Error) -> ExportError {
    count_error(&crate::util::error::error_chain_of(&e))
}

impl PgSnapshot {
    /// Rows per table, counted in the snapshot (run while `pg_dump` reads the same snapshot, so
    /// counting costs no wall time beyond the dump's on a server with a core to spare).
    async fn count_rows(&self) -> Result<BTreeMap<String, u64>, ExportError> {
        crate::db::rows::pg(&self.client).await.map_err(pg_err)
    }
}

/// Row counts of a MySQL schema, in a consistent snapshot taken just before the dump's own.
async fn mysql_counts(source: &SourceSettings, db: &str) -> Result<BTreeMap<String, u64>, ExportError> {
    let mut conn =
        mysql_async::Conn::new(source_my(source).map_err(|e| count_error(&e))?).await.map_err(|e| count_error(&e))?;
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY").await.map_err(|e| count_error(&e))?;
    let counts = crate::db::rows::my(&mut conn, db).await.map_err(|e| count_error(&e))?;
    let _ = conn.query_drop("COMMIT").await;
    let _ = conn.disconnect().await;
    Ok(counts)
}

/// Decides from a dump tool's stderr whether a retry may help.
fn transient_stderr(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    let permanent = [
        "permission denied",
        "access denied",
        "does not exist",
        "unknown database",
        "version mismatch",
        "authentication failed",
        "password authentication",
        "no pg_hba.conf entry",
        "invalid option",
        "unrecognized option",
    ];
    !permanent.iter().any(|p| s.contains(p))
}

type StatusFuture = Shared<BoxFuture<'static, Result<ExitStatus, String>>>;

/// The child's stdout, failing at end of stream unless the child exited 0 and the dump's framing
/// is intact: this is what keeps a failed dump from ever completing its upload.
struct CheckedDump {
    stdout: ChildStdout,
    status: StatusFuture,
    format: DumpFormat,
    head: Vec<u8>,
    tail: Vec<u8>,
    raw: Arc<AtomicU64>,
    done: bool,
}

const TAIL_KEEP: usize = 128;

impl CheckedDump {
    fn framing_error(&self) -> Option<String> {
        match self.format {
            DumpFormat::PgCustomZstd if !self.head.starts_with(b"PGDMP") => {
                Some("the output is not a pg_dump custom-format archive (no PGDMP header)".into())
            }
            DumpFormat::MysqlSqlZstd if !self.tail.windows(17).any(|w| w == b"-- Dump completed") => {
                Some("the dump has no `-- Dump completed` trailer: it is truncated".into())
            }
            _ => None,
        }
    }
}

impl AsyncRead for CheckedDump {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.stdout).poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        if new.is_empty() {
            let status = ready!(self.status.poll_unpin(cx));
            self.done = true;
            return match status {
                Ok(s) if s.success() => match self.framing_error() {
                    Some(e) => Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e))),
                    None => Poll::Ready(Ok(())),
                },
                Ok(s) => Poll::Ready(Err(io::Error::other(format!("the dump tool {s}")))),
                Err(e) => Poll::Ready(Err(io::Error::other(e))),
            };
        }
        let n = new.len();
        let me = &mut *self;
        if me.head.len() < 16 {
            let take = (16 - me.head.len()).min(n);
            me.head.extend_from_slice(&new[..take]);
        }
        me.tail.extend_from_slice(&new[n.saturating_sub(TAIL_KEEP)..]);
        if me.tail.len() > TAIL_KEEP {
            let cut = me.tail.len() - TAIL_KEEP;
            me.tail.drain(..cut);
        }
        me.raw.fetch_add(n as u64, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

#[async_trait]
impl Exporter for DumpExporter {
    async fn export(&self, task: &ExportTask, store: &BackupStore) -> Result<Manifest, ExportError> {
        let started_at = Utc::now();
        let db = &task.db;
        if !self.discovery.exists(&db.database).await? {
            return Err(ExportError::Gone(db.to_string()));
        }
        let password = source_password(&self.source).map_err(|e| self.tool_error(e))?;
        // The snapshot's transaction stays open until the dump is stored.
        let mut snapshot: Option<PgSnapshot> = None;
        let mut counts: Option<(BTreeMap<String, u64>, bool)> = None;
        let (format, tool, server_version, mut cmd) = match self.source.kind {
            SourceKind::Postgres => {
                let (server, major) = pg_server_version(&self.source, db.database.as_str()).await.map_err(|e| {
                    ExportError::Discovery(crate::discovery::DiscoveryError::Unavailable {
                        source_name: self.source.name.to_string(),
                        message: e,
                    })
                })?;
                let tool =
                    find_pg_dump(self.settings.pg_bin_dir.as_deref(), major).await.map_err(|e| self.tool_error(e))?;
                let snap = pg_snapshot(&self.source, db.database.as_str()).await?;
                let mut cmd = Command::new(&tool.path);
                cmd.args(["--format=custom", "--compress=0", "--no-password"]).arg(format!("--snapshot={}", snap.id));
                // The database travels in PGDATABASE, which libpq never expands: as `-d NAME` or a
                // positional argument, a name holding `=` or starting with `postgres://` would be
                // read as a connection string, and one starting with `-` as an option.
                let conn = PgConn {
                    host: &self.source.url.host,
                    port: self.source.url.port,
                    user: &self.source.url.user,
                    database: db.database.as_str(),
                    application: "data-backup",
                };
                tools::pg_env(&mut cmd, conn, password.as_ref());
                snapshot = Some(snap);
                (DumpFormat::PgCustomZstd, tool, server, cmd)
            }
            SourceKind::Mysql => {
                let server = mysql_server_version(&self.source).await.map_err(|e| {
                    ExportError::Discovery(crate::discovery::DiscoveryError::Unavailable {
                        source_name: self.source.name.to_string(),
                        message: e,
                    })
                })?;
                let tool =
                    find_mysqldump(self.settings.mysql_bin_dir.as_deref()).await.map_err(|e| self.tool_error(e))?;
                if self.row_counts {
                    counts = Some((mysql_counts(&self.source, db.database.as_str()).await?, false));
                }
                let mut cmd = Command::new(&tool.path);
                cmd.args([
                    "--single-transaction",
                    "--quick",
                    "--routines",
                    "--triggers",
                    "--events",
                    "--hex-blob",
                    "--default-character-set=utf8mb4",
                    "--protocol=TCP",
                ])
                .arg(format!("--host={}", self.source.url.host))
                .arg(format!("--port={}", self.source.url.port))
                .arg(format!("--user={}", self.source.url.user))
                // A schema name is data: after `--` it cannot be an option (`--result-file=…`,
                // `--all-databases`), whatever it starts with.
                .arg("--")
                .arg(db.database.as_str());
                tools::my_env(&mut cmd, password.as_ref());
                (DumpFormat::MysqlSqlZstd, tool, server, cmd)
            }
        };
        debug_assert_eq!(db.engine, if format == DumpFormat::PgCustomZstd { Engine::Postgres } else { Engine::Mysql });
        let tool_name =
            tool.path.file_name().map_or_else(|| "dump tool".to_owned(), |n| n.to_string_lossy().into_owned());
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| self.tool_error(format!("cannot start {}: {e}", tool.path.display())))?;
        let stdout = child.stdout.take().expect("piped");
        let stderr_task = crate::util::process::tail_stderr(child.stderr.take());
        let status: StatusFuture = async move { child.wait().await.map_err(|e| e.to_string()) }.boxed().shared();

        let raw = Arc::new(AtomicU64::new(0));
        let checked = CheckedDump {
            stdout,
            status: status.clone(),
            format,
            head: Vec::new(),
            tail: Vec::new(),
            raw: raw.clone(),
            done: false,
        };
        let params = [CParameter::nb_workers(self.settings.zstd_threads)];
        let compressed = ZstdEncoder::with_quality_and_params(
            BufReader::with_capacity(128 * 1024, checked),
            Level::Precise(self.settings.zstd_level),
            &params,
        );
        let stored: Pin<Box<dyn AsyncRead + Send>> = if self.recipients.is_empty() {
            Box::pin(compressed)
        } else {
            Box::pin(crate::crypto::encrypting_reader(compressed, &self.recipients).map_err(|e| self.tool_error(e))?)
        };
        let hasher = Arc::new(Mutex::new((Sha256::new(), 0u64)));
        let h = hasher.clone();
        let hashed = InspectReader::new(stored, move |chunk: &[u8]| {
            let mut g = h.lock().expect("hasher lock");
            g.0.update(chunk);
            g.1 += chunk.len() as u64;
        });

        let encrypted = !self.recipients.is_empty();
        let key = store.layout().dump(db, task.run_date, format, encrypted);
        let count_in_snapshot = async {
            match &snapshot {
                Some(snap) if self.row_counts => snap.count_rows().await.map(Some),
                _ => Ok(None),
            }
        };
        let (put, snapshot_counts) = tokio::join!(store.put_dump(&key, Box::pin(hashed)), count_in_snapshot);
        // A failed count aborts the snapshot's transaction, which fails pg_dump's import of it: the
        // count's error is the cause to report.
        let snapshot_counts = snapshot_counts?;
        if let Err(e) = put {
            // The upload was aborted. Say why in the dump tool's words when it was the tool.
            let stderr = stderr_task.await.unwrap_or_default();
            let exit = status.await;
            return Err(match (&e, exit) {
                (_, Ok(s)) if !s.success() => ExportError::DumpFailed {
                    tool: tool_name,
                    status: s.to_string(),
                    transient: transient_stderr(&stderr),
                    stderr,
                },
                (crate::store::StoreError::Bucket(crate::store::bucket::BucketError::Source(src)), _) => {
                    ExportError::DumpFailed { tool: tool_name, status: src.to_string(), stderr, transient: false }
                }
                _ => e.into(),
            });
        }
        let stored = put.expect("checked above");
        drop(snapshot);
        if let Some(c) = snapshot_counts {
            counts = Some((c, true));
        }
        let _ = stderr_task.await;
        let (sha, bytes) = {
            let g = hasher.lock().expect("hasher lock");
            (hex::encode(g.0.clone().finalize()), g.1)
        };
        if stored.size != bytes {
            return Err(ExportError::Store(crate::store::StoreError::Corrupt {
                key: key.path(),
                reason: format!("stored {} bytes but {bytes} were uploaded", stored.size),
            }));
        }
        Ok(Manifest {
            version: MANIFEST_VERSION,
            source: db.source.to_string(),
            project: db.project.to_string(),
            instance: db.instance.to_string(),
            database: db.database.to_string(),
            engine: db.engine,
            run_date: task.run_date.to_string(),
            run_id: task.run_id.to_string(),
            class: store.layout().class(task.run_date).as_str().to_owned(),
            key: key.path(),
            format,
            compression: format.compression().to_owned(),
            compression_level: Some(self.settings.zstd_level),
            bytes,
            raw_bytes: Some(raw.load(Ordering::Relaxed)),
            sha256: Some(sha),
            object_version: stored.version,
            started_at,
            finished_at: Utc::now(),
            tools: ToolVersions {
                dump: tool.version_text,
                server: server_version,
                data_backup: env!("CARGO_PKG_VERSION").to_owned(),
            },
            encryption: encrypted
                .then(|| Encryption { scheme: "age".to_owned(), recipients: self.recipient_names.clone() }),
            row_counts_exact: counts.as_ref().map(|(_, exact)| *exact),
            cloud_sql: None,
            row_counts: counts.map(|(c, _)| c),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_dump_must_be_at_least_as_new_as_the_server() {
        assert!(pg_dump_fits(15, 15).is_ok());
        assert!(pg_dump_fits(18, 13).is_ok());
        let err = pg_dump_fits(15, 17).unwrap_err();
        assert!(
            err.contains("pg_dump 15 cannot dump a PostgreSQL 17 server") && err.contains("export.pg_bin_dir"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn tool_versions_are_read_from_the_installed_clients() {
        let pg = find_pg_dump(None, 0).await.expect("pg_dump is installed");
        assert!(pg.major >= 10, "{pg:?}");
        let my = find_mysqldump(None).await.expect("mariadb-dump is installed");
        assert!(my.major >= 10, "{my:?}");
    }

    #[test]
    fn stderr_of_refusals_is_permanent_and_of_outages_transient() {
        assert!(!transient_stderr("pg_dump: error: query failed: ERROR:  permission denied for table t"));
        assert!(!transient_stderr("pg_dump: error: aborting because of server version mismatch"));
        assert!(transient_stderr(
            "pg_dump: error: connection to server at \"127.0.0.1\", port 5432 failed: Connection refused"
        ));
    }
}
