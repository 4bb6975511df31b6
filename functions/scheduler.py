"""Handing pending tasks to bots: `poll` reads, `claim` commits.

Polls never transact; correctness comes only from the claim's one batch,
guarded by the pending slice's update time and the `create()` of the run
(DESIGN.md §6, §11).
"""

import datetime
import random
from typing import Any

from functions import bot_death, termination
from functions.bots import BotRequest, Registry
from functions.context import Context
from functions.errors import BadRequest
from functions.models import TaskToRun
from functions.queues import QueueCache
from functions.store import LostRace, Store
from shared import dimensions as dims_lib
from shared import task_id as task_ids
from shared.manifest import Manifest
from shared.states import State
from shared.task_request import TaskRequest

#: Pending slices a poll reads (each a billed read), and the candidates it
#: returns: drawn from the most urgent ones read, so that concurrent bots
#: spread over twice as many tasks as each is offered.
POLL_SCAN, MAX_CANDIDATES = 10, 5
MAX_SLEEP_SECS = 60.0
#: What a bot run from source reports as its version: it is never told to update.
DEV_VERSION = "dev"
#: Pending slices a poll looks up to see whether one is a termination task.
MAX_TERMINATION_LOOKUPS = 2


def sleep_secs(streak: int, rand: random.Random) -> float:
    """Idle backoff of the reference: 1.5 ** (streak + 1) capped at 60 s, with
    jitter, and a rare quick comeback so a backed-off fleet still reacts."""
    if rand.random() < 0.05:
        return 1.0
    return min(MAX_SLEEP_SECS, 1.5 ** (streak + 1)) * rand.uniform(0.9, 1.1)


def poll(store: Store, cache: QueueCache, registry: Registry, bot: BotRequest, now: datetime.datetime,
         rand: random.Random, expected_version: str | None = None) -> dict[str, Any]:
    """`update` when the bot runs other code than `expected_version` (the
    digest of the current zip, or None to not check), `terminate` when a
    termination task waits for it (even quarantined or in maintenance: those
    bots get no other task), else `claim` or `sleep`."""
    session = registry.check_in(bot, None, now)
    if _needs_update(bot, expected_version):
        return {"cmd": "update", "version": expected_version, "session": session}
    info = bot.info(None)
    held_back = bool(info.quarantined or info.maintenance_msg)
    queue_keys = matching_queues(store, cache, bot, now, only_own=held_back)
    pending = store.pending(queue_keys, POLL_SCAN) if queue_keys else []
    matching = [t for t in pending if t.expiration_ts > now and t.excluded_bot != bot.bot_id]
    terminate = _termination(store, matching)
    if terminate:
        return {"cmd": "terminate", "task_id": terminate, "session": session}
    if not matching or held_back:
        streak = bot.state.get("sleep_streak", 0)
        duration = sleep_secs(streak if isinstance(streak, int) else 0, rand)
        return {"cmd": "sleep", "duration": duration, "session": session}
    return {"cmd": "claim", "candidates": [_candidate(t) for t in _spread(matching, rand)], "session": session}


def _termination(store: Store, matching: list[TaskToRun]) -> str | None:
    """The id of a termination task among the pending slices: priority 0 and
    aimed at one bot, then its tag (a read, only for such rare slices)."""
    aimed = [t for t in matching if t.order_key.startswith("000:") and "id" in t.dimensions]
    for to_run in aimed[:MAX_TERMINATION_LOOKUPS]:
        if termination.is_termination(store.get_result(to_run.task_id)):
            return to_run.task_id
    return None


def _needs_update(bot: BotRequest, expected_version: str | None) -> bool:
    """A bot runs other code than the current zip, and has not refused it
    (a version that failed its checks there): then it keeps running tasks."""
    refused = bot.state.get("refused_versions")
    refused = refused if isinstance(refused, list) else []
    return (bool(expected_version) and bot.version not in ("", DEV_VERSION)
            and bot.version != expected_version and expected_version not in refused)


