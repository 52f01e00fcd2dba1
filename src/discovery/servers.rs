//! Discovery of self-hosted servers: PostgreSQL (`pg_database`, templates and databases that refuse
//! connections left out) and MySQL/MariaDB (schemas, system schemas left out).

use async_trait::async_trait;
use mysql_async::prelude::Queryable;

use super::{Discovery, DiscoveryError};
use crate::db::targets::{source_my, source_pg};
use crate::gcp::instances::MYSQL_SYSTEM_SCHEMAS;
use crate::model::{DatabaseName, DatabaseRef, Engine, ProjectId, SourceName};
use crate::settings::SourceSettings;
use crate::util::error::error_chain;
use crate::util::glob::compile_glob;

/// Why the source's `databases` globs leave `name` out, if they do.
fn outside_globs(source: &SourceSettings, name: &str) -> Option<String> {
    let globs = source.databases.as_ref()?;
    let form: &str = &crate::model::glob_form(name);
    if globs.iter().any(|g| compile_glob(g).is_ok_and(|m| m.is_match(form))) {
        return None;
    }
    Some(format!("`{name}` matches none of source `{}`'s `databases` globs {globs:?}", source.name))
}

fn db_ref(source: &SourceSettings, engine: Engine, name: &str) -> Option<DatabaseRef> {
    if outside_globs(source, name).is_some() {
        return None;
    }
    // A database whose name cannot be stored (NUL, or too long for an object key) is skipped with a
    // warning rather than failing the whole source.
    match DatabaseName::parse(name) {
        Ok(database) => Some(DatabaseRef {
            source: source.name.clone(),
            project: ProjectId::parse(source.name.as_str()).expect("a source name is a valid project"),
            instance: source.instance_name(),
            database,
            engine,
        }),
        Err(e) => {
            tracing::warn!(source.name = %source.name, db.name = ?name, error = %e, "database skipped: its name cannot be stored");
            None
        }
    }
}

/// A PostgreSQL server.
pub struct PostgresServer {
    source: SourceSettings,
}

impl PostgresServer {
    /// A discovery over the configured server.
    #[must_use]
    pub fn new(source: SourceSettings) -> Self {
        Self { source }
    }

    fn err(&self, e: impl std::fmt::Display, refused: bool) -> DiscoveryError {
        let (source_name, message) = (self.source.name.to_string(), e.to_string());
        if refused {
            DiscoveryError::Refused { source_name, message }
        } else {
            DiscoveryError::Unavailable { source_name, message }
        }
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, DiscoveryError> {
        let dbname = self.source.url.dbname.clone().unwrap_or_else(|| "postgres".to_owned());
        let cfg = source_pg(&self.source, &dbname).map_err(|e| self.err(e, true))?;
        let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.map_err(|e| {
            let refused = e.as_db_error().is_some();
            self.err(format!("connecting to {}: {}", self.source.url, error_chain(&e)), refused)
        })?;
        let conn = tokio::spawn(conn);
        let rows = client.query(sql, params).await.map_err(|e| self.err(error_chain(&e), e.as_db_error().is_some()));
        drop(client);
        let _ = conn.await;
        rows
    }
}

#[async_trait]
impl Discovery for PostgresServer {
    fn name(&self) -> &SourceName {
        &self.source.name
    }

    async fn discover(&self) -> Result<Vec<DatabaseRef>, DiscoveryError> {
        let rows = self
            .query("SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY datname", &[])
            .await?;
        Ok(rows.into_iter().filter_map(|r| db_ref(&self.source, Engine::Postgres, r.get::<_, &str>(0))).collect())
    }

    async fn out_of_scope(&self, db: &DatabaseRef) -> Result<Option<String>, DiscoveryError> {
        Ok(outside_globs(&self.source, db.database.as_str()))
    }

    async fn exists(&self, database: &DatabaseName) -> Result<bool, DiscoveryError> {
        let rows =
            self.query("SELECT 1 FROM pg_database WHERE datname = $1 AND datallowconn", &[&database.as_str()]).await?;
        Ok(!rows.is_empty())
    }
}

/// A MySQL or MariaDB server.
pub struct MysqlServer {
    source: SourceSettings,
}

impl MysqlServer {
    /// A discovery over the configured server.
    #[must_use]
    pub fn new(source: SourceSettings) -> Self {
        Self { source }
    }

    async fn schemas(&self) -> Result<Vec<String>, DiscoveryError> {
        let err = |e: &dyn std::fmt::Display, refused: bool| {
            let (source_name, message) = (self.source.name.to_string(), e.to_string());
            if refused {
                DiscoveryError::Refused { source_name, message }
            } else {
                DiscoveryError::Unavailable { source_name, message }
            }
        };
        let opts = source_my(&self.source).map_err(|e| err(&e, true))?;
        let mut conn = mysql_async::Conn::new(opts).await.map_err(|e| {
            let refused = matches!(e, mysql_async::Error::Server(_));
            err(&format!("connecting to {}: {e}", self.source.url), refused)
        })?;
        let names: Vec<String> = conn
            .query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME")
            .await
            .map_err(|e| err(&e, matches!(e, mysql_async::Error::Server(_))))?;
        let _ = conn.disconnect().await;
        Ok(names.into_iter().filter(|n| !MYSQL_SYSTEM_SCHEMAS.contains(&n.to_ascii_lowercase().as_str())).collect())
    }
}

#[async_trait]
impl Discovery for MysqlServer {
    fn name(&self) -> &SourceName {
        &self.source.name
    }

    async fn discover(&self) -> Result<Vec<DatabaseRef>, DiscoveryError> {
        Ok(self.schemas().await?.into_iter().filter_map(|n| db_ref(&self.source, Engine::Mysql, &n)).collect())
    }

    async fn out_of_scope(&self, db: &DatabaseRef) -> Result<Option<String>, DiscoveryError> {
        Ok(outside_globs(&self.source, db.database.as_str()))
    }

    async fn exists(&self, database: &DatabaseName) -> Result<bool, DiscoveryError> {
        Ok(self.schemas().await?.iter().any(|n| n == database.as_str()))
    }
}
