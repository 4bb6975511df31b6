"""The pending slices this instance lately offered to a bot as its first
candidate: concurrent polls of one queue get different heads, so their claims
do not race for one task, and a bot alone on its queues gets the head.

Memory of one instance only, and a hint: correctness still comes from the
claim's guarded batch alone (DESIGN.md §6). An offer is held until the bot
polls again or `TTL_SECS` pass: longer than a poll → claim round trip, short
enough that a bot that never claims delays nobody. A slice claimed on this
instance stays held as long, won or lost, as polls may still read it pending.

A slice offered to another bot, or being claimed, is offered to no one else
until that offer lapses: the bot polls again then (`lapse_secs`). With many
bots on a shallow queue, offering it anyway made every bot race the holder
for each new task (49 claims per task in the 500-bot load bench).

Order (the README's promise, issue 16): when no other bot holds an offer on
this instance, and no claim made on it lately lost its slice to another
bot, a poll offers the pending slices strictly in order: the most urgent
first. Such a lost claim is the sign of bots polling other instances, which
this one never sees: for `CONTESTED_SECS` after one, the instance's polls
spread as under its own contention (with 2 gateway workers and 20 bots on
one queue, offering every bot the head lost 0.8 claims per task). Under
contention a bot's one candidate is drawn at random among the most urgent
priority's slices that nobody holds, within the scan; the scan reads `SCAN`
slices plus `SPREAD` per offer held, up to `MAX_SCAN`, so no task starts ahead of more
than `MAX_SCAN - 1` older tasks of its queues with the same or higher
priority that were pending when it was offered.
"""

import random
import threading
import time
from typing import Callable

from functions.models import TaskToRun

#: Pending slices a poll reads without contention (each a billed read), the
#: most a poll reads, and the candidates it returns.
SCAN, MAX_SCAN, MAX_CANDIDATES = 10, 40, 5
TTL_SECS = 3.0
#: How long after a lost claim the instance's polls spread.
CONTESTED_SECS = 10.0
#: Slices read per offer another bot holds: the polls of other instances,
#: unseen here, hold about as many again.
SPREAD = 2
#: The holder of a slice being claimed.
TAKEN = ""


def _key(to_run: TaskToRun) -> str:
    """One try of a slice: the retry of a try that was claimed is a new
    pending slice, held by nobody."""
    return f"{to_run.task_id}:{to_run.slice_index}:{to_run.try_number}"


def _same_priority(ordered: list[TaskToRun]) -> int:
    """How many of the slices, in order, share the first one's priority."""
    priority = ordered[0].order_key.split(":")[0]
    return next((i for i, t in enumerate(ordered) if t.order_key.split(":")[0] != priority), len(ordered))


class Offers:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        #: Slice key → (bot id, monotonic time the offer lapses).
        self._held: dict[str, tuple[str, float]] = {}
        #: Monotonic time until which bots of other instances are known to compete.
        self._contested_until = float("-inf")

    def scan_size(self, bot_id: str) -> int:
        """How many pending slices the poll of `bot_id` reads: enough that
        the offers held by other bots leave it a free one."""
        with self._lock:
            self._prune()
            others = sum(1 for holder, _ in self._held.values() if holder not in (bot_id, TAKEN))
        return min(MAX_SCAN, SCAN + SPREAD * others)

    def choose(self, bot_id: str, pending: list[TaskToRun], rand: random.Random) -> list[TaskToRun]:
        """The candidates for `bot_id` among `pending` (in order), its first
        one held for it. Under contention, only that one: the others would be
        claimed by the bots polling meanwhile. Never a slice another bot
        holds or is claiming: none when every one is (see `lapse_secs`)."""
        with self._lock:
            self._prune()
            self._release_bot(bot_id)
            contended = (self._clock() < self._contested_until
                         or any(holder != TAKEN for holder, _ in self._held.values()))
            free = [t for t in pending if _key(t) not in self._held]
            if not free:
                return []
            # Under contention, others claim the rest meanwhile: one candidate, and a lost claim polls again.
            chosen = [free[rand.randrange(_same_priority(free))]] if contended else free[:MAX_CANDIDATES]
            self._held[_key(chosen[0])] = (bot_id, self._clock() + TTL_SECS)
            return chosen

    def any_free(self, bot_id: str, pending: list[TaskToRun]) -> bool:
        """Whether `choose` would offer `bot_id` one of `pending`."""
        with self._lock:
            self._prune()
            return any(self._held.get(_key(t), (bot_id,))[0] == bot_id for t in pending)

    def lapse_secs(self, pending: list[TaskToRun]) -> float:
        """How long until the first hold on `pending` lapses: when a bot
        offered none of them may poll again. A lost claim costs the same
        reads as a poll, and with many bots on a shallow queue every bot
        would race the one holder for each new task."""
        with self._lock:
            lapses = [self._held[_key(t)][1] for t in pending if _key(t) in self._held]
        return max(0.0, min(lapses, default=self._clock()) - self._clock())

    def release(self, to_run: TaskToRun) -> None:
        """The slice is free again: its claim was refused, and it is still pending."""
        with self._lock:
            self._held.pop(_key(to_run), None)

    def lost(self) -> None:
        """A claim made on this instance lost its slice to another bot: bots
        polling other instances compete for these queues."""
        with self._lock:
            self._contested_until = self._clock() + CONTESTED_SECS

    def take(self, to_run: TaskToRun) -> None:
        """A bot claims the slice: held by nobody until the offer would have
        lapsed, so that a poll that read it before the claim's commit does
        not offer it again."""
        with self._lock:
            self._held[_key(to_run)] = (TAKEN, self._clock() + TTL_SECS)

    def _release_bot(self, bot_id: str) -> None:
        for key in [k for k, (holder, _) in self._held.items() if holder == bot_id]:
            del self._held[key]

    def _prune(self) -> None:
        now = self._clock()
        for key in [k for k, (_, lapses) in self._held.items() if lapses <= now]:
            del self._held[key]
