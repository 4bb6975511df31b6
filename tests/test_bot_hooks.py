"""bot_config.py hooks called safely, the default hooks, and bot events: a
hook that raises or returns the wrong type is reported as bot_error and the
bot carries on with the default; events are rate-limited; unhandled
exceptions are reported and still reach the previous excepthook."""

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import zipfile
from pathlib import Path
from typing import Any

import pytest

from bot import default_bot_config, events, host_state
from bot.hooks import BotView, Hooks

REPO = Path(__file__).resolve().parents[1]


class Recorder:
    """A report(event, message) that keeps what it was given."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def __call__(self, event: str, message: str) -> None:
        self.events.append((event, message))

    @property
    def errors(self) -> list[str]:
        return [m for e, m in self.events if e == "bot_error"]


@pytest.fixture
def report() -> Recorder:
    return Recorder()


@pytest.fixture
def bot(tmp_path: Path) -> BotView:
    base = tmp_path / "bot"
    base.mkdir()
    return BotView("bot-1", base, "http://server")


@pytest.fixture(autouse=True)
def quiet_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TEMP of its own, so that the host's /tmp cannot quarantine the tests."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return temp


def hooks_from(tmp_path: Path, source: str, report: Recorder) -> Hooks:
    path = tmp_path / "bot_config.py"
    path.write_text(textwrap.dedent(source))
    return Hooks.load(path, report)


# The default hooks.

def test_without_an_injected_bot_config_the_defaults_are_used(report: Recorder) -> None:
    loaded = Hooks.load(report=report)
    assert loaded.module is default_bot_config and loaded.name == "default"
    assert report.events == []


def test_default_dimensions(bot: BotView, report: Recorder) -> None:
    dims = Hooks(report=report).get_dimensions(bot)
    assert dims["id"] == ["bot-1"] and dims["pool"] == ["default"]
    assert dims == {k: sorted(v) for k, v in host_state.get_dimensions("bot-1").items()}
    assert list(dims) == sorted(dims)
    assert report.events == []


def test_default_state(bot: BotView, report: Recorder) -> None:
    bot.sleep_streak = 4
    state = Hooks(report=report).get_state(bot)
    assert {"disk", "ram", "uptime", "running_time", "sleep_streak", "cwd", "python", "pid",
            "hostname"} <= set(state)
    assert state["sleep_streak"] == 4 and state["running_time"] >= 0
    assert "cost_usd_hour" not in state
    json.dumps(state)
    assert report.events == []


def test_default_settings_auth_and_setup(bot: BotView, report: Recorder) -> None:
    h = Hooks(report=report)
    settings = h.get_settings(bot)
    assert settings == {"free_partition": {"percent": 15.0, "size_gib": 4.0}, "max_temp_files": 1024,
                        "cas_cache": {"max_size_gib": 20, "max_items": 100_000, "min_free_gib": 2},
                        "cost_usd_hour": None, "run_tasks_as": None}
    assert bot.settings == settings
    assert h.get_authentication_headers(bot) == ({}, None)
    assert h.setup_bot(bot) is True
    h.on_bot_startup(bot)
    h.on_handshake(bot)
    h.on_bot_idle(bot, 12.0)
    h.on_before_task(bot, os.path.join(bot.base_dir, "bot_file.json"))
    h.on_after_task(bot, False, False, {"pool": ["default"]}, {"exit_code": 0})
    h.on_bot_shutdown(bot)
    assert report.events == []


def test_default_get_hooks_accept_no_bot(report: Recorder) -> None:
    h = Hooks(report=report)
    assert h.get_dimensions(None)["id"] == [host_state.short_hostname()]
    assert "disk" in h.get_state(None)
    assert report.events == []


# Hooks that raise.

RAISING = """
def get_dimensions(bot): raise RuntimeError("boom in get_dimensions")
def get_state(bot): raise RuntimeError("boom in get_state")
def get_settings(bot): raise RuntimeError("boom in get_settings")
def get_authentication_headers(bot): raise RuntimeError("boom in get_authentication_headers")
def setup_bot(bot): raise RuntimeError("boom in setup_bot")
def on_bot_startup(bot): raise RuntimeError("boom in on_bot_startup")
def on_handshake(bot): raise RuntimeError("boom in on_handshake")
def on_bot_idle(bot, since_last_action): raise RuntimeError("boom in on_bot_idle")
def on_before_task(bot, bot_file): raise RuntimeError("boom in on_before_task")
def on_after_task(bot, failure, internal_failure, dimensions, summary):
    raise RuntimeError("boom in on_after_task")
