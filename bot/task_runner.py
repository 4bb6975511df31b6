"""Runs one task: its command in `w/`, the output streamed back by byte offset,
the hard and I/O timeouts and every stop enforced with the SIGTERM, grace
period, SIGKILL dance of the seed ("Graceful termination").

Around the command it moves the task's content-addressed files
(task_files.py): the input tree placed in `w/` before, `${ISOLATED_OUTDIR}` and
`outputs` uploaded after, whatever the exit code; keepalives go on meanwhile.
The command alone, while it runs, has its LUCI_CONTEXT file (luci_context.py),
which carries its secret bytes.

It runs in the task runner process (`run_task`, bot/runner_main.py), never in
the bot's own: a runner that hangs or crashes costs one task, not the bot."""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any, Callable, TypeVar

from bot import layout, luci_context, os_platform
from bot.errors import TaskError
from bot.remote import RunGone
from bot.task_files import CasAccess, TaskFiles
from bot.task_user import TaskUser
from shared import dimensions as dims_lib
from shared.api_error import ApiError
from shared.bot_api import Completion, TaskUpdateReply, Update
from shared.cas import Digest
from shared.errors import ValidationError
from shared.manifest import Manifest
from shared.wire import MAX_INT64, WireObject

logger = logging.getLogger(__name__)

#: Sends one update; the server's reply says whether the task must stop.
Send = Callable[[Update], TaskUpdateReply]
Clock = Callable[[], float]
T = TypeVar("T")
#: Told the command's pid (its process group) once it started.
OnStart = Callable[[int], None]

#: Reported for a command that could not start; its error text is in the output.
START_FAILURE_EXIT_CODE = 1
_READ_SIZE = 64 * 1024


@dataclasses.dataclass(frozen=True)
class Timings:
    output_interval: float = 1.0  # New output is sent at most this often.
    keepalive: float = 10.0  # A silent task still updates this often, or the server thinks the bot died.
    max_packet: int = 250_000  # Output bytes per update, as in the reference.
    grace_period: float = 30.0  # From SIGTERM to SIGKILL, unless the manifest says otherwise.
    drain: float = 5.0  # Output still awaited after the exit, from a descendant that left the process group.
    tick: float = 0.1  # How often the process, the timeout and stop requests are checked.
    # How long a completion the server did not take is resent: past the
    # server's ping tolerance the task is declared dead anyway.
    report_patience: float = 600.0
    max_report_backoff: float = 30.0  # Between resends of the completion.


class StopReason(str, enum.Enum):
    HARD_TIMEOUT = "hard timeout"
    IO_TIMEOUT = "I/O timeout"
    SERVER = "the server asked"
    RUN_GONE = "the run is no longer this bot's"
    SHUTDOWN = "the bot is shutting down"


@dataclasses.dataclass(frozen=True)
class Result:
    exit_code: int | None  # None: the command was never started.
    duration: float
    stop: StopReason | None
    reported: bool = False  # The end (completion or cancellation) reached the server.

    def to_wire(self) -> dict[str, Any]:
        """Also what `on_after_task` is told of the task (with its id)."""
        return {"exit_code": self.exit_code, "duration": self.duration,
                "stop": None if self.stop is None else self.stop.value, "reported": self.reported}

    @classmethod
    def from_wire(cls, body: Any, field: str) -> Result:
        wire = WireObject(body, field, ("exit_code", "duration", "stop", "reported"))
        exit_code, stop = wire.optional("exit_code"), wire.optional("stop")
        stops = {reason.value: reason for reason in StopReason}
        if stop is not None and stop not in stops:
            raise ValidationError(wire.field("stop"), f"must be one of {', '.join(stops)}")
        return cls(exit_code=None if exit_code is None else wire.integer("exit_code", -MAX_INT64 - 1, MAX_INT64),
                   duration=wire.number("duration", 0, math.inf), stop=None if stop is None else stops[stop],
                   reported=wire.boolean("reported"))


