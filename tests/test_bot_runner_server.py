"""Task runners forked from the runner server (bot/runner_server.py), with a
bot running from a real zip and real processes against a loopback fake
server: a forked runner is its own process with its own descriptors, a
task that kills its runner costs that task only, a dead server is replaced,
and the bot's death still stops the task, the runner and the server."""

import base64
import gc
import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest

from bot import bot_main, remote
from bot.bot_main import Bot, Outcome
from bot.running_code import Code
from bot.task_runner import Timings
from shared import bot_archive
from tests.bot_fakes import FakeServer, bot_zip_entries, claim, run, served, sleep, wait_gone, write_zip

pytestmark = pytest.mark.skipif(not bot_main.FORK_RUNNERS, reason="runners are forked on Linux only")

TOKEN = "bot-token"
TASK_A, TASK_B = "5f3a1b2c3d4e5f00", "5f3a1b2c3d4e6000"
FAST = Timings(output_interval=0.1, keepalive=0.3, grace_period=1.0, drain=1.0, tick=0.02)
#: Prints what the task sees of its runner (its parent): its pid, its parent's pid, its command line, the
#: pipes and sockets the runner shares with its parent (with the server, none: neither its socket nor its
#: wake-up pipe), and the task's id and directory.
SHOW_RUNNER = """
import os
runner = os.getppid()
parent = int(open(f"/proc/{runner}/stat").read().rpartition(")")[2].split()[1])
def channels(pid):
    links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    return {link for link in links if link.startswith(("pipe:", "socket:"))}
print(runner, parent, open(f"/proc/{runner}/cmdline").read().replace(chr(0), " "), "|",
      " ".join(sorted(channels(runner) & channels(parent))), "|", os.environ["SWARMING_TASK_ID"], os.getcwd())
"""


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    yield from served()


def zip_entries(fake: FakeServer) -> tuple[dict[str, bytes], str]:
    entries = bot_zip_entries(fake.url)
    return entries, bot_archive.digest(entries)


@pytest.fixture
def bot(fake: FakeServer, tmp_path: Path) -> Iterator[Bot]:
    """A bot in this process, running from a zip: its runners are forked."""
    entries, version = zip_entries(fake)
    write_zip(tmp_path / "swarming_bot.1.zip", entries)
    api = remote.Remote(fake.url, TOKEN)
    bot = Bot(api, tmp_path, "bot-1", shutdown=threading.Event(), sleep=lambda _: None, timings=FAST,
              code=Code(tmp_path / "swarming_bot.1.zip", version))
    yield bot
    bot.close()
    api.close()


def printed(fake: FakeServer, task_id: str) -> str:
    return b"".join(base64.b64decode(u.get("output") or "") for u in fake.bodies("bot_task_update")
                    if u["task_id"] == task_id[:-1] + "1").decode()


def shown_runner(fake: FakeServer, task_id: str) -> tuple[int, int, str, list[str], str]:
    """(runner pid, its parent's pid, its command line, the pipes and sockets it shares with its parent,
    the task id and cwd the task saw)."""
    head, fds, seen = printed(fake, task_id).split("|")
    pid, parent, cmdline = head.split(maxsplit=2)
    return int(pid), int(parent), cmdline.strip(), fds.split(), seen.strip()


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def runner_servers(bot_dir: Path) -> list[int]:
    """The pids of the runner servers of the bot in `bot_dir` (and of the
    runners they forked, which no test runs then)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"runner_server" in cmdline and any(str(bot_dir).encode() in arg for arg in cmdline):
            found.append(int(entry.name))
    return found


def test_runners_are_forked_processes_of_their_own(fake: FakeServer, bot: Bot, tmp_path: Path) -> None:
    fake.script("bot_poll", claim(TASK_A), claim(TASK_B))
    fake.script("bot_claim", run(TASK_A, [sys.executable, "-c", SHOW_RUNNER]),
                run(TASK_B, [sys.executable, "-c", SHOW_RUNNER]))

    assert bot.run_once() is Outcome.RAN and bot.run_once() is Outcome.RAN

    first, second = shown_runner(fake, TASK_A), shown_runner(fake, TASK_B)
    [server] = runner_servers(tmp_path)
    for (pid, parent, cmdline, fds, seen), task in ((first, TASK_A), (second, TASK_B)):
        assert parent == server and pid != server
        assert f" -S {tmp_path / 'code' / bot.attributes().version} runner_server " in cmdline
        assert fds == [], "the runner holds descriptors of the server's"
        assert seen == f"{task[:-1]}1 {tmp_path / 'w'}"
    assert first[0] != second[0]  # A process per task.
    assert all(u.get("exit_code") in (None, 0) for u in fake.bodies("bot_task_update"))


def test_a_task_that_kills_its_runner_costs_that_task_only(fake: FakeServer, bot: Bot) -> None:
    fake.script("bot_poll", claim(TASK_A), claim(TASK_B))
    fake.script("bot_claim", run(TASK_A, ["sh", "-c", "kill -9 $PPID; sleep 300"]), run(TASK_B, ["true"]))

    assert bot.run_once() is Outcome.RAN
    assert bot.run_once() is Outcome.RAN

    [failed] = fake.bodies("bot_task_error")
    assert failed["task_id"] == TASK_A[:-1] + "1"
    assert "the task runner died (killed by SIGKILL)" in failed["message"]
    final = fake.bodies("bot_task_update")[-1]
    assert final["task_id"] == TASK_B[:-1] + "1" and final["exit_code"] == 0


def test_a_dead_runner_server_is_replaced(fake: FakeServer, bot: Bot, tmp_path: Path) -> None:
    fake.script("bot_poll", claim(TASK_A), claim(TASK_B))
    fake.script("bot_claim", run(TASK_A, ["true"]), run(TASK_B, [sys.executable, "-c", SHOW_RUNNER]))
    assert bot.run_once() is Outcome.RAN
    [old] = runner_servers(tmp_path)
    os.kill(old, signal.SIGKILL)
    assert wait_gone([old], 10) == []

    assert bot.run_once() is Outcome.RAN

    [new] = runner_servers(tmp_path)
    assert new != old and shown_runner(fake, TASK_B)[1] == new
    assert fake.bodies("bot_task_update")[-1]["exit_code"] == 0


#: Kills the runner server (the parent of the runner, the command's parent), then prints a line.
KILL_THE_SERVER = """
import os, signal, time
def parent(pid):
    return int(open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()[1])
