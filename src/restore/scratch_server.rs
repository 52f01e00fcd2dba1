//! A restore drill's own throwaway database server (ADR 0014).
//!
//! With no `[verify] url` (PostgreSQL) or `mysql_url` (MySQL/MariaDB), a drill starts a private
//! server from the installed server binaries, restores into it, and stops it:
//! - **PostgreSQL**: `initdb` (trust authentication, `--no-sync`) in a fresh temporary directory,
//!   then `postgres` listening on a Unix socket in that directory only (`listen_addresses=''`),
//!   with `fsync=off`. The binaries are the newest installed (or `export.pg_bin_dir`'s), found like
//!   `pg_dump`, and their major version must be at least the dumped server's.
//! - **MariaDB/MySQL**: `mariadb-install-db` (or `mysqld --initialize-insecure`), then
//!   `mariadbd`/`mysqld` with `--skip-networking` and its socket in the directory.
//!
//! Nothing listens on TCP, and nothing is created on any other server. When this process runs as
//! root (PostgreSQL refuses to), the server runs as the system user `postgres` or `mysql` through
//! `setpriv`, which execs it, so the child this module holds is the server itself.
//!
//! **Contract.** [`ScratchServer::stop`] stops the server (PostgreSQL: an immediate shutdown) and
//! removes the directory; a server dropped without `stop` (a failed or cancelled drill) is killed
//! and its directory removed in `Drop`. A process killed with SIGKILL cannot clean up: the
//! directories are named `data-backup-scratch-*` under `verify.scratch_dir` (default the
//! temporary directory) so that they can be found.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use mysql_async::prelude::Queryable as _;
use tokio::process::{Child, Command};

use super::request::ToolDirs;
use crate::db::tools::version_major;
use crate::model::Engine;
use crate::settings::ServerUrl;

/// Prefix of a scratch server's directory.
pub const SCRATCH_DIR_PREFIX: &str = "data-backup-scratch-";

/// InnoDB's redo log (default 96 MB): its directory is memory on Cloud Run.
const SMALL_REDO_LOG: &str = "--innodb-log-file-size=16M";

/// How long a scratch server may take to accept connections.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// Why a scratch server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    /// The server binaries are missing, or older than the dump's server.
    #[error("{0}")]
    NotInstalled(String),
    /// A step of the start failed.
    #[error("{step} failed: {detail}")]
    Start {
        /// The step (`initdb`, `postgres`, …).
        step: String,
        /// Its error, or the end of its log.
        detail: String,
    },
    /// The directory could not be prepared.
    #[error("cannot prepare the scratch directory: {0}")]
    Io(#[from] std::io::Error),
}

/// The unprivileged account a root process runs the server as.
#[derive(Clone, Debug)]
struct RunAs {
    uid: u32,
    gid: u32,
}

/// A running throwaway server; see the module docs.
pub struct ScratchServer {
    engine: Engine,
    dir: PathBuf,
    child: Option<Child>,
    url: ServerUrl,
    pg_ctl: Option<PathBuf>,
    run_as: Option<RunAs>,
}

impl std::fmt::Debug for ScratchServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScratchServer").field("engine", &self.engine).field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// `(uid, gid)` of `user` from `/etc/passwd`.
fn system_user(user: &str) -> Option<RunAs> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() > 3 && f[0] == user).then(|| Some(RunAs { uid: f[2].parse().ok()?, gid: f[3].parse().ok()? }))?
    })
}

/// The first number in a version text (`15.4 (Debian …)`, `POSTGRES_15`, `10.11.6-MariaDB`).
fn first_number(text: &str) -> Option<u32> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let digits: String = text[start..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// `program`, as `run_as` when given, with its temporary files in the scratch directory `dir`.
fn command(program: &Path, run_as: Option<&RunAs>, dir: &Path) -> Command {
    let mut cmd = match run_as {
        Some(who) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={}", who.uid))
                .arg(format!("--regid={}", who.gid))
                .arg("--clear-groups")
                .arg("--")
                .arg(program);
            c
        }
        None => Command::new(program),
    };
    // A drill dropped mid-way (the service stopping) takes its set-up steps with it.
    cmd.kill_on_drop(true)
        .stdin(Stdio::null())
        .env_remove("PGDATA")
        .env_remove("PGHOST")
        .env_remove("MYSQL_HOST")
        .env("TMPDIR", dir)
        .current_dir("/");
    cmd
}

/// Runs a set-up step to completion; its output is kept for the error.
async fn step(name: &str, mut cmd: Command) -> Result<(), ScratchError> {
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(|e| ScratchError::Start { step: name.to_owned(), detail: e.to_string() })?;
    if out.status.success() {
        return Ok(());
    }
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Err(ScratchError::Start { step: name.to_owned(), detail: format!("{}: {}", out.status, tail(&text)) })
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// The newest PostgreSQL server binary directory (or the configured one) holding `initdb`.
async fn pg_bin_dir(tools: &ToolDirs) -> Option<(u32, PathBuf)> {
    let mut candidates = Vec::new();
    if let Some(dir) = &tools.pg_bin_dir {
        candidates.push(dir.clone());
    } else if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        candidates.extend(entries.flatten().map(|e| e.path().join("bin")));
    }
    let mut best: Option<(u32, PathBuf)> = None;
    for dir in candidates {
        if !dir.join("initdb").is_file() {
            continue;
        }
        if let Some(major) = version_major(&dir.join("postgres")).await
            && best.as_ref().is_none_or(|(b, _)| major > *b)
        {
            best = Some((major, dir));
        }
    }
    best
}

