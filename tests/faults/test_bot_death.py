"""Case 3: a real bot SIGKILLed while its task's command runs (the bot, its
task runner and the command, without a word). Its death is hastened as in
tests/test_end_to_end.py: the claim happens 59 s "ago" with a 60 s ping
tolerance. An idempotent task is run again, on another bot; any other ends
BOT_DIED with what it printed, never run a second time. The same when the
bot dies while it moves the command's outputs to CAS."""

import datetime
import os
import signal
import sys
import time

import pytest

from tests.builders import task_body
from tests.faults import checks
from tests.faults.proxy import Fault

BLOCKS = 4


@pytest.mark.parametrize("idempotent, ended, ran", [(False, "BOT_DIED", 1), (True, "COMPLETED", 2)])
def test_a_sigkilled_bot_s_task_is_retried_or_bot_died_as_its_idempotency_says(
        direct, start_bot, clock, tmp_path, idempotent, ended, ran):
    marker, go = tmp_path / "marker", tmp_path / "go"
    body = task_body(command=checks.command(marker, BLOCKS, go), dimensions={"pool": "e2e"},
                     bot_ping_tolerance_secs=60)
    body["task_slices"][0]["properties"]["idempotent"] = idempotent
    task_id = direct.ok("tasks_new", body)["task_id"]
    clock.offset = -datetime.timedelta(seconds=59)
    doomed = start_bot("doomed-bot")
    checks.wait_stdout(direct, task_id, checks.first(BLOCKS))  # The command runs, and waits on `go`.
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait()
    clock.offset = datetime.timedelta()
    go.touch()  # A second run, if any, runs to its end.
    start_bot("rescue-bot")

    printed = checks.first(BLOCKS) + (checks.LAST if idempotent else b"")
    result = checks.assert_sound(direct, task_id, marker, printed, ran=ran)
    assert (result["state"], result["try_number"]) == (ended, ran)
    assert result["bot_id"] == ("rescue-bot" if idempotent else "doomed-bot")


#: The command also leaves a file in ${ISOLATED_OUTDIR}: the runner uploads it after the command ended.
UPLOADING = checks.SCRIPT + "\nopen(os.path.join(os.environ['ISOLATED_OUTDIR'], 'out.txt'), 'w').write('x')\n"


@pytest.mark.parametrize("idempotent, ended, ran", [(False, "BOT_DIED", 1), (True, "COMPLETED", 2)])
def test_a_bot_sigkilled_while_it_uploads_the_outputs_loses_nothing_and_runs_nothing_twice(
        direct, proxy, start_bot, clock, tmp_path, idempotent, ended, ran):
    """The command ended, and its stdout reached the server; its outputs
    were being moved to CAS (the CAS calls held unanswered at the proxy) when
    the bot died. The end was never reported: as any silent run."""
    marker, go = tmp_path / "marker", tmp_path / "go"
    command = [sys.executable, "-c", UPLOADING, str(marker), str(BLOCKS), str(go)]
    body = task_body(command=command, dimensions={"pool": "e2e"}, bot_ping_tolerance_secs=60)
    body["task_slices"][0]["properties"]["idempotent"] = idempotent
    task_id = direct.ok("tasks_new", body)["task_id"]
    clock.offset = -datetime.timedelta(seconds=59)
    doomed = start_bot("doomed-bot")
    checks.wait_stdout(direct, task_id, checks.first(BLOCKS))
    proxy.decide = lambda request: Fault.HOLD if request.path.startswith("/cas_") else Fault.NONE
    go.touch()  # The command ends, and the runner moves its outputs.
    checks.wait_stdout(direct, task_id, checks.first(BLOCKS) + checks.LAST)  # A keepalive carried the rest.
    deadline = time.monotonic() + checks.WITHIN_SECS
    while Fault.HOLD not in proxy.injected():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait()
    proxy.decide = lambda _: Fault.NONE
    clock.offset = datetime.timedelta()
    start_bot("rescue-bot")

    result = checks.assert_sound(direct, task_id, marker, checks.first(BLOCKS) + checks.LAST, ran=ran)
    assert (result["state"], result["try_number"]) == (ended, ran)
    assert result["bot_id"] == ("rescue-bot" if idempotent else "doomed-bot")
    if idempotent:
        assert result["cas_output_root"] is not None  # The second run's outputs.
