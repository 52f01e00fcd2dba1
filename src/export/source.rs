//! [`Source`]: a configured source (self-hosted server or `gcp` folder/projects), with the
//! discovery and the exporter that serve it, built from the settings; and the engine of one of
//! its databases ([`Source::engine_of`], refused with [`EngineError`] when a request contradicts it).

use std::sync::Arc;

use crate::discovery::Discovery;
use crate::discovery::servers::{MysqlServer, PostgresServer};
use crate::export::cloudsql::CloudSqlExporter;
use crate::export::dump::DumpExporter;
use crate::export::{ExportError, Exporter};
use crate::model::{DatabaseName, DatabaseRef, Engine, InstanceName, ProjectId, SourceName};
use crate::settings::{Settings, SourceKind};

/// A configured source: how to discover its databases and how to export them.
#[derive(Clone)]
pub struct Source {
    /// The source's name.
    pub name: SourceName,
    /// The `project` of its databases.
    pub project: ProjectId,
    /// The `instance` of its databases.
    pub instance: InstanceName,
    /// The engine of its databases.
    pub engine: Engine,
    /// Finds the source's databases.
    pub discovery: Arc<dyn Discovery>,
    /// Exports them.
    pub exporter: Arc<dyn Exporter>,
    /// A `gcp` source: its databases live in any project and instance it discovers, and their
    /// engine is the instance's (`project`, `instance` and `engine` above are placeholders).
    pub any_instance: bool,
}

impl Source {
    /// The sources the settings configure.
    pub fn from_settings(settings: &Settings) -> Vec<Self> {
        let apis = Arc::new(crate::gcp::clients::GcpApis::new(&settings.gcp));
        let gcp = settings.gcp_sources.iter().map(|source| Self {
            name: source.name.clone(),
            project: ProjectId::parse(source.name.as_str()).expect("a source name is a valid project id"),
            instance: InstanceName::parse("any").expect("valid"),
            engine: Engine::Postgres,
            discovery: Arc::new(crate::discovery::gcp::GcpDiscovery::new(
                source.clone(),
                settings.gcp.clone(),
                apis.clone(),
            )),
            exporter: Arc::new(CloudSqlExporter::new(settings.export.clone(), settings.gcp.clone(), apis.clone())),
            any_instance: true,
        });
        let self_hosted: Vec<Self> = settings
            .effective_sources()
            .into_iter()
            .map(|source| {
                let (engine, discovery): (Engine, Arc<dyn Discovery>) = match source.kind {
                    SourceKind::Postgres => (Engine::Postgres, Arc::new(PostgresServer::new(source.clone()))),
                    SourceKind::Mysql => (Engine::Mysql, Arc::new(MysqlServer::new(source.clone()))),
                };
                Self {
                    name: source.name.clone(),
                    project: ProjectId::parse(source.name.as_str()).expect("a source name is a valid project id"),
                    instance: source.instance_name(),
                    engine,
                    exporter: Arc::new(DumpExporter::new(source, discovery.clone(), settings.export.clone())),
                    discovery,
                    any_instance: false,
                }
            })
            .collect();
        self_hosted.into_iter().chain(gcp).collect()
    }

    /// The reference to `project/instance/database` of this source: for a `gcp` source the given
    /// project and instance with the `presumed` engine (default PostgreSQL, until
    /// [`Source::engine_of`] says the instance's); for a self-hosted one its own.
    #[must_use]
    pub fn database_in(
        &self,
        project: &ProjectId,
        instance: &InstanceName,
        database: DatabaseName,
        presumed: Option<Engine>,
    ) -> DatabaseRef {
        if !self.any_instance {
            return self.database(database);
        }
        DatabaseRef {
            source: self.name.clone(),
            project: project.clone(),
            instance: instance.clone(),
            database,
            engine: presumed.unwrap_or(self.engine),
        }
    }

    /// The engine of `db`: for a `gcp` source the instance's (`instances.get` through the
    /// exporter), for a self-hosted one its own. An engine `stated` by the caller that contradicts
    /// it is refused. Nothing is started or written either way.
    pub async fn engine_of(&self, db: &DatabaseRef, stated: Option<Engine>) -> Result<Engine, EngineError> {
        let (actual, said) = if self.any_instance {
            match self.exporter.engine(db).await? {
                Some(found) => found,
                None => return Ok(stated.unwrap_or(self.engine)),
            }
        } else {
            (self.engine, format!("source `{}` is a {} server", self.name, self.engine.as_str()))
        };
        match stated {
            Some(stated) if stated != actual => Err(EngineError::Contradicts { stated, actual, said }),
            _ => Ok(actual),
        }
    }

    /// The reference to one of its databases.
    #[must_use]
    pub fn database(&self, database: DatabaseName) -> DatabaseRef {
        DatabaseRef {
            source: self.name.clone(),
            project: self.project.clone(),
            instance: self.instance.clone(),
            database,
            engine: self.engine,
        }
    }
}

/// The engine of a database asked for by hand could not be settled.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The caller named an engine that is not the database's.
    #[error(
        "`engine` is {}, but {said}: leave `engine` out (it defaults to the instance's) or name {}",
        stated.as_str(),
        actual.as_str()
    )]
    Contradicts {
        /// What the caller said.
        stated: Engine,
        /// What the database is.
        actual: Engine,
        /// Who says so (`Cloud SQL instance p:i is MYSQL_8_0`).
        said: String,
    },
    /// Reading the instance failed (gone, denied, unreachable).
    #[error(transparent)]
    Export(#[from] ExportError),
}
