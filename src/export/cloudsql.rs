//! The `cloudsql` exporter: Cloud SQL Admin `instances.export` writes the dump into the bucket
//! itself; this exporter starts or attaches to that operation, waits a bounded while, checks what
//! was written and returns the manifest.
//!
//! One attempt (run under the export's lease, so concurrent deliveries of a task never both get
//! here):
//! 1. `instances.get`: the instance exists (else `gone`), its `databaseVersion`, service account
//!    and labels (the `offload` override). A task whose engine is not the instance's is refused
//!    here, before anything starts: its export would be a dump of another engine under the key.
//! 2. `operations.list` of the instance: an `EXPORT` operation for the same URI that is PENDING or
//!    RUNNING is **attached to**, never started again; one that is DONE without error names the
//!    object that is already there.
//! 3. The object already there without a manifest (a crash between export and manifest, an earlier
//!    attempt's leftover): checked and **adopted** if complete, never exported over. An object in
//!    the way that is not a complete export is a permanent failure that says what to delete.
//! 4. Otherwise `instances.export` (`databases = [db]`, SQL gzip-compressed by the `.gz` suffix, or
//!    BAK for SQL Server; `offload` from the settings or the instance's label). 409
//!    `operationInProgress` (the instance runs another operation) → `Busy`, answered 503 with a
//!    jittered `Retry-After`.
//! 5. Poll `operations.get` with backoff for at most `export.wait_secs`; still running → `Running`
//!    (503 + `Retry-After`; the retry attaches in step 2). DONE with an error → classified: the
//!    object exists (→ step 3), the instance's service account cannot write the bucket (the
//!    failure names the account, the role and the bucket), the database is gone, else transient.
//! 6. DONE: the object's size, CRC32C and generation from the bucket; non-empty and starting like
//!    a dump of its engine; then the manifest (with the operation's name).
//!
//! [`Exporter::engine`] is step 1 alone: `/export` and `data-backup export` ask it for a database
//! named without an engine (or with one to check), so the task carries the instance's engine from
//! the start; a queue delivery carries the engine discovery read, checked again in step 1.
//!
//! Every call goes through the process's Cloud SQL Admin limiter (`GcpApis::sql_admin`): exports
//! and discovery share the per-caller quota.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use futures::TryStreamExt as _;
use google_cloud_gax::retry_policy::NeverRetry;
use google_cloud_sql_v1::client::{SqlInstancesService, SqlOperationsService};
use google_cloud_sql_v1::model::operation::{SqlOperationStatus, SqlOperationType};
use google_cloud_sql_v1::model::{ExportContext, InstancesExportRequest, Operation, SqlFileType};
use tokio::io::AsyncReadExt as _;
use tokio::sync::OnceCell;

use super::{Blocking, ExportError, Exporter, OperationFailure};
use crate::gcp::api::CallError;
use crate::gcp::clients::GcpApis;
use crate::gcp::credentials::credentials;
use crate::gcp::instances::engine_of;
use crate::model::{DatabaseRef, Engine, ExportTask};
use crate::settings::{ExportSettings, GcpSettings};
use crate::store::bucket::ObjectInfo;
use crate::store::layout::Key;
use crate::store::manifest::{CloudSqlExport, DumpFormat, MANIFEST_VERSION, Manifest, ToolVersions};
use crate::store::{BackupStore, StoreError};
use crate::util::backoff::spread;

/// Longest pause between two polls of an operation.
const MAX_POLL: Duration = Duration::from_secs(30);
/// Bytes of the decompressed head read to check that an object starts like a dump.
const HEAD_BYTES: usize = 64 * 1024;

/// Exports Cloud SQL databases through the Cloud SQL Admin API.
pub struct CloudSqlExporter {
    settings: ExportSettings,
    gcp: GcpSettings,
    apis: Arc<GcpApis>,
    clients: OnceCell<Clients>,
}

struct Clients {
    instances: SqlInstancesService,
    operations: SqlOperationsService,
}

/// What an attempt needs to know of the instance.
#[derive(Debug)]
struct Instance {
    database_version: String,
    service_account: String,
    offload: bool,
}

