"""Terminating a bot through the API: a termination task, as in Swarming.

`bot_terminate` queues a priority-0 task targeting `id:<bot>` in the bot's
pool, marked with `TAG`. Its command is never run: a poll that finds it
answers `terminate` instead of `claim`, and the bot claims it, completes it
with exit code 0 and exits. Being a task, it waits for a busy bot to finish
its current one, and shows in the bot's task list.
"""

import dataclasses
import datetime
from typing import Any

from functions import tasks
from functions.context import Context
from functions.models import TaskResult
from functions.tasks import Requester
from shared.task_request import TaskRequest

TAG = "swarming.terminate:1"
COMMAND = ["terminate"]
#: As the reference: a dead bot's termination waits this long for it.
EXPIRATION_SECS = 5 * 24 * 3600
MAX_REASON_LENGTH = 500


def terminate(ctx: Context, bot_id: str, pool: str, reason: str, requester: Requester,
              now: datetime.datetime) -> dict[str, Any]:
    """Queues the termination task of a bot of `pool`, for a caller allowed
    to manage the pool's bots (whatever its own priority rights: the task is
    priority 0)."""
    name = f"Terminate {bot_id}" + (f": {reason[:MAX_REASON_LENGTH]}" if reason else "")
    request = TaskRequest.from_wire({
        "name": name,
        "priority": 0,
        "tags": [TAG],
        "task_slices": [{
            "properties": {
                "command": COMMAND,
                "dimensions": [{"key": "id", "value": bot_id}, {"key": "pool", "value": pool}],
                "execution_timeout_secs": 60,
                "grace_period_secs": 0,
            },
            "expiration_secs": EXPIRATION_SECS,
            "wait_for_capacity": True,
        }],
    })
    return {"task_id": tasks.new(ctx, request, dataclasses.replace(requester, admin=True), now)["task_id"]}


def is_termination(result: TaskResult | None) -> bool:
    return result is not None and TAG in result.tags
