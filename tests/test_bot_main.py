"""The bot's loop against a loopback fake of the Bot API, in process and as a
real `python -m bot` process."""

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from bot import bot_main, remote
from bot.bot_main import Bot, Outcome
from bot.remote import Manifest
from bot.task_runner import TaskRunner, Timings

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bot-token"
TASK_A, TASK_B = "5f3a1b2c3d4e5f00", "5f3a1b2c3d4e6000"
FAST = Timings(output_interval=0.1, keepalive=0.3, grace_period=1.0, drain=1.0, tick=0.02)
Reply = tuple[int, dict[str, Any]]


def ok(body: dict[str, Any]) -> Reply:
    return 200, body


def error(status: int, code: str) -> Reply:
    return status, {"error": {"code": code, "message": f"{code} (fake)"}}


def sleep(duration: float) -> Reply:
    return ok({"cmd": "sleep", "duration": duration})


def claim(*task_ids: str) -> Reply:
    return ok({"cmd": "claim", "candidates": [{"task_id": t, "slice": 0} for t in task_ids]})


def run(task_id: str, command: list[str], **extra: Any) -> Reply:
    manifest = {"task_id": task_id[:-1] + "1", "bot_id": "bot-1", "command": command, "env": {},
                "dimensions": {"pool": ["default"]}, "hard_timeout": 30, **extra}
    return ok({"cmd": "run", "manifest": manifest})


