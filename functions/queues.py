"""Task queues: the distinct dimension sets seen in a pool.

A poll finds the queues a bot matches from these few records instead of
scanning pending tasks, then reads only the heads of those queues. Each
function instance keeps the queues of a pool and, every `CACHE_SECS`, reads
only the records stamped since a little before the newest it has (billed as
the few records of that margin, one read when there are none), so a new queue
reaches every matching bot within a few seconds however many queues the pool
has; the instance that created it sees it at once. Records carry a server
timestamp, so no writer's clock can hide one from that query; but the stamp
is when Firestore took the request, not when the commit became visible (on
the emulator up to 20 ms earlier): a record stamped before the newest one
read may still be committed after that read. `STAMP_MARGIN` catches those,
and a full read every `FULL_READ_SECS` any stamped earlier still. One thread
per pool refreshes while the others use what is known.
"""

import dataclasses
import datetime
import threading
from typing import Any, Callable

from shared import dimensions as dims_lib

CACHE_SECS = 3.0
#: How long before the newest stamp read the next refresh reads from: more
#: than a commit takes to become visible after its stamp.
STAMP_MARGIN = datetime.timedelta(seconds=1)
#: Every pool is read whole this often, whatever the stamps say.
FULL_READ_SECS = 300.0
#: A queue record outlives the longest slice expiration, and is rewritten by a
#: given instance at most once per `REFRESH` while tasks keep using it.
LIFETIME = datetime.timedelta(days=7, hours=1)
REFRESH = datetime.timedelta(days=1)


@dataclasses.dataclass(frozen=True)
class TaskQueue:
    queue_key: str
    pool: str
    #: The OR-expanded flat `k:v` sets; a bot matches when it has all of one.
    alternatives: tuple[frozenset[str], ...]
    #: No pending slice of this queue outlives it; it is extended on reuse.
    expiry_ts: datetime.datetime
    #: When the record was last committed (set by Firestore; None until read).
    updated_ts: datetime.datetime | None = None

    @classmethod
    def for_dimensions(cls, dims: dims_lib.Dimensions, now: datetime.datetime) -> "TaskQueue":
        pool = dims["pool"][0]
        return cls(queue_key=f"{pool}:{dims_lib.queue_hash(dims)}", pool=pool,
                   alternatives=tuple(dims_lib.expand(dims)), expiry_ts=now + LIFETIME)

    def matches(self, bot_flat: frozenset[str]) -> bool:
        return any(alternative <= bot_flat for alternative in self.alternatives)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "TaskQueue":
        return cls(queue_key=doc["queue_key"], pool=doc["pool"], expiry_ts=doc["expiry_ts"],
                   alternatives=tuple(frozenset(a["flat"]) for a in doc["alternatives"]),
                   updated_ts=doc.get("updated_ts"))

    def to_doc(self) -> dict[str, Any]:
        """Without `updated_ts`, which the store sets to the commit time."""
        # Firestore arrays cannot hold arrays: each alternative is a map.
        return {"queue_key": self.queue_key, "pool": self.pool, "expiry_ts": self.expiry_ts,
                "alternatives": [{"flat": sorted(a)} for a in self.alternatives]}


@dataclasses.dataclass
class _Pool:
    read_at: datetime.datetime | None = None
    #: When the pool was last read whole.
    read_whole_at: datetime.datetime | None = None
    #: The newest stamp read: the next refresh reads from `STAMP_MARGIN` before it.
    newest: datetime.datetime | None = None
    known: dict[str, TaskQueue] = dataclasses.field(default_factory=dict)
    refreshing: bool = False


class QueueCache:
    """The queues of each pool as this function instance last read them, and
    the queues it wrote itself."""

    def __init__(self, cache_secs: float = CACHE_SECS, full_read_secs: float = FULL_READ_SECS):
        self._cache_secs = cache_secs
        self._full_read_secs = full_read_secs
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._pools: dict[str, _Pool] = {}
        self._written: dict[str, datetime.datetime] = {}

    def queues(self, pool: str, now: datetime.datetime,
               load: Callable[[datetime.datetime | None], list[TaskQueue]]) -> list[TaskQueue]:
        """The live queues of `pool`. When the cache is older than
        `CACHE_SECS`, one caller runs `load(since)`, which reads the records
        stamped at or after `since` (all of them when it is None), and
        merges them in; callers meanwhile get what is known, or wait for the
        first read of the pool."""
        with self._changed:
            state = self._pools.setdefault(pool, _Pool())
            while state.refreshing and state.read_at is None:
                self._changed.wait()
            due = state.read_at is None or (now - state.read_at).total_seconds() > self._cache_secs
            refresh = due and not state.refreshing
            state.refreshing |= refresh
            since = self._since(state, now)
        if refresh:
            self._refresh(state, now, since, load)
        with self._lock:
            return [q for q in state.known.values() if q.expiry_ts > now]

    def _since(self, state: _Pool, now: datetime.datetime) -> datetime.datetime | None:
        """Where a refresh reads from: None (everything) when a full read is due."""
        whole_due = state.read_whole_at is None or (now - state.read_whole_at).total_seconds() >= self._full_read_secs
        return None if whole_due or state.newest is None else state.newest - STAMP_MARGIN

    def _refresh(self, state: _Pool, now: datetime.datetime, since: datetime.datetime | None,
                 load: Callable[[datetime.datetime | None], list[TaskQueue]]) -> None:
        found: list[TaskQueue] = []
        try:
            found = load(since)
            if since is None:
                state.read_whole_at = now
        finally:
            with self._changed:
                state.known.update({q.queue_key: q for q in found})
                stamps = [q.updated_ts for q in found if q.updated_ts] + ([state.newest] if state.newest else [])
                state.newest = max(stamps, default=None)
                state.read_at, state.refreshing = now, False
                self._changed.notify_all()

    def needs_write(self, queue: TaskQueue) -> bool:
        with self._lock:
            written = self._written.get(queue.queue_key)
        return written is None or queue.expiry_ts - written >= REFRESH

    def written(self, queue: TaskQueue) -> None:
        with self._lock:
            self._written[queue.queue_key] = queue.expiry_ts
            self._pools.setdefault(queue.pool, _Pool()).known[queue.queue_key] = queue
