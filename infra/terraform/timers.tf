# The timers (Cloud Tasks: timer_expire, timer_bot_died, timer_notify) and the cron
# (Cloud Scheduler: cron_sweep), both calling as the timers' service account,
# whose OIDC tokens the functions accept as the service itself
# (SWARMING_SERVICE_ACCOUNT).

# Retries as the local stack's queue (local/stack.py): Cloud Tasks' defaults
# spend the first tries within a second of a failure, then may wait up to an
# hour, far past the bot death timeout. A timer's handler is idempotent and
# cron_sweep repairs what a dropped timer leaves: retry from 1 s, never wait
# more than a minute between tries, give up after 100 (about an hour and a half).
resource "google_cloud_tasks_queue" "timers" {
  name     = "swarming-timers"
  location = var.region

  rate_limits {
    max_dispatches_per_second = var.timers_max_dispatches_per_second
    max_concurrent_dispatches = var.timers_max_concurrent_dispatches
  }

  retry_config {
    max_attempts = 100
    min_backoff  = "1s"
    max_backoff  = "60s"
  }

  depends_on = [google_project_service.apis]
}

locals {
  # Its full name, as the functions create tasks in it (SWARMING_TASKS_QUEUE).
  timers_queue = "projects/${var.project}/locations/${var.region}/queues/${google_cloud_tasks_queue.timers.name}"
}

# A missed minute is made up by the next: no retries.
resource "google_cloud_scheduler_job" "cron_sweep" {
  name             = "swarming-cron-sweep"
  region           = var.region
  description      = "Repairs what lost timers left; marks bots dead or alive (functions/sweep.py)."
  schedule         = var.sweep_schedule
  time_zone        = "Etc/UTC"
  attempt_deadline = "${min(var.function_timeout_seconds + 30, 1800)}s"

  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = "${local.base_url}/cron_sweep"
    body        = base64encode("{}")
    headers = {
      "Content-Type" = "application/json"
    }

    oidc_token {
      service_account_email = google_service_account.timers.email
      audience              = "${local.base_url}/cron_sweep"
    }
  }

  # From the first minute the functions can be called.
  depends_on = [google_cloud_run_service_iam_member.invoker]
}
