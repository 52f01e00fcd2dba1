terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.14, < 8"
    }
  }

  # Keep the state in a bucket of the ops project (create it first, with versioning on):
  # backend "gcs" {
  #   bucket = "my-org-terraform-state"
  #   prefix = "data-backup"
  # }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
