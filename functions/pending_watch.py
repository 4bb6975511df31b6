"""What held polls wait on: a pending slice added to one of their queues.

A function instance keeps one Firestore listener per queue its held polls
(functions/long_poll.py) wait on, however many of them wait: the reads grow
with the instances and the slices added, never with the waiting bots, and an
idle queue costs no read at all. A listener outlives its last waiter by
`LINGER_SECS`, so that bots coming straight back after a hold do not reopen
it (each opening is billed a read at least). Its reads happen on its own
thread, outside any request: `take_reads` hands them to the next answer.
"""

import contextlib
import dataclasses
import logging
import threading
import time
from typing import Callable, Iterator, Sequence

logger = logging.getLogger(__name__)

LINGER_SECS = 120.0
#: How long a new listener's first snapshot is awaited before the poll reads:
#: a slice added in between would be in that snapshot, not an addition.
READY_SECS = 5.0

#: `listen(queue_key, on_change(added, reads))` → what stops listening (Store.watch_pending).
Listen = Callable[[str, Callable[[int, int], None]], Callable[[], None]]


@dataclasses.dataclass
class _Listener:
    ready: threading.Event = dataclasses.field(default_factory=threading.Event)
    waiters: set[threading.Event] = dataclasses.field(default_factory=set)
    stop: Callable[[], None] | None = None
    #: When its last waiter left; None while some wait.
    idle_since: float | None = None


class PendingWatch:
    def __init__(self, listen: Listen, clock: Callable[[], float] = time.monotonic, linger_secs: float = LINGER_SECS):
        self._listen = listen
        self._clock = clock
        self._linger = linger_secs
        self._lock = threading.Lock()
        self._listeners: dict[str, _Listener] = {}
        self._reads = 0

    @contextlib.contextmanager
    def waiting(self, queue_keys: Sequence[str]) -> Iterator[threading.Event]:
        """An event set when a slice is added to one of `queue_keys` after
        this returned (the listeners are then ready): poll, then wait on it."""
        added = threading.Event()
        joined = [self._join(key, added) for key in queue_keys]
        try:
            for listener in joined:
                listener.ready.wait(READY_SECS)
            yield added
        finally:
            self._leave(queue_keys, added)

    def take_reads(self) -> int:
        """The listeners' billed reads since the last call."""
        with self._lock:
            reads, self._reads = self._reads, 0
        return reads

    def listening(self) -> list[str]:
        with self._lock:
            return sorted(self._listeners)

    def _join(self, key: str, added: threading.Event) -> _Listener:
        with self._lock:
            listener = self._listeners.get(key)
            new = listener is None
            if listener is None:
                listener = self._listeners[key] = _Listener()
            listener.waiters.add(added)
            listener.idle_since = None
            stops = self._stale()
        _stop(stops)
        if new:
            self._start(key, listener)
        return listener

    def _start(self, key: str, listener: _Listener) -> None:
        try:
            stop = self._listen(key, lambda n, reads: self._changed(listener, n, reads))
        except Exception:
            # The waiters then wait out their hold: pickup as slow as the hold, never wrong.
            logger.exception("cannot listen to queue %s", key)
            with self._lock:
                self._listeners.pop(key, None)
            listener.ready.set()
            return
        with self._lock:
            listener.stop = stop

    def _changed(self, listener: _Listener, added: int, reads: int) -> None:
        with self._lock:
            self._reads += reads
            waiters = list(listener.waiters) if added and listener.ready.is_set() else []
        for event in waiters:
            event.set()
        listener.ready.set()

    def _leave(self, queue_keys: Sequence[str], added: threading.Event) -> None:
        with self._lock:
            for key in queue_keys:
                listener = self._listeners.get(key)
                if listener is not None:
                    listener.waiters.discard(added)
                    if not listener.waiters:
                        listener.idle_since = self._clock()
            stops = self._stale()
        _stop(stops)

    def _stale(self) -> list[Callable[[], None] | None]:
        """Forgets the listeners idle past the linger (under the lock); what stops them."""
        now = self._clock()
        stale = [key for key, listener in self._listeners.items()
                 if listener.idle_since is not None and now - listener.idle_since >= self._linger]
        return [self._listeners.pop(key).stop for key in stale]


def _stop(stops: list[Callable[[], None] | None]) -> None:
    for stop in stops:
        if stop is not None:
            stop()
