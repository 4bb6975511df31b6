"""Liveness sightings spread over slot documents: each flush in one slot drawn
afresh, no document over a write per second at the deployed instance count,
and readers that see each bot's newest sighting whichever instance wrote it."""

import collections
import datetime
import random

from functions import ops
from functions.bot_liveness import (FLUSH_SECS, SHARDS, SLOTS, Sightings, docs_of, flags_doc, newest, shard_of,
                                    slot_doc)
from functions.bot_registry import BotRequest, Registry
from functions.bot_store import BotStore
from functions.fleet import Fleet
from functions.models import iso
from shared.bot_api import Poll
from tests.builders import bot_body

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
#: The deployed writers: bot_poll, bot_claim, bot_task_update and bot_event at
#: infra/terraform's default function_max_instances.
DEPLOYED_INSTANCES = 4 * 100


def _later(seconds: float) -> datetime.datetime:
    return NOW + datetime.timedelta(seconds=seconds)


def _bot(bot_id: str = "bot-1") -> BotRequest:
    return BotRequest.of(Poll.from_wire(bot_body(bot_id)).attributes, {})


def _one_bot_per_shard() -> list[str]:
    found: dict[int, str] = {}
    for n in range(1000):
        found.setdefault(shard_of(f"bot-{n}"), f"bot-{n}")
    return [found[shard] for shard in range(SHARDS)]


# Pure logic.

def test_sightings_flush_once_per_period_into_one_slot_of_each_shard():
    sightings = Sightings(flush_secs=30, rand=random.Random(1))
    bots = _one_bot_per_shard()
    for n, bot_id in enumerate(bots):
        sightings.record(bot_id, _later(n))
    assert sightings.take_due(_later(29)) == {}
    due = sightings.take_due(_later(30))
    slots = {doc_id.split("-")[1] for doc_id in due}
    assert len(slots) == 1
    slot = int(slots.pop())
    assert due == {slot_doc(shard_of(bot_id), slot): {bot_id: _later(n)} for n, bot_id in enumerate(bots)}
    assert sightings.take_due(_later(61)) == {}  # nothing seen since


def test_the_deployed_instances_keep_every_document_under_one_write_per_second():
    """Each of 400 instances serves bots of every shard all along and flushes
    every 30 s, for 10 simulated minutes: no document takes 60 writes in any
    minute. One document per shard would take 800."""
    bots = _one_bot_per_shard()
    instances = [Sightings(FLUSH_SECS, random.Random(n)) for n in range(DEPLOYED_INSTANCES)]
    phases = random.Random(0)
    calls = sorted((phases.uniform(0, 3) + 3 * step, n) for n in range(DEPLOYED_INSTANCES) for step in range(200))
    per_minute: collections.Counter[tuple[int, str]] = collections.Counter()
    for secs, n in calls:
        instances[n].record(bots[int(secs) % SHARDS], _later(secs))
        for doc_id in instances[n].take_due(_later(secs)):
            per_minute[int(secs // 60), doc_id] += 1
    assert {doc_id for _, doc_id in per_minute} == {slot_doc(s, slot) for s in range(SHARDS) for slot in range(SLOTS)}
    assert max(per_minute.values()) < 60


def test_the_newest_sighting_wins_across_documents():
    docs = [{"seen": {"a": _later(5), "b": _later(1)}}, {"seen": {"a": _later(9)}},
            {"seen": {"a": _later(2), "c": _later(3)}}, {"dead": {"c": True, "b": False}}, {}]
    assert newest(docs) == ({"a": _later(9), "b": _later(1), "c": _later(3)}, {"c"})


def test_a_reader_reads_each_shards_flags_and_slots():
    assert docs_of([1]) == [flags_doc(1)] + [slot_doc(1, slot) for slot in range(SLOTS)]
    assert len(set(docs_of(range(SHARDS)))) == SHARDS * (SLOTS + 1)


# On the emulator.

def _instances(svc, count: int) -> list[Registry]:
    """Function instances of their own, each flushing at every call."""
    return [Registry(svc.bot_store, Sightings(0.0, random.Random(n))) for n in range(count)]


def _written(svc) -> set[str]:
    return {snap.id for snap in svc.store.db.collection("bot_liveness").stream()}


def test_instances_spread_their_flushes_and_readers_see_each_bots_newest_sighting(svc):
    bot_ids = [f"bot-{n}" for n in range(12)]
    instances = _instances(svc, 6)
    order = random.Random(0)
    expected = {}
    for step in range(3 * len(instances)):
        instance = order.choice(instances)
        for bot_id in bot_ids:
            expected[bot_id] = _later(step)
            instance.see(bot_id, expected[bot_id])
    assert len(_written(svc)) > SHARDS  # more than one slot per shard
    with ops.counting() as count:
        assert svc.bot_store.read_liveness(list(range(SHARDS))) == (expected, set())
    assert (count.reads, count.writes) == (SHARDS * (SLOTS + 1), 0)


def test_a_reader_is_not_fooled_by_an_older_sighting_in_another_slot(svc):
    first, second = _instances(svc, 2)
    fleet = Fleet(svc.bot_store, death_timeout_secs=600)
    first.handshake(_bot(), NOW)
    second.see("bot-1", _later(500))
    first.see("bot-1", _later(1))  # a late flush of an older sighting
    shown = fleet.get("bot-1", _later(700), lambda pools: None)
    assert shown["last_seen_ts"] == iso(_later(500)) and not shown["is_dead"]


def test_a_flush_is_one_write_per_document(svc):
    store: BotStore = svc.bot_store
    sightings = Sightings(0.0, random.Random(3))
    for bot_id in _one_bot_per_shard():
        sightings.record(bot_id, NOW)
    with ops.counting() as count:
        store.write_sightings(sightings.take_due(NOW))
    assert (count.reads, count.writes) == (0, SHARDS)


def test_a_deleted_bot_is_forgotten_from_every_document_of_its_shard(svc):
    instances = _instances(svc, 4)
    fleet = Fleet(svc.bot_store, death_timeout_secs=600)
    instances[0].handshake(_bot(), NOW)
    for n, instance in enumerate(instances):
        instance.see("bot-1", _later(n))
    svc.bot_store.flag_dead_in_shard("bot-1", True)
    assert len(_written(svc)) > 2  # the flags and more than one slot
    fleet.delete("bot-1", _later(9))
    assert svc.bot_store.read_liveness([shard_of("bot-1")]) == ({}, set())
