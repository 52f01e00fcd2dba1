//! Cloud SQL Admin v1 fake: `instances.list` (paged by `maxResults`, with `warnings`),
//! `instances.get` and `databases.list`. A project's [`SqlAccess`] decides whether it answers 403
//! `SERVICE_DISABLED`, 403 `PERMISSION_DENIED`, or lists with a `REGION_UNREACHABLE` warning.
//!
//! Exports, as the real API behaves (REST reference: `instances.export`, `operations.get`,
//! `operations.list`): `instances.export` answers an `Operation` that is PENDING, then RUNNING,
//! then DONE (with or without `error`) after [`Exports::duration`]; a second operation on a busy
//! instance answers 409 `operationInProgress`; `operations.list` is newest first and paged. The
//! export really happens: the database of a PostgreSQL instance is dumped with `pg_dump` (plain
//! SQL), of a MySQL one with `mariadb-dump`, from the local servers, gzip-compressed (`fileType`
//! `SQL`); a SQL Server instance exports only `fileType` `BAK` (there is no SQL Server here: the
//! file is a Microsoft Tape Format header, `TAPE`, and the database's name), and a `BAK` of another
//! engine is refused with 400, as the real API does. The file is written into the Cloud Storage
//! emulator with `ifGenerationMatch=0`, so an object already there fails
//! the operation ("the request succeeds, but the operation fails"). An instance in
//! [`Exports::bucket_denied`] fails its exports the way a service account without
//! `storage.objects.create` does.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::google::{ApiState, Shared, SqlAccess, error, page};

/// The running fake.
pub struct SqlAdminFake {
    /// The server.
    pub server: MockServer,
    /// Counters and 429 bursts.
    pub api: Arc<ApiState>,
    /// Export operations and how they behave.
    pub exports: Arc<Exports>,
}

/// One operation of the fake.
#[derive(Clone, Debug)]
pub struct FakeOperation {
    /// Its name (an id, as the real API's).
    pub name: String,
    /// Project.
    pub project: String,
    /// Instance.
    pub instance: String,
    /// `EXPORT`, `BACKUP_VOLUME`, …
    pub kind: String,
    /// `PENDING`, `RUNNING`, `DONE`.
    pub status: String,
    /// `exportContext.uri`.
    pub uri: String,
    /// `exportContext.databases`.
    pub databases: Vec<String>,
    /// `exportContext.offload`.
    pub offload: bool,
    /// `exportContext.fileType`: `SQL` or `BAK`.
    pub file_type: String,
    /// `error.errors[0]` (code, message) once DONE with an error.
    pub error: Option<(String, String)>,
    /// `insertTime`.
    pub inserted: DateTime<Utc>,
}

impl FakeOperation {
    fn json(&self) -> Value {
        let mut v = json!({
            "kind": "sql#operation",
            "name": self.name,
            "status": self.status,
            "operationType": self.kind,
            "targetId": self.instance,
            "targetProject": self.project,
            "user": "data-backup@ops.iam.gserviceaccount.com",
            "insertTime": self.inserted.to_rfc3339(),
            "selfLink": format!("https://sqladmin.googleapis.com/v1/projects/{}/operations/{}", self.project, self.name),
        });
        if self.kind == "EXPORT" {
            v["exportContext"] = json!({
                "kind": "sql#exportContext", "uri": self.uri, "databases": self.databases,
                "fileType": self.file_type, "offload": self.offload,
            });
        }
        if let Some((code, message)) = &self.error {
            v["error"] = json!({"kind": "sql#operationErrors", "errors": [{"kind": "sql#operationError", "code": code, "message": message}]});
        }
        v
    }
}

/// Export operations and how they behave.
#[derive(Debug)]
pub struct Exports {
    /// Every operation, oldest first.
    pub ops: Mutex<Vec<FakeOperation>>,
    /// How long an operation takes from start to DONE (PENDING for its first fifth).
    pub duration: Mutex<Duration>,
    /// Instances (`project/instance`) whose service account may not write the bucket.
    pub bucket_denied: Mutex<BTreeSet<String>>,
    /// The Cloud Storage endpoint exports are written to.
    pub gcs_endpoint: String,
    /// `instances.export` calls answered 409.
    pub busy_answers: AtomicU64,
    next: AtomicU64,
}

impl Exports {
    /// `EXPORT` operations started for `uri`.
    pub fn started_for(&self, uri: &str) -> usize {
        self.ops.lock().unwrap().iter().filter(|o| o.kind == "EXPORT" && o.uri == uri).count()
    }

    /// `EXPORT` operations started in all.
    pub fn started(&self) -> usize {
        self.ops.lock().unwrap().iter().filter(|o| o.kind == "EXPORT").count()
    }

