//! `data-backup doctor` and `GET /doctor`: what would make tonight's Cloud SQL exports fail, found
//! before tonight, one line per problem with its fix.
//!
//! Checks:
//! - every `gcp` source is discovered; instances discovery skips (replicas, stopped, suspended) are
//!   listed as notes, since they will not be backed up;
//! - every instance that will be exported: can its service account (`serviceAccountEmailAddress`)
//!   write the bucket? The bucket's IAM policy must bind it (directly) to a role with
//!   `storage.objects.create`. A grant through a group or at project level is invisible here, so
//!   the line says so;
//! - the store is a `gs://` bucket (Cloud SQL writes nowhere else) and has lifecycle rules
//!   (retention relies on them, or on `prune`);
//! - with the `cloud_tasks` queue: the queue exists and retries as the alerts assume (for at least
//!   an hour, more attempts than `export.report_after_retries`);
//! - with `export.job`: which self-hosted databases take the job path (their previous backup took
//!   at least `export.job_after_secs`), one note each.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::discovery::Discovery as _;
use crate::discovery::gcp::GcpDiscovery;
use crate::export::cloudsql::CloudSqlExporter;
use crate::gcp::clients::GcpApis;
use crate::settings::{QueueKind, Settings};
use crate::store::bucket::gcs::GcsBucket;

/// Roles that carry `storage.objects.create`.
pub const WRITER_ROLES: [&str; 6] = [
    "roles/storage.objectCreator",
    "roles/storage.objectAdmin",
    "roles/storage.objectUser",
    "roles/storage.admin",
    "roles/storage.legacyBucketWriter",
    "roles/storage.legacyBucketOwner",
];

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Finding {
    /// `problem` (tonight's exports will fail or go unnoticed) or `note` (by policy, worth knowing).
    pub level: String,
    /// `bucket_access`, `instance`, `discovery`, `store`, `lifecycle`, `queue`.
    pub check: String,
    /// What it is about (`project/instance`, the bucket, the queue).
    pub scope: String,
    /// What is wrong.
    pub problem: String,
    /// What to do.
    pub fix: String,
}

/// The whole answer.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DoctorReport {
    /// Instances whose access was checked.
    pub instances_checked: usize,
    /// Problems first, then notes.
    pub findings: Vec<Finding>,
}

impl DoctorReport {
    /// True when nothing needs fixing (notes allowed).
    #[must_use]
    pub fn healthy(&self) -> bool {
        self.findings.iter().all(|f| f.level != "problem")
    }
}

fn finding(
    level: &str,
    check: &str,
    scope: impl Into<String>,
    problem: impl Into<String>,
    fix: impl Into<String>,
) -> Finding {
    Finding { level: level.into(), check: check.into(), scope: scope.into(), problem: problem.into(), fix: fix.into() }
}

