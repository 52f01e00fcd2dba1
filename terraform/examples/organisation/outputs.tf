output "service_url" {
  description = "URL of the service (the audience of its ID tokens)."
  value       = module.data_backup.service_url
}

output "store_url" {
  description = "DATA_BACKUP_STORE__URL for the CLI."
  value       = module.data_backup.store_url
}

output "run_now_command" {
  description = "Runs the nightly backup now."
  value       = module.data_backup.run_now_command
}

output "invoker_service_account" {
  description = "Identity of Cloud Scheduler's and Cloud Tasks' calls."
  value       = module.data_backup.invoker_service_account
}

output "runtime_service_account" {
  description = "The service's own identity."
  value       = module.data_backup.runtime_service_account
}
