//! The `gcp` source: every Cloud SQL database under the configured folders and projects.
//!
//! Two strategies find the instances:
//! - `walk` (default): Resource Manager `folders.list` + `projects.list` by parent, recursively and
//!   every page, `ACTIVE` projects only; then `instances.list` (every page) per project.
//! - `asset_inventory`: one Cloud Asset `searchAllResources` query per folder (and per explicit
//!   project) for `sqladmin.googleapis.com/Instance`, every page. An instance's state comes from the
//!   result's `state`; its `databaseVersion`, `instanceType`, `masterInstanceName` and
//!   `activationPolicy` from `additionalAttributes`. Only when `databaseVersion` is missing there is
//!   the instance read with `instances.get` (one Cloud SQL call instead of none).
//!
//! Then, for both, `databases.list` per kept instance. Kept: `RUNNABLE` primaries; read replicas,
//! stopped (activation policy `NEVER`), suspended and other non-runnable instances and external
//! (on-premises) servers are skipped with a stated reason (replicas and stopped instances can be
//! included by the source's settings; the rules are `gcp::instances`). System databases are
//! dropped per engine.
//!
//! Nothing waits for a phase to end: each call starts as soon as what it needs is known, and each
//! database is handed to the caller as soon as its instance's `databases.list` answers, so
//! `/schedule` creates tasks while discovery runs (ADR 0010).
//!
//! Politeness: every call goes through its API's limiter and retries (`gcp::api`), shared by every
//! `gcp` source of the process (`GcpApis`).
//!
//! Partial failures never stop the others: a project whose Cloud SQL Admin API is disabled is
//! skipped and named (a project without the API has no Cloud SQL instance, so the run stays
//! complete); a project that refuses (`PERMISSION_DENIED`) or keeps failing, a folder that cannot
//! be listed, and an `instances.list` warning such as `REGION_UNREACHABLE` are named in `errors`
//! and make the report incomplete.

mod ancestry;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use google_cloud_gax::error::Error as GaxError;
use tokio::sync::OnceCell;

use super::{ApiCalls, Discovery, DiscoveryError, DiscoveryReport, Found, Root, Skipped};
use crate::gcp::api::{Api, CallError};
use crate::gcp::clients::{Clients, GcpApis};
use crate::gcp::instances::{
    InstanceInfo, SQL_INSTANCE_ASSET_TYPE, instance_from_asset, instance_verdict, is_system_database,
};
use crate::model::{DatabaseName, DatabaseRef, Engine, InstanceName, ProjectId, SourceName};
use crate::settings::{GcpSettings, GcpSourceSettings, GcpStrategy};

/// The `gcp` discovery.
pub struct GcpDiscovery {
    source: GcpSourceSettings,
    gcp: GcpSettings,
    apis: Arc<GcpApis>,
    clients: OnceCell<Clients>,
    /// Requests sent since the last report, by (API, method, error type); drained into each
    /// report's `api_calls`.
    tally: std::sync::Mutex<BTreeMap<CallKey, u64>>,
}

