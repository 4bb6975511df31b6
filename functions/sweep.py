"""`cron_sweep`: repairs what a lost timer left behind, and keeps the bot
registry's dead flags; safe to run at any time, as every step re-reads and
does nothing when the state moved on.

Per shard (DESIGN.md §11: growing fields only in sharded composite indexes):
pending slices past their expiration by more than `LATE`, and running tasks
whose result was not written for the shortest ping tolerance; each goes
through the same handler its timer would have called, as that timer
delivered late: a run found silent long after its due time is given the
outage grace (functions/bot_death.py) before it is declared dead. Then the tasks still
waiting on an identical idempotent task that ended more than `LATE` ago (its
instance died before it released them): released as it would have.

Each task is repaired on its own: one that fails (a lock held too long, a
Firestore or Cloud Tasks error) is logged with its id, counted in `failed` and
left to the next sweep, which finds it again; the others are swept. So is
each lane: one whose reads fail is logged and named in `failed_lanes`.

A sweep stops when its time budget is spent (functions.budget) and leaves the
rest to the next sweeps. The bots come first: what is done there is not done
again. The shards and the waiters are lanes of a ring, swept from the lane of
the current minute on, so each lane in turn is swept first and none waits on
the others for ever. The ring has a prime number of lanes (17): whatever the
cron's period (under 17 minutes), successive sweeps start at every lane.
"""

import contextlib
import datetime
import functools
import logging
import math
from typing import Any, Callable, Iterator, TypeVar

from functions import bot_death, dedup, logs, slices
from functions.budget import Budget
from functions.context import Context
from functions.fleet import Fleet
from functions.models import SHARDS
from shared.task_request import MIN_BOT_PING_TOLERANCE_SECS

#: A timer normally fires on time; the sweep acts only on what is this late.
LATE = datetime.timedelta(seconds=60)
#: A run whose result was not written for this long may have lost its timer.
SILENT = datetime.timedelta(seconds=MIN_BOT_PING_TOLERANCE_SECS)
#: Items handled per shard and kind in one sweep.
BATCH = 100
#: Pages of BATCH waiters looked at in one sweep.
WAITER_PAGES = 10

logger = logging.getLogger(__name__)

Counts = dict[str, int]
T = TypeVar("T")
#: A lane sweeps its part, adding what it did to the counts.
Lane = Callable[[Context, datetime.datetime, Budget, Counts], None]


def sweep(ctx: Context, fleet: Fleet, now: datetime.datetime, budget: Budget) -> dict[str, Any]:
    """What it did, the tasks it could not repair (`failed`), the lanes it
    went through (`swept`, in order) and those whose reads failed
    (`failed_lanes`), and `partial` when it stopped for want of time."""
    counts: Counts = {"expired_slices": 0, "dead_runs": 0, "released_waiters": 0, "failed": 0}
    failed_lanes: list[str] = []
    bots = _lane_on_its_own("bots", lambda: fleet.sweep(now, budget), failed_lanes) or {}
    swept = []
    for name, lane in ring(now):
        if budget.over():
            break
        swept.append(name)
        _lane_on_its_own(name, functools.partial(lane, ctx, now, budget, counts), failed_lanes)
    return {"bots": bots, **counts, "swept": swept, "failed_lanes": failed_lanes, "partial": budget.stopped}


def _lane_on_its_own(name: str, run: Callable[[], T], failed_lanes: list[str]) -> T | None:
    """A lane whose reads failed (a query past its deadline on a loaded
    Firestore) is logged and named in `failed_lanes`; the other lanes are
    swept, and the next sweep reads it again."""
    try:
        return run()
    except Exception:  # Whatever it is, it must not stop the other lanes.
        failed_lanes.append(name)
        logger.exception("cron_sweep: lane %s failed; left to the next sweep", name)
        return None


def ring(now: datetime.datetime) -> list[tuple[str, Lane]]:
    """Every lane by name, from the lane of `now`'s minute on."""
    lanes: list[tuple[str, Lane]] = [(f"shard {shard}", functools.partial(_shard, shard)) for shard in range(SHARDS)]
    lanes.append(("waiters", _stranded_waiters))
    start = int(now.timestamp() // 60) % len(lanes)
    return lanes[start:] + lanes[:start]


def _shard(shard: int, ctx: Context, now: datetime.datetime, budget: Budget, counts: Counts) -> None:
    for to_run in budget.each(ctx.store.expired_slices(shard, now - LATE, BATCH)):
        with _on_its_own(counts, "expired_slices", to_run.task_id):
            counts["expired_slices"] += slices.expire(ctx, to_run.task_id, to_run.slice_index, now)["done"] != "not yet"
    if budget.over():
        return
    for result in budget.each(ctx.store.silent_runs(shard, now - SILENT, BATCH)):
        with _on_its_own(counts, "dead_runs", result.task_id):
            due = math.ceil(bot_death.silence_due(result).timestamp())
            counts["dead_runs"] += bot_death.check(ctx, result.task_id, result.try_number, now, due)["done"] != "alive"


def _stranded_waiters(ctx: Context, now: datetime.datetime, budget: Budget, counts: Counts) -> None:
    for owner_id in budget.each(_waited_on(ctx)):
        with _on_its_own(counts, "released_waiters", owner_id):
            owner = ctx.store.get_result(owner_id)
            if owner and owner.state.is_final and now - owner.modified_ts > LATE:
                counts["released_waiters"] += dedup.release_waiters(ctx, owner, now)


@contextlib.contextmanager
def _on_its_own(counts: Counts, kind: str, task_id: str) -> Iterator[None]:
    """The repair of one task: its failure is its own, logged with its id and
    counted in `failed`; the sweep goes on, and the next one finds it again."""
    try:
        yield
    except Exception:  # Whatever it is, it must not stop the repair of the other tasks.
        counts["failed"] += 1
        with logs.labelled(task_id=task_id):
            logger.exception("cron_sweep: %s: task %s failed; left to the next sweep", kind, task_id)


def _waited_on(ctx: Context) -> Iterator[str]:
    """The tasks waited on, each once: pages through the waiters by the task
    they wait on, a page when the previous one is used up."""
    after = None
    for _ in range(WAITER_PAGES):
        page = ctx.store.waiters(BATCH, after)
        yield from dict.fromkeys(waiter.waiting_on for waiter in page)
        if len(page) < BATCH:
            return
        after = page[-1].waiting_on
