output "service_url" {
  description = "URL of the service, and the audience of its ID tokens: call it with this URL (`data-backup call schedule --url …`)."
  value       = local.service_url
}

output "service_name" {
  description = "Name of the Cloud Run service."
  value       = google_cloud_run_v2_service.service.name
}

output "cloud_run_uri" {
  description = "The URI Cloud Run reports for the service (it also answers on service_url)."
  value       = google_cloud_run_v2_service.service.uri
}

output "bucket_name" {
  description = "The backup bucket."
  value       = google_storage_bucket.backups.name
}

output "store_url" {
  description = "The service's store.url (DATA_BACKUP_STORE__URL for the CLI: status, list, restore, verify)."
  value       = "gs://${google_storage_bucket.backups.name}"
}

output "queue_id" {
  description = "The Cloud Tasks queue of export tasks."
  value       = local.queue_id
}

output "scheduler_job" {
  description = "The nightly Cloud Scheduler job (POST /schedule)."
  value       = google_cloud_scheduler_job.schedule.id
}

output "run_now_command" {
  description = "Runs tonight's backup now, exactly as the scheduler does."
  value       = "gcloud scheduler jobs run ${google_cloud_scheduler_job.schedule.name} --location ${var.region} --project ${var.project_id}"
}

output "runtime_service_account" {
  description = "Email of the service's own identity."
  value       = google_service_account.runtime.email
}

output "invoker_service_account" {
  description = "Email of the identity Cloud Scheduler and Cloud Tasks call the service with."
  value       = google_service_account.invoker.email
}

output "reports_topic" {
  description = "Pub/Sub topic of failure reports (and success events with pubsub_success)."
  value       = local.topic_id
}

output "service_env" {
  description = "The service's settings as set on Cloud Run (no secrets: those come from secret_env)."
  value       = local.env
}
