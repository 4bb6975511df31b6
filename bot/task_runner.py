"""Runs one task: its command in `w/`, the output streamed back by byte offset,
the hard and I/O timeouts and every stop enforced with the SIGTERM, grace
period, SIGKILL dance of the seed ("Graceful termination"), on every process
of the task (process_tree.py). The supervision runs on the main thread and
never waits on the network: the updates go on a thread of their own
(task_updates.py), and the duration is the command's, from its start to its
exit.

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
from typing import Any, Callable

from bot import layout, luci_context, os_platform, process_tree
from bot.errors import TaskError
from bot.task_files import CasAccess, TaskFiles
from bot.task_updates import Clock, Output, Reporter, Send
from bot.task_user import TaskUser
from shared import dimensions as dims_lib
from shared.bot_api import Completion
from shared.cas import Digest
from shared.errors import ValidationError
from shared.manifest import Manifest
from shared.wire import MAX_INT64, WireObject

logger = logging.getLogger(__name__)

#: Told the command's pid (its process group) once it started.
OnStart = Callable[[int], None]

#: Reported for a command that could not start; its error text is in the output.
START_FAILURE_EXIT_CODE = 1


@dataclasses.dataclass(frozen=True)
class Timings:
    output_interval: float = 1.0  # New output is sent at most this often.
    keepalive: float = 10.0  # A silent task still updates this often, or the server thinks the bot died.
    max_packet: int = 250_000  # Output bytes per update, as in the reference.
    grace_period: float = 30.0  # From SIGTERM to SIGKILL, unless the manifest says otherwise.
    drain: float = 5.0  # Output still awaited after the exit, from a descendant that escaped the kill.
    tick: float = 0.1  # How often the process, the timeout and stop requests are checked.
    # Output bytes held for the server at most: past it, the command waits on its writes.
    output_buffer: int = 16 * 1024 * 1024
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
    BOT_DIED = "the bot died"  # Its process is gone: nothing more is reported, the server finds it dead.


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
    was reported, for the caller to report with `bot_task_error`.

    `bot_gone` is set when the bot's process died: the command is stopped and
    nothing more reported. `subreaper`: this process is a child subreaper
    (process_tree.py), so every descendant of it is the task's."""

    def __init__(self, manifest: Manifest, work_dir: Path, send: Send, *, server: str,
                 bot_dimensions: dims_lib.Dimensions, shutdown: threading.Event, timings: Timings = Timings(),
                 clock: Clock = time.monotonic, out_dir: Path | None = None,
                 cache_dir: Path | None = None, context_dir: Path | None = None,
                 on_start: OnStart | None = None, cas: CasAccess | None = None, run_as: str | None = None,
                 bot_gone: threading.Event | None = None, subreaper: bool = False):
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
        self._server = server
        self._shutdown = shutdown
        self._bot_gone = bot_gone or threading.Event()
        self._subreaper = subreaper
        self._timings = timings
        self._clock = clock
        self._name = f"task {manifest.task_id} (bot {manifest.bot_id})"
        self._output = Output(clock, timings.output_buffer)
        self._reporter = Reporter(send, self._output, timings, clock, self._name)
        self._stop: StopReason | None = None  # Why the command is being stopped, once it is.
        self._kill_at: float | None = None  # When SIGTERM turns into SIGKILL; None before SIGTERM.
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
        self._reporter.start()  # Keepalives from now on: fetching the inputs may take minutes.
        try:
            root = self._manifest.cas_input_root
            if root is not None:
                self._files.fetch_inputs(root, self._work_dir)
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
            self._reporter.close()
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
        # The first update precedes the command, so a task cancelled meanwhile
        # never starts; but a server that does not answer it holds nothing up.
        self._reporter.update_now(self._timings.keepalive)
        self._check_bot_and_server()
        if self._stop is not None:
            return self._not_started()
        with luci_context.written(self._context_file, context):
            if self._user:
                self._user.give([self._context_file])
            exit_code, duration = self._execute(cwd, env)
        if self._stop is StopReason.BOT_DIED:
            logger.warning("%s: exit code %d after %.1f s, not reported: the bot died", self._name, exit_code,
                           duration)
            return Result(exit_code, duration, self._stop)
        output_root = None if self._reporter.gone else self._upload_outputs(outputs)
        completion = Completion(exit_code, duration, hard_timeout=self._stop is StopReason.HARD_TIMEOUT,
                                io_timeout=self._stop is StopReason.IO_TIMEOUT, cas_output_root=output_root,
                                performance_stats=self._files.performance_stats(
                                    max(0.0, self._clock() - self._began - duration)))
        reported = self._reporter.end(self._timings.report_patience, completion)
        if reported:
            logger.info("%s: exit code %d after %.1f s, %d bytes of output",
                        self._name, exit_code, duration, self._reporter.sent)
        else:
            logger.error("%s: its completion (exit code %d) was not reported", self._name, exit_code)
        return Result(exit_code, duration, self._stop, reported)

    def _not_started(self) -> Result:
        """A stop came before the command started: only the server's is
        reported, as the cancellation of a command that never ran."""
        assert self._stop is not None
        logger.info("%s: not started: %s", self._name, self._stop.value)
        reported = self._stop is StopReason.SERVER and self._reporter.end(self._timings.report_patience,
                                                                          canceled=True)
        if self._stop is StopReason.SERVER and not reported:
            logger.error("%s: its cancellation was not reported", self._name)
        return Result(None, 0.0, self._stop, reported)

    def _execute(self, cwd: Path, env: dict[str, str]) -> tuple[int, float]:
        """Runs the command to its end; its exit code and its duration (from
        its start to its exit: the output's upload is not the command's)."""
        command = [self._expand(arg) for arg in self._manifest.command]
        started = self._clock()
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
            return START_FAILURE_EXIT_CODE, self._clock() - started
        logger.info("%s: started pid %d: %s", self._name, process.pid, command)
        if self._on_start:
            self._on_start(process.pid)
        self._output.start(process.stdout)
        tree = process_tree.Tree.of_runner(process.pid, self._subreaper)
        try:
            exit_code = self._supervise(process, tree, started)
            duration = self._clock() - started
        finally:
            # Descendants left behind would hold the output pipe open and files
            # in w/; and should the runner itself fail, no command outlives it.
            tree.kill()
        if not self._output.finish(self._timings.drain):
            logger.warning("%s: output still open %.0f s after the exit; ignoring the rest",
                           self._name, self._timings.drain)
        return exit_code, duration

    def _supervise(self, process: subprocess.Popen, tree: process_tree.Tree, started: float) -> int:
        """Waits for the command's exit, stopping it when a timeout, the
        server, the bot or its death says so; never waits on the network."""
        while (exit_code := _wait(process, self._timings.tick)) is None:
            now = self._clock()
            self._check_stops(now, started)
            self._enforce_stop(tree, now)
            tree.reap()
        return exit_code

    def _upload_outputs(self, outputs: list[tuple[str, Path]]) -> Digest | None:
        """The output tree's digest; None when there was nothing to upload, or
        when the upload failed: the exit code must reach the server anyway."""
        try:
            return self._files.upload_outputs(self._out_dir, outputs)
        except Exception:  # Whatever failed, the completion goes without outputs.
            logger.exception("%s: the outputs were not uploaded", self._name)
            return None

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

    def _check_stops(self, now: float, started: float) -> None:
        """Whatever asks the command started at `started` to stop, the first
        one named: the bot, its death, the server, the timeouts."""
        if self._shutdown.is_set():
            self._request_stop(StopReason.SHUTDOWN)
        self._check_bot_and_server()
        if now - started >= self._manifest.hard_timeout:
            self._request_stop(StopReason.HARD_TIMEOUT)
        io_timeout = self._manifest.io_timeout
        if io_timeout and now - self._output.last_output(started) >= io_timeout:
            self._request_stop(StopReason.IO_TIMEOUT, f"silent for {io_timeout:g} s")

    def _check_bot_and_server(self) -> None:
        """The bot's death, and what the server last said (read from the
        reporter, never waited on); raises the reporter's own failure."""
        self._reporter.check()
        if self._bot_gone.is_set():
            self._request_stop(StopReason.BOT_DIED)
        if self._reporter.gone is not None:
            self._request_stop(StopReason.RUN_GONE, self._reporter.gone)
        if self._reporter.stop_reason is not None:
            self._request_stop(StopReason.SERVER, self._reporter.stop_reason)

    def _request_stop(self, reason: StopReason, detail: str = "") -> None:
        if self._stop is None:
            logger.warning("%s: stopping: %s%s", self._name, reason.value, f" ({detail})" if detail else "")
            self._stop = reason

    def _enforce_stop(self, tree: process_tree.Tree, now: float) -> None:
        if self._stop is None:
            return
        if self._kill_at is None:
            grace = self._manifest.grace_period
            grace = self._timings.grace_period if grace is None else grace
            logger.info("%s: SIGTERM, SIGKILL in %.1f s if still running", self._name, grace)
            tree.terminate()
            self._kill_at = now + grace
        elif now >= self._kill_at:
            logger.warning("%s: still running after the grace period: SIGKILL", self._name)
            tree.kill()
            self._kill_at = math.inf  # Nothing left to escalate to.


def _wait(process: subprocess.Popen, timeout: float) -> int | None:
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        return None
