"""`cron_sweep`: repairs what a lost timer left behind, and keeps the bot
registry's dead flags; safe to run at any time, as every step re-reads and
does nothing when the state moved on.

Per shard (DESIGN.md §11: growing fields only in sharded composite indexes):
pending slices past their expiration by more than `LATE`, and running tasks
whose result was not written for the shortest ping tolerance; each goes
through the same handler its timer would have called. Then the tasks still
waiting on an identical idempotent task that ended more than `LATE` ago (its
instance died before it released them): released as it would have.
"""

import datetime
from typing import Any

from functions import bot_death, dedup, slices
from functions.context import Context
from functions.fleet import Fleet
from functions.models import SHARDS
from shared.task_request import MIN_BOT_PING_TOLERANCE_SECS

#: A timer normally fires on time; the sweep acts only on what is this late.
LATE = datetime.timedelta(seconds=60)
#: Items handled per shard and kind in one sweep.
BATCH = 100
#: Pages of BATCH waiters looked at in one sweep.
WAITER_PAGES = 10


def sweep(ctx: Context, fleet: Fleet, now: datetime.datetime) -> dict[str, Any]:
    expired = silent = 0
    for shard in range(SHARDS):
        for to_run in ctx.store.expired_slices(shard, now - LATE, BATCH):
            expired += slices.expire(ctx, to_run.task_id, to_run.slice_index, now)["done"] != "not yet"
        tolerance = datetime.timedelta(seconds=MIN_BOT_PING_TOLERANCE_SECS)
        for result in ctx.store.silent_runs(shard, now - tolerance, BATCH):
            silent += bot_death.check(ctx, result.task_id, result.try_number, now)["done"] != "alive"
    return {"bots": fleet.sweep(now), "expired_slices": expired, "dead_runs": silent,
            "released_waiters": _stranded_waiters(ctx, now)}


def _stranded_waiters(ctx: Context, now: datetime.datetime) -> int:
    """Pages through the waiters by the task they wait on; each owner is read once."""
    released, after = 0, None
    for _ in range(WAITER_PAGES):
        page = ctx.store.waiters(BATCH, after)
        for owner_id in dict.fromkeys(waiter.waiting_on for waiter in page):
            owner = ctx.store.get_result(owner_id)
            if owner and owner.state.is_final and now - owner.modified_ts > LATE:
                released += dedup.release_waiters(ctx, owner, now)
        if len(page) < BATCH:
            break
        after = page[-1].waiting_on
    return released
