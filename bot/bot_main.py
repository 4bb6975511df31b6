"""The bot's main loop: handshake, then poll and do what the server says until
told to stop (seed 000, "bot_main.py"): run a task (in a task runner process,
`w/` under the bot's directory), sleep, update to other code, restart, or
terminate. Tasks run one at a time."""

from __future__ import annotations

import argparse
import dataclasses
import enum
import logging
import os
import platform
import random
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from bot import launcher, layout as layout_lib, os_platform, remote, runner_process
from bot.task_runner import Clock, Timings
from shared import dimensions as dims_lib
from shared.errors import ValidationError

logger = logging.getLogger(__name__)

T = TypeVar("T")
Sleeper = Callable[[float], object]

DEFAULT_POOL = "default"
#: The loop's own backoff after a failed iteration, on top of the HTTP retries.
BACKOFF_BASE_SECS, BACKOFF_MAX_SECS = 1.0, 60.0
#: How long to wait before polling again after an update that failed.
UPDATE_RETRY_SECS = 60.0
#: The bot's last-ditch timeout of a task, past everything the runner may take.
LAST_DITCH_MARGIN_SECS = 120.0
#: Environment variables of the bot's own that neither the runner nor a task gets.
_BOT_ONLY_ENV = (launcher.PROBATION_ENV, launcher.BAD_VERSION_ENV)

_OS_NAMES = {"Darwin": "Mac"}
_CPU_NAMES = {"x86_64": "x86-64", "amd64": "x86-64", "aarch64": "arm64"}


class Outcome(str, enum.Enum):
    """What one poll led to."""

    SLEPT = "slept"
    RAN = "ran"
    SKIPPED = "skipped"  # Every candidate went to another bot: poll again at once.
    UPDATE_FAILED = "update failed"  # Reported, then waited before polling again.
    RESTARTED = "restarted"  # Only seen when the exec returns: a test's.
    TERMINATED = "terminated"