class TaskRunner:
    """Runs one manifest to its end and reports it. The command's failures,
    including failing to start, are reported to the server, never raised; the
    bot's own (TaskError, or any other exception) are raised before the end
    was reported, for the caller to report with `bot_task_error`."""

    def __init__(self, manifest: Manifest, work_dir: Path, send: Send, *, server: str,
                 bot_dimensions: dims_lib.Dimensions, shutdown: threading.Event, timings: Timings = Timings(),
                 clock: Clock = time.monotonic, out_dir: Path | None = None,
                 cache_dir: Path | None = None, context_dir: Path | None = None,
                 on_start: OnStart | None = None, cas: CasAccess | None = None, run_as: str | None = None):
        self._manifest = manifest
        self._run_as = run_as  # The user the command runs as (bot/task_user.py); None: the runner's.
        self._user: TaskUser | None = None
        self._work_dir = work_dir
        # ISOLATED_OUTDIR: beside w/ (default `io/`), so the task's outputs are
        # never part of its own working tree; fresh for each task.
        self._out_dir = out_dir or work_dir.with_name("io")
        self._cache_dir = cache_dir or work_dir.with_name("c")  # Named caches live here between tasks.
        # The LUCI_CONTEXT file's directory (default `ctx/`): beside w/ and
        # io/, so neither the task's tree nor its outputs ever hold the secret.
        self._context_dir = context_dir or work_dir.with_name("ctx")
        self._bot_dimensions = bot_dimensions  # The bot's own, for the task's LUCI_CONTEXT.
        self._on_start = on_start
        self._send = send
        self._server = server
        self._shutdown = shutdown
        self._timings = timings
        self._clock = clock
        self._name = f"task {manifest.task_id} (bot {manifest.bot_id})"
        self._output = _Output(clock)
        self._sent = 0  # Output bytes the server has: the offset of the next packet.
        self._last_send = -math.inf  # When the last update was attempted.
        self._stop: StopReason | None = None  # Why the command is being stopped, once it is.
        self._kill_at: float | None = None  # When SIGTERM turns into SIGKILL; None before SIGTERM.
        self._gone = False  # The server disowned the run: report nothing more.
        self._files = TaskFiles(cas, self._name, clock)  # Inputs, outputs, and what moving them cost.
        self._began = clock()  # The runner's start: all but the command's duration is the bot's overhead.

    def run(self) -> Result:
        cwd = self._under_work_dir(self._manifest.relative_cwd, "relative_cwd")
        caches = [(self._cache_dir / cache.name, self._under_work_dir(cache.path, f"caches.{cache.name}"))
                  for cache in self._manifest.caches]
        if any(mount == self._work_dir for _, mount in caches):
            raise TaskError("caches: a named cache cannot be the work directory itself")
        outputs = [(path, self._under_work_dir(path, "outputs")) for path in self._manifest.outputs]
        self._user = TaskUser.named(self._run_as) if self._run_as else None
        env = self._env()
        context = luci_context.for_task(
            run_id=self._manifest.task_id, server=self._server, bot_dimensions=self._bot_dimensions,
            secret_bytes=self._manifest.secret_bytes, parent=os.environ.get(luci_context.ENV))
        try:
            for path in (self._work_dir, self._out_dir, self._context_dir):
                layout.remove(path)
            self._work_dir.mkdir(parents=True)
            self._out_dir.mkdir(parents=True)
            self._context_dir.mkdir(mode=0o700, parents=True)
        except OSError as e:
            raise TaskError(f"cannot make the work directory {self._work_dir}: {e}") from e
        mounted: list[tuple[Path, Path]] = []
        try:
            root = self._manifest.cas_input_root
            if root is not None:
                self._keeping_alive(lambda: self._files.fetch_inputs(root, self._work_dir))
            try:
                cwd.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise TaskError(f"cannot make the working directory {cwd}: {e}") from e
            self._mount(caches, mounted)
            if self._user:
                self._user.give_tree(self._work_dir, skip=[mount for _, mount in mounted])
                self._user.give([self._out_dir, self._context_dir])
            return self._run(cwd, env, context, outputs)
        finally:
            self._unmount(mounted)
            for path in (self._work_dir, self._out_dir, self._context_dir):
                try:
                    layout.remove(path)
                except OSError as e:  # The end is reported by now; the next task's wipe retries.
                    logger.error("%s: cannot delete %s: %s", self._name, path, e)
            self._trim_cache()

    def _mount(self, caches: list[tuple[Path, Path]], mounted: list[tuple[Path, Path]]) -> None:
        """Moves each named cache from c/ to its path under w/ (a rename: the
        same file system, whatever the cache's size); a new name starts empty."""
        for home, mount in caches:
            try:
                home.mkdir(parents=True, exist_ok=True)
                if mount.exists():
                    raise TaskError(f"caches: {mount} already exists")
                mount.parent.mkdir(parents=True, exist_ok=True)
                os.rename(home, mount)
            except OSError as e:
                raise TaskError(f"cannot map the named cache {home.name} to {mount}: {e}") from e
            mounted.append((home, mount))
            logger.info("%s: named cache %s at %s", self._name, home.name, mount)

    def _unmount(self, mounted: list[tuple[Path, Path]]) -> None:
        """Moves the caches back to c/ after the task, whatever its end; one
        the task deleted or replaced by something else is dropped."""
        for home, mount in mounted:
            try:
                if mount.is_dir() and not mount.is_symlink() and not home.exists():
                    os.rename(mount, home)
                else:
                    logger.warning("%s: named cache %s is gone from %s", self._name, home.name, mount)
            except OSError as e:
                logger.error("%s: cannot move the named cache %s back: %s", self._name, home.name, e)

    def _trim_cache(self) -> None:
        """The cache's limits and free-space floor at the end of the task,
        once w/ (hard links to its entries) is gone."""
        try:
            self._files.trim_cache()
        except OSError as e:  # The next task's fetch trims again.
            logger.error("%s: cannot trim the cas cache: %s", self._name, e)

    def _run(self, cwd: Path, env: dict[str, str], context: luci_context.Context,
             outputs: list[tuple[str, Path]]) -> Result:
        # The first update precedes the command, so a task cancelled meanwhile never starts.
        self._flush()
        if self._stop is not None:
            logger.info("%s: not started: %s", self._name, self._stop.value)
            reported = self._stop is StopReason.SERVER and self._report_end(canceled=True)
            if self._stop is StopReason.SERVER and not reported:
                logger.error("%s: its cancellation was not reported", self._name)
            return Result(None, 0.0, self._stop, reported)
        started = self._clock()
        with luci_context.written(self._context_file, context):
            if self._user:
                self._user.give([self._context_file])
            exit_code = self._execute(started, cwd, env)
        duration = self._clock() - started
        output_root = None if self._gone else self._keeping_alive(lambda: self._upload_outputs(outputs))
        completion = Completion(exit_code, duration, hard_timeout=self._stop is StopReason.HARD_TIMEOUT,
                                io_timeout=self._stop is StopReason.IO_TIMEOUT, cas_output_root=output_root,
                                performance_stats=self._files.performance_stats(
                                    max(0.0, self._clock() - self._began - duration)))
        reported = self._report_end(completion)
        if reported:
            logger.info("%s: exit code %d after %.1f s, %d bytes of output",
                        self._name, exit_code, duration, self._sent)
        else:
            logger.error("%s: its completion (exit code %d) was not reported", self._name, exit_code)
        return Result(exit_code, duration, self._stop, reported)

    def _execute(self, started: float, cwd: Path, env: dict[str, str]) -> int:
        command = [self._expand(arg) for arg in self._manifest.command]
        try:
            process = subprocess.Popen(
                command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0,
                # Its own process group, so stops reach its descendants too.
                **os_platform.NEW_GROUP, **(self._user.popen_args() if self._user else {}),
            )
        except (OSError, ValueError) as e:
            logger.warning("%s: cannot start %s: %s", self._name, command, e)
            self._output.append(f"swarming bot: cannot start {command[0]!r}: {e}\n".encode())
            return START_FAILURE_EXIT_CODE
        logger.info("%s: started pid %d: %s", self._name, process.pid, command)
        if self._on_start:
            self._on_start(process.pid)
        self._output.start(process.stdout)
        deadline = started + self._manifest.hard_timeout
        io_timeout = self._manifest.io_timeout
        try:
            while (exit_code := _wait(process, self._timings.tick)) is None:
                now = self._clock()
                if self._shutdown.is_set():
                    self._request_stop(StopReason.SHUTDOWN)
                if now >= deadline:
                    self._request_stop(StopReason.HARD_TIMEOUT)
                if io_timeout and now - self._output.last_output(started) >= io_timeout:
                    self._request_stop(StopReason.IO_TIMEOUT, f"silent for {io_timeout:g} s")
                self._enforce_stop(process.pid, now)
                self._report(now)
        finally:
            # Descendants left behind would hold the output pipe open and files
            # in w/; and should the runner itself fail, no command outlives it.
            os_platform.kill_group(process.pid)
        if not self._output.join(self._timings.drain):
            logger.warning("%s: output still open %.0f s after the exit; ignoring the rest",
                           self._name, self._timings.drain)
        return exit_code

    def _upload_outputs(self, outputs: list[tuple[str, Path]]) -> Digest | None:
        """The output tree's digest; None when there was nothing to upload, or
        when the upload failed: the exit code must reach the server anyway."""
        try:
            return self._files.upload_outputs(self._out_dir, outputs)
        except Exception:  # Whatever failed, the completion goes without outputs.
            logger.exception("%s: the outputs were not uploaded", self._name)
            return None

    def _keeping_alive(self, step: Callable[[], T]) -> T:
        """Runs a long step of the runner's own (fetching the inputs, uploading
        the outputs) while a thread sends the usual keepalives (and pending
        output): past the ping tolerance the server would think the bot died.
        A stop the server asks for meanwhile is acted on after the step."""
        done = threading.Event()

        def beat() -> None:
            while not done.wait(self._timings.keepalive):
                self._flush()

        thread = threading.Thread(target=beat, name="keepalive", daemon=True)
        thread.start()
        try:
            return step()
        finally:
            done.set()
            thread.join()

    def _report_end(self, completion: Completion | None = None, canceled: bool = False) -> bool:
        """Resends the end (the completion, or the cancellation of a command
        never started), with the output before it, until the server has it: a
        lost end would leave the task running with its exit code gone. Gives
        up only when the run is no longer this bot's, or after
        `report_patience`."""
        give_up = self._clock() + self._timings.report_patience
        delay = self._timings.tick
        while not self._flush(completion, canceled):
            if self._gone or self._clock() >= give_up:
                return False
            time.sleep(delay)
            delay = min(delay * 2, self._timings.max_report_backoff)
        return True

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)  # The runner's, which holds no credential (bot_main._runner_env).
        env.update(self._user.env() if self._user else {})
        env.update((k, self._expand(v)) for k, v in self._manifest.env.items())
        # As the reference: each prefix made absolute under w/, before what the variable held.
        for key, paths in self._manifest.env_prefixes.items():
            prefixes = [str(self._under_work_dir(p, f"env_prefixes.{key}")) for p in paths]
            env[key] = os.pathsep.join([*prefixes, env[key]] if env.get(key) else prefixes)
        # Last, so that nothing inherited stands in for them (a request may not set them).
        env.update(SWARMING_TASK_ID=self._manifest.task_id, SWARMING_BOT_ID=self._manifest.bot_id,
                   SWARMING_SERVER=self._server, ISOLATED_OUTDIR=str(self._out_dir),
                   LUCI_CONTEXT=str(self._context_file))
        return env

    @property
    def _context_file(self) -> Path:
        return self._context_dir / luci_context.FILE_NAME

    def _expand(self, value: str) -> str:
        """As the reference, `${ISOLATED_OUTDIR}` in an argument or an env value
        is where the task leaves its outputs."""
        return value.replace("${ISOLATED_OUTDIR}", str(self._out_dir))

    def _under_work_dir(self, relative: str, field: str) -> Path:
        """The path of `relative` in w/; one that would leave w/ is the
        server's fault (it validates them), so an internal error."""
        if os.path.isabs(relative) or ".." in Path(relative).parts:
            raise TaskError(f"{field}: {relative!r} is not a relative path inside the work directory")
        return Path(os.path.normpath(self._work_dir / relative))

    def _request_stop(self, reason: StopReason, detail: str = "") -> None:
        if self._stop is None:
            logger.warning("%s: stopping: %s%s", self._name, reason.value, f" ({detail})" if detail else "")
            self._stop = reason

    def _enforce_stop(self, pgid: int, now: float) -> None:
        if self._stop is None:
            return
        if self._kill_at is None:
            grace = self._manifest.grace_period
            grace = self._timings.grace_period if grace is None else grace
            logger.info("%s: SIGTERM, SIGKILL in %.1f s if still running", self._name, grace)
            os_platform.terminate_group(pgid)
            self._kill_at = now + grace
        elif now >= self._kill_at:
            logger.warning("%s: still running after the grace period: SIGKILL", self._name)
            os_platform.kill_group(pgid)
            self._kill_at = math.inf  # Nothing left to escalate to.

    def _report(self, now: float) -> None:
        since = now - self._last_send
        if since >= self._timings.keepalive or (self._output.has_pending()
                                                and since >= self._timings.output_interval):
            self._flush()

    def _flush(self, completion: Completion | None = None, canceled: bool = False) -> bool:
        """Sends the pending output in packets of at most max_packet bytes, the
        end (completion or cancellation) riding on the last one. With no output
        pending one update still goes (the first one, a keepalive or the end).
        False when an update failed: what it carried stays pending, for the
        same offset."""
        while not self._gone:
            data, more = self._output.peek(self._timings.max_packet)
            last = not more
            update = Update(self._sent, data, completion if last else None, canceled=canceled and last)
            if not self._send_update(update):
                return False
            self._output.drop(len(data))
            self._sent += len(data)
            if not more:
                return True
        return False

    def _send_update(self, update: Update) -> bool:
        self._last_send = self._clock()
        try:
            reply = self._send(update)
        except RunGone as e:
            self._gone = True
            self._request_stop(StopReason.RUN_GONE, str(e))
            return False
        except ApiError as e:
            logger.warning("%s: update at offset %d failed, will resend: %s", self._name, update.offset, e)
            return False
        if reply.must_stop:
            self._request_stop(StopReason.SERVER, reply.stop_reason or "stopped by the server")
        return True


