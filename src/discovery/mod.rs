//! `Discovery`: one configured source of databases, and the exclusion rules applied to what it finds.
//!
//! Contract: `discover` lists every database of its source (all pages), or fails as a whole with a
//! [`DiscoveryError`]; it has no side effects, so it may be called any number of times. One failing
//! source never stops the others: the caller records its error and goes on.

pub mod gcp;
pub mod servers;

use std::sync::Arc;

use async_trait::async_trait;
use globset::GlobMatcher;

use crate::model::{DatabaseName, DatabaseRef, ProjectId, SourceName};
use crate::util::glob::compile_glob;

/// Errors of a discovery call.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// Could not reach or query the source; may work later.
    #[error("cannot list the databases of {source_name}: {message}")]
    Unavailable {
        /// The source.
        source_name: String,
        /// Why.
        message: String,
    },
    /// The source refused (authentication, permission); needs an operator.
    #[error("{source_name} refused to list its databases: {message}")]
    Refused {
        /// The source.
        source_name: String,
        /// Why.
        message: String,
    },
}

impl DiscoveryError {
    /// True when retrying may help.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Something a discovery passed over on purpose (a replica, a stopped instance, a project whose
/// Cloud SQL API is disabled), and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// What was skipped (`project/instance`, or `project`).
    pub scope: String,
    /// Why, in words an operator can act on.
    pub reason: String,
}

/// Everything one discovery found: the databases, what it walked, and what it could not see.
#[derive(Clone, Debug, Default)]
pub struct DiscoveryReport {
    /// Every database found, system databases left out, sorted.
    pub databases: Vec<DatabaseRef>,
    /// Folders walked.
    pub folders: usize,
    /// Projects looked at.
    pub projects: usize,
    /// Instances kept (their databases are listed; a self-hosted server is one).
    pub instances: usize,
    /// Instances and projects passed over, with the reason.
    pub skipped: Vec<Skipped>,
    /// Partial failures (`scope`, `message`): a project that could not be listed, a warning.
    pub errors: Vec<(String, String)>,
    /// False when some part of the source could not be seen (an API warned that its answer may be
    /// incomplete, or a folder or project could not be listed): its databases may be missing.
    pub complete: bool,
    /// Requests sent to Google APIs (`gcp` sources; empty for a server), for the metrics.
    pub api_calls: Vec<ApiCalls>,
}

/// Requests a discovery sent to one method of one API with one outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiCalls {
    /// `resourcemanager`, `sqladmin` or `cloudasset`.
    pub api: String,
    /// The method (`folders.list`, `instances.list`, `searchAllResources`, …).
    pub method: String,
    /// The HTTP status code of a failed request, or `transport`; `None` when it succeeded.
    pub error_type: Option<String>,
    /// How many.
    pub count: u64,
}

/// Where [`Discovery::discover_into`] hands each database it finds.
pub type Found = futures::channel::mpsc::UnboundedSender<DatabaseRef>;

