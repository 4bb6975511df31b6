"""Handing pending tasks to bots: `poll` reads, `claim` commits.

Polls never transact; correctness comes only from the claim's one batch,
guarded by the pending slice's update time and the `create()` of the run
(DESIGN.md §6, §11).
"""

import datetime
import random
from typing import Any, TypeGuard

from functions import bot_death, termination, transitions
from functions.bot_registry import BotRequest, Registry
from functions.context import Context
from functions.heads import Heads
from functions.models import TaskResult, TaskToRun
from functions.offers import Offers
from functions.queues import QueueCache
from functions.store import LostRace, Store
from shared import dimensions as dims_lib
from shared.bot_api import (Candidate, Claim, ClaimReply, ClaimRequest, PollReply, Run, Skip, Sleep, Terminate,
                            UpdateCode)
from shared.manifest import Manifest
from shared.states import State
from shared.task_request import TaskRequest

MAX_SLEEP_SECS = 60.0
#: What a bot run from source reports as its version: it is never told to update.
DEV_VERSION = "dev"
#: Added to the sleep of a bot whose matching slices are all offered to
#: others: the holder's claim is then most likely committed.
HELD_MARGIN_SECS = 0.25
#: Pending slices a poll looks up to see whether one is a termination task.
MAX_TERMINATION_LOOKUPS = 2


def sleep_secs(streak: int, rand: random.Random) -> float:
    """Idle backoff of the reference: 1.5 ** (streak + 1) capped at 60 s, with
    jitter, and a rare quick comeback so a backed-off fleet still reacts."""
    if rand.random() < 0.05:
        return 1.0
    return min(MAX_SLEEP_SECS, 1.5 ** (streak + 1)) * rand.uniform(0.9, 1.1)


def poll(store: Store, cache: QueueCache, heads: Heads, offers: Offers, registry: Registry, bot: BotRequest,
         now: datetime.datetime, rand: random.Random, expected_version: str | None = None,
         fresh: bool = False) -> PollReply:
    """`update` when the bot runs other code than `expected_version` (the
    digest of the current zip, or None to not check), `terminate` when a
    termination task waits for it (even quarantined or in maintenance: those
    bots get no other task), else `claim` or `sleep`. `fresh`: read the
    queues' heads, whatever this instance read lately."""
    session = registry.check_in(bot, None, now)
    if _needs_update(bot, expected_version):
        return UpdateCode(expected_version, session)
    entry = bot.entry(None)
    held_back = bool(entry.quarantined or entry.maintenance_msg)
    queue_keys = matching_queues(store, cache, bot, now, only_own=held_back)
    matching = _pending(store, heads, offers, bot, queue_keys, now, fresh) if queue_keys else []
    terminate = _termination(store, matching)
    if terminate:
        return Terminate(terminate, session)
    if not matching or held_back:
        return Sleep(_backoff(bot, rand), session)
    chosen = offers.choose(bot.bot_id, matching, rand)
    if not chosen:  # Each offered to another bot: back off as idle, and not before the first offer lapses.
        lapse = offers.lapse_secs(matching) * rand.uniform(1.0, 1.2) + HELD_MARGIN_SECS
        return Sleep(max(_backoff(bot, rand), lapse), session)
    return Claim(tuple(Candidate(t.task_id, t.slice_index) for t in chosen), session)


def _pending(store: Store, heads: Heads, offers: Offers, bot: BotRequest, queue_keys: list[str],
             now: datetime.datetime, fresh: bool) -> list[TaskToRun]:
    """The pending slices of `queue_keys` the bot may run, in order: read,
    or as this instance read them lately (functions/heads.py)."""
    def for_bot(pending: list[TaskToRun]) -> list[TaskToRun]:
        return [t for t in pending if t.expiration_ts > now and t.excluded_bot != bot.bot_id]

    return for_bot(heads.pending(queue_keys, offers.scan_size(bot.bot_id), store.pending, fresh,
                                 lambda kept: offers.any_free(bot.bot_id, for_bot(kept))))


def _backoff(bot: BotRequest, rand: random.Random) -> float:
    """The idle bot's sleep, by the streak it reports."""
    streak = bot.state.get("sleep_streak", 0)
    return sleep_secs(streak if isinstance(streak, int) else 0, rand)


