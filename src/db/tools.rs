//! The client tools on this machine (`pg_dump`, `pg_restore`, `psql`, `postgres`, `mariadb-dump`,
//! `mysql`…) with their versions, and the environment every PostgreSQL or MySQL child gets.
//!
//! **A child's environment.** What a tool reads from this process's environment could redirect or
//! alter it (`PGSERVICE` naming another server, `PGOPTIONS` setting options, a stray password):
//! [`pg_env`] and [`my_env`] clear every such variable and set the connection in the one place,
//! for the dump, the restore and the drill alike.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use tokio::process::Command;

/// Where the PostgreSQL packages of Debian and Ubuntu put each major version (`<N>/bin/`).
const PG_LIB: &str = "/usr/lib/postgresql";

/// A tool found on this machine.
#[derive(Clone, Debug)]
pub struct Tool {
    /// Its path (or bare name, found on `PATH`).
    pub path: PathBuf,
    /// What `--version` printed.
    pub version_text: String,
    /// Its major version (0 when `--version` names none).
    pub major: u32,
}

/// Runs `path --version`; `None` when it cannot run or fails.
pub async fn tool_version(path: &Path) -> Option<Tool> {
    let out = Command::new(path).arg("--version").output().await.ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    // "pg_dump (PostgreSQL) 15.20 (Debian …)" / "mariadb-dump from 11.4, client 10.19 for …" / "mysqldump  Ver 10.19 Distrib 10.11.19-MariaDB"
    let major = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .find_map(|w| w.split('.').next().and_then(|m| m.parse::<u32>().ok()).filter(|_| w.contains('.')))
        .unwrap_or(0);
    Some(Tool { path: path.to_owned(), version_text: text, major })
}

/// The major version `path --version` names, if it runs and names one.
pub async fn version_major(path: &Path) -> Option<u32> {
    tool_version(path).await.map(|t| t.major).filter(|&m| m > 0)
}

/// The PostgreSQL tool `name`: the configured directory's, else the newest installed one (under
/// `/usr/lib/postgresql/<N>/bin`), else `PATH`'s.
pub async fn newest_pg(bin_dir: Option<&Path>, name: &str) -> Option<Tool> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = bin_dir {
        candidates.push(dir.join(name));
    } else {
        if let Ok(entries) = std::fs::read_dir(PG_LIB) {
            candidates.extend(entries.flatten().map(|e| e.path().join("bin").join(name)));
        }
        candidates.push(PathBuf::from(name));
    }
    let mut best: Option<Tool> = None;
    for c in candidates {
        if let Some(tool) = tool_version(&c).await
            && best.as_ref().is_none_or(|b| tool.major > b.major)
        {
            best = Some(tool);
        }
    }
    best
}

/// The first of `names` that runs, from the configured directory or `PATH` (MariaDB names first).
pub async fn first_of(bin_dir: Option<&Path>, names: &[&str]) -> Option<Tool> {
    for name in names {
        let path = bin_dir.map_or_else(|| PathBuf::from(name), |d| d.join(name));
        if let Some(tool) = tool_version(&path).await {
            return Some(tool);
        }
    }
    None
}

/// Where a PostgreSQL tool connects.
#[derive(Clone, Copy, Debug)]
pub struct PgConn<'a> {
    /// Host (or socket directory).
    pub host: &'a str,
    /// Port.
    pub port: u16,
    /// User.
    pub user: &'a str,
    /// The database: always in `PGDATABASE`, never `-d` (libpq expands a `-d` value holding `=`
    /// or starting with `postgres://` as a connection string; `PGDATABASE` is always a name).
    pub database: &'a str,
    /// `PGAPPNAME`.
    pub application: &'a str,
}

/// Variables of libpq that would redirect a tool or change what it does; cleared for every child.
const PG_CLEARED: &[&str] = &["PGPASSWORD", "PGSERVICE", "PGSERVICEFILE", "PGOPTIONS", "PGHOSTADDR"];

/// Sets the environment of a PostgreSQL tool: every redirecting variable cleared, the connection
/// and the password (when there is one) set.
pub fn pg_env(cmd: &mut Command, conn: PgConn<'_>, password: Option<&SecretString>) {
    for var in PG_CLEARED {
        cmd.env_remove(var);
    }
    cmd.env("PGHOST", conn.host)
        .env("PGPORT", conn.port.to_string())
        .env("PGUSER", conn.user)
        .env("PGDATABASE", conn.database)
        .env("PGAPPNAME", conn.application)
        .env("PGCONNECT_TIMEOUT", super::targets::CONNECT_TIMEOUT.as_secs().to_string());
    if let Some(pw) = password {
        cmd.env("PGPASSWORD", pw.expose_secret());
    }
}

/// Variables of the MySQL/MariaDB clients that would redirect a tool; cleared for every child.
const MY_CLEARED: &[&str] = &["MYSQL_PWD", "MYSQL_HOST", "MYSQL_TCP_PORT", "MYSQL_UNIX_PORT"];

/// Sets the environment of a MySQL/MariaDB tool (whose connection is in its arguments): every
/// redirecting variable cleared, the password (when there is one) set.
pub fn my_env(cmd: &mut Command, password: Option<&SecretString>) {
    for var in MY_CLEARED {
        cmd.env_remove(var);
    }
    if let Some(pw) = password {
        cmd.env("MYSQL_PWD", pw.expose_secret());
    }
}
