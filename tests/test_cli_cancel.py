"""`swarming cancel`, `cancel-tasks` and `request-show` against the real gateway and emulators."""

import json

import pytest
from click.testing import CliRunner

from client.cli import cli
from tests.builders import bot_body, task_body

#: The tests' user administers the tests' pools.
pytestmark = pytest.mark.usefixtures("as_user")


def _swarming(base_url, *args):
    return CliRunner().invoke(cli, [*args[:1], "--server", base_url, *args[1:]])


def _state(api, task_id):
    return api.ok("task_result", {"task_id": task_id})["state"]


def test_cancel_a_pending_task_then_a_running_one_only_with_kill_running(api, base_url):
    pending = api.ok("tasks_new", task_body())["task_id"]
    result = _swarming(base_url, "cancel", pending)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{pending}: canceled\n" and _state(api, pending) == "CANCELED"

    again = _swarming(base_url, "cancel", pending)
    assert again.exit_code == 1 and f"error: {pending} was not canceled: it has ended" in again.stderr

    running = api.ok("tasks_new", task_body())["task_id"]
    api.ok("bot_handshake", bot_body(), role="bot")
    api.ok("bot_claim", bot_body(task_id=running, slice=0, claim_id="c"), role="bot")
    refused = _swarming(base_url, "cancel", running)
    assert refused.exit_code == 1 and "give --kill-running" in refused.stderr
    killed = _swarming(base_url, "cancel", running, "--kill-running", "--json")
    assert killed.exit_code == 0 and json.loads(killed.stdout) == {"canceled": True, "was_running": True}


def test_cancel_unknown_task_and_bad_id_fail_readably(api, base_url):
    unknown = _swarming(base_url, "cancel", "1" * 15 + "0")
    assert unknown.exit_code == 1 and unknown.stderr.startswith("error: no task")
    bad = _swarming(base_url, "cancel", "not-an-id")
    assert bad.exit_code == 1 and "error:" in bad.stderr and "task_id" in bad.stderr


def test_cancel_tasks_follows_the_cursor_over_every_matching_task(api, base_url, monkeypatch):
    monkeypatch.setattr("client.cancel_cli.PAGE", 2)
    ids = [api.ok("tasks_new", task_body(tags=["ci:nightly", f"n:{i}"]))["task_id"] for i in range(5)]
    other = api.ok("tasks_new", task_body(tags=["ci:weekly"]))["task_id"]

    result = _swarming(base_url, "cancel-tasks", "--tag", "ci:nightly", "--tag", "pool:default", "--json")

    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"matched": 5, "canceled": 5}
    assert "so far" in result.stderr  # progress between pages
    assert {_state(api, i) for i in ids} == {"CANCELED"} and _state(api, other) == "PENDING"
    nothing = _swarming(base_url, "cancel-tasks", "--tag", "ci:nightly", "--tag", "pool:default")
    assert nothing.stdout == "canceled 0 of 0 matching tasks\n"


@pytest.mark.parametrize("args,message", [
    ((), "Missing option '--tag'"),
    (("--tag", "novalue"), "'novalue' is not key:value"),
    (("--tag", ":v"), "':v' is not key:value"),
])
def test_cancel_tasks_bad_flags_are_usage_errors(base_url, args, message):
    result = _swarming("http://127.0.0.1:9", "cancel-tasks", *args)
    assert result.exit_code == 2 and message in result.stderr


def test_request_show_prints_the_request_without_secrets(api, base_url):
    body = task_body(tags=["ci:x"], name="build")
    body["task_slices"][0]["properties"].update(
        env=[{"key": "A", "value": "1"}], relative_cwd="src", secret_bytes="c2VjcmV0",
        caches=[{"name": "git", "path": "cache/git"}])
    task_id = api.ok("tasks_new", body)["task_id"]

    shown = _swarming(base_url, "request-show", task_id, "--json")
    assert shown.exit_code == 0, shown.stderr
    request = json.loads(shown.stdout)
    assert request["name"] == "build" and request["task_slices"][0]["properties"]["relative_cwd"] == "src"
    assert "secret_bytes" not in request["task_slices"][0]["properties"]
    text = _swarming(base_url, "request-show", task_id).stdout
    assert "name:            build" in text and "  command:       echo hi" in text
    assert "  relative_cwd:  src" in text and "  caches:        git=cache/git" in text
    assert "secret_bytes:  yes (not shown)" in text and "c2VjcmV0" not in text and "secret\n" not in text
    missing = _swarming(base_url, "request-show", "1" * 15 + "0")
    assert missing.exit_code == 1 and "error: no task" in missing.stderr
