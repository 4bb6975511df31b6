"""The task runner with real child processes; a recorder stands in for the server."""

import dataclasses
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from bot.remote import RunGone
from bot.task_runner import START_FAILURE_EXIT_CODE, Result, StopReason, TaskError, TaskRunner, Timings
from shared.api_error import ApiError
from shared.bot_api import Completion, TaskUpdateReply, Update
from shared.manifest import Manifest
from shared.task_properties import Cache
from tests.bot_fakes import wait_gone

RUN_ID = "5f3a1b2c3d4e5f01"
BOT_ID = "bot-1"
SERVER = "http://127.0.0.1:1"
BOT_DIMENSIONS = {"id": [BOT_ID], "os": ["Linux", "Ubuntu"], "pool": ["default"]}
FAST = Timings(output_interval=0.1, keepalive=0.3, grace_period=0.5, drain=1.0, tick=0.02)

#: Answers the n-th update (from 1): None to carry on, a stop reason, or raises.
Answer = Callable[[int, Update], str | None]


class Recorder:
    """Records the updates the server would have accepted."""

    def __init__(self, answer: Answer = lambda n, update: None):
        self._answer = answer
        self.attempts = 0
        self.updates: list[Update] = []
        self.times: list[float] = []  # When each recorded update came.

    def __call__(self, update: Update) -> TaskUpdateReply:
        self.attempts += 1
        stop = self._answer(self.attempts, update)  # Raises for a failed update.
        self.updates.append(update)
        self.times.append(time.monotonic())
        return TaskUpdateReply(must_stop=stop is not None, stop_reason=stop)

    def output(self) -> bytes:
        """Everything the server got, checking each packet starts where the last ended."""
        data = b""
        for update in self.updates:
            assert update.offset == len(data), "packets must be contiguous"
            data += update.output
        return data

    @property
    def completions(self) -> list[Completion]:
        return [u.completion for u in self.updates if u.completion]


def without_stats(completion: Completion) -> Completion:
    return dataclasses.replace(completion, performance_stats=None)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def run_task(tmp_path: Path, command: list[str], *, send: Recorder | None = None,
             shutdown: threading.Event | None = None, timings: Timings = FAST,
             **manifest: object) -> tuple[Result, Recorder]:
    send = send or Recorder()
    fields = {"task_id": RUN_ID, "bot_id": BOT_ID, "command": tuple(command), "env": {},
              "hard_timeout": 30.0, "grace_period": None, **manifest}
    runner = TaskRunner(Manifest(**fields), tmp_path / "w", send, server=SERVER, bot_dimensions=BOT_DIMENSIONS,
                        shutdown=shutdown or threading.Event(), timings=timings)
    return runner.run(), send


def test_output_arrives_complete_in_order_at_exact_offsets(tmp_path: Path) -> None:
    lines = "".join(f"line {i}\n" for i in range(40))
    code = "import sys, time\nfor i in range(40):\n print(f'line {i}', flush=True)\n time.sleep(0.01)"

    result, sent = run_task(tmp_path, python(code))

    assert sent.output() == lines.encode()
    assert sent.updates[0] == Update(0)  # Sent before the command starts.
    assert sum(1 for u in sent.updates if u.output) > 1  # Streamed, not all at the end.
    assert sent.completions == [sent.updates[-1].completion]
    assert result.exit_code == 0 and result.stop is None


@pytest.mark.parametrize("code", [0, 3])
def test_exit_code_is_reported_with_stderr_merged(tmp_path: Path, code: int) -> None:
    result, sent = run_task(tmp_path, python(f"import sys; sys.stderr.write('oops'); sys.exit({code})"))

    [completion] = sent.completions
    assert completion.exit_code == code == result.exit_code
    assert not completion.hard_timeout and completion.duration >= 0
    assert sent.output() == b"oops"