impl CloudSqlExporter {
    /// An exporter with the `[export]` and `[gcp]` settings, sharing the process's API limiters.
    #[must_use]
    pub fn new(settings: ExportSettings, gcp: GcpSettings, apis: Arc<GcpApis>) -> Self {
        Self { settings, gcp, apis, clients: OnceCell::new() }
    }

    async fn clients(&self) -> Result<&Clients, ExportError> {
        self.clients
            .get_or_try_init(|| async {
                let creds = credentials(&self.gcp).map_err(ExportError::Invalid)?;
                let endpoint =
                    self.gcp.sql_admin_endpoint.as_ref().map(|u| u.as_str().trim_end_matches('/').to_owned());
                let mut instances =
                    SqlInstancesService::builder().with_credentials(creds.clone()).with_retry_policy(NeverRetry);
                let mut operations =
                    SqlOperationsService::builder().with_credentials(creds).with_retry_policy(NeverRetry);
                if let Some(ep) = &endpoint {
                    instances = instances.with_endpoint(ep);
                    operations = operations.with_endpoint(ep);
                }
                let instances = instances
                    .build()
                    .await
                    .map_err(|e| ExportError::Invalid(format!("building the Cloud SQL Admin client: {e}")))?;
                let operations = operations
                    .build()
                    .await
                    .map_err(|e| ExportError::Invalid(format!("building the Cloud SQL Admin client: {e}")))?;
                Ok(Clients { instances, operations })
            })
            .await
    }

    /// The service account an instance's exports write the bucket as (`serviceAccountEmailAddress`).
    pub async fn service_account(&self, project: &str, instance: &str) -> Result<String, ExportError> {
        self.instance(project, instance).await.map(|i| i.service_account)
    }

    /// `instances.get`: gone, denied, or what an attempt needs.
    async fn instance(&self, project: &str, name: &str) -> Result<Instance, ExportError> {
        let c = self.clients().await?;
        let i = self
            .apis
            .sql_admin
            .call("instances.get", || c.instances.get().set_project(project).set_instance(name).send())
            .await
            .map_err(|e| api_error(e, project, name, "read", "roles/cloudsql.viewer (cloudsql.instances.get)"))?;
        let label = i.settings.as_ref().and_then(|s| s.user_labels.get(&self.settings.offload_label));
        Ok(Instance {
            database_version: i.database_version.name().unwrap_or("UNSPECIFIED").to_owned(),
            service_account: i.service_account_email_address.clone(),
            offload: label.map_or(self.settings.offload, |v| v.eq_ignore_ascii_case("true")),
        })
    }

    /// The newest `EXPORT` operation of the instance writing `uri`, if the list still has it.
    async fn find_operation(&self, task: &ExportTask, uri: &str) -> Result<Option<Operation>, ExportError> {
        let c = self.clients().await?;
        let (project, name) = (task.db.project.as_str(), task.db.instance.as_str());
        // Newest first; an attempt's own operation is among the instance's last few.
        let list = self
            .apis
            .sql_admin
            .call("operations.list", || {
                c.operations.list().set_project(project).set_instance(name).set_max_results(50_u32).send()
            })
            .await
            .map_err(|e| {
                api_error(
                    e,
                    task.db.project.as_str(),
                    task.db.instance.as_str(),
                    "list the operations of",
                    "roles/cloudsql.viewer (cloudsql.instances.get)",
                )
            })?;
        Ok(list.items.into_iter().find(|op| {
            op.operation_type == SqlOperationType::Export
                && op.export_context.as_ref().is_some_and(|ctx| ctx.uri == uri)
                && !(op.status == SqlOperationStatus::Done && op.error.as_ref().is_some_and(|e| !e.errors.is_empty()))
        }))
    }

