"""`swarming bot-tasks`, `terminate` and `delete-bots` against the real gateway,
and `terminate --wait` with a real bot process."""

import json
import time

import pytest
from click.testing import CliRunner

from client.cli import cli
from tests.builders import bot_body, task_body
from tests.test_end_to_end import finish, server_args, swarming

#: The tests' user administers the tests' pools.
pytestmark = pytest.mark.usefixtures("as_user")


def _swarming(base_url, *args, **kwargs):
    return CliRunner().invoke(cli, [*args[:1], "--server", base_url, *args[1:]], **kwargs)


def _run_one(api, bot_id, name):
    task_id = api.ok("tasks_new", task_body(name=name))["task_id"]
    api.ok("bot_claim", bot_body(bot_id, task_id=task_id, slice=0, claim_id=name), role="bot")
    run = api.ok("task_result", {"task_id": task_id})["run_id"]
    api.ok("bot_task_update", bot_body(bot_id, task_id=run, exit_code=0, duration=0.1), role="bot")
    return task_id


def test_bot_tasks_follows_pages_newest_first(api, base_url, monkeypatch):
    monkeypatch.setattr("client.bots_cli.PAGE", 2)
    api.ok("bot_handshake", bot_body("bot-1"), role="bot")
    ids = [_run_one(api, "bot-1", f"t{i}") for i in range(5)]

    listed = _swarming(base_url, "bot-tasks", "bot-1", "--json")
    assert listed.exit_code == 0, listed.output
    assert [t["task_id"] for t in json.loads(listed.stdout)] == ids[::-1]
    limited = _swarming(base_url, "bot-tasks", "bot-1", "--limit", "3")
    lines = limited.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [[i, "COMPLETED"] for i in ids[:1:-1]]
    unknown = _swarming(base_url, "bot-tasks", "nobody", "--json")
    assert unknown.exit_code == 1 and unknown.stderr.startswith("error: ") and unknown.stdout == "", unknown.stderr
    bad = _swarming(base_url, "bot-tasks", "bot-1", "--limit", "0")
    assert bad.exit_code == 2 and "--limit" in bad.stderr


def test_delete_bots_asks_unless_forced_and_reports_unknown_ones(api, base_url):
    for bot_id in ("bot-1", "bot-2"):
        api.ok("bot_handshake", bot_body(bot_id), role="bot")

    declined = _swarming(base_url, "delete-bots", "bot-1", input="n\n")
    assert declined.exit_code == 1 and "Aborted" in declined.stderr
    assert api.post("bot_get", {"bot_id": "bot-1"}).status_code == 200

    confirmed = _swarming(base_url, "delete-bots", "bot-1", input="y\n")
    assert confirmed.exit_code == 0 and confirmed.stdout.endswith("y\ndeleted bot-1\n")
    assert api.post("bot_get", {"bot_id": "bot-1"}).status_code == 404

    mixed = _swarming(base_url, "delete-bots", "--force", "bot-2", "nobody")
    assert mixed.exit_code == 1 and mixed.stdout == "deleted bot-2\n"
    assert mixed.stderr.startswith("error: nobody: ")
    assert _swarming(base_url, "delete-bots").exit_code == 2


def test_terminate_queues_the_termination_task_and_refuses_unknown_bots(api, base_url):
    api.ok("bot_handshake", bot_body("bot-1"), role="bot")
    result = _swarming(base_url, "terminate", "bot-1", "--reason", "draining")
    assert result.exit_code == 0, result.output
    request = api.ok("task_request", {"task_id": result.stdout.strip()})
    assert request["priority"] == 0 and request["name"] == "Terminate bot-1: draining"
    unknown = _swarming(base_url, "terminate", "nobody")
    assert unknown.exit_code == 1 and "no bot 'nobody'" in unknown.stderr
    assert _swarming(base_url, "terminate", "bot-1", "--timeout", "5").exit_code == 2


def test_terminate_wait_returns_once_the_real_bot_ran_its_termination_task(api, base_url, start_bot):
    bot = start_bot("e2e-bot")
    deadline = time.monotonic() + 60
    while api.post("bot_get", {"bot_id": "e2e-bot"}).status_code == 404:  # Until it handshakes.
        assert time.monotonic() < deadline, "the bot never connected"
        time.sleep(0.2)
    code, out, err = finish(swarming("terminate", *server_args(base_url), "e2e-bot", "--wait", "--timeout", "90"))
    assert code == 0, err
    assert api.ok("task_result", {"task_id": out.strip()})["state"] == "COMPLETED"
    assert bot.wait(timeout=60) is not None  # The bot exits after its termination task.
