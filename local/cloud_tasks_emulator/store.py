"""All queues and tasks, in memory, behind one lock: the semantics of the
Cloud Tasks RPCs, and the bookkeeping of each dispatch attempt."""

import base64
import binascii
import itertools
import logging
import threading
import time
from typing import Callable, TypeVar

from local.cloud_tasks_emulator import config, names
from local.cloud_tasks_emulator.delivery import Outcome
from local.cloud_tasks_emulator.errors import (AlreadyExists, FailedPrecondition, InvalidArgument, NotFound,
                                                Unimplemented)
from local.cloud_tasks_emulator.messages import QueuePb, TaskPb, seconds
from local.cloud_tasks_emulator.model import Attempt, Dispatch, HttpTarget, QueueRecord, RateLimits, TaskRecord
from local.cloud_tasks_emulator.retry import PRODUCTION_RETRY, RetryPolicy
from local.cloud_tasks_emulator.tombstones import Tombstones

logger = logging.getLogger(__name__)

#: Arms a timer: (due time, task name, token).
Schedule = Callable[[float, str, int], None]
T = TypeVar("T")

QUEUE_MISSING = ("Queue does not exist. If you just created the queue, wait at least a minute "
                 "for the queue to initialize.")
#: Production's answer for a missing task, and for a missing queue on DeleteQueue.
TASK_MISSING = "Requested entity was not found."
TASK_GONE = ("The task no longer exists, though a task with this name existed recently. "
             "The task either successfully completed or was deleted.")


