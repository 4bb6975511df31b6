# SWARMING_TOKEN_SECRET: the key of the tokens the functions sign (bootstrap,
# bot and run tokens). Made here from an ephemeral random value and sent to
# Secret Manager through a write-only attribute: it is in neither a plan nor
# the state, and nobody types it. A new generation (token_secret_generation)
# makes a new version; the functions, pinned to a version number, redeploy
# with it, so no two instances ever sign with different keys.

resource "google_secret_manager_secret" "token_secret" {
  secret_id = "swarming-token-secret"

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

ephemeral "random_password" "token_secret" {
  length  = 64
  special = false
}

resource "google_secret_manager_secret_version" "token_secret" {
  secret                 = google_secret_manager_secret.token_secret.id
  secret_data_wo         = ephemeral.random_password.token_secret.result
  secret_data_wo_version = var.token_secret_generation

  # The new version exists, and the functions use it, before the old one goes.
  lifecycle {
    create_before_destroy = true
  }
}