class Bot:
    """The long-lived loop state of one bot."""

    def __init__(self, api: remote.Remote, work_dir: Path, dimensions: dims_lib.Dimensions, *,
                 shutdown: threading.Event, sleep: Sleeper | None = None,
                 rand: random.Random | None = None, timings: Timings = Timings(),
                 clock: Clock = time.monotonic, code: launcher.Code | None = None,
                 updater: launcher.Updater | None = None,
                 last_ditch_margin: float = LAST_DITCH_MARGIN_SECS):
        self._remote = api  # The Bot API; it retries transient failures itself.
        self._layout = layout_lib.Layout(work_dir)  # The bot's directory; each task runs in its w/.
        self._dimensions = dimensions  # Reported on every call; `id` and `pool` always in.
        self._shutdown = shutdown  # Set by SIGTERM: ends the loop and stops the running task.
        self._sleep = sleep or shutdown.wait  # Every wait of the loop; SIGTERM cuts it short.
        self._rand = rand or random.Random()  # Jitter of the loop's backoff.
        self._timings = timings  # Of the task runner.
        self._clock = clock  # Measures the bot's running time.
        self._started = clock()  # When the bot started: its running_time counts from it.
        self._code = code or launcher.current_code()  # What runs: its version, how to start a runner.
        # Update, restart, last known good copy.
        self._updater = updater or launcher.Updater(self._code, self._layout, [])
        self._last_ditch_margin = last_ditch_margin  # Past the runner's own allowances.
        self.sleep_streak = 0  # Polls answered "sleep" in a row; the server's idle backoff grows with it.
        self._error_streak = 0  # Failed iterations in a row; the loop's backoff grows with it.
        self._poll_uuid: str | None = None  # Kept until a poll is answered, so a retried poll is the same.
        self._fallback: tuple[str, str] | None = None  # A version that failed to start, to report once.
        self._reported_bad: set[str] = set()  # Versions whose failed update was reported: once is enough.

    @property
    def bot_id(self) -> str:
        return self._dimensions["id"][0]

    def attributes(self) -> remote.Attributes:
        state = {"sleep_streak": self.sleep_streak, "running_time": round(self._clock() - self._started, 1)}
        return remote.Attributes(self._dimensions, state, self._code.version)

    def report_fallback(self, version: str, why: str) -> None:
        """This bot was started in place of `version`, which failed to start."""
        self._updater.bad_versions[version] = f"it failed to start: {why}"
        self._fallback = (version, why)
        self._reported_bad.add(version)

    def run(self, once: bool = False) -> None:
        """Handshakes, then polls until shutdown; with `once`, only until a
        task has run or a poll was answered with something else than a claim."""
        while not self._shutdown.is_set() and self._guarded(self.handshake, self._fatal_at_start) is None:
            pass
        while not self._shutdown.is_set():
            outcome = self._guarded(self.run_once)
            if once and outcome not in (None, Outcome.SKIPPED):
                return

    def _fatal_at_start(self, error: Exception) -> bool:
        # New code that cannot even handshake because of a bug of its own
        # exits, so that the launcher falls back to the last known good copy.
        return self._updater.on_probation and not isinstance(error, remote.RemoteError)

    def handshake(self) -> dict[str, Any]:
        reply = self._remote.handshake(self.attributes())
        logger.info("bot %s: connected to %s, server version %s, bot version %s (server's: %s)", self.bot_id,
                    self._remote.server, reply.get("server_version"), self._code.version,
                    reply.get("bot_version"))
        self._updater.connected()
        if self._fallback:
            version, why = self._fallback
            self._event("bot_error", f"version {version} failed to start ({why}); "
                                     f"running the last known good code {self._code.version}")
            self._fallback = None
        return reply

    def run_once(self) -> Outcome:
        """One poll and what it asks for."""
        self._poll_uuid = self._poll_uuid or str(uuid.uuid4())
        reply = self._remote.poll(self.attributes(), self._poll_uuid)
        self._poll_uuid = None
        if isinstance(reply, remote.Sleep):
            self.sleep_streak += 1
            self._updater.idle()
            self._sleep(reply.duration)
            return Outcome.SLEPT
        if isinstance(reply, remote.UpdateCode):
            return self._update(reply.version)
        if isinstance(reply, remote.Restart):
            self._restart(reply.message)
            return Outcome.RESTARTED
        if isinstance(reply, remote.Terminate):
            self._terminate(reply.task_id)
            return Outcome.TERMINATED
        for candidate in reply.candidates:
            if self._claim_and_run(candidate):
                self.sleep_streak = 0
                return Outcome.RAN
        return Outcome.SKIPPED

    def _update(self, version: str) -> Outcome:
        try:
            self._updater.update(lambda v, path: self._remote.bot_code(v, path), version)
        except launcher.UpdateError as e:
            logger.error("bot %s: %s", self.bot_id, e)
            if e.bad and e.version not in self._reported_bad:
                self._reported_bad.add(e.version)
                self._event("bot_error", str(e))
            self._sleep(UPDATE_RETRY_SECS * self._rand.uniform(0.8, 1.0))
            return Outcome.UPDATE_FAILED
        return Outcome.RESTARTED  # Only when the exec returned: a test's.

    def _restart(self, message: str) -> None:
        # A host reboot is a hook's to do (on_bot_shutdown); the bot restarts itself.
        self._event("bot_shutdown", f"restarting: {message}")
        self._updater.restart(message)

    def _terminate(self, task_id: str) -> None:
        """Ends the termination task (claimed like any task, completed with
        exit code 0), then the bot."""
        logger.info("bot %s: terminating (task %s)", self.bot_id, task_id)
        try:
            claimed = self._remote.claim(self.attributes(), remote.Candidate(task_id, 0), claim_id=str(uuid.uuid4()))
            run_id = claimed.task_id if isinstance(claimed, remote.Manifest) else None
        except remote.BadManifest as e:  # Termination tasks have no command to speak of.
            run_id = e.run_id
        except remote.RemoteError as e:
            logger.error("bot %s: the termination task %s could not be claimed: %s", self.bot_id, task_id, e)
            run_id = None
        if run_id is not None:
            try:
                self._remote.task_update(self.attributes(), run_id,
                                         remote.Update(0, completion=remote.Completion(0, 0.0)))
            except remote.RemoteError as e:
                logger.error("task %s (bot %s): the termination was not reported: %s", run_id, self.bot_id, e)
        self._event("bot_shutdown", f"terminated by task {task_id}")
        self._shutdown.set()

    def _claim_and_run(self, candidate: remote.Candidate) -> bool:
        """True when the claim was won, whether the task could run or not."""
        try:
            claimed = self._remote.claim(self.attributes(), candidate, claim_id=str(uuid.uuid4()))
        except remote.BadManifest as e:
            self._task_error(e.run_id, f"bad manifest: {e.message}")
            return True
        if isinstance(claimed, remote.Skip):
            logger.info("task %s (bot %s): skipped: %s", candidate.task_id, self.bot_id, claimed.reason)
            return False
        run_id = claimed.task_id
        logger.info("task %s (bot %s): claimed, running %s", run_id, self.bot_id, list(claimed.command))
        report = runner_process.run(
            self._runner_spec(claimed), layout=self._layout,
            python_args=self._code.python_args(), cwd=self._code.source_root, env=self._runner_env(),
            shutdown=self._shutdown, deadline_secs=self._last_ditch(claimed),
        )
        if report.error is not None:
            self._task_error(run_id, report.error, report.missing_cas)
        elif report.failure is not None:
            self._task_error(run_id, report.failure)
        else:
            logger.info("task %s (bot %s): ended: %s", run_id, self.bot_id, report.result)
            if report.succeeded:
                self._updater.task_succeeded()
        return True

    def _runner_spec(self, manifest: remote.Manifest) -> dict[str, Any]:
        return {
            "manifest": manifest.raw,
            "server": self._remote.server,
            "attributes": self.attributes().to_json(),
            "session": self._remote.bot_session,
            "timings": dataclasses.asdict(self._timings),
            "work_dir": str(self._layout.work),
            "out_dir": str(self._layout.out),
            "cache_dir": str(self._layout.named_caches),
            "log": str(self._layout.runner_log),
        }

    def _runner_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _BOT_ONLY_ENV}
        env["SWARMING_TOKEN"] = self._remote.token
        return env

    def _last_ditch(self, manifest: remote.Manifest) -> float:
        """Past the hard timeout, the grace, the output drain and the runner's
        patience with the server: only a runner gone wrong takes longer."""
        grace = self._timings.grace_period if manifest.grace_period is None else manifest.grace_period
        return (manifest.hard_timeout + grace + self._timings.drain + self._timings.report_patience
                + self._last_ditch_margin)

    def _task_error(self, run_id: str, message: str, missing_cas: Sequence[Any] | None = None) -> None:
        """Ends a claimed run the bot cannot carry out, so that it fails now
        rather than when its pings stop; the bot goes on polling either way."""
        logger.error("task %s (bot %s): internal error: %s", run_id, self.bot_id, message)
        try:
            self._remote.task_error(self.attributes(), run_id, message, missing_cas)
        except remote.RemoteError as e:
            logger.error("task %s (bot %s): the error was not reported: %s", run_id, self.bot_id, e)

    def _event(self, event: str, message: str) -> None:
        try:
            self._remote.event(self.attributes(), event, message)
        except remote.RemoteError as e:
            logger.error("bot %s: the %s event was not reported: %s", self.bot_id, event, e)

    def _guarded(self, step: Callable[[], T],
                 fatal: Callable[[Exception], bool] = lambda error: False) -> T | None:
        """Runs one step of the loop; a failure is logged and backed off from,
        never fatal: the bot must outlive server outages and its own bugs."""
        try:
            result = step()
        except Exception as e:
            if fatal(e):
                raise
            delay = min(BACKOFF_MAX_SECS, BACKOFF_BASE_SECS * 2 ** self._error_streak)
            delay *= self._rand.uniform(0.5, 1.0)
            self._error_streak += 1
            logger.exception("bot %s: %s failed; retrying in %.1f s", self.bot_id, step.__name__, delay)
            self._sleep(delay)
            return None
        self._error_streak = 0
        return result