    /// Makes the next operations take `d`.
    pub fn set_duration(&self, d: Duration) {
        *self.duration.lock().unwrap() = d;
    }

    /// Starts another kind of operation (a backup) on the instance, lasting `d`: the instance is busy.
    pub fn occupy(self: &Arc<Self>, project: &str, instance: &str, d: Duration) {
        let name = self.new_operation(project, instance, "BACKUP_VOLUME", "", &[], false);
        let me = self.clone();
        std::thread::spawn(move || {
            std::thread::sleep(d);
            me.set(&name, "DONE", None);
        });
    }

    fn new_operation(
        &self,
        project: &str,
        instance: &str,
        kind: &str,
        uri: &str,
        databases: &[String],
        offload: bool,
    ) -> String {
        let mut ops = self.ops.lock().unwrap();
        self.push(&mut ops, project, instance, kind, uri, databases, offload)
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &self,
        ops: &mut Vec<FakeOperation>,
        project: &str,
        instance: &str,
        kind: &str,
        uri: &str,
        databases: &[String],
        offload: bool,
    ) -> String {
        let name =
            format!("{:08x}-{:04x}-4000-8000-{:012x}", 0x5eed_0000 + self.next.fetch_add(1, Ordering::SeqCst), 1, 7);
        ops.push(FakeOperation {
            name: name.clone(),
            project: project.into(),
            instance: instance.into(),
            kind: kind.into(),
            status: "PENDING".into(),
            uri: uri.into(),
            databases: databases.to_vec(),
            offload,
            file_type: "SQL".into(),
            error: None,
            inserted: Utc::now(),
        });
        name
    }

    fn set(&self, name: &str, status: &str, error: Option<(String, String)>) {
        if let Some(op) = self.ops.lock().unwrap().iter_mut().find(|o| o.name == name) {
            op.status = status.into();
            op.error = error;
        }
    }

    /// Starts an export unless the instance runs an operation (one check-and-insert under the lock).
    fn start_unless_busy(
        &self,
        project: &str,
        instance: &str,
        uri: &str,
        databases: &[String],
        offload: bool,
        file_type: &str,
    ) -> Option<String> {
        let mut ops = self.ops.lock().unwrap();
        let busy = ops.iter().any(|o| o.project == project && o.instance == instance && o.status != "DONE");
        (!busy).then(|| {
            let name = self.push(&mut ops, project, instance, "EXPORT", uri, databases, offload);
            ops.last_mut().expect("just pushed").file_type = file_type.into();
            name
        })
    }

    fn get(&self, project: &str, name: &str) -> Option<FakeOperation> {
        self.ops.lock().unwrap().iter().find(|o| o.project == project && o.name == name).cloned()
    }
}

/// Dumps `database` of a local server the way Cloud SQL's SQL export does (plain SQL), gzipped; of a
/// SQL Server instance, a BAK: the Microsoft Tape Format's `TAPE` descriptor block, then the name.
fn dump(version: &str, database: &str) -> Result<Vec<u8>, String> {
    if version.starts_with("SQLSERVER") {
        let mut bak = b"TAPE".to_vec();
        bak.extend_from_slice(&[0; 48]);
        bak.extend_from_slice(format!("Microsoft SQL Server backup of {database}").as_bytes());
        return Ok(bak);
    }
    let output = if version.starts_with("POSTGRES") {
        std::process::Command::new("pg_dump")
            .args(["--no-owner", "--no-acl", "-h", "127.0.0.1", "-U", "postgres", "-d", database])
            .output()
    } else {
        std::process::Command::new("mariadb-dump")
            .args(["-h", "127.0.0.1", "-P", "3306", "-u", "root", "--single-transaction", "--databases", database])
            .output()
    }
    .map_err(|e| format!("cannot run the dump tool: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(if stderr.contains("does not exist") || stderr.contains("Unknown database") {
            format!("database \"{database}\" does not exist")
        } else {
            format!("the export failed: {stderr}")
        });
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&output.stdout).map_err(|e| e.to_string())?;
    gz.finish().map_err(|e| e.to_string())
}