def test_large_output_is_split_into_contiguous_packets(tmp_path: Path) -> None:
    # Slow intervals: the whole output is pending at the end and split there.
    slow = Timings(output_interval=60, keepalive=60, tick=0.02)

    _, sent = run_task(tmp_path, python("import sys; sys.stdout.write('x' * 600_000)"), timings=slow)

    assert sent.output() == b"x" * 600_000
    assert [len(u.output) for u in sent.updates if u.output] == [250_000, 250_000, 100_000]
    assert sent.updates[-1].completion and len(sent.completions) == 1


def test_hard_timeout_terminates_and_is_reported(tmp_path: Path) -> None:
    started = time.monotonic()

    result, sent = run_task(tmp_path, ["sleep", "60"], hard_timeout=0.3, grace_period=5.0)

    [completion] = sent.completions
    assert completion.hard_timeout
    assert completion.exit_code == -signal.SIGTERM
    assert result.stop is StopReason.HARD_TIMEOUT
    assert time.monotonic() - started < 20  # Not the command's 60 s.


def test_a_child_ignoring_sigterm_gets_sigkill_after_the_grace_period(tmp_path: Path) -> None:
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)")

    result, sent = run_task(tmp_path, python(code), hard_timeout=0.5, grace_period=0.3)

    [completion] = sent.completions
    assert completion.exit_code == -signal.SIGKILL and completion.hard_timeout
    assert completion.duration >= 0.8
    assert sent.output() == b"ready\n"


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")
def test_descendants_do_not_outlive_the_task(tmp_path: Path) -> None:
    _, sent = run_task(tmp_path, ["sh", "-c", "sleep 30 & echo $!"])

    assert wait_gone([int(sent.output())], 15) == []


def test_must_stop_terminates_the_command(tmp_path: Path) -> None:
    send = Recorder(lambda n, update: "KILLED" if n > 1 else None)

    result, sent = run_task(tmp_path, python("import time; print('hi', flush=True); time.sleep(60)"),
                            send=send)

    assert result.stop is StopReason.SERVER
    [completion] = sent.completions
    assert completion.exit_code == -signal.SIGTERM and completion.duration > 0
    assert not completion.hard_timeout and not completion.io_timeout
    assert not any(u.canceled for u in sent.updates)  # It ran: killed, not canceled.
    assert sent.output() == b"hi\n"


def test_a_task_cancelled_before_it_starts_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    result, sent = run_task(tmp_path, ["touch", str(marker)], send=Recorder(lambda n, update: "CANCELED"))

    assert result.exit_code is None and result.stop is StopReason.SERVER
    assert sent.updates == [Update(0), Update(0, canceled=True)]  # No completion: never ran.
    assert not marker.exists()


def test_run_gone_stops_the_command_and_reports_nothing_more(tmp_path: Path) -> None:
    def answer(n: int, update: Update) -> None:
        if n > 1:
            raise RunGone("bot_task_update", 409, "conflict", "not held by this bot")

    send = Recorder(answer)
    result, sent = run_task(tmp_path, ["sleep", "60"], send=send)

    assert result.stop is StopReason.RUN_GONE and result.exit_code == -signal.SIGTERM
    assert sent.updates == [Update(0)] and send.attempts == 2


def test_a_failed_update_is_resent_at_the_same_offset(tmp_path: Path) -> None:
    def answer(n: int, update: Update) -> None:
        if n == 2:
            raise ApiError("bot_task_update", 503, "unavailable", "try later")

    code = "import time\nfor i in range(5):\n print(i, flush=True)\n time.sleep(0.1)"
    _, sent = run_task(tmp_path, python(code), send=Recorder(answer))

    assert sent.output() == b"0\n1\n2\n3\n4\n"
    assert sent.completions[0].exit_code == 0


def test_a_missing_executable_is_reported_not_raised(tmp_path: Path) -> None:
    result, sent = run_task(tmp_path, ["/nonexistent/command", "arg"])

    [completion] = sent.completions
    assert completion.exit_code == START_FAILURE_EXIT_CODE == result.exit_code
    assert b"cannot start '/nonexistent/command'" in sent.output()
    assert b"No such file" in sent.output()