class FakeServer(ThreadingHTTPServer):
    """The Bot API from a script: each function gives its queued replies in
    order, then repeats the last one. Every call is recorded."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.calls: list[tuple[str, dict[str, Any], str | None]] = []
        self._lock = threading.Lock()
        self._replies: dict[str, list[Reply]] = {
            "bot_handshake": [ok({"bot_version": "dev", "server_version": "fake", "bot_group_cfg": {}})],
            "bot_task_update": [ok({"ok": True, "must_stop": False, "stop_reason": None})],
            "bot_task_error": [ok({"ok": True})],
        }

    def script(self, name: str, *replies: Reply) -> None:
        self._replies[name] = list(replies)

    def answer(self, name: str, body: dict[str, Any], authorization: str | None) -> Reply:
        with self._lock:
            self.calls.append((name, body, authorization))
            queue = self._replies[name]
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]

    def bodies(self, name: str) -> list[dict[str, Any]]:
        return [body for called, body, _ in self.calls if called == name]

    def wait_for(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out; calls: {self.names()}"
            time.sleep(0.02)


class _Handler(BaseHTTPRequestHandler):
    server: FakeServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        status, reply = self.server.answer(self.path.lstrip("/"), body, self.headers.get("Authorization"))
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def bot(fake: FakeServer, tmp_path: Path, sleeps: list[float]) -> Iterator[Bot]:
    api = remote.Remote(fake.url, TOKEN)
    yield Bot(api, tmp_path, bot_main.default_dimensions("bot-1"), shutdown=threading.Event(),
              sleep=sleeps.append, timings=FAST)
    api.close()


def updates(fake: FakeServer) -> list[dict[str, Any]]:
    return fake.bodies("bot_task_update")


def must_stop(reason: str) -> Reply:
    return ok({"ok": True, "must_stop": True, "stop_reason": reason})


CARRY_ON = ok({"ok": True, "must_stop": False, "stop_reason": None})


def output(fake: FakeServer) -> bytes:
    return b"".join(base64.b64decode(u["output"]) for u in updates(fake))


def test_runs_a_claimed_task_and_reports_it(fake: FakeServer, bot: Bot, tmp_path: Path) -> None:
    fake.script("bot_poll", claim(TASK_A))
    fake.script("bot_claim", run(TASK_A, [sys.executable, "-c", "print('hello')"]))

    bot.run(once=True)

    assert fake.names()[:4] == ["bot_handshake", "bot_poll", "bot_claim", "bot_task_update"]
    assert fake.names()[4:] == ["bot_task_update"] * (len(fake.calls) - 4)
    assert {auth for _, _, auth in fake.calls} == {f"Bearer {TOKEN}"}
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
    fake.script("bot_claim", ok({"cmd": "skip", "reason": "taken"}), run(TASK_B, ["true"]))

    assert bot.run_once() is Outcome.RAN

    claims = fake.bodies("bot_claim")
    assert [c["task_id"] for c in claims] == [TASK_A, TASK_B]
    assert claims[0]["claim_id"] != claims[1]["claim_id"]
    assert updates(fake)[-1]["task_id"] == TASK_B[:-1] + "1"


def test_every_candidate_skipped_polls_again(fake: FakeServer, bot: Bot) -> None:
    fake.script("bot_poll", claim(TASK_A))
    fake.script("bot_claim", ok({"cmd": "skip", "reason": "taken"}))

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


def test_a_409_stops_the_task_and_returns_to_polling(fake: FakeServer, bot: Bot) -> None:
    fake.script("bot_poll", claim(TASK_A))
    fake.script("bot_claim", run(TASK_A, ["sleep", "60"]))
    fake.script("bot_task_update", ok({"ok": True, "must_stop": False}), error(409, "conflict"))
    started = time.monotonic()

    assert bot.run_once() is Outcome.RAN

    assert time.monotonic() - started < 3
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

    assert time.monotonic() - started < 3
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
    assert "relative_cwd" in reported["message"] and "'../escape'" in reported["message"]
    assert "client_error" not in reported
    assert reported["dimensions"]["id"] == ["bot-1"] and "sleep_streak" in reported["state"]
    assert not (tmp_path / "escape").exists()


def test_a_work_dir_that_cannot_be_made_is_a_task_error(fake: FakeServer, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("in the way of w/")
    fake.script("bot_poll", claim(TASK_A))
    fake.script("bot_claim", run(TASK_A, ["true"]))
    api = remote.Remote(fake.url, TOKEN)
    bot = Bot(api, tmp_path / "file", bot_main.default_dimensions("bot-1"), shutdown=threading.Event(),
              sleep=lambda _: None, timings=FAST)

    assert bot.run_once() is Outcome.RAN

    [reported] = fake.bodies("bot_task_error")
    assert "cannot make the work directory" in reported["message"]
    api.close()


def test_a_runner_failing_unexpectedly_is_a_task_error(
        fake: FakeServer, bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: TaskRunner) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(TaskRunner, "run", broken)
    fake.script("bot_poll", claim(TASK_A), sleep(1.0))
    fake.script("bot_claim", run(TASK_A, ["true"]))

    assert bot.run_once() is Outcome.RAN  # Handled, not raised to the loop's backoff.
    assert bot.run_once() is Outcome.SLEPT

    [reported] = fake.bodies("bot_task_error")
    assert reported["task_id"] == TASK_A[:-1] + "1"
    assert "RuntimeError('a bug')" in reported["message"]
    assert fake.names()[-2:] == ["bot_task_error", "bot_poll"]


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


def test_task_error_sends_missing_cas_as_a_client_error(fake: FakeServer) -> None:
    api = remote.Remote(fake.url, TOKEN)
    attributes = remote.Attributes({"id": ["bot-1"], "pool": ["default"]}, {}, "dev")
    digest = {"cas_instance": "projects/p/instances/default",
              "digest": {"hash": "ab" * 32, "size_bytes": 3}}

    api.task_error(attributes, "5f3a1b2c3d4e5f01", "inputs missing", missing_cas=[digest])
    api.task_error(attributes, "5f3a1b2c3d4e5f01", "internal")
    api.close()

    with_cas, without = fake.bodies("bot_task_error")
    assert with_cas["task_id"] == "5f3a1b2c3d4e5f01" and with_cas["message"] == "inputs missing"
    assert with_cas["client_error"] == {"missing_cas": [digest]}
    assert "client_error" not in without and without["message"] == "internal"


def test_the_state_reports_sleep_streak_and_running_time(fake: FakeServer, tmp_path: Path) -> None:
    now = [1000.0]
    fake.script("bot_poll", sleep(5.0))
    api = remote.Remote(fake.url, TOKEN)

    def advance(seconds: float) -> None:
        now[0] += seconds

    bot = Bot(api, tmp_path, bot_main.default_dimensions("bot-1"), shutdown=threading.Event(),
              sleep=advance, timings=FAST, clock=lambda: now[0])
    bot.handshake()
    bot.run_once()
    bot.run_once()
    api.close()

    states = [body["state"] for _, body, _ in fake.calls]
    assert states == [{"sleep_streak": 0, "running_time": 0.0}, {"sleep_streak": 0, "running_time": 0.0},
                      {"sleep_streak": 1, "running_time": 5.0}]


def test_the_manifest_fields_and_their_defaults() -> None:
    base = {"task_id": "5f3a1b2c3d4e5f01", "bot_id": "bot-1", "command": ["true"], "hard_timeout": 60}

    bare = Manifest.from_json(base)
    full = Manifest.from_json({**base, "env": {"A": "1"}, "io_timeout": 120, "grace_period": 5,
                               "relative_cwd": "src",
                               "env_prefixes": [{"key": "PATH", "value": ["bin", "tools"]}]})
    reference_shape = Manifest.from_json({**base, "env_prefixes": {"PATH": ["bin"]}})

    assert (bare.io_timeout, bare.grace_period, bare.relative_cwd, bare.env_prefixes, bare.env) == (
        0.0, None, "", {}, {})
    assert (full.io_timeout, full.grace_period, full.relative_cwd) == (120.0, 5.0, "src")
    assert full.env_prefixes == {"PATH": ("bin", "tools")} and full.env == {"A": "1"}
    assert reference_shape.env_prefixes == {"PATH": ("bin",)}


@pytest.mark.parametrize("bad", [
    {"io_timeout": "10"}, {"io_timeout": -1}, {"io_timeout": True}, {"grace_period": "30"},
    {"hard_timeout": None}, {"relative_cwd": 3}, {"env_prefixes": [{"key": "PATH", "value": "bin"}]},
    {"env_prefixes": [{"key": "P", "value": ["a"]}, {"key": "P", "value": ["b"]}]},
    {"env_prefixes": {"PATH": [1]}}, {"env": [{"key": "A", "value": "1"}]}, {"command": "true"},
])
def test_a_mistyped_manifest_field_is_refused(bad: dict[str, Any]) -> None:
    base = {"task_id": "5f3a1b2c3d4e5f01", "bot_id": "bot-1", "command": ["true"], "hard_timeout": 60}

    with pytest.raises((TypeError, ValueError)):
        Manifest.from_json({**base, **bad})


def _start_bot(fake: FakeServer, work_dir: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMING_")}
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "--server", fake.url, "--work-dir", str(work_dir), *args],
        cwd=REPO, env={**env, "SWARMING_TOKEN": TOKEN}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def test_the_cli_once_reports_its_dimensions_and_ends(fake: FakeServer, tmp_path: Path) -> None:
    fake.script("bot_poll", sleep(0.01))

    bot_process = _start_bot(fake, tmp_path / "bot", "--id", "cli-bot", "--once",
                             "--dimension", "pool=ci", "--dimension", "gpu=a", "--dimension", "gpu=b")
    _, stderr = bot_process.communicate(timeout=10)

    assert bot_process.returncode == 0, stderr.decode()
    assert fake.names() == ["bot_handshake", "bot_poll"]
    dimensions = fake.bodies("bot_handshake")[0]["dimensions"]
    assert dimensions["id"] == ["cli-bot"] and dimensions["pool"] == ["ci"]
    assert dimensions["gpu"] == ["a", "b"]
    assert dimensions["python"] == ["3", f"3.{sys.version_info.minor}"]
    assert {"os", "cpu"} <= dimensions.keys()
    assert b"cli-bot" in stderr


def test_sigterm_stops_the_running_task_reports_it_and_exits_0(fake: FakeServer, tmp_path: Path) -> None:
    fake.script("bot_poll", claim(TASK_A), sleep(60))
    fake.script("bot_claim", run(TASK_A, ["sleep", "60"], grace_period=5))
    bot_process = _start_bot(fake, tmp_path / "bot", "--id", "bot-1")
    fake.wait_for(lambda: bool(updates(fake)))

    bot_process.send_signal(signal.SIGTERM)
    _, stderr = bot_process.communicate(timeout=10)

    assert bot_process.returncode == 0, stderr.decode()
    final = updates(fake)[-1]
    assert final["exit_code"] == -signal.SIGTERM
    assert TASK_A[:-1].encode() in stderr  # Its log lines name the task.


def test_a_missing_token_is_a_usage_error(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("SWARMING_TOKEN", raising=False)

    with pytest.raises(SystemExit) as exited:
        bot_main.parse_args(["--server", "http://x", "--work-dir", "/tmp/x"])

    assert exited.value.code == 2
    assert "SWARMING_TOKEN" in capsys.readouterr().err


def test_the_bot_id_comes_from_the_environment_and_id_cannot_be_a_dimension(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARMING_BOT_ID", "env-bot")
    base = ["--server", "http://x", "--work-dir", "/tmp/x", "--token", "t"]

    assert bot_main.parse_args(base).dimensions["id"] == ["env-bot"]
    with pytest.raises(SystemExit):
        bot_main.parse_args([*base, "--dimension", "id=other"])
