"""`cron_sweep`: repairs what a lost timer left behind, and keeps the bot
registry's dead flags; safe to run at any time, as every step re-reads and
does nothing when the state moved on.

Per shard (DESIGN.md §11: growing fields only in sharded composite indexes):
pending slices past their expiration by more than `LATE`, and running tasks
whose result was not written for the shortest ping tolerance; each goes
through the same handler its timer would have called.
"""

import datetime
from typing import Any

from functions import bot_death, slices
from functions.context import Context
from functions.fleet import Fleet
from functions.models import SHARDS
from shared.task_request import MIN_BOT_PING_TOLERANCE_SECS

#: A timer normally fires on time; the sweep acts only on what is this late.
LATE = datetime.timedelta(seconds=60)
#: Items handled per shard and kind in one sweep.
BATCH = 100


def sweep(ctx: Context, fleet: Fleet, now: datetime.datetime) -> dict[str, Any]:
    expired = silent = 0
    for shard in range(SHARDS):
        for to_run in ctx.store.expired_slices(shard, now - LATE, BATCH):
            expired += slices.expire(ctx, to_run.task_id, to_run.slice_index, now)["done"] != "not yet"
        tolerance = datetime.timedelta(seconds=MIN_BOT_PING_TOLERANCE_SECS)
        for result in ctx.store.silent_runs(shard, now - tolerance, BATCH):
            silent += bot_death.check(ctx, result.task_id, result.try_number, now)["done"] != "alive"
    return {"bots": fleet.sweep(now), "expired_slices": expired, "dead_runs": silent}
