//! Connection settings of a database server: from a source (`[[sources]]`, whose password is in
//! its file or its URL) or from a server URL (a restore target or a verification server, whose
//! password is in the URL or the tool's own environment variable). Passwords go into the
//! drivers' configuration or a child's environment, never into arguments or logs.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::settings::{ServerUrl, SourceSettings, read_secret_file};

/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The password of a source: its password file, else the URL's.
pub fn source_password(source: &SourceSettings) -> Result<Option<SecretString>, String> {
    match &source.password_file {
        Some(path) => read_secret_file(path).map(Some),
        None => Ok(source.url.password.clone()),
    }
}

/// A `tokio_postgres` configuration for the source, connecting to `dbname`.
pub fn source_pg(source: &SourceSettings, dbname: &str) -> Result<tokio_postgres::Config, String> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(&source.url.host)
        .port(source.url.port)
        .user(&source.url.user)
        .dbname(dbname)
        .application_name("data-backup")
        .connect_timeout(CONNECT_TIMEOUT);
    if let Some(pw) = source_password(source)? {
        cfg.password(pw.expose_secret());
    }
    Ok(cfg)
}

/// `mysql_async` options for the source.
pub fn source_my(source: &SourceSettings) -> Result<mysql_async::Opts, String> {
    let pw = source_password(source)?;
    Ok(mysql_async::OptsBuilder::default()
        .ip_or_hostname(source.url.host.clone())
        .tcp_port(source.url.port)
        .user(Some(source.url.user.clone()))
        .pass(pw.map(|p| p.expose_secret().to_owned()))
        .into())
}

/// The password of a server URL: the URL's, else the non-empty environment variable `env`
/// (`PGPASSWORD`, `MYSQL_PWD`).
#[must_use]
pub fn url_password(server: &ServerUrl, env: &str) -> Option<SecretString> {
    server.password.clone().or_else(|| std::env::var(env).ok().filter(|v| !v.is_empty()).map(SecretString::from))
}

/// A `tokio_postgres` configuration for the server, connecting to `db` as a restore does.
#[must_use]
pub fn url_pg(server: &ServerUrl, db: &str) -> tokio_postgres::Config {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(&server.host)
        .port(server.port)
        .user(&server.user)
        .dbname(db)
        .application_name("data-backup restore")
        .connect_timeout(CONNECT_TIMEOUT);
    if let Some(pw) = url_password(server, "PGPASSWORD") {
        cfg.password(pw.expose_secret());
    }
    cfg
}

/// Whether the server's host is a Unix socket path (a drill's scratch server).
#[must_use]
pub fn is_socket(server: &ServerUrl) -> bool {
    server.host.starts_with('/')
}

/// `mysql_async` options for the server.
#[must_use]
pub fn url_my(server: &ServerUrl) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname(server.host.clone())
        .tcp_port(server.port)
        .user(Some(server.user.clone()))
        .pass(url_password(server, "MYSQL_PWD").map(|p| p.expose_secret().to_owned()))
        // TCP, like the `mysql` client a restore runs: the server sees both come from one host (a
        // drill's account exists for exactly that host). A host that is a path is a socket (a
        // drill's scratch server): both connect through it.
        .socket(is_socket(server).then(|| server.host.clone()))
        .prefer_socket(is_socket(server))
        .into()
}
