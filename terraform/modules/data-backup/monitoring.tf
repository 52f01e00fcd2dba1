# Alerts (docs/deploy.md has the runbooks; each policy carries its own in `documentation`):
#
#   1. Scheduler job failure        the nightly POST /schedule failed (after Cloud Scheduler's retries)
#   2. Export errors                an export failure was reported in the last day (a permanent failure,
#                                   a transient one still failing after report_after_retries, or a chain
#                                   of follow-ups past its bound); an export waiting for its operation or
#                                   its instance is logged at INFO and never counts
#   3. Exports not running          Cloud Tasks made no export attempt for exports_not_running_hours
#   4. Database without a fresh     the status metrics count a stale, failing or missing database
#      backup                       (metrics_collector only)
#
# The service logs one ERROR entry per failed export attempt with `error.class`, and one more with
# `report = true` when the failure is reported. Its JSON log lines carry the level as `severity`
# (Cloud Logging's field) or, in older builds, `level`, and the fields either flat (`"error.class"`)
# or nested (`error.class`): the filters accept both shapes.

locals {
  alert_channels = concat(var.notification_channels, [for c in google_monitoring_notification_channel.email : c.id])

  run_logs = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=\"${var.name}\"",
    "(severity>=ERROR OR jsonPayload.level=\"ERROR\")",
    "(jsonPayload.\"error.class\":* OR jsonPayload.error.class:*)",
  ])
  reported = "(jsonPayload.report=true OR jsonPayload.report=\"true\")"

  console = "https://console.cloud.google.com"
}

resource "google_monitoring_notification_channel" "email" {
  for_each = var.alerts_enabled ? toset(var.notification_emails) : toset([])

  project      = var.project_id
  display_name = "data-backup (${var.name}): ${each.value}"
  type         = "email"
  labels = {
    email_address = each.value
  }
}

# --- Log-based metrics ------------------------------------------------------------------------------

resource "google_logging_metric" "export_failed_attempts" {
  count = var.alerts_enabled ? 1 : 0

  project     = var.project_id
  name        = "${var.name}/export_failed_attempts"
  description = "data-backup: export attempts that failed (every attempt, before retries), by error class."
  filter      = "${local.run_logs} AND NOT ${local.reported}"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "error_class"
      value_type  = "STRING"
      description = "The service's error class (gone, permission_denied, instance_busy, still_running, dump_failed, …)."
    }
  }
  label_extractors = {
    error_class = "EXTRACT(jsonPayload.\"error.class\")"
  }
}

resource "google_logging_metric" "export_failures_reported" {
  count = var.alerts_enabled ? 1 : 0

  project     = var.project_id
  name        = "${var.name}/export_failures_reported"
  description = "data-backup: export failures reported (once per database and day), by error class."
  filter      = "${local.run_logs} AND ${local.reported}"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "error_class"
      value_type  = "STRING"
      description = "The service's error class."
    }
  }
  label_extractors = {
    error_class = "EXTRACT(jsonPayload.\"error.class\")"
  }
}

