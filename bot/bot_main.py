"""The bot's main loop: handshake, then poll, claim and run tasks until told to
stop (seed 000, "bot_main.py"). Tasks run one at a time, in `<work dir>/w`."""

import argparse
import dataclasses
import enum
import logging
import os
import platform
import random
import signal
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from bot import remote
from bot.task_runner import Clock, TaskError, TaskRunner, Timings
from shared import dimensions as dims_lib
from shared.errors import ValidationError

logger = logging.getLogger(__name__)

T = TypeVar("T")
Sleeper = Callable[[float], object]

#: Reported as the bot's version until bot zips are built and named by digest.
VERSION = "dev"
DEFAULT_POOL = "default"
#: The loop's own backoff after a failed iteration, on top of the HTTP retries.
BACKOFF_BASE_SECS, BACKOFF_MAX_SECS = 1.0, 60.0

_OS_NAMES = {"Darwin": "Mac"}
_CPU_NAMES = {"x86_64": "x86-64", "amd64": "x86-64", "aarch64": "arm64"}


class Outcome(str, enum.Enum):
    """What one poll led to."""

    SLEPT = "slept"
    RAN = "ran"
    SKIPPED = "skipped"  # Every candidate went to another bot: poll again at once.


class Bot:
    """The long-lived loop state of one bot."""

    def __init__(self, api: remote.Remote, work_dir: Path, dimensions: dims_lib.Dimensions, *,
                 shutdown: threading.Event, sleep: Sleeper | None = None,
                 rand: random.Random | None = None, timings: Timings = Timings(),
                 clock: Clock = time.monotonic):
        self._remote = api  # The Bot API; it retries transient failures itself.
        self._work_dir = work_dir  # The bot's root; each task runs in its w/.
        self._dimensions = dimensions  # Reported on every call; `id` and `pool` always in.
        self._shutdown = shutdown  # Set by SIGTERM: ends the loop and stops the running task.
        self._sleep = sleep or shutdown.wait  # Every wait of the loop; SIGTERM cuts it short.
        self._rand = rand or random.Random()  # Jitter of the loop's backoff.
        self._timings = timings  # Of the task runner.
        self._clock = clock  # Measures the bot's running time.
        self._started = clock()  # When the bot started: its running_time counts from it.
        self.sleep_streak = 0  # Polls answered "sleep" in a row; the server's idle backoff grows with it.
        self._error_streak = 0  # Failed iterations in a row; the loop's backoff grows with it.
        self._poll_uuid: str | None = None  # Kept until a poll is answered, so a retried poll is the same.

    @property
    def bot_id(self) -> str:
        return self._dimensions["id"][0]

    def attributes(self) -> remote.Attributes:
        state = {"sleep_streak": self.sleep_streak, "running_time": round(self._clock() - self._started, 1)}
        return remote.Attributes(self._dimensions, state, VERSION)

    def run(self, once: bool = False) -> None:
        """Handshakes, then polls until shutdown; with `once`, only until a task
        has run or a poll was answered with sleep."""
        while not self._shutdown.is_set() and self._guarded(self.handshake) is None:
            pass
        while not self._shutdown.is_set():
            outcome = self._guarded(self.run_once)
            if once and outcome in (Outcome.RAN, Outcome.SLEPT):
                return

    def handshake(self) -> dict[str, Any]:
        reply = self._remote.handshake(self.attributes())
        logger.info("bot %s: connected to %s, server version %s", self.bot_id, self._remote.server,
                    reply.get("server_version"))
        return reply

    def run_once(self) -> Outcome:
        """One poll and what it asks for."""
        self._poll_uuid = self._poll_uuid or str(uuid.uuid4())
        reply = self._remote.poll(self.attributes(), self._poll_uuid)
        self._poll_uuid = None
        if isinstance(reply, remote.Sleep):
            self.sleep_streak += 1
            self._sleep(reply.duration)
            return Outcome.SLEPT
        for candidate in reply.candidates:
            if self._claim_and_run(candidate):
                self.sleep_streak = 0
                return Outcome.RAN
        return Outcome.SKIPPED

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
        runner = TaskRunner(
            claimed, self._work_dir / "w",
            send=lambda update: self._remote.task_update(self.attributes(), claimed.task_id, update),
            server=self._remote.server, shutdown=self._shutdown, timings=self._timings,
        )
        try:
            runner.run()
        except TaskError as e:
            self._task_error(claimed.task_id, e.message, e.missing_cas)
        except Exception as e:  # A bug of the runner's must fail the task, not the bot.
            logger.exception("task %s (bot %s): the task runner failed", claimed.task_id, self.bot_id)
            self._task_error(claimed.task_id, f"the task runner failed: {e!r}")
        return True

    def _task_error(self, run_id: str, message: str, missing_cas: Sequence[Any] | None = None) -> None:
        """Ends a claimed run the bot cannot carry out, so that it fails now
        rather than when its pings stop; the bot goes on polling either way."""
        logger.error("task %s (bot %s): internal error: %s", run_id, self.bot_id, message)
        try:
            self._remote.task_error(self.attributes(), run_id, message, missing_cas)
        except remote.RemoteError as e:
            logger.error("task %s (bot %s): the error was not reported: %s", run_id, self.bot_id, e)

    def _guarded(self, step: Callable[[], T]) -> T | None:
        """Runs one step of the loop; a failure is logged and backed off from,
        never fatal: the bot must outlive server outages and its own bugs."""
        try:
            result = step()
        except Exception:
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