/// One configured source of databases.
#[async_trait]
pub trait Discovery: Send + Sync {
    /// The source's configured name.
    fn name(&self) -> &SourceName;
    /// Every database of the source, system databases left out, sorted.
    async fn discover(&self) -> Result<Vec<DatabaseRef>, DiscoveryError>;
    /// [`Discovery::discover`] with what was walked, skipped and missed (sources made of many
    /// projects report partial failures here instead of failing as a whole).
    async fn discover_report(&self) -> Result<DiscoveryReport, DiscoveryError> {
        Ok(DiscoveryReport {
            databases: self.discover().await?,
            instances: 1,
            complete: true,
            ..DiscoveryReport::default()
        })
    }
    /// [`Discovery::discover_report`], handing each database to `found` as soon as it is known
    /// (so `/schedule` can enqueue while discovery still runs); the report's `databases` is then
    /// empty. A source that only knows its databases at the end sends them all then.
    async fn discover_into(&self, found: &Found) -> Result<DiscoveryReport, DiscoveryError> {
        let mut report = self.discover_report().await?;
        for db in std::mem::take(&mut report.databases) {
            // The receiver only goes away when the run is abandoned: nothing left to hand over.
            let _ = found.unbounded_send(db);
        }
        Ok(report)
    }
    /// Whether `database` exists right now (exports check it before dumping).
    async fn exists(&self, database: &DatabaseName) -> Result<bool, DiscoveryError>;
    /// Why `db` lies outside what this source is configured to back up (`None`: inside), in words
    /// that name the rule. An export asked for by hand checks it, so an operator's call cannot reach
    /// a database the nightly run would never back up.
    async fn out_of_scope(&self, db: &DatabaseRef) -> Result<Option<String>, DiscoveryError> {
        let _ = db;
        Ok(None)
    }
    /// Why `root` lies outside what this source is configured to walk (`None`: inside, by its
    /// configuration or its ancestry). Only `gcp` sources have roots.
    async fn root_outside(&self, root: Root<'_>) -> Result<Option<String>, DiscoveryError> {
        Ok(Some(format!("source `{}` walks no folders or projects, so {root} is not one of its", self.name())))
    }
    /// This source walking `folders` and `projects` instead of its configured roots (a run's scope);
    /// `None` for a source without roots.
    fn narrowed(&self, folders: &[String], projects: &[ProjectId]) -> Option<Arc<dyn Discovery>> {
        let _ = (folders, projects);
        None
    }
}

/// A place a `gcp` source walks from: a folder (`folders/N`) or a project.
#[derive(Clone, Copy, Debug)]
pub enum Root<'a> {
    /// `folders/N`.
    Folder(&'a str),
    /// A project.
    Project(&'a ProjectId),
}

impl std::fmt::Display for Root<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Folder(folder) => write!(f, "`{folder}`"),
            Self::Project(project) => write!(f, "project `{project}`"),
        }
    }
}

/// The compiled exclusion patterns.
#[derive(Clone, Debug, Default)]
pub struct Exclusions {
    patterns: Vec<(String, GlobMatcher)>,
}

impl Exclusions {
    /// Compiles the patterns (already validated by `Settings`).
    pub fn new(patterns: &[String]) -> Result<Self, globset::Error> {
        let patterns =
            patterns.iter().map(|p| Ok((p.clone(), compile_glob(p)?))).collect::<Result<_, globset::Error>>()?;
        Ok(Self { patterns })
    }

    /// These patterns and `more` (a run's scope adds its own).
    pub fn with(&self, more: &[String]) -> Result<Self, globset::Error> {
        let mut all = self.clone();
        all.patterns.extend(Self::new(more)?.patterns);
        Ok(all)
    }

    /// The first pattern that excludes `db`, if any.
    #[must_use]
    pub fn excluded_by(&self, db: &DatabaseRef) -> Option<&str> {
        let path = db.path();
        self.patterns.iter().find(|(_, m)| m.is_match(&path)).map(|(p, _)| p.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Engine, InstanceName, ProjectId};

    #[test]
    fn exclusion_names_the_first_matching_pattern_and_star_stays_in_its_segment() {
        let ex = Exclusions::new(&["*/*/scratch_*".into(), "legacy/**".into()]).unwrap();
        let db = |p: &str, d: &str| DatabaseRef {
            source: SourceName::parse("s").unwrap(),
            project: ProjectId::parse(p).unwrap(),
            instance: InstanceName::parse("i").unwrap(),
            database: DatabaseName::parse(d).unwrap(),
            engine: Engine::Postgres,
        };
        assert_eq!(ex.excluded_by(&db("p", "scratch_1")), Some("*/*/scratch_*"));
        assert_eq!(ex.excluded_by(&db("legacy", "app")), Some("legacy/**"));
        assert_eq!(ex.excluded_by(&db("p", "app")), None);
        assert!(Exclusions::new(&["*scratch*".into()]).unwrap().excluded_by(&db("p", "scratch")).is_none());
    }
}
