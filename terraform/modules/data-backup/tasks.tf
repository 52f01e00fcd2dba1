# One HTTP task per database per night, created by POST /schedule (task ids are hashes of the
# database and run date, so a repeated /schedule adds nothing) and delivered to POST /export with an
# OIDC token of the invoker. A Cloud SQL export still running (or waiting for its busy instance) is
# answered 200 and checked again by a follow-up task `<task>-c<n>` scheduled at its expected end
# (export_follow_up, ADR 21): no 503 to throttle the queue. Only a 2xx answer completes a task: 503
# (transient errors, a follow-up that could not be created) and 409 (lease held) are retried with
# backoff until task_max_retry_duration_secs.

resource "google_cloud_tasks_queue" "exports" {
  project  = var.project_id
  location = var.region
  name     = "${var.name}-exports"

  rate_limits {
    # Cloud SQL runs one operation per instance and allows about 180 Admin API calls a minute per
    # caller: a few exports at a time (the service also spaces tasks of one instance apart).
    max_concurrent_dispatches = var.task_max_concurrent_dispatches
    max_dispatches_per_second = var.task_max_dispatches_per_second
  }

  retry_config {
    max_attempts       = -1 # bounded by max_retry_duration
    max_retry_duration = "${var.task_max_retry_duration_secs}s"
    min_backoff        = "${var.task_min_backoff_secs}s"
    max_backoff        = "${var.task_max_backoff_secs}s"
    max_doublings      = 3
  }

  # Every attempt is logged: the runbooks start from these entries.
  stackdriver_logging_config {
    sampling_ratio = 1.0
  }

  depends_on = [google_project_service.apis]
}
