output "base_url" {
  description = "The base URL of the service: every function is BASE_URL/<name> (the CLI's --server)."
  value       = local.base_url
}

output "bootstrap_token_command" {
  description = "Prints a bootstrap token (valid an hour): run it as a global admin of the configuration."
  value = join(" ", [
    "curl -sSf -X POST -H \"Authorization: Bearer $(gcloud auth print-identity-token)\"",
    "-H 'Content-Type: application/json' -d '{}' ${local.base_url}/server_token",
    "| python3 -c 'import json, sys; print(json.load(sys.stdin)[\"bootstrap_token\"])'",
  ])
}

output "bot_bootstrap_command" {
  description = "Starts a bot on a new host, in the bot's directory, with BOOTSTRAP_TOKEN set to a bootstrap token."
  value       = "curl -sSf \"${local.base_url}/bot_bootstrap?token=$BOOTSTRAP_TOKEN\" | sh"
}

output "bucket" {
  description = "The bucket of the bot code, the CAS, the service configuration and the function sources."
  value       = google_storage_bucket.swarming.name
}

output "service_accounts" {
  description = "The emails of the service's accounts: bots.toml names the bots' in require_service_account."
  value = {
    functions = google_service_account.functions.email
    timers    = google_service_account.timers.email
    bots      = google_service_account.bots.email
    build     = google_service_account.build.email
  }
}

output "bot_version" {
  description = "The digest of the release's bot zip: every bot updates to it."
  value       = local.bot_version
}

output "config_version" {
  description = "The version of the service configuration this deploy pushed."
  value       = local.config_version
}
