"""The heads of queues this instance read lately, reused by the polls that
follow for `reuse_secs` (`SWARMING_POLL_REUSE_SECS`) instead of each poll
querying them again.

A busy queue's bots poll many times a second, and most polls find what the
one before found: at 500 bots on 10 queues, 72 % of polls read three
documents each only to answer sleep (the load bench), most often because
every slice read was offered to another bot. Reusing the read costs
nothing, and is safe because a poll's answer is a hint: correctness comes
from the claim's guarded batch alone (DESIGN.md §6).

What keeps a reused read from misleading bots:
- only a read that found slices is reused: a new task on an empty queue is
  seen by the next poll;
- a claim made on this instance, won, lost or refused, removes its slice
  from every read kept (`forget`); a read left with nothing is not reused,
  nor one that offered a slice already gone: with several instances, a read
  a second old offers slices the others' bots claimed meanwhile;
- a held poll woken for a new slice reads afresh (functions/long_poll.py);
- a read that stopped at its limit is reused for a scan no longer than the
  one it was made for, and only while it has a slice to offer this bot:
  those beyond it may be free when the ones read are all held. A read that
  found fewer than it asked (the queues' whole content) is reused as is.

A slice claimed on another instance meanwhile costs a bot one lost claim,
as a race between two polls does, and the next poll here reads afresh; a
task more urgent than those read waits at most `reuse_secs` longer.
"""

import dataclasses
import threading
import time
from typing import Callable

from functions.models import TaskToRun


@dataclasses.dataclass
class _Read:
    slices: list[TaskToRun]
    limit: int
    #: It found fewer than it asked: the queues' whole content then.
    whole: bool
    #: Monotonic time it stops being reused.
    until: float


class Heads:
    def __init__(self, reuse_secs: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._reuse_secs = reuse_secs
        self._clock = clock
        self._lock = threading.Lock()
        self._reads: dict[tuple[str, ...], _Read] = {}

    def pending(self, queue_keys: list[str], limit: int, read: Callable[[list[str], int], list[TaskToRun]],
                fresh: bool = False, offers_any: Callable[[list[TaskToRun]], bool] = bool) -> list[TaskToRun]:
        """The first `limit` pending slices of `queue_keys` in order: a kept
        read when one may serve (never with `fresh`), else `read(keys,
        limit)`, kept when it found any. A kept read that stopped at its
        limit serves only while `offers_any(slices)`: the slices beyond
        it may be free when those read are not."""
        key = tuple(queue_keys)
        kept = None if fresh else self._kept(key, limit, offers_any)
        if kept:
            return kept
        found = read(queue_keys, limit)
        if found and self._reuse_secs > 0:
            with self._lock:
                self._reads[key] = _Read(found, limit, len(found) < limit, self._clock() + self._reuse_secs)
        return found

    def forget(self, task_id: str, slice_index: int, gone: bool) -> None:
        """A bot claims the slice here: no kept read offers it again. When it
        was `gone` already (claimed on another instance, cancelled, expired),
        the reads that held it are stale: they are dropped."""
        with self._lock:
            for key, kept in list(self._reads.items()):
                rest = [t for t in kept.slices if (t.task_id, t.slice_index) != (task_id, slice_index)]
                if gone and len(rest) < len(kept.slices):
                    del self._reads[key]
                kept.slices = rest

    def _kept(self, key: tuple[str, ...], limit: int, offers_any: Callable[[list[TaskToRun]], bool]
              ) -> list[TaskToRun]:
        with self._lock:
            self._prune()
            kept = self._reads.get(key)
            slices = kept.slices[:limit] if kept else []
        if kept is None or (not kept.whole and (limit > kept.limit or not offers_any(slices))):
            return []
        return slices

    def _prune(self) -> None:
        now = self._clock()
        for key in [k for k, kept in self._reads.items() if kept.until <= now]:
            del self._reads[key]
