"""The bot's loop against a loopback fake of the Bot API, in process and as a
real `python -m bot` process; each task runs in a real task runner process."""

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from bot import bot_main, commands, health, layout, remote, running_code
from bot.bot_main import Bot, Outcome
from bot.task_runner import Timings
from bot.updater import Updater
from shared.api_error import ApiError
from shared.bot_api import (
    BotAttributes, Candidate, HandshakeReply, Restart, Sleep, TaskUpdateReply, Terminate, UpdateCode,
)
from shared.cas import Digest
from tests.bot_fakes import (
    REPO, FakeServer, Reply, bot_zip_entries, claim, config, error, events_of, ok, renewing, run, served, skip, sleep,
    start_bot, wait_gone, write_zip,
)

TOKEN = "bot-token"
TASK_A, TASK_B = "5f3a1b2c3d4e5f00", "5f3a1b2c3d4e6000"
FAST = Timings(output_interval=0.1, keepalive=0.3, grace_period=1.0, drain=1.0, tick=0.02)
SOURCE = running_code.Code(None, running_code.DEV_VERSION, REPO)


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    yield from served()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def bot(fake: FakeServer, tmp_path: Path, sleeps: list[float]) -> Iterator[Bot]:
    api = remote.Remote(fake.url, TOKEN)
    yield Bot(api, tmp_path, "bot-1", shutdown=threading.Event(),
              sleep=sleeps.append, timings=FAST)
    api.close()


def updates(fake: FakeServer) -> list[dict[str, Any]]:
    return fake.bodies("bot_task_update")


def must_stop(reason: str) -> Reply:
    return ok(TaskUpdateReply(must_stop=True, stop_reason=reason).to_wire())


CARRY_ON = ok(TaskUpdateReply().to_wire())


def output(fake: FakeServer) -> bytes:
    return b"".join(base64.b64decode(u["output"]) for u in updates(fake))


def test_runs_a_claimed_task_and_reports_it(fake: FakeServer, bot: Bot, tmp_path: Path) -> None:
    fake.script("bot_poll", claim(TASK_A))
    fake.script("bot_claim", run(TASK_A, [sys.executable, "-c", "print('hello')"]))

    bot.run(once=True)

    assert fake.names()[:4] == ["bot_handshake", "bot_poll", "bot_claim", "bot_task_update"]
    assert fake.names()[4:] == ["bot_task_update"] * (len(fake.calls) - 5) + ["bot_event"]
    [shutdown] = fake.bodies("bot_event")
    assert (shutdown["event"], shutdown["message"]) == ("bot_shutdown", "done (--once)")
    for name, _, auth in fake.calls:
        assert auth == ("Bearer run-token" if name == "bot_task_update" else f"Bearer {TOKEN}"), name
    for _, body, _ in fake.calls:
        assert body["dimensions"]["id"] == ["bot-1"] and body["dimensions"]["pool"] == ["default"]
        assert body["version"] == "dev" and body["state"]["sleep_streak"] == 0
    [claimed] = fake.bodies("bot_claim")
    assert (claimed["task_id"], claimed["slice"]) == (TASK_A, 0) and claimed["claim_id"]
    assert {u["task_id"] for u in updates(fake)} == {TASK_A[:-1] + "1"}
    assert output(fake) == b"hello\n"
    final = updates(fake)[-1]
    assert final["exit_code"] == 0 and final["duration"] >= 0
    assert final["hard_timeout"] is False and final["io_timeout"] is False and "canceled" not in final
    assert all("exit_code" not in u for u in updates(fake)[:-1])
    assert not (tmp_path / "w").exists()


def test_a_skip_moves_on_to_the_next_candidate(fake: FakeServer, bot: Bot) -> None:
    fake.script("bot_poll", claim(TASK_A, TASK_B))
    fake.script("bot_claim", skip("taken"), run(TASK_B, ["true"]))

    assert bot.run_once() is Outcome.RAN

    claims = fake.bodies("bot_claim")
    assert [c["task_id"] for c in claims] == [TASK_A, TASK_B]
    assert claims[0]["claim_id"] != claims[1]["claim_id"]
    assert updates(fake)[-1]["task_id"] == TASK_B[:-1] + "1"


def test_every_candidate_skipped_polls_again(fake: FakeServer, bot: Bot) -> None:
    fake.script("bot_poll", claim(TASK_A))
    fake.script("bot_claim", skip("taken"))

    assert bot.run_once() is Outcome.SKIPPED


def test_a_503_poll_is_retried_with_the_same_request_uuid(fake: FakeServer, bot: Bot) -> None:
    fake.script("bot_poll", error(503, "unavailable"), sleep(1.0), sleep(1.0))

    assert bot.run_once() is Outcome.SLEPT
    assert bot.run_once() is Outcome.SLEPT

    first, retried, next_poll = (p["request_uuid"] for p in fake.bodies("bot_poll"))
    assert first == retried != next_poll


def test_sleep_answers_grow_the_sleep_streak(fake: FakeServer, bot: Bot, sleeps: list[float]) -> None:
    fake.script("bot_poll", sleep(1.5), sleep(2.5), claim(TASK_A))
    fake.script("bot_claim", run(TASK_A, ["true"]))

    assert [bot.run_once() for _ in range(3)] == [Outcome.SLEPT, Outcome.SLEPT, Outcome.RAN]

    assert [p["state"]["sleep_streak"] for p in fake.bodies("bot_poll")] == [0, 1, 2]
    assert sleeps == [1.5, 2.5]
    assert bot.sleep_streak == 0


