# The service accounts and what each may do, each role bound to the narrowest
# resource that works (docs/deploy.md says why each binding is there).

# The functions' runtime identity.
resource "google_service_account" "functions" {
  account_id   = "swarming-functions"
  display_name = "Swarming functions (runtime)"
  depends_on   = [google_project_service.apis]
}

# The identity Cloud Tasks and Cloud Scheduler mint OIDC tokens for: the
# functions take its tokens as the service's own calls. It holds no role.
resource "google_service_account" "timers" {
  account_id   = "swarming-timers"
  display_name = "Swarming timers and cron (OIDC tokens only)"
  depends_on   = [google_project_service.apis]
}

# The identity of bots on Compute Engine VMs: bots.toml lists it in a group's
# require_service_account. It holds no role: a bot shows its ID token, and
# moves files through the signed URLs the functions hand out.
resource "google_service_account" "bots" {
  account_id   = "swarming-bots"
  display_name = "Swarming bots on Compute Engine"
  depends_on   = [google_project_service.apis]
}

# The identity Cloud Build builds the functions' images as.
resource "google_service_account" "build" {
  account_id   = "swarming-build"
  display_name = "Swarming functions' image builds"
  depends_on   = [google_project_service.apis]
}

locals {
  functions_member = "serviceAccount:${google_service_account.functions.email}"
  build_member     = "serviceAccount:${google_service_account.build.email}"
}

# Firestore: tasks, bots, queues. Granted on the project, which has the one
# database (an IAM condition is the only narrower binding Firestore has).
resource "google_project_iam_member" "functions_firestore" {
  project = var.project
  role    = "roles/datastore.user"
  member  = local.functions_member
}

# The bucket only: bot code, CAS (customTime moves included), configuration.
resource "google_storage_bucket_iam_member" "functions_bucket" {
  bucket = google_storage_bucket.swarming.name
  role   = "roles/storage.objectAdmin"
  member = local.functions_member
}

# Creating timers in the queue only.
resource "google_cloud_tasks_queue_iam_member" "functions_enqueue" {
  name     = google_cloud_tasks_queue.timers.name
  location = google_cloud_tasks_queue.timers.location
  role     = "roles/cloudtasks.enqueuer"
  member   = local.functions_member
}

# Cloud Tasks mints a task's OIDC token for the timers' account only if its
# creator may act as that account.
resource "google_service_account_iam_member" "functions_act_as_timers" {
  service_account_id = google_service_account.timers.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.functions_member
}

# Signing CAS URLs without a key: IAM signBlob as itself.
resource "google_service_account_iam_member" "functions_sign_as_itself" {
  service_account_id = google_service_account.functions.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.functions_member
}

# Reading the one secret (at each instance's start).
resource "google_secret_manager_secret_iam_member" "functions_token_secret" {
  secret_id = google_secret_manager_secret.token_secret.id
  role      = "roles/secretmanager.secretAccessor"
  member    = local.functions_member
}

# The functions' images, kept in a repository of their own: the two most
# recent of each function, and none older than 30 days beyond those.
resource "google_artifact_registry_repository" "functions" {
  repository_id          = "swarming-functions"
  location               = var.region
  format                 = "DOCKER"
  description            = "The Swarming functions' images, built by Cloud Build at each deploy."
  cleanup_policy_dry_run = false

  cleanup_policies {
    id     = "delete-older-than-30-days"
    action = "DELETE"
    condition {
      tag_state  = "ANY"
      older_than = "2592000s"
    }
  }

  cleanup_policies {
    id     = "keep-two-most-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 2
    }
  }

  depends_on = [google_project_service.apis]
}

# The build pushes the images to that repository only.
resource "google_artifact_registry_repository_iam_member" "build_push" {
  repository = google_artifact_registry_repository.functions.name
  location   = google_artifact_registry_repository.functions.location
  role       = "roles/artifactregistry.writer"
  member     = local.build_member
}

# The build reads the source from the bucket Cloud Functions copies it to
# (gcf-v2-sources-PROJECT_NUMBER-REGION, created at the first deploy, so it
# cannot be named here), and writes its logs.
resource "google_project_iam_member" "build" {
  for_each = toset(["roles/storage.objectViewer", "roles/logging.logWriter"])

  project = var.project
  role    = each.key
  member  = local.build_member
}