def on_bot_shutdown(bot): raise RuntimeError("boom in on_bot_shutdown")
"""

CALLS = {
    "get_dimensions": lambda h, bot: h.get_dimensions(bot),
    "get_settings": lambda h, bot: h.get_settings(bot),
    "get_authentication_headers": lambda h, bot: h.get_authentication_headers(bot),
    "setup_bot": lambda h, bot: h.setup_bot(bot),
    "on_bot_startup": lambda h, bot: h.on_bot_startup(bot),
    "on_handshake": lambda h, bot: h.on_handshake(bot),
    "on_bot_idle": lambda h, bot: h.on_bot_idle(bot, 5.0),
    "on_before_task": lambda h, bot: h.on_before_task(bot, "bot_file"),
    "on_after_task": lambda h, bot: h.on_after_task(bot, True, False, {}, {}),
    "on_bot_shutdown": lambda h, bot: h.on_bot_shutdown(bot),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_a_raising_hook_is_reported_and_answers_the_default(
        name: str, tmp_path: Path, bot: BotView, report: Recorder) -> None:
    h = hooks_from(tmp_path, RAISING, report)
    assert h.module is not default_bot_config
    got = CALLS[name](h, bot)
    assert got == CALLS[name](Hooks(), bot)
    assert len(report.errors) == 1
    message = report.errors[0]
    assert message.startswith(f"{name}() in {tmp_path / 'bot_config.py'} raised")
    assert f"RuntimeError: boom in {name}" in message and "Traceback" in message


def test_a_raising_get_state_answers_the_default_state(tmp_path: Path, bot: BotView, report: Recorder) -> None:
    h = hooks_from(tmp_path, RAISING, report)
    bot.sleep_streak = 2
    state = h.get_state(bot)
    assert "disk" in state and state["sleep_streak"] == 2
    # get_settings and get_state both failed, each reported once.
    assert [m.split("(")[0] for m in report.errors] == ["get_settings", "get_state"]


def test_an_exception_in_a_hook_never_escapes(tmp_path: Path, bot: BotView) -> None:
    def report(event: str, message: str) -> None:
        raise ConnectionError("the server is down")

    h = hooks_from(tmp_path, RAISING, report)  # type: ignore[arg-type]
    assert h.setup_bot(bot) is True
    assert h.get_dimensions(bot)["id"] == ["bot-1"]


# Hooks that return the wrong type.

@pytest.mark.parametrize("source, call, expected_problem", [
    ("def get_dimensions(bot): return ['pool:x']", "get_dimensions", "expected a dict"),
    ("def get_dimensions(bot): return {'os': 'Linux'}", "get_dimensions", "'os': expected a list"),
    ("def get_dimensions(bot): return {'bad key!': ['x']}", "get_dimensions", "dimensions.bad key!"),
    ("def get_dimensions(bot): return {'os': []}", "get_dimensions", "at least one value"),
    ("def get_settings(bot): return None", "get_settings", "expected a dict"),
    ("def get_settings(bot): return {'free_partition': {'percent': '15'}}", "get_settings",
     "free_partition.percent"),
    ("def get_settings(bot): return {'max_temp_files': -1}", "get_settings", "max_temp_files"),
    ("def get_settings(bot): return {'cas_cache': {'max_items': '10'}}", "get_settings", "cas_cache.max_items"),
    ("def get_settings(bot): return {'run_tasks_as': 65534}", "get_settings", "run_tasks_as: expected a user name"),
    ("def get_settings(bot): return {'run_tasks_as': ''}", "get_settings", "run_tasks_as: expected a user name"),
    ("def get_authentication_headers(bot): return 'Bearer x'", "get_authentication_headers",
     "expected (headers, expiry)"),
    ("def get_authentication_headers(bot): return ({'a': 1}, None)", "get_authentication_headers",
     "headers"),
    ("def get_authentication_headers(bot): return ({'authorization': 'Basic eDp5'}, None)",
     "get_authentication_headers", "headers: authorization: expected 'Bearer <token>'"),
    ("def setup_bot(bot): pass", "setup_bot", "expected True or False"),
])
def test_a_wrong_type_is_reported_and_answers_the_default(
        source: str, call: str, expected_problem: str, tmp_path: Path, bot: BotView,
        report: Recorder) -> None:
    h = hooks_from(tmp_path, source, report)
    assert CALLS[call](h, bot) == CALLS[call](Hooks(), bot)
    assert len(report.errors) == 1
    assert f"{call}() in " in report.errors[0] and " returned " in report.errors[0]
    assert expected_problem in report.errors[0]


def test_a_get_settings_that_fails_keeps_the_last_good_settings(
        tmp_path: Path, bot: BotView, report: Recorder) -> None:
    """So that a hook failing once does not run the next task as the bot's user."""
    h = hooks_from(tmp_path, """
        CALLS = []
        def get_settings(bot):
            CALLS.append(1)
            if len(CALLS) > 1:
                raise RuntimeError("boom")
            return {"run_tasks_as": "nobody"}
    """, report)

    first, second = h.get_settings(bot), h.get_settings(bot)

    assert first["run_tasks_as"] == second["run_tasks_as"] == "nobody"
    assert len(report.errors) == 1 and "boom" in report.errors[0]