def default_dimensions(bot_id: str) -> dims_lib.Dimensions:
    machine = platform.machine().lower()
    return {
        "id": [bot_id],
        "pool": [DEFAULT_POOL],
        "os": _os_values(),
        "cpu": [_CPU_NAMES.get(machine, machine or "unknown")],
        "python": ["3", f"3.{sys.version_info.minor}"],
    }


def initial_attributes(bot_id: str, version: str) -> remote.Attributes:
    """What a bot that just started says of itself (the `attributes` command)."""
    return remote.Attributes(default_dimensions(bot_id), {"sleep_streak": 0, "running_time": 0.0}, version)


def _os_values() -> list[str]:
    """The OS, then on Linux the distribution and its version: Linux, Ubuntu, Ubuntu-22.04."""
    system = platform.system() or "unknown"
    values = [_OS_NAMES.get(system, system)]
    if system == "Linux":
        try:
            release = platform.freedesktop_os_release()
        except (OSError, AttributeError):  # AttributeError: Python 3.9 has no such function.
            return values
        distro = release.get("ID", "").capitalize()
        if distro:
            values.append(distro)
            if release.get("VERSION_ID"):
                values.append(f"{distro}-{release['VERSION_ID']}")
    return values


def bot_id_from(flag: str | None) -> str:
    """--id, else $SWARMING_BOT_ID, else the hostname without its domain."""
    return flag or os.environ.get("SWARMING_BOT_ID") or socket.gethostname().split(".")[0]


