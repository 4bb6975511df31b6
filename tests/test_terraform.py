"""The deployment (infra/terraform) against the code it deploys, offline: no
provider is downloaded and no project is reached, so the Terraform files are
read as HCL (python-hcl2) and their expressions compared with what the code
expects; `terraform fmt` and checkov run over them as they are."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest
from click.testing import CliRunner
from hcl2 import SerializationOptions

from client.config_cli import config
from functions import bot_code, bot_liveness, budget, config_source, settings
from functions.endpoints import FUNCTIONS
from functions.permissions import Action
from local import release, stack
from shared import cas, service_config

REPO = Path(__file__).resolve().parents[1]
TERRAFORM_DIR = REPO / "infra" / "terraform"
CONFIG_DIR = REPO / "infra" / "config"
#: Installed by `make test` in a venv of its own (Makefile: CHECKOV).
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
TERRAFORM = shutil.which("terraform")
_READ = SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)

FUNCTIONS_SA = "${google_service_account.functions.email}"
TIMERS_SA = "${google_service_account.timers.email}"
BASE_URL = "${local.base_url}"


class Terraform:
    """Every block of the directory's .tf files, merged as Terraform merges them."""

    def __init__(self, directory: Path):
        self.resources: dict[tuple[str, str], dict[str, Any]] = {}
        self.locals: dict[str, Any] = {}
        self.variables: dict[str, dict[str, Any]] = {}
        self.outputs: dict[str, dict[str, Any]] = {}
        self.settings: dict[str, Any] = {}
        for path in sorted(directory.glob("*.tf")):
            parsed = hcl2.loads(path.read_text(encoding="utf-8"), serialization_options=_READ)
            for block in parsed.get("resource", []):
                for kind, named in block.items():
                    for name, body in named.items():
                        self.resources[kind, name] = body
            for block in parsed.get("locals", []):
                self.locals.update(block)
            for kind, into in (("variable", self.variables), ("output", self.outputs)):
                for block in parsed.get(kind, []):
                    into.update(block)
            for block in parsed.get("terraform", []):
                self.settings.update(block)

    def resource(self, kind: str, name: str) -> dict[str, Any]:
        return self.resources[kind, name]

    def of_kind(self, kind: str) -> dict[str, dict[str, Any]]:
        return {name: body for (k, name), body in self.resources.items() if k == kind}


