"""Cancelling tasks: a pending one ends CANCELED at once; a running one, when
asked to kill it, is told to stop at its bot's next update and ends KILLED
(CANCELED if its command had not started). A task's children are cancelled
with it."""

import datetime
from typing import Any, Iterator

from functions import dedup, transitions
from functions.budget import Budget
from functions.context import Context
from functions.errors import BadRequest
from functions.models import TaskResult, iso
from functions.store import LostRace, TaskBatch, Writes
from shared import task_id as task_ids
from shared.states import State

#: Children cancelled with a task, at most (per level).
MAX_CHILDREN = 1000
MAX_BULK = 1000
#: Tasks read per query of `tasks_cancel`, at most: what a call stopped by its budget reads in vain.
PAGE = 100
#: Attempts at cancelling a pending task that a bot claims at the same moment.
ATTEMPTS = 3


def cancel(ctx: Context, task_id: str, kill_running: bool, now: datetime.datetime, by: str) -> dict[str, Any]:
    """`{canceled, was_running}` as in the reference; the result records `by`
    whom (`canceled_by`), and its children `parent task <task_id>`."""
    answer = {"canceled": False, "was_running": False}
    for _ in range(ATTEMPTS):
        result = ctx.store.get_result(task_id)
        if result is None or result.state.is_final:
            break
        if result.state == State.RUNNING:
            answer = {"canceled": kill_running and _kill(ctx, task_id, now, by), "was_running": True}
            break
        try:
            answer = {"canceled": _cancel_pending(ctx, result, now, by), "was_running": False}
            break
        except LostRace:
            continue  # Claimed meanwhile: look again.
    _cancel_children(ctx, task_id, kill_running, now)
    return answer


def _cancel_pending(ctx: Context, result: TaskResult, now: datetime.datetime, by: str) -> bool:
    if result.waiting_on:
        return _cancel_waiter(ctx, result.task_id, now, by)
    pending = ctx.store.get_to_run(result.task_id, result.current_task_slice)
    if pending is None:
        raise LostRace("no pending slice")
    batch = ctx.store.batch()
    batch.delete_to_run(*pending)
    batch.update_result(result.task_id, transitions.abandon(result, State.CANCELED, now, by))
    batch.commit()
    dedup.finished(ctx, result, now)
    return True


def _cancel_waiter(ctx: Context, task_id: str, now: datetime.datetime, by: str) -> bool:
    """A waiter (functions.dedup) has no pending slice: its result alone. One
    released meanwhile has one again (LostRace: look again)."""

    def change(result: TaskResult, _batch: TaskBatch) -> Writes:
        if result.state != State.PENDING or not result.waiting_on:
            return Writes.NOTHING
        transitions.abandon(result, State.CANCELED, now, by)
        return Writes.RESULT

    ended = ctx.store.change_task(task_id, change)
    if ended.state == State.PENDING:
        raise LostRace("released meanwhile")
    return ended.state == State.CANCELED


def _kill(ctx: Context, task_id: str, now: datetime.datetime, by: str) -> bool:
    def change(result: TaskResult, _batch: TaskBatch) -> Writes:
        if result.state != State.RUNNING or result.killing:
            return Writes.NOTHING
        transitions.kill(result, now, by)
        return Writes.RESULT

    return ctx.store.change_task(task_id, change).killing


def _cancel_children(ctx: Context, task_id: str, kill_running: bool, now: datetime.datetime) -> None:
    states = [State.PENDING.value, State.RUNNING.value]
    for child in ctx.store.results_where("parent_task_id", task_id, MAX_CHILDREN, states):
        cancel(ctx, child.task_id, kill_running, now, f"parent task {task_id}")


def cancel_many(ctx: Context, tags: list[str], kill_running: bool, limit: int, now: datetime.datetime,
                budget: Budget, by: str, cursor: str | None = None, owner: str | None = None) -> dict[str, Any]:
    """`tasks_cancel`: the pending (and, with `kill_running`, running) tasks
    having every tag (and created by `owner`, when given), at most `limit`, as
    many as the budget allows. `cursor`, null once every task was looked at,
    continues after the last task looked at: pages neither repeat nor skip one."""
    if not 1 <= limit <= MAX_BULK:
        raise BadRequest(f"limit: must be between 1 and {MAX_BULK}")
    last = task_ids.parse_task_id(cursor, "cursor") if cursor else None
    states = [State.PENDING.value] + ([State.RUNNING.value] if kill_running else [])
    matched = canceled = 0
    for result in budget.each(_candidates(ctx, tags[0], states, last, min(PAGE, 4 * limit))):
        if matched == limit:
            return _answer(matched, canceled, last, now)
        last = result.task_id
        if set(tags) <= set(result.tags) and owner in (None, result.authenticated):
            matched += 1
            canceled += cancel(ctx, result.task_id, kill_running, now, by)["canceled"]
    return _answer(matched, canceled, last if budget.stopped else None, now)


def _candidates(ctx: Context, tag: str, states: list[str], after: str | None, page: int) -> Iterator[TaskResult]:
    """The tasks having `tag` in `states`, from after the task `after`, fetched
    a page at a time. One array filter per query: the other tags filter."""
    while True:
        found = ctx.store.results_where("tags", tag, page, states, array=True, after=after)
        yield from found
        if len(found) < page:
            return
        after = found[-1].task_id


def _answer(matched: int, canceled: int, cursor: str | None, now: datetime.datetime) -> dict[str, Any]:
    return {"matched": matched, "canceled": canceled, "cursor": cursor, "now": iso(now)}