@dataclasses.dataclass(frozen=True)
class Options:
    server: str
    work_dir: Path
    token: str
    dimensions: dims_lib.Dimensions
    once: bool

    @property
    def bot_id(self) -> str:
        return self.dimensions["id"][0]


def parse_args(argv: Sequence[str] | None = None, code: launcher.Code | None = None) -> Options:
    """From a zip, the server defaults to its config.json's and the directory
    is the zip's; from source both are required."""
    code = code or launcher.Code(None, launcher.DEV_VERSION)
    in_zip = code.zip_path is not None
    config_server = code.config().get("server") if in_zip else None
    parser = argparse.ArgumentParser(
        prog="python3 swarming_bot.zip start_bot" if in_zip else "python -m bot",
        description="Runs a Swarming bot. Other commands: " + ", ".join(launcher.COMMANDS) + ".")
    parser.add_argument("--server", required=not config_server, default=config_server,
                        help="the server's base URL" + (f" (default: {config_server})" if config_server else ""))
    if in_zip:
        parser.set_defaults(work_dir=code.zip_path.parent)
    else:
        parser.add_argument("--work-dir", required=True, type=Path,
                            help="the bot's directory, which it owns whole: everything it does not know "
                                 "there is deleted at start-up; tasks run in its w/")
    parser.add_argument("--id", help="the bot id (default: $SWARMING_BOT_ID, else the short hostname)")
    parser.add_argument("--dimension", action="append", default=[], type=_key_value, metavar="KEY=VALUE",
                        help="replaces a dimension's values; repeat a key to give it several")
    parser.add_argument("--token", help="the bot's bearer token (default: $SWARMING_TOKEN)")
    parser.add_argument("--once", action="store_true",
                        help="stop after one task has run or one poll was answered with something else")
    args = parser.parse_args(argv)
    token = args.token or os.environ.get("SWARMING_TOKEN")
    if not token:
        parser.error("a token is required: pass --token or set SWARMING_TOKEN")
    try:
        dimensions = _dimensions(bot_id_from(args.id), args.dimension)
    except ValidationError as e:
        parser.error(str(e))
    return Options(server=args.server, work_dir=Path(os.path.abspath(args.work_dir)), token=token,
                   dimensions=dimensions, once=args.once)


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def _dimensions(bot_id: str, overrides: list[tuple[str, str]]) -> dims_lib.Dimensions:
    given: dims_lib.Dimensions = {}
    for key, value in overrides:
        given.setdefault(key, []).append(value)
    if "id" in given:
        raise ValidationError("--dimension id", "set the bot id with --id")
    return dims_lib.validate_bot({**default_dimensions(bot_id), **given}, "--dimension")


def main(argv: Sequence[str] | None = None, code: launcher.Code | None = None) -> int:
    """Runs the bot in its directory: locks and clears it (layout.py), then
    loops until SIGTERM, `terminate`, or an exec into other code."""
    code = code or launcher.current_code()
    argv = list(sys.argv[1:] if argv is None else argv)
    options = parse_args(argv, code)
    bot_layout = layout_lib.Layout(options.work_dir)
    try:
        lock = layout_lib.take(bot_layout)
    except layout_lib.LayoutError as e:
        sys.stderr.write(f"swarming bot: {e}\n")
        return launcher.ExitCode.NOT_OURS
    layout_lib.log_to(bot_layout.bot_log, stderr=True)
    shutdown = threading.Event()

    def stop(signum: int) -> None:
        logger.info("signal %d received: shutting down", signum)
        shutdown.set()

    os_platform.on_stop_signals(stop)
    os_platform.on_stack_dump_signal(logger)
    updater = launcher.Updater(code, bot_layout, argv)
    api = remote.Remote(options.server, options.token)
    bot = Bot(api, options.work_dir, options.dimensions, shutdown=shutdown, code=code, updater=updater)
    fallback = launcher.take_bad_version()
    if fallback:
        logger.error("bot %s: started in place of version %s, which failed to start (%s)",
                     options.bot_id, *fallback)
        bot.report_fallback(*fallback)
    logger.info("bot %s: starting in %s, version %s, pid %d, dimensions %s", options.bot_id, options.work_dir,
                code.version, os.getpid(), options.dimensions)
    try:
        bot.run(once=options.once)
    finally:
        api.close()
        lock.release()
    logger.info("bot %s: stopped", options.bot_id)
    return 0
