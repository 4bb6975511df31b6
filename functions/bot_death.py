"""A running task whose bot went silent, or failed it: BOT_DIED, a retry, or
CLIENT_ERROR.

The claim arms one `timer_bot_died` at the end of the ping tolerance. When it
fires, a task that heartbeat since re-arms it from its last heartbeat (so no
heartbeat ever creates a Cloud Task; timers are named by their due second, so
however many deliveries come early, one timer waits per second); one that did
not is declared dead. An infrastructure failure is retried once, on another
bot, while the slice has time left, when the task is idempotent or its command
never started (no output and no heartbeat written since the claim; a command
killed silently in its first 10 s counts as not started). Nothing else is
retried.

No transaction: each decision reads the result, then commits a batch guarded
by its update time; a lost race re-reads and decides again (store.settle), so
concurrent deliveries of one timer do not wait on each other's locks.
"""

import datetime
from typing import Any

from functions import dedup, runs, slices, transitions
from functions.bot_registry import BotRequest
from functions.context import Context
from functions.errors import NotFound
from functions.models import TaskResult
from functions.store import settle
from shared import task_id as task_ids
from shared.bot_api import TaskError, TaskErrorReply
from shared.cas import MAX_BATCH
from shared.states import State
from shared.task_request import TaskRequest

BOT_DIED = "timer_bot_died"
MAX_TRIES = 2
#: A timer delivered this long after its second could not be delivered or
#: served before: the service was unreachable, and so were the heartbeats.
LATE_DELIVERY = datetime.timedelta(seconds=60)
#: After such an outage, the bots have this long to report again...
OUTAGE_GRACE = datetime.timedelta(seconds=120)
#: ...unless their silence outlasted this: then it is theirs.
MAX_OUTAGE = datetime.timedelta(hours=1)


def arm(ctx: Context, task_id: str, try_number: int, due: datetime.datetime, delivered: int | None = None) -> int:
    """The try's timer at `due`'s second (functions.timers.due_second); the
    second it fires at."""
    return ctx.timers.arm(BOT_DIED, f"{task_id}:{try_number}", due, {"task_id": task_id, "try_number": try_number},
                          delivered)


def check(ctx: Context, task_id: str, try_number: int, now: datetime.datetime,
          delivered: int | None = None) -> dict[str, Any]:
    """`timer_bot_died` (`delivered`: the second of the timer delivered):
    harmless when delivered twice, early, late, or after the task moved on."""

    def attempt() -> TaskResult | dict[str, Any]:
        found = ctx.store.get_task_seen(task_id)
        result = found[0] if found else None
        if found is None or result.state != State.RUNNING or result.try_number != try_number:
            return {"done": "the try is no longer running"}
        due = silence_due(result)
        if now < due:
            return _again(ctx, task_id, try_number, due, delivered)
        if _after_outage(delivered, due, now):
            return _again(ctx, task_id, try_number, now + OUTAGE_GRACE, delivered)
        return _end(ctx, found, State.BOT_DIED, "the bot stopped reporting", None, now)

    outcome = settle(task_id, attempt)
    if isinstance(outcome, dict):
        return outcome
    dedup.finished(ctx, outcome, now)
    return {"done": outcome.state.value}


def _again(ctx: Context, task_id: str, try_number: int, due: datetime.datetime,
           delivered: int | None) -> dict[str, Any]:
    second = arm(ctx, task_id, try_number, due, delivered)
    return {"done": "alive", "next": datetime.datetime.fromtimestamp(second, datetime.UTC).isoformat()}


def silence_due(result: TaskResult) -> datetime.datetime:
    """When the running try is dead unless its bot reports."""
    return result.modified_ts + datetime.timedelta(seconds=result.bot_ping_tolerance_secs)


def _after_outage(delivered: int | None, due: datetime.datetime, now: datetime.datetime) -> bool:
    """The check comes late (a timer delivered `LATE_DELIVERY` after its
    second `delivered`, or the sweep doing what a timer due then should have
    done; none: a call that does not say when it was due): the service
    may have been unreachable meanwhile, and the bot's heartbeats with it.
    Its run then gets `OUTAGE_GRACE` to report before it is declared dead,
    so a bot still running is not raced by a retry; a silence longer than
    `MAX_OUTAGE` is the bot's own."""
    if delivered is None:
        return False
    late = now - datetime.datetime.fromtimestamp(delivered, datetime.UTC) > LATE_DELIVERY
    return late and now - due < MAX_OUTAGE


def task_error(ctx: Context, bot: BotRequest, message: TaskError, now: datetime.datetime) -> TaskErrorReply:
    """`bot_task_error`: the bot could not run the task. Missing inputs are the
    client's fault (CLIENT_ERROR); anything else is the bot's (BOT_DIED). The
    first MAX_BATCH missing digests are kept: a result is one document of
    bounded size."""
    task_id = task_ids.summary_id(message.run_id)
    missing = None if message.missing_cas is None else [d.to_wire() for d in message.missing_cas[:MAX_BATCH]]
    state = State.CLIENT_ERROR if missing else State.BOT_DIED

    def attempt() -> TaskResult:
        found = ctx.store.get_task_seen(task_id)
        if found is None:
            raise NotFound(f"no task {task_id}")
        result = found[0]
        runs.check_held(result, message.run_id, bot.bot_id)
        if result.state != State.RUNNING:
            return result
        return _end(ctx, found, state, message.message[:10_000], missing, now)

    ended = settle(task_id, attempt)
    dedup.finished(ctx, ended, now)
    return TaskErrorReply(ended.state.value)


def _end(ctx: Context, found: tuple[TaskResult, TaskRequest, Any], state: State, message: str,
         missing: list[Any] | None, now: datetime.datetime) -> TaskResult:
    """Ends the running try read in `found` in `state`, or retries it (BOT_DIED
    only): one batch guarded by the result's update time (LostRace when it
    moved meanwhile)."""
    result, request, seen = found
    # Output proves the command started (its first heartbeat may not be written yet).
    had_output = bool(result.run_id and ctx.store.has_output(result.run_id))
    batch = ctx.store.batch()
    if state == State.BOT_DIED and _retryable(result, request, had_output, now):
        changes = slices.enqueue(ctx, batch, result, request, result.current_task_slice, now,
                                 try_number=result.try_number + 1, excluded_bot=result.bot_id,
                                 expiration_ts=result.expiration_ts)
    else:
        changes = transitions.fail(result, state, message, missing, now)
    batch.update_result(result.task_id, changes, seen)
    batch.commit()
    return result


def _retryable(result: TaskResult, request: TaskRequest, had_output: bool, now: datetime.datetime) -> bool:
    never_reported = result.modified_ts == result.started_ts and not had_output
    idempotent = request.task_slices[result.current_task_slice].properties.idempotent
    time_left = result.expiration_ts is not None and result.expiration_ts > now
    return result.try_number < MAX_TRIES and time_left and (idempotent or never_reported)
