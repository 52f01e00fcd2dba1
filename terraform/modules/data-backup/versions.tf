terraform {
  # 1.5: `check` blocks and `terraform_data`.
  required_version = ">= 1.5"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 6.x: Cloud Run v2 sidecars with depends_on, scaling and deletion_protection, bucket soft delete,
      # PromQL alert conditions.
      version = ">= 6.14, < 8"
    }
  }
}