/// Runs every check the settings make relevant.
pub async fn run(settings: &Settings) -> DoctorReport {
    let mut findings = Vec::new();
    let mut instances_checked = 0;
    let bucket = gcs_bucket(settings, &mut findings).await;
    if let Some((bucket, name)) = &bucket {
        check_lifecycle(bucket, name, &mut findings).await;
    }
    if !settings.gcp_sources.is_empty() {
        let apis = Arc::new(GcpApis::new(&settings.gcp));
        let writers = match &bucket {
            Some((bucket, name)) => match bucket.iam_members(&WRITER_ROLES).await {
                Ok(members) => Some(members),
                Err(e) => {
                    findings.push(finding(
                        "problem",
                        "bucket_access",
                        format!("gs://{name}"),
                        format!("cannot read the bucket's IAM policy: {e}"),
                        "grant this service's account storage.buckets.getIamPolicy on the bucket (roles/storage.legacyBucketReader), or check access by hand",
                    ));
                    None
                }
            },
            None => None,
        };
        let exporter = CloudSqlExporter::new(settings.export.clone(), settings.gcp.clone(), apis.clone());
        for source in &settings.gcp_sources {
            let discovery = GcpDiscovery::new(source.clone(), settings.gcp.clone(), apis.clone());
            let report = match discovery.discover_report().await {
                Ok(r) => r,
                Err(e) => {
                    findings.push(finding(
                        "problem",
                        "discovery",
                        source.name.as_str(),
                        e.to_string(),
                        "see the error; `data-backup schedule --dry-run` shows the same",
                    ));
                    continue;
                }
            };
            for (scope, message) in &report.errors {
                findings.push(finding(
                    "problem",
                    "discovery",
                    scope.clone(),
                    message.clone(),
                    "grant this service's account roles/cloudsql.viewer there, or enable the Cloud SQL Admin API",
                ));
            }
            for skipped in &report.skipped {
                findings.push(finding(
                    "note",
                    "instance",
                    skipped.scope.clone(),
                    format!("not exportable, not backed up: {}", skipped.reason),
                    "nothing, if intended (include_replicas / include_stopped change it)",
                ));
            }
            let instances: BTreeSet<(String, String)> =
                report.databases.iter().map(|d| (d.project.to_string(), d.instance.to_string())).collect();
            for (project, instance) in instances {
                instances_checked += 1;
                let scope = format!("{project}/{instance}");
                let account = match exporter.service_account(&project, &instance).await {
                    Ok(a) => a,
                    Err(e) => {
                        findings.push(finding("problem", "instance", scope, e.to_string(), "see the error"));
                        continue;
                    }
                };
                let (Some(writers), Some((_, name))) = (&writers, &bucket) else { continue };
                if !writers.contains(&format!("serviceAccount:{account}")) {
                    findings.push(finding(
                        "problem",
                        "bucket_access",
                        scope,
                        format!("its service account {account} has no role with storage.objects.create on gs://{name} (not bound directly; a group or project-level grant would not show here)"),
                        format!("gcloud storage buckets add-iam-policy-binding gs://{name} --member=serviceAccount:{account} --role=roles/storage.objectCreator"),
                    ));
                }
            }
        }
    }
    if settings.queue.kind == QueueKind::CloudTasks {
        check_queue(settings, &mut findings).await;
    }
    if let Some(job) = &settings.export.job {
        list_job_path(settings, job, &mut findings).await;
    }
    findings
        .sort_by(|a, b| (a.level != "problem", &a.check, &a.scope).cmp(&(b.level != "problem", &b.check, &b.scope)));
    DoctorReport { instances_checked, findings }
}

async fn gcs_bucket(settings: &Settings, findings: &mut Vec<Finding>) -> Option<(GcsBucket, String)> {
    let url = url::Url::parse(&settings.store.url).ok()?;
    if url.scheme() != "gs" {
        if !settings.gcp_sources.is_empty() {
            findings.push(finding(
                "problem",
                "store",
                settings.store.url.clone(),
                "Cloud SQL exports need a gs:// store",
                "set store.url = \"gs://BUCKET[/PREFIX]\"",
            ));
        }
        return None;
    }
    let name = url.host_str()?.to_owned();
    let endpoint = settings.gcp.storage_endpoint.as_ref().map(|u| u.as_str().trim_end_matches('/').to_owned());
    let anonymous = settings.gcp.credentials == crate::settings::GcpCredentials::Anonymous;
    match GcsBucket::new(&name, url.path().trim_matches('/'), endpoint.as_deref(), anonymous).await {
        Ok(b) => {
            let iam = settings.gcp.storage_iam_endpoint.as_ref().map(|u| u.as_str().trim_end_matches('/').to_owned());
            Some((b.with_iam_endpoint(iam), name))
        }
        Err(e) => {
            findings.push(finding(
                "problem",
                "store",
                format!("gs://{name}"),
                e.to_string(),
                "check store.url and the credentials",
            ));
            None
        }
    }
}