/// (API, method, error type) of a request, for the tally.
type CallKey = (&'static str, String, Option<String>);

/// Accumulates one run's findings (its databases go to the caller as they are found).
struct Run {
    report: DiscoveryReport,
    /// Databases handed over.
    sent: usize,
}

impl Run {
    fn error(&mut self, scope: String, message: String, incomplete: bool) {
        tracing::warn!(scope = %scope, error = %message, "gcp discovery: {message}");
        self.report.errors.push((scope, message));
        if incomplete {
            self.report.complete = false;
        }
    }

    fn skip(&mut self, scope: String, reason: String) {
        tracing::info!(scope = %scope, reason = %reason, "gcp discovery: skipped");
        self.report.skipped.push(Skipped { scope, reason });
    }
}

impl GcpDiscovery {
    /// A discovery over `source`; clients are built on first use, sharing `apis`' limits.
    #[must_use]
    pub fn new(source: GcpSourceSettings, gcp: GcpSettings, apis: Arc<GcpApis>) -> Self {
        Self { source, gcp, apis, clients: OnceCell::new(), tally: std::sync::Mutex::default() }
    }

    /// The per-API limits and counters.
    #[must_use]
    pub fn apis(&self) -> &Arc<GcpApis> {
        &self.apis
    }

    async fn clients(&self) -> Result<&Clients, DiscoveryError> {
        self.clients
            .get_or_try_init(|| Clients::build(&self.gcp))
            .await
            .map_err(|message| DiscoveryError::Refused { source_name: self.source.name.to_string(), message })
    }

    /// `api.call`, with every request it sends tallied for the report's `api_calls`.
    async fn call<T, F, Fut>(&self, api: &Api, what: &str, f: F) -> Result<T, CallError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, GaxError>>,
    {
        let name = api.name();
        let observe = |method: &str, error: Option<&str>| {
            let key = (name, method.to_owned(), error.map(str::to_owned));
            *self.tally.lock().expect("lock").entry(key).or_default() += 1;
        };
        api.call_observed(what, &observe, f).await
    }

    /// Direct ACTIVE child folders of `parent`, every page.
    async fn child_folders(&self, c: &Clients, parent: &str) -> Result<Vec<String>, CallError> {
        let mut folders = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .call(&self.apis.resource_manager, "folders.list", || {
                    c.folders.list_folders().set_parent(parent).set_page_token(token.clone()).send()
                })
                .await?;
            folders.extend(page.folders.into_iter().filter(|f| f.state.name() == Some("ACTIVE")).map(|f| f.name));
            if page.next_page_token.is_empty() {
                return Ok(folders);
            }
            token = page.next_page_token;
        }
    }

    /// Direct ACTIVE child projects of `parent`, every page, and the others as skipped.
    async fn child_projects(&self, c: &Clients, parent: &str) -> Result<(Vec<String>, Vec<Skipped>), CallError> {
        let mut projects = Vec::new();
        let mut skipped = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .call(&self.apis.resource_manager, "projects.list", || {
                    c.projects.list_projects().set_parent(parent).set_page_token(token.clone()).send()
                })
                .await?;
            for p in page.projects {
                match p.state.name() {
                    Some("ACTIVE") => projects.push(p.project_id),
                    state => skipped.push(Skipped {
                        scope: format!("project:{}", p.project_id),
                        reason: format!(
                            "project state {}: only ACTIVE projects are backed up",
                            state.unwrap_or("UNKNOWN")
                        ),
                    }),
                }
            }
            if page.next_page_token.is_empty() {
                return Ok((projects, skipped));
            }
            token = page.next_page_token;
        }
    }

    /// The instances of one project (every page), and the warnings of the answer.
    async fn list_instances(&self, c: &Clients, project: &str) -> Result<(Vec<InstanceInfo>, Vec<String>), CallError> {
        let mut out = Vec::new();
        let mut warnings = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .call(&self.apis.sql_admin, "instances.list", || {
                    c.instances.list().set_project(project).set_page_token(token.clone()).send()
                })
                .await?;
            out.extend(page.items.iter().map(|i| InstanceInfo::from_sql(i, project)));
            for w in &page.warnings {
                let code = w.code.name().unwrap_or("UNKNOWN_WARNING");
                let region = if w.region.is_empty() { String::new() } else { format!(" ({})", w.region) };
                warnings.push(format!("instances.list warned {code}{region}: {}", w.message));
            }
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        Ok((out, warnings))
    }

    /// One page of the instances the asset inventory knows under `scope` (`folders/N` or
    /// `projects/P`), and the next page's token (empty after the last).
    async fn search_instances(
        &self,
        c: &Clients,
        scope: &str,
        token: String,
    ) -> Result<(Vec<InstanceInfo>, String), CallError> {
        let page = self
            .call(&self.apis.asset, "searchAllResources", || {
                c.asset
                    .search_all_resources()
                    .set_scope(scope)
                    .set_asset_types([SQL_INSTANCE_ASSET_TYPE])
                    .set_page_token(token.clone())
                    .send()
            })
            .await?;
        let found =
            page.results.iter().filter(|r| r.asset_type == SQL_INSTANCE_ASSET_TYPE).filter_map(instance_from_asset);
        Ok((found.collect(), page.next_page_token))
    }

    /// `instances.get`, for an asset without `databaseVersion`.
    async fn get_instance(&self, c: &Clients, project: &str, instance: &str) -> Result<InstanceInfo, CallError> {
        let i = self
            .call(&self.apis.sql_admin, "instances.get", || {
                c.instances.get().set_project(project).set_instance(instance).send()
            })
            .await?;
        Ok(InstanceInfo::from_sql(&i, project))
    }

    /// The user databases of one kept instance.
    async fn list_databases(
        &self,
        c: &Clients,
        i: &InstanceInfo,
        engine: Engine,
    ) -> Result<(Vec<DatabaseRef>, Vec<Skipped>), CallError> {
        let page = self
            .call(&self.apis.sql_admin, "databases.list", || {
                c.databases.list().set_project(&i.project).set_instance(&i.name).send()
            })
            .await?;
        let mut dbs = Vec::new();
        let mut skipped = Vec::new();
        let (Ok(project), Ok(instance)) = (ProjectId::parse(i.project.as_str()), InstanceName::parse(i.name.as_str()))
        else {
            skipped
                .push(Skipped { scope: format!("{}/{}", i.project, i.name), reason: "name cannot be stored".into() });
            return Ok((dbs, skipped));
        };
        for d in page.items {
            if is_system_database(engine, &d.name, self.source.keep_postgres_database) {
                continue;
            }
            match DatabaseName::parse(d.name.as_str()) {
                Ok(database) => dbs.push(DatabaseRef {
                    source: self.source.name.clone(),
                    project: project.clone(),
                    instance: instance.clone(),
                    database,
                    engine,
                }),
                Err(e) => skipped.push(Skipped {
                    scope: format!("{}/{}/{:?}", i.project, i.name, d.name),
                    reason: format!("its name cannot be stored: {e}"),
                }),
            }
        }
        Ok((dbs, skipped))
    }

    /// Starts listing `folder`'s projects and child folders unless it was seen. Two calls, queued
    /// side by side: a folder's projects (which feed Cloud SQL, the slowest API) do not wait for the
    /// listing of its child folders, nor for those of the folders found before it.
    fn folder_found<'a>(&'a self, c: &'a Clients, folder: String, seen: &mut Seen, work: &mut Work<'a>) {
        if seen.folders.insert(folder.clone()) {
            let parent = folder.clone();
            work.push(Box::pin(async move {
                let result = self.child_projects(c, &parent).await;
                Step::Projects(parent, result)
            }));
            work.push(Box::pin(async move {
                let result = self.child_folders(c, &folder).await;
                Step::Folders(folder, result)
            }));
        }
    }

    /// Starts `project`'s `instances.list` unless it was seen.
    fn project_found<'a>(&'a self, c: &'a Clients, project: String, seen: &mut Seen, work: &mut Work<'a>) {
        if seen.projects.insert(project.clone()) {
            work.push(Box::pin(async move {
                let result = self.list_instances(c, &project).await;
                Step::Instances(project, result)
            }));
        }
    }

    /// Starts the next step for an instance seen for the first time: `instances.get` when the asset
    /// inventory left out its attributes, else keep (list its databases) or skip it.
    fn instance_found<'a>(
        &'a self,
        c: &'a Clients,
        i: InstanceInfo,
        run: &mut Run,
        seen: &mut Seen,
        work: &mut Work<'a>,
    ) {
        if !seen.instances.insert((i.project.clone(), i.name.clone())) {
            return;
        }
        seen.projects.insert(i.project.clone());
        if i.database_version.is_empty() {
            work.push(Box::pin(async move {
                let result = self.get_instance(c, &i.project, &i.name).await;
                Step::Instance(i, result)
            }));
        } else {
            self.instance_known(c, i, run, work);
        }
    }

    /// Keeps (and starts `databases.list`) or skips an instance whose attributes are known.
    fn instance_known<'a>(&'a self, c: &'a Clients, i: InstanceInfo, run: &mut Run, work: &mut Work<'a>) {
        match instance_verdict(&i, &self.source) {
            Ok(engine) => {
                run.report.instances += 1;
                work.push(Box::pin(async move {
                    let result = self.list_databases(c, &i, engine).await;
                    Step::Databases(i, result)
                }));
            }
            Err(reason) => run.skip(format!("{}/{}", i.project, i.name), reason),
        }
    }

    /// Starts one page of the asset search of `scope`.
    fn search_page<'a>(&'a self, c: &'a Clients, scope: String, token: String, work: &mut Work<'a>) {
        work.push(Box::pin(async move {
            let result = self.search_instances(c, &scope, token).await;
            Step::Search(scope, result)
        }));
    }

    fn project_failed(&self, run: &mut Run, project: &str, e: &CallError) {
        let scope = format!("project:{project}");
        match e {
            CallError::Disabled(_) => {
                run.skip(scope.clone(), "the Cloud SQL Admin API is disabled in this project".into());
                run.error(scope, format!("Cloud SQL Admin API disabled in {project}: skipped"), false);
            }
            CallError::Denied(_) => {
                run.skip(scope.clone(), format!("Cloud SQL Admin API refused: {e}"));
                run.error(scope, format!("cannot list the instances of {project}: {e}"), true);
            }
            _ => run.error(scope, format!("cannot list the instances of {project}: {e}"), true),
        }
    }

    /// One discovery with the source's strategy. Every call starts as soon as what it needs is
    /// known, not when a whole phase ends: a folder's children as soon as the folder is found, a
    /// project's instances as soon as the project is, an instance's databases as soon as the
    /// instance is (the next asset page meanwhile), and each database goes to `found` at once. The
    /// per-API limiters and in-flight bounds pace it all, so the run is as fast as the slowest
    /// API's quota allows.
    async fn explore(&self, c: &Clients, run: &mut Run, found: &Found) {
        let mut work: Work<'_> = FuturesUnordered::new();
        let mut seen = Seen::default();
        match self.source.strategy {
            GcpStrategy::Walk => {
                for p in &self.source.projects {
                    self.project_found(c, p.to_string(), &mut seen, &mut work);
                }
                for f in self.source.folder_names() {
                    self.folder_found(c, f, &mut seen, &mut work);
                }
            }
            GcpStrategy::AssetInventory => {
                run.report.folders = self.source.folders.len();
                let projects = self.source.projects.iter().map(|p| format!("projects/{p}"));
                for scope in self.source.folder_names().into_iter().chain(projects) {
                    self.search_page(c, scope, String::new(), &mut work);
                }
            }
        }
        while let Some(step) = work.next().await {
            match step {
                Step::Folders(_, Ok(folders)) => {
                    run.report.folders += 1;
                    for f in folders {
                        self.folder_found(c, f, &mut seen, &mut work);
                    }
                }
                Step::Folders(folder, Err(e)) => {
                    run.report.folders += 1;
                    run.error(format!("folder:{folder}"), format!("cannot list the folders in {folder}: {e}"), true);
                }
                Step::Projects(_, Ok((projects, skipped))) => {
                    for p in projects {
                        self.project_found(c, p, &mut seen, &mut work);
                    }
                    for s in skipped {
                        run.skip(s.scope, s.reason);
                    }
                }
                Step::Projects(folder, Err(e)) => {
                    run.error(format!("folder:{folder}"), format!("cannot list the projects in {folder}: {e}"), true);
                }
                Step::Instances(project, Ok((instances, warnings))) => {
                    for w in warnings {
                        run.error(format!("project:{project}"), w, true);
                    }
                    for i in instances {
                        self.instance_found(c, i, run, &mut seen, &mut work);
                    }
                }
                Step::Instances(project, Err(e)) => self.project_failed(run, &project, &e),
                Step::Search(scope, Ok((instances, next))) => {
                    if !next.is_empty() {
                        self.search_page(c, scope, next, &mut work);
                    }
                    for i in instances {
                        self.instance_found(c, i, run, &mut seen, &mut work);
                    }
                }
                Step::Search(scope, Err(e)) => {
                    run.error(format!("asset:{scope}"), format!("cannot search {scope}: {e}"), true);
                }
                Step::Instance(_, Ok(info)) => self.instance_known(c, info, run, &mut work),
                Step::Instance(i, Err(e)) => run.error(
                    format!("instance:{}/{}", i.project, i.name),
                    format!("cannot read {}/{}: {e}", i.project, i.name),
                    true,
                ),
                Step::Databases(_, Ok((dbs, skipped))) => {
                    for db in dbs {
                        run.sent += 1;
                        // The receiver only goes away when the run is abandoned.
                        let _ = found.unbounded_send(db);
                    }
                    for s in skipped {
                        run.skip(s.scope, s.reason);
                    }
                }
                Step::Databases(i, Err(e)) => run.error(
                    format!("instance:{}/{}", i.project, i.name),
                    format!("cannot list the databases of {}/{}: {e}", i.project, i.name),
                    true,
                ),
            }
        }
        run.report.projects = seen.projects.len();
    }
}