@pytest.mark.parametrize("source, problem", [
    ("def get_state(bot): return ['busy']", "expected a dict"),
    ("def get_state(bot): return {'when': object()}", "not JSON"),
    ("def get_state(bot): return {1: 'x'}", "string keys"),
])
def test_a_wrong_state_is_reported_and_answers_the_default_state(
        source: str, problem: str, tmp_path: Path, bot: BotView, report: Recorder) -> None:
    state = hooks_from(tmp_path, source, report).get_state(bot)
    assert "disk" in state
    assert len(report.errors) == 1 and problem in report.errors[0]


# Custom hooks.

def test_custom_hooks_and_defaults_for_the_missing_ones(tmp_path: Path, bot: BotView, report: Recorder) -> None:
    h = hooks_from(tmp_path, """
        def get_dimensions(bot):
            return {"gpu": ["none"], "os": ["Linux"]}
        def get_state(bot):
            return {"temperature": 40, "running_time": -1}
        def get_settings(bot):
            return {"cost_usd_hour": 0.5, "free_partition": {"size_gib": 2}}
        def get_authentication_headers(bot):
            return {"X-Token": "t", "authorization": "bearer id-token"}, 1700000000
    """, report)
    assert h.get_dimensions(bot) == {"gpu": ["none"], "id": ["bot-1"], "os": ["Linux"], "pool": ["default"]}
    settings = h.get_settings(bot)
    assert settings["free_partition"] == {"percent": 15.0, "size_gib": 2}
    assert settings["max_temp_files"] == 1024
    bot.sleep_streak = 7
    state = h.get_state(bot)
    # The bot's own counters win over the hook's; the cost comes from the settings.
    assert state["temperature"] == 40 and state["sleep_streak"] == 7 and state["running_time"] >= 0
    assert state["cost_usd_hour"] == 0.5
    assert "quarantined" not in state
    assert h.get_authentication_headers(bot) == (  # The handshake's credential, spelt so.
        {"X-Token": "t", "Authorization": "bearer id-token"}, 1700000000.0)
    assert h.setup_bot(bot) is True  # Missing: the default.
    assert report.events == []


