"""The deployed artifact runs: the release (`local.release`) is zipped as
Terraform's `archive_file` zips it, unpacked into an empty directory, and
every function of the registry is started from there, each in its own
functions-framework process on an interpreter that cannot see this
repository, with a deployed function's environment (`K_SERVICE`), behind a
proxy that strips the function's name as Cloud Functions does. A real bot,
bootstrapped as a new host, runs a task through those processes.

Also at a real start: a release missing a file, and a deployment missing a
setting, fail before serving, naming what is missing.
"""

import base64
import io
import json
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from functions.config_source import ConfigSource
from functions.endpoints import FUNCTIONS
from functions.settings import DEPLOYED_VARIABLES
from local import cloud_tasks_emulator, processes, release
from local import stack as local_stack
from local.function_processes import FunctionProcesses, isolated_python
from shared import service_config
from shared.bot_archive import digest, entries_of
from tests.conftest import CONFIG_DIR, PEOPLE, TIMERS_ACCOUNT, TOKEN_SECRET
from tests.builders import task_body

BOT_ID = "e2e-release"
WAIT_SECS = 90.0


@pytest.fixture(scope="module")
def python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return isolated_python(tmp_path_factory.mktemp("venv") / "venv")


@pytest.fixture(scope="module")
def project(emulator_env: dict[str, str], cloud_tasks: cloud_tasks_emulator.Emulator) -> dict[str, str]:
    """A Firestore project, a bucket with the tests' configuration and a
    timers queue of this module's own: what `terraform apply` creates."""
    name = f"release-{uuid.uuid4().hex[:10]}"
    bucket = storage.Client(project=name, credentials=AnonymousCredentials()).create_bucket(name)
    ConfigSource(lambda: bucket).push(service_config.read_dir(CONFIG_DIR))
    queue = f"projects/{name}/locations/local/queues/timers"
    cloud_tasks_emulator.client_for(cloud_tasks.host).create_queue(
        parent=queue.rsplit("/queues/", 1)[0], queue={"name": queue})
    return {**emulator_env, "SWARMING_PROJECT": name, "SWARMING_BUCKET": name, "SWARMING_TASKS_QUEUE": queue,
            "SWARMING_TASKS_EMULATOR_HOST": cloud_tasks.host, "SWARMING_SERVICE_ACCOUNT": TIMERS_ACCOUNT,
            "SWARMING_ID_TOKEN_CERTS_URL": cloud_tasks.certs_url, "SWARMING_TOKEN_SECRET": TOKEN_SECRET,
            "SWARMING_BOT_ZIP": release.BOT_ZIP, "SWARMING_TRUSTED_PROXY_HOPS": "1",
            "SWARMING_SERVER_VERSION": "release-test"}


def unpacked_release(tmp: Path, server_url: str) -> Path:
    """The release for `server_url`, through its archive, in an empty directory."""
    release.build(tmp / "build", server_url, "release-test")
    deployed = tmp / "deployed"
    deployed.mkdir()
    with zipfile.ZipFile(io.BytesIO(release.archive(tmp / "build"))) as archive:
        archive.extractall(deployed)
    return deployed


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, project: dict[str, str],
             python: Path) -> Iterator[tuple[FunctionProcesses, str]]:
    tmp = tmp_path_factory.mktemp("release")
    port = processes.free_port()
    base_url = f"http://127.0.0.1:{port}"
    source = unpacked_release(tmp, base_url)
    functions = FunctionProcesses(source, [f.name for f in FUNCTIONS],
                                  {**project, "SWARMING_FUNCTIONS_URL": base_url}, python, tmp / "logs")
    try:
        functions.start()
        assert functions.serve_proxy(port) == base_url
        yield functions, base_url
    finally:
        functions.stop()


def call(base_url: str, function: str, body: dict[str, Any], token: str) -> dict[str, Any]:
    response = requests.post(f"{base_url}/{function}", json=body, timeout=30,
                             headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, f"{function}: {response.status_code} {response.text}"
    return response.json()


def wait_for(what: str, check, timeout: float = WAIT_SECS) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"no {what} within {timeout:.0f} s")


