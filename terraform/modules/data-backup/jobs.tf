# The Cloud Run job of long self-hosted dumps (export_job, ADR 21). A Cloud Tasks request lasts at
# most 30 minutes: a self-hosted database whose previous backup took at least export_job_after_secs
# is dumped by an execution of this job instead, which /export starts (jobs.run, its args overridden
# to `export --database … --date … --source … --ignore-scope`) and its follow-up tasks attach to. Same
# image, settings and identity as the service; one task, never retried by Cloud Run (a failed
# execution is reported once and the next night tries again).

resource "google_cloud_run_v2_job" "export" {
  count = var.export_job ? 1 : 0

  project             = var.project_id
  name                = "${var.name}-export"
  location            = var.region
  deletion_protection = var.deletion_protection
  labels              = var.labels

  template {
    labels     = var.labels
    task_count = 1

    template {
      service_account       = google_service_account.runtime.email
      timeout               = "${var.export_job_timeout_secs}s"
      max_retries           = 0
      execution_environment = "EXECUTION_ENVIRONMENT_GEN2"

      containers {
        name  = "data-backup"
        image = var.image
        args  = ["export"]

        resources {
          limits = {
            cpu    = var.cpu
            memory = var.memory
          }
        }

        dynamic "env" {
          for_each = local.env
          content {
            name  = env.key
            value = env.value
          }
        }

        dynamic "env" {
          for_each = local.secret_env
          content {
            name = env.key
            value_source {
              secret_key_ref {
                secret  = env.value.secret
                version = env.value.version
              }
            }
          }
        }
      }
    }
  }

  depends_on = [google_project_service.apis]
}

# The service runs the job with overridden args and lists its executions (roles/run.developer holds
# run.jobs.runWithOverrides and run.executions.list), on this job only.
resource "google_cloud_run_v2_job_iam_member" "runtime_runs_export" {
  count = var.export_job ? 1 : 0

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_job.export[0].name
  role     = "roles/run.developer"
  member   = google_service_account.runtime.member
}