class Store:
    """Speaks the protobuf messages behind the official types (see messages)."""

    def __init__(self, settings: config.Settings, schedule: Schedule) -> None:
        self._settings = settings
        self._schedule = schedule
        self._lock = threading.Lock()
        self._queues: dict[str, QueueRecord] = {}
        self._deleted_queues = Tombstones(settings.queue_tombstone_seconds)
        self._deleted_tasks = Tombstones(settings.task_tombstone_seconds)
        self._tokens = itertools.count(1)

    # Queues.

    def create_queue(self, parent: str, queue: QueuePb) -> QueuePb:
        names.check_location(parent)
        names.check_queue(queue.name)
        if queue.name.rpartition("/queues/")[0] != parent:
            raise InvalidArgument(f"The queue name ('{queue.name}') must be in the parent location ('{parent}').")
        rate_limits = RateLimits.from_proto(queue.rate_limits, self._settings.max_concurrent_dispatches)
        record = QueueRecord(queue.name, rate_limits, RetryPolicy.from_proto(queue.retry_config, PRODUCTION_RETRY))
        with self._lock:
            if queue.name in self._queues:
                raise AlreadyExists("Queue already exists")
            if self._deleted_queues.holds(queue.name, time.time()):
                raise FailedPrecondition("The queue cannot be created because a queue with this name "
                                         "existed too recently.")
            self._queues[queue.name] = record
            return record.to_proto()

    def get_queue(self, name: str) -> QueuePb:
        with self._lock:
            return self._queue(name).to_proto()

    def list_queues(self, parent: str, filter: str, page_size: int,
                    page_token: str) -> tuple[list[QueuePb], str]:
        names.check_location(parent)
        if filter:
            raise Unimplemented("ListQueues filters are not emulated.")
        with self._lock:
            found = {name: queue for name, queue in self._queues.items() if name.startswith(parent + "/queues/")}
            page, next_token = _page(found, page_size, page_token, config.MAX_QUEUES_PAGE)
            return [queue.to_proto() for queue in page], next_token

    def delete_queue(self, name: str) -> None:
        with self._lock:
            self._queue(name, missing=TASK_MISSING)
            del self._queues[name]
            self._deleted_queues.add(name, time.time())

    def purge_queue(self, name: str) -> QueuePb:
        with self._lock:
            queue = self._queue(name)
            now = time.time()
            for task in list(queue.tasks.values()):
                self._remove(queue, task, now)
            queue.waiting.clear()
            queue.purge_time = now
            return queue.to_proto()

    # Tasks.

    def create_task(self, parent: str, task: TaskPb, view: int) -> TaskPb:
        names.check_queue(parent)
        if task.name and (named_queue := names.split_task(task.name)[0]) != parent:
            raise InvalidArgument(f"The queue name from request ('{parent}') must be the same as the queue "
                                  f"name in the named task ('{named_queue}').")
        target = _target(task)
        if task.ByteSize() > config.MAX_TASK_BYTES:
            raise InvalidArgument(f"Task size must be at most {config.MAX_TASK_BYTES} bytes.")
        now = time.time()
        schedule_time = seconds(task.schedule_time) if task.HasField("schedule_time") else now
        if schedule_time > now + config.MAX_SCHEDULE_AHEAD:
            raise InvalidArgument("Task.scheduleTime must be at most 30 days in the future.")
        deadline = self._dispatch_deadline(task)
        with self._lock:
            queue = self._queue(parent)
            name = task.name or self._new_task_name(queue)
            if name in queue.tasks or self._deleted_tasks.holds(name, now):
                raise AlreadyExists("Requested entity already exists")
            own_retry = task.HasField("retry_config")
            retry = RetryPolicy.from_proto(task.retry_config, queue.retry) if own_retry else queue.retry
            record = TaskRecord(name, target, schedule_time, float(int(now)), deadline, retry, own_retry)
            queue.tasks[name] = record
            self._arm(record)
            return record.to_proto(view)

    def get_task(self, name: str, view: int) -> TaskPb:
        with self._lock:
            return self._task(name)[1].to_proto(view)

    def list_tasks(self, parent: str, view: int, page_size: int, page_token: str) -> tuple[list[TaskPb], str]:
        with self._lock:
            queue = self._queue(parent)
            page, next_token = _page(queue.tasks, page_size, page_token, config.MAX_TASKS_PAGE)
            return [task.to_proto(view) for task in page], next_token

    def delete_task(self, name: str) -> None:
        with self._lock:
            queue, task = self._task(name)
            self._remove(queue, task, time.time())

    # Dispatch.

    def begin(self, name: str, token: int) -> Dispatch | None:
        """Starts the attempt a timer is due for, unless the timer is stale or
        the queue has no free dispatch slot (the task then waits for one)."""
        with self._lock:
            queue = self._queues.get(name.rpartition("/tasks/")[0])
            task = queue.tasks.get(name) if queue is not None else None
            if task is None or task.timer != token:
                return None
            if queue.running >= queue.rate_limits.max_concurrent_dispatches:
                queue.waiting.append((name, token))
                return None
            return self._start(queue, task, time.time())

    def finish(self, dispatch: Dispatch, outcome: Outcome) -> list[Dispatch]:
        """Records an attempt's outcome: the task is removed, or retried after
        its backoff. Returns the attempts started in the slot it frees."""
        with self._lock:
            queue, task = dispatch.queue, dispatch.task
            queue.running -= 1
            if self._queues.get(queue.name) is not queue:
                return []
            now = time.time()
            if queue.tasks.get(task.name) is task:  # neither deleted nor purged meanwhile
                self._record(queue, task, outcome, now)
            return self._fill_slots(queue, now)

    # Under the lock.

    def _queue(self, name: str, missing: str = QUEUE_MISSING) -> QueueRecord:
        names.check_queue(name)
        queue = self._queues.get(name)
        if queue is None:
            raise NotFound(missing)
        return queue

    def _task(self, name: str) -> tuple[QueueRecord, TaskRecord]:
        queue = self._queue(names.split_task(name)[0])
        task = queue.tasks.get(name)
        if task is None:
            raise NotFound(TASK_GONE if self._deleted_tasks.holds(name, time.time()) else TASK_MISSING)
        return queue, task

    def _new_task_name(self, queue: QueueRecord) -> str:
        while (name := f"{queue.name}/tasks/{names.new_task_id()}") in queue.tasks:
            pass
        return name

    def _dispatch_deadline(self, task: TaskPb) -> float:
        if not task.HasField("dispatch_deadline"):
            return config.DEFAULT_DISPATCH_DEADLINE
        deadline = seconds(task.dispatch_deadline)
        if not self._settings.min_dispatch_deadline <= deadline <= config.MAX_DISPATCH_DEADLINE:
            raise InvalidArgument(f"Task.dispatchDeadline must be between {self._settings.min_dispatch_deadline:g} s "
                                  f"and {config.MAX_DISPATCH_DEADLINE:g} s.")
        return deadline

    def _arm(self, task: TaskRecord) -> None:
        task.timer = next(self._tokens)
        self._schedule(task.schedule_time, task.name, task.timer)

    def _remove(self, queue: QueueRecord, task: TaskRecord, now: float) -> None:
        del queue.tasks[task.name]
        self._deleted_tasks.add(task.name, now)

    def _start(self, queue: QueueRecord, task: TaskRecord, now: float) -> Dispatch:
        queue.running += 1
        task.dispatch_count += 1  # production counts attempts not yet answered too
        if task.first_dispatch_time is None:
            task.first_dispatch_time = now
        task.last_attempt = Attempt(task.schedule_time, now)
        return Dispatch(queue, task, task.target, task.dispatch_deadline, task.schedule_time,
                        task.dispatch_count - 1, task.execution_count, task.previous_response)

    def _record(self, queue: QueueRecord, task: TaskRecord, outcome: Outcome, now: float) -> None:
        attempt = task.last_attempt
        attempt.response_time, attempt.code, attempt.message = now, outcome.code, outcome.message
        task.previous_response = outcome.status
        if outcome.status is not None:
            task.response_count += 1
            if outcome.status < 500:
                task.execution_count += 1
        if outcome.succeeded:
            logger.debug("task %s delivered after %d attempts", task.name, task.dispatch_count)
            self._remove(queue, task, now)
        elif task.retry.exhausted(task.dispatch_count, task.first_dispatch_time, now):
            logger.warning("task %s dropped after %d attempts: %s", task.name, task.dispatch_count, outcome.message)
            self._remove(queue, task, now)
        else:
            delay = max(task.retry.backoff(task.dispatch_count), outcome.retry_after or 0.0)
            logger.info("task %s attempt %d failed (%s), retry in %.3g s",
                        task.name, task.dispatch_count, outcome.message, delay)
            task.schedule_time = now + delay
            self._arm(task)

    def _fill_slots(self, queue: QueueRecord, now: float) -> list[Dispatch]:
        started = []
        while queue.waiting and queue.running < queue.rate_limits.max_concurrent_dispatches:
            name, token = queue.waiting.popleft()
            task = queue.tasks.get(name)
            if task is not None and task.timer == token:
                started.append(self._start(queue, task, now))
        return started


def _target(task: TaskPb) -> HttpTarget:
    if task.HasField("app_engine_http_request"):
        raise Unimplemented("App Engine tasks are not emulated; use an HTTP task.")
    if not task.HasField("http_request"):
        raise InvalidArgument("Task.httpRequest is required.")
    return HttpTarget.from_proto(task.http_request)


def _page(items: dict[str, T], page_size: int, page_token: str, max_size: int) -> tuple[list[T], str]:
    """Items in name order after the one the token names; the token of the next page, or ""."""
    if page_size < 0:
        raise InvalidArgument("page_size cannot be negative.")
    size = min(page_size or max_size, max_size)
    after = _decode_token(page_token)
    ordered = sorted(name for name in items if name > after)
    page = ordered[:size]
    next_token = _encode_token(page[-1]) if len(ordered) > size else ""
    return [items[name] for name in page], next_token


def _encode_token(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode()


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError) as error:
        raise InvalidArgument("Invalid page_token.") from error
