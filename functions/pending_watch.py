"""What held polls wait on: a pending slice added to one of their queues.

A function instance keeps one Firestore listener per queue its held polls
(functions/long_poll.py) wait on, however many of them wait: the reads grow
with the instances and the slices added, never with the waiting bots, and an
idle queue costs no read at all. A slice added wakes one waiting poll (the
longest waiting), not all of them: every bot woken polls and claims, and all
but one would lose, each at a few reads. A listener outlives its last waiter
by `LINGER_SECS`, so that bots coming straight back after a hold do not
reopen it (each opening is billed a read at least), and no longer: while
the queue is busy, no poll waits, and a listener would only cost reads (one
per slice claimed from its window, in production) and CPU (the emulator
evaluates its query again at each change of the queue: end to end, its
CPU per task fell from 23-29 ms to 16 once listeners stopped lingering).
Its reads happen on its own thread, outside any request: `take_reads`
hands them to the next answer.
"""

import contextlib
import dataclasses
import logging
import threading
import time
from typing import Callable, Iterator, Sequence

logger = logging.getLogger(__name__)

LINGER_SECS = 10.0
#: How long a new listener's first snapshot is awaited before the poll reads:
#: a slice added in between would be in that snapshot, not an addition.
READY_SECS = 5.0

#: `listen(queue_key, on_change(added, pending, reads))` → what stops listening (Store.watch_pending).
Listen = Callable[[str, Callable[[int, int, int], None]], Callable[[], None]]


@dataclasses.dataclass
class _Listener:
    ready: threading.Event = dataclasses.field(default_factory=threading.Event)
    #: The waiting polls' events, the longest waiting first (a dict keeps its order).
    waiters: dict[threading.Event, None] = dataclasses.field(default_factory=dict)
    #: The slices pending in the queue, as the last snapshot had them.
    pending: int = 0
    #: The slices its snapshots added, the first snapshot's included.
    additions: int = 0
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
    def waiting(self, queue_keys: Sequence[str], most: int) -> Iterator[threading.Event | None]:
        """An event set when a slice added to one of `queue_keys` after this
        returned (the listeners are then ready) is this poll's to take: poll,
        then wait on it. None when each of the queues has `most` polls
        waiting already (decided at once for concurrent callers): none of
        them needs another."""
        added = threading.Event()
        joined = self._join(queue_keys, added, most)
        if joined is None:
            yield None
            return
        try:
            for listener in joined:
                listener.ready.wait(READY_SECS)
            yield added
        finally:
            self._leave(queue_keys, added)

    def pending(self, queue_keys: Sequence[str]) -> bool:
        """Whether a slice is pending in one of these queues, by the listeners'
        last snapshots (no read): one a woken poll did not take (its bot had
        gone, or may not run it) is there for the next look."""
        with self._lock:
            return any(self._listeners[key].pending for key in queue_keys if key in self._listeners)

    def additions(self, queue_keys: Sequence[str]) -> dict[str, int]:
        """A mark of what the listeners of these queues have added so far,
        for `added_since`."""
        with self._lock:
            return {key: self._listeners[key].additions for key in queue_keys if key in self._listeners}

    def added_since(self, queue_keys: Sequence[str], mark: dict[str, int]) -> bool:
        """Whether a slice came to one of these queues since `mark` was
        taken; for a queue that had no listener then, whether one is pending."""
        with self._lock:
            listeners = [(key, self._listeners[key]) for key in queue_keys if key in self._listeners]
            return any(listener.additions > mark[key] if key in mark else listener.pending > 0
                       for key, listener in listeners)

    def take_reads(self) -> int:
        """The listeners' billed reads since the last call."""
        with self._lock:
            reads, self._reads = self._reads, 0
        return reads

    def tidy(self) -> None:
        """Stops the listeners idle past the linger (every poll calls it, a
        poll that waits on nothing too)."""
        with self._lock:
            stops = self._stale()
        _stop(stops)

    def listening(self) -> list[str]:
        with self._lock:
            return sorted(self._listeners)

    def _join(self, queue_keys: Sequence[str], added: threading.Event, most: int) -> list[_Listener] | None:
        with self._lock:
            if queue_keys and all(key in self._listeners and len(self._listeners[key].waiters) >= most
                                  for key in queue_keys):
                return None
            new = {key: _Listener() for key in queue_keys if key not in self._listeners}
            self._listeners.update(new)
            joined = [self._listeners[key] for key in queue_keys]
            for listener in joined:
                listener.waiters[added] = None
                listener.idle_since = None
            stops = self._stale()
        _stop(stops)
        for key, listener in new.items():
            self._start(key, listener)
        return joined

    def _start(self, key: str, listener: _Listener) -> None:
        try:
            stop = self._listen(key, lambda added, pending, reads: self._changed(listener, added, pending, reads))
        except Exception:
            # The waiters then wait out their hold: pickup as slow as the hold, never wrong.
            logger.exception("cannot listen to queue %s", key)
            with self._lock:
                self._listeners.pop(key, None)
            listener.ready.set()
            return
        with self._lock:
            listener.stop = stop

    def _changed(self, listener: _Listener, added: int, pending: int, reads: int) -> None:
        with self._lock:
            self._reads += reads
            listener.pending = pending
            listener.additions += added
            woken = []
            if listener.ready.is_set():
                woken = [event for event in listener.waiters if not event.is_set()][:added]
        for event in woken:
            event.set()
        listener.ready.set()

    def _leave(self, queue_keys: Sequence[str], added: threading.Event) -> None:
        with self._lock:
            for key in queue_keys:
                listener = self._listeners.get(key)
                if listener is not None:
                    listener.waiters.pop(added, None)
                    if not listener.waiters:
                        listener.idle_since = self._clock()
            stops = self._stale()
        _stop(stops)

    def close(self) -> None:
        """Stops every listener (the service is done with)."""
        with self._lock:
            stops = [listener.stop for listener in self._listeners.values()]
            self._listeners.clear()
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