resource "google_logging_metric" "scheduler_failures" {
  count = var.alerts_enabled ? 1 : 0

  project     = var.project_id
  name        = "${var.name}/scheduler_failures"
  description = "data-backup: failed attempts of the Cloud Scheduler jobs that POST /schedule (nightly and extra_schedules)."
  filter = join(" AND ", [
    "resource.type=\"cloud_scheduler_job\"",
    "resource.labels.job_id=~\"^${google_cloud_scheduler_job.schedule.name}(-[a-z0-9-]+)?$\"",
    "resource.labels.location=\"${var.region}\"",
    "severity>=ERROR",
  ])

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

# --- Alert policies ---------------------------------------------------------------------------------

resource "google_monitoring_alert_policy" "scheduler_failure" {
  count = var.alerts_enabled ? 1 : 0

  project               = var.project_id
  display_name          = "data-backup (${var.name}): Cloud Scheduler job failure"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.alert_channels
  user_labels           = var.labels

  conditions {
    display_name = "POST /schedule failed"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.scheduler_failures[0].name}\" AND resource.type=\"cloud_scheduler_job\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "data-backup: the nightly Cloud Scheduler job failed"
    content   = <<-EOT
      The job `${google_cloud_scheduler_job.schedule.name}` that starts the nightly run (POST /schedule) failed.
      No database is backed up tonight until it succeeds.

      1. Read the job's log: [Cloud Scheduler](${local.console}/cloudscheduler?project=${var.project_id}) →
         `${google_cloud_scheduler_job.schedule.name}` → logs. 401/403: the invoker's `run.invoker` grant or the
         service's allowlist (DATA_BACKUP_AUTH__ROUTE_EMAILS__SCHEDULE); 503: some tasks could not be created
         (the answer's `not_enqueued`); 5xx or timeout: the service itself.
      2. Read the service's log around the job's time:
         `resource.type="cloud_run_revision" resource.labels.service_name="${var.name}" jsonPayload.message:"schedule"`.
      3. Run it again (idempotent: tasks already queued are not created twice):
         `gcloud scheduler jobs run ${google_cloud_scheduler_job.schedule.name} --location ${var.region} --project ${var.project_id}`.
    EOT
  }
}

resource "google_monitoring_alert_policy" "export_errors" {
  count = var.alerts_enabled ? 1 : 0

  project               = var.project_id
  display_name          = "data-backup (${var.name}): export errors in the last day"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.alert_channels
  user_labels           = var.labels

  conditions {
    display_name = "An export failure was reported"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.export_failures_reported[0].name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.error_class"]
      }
      trigger {
        count = 1
      }
    }
  }

  # Stays open for a day: "one or more export errors in the last day".
  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "data-backup: a database export failed"
    content   = <<-EOT
      An export failed permanently, or kept failing after ${var.report_after_retries} retries (it may still succeed:
      Cloud Tasks retries for up to ${var.task_max_retry_duration_secs} s). The error class is in the incident's labels.

      1. Which database and why: the report is in the service's log,
         `resource.type="cloud_run_revision" resource.labels.service_name="${var.name}" jsonPayload.report=true`
         (and on the Pub/Sub topic `${google_pubsub_topic.reports.name}`); its message says what to fix
         (a missing bucket grant names the instance's service account and the role).
      2. Did it succeed later? `DATA_BACKUP_STORE__URL=gs://${var.bucket_name} data-backup status --state failing`, or the
         status page; or look for the day's
         `<database>.manifest.json` under `gs://${var.bucket_name}/<class>/<project>/<instance>/<database>/<date>/`.
      3. `permission_denied`: add the instance's service account to `cloudsql_service_accounts` and apply.
         `gone`: the database was dropped; nothing to do. `follow_ups_exhausted`: the export was checked
         ${var.export_follow_up_max_checks} times and was still running or waiting for its instance; raise
         `export_follow_up_max_checks` or `export_follow_up_max_secs` if it recurs. Waiting (`started`,
         `running`, `waiting` answers) is never an error here.
      4. Retry one database by hand: `data-backup call export --database PROJECT/INSTANCE/DATABASE --url ${local.service_url}`.
    EOT
  }
}

