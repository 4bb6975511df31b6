# The one bucket (SWARMING_BUCKET): the bot code by digest (bot_code/), the
# content-addressed files (cas/sha256/), the service configuration
# (config/service.json) and the functions' source archives (sources/).

resource "google_storage_bucket" "swarming" {
  name                        = local.bucket_name
  location                    = upper(var.region)
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.bucket_force_destroy

  # Every object is either content-addressed (a new version is a new name) or
  # rebuilt from the repository: no versions, and no soft delete to pay for.
  versioning {
    enabled = false
  }

  soft_delete_policy {
    retention_duration_seconds = 0
  }

  # A blob's customTime is set at upload and moved to the present when a
  # cas_find_missing finds it (at most daily): one untouched for the TTL is
  # deleted, and uploaded again by whoever needs it next.
  lifecycle_rule {
    condition {
      days_since_custom_time = var.cas_ttl_days
      matches_prefix         = ["cas/sha256/"]
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

# The functions' source, named by its content: a new release redeploys every
# function, the same release nothing.
data "archive_file" "source" {
  type        = "zip"
  source_dir  = local.source_dir
  output_path = "${local.source_dir}.zip"
}

resource "google_storage_bucket_object" "source" {
  bucket       = google_storage_bucket.swarming.name
  name         = "sources/${data.archive_file.source.output_sha256}.zip"
  source       = data.archive_file.source.output_path
  content_type = "application/zip"
}

# The release's bot zip, where the functions store each version they serve:
# bots are told to update when their digest differs from this one.
resource "google_storage_bucket_object" "bot_code" {
  bucket       = google_storage_bucket.swarming.name
  name         = "bot_code/${local.bot_version}.zip"
  source       = "${local.source_dir}/${local.bot_zip}"
  content_type = "application/zip"
}

# The service configuration of config_dir, as config_push stores it
# (shared/service_config.py to_wire: the files and their version, which
# 'swarming config validate --json' printed, and the functions check).
# 'swarming config push' replaces it between deploys; a deploy that changes
# config_dir's files replaces it again.
locals {
  # The files service_config.read_dir reads: the TOML files and scripts/*.py.
  config_files = concat(
    ["settings.toml", "pools.toml", "bots.toml"], tolist(fileset(local.config_dir, "scripts/*.py"))
  )
  config_version = jsondecode(file(local.config_version_file)).version
}

resource "google_storage_bucket_object" "config" {
  bucket       = google_storage_bucket.swarming.name
  name         = "config/service.json"
  content_type = "application/json"
  content = jsonencode({
    files   = { for name in local.config_files : name => file("${local.config_dir}/${name}") }
    version = local.config_version
  })
}
