"""`collect` and `run` say on stderr why a task did not complete: through the
real gateway for the states a test can bring about by the API, and from
result fields alone (client/outcome.py) for the others."""

import base64
import datetime

import pytest
from click.testing import CliRunner

from client.cli import cli
from client.exit_status import ExitStatus
from client.outcome import explain
from tests.builders import bot_body, task_body

#: The tests' user administers the tests' pools.
pytestmark = pytest.mark.usefixtures("as_user")


def _swarming(base_url, *args):
    return CliRunner().invoke(cli, [*args[:1], "--server", base_url, *args[1:]])


def _claimed(api, bot_id="bot-1"):
    """A running task, and its run id; its command has started (output came)."""
    task_id = api.ok("tasks_new", task_body())["task_id"]
    api.ok("bot_handshake", bot_body(bot_id), role="bot")
    run_id = api.ok("bot_claim", bot_body(bot_id, task_id=task_id, slice=0, claim_id="c"), role="bot")[
        "manifest"]["task_id"]
    api.ok("bot_task_update", bot_body(bot_id, task_id=run_id, output=base64.b64encode(b"x").decode(),
                                       output_chunk_start=0), role="bot")
    return task_id, run_id


def test_no_resource_names_the_slice_and_its_dimensions(api, base_url):
    result = _swarming(base_url, "run", "-d", "pool=default", "-d", "os=Plan9", "--", "true")
    assert result.exit_code == ExitStatus.NO_RESOURCE, result.output
    assert result.stderr.splitlines()[-1].endswith(
        " NO_RESOURCE: no live bot matches slice 0 (os=Plan9 pool=default), and it does not wait for capacity")


def test_expired_says_after_how_long_and_which_slice(api, base_url, clock):
    clock.offset = -datetime.timedelta(seconds=29)  # Its 30 s expiration falls due in about 1 s.
    body = task_body(dimensions={"pool": "p", "os": "Mac"})
    body["task_slices"][0]["expiration_secs"] = 30
    task_id = api.ok("tasks_new", body)["task_id"]
    clock.offset = datetime.timedelta()

    result = _swarming(base_url, "collect", task_id, "--timeout", "60")

    assert result.exit_code == ExitStatus.EXPIRED, result.output
    last = result.stderr.splitlines()[-1]
    assert last.startswith(f"task {task_id} EXPIRED: expired after 3")  # 29 s ago, plus delivery: 30..39 s.
    assert last.endswith(": no bot matching slice 0 (os=Mac pool=p) took it")


def test_canceled_and_killed(api, base_url):
    pending = api.ok("tasks_new", task_body())["task_id"]
    api.ok("task_cancel", {"task_id": pending})
    canceled = _swarming(base_url, "collect", pending)
    assert canceled.exit_code == ExitStatus.CANCELED
    by = "by user:user@example.com"
    assert canceled.stderr == f"task {pending} CANCELED: canceled before its command started, {by}\n"

    task_id, run_id = _claimed(api)
    api.ok("task_cancel", {"task_id": task_id, "kill_running": True}, role="admin")
    api.ok("bot_task_update", bot_body(task_id=run_id, exit_code=-15, duration=1.0), role="bot")
    killed = _swarming(base_url, "collect", task_id, "--json")
    assert killed.exit_code == ExitStatus.KILLED, killed.output
    assert killed.stderr == f"task {task_id} KILLED: killed while running on bot bot-1, by user:admin@example.com\n"


def test_bot_died_and_missing_inputs(api, base_url):
    died, run_id = _claimed(api)
    api.ok("bot_task_error", bot_body(task_id=run_id, message="disk on fire"), role="bot")
    result = _swarming(base_url, "collect", died)
    assert result.exit_code == ExitStatus.BOT_DIED
    assert result.stderr == f"task {died} BOT_DIED: bot bot-1 died or stopped reporting: disk on fire\n"

    task_id = api.ok("tasks_new", task_body())["task_id"]
    run_id = api.ok("bot_claim", bot_body(task_id=task_id, slice=0, claim_id="d"), role="bot")["manifest"]["task_id"]
    missing = [{"hash": "a" * 64, "size_bytes": 3}]
    api.ok("bot_task_error", bot_body(task_id=run_id, message="inputs", client_error={"missing_cas": missing}),
           role="bot")
    result = _swarming(base_url, "collect", task_id)
    assert result.exit_code == ExitStatus.CLIENT_ERROR
    assert result.stderr == f"task {task_id} CLIENT_ERROR: missing CAS digests: {'a' * 64}/3\n"


def test_a_completed_task_says_nothing_whatever_its_exit_code(api, base_url):
    task_id, run_id = _claimed(api)
    api.ok("bot_task_update", bot_body(task_id=run_id, exit_code=3, duration=1.0), role="bot")
    result = _swarming(base_url, "collect", task_id)
    assert result.exit_code == 3 and result.stderr == "" and result.stdout == "x"


def test_timed_out_names_the_timeouts_from_the_request():
    result = {"task_id": "t1", "state": "TIMED_OUT", "bot_id": "b", "duration": 61.04, "current_task_slice": 0}
    request = {"task_slices": [{"properties": {"execution_timeout_secs": 60, "io_timeout_secs": 1200}}]}
    assert explain(result, request) == (
        "task t1 TIMED_OUT: stopped after 61.0 s on bot b: it ran out of time (hard timeout 60 s, I/O timeout 1200 s)")
    assert explain(result, None) == "task t1 TIMED_OUT: stopped after 61.0 s on bot b: it ran out of time"


def test_without_the_request_the_reason_still_names_the_slice():
    result = {"task_id": "t1", "state": "EXPIRED", "current_task_slice": 1,
              "created_ts": "2026-01-01T00:00:00+00:00", "abandoned_ts": "2026-01-01T00:10:30+00:00"}
    assert explain(result, None) == "task t1 EXPIRED: expired after 630 s: no bot matching slice 1 took it"
    assert explain({**result, "state": "COMPLETED"}, None) is None
