"""When each bot was last seen, at a fraction of a write per poll, and with
no liveness document taking more than about half a write per second.

Writing each idle bot's own document once a minute would cost one write per
poll of a backed-off bot (it polls every 60 s). Instead each function instance
notes the bots it served in memory and, at most every `FLUSH_SECS`, merges
those sightings into the liveness documents of their shards in one batch: at
most `SHARDS` writes per instance per flush, however many bots it served. A
lost instance loses at most `FLUSH_SECS` of sightings, far below the death
timeout; the bot is seen again at its next call.

Every instance flushes on its own, and deployed there are many: each of the
functions that see bots (`bot_poll`, `bot_claim`, `bot_task_update`,
`bot_event`) may run `function_max_instances` instances (infra/terraform: 100,
each serving up to 80 requests at once), 400 in all. Were a shard one
document, it would take up to 400 writes per 30 s, 13 per second, where
Firestore sustains about one. So a shard's sightings are spread over `SLOTS`
documents (`bot_liveness/<shard>-<slot>`) and each flush writes to a slot it
draws at random: a document takes on average instances ÷ (`FLUSH_SECS` ×
`SLOTS`) writes per second, 0.42 at 400 instances, and since the draw is made
afresh at every flush, no document keeps an unlucky share of the instances.
More instances call for more slots (or a longer flush). A bot served by
several instances is in several documents, and readers take its newest time;
two flushes landing out of order can put an older time back in one document,
never by more than a flush interval, far below the death timeout.

Readers pay for it with a fixed number of reads: a shard is its `SLOTS`
documents plus its flags document (`bot_liveness/<shard>`, the bots
`cron_sweep` flagged dead, written by the sweep alone), so `cron_sweep` reads
`SHARDS` × (`SLOTS` + 1) = 132 documents once a minute, `bot_get` reads 33
and a page of a listing at most 132. Shards keep those reads down as they
are few: each slot document may come to hold every bot of its shard (about
40 bytes each), so 4 shards hold some 100,000 bots under Firestore's 1 MiB
per document.
"""

import datetime
import hashlib
import random
import threading
from typing import Any, Iterable

SHARDS = 4
SLOTS = 32
FLUSH_SECS = 30.0

#: Document id → bot id → when it was seen: what one flush writes.
Flush = dict[str, dict[str, datetime.datetime]]


def shard_of(bot_id: str) -> int:
    return int(hashlib.sha256(bot_id.encode()).hexdigest()[:8], 16) % SHARDS


def flags_doc(shard: int) -> str:
    """The document of the shard's bots flagged dead."""
    return f"{shard:02d}"


def slot_doc(shard: int, slot: int) -> str:
    """One of the documents the shard's sightings are spread over."""
    return f"{shard:02d}-{slot:02d}"


def docs_of(shards: Iterable[int]) -> list[str]:
    """Every document a reader of these shards reads."""
    return [doc for shard in shards for doc in [flags_doc(shard)] + [slot_doc(shard, s) for s in range(SLOTS)]]


def newest(docs: Iterable[dict[str, Any]]) -> tuple[dict[str, datetime.datetime], set[str]]:
    """(bot id → last seen, bots flagged dead) over the documents of some
    shards: a bot's newest sighting wins."""
    seen: dict[str, datetime.datetime] = {}
    dead: set[str] = set()
    for doc in docs:
        for bot_id, ts in doc.get("seen", {}).items():
            if bot_id not in seen or ts > seen[bot_id]:
                seen[bot_id] = ts
        dead.update(bot_id for bot_id, flag in doc.get("dead", {}).items() if flag)
    return seen, dead


class Sightings:
    """The bots this function instance served since its last flush."""

    def __init__(self, flush_secs: float = FLUSH_SECS, rand: random.Random | None = None):
        self._flush_secs = flush_secs
        self._rand = rand or random.Random()
        self._lock = threading.Lock()
        self._seen: dict[str, datetime.datetime] = {}
        self._flushed_at: datetime.datetime | None = None

    def record(self, bot_id: str, now: datetime.datetime) -> None:
        with self._lock:
            self._seen[bot_id] = now
            if self._flushed_at is None:
                self._flushed_at = now

    def take_due(self, now: datetime.datetime) -> Flush:
        """The sightings to write now, if a flush is due; taking them empties
        the buffer (a failed write loses them, harmlessly)."""
        with self._lock:
            if self._flushed_at is None or (now - self._flushed_at).total_seconds() < self._flush_secs:
                return {}
            seen, self._seen, self._flushed_at = self._seen, {}, now
        return self._spread(seen)

    def at_once(self, bot_id: str, now: datetime.datetime) -> Flush:
        """One sighting to write now, outside the buffer (a handshake's)."""
        return self._spread({bot_id: now})

    def _spread(self, seen: dict[str, datetime.datetime]) -> Flush:
        """The sightings by document: each in its shard, all in one slot drawn now."""
        slot = self._rand.randrange(SLOTS)
        per_doc: Flush = {}
        for bot_id, ts in seen.items():
            per_doc.setdefault(slot_doc(shard_of(bot_id), slot), {})[bot_id] = ts
        return per_doc