os.kill(parent(os.getppid()), signal.SIGKILL)
time.sleep(0.5)
print("the runner lives on")
"""


def test_a_runner_whose_server_died_still_ends_its_task(fake: FakeServer, bot: Bot, tmp_path: Path) -> None:
    fake.script("bot_poll", claim(TASK_A), claim(TASK_B))
    fake.script("bot_claim", run(TASK_A, [sys.executable, "-c", KILL_THE_SERVER]), run(TASK_B, ["true"]))

    assert bot.run_once() is Outcome.RAN
    assert bot.run_once() is Outcome.RAN

    assert fake.bodies("bot_task_error") == []
    assert printed(fake, TASK_A) == "the runner lives on\n"
    ends = [u for u in fake.bodies("bot_task_update") if "exit_code" in u]
    assert [(u["task_id"], u["exit_code"]) for u in ends] == [(TASK_A[:-1] + "1", 0), (TASK_B[:-1] + "1", 0)]
    assert len(runner_servers(tmp_path)) == 1  # Started again for the next task.


def test_the_bot_s_death_ends_the_task_its_runner_and_the_server(fake: FakeServer, tmp_path: Path) -> None:
    entries, _ = zip_entries(fake)
    bot_dir = tmp_path / "bot"
    write_zip(bot_dir / "swarming_bot.zip", entries)
    fake.script("bot_poll", claim(TASK_A), sleep(60))
    fake.script("bot_claim", run(TASK_A, ["sh", "-c", "echo $$; sleep 300"], grace_period=1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMING_") and k != "PYTHONPATH"}
    bot_process = subprocess.Popen([sys.executable, str(bot_dir / "swarming_bot.zip"), "start_bot", "--id", "bot-1"],
                                   cwd=bot_dir, env={**env, "SWARMING_TOKEN": TOKEN}, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
    try:
        fake.wait_for(lambda: printed(fake, TASK_A).strip().isdigit(), timeout=60)
        shell = int(printed(fake, TASK_A))
        runner, server = parent(shell), parent(parent(shell))
        assert server in runner_servers(bot_dir)
    finally:
        bot_process.kill()
        bot_process.communicate(timeout=10)

    assert wait_gone([server, runner, shell], 15) == []  # The grace period (1 s), then the kill.
    assert all("exit_code" not in u for u in fake.bodies("bot_task_update"))  # Left to the server.


def test_a_server_that_does_not_fork_in_time_is_ended_and_the_runner_is_left_to_spawn(
        fake: FakeServer, tmp_path: Path) -> None:
    from bot.runner_server import RunnerServer
    from bot.unpacked_code import UnpackedCode

    entries, version = zip_entries(fake)
    write_zip(tmp_path / "swarming_bot.1.zip", entries)
    copy = UnpackedCode(tmp_path / "swarming_bot.1.zip", version, tmp_path / "code")
    copy.ensure()
    server = RunnerServer(copy.python_args(), env=os.environ, stdout=tmp_path / "server.log", start_timeout=1.0)
    [pid] = runner_servers(tmp_path)
    os.kill(pid, signal.SIGSTOP)  # Hung.
    try:
        with open(tmp_path / "runner.log", "ab") as stdout, pytest.raises(OSError, match="did not fork within 1 s"):
            server.popen(["--input", str(tmp_path / "input.json")], cwd=tmp_path, env=os.environ, stdout=stdout)
    finally:
        with contextlib.suppress(ProcessLookupError):  # Killed by then: a stopped process never reads its EOF.
            os.kill(pid, signal.SIGCONT)
    assert not server.alive and wait_gone([pid], 10) == []


def test_the_server_freezes_what_it_imported_so_that_runners_share_its_pages() -> None:
    from bot import runner_main, runner_server

    try:
        assert runner_server._imported_runner() is runner_main.main
        assert gc.get_freeze_count() > 0  # What a collection in a runner leaves untouched.
    finally:
        gc.unfreeze()
