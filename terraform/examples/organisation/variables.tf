variable "project_id" {
  description = "The ops project the service runs in."
  type        = string
}

variable "region" {
  description = "Region of the service, queue and jobs."
  type        = string
  default     = "europe-west1"
}

variable "image" {
  description = "The data-backup image (a release tag pushed by CI), e.g. europe-west1-docker.pkg.dev/ops/images/data-backup:v1.0.0."
  type        = string
}

variable "bucket_name" {
  description = "Name of the backup bucket (globally unique)."
  type        = string
}

variable "organization_id" {
  description = "Numeric id of the organisation holding the folders."
  type        = string
  default     = null
}

variable "folders" {
  description = "Folders whose Cloud SQL databases are backed up (recursively)."
  type        = list(string)
  default     = []
}

variable "projects" {
  description = "Projects backed up besides those under the folders."
  type        = list(string)
  default     = []
}

variable "exclude_patterns" {
  description = "Globs over project/instance/database left out of the backups."
  type        = list(string)
  default     = []
}

variable "cloudsql_service_accounts" {
  description = "Service accounts of the Cloud SQL instances (they write the exports into the bucket)."
  type        = list(string)
  default     = []
}

variable "operator_emails" {
  description = "People and service accounts allowed to call the service."
  type        = list(string)
  default     = []
}

variable "notification_emails" {
  description = "Email addresses the alerts go to."
  type        = list(string)
  default     = []
}

variable "notification_channels" {
  description = "Existing notification channels the alerts go to."
  type        = list(string)
  default     = []
}
