"""Creating tasks and reading what became of them (the client side of a task)."""

import base64
import dataclasses
import datetime
import hashlib
import uuid
from typing import Any, Callable

from functions import dedup, slices, stdout, transitions
from functions.context import Context
from functions.errors import BadRequest, Forbidden, NotFound, Unavailable
from functions.models import TaskResult
from functions.store import LostRace, TaskBatch, Taken, Unsure
from shared import task_id as task_ids
from shared.states import State
from shared.task_request import TaskRequest

#: Attempts at creating a task: a new id after an id collision (same
#: millisecond, same 16 random bits), a fresh look after a concurrent
#: identical idempotent task or request uuid. A create that may have been
#: applied is never retried under a new id: reading the task tells.
CREATE_ATTEMPTS = 5
#: The most stdout one `task_stdout` call returns; clients page with `offset`.
MAX_STDOUT_READ = 4 * 1024 * 1024
#: Below this priority only admins may go (as Swarming's privileged callers).
MIN_USER_PRIORITY = 20
#: A retried create with the same request uuid returns the same task this long.
REQUEST_UUID_TTL = datetime.timedelta(days=7)
#: Raises unless the caller may see this task (its pool: functions.permissions).
Check = Callable[[TaskResult], None]


@dataclasses.dataclass(frozen=True)
class Requester:
    """Who creates a task: the caller's identity (`user:<email>` or
    `serviceAccount:<email>`), and whether it is a global admin."""

    identity: str
    admin: bool = False

    @property
    def email(self) -> str:
        return self.identity.partition(":")[2]


def new(ctx: Context, request: TaskRequest, requester: Requester, now: datetime.datetime) -> dict[str, Any]:
    """Creates the task of a request the caller may schedule in its pool. Its
    `user` is the caller's email; another is LUCI's delegation, for admins."""
    if request.user and request.user not in (requester.email, requester.identity) and not requester.admin:
        raise Forbidden(f"user: {requester.identity} may not create tasks for {request.user!r} (admins only)")
    request = _with_automatic_tags(request, user=request.user or requester.email)
    if request.priority < MIN_USER_PRIORITY and not requester.admin:
        raise Forbidden(f"priority: below {MIN_USER_PRIORITY} is for admins only")
    if any(s.properties.secret_withheld for s in request.task_slices):
        raise BadRequest("has_secret_bytes: a new task gives its secret_bytes, or none")
    if request.evaluate_only:
        return {"task_id": None, "request": request.to_wire(), "task_result": None}
    uuid_key = _uuid_key(requester, request.request_uuid) if request.request_uuid else None
    for _ in range(CREATE_ATTEMPTS):
        if uuid_key and (existing := ctx.store.get_request_uuid(uuid_key)):
            return _answer(ctx, existing)
        try:
            return _create(ctx, request, requester, uuid_key, now)
        except (Taken, LostRace):
            continue  # A concurrent request made what this one would: look again.
        except Unsure as e:
            raise Unavailable("the task may or may not have been created: a retry with the same "
                              "request_uuid returns it if it was") from e
    raise Unavailable("could not create the task; retry")


def _uuid_key(requester: Requester, request_uuid: str) -> str:
    """Request uuids are per caller: another user's uuid never returns their task."""
    return hashlib.sha256(f"{requester.identity}\n{request_uuid}".encode()).hexdigest()


def _create(ctx: Context, request: TaskRequest, requester: Requester, uuid_key: str | None,
            now: datetime.datetime) -> dict[str, Any]:
    task_id = task_ids.task_id(task_ids.new_request_id(now))
    first = slices.runnable_slice(ctx, request, 0)
    result = TaskResult(
        task_id=task_id, name=request.name, tags=request.tags, user=request.user, priority=request.priority,
        pool=request.pool, authenticated=requester.identity, creation_id=uuid.uuid4().hex,
        created_ts=now, modified_ts=now, parent_task_id=request.parent_task_id or None,
        bot_ping_tolerance_secs=request.bot_ping_tolerance_secs, current_task_slice=first or 0,
        notify=bool(request.pubsub_topic), notify_token=bool(request.pubsub_auth_token),
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
    if request.pubsub_auth_token:
        batch.create_pubsub_token(task_id, request.pubsub_auth_token)
    if uuid_key:
        batch.create_request_uuid(uuid_key, task_id, now + REQUEST_UUID_TTL)
    _commit(ctx, batch, result)
    return {"task_id": task_id, "request": request.to_wire(), "task_result": _shown(result)}


def _commit(ctx: Context, batch: TaskBatch, result: TaskResult) -> None:
    """Commits the creation. The client retries a commit whose answer was
    lost, and the retry of an applied one meets ALREADY_EXISTS (Taken); one
    whose outcome is unknown (Unsure) may have been applied too. Either is
    this creation when the task stored under its id has its `creation_id`."""
    try:
        batch.commit()
    except (Taken, Unsure):
        stored = ctx.store.get_result(result.task_id)
        if stored is None or stored.creation_id != result.creation_id:
            raise


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


def result(ctx: Context, task_id: str, check: Check) -> dict[str, Any]:
    found = _result(ctx, task_id)
    check(found)
    return found.to_wire()


def request(ctx: Context, task_id: str, check: Check) -> dict[str, Any]:
    """The stored request, and who created it; secret bytes are never in it."""
    found = ctx.store.get_task(task_ids.summary_id(task_ids.parse(task_id, "task_id")))
    if found is None:
        raise NotFound(f"no task {task_id}")
    check(found[0])
    return {**found[1].to_wire(), "authenticated": found[0].authenticated}


def _result(ctx: Context, task_id: str) -> TaskResult:
    found = ctx.store.get_result(task_ids.summary_id(task_ids.parse(task_id, "task_id")))
    if found is None:
        raise NotFound(f"no task {task_id}")
    return found


def output(ctx: Context, task_id: str, offset: int, length: int | None, check: Check) -> dict[str, Any]:
    """The stdout written contiguously from `offset`: never past a hole
    (`gap`: bytes are missing at `next_offset` while later ones are stored,
    or the run's end said its stdout is longer). A deduped task shows the
    stdout of the task it took its result from (the same properties, so the
    same pool)."""
    if offset < 0 or offset >= stdout.MAX_SIZE:
        raise BadRequest(f"offset: must be between 0 and {stdout.MAX_SIZE - 1}")
    if length is not None and length <= 0:
        raise BadRequest("length: must be positive")
    found = _result(ctx, task_id)
    check(found)
    source = _result(ctx, found.deduped_from) if found.deduped_from else found
    length = min(length or MAX_STDOUT_READ, MAX_STDOUT_READ)
    chunks = ctx.store.output_chunks(source.run_id, stdout.chunk_range(offset, length)) if source.run_id else {}
    read = stdout.read(chunks, offset, length, source.stdout_length)
    return {
        "task_id": found.task_id,
        "state": found.state.value,
        "offset": offset,
        "output": base64.b64encode(read.data).decode(),
        "next_offset": offset + len(read.data),
        "gap": read.gap,
    }
