"""Idempotent tasks: reuse a recent success, and never run twice at once.

`dedup/<properties hash>` names the task that owns these properties: the one
running them, or the last to succeed. A new idempotent task whose owner
succeeded less than `dedup_max_age_secs` ago is COMPLETED at once with
`deduped_from` (nothing runs). Beyond Swarming: while the owner is pending or
running, the new task waits on it (`waiting_on`, no pending slice) and takes
its outcome when it succeeds, or runs on its own if it fails.

Races: a waiter's creation rewrites the record guarded by the update time it
read, and the owner touches the record when it ends, before it releases its
waiters; so a waiter either commits before the touch (and is released) or
fails, retries and sees the end.
"""

import datetime

from functions import slices, transitions
from functions.context import Context
from functions.models import TaskResult
from functions.store import TaskBatch, Writes
from shared.states import State


def admit(ctx: Context, batch: TaskBatch, result: TaskResult, properties_hash: str,
          now: datetime.datetime) -> bool:
    """Decides, in `batch`, how a new idempotent task starts: True to run it
    (it owns the record now), False when it took a success or waits on the
    owner (for its current slice, until its expiration)."""
    result.properties_hash = properties_hash
    found = ctx.store.get_dedup(properties_hash)
    owned = {"task_id": result.task_id, "ended": None, "waiters": 0}
    if found is None:
        batch.put_dedup(properties_hash, owned)
        return True
    record, seen = found
    owner = ctx.store.get_result(record["task_id"])
    if owner and _reusable(owner, now, ctx.dedup_max_age_secs):
        transitions.take_success(result, owner, now)
        return False
    if owner and not owner.state.is_final:
        transitions.wait_on(result, owner.task_id, now)
        batch.put_dedup(properties_hash, {**record, "waiters": record.get("waiters", 0) + 1}, seen)
        return False
    batch.put_dedup(properties_hash, owned, seen)
    return True


def _reusable(owner: TaskResult, now: datetime.datetime, max_age_secs: int) -> bool:
    return (owner.state == State.COMPLETED and owner.exit_code == 0 and owner.completed_ts is not None
            and (now - owner.completed_ts).total_seconds() < max_age_secs)


def finished(ctx: Context, result: TaskResult, now: datetime.datetime) -> None:
    """After an owner reached a final state: records a success (or drops the
    record of a failure), then releases the tasks waiting on it."""
    if not result.properties_hash or result.deduped_from or not result.state.is_final:
        return
    found = ctx.store.get_dedup(result.properties_hash)
    if found and found[0]["task_id"] == result.task_id:
        batch = ctx.store.batch()
        if _reusable(result, now, ctx.dedup_max_age_secs):
            batch.put_dedup(result.properties_hash, {**found[0], "ended": now}, found[1])
        else:
            batch.delete_dedup(result.properties_hash, found[1])
        batch.commit()
    release_waiters(ctx, result, now)


def release_waiters(ctx: Context, owner: TaskResult, now: datetime.datetime) -> int:
    """Releases the tasks waiting on a final owner; how many were waiting.
    `cron_sweep` calls it too, for an owner whose instance died before."""
    waiters = ctx.store.results_where("waiting_on", owner.task_id, limit=1000, states=[State.PENDING.value])
    for waiter in waiters:
        release(ctx, waiter.task_id, owner, now)
    return len(waiters)


def release(ctx: Context, task_id: str, owner: TaskResult, now: datetime.datetime) -> None:
    """The waiter takes the owner's success, or is queued to run on its own."""
    found = ctx.store.get_task(task_id)
    if found is None:
        return
    request = found[1]

    def change(result: TaskResult, batch: TaskBatch) -> Writes:
        if result.state != State.PENDING or result.waiting_on != owner.task_id:
            return Writes.NOTHING
        if _reusable(owner, now, ctx.dedup_max_age_secs):
            transitions.take_success(result, owner, now)
        else:
            slices.enqueue(ctx, batch, result, request, result.current_task_slice, now,
                           expiration_ts=result.expiration_ts)
        return Writes.RESULT

    ctx.store.change_task(task_id, change)
