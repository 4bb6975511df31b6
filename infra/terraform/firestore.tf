# The Firestore database, Native mode, and every composite index the store's
# queries need (functions/store.py COMPOSITE_INDEXES; a test checks this file
# against it), with the queue key in front of the ever-growing order key
# (DESIGN.md §11), and no single-field index on fields that only grow.

resource "google_firestore_database" "default" {
  name        = "(default)"
  location_id = local.firestore_location
  type        = "FIRESTORE_NATIVE"
  point_in_time_recovery_enablement = (
    var.firestore_point_in_time_recovery ? "POINT_IN_TIME_RECOVERY_ENABLED" : "POINT_IN_TIME_RECOVERY_DISABLED"
  )
  delete_protection_state = (
    var.firestore_delete_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  )
  # terraform destroy deletes it, once delete protection is off.
  deletion_policy = "DELETE"

  depends_on = [google_project_service.apis]
}

resource "google_firestore_index" "task_to_run_queue_order" {
  project    = var.project
  database   = google_firestore_database.default.name
  collection = "task_to_run"

  fields {
    field_path = "queue_key"
    order      = "ASCENDING"
  }

  fields {
    field_path = "order_key"
    order      = "ASCENDING"
  }
}

resource "google_firestore_index" "task_queues_pool_updated" {
  project    = var.project
  database   = google_firestore_database.default.name
  collection = "task_queues"

  fields {
    field_path = "pool"
    order      = "ASCENDING"
  }

  fields {
    field_path = "updated_ts"
    order      = "ASCENDING"
  }
}

