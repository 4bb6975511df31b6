"""The task state machine: the one door every change of a task's state goes
through (DESIGN.md §5). `MOVES` says which moves exist, from which states to
which; each function below is one of them and says what it sets. A move from
a state the table does not list, or to one it does not, raises
IllegalTransition: a bug to fix, never a silent write.

    PENDING ──claim──> RUNNING ──complete──> COMPLETED | TIMED_OUT | KILLED
      │ ↺ queue (next slice,  │ ──end_unstarted──> CANCELED | BOT_DIED
      │   waiter released)    │ ──fail──> BOT_DIED | CLIENT_ERROR
      │ ↺ wait_on             │ ↺ kill (told to stop)
      │                       └──queue (a retry)──> PENDING
      ├──take_success──> COMPLETED (deduplicated)
      └──abandon──> EXPIRED | CANCELED | NO_RESOURCE

A final state never changes. Each function changes the TaskResult in place
and returns the document fields it set, for a batch's `update_result`; a
`Store.change_task` writes the whole result instead. A move to a final state of a
task whose end is notified also returns `notify`, which tells the store to
arm the notification before it commits (functions.notifications). A move
that ends a run adds the run's cost to `costs_usd`: its bot's cost an hour
(as it said at its claim) times how long the bot held the task.
"""

import dataclasses
import datetime
import math
from typing import Any

from functions.models import TaskResult
from shared.bot_api import Completion
from shared.errors import SwarmingError
from shared.states import State
from shared.task_properties import CasReference

_P, _R = State.PENDING, State.RUNNING
#: Each move: the states it starts from, and those it may end in.
MOVES: dict[str, tuple[frozenset[State], frozenset[State]]] = {
    "queue": (frozenset({_P, _R}), frozenset({_P})),
    "wait_on": (frozenset({_P}), frozenset({_P})),
    "claim": (frozenset({_P}), frozenset({_R})),
    "kill": (frozenset({_R}), frozenset({_R})),
    "complete": (frozenset({_R}), frozenset({State.COMPLETED, State.TIMED_OUT, State.KILLED})),
    "end_unstarted": (frozenset({_R}), frozenset({State.CANCELED, State.BOT_DIED})),
    "fail": (frozenset({_R}), frozenset({State.BOT_DIED, State.CLIENT_ERROR})),
    "take_success": (frozenset({_P}), frozenset({State.COMPLETED})),
    "abandon": (frozenset({_P}), frozenset({State.EXPIRED, State.CANCELED, State.NO_RESOURCE})),
}
_FIELDS = frozenset(f.name for f in dataclasses.fields(TaskResult))
#: A bot's cost an hour beyond this is not believed (no cost is counted).
MAX_COST_USD_HOUR = 10_000

#: The document fields a move sets, by name.
Changes = dict[str, Any]


class IllegalTransition(SwarmingError):
    """A move the state machine does not have: the caller's bug."""


def _move(result: TaskResult, move: str, state: State, now: datetime.datetime, **fields: Any) -> Changes:
    sources, targets = MOVES[move]
    if result.state not in sources or state not in targets:
        raise IllegalTransition(f"task {result.task_id}: {move} cannot take {result.state.value} to {state.value}")
    unknown = set(fields) - _FIELDS
    if unknown:
        raise IllegalTransition(f"a task result has no field {sorted(unknown)[0]!r}")
    if result.state == _R and state != _R and (cost := _run_cost(result, now)) is not None:
        fields["costs_usd"] = [*result.costs_usd, cost]
    result.state, result.modified_ts = state, now
    for name, value in fields.items():
        setattr(result, name, value)
    doc = result.to_doc()
    notify = ("notify",) if state.is_final and result.notify else ()
    return {name: doc[name] for name in ("state", "outcome", "modified_ts", *fields, *notify)}


def _run_cost(result: TaskResult, now: datetime.datetime) -> float | None:
    if result.bot_cost_usd_hour is None or result.started_ts is None:
        return None
    return result.bot_cost_usd_hour * max(0.0, (now - result.started_ts).total_seconds()) / 3600


def cost_usd_hour(state: dict[str, Any]) -> float | None:
    """The bot's state's `cost_usd_hour`, when it is a plausible number."""
    value = state.get("cost_usd_hour")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value) if 0 <= value <= MAX_COST_USD_HOUR else None


