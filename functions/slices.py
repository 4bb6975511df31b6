"""A task's slices: which one runs, waiting for a bot, and falling back to the
next when one expires (DESIGN.md §5).

A slice that no live bot matches is skipped at once unless it says
`wait_for_capacity`; a task none of whose slices can run is NO_RESOURCE. Each
pending slice has an expiration timer on Cloud Tasks (`timer_expire`); when it
fires and the slice is still pending, the task moves to the next slice it can
run, or ends EXPIRED.
"""

import datetime
from typing import Any

from functions import transitions
from functions.context import Context
from functions.models import TaskResult, TaskToRun
from functions.queues import TaskQueue
from functions.store import LostRace, TaskBatch, Writes
from shared.states import State
from shared.task_request import TaskRequest

EXPIRE = "timer_expire"


def runnable_slice(ctx: Context, request: TaskRequest, start: int) -> int | None:
    """The first slice from `start` that a live bot matches or that waits for
    capacity; None when there is none."""
    for index in range(start, len(request.task_slices)):
        task_slice = request.task_slices[index]
        if task_slice.wait_for_capacity or ctx.bots.has_capacity(task_slice.properties.dimensions):
            return index
    return None


def enqueue(ctx: Context, batch: TaskBatch, result: TaskResult, request: TaskRequest, slice_index: int,
            now: datetime.datetime, try_number: int = 1, excluded_bot: str | None = None,
            expiration_ts: datetime.datetime | None = None) -> transitions.Changes:
    """Makes `slice_index` the task's pending slice, in `batch`: its queue is
    recorded and its expiration timer created first (the outbox rule), so a
    pending slice is always in a queue polls find and always expires. Returns
    what changed of the result, which the caller writes."""
    task_slice = request.task_slices[slice_index]
    dims = task_slice.properties.dimensions
    queue = TaskQueue.for_dimensions(dims, now)
    if ctx.queues.needs_write(queue):
        ctx.store.put_queue(queue)
        ctx.queues.written(queue)
    expiration_ts = expiration_ts or now + datetime.timedelta(seconds=task_slice.expiration_secs)
    schedule_expiry(ctx, result.task_id, slice_index, expiration_ts)
    batch.create_to_run(TaskToRun(
        task_id=result.task_id, slice_index=slice_index, queue_key=queue.queue_key,
        order_key=TaskToRun.order_key_for(request.priority, result.created_ts, lifo=ctx.is_lifo(queue.pool)),
        dimensions=dims, expiration_ts=expiration_ts, try_number=try_number, excluded_bot=excluded_bot,
    ))
    return transitions.queue(result, slice_index, expiration_ts, now)


def schedule_expiry(ctx: Context, task_id: str, slice_index: int, at: datetime.datetime,
                    early: datetime.datetime | None = None) -> None:
    """`early`: the time of a delivery that came before `at`, whose own name
    the timer cannot reuse (it still exists, then is a tombstone)."""
    key = f"{task_id}:{slice_index}:{at.isoformat()}" + (f":early:{early.isoformat()}" if early else "")
    ctx.timers.schedule(EXPIRE, key, at, {"task_id": task_id, "slice": slice_index})


def expire(ctx: Context, task_id: str, slice_index: int, now: datetime.datetime) -> dict[str, Any]:
    """`timer_expire`: harmless when delivered twice, late, or after the
    slice was claimed, cancelled or already expired."""
    found = ctx.store.get_task(task_id)
    if found is None:
        return {"done": "no such task"}
    result, request = found
    if result.state != State.PENDING or result.current_task_slice != slice_index:
        return {"done": "the slice is no longer pending"}
    if result.expiration_ts and now < result.expiration_ts:
        schedule_expiry(ctx, task_id, slice_index, result.expiration_ts, early=now)  # Early: wait again.
        return {"done": "not yet"}
    if result.waiting_on:
        return _expire_waiter(ctx, task_id, slice_index, now)
    pending = ctx.store.get_to_run(task_id, slice_index)
    if pending is None:
        return {"done": "the slice is no longer pending"}
    batch = ctx.store.batch()
    batch.delete_to_run(*pending)
    following = runnable_slice(ctx, request, slice_index + 1)
    if following is None:
        batch.update_result(task_id, transitions.abandon(result, State.EXPIRED, now))
    else:
        batch.update_result(task_id, enqueue(ctx, batch, result, request, following, now,
                                             excluded_bot=result.excluded_bot))
    try:
        batch.commit()
    except LostRace:
        return {"done": "claimed meanwhile"}
    return {"done": "expired" if following is None else f"slice {following}"}


def _expire_waiter(ctx: Context, task_id: str, slice_index: int, now: datetime.datetime) -> dict[str, Any]:
    """A task waiting on an identical idempotent one (functions.dedup) that
    did not end in time expires; in a transaction, as the release of waiters
    may change it at the same moment (one released meanwhile has a pending
    slice again, which expires as any other)."""

    def change(result: TaskResult, _batch: TaskBatch) -> Writes:
        if result.state != State.PENDING or not result.waiting_on:
            return Writes.NOTHING
        transitions.abandon(result, State.EXPIRED, now)
        return Writes.RESULT

    if ctx.store.transact(task_id, change).state == State.PENDING:
        return expire(ctx, task_id, slice_index, now)
    return {"done": "expired"}
