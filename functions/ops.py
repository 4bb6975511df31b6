"""Counts the Firestore reads and writes, and the Cloud Tasks calls, of the
current request.

The store and the timers add to the counter of the running context; the HTTP
layer opens one per request and reports it in the `X-Firestore-Reads`,
`X-Firestore-Writes` and `X-Cloud-Tasks-Ops` response headers, which
benchmarks add up.
"""

import contextlib
import contextvars
import dataclasses
from typing import Iterator


@dataclasses.dataclass
class OpCount:
    reads: int = 0
    writes: int = 0
    cloud_tasks: int = 0


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