    /// The operation a busy instance runs (the newest not DONE), for the wait to aim at its end;
    /// `None` when the list cannot be read or names none (the wait then takes the default).
    async fn blocking(&self, task: &ExportTask) -> Option<Blocking> {
        let c = self.clients().await.ok()?;
        let (project, name) = (task.db.project.as_str(), task.db.instance.as_str());
        let list = self
            .apis
            .sql_admin
            .call("operations.list", || {
                c.operations.list().set_project(project).set_instance(name).set_max_results(50_u32).send()
            })
            .await
            .map_err(|e| tracing::info!(db.path = %task.db, error = %e, "the operation in the way is unknown: {e}"))
            .ok()?;
        let op = list.items.into_iter().find(|op| op.status != SqlOperationStatus::Done)?;
        Some(Blocking {
            operation: op.name.clone(),
            kind: op.operation_type.name().unwrap_or("UNSPECIFIED").to_owned(),
            since: inserted(&op),
            database: op
                .export_context
                .as_ref()
                .filter(|_| op.operation_type == SqlOperationType::Export)
                .and_then(|ctx| ctx.databases.first().cloned()),
        })
    }

    /// `instances.export` of one database into `uri`.
    async fn start(&self, task: &ExportTask, uri: &str, instance: &Instance) -> Result<Operation, ExportError> {
        let c = self.clients().await?;
        let (project, name) = (task.db.project.as_str(), task.db.instance.as_str());
        let file_type = if task.db.engine == Engine::Sqlserver { SqlFileType::Bak } else { SqlFileType::Sql };
        let context = ExportContext::new()
            .set_kind("sql#exportContext")
            .set_uri(uri)
            .set_databases([task.db.database.as_str()])
            .set_file_type(file_type)
            .set_offload(instance.offload);
        let body = InstancesExportRequest::new().set_export_context(context);
        let op = self
            .apis
            .sql_admin
            .call("instances.export", || {
                c.instances.export().set_project(project).set_instance(name).set_body(body.clone()).send()
            })
            .await;
        let op = match op {
            Ok(op) => op,
            Err(CallError::AlreadyExists(m)) => return Err(busy(task, &m, self.blocking(task).await)),
            Err(CallError::Denied(m)) if m.contains("operationInProgress") || m.contains("another operation") => {
                return Err(busy(task, &m, self.blocking(task).await));
            }
            Err(e) => {
                return Err(api_error(
                    e,
                    task.db.project.as_str(),
                    task.db.instance.as_str(),
                    "export",
                    "roles/cloudsql.editor (cloudsql.instances.export)",
                ));
            }
        };
        tracing::info!(
            db.path = %task.db, operation = %op.name, uri, offload = instance.offload,
            "started Cloud SQL export operation {}", op.name
        );
        Ok(op)
    }

    /// Polls `op` until DONE or `wait` has passed; `started`: this attempt started it.
    async fn wait(
        &self,
        task: &ExportTask,
        mut op: Operation,
        wait: Duration,
        started_here: bool,
    ) -> Result<Operation, ExportError> {
        let c = self.clients().await?;
        let started = Instant::now();
        let deadline = started + wait;
        let mut delay = Duration::from_millis(self.settings.poll_initial_ms);
        let project = task.db.project.as_str();
        loop {
            if op.status == SqlOperationStatus::Done {
                return Ok(op);
            }
            let now = Instant::now();
            if now >= deadline {
                let retry_after = spread(Duration::from_secs(30), 1.0);
                return Err(ExportError::Running {
                    operation: op.name.clone(),
                    waited_secs: started.elapsed().as_secs(),
                    retry_after,
                    started: started_here,
                    since: inserted(&op),
                });
            }
            tokio::time::sleep(delay.min(deadline - now)).await;
            delay = (delay * 2).min(MAX_POLL);
            let name = op.name.clone();
            op = self
                .apis
                .sql_admin
                .call("operations.get", || c.operations.get().set_project(project).set_operation(&name).send())
                .await
                .map_err(|e| {
                    api_error(
                        e,
                        task.db.project.as_str(),
                        task.db.instance.as_str(),
                        "read the operations of",
                        "roles/cloudsql.viewer (cloudsql.instances.get)",
                    )
                })?;
        }
    }

