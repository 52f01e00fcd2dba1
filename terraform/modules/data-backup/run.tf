# The Cloud Run service: scales to zero between nights; one request per /export attempt, each waiting
# at most export_wait_secs on its Cloud SQL operation, so the request timeout and concurrency follow
# from the export wait (variables.tf).

locals {
  # Metrics are pushed every minute: they need CPU between requests while an instance lives.
  cpu_always_allocated = var.metrics_collector

  # The collector sidecar: OTLP/HTTP in on localhost:4318; metrics to Managed Service for Prometheus,
  # traces to Cloud Trace. Its configuration is passed in an environment variable (YAML is a
  # superset of JSON). The `transform/collision` statements rename attributes that Managed Service for
  # Prometheus reserves; none of the service's own labels is one (its Cloud SQL instance label is
  # `cloudsql_instance`), so they only guard against attributes the SDK or a resource detector adds.
  collector_config = jsonencode({
    receivers = {
      otlp = { protocols = { http = { endpoint = "localhost:4318" } } }
    }
    processors = {
      batch             = { send_batch_size = 200, send_batch_max_size = 200, timeout = "5s" }
      memory_limiter    = { check_interval = "1s", limit_percentage = 65, spike_limit_percentage = 20 }
      resourcedetection = { detectors = ["gcp"], timeout = "10s" }
      "transform/collision" = {
        metric_statements = [{
          context = "datapoint"
          statements = flatten([
            for label in ["location", "cluster", "namespace", "job", "instance", "project_id"] : [
              "set(attributes[\"exported_${label}\"], attributes[\"${label}\"])",
              "delete_key(attributes, \"${label}\")",
            ]
          ])
        }]
      }
    }
    exporters = {
      googlecloud             = {}
      googlemanagedprometheus = {}
    }
    extensions = {
      health_check = { endpoint = "0.0.0.0:13133" }
    }
    service = {
      extensions = ["health_check"]
      telemetry  = { metrics = { level = "none" } }
      pipelines = {
        metrics = {
          receivers  = ["otlp"]
          processors = ["resourcedetection", "transform/collision", "memory_limiter", "batch"]
          exporters  = ["googlemanagedprometheus"]
        }
        traces = {
          receivers  = ["otlp"]
          processors = ["resourcedetection", "memory_limiter", "batch"]
          exporters  = ["googlecloud"]
        }
      }
    }
  })
}

resource "google_cloud_run_v2_service" "service" {
  project             = var.project_id
  name                = var.name
  location            = var.region
  description         = "data-backup: backs up every Cloud SQL database nightly"
  ingress             = var.ingress
  deletion_protection = var.deletion_protection
  labels              = var.labels

  template {
    service_account                  = google_service_account.runtime.email
    timeout                          = "${var.request_timeout_secs}s"
    max_instance_request_concurrency = var.concurrency
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"
    labels                           = var.labels

    scaling {
      min_instance_count = 0
      max_instance_count = var.max_instances
    }

    containers {
      name  = "data-backup"
      image = var.image
      args  = ["serve"]

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        cpu_idle          = !local.cpu_always_allocated
        startup_cpu_boost = true
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

      startup_probe {
        http_get {
          path = "/healthz"
          port = 8080
        }
        period_seconds    = 2
        timeout_seconds   = 1
        failure_threshold = 30
      }

      liveness_probe {
        http_get {
          path = "/healthz"
          port = 8080
        }
        period_seconds    = 30
        timeout_seconds   = 5
        failure_threshold = 3
      }

      depends_on = var.metrics_collector ? ["collector"] : []
    }

    dynamic "containers" {
      for_each = var.metrics_collector ? ["collector"] : []
      content {
        name  = containers.value
        image = var.collector_image
        args  = ["--config=env:OTELCOL_CONFIG"]

        env {
          name  = "OTELCOL_CONFIG"
          value = local.collector_config
        }

        resources {
          limits = {
            cpu    = "1"
            memory = "512Mi"
          }
          cpu_idle = !local.cpu_always_allocated
        }

        startup_probe {
          http_get {
            path = "/"
            port = 13133
          }
          period_seconds    = 2
          timeout_seconds   = 1
          failure_threshold = 30
        }
      }
    }
  }

  depends_on = [
    google_project_service.apis,
    google_project_iam_member.runtime_telemetry,
    google_secret_manager_secret_iam_member.runtime_secrets,
  ]

  lifecycle {
    precondition {
      condition     = length(var.folders) + length(var.projects) > 0
      error_message = "Nothing to back up: set folders (with organization_id) or projects."
    }
    precondition {
      condition     = var.export_wait_secs + 60 <= var.request_timeout_secs
      error_message = "export_wait_secs must be at least 60 s below request_timeout_secs, so /export answers 503 (and Cloud Tasks retries) before Cloud Run ends the request."
    }
    # gcloud run deploy stamps these; they are not configuration.
    ignore_changes = [client, client_version]
  }
}
