"""The task runner process's main: `run_task --input FILE [--status-fd N]
[--lifeline-fd N]`, started by the bot for each task
(bot/runner_supervisor.py). It reads its input (bot/runner_protocol.py), runs
the task (bot/task_runner.py), reports it to the server itself with the run's
token (never the bot's: it has none), and tells the bot what became of it on
the status pipe. SIGTERM stops the command with the grace dance.

On Linux it is the child subreaper of the task's processes
(bot/process_tree.py), so that none of them outlives the task. The end of
file on the lifeline (a pipe whose write end only the bot holds) is the bot's
death, however it died: the runner stops the command as it stops it for a
timeout, reports nothing more (the server finds the bot dead), and exits.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
from pathlib import Path
from typing import Sequence

from bot import layout as layout_lib
from bot import os_platform, process_tree
from bot.cas_transport import SignedUrlTransport
from bot.errors import TaskError
from bot.remote import Remote
from bot.runner_protocol import TASK_ENDED, TASK_ERROR, RunnerInput, Status
from bot.task_files import CasAccess
from bot.task_runner import TaskRunner
from shared.errors import ValidationError

logger = logging.getLogger(__name__)


class _StatusPipe:
    def __init__(self, fd: int | None):
        self._pipe = open(fd, "w", encoding="utf-8", buffering=1) if fd is not None else None

    def send(self, status: Status) -> None:
        if self._pipe is None:
            return
        try:
            self._pipe.write(json.dumps(status.to_wire()) + "\n")
            self._pipe.flush()
        except OSError as e:  # The bot died: no one is left to tell.
            logger.warning("cannot tell the bot %s: %s", status.to_wire(), e)


def _watch(lifeline: int | None, bot_gone: threading.Event) -> None:
    """Sets `bot_gone` when the lifeline reads its end of file."""

    def watch(fd: int) -> None:
        try:
            os_platform.wait_for_end_of_file(fd)
        except OSError as e:  # Not handed down (a wrapper of on_before_task's closed it): no watch.
            logger.warning("no lifeline to the bot (fd %d): %s", fd, e)
            return
        logger.error("the bot's process is gone: stopping the task")
        bot_gone.set()

    if lifeline is not None:
        threading.Thread(target=watch, args=(lifeline,), name="lifeline", daemon=True).start()


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="run_task", description="Internal: runs one task for the bot.")
    parser.add_argument("--input", required=True, type=Path, help="the runner's input (JSON), from the bot")
    parser.add_argument("--status-fd", type=int, help="where to write what becomes of the task")
    parser.add_argument("--lifeline-fd", type=int, help="a pipe whose end of file means the bot died")
    args = parser.parse_args(argv)
    status = _StatusPipe(args.status_fd)
    try:
        given = RunnerInput.read(args.input)
        layout = layout_lib.Layout(given.bot_dir)
        layout_lib.log_to(layout.runner_log)
    except (OSError, ValueError, ValidationError) as e:
        logger.exception("cannot read the task runner's input %s", args.input)
        status.send(Status(error=f"the task runner's input {args.input} is unusable: {e!r}"))
        return TASK_ERROR
    manifest = given.manifest
    shutdown = threading.Event()

    def stop(signum: int) -> None:
        logger.info("task %s: signal %d: stopping the command", manifest.task_id, signum)
        shutdown.set()

    os_platform.on_stop_signals(stop)
    os_platform.on_stack_dump_signal(logger)
    bot_gone = threading.Event()
    _watch(args.lifeline_fd, bot_gone)
    subreaper = process_tree.become_subreaper()
    server = manifest.host or given.server
    api = Remote(server, given.run_token, session=given.attributes.session)
    transport = SignedUrlTransport()
    runner = TaskRunner(
        manifest, layout.work,
        send=lambda update: api.task_update(given.attributes, manifest.task_id, update),
        server=server, bot_dimensions=given.attributes.dimensions, shutdown=shutdown, timings=given.timings,
        out_dir=layout.out, cache_dir=layout.named_caches, context_dir=layout.context,
        on_start=lambda pid: status.send(Status(started=pid)),
        cas=CasAccess(service=api, transport=transport, cache_dir=layout.cas_cache, limits=given.cas_limits),
        run_as=given.run_as, bot_gone=bot_gone, subreaper=subreaper,
    )
    try:
        result = runner.run()
    except TaskError as e:
        status.send(Status(error=e.message, missing_cas=None if e.missing_cas is None else tuple(e.missing_cas)))
        return TASK_ERROR
    except Exception as e:  # A bug of the runner's must fail the task, not go unreported.
        logger.exception("task %s: the task runner failed", manifest.task_id)
        status.send(Status(error=f"the task runner failed: {e!r}"))
        return TASK_ERROR
    finally:
        transport.close()
        api.close()
    status.send(Status(result=result))
    return TASK_ENDED
