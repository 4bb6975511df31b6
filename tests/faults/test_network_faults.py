"""Case 1: a real bot and the `swarming` CLI talk to the service through a
proxy that resets a quarter of their connections (before or after the server
saw the request), answers 503 with Retry-After, holds connections unanswered
and delays them, at seeded random places; or that loses the answer of every
request the first time it comes, so each reaches the server twice. Every
task ends once, its command run once, its stdout byte for byte."""

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.builders import bot_body
from tests.conftest import REPO
from tests.faults import checks
from tests.faults.proxy import Fault, Request, SeededFaults

SWARMING = str(Path(sys.executable).with_name("swarming"))
TASKS = 3
#: Output per task: 256 bytes times this, several updates of the runner.
BLOCKS = 400
#: How long nothing gets through, in the outage case.
OUTAGE_SECS = 5


def _spared(request: Request) -> bool:
    """The timers and the cron are Cloud's own calls, not the bots' nor the CLI's."""
    return request.path.startswith(("/timer_", "/cron_"))


class FirstAnswersLost:
    """Each request (its request line and body) has its answer lost the first time."""

    def __init__(self) -> None:
        self._seen: set[tuple[bytes, bytes]] = set()
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Fault:
        key = (request.head.partition(b"\r\n")[0], request.body)
        with self._lock:
            first = key not in self._seen and not _spared(request)
            self._seen.add(key)
        return Fault.LOST_ANSWER if first else Fault.NONE


KINDS = [Fault.RESET, Fault.LOST_ANSWER, Fault.UNAVAILABLE, Fault.HOLD, Fault.DELAY]
FAULTS = {"seeded": (lambda: SeededFaults(13, KINDS, spared=_spared), KINDS),
          "first-answers-lost": (FirstAnswersLost, [Fault.LOST_ANSWER])}


def _swarming(*args: str) -> bytes:
    done = subprocess.run([SWARMING, *args], capture_output=True, cwd=REPO, timeout=180, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


@pytest.mark.usefixtures("as_user")
@pytest.mark.parametrize("faults", FAULTS)
def test_tasks_end_once_with_their_stdout_through_lost_connections_503s_holds_and_delays(
        base_url, proxy, direct, start_bot, tmp_path, faults):
    decide, kinds = FAULTS[faults]
    proxy.decide = decide()
    markers = [tmp_path / f"marker-{i}" for i in range(TASKS)]
    task_ids = [_swarming("trigger", "--server", base_url, "-d", "pool=e2e", "--wait-for-capacity", "--",
                          *checks.command(marker, BLOCKS)).decode().strip() for marker in markers]
    start_bot("e2e-faulty")

    printed = checks.first(BLOCKS) + checks.LAST
    for task_id, marker in zip(task_ids, markers):
        assert _swarming("collect", "--server", base_url, "--timeout", "120", task_id) == printed
        result = checks.assert_sound(direct, task_id, marker, printed)
        assert (result["state"], result["exit_code"], result["try_number"]) == ("COMPLETED", 0, 1)
    assert set(kinds) <= set(proxy.injected())  # Each fault met a request.
    ran = direct.ok("bot_tasks", {"bot_id": "e2e-faulty"})
    assert sorted(t["task_id"] for t in ran["items"]) == sorted(task_ids)  # No second task from a retried create,
    assert direct.ok("bot_poll", bot_body("e2e-probe", pool="e2e"), role="bot")["cmd"] == "sleep"  # none pending.


@pytest.mark.usefixtures("as_user")
def test_a_task_ends_once_with_its_stdout_across_an_outage_of_the_whole_service(
        base_url, proxy, direct, start_bot, tmp_path):
    """Every connection reset for a while: the command ends during it, and
    its end, its last output and `collect` get through once it is over."""
    marker, go = tmp_path / "marker", tmp_path / "go"
    task_id = _swarming("trigger", "--server", base_url, "-d", "pool=e2e", "--wait-for-capacity", "--",
                        *checks.command(marker, BLOCKS, go)).decode().strip()
    collect = subprocess.Popen([SWARMING, "collect", "--server", base_url, "--timeout", "120", task_id],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    try:
        start_bot("e2e-outage")
        checks.wait_stdout(direct, task_id, checks.first(BLOCKS))
        proxy.decide = lambda request: Fault.NONE if _spared(request) else Fault.RESET
        go.touch()
        time.sleep(OUTAGE_SECS)
        proxy.decide = lambda _: Fault.NONE
        out, err = collect.communicate(timeout=180)
    finally:
        collect.kill()

    printed = checks.first(BLOCKS) + checks.LAST
    assert (collect.returncode, out) == (0, printed), err.decode()
    result = checks.assert_sound(direct, task_id, marker, printed)
    assert (result["state"], result["try_number"]) == ("COMPLETED", 1)
    assert Fault.RESET in proxy.injected()
