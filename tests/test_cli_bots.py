"""`swarming bots` and `swarming bot` against the real gateway."""

import json

from click.testing import CliRunner

from client.cli import cli
from tests.builders import bot_body, task_body
import pytest

#: `swarming bots` without a pool lists every pool's bots: a global admin's view.
pytestmark = pytest.mark.usefixtures("as_admin")


def _swarming(base_url, *args):
    return CliRunner().invoke(cli, [*args[:1], "--server", base_url, *args[1:]])


def _register(api, bot_id, **dims):
    body = bot_body(bot_id)
    body["dimensions"].update(dims)
    api.ok("bot_handshake", body, role="bot")


def test_bots_lists_filters_counts_and_pages(api, base_url, monkeypatch):
    monkeypatch.setattr("client.bots_cli.PAGE", 2)  # several pages for five bots
    for i in range(5):
        _register(api, f"bot-{i}", os=["Linux"] if i % 2 else ["Mac"])
    task_id = api.ok("tasks_new", task_body())["task_id"]
    api.ok("bot_claim", bot_body("bot-1", task_id=task_id, slice=0, claim_id="c"), role="bot")

    listed = _swarming(base_url, "bots", "--json")
    assert listed.exit_code == 0, listed.output
    assert [b["bot_id"] for b in json.loads(listed.output)] == [f"bot-{i}" for i in range(5)]
    linux = json.loads(_swarming(base_url, "bots", "-d", "os=Linux", "--json").output)
    assert [b["bot_id"] for b in linux] == ["bot-1", "bot-3"]
    idle_linux = json.loads(_swarming(base_url, "bots", "-d", "os=Linux", "--idle", "--json").output)
    assert [b["bot_id"] for b in idle_linux] == ["bot-3"]
    assert len(json.loads(_swarming(base_url, "bots", "--limit", "3", "--json").output)) == 3

    table = _swarming(base_url, "bots", "--busy").output.splitlines()
    assert len(table) == 1 and table[0].split()[:3] == ["bot-1", "busy", task_id]
    counts = json.loads(_swarming(base_url, "bots", "--count", "--json").output)
    assert counts == {"count": 5, "quarantined": 0, "maintenance": 0, "dead": 0, "busy": 1}


def test_bot_shows_one_bot_with_its_events_and_tasks(api, base_url):
    _register(api, "bot-1")
    task_id = api.ok("tasks_new", task_body(name="build"))["task_id"]
    api.ok("bot_claim", bot_body("bot-1", task_id=task_id, slice=0, claim_id="c"), role="bot")
    shown = json.loads(_swarming(base_url, "bot", "bot-1", "--json").output)
    assert shown["bot"]["task_id"] == task_id
    assert [e["event_type"] for e in shown["events"]] == ["task_claimed", "bot_connected"]
    assert [t["task_id"] for t in shown["tasks"]] == [task_id]
    text = _swarming(base_url, "bot", "bot-1").output
    assert f"task_id:         {task_id}" in text and "  os: Linux" in text and "RUNNING" in text


def test_unknown_bot_and_bad_flags_fail_clearly(api, base_url):
    missing = _swarming(base_url, "bot", "nobody")
    assert missing.exit_code == 1 and "error: no bot nobody" in missing.output
    bad = _swarming(base_url, "bots", "-d", "novalue")
    assert bad.exit_code == 2 and "key=value" in bad.output
