"""Terminating a bot through the API: a termination task, as in Swarming.

`bot_terminate` queues a priority-0 task targeting `id:<bot>` in the bot's
pool, marked with `TAG`. Its command is never run: a poll that finds it
answers `terminate` instead of `claim`, and the bot claims it, completes it
with exit code 0 and exits. Being a task, it waits for a busy bot to finish
its current one, and shows in the bot's task list.
"""

import datetime
from typing import Any

from functions import tasks
from functions.auth import Caller
from functions.bot_store import BotStore
from functions.context import Context
from functions.errors import NotFound
from functions.models import TaskResult

TAG = "swarming.terminate:1"
COMMAND = ["terminate"]
#: As the reference: a dead bot's termination waits this long for it.
EXPIRATION_SECS = 5 * 24 * 3600
MAX_REASON_LENGTH = 500


def terminate(ctx: Context, bot_store: BotStore, bot_id: str, reason: str, caller: Caller,
              now: datetime.datetime) -> dict[str, Any]:
    entry = bot_store.get_bot(bot_id)
    if entry is None:
        raise NotFound(f"bot_id: no bot {bot_id!r}")
    pools = entry.get("dimensions", {}).get("pool") or []
    if not pools:
        raise NotFound(f"bot_id: bot {bot_id!r} reports no pool")
    name = f"Terminate {bot_id}" + (f": {reason[:MAX_REASON_LENGTH]}" if reason else "")
    body = {
        "name": name,
        "priority": 0,
        "tags": [TAG],
        "task_slices": [{
            "properties": {
                "command": COMMAND,
                "dimensions": [{"key": "id", "value": bot_id}, {"key": "pool", "value": pools[0]}],
                "execution_timeout_secs": 60,
                "grace_period_secs": 0,
            },
            "expiration_secs": EXPIRATION_SECS,
            "wait_for_capacity": True,
        }],
    }
    return {"task_id": tasks.new(ctx, body, caller, now)["task_id"]}


def is_termination(result: TaskResult | None) -> bool:
    return result is not None and TAG in result.tags
