# Failure reports (once per database and day, after report_after_retries for transient failures) and,
# with pubsub_success, one event per backup: subscribe a chat bridge, a ticketing system or a
# Cloud Monitoring Pub/Sub channel to it.

resource "google_pubsub_topic" "reports" {
  project      = var.project_id
  name         = "${var.name}-reports"
  labels       = var.labels
  kms_key_name = var.kms_key_name

  message_retention_duration = "604800s" # a week, for a subscriber that was down

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.pubsub]
}