    /// An operation DONE with an error: what it means for this export.
    fn operation_failed(&self, task: &ExportTask, uri: &str, instance: &Instance, op: &Operation) -> Failure {
        let text = op
            .error
            .as_ref()
            .map(|e| e.errors.iter().map(|e| format!("{}: {}", e.code, e.message)).collect::<Vec<_>>().join("; "))
            .unwrap_or_default();
        let lower = text.to_ascii_lowercase();
        if lower.contains("already exists") {
            return Failure::ObjectExists;
        }
        if lower.contains("access denied") || lower.contains("permission") || lower.contains("forbidden") {
            let bucket = uri.trim_start_matches("gs://").split('/').next().unwrap_or_default();
            let account = if instance.service_account.is_empty() {
                "the instance's service account (serviceAccountEmailAddress)".to_owned()
            } else {
                instance.service_account.clone()
            };
            return failed(
                op,
                OperationFailure::Denied,
                format!(
                    "Cloud SQL instance {}:{} cannot write {uri}: its service account {account} needs \
                 storage.objects.create on bucket {bucket}. Fix: gcloud storage buckets add-iam-policy-binding \
                 gs://{bucket} --member=serviceAccount:{account} --role=roles/storage.objectCreator \
                 (operation {}: {text})",
                    task.db.project, task.db.instance, op.name
                ),
            );
        }
        if lower.contains("does not exist") || lower.contains("not found") || lower.contains("unknown database") {
            let message = format!("database {} does not exist (operation {}: {text})", task.db, op.name);
            return failed(op, OperationFailure::Gone, message);
        }
        failed(op, OperationFailure::Failed, format!("Cloud SQL export operation {} failed: {text}", op.name))
    }

    /// The manifest of the checked object at `key`.
    #[allow(clippy::too_many_arguments)]
    async fn manifest(
        &self,
        task: &ExportTask,
        store: &BackupStore,
        key: &Key,
        format: DumpFormat,
        instance: &Instance,
        operation: String,
        started_at: chrono::DateTime<Utc>,
        whole: bool,
    ) -> Result<Manifest, ExportError> {
        let path = key.path();
        let bucket = store.bucket();
        let uri = bucket.gs_uri(&path).unwrap_or_else(|| path.clone());
        let info: ObjectInfo = bucket.head(&path).await.map_err(StoreError::from)?.ok_or_else(|| {
            ExportError::Upstream(format!("Cloud SQL reported {uri} written, but the bucket does not have it (yet)"))
        })?;
        if info.size == 0 {
            return Err(in_the_way(&uri, "it is empty"));
        }
        check_object(store, &path, task.db.engine, format, whole).await.map_err(|why| in_the_way(&uri, &why))?;
        let crc32c = bucket.crc32c(&path).await.map_err(StoreError::from)?;
        Ok(Manifest {
            version: MANIFEST_VERSION,
            source: task.db.source.to_string(),
            project: task.db.project.to_string(),
            instance: task.db.instance.to_string(),
            database: task.db.database.to_string(),
            engine: task.db.engine,
            run_date: task.run_date.to_string(),
            run_id: task.run_id.to_string(),
            class: store.layout().class(task.run_date).as_str().to_owned(),
            key: path,
            format,
            compression: format.compression().to_owned(),
            compression_level: None,
            bytes: info.size,
            raw_bytes: None,
            sha256: None,
            object_version: info.version,
            started_at,
            finished_at: Utc::now(),
            tools: ToolVersions {
                dump: "Cloud SQL Admin API v1 instances.export".to_owned(),
                server: instance.database_version.clone(),
                data_backup: env!("CARGO_PKG_VERSION").to_owned(),
            },
            encryption: None,
            row_counts: None,
            row_counts_exact: None,
            cloud_sql: Some(CloudSqlExport {
                operation,
                crc32c,
                database_version: instance.database_version.clone(),
                offload: instance.offload,
            }),
        })
    }
}

enum Failure {
    ObjectExists,
    Error(ExportError),
}

fn failed(op: &Operation, kind: OperationFailure, message: String) -> Failure {
    Failure::Error(ExportError::OperationFailed { operation: op.name.clone(), kind, message })
}

#[async_trait]
impl Exporter for CloudSqlExporter {
    async fn export(&self, task: &ExportTask, store: &BackupStore) -> Result<Manifest, ExportError> {
        self.export_within(task, store, Duration::from_secs(self.settings.wait_secs)).await
    }