/// The first of `names` found in the configured directory, then `/usr/sbin`, `/usr/bin`.
fn find_binary(dir: Option<&PathBuf>, names: &[&str]) -> Option<PathBuf> {
    let dirs: Vec<PathBuf> = dir.into_iter().cloned().chain(["/usr/sbin".into(), "/usr/bin".into()]).collect();
    names.iter().find_map(|name| dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()))
}

impl ScratchServer {
    /// Starts a server for `engine` whose version is at least `min_major` (when known), with its
    /// directory under `base` (default the temporary directory).
    pub async fn start(
        engine: Engine,
        tools: &ToolDirs,
        min_major: Option<u32>,
        base: Option<&Path>,
    ) -> Result<Self, ScratchError> {
        let base = base.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let dir = base.join(format!("{SCRATCH_DIR_PREFIX}{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff));
        std::fs::create_dir_all(&base)?;
        std::fs::create_dir(&dir)?;
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        let mut me = Self {
            engine,
            url: ServerUrl {
                scheme: String::new(),
                host: String::new(),
                port: 0,
                user: String::new(),
                password: None,
                dbname: None,
            },
            dir,
            child: None,
            pg_ctl: None,
            run_as: None,
        };
        // A root process runs the server as the engine's system user (PostgreSQL refuses root).
        if std::fs::metadata(&me.dir)?.uid() == 0 {
            let user = if engine == Engine::Postgres { "postgres" } else { "mysql" };
            let who = system_user(user).ok_or_else(|| {
                ScratchError::NotInstalled(format!(
                    "running as root, a scratch server runs as the system user `{user}`, which does not exist"
                ))
            })?;
            std::os::unix::fs::chown(&me.dir, Some(who.uid), Some(who.gid))?;
            me.run_as = Some(who);
        }
        match engine {
            Engine::Postgres => me.start_pg(tools, min_major).await?,
            Engine::Mysql => me.start_my(tools).await?,
            Engine::Sqlserver => return Err(ScratchError::NotInstalled("no scratch server for SQL Server".into())),
        }
        tracing::info!(engine = engine.as_str(), dir = %me.dir.display(), "started a scratch server for a drill");
        Ok(me)
    }

    async fn start_pg(&mut self, tools: &ToolDirs, min_major: Option<u32>) -> Result<(), ScratchError> {
        let (major, bin) = pg_bin_dir(tools).await.ok_or_else(|| {
            ScratchError::NotInstalled(
                "no PostgreSQL server binaries (initdb, postgres) found: install the PostgreSQL server, set \
                 export.pg_bin_dir, or set verify.url"
                    .into(),
            )
        })?;
        if let Some(min) = min_major
            && major < min
        {
            return Err(ScratchError::NotInstalled(format!(
                "the newest installed PostgreSQL server is {major}, older than the dumped server ({min}): install \
                 PostgreSQL {min} or newer, or set verify.url"
            )));
        }
        let data = self.dir.join("data");
        let mut initdb = command(&bin.join("initdb"), self.run_as.as_ref(), &self.dir);
        initdb.arg("-D").arg(&data).args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"]);
        step("initdb", initdb).await?;
        let log = std::fs::File::create(self.dir.join("server.log"))?;
        let mut server = command(&bin.join("postgres"), self.run_as.as_ref(), &self.dir);
        server
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&self.dir)
            .args(["-c", "listen_addresses=", "-c", "fsync=off", "-c", "full_page_writes=off"])
            .args(["-c", "synchronous_commit=off", "-c", "shared_buffers=32MB", "-c", "max_connections=20"])
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true);
        self.child =
            Some(server.spawn().map_err(|e| ScratchError::Start { step: "postgres".into(), detail: e.to_string() })?);
        self.pg_ctl = Some(bin.join("pg_ctl"));
        self.url = ServerUrl {
            scheme: "postgres".into(),
            host: self.dir.display().to_string(),
            port: 5432,
            user: "postgres".into(),
            password: None,
            dbname: None,
        };
        self.wait_ready("postgres").await
    }

