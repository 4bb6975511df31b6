"""The task runner process (seed: "run", "Time out handling"): the bot runs
each task in a child `run_task` process, so that a runner that hangs or
crashes costs one task, never the bot.

The bot writes the runner's input to `w/task_runner_in.json` (mode 0600: the
manifest may carry secrets; the runner deletes it with the rest of w/ before
the command starts) and reads what becomes of the task from a pipe, one JSON
object a line:

    {"started": PID}                           the command runs, in process group PID
    {"error": MESSAGE, "missing_cas": [...]}   the bot could not run the task
    {"result": {"exit_code", "duration", "stop", "reported"}}

The bot keeps a last-ditch deadline of its own (hard timeout + grace + the
runner's own allowances + a margin): past it, it kills the command's group and
the runner, and fails the task with `bot_task_error`, as it does when the
runner dies. SIGTERM to the bot is passed on: the runner stops the command
with the grace dance and reports.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from bot import layout as layout_lib
from bot import os_platform
from bot.cas_cache import Limits
from bot.cas_transport import SignedUrlTransport
from bot.errors import TaskError
from bot.remote import Attributes, Manifest, Remote
from bot.task_files import CasAccess
from bot.task_runner import Clock, TaskRunner, Timings

logger = logging.getLogger(__name__)

INPUT_NAME = "task_runner_in.json"
#: The runner's exit codes: the task ended (reported or not, see "result");
#: the bot could not run it (see "error"). Anything else is a runner that died.
TASK_ENDED, TASK_ERROR = 0, 10
#: How often the bot checks its runner, the deadline and the shutdown.
TICK_SECS = 0.05


@dataclasses.dataclass
class RunnerReport:
    """What the bot learnt of one run of the runner."""

    command_pid: int | None = None
    error: str | None = None
    missing_cas: Sequence[Any] | None = None
    result: dict[str, Any] | None = None
    returncode: int | None = None
    #: Set when the runner failed the bot (died, hung past the deadline, could
    #: not be started): the task must be failed with this message.
    failure: str | None = None

    @property
    def succeeded(self) -> bool:
        """The task ran end to end and its end reached the server."""
        return self.failure is None and self.error is None and bool(self.result and self.result.get("reported"))


def run(spec: Mapping[str, Any], *, layout: layout_lib.Layout, python_args: Sequence[str], cwd: Path | None,
        env: Mapping[str, str], shutdown: threading.Event, deadline_secs: float,
        clock: Clock = time.monotonic, tick: float = TICK_SECS,
        popen: Callable[..., subprocess.Popen] = subprocess.Popen) -> RunnerReport:
    """Runs the runner on `spec` (its input) to its end; never raises."""
    report = RunnerReport()
    name = f"task {spec['manifest'].get('task_id')}"
    try:
        for path in (layout.work, layout.out):
            layout_lib.remove(path)
        layout.work.mkdir(parents=True)
        input_path = layout.work / INPUT_NAME
        fd = os.open(input_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(spec, f)
    except OSError as e:
        report.failure = f"cannot make the work directory {layout.work}: {e}"
        return report
    try:
        layout.logs.mkdir(parents=True, exist_ok=True)
        layout_lib.roll(layout.runner_stdout)
        stdout = open(layout.runner_stdout, "ab")
    except OSError as e:
        report.failure = f"cannot open {layout.runner_stdout}: {e}"
        return report
    read_fd, write_fd = os_platform.status_pipe()
    args = [sys.executable, *python_args, "run_task", "--manifest", str(input_path), "--status-fd", str(write_fd)]
    try:
        with stdout:
            process = popen(args, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=stdout,
                            stderr=subprocess.STDOUT, **os_platform.pass_fds(write_fd))
    except OSError as e:
        os.close(read_fd)
        report.failure = f"cannot start the task runner: {e}"
        return report
    finally:
        os.close(write_fd)
    logger.info("%s: task runner pid %d", name, process.pid)
    reader = threading.Thread(target=_read_status, args=(read_fd, report), name="runner-status", daemon=True)
    reader.start()
    _wait(process, report, name, shutdown, clock() + deadline_secs, deadline_secs, clock, tick)
    reader.join(5.0)
    report.returncode = process.returncode
    if report.failure is None and report.error is None and report.result is None:
        report.failure = (f"the task runner died ({os_platform.describe_exit(process.returncode)}); "
                          f"see {layout.runner_log} and {layout.runner_stdout}")
    for path in (layout.work, layout.out):  # The runner's own wipe may not have happened.
        try:
            layout_lib.remove(path)
        except OSError as e:
            logger.error("%s: cannot delete %s: %s", name, path, e)
    return report


def _wait(process: subprocess.Popen, report: RunnerReport, name: str, shutdown: threading.Event,
          deadline: float, deadline_secs: float, clock: Clock, tick: float) -> None:
    forwarded = False
    while True:
        try:
            process.wait(tick)
            return
        except subprocess.TimeoutExpired:
            pass
        if shutdown.is_set() and not forwarded:
            logger.info("%s: passing the shutdown on to the task runner", name)
            os_platform.terminate(process.pid)
            forwarded = True
        if clock() >= deadline:
            logger.error("%s: the task runner is still running after %.0f s: killing it and the command",
                         name, deadline_secs)
            if report.command_pid is not None:
                os_platform.kill_group(report.command_pid)
            os_platform.kill(process.pid)
            process.wait()
            report.failure = f"the task runner did not end within the bot's last-ditch timeout of {deadline_secs:.0f} s"
            return


def _read_status(read_fd: int, report: RunnerReport) -> None:
    with open(read_fd, "rb") as pipe:
        for line in pipe:
            try:
                message = json.loads(line)
            except ValueError:
                logger.error("unreadable status from the task runner: %r", line[:200])
                continue
            if "started" in message:
                report.command_pid = int(message["started"])
            if "error" in message:
                report.error = str(message["error"])
                report.missing_cas = message.get("missing_cas")
            if "result" in message:
                report.result = message["result"]


# The child: `run_task --manifest F [--status-fd N]`.

class _Status:
    def __init__(self, fd: int | None):
        self._pipe = open(fd, "w", encoding="utf-8", buffering=1) if fd is not None else None

    def send(self, **message: Any) -> None:
        if self._pipe is not None:
            self._pipe.write(json.dumps(message) + "\n")
            self._pipe.flush()


def child_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="run_task", description="Internal: runs one task for the bot.")
    parser.add_argument("--manifest", required=True, type=Path, help="the runner's input (JSON), from the bot")
    parser.add_argument("--status-fd", type=int, help="where to write what becomes of the task")
    args = parser.parse_args(argv)
    status = _Status(args.status_fd)
    try:
        spec = json.loads(args.manifest.read_text(encoding="utf-8"))
        if spec.get("log"):
            layout_lib.log_to(Path(spec["log"]))
        manifest = Manifest.from_json(spec["manifest"])
        token = os.environ.get("SWARMING_TOKEN")
        if not token:
            raise ValueError("SWARMING_TOKEN is not set")
        attributes = Attributes(**spec["attributes"])
        timings = Timings(**spec.get("timings", {}))
        cas_cache = spec["cas_cache"]
        cache_dir, limits = Path(cas_cache["dir"]), Limits(**cas_cache["limits"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        logger.exception("cannot read the task runner's input %s", args.manifest)
        status.send(error=f"the task runner's input {args.manifest} is unusable: {e!r}")
        return TASK_ERROR
    shutdown = threading.Event()

    def stop(signum: int) -> None:
        logger.info("task %s: signal %d: stopping the command", manifest.task_id, signum)
        shutdown.set()

    os_platform.on_stop_signals(stop)
    os_platform.on_stack_dump_signal(logger)
    server = manifest.host or spec["server"]
    api = Remote(server, token)
    api.bot_session = spec.get("session")
    transport = SignedUrlTransport()
    runner = TaskRunner(
        manifest, Path(spec["work_dir"]),
        send=lambda update: api.task_update(attributes, manifest.task_id, update),
        server=server, shutdown=shutdown, timings=timings, out_dir=Path(spec["out_dir"]),
        cache_dir=Path(spec["cache_dir"]) if spec.get("cache_dir") else None,
        on_start=lambda pid: status.send(started=pid),
        cas=CasAccess(service=api, transport=transport, cache_dir=cache_dir, limits=limits),
    )
    try:
        result = runner.run()
    except TaskError as e:
        status.send(error=e.message, missing_cas=e.missing_cas)
        return TASK_ERROR
    except Exception as e:  # A bug of the runner's must fail the task, not go unreported.
        logger.exception("task %s: the task runner failed", manifest.task_id)
        status.send(error=f"the task runner failed: {e!r}")
        return TASK_ERROR
    finally:
        transport.close()
        api.close()
    status.send(result={"exit_code": result.exit_code, "duration": result.duration,
                        "stop": result.stop.value if result.stop else None, "reported": result.reported})
    return TASK_ENDED