    async fn export_within(
        &self,
        task: &ExportTask,
        store: &BackupStore,
        wait: Duration,
    ) -> Result<Manifest, ExportError> {
        let started_at = Utc::now();
        let format =
            if task.db.engine == Engine::Sqlserver { DumpFormat::SqlServerBak } else { DumpFormat::CloudSqlGz };
        let key = store.layout().dump(&task.db, task.run_date, format, false);
        let path = key.path();
        let Some(uri) = store.bucket().gs_uri(&path) else {
            return Err(ExportError::Invalid(
                "Cloud SQL writes its exports into Cloud Storage itself: a gcp source needs store.url = \
                 \"gs://BUCKET[/PREFIX]\""
                    .to_owned(),
            ));
        };
        let instance = self.instance(task.db.project.as_str(), task.db.instance.as_str()).await?;
        if let Some(engine) = engine_of(&instance.database_version)
            && engine != task.db.engine
        {
            return Err(ExportError::Invalid(format!(
                "the task's engine is {}, but Cloud SQL instance {}:{} is {}: nothing was started (an export \
                 asked for without an engine takes the instance's)",
                task.db.engine.as_str(),
                task.db.project,
                task.db.instance,
                instance.database_version
            )));
        }
        let (op, started_here) = match self.find_operation(task, &uri).await? {
            Some(op) => {
                tracing::info!(db.path = %task.db, operation = %op.name, uri, "attaching to the running export operation");
                (op, false)
            }
            None => {
                if store.bucket().head(&path).await.map_err(StoreError::from)?.is_some() {
                    tracing::info!(db.path = %task.db, uri, "the export object exists without a manifest: checking it");
                    let adopted = "adopted".to_owned();
                    return self.manifest(task, store, &key, format, &instance, adopted, started_at, true).await;
                }
                (self.start(task, &uri, &instance).await?, true)
            }
        };
        let op = self.wait(task, op, wait, started_here).await?;
        // The backup took as long as its operation (a follow-up's attempt only finishes it): the
        // next day's follow-ups expect this duration.
        let started_at = inserted(&op).unwrap_or(started_at);
        if op.error.as_ref().is_some_and(|e| !e.errors.is_empty()) {
            return match self.operation_failed(task, &uri, &instance, &op) {
                Failure::ObjectExists => {
                    tracing::info!(db.path = %task.db, uri, "the export found its object already written: checking it");
                    let adopted = "adopted".to_owned();
                    self.manifest(task, store, &key, format, &instance, adopted, started_at, true).await
                }
                Failure::Error(e) => Err(e),
            };
        }
        let name = op.name.clone();
        self.manifest(task, store, &key, format, &instance, name, started_at, false).await
    }

    /// The instance's engine, from its `databaseVersion` (`instances.get`).
    async fn engine(&self, db: &DatabaseRef) -> Result<Option<(Engine, String)>, ExportError> {
        let (project, name) = (db.project.as_str(), db.instance.as_str());
        let version = self.instance(project, name).await?.database_version;
        let said = format!("Cloud SQL instance {project}:{name} is {version}");
        match engine_of(&version) {
            Some(engine) => Ok(Some((engine, said))),
            None => Err(ExportError::Invalid(format!("{said}, an engine this service cannot export"))),
        }
    }
}

/// A failed Cloud SQL Admin call, said as what to fix.
fn api_error(e: CallError, project: &str, name: &str, verb: &str, role: &str) -> ExportError {
    let instance = format!("{project}:{name}");
    match e {
        CallError::NotFound(m) => ExportError::Gone(format!("Cloud SQL instance {instance} ({m})")),
        CallError::Disabled(m) => ExportError::Denied(format!(
            "the Cloud SQL Admin API is disabled in project {project}: enable sqladmin.googleapis.com ({m})"
        )),
        CallError::Denied(m) => ExportError::Denied(format!(
            "this service's account may not {verb} Cloud SQL instance {instance}: grant it {role} on project {project} ({m})"
        )),
        CallError::Failed(m) if m.starts_with("HTTP 400") => {
            ExportError::Invalid(format!("Cloud SQL refused to {verb} {instance}: {m}"))
        }
        CallError::AlreadyExists(m) | CallError::Failed(m) => {
            ExportError::Upstream(format!("Cloud SQL Admin API, {verb} {instance}: {m}"))
        }
    }
}