/// One finished piece of discovery work, handed back to the loop that started it.
enum Step {
    /// A folder's ACTIVE child folders.
    Folders(String, Result<Vec<String>, CallError>),
    /// A folder's ACTIVE projects, and the others as skipped.
    Projects(String, Result<(Vec<String>, Vec<Skipped>), CallError>),
    /// A project's instances and the answer's warnings.
    Instances(String, Result<(Vec<InstanceInfo>, Vec<String>), CallError>),
    /// One page of a scope's asset search: its instances and the next page's token.
    Search(String, Result<(Vec<InstanceInfo>, String), CallError>),
    /// `instances.get` of an asset found without its attributes.
    Instance(InstanceInfo, Result<InstanceInfo, CallError>),
    /// A kept instance's user databases and what was skipped among them.
    Databases(InstanceInfo, Result<(Vec<DatabaseRef>, Vec<Skipped>), CallError>),
}

/// Discovery work in flight.
type Work<'a> = FuturesUnordered<Pin<Box<dyn Future<Output = Step> + Send + 'a>>>;

/// What one discovery has started work for, so nothing is listed twice.
#[derive(Default)]
struct Seen {
    folders: HashSet<String>,
    projects: HashSet<String>,
    instances: HashSet<(String, String)>,
}

#[async_trait]
impl Discovery for GcpDiscovery {
    fn name(&self) -> &SourceName {
        &self.source.name
    }

