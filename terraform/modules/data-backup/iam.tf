# Two service accounts, each with only what it needs.
#
# runtime: the identity of the Cloud Run service. It discovers (folders, projects, Cloud SQL
#   instances and databases, Cloud Asset search) and starts Cloud SQL exports, through one custom role
#   on each configured folder and project; enqueues tasks on its queue (acting as the invoker for their
#   OIDC tokens); reads and writes its bucket only; publishes to its topic; writes metrics and traces.
# invoker: the identity of Cloud Scheduler's and Cloud Tasks' calls (OIDC tokens): run.invoker on
#   this service, and nothing else. The service's allowlist admits it on /schedule, /export (and
#   /status for the refresh job) only.

resource "google_service_account" "runtime" {
  project      = var.project_id
  account_id   = "${var.name}-run"
  display_name = "data-backup service (${var.name})"
  description  = "Runs the data-backup Cloud Run service: discovers Cloud SQL databases, starts their exports, writes the backup bucket."
}

resource "google_service_account" "invoker" {
  project      = var.project_id
  account_id   = "${var.name}-invoker"
  display_name = "data-backup invoker (${var.name})"
  description  = "Identity of Cloud Scheduler's and Cloud Tasks' calls to the data-backup service."
}

# --- Discovery and export: one custom role ----------------------------------------------------------

locals {
  # Cloud SQL: list instances and databases, read an instance (and its operations), start an export.
  # Cloud Asset: the asset_inventory strategy. Resource Manager: walk folders and projects.
  project_permissions = [
    "cloudasset.assets.searchAllResources",
    "cloudsql.databases.list",
    "cloudsql.instances.export",
    "cloudsql.instances.get",
    "cloudsql.instances.list",
    "resourcemanager.projects.get",
  ]
  organization_permissions = concat(local.project_permissions, [
    "resourcemanager.folders.get",
    "resourcemanager.folders.list",
    "resourcemanager.projects.list",
  ])

  discovery_role = var.organization_id == null ? null : google_organization_iam_custom_role.discovery[0].name
}

resource "google_organization_iam_custom_role" "discovery" {
  count = var.organization_id == null ? 0 : 1

  org_id      = var.organization_id
  role_id     = "${var.role_id_prefix}Discovery"
  title       = "data-backup: discover and export Cloud SQL databases"
  description = "Lists folders, projects, Cloud SQL instances and databases, searches Cloud Asset Inventory, starts Cloud SQL exports."
  permissions = local.organization_permissions
}

# Without an organization: a project-level role in each listed project.
resource "google_project_iam_custom_role" "discovery" {
  for_each = var.organization_id == null ? toset(var.projects) : toset([])

  project     = each.value
  role_id     = "${var.role_id_prefix}Discovery"
  title       = "data-backup: discover and export Cloud SQL databases"
  description = "Lists Cloud SQL instances and databases, searches Cloud Asset Inventory, starts Cloud SQL exports."
  permissions = local.project_permissions
}

resource "google_folder_iam_member" "discovery" {
  for_each = toset(local.folder_names)

  folder = each.value
  role   = local.discovery_role
  member = google_service_account.runtime.member

  lifecycle {
    precondition {
      condition     = var.organization_id != null
      error_message = "folders need organization_id: the service's custom role on a folder is an organization-level role."
    }
  }
}

resource "google_project_iam_member" "discovery" {
  for_each = toset(var.projects)

  project = each.value
  role    = var.organization_id == null ? google_project_iam_custom_role.discovery[each.value].name : local.discovery_role
  member  = google_service_account.runtime.member
}

# --- Tasks: enqueue as the invoker ------------------------------------------------------------------

resource "google_cloud_tasks_queue_iam_member" "runtime_enqueuer" {
  project  = var.project_id
  location = var.region
  name     = google_cloud_tasks_queue.exports.name
  role     = "roles/cloudtasks.enqueuer"
  member   = google_service_account.runtime.member
}

# `data-backup doctor` reads the queue's retry configuration.
resource "google_cloud_tasks_queue_iam_member" "runtime_viewer" {
  project  = var.project_id
  location = var.region
  name     = google_cloud_tasks_queue.exports.name
  role     = "roles/cloudtasks.viewer"
  member   = google_service_account.runtime.member
}

# Creating a task with an OIDC token for the invoker needs iam.serviceAccounts.actAs on it.
resource "google_service_account_iam_member" "runtime_acts_as_invoker" {
  service_account_id = google_service_account.invoker.name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.runtime.member
}

# --- The bucket -------------------------------------------------------------------------------------

# Dumps, manifests, leases, markers, ledgers; prune deletes.
resource "google_storage_bucket_iam_member" "runtime_objects" {
  bucket = google_storage_bucket.backups.name
  role   = "roles/storage.objectAdmin"
  member = google_service_account.runtime.member
}

# `data-backup doctor` checks the bucket's IAM policy (instance grants) and lifecycle rules.
resource "google_project_iam_custom_role" "bucket_inspector" {
  project     = var.project_id
  role_id     = "${var.role_id_prefix}BucketInspector"
  title       = "data-backup: inspect the backup bucket"
  description = "Reads a bucket's metadata and IAM policy."
  permissions = ["storage.buckets.get", "storage.buckets.getIamPolicy"]
}

resource "google_storage_bucket_iam_member" "runtime_inspector" {
  bucket = google_storage_bucket.backups.name
  role   = google_project_iam_custom_role.bucket_inspector.name
  member = google_service_account.runtime.member
}

# Cloud SQL writes each export as the instance's own service account.
resource "google_storage_bucket_iam_member" "cloudsql_instances" {
  for_each = { for pair in setproduct(var.cloudsql_service_accounts, var.cloudsql_bucket_roles) : "${pair[0]} ${pair[1]}" => pair }

  bucket = google_storage_bucket.backups.name
  role   = each.value[1]
  member = "serviceAccount:${each.value[0]}"
}

# --- Reports, telemetry, secrets --------------------------------------------------------------------

resource "google_pubsub_topic_iam_member" "runtime_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.reports.name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.runtime.member
}

resource "google_project_iam_member" "runtime_telemetry" {
  for_each = var.metrics_collector ? toset(["roles/monitoring.metricWriter", "roles/cloudtrace.agent"]) : toset([])

  project = var.project_id
  role    = each.value
  member  = google_service_account.runtime.member
}

resource "google_secret_manager_secret_iam_member" "runtime_secrets" {
  for_each = local.secret_env

  project   = var.project_id
  secret_id = each.value.secret
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.runtime.member
}

# --- Who may call the service -----------------------------------------------------------------------

resource "google_cloud_run_v2_service_iam_member" "invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.service.name
  role     = "roles/run.invoker"
  member   = google_service_account.invoker.member
}

resource "google_cloud_run_v2_service_iam_member" "operators" {
  for_each = toset(local.operator_members)

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.service.name
  role     = "roles/run.invoker"
  member   = each.value
}

# --- Customer-managed encryption --------------------------------------------------------------------

data "google_storage_project_service_account" "gcs" {
  count   = var.kms_key_name == null ? 0 : 1
  project = var.project_id
}

resource "google_kms_crypto_key_iam_member" "gcs" {
  count = var.kms_key_name == null ? 0 : 1

  crypto_key_id = var.kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:${data.google_storage_project_service_account.gcs[0].email_address}"
}

resource "google_kms_crypto_key_iam_member" "pubsub" {
  count = var.kms_key_name == null ? 0 : 1

  crypto_key_id = var.kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}
