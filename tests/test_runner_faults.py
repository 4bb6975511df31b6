"""The task runner when things go wrong around it, with a real task runner
process: a server that stops answering or is gone, a server that no longer
knows the run, commands that leave their process group, a bot that dies.
The bot's own server is a fake; the runner reports to another one (the
manifest's `host`), which the tests take away."""

import base64
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from bot import remote
from bot.bot_main import Bot, Outcome
from bot.remote import RunGone
from bot.task_runner import Timings
from shared.api_error import ApiError
from shared.bot_api import BotAttributes, TaskUpdateReply, Update
from tests.bot_fakes import FakeServer, Reply, claim, ok, run, served, sleep, stalled, start_bot, wait_gone

TOKEN = "bot-token"
TASK = "5f3a1b2c3d4e5f00"
CARRY_ON = ok(TaskUpdateReply().to_wire())
#: A runner that gives up on a server that never takes its end within seconds, not minutes.
TIMINGS = Timings(output_interval=0.1, keepalive=0.3, grace_period=1.0, drain=1.0, tick=0.02, report_patience=2.0)
#: Prints the pid of a daemon (double fork, its own session, stdio on /dev/null) once it runs, then exits.
DAEMON = """
import os, sys, time
ready, told = os.pipe()
if os.fork():
    print(os.read(ready, 32).decode(), flush=True)
    sys.exit(0)
os.setsid()
if os.fork():
    os._exit(0)
os.write(told, str(os.getpid()).encode())
devnull = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(devnull, fd)
time.sleep(300)
"""


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    yield from served()


@pytest.fixture
def runner_server() -> Iterator[FakeServer]:
    yield from served()


@pytest.fixture
def bot(fake: FakeServer, tmp_path: Path) -> Iterator[Bot]:
    api = remote.Remote(fake.url, TOKEN)
    yield Bot(api, tmp_path, "bot-1", shutdown=threading.Event(), sleep=lambda _: None, timings=TIMINGS)
    api.close()


def updates(server: FakeServer) -> list[dict]:
    return server.bodies("bot_task_update")


def output(server: FakeServer) -> bytes:
    """Everything the server got, checking each packet starts where the last ended."""
    data = b""
    for update in updates(server):
        assert update["output_chunk_start"] == len(data), "packets must be contiguous"
        data += base64.b64decode(update["output"])
    return data


def pids(server: FakeServer) -> list[int]:
    return [int(pid) for pid in re.findall(rb"\d+", output(server))]


def escaping(then: str) -> list[str]:
    """A shell that prints its pid, then those of a `setsid sleep 300` and
    of a daemon, both out of its process group, then runs `then`."""
    return ["sh", "-c", f'echo $$; setsid sleep 300 >/dev/null 2>&1 & echo $!; "$0" -c "$1"; {then}',
            sys.executable, DAEMON]


def go_silent(server: FakeServer) -> None:
    server.script("bot_task_update", stalled(CARRY_ON, None))


def go_away(server: FakeServer) -> None:
    server.shutdown()
    server.server_close()  # Connections are refused from now on.


@pytest.mark.parametrize("leave", [go_silent, go_away])
def test_a_hard_timeout_kills_on_time_while_the_server_is_unreachable(
        fake: FakeServer, runner_server: FakeServer, bot: Bot, tmp_path: Path,
        leave: Callable[[FakeServer], None]) -> None:
    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    fake.script("bot_poll", claim(TASK))
    fake.script("bot_claim", run(TASK, [sys.executable, "-c", code], hard_timeout=10, grace_period=2,
                                 host=runner_server.url))
    outcome: list[Outcome] = []
    ran = threading.Thread(target=lambda: outcome.append(bot.run_once()))
    ran.start()
    runner_server.wait_for(lambda: pid_file.exists() and pid_file.read_text() != "", timeout=30)
    started = time.monotonic()  # The command runs, and the server is gone from now on.
    leave(runner_server)

    assert wait_gone([int(pid_file.read_text())], 30) == []

    assert 9 <= time.monotonic() - started < 30  # The hard timeout (10 s) and grace (2 s), not the 60 s.
    ran.join(30)  # The runner gives up on the end after its patience, and the bot polls again.
    assert outcome == [Outcome.RAN]
    assert all("exit_code" not in u for u in updates(runner_server))  # Its end never got through.


