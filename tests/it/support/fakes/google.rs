//! What the Google control-plane fakes share: the fake organisation they all describe, Google's
//! error bodies, paging (`pageSize=0` or absent means the fake's default page size; the page token
//! is an offset), 429 bursts with `Retry-After`, and call counters.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wiremock::{Request, ResponseTemplate};

/// A folder of the fake organisation.
#[derive(Clone, Debug)]
pub struct FakeFolder {
    /// `folders/N`.
    pub name: String,
    /// `folders/M` or `organizations/1`.
    pub parent: String,
}

/// A project of the fake organisation.
#[derive(Clone, Debug)]
pub struct FakeProject {
    /// Project id.
    pub id: String,
    /// `folders/N`.
    pub parent: String,
    /// `ACTIVE`, `DELETE_REQUESTED`, `STATE_UNSPECIFIED`.
    pub state: String,
    /// What Cloud SQL Admin answers for it.
    pub sql: SqlAccess,
}

/// How Cloud SQL Admin treats a project.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlAccess {
    /// Lists normally.
    Enabled,
    /// 403 `SERVICE_DISABLED`.
    Disabled,
    /// 403 `PERMISSION_DENIED`.
    Denied,
    /// Lists, with a `REGION_UNREACHABLE` warning.
    RegionUnreachable,
}

/// A Cloud SQL instance of the fake organisation.
#[derive(Clone, Debug)]
pub struct FakeInstance {
    /// Project id.
    pub project: String,
    /// Instance name.
    pub name: String,
    /// `RUNNABLE`, `SUSPENDED`, …
    pub state: String,
    /// `CLOUD_SQL_INSTANCE`, `READ_REPLICA_INSTANCE`, `ON_PREMISES_INSTANCE`.
    pub instance_type: String,
    /// `POSTGRES_16`, …
    pub version: String,
    /// `ALWAYS` or `NEVER` (stopped).
    pub activation_policy: String,
    /// Its databases, system ones included.
    pub databases: Vec<String>,
    /// Whether the asset inventory carries its attributes (else discovery reads it with instances.get).
    pub asset_attributes: bool,
    /// `settings.userLabels`.
    pub labels: BTreeMap<String, String>,
}

impl FakeInstance {
    /// A running primary.
    pub fn runnable(project: &str, name: &str, version: &str, databases: &[&str]) -> Self {
        Self {
            project: project.into(),
            name: name.into(),
            state: "RUNNABLE".into(),
            instance_type: "CLOUD_SQL_INSTANCE".into(),
            version: version.into(),
            activation_policy: "ALWAYS".into(),
            databases: databases.iter().map(|d| (*d).to_owned()).collect(),
            asset_attributes: true,
            labels: BTreeMap::new(),
        }
    }

    /// The instance's own service account (`serviceAccountEmailAddress`), the one its exports
    /// write the bucket as.
    pub fn service_account(&self) -> String {
        format!("p{}-{}@gcp-sa-cloud-sql.iam.gserviceaccount.com", self.project.len() * 7919, self.name)
    }

    /// The Cloud SQL Admin `DatabaseInstance` JSON.
    pub fn json(&self) -> Value {
        let mut v = json!({
            "kind": "sql#instance",
            "name": self.name,
            "project": self.project,
            "state": self.state,
            "instanceType": self.instance_type,
            "databaseVersion": self.version,
            "region": "europe-west1",
            "settings": {"activationPolicy": self.activation_policy, "tier": "db-custom-1-3840", "userLabels": self.labels},
            "serviceAccountEmailAddress": self.service_account(),
        });
        if self.instance_type == "READ_REPLICA_INSTANCE" {
            v["masterInstanceName"] = json!(format!("{}:primary", self.project));
        }
        v
    }
}

/// The fake organisation every fake describes.
#[derive(Clone, Debug, Default)]
pub struct Org {
    /// Folders.
    pub folders: Vec<FakeFolder>,
    /// Projects.
    pub projects: Vec<FakeProject>,
    /// Instances.
    pub instances: Vec<FakeInstance>,
    /// Folders whose children the caller may not list (403 `PERMISSION_DENIED`).
    pub denied_folders: BTreeSet<String>,
}

