# What the other files share: where things are, and the APIs everything needs.

locals {
  # Every function of a 2nd gen deployment is also served at BASE_URL/<name>:
  # the URL the bots, the timers, the cron and the bot zip use.
  base_url = "https://${var.region}-${var.project}.cloudfunctions.net"

  firestore_location  = coalesce(var.firestore_location, var.region)
  bucket_name         = coalesce(var.bucket_name, "${var.project}-swarming")
  source_dir          = coalesce(var.source_dir, "${path.module}/../../build/function-source")
  config_dir          = coalesce(var.config_dir, "${path.module}/../config")
  config_version_file = coalesce(var.config_version_file, "${path.module}/../../build/config-version.json")

  # The release's bot zip and its digest (local.release BOT_ZIP, BOT_VERSION).
  bot_zip     = "bot_code/swarming_bot.zip"
  bot_version = trimspace(file("${local.source_dir}/bot_code/VERSION"))
}

# Left enabled on destroy: other things in the project may use them.
resource "google_project_service" "apis" {
  for_each = toset([
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "cloudtasks.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "logging.googleapis.com",
    # The tasks' end notifications are published with the functions' identity.
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ])

  service            = each.key
  disable_on_destroy = false
}