async fn check_lifecycle(bucket: &GcsBucket, name: &str, findings: &mut Vec<Finding>) {
    match bucket.lifecycle_rules().await {
        Ok(0) => findings.push(finding(
            "problem",
            "lifecycle",
            format!("gs://{name}"),
            "the bucket has no lifecycle rules: backups are kept for ever unless `prune` runs",
            "data-backup lifecycle --format gcs > rules.json && gcloud storage buckets update gs://BUCKET --lifecycle-file=rules.json (or set retention.prune_after_schedule = true)",
        )),
        Ok(_) => {}
        Err(e) => findings.push(finding("problem", "lifecycle", format!("gs://{name}"), format!("cannot read the bucket: {e}"), "grant this service's account storage.buckets.get")),
    }
}

async fn check_queue(settings: &Settings, findings: &mut Vec<Finding>) {
    let name = settings.queue.queue.clone().unwrap_or_default();
    let queue = crate::queue::cloud_tasks::CloudTasksQueue::new(&settings.queue, &settings.gcp);
    match queue.retry_config().await {
        Err(e) => {
            findings.push(finding("problem", "queue", name, e, "create the queue (terraform/ does) or fix queue.queue"))
        }
        Ok(retry) => {
            let threshold = settings.export.report_after_retries;
            if retry.max_attempts >= 0 && retry.max_attempts <= i64::from(threshold) {
                findings.push(finding(
                    "problem",
                    "queue",
                    name.clone(),
                    format!("the queue gives up after {} attempts, before export.report_after_retries = {threshold}: a transient failure would never be reported", retry.max_attempts),
                    format!("gcloud tasks queues update {} --max-attempts=-1 --max-retry-duration=3600s", name.rsplit('/').next().unwrap_or_default()),
                ));
            }
            if retry.max_retry_duration_secs.is_some_and(|d| d > 0 && d < 3600) {
                findings.push(finding(
                    "problem",
                    "queue",
                    name.clone(),
                    format!(
                        "the queue stops retrying after {} s; the alerts assume an hour",
                        retry.max_retry_duration_secs.unwrap_or_default()
                    ),
                    format!(
                        "gcloud tasks queues update {} --max-retry-duration=3600s",
                        name.rsplit('/').next().unwrap_or_default()
                    ),
                ));
            }
        }
    }
}

/// With `export.job`: one note per self-hosted database whose dump runs as a job execution.
async fn list_job_path(settings: &Settings, job: &str, findings: &mut Vec<Finding>) {
    let store = match crate::store::BackupStore::open(settings).await {
        Ok(store) => store,
        Err(e) => {
            findings.push(finding("problem", "store", settings.store.url.clone(), e.to_string(), "check store.url"));
            return;
        }
    };
    let after = std::time::Duration::from_secs(settings.export.job_after_secs);
    for source in crate::export::source::Source::from_settings(settings).iter().filter(|s| !s.any_instance) {
        let databases = match source.discovery.discover().await {
            Ok(d) => d,
            Err(e) => {
                let fix = "see the error; `data-backup schedule --dry-run` shows the same";
                findings.push(finding("problem", "discovery", source.name.as_str(), e.to_string(), fix));
                continue;
            }
        };
        for db in databases {
            let Ok(Some(previous)) = store.latest(&db).await else { continue };
            let Some(took) = crate::export::follow_up::took(previous.started_at, previous.finished_at) else {
                continue;
            };
            if took >= after {
                findings.push(finding(
                    "note",
                    "job",
                    db.path(),
                    format!(
                        "its previous backup took {} min: its dump runs as an execution of the Cloud Run job {job}",
                        took.as_secs() / 60
                    ),
                    "nothing, if intended (export.job_after_secs sets the threshold)",
                ));
            }
        }
    }
}

/// The one line of a finding for a terminal.
#[must_use]
pub fn line(f: &Finding) -> String {
    format!("{:<7} {:<13} {}: {} — fix: {}", f.level.to_uppercase(), f.check, f.scope, f.problem, f.fix)
}
