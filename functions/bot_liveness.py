"""When each bot was last seen, at a fraction of a write per poll.

Writing each idle bot's own document once a minute would cost one write per
poll of a backed-off bot (it polls every 60 s). Instead each function instance
notes the bots it served in memory and, at most every `FLUSH_SECS`, merges
those sightings into `SHARDS` shard documents (`bot_liveness/<n>`, a map of
bot id → time): one write per shard per instance per flush, however many bots
it served. A lost instance loses at most `FLUSH_SECS` of sightings, far below
the death timeout; the bot is seen again at its next poll.

`cron_sweep` reads the shards (a fixed `SHARDS` reads) to mark bots dead and
alive again; listings read them for an up-to-date `last_seen_ts`.
"""

import datetime
import hashlib
import threading

SHARDS = 16
FLUSH_SECS = 30.0


def shard_of(bot_id: str) -> int:
    return int(hashlib.sha256(bot_id.encode()).hexdigest()[:8], 16) % SHARDS


class Sightings:
    """The bots this function instance served since its last flush."""

    def __init__(self, flush_secs: float = FLUSH_SECS):
        self._flush_secs = flush_secs
        self._lock = threading.Lock()
        self._seen: dict[str, datetime.datetime] = {}
        self._flushed_at: datetime.datetime | None = None

    def record(self, bot_id: str, now: datetime.datetime) -> None:
        with self._lock:
            self._seen[bot_id] = now
            if self._flushed_at is None:
                self._flushed_at = now

    def take_due(self, now: datetime.datetime) -> dict[int, dict[str, datetime.datetime]]:
        """The sightings to write now, per shard, if a flush is due; taking
        them empties the buffer (a failed write loses them, harmlessly)."""
        with self._lock:
            if self._flushed_at is None or (now - self._flushed_at).total_seconds() < self._flush_secs:
                return {}
            seen, self._seen, self._flushed_at = self._seen, {}, now
        per_shard: dict[int, dict[str, datetime.datetime]] = {}
        for bot_id, ts in seen.items():
            per_shard.setdefault(shard_of(bot_id), {})[bot_id] = ts
        return per_shard