    async fn start_my(&mut self, tools: &ToolDirs) -> Result<(), ScratchError> {
        let dir = tools.mysql_bin_dir.as_ref();
        let server = find_binary(dir, &["mariadbd", "mysqld"]).ok_or_else(|| {
            ScratchError::NotInstalled(
                "no MariaDB/MySQL server binary (mariadbd, mysqld) found: install mariadb-server, or set verify.mysql_url"
                    .into(),
            )
        })?;
        let data = self.dir.join("data");
        let install = find_binary(dir, &["mariadb-install-db", "mysql_install_db"]);
        let mariadb = server.file_name().is_some_and(|n| n == "mariadbd") || install.is_some();
        let mut init = if mariadb {
            let install = install.ok_or_else(|| ScratchError::NotInstalled("mariadb-install-db not found".into()))?;
            let mut c = command(&install, self.run_as.as_ref(), &self.dir);
            c.arg("--no-defaults").arg(format!("--datadir={}", data.display())).args([
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
                SMALL_REDO_LOG,
            ]);
            c
        } else {
            let mut c = command(&server, self.run_as.as_ref(), &self.dir);
            c.arg("--no-defaults").arg(format!("--datadir={}", data.display())).arg("--initialize-insecure");
            c
        };
        if self.run_as.is_some() && !mariadb {
            init.arg("--user=mysql");
        }
        step("mariadb-install-db", init).await?;
        let socket = self.dir.join("mysqld.sock");
        let mut cmd = command(&server, self.run_as.as_ref(), &self.dir);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", self.dir.join("mysqld.pid").display()))
            .arg(format!("--log-error={}", self.dir.join("server.log").display()))
            .arg(format!("--tmpdir={}", self.dir.display()))
            .args(["--skip-networking", "--skip-log-bin", "--innodb-buffer-pool-size=32M"])
            .args(["--innodb-flush-log-at-trx-commit=0", "--max-allowed-packet=1G", SMALL_REDO_LOG])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        self.child =
            Some(cmd.spawn().map_err(|e| ScratchError::Start { step: "mariadbd".into(), detail: e.to_string() })?);
        self.url = ServerUrl {
            scheme: "mysql".into(),
            host: socket.display().to_string(),
            port: 3306,
            user: "root".into(),
            password: None,
            dbname: None,
        };
        self.wait_ready("mariadbd").await
    }

    async fn accepts(&self) -> bool {
        if self.engine == Engine::Postgres {
            super::pg::connect(&self.url, "postgres").await.is_ok()
        } else {
            match super::my::connect(&self.url).await {
                Ok(mut c) => {
                    let ok = c.query_drop("SELECT 1").await.is_ok();
                    let _ = c.disconnect().await;
                    ok
                }
                Err(_) => false,
            }
        }
    }

    async fn wait_ready(&mut self, name: &str) -> Result<(), ScratchError> {
        let deadline = tokio::time::Instant::now() + READY_WITHIN;
        loop {
            if self.accepts().await {
                return Ok(());
            }
            let exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || tokio::time::Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                let why = exited.map_or_else(|| "did not accept connections within 60 s".to_owned(), |s| s.to_string());
                return Err(ScratchError::Start { step: name.to_owned(), detail: format!("{why}: {}", tail(&log)) });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The server, as its superuser, through its socket.
    #[must_use]
    pub fn url(&self) -> &ServerUrl {
        &self.url
    }

    /// The server's directory (removed by [`ScratchServer::stop`]).
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the server and removes its directory.
    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pg_ctl) = &self.pg_ctl {
                // An immediate shutdown: the postmaster stops its backends and frees its memory.
                let mut stop = command(pg_ctl, self.run_as.as_ref(), &self.dir);
                stop.arg("stop").arg("-D").arg(self.dir.join("data")).args(["-m", "immediate", "-s", "-t", "10"]);
                let _ = step("pg_ctl stop", stop).await;
            } else {
                let _ = child.start_kill();
            }
            if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
        let dir = self.dir.clone();
        let removed = tokio::task::spawn_blocking(move || remove_dir(&dir)).await;
        if !matches!(removed, Ok(Ok(()))) {
            tracing::warn!(dir = %self.dir.display(), "the scratch server's directory could not be removed");
        }
        tracing::info!(dir = %self.dir.display(), "stopped the drill's scratch server");
    }
}

/// Removes `dir`, retrying while a dying server may still write into it.
fn remove_dir(dir: &Path) -> std::io::Result<()> {
    let mut last = Ok(());
    for _ in 0..20 {
        last = match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            other => other,
        };
        if last.is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    last
}

impl Drop for ScratchServer {
    fn drop(&mut self) {
        // Not stopped: a failed start, or a drill cancelled (shutdown, a dropped request).
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            for _ in 0..50 {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            tracing::warn!(dir = %self.dir.display(), "killed a drill's scratch server");
        }
        if self.dir.exists() && remove_dir(&self.dir).is_err() {
            tracing::warn!(dir = %self.dir.display(), "the scratch server's directory could not be removed");
        }
    }
}

/// The major version of the server a manifest's dump was taken from, when it says.
#[must_use]
pub fn dumped_major(server_version: &str) -> Option<u32> {
    first_number(server_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_what_servers_and_cloud_sql_say() {
        assert_eq!(dumped_major("15.4 (Debian 15.4-1.pgdg120+1)"), Some(15));
        assert_eq!(dumped_major("POSTGRES_17"), Some(17));
        assert_eq!(dumped_major(""), None);
    }

    #[test]
    fn system_users_come_from_passwd() {
        assert!(system_user("root").is_some_and(|r| r.uid == 0));
        assert!(system_user("no such user").is_none());
    }
}