def _termination(store: Store, matching: list[TaskToRun]) -> str | None:
    """The id of a termination task among the pending slices: priority 0 and
    aimed at one bot, then its tag (a read, only for such rare slices)."""
    aimed = [t for t in matching if t.order_key.startswith("000:") and "id" in t.dimensions]
    for to_run in aimed[:MAX_TERMINATION_LOOKUPS]:
        if termination.is_termination(store.get_result(to_run.task_id)):
            return to_run.task_id
    return None


def _needs_update(bot: BotRequest, expected_version: str | None) -> TypeGuard[str]:
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


def claim(ctx: Context, heads: Heads, offers: Offers, registry: Registry, bot: BotRequest, request: ClaimRequest,
          now: datetime.datetime) -> ClaimReply:
    pending = ctx.store.get_to_run(request.task_id, request.slice)
    heads.forget(request.task_id, request.slice, gone=pending is None)
    refusal = pending and _refusal(pending[0], bot)
    if refusal:
        offers.release(pending[0])  # Still pending, for another bot.
        return Skip(refusal)
    if pending is None:
        return _replay(ctx, offers, registry, bot, request, now, "the task is no longer pending")
    offers.take(pending[0])
    return _claim(ctx, offers, registry, bot, request, pending, now)


def _refusal(to_run: TaskToRun, bot: BotRequest) -> str | None:
    """Why this bot may not run the pending slice, if it may not."""
    if not dims_lib.matches(to_run.dimensions, bot.flat):
        return "the bot's dimensions do not match the task's"
    if to_run.excluded_bot == bot.bot_id:
        return "this retry must run on another bot"
    return None


def _claim(ctx: Context, offers: Offers, registry: Registry, bot: BotRequest, request: ClaimRequest,
           pending: tuple[TaskToRun, Any], now: datetime.datetime) -> ClaimReply:
    store = ctx.store
    to_run, update_time = pending
    found = store.get_task(request.task_id)
    if found is None:
        return Skip("the task is gone")
    result, task_request = found
    if result.state != State.PENDING:  # Claimed since the slice was read.
        return _replay(ctx, offers, registry, bot, request, now, "another bot claimed the task")
    # The outbox rule: the BOT_DIED timer exists before the claim commits.
    bot_death.arm(ctx, request.task_id, to_run.try_number,
                  now + datetime.timedelta(seconds=result.bot_ping_tolerance_secs))
    entry = bot.entry(request.task_id)
    batch = store.batch()
    batch.delete_to_run(to_run, update_time)
    batch.update_result(request.task_id, transitions.claim(
        result, bot.bot_id, bot.dimensions, request.claim_id, to_run.try_number, request.slice, now,
        transitions.cost_usd_hour(bot.state)))
    batch.merge_bot(bot.bot_id, entry.to_doc(now))
    try:
        batch.commit()
    except LostRace:
        return _replay(ctx, offers, registry, bot, request, now, "another bot claimed the task")
    return Run(_manifest(ctx, task_request, result), registry.claimed(bot, entry, now))


def _replay(ctx: Context, offers: Offers, registry: Registry, bot: BotRequest, request: ClaimRequest,
            now: datetime.datetime, reason: str) -> ClaimReply:
    """A retried claim (same claim_id, same bot) gets the manifest it won,
    while the run goes on: once it ended, a late copy is a skip (no manifest,
    no secret bytes, no check-in for a task the bot no longer runs). A claim
    another bot won tells `offers` that bots of other instances compete."""
    found = ctx.store.get_task(request.task_id)
    if found is not None and found[0].bot_id not in (None, bot.bot_id):
        offers.lost()
    if found is None or found[0].claim_id != request.claim_id or found[0].bot_id != bot.bot_id:
        return Skip(reason)
    if found[0].state != State.RUNNING:
        return Skip(f"{reason}; the run claimed ended {found[0].state.value}")
    result, task_request = found
    return Run(_manifest(ctx, task_request, result), registry.check_in(bot, request.task_id, now))


def _manifest(ctx: Context, request: TaskRequest, result: TaskResult) -> Manifest:
    """What the bot needs to run the claimed slice; the secret bytes, read
    apart, are given only here."""
    props = request.task_slices[result.current_task_slice].properties
    secret = ctx.store.get_secret(result.task_id) if props.has_secret_bytes else None
    assert result.run_id is not None and result.bot_id is not None
    return Manifest.for_run(props, result.run_id, result.bot_id, secret)
