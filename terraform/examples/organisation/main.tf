# A root that deploys data-backup into an organisation: every Cloud SQL database under the given
# folders (and projects) is backed up nightly into a bucket of the ops project. Copy this directory,
# fill terraform.tfvars (see terraform.tfvars.example), then `terraform init && terraform apply`.
# docs/deploy.md walks through it.

module "data_backup" {
  source = "../../modules/data-backup"

  project_id      = var.project_id
  region          = var.region
  image           = var.image
  bucket_name     = var.bucket_name
  organization_id = var.organization_id
  folders         = var.folders
  projects        = var.projects

  exclude_patterns          = var.exclude_patterns
  cloudsql_service_accounts = var.cloudsql_service_accounts
  operator_emails           = var.operator_emails
  notification_emails       = var.notification_emails
  notification_channels     = var.notification_channels

  labels = {
    service = "data-backup"
  }
}
