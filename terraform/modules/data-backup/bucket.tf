# The backup bucket. The service writes at its root (DESIGN.md "Object layout"): the retention class
# comes first in every backup's key, so lifecycle rules expire each class by prefix and never touch
# latest/, runs/, leases/ or reports/. Nothing half-written is visible (only the manifest, written
# last, makes a backup), and the service never overwrites an object (conditional creates).

resource "google_storage_bucket" "backups" {
  # Object versioning would turn every lifecycle expiry into a noncurrent copy kept on until another
  # rule deletes it, doubling what a retention class costs; the service never overwrites an object
  # (conditional creates), and soft delete (below) already keeps deleted objects restorable.
  #checkov:skip=CKV_GCP_78:Soft delete covers recovery; the service never overwrites objects, and versioning would keep every expired backup.
  project                     = var.project_id
  name                        = var.bucket_name
  location                    = coalesce(var.bucket_location, var.region)
  storage_class               = var.bucket_storage_class
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = var.labels
  # Per-object retention (retention.lock): every new backup is retained until its class expires.
  enable_object_retention = var.object_retention != "off"

  # Deleted objects (expired, pruned or deleted by mistake) stay restorable for a while.
  soft_delete_policy {
    retention_duration_seconds = var.soft_delete_days * 86400
  }

  dynamic "retention_policy" {
    for_each = var.retention_policy_days == null ? [] : [var.retention_policy_days]
    content {
      retention_period = retention_policy.value * 86400
      is_locked        = var.retention_policy_locked
    }
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  dynamic "logging" {
    for_each = var.access_log_bucket == null ? [] : [var.access_log_bucket]
    content {
      log_bucket        = logging.value
      log_object_prefix = var.bucket_name
    }
  }

  # BEGIN data-backup lifecycle --format terraform, rendered with: DATA_BACKUP_STORE__URL=gs://BUCKET
  # The service's default [retention]; gs://BUCKET is a placeholder (the rules match key prefixes).
  # Do not edit by hand: to change retention, add the same DATA_BACKUP_RETENTION__… settings to the
  # line above and to local.env_retention (main.tf), render again and paste the output here.
  # scripts/deploy-checks.sh renders with the settings of the line above and compares.
  # Lifecycle rules for gs://BUCKET, rendered by `data-backup lifecycle --format terraform` from the
  # [retention] settings: put these blocks in the bucket's google_storage_bucket resource.
  lifecycle_rule {
    condition {
      age            = 9
      matches_prefix = ["daily/"]
    }
    action {
      type = "Delete"
    }
  }
  lifecycle_rule {
    condition {
      age            = 40
      matches_prefix = ["weekly/"]
    }
    action {
      type = "Delete"
    }
  }
  lifecycle_rule {
    condition {
      age            = 365
      matches_prefix = ["monthly/"]
    }
    action {
      type = "Delete"
    }
  }
  lifecycle_rule {
    condition {
      age            = 2190
      matches_prefix = ["quarterly/"]
    }
    action {
      type = "Delete"
    }
  }
  lifecycle_rule {
    condition {
      age            = 43800
      matches_prefix = ["yearly/"]
    }
    action {
      type = "Delete"
    }
  }
  # END data-backup lifecycle --format terraform

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.gcs]
}
