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
from functions.store import TaskBatch, settle
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
                    delivered: int | None = None) -> None:
    """The slice's timer at `at`'s second (functions.timers.due_second)."""
    ctx.timers.arm(EXPIRE, f"{task_id}:{slice_index}", at, {"task_id": task_id, "slice": slice_index}, delivered)


def expire(ctx: Context, task_id: str, slice_index: int, now: datetime.datetime,
           delivered: int | None = None) -> dict[str, Any]:
    """`timer_expire` (`delivered`: the second of the timer delivered):
    harmless when delivered twice, early, late, or after the slice was
    claimed, cancelled or already expired. No transaction: guarded batches
    (store.settle), as on the claim's path."""
    return settle(task_id, lambda: _expire_once(ctx, task_id, slice_index, now, delivered))


def _expire_once(ctx: Context, task_id: str, slice_index: int, now: datetime.datetime,
                 delivered: int | None) -> dict[str, Any]:
    found = ctx.store.get_task_seen(task_id)
    if found is None:
        return {"done": "no such task"}
    result, request, seen = found
    if result.state != State.PENDING or result.current_task_slice != slice_index:
        return {"done": "the slice is no longer pending"}
    if result.expiration_ts and now < result.expiration_ts:
        schedule_expiry(ctx, task_id, slice_index, result.expiration_ts, delivered)  # Early: wait again.
        return {"done": "not yet"}
    batch = ctx.store.batch()
    if result.waiting_on:  # It waits on an identical task (functions.dedup), with no pending slice.
        batch.update_result(task_id, transitions.abandon(result, State.EXPIRED, now), seen)
        batch.commit()
        return {"done": "expired"}
    return _fall_back(ctx, batch, result, request, seen, now)


def _fall_back(ctx: Context, batch: TaskBatch, result: TaskResult, request: TaskRequest, seen: Any,
               now: datetime.datetime) -> dict[str, Any]:
    """The expired slice leaves its queue, for the next runnable slice or EXPIRED."""
    pending = ctx.store.get_to_run(result.task_id, result.current_task_slice)
    if pending is None:
        return {"done": "the slice is no longer pending"}
    batch.delete_to_run(*pending)
    following = runnable_slice(ctx, request, result.current_task_slice + 1)
    if following is None:
        changes = transitions.abandon(result, State.EXPIRED, now)
    else:
        changes = enqueue(ctx, batch, result, request, following, now, excluded_bot=result.excluded_bot)
    batch.update_result(result.task_id, changes, seen)
    batch.commit()
    return {"done": "expired" if following is None else f"slice {following}"}