def matching_queues(store: Store, cache: QueueCache, bot: BotRequest, now: datetime.datetime,
                    only_own: bool = False) -> list[str]:
    """The keys of the live queues of the bot's pools whose dimensions it
    has; with `only_own`, only those aimed at this bot by its id."""
    own = f"id:{bot.bot_id}"
    keys = []
    for pool in bot.dimensions.get("pool", []):
        queues = cache.queues(pool, now, lambda since, pool=pool: store.queues(pool, since))
        keys += sorted(q.queue_key for q in queues
                       if q.matches(bot.flat) and (not only_own or all(own in a for a in q.alternatives)))
    return keys


def _spread(matching: list[TaskToRun], rand: random.Random) -> list[TaskToRun]:
    """Shuffles the head of the queue among tasks of the same priority, so
    concurrent bots do not all race for the same task."""
    head_priority = matching[0].order_key.split(":")[0]
    head = [t for t in matching if t.order_key.split(":")[0] == head_priority]
    rand.shuffle(head)
    return (head + matching[len(head):])[:MAX_CANDIDATES]


def _candidate(to_run: TaskToRun) -> dict[str, Any]:
    return {"task_id": to_run.task_id, "slice": to_run.slice_index}


def claim(ctx: Context, registry: Registry, bot: BotRequest, task_id: str, slice_index: int, claim_id: str,
          now: datetime.datetime) -> dict[str, Any]:
    if not task_ids.is_valid(task_id) or task_id != task_ids.summary_id(task_id):
        raise BadRequest(f"task_id: {task_id!r} is not a task id (a candidate's task_id)")
    if slice_index < 0:
        raise BadRequest("slice: must be a non-negative integer")
    store = ctx.store
    pending = store.get_to_run(task_id, slice_index)
    if pending is None:
        return _replay(ctx, registry, bot, task_id, claim_id, now, "the task is no longer pending")
    to_run, update_time = pending
    if not dims_lib.matches(to_run.dimensions, bot.flat):
        return _skip("the bot's dimensions do not match the task's")
    if to_run.excluded_bot == bot.bot_id:
        return _skip("this retry must run on another bot")
    found = store.get_task(task_id)
    if found is None:
        return _skip("the task is gone")
    result, request = found
    run_id = task_ids.run_id(task_id, to_run.try_number)
    # The outbox rule: the BOT_DIED timer exists before the claim commits.
    bot_death.arm(ctx, task_id, to_run.try_number, now + datetime.timedelta(seconds=result.bot_ping_tolerance_secs))
    info = bot.info(task_id)
    batch = store.batch()
    batch.delete_to_run(to_run, update_time)
    batch.update_result(task_id, {
        "state": State.RUNNING.value, "bot_id": bot.bot_id, "claim_id": claim_id,
        "bot_dimensions": bot.dimensions, "started_ts": now, "modified_ts": now, "try_number": to_run.try_number,
        "current_task_slice": slice_index,
    })
    batch.merge_bot(bot.bot_id, info.to_doc(now))
    try:
        batch.commit()
    except LostRace:
        return _replay(ctx, registry, bot, task_id, claim_id, now, "another bot claimed the task")
    return {"cmd": "run", "manifest": _manifest(ctx, request, bot.bot_id, run_id, slice_index),
            "session": registry.claimed(bot, info, now)}


def _replay(ctx: Context, registry: Registry, bot: BotRequest, task_id: str, claim_id: str,
            now: datetime.datetime, reason: str) -> dict[str, Any]:
    """A retried claim (same claim_id, same bot) gets the manifest it won."""
    found = ctx.store.get_task(task_id)
    if found is None or found[0].claim_id != claim_id or found[0].bot_id != bot.bot_id:
        return _skip(reason)
    result, request = found
    return {"cmd": "run", "manifest": _manifest(ctx, request, bot.bot_id, result.run_id, result.current_task_slice),
            "session": registry.check_in(bot, task_id, now)}


def _skip(reason: str) -> dict[str, Any]:
    return {"cmd": "skip", "reason": reason}


def _manifest(ctx: Context, request: TaskRequest, bot_id: str, run_id: str, slice_index: int) -> dict[str, Any]:
    """What the bot needs to run the slice; the secret bytes, read apart,
    are given only here."""
    props = request.task_slices[slice_index].properties
    secret = ctx.store.get_secret(task_ids.summary_id(run_id)) if props.has_secret_bytes else None
    return Manifest.for_run(props, run_id, bot_id, secret).to_wire()