def test_a_hooks_dict_is_not_changed(tmp_path: Path, bot: BotView, report: Recorder) -> None:
    h = hooks_from(tmp_path, """
        DIMS = {"os": ["b", "a"]}
        STATE = {"x": 1}
        def get_dimensions(bot): return DIMS
        def get_state(bot): return STATE
    """, report)
    assert h.get_dimensions(bot)["os"] == ["a", "b"]
    h.get_state(bot)
    assert h.module.DIMS == {"os": ["b", "a"]} and h.module.STATE == {"x": 1}


def test_on_before_task_gets_the_arguments_the_hook_takes(tmp_path: Path, bot: BotView, report: Recorder) -> None:
    h = hooks_from(tmp_path, """
        CALLS = []
        def on_before_task(bot, bot_file, runner_cmd, runner_env):
            CALLS.append((bot_file, runner_cmd, runner_env))
            runner_env["EXTRA"] = "1"
    """, report)
    env: dict[str, str] = {}
    h.on_before_task(bot, "f.json", ["python", "run"], env)
    assert h.module.CALLS == [("f.json", ["python", "run"], env)] and env == {"EXTRA": "1"}
    h2 = hooks_from(tmp_path, """
        CALLS = []
        def on_before_task(bot, bot_file):
            CALLS.append(bot_file)
    """, report)
    h2.on_before_task(bot, "g.json", ["python"], {})
    assert h2.module.CALLS == ["g.json"]
    assert report.events == []


def test_hooks_see_the_bot(tmp_path: Path, bot: BotView, report: Recorder) -> None:
    reboots = []
    bot = BotView("bot-9", bot.base_dir, "http://s", report=report, reboot=lambda: reboots.append(1))
    h = hooks_from(tmp_path, """
        def on_bot_idle(bot, since_last_action):
            bot.post_event("bot_log", f"{bot.id} idle for {since_last_action:g} s at {bot.server}")
            if since_last_action > 3600:
                bot.host_reboot("periodic reboot")
        def on_handshake(bot):
            bot.bot_restart("no restart here")
    """, report)
    h.on_bot_idle(bot, 10)
    h.on_bot_idle(bot, 4000)
    assert report.events[:3] == [("bot_log", "bot-9 idle for 10 s at http://s"),
                                 ("bot_log", "bot-9 idle for 4000 s at http://s"),
                                 ("bot_rebooting", "periodic reboot")]
    assert reboots == [1]
    h.on_handshake(bot)  # No restart callable: NotImplementedError, reported.
    assert "NotImplementedError" in report.errors[-1]


# Health in the state.

def test_get_state_carries_the_health_check_reason(
        bot: BotView, report: Recorder, quiet_temp: Path) -> None:
    for i in range(1025):
        (quiet_temp / str(i)).touch()
    state = Hooks(report=report).get_state(bot)
    assert "TEMP" in state["quarantined"] and "1025 files" in state["quarantined"]
    assert report.events == []  # Quarantine is state, not an error.


def test_the_health_thresholds_come_from_get_settings(
        tmp_path: Path, bot: BotView, report: Recorder, quiet_temp: Path) -> None:
    for i in range(5):
        (quiet_temp / str(i)).touch()
    h = hooks_from(tmp_path, "def get_settings(bot): return {'max_temp_files': 4}", report)
    assert "5 files, more than 4" in h.get_state(bot)["quarantined"]


def test_a_hooks_own_quarantine_wins(tmp_path: Path, bot: BotView, report: Recorder, quiet_temp: Path) -> None:
    for i in range(1025):
        (quiet_temp / str(i)).touch()
    h = hooks_from(tmp_path, "def get_state(bot): return {'quarantined': 'device too hot'}", report)
    assert h.get_state(bot)["quarantined"] == "device too hot"


