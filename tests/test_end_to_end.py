"""Tasks end to end: the `swarming` CLI and a real bot process, over real HTTP,
on the emulators."""

import base64
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from local import processes
from tests.builders import task_body
from tests.conftest import REPO

SWARMING = str(Path(sys.executable).with_name("swarming"))
SCRIPT = "import sys; print('first line'); print('second line'); sys.stdout.flush(); raise SystemExit(int(sys.argv[1]))"

#: The CLI calls as the tests' user (SWARMING_TOKEN).
pytestmark = pytest.mark.usefixtures("as_user")


def swarming(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([SWARMING, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=kwargs.pop("cwd", REPO), **kwargs)


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def server_args(base_url: str) -> list[str]:
    return ["--server", base_url]


@pytest.mark.parametrize("exit_code", [0, 3])
def test_run_prints_stdout_and_exits_with_the_task_code(base_url, start_bot, exit_code):
    run = swarming("run", *server_args(base_url), "-d", "pool=e2e", "--wait-for-capacity", "--", sys.executable, "-c", SCRIPT,
                   str(exit_code))
    start_bot()
    code, out, err = finish(run)
    assert code == exit_code, err
    assert out == "first line\nsecond line\n"


def test_trigger_dump_json_then_collect_json(base_url, start_bot, tmp_path):
    dump = tmp_path / "tasks.json"
    code, out, err = finish(swarming("trigger", *server_args(base_url), "-d", "pool=e2e", "--env", "GREETING=hello",
                                     "--wait-for-capacity", "--dump-json", str(dump), "--", "sh", "-c", "echo $GREETING $SWARMING_BOT_ID"))
    assert code == 0, err
    task_id = out.strip()
    assert json.loads(dump.read_text())["tasks"] == [{"task_id": task_id}]
    start_bot()
    code, out, err = finish(swarming("collect", *server_args(base_url), "--requests-json", str(dump), "--json"))
    assert code == 0, err
    [result] = json.loads(out)
    assert (result["task_id"], result["state"], result["exit_code"]) == (task_id, "COMPLETED", 0)
    assert result["bot_id"] == "e2e-bot" and result["output"] == "hello e2e-bot\n"


def test_hard_timeout_ends_timed_out(base_url, start_bot):
    run = swarming("run", *server_args(base_url), "-d", "pool=e2e", "--wait-for-capacity", "--hard-timeout", "1", "--",
                   "sh", "-c", "echo started; sleep 60")
    start_bot()
    code, out, err = finish(run)
    assert code == 81, err  # ExitStatus.TIMED_OUT
    assert out == "started\n"


def test_io_timeout_kills_even_a_process_that_ignores_sigterm(base_url, start_bot):
    script = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
              "print('deaf', flush=True); time.sleep(60)")
    run = swarming("run", *server_args(base_url), "-d", "pool=e2e", "--wait-for-capacity", "--io-timeout", "1",
                   "--grace-period", "1", "--json", "--", sys.executable, "-c", script)
    start_bot()
    code, out, err = finish(run)
    assert code == 81, err  # TIMED_OUT, after SIGTERM was ignored and SIGKILL followed the grace
    result = json.loads(out)[0]
    assert result["state"] == "TIMED_OUT" and result["output"] == "deaf\n" and result["duration"] < 20


def _wait_running(api, task_id: str) -> None:
    deadline = time.monotonic() + 30
    while api.ok("task_result", {"task_id": task_id})["state"] != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.1)


def _wait_output(api, task_id: str, expected: bytes) -> None:
    """RUNNING comes with the claim; the command starts once the bot's task
    runner process is up and has sent its first update."""
    deadline = time.monotonic() + 30
    while base64.b64decode(api.ok("task_stdout", {"task_id": task_id})["output"]) != expected:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_a_running_task_killed_by_cancel_ends_killed(api, base_url, start_bot):
    code, out, err = finish(swarming("trigger", *server_args(base_url), "-d", "pool=e2e", "--wait-for-capacity",
                                     "--grace-period", "1", "--", "sh", "-c", "echo started; sleep 60"))
    task_id = out.strip()
    start_bot()
    _wait_output(api, task_id, b"started\n")  # Cancelled before the command starts, it would end CANCELED.
    assert api.ok("task_cancel", {"task_id": task_id, "kill_running": True})["canceled"]
    code, out, err = finish(swarming("collect", *server_args(base_url), "--timeout", "60", task_id))
    assert code == 85, err  # KILLED


def test_a_sigkilled_bot_s_idempotent_task_is_retried_on_another_bot(api, base_url, start_bot, clock):
    body = task_body(command=["sh", "-c", "echo run; sleep 2"], dimensions={"pool": "e2e"},
                     bot_ping_tolerance_secs=60)
    body["task_slices"][0]["properties"]["idempotent"] = True
    task_id = api.ok("tasks_new", body)["task_id"]
    clock.offset = -datetime.timedelta(seconds=59)  # its claim happens 59 s "ago": BOT_DIED is due in ~1 s
    first = start_bot("doomed-bot")
    _wait_running(api, task_id)
    os.killpg(first.pid, signal.SIGKILL)  # the bot and its task, without a word
    first.wait()
    clock.offset = datetime.timedelta()
    start_bot("rescue-bot")
    code, out, err = finish(swarming("collect", *server_args(base_url), "--timeout", "60", "--json", task_id))
    assert code == 0, err
    result = json.loads(out)[0]
    assert result["try_number"] == 2 and result["bot_id"] == "rescue-bot" and result["output"] == "run\n"


def test_invalid_request_exits_1_naming_the_field(svc, base_url):
    code, out, err = finish(swarming("trigger", *server_args(base_url), "-d", "os=Linux", "--", "true"))
    assert code == 1 and out == ""
    assert "pool" in err and "task_slices[0].properties.dimensions.pool" in err


def test_collect_timeout_gives_up_with_its_own_code(svc, base_url):
    code, out, err = finish(swarming("trigger", *server_args(base_url), "-d", "pool=nobody", "--wait-for-capacity",
                                     "--", "true"))
    assert code == 0, err
    code, _, _ = finish(swarming("collect", *server_args(base_url), "--timeout", "1", out.strip()))
    assert code == 88  # ExitStatus.WAIT_TIMEOUT


def test_the_local_stack_runs_a_task_and_leaves_nothing_behind(tmp_path, monkeypatch):
    """The issue's acceptance check: up --detach with a bot, run, down; the
    CLI logs in with the stack's own issuer, not as the tests' user."""
    monkeypatch.delenv("SWARMING_TOKEN")
    state = str(tmp_path / "stack")
    code, out, err = finish(swarming("local", "up", "--detach", "--bots", "1", "--state-dir", state))
    assert code == 0, err
    pids = [p["pid"] for p in json.loads((Path(state) / "stack.json").read_text())["processes"]]
    try:
        code, out, err = finish(swarming("run", "--state-dir", state, "-d", "pool=default", "--",
                                         "python3", "-c", "print('hi'); raise SystemExit(3)"))
        assert (code, out) == (3, "hi\n"), err
    finally:
        finish(swarming("local", "down", "--state-dir", state))
    for pid in pids:
        found = processes.stat(pid)
        assert found is None or found.state == "Z"
        assert processes.group_members(pid) == []