fn busy(task: &ExportTask, message: &str, blocking: Option<Blocking>) -> ExportError {
    let what = blocking.as_ref().map_or_else(String::new, |b| format!(" {} ({})", b.operation, b.kind));
    ExportError::Busy {
        detail: format!(
            "Cloud SQL instance {}:{} is busy with another operation{what} (operationInProgress): {message}",
            task.db.project, task.db.instance
        ),
        retry_after: spread(Duration::from_secs(30), 1.0),
        blocking,
    }
}

/// When an operation was inserted (else started), as Cloud SQL says.
fn inserted(op: &Operation) -> Option<chrono::DateTime<Utc>> {
    let ts = op.insert_time.as_ref().or(op.start_time.as_ref())?;
    chrono::DateTime::from_timestamp(ts.seconds(), u32::try_from(ts.nanos()).unwrap_or(0))
}

fn in_the_way(uri: &str, why: &str) -> ExportError {
    ExportError::Invalid(format!(
        "{uri} exists without a manifest but is not a complete export ({why}); it is never exported over: \
         delete it (gcloud storage rm {uri}) and the next attempt exports again"
    ))
}

/// What the start of a dump of `engine` looks like, and its last line when complete.
fn signature(engine: Engine) -> (&'static [&'static str], Option<&'static str>) {
    match engine {
        Engine::Postgres => (&["PostgreSQL database dump"], Some("PostgreSQL database dump complete")),
        Engine::Mysql => (&["MySQL dump", "MariaDB dump"], Some("-- Dump completed")),
        Engine::Sqlserver => (&[], None),
    }
}

/// Checks that the object starts like a dump of `engine` and, with `whole`, that it decompresses
/// to the end and ends like a complete dump (memory stays bounded: only the head and the tail are
/// kept).
async fn check_object(
    store: &BackupStore,
    key: &str,
    engine: Engine,
    format: DumpFormat,
    whole: bool,
) -> Result<(), String> {
    let stream = store
        .bucket()
        .get_stream(key)
        .await
        .map_err(|e| format!("cannot read it: {e}"))?
        .ok_or_else(|| "it disappeared while being checked".to_owned())?;
    let reader = tokio_util::io::StreamReader::new(stream.map_err(std::io::Error::other));
    if format == DumpFormat::SqlServerBak {
        let mut head = [0u8; 4];
        let mut reader = reader;
        reader.read_exact(&mut head).await.map_err(|e| format!("cannot read it: {e}"))?;
        return if &head == b"TAPE" { Ok(()) } else { Err("it does not start like a SQL Server BAK file".to_owned()) };
    }
    let mut gz = async_compression::tokio::bufread::GzipDecoder::new(reader);
    gz.multiple_members(true);
    let mut head = Vec::with_capacity(HEAD_BYTES);
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match gz.read(&mut buf).await {
            Ok(n) => n,
            Err(_) if head.len() >= HEAD_BYTES && !whole => break,
            Err(e) => return Err(format!("it is not a complete gzip stream ({e})")),
        };
        if n == 0 {
            break;
        }
        if head.len() < HEAD_BYTES {
            let take = n.min(HEAD_BYTES - head.len());
            head.extend_from_slice(&buf[..take]);
        }
        if !whole && head.len() >= HEAD_BYTES {
            break;
        }
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > 8192 {
            tail.drain(..tail.len() - 4096);
        }
    }
    let (starts, ends) = signature(engine);
    let head_text = String::from_utf8_lossy(&head);
    if !starts.iter().any(|s| head_text.contains(s)) {
        return Err(format!("it does not start like a {} dump", engine.as_str()));
    }
    if whole
        && let Some(end) = ends
        && !String::from_utf8_lossy(&tail).contains(end)
    {
        return Err(format!("it ends without `{end}`: the dump is truncated"));
    }
    Ok(())
}
