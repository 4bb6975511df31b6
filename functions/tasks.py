"""Creating tasks and reading what became of them (the client side of a task)."""

import base64
import dataclasses
import datetime
import hashlib
from typing import Any

from functions import dedup, slices, stdout, transitions
from functions.auth import Caller, Role
from functions.context import Context
from functions.errors import BadRequest, Forbidden, NotFound, Unavailable
from functions.models import TaskResult
from functions.store import LostRace, TaskBatch, Taken
from shared import task_id as task_ids
from shared.states import State
from shared.task_request import TaskRequest

#: Attempts at creating a task: a new id after an id collision (same
#: millisecond, same 16 random bits), a fresh look after a concurrent
#: identical idempotent task or request uuid.
CREATE_ATTEMPTS = 5
#: The most stdout one `task_stdout` call returns; clients page with `offset`.
MAX_STDOUT_READ = 4 * 1024 * 1024
#: Below this priority only admins may go (as Swarming's privileged callers).
MIN_USER_PRIORITY = 20
#: A retried create with the same request uuid returns the same task this long.
REQUEST_UUID_TTL = datetime.timedelta(days=7)


def new(ctx: Context, body: Any, caller: Caller, now: datetime.datetime) -> dict[str, Any]:
    request = TaskRequest.from_wire(body)
    request = _with_automatic_tags(request, user=request.user or caller.name)
    if request.priority < MIN_USER_PRIORITY and caller.role != Role.ADMIN:
        raise Forbidden(f"priority: below {MIN_USER_PRIORITY} is for admins only")
    if any(s.properties.secret_withheld for s in request.task_slices):
        raise BadRequest("has_secret_bytes: a new task gives its secret_bytes, or none")
    if request.evaluate_only:
        return {"task_id": None, "request": request.to_wire(), "task_result": None}
    uuid_key = _uuid_key(caller, request.request_uuid) if request.request_uuid else None
    for _ in range(CREATE_ATTEMPTS):
        if uuid_key and (existing := ctx.store.get_request_uuid(uuid_key)):
            return _answer(ctx, existing)
        try:
            return _create(ctx, request, uuid_key, now)
        except (Taken, LostRace):
            continue  # A concurrent request made what this one would: look again.
    raise Unavailable("could not create the task; retry")


def _uuid_key(caller: Caller, request_uuid: str) -> str:
    """Request uuids are per caller: another user's uuid never returns their task."""
    return hashlib.sha256(f"{caller.name}\n{request_uuid}".encode()).hexdigest()


def _create(ctx: Context, request: TaskRequest, uuid_key: str | None, now: datetime.datetime) -> dict[str, Any]:
    task_id = task_ids.task_id(task_ids.new_request_id(now))
    first = slices.runnable_slice(ctx, request, 0)
    result = TaskResult(
        task_id=task_id, name=request.name, tags=request.tags, user=request.user, priority=request.priority,
        created_ts=now, modified_ts=now, parent_task_id=request.parent_task_id or None,
        bot_ping_tolerance_secs=request.bot_ping_tolerance_secs, current_task_slice=first or 0,
        expiration_ts=None if first is None else now + datetime.timedelta(
            seconds=request.task_slices[first].expiration_secs),
    )
    batch = ctx.store.batch()
    if first is None:
        transitions.abandon(result, State.NO_RESOURCE, now)
    else:
        _start(ctx, batch, result, request, first, now)
    batch.create_task(result, request)
    secret = next((s.properties.secret_bytes for s in request.task_slices if s.properties.secret_bytes), None)
    if secret is not None:
        batch.create_secret(task_id, secret)
    if uuid_key:
        batch.create_request_uuid(uuid_key, task_id, now + REQUEST_UUID_TTL)
    batch.commit()
    return {"task_id": task_id, "request": request.to_wire(), "task_result": _shown(result)}


def _start(ctx: Context, batch: TaskBatch, result: TaskResult, request: TaskRequest, first: int,
           now: datetime.datetime) -> None:
    """Queues the first runnable slice, unless the task is idempotent and an
    identical one succeeded (it takes that success) or runs (it waits on it,
    until its slice expires)."""
    properties = request.task_slices[first].properties
    if not properties.idempotent or dedup.admit(ctx, batch, result, properties.properties_hash(), now):
        slices.enqueue(ctx, batch, result, request, first, now)
    elif result.waiting_on:
        slices.schedule_expiry(ctx, result.task_id, first, result.expiration_ts)


def _shown(result: TaskResult) -> dict[str, Any] | None:
    """The result is part of the answer when the task did not simply queue."""
    return result.to_wire() if result.state != State.PENDING or result.waiting_on else None


def _answer(ctx: Context, task_id: str) -> dict[str, Any]:
    found = ctx.store.get_task(task_id)
    if found is None:
        raise Unavailable("the task of this request_uuid is being created; retry")
    result, request = found
    return {"task_id": task_id, "request": request.to_wire(), "task_result": result.to_wire()}


def _with_automatic_tags(request: TaskRequest, user: str) -> TaskRequest:
    automatic = [f"priority:{request.priority}", f"user:{user}"]
    if request.name:
        automatic.append(f"name:{request.name}")
    if request.parent_task_id:
        automatic.append(f"parent_task_id:{request.parent_task_id}")
    for task_slice in request.task_slices:
        automatic += [f"{k}:{v}" for k, values in task_slice.properties.dimensions.items() for v in values]
    return dataclasses.replace(request, tags=sorted(set(request.tags) | set(automatic)), user=user)


def result(ctx: Context, task_id: str) -> dict[str, Any]:
    return _result(ctx, task_id).to_wire()


def request(ctx: Context, task_id: str) -> dict[str, Any]:
    """The stored request; secret bytes are never in it."""
    found = ctx.store.get_task(task_ids.summary_id(task_ids.parse(task_id, "task_id")))
    if found is None:
        raise NotFound(f"no task {task_id}")
    return found[1].to_wire()


def _result(ctx: Context, task_id: str) -> TaskResult:
    found = ctx.store.get_result(task_ids.summary_id(task_ids.parse(task_id, "task_id")))
    if found is None:
        raise NotFound(f"no task {task_id}")
    return found


def output(ctx: Context, task_id: str, offset: int, length: int | None) -> dict[str, Any]:
    """A deduped task shows the stdout of the task it took its result from."""
    if offset < 0 or offset >= stdout.MAX_SIZE:
        raise BadRequest(f"offset: must be between 0 and {stdout.MAX_SIZE - 1}")
    if length is not None and length <= 0:
        raise BadRequest("length: must be positive")
    found = _result(ctx, task_id)
    source = _result(ctx, found.deduped_from) if found.deduped_from else found
    length = min(length or MAX_STDOUT_READ, MAX_STDOUT_READ)
    data = ctx.store.read_output(source.run_id, offset, length) if source.run_id else b""
    return {
        "task_id": found.task_id,
        "state": found.state.value,
        "offset": offset,
        "output": base64.b64encode(data).decode(),
        "next_offset": offset + len(data),
    }