def _os_values() -> list[str]:
    """The OS, then on Linux the distribution and its version: Linux, Ubuntu, Ubuntu-22.04."""
    system = platform.system() or "unknown"
    values = [_OS_NAMES.get(system, system)]
    if system == "Linux":
        try:
            release = platform.freedesktop_os_release()
        except OSError:
            return values
        distro = release.get("ID", "").capitalize()
        if distro:
            values.append(distro)
            if release.get("VERSION_ID"):
                values.append(f"{distro}-{release['VERSION_ID']}")
    return values


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


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Runs a Swarming bot.")
    parser.add_argument("--server", required=True, help="the server's base URL")
    parser.add_argument("--work-dir", required=True, type=Path,
                        help="the bot's directory; each task runs in its w/ (created if missing)")
    parser.add_argument("--id", help="the bot id (default: $SWARMING_BOT_ID, else the short hostname)")
    parser.add_argument("--dimension", action="append", default=[], type=_key_value, metavar="KEY=VALUE",
                        help="replaces a dimension's values; repeat a key to give it several")
    parser.add_argument("--token", help="the bot's bearer token (default: $SWARMING_TOKEN)")
    parser.add_argument("--once", action="store_true",
                        help="stop after one task has run or one poll was answered with sleep")
    args = parser.parse_args(argv)
    token = args.token or os.environ.get("SWARMING_TOKEN")
    if not token:
        parser.error("a token is required: pass --token or set SWARMING_TOKEN")
    bot_id = args.id or os.environ.get("SWARMING_BOT_ID") or socket.gethostname().split(".")[0]
    try:
        dimensions = _dimensions(bot_id, args.dimension)
    except ValidationError as e:
        parser.error(str(e))
    return Options(server=args.server, work_dir=args.work_dir, token=token, dimensions=dimensions,
                   once=args.once)


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


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    shutdown = threading.Event()
    _stop_on_signals(shutdown)
    options.work_dir.mkdir(parents=True, exist_ok=True)
    api = remote.Remote(options.server, options.token)
    bot = Bot(api, options.work_dir, options.dimensions, shutdown=shutdown)
    logger.info("bot %s: starting in %s with dimensions %s", options.bot_id, options.work_dir,
                options.dimensions)
    try:
        bot.run(once=options.once)
    finally:
        api.close()
    logger.info("bot %s: stopped", options.bot_id)
    return 0


def _stop_on_signals(shutdown: threading.Event) -> None:
    def handle(signum: int, _frame: object) -> None:
        logger.info("%s received: shutting down", signal.Signals(signum).name)
        # Set from another thread: the handler runs on the main thread, which may
        # hold the event's internal lock at that moment, and setting it here could deadlock.
        threading.Thread(target=shutdown.set, name="shutdown").start()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handle)
