# Firestore indexes. Every composite index the store's queries need
# (functions/store.py COMPOSITE_INDEXES; a test checks this file against it),
# with the queue key in front of the ever-growing order key (DESIGN.md §11),
# and no single-field index on fields that only grow.

resource "google_firestore_index" "task_to_run_queue_order" {
  project    = var.project
  database   = "(default)"
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

# Fields that only grow (timestamps, order keys) get no single-field index: it
# would be a hot spot at the end of the key range. Queries over them go
# through the composite index above.
resource "google_firestore_field" "no_single_field_index" {
  for_each = {
    task_to_run_order_key     = ["task_to_run", "order_key"]
    task_to_run_expiration_ts = ["task_to_run", "expiration_ts"]
    task_results_created_ts   = ["task_results", "created_ts"]
    task_results_modified_ts  = ["task_results", "modified_ts"]
    task_results_started_ts   = ["task_results", "started_ts"]
    task_results_completed_ts = ["task_results", "completed_ts"]
    task_runs_started_ts      = ["task_runs", "started_ts"]
    bots_last_seen            = ["bots", "last_seen"]
    bots_first_seen           = ["bots", "first_seen"]
    task_queues_expiry_ts     = ["task_queues", "expiry_ts"]
    task_output_data          = ["task_output", "data"]
  }

  project    = var.project
  database   = "(default)"
  collection = each.value[0]
  field      = each.value[1]

  index_config {}
}