def test_a_failing_health_check_quarantines(bot: BotView, report: Recorder) -> None:
    bot.base_dir = os.path.join(bot.base_dir, "missing")
    assert "the health check failed" in Hooks(report=report).get_state(bot)["quarantined"]


# Loading.

def test_a_bot_config_that_fails_to_load_is_reported(tmp_path: Path, report: Recorder) -> None:
    h = hooks_from(tmp_path, "def get_dimensions(bot) return {}\n", report)
    assert h.module is default_bot_config
    assert len(report.errors) == 1 and "SyntaxError" in report.errors[0]
    assert "using the default hooks" in report.errors[0]


def _build_zip(path: Path, bot_config: str | None) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for package in ("bot", "shared"):
            for f in sorted((REPO / package).glob("*.py")):
                z.write(f, f"{package}/{f.name}")
        if bot_config is not None:
            z.writestr("bot_config.py", bot_config)


PROBE = ("import json; from bot import hooks; h = hooks.Hooks.load(report=print); "
         "b = hooks.BotView('zip-bot', '.'); "
         "print(json.dumps([h.name, h.get_dimensions(b)]))")


def _probe(path: Path, cwd: Path) -> list[Any]:
    out = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(path)!r}); {PROBE}"],
                         cwd=cwd, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": ""})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def test_the_bot_config_injected_in_the_zip_is_loaded(tmp_path: Path) -> None:
    path = tmp_path / "swarming_bot.zip"
    _build_zip(path, "def get_dimensions(bot):\n    return {'pool': ['from-zip']}\n")
    name, dims = _probe(path, tmp_path)
    assert name == str(path / "bot_config.py")
    assert dims == {"id": ["zip-bot"], "pool": ["from-zip"]}


def test_the_default_bot_config_runs_from_the_zip(tmp_path: Path) -> None:
    path = tmp_path / "swarming_bot.zip"
    _build_zip(path, (REPO / "bot" / "default_bot_config.py").read_text())
    name, dims = _probe(path, tmp_path)
    assert name.endswith("bot_config.py") and dims["id"] == ["zip-bot"] and "os" in dims


def test_a_bot_config_elsewhere_on_the_path_is_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / "swarming_bot.zip"
    _build_zip(path, None)
    (tmp_path / "bot_config.py").write_text("def get_dimensions(bot):\n    return {'pool': ['stray']}\n")
    name, dims = _probe(path, tmp_path)  # The cwd, holding the stray one, is on sys.path.
    assert name == "default" and dims["pool"] == ["default"]


# Events.

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_reporter_posts_events() -> None:
    posted = Recorder()
    reporter = events.Reporter(posted)
    assert reporter.report("bot_log", "hello") is True
    assert reporter.error("oops") is True
    assert posted.events == [("bot_log", "hello"), ("bot_error", "oops")]
    with pytest.raises(ValueError):
        reporter.report("bot_party", "x")


def test_reporter_rate_limit_drops_and_counts() -> None:
    posted, clock = Recorder(), Clock()
    reporter = events.Reporter(posted, limit=10, window=60.0, clock=clock)
    sent = [reporter.error(f"e{i}") for i in range(15)]
    assert sent == [True] * 10 + [False] * 5
    assert reporter.dropped == 5 and len(posted.events) == 10
    # Shutdown and reboot are never dropped.
    assert reporter.report("bot_shutdown", "bye") is True
    assert "dropped" in posted.events[-1][1]
    clock.now += 30
    assert reporter.error("still limited") is False
    clock.now += 31  # The first ten are now more than a minute old.
    assert reporter.error("after the window") is True
    assert posted.events[-1] == (
        "bot_error", "after the window\n(1 earlier event(s) dropped by the bot's rate limit)")
    assert reporter.dropped == 6


def test_the_next_event_after_drops_says_how_many() -> None:
    posted, clock = Recorder(), Clock()
    reporter = events.Reporter(posted, limit=2, window=10.0, clock=clock)
    for i in range(5):
        reporter.error(f"e{i}")
    clock.now += 11
    reporter.error("later")
    assert posted.events[-1][1] == "later\n(3 earlier event(s) dropped by the bot's rate limit)"


