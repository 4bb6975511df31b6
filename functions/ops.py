"""Counts the Firestore reads and writes, and the Cloud Tasks calls, of the
current request.

The store and the timers add to the counter of the running context; the HTTP
layer opens one per request and reports it in the `X-Firestore-Reads`,
`X-Firestore-Writes` and `X-Cloud-Tasks-Ops` response headers, which
benchmarks add up. The store also adds them to the task whose result the
request writes (`unattributed`): what a task cost the service.
"""

import contextlib
import contextvars
import dataclasses
from typing import Iterator


#: A task's cost to the service (TaskResult.server_cost), by operation.
SERVER_COST = ("firestore_reads", "firestore_writes", "cloud_tasks_ops")


@dataclasses.dataclass
class OpCount:
    reads: int = 0
    writes: int = 0
    cloud_tasks: int = 0
    #: The counts already added to a task's server cost, so none is added twice.
    attributed: tuple[int, int, int] = (0, 0, 0)


#: None outside a request: store calls made then (tests, scripts) are not counted.
_current: contextvars.ContextVar[OpCount | None] = contextvars.ContextVar("firestore_ops", default=None)


@contextlib.contextmanager
def counting() -> Iterator[OpCount]:
    count = OpCount()
    token = _current.set(count)
    try:
        yield count
    finally:
        _current.reset(token)


def read(n: int = 1) -> None:
    if (count := _current.get()) is not None:
        count.reads += n


def write(n: int = 1) -> None:
    if (count := _current.get()) is not None:
        count.writes += n


def cloud_task(n: int = 1) -> None:
    if (count := _current.get()) is not None:
        count.cloud_tasks += n


def unattributed(pending_writes: int = 0) -> dict[str, int]:
    """The operations of this request not yet added to a task's server cost,
    with `pending_writes` about to be committed (and counted then); from now
    on they count as added. Empty outside a request."""
    count = _current.get()
    if count is None:
        return {}
    totals = (count.reads, count.writes + pending_writes, count.cloud_tasks)
    spent = {name: total - done for name, total, done in zip(SERVER_COST, totals, count.attributed)}
    count.attributed = totals
    return spent


def added(cost: dict[str, int], spent: dict[str, int]) -> dict[str, int]:
    return {name: cost.get(name, 0) + spent.get(name, 0) for name in SERVER_COST}