def test_the_command_sees_its_environment_and_the_runner_s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROM_BOT", "inherited")
    names = ["SWARMING_TASK_ID", "SWARMING_BOT_ID", "SWARMING_SERVER", "FOO", "FROM_BOT"]
    code = f"import os; print([os.environ.get(n) for n in {names!r}], os.getcwd())"

    _, sent = run_task(tmp_path, python(code), env={"FOO": "bar"})

    expected = [RUN_ID, BOT_ID, SERVER, "bar", "inherited"]
    assert sent.output().decode() == f"{expected} {tmp_path / 'w'}\n"


def test_isolated_outdir_is_a_fresh_directory_beside_w(tmp_path: Path) -> None:
    (tmp_path / "io").mkdir()
    (tmp_path / "io" / "stale").write_text("from an earlier task")
    code = ("import os; d = os.environ['ISOLATED_OUTDIR']; print(d, os.listdir(d)); "
            "open(os.path.join(d, 'result.txt'), 'w').write('out')")

    _, sent = run_task(tmp_path, python(code))

    assert sent.output().decode() == f"{tmp_path / 'io'} []\n"
    assert sent.completions[0].exit_code == 0
    assert not (tmp_path / "io").exists()


def test_isolated_outdir_is_substituted_in_the_command_and_env(tmp_path: Path) -> None:
    code = "import os, sys; print(sys.argv[1], os.environ['OUT'])"
    _, sent = run_task(tmp_path, [*python(code), "${ISOLATED_OUTDIR}/a"], env={"OUT": "x:${ISOLATED_OUTDIR}"})
    assert sent.output().decode() == f"{tmp_path / 'io'}/a x:{tmp_path / 'io'}\n"


def test_named_caches_come_from_c_and_go_back_after_each_task(tmp_path: Path) -> None:
    caches = (Cache("git_cache", "cache/git"), Cache("tools", "tools"))
    first = ("import os; print(sorted(os.listdir('cache/git')), sorted(os.listdir('tools'))); "
             "open('cache/git/objects', 'w').write('packed'); raise SystemExit(3)")
    second = "import os; print(open('cache/git/objects').read(), os.listdir('tools'))"

    _, sent_first = run_task(tmp_path, python(first), caches=caches)
    _, sent_second = run_task(tmp_path, python(second), caches=caches)

    assert sent_first.output() == b"[] []\n" and sent_first.completions[0].exit_code == 3
    assert sent_second.output() == b"packed []\n"
    assert (tmp_path / "c" / "git_cache" / "objects").read_text() == "packed"
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["git_cache", "tools"]
    assert not (tmp_path / "w").exists()


def test_a_named_cache_the_task_deleted_starts_empty_next_time(tmp_path: Path) -> None:
    (tmp_path / "c" / "gone").mkdir(parents=True)
    (tmp_path / "c" / "gone" / "f").write_text("x")

    run_task(tmp_path, python("import shutil; shutil.rmtree('g')"), caches=(Cache("gone", "g"),))

    assert not (tmp_path / "c" / "gone").exists()
    _, sent = run_task(tmp_path, python("import os; print(os.listdir('g'))"), caches=(Cache("gone", "g"),))
    assert sent.output() == b"[]\n"


def test_the_work_dir_is_wiped_before_and_after(tmp_path: Path) -> None:
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "stale").write_text("from an earlier task")
    code = ("import os; print(os.listdir('.')); os.mkdir('ro'); open('ro/f', 'w').close(); "
            "os.chmod('ro', 0o500)")

    _, sent = run_task(tmp_path, python(code))

    assert sent.output() == b"[]\n"
    assert sent.completions[0].exit_code == 0
    assert not (tmp_path / "w").exists()