def test_the_duration_is_the_command_s_own_while_each_update_takes_10_s(
        fake: FakeServer, runner_server: FakeServer, tmp_path: Path) -> None:
    code = "import time\nfor i in range(6):\n print(i, flush=True)\n time.sleep(0.5)"
    fake.script("bot_poll", claim(TASK))
    fake.script("bot_claim", run(TASK, [sys.executable, "-c", code], host=runner_server.url))
    runner_server.script("bot_task_update", CARRY_ON, stalled(CARRY_ON, 10))
    api = remote.Remote(fake.url, TOKEN)
    patient = Bot(api, tmp_path, "bot-1", shutdown=threading.Event(), sleep=lambda _: None,
                  timings=Timings(output_interval=0.1, keepalive=0.3, tick=0.02, report_patience=60))

    assert patient.run_once() is Outcome.RAN

    final = updates(runner_server)[-1]
    assert final["exit_code"] == 0 and 3 <= final["duration"] < 10  # Not the 20 s its updates took.
    assert output(runner_server) == b"0\n1\n2\n3\n4\n5\n"
    api.close()


@pytest.mark.parametrize("then, hard_timeout, exit_code", [
    ("exit 0", 30, 0),
    ("sleep 60", 3, -signal.SIGTERM),  # Killed at its hard timeout.
])
def test_no_process_of_a_task_outlives_its_end(
        fake: FakeServer, bot: Bot, then: str, hard_timeout: int, exit_code: int) -> None:
    fake.script("bot_poll", claim(TASK))
    fake.script("bot_claim", run(TASK, escaping(then), hard_timeout=hard_timeout, grace_period=1))

    assert bot.run_once() is Outcome.RAN

    assert updates(fake)[-1]["exit_code"] == exit_code
    shell, *escaped = pids(fake)
    assert len(escaped) == 2
    assert wait_gone([shell, *escaped], 15) == []


def test_no_process_of_a_task_outlives_the_bot_s_death(fake: FakeServer, tmp_path: Path) -> None:
    fake.script("bot_poll", claim(TASK), sleep(60))
    fake.script("bot_claim", run(TASK, escaping("sleep 300"), grace_period=1))
    bot_process = start_bot(fake.url, tmp_path / "bot", TOKEN, "--id", "bot-1")
    fake.wait_for(lambda: len(pids(fake)) == 3, timeout=30)
    shell, *escaped = pids(fake)
    runner = int(Path(f"/proc/{shell}/stat").read_text().rpartition(")")[2].split()[1])

    bot_process.kill()
    bot_process.communicate(timeout=10)

    assert wait_gone([runner, shell, *escaped], 15) == []  # The grace period (1 s), then the kill.
    assert all("exit_code" not in u for u in updates(fake))  # Left to the server: the bot died.


@pytest.mark.parametrize("reply, gone", [
    ((404, {"error": {"code": "not_found", "message": "no task"}}, {}), True),  # The server's own.
    ((404, {}, {}), False),  # Not the API's answer (a proxy's page): the server may still know the run.
    ((409, {"error": {"code": "conflict", "message": "not held"}}, {}), True),
    ((400, {"error": {"code": "invalid_argument", "message": "bad"}}, {}), False),
    ((401, {"error": {"code": "unauthenticated", "message": "expired"}}, {}), True),  # The run token, for good.
    ((401, {}, {}), False),  # A proxy's page.
])
def test_only_the_server_saying_so_makes_a_run_gone(fake: FakeServer, reply: Reply, gone: bool) -> None:
    fake.script("bot_task_update", reply)
    api = remote.Remote(fake.url, "run-token")
    attributes = BotAttributes({"id": ["bot-1"], "pool": ["default"]}, {}, "dev")

    with pytest.raises(ApiError) as raised:
        api.task_update(attributes, TASK[:-1] + "1", Update(0))

    assert isinstance(raised.value, RunGone) is gone
    api.close()


def test_the_command_of_a_runner_that_died_does_not_outlive_it(fake: FakeServer, bot: Bot, tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    # The command kills its runner (its parent) once it has a process out of its group.
    script = (f"echo $$ > {pids_file}.tmp; setsid sleep 300 >/dev/null 2>&1 & echo $! >> {pids_file}.tmp; "
              f"mv {pids_file}.tmp {pids_file}; kill -9 $PPID; sleep 300")
    fake.script("bot_poll", claim(TASK))
    fake.script("bot_claim", run(TASK, ["sh", "-c", script]))

    assert bot.run_once() is Outcome.RAN

    assert "the task runner died (killed by SIGKILL)" in fake.bodies("bot_task_error")[0]["message"]
    assert wait_gone([int(pid) for pid in pids_file.read_text().split()], 15) == []
