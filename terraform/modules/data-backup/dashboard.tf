# The Cloud Monitoring dashboard: what the status page shows, over time, from the metrics the
# collector sidecar writes to Managed Service for Prometheus (metrics_collector only). Each tile is a
# PromQL query over the service's series (README "Metrics"); a database's series carry `project`,
# `cloudsql_instance` and `db_namespace` (the database).

locals {
  dashboard_per_db = "project, cloudsql_instance, db_namespace"

  # [title, PromQL, plot type, y-axis label]
  dashboard_charts = [
    ["Databases by state", "sum by (state) (data_backup_databases)", "STACKED_AREA", "databases"],
    ["Hours since the newest backup, per database", "(time() - max by (${local.dashboard_per_db}) (data_backup_last_success_timestamp_seconds)) / 3600", "LINE", "hours"],
    ["Size of the newest backup, per database", "max by (${local.dashboard_per_db}) (data_backup_last_backup_size_bytes)", "LINE", "bytes"],
    ["Export time of the newest backup, per database", "max by (${local.dashboard_per_db}) (data_backup_last_backup_duration_seconds)", "LINE", "seconds"],
    ["Days since the newest successful restore drill, per database", "(time() - max by (${local.dashboard_per_db}) (data_backup_last_verification_timestamp_seconds)) / 86400", "LINE", "days"],
    ["Export attempts by result (per hour)", "sum by (result) (increase(data_backup_exports_total[1h]))", "STACKED_BAR", "attempts"],
    ["Discovery errors by API (per hour)", "sum by (api, error_type) (increase(data_backup_discovery_errors_total[1h]))", "STACKED_BAR", "errors"],
    ["Build serving", "max by (version) (data_backup_build_info)", "LINE", "instances"],
  ]

  dashboard_scorecards = [
    ["Databases needing attention", "sum(data_backup_databases{state=~\"stale|failing|missing|suspect\"})"],
    ["Databases not proven", "sum(data_backup_databases{state=\"unverified\"})"],
    ["Databases ok", "sum(data_backup_databases{state=\"ok\"})"],
  ]

  dashboard_tiles = concat(
    [for i, s in local.dashboard_scorecards : {
      xPos   = i * 16
      yPos   = 0
      width  = 16
      height = 8
      widget = {
        title = s[0]
        scorecard = {
          timeSeriesQuery = { prometheusQuery = s[1] }
        }
      }
    }],
    [for i, c in local.dashboard_charts : {
      xPos   = (i % 2) * 24
      yPos   = 8 + floor(i / 2) * 16
      width  = 24
      height = 16
      widget = {
        title = c[0]
        xyChart = {
          dataSets = [{
            plotType        = c[2]
            targetAxis      = "Y1"
            timeSeriesQuery = { prometheusQuery = c[1] }
          }]
          yAxis = { label = c[3], scale = "LINEAR" }
        }
      }
    }],
  )
}

resource "google_monitoring_dashboard" "status" {
  count = var.metrics_collector && var.dashboard_enabled ? 1 : 0

  project = var.project_id
  dashboard_json = jsonencode({
    displayName  = "data-backup (${var.name})"
    mosaicLayout = { columns = 48, tiles = local.dashboard_tiles }
  })
}
