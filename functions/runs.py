"""What a bot reports about the run it holds: stdout, heartbeats, the end."""

import datetime
import logging

from functions import dedup, stdout, transitions
from functions.bot_registry import BotRequest, Registry
from functions.context import Context
from functions.errors import Conflict, PayloadTooLarge
from functions.models import TaskResult
from functions.store import TaskBatch, Writes
from shared import task_id as task_ids
from shared.bot_api import Completion, TaskUpdate, TaskUpdateReply, Update
from shared.states import State
from shared.task_properties import CasReference

#: The result of a running task is rewritten at most this often by heartbeats.
HEARTBEAT_SECS = 10

logger = logging.getLogger(__name__)


def update(ctx: Context, registry: Registry, bot: BotRequest, message: TaskUpdate,
           now: datetime.datetime) -> TaskUpdateReply:
    report = message.update
    if report.offset + len(report.output) > stdout.MAX_SIZE:
        raise PayloadTooLarge(f"output: stdout is capped at {stdout.MAX_SIZE} bytes")

    def change(result: TaskResult, _batch: TaskBatch) -> Writes:
        check_held(result, message.run_id, bot.bot_id)
        if result.state.is_final:  # A final result never changes; its stdout is only completed.
            if report.ends and not _same_end(result, report.completion):
                raise Conflict(f"task {result.task_id} already ended {result.state.value}")
            return _late_output(result, report)
        if report.ends:
            _end(result, report, now)
        elif (now - result.modified_ts).total_seconds() < HEARTBEAT_SECS:
            return Writes.OUTPUT
        else:
            result.modified_ts = now  # A heartbeat.
        return Writes.OUTPUT | Writes.RESULT

    try:
        result = ctx.store.change_task(task_ids.summary_id(message.run_id), change,
                                    output=(message.run_id, report.offset, report.output))
    except stdout.Refused as e:
        logger.warning("run %s of bot %s: %s", message.run_id, bot.bot_id, e)
        raise
    if report.ends:
        dedup.finished(ctx, result, now)
    must_stop = (result.state.is_final and not report.ends) or result.killing and not result.state.is_final
    stop_reason = (State.KILLED.value if result.killing else result.state.value) if must_stop else None
    return TaskUpdateReply(must_stop, stop_reason, registry.check_in(bot, result.task_id, now))


def check_held(result: TaskResult, run_id: str, bot_id: str) -> None:
    """A bot reports only on the run it holds: another run of the task (a
    retry), or the same run held by another bot, is a conflict (409)."""
    if result.run_id != run_id or result.bot_id != bot_id:
        raise Conflict(f"run {run_id} is not held by bot {bot_id}")


def _end(result: TaskResult, report: Update, now: datetime.datetime) -> None:
    """The run ends on its last packet, which says how long its stdout is."""
    if report.completion:
        transitions.complete(result, report.completion, now)
    else:
        transitions.end_unstarted(result, now)
    result.stdout_length = report.offset + len(report.output)


def _late_output(result: TaskResult, report: Update) -> Writes:
    """A packet sent before the run's end may arrive after it: its bytes are
    kept up to the length the end recorded. Past it, or when the server ended
    the run (no length), the run is over (`must_stop`) and nothing is kept."""
    if not report.output or result.stdout_length is None:
        return Writes.NOTHING
    end = report.offset + len(report.output)
    if end > result.stdout_length:
        raise stdout.Refused(f"output: the run ended with {result.stdout_length} bytes of stdout; "
                             f"this packet ends at {end}")
    return Writes.OUTPUT


def _same_end(result: TaskResult, completion: Completion | None) -> bool:
    """A resent end (the bot did not get the answer) is no conflict."""
    if completion is None:
        return result.state in (State.CANCELED, State.BOT_DIED)
    root = completion.cas_output_root
    return (result.exit_code, result.duration, result.cas_output_root) == (
        completion.exit_code, completion.duration, CasReference(root).to_wire() if root else None)
