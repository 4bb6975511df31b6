# One Cloud Function (2nd gen) per entry of the registry, functions/endpoints.py
# FUNCTIONS, in its order, each running the entry point of its name
# (functions/main.py); tests/test_terraform.py fails when the two differ.

locals {
  functions = [
    "bot_handshake",
    "bot_poll",
    "bot_claim",
    "bot_task_update",
    "bot_task_error",
    "bot_event",
    "bot_code",
    "bot_bootstrap",
    "tasks_new",
    "task_result",
    "task_request",
    "task_stdout",
    "task_pending",
    "task_cancel",
    "tasks_list",
    "tasks_requests",
    "tasks_count",
    "tasks_cancel",
    "bots_list",
    "bots_count",
    "bots_dimensions",
    "bot_get",
    "bot_events",
    "bot_tasks",
    "bot_delete",
    "bot_terminate",
    "ui",
    "server_details",
    "server_permissions",
    "server_token",
    "config_push",
    "cas_find_missing",
    "cas_urls",
    "timer_expire",
    "timer_bot_died",
    "timer_notify",
    "cron_sweep",
  ]

  # What every idle bot calls every minute, and a busy one every few seconds.
  hot_path = ["bot_poll", "bot_claim", "bot_task_update"]

  # The long poll (functions/long_poll.py): an idle bot's poll is held up to
  # SWARMING_POLL_HOLD_SECS, so each instance serves many polls at once, each
  # for up to the hold: concurrency and timeout of their own.
  long_poll = "bot_poll"
  concurrency = {
    for f in local.functions : f => f == local.long_poll ? var.poll_concurrency : var.function_concurrency
  }
  timeout = {
    for f in local.functions : f => f == local.long_poll ? var.poll_timeout_seconds : var.function_timeout_seconds
  }

  # Every function's environment (functions/settings.py: each is a variable the
  # code reads, and those a deployed function needs are all here).
  environment = {
    SWARMING_PROJECT            = var.project
    SWARMING_BUCKET             = google_storage_bucket.swarming.name
    SWARMING_FUNCTIONS_URL      = local.base_url
    SWARMING_TASKS_QUEUE        = local.timers_queue
    SWARMING_SERVICE_ACCOUNT    = google_service_account.timers.email
    SWARMING_TRUSTED_PROXY_HOPS = "1"
    SWARMING_SERVER_VERSION     = var.server_version
    SWARMING_BOT_ZIP            = local.bot_zip
    SWARMING_POLL_HOLD_SECS     = tostring(var.poll_hold_secs)
  }
}

resource "google_cloudfunctions2_function" "function" {
  for_each = toset(local.functions)

  name        = each.key
  location    = var.region
  description = "Serverless Swarming: ${each.key} (functions/endpoints.py)"

  build_config {
    runtime           = "python311"
    entry_point       = each.key
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.swarming.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    available_memory                 = var.function_memory
    available_cpu                    = var.function_cpu
    max_instance_request_concurrency = local.concurrency[each.key]
    timeout_seconds                  = local.timeout[each.key]
    max_instance_count               = var.function_max_instances
    min_instance_count               = contains(local.hot_path, each.key) ? var.hot_path_min_instances : 0
    ingress_settings                 = "ALLOW_ALL"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.functions.email
    # THREADS: functions-framework's gunicorn threads, one per request served at
    # once (a held poll holds one); its default, 4 a vCPU, would queue the rest.
    environment_variables = merge(local.environment, {
      THREADS = tostring(local.concurrency[each.key])
    })

    secret_environment_variables {
      key        = "SWARMING_TOKEN_SECRET"
      project_id = var.project
      secret     = google_secret_manager_secret.token_secret.secret_id
      version    = google_secret_manager_secret_version.token_secret.version
    }
  }

  lifecycle {
    precondition {
      condition     = var.poll_hold_secs + 30 <= var.poll_timeout_seconds
      error_message = "poll_timeout_seconds must leave bot_poll 30 s past poll_hold_secs to answer."
    }
  }

  # What a function needs at its first start: its secret, and the build's rights.
  depends_on = [
    google_project_service.apis,
    google_secret_manager_secret_iam_member.functions_token_secret,
    google_artifact_registry_repository_iam_member.build_push,
    google_project_iam_member.build,
  ]
}

# Anyone may reach the functions; each checks every caller's token itself
# (functions/http.py): Google ID tokens of people, CI, the timers and GCE bots,
# and the tokens the service signs (bootstrap, bot and run tokens), which
# Cloud Run's IAM cannot verify. docs/deploy.md: "Who may invoke".
resource "google_cloud_run_service_iam_member" "invoker" {
  for_each = google_cloudfunctions2_function.function

  project  = var.project
  location = var.region
  service  = each.value.service_config[0].service
  role     = "roles/run.invoker"
  member   = "allUsers"
}
