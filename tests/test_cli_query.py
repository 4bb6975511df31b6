"""`swarming tasks` against the real gateway."""

import json

import pytest
from click.testing import CliRunner

from client.cli import cli
from tests.builders import task_body


def _swarming(base_url, *args):
    return CliRunner().invoke(cli, [*args[:1], "--server", base_url, *args[1:]])


def _new(api, *tags: str) -> str:
    return api.ok("tasks_new", task_body(tags=list(tags)))["task_id"]


@pytest.mark.usefixtures("as_user")
def test_tasks_lists_follows_cursors_and_counts(api, base_url, monkeypatch):
    monkeypatch.setattr("client.query_cli.PAGE", 2)  # several pages for five tasks
    ids = [_new(api, "cli:1") for _ in range(5)]
    other = _new(api, "cli:2")
    api.ok("task_cancel", {"task_id": ids[0]})

    listed = _swarming(base_url, "tasks", "--tag", "pool:default", "--tag", "cli:1", "--json")
    assert listed.exit_code == 0, listed.output
    assert [t["task_id"] for t in json.loads(listed.output)] == ids[::-1]
    limited = json.loads(_swarming(base_url, "tasks", "--tag", "pool:default", "--limit", "3", "--json").output)
    assert [t["task_id"] for t in limited] == [other, ids[4], ids[3]]
    canceled = _swarming(base_url, "tasks", "--tag", "pool:default", "--state", "canceled")
    assert canceled.exit_code == 0 and canceled.output.split()[:2] == [ids[0], "CANCELED"]
    assert len(canceled.output.splitlines()) == 1

    count = _swarming(base_url, "tasks", "--tag", "pool:default", "--tag", "cli:1", "--state", "PENDING", "--count")
    assert count.exit_code == 0 and count.output.strip() == "4"
    as_json = _swarming(base_url, "tasks", "--tag", "pool:default", "--count", "--json")
    assert json.loads(as_json.output) == {"count": 6, "at_least": False}
    future = _swarming(base_url, "tasks", "--tag", "pool:default", "--start", "4102444800", "--json")
    assert future.exit_code == 0 and json.loads(future.output) == []


@pytest.mark.usefixtures("as_user")
def test_tasks_refusals_say_why(api, base_url):
    no_pool = _swarming(base_url, "tasks")
    assert no_pool.exit_code == 1 and "name one" in no_pool.output
    bad_time = _swarming(base_url, "tasks", "--tag", "pool:default", "--end", "noon")
    assert bad_time.exit_code == 1 and "(end)" in bad_time.output
    bad_tag = _swarming(base_url, "tasks", "--tag", "nocolon")
    assert bad_tag.exit_code == 2 and "key:value" in bad_tag.output