def test_a_real_bot_runs_a_task_through_the_deployed_functions(deployed, cloud_tasks, tmp_path):
    functions, base_url = deployed
    admin = cloud_tasks.signer.token(PEOPLE["admin"], base_url, time.time())
    user = cloud_tasks.signer.token(PEOPLE["user"], base_url, time.time())
    bot_dir = tmp_path / "bot"
    bot_dir.mkdir()
    bot = processes.spawn(["sh", "-c", local_stack.bootstrap_script(base_url, admin)], tmp_path / "bot.log",
                          cwd=bot_dir, env={"SWARMING_BOT_ID": BOT_ID, "PYTHONUNBUFFERED": "1"})
    try:
        body = task_body(["python3", "-c", "print('hello from the release')"], {"pool": "e2e"})
        task_id = call(base_url, "tasks_new", body, user)["task_id"]
        result = wait_for("completion", lambda: (lambda r: r if r["state"] == "COMPLETED" else None)(
            call(base_url, "task_result", {"task_id": task_id}, user)))
        assert result["exit_code"] == 0 and result["bot_id"] == BOT_ID
        stdout = call(base_url, "task_stdout", {"task_id": task_id}, user)
        assert base64.b64decode(stdout["output"]) == b"hello from the release\n"
        served = call(base_url, "bot_get", {"bot_id": BOT_ID}, admin)["version"]
        assert served == (functions.source / release.BOT_VERSION).read_text().strip()
    finally:
        processes.stop(bot.pid)
    # Each function logs as Cloud Logging reads it: a JSON object per line, with its name, from INFO up.
    lines = [json.loads(line) for line in functions.log("bot_code").splitlines() if line.startswith("{")]
    assert [line for line in lines if line["severity"] == "INFO" and line["function"] == "bot_code"
            and line["message"].startswith(f"built bot code {served}")]


def test_the_release_holds_what_a_function_loads_and_the_zip_of_its_url(tmp_path):
    source = unpacked_release(tmp_path, "https://us-central1-p.cloudfunctions.net")
    names = {p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()}
    assert {"main.py", "requirements.txt", release.BOT_ZIP, release.BOT_VERSION} <= names
    assert not any(name.startswith(("bot/", "local/", "client/", "tests/")) for name in names)
    entries = entries_of(source / release.BOT_ZIP)
    assert json.loads(entries["config.json"])["server"] == "https://us-central1-p.cloudfunctions.net"
    assert digest(entries) == (source / release.BOT_VERSION).read_text().strip()
    # The same sources give the same archive, byte for byte: Terraform redeploys on a change only.
    again = unpacked_release(tmp_path / "again", "https://us-central1-p.cloudfunctions.net")
    assert release.archive(source) == release.archive(again)


def start_one(tmp: Path, source: Path, env: dict[str, str], python: Path) -> str:
    """Starts `bot_poll` alone; returns how it failed."""
    functions = FunctionProcesses(source, ["bot_poll"], env, python, tmp / "logs")
    with pytest.raises(processes.StartError):
        functions.start()
    functions.stop()
    return functions.log("bot_poll")


def test_a_release_missing_a_file_fails_at_start(tmp_path, project, python):
    source = unpacked_release(tmp_path, "http://127.0.0.1:9")
    (source / "shared" / "manifest.py").unlink()
    log = start_one(tmp_path, source, {**project, "SWARMING_FUNCTIONS_URL": "http://127.0.0.1:9"}, python)
    assert "No module named 'shared.manifest'" in log


def test_a_deployed_function_missing_settings_fails_at_start_naming_each(tmp_path, project, python):
    source = unpacked_release(tmp_path, "http://127.0.0.1:9")
    log = start_one(tmp_path, source, {**project, **{name: "" for name in DEPLOYED_VARIABLES}}, python)
    assert [name for name in DEPLOYED_VARIABLES if f"{name} is not set" not in log] == []
