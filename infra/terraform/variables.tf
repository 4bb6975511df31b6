variable "project" {
  description = "The Google Cloud project to deploy into (its id), with billing enabled."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project))
    error_message = "project must be a project id: 6 to 30 lowercase letters, digits and hyphens."
  }
}

variable "region" {
  description = "The region of the functions, the timers' queue, the scheduler job, the bucket and the repository."
  type        = string
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a Google Cloud region, such as us-central1."
  }
}

variable "firestore_location" {
  description = "The Firestore database's location (a region or a multi-region such as nam5); null: the region."
  type        = string
  default     = null

  validation {
    condition     = var.firestore_location == null || can(regex("^[a-z0-9-]+$", var.firestore_location))
    error_message = "firestore_location must be a Firestore location id, such as us-central1 or nam5."
  }
}

variable "firestore_point_in_time_recovery" {
  description = "Keep 7 days of versions of every document (Firestore PITR), billed as storage."
  type        = bool
  default     = true
}

variable "firestore_delete_protection" {
  description = "Refuse to delete the Firestore database: turn off, apply, then destroy (docs/deploy.md)."
  type        = bool
  default     = true
}

variable "server_version" {
  description = "The version shown to bots and users (SWARMING_SERVER_VERSION): the release's, e.g. the commit."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{1,63}$", var.server_version))
    error_message = "server_version must be 1 to 63 letters, digits, dots, underscores or hyphens."
  }
}

variable "source_dir" {
  description = "The release the functions are deployed from (python -m local.release); null: build/function-source."
  type        = string
  default     = null
}

variable "config_dir" {
  description = "The service configuration pushed at deploy (the TOML files, scripts/); null: infra/config."
  type        = string
  default     = null
}

variable "config_version_file" {
  description = "The output of 'swarming config validate --json' for config_dir; null: build/config-version.json."
  type        = string
  default     = null
}

variable "bucket_name" {
  description = "The one bucket: bot code, CAS, service configuration, function sources; null: PROJECT-swarming."
  type        = string
  default     = null

  validation {
    condition     = var.bucket_name == null || can(regex("^[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid Cloud Storage bucket name."
  }
}

variable "bucket_force_destroy" {
  description = "Let terraform destroy delete the bucket with what it holds (for tearing down only)."
  type        = bool
  default     = false
}

variable "cas_ttl_days" {
  description = "Days a content-addressed blob is kept since it was last uploaded or found present (its customTime)."
  type        = number
  default     = 30

  validation {
    condition     = var.cas_ttl_days >= 1 && var.cas_ttl_days <= 3650 && floor(var.cas_ttl_days) == var.cas_ttl_days
    error_message = "cas_ttl_days must be a whole number of days from 1 to 3650."
  }
}

variable "function_memory" {
  description = "Memory of each function instance (Cloud Run units: 512Mi, 1Gi)."
  type        = string
  default     = "512Mi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.function_memory))
    error_message = "function_memory must be a number of Mi or Gi, such as 512Mi."
  }
}

variable "function_cpu" {
  description = "vCPUs of each function instance; at least 1, which serving concurrent requests needs."
  type        = string
  default     = "1"

  validation {
    condition     = contains(["1", "2", "4", "6", "8"], var.function_cpu)
    error_message = "function_cpu must be 1, 2, 4, 6 or 8."
  }
}

variable "function_concurrency" {
  description = "Requests one function instance serves at once (most wait on Firestore or Cloud Storage)."
  type        = number
  default     = 80

  validation {
    condition     = var.function_concurrency >= 1 && var.function_concurrency <= 1000
    error_message = "function_concurrency must be from 1 to 1000."
  }
}

variable "function_timeout_seconds" {
  description = "How long one request may take; long ones (cron_sweep, tasks_cancel) stop at a third of 60 s."
  type        = number
  default     = 60

  validation {
    condition     = var.function_timeout_seconds >= 40 && var.function_timeout_seconds <= 3600
    error_message = "function_timeout_seconds must be from 40 (twice the long requests' 20 s budget) to 3600."
  }
}

variable "poll_hold_secs" {
  description = "How long an idle bot's poll may wait for a task (SWARMING_POLL_HOLD_SECS); 0: back off (README)."
  type        = number
  default     = 60

  validation {
    condition     = var.poll_hold_secs >= 0 && var.poll_hold_secs <= 3000
    error_message = "poll_hold_secs must be from 0 to 3000."
  }
}

variable "poll_concurrency" {
  description = "Polls one bot_poll instance serves at once: with the long poll, the idle bots one instance holds."
  type        = number
  default     = 1000

  validation {
    condition     = var.poll_concurrency >= 1 && var.poll_concurrency <= 1000
    error_message = "poll_concurrency must be from 1 to 1000."
  }
}

variable "poll_timeout_seconds" {
  description = "bot_poll's request timeout: the hold and 30 s to answer."
  type        = number
  default     = 120

  validation {
    condition     = var.poll_timeout_seconds >= 40 && var.poll_timeout_seconds <= 3600
    error_message = "poll_timeout_seconds must be from 40 to 3600."
  }
}

variable "function_max_instances" {
  description = "The most instances of one function at once: a bound on cost and on Firestore's load."
  type        = number
  default     = 100

  validation {
    condition     = var.function_max_instances >= 1 && var.function_max_instances <= 1000
    error_message = "function_max_instances must be from 1 to 1000."
  }
}

variable "hot_path_min_instances" {
  description = "Warm instances of each function of the bots' hot path: bot_poll, bot_claim, bot_task_update."
  type        = number
  default     = 1

  validation {
    condition     = var.hot_path_min_instances >= 0 && var.hot_path_min_instances <= 10
    error_message = "hot_path_min_instances must be from 0 to 10."
  }
}

variable "sweep_schedule" {
  description = "When Cloud Scheduler calls cron_sweep (cron syntax, UTC); every minute by default."
  type        = string
  default     = "* * * * *"

  validation {
    condition     = length(split(" ", var.sweep_schedule)) == 5
    error_message = "sweep_schedule must be a cron schedule of 5 fields."
  }
}

variable "timers_max_dispatches_per_second" {
  description = "The most timer calls per second the Cloud Tasks queue makes (500 at most)."
  type        = number
  default     = 500

  validation {
    condition     = var.timers_max_dispatches_per_second > 0 && var.timers_max_dispatches_per_second <= 500
    error_message = "timers_max_dispatches_per_second must be above 0 and at most 500."
  }
}

variable "timers_max_concurrent_dispatches" {
  description = "The most timer calls in flight at once."
  type        = number
  default     = 1000

  validation {
    condition     = var.timers_max_concurrent_dispatches >= 1 && var.timers_max_concurrent_dispatches <= 5000
    error_message = "timers_max_concurrent_dispatches must be from 1 to 5000."
  }
}

variable "token_secret_generation" {
  description = "Bump to rotate SWARMING_TOKEN_SECRET: the bot, run and bootstrap tokens signed before it fail."
  type        = number
  default     = 1

  validation {
    condition = (
      var.token_secret_generation >= 1 && floor(var.token_secret_generation) == var.token_secret_generation
    )
    error_message = "token_secret_generation must be a whole number from 1."
  }
}
