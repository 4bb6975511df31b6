"""A running task whose bot went silent, or failed it: BOT_DIED, a retry, or
CLIENT_ERROR.

The claim arms one `timer_bot_died` at the end of the ping tolerance. When it
fires, a task that heartbeat since re-arms it from its last heartbeat (so no
heartbeat ever creates a Cloud Task); one that did not is declared dead. An
infrastructure failure is retried once, on another bot, while the slice has
time left, when the task is idempotent or its command never started (no
output and no heartbeat written since the claim; a command killed silently in
its first 10 s counts as not started). Nothing else is retried.
"""

import datetime
from typing import Any

from functions import dedup, runs, slices, transitions
from functions.bot_registry import BotRequest
from functions.context import Context
from functions.errors import NotFound
from functions.models import TaskResult
from functions.store import TaskBatch, Writes
from shared import task_id as task_ids
from shared.bot_api import TaskError, TaskErrorReply
from shared.cas import MAX_BATCH
from shared.states import State

BOT_DIED = "timer_bot_died"
MAX_TRIES = 2


def arm(ctx: Context, task_id: str, try_number: int, due: datetime.datetime,
        early: datetime.datetime | None = None) -> None:
    """`early`: the time of a delivery that came before `due`, whose own name
    the timer cannot reuse (it still exists, then is a tombstone)."""
    key = f"{task_id}:{try_number}:{due.isoformat()}" + (f":early:{early.isoformat()}" if early else "")
    ctx.timers.schedule(BOT_DIED, key, due, {"task_id": task_id, "try_number": try_number})


def check(ctx: Context, task_id: str, try_number: int, now: datetime.datetime) -> dict[str, Any]:
    """`timer_bot_died`: harmless when delivered twice, late, or after the task moved on."""
    result = ctx.store.get_result(task_id)
    if result is None or result.state != State.RUNNING or result.try_number != try_number:
        return {"done": "the try is no longer running"}
    due = result.modified_ts + datetime.timedelta(seconds=result.bot_ping_tolerance_secs)
    if now < due:
        arm(ctx, task_id, try_number, due, early=now)
        return {"done": "alive", "next": due.isoformat()}
    ended = _fail(ctx, task_id, try_number, State.BOT_DIED, "the bot stopped reporting", None, now)
    return {"done": ended.state.value}


def task_error(ctx: Context, bot: BotRequest, message: TaskError, now: datetime.datetime) -> TaskErrorReply:
    """`bot_task_error`: the bot could not run the task. Missing inputs are the
    client's fault (CLIENT_ERROR); anything else is the bot's (BOT_DIED). The
    first MAX_BATCH missing digests are kept: a result is one document of
    bounded size."""
    task_id = task_ids.summary_id(message.run_id)
    current = ctx.store.get_result(task_id)
    if current is None:
        raise NotFound(f"no task {task_id}")
    runs.check_held(current, message.run_id, bot.bot_id)
    missing = None if message.missing_cas is None else [d.to_wire() for d in message.missing_cas[:MAX_BATCH]]
    state = State.CLIENT_ERROR if missing else State.BOT_DIED
    ended = _fail(ctx, task_id, current.try_number, state, message.message[:10_000], missing, now)
    return TaskErrorReply(ended.state.value)


def _fail(ctx: Context, task_id: str, try_number: int, state: State, message: str,
          missing: list[Any] | None, now: datetime.datetime) -> TaskResult:
    found = ctx.store.get_task(task_id)
    assert found is not None
    current, request = found
    # Output proves the command started (its first heartbeat may not be written yet).
    had_output = bool(current.run_id and ctx.store.read_output(current.run_id, 0, 1))

    def change(result: TaskResult, batch: TaskBatch) -> Writes:
        if result.state != State.RUNNING or result.try_number != try_number:
            return Writes.NOTHING
        if state == State.BOT_DIED and _retryable(result, request, had_output, now):
            slices.enqueue(ctx, batch, result, request, result.current_task_slice, now,
                           try_number=try_number + 1, excluded_bot=result.bot_id,
                           expiration_ts=result.expiration_ts)
        else:
            transitions.fail(result, state, message, missing, now)
        return Writes.RESULT

    ended = ctx.store.transact(task_id, change)
    dedup.finished(ctx, ended, now)
    return ended


def _retryable(result: TaskResult, request: Any, had_output: bool, now: datetime.datetime) -> bool:
    never_reported = result.modified_ts == result.started_ts and not had_output
    idempotent = request.task_slices[result.current_task_slice].properties.idempotent
    time_left = result.expiration_ts is not None and result.expiration_ts > now
    return result.try_number < MAX_TRIES and time_left and (idempotent or never_reported)
