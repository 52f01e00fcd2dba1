//! The parallel PostgreSQL restore (ADR 0016): the checked dump spooled to an anonymous temporary
//! file, then `pg_restore -j N` reading it.
//!
//! `pg_restore -j` needs a seekable archive, so a custom-format backup is first read in full through
//! the same checked stream as every restore (size and SHA-256 against the manifest, age decryption,
//! zstd) into a file in `restore.temp_dir` (default `$TMPDIR`). Nothing reaches the database before
//! that stream has been read to its end and every check passed.
//!
//! **The file never has a name.** It is created unlinked (`O_TMPFILE`, via `tempfile::tempfile_in`),
//! handed to `pg_restore` as its standard input and named to it as `/dev/stdin`; `pg_restore` and each
//! of its forked workers reopen that path, which on Linux opens the file itself with its own offset.
//! So the space is freed when the last process holding it exits: on success, on failure, when the
//! restore is dropped (a drill interrupted by shutdown), and when this process is killed. It needs
//! free space equal to the decompressed dump; when writing it fails (the disk is full) the restore
//! falls back to the streaming path.
//!
//! **Jobs.** `restore.jobs` or `--jobs`; otherwise the cores this process may use
//! (`std::thread::available_parallelism`), at most [`MAX_JOBS`]. One job means the streaming path.

use std::io::{self, Seek as _, Write as _};
use std::path::Path;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::error::RestoreError;
use super::pump::{PumpError, status_text};
use super::stream::Fetch;
use crate::util::process::tail_stderr;

/// Most `pg_restore` jobs chosen from the cores (more rarely helps: the server does the work).
pub const MAX_JOBS: usize = 8;

/// The jobs of a parallel restore: `requested`, else the cores (at most [`MAX_JOBS`]). `None`
/// when that is one job, or the platform cannot hand `pg_restore` an unnamed file.
#[must_use]
pub fn jobs(requested: Option<usize>) -> Option<usize> {
    let n = requested
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get).min(MAX_JOBS));
    (cfg!(target_os = "linux") && n >= 2).then_some(n)
}

/// Why spooling failed.
pub(super) enum SpoolError {
    /// The backup failed its checks, or the store failed: the restore fails.
    Restore(RestoreError),
    /// The temporary file could not be created or written (full disk): stream instead.
    Disk(io::Error),
}

/// The checked, decoded dump in an unnamed temporary file.
pub(super) struct Spooled {
    file: std::fs::File,
    /// Stored bytes read and checked.
    pub(super) bytes: u64,
    /// Bytes in the file.
    pub(super) size: u64,
}

/// Write buffer of the spool thread: the decoder fills it directly, one `write` per megabyte.
const SPOOL_BUF: usize = 1024 * 1024;

/// Reads `fetch` to its end into an unnamed file in `dir`; answers only once the object's checks
/// passed. Dropped at any point, it stops reading the object and the file is gone.
///
/// Three stages overlap: the check task reads and hashes the stored object on the runtime, while one
/// dedicated blocking thread decodes (age, zstd) and writes into the file with plain `write` calls
/// (no blocking-pool round trip per write).
pub(super) async fn spool(fetch: Fetch, key: &str, dir: &Path) -> Result<Spooled, SpoolError> {
    let Fetch { reader, checked, cancel, read } = fetch;
    // Dropped (the restore is abandoned): stop downloading, and the spool thread stops at its next read.
    let _stop = cancel.clone().drop_guard();
    let file = match tempfile::tempfile_in(dir) {
        Ok(f) => f,
        Err(e) => {
            cancel.cancel();
            return Err(SpoolError::Disk(io::Error::new(
                e.kind(),
                format!("cannot create a temporary file in {}: {e}", dir.display()),
            )));
        }
    };
    let stop = cancel.clone();
    let runtime = tokio::runtime::Handle::current();
    let copied = tokio::task::spawn_blocking(move || write_out(&runtime, reader, file, &stop))
        .await
        .unwrap_or_else(|e| Err(PumpError::Write(io::Error::other(format!("the spool thread died: {e}")))));
    if matches!(copied, Err(PumpError::Write(_))) {
        cancel.cancel();
    }
    // A decoder that fails may be failing on a damaged object: the check reads to the end and names it.
    let verdict = checked.await.unwrap_or_else(|e| Err(RestoreError::Invalid(format!("the object check died: {e}"))));
    match (verdict, copied) {
        (Err(e), _) => Err(SpoolError::Restore(e)),
        (Ok(()), Err(PumpError::Read(e))) => Err(SpoolError::Restore(RestoreError::Integrity {
            key: key.to_owned(),
            reason: format!("the object matches its manifest but does not decode: {e}"),
        })),
        (Ok(()), Err(PumpError::Write(e))) => Err(SpoolError::Disk(e)),
        (Ok(()), Ok((mut file, size))) => {
            file.rewind().map_err(SpoolError::Disk)?;
            Ok(Spooled { file, bytes: read.load(Ordering::Relaxed), size })
        }
    }
}