def test_a_failed_poll_is_backed_off_then_retried(fake: FakeServer, bot: Bot, sleeps: list[float]) -> None:
    fake.script("bot_poll", error(400, "invalid_argument"), sleep(2.0))

    bot.run(once=True)

    backoff, slept = sleeps
    assert bot_main.BACKOFF_BASE_SECS / 2 <= backoff <= bot_main.BACKOFF_BASE_SECS
    assert slept == 2.0
    first, second = (p["request_uuid"] for p in fake.bodies("bot_poll"))
    assert first == second  # No answer yet: still the same poll.


@pytest.mark.parametrize("gone", [error(409, "conflict"), error(404, "not_found")])
def test_a_run_the_server_disowns_stops_the_task_and_returns_to_polling(
        fake: FakeServer, bot: Bot, gone: Reply) -> None:
    fake.script("bot_poll", claim(TASK_A))
    fake.script("bot_claim", run(TASK_A, ["sleep", "60"]))
    fake.script("bot_task_update", CARRY_ON, gone)
    started = time.monotonic()

    assert bot.run_once() is Outcome.RAN

    assert time.monotonic() - started < 20  # Not the command's 60 s.
    assert len(updates(fake)) == 2 and all("exit_code" not in u for u in updates(fake))


def test_must_stop_on_the_first_update_cancels_without_running(
        fake: FakeServer, bot: Bot, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    fake.script("bot_poll", claim(TASK_A))
    fake.script("bot_claim", run(TASK_A, ["touch", str(marker)]))
    fake.script("bot_task_update", must_stop("CANCELED"))

    assert bot.run_once() is Outcome.RAN

    first, end = updates(fake)
    assert "canceled" not in first and "exit_code" not in first  # Before the command would start.
    assert end["task_id"] == TASK_A[:-1] + "1" and end["canceled"] is True
    assert "exit_code" not in end and "duration" not in end
    assert not marker.exists()


def test_must_stop_while_running_kills_and_reports_the_completion(
        fake: FakeServer, bot: Bot, tmp_path: Path) -> None:
    fake.script("bot_poll", claim(TASK_A))
    fake.script("bot_claim", run(TASK_A, [sys.executable, "-c", "import time; time.sleep(60)"],
                                 grace_period=1))
    fake.script("bot_task_update", CARRY_ON, must_stop("KILLED"), CARRY_ON)
    started = time.monotonic()

    assert bot.run_once() is Outcome.RAN

    assert time.monotonic() - started < 20  # Not the command's 60 s.
    final = updates(fake)[-1]
    assert final["exit_code"] == -signal.SIGTERM and final["duration"] > 0
    assert "canceled" not in final and final["hard_timeout"] is False and final["io_timeout"] is False


def test_the_manifest_io_timeout_stops_a_silent_task(fake: FakeServer, bot: Bot) -> None:
    fake.script("bot_poll", claim(TASK_A))
    fake.script("bot_claim", run(TASK_A, ["sleep", "60"], io_timeout=0.3, grace_period=0.5))

    assert bot.run_once() is Outcome.RAN

    final = updates(fake)[-1]
    assert final["io_timeout"] is True and final["hard_timeout"] is False
    assert final["exit_code"] == -signal.SIGTERM


def test_a_bad_relative_cwd_is_a_task_error_and_polling_goes_on(
        fake: FakeServer, bot: Bot, tmp_path: Path) -> None:
    fake.script("bot_poll", claim(TASK_A), sleep(1.0))
    fake.script("bot_claim", run(TASK_A, ["touch", "ran"], relative_cwd="../escape"))

    assert bot.run_once() is Outcome.RAN
    assert bot.run_once() is Outcome.SLEPT

    assert fake.names()[-3:] == ["bot_claim", "bot_task_error", "bot_poll"]  # No update: never started.
    [reported] = fake.bodies("bot_task_error")
    assert reported["task_id"] == TASK_A[:-1] + "1"
    assert "manifest.relative_cwd" in reported["message"] and "'..'" in reported["message"]
    assert "client_error" not in reported
    assert reported["dimensions"]["id"] == ["bot-1"] and "sleep_streak" in reported["state"]
    assert not (tmp_path / "escape").exists()


def test_a_work_dir_that_cannot_be_made_is_a_task_error(fake: FakeServer, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("in the way of w/")
    fake.script("bot_poll", claim(TASK_A))
    fake.script("bot_claim", run(TASK_A, ["true"]))
    api = remote.Remote(fake.url, TOKEN)
    bot = Bot(api, tmp_path / "file", "bot-1", shutdown=threading.Event(),
              sleep=lambda _: None, timings=FAST)

    assert bot.run_once() is Outcome.RAN

    [reported] = fake.bodies("bot_task_error")
    assert "cannot make the work directory" in reported["message"]
    api.close()


class ScriptRunner:
    """Code whose task runner is `python -c SCRIPT run_task ...`: a runner
    that misbehaves on purpose."""

    zip_path = None
    version = "dev"
    source_root = REPO

    def __init__(self, script: str):
        self._script = script

    def python_args(self, *args: str) -> list[str]:
        return ["-c", self._script, *args]


#: Prefix of a script that runs the real runner once it has patched it.
RUNNER = "import sys, time\nfrom bot import runner_main, task_runner\n"
RUN_IT = "\nsys.exit(runner_main.main(sys.argv[2:]))\n"


def runner_bot(fake: FakeServer, tmp_path: Path, script: str, timings: Timings = FAST, **kwargs: Any) -> Bot:
    api = remote.Remote(fake.url, TOKEN)
    return Bot(api, tmp_path, "bot-1", shutdown=threading.Event(),
               sleep=lambda _: None, timings=timings, code=ScriptRunner(script), **kwargs)


def test_a_runner_failing_unexpectedly_is_a_task_error(fake: FakeServer, tmp_path: Path) -> None:
    script = RUNNER + "def broken(self):\n    raise RuntimeError('a bug')\ntask_runner.TaskRunner.run = broken" + RUN_IT
    bot = runner_bot(fake, tmp_path, script)
    fake.script("bot_poll", claim(TASK_A), sleep(1.0))
    fake.script("bot_claim", run(TASK_A, ["true"]))

    assert bot.run_once() is Outcome.RAN  # Handled, not raised to the loop's backoff.
    assert bot.run_once() is Outcome.SLEPT

    [reported] = fake.bodies("bot_task_error")
    assert reported["task_id"] == TASK_A[:-1] + "1"
    assert "RuntimeError('a bug')" in reported["message"]
    assert fake.names()[-2:] == ["bot_task_error", "bot_poll"]


def test_a_runner_that_dies_is_a_task_error(fake: FakeServer, tmp_path: Path) -> None:
    bot = runner_bot(fake, tmp_path, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    fake.script("bot_poll", claim(TASK_A))
    fake.script("bot_claim", run(TASK_A, ["true"]))

    assert bot.run_once() is Outcome.RAN

    [reported] = fake.bodies("bot_task_error")
    assert reported["task_id"] == TASK_A[:-1] + "1"
    assert "the task runner died (killed by SIGKILL)" in reported["message"]
    assert not (tmp_path / "w").exists()


def test_a_runner_that_dies_while_the_command_runs_leaves_no_luci_context(fake: FakeServer, tmp_path: Path) -> None:
    # The runner dies with the command started, its LUCI_CONTEXT written: no clean-up of its own runs.
    script = (RUNNER + "import os\n"
              "task_runner._wait = lambda process, timeout: (process.wait(), os.kill(os.getpid(), 9))" + RUN_IT)
    bot = runner_bot(fake, tmp_path, script)
    fake.script("bot_poll", claim(TASK_A))
    fake.script("bot_claim", run(TASK_A, ["sh", "-c", 'cp "$LUCI_CONTEXT" "$0"', str(tmp_path / "seen.json")],
                                 secret_bytes=base64.b64encode(b"s3cr3t").decode()))

    assert bot.run_once() is Outcome.RAN

    assert "the task runner died" in fake.bodies("bot_task_error")[0]["message"]
    assert json.loads((tmp_path / "seen.json").read_text())["swarming"]["secret_bytes"] == "czNjcjN0"
    assert not (tmp_path / "ctx").exists() and not (tmp_path / "w").exists()


def test_a_hung_runner_meets_the_last_ditch_timeout_with_its_command(fake: FakeServer, tmp_path: Path) -> None:
    # A runner that never sees its command end nor stops it: only the bot's own timeout is left.
    script = (RUNNER + "task_runner._wait = lambda process, timeout: time.sleep(timeout)\n"
              "task_runner.TaskRunner._enforce_stop = lambda self, pgid, now: None" + RUN_IT)
    timings = Timings(output_interval=0.1, keepalive=0.3, grace_period=0.0, drain=0.2, tick=0.02,
                      report_patience=0.3)
    bot = runner_bot(fake, tmp_path, script, timings=timings, last_ditch_margin=0.5)
    fake.script("bot_poll", claim(TASK_A))
    fake.script("bot_claim", run(TASK_A, ["sh", "-c", "echo $$; exec sleep 60"], hard_timeout=0.5))
    started = time.monotonic()

    assert bot.run_once() is Outcome.RAN

    assert 1.5 <= time.monotonic() - started < 10  # 0.5 + 0 + 0.2 + 0.3 + 0.5 s
    [reported] = fake.bodies("bot_task_error")
    assert "last-ditch timeout of 2 s" in reported["message"]
    assert wait_gone([int(output(fake))], 15) == []


def test_the_task_runs_in_a_runner_process_with_its_outdir(fake: FakeServer, bot: Bot, tmp_path: Path) -> None:
    code = ("import os; d = os.environ['ISOLATED_OUTDIR']; "
            "print(os.getppid(), d, os.listdir(d), os.getcwd(), os.listdir('.'))")
    fake.script("bot_poll", claim(TASK_A))
    fake.script("bot_claim", run(TASK_A, [sys.executable, "-c", code], caches=[{"name": "tools", "path": "t"}]))

    assert bot.run_once() is Outcome.RAN

    parent, outdir, listed, cwd, here = output(fake).decode().split(maxsplit=4)
    assert int(parent) != os.getpid()  # The runner's child, not the bot's.
    assert (outdir, listed, cwd, here) == (str(tmp_path / "io"), "[]", str(tmp_path / "w"), "['t']\n")
    assert (tmp_path / "c" / "tools").is_dir()  # The named cache went back to c/.
    assert not (tmp_path / "io").exists() and not (tmp_path / "w").exists()
    run_id = TASK_A[:-1] + "1"
    assert run_id in (tmp_path / "logs" / "task_runner.log").read_text()
    assert (tmp_path / "logs" / "task_runner_stdout.log").exists()


def test_terminate_completes_the_termination_task_then_stops(fake: FakeServer, bot: Bot) -> None:
    fake.script("bot_poll", ok(Terminate(TASK_A).to_wire()))
    fake.script("bot_claim", run(TASK_A, ["true"]))

    bot.run()  # Returns: the bot stops.

    assert fake.names() == ["bot_handshake", "bot_poll", "bot_claim", "bot_task_update", "bot_event"]
    [claimed] = fake.bodies("bot_claim")
    assert claimed["task_id"] == TASK_A
    [done] = updates(fake)
    assert (done["task_id"], done["exit_code"], done["duration"]) == (TASK_A[:-1] + "1", 0, 0.0)
    [event] = fake.bodies("bot_event")
    assert event["event"] == "bot_shutdown" and TASK_A in event["message"]


def test_a_restart_execs_the_bot_anew(fake: FakeServer, tmp_path: Path) -> None:
    execs: list[tuple[list[str], dict[str, str]]] = []
    code = running_code.current_code()
    updater = Updater(code, layout.Layout(tmp_path), ["--id", "bot-1"],
                               exec_python=lambda args, env: execs.append((list(args), dict(env or {}))))
    api = remote.Remote(fake.url, TOKEN)
    bot = Bot(api, tmp_path, "bot-1", shutdown=threading.Event(),
              sleep=lambda _: None, timings=FAST, updater=updater)
    fake.script("bot_poll", ok(Restart("its group changed").to_wire()))

    assert bot.run_once() is Outcome.RESTARTED

    [(args, _)] = execs
    assert args == ["-m", "bot", "start_bot", "--id", "bot-1"]
    [event] = fake.bodies("bot_event")
    assert event["event"] == "bot_shutdown" and "its group changed" in event["message"]
    api.close()


def test_an_update_from_source_is_refused_reported_and_waited_on(
        fake: FakeServer, bot: Bot, sleeps: list[float]) -> None:
    fake.script("bot_poll", ok(UpdateCode("ab" * 32).to_wire()))

    assert bot.run_once() is Outcome.UPDATE_FAILED
    assert bot.run_once() is Outcome.UPDATE_FAILED

    [event] = fake.bodies("bot_event")  # Reported once, not at every poll.
    assert event["event"] == "bot_error" and "running from source" in event["message"]
    assert len(sleeps) == 2 and all(s >= bot_main.UPDATE_RETRY_SECS * 0.8 for s in sleeps)
    assert "bot_code" not in fake.names()


def test_a_malformed_manifest_is_a_task_error(fake: FakeServer, bot: Bot) -> None:
    fake.script("bot_poll", claim(TASK_A))
    fake.script("bot_claim", run(TASK_A, ["true"], io_timeout="soon"))

    assert bot.run_once() is Outcome.RAN

    [reported] = fake.bodies("bot_task_error")
    assert reported["task_id"] == TASK_A[:-1] + "1"
    assert "bad manifest" in reported["message"] and "io_timeout" in reported["message"]
    assert not updates(fake)


def test_a_task_error_that_cannot_be_reported_does_not_stop_the_bot(fake: FakeServer, bot: Bot) -> None:
    fake.script("bot_poll", claim(TASK_A))
    fake.script("bot_claim", run(TASK_A, ["true"], relative_cwd="/abs"))
    fake.script("bot_task_error", error(400, "invalid_argument"))

    assert bot.run_once() is Outcome.RAN

    assert len(fake.bodies("bot_task_error")) == 1


def test_the_server_s_session_goes_back_with_every_call(fake: FakeServer) -> None:
    fake.script("bot_handshake", ok(HandshakeReply("s-1", "dev", "fake").to_wire()))
    fake.script("bot_poll", sleep(1.0), ok(Sleep(1.0, session="s-2").to_wire()), sleep(1.0))
    api = remote.Remote(fake.url, TOKEN)
    attributes = BotAttributes({"id": ["bot-1"], "pool": ["default"]}, {}, "dev", session="ignored")

    api.handshake(attributes)
    for n in range(3):
        api.poll(attributes, f"u-{n}")
    api.event(attributes, "bot_log", "the event's reply has no session")
    api.close()

    assert [body.get("session") for _, body, _ in fake.calls] == [None, "s-1", "s-1", "s-2", "s-2"]


def test_a_reply_that_does_not_parse_names_its_field(fake: FakeServer) -> None:
    fake.script("bot_poll", ok({"cmd": "sleep", "duration": "soon"}))
    fake.script("bot_claim", ok({"cmd": "run", "manifest": {"task_id": "not a run id"}}))
    api = remote.Remote(fake.url, TOKEN)
    attributes = BotAttributes({"id": ["bot-1"], "pool": ["default"]}, {}, "dev")

    with pytest.raises(ApiError) as poll:
        api.poll(attributes, "u-1")
    with pytest.raises(ApiError) as claimed:  # Not even whose run it is: no BadManifest.
        api.claim(attributes, Candidate(TASK_A), "c-1")
    api.close()

    assert (poll.value.call, poll.value.code, poll.value.field) == ("bot_poll", "bad_reply", "duration")
    assert not isinstance(claimed.value, remote.BadManifest)
    assert (claimed.value.code, claimed.value.field) == ("bad_reply", "manifest.task_id")


def test_task_error_sends_missing_cas_as_a_client_error(fake: FakeServer) -> None:
    api = remote.Remote(fake.url, TOKEN)
    attributes = BotAttributes({"id": ["bot-1"], "pool": ["default"]}, {}, "dev")
    digest = Digest("ab" * 32, 3)

    api.task_error(attributes, "5f3a1b2c3d4e5f01", "inputs missing", missing_cas=[digest])
    api.task_error(attributes, "5f3a1b2c3d4e5f01", "internal")
    api.close()

    with_cas, without = fake.bodies("bot_task_error")
    assert with_cas["task_id"] == "5f3a1b2c3d4e5f01" and with_cas["message"] == "inputs missing"
    assert with_cas["client_error"] == {"missing_cas": [{"hash": "ab" * 32, "size_bytes": 3}]}
    assert "client_error" not in without and without["message"] == "internal"


def test_the_state_reports_sleep_streak_and_running_time(fake: FakeServer, tmp_path: Path) -> None:
    now = [1000.0]
    fake.script("bot_poll", sleep(5.0))
    api = remote.Remote(fake.url, TOKEN)

    def advance(seconds: float) -> None:
        now[0] += seconds

    bot = Bot(api, tmp_path, "bot-1", shutdown=threading.Event(),
              sleep=advance, timings=FAST, clock=lambda: now[0])
    bot.handshake()
    bot.run_once()
    bot.run_once()
    api.close()

    states = [body["state"] for _, body, _ in fake.calls]
    assert [(s["sleep_streak"], s["running_time"]) for s in states] == [(0, 0.0), (0, 0.0), (1, 5.0)]
    assert all({"disk", "ram", "uptime"} <= s.keys() for s in states)  # The default get_state hook's.


def test_the_cli_once_reports_its_dimensions_and_ends(fake: FakeServer, tmp_path: Path) -> None:
    fake.script("bot_poll", sleep(0.01))

    bot_process = start_bot(fake.url, tmp_path / "bot", TOKEN, "--id", "cli-bot", "--once",
                             "--dimension", "pool=ci", "--dimension", "gpu=a", "--dimension", "gpu=b")
    _, stderr = bot_process.communicate(timeout=10)

    assert bot_process.returncode == 0, stderr.decode()
    assert fake.names() == ["bot_handshake", "bot_poll", "bot_event"]
    dimensions = fake.bodies("bot_handshake")[0]["dimensions"]
    assert dimensions["id"] == ["cli-bot"] and dimensions["pool"] == ["ci"]
    assert dimensions["gpu"] == ["a", "b"]
    assert dimensions["python"] == ["3", f"3.{sys.version_info.minor}", "3.{}.{}".format(*sys.version_info[1:3])]
    assert {"os", "cpu", "cores"} <= dimensions.keys()
    assert fake.bodies("bot_event")[0]["event"] == "bot_shutdown"
    assert b"cli-bot" in stderr


def test_sigterm_stops_the_running_task_reports_it_and_exits_0(fake: FakeServer, tmp_path: Path) -> None:
    fake.script("bot_poll", claim(TASK_A), sleep(60))
    fake.script("bot_claim", run(TASK_A, ["sleep", "60"], grace_period=5))
    bot_process = start_bot(fake.url, tmp_path / "bot", TOKEN, "--id", "bot-1")
    fake.wait_for(lambda: bool(updates(fake)))

    bot_process.send_signal(signal.SIGTERM)
    _, stderr = bot_process.communicate(timeout=10)

    assert bot_process.returncode == 0, stderr.decode()
    final = updates(fake)[-1]
    assert final["exit_code"] == -signal.SIGTERM
    assert TASK_A[:-1].encode() in stderr  # Its log lines name the task.
    assert TASK_A[:-1] in (tmp_path / "bot" / "logs" / "swarming_bot.log").read_text()


def test_sigusr1_logs_the_stack_of_every_thread(fake: FakeServer, tmp_path: Path) -> None:
    fake.script("bot_poll", sleep(60))
    bot_process = start_bot(fake.url, tmp_path / "bot", TOKEN, "--id", "bot-1")
    fake.wait_for(lambda: "bot_poll" in fake.names())
    log = tmp_path / "bot" / "logs" / "swarming_bot.log"

    bot_process.send_signal(signal.SIGUSR1)
    fake.wait_for(lambda: "stacks of" in log.read_text())
    bot_process.send_signal(signal.SIGTERM)
    bot_process.communicate(timeout=10)

    dump = log.read_text()
    assert "Thread MainThread" in dump and "bot_main.py" in dump
    assert bot_process.returncode == 0


def test_no_token_is_needed_and_the_bootstrap_token_file_is_in_the_bot_s_directory(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SWARMING_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    base = ["--server", "http://x", "--work-dir", "/tmp/x"]

    options = commands.parse_args(base, SOURCE)
    assert options.token is None and options.bootstrap_token_file == Path("/tmp/x/bootstrap_token")
    given = commands.parse_args([*base, "--bootstrap-token-file", "t"], SOURCE)
    assert given.bootstrap_token_file == tmp_path / "t"
    monkeypatch.setenv("SWARMING_TOKEN", "static")
    assert commands.parse_args(base, SOURCE).token == "static"
    assert commands.parse_args([*base, "--token", "flag"], SOURCE).token == "flag"


def test_the_bot_id_is_the_hostname_without_its_domain_unless_overridden(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "build-7.lab.example.com")
    monkeypatch.delenv("SWARMING_BOT_ID", raising=False)
    base = ["--server", "http://x", "--work-dir", "/tmp/x", "--token", "t"]

    assert commands.parse_args(base, SOURCE).bot_id == "build-7"
    monkeypatch.setenv("SWARMING_BOT_ID", "env-bot")
    assert commands.parse_args(base, SOURCE).bot_id == "env-bot"
    assert commands.parse_args([*base, "--id", "flag-bot"], SOURCE).bot_id == "flag-bot"


def test_the_bot_id_comes_from_the_environment_and_id_cannot_be_a_dimension(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARMING_BOT_ID", "env-bot")
    base = ["--server", "http://x", "--work-dir", "/tmp/x", "--token", "t"]

    assert commands.parse_args(base, SOURCE).bot_id == "env-bot"
    with pytest.raises(SystemExit):
        commands.parse_args([*base, "--dimension", "id=other"], SOURCE)


# The hooks of bot_config.py, called by the loop.

@pytest.fixture
def quiet_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TEMP of its own, so that the host's /tmp cannot quarantine the bot."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return temp


@pytest.fixture
def hooked_bot(fake: FakeServer, tmp_path: Path) -> Iterator[Callable[..., Bot]]:
    """Makes a bot in tmp_path/bot with the hooks of a bot_config.py source."""
    apis: list[remote.Remote] = []

    def make(source: str, **kwargs: Any) -> Bot:
        kwargs.setdefault("sleep", lambda _: None)
        (tmp_path / "bot").mkdir(exist_ok=True)
        apis.append(remote.Remote(fake.url, TOKEN))
        return Bot(apis[-1], tmp_path / "bot", "bot-1", shutdown=threading.Event(), timings=FAST,
                   bot_config=config(source), **kwargs)

    yield make
    for api in apis:
        api.close()


RECORDING = """
    import json
    CALLS = []

    def setup_bot(bot):
        CALLS.append(("setup_bot",))
        return True

    def on_bot_startup(bot):
        CALLS.append(("on_bot_startup",))

    def on_handshake(bot):
        CALLS.append(("on_handshake", bot.server_dimensions))

    def on_bot_idle(bot, since_last_action):
        CALLS.append(("on_bot_idle", since_last_action >= 0))

    def on_before_task(bot, bot_file, runner_cmd, runner_env):
        with open(bot_file) as f:
            CALLS.append(("on_before_task", json.load(f)["dimensions"]["gpu"],
                          runner_env["SWARMING_BOT_FILE"] == bot_file, runner_cmd[-1]))
        runner_env["FROM_HOOK"] = "set by on_before_task"

    def on_after_task(bot, failure, internal_failure, dimensions, summary):
        CALLS.append(("on_after_task", failure, internal_failure, dimensions, summary.get("exit_code")))

    def on_bot_shutdown(bot):
        CALLS.append(("on_bot_shutdown",))

    def get_dimensions(bot):
        return {"gpu": ["none"], "pool": ["hooked"], "id": ["not-the-bot-id"]}

    def get_state(bot):
        return {"temperature": 40}
"""

#: Prints what the task sees of the hooks: the bot file and the runner's environment.
SHOW_HOOKS = ("import json, os; print(json.load(open(os.environ['SWARMING_BOT_FILE']))['dimensions']['gpu'], "
              "os.environ['FROM_HOOK'])")


def test_the_hooks_are_called_at_their_times(
        fake: FakeServer, hooked_bot: Callable[..., Bot], tmp_path: Path, quiet_temp: Path) -> None:
    fake.script("bot_handshake", ok(HandshakeReply(None, "dev", "fake", {"pool": ["ci"]}).to_wire()))
    fake.script("bot_poll", sleep(1.0), claim(TASK_A), ok(Terminate(TASK_B).to_wire()))
    fake.script("bot_claim", run(TASK_A, [sys.executable, "-c", SHOW_HOOKS]),
                run(TASK_B, ["true"]))
    bot = hooked_bot(RECORDING)

    bot.run()

    assert bot.hooks.module.CALLS == [
        ("setup_bot",), ("on_bot_startup",), ("on_handshake", {"pool": ["ci"]}),
        ("on_bot_idle", True),
        ("on_before_task", ["none"], True, "run_task"),
        ("on_after_task", False, False, {"pool": ["default"]}, 0),
        ("on_bot_shutdown",), ("setup_bot",),
    ]
    assert output(fake) == b"['none'] set by on_before_task\n"
    assert not (tmp_path / "bot" / bot_main.BOT_FILE).exists()
    assert fake.names()[-1] == "bot_event"
    assert events_of(fake, "bot_shutdown") == [f"terminated by task {TASK_B}"]
    assert events_of(fake, "bot_error") == []


def test_the_hooks_dimensions_and_state_reach_every_call(
        fake: FakeServer, hooked_bot: Callable[..., Bot], quiet_temp: Path) -> None:
    fake.script("bot_poll", sleep(1.0))
    bot = hooked_bot(RECORDING, overrides={"pool": ["from-flag"], "zone": ["a"]})

    bot.handshake()
    bot.run_once()
    bot.run_once()

    for _, body, _ in fake.calls:
        # --dimension over the hooks'; the id is always the bot's.
        assert body["dimensions"] == {"gpu": ["none"], "id": ["bot-1"], "pool": ["from-flag"], "zone": ["a"]}
        assert body["state"]["temperature"] == 40 and "quarantined" not in body["state"]
    assert [p["state"]["sleep_streak"] for p in fake.bodies("bot_poll")] == [0, 1]
    assert bot.view.dimensions["gpu"] == ["none"] and bot.view.state["temperature"] == 40


def test_the_state_is_computed_again_once_stale(
        fake: FakeServer, hooked_bot: Callable[..., Bot], quiet_temp: Path) -> None:
    now = [1000.0]
    fake.script("bot_poll", sleep(1.0))
    bot = hooked_bot("""
        COUNT = [0]
        def get_state(bot):
            COUNT[0] += 1
            return {"computed": COUNT[0]}
    """, clock=lambda: now[0])

    for step in (0.0, 1.0, 1.0, bot_main.ATTRIBUTES_TTL_SECS):
        now[0] += step
        bot.run_once()

    states = [p["state"] for p in fake.bodies("bot_poll")]
    assert [s["computed"] for s in states] == [1, 1, 1, 2]
    assert [s["running_time"] for s in states] == [0.0, 1.0, 2.0, 2.0 + bot_main.ATTRIBUTES_TTL_SECS]
    assert [s["sleep_streak"] for s in states] == [0, 1, 2, 3]


@pytest.mark.parametrize("hook, source", [
    ("on_bot_idle", "def on_bot_idle(bot, since_last_action): raise RuntimeError('boom in on_bot_idle')"),
    ("get_state", "def get_state(bot): raise RuntimeError('boom in get_state')"),
    ("get_dimensions", "def get_dimensions(bot): raise RuntimeError('boom in get_dimensions')"),
])
def test_a_hook_that_raises_is_a_bot_error_and_polling_goes_on(
        fake: FakeServer, hooked_bot: Callable[..., Bot], quiet_temp: Path, hook: str, source: str) -> None:
    fake.script("bot_poll", sleep(1.0))
    bot = hooked_bot(source, attributes_ttl=0.0)

    assert [bot.run_once() for _ in range(3)] == [Outcome.SLEPT] * 3

    errors = events_of(fake, "bot_error")
    assert errors and all(f"{hook}() in " in e and f"RuntimeError: boom in {hook}" in e for e in errors)
    assert len(fake.bodies("bot_poll")) == 3
    for poll in fake.bodies("bot_poll"):  # The default hooks answered in its place.
        assert poll["dimensions"]["id"] == ["bot-1"] and "os" in poll["dimensions"]
        assert "disk" in poll["state"]


def test_a_health_check_failure_quarantines(fake: FakeServer, hooked_bot: Callable[..., Bot], quiet_temp: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    fake.script("bot_poll", sleep(1.0))
    monkeypatch.setattr(health, "check", lambda work_dir, settings: "the disk is full (fake)")
    bot = hooked_bot("")

    bot.run_once()

    [poll] = fake.bodies("bot_poll")
    assert poll["state"]["quarantined"] == "the disk is full (fake)"
    assert events_of(fake, "bot_error") == []  # Quarantine is state, not an error.


def test_too_many_temp_files_quarantine(
        fake: FakeServer, hooked_bot: Callable[..., Bot], quiet_temp: Path) -> None:
    fake.script("bot_poll", sleep(1.0))
    for i in range(1025):
        (quiet_temp / str(i)).touch()
    bot = hooked_bot("")

    bot.run_once()

    [poll] = fake.bodies("bot_poll")
    assert "1025 files" in poll["state"]["quarantined"]


def test_a_hook_quarantines(fake: FakeServer, hooked_bot: Callable[..., Bot], quiet_temp: Path) -> None:
    fake.script("bot_poll", sleep(1.0))
    bot = hooked_bot("def get_state(bot): return {'quarantined': 'too hot'}")

    bot.run_once()

    [poll] = fake.bodies("bot_poll")
    assert poll["state"]["quarantined"] == "too hot"


def test_a_failed_task_a_task_error_and_a_bad_manifest_reach_on_after_task(
        fake: FakeServer, hooked_bot: Callable[..., Bot]) -> None:
    task_c = "5f3a1b2c3d4e6100"
    fake.script("bot_poll", claim(TASK_A), claim(TASK_B), claim(task_c))
    fake.script("bot_claim", run(TASK_A, ["sh", "-c", "exit 3"]),
                run(TASK_B, ["true"], caches=[{"name": "all", "path": "."}]),  # The runner refuses it.
                run(task_c, ["true"], relative_cwd="../escape"))  # The bot cannot read it: no dimensions.
    bot = hooked_bot(RECORDING)

    assert [bot.run_once() for _ in range(3)] == [Outcome.RAN] * 3

    after = [call for call in bot.hooks.module.CALLS if call[0] == "on_after_task"]
    assert after == [("on_after_task", True, False, {"pool": ["default"]}, 3),
                     ("on_after_task", False, True, {"pool": ["default"]}, None),
                     ("on_after_task", False, True, {}, None)]
    assert "named cache cannot be the work directory" in fake.bodies("bot_task_error")[0]["message"]


def test_setup_bot_returning_false_stops_the_bot_before_the_handshake(
        fake: FakeServer, hooked_bot: Callable[..., Bot]) -> None:
    bot = hooked_bot("def setup_bot(bot): return False")

    bot.run()

    assert fake.names() == ["bot_event"]
    assert "setup_bot() returned False" in events_of(fake, "bot_shutdown")[0]


def test_the_authentication_headers_are_asked_again_before_they_expire(
        fake: FakeServer, hooked_bot: Callable[..., Bot]) -> None:
    now = [1_700_000_000.0]
    fake.script("bot_handshake", renewing(ok(HandshakeReply().to_wire()), "bot-token-1"))
    fake.script("bot_poll", sleep(1.0))
    bot = hooked_bot(f"""
        ISSUED = []
        def get_authentication_headers(bot):
            ISSUED.append(1)
            return {{"Authorization": f"Bearer hook-{{len(ISSUED)}}", "X-Hook": str(len(ISSUED))}}, {now[0]} + 400
    """, now=lambda: now[0])

    bot.handshake()
    now[0] += 50
    bot.run_once()
    now[0] += 100  # 250 s before the expiry: within the margin.
    bot.run_once()

    # The hook's Authorization is the handshake's; its other headers go with every call.
    assert [auth for _, _, auth in fake.calls] == ["Bearer hook-1", "Bearer bot-token-1", "Bearer bot-token-1"]
    assert [headers["X-Hook"] for headers in fake.headers] == ["1", "1", "2"]


def test_an_exception_of_the_bot_s_own_is_a_bot_error_and_the_loop_goes_on(
        fake: FakeServer, hooked_bot: Callable[..., Bot], sleeps: list[float]) -> None:
    fake.script("bot_poll", sleep(1.0), sleep(2.0))
    bot = hooked_bot("", sleep=sleeps.append)
    failures = [RuntimeError("a bug of the bot's")]

    def idle() -> None:
        if failures:
            raise failures.pop()

    bot._updater.idle = idle  # type: ignore[method-assign]

    bot.run(once=True)

    [error] = events_of(fake, "bot_error")
    assert error.startswith("run_once failed") and "RuntimeError: a bug of the bot's" in error
    assert len(fake.bodies("bot_poll")) == 2 and sleeps[-1] == 2.0


def test_a_server_restart_reboots_the_host_only_when_a_hook_does(fake: FakeServer, tmp_path: Path) -> None:
    execs: list[list[str]] = []
    reboots: list[int] = []
    shutdown = threading.Event()
    code = running_code.current_code()
    updater = Updater(code, layout.Layout(tmp_path), [],
                               exec_python=lambda args, env: execs.append(list(args)))
    fake.script("bot_poll", ok(Restart("up for too long", host=True).to_wire()))
    api = remote.Remote(fake.url, TOKEN)
    rebooting = """
        def on_bot_shutdown(bot):
            bot.host_reboot("rebooting as the server asked")
    """
    # The SIGTERM of the host's shutdown comes while the bot waits for it.
    bot = Bot(api, tmp_path, "bot-1", shutdown=shutdown, sleep=lambda _: shutdown.set(), timings=FAST,
              updater=updater, bot_config=config(rebooting), reboot=lambda: reboots.append(1))

    assert bot.run_once() is Outcome.RESTARTED

    assert reboots == [1] and execs == []
    assert events_of(fake, "bot_rebooting") == ["rebooting as the server asked"]
    assert events_of(fake, "bot_shutdown") == ["restarting: up for too long"]
    # Without a hook that reboots, the same answer restarts the bot process.
    plain = Bot(api, tmp_path, "bot-1", shutdown=threading.Event(), sleep=lambda _: None, timings=FAST,
                updater=updater, bot_config=config(""), reboot=lambda: reboots.append(2))
    assert plain.run_once() is Outcome.RESTARTED
    assert reboots == [1] and execs == [["-m", "bot", "start_bot"]]
    api.close()


def test_a_hook_s_reboot_stops_the_polls_until_the_host_goes_down(
        fake: FakeServer, hooked_bot: Callable[..., Bot]) -> None:
    waits: list[float] = []
    fake.script("bot_poll", sleep(1.0))
    bot = hooked_bot("""
        def on_bot_idle(bot, since_last_action):
            bot.host_reboot("a reboot a day")
    """, sleep=waits.append, reboot=lambda: None)

    assert bot.run_once() is Outcome.SLEPT
    assert bot.run_once() is Outcome.REBOOTING  # No poll: it waited for the SIGTERM, in vain.

    assert len(fake.bodies("bot_poll")) == 1 and waits == [1.0, bot_main.REBOOT_WAIT_SECS]
    assert events_of(fake, "bot_rebooting") == ["a reboot a day"]
    assert "did not reboot" in events_of(fake, "bot_error")[0]


def test_a_hook_s_bot_restart_restarts_the_bot_process(
        fake: FakeServer, hooked_bot: Callable[..., Bot], tmp_path: Path) -> None:
    execs: list[list[str]] = []
    updater = Updater(running_code.current_code(), layout.Layout(tmp_path / "bot"), ["--once"],
                               exec_python=lambda args, env: execs.append(list(args)))
    fake.script("bot_poll", sleep(1.0))
    bot = hooked_bot(RECORDING + """
    def on_bot_idle(bot, since_last_action):
        bot.bot_restart("new drivers")
    """, updater=updater)

    assert bot.run_once() is Outcome.SLEPT
    assert execs == []  # Not from inside the hook.
    assert bot.run_once() is Outcome.RESTARTED

    assert execs == [["-m", "bot", "start_bot", "--once"]] and len(fake.bodies("bot_poll")) == 1
    assert bot.hooks.module.CALLS[-2:] == [("on_bot_shutdown",), ("setup_bot",)]
    assert events_of(fake, "bot_shutdown") == ["restarting: new drivers"]


def test_the_zip_s_bot_config_is_used_and_unhandled_exceptions_are_reported(
        fake: FakeServer, tmp_path: Path) -> None:
    """A real bot from a zip whose bot_config.py the server injected: its
    hooks run, an exception no one catches (in a thread the hook started) is
    reported, and SIGTERM calls on_bot_shutdown then reports bot_shutdown."""
    hooks_source = textwrap.dedent("""
        import threading

        def on_bot_startup(bot):
            def fail():
                raise ValueError("lost in a thread")
            threading.Thread(target=fail, name="doomed").start()

        def get_state(bot):
            return {"quarantined": "the zip's hooks say so"}

        def on_bot_shutdown(bot):
            bot.post_event("bot_log", "goodbye from on_bot_shutdown")
    """)
    zip_path = tmp_path / "bot" / "swarming_bot.zip"
    write_zip(zip_path, bot_zip_entries(fake.url, replace={"bot_config.py": hooks_source.encode()}))
    fake.script("bot_poll", sleep(60))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMING_") and k != "PYTHONPATH"}
    bot_process = subprocess.Popen([sys.executable, str(zip_path), "start_bot", "--id", "bot-1"],
                                   cwd=zip_path.parent, env={**env, "SWARMING_TOKEN": TOKEN},
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        fake.wait_for(lambda: "bot_poll" in fake.names() and bool(events_of(fake, "bot_error")), timeout=30)
    finally:
        bot_process.send_signal(signal.SIGTERM)
        _, stderr = bot_process.communicate(timeout=30)

    assert bot_process.returncode == 0, stderr.decode()
    [error] = events_of(fake, "bot_error")
    assert "unhandled exception in thread 'doomed'" in error and "ValueError: lost in a thread" in error
    assert fake.bodies("bot_poll")[0]["state"]["quarantined"] == "the zip's hooks say so"
    assert events_of(fake, "bot_log") == ["goodbye from on_bot_shutdown"]
    assert events_of(fake, "bot_shutdown") == ["SIGTERM received"]
    assert fake.names()[-1] == "bot_event"
