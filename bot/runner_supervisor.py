"""Runs in the bot's process: each task in a task runner process of its own
(`run_task`, bot/runner_main.py; seed: "run", "Time out handling"), so that
a runner that hangs or crashes costs one task, never the bot. The runner is
the bot's child, or forked by the bot's runner server (bot/runner_server.py,
through `popen`): either way the bot knows it by its pid.

The bot writes the runner's input and reads what becomes of the task from the
status pipe (bot/runner_protocol.py). It keeps a last-ditch deadline of its
own (hard timeout + grace + the runner's own allowances + a margin): past it,
it kills every descendant of the runner (bot/process_tree.py), then the
runner, and fails the task with `bot_task_error`, as it does when the runner
dies (killing then what is left of the command: its group, and what the
command's descendants lead to; the orphans the runner had adopted went to
init). SIGTERM to the bot is passed on: the runner stops the command with the
grace dance and reports.

The runner also holds the read end of a lifeline, whose write end only the
bot holds while the runner runs: should the bot die, even by SIGKILL, the
runner reads its end of file and stops the task (bot/runner_main.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

from bot import layout as layout_lib
from bot import os_platform, process_tree
from bot.runner_protocol import INPUT_NAME, RunnerInput, Status
from bot.task_runner import Clock, Result
from shared.cas import Digest
from shared.errors import ValidationError

logger = logging.getLogger(__name__)

#: How often the bot checks its runner, the deadline and the shutdown.
TICK_SECS = 0.05


@dataclasses.dataclass
class RunnerReport:
    """What the bot learnt of one run of the runner."""

    command_pid: int | None = None
    error: str | None = None
    missing_cas: Sequence[Digest] | None = None
    result: Result | None = None
    returncode: int | None = None
    #: Set when the runner failed the bot (died, hung past the deadline, could
    #: not be started): the task must be failed with this message.
    failure: str | None = None

    @property
    def succeeded(self) -> bool:
        """The task ran end to end and its end reached the server."""
        return self.failure is None and self.error is None and self.result is not None and self.result.reported


def run(given: RunnerInput, *, python_args: Sequence[str], cwd: Path | None, env: Mapping[str, str],
        shutdown: threading.Event, deadline_secs: float, clock: Clock = time.monotonic, tick: float = TICK_SECS,
        popen: Callable[..., subprocess.Popen] = subprocess.Popen) -> RunnerReport:
    """Runs the runner on `given` to its end; never raises."""
    report = RunnerReport()
    layout = layout_lib.Layout(given.bot_dir)
    name = f"task {given.manifest.task_id}"
    try:
        for path in layout.task_dirs:
            layout_lib.remove(path)
        layout.work.mkdir(parents=True)
        input_path = layout.work / INPUT_NAME
        given.write(input_path)
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
    read_fd, write_fd = os_platform.child_pipe()
    lifeline, held = os_platform.child_pipe()
    args = [sys.executable, *python_args, "run_task", "--input", str(input_path), "--status-fd", str(write_fd),
            "--lifeline-fd", str(lifeline)]
    try:
        with stdout:
            process = popen(args, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=stdout,
                            stderr=subprocess.STDOUT, **os_platform.pass_fds(write_fd, lifeline))
    except OSError as e:
        os.close(read_fd)
        os.close(held)
        report.failure = f"cannot start the task runner: {e}"
        return report
    finally:
        os.close(write_fd)
        os.close(lifeline)
    logger.info("%s: task runner pid %d", name, process.pid)
    reader = threading.Thread(target=_read_status, args=(read_fd, report), name="runner-status", daemon=True)
    reader.start()
    try:
        _wait(process, report, name, shutdown, clock() + deadline_secs, deadline_secs, clock, tick)
    finally:
        os.close(held)  # Held while the runner runs: its end of file would be the bot's death.
    reader.join(5.0)
    report.returncode = process.returncode
    if report.failure is None and report.error is None and report.result is None:
        report.failure = (f"the task runner died ({os_platform.describe_exit(process.returncode)}); "
                          f"see {layout.runner_log} and {layout.runner_stdout}")
        if report.command_pid is not None:  # Its command must not outlive it.
            process_tree.Tree(report.command_pid, report.command_pid).kill()
    for path in layout.task_dirs:  # The runner's own wipe may not have happened.
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
            if report.command_pid is not None:  # All of the task is the runner's descendants.
                process_tree.Tree(report.command_pid, process.pid).kill()
            os_platform.kill(process.pid)
            process.wait()
            report.failure = f"the task runner did not end within the bot's last-ditch timeout of {deadline_secs:.0f} s"
            return


def _read_status(read_fd: int, report: RunnerReport) -> None:
    with open(read_fd, "rb") as pipe:
        for line in pipe:
            try:
                status = Status.from_wire(json.loads(line))
            except (ValueError, ValidationError) as e:
                logger.error("unreadable status from the task runner (%s): %r", e, line[:200])
                continue
            if status.started is not None:
                report.command_pid = status.started
            if status.error is not None:
                report.error = status.error
                report.missing_cas = status.missing_cas
            if status.result is not None:
                report.result = status.result