class _Output:
    """The command's merged stdout and stderr, read on a thread so the command
    never blocks on a full pipe while the runner waits on the server."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._pending = bytearray()  # Read, not yet acknowledged by the server.
        self._last_read: float | None = None  # When output last came: the I/O timeout counts from it.
        self._reader: threading.Thread | None = None

    def start(self, pipe: IO[bytes]) -> None:
        self._reader = threading.Thread(target=self._read, args=(pipe,), name="task-output", daemon=True)
        self._reader.start()

    def join(self, timeout: float) -> bool:
        """True when the pipe reached its end."""
        if self._reader:
            self._reader.join(timeout)
        return not (self._reader and self._reader.is_alive())

    def _read(self, pipe: IO[bytes]) -> None:
        with pipe:
            while chunk := pipe.read(_READ_SIZE):
                self.append(chunk)

    def append(self, data: bytes) -> None:
        with self._lock:
            self._pending += data
            self._last_read = self._clock()

    def last_output(self, default: float) -> float:
        """When output last came, or `default` (the start) if none has."""
        with self._lock:
            return default if self._last_read is None else self._last_read

    def has_pending(self) -> bool:
        with self._lock:
            return bool(self._pending)

    def peek(self, limit: int) -> tuple[bytes, bool]:
        """Up to `limit` pending bytes, and whether more are pending after them."""
        with self._lock:
            return bytes(self._pending[:limit]), len(self._pending) > limit

    def drop(self, count: int) -> None:
        with self._lock:
            del self._pending[:count]


def _wait(process: subprocess.Popen, timeout: float) -> int | None:
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        return None
