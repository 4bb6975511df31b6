"""Creating tasks and reading what became of them (the client side of a task)."""

import base64
import dataclasses
import datetime
from typing import Any

from functions import stdout
from functions.auth import Caller
from functions.errors import BadRequest, NotFound, Unavailable
from functions.models import TaskResult, TaskToRun
from functions.queues import QueueCache, TaskQueue
from functions.store import IdTaken, Store
from shared import task_id as task_ids
from shared.task_request import TaskRequest

#: New ids drawn before giving up; a collision needs the same millisecond and
#: the same 16 random bits, so a second draw almost always succeeds.
ID_ATTEMPTS = 5
#: The most stdout one `task_stdout` call returns; clients page with `offset`.
MAX_STDOUT_READ = 4 * 1024 * 1024


def new(store: Store, queue_cache: QueueCache, lifo_pools: frozenset[str], body: Any, caller: Caller,
        now: datetime.datetime) -> dict[str, Any]:
    request = TaskRequest.from_wire(body)
    request = _with_automatic_tags(request, user=request.user or caller.name)
    first = request.task_slices[0]
    queue = TaskQueue.for_dimensions(first.properties.dimensions, now)
    # The queue is recorded before its first task, so no pending slice is
    # ever in a queue that polls cannot find.
    if queue_cache.needs_write(queue):
        store.put_queue(queue)
        queue_cache.written(queue)
    for _ in range(ID_ATTEMPTS):
        task_id = task_ids.task_id(task_ids.new_request_id(now))
        result = TaskResult(
            task_id=task_id, name=request.name, tags=request.tags, user=request.user,
            priority=request.priority, created_ts=now, modified_ts=now,
        )
        to_run = TaskToRun(
            task_id=task_id, slice_index=0, queue_key=queue.queue_key,
            order_key=TaskToRun.order_key_for(request.priority, now, lifo=queue.pool in lifo_pools),
            dimensions=first.properties.dimensions,
            expiration_ts=now + datetime.timedelta(seconds=first.expiration_secs),
        )
        try:
            store.create_task(request, result, to_run)
            break
        except IdTaken:
            continue  # Same millisecond and same 16 random bits: draw again.
    else:
        raise Unavailable("could not find a free task id; retry")
    return {"task_id": task_id, "request": request.to_wire(), "task_result": None}


def _with_automatic_tags(request: TaskRequest, user: str) -> TaskRequest:
    dims = request.task_slices[0].properties.dimensions
    automatic = [f"priority:{request.priority}", f"user:{user}"]
    if request.name:
        automatic.append(f"name:{request.name}")
    automatic += [f"{k}:{v}" for k, values in dims.items() for v in values]
    return dataclasses.replace(request, tags=sorted(set(request.tags) | set(automatic)), user=user)


def result(store: Store, task_id: str) -> dict[str, Any]:
    return _result(store, task_id).to_wire()


def _result(store: Store, task_id: str) -> TaskResult:
    if not task_ids.is_valid(task_id):
        raise BadRequest(f"task_id: {task_id!r} is not a task id")
    found = store.get_result(task_ids.summary_id(task_id))
    if found is None:
        raise NotFound(f"no task {task_id}")
    return found


def output(store: Store, task_id: str, offset: int, length: int | None) -> dict[str, Any]:
    if offset < 0 or offset >= stdout.MAX_SIZE:
        raise BadRequest(f"offset: must be between 0 and {stdout.MAX_SIZE - 1}")
    if length is not None and length <= 0:
        raise BadRequest("length: must be positive")
    found = _result(store, task_id)
    length = min(length or MAX_STDOUT_READ, MAX_STDOUT_READ)
    data = store.read_output(found.run_id, offset, length) if found.run_id else b""
    return {
        "task_id": found.task_id,
        "state": found.state.value,
        "offset": offset,
        "output": base64.b64encode(data).decode(),
        "next_offset": offset + len(data),
    }
