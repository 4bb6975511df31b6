"""Task queues: the distinct dimension sets seen in a pool.

A poll finds the queues a bot matches from these few records instead of
scanning pending tasks, then reads only the heads of those queues. Each
function instance keeps the queues of a pool and, every `CACHE_SECS`, reads
only the records written since its last read (one billed read when there are
none), so a new queue reaches every matching bot within a few seconds however
many queues the pool has; the instance that created it sees it at once.
"""

import dataclasses
import datetime
import threading
from typing import Any, Callable

from shared import dimensions as dims_lib

CACHE_SECS = 3.0
#: Records written this long before the last read are read again, so that the
#: clocks of different instances may disagree by this much.
CLOCK_SKEW = datetime.timedelta(seconds=60)
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
                   alternatives=tuple(frozenset(a["flat"]) for a in doc["alternatives"]))

    def to_doc(self) -> dict[str, Any]:
        # Firestore arrays cannot hold arrays: each alternative is a map.
        return {"queue_key": self.queue_key, "pool": self.pool, "expiry_ts": self.expiry_ts,
                "alternatives": [{"flat": sorted(a)} for a in self.alternatives],
                "updated_ts": self.expiry_ts - LIFETIME}  # when it was (re)written


class QueueCache:
    """The queues of each pool as this function instance last read them, and
    the queues it wrote itself."""

    def __init__(self, cache_secs: float = CACHE_SECS):
        self._cache_secs = cache_secs
        self._lock = threading.Lock()
        self._pools: dict[str, tuple[datetime.datetime, dict[str, TaskQueue]]] = {}
        self._written: dict[str, datetime.datetime] = {}

    def queues(self, pool: str, now: datetime.datetime,
               load: Callable[[datetime.datetime | None], list[TaskQueue]]) -> list[TaskQueue]:
        """The live queues of `pool`; when the cache is older than
        `CACHE_SECS`, `load(since)` reads the records written since (all of
        them when `since` is None) and they are merged in."""
        with self._lock:
            read_at, known = self._pools.get(pool, (None, {}))
        if read_at is None or (now - read_at).total_seconds() > self._cache_secs:
            found = load(read_at - CLOCK_SKEW if read_at else None)
            with self._lock:
                known = {**self._pools.get(pool, (now, {}))[1], **{q.queue_key: q for q in found}}
                known = {k: q for k, q in known.items() if q.expiry_ts > now}
                self._pools[pool] = (now, known)
        return list(known.values())

    def needs_write(self, queue: TaskQueue) -> bool:
        with self._lock:
            written = self._written.get(queue.queue_key)
        return written is None or queue.expiry_ts - written >= REFRESH

    def written(self, queue: TaskQueue) -> None:
        with self._lock:
            self._written[queue.queue_key] = queue.expiry_ts
            if queue.pool in self._pools:
                self._pools[queue.pool][1][queue.queue_key] = queue