/// The spool thread: decodes `reader` (driven on `runtime`) into `file` until its end, or until
/// `stop` (then the file is dropped, and with it the space). Answers the file and its size.
fn write_out(
    runtime: &tokio::runtime::Handle,
    mut reader: Pin<Box<dyn AsyncRead + Send>>,
    mut file: std::fs::File,
    stop: &CancellationToken,
) -> Result<(std::fs::File, u64), PumpError> {
    let mut buf = vec![0u8; SPOOL_BUF];
    let mut size = 0u64;
    loop {
        if stop.is_cancelled() {
            return Err(PumpError::Read(io::Error::new(io::ErrorKind::Interrupted, "the restore was stopped")));
        }
        // Fill the buffer as far as the decoder goes before writing: fewer, larger writes.
        let mut filled = 0;
        while filled < buf.len() {
            let n = runtime.block_on(reader.read(&mut buf[filled..])).map_err(PumpError::Read)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            return Ok((file, size));
        }
        file.write_all(&buf[..filled]).map_err(PumpError::Write)?;
        size += filled as u64;
    }
}

/// `dbname='…'`: a connection string naming only the database (`pg_restore` needs `-d` to restore
/// into a database, and a bare `-d` value holding `=` or starting with `postgres://` would be read
/// as a connection string); the rest of the connection comes from the environment.
fn dbname_conninfo(db: &str) -> String {
    format!("dbname='{}'", db.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Runs `pg_restore -j jobs --exit-on-error` on the spooled dump into `db`, `cmd` already carrying
/// the connection's environment. Fails with its exit status and stderr tail.
pub(super) async fn pg_restore(
    mut cmd: Command,
    spooled: Spooled,
    db: &str,
    jobs: usize,
    keep_owners: bool,
) -> Result<(), RestoreError> {
    let mut args = vec![
        "--jobs".to_owned(),
        jobs.to_string(),
        "--exit-on-error".to_owned(),
        "--dbname".to_owned(),
        dbname_conninfo(db),
    ];
    if !keep_owners {
        args.extend(["--no-owner".to_owned(), "--no-acl".to_owned()]);
    }
    // Its standard input is the unnamed file; each worker reopens it through this path.
    args.push("/dev/stdin".to_owned());
    cmd.args(&args).stdin(Stdio::from(spooled.file)).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| RestoreError::Tool {
        tool: "pg_restore".into(),
        status: "could not start".into(),
        stderr: e.to_string(),
    })?;
    let stderr = tail_stderr(child.stderr.take());
    let status = child.wait().await;
    let stderr = stderr.await.unwrap_or_default();
    match status_text(status) {
        (true, _) => Ok(()),
        (false, status) => Err(RestoreError::Tool { tool: "pg_restore".into(), status, stderr }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_name_reaches_pg_restore_as_a_quoted_conninfo_value() {
        assert_eq!(dbname_conninfo("app"), "dbname='app'");
        assert_eq!(dbname_conninfo(r"it's a\b"), r"dbname='it\'s a\\b'");
        assert_eq!(dbname_conninfo("postgres://x/y"), "dbname='postgres://x/y'");
    }

    #[test]
    fn one_job_is_the_streaming_path_and_a_request_overrides_the_cores() {
        assert_eq!(jobs(Some(1)), None);
        if cfg!(target_os = "linux") {
            assert_eq!(jobs(Some(3)), Some(3));
            assert!(jobs(None).is_none_or(|n| (2..=MAX_JOBS).contains(&n)));
        }
    }
}