def block(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The one nested block `name` of a body."""
    (only,) = body[name]
    return only


@pytest.fixture(scope="module")
def tf() -> Terraform:
    return Terraform(TERRAFORM_DIR)


@pytest.fixture(scope="module")
def function(tf: Terraform) -> dict[str, Any]:
    return tf.resource("google_cloudfunctions2_function", "function")


def test_one_function_per_registry_entry_each_running_its_own_entry_point(tf, function):
    assert tf.locals["functions"] == [f.name for f in FUNCTIONS]
    assert function["for_each"] == "${toset(local.functions)}"
    assert function["name"] == "${each.key}"
    build = block(function, "build_config")
    assert build["entry_point"] == "${each.key}"
    assert build["runtime"] == "python311"
    assert block(block(build, "source"), "storage_source")["object"] == "${google_storage_bucket_object.source.name}"


def test_the_source_archive_is_named_by_its_content(tf):
    source = tf.resource("google_storage_bucket_object", "source")
    assert source["name"] == "sources/${data.archive_file.source.output_sha256}.zip"
    assert source["source"] == "${data.archive_file.source.output_path}"


def test_every_function_has_what_a_deployed_function_needs_and_nothing_the_code_does_not_read(tf, function):
    service = block(function, "service_config")
    # functions-framework serves as many requests at once as the instance takes.
    assert service["environment_variables"] == \
        "${merge(local.environment, {THREADS = tostring(local.concurrency[each.key])})}"
    secret = block(service, "secret_environment_variables")
    names = set(tf.locals["environment"]) | {secret["key"], "THREADS"}
    assert not set(settings.DEPLOYED_VARIABLES) - names, "a deployed function would refuse to start"
    assert not names - set(settings.VARIABLES) - set(settings.FRAMEWORK_VARIABLES), "a variable no code reads"


def test_the_token_secret_comes_from_secret_manager_at_a_pinned_version(tf, function):
    secret = block(block(function, "service_config"), "secret_environment_variables")
    assert secret["key"] == "SWARMING_TOKEN_SECRET"
    assert secret["key"] not in tf.locals["environment"]
    assert secret["secret"] == "${google_secret_manager_secret.token_secret.secret_id}"
    assert tf.resource("google_secret_manager_secret", "token_secret")["secret_id"] == "swarming-token-secret"
    # A number, not "latest": every instance of a deployment signs with one key.
    assert secret["version"] == "${google_secret_manager_secret_version.token_secret.version}"
    version = tf.resource("google_secret_manager_secret_version", "token_secret")
    assert version["secret_data_wo"] == "${ephemeral.random_password.token_secret.result}"
    assert "secret_data" not in version, "the key would be in the state"


def test_the_environment_names_the_deployed_resources(tf):
    env = tf.locals["environment"]
    assert env["SWARMING_PROJECT"] == "${var.project}"
    assert env["SWARMING_BUCKET"] == "${google_storage_bucket.swarming.name}"
    assert env["SWARMING_FUNCTIONS_URL"] == BASE_URL
    assert tf.locals["base_url"] == "https://${var.region}-${var.project}.cloudfunctions.net"
    assert env["SWARMING_SERVICE_ACCOUNT"] == TIMERS_SA
    assert env["SWARMING_TASKS_QUEUE"] == "${local.timers_queue}"
    assert tf.locals["timers_queue"] == (
        "projects/${var.project}/locations/${var.region}/queues/${google_cloud_tasks_queue.timers.name}")
    assert tf.resource("google_cloud_tasks_queue", "timers")["location"] == "${var.region}"
    assert env["SWARMING_SERVER_VERSION"] == "${var.server_version}"
    assert env["SWARMING_TRUSTED_PROXY_HOPS"] == "1"  # Google's front end appends the client's address.
    assert env["SWARMING_BOT_ZIP"] == "${local.bot_zip}"
    assert tf.locals["bot_zip"] == release.BOT_ZIP
    assert f"/{release.BOT_VERSION}" in tf.locals["bot_version"]


def test_the_cron_calls_cron_sweep_as_the_account_the_functions_take_for_the_service(tf):
    job = tf.resource("google_cloud_scheduler_job", "cron_sweep")
    target = block(job, "http_target")
    assert target["uri"] == f"{BASE_URL}/cron_sweep"
    assert target["http_method"] == "POST"
    assert target["body"] == '${base64encode("{}")}'
    assert target["headers"] == {"Content-Type": "application/json"}
    oidc = block(target, "oidc_token")
    assert oidc["audience"] == f"{BASE_URL}/cron_sweep"
    assert oidc["service_account_email"] == TIMERS_SA == tf.locals["environment"]["SWARMING_SERVICE_ACCOUNT"]
    # The local stack's stand-in account has the same name.
    assert tf.resource("google_service_account", "timers")["account_id"] == stack.SERVICE_ACCOUNT.split("@")[0]


def test_every_function_a_url_names_is_deployed(tf):
    """The cron's target and the bootstrap commands the outputs print."""
    text = json.dumps([list(tf.resources.values()), tf.outputs])
    named = set(re.findall(r"\$\{local\.base_url\}/(\w+)", text))
    assert named >= {"cron_sweep", "server_token", "bot_bootstrap"}
    assert named <= set(tf.locals["functions"])


def test_the_timers_queue_retries_as_the_local_stacks(tf):
    retry = block(tf.resource("google_cloud_tasks_queue", "timers"), "retry_config")
    assert retry == {"max_attempts": stack.TIMERS_MAX_ATTEMPTS, "min_backoff": f"{stack.TIMERS_MIN_BACKOFF_SECS}s",
                     "max_backoff": f"{stack.TIMERS_MAX_BACKOFF_SECS}s"}


def test_the_bucket_is_private_unversioned_and_forgets_unused_cas_blobs(tf):
    bucket = tf.resource("google_storage_bucket", "swarming")
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert block(bucket, "versioning") == {"enabled": False}
    (rule,) = bucket["lifecycle_rule"]
    assert block(rule, "action") == {"type": "Delete"}
    assert block(rule, "condition") == {"days_since_custom_time": "${var.cas_ttl_days}",
                                        "matches_prefix": [cas.OBJECT_PREFIX]}


def test_the_objects_terraform_writes_are_where_the_functions_read_them(tf):
    objects = tf.of_kind("google_storage_bucket_object")
    assert objects["bot_code"]["name"] == bot_code.object_name("${local.bot_version}")
    assert objects["config"]["name"] == config_source.OBJECT
    assert {o["bucket"] for o in objects.values()} == {"${google_storage_bucket.swarming.name}"}


def test_the_configuration_pushed_at_deploy_is_one_the_functions_accept(tf):
    """Terraform's files of infra/config, with the version `swarming config
    validate --json` printed, make the document the functions read."""
    files_expr = tf.locals["config_files"]
    names = re.findall(r'"([\w.]+\.toml)"', files_expr)
    pattern = re.search(r'fileset\(local\.config_dir, "([^"]+)"\)', files_expr).group(1)
    assert names == list(service_config.TOML_FILES)
    chosen = names + sorted(p.relative_to(CONFIG_DIR).as_posix() for p in CONFIG_DIR.glob(pattern))
    files = service_config.read_dir(CONFIG_DIR)
    assert sorted(chosen) == sorted(files)
    printed = CliRunner().invoke(config, ["validate", "--json", str(CONFIG_DIR)])
    assert printed.exit_code == 0, printed.output
    assert tf.locals["config_version"] == "${jsondecode(file(local.config_version_file)).version}"
    document = {"files": files, "version": json.loads(printed.output)["version"]}
    assert service_config.from_wire(document) == files


def test_the_hot_path_keeps_warm_instances_that_serve_many_requests_at_once(tf, function):
    assert set(tf.locals["hot_path"]) == {"bot_poll", "bot_claim", "bot_task_update"}
    assert set(tf.locals["hot_path"]) <= set(tf.locals["functions"])
    service = block(function, "service_config")
    assert service["min_instance_count"] == "${contains(local.hot_path, each.key) ? var.hot_path_min_instances : 0}"
    assert service["max_instance_request_concurrency"] == "${local.concurrency[each.key]}"
    assert tf.variables["function_concurrency"]["default"] > 1
    assert float(tf.variables["function_cpu"]["default"]) >= 1  # Concurrency above 1 needs a whole vCPU.


def test_long_requests_stop_well_within_the_timeout(tf):
    """cron_sweep and tasks_cancel spend a third of the timeout at most, the rest is room to finish."""
    timeout = tf.variables["function_timeout_seconds"]
    assert budget.REQUEST_SECS * 3 <= timeout["default"]
    # No timeout the variable accepts leaves a long request less than its budget again to finish.
    lowest = re.search(r"var\.function_timeout_seconds >= (\d+)", timeout["validation"][0]["condition"])
    assert lowest and int(lowest.group(1)) >= budget.REQUEST_SECS * 2


def test_no_liveness_document_takes_a_write_a_second_at_the_most_instances_deployed(tf):
    """Every function bots call may flush sightings, each instance into one slot every FLUSH_SECS."""
    bot_functions = [f for f in FUNCTIONS if f.action in (Action.BOT_HANDSHAKE, Action.BOT_CALL, Action.REPORT_RUN)]
    instances = len(bot_functions) * tf.variables["function_max_instances"]["default"]
    assert instances / (bot_liveness.FLUSH_SECS * bot_liveness.SLOTS) <= 1


def _bindings(tf: Terraform, member: str) -> set[tuple[str, str, str]]:
    """(kind, role, the resource it is bound to) of every IAM binding of `member`."""
    found = set()
    for (kind, _), body in tf.resources.items():
        if kind.endswith("_iam_member") and body["member"] in (member, f"serviceAccount:{member}"):
            scope = next(body[k] for k in ("bucket", "name", "service_account_id", "secret_id", "repository",
                                           "service", "project") if k in body)
            found.add((kind, body["role"], scope))
    return found


def test_the_runtime_account_holds_each_role_on_the_narrowest_resource(tf, function):
    assert block(function, "service_config")["service_account_email"] == FUNCTIONS_SA
    member = tf.locals["functions_member"]
    assert member == f"serviceAccount:{FUNCTIONS_SA}"
    assert _bindings(tf, "${local.functions_member}") == {
        ("google_project_iam_member", "roles/datastore.user", "${var.project}"),
        ("google_storage_bucket_iam_member", "roles/storage.objectAdmin", "${google_storage_bucket.swarming.name}"),
        ("google_cloud_tasks_queue_iam_member", "roles/cloudtasks.enqueuer", "${google_cloud_tasks_queue.timers.name}"),
        # Cloud Tasks mints the timers' OIDC tokens only for a creator that may act as their account.
        ("google_service_account_iam_member", "roles/iam.serviceAccountUser", "${google_service_account.timers.name}"),
        # signBlob as itself: the CAS URLs.
        ("google_service_account_iam_member", "roles/iam.serviceAccountTokenCreator",
         "${google_service_account.functions.name}"),
        ("google_secret_manager_secret_iam_member", "roles/secretmanager.secretAccessor",
         "${google_secret_manager_secret.token_secret.id}"),
    }


def test_the_timers_and_bots_accounts_hold_no_role_and_only_invocation_is_public(tf):
    for account in ("timers", "bots"):
        email = f"${{google_service_account.{account}.email}}"
        assert not _bindings(tf, email), f"the {account} account needs no role"
    public = [(kind, body["role"]) for (kind, _), body in tf.resources.items()
              if kind.endswith("_iam_member") and body["member"] in ("allUsers", "allAuthenticatedUsers")]
    assert public == [("google_cloud_run_service_iam_member", "roles/run.invoker")]
    invoker = tf.resource("google_cloud_run_service_iam_member", "invoker")
    assert invoker["for_each"] == "${google_cloudfunctions2_function.function}"


def test_variables_are_described_and_the_minimal_example_sets_the_required_ones(tf):
    assert all(v.get("description") for v in tf.variables.values())
    required = {name for name, v in tf.variables.items() if "default" not in v}
    assert required == {"project", "server_version"}
    example = hcl2.loads((TERRAFORM_DIR / "examples" / "minimal.tfvars").read_text(), serialization_options=_READ)
    assert set(example) == required


def test_providers_and_terraform_are_pinned_and_the_state_is_in_cloud_storage(tf):
    assert tf.settings["required_version"].startswith(">= 1.11")  # Write-only attributes.
    (providers,) = tf.settings["required_providers"]
    assert {"google", "archive", "random"} <= set(providers)
    for provider in providers.values():
        assert re.fullmatch(r"\d+\.\d+\.\d+", provider["version"]), provider
    assert "gcs" in block(tf.settings, "backend")


@pytest.mark.skipif(TERRAFORM is None, reason="terraform is not installed (infra/terraform/README.md)")
def test_terraform_fmt_finds_nothing_to_change():
    done = subprocess.run([TERRAFORM, "fmt", "-check", "-recursive", "-diff"], cwd=TERRAFORM_DIR,
                          env={**os.environ, "TF_CLI_CONFIG_FILE": "/dev/null"}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_checkov_passes_with_only_the_documented_skips():
    assert CHECKOV.exists(), f"{CHECKOV} is missing: `make test` installs it"
    done = subprocess.run([str(CHECKOV), "-d", str(TERRAFORM_DIR), "--config-file",
                           str(TERRAFORM_DIR / ".checkov.yaml")],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "Failed checks: 0" in done.stdout


def test_each_checkov_skip_says_why():
    lines = (TERRAFORM_DIR / ".checkov.yaml").read_text().splitlines()
    skips = [i for i, line in enumerate(lines) if re.match(r"\s*- CKV_", line)]
    assert skips
    assert all(lines[i - 1].lstrip().startswith("#") for i in skips)


def test_bot_poll_holds_many_polls_each_within_its_timeout(tf, function):
    """The long poll (functions/long_poll.py): bot_poll alone has its own
    concurrency and timeout, the hold leaves it 30 s to answer, and every
    deployed instance is told the hold."""
    assert tf.locals["long_poll"] == "bot_poll"
    pick = "f => f == local.long_poll ? var.poll_{0} : var.function_{0}"
    assert tf.locals["concurrency"] == "${{for f in local.functions : " + pick.format("concurrency") + "}}"
    assert tf.locals["timeout"] == "${{for f in local.functions : " + pick.format("timeout_seconds") + "}}"
    assert block(function, "service_config")["timeout_seconds"] == "${local.timeout[each.key]}"
    assert tf.locals["environment"]["SWARMING_POLL_HOLD_SECS"] == "${tostring(var.poll_hold_secs)}"
    hold, timeout = tf.variables["poll_hold_secs"]["default"], tf.variables["poll_timeout_seconds"]["default"]
    assert 0 < hold and hold + 30 <= timeout
    assert hold == settings.Settings.__dataclass_fields__["poll_hold_secs"].default
    assert tf.variables["poll_concurrency"]["default"] == 1000
    precondition = block(block(function, "lifecycle"), "precondition")
    assert precondition["condition"] == "${var.poll_hold_secs + 30 <= var.poll_timeout_seconds}"