/// Writes `body` to `uri` in the emulator unless an object is there: Err(message) as Cloud SQL says it.
/// A multipart upload, because fake-gcs-server enforces `ifGenerationMatch=0` on those (not on
/// `uploadType=media`).
fn upload(gcs: &str, uri: &str, body: &[u8], content_type: &str) -> Result<(), String> {
    let (bucket, name) = uri.trim_start_matches("gs://").split_once('/').ok_or("bad uri")?;
    let url = format!("{gcs}/upload/storage/v1/b/{bucket}/o?uploadType=multipart&ifGenerationMatch=0");
    let boundary = "fake-cloud-sql-export";
    let mut payload = format!(
        "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{}\r\n--{boundary}\r\nContent-Type: {content_type}\r\n\r\n",
        json!({"name": name})
    )
    .into_bytes();
    payload.extend_from_slice(body);
    payload.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = rt
        .block_on(async {
            reqwest::Client::new()
                .post(url)
                .header("content-type", format!("multipart/related; boundary={boundary}"))
                .body(payload)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
        .map_err(|e| format!("cannot reach Cloud Storage: {e}"))?;
    match status {
        200 => Ok(()),
        412 => Err(format!("The destination file {uri} already exists. Choose a different file name.")),
        other => Err(format!("failed to upload data to GCS URL {uri}: HTTP {other}")),
    }
}

struct Sql(Arc<Shared>, Arc<ApiState>, Arc<Exports>);

fn refused(access: SqlAccess, project: &str) -> Option<ResponseTemplate> {
    match access {
        SqlAccess::Disabled => Some(error(
            403,
            "PERMISSION_DENIED",
            &format!("Cloud SQL Admin API has not been used in project {project} before or it is disabled."),
            "SERVICE_DISABLED",
        )),
        SqlAccess::Denied => Some(error(
            403,
            "PERMISSION_DENIED",
            "The client is not authorized to make this request.",
            "IAM_PERMISSION_DENIED",
        )),
        _ => None,
    }
}

impl Respond for Sql {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(r) = self.1.enter(request) {
            return r;
        }
        let parts: Vec<&str> = request.url.path().trim_start_matches("/v1/").split('/').collect();
        let org = self.0.org.lock().unwrap();
        let project = parts.get(1).copied().unwrap_or_default();
        let Some(p) = org.project_by_id(project) else {
            return error(404, "NOT_FOUND", &format!("project {project} not found"), "RESOURCE_NOT_FOUND");
        };
        if let Some(r) = refused(p.sql, project) {
            return r;
        }
        let instances: Vec<_> = org.instances.iter().filter(|i| i.project == project).collect();
        match parts.as_slice() {
            ["projects", _, "operations"] => {
                let instance = super::google::query(request, "instance");
                let mut ops: Vec<Value> = self
                    .2
                    .ops
                    .lock()
                    .unwrap()
                    .iter()
                    .rev()
                    .filter(|o| o.project == project && (instance.is_empty() || o.instance == instance))
                    .map(FakeOperation::json)
                    .collect();
                ops.truncate(500);
                let (items, next) = page(request, "maxResults", self.0.page_size.max(10), &ops);
                ResponseTemplate::new(200).set_body_json(json!({"kind": "sql#operationsList", "items": items, "nextPageToken": next}))
            }
            ["projects", _, "operations", name] => match self.2.get(project, name) {
                Some(op) => ResponseTemplate::new(200).set_body_json(op.json()),
                None => error(404, "NOT_FOUND", "The Cloud SQL operation does not exist.", "OPERATION_NOT_FOUND"),
            },
            ["projects", _, "instances", name, "export"] if request.method.as_str() == "POST" => {
                let Some(instance) = instances.iter().find(|i| i.name == *name).map(|i| (*i).clone()) else {
                    return error(404, "NOT_FOUND", "The Cloud SQL instance does not exist.", "INSTANCE_NOT_FOUND");
                };
                drop(org);
                self.export(request, &instance)
            }
            ["projects", _, "instances"] => {
                let items: Vec<Value> = instances.iter().map(|i| i.json()).collect();
                let (items, next) = page(request, "maxResults", self.0.page_size, &items);
                let mut body = json!({"kind": "sql#instancesList", "items": items, "nextPageToken": next});
                if p.sql == SqlAccess::RegionUnreachable {
                    body["warnings"] = json!([{"code": "REGION_UNREACHABLE", "message": "One or more regions are unreachable; the result may be incomplete.", "region": "asia-east2"}]);
                }
                ResponseTemplate::new(200).set_body_json(body)
            }
            ["projects", _, "instances", name] => match instances.iter().find(|i| i.name == *name) {
                Some(i) => ResponseTemplate::new(200).set_body_json(i.json()),
                None => error(404, "NOT_FOUND", "The Cloud SQL instance does not exist.", "INSTANCE_NOT_FOUND"),
            },
            ["projects", _, "instances", name, "databases"] => match instances.iter().find(|i| i.name == *name) {
                Some(i) => ResponseTemplate::new(200).set_body_json(json!({
                    "kind": "sql#databasesList",
                    "items": i.databases.iter().map(|d| json!({"kind": "sql#database", "name": d, "instance": i.name, "project": i.project, "charset": "UTF8"})).collect::<Vec<_>>(),
                })),
                None => error(404, "NOT_FOUND", "The Cloud SQL instance does not exist.", "INSTANCE_NOT_FOUND"),
            },
            _ => error(404, "NOT_FOUND", "no such method in the fake", "NOT_FOUND"),
        }
    }
}

impl Sql {
    fn export(&self, request: &Request, instance: &super::google::FakeInstance) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let ctx = &body["exportContext"];
        let uri = ctx["uri"].as_str().unwrap_or_default().to_owned();
        let databases: Vec<String> =
            ctx["databases"].as_array().into_iter().flatten().filter_map(|d| d.as_str().map(str::to_owned)).collect();
        if !uri.starts_with("gs://") || databases.len() != 1 {
            return error(
                400,
                "INVALID_ARGUMENT",
                "Invalid request: exportContext.uri and one database are required.",
                "invalid",
            );
        }
        // Proto3 JSON: an enum is its name or its number (the Rust SDK sends the number).
        let file_type = match &ctx["fileType"] {
            Value::String(name) => name.clone(),
            Value::Number(n) => match n.as_u64() {
                Some(1) => "SQL".to_owned(),
                Some(2) => "CSV".to_owned(),
                Some(4) => "BAK".to_owned(),
                other => format!("{other:?}"),
            },
            _ => "SQL".to_owned(),
        };
        let sqlserver = instance.version.starts_with("SQLSERVER");
        if file_type != "SQL" && file_type != "BAK" || (file_type == "BAK") != sqlserver {
            return error(
                400,
                "INVALID_ARGUMENT",
                &format!("Invalid request: fileType {file_type} is not supported for a {} instance.", instance.version),
                "invalid",
            );
        }
        let exports = &self.2;
        // Check and start under one lock, as the real API serialises operations per instance.
        let offload = ctx["offload"].as_bool().unwrap_or(false);
        let Some(name) =
            exports.start_unless_busy(&instance.project, &instance.name, &uri, &databases, offload, &file_type)
        else {
            exports.busy_answers.fetch_add(1, Ordering::SeqCst);
            return error(
                409,
                "ABORTED",
                "Operation failed because another operation was already in progress.",
                "operationInProgress",
            );
        };
        let op = exports.get(&instance.project, &name).expect("just made");
        let (me, instance, duration) = (exports.clone(), instance.clone(), *exports.duration.lock().unwrap());
        std::thread::spawn(move || {
            std::thread::sleep(duration / 5);
            me.set(&name, "RUNNING", None);
            let denied = me.bucket_denied.lock().unwrap().contains(&format!("{}/{}", instance.project, instance.name));
            let database = &databases[0];
            let outcome = if denied {
                Err(format!(
                    "failed to upload data to GCS URL {uri}: Access denied for account {} (permission issue?)",
                    instance.service_account()
                ))
            } else if !instance.databases.contains(database) {
                Err(format!("database \"{database}\" does not exist"))
            } else {
                let content_type = if sqlserver { "application/octet-stream" } else { "application/gzip" };
                dump(&instance.version, database).and_then(|body| upload(&me.gcs_endpoint, &uri, &body, content_type))
            };
            std::thread::sleep(duration - duration / 5);
            me.set(&name, "DONE", outcome.err().map(|m| ("ERROR_RDBMS".to_owned(), m)));
        });
        ResponseTemplate::new(200).set_body_json(op.json())
    }
}

