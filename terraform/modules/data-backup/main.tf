# data-backup on Google Cloud: Cloud Scheduler calls POST /schedule every night; the service discovers
# every Cloud SQL database under the folders and projects and creates one Cloud Tasks task per
# database; Cloud Tasks delivers each to POST /export on the same service, which runs the Cloud SQL
# export into the bucket and writes the manifest. The service is stateless: all state is in the bucket.
#
#   main.tf        APIs, the service's settings (environment), shared locals
#   iam.tf         the two service accounts and every grant
#   run.tf         the Cloud Run service (and the metrics collector sidecar)
#   tasks.tf       the Cloud Tasks queue
#   jobs.tf        the Cloud Run job of long self-hosted dumps (export_job)
#   scheduler.tf   the nightly job (and the hourly status refresh)
#   bucket.tf      the bucket, its lifecycle rules (rendered by `data-backup lifecycle`)
#   pubsub.tf      the reports topic
#   monitoring.tf  log-based metrics, notification channels, alert policies

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  apis = toset(concat(
    [
      "cloudasset.googleapis.com",
      "cloudresourcemanager.googleapis.com",
      "cloudscheduler.googleapis.com",
      "cloudtasks.googleapis.com",
      "iam.googleapis.com",
      "logging.googleapis.com",
      "monitoring.googleapis.com",
      "pubsub.googleapis.com",
      "run.googleapis.com",
      "sqladmin.googleapis.com",
      "storage.googleapis.com",
    ],
    var.metrics_collector ? ["cloudtrace.googleapis.com"] : [],
    length(local.secret_env) > 0 ? ["secretmanager.googleapis.com"] : [],
  ))

  # Cloud Run's deterministic URL: known before the service exists, so the service can be told its
  # own audience and /export URL without a dependency cycle.
  service_url = trimsuffix(coalesce(var.service_url, "https://${var.name}-${data.google_project.this.number}.${var.region}.run.app"), "/")

  folder_names = [for f in var.folders : startswith(f, "folders/") ? f : "folders/${f}"]
  queue_id     = "projects/${var.project_id}/locations/${var.region}/queues/${google_cloud_tasks_queue.exports.name}"
  topic_id     = "projects/${var.project_id}/topics/${google_pubsub_topic.reports.name}"
  # The export job's name is known before it exists (jobs.tf), so the service and the job share one
  # environment.
  export_job_id = "projects/${var.project_id}/locations/${var.region}/jobs/${var.name}-export"
  invoker       = google_service_account.invoker.email

  # No drill of POST /verify/due starts later than this, so that the last one ends within the
  # Scheduler job's attempt deadline (min(request_timeout_secs, 1800)): ten minutes are left to it.
  drill_budget_secs = max(60, min(var.request_timeout_secs, 1800) - 600)

  # List- and table-valued settings are passed as the settings loader's inline values: arrays
  # `[…]` and tables `{key=value,…}`. jsonencode gives a string literal (and a list of them) in the
  # same syntax and escapes.
  gcp_source = join(",", compact([
    "name=${jsonencode(var.source_name)}",
    "kind=\"gcp\"",
    length(local.folder_names) > 0 ? "folders=${jsonencode(local.folder_names)}" : "",
    length(var.projects) > 0 ? "projects=${jsonencode(var.projects)}" : "",
    "strategy=${jsonencode(var.discovery_strategy)}",
    "include_replicas=${var.include_replicas}",
    "include_stopped=${var.include_stopped}",
    "keep_postgres_database=${var.keep_postgres_database}",
  ]))

  # `[[copies]]` (off-site copies, ADR 0023), one inline table each. Their credentials never go
  # here: each copy's `credentials` are environment variables read from Secret Manager.
  copy_tables = [for c in var.copies : join(",", compact([
    "name=${jsonencode(c.name)}",
    "url=${jsonencode(c.url)}",
    length(c.options) > 0 ? "options={${join(",", [for k, v in c.options : "${k}=${jsonencode(v)}"])}}" : "",
    length(c.age_recipients) > 0 ? "age_recipients=${jsonencode(c.age_recipients)}" : "",
    c.classes != null ? "classes=${jsonencode(c.classes)}" : "",
    c.lock != "off" ? "lock=${jsonencode(c.lock)}" : "",
    length(c.keep_days) > 0 ? "retention={${join(",", [for k, v in c.keep_days : "${k}={keep_days=${v}}"])}}" : "",
  ]))]
  copies_setting = "[${join(",", [for t in local.copy_tables : "{${t}}"])}]"

  # Settings and credentials read from Secret Manager: secret_env and every copy's credentials.
  secret_env = merge(var.secret_env, [for c in var.copies : c.credentials]...)

  # The service's settings (README "Configuration"): every key is DATA_BACKUP_<SECTION>__<KEY>.
  env_base = {
    DATA_BACKUP_BIND                   = "0.0.0.0:8080"
    DATA_BACKUP_LOG_FORMAT             = "json"
    DATA_BACKUP_STORE__URL             = "gs://${google_storage_bucket.backups.name}"
    DATA_BACKUP_SOURCES                = "[{${local.gcp_source}}]"
    DATA_BACKUP_QUEUE__KIND            = "cloud_tasks"
    DATA_BACKUP_QUEUE__QUEUE           = local.queue_id
    DATA_BACKUP_QUEUE__TARGET_URL      = "${local.service_url}/export"
    DATA_BACKUP_QUEUE__SERVICE_ACCOUNT = local.invoker
    DATA_BACKUP_QUEUE__AUDIENCE        = local.service_url
    # Inside Cloud Run's 10 s between SIGTERM and SIGKILL.
    DATA_BACKUP_QUEUE__SHUTDOWN_GRACE_SECS = "8"
    # Cloud Scheduler runs the night: the embedded timer is off. A blank (not empty) value, so that
    # the variable is surely set; the loader trims it to "" (timer off).
    DATA_BACKUP_SCHEDULE__DAILY_AT              = " "
    DATA_BACKUP_AUTH__OIDC_AUDIENCE             = local.service_url
    DATA_BACKUP_AUTH__ROUTE_EMAILS__SCHEDULE    = jsonencode([local.invoker])
    DATA_BACKUP_AUTH__ROUTE_EMAILS__EXPORT      = jsonencode([local.invoker])
    DATA_BACKUP_AUTH__ROUTE_EMAILS__VERIFY      = jsonencode([local.invoker])
    DATA_BACKUP_VERIFY__NIGHTLY_COUNT           = tostring(var.drill_count)
    DATA_BACKUP_VERIFY__NIGHTLY_SECS            = tostring(local.drill_budget_secs)
    DATA_BACKUP_EXPORT__WAIT_SECS               = tostring(var.export_wait_secs)
    DATA_BACKUP_EXPORT__OFFLOAD                 = tostring(var.export_offload)
    DATA_BACKUP_EXPORT__FOLLOW_UP               = tostring(var.export_follow_up)
    DATA_BACKUP_EXPORT__FOLLOW_UP_MIN_SECS      = tostring(var.export_follow_up_min_secs)
    DATA_BACKUP_EXPORT__FOLLOW_UP_MAX_SECS      = tostring(var.export_follow_up_max_secs)
    DATA_BACKUP_EXPORT__FOLLOW_UP_DEFAULT_SECS  = tostring(var.export_follow_up_default_secs)
    DATA_BACKUP_EXPORT__FOLLOW_UP_MAX_CHECKS    = tostring(var.export_follow_up_max_checks)
    DATA_BACKUP_EXPORT__JOB_AFTER_SECS          = tostring(var.export_job_after_secs)
    DATA_BACKUP_EXPORT__REPORT_AFTER_RETRIES    = tostring(var.report_after_retries)
    DATA_BACKUP_NOTIFY__PUBSUB_TOPIC            = local.topic_id
    DATA_BACKUP_NOTIFY__PUBSUB_SUCCESS          = tostring(var.pubsub_success)
    DATA_BACKUP_HTTP__LONG_REQUEST_TIMEOUT_SECS = tostring(var.request_timeout_secs - 10)
    DATA_BACKUP_HTTP__MAX_CONCURRENT_REQUESTS   = tostring(var.concurrency)
    DATA_BACKUP_RETENTION__LOCK                 = var.object_retention
  }
  env_optional = {
    DATA_BACKUP_EXCLUDE__PATTERNS          = length(var.exclude_patterns) > 0 ? jsonencode(var.exclude_patterns) : null
    DATA_BACKUP_AUTH__OIDC_ALLOWED_EMAILS  = length(var.operator_emails) > 0 ? jsonencode(var.operator_emails) : null
    DATA_BACKUP_AUTH__ROUTE_EMAILS__STATUS = var.metrics_collector ? jsonencode([local.invoker]) : null
    DATA_BACKUP_EXPORT__JOB                = var.export_job ? local.export_job_id : null
    DATA_BACKUP_COPIES                     = length(var.copies) > 0 ? local.copies_setting : null
    # Metrics and traces go to the collector sidecar (OTLP over HTTP).
    OTEL_EXPORTER_OTLP_ENDPOINT = var.metrics_collector ? "http://localhost:4318" : null
  }
  # The [retention] settings the bucket's lifecycle rules were rendered with (bucket.tf, BEGIN line):
  # the service's prune and status use the same ones. Empty: the defaults. A check keeps the two equal.
  env_retention = {}

  env = merge(
    { for k, v in local.env_optional : k => v if v != null },
    local.env_retention,
    local.env_base,
    var.extra_env,
  )

  # IAM member strings of the operators.
  operator_members = [
    for e in var.operator_emails : endswith(e, ".gserviceaccount.com") ? "serviceAccount:${e}" : "user:${e}"
  ]
}

resource "google_project_service" "apis" {
  for_each = var.enable_apis ? local.apis : toset([])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
