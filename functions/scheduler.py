"""Handing pending tasks to bots: `poll` reads, `claim` commits.

Polls never transact; correctness comes only from the claim's one batch,
guarded by the pending slice's update time and the `create()` of the run
(DESIGN.md §6, §11).
"""

import datetime
import random
from typing import Any

from functions.bots import BotRequest
from functions.errors import BadRequest
from functions.models import TaskRun, TaskToRun
from functions.queues import QueueCache
from functions.store import LostRace, Store
from shared import dimensions as dims_lib
from shared import task_id as task_ids
from shared.states import State
from shared.task_request import TaskRequest

#: Pending slices a poll reads; the candidates it returns.
POLL_SCAN, MAX_CANDIDATES = 20, 5
MAX_SLEEP_SECS = 60.0


def sleep_secs(streak: int, rand: random.Random) -> float:
    """Idle backoff of the reference: 1.5 ** (streak + 1) capped at 60 s, with
    jitter, and a rare quick comeback so a backed-off fleet still reacts."""
    if rand.random() < 0.05:
        return 1.0
    return min(MAX_SLEEP_SECS, 1.5 ** (streak + 1)) * rand.uniform(0.9, 1.1)


def poll(store: Store, cache: QueueCache, bot: BotRequest, now: datetime.datetime,
         rand: random.Random) -> dict[str, Any]:
    queue_keys = matching_queues(store, cache, bot, now)
    pending = store.pending(queue_keys, POLL_SCAN) if queue_keys else []
    matching = [t for t in pending if t.expiration_ts > now]
    if not matching:
        streak = bot.state.get("sleep_streak", 0)
        return {"cmd": "sleep", "duration": sleep_secs(streak if isinstance(streak, int) else 0, rand)}
    return {"cmd": "claim", "candidates": [_candidate(t) for t in _spread(matching, rand)]}


def matching_queues(store: Store, cache: QueueCache, bot: BotRequest, now: datetime.datetime) -> list[str]:
    """The keys of the live queues of the bot's pools whose dimensions it has."""
    keys = []
    for pool in bot.dimensions.get("pool", []):
        queues = cache.fresh(pool, now)
        if queues is None:
            found = store.queues(pool)
            cache.remember(pool, found, now)
            queues = {q.queue_key: q for q in found}
        keys += sorted(k for k, q in queues.items() if q.expiry_ts > now and q.matches(bot.flat))
    return keys


def _spread(matching: list[TaskToRun], rand: random.Random) -> list[TaskToRun]:
    """Shuffles the head of the queue among tasks of the same priority, so
    concurrent bots do not all race for the same task."""
    head_priority = matching[0].order_key.split(":")[0]
    head = [t for t in matching[:MAX_CANDIDATES] if t.order_key.split(":")[0] == head_priority]
    rand.shuffle(head)
    return (head + matching[len(head):])[:MAX_CANDIDATES]


def _candidate(to_run: TaskToRun) -> dict[str, Any]:
    return {"task_id": to_run.task_id, "slice": to_run.slice_index}


def claim(store: Store, bot: BotRequest, task_id: str, slice_index: int, claim_id: str,
          now: datetime.datetime) -> dict[str, Any]:
    if not task_ids.is_valid(task_id) or task_id != task_ids.summary_id(task_id):
        raise BadRequest(f"task_id: {task_id!r} is not a task id (a candidate's task_id)")
    if slice_index < 0:
        raise BadRequest("slice: must be a non-negative integer")
    found = store.get_to_run(task_id, slice_index)
    if found is None:
        return _replay(store, bot, task_id, claim_id, "the task is no longer pending")
    to_run, update_time = found
    if not dims_lib.matches(to_run.dimensions, bot.flat):
        return _skip("the bot's dimensions do not match the task's")
    request = store.get_request(task_id)
    run = TaskRun(run_id=task_ids.run_id(task_id, 1), bot_id=bot.bot_id, claim_id=claim_id,
                  slice_index=slice_index, started_ts=now)
    changes = {
        "state": State.RUNNING.value, "bot_id": bot.bot_id, "bot_dimensions": bot.dimensions,
        "started_ts": now, "modified_ts": now, "try_number": 1, "current_task_slice": slice_index,
    }
    try:
        store.commit_claim(to_run, update_time, run, changes)
    except LostRace:
        return _replay(store, bot, task_id, claim_id, "another bot claimed the task")
    return {"cmd": "run", "manifest": manifest(request, run)}


def _replay(store: Store, bot: BotRequest, task_id: str, claim_id: str, reason: str) -> dict[str, Any]:
    """A retried claim (same claim_id, same bot) gets the manifest it won."""
    run = store.get_run(task_ids.run_id(task_id, 1))
    if run is None or run.claim_id != claim_id or run.bot_id != bot.bot_id:
        return _skip(reason)
    return {"cmd": "run", "manifest": manifest(store.get_request(task_id), run)}


def _skip(reason: str) -> dict[str, Any]:
    return {"cmd": "skip", "reason": reason}


def manifest(request: TaskRequest, run: TaskRun) -> dict[str, Any]:
    props = request.task_slices[run.slice_index].properties
    return {
        "task_id": run.run_id,
        "bot_id": run.bot_id,
        "command": props.command,
        "env": props.env,
        "dimensions": props.dimensions,
        "hard_timeout": props.execution_timeout_secs,
    }