resource "google_monitoring_alert_policy" "exports_not_running" {
  count = var.alerts_enabled ? 1 : 0

  project               = var.project_id
  display_name          = "data-backup (${var.name}): exports not running"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.alert_channels
  user_labels           = var.labels

  conditions {
    display_name = "No export attempt in ${var.exports_not_running_hours} h"
    condition_prometheus_query_language {
      query               = "absent_over_time(cloudtasks_googleapis_com:queue_task_attempt_count{monitored_resource=\"cloud_tasks_queue\",project_id=\"${var.project_id}\",queue_id=\"${google_cloud_tasks_queue.exports.name}\"}[${var.exports_not_running_hours}h])"
      duration            = "0s"
      evaluation_interval = "300s"
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "data-backup: no export ran in ${var.exports_not_running_hours} hours"
    content   = <<-EOT
      Cloud Tasks delivered no export from the queue `${google_cloud_tasks_queue.exports.name}` for ${var.exports_not_running_hours} hours:
      the nightly run created no task (nothing discovered, everything excluded, discovery denied), or the
      queue is paused. It also fires after a first deploy until the first run.

      1. Did the job run? [Cloud Scheduler](${local.console}/cloudscheduler?project=${var.project_id}) → `${google_cloud_scheduler_job.schedule.name}`.
      2. What did the run find? The service's log for the `/schedule` summary (`discovered`, `excluded`,
         `enqueued`, `errors`, `complete`), or `data-backup call schedule --dry-run --url ${local.service_url}`.
         `discovered: 0` with errors: the runtime service account lacks its role on a folder or project,
         or an API is disabled there.
      3. Is the queue running? `gcloud tasks queues describe ${google_cloud_tasks_queue.exports.name} --location ${var.region} --project ${var.project_id}`
         (`state: RUNNING`); resume it with `gcloud tasks queues resume`.
      4. Start a run by hand: `gcloud scheduler jobs run ${google_cloud_scheduler_job.schedule.name} --location ${var.region} --project ${var.project_id}`.
    EOT
  }
}

resource "google_monitoring_alert_policy" "not_fresh" {
  count = var.alerts_enabled && var.metrics_collector ? 1 : 0

  project               = var.project_id
  display_name          = "data-backup (${var.name}): database without a fresh backup"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.alert_channels
  user_labels           = var.labels

  conditions {
    display_name = "A database is stale, failing or missing"
    condition_prometheus_query_language {
      # The status is refreshed hourly (status_refresh_schedule) and pushed each minute while an
      # instance lives: take the worst value of the last 90 minutes.
      query               = "sum(max_over_time(data_backup_databases{state=~\"stale|failing|missing\"}[90m])) > 0"
      duration            = "1800s"
      evaluation_interval = "300s"
    }
  }

  conditions {
    display_name = "Status metrics not arriving"
    condition_prometheus_query_language {
      query               = "absent_over_time(data_backup_databases[3h])"
      duration            = "0s"
      evaluation_interval = "300s"
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "data-backup: a database has no fresh backup"
    content   = <<-EOT
      At least one database is `stale` (newest backup older than the SLO, 26 h by default), `failing` (a
      failure reported for the newest run and no backup) or `missing` (expected by the newest run, never
      backed up); or the status metrics stopped arriving.

      1. Which ones: `DATA_BACKUP_STORE__URL=gs://${var.bucket_name} data-backup status --state stale` (also `failing`,
         `missing`), or the status page
         through `gcloud run services proxy ${var.name} --region ${var.region} --project ${var.project_id}` → http://localhost:8080/.
      2. The `reason` column says why, from the database's chain of follow-ups: the reported failure
         (`follow_ups_exhausted`: its export was still running, or its instance still busy with the
         operation it names, after ${var.export_follow_up_max_checks} checks; else the error and its fix). A
         database still waiting has its next check in the service's log:
         `jsonPayload."wait.next_check_at":*` with `jsonPayload."db.name"="DATABASE"`.
      3. `failing`: see the "export errors" runbook. `missing`: a new database; it is backed up tonight, or
         now with `data-backup call export --database PROJECT/INSTANCE/DATABASE --url ${local.service_url}`.
         `stale`: last night's run did not reach it: see the "exports not running" and "Cloud Scheduler
         job failure" runbooks.
      4. Metrics not arriving: the `collector` container's log in the service, and the
         `${var.name}-status` scheduler job (GET /status every hour).
    EOT
  }
}