impl Org {
    /// Adds a folder under `parent`.
    pub fn folder(&mut self, name: &str, parent: &str) -> &mut Self {
        self.folders.push(FakeFolder { name: name.into(), parent: parent.into() });
        self
    }

    /// Adds a project under `parent`.
    pub fn project(&mut self, id: &str, parent: &str, state: &str, sql: SqlAccess) -> &mut Self {
        self.projects.push(FakeProject { id: id.into(), parent: parent.into(), state: state.into(), sql });
        self
    }

    /// Adds an instance.
    pub fn instance(&mut self, i: FakeInstance) -> &mut Self {
        self.instances.push(i);
        self
    }

    /// Every folder under `scope` (itself included), recursively.
    pub fn subtree(&self, scope: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::from([scope.to_owned()]);
        loop {
            let before = out.len();
            for f in &self.folders {
                if out.contains(&f.parent) {
                    out.insert(f.name.clone());
                }
            }
            if out.len() == before {
                return out;
            }
        }
    }

    /// The project with this id.
    pub fn project_by_id(&self, id: &str) -> Option<&FakeProject> {
        self.projects.iter().find(|p| p.id == id)
    }
}

/// Per-API counters and the 429 burst still to answer.
#[derive(Debug, Default)]
pub struct ApiState {
    /// Requests received.
    pub calls: AtomicU64,
    /// 429 answers sent.
    pub throttled: AtomicU64,
    /// The next this many requests answer 429 with `Retry-After`.
    pub burst: AtomicU64,
    /// Requests received, by path (without the query).
    pub by_path: Mutex<BTreeMap<String, u64>>,
}

impl ApiState {
    /// Counts `request`; answers the 429 of a burst when one is pending.
    pub fn enter(&self, request: &Request) -> Option<ResponseTemplate> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        *self.by_path.lock().unwrap().entry(request.url.path().to_owned()).or_default() += 1;
        let pending = self.burst.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if pending {
            self.throttled.fetch_add(1, Ordering::SeqCst);
            return Some(
                error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Queries'", "RATE_LIMIT_EXCEEDED")
                    .insert_header("retry-after", "1"),
            );
        }
        None
    }

    /// Requests received so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Makes the next `n` requests answer 429.
    pub fn throttle_next(&self, n: u64) {
        self.burst.store(n, Ordering::SeqCst);
    }
}

/// Shared state of all the fakes.
#[derive(Debug)]
pub struct Shared {
    /// The organisation.
    pub org: Mutex<Org>,
    /// Items per page when the request leaves `pageSize` empty or 0.
    pub page_size: usize,
}

/// A Google error body: `{"error":{"code","status","message","details":[ErrorInfo]}}`.
pub fn error(code: u16, status: &str, message: &str, reason: &str) -> ResponseTemplate {
    ResponseTemplate::new(code).set_body_json(json!({
        "error": {
            "code": code,
            "status": status,
            "message": message,
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com"}],
        }
    }))
}

/// A query parameter of `request` (empty when absent).
pub fn query(request: &Request, name: &str) -> String {
    request.url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).unwrap_or_default()
}

/// One page of `items` for the request's page size (`size_param`) and token: (page, next token).
pub fn page<T: Clone>(request: &Request, size_param: &str, default: usize, items: &[T]) -> (Vec<T>, String) {
    let size = query(request, size_param).parse::<usize>().ok().filter(|n| *n > 0).unwrap_or(default).max(1);
    let start = query(request, "pageToken").parse::<usize>().unwrap_or(0).min(items.len());
    let end = (start + size).min(items.len());
    let next = if end < items.len() { end.to_string() } else { String::new() };
    (items[start..end].to_vec(), next)
}

/// Wraps shared state for a fake.
pub fn shared(org: Org, page_size: usize) -> Arc<Shared> {
    Arc::new(Shared { org: Mutex::new(org), page_size })
}