def queue(result: TaskResult, slice_index: int, expiration_ts: datetime.datetime,
          now: datetime.datetime) -> Changes:
    """A slice waits for a bot: the first, the next after one expired, one a
    waiter was released to, or a retry of a running task (then the bot that
    had it may not take it again)."""
    fields: dict[str, Any] = {"current_task_slice": slice_index, "expiration_ts": expiration_ts, "waiting_on": None}
    if result.state == State.RUNNING:
        fields.update(excluded_bot=result.bot_id, bot_id=None, claim_id=None)
    return _move(result, "queue", State.PENDING, now, **fields)


def wait_on(result: TaskResult, owner_id: str, now: datetime.datetime) -> Changes:
    """A new idempotent task waits, on its current slice, for the identical
    one that runs (functions.dedup), with no pending slice of its own."""
    return _move(result, "wait_on", State.PENDING, now, waiting_on=owner_id)


def claim(result: TaskResult, bot_id: str, bot_dimensions: dict[str, list[str]], claim_id: str,
          try_number: int, slice_index: int, now: datetime.datetime, bot_cost_usd_hour: float | None = None) -> Changes:
    return _move(result, "claim", State.RUNNING, now, bot_id=bot_id, claim_id=claim_id,
                 bot_dimensions=bot_dimensions, started_ts=now, try_number=try_number, current_task_slice=slice_index,
                 bot_cost_usd_hour=bot_cost_usd_hour)


def complete(result: TaskResult, completion: Completion, now: datetime.datetime) -> Changes:
    """The command ran to its end: KILLED after a kill, TIMED_OUT when the
    bot stopped it for a timeout, else COMPLETED (whatever its exit code)."""
    if result.killing:
        state = State.KILLED
    else:
        state = State.TIMED_OUT if completion.timed_out else State.COMPLETED
    root = completion.cas_output_root
    return _move(result, "complete", state, now, exit_code=completion.exit_code, duration=completion.duration,
                 completed_ts=now, cas_output_root=CasReference(root).to_wire() if root else None,
                 performance_stats=completion.performance_stats)


def end_unstarted(result: TaskResult, now: datetime.datetime) -> Changes:
    """The bot stopped before the command started: CANCELED when a kill
    asked it to, else the bot failed it (BOT_DIED)."""
    state = State.CANCELED if result.killing else State.BOT_DIED
    return _move(result, "end_unstarted", state, now, abandoned_ts=now)


def take_success(result: TaskResult, owner: TaskResult, now: datetime.datetime) -> Changes:
    """The task becomes a copy of an identical idempotent task's success;
    nothing runs, so it has no performance stats nor costs of its own, and
    saved what the run it reuses cost."""
    saved = sum(owner.costs_usd) if owner.costs_usd else owner.cost_saved_usd
    return _move(result, "take_success", State.COMPLETED, now, deduped_from=owner.deduped_from or owner.task_id,
                 cost_saved_usd=saved,
                 exit_code=owner.exit_code, duration=owner.duration, try_number=0,
                 cas_output_root=owner.cas_output_root, bot_id=owner.bot_id, bot_dimensions=owner.bot_dimensions,
                 completed_ts=now, waiting_on=None)


def abandon(result: TaskResult, state: State, now: datetime.datetime, canceled_by: str | None = None) -> Changes:
    """A task that never ran ends: EXPIRED, CANCELED (by `canceled_by`) or NO_RESOURCE."""
    by = {"canceled_by": canceled_by} if canceled_by else {}
    return _move(result, "abandon", state, now, abandoned_ts=now, waiting_on=None, **by)


def fail(result: TaskResult, state: State, message: str, missing_cas: list[dict[str, Any]] | None,
         now: datetime.datetime) -> Changes:
    """A run the bot could not carry out: BOT_DIED, or CLIENT_ERROR when
    inputs were missing (`missing_cas`)."""
    return _move(result, "fail", state, now, abandoned_ts=now, internal_failure_message=message,
                 missing_cas=missing_cas)


def kill(result: TaskResult, now: datetime.datetime, by: str) -> Changes:
    """A running task is to be stopped (`by` whom): its bot is told at its
    next update, and it ends KILLED (or CANCELED had its command not started)."""
    return _move(result, "kill", State.RUNNING, now, killing=True, abandoned_ts=now, canceled_by=by)


def notification_failed(reason: str) -> Changes:
    """No move: a final result records that its end could not be published."""
    return {"notification_error": reason}