def test_a_failed_post_is_not_raised() -> None:
    def post(event: str, message: str) -> None:
        raise ConnectionError("down")

    assert events.Reporter(post).error("x") is False


def test_a_report_while_posting_does_not_recurse() -> None:
    posted = Recorder()
    reporter: events.Reporter

    def post(event: str, message: str) -> None:
        # Building the attributes calls a get_state hook that fails and reports.
        reporter.error("get_state() raised")
        posted(event, message)

    reporter = events.Reporter(post)
    assert reporter.error("first") is True
    assert posted.events == [("bot_error", "first")]


def test_long_messages_keep_their_start_and_end() -> None:
    posted = Recorder()
    events.Reporter(posted).error("S" * 5000 + "E" * 20000)
    message = posted.events[0][1]
    assert len(message) <= events.MAX_MESSAGE
    assert message.startswith("S" * 1000) and message.endswith("E" * 7000) and "[...]" in message


def test_hook_errors_in_a_loop_are_rate_limited(tmp_path: Path, bot: BotView) -> None:
    posted, clock = Recorder(), Clock()
    reporter = events.Reporter(posted, clock=clock)
    h = hooks_from(tmp_path, "def on_bot_idle(bot, s): raise ValueError('again')", reporter.report)
    for _ in range(100):
        h.on_bot_idle(bot, 1.0)
    assert len(posted.events) == 10 and reporter.dropped == 90


@pytest.fixture
def restore_excepthooks():
    saved = sys.excepthook, threading.excepthook
    yield
    sys.excepthook, threading.excepthook = saved


def test_excepthook_reports_and_chains(restore_excepthooks: None) -> None:
    posted, chained = Recorder(), []
    sys.excepthook = lambda *args: chained.append(args)
    uninstall = events.install_excepthook(events.Reporter(posted))
    try:
        raise KeyError("lost key")
    except KeyError:
        exc_info = sys.exc_info()
    sys.excepthook(*exc_info)
    assert chained == [exc_info]
    [(event, message)] = posted.events
    assert event == "bot_error" and "unhandled exception in thread 'MainThread'" in message
    assert "Traceback" in message and "KeyError: 'lost key'" in message
    uninstall()
    assert sys.excepthook is not None and sys.excepthook.__name__ == "<lambda>"


def test_excepthook_ignores_ctrl_c(restore_excepthooks: None) -> None:
    posted, chained = Recorder(), []
    sys.excepthook = lambda *args: chained.append(args)
    events.install_excepthook(events.Reporter(posted))
    sys.excepthook(KeyboardInterrupt, KeyboardInterrupt(), None)
    assert posted.events == [] and len(chained) == 1


def test_thread_excepthook_reports_and_chains(restore_excepthooks: None) -> None:
    posted, chained = Recorder(), []
    threading.excepthook = lambda args: chained.append(args.exc_type)
    events.install_excepthook(events.Reporter(posted))

    def fail() -> None:
        raise RuntimeError("thread boom")

    thread = threading.Thread(target=fail, name="worker")
    thread.start()
    thread.join()
    assert chained == [RuntimeError]
    [(event, message)] = posted.events
    assert event == "bot_error" and "'worker'" in message and "RuntimeError: thread boom" in message


def test_an_unhandled_exception_in_a_real_process_is_reported(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    script = textwrap.dedent(f"""
        import json
        from bot import events
        def post(event, message):
            with open({str(log)!r}, "a") as f:
                f.write(json.dumps([event, message]) + "\\n")
        events.install_excepthook(events.Reporter(post))
        raise ValueError("the bot's own bug")
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "ValueError: the bot's own bug" in out.stderr  # The default hook still printed it.
    [(event, message)] = [json.loads(line) for line in log.read_text().splitlines()]
    assert event == "bot_error" and "ValueError: the bot's own bug" in message