resource "google_firestore_index" "task_results_bot_started" {
  project    = var.project
  database   = google_firestore_database.default.name
  collection = "task_results"

  fields {
    field_path = "bot_id"
    order      = "ASCENDING"
  }

  fields {
    field_path = "started_ts"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "task_results_parent_state" {
  project    = var.project
  database   = google_firestore_database.default.name
  collection = "task_results"

  fields {
    field_path = "parent_task_id"
    order      = "ASCENDING"
  }

  fields {
    field_path = "state"
    order      = "ASCENDING"
  }
}

resource "google_firestore_index" "task_results_waiting_state" {
  project    = var.project
  database   = google_firestore_database.default.name
  collection = "task_results"

  fields {
    field_path = "waiting_on"
    order      = "ASCENDING"
  }

  fields {
    field_path = "state"
    order      = "ASCENDING"
  }
}

# Waiters whose owner ended without releasing them (cron_sweep).
resource "google_firestore_index" "task_results_state_waiting" {
  project    = var.project
  database   = google_firestore_database.default.name
  collection = "task_results"

  fields {
    field_path = "state"
    order      = "ASCENDING"
  }

  fields {
    field_path = "waiting_on"
    order      = "ASCENDING"
  }
}

resource "google_firestore_index" "task_results_tags_state" {
  project    = var.project
  database   = google_firestore_database.default.name
  collection = "task_results"

  fields {
    field_path   = "tags"
    array_config = "CONTAINS"
  }

  fields {
    field_path = "state"
    order      = "ASCENDING"
  }
}

resource "google_firestore_index" "task_to_run_shard_expiration" {
  project    = var.project
  database   = google_firestore_database.default.name
  collection = "task_to_run"

  fields {
    field_path = "shard"
    order      = "ASCENDING"
  }

  fields {
    field_path = "expiration_ts"
    order      = "ASCENDING"
  }
}

resource "google_firestore_index" "task_results_shard_state_modified" {
  project    = var.project
  database   = google_firestore_database.default.name
  collection = "task_results"

  fields {
    field_path = "shard"
    order      = "ASCENDING"
  }

  fields {
    field_path = "state"
    order      = "ASCENDING"
  }

  fields {
    field_path = "modified_ts"
    order      = "ASCENDING"
  }
}

resource "google_firestore_index" "bot_events_bot_ts" {
  project    = var.project
  database   = google_firestore_database.default.name
  collection = "bot_events"

  fields {
    field_path = "bot_id"
    order      = "ASCENDING"
  }

  fields {
    field_path = "ts"
    order      = "DESCENDING"
  }
}

# Task lists (functions/task_query.py): a tag in front, or with no tag the four
# query shards (no single hot range at the end of a state's range), then the
# outcome (or any), and the time, newest first.
resource "google_firestore_index" "task_results_tag_created" {
  project    = var.project
  database   = google_firestore_database.default.name
  collection = "task_results"

  fields {
    field_path   = "tags"
    array_config = "CONTAINS"
  }

  fields {
    field_path = "created_ts"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "task_results_tag_outcome_created" {
  project    = var.project
  database   = google_firestore_database.default.name
  collection = "task_results"

  fields {
    field_path   = "tags"
    array_config = "CONTAINS"
  }

  fields {
    field_path = "outcome"
    order      = "ASCENDING"
  }

  fields {
    field_path = "created_ts"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "task_results_qshard_created" {
  project    = var.project
  database   = google_firestore_database.default.name
  collection = "task_results"

  fields {
    field_path = "query_shard"
    order      = "ASCENDING"
  }

  fields {
    field_path = "created_ts"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "task_results_qshard_outcome_created" {
  project    = var.project
  database   = google_firestore_database.default.name
  collection = "task_results"

  fields {
    field_path = "query_shard"
    order      = "ASCENDING"
  }

  fields {
    field_path = "outcome"
    order      = "ASCENDING"
  }

  fields {
    field_path = "created_ts"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "task_results_tag_started" {
  project    = var.project
  database   = google_firestore_database.default.name
  collection = "task_results"

  fields {
    field_path   = "tags"
    array_config = "CONTAINS"
  }

  fields {
    field_path = "started_ts"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "task_results_tag_outcome_started" {
  project    = var.project
  database   = google_firestore_database.default.name
  collection = "task_results"

  fields {
    field_path   = "tags"
    array_config = "CONTAINS"
  }

  fields {
    field_path = "outcome"
    order      = "ASCENDING"
  }

  fields {
    field_path = "started_ts"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "task_results_qshard_started" {
  project    = var.project
  database   = google_firestore_database.default.name
  collection = "task_results"

  fields {
    field_path = "query_shard"
    order      = "ASCENDING"
  }

  fields {
    field_path = "started_ts"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "task_results_qshard_outcome_started" {
  project    = var.project
  database   = google_firestore_database.default.name
  collection = "task_results"

  fields {
    field_path = "query_shard"
    order      = "ASCENDING"
  }

  fields {
    field_path = "outcome"
    order      = "ASCENDING"
  }

  fields {
    field_path = "started_ts"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "task_results_tag_completed" {
  project    = var.project
  database   = google_firestore_database.default.name
  collection = "task_results"

  fields {
    field_path   = "tags"
    array_config = "CONTAINS"
  }

  fields {
    field_path = "completed_ts"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "task_results_tag_outcome_completed" {
  project    = var.project
  database   = google_firestore_database.default.name
  collection = "task_results"

  fields {
    field_path   = "tags"
    array_config = "CONTAINS"
  }

  fields {
    field_path = "outcome"
    order      = "ASCENDING"
  }

  fields {
    field_path = "completed_ts"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "task_results_qshard_completed" {
  project    = var.project
  database   = google_firestore_database.default.name
  collection = "task_results"

  fields {
    field_path = "query_shard"
    order      = "ASCENDING"
  }

  fields {
    field_path = "completed_ts"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "task_results_qshard_outcome_completed" {
  project    = var.project
  database   = google_firestore_database.default.name
  collection = "task_results"

  fields {
    field_path = "query_shard"
    order      = "ASCENDING"
  }

  fields {
    field_path = "outcome"
    order      = "ASCENDING"
  }

  fields {
    field_path = "completed_ts"
    order      = "DESCENDING"
  }
}

# Expired documents are deleted by Firestore's TTL policies (within about a
# day; readers ignore what expired already).
resource "google_firestore_field" "ttl" {
  for_each = {
    bot_events     = "bot_events"
    bot_dimensions = "bot_dimensions"
    request_uuids  = "request_uuids"
    ui_signins     = "ui_signins"
  }

  project    = var.project
  database   = google_firestore_database.default.name
  collection = each.value
  field      = "expire_at"

  ttl_config {}
  index_config {}
}

# Fields that only grow (timestamps, order keys) get no single-field index: it
# would be a hot spot at the end of the key range. Queries over them go
# through the composite indexes above. Nor do big maps nobody filters on (a
# bot's free-form state, the liveness shards' bot → time maps), nor a task's
# request (its JSON text, read whole with its task).
resource "google_firestore_field" "no_single_field_index" {
  for_each = {
    task_to_run_order_key     = ["task_to_run", "order_key"]
    task_to_run_expiration_ts = ["task_to_run", "expiration_ts"]
    task_results_created_ts   = ["task_results", "created_ts"]
    task_results_modified_ts  = ["task_results", "modified_ts"]
    task_results_started_ts   = ["task_results", "started_ts"]
    task_results_completed_ts = ["task_results", "completed_ts"]
    task_results_request      = ["task_results", "request"]
    bots_updated_ts           = ["bots", "updated_ts"]
    bots_first_seen_ts        = ["bots", "first_seen_ts"]
    bots_state                = ["bots", "state"]
    bot_liveness_seen         = ["bot_liveness", "seen"]
    bot_liveness_dead         = ["bot_liveness", "dead"]
    task_queues_expiry_ts     = ["task_queues", "expiry_ts"]
    task_output_data          = ["task_output", "data"]
    task_output_spans         = ["task_output", "spans"]
  }

  project    = var.project
  database   = google_firestore_database.default.name
  collection = each.value[0]
  field      = each.value[1]

  index_config {}
}