impl SqlAdminFake {
    /// Starts the fake over `shared`; exports write into the Cloud Storage emulator at `gcs_endpoint`.
    pub async fn start(shared: Arc<Shared>) -> Self {
        Self::start_with_storage(shared, "http://127.0.0.2:80").await
    }

    /// Starts the fake over `shared`, its exports writing into the Cloud Storage at `gcs_endpoint`.
    pub async fn start_with_storage(shared: Arc<Shared>, gcs_endpoint: &str) -> Self {
        let server = MockServer::start().await;
        let api = Arc::new(ApiState::default());
        let exports = Arc::new(Exports {
            ops: Mutex::new(Vec::new()),
            duration: Mutex::new(Duration::from_millis(500)),
            bucket_denied: Mutex::new(BTreeSet::new()),
            gcs_endpoint: gcs_endpoint.trim_end_matches('/').to_owned(),
            busy_answers: AtomicU64::new(0),
            next: AtomicU64::new(0),
        });
        let sql = Sql(shared, api.clone(), exports.clone());
        Mock::given(method("GET"))
            .and(path_regex(r"^/v1/projects/[^/]+/(instances(/[^/]+(/databases)?)?|operations(/[^/]+)?)$"))
            .respond_with(Sql(sql.0.clone(), sql.1.clone(), sql.2.clone()))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path_regex(r"^/v1/projects/[^/]+/instances/[^/]+/export$"))
            .respond_with(sql)
            .mount(&server)
            .await;
        Self { server, api, exports }
    }
}