def test_bot_shutdown_terminates_the_command_and_reports(tmp_path: Path) -> None:
    shutdown = threading.Event()
    threading.Timer(0.3, shutdown.set).start()

    result, sent = run_task(tmp_path, ["sleep", "60"], shutdown=shutdown)

    assert result.stop is StopReason.SHUTDOWN
    assert sent.completions[0].exit_code == -signal.SIGTERM


def test_a_silent_command_still_sends_keepalives(tmp_path: Path) -> None:
    _, sent = run_task(tmp_path, ["sleep", "3"])

    keepalives = [u for u in sent.updates[1:-1] if not u.output and not u.completion]
    assert len(keepalives) >= 3
    gaps = [later - earlier for earlier, later in zip(sent.times, sent.times[1:])]
    assert max(gaps) < 1.5  # Never silent for long: a few keepalives (0.3 s), well under the 3 s command.


def test_io_timeout_stops_a_silent_command_and_is_reported(tmp_path: Path) -> None:
    started = time.monotonic()

    result, sent = run_task(tmp_path, python("import time; print('hi', flush=True); time.sleep(60)"),
                            io_timeout=0.3, grace_period=5.0)

    assert result.stop is StopReason.IO_TIMEOUT
    [completion] = sent.completions
    assert completion.io_timeout and not completion.hard_timeout
    assert completion.exit_code == -signal.SIGTERM
    assert sent.output() == b"hi\n"
    assert time.monotonic() - started < 20  # Not the command's 60 s.


def test_output_keeps_the_io_timeout_from_firing(tmp_path: Path) -> None:
    code = "import time\nfor i in range(8):\n print(i, flush=True)\n time.sleep(0.1)"

    result, sent = run_task(tmp_path, python(code), io_timeout=0.5)

    assert result.stop is None
    assert [without_stats(c) for c in sent.completions] == [Completion(0, result.duration)]  # Never 0.5 s silent.


def test_a_command_ignoring_sigterm_after_an_io_timeout_gets_sigkill(tmp_path: Path) -> None:
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)")
    started = time.monotonic()

    result, sent = run_task(tmp_path, python(code), io_timeout=0.3, grace_period=0.3)

    assert result.stop is StopReason.IO_TIMEOUT
    [completion] = sent.completions
    assert completion.exit_code == -signal.SIGKILL and completion.io_timeout
    assert completion.duration >= 0.6  # Silent 0.3 s after 'ready', then the 0.3 s grace.
    assert time.monotonic() - started < 20  # Not the command's 60 s.


def test_the_command_runs_in_relative_cwd_with_env_prefixes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.delenv("NEWVAR", raising=False)
    code = "import os; print(os.getcwd()); print(os.environ['PATH']); print(os.environ['NEWVAR'])"

    _, sent = run_task(tmp_path, python(code), relative_cwd="out/sub",
                       env_prefixes={"PATH": ("bin", "."), "NEWVAR": ("./lib/",)})

    w = tmp_path / "w"
    cwd, path, new = sent.output().decode().splitlines()
    assert cwd == str(w / "out" / "sub")  # Created for it.
    assert path == os.pathsep.join([str(w / "bin"), str(w), "/usr/bin:/bin"])
    assert new == str(w / "lib")
    assert sent.completions[0].exit_code == 0


@pytest.mark.parametrize("fields", [
    {"relative_cwd": "../outside"},
    {"relative_cwd": "/tmp"},
    {"relative_cwd": "a/../../b"},
    {"env_prefixes": {"PATH": ("../bin",)}},
    {"env_prefixes": {"PATH": ("/usr/local/bin",)}},
    {"caches": (Cache("git", "../git"),)},
    {"caches": (Cache("git", "/var/cache/git"),)},
])
def test_a_path_leaving_the_work_dir_is_an_internal_error(tmp_path: Path, fields: dict) -> None:
    marker = tmp_path / "ran"
    send = Recorder()

    with pytest.raises(TaskError, match="not a relative path inside the work directory"):
        run_task(tmp_path, ["touch", str(marker)], send=send, **fields)

    assert send.attempts == 0 and not marker.exists()


