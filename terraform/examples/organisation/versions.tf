terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.14, < 8"
    }
  }

  # GitLab-managed state, one per environment: the pipeline (.gitlab-ci.yml) passes the state's address
  # and credentials with -backend-config. Elsewhere keep the state in a bucket of the ops project
  # (create it first, with versioning on) instead:
  # backend "gcs" {
  #   bucket = "my-org-terraform-state"
  #   prefix = "data-backup"
  # }
  backend "http" {}
}

provider "google" {
  project = var.project_id
  region  = var.region
}