    async fn discover(&self) -> Result<Vec<DatabaseRef>, DiscoveryError> {
        Ok(self.discover_report().await?.databases)
    }

    async fn discover_report(&self) -> Result<DiscoveryReport, DiscoveryError> {
        let (found, databases) = futures::channel::mpsc::unbounded();
        let mut report = self.discover_into(&found).await?;
        drop(found);
        report.databases = databases.collect().await;
        report.databases.sort_by_cached_key(DatabaseRef::path);
        report.databases.dedup();
        Ok(report)
    }

    async fn discover_into(&self, found: &Found) -> Result<DiscoveryReport, DiscoveryError> {
        let c = self.clients().await?;
        let mut run = Run { report: DiscoveryReport { complete: true, ..DiscoveryReport::default() }, sent: 0 };
        self.explore(c, &mut run, found).await;
        let mut report = run.report;
        report.api_calls = std::mem::take(&mut *self.tally.lock().expect("lock"))
            .into_iter()
            .map(|((api, method, error_type), count)| ApiCalls { api: api.to_owned(), method, error_type, count })
            .collect();
        report.skipped.sort_by(|a, b| a.scope.cmp(&b.scope));
        report.skipped.dedup();
        let api = &self.apis;
        tracing::info!(
            source.name = %self.source.name,
            folders = report.folders, projects = report.projects, instances = report.instances,
            databases = run.sent, skipped = report.skipped.len(), errors = report.errors.len(),
            complete = report.complete,
            calls.resourcemanager = api.resource_manager.counters.calls.load(Ordering::Relaxed),
            calls.sqladmin = api.sql_admin.counters.calls.load(Ordering::Relaxed),
            calls.cloudasset = api.asset.counters.calls.load(Ordering::Relaxed),
            "gcp discovery done"
        );
        Ok(report)
    }

    /// Cloud SQL exports report a missing database themselves: always true here.
    async fn exists(&self, _database: &DatabaseName) -> Result<bool, DiscoveryError> {
        Ok(true)
    }

    /// In scope when the project is one of `projects`, or has one of `folders` among its ancestors
    /// (see `ancestry.rs`).
    async fn out_of_scope(&self, db: &DatabaseRef) -> Result<Option<String>, DiscoveryError> {
        self.project_outside(&db.project).await
    }

    async fn root_outside(&self, root: Root<'_>) -> Result<Option<String>, DiscoveryError> {
        match root {
            Root::Project(project) => self.project_outside(project).await,
            Root::Folder(folder) => self.folder_outside(folder).await,
        }
    }

    fn narrowed(&self, folders: &[String], projects: &[ProjectId]) -> Option<Arc<dyn Discovery>> {
        let source =
            GcpSourceSettings { folders: folders.to_vec(), projects: projects.to_vec(), ..self.source.clone() };
        Some(Arc::new(Self::new(source, self.gcp.clone(), self.apis.clone())))
    }
}