def test_a_work_dir_that_cannot_be_made_is_an_internal_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("in the way")
    send = Recorder()

    with pytest.raises(TaskError, match="cannot make the work directory"):
        run_task(tmp_path / "file", ["true"], send=send)

    assert send.attempts == 0


def test_a_failed_completion_is_resent_until_the_server_has_it(tmp_path: Path) -> None:
    def flaky_end(n: int, update: Update) -> None:
        if update.completion and n < 6:  # The server is away when the command ends.
            raise ApiError("bot_task_update", 503, "unavailable", "down")

    result, sent = run_task(tmp_path, python("print('done')"), send=Recorder(flaky_end))

    assert [without_stats(c) for c in sent.completions] == [Completion(0, result.duration)]
    assert sent.output() == b"done\n"


def test_a_completion_is_given_up_after_the_patience(tmp_path: Path) -> None:
    def never(n: int, update: Update) -> None:
        if update.completion:
            raise ApiError("bot_task_update", None, "unreachable", "no network")

    timings = Timings(output_interval=0.1, keepalive=0.3, grace_period=0.5, drain=1.0, tick=0.02,
                      report_patience=0.3)
    started = time.monotonic()
    result, sent = run_task(tmp_path, python("pass"), send=Recorder(never), timings=timings)

    assert sent.completions == [] and result.exit_code == 0
    assert sent.attempts > 2  # It kept trying ...
    assert time.monotonic() - started < 10  # ... but not forever.


def stalling(after: int, seconds: float) -> Recorder:
    """A server whose answers, from the `after`-th update on, take `seconds`."""
    return Recorder(lambda n, update: time.sleep(seconds) if n >= after else None)


def test_a_stalled_server_delays_neither_a_stop_nor_the_duration(tmp_path: Path) -> None:
    started = time.monotonic()

    result, sent = run_task(tmp_path, ["sleep", "60"], send=stalling(2, 6.0), hard_timeout=0.5, grace_period=5.0)

    [completion] = sent.completions
    assert result.stop is StopReason.HARD_TIMEOUT and completion.exit_code == -signal.SIGTERM
    assert 0.5 <= completion.duration < 3  # The command's, not the 6 s answers'.
    assert time.monotonic() - started >= 6  # The answers did take that long.


def test_a_server_that_does_not_answer_the_first_update_does_not_hold_the_command(tmp_path: Path) -> None:
    result, sent = run_task(tmp_path, python("import time; print(time.monotonic())"), send=stalling(1, 2.0))

    [started_at] = sent.output().split()
    assert float(started_at) < sent.times[0]  # Started before the first update's answer came.
    assert result.exit_code == 0 and sent.updates[0] == Update(0)


def test_output_the_server_cannot_take_holds_the_command_back_without_silence(tmp_path: Path) -> None:
    marker = tmp_path / "written"
    code = f"import sys; sys.stdout.write('x' * 400_000); sys.stdout.flush(); open({str(marker)!r}, 'w').close()"
    seen: list[bool] = []  # At each attempt while the server is away: had the command written it all?

    def away_for_a_while(n: int, update: Update) -> None:
        if n > 1 and len(seen) < 10:  # About 1 s of failed attempts, 0.1 s apart.
            seen.append(marker.exists())
            raise ApiError("bot_task_update", None, "unreachable", "no network")

    timings = dataclasses.replace(FAST, output_buffer=1000)
    result, sent = run_task(tmp_path, python(code), send=Recorder(away_for_a_while), timings=timings,
                            io_timeout=0.5)

    assert seen == [False] * 10  # 400 kB do not fit in the pipe and the buffer: the command waited.
    assert result.stop is None and sent.completions[0].exit_code == 0  # Waiting on the server is not silence.
    assert marker.exists() and sent.output() == b"x" * 400_000
