terraform {
  # 1.11: the token secret goes to Secret Manager through a write-only
  # attribute, from an ephemeral value, so it is in neither a plan nor the state.
  required_version = ">= 1.11.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "6.50.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "2.7.1"
    }
    random = {
      source  = "hashicorp/random"
      version = "3.7.2"
    }
  }

  # Partial configuration: the state bucket is given at init
  # (terraform init -backend-config=bucket=STATE_BUCKET; docs/deploy.md).
  backend "gcs" {
    prefix = "swarming"
  }
}

provider "google" {
  project = var.project
  region  = var.region
}
