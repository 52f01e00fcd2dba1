# The nightly run: POST /schedule with an OIDC token of the invoker. Cloud Scheduler sends
# X-CloudScheduler-ScheduleTime, from which the service takes the run date (UTC), so a retry after
# midnight files its backups under the same day; /schedule is idempotent (tasks already queued are
# counted, not created again) and answers 503 when some tasks could not be created, so retries are safe.
# With schedule_scope, the body narrows the run (POST /schedule's run scope); extra_schedules adds
# one job per further scope (e.g. development weekly). The invoker may only narrow (it is on
# DATA_BACKUP_AUTH__ROUTE_EMAILS__SCHEDULE, not on the every-route allowlist).

resource "google_cloud_scheduler_job" "schedule" {
  project          = var.project_id
  region           = var.region
  name             = "${var.name}-schedule"
  description      = "data-backup: discover every Cloud SQL database and enqueue one export each (POST /schedule)"
  schedule         = var.schedule
  time_zone        = var.schedule_time_zone
  attempt_deadline = "${min(var.request_timeout_secs, 1800)}s"

  retry_config {
    retry_count          = 3
    min_backoff_duration = "120s"
    max_backoff_duration = "900s"
    max_doublings        = 2
  }

  http_target {
    http_method = "POST"
    uri         = "${local.service_url}/schedule"
    headers     = var.schedule_scope == null ? null : { "Content-Type" = "application/json" }
    body        = var.schedule_scope == null ? null : base64encode(jsonencode(var.schedule_scope))

    oidc_token {
      service_account_email = local.invoker
      audience              = local.service_url
    }
  }

  depends_on = [google_project_service.apis, google_cloud_run_v2_service_iam_member.invoker]
}

resource "google_cloud_scheduler_job" "scoped" {
  for_each = var.extra_schedules

  project          = var.project_id
  region           = var.region
  name             = "${var.name}-schedule-${each.key}"
  description      = "data-backup: the ${each.key} run (POST /schedule with its scope)"
  schedule         = each.value.schedule
  time_zone        = var.schedule_time_zone
  attempt_deadline = "${min(var.request_timeout_secs, 1800)}s"

  retry_config {
    retry_count          = 3
    min_backoff_duration = "120s"
    max_backoff_duration = "900s"
    max_doublings        = 2
  }

  http_target {
    http_method = "POST"
    uri         = "${local.service_url}/schedule"
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode(jsonencode(each.value.scope))

    oidc_token {
      service_account_email = local.invoker
      audience              = local.service_url
    }
  }

  depends_on = [google_project_service.apis, google_cloud_run_v2_service_iam_member.invoker]
}

# The restore drills: POST /verify/due after the night's exports. Each call drills the drill_count
# least recently verified databases (never-verified first), each on a throwaway server the service
# starts inside its own container (ADR 0014); no drill starts after min(request_timeout_secs, 1800)
# - 600 s. A retry drills the next least recently verified databases, which is just as good.
resource "google_cloud_scheduler_job" "drills" {
  count = var.drill_schedule == "" ? 0 : 1

  project          = var.project_id
  region           = var.region
  name             = "${var.name}-drills"
  description      = "data-backup: prove the least recently verified backups by restoring them (POST /verify/due)"
  schedule         = var.drill_schedule
  time_zone        = var.schedule_time_zone
  attempt_deadline = "${min(var.request_timeout_secs, 1800)}s"

  retry_config {
    retry_count          = 1
    min_backoff_duration = "300s"
  }

  http_target {
    http_method = "POST"
    uri         = "${local.service_url}/verify/due"

    oidc_token {
      service_account_email = local.invoker
      audience              = local.service_url
    }
  }

  depends_on = [google_project_service.apis, google_cloud_run_v2_service_iam_member.invoker]
}

# Hourly GET /status: recomputes freshness and coverage, so the collector exports current
# data_backup_databases and data_backup_last_success_timestamp_seconds between nights.
resource "google_cloud_scheduler_job" "status_refresh" {
  count = var.metrics_collector ? 1 : 0

  project          = var.project_id
  region           = var.region
  name             = "${var.name}-status"
  description      = "data-backup: refresh the freshness metrics (GET /status)"
  schedule         = var.status_refresh_schedule
  time_zone        = "Etc/UTC"
  attempt_deadline = "300s"

  retry_config {
    retry_count = 1
  }

  http_target {
    http_method = "GET"
    uri         = "${local.service_url}/status?state=stale"

    oidc_token {
      service_account_email = local.invoker
      audience              = local.service_url
    }
  }

  depends_on = [google_project_service.apis, google_cloud_run_v2_service_iam_member.invoker]
}
