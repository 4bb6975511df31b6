"""Task queues: keys, matching, the per-instance cache, and polls that find
work through them."""

import concurrent.futures
import dataclasses
import datetime
import random
import threading
import time

import pytest

from functions import scheduler, tasks
from functions.bot_registry import BotRequest
from functions.heads import Heads
from functions.offers import Offers
from functions.queues import CACHE_SECS, FULL_READ_SECS, REFRESH, STAMP_MARGIN, QueueCache, TaskQueue
from functions.tasks import Requester
from shared import task_id as task_ids
from shared.bot_api import Poll
from shared.task_request import TaskRequest
from tests.builders import bot_body, task_body

# The present, not a fixed date: tasks made here arm real Cloud Tasks timers,
# which fire at once for a time already past.
NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
USER = Requester("user:someone@example.com", admin=True)  # admins may use any priority


def test_queue_key_names_the_normalised_dimensions_within_the_pool():
    a = TaskQueue.for_dimensions({"pool": ["p"], "os": ["Linux", "Ubuntu"]}, NOW)
    b = TaskQueue.for_dimensions({"os": ["Ubuntu", "Linux"], "pool": ["p"]}, NOW)
    c = TaskQueue.for_dimensions({"pool": ["p"], "os": ["Linux"]}, NOW)
    assert a.queue_key == b.queue_key != c.queue_key
    assert a.queue_key.startswith("p:")
    assert TaskQueue.from_doc(a.to_doc()) == a


def test_queue_matches_any_or_alternative():
    queue = TaskQueue.for_dimensions({"pool": ["p"], "os": ["Linux|Mac"]}, NOW)
    assert queue.matches(frozenset({"pool:p", "os:Mac", "id:b"}))
    assert not queue.matches(frozenset({"pool:p", "os:Windows"}))


def test_cache_reads_only_what_was_stamped_since_a_margin_before_the_newest_it_has():
    cache = QueueCache()
    old = dataclasses.replace(TaskQueue.for_dimensions({"pool": ["p"]}, NOW), updated_ts=NOW)
    new = dataclasses.replace(TaskQueue.for_dimensions({"pool": ["p"], "os": ["Linux"]}, NOW),
                              updated_ts=NOW + datetime.timedelta(seconds=5))
    loads = []

    def load(found):
        return lambda since: loads.append(since) or found

    assert cache.queues("p", NOW, load([old])) == [old]
    assert cache.queues("p", NOW + datetime.timedelta(seconds=CACHE_SECS), load([new])) == [old]
    later = NOW + datetime.timedelta(seconds=CACHE_SECS + 0.1)
    assert set(cache.queues("p", later, load([new]))) == {old, new}
    assert cache.queues("p", later + datetime.timedelta(seconds=CACHE_SECS + 0.1), load([])) != []
    # All at first, then only from a margin before the newest stamp known.
    assert loads == [None, NOW - STAMP_MARGIN, new.updated_ts - STAMP_MARGIN]
    assert cache.queues("p", old.expiry_ts, load([])) == []  # expired records drop out


class _Records:
    """Queue records as Firestore serves them: a record is read once
    committed, and a query returns those stamped at or after `since`."""

    def __init__(self) -> None:
        self.committed: list[TaskQueue] = []

    def commit(self, dims: dict[str, list[str]], stamp: datetime.datetime) -> TaskQueue:
        queue = dataclasses.replace(TaskQueue.for_dimensions(dims, NOW), updated_ts=stamp)
        self.committed.append(queue)
        return queue

    def load(self, since: datetime.datetime | None) -> list[TaskQueue]:
        return [q for q in self.committed if since is None or q.updated_ts >= since]


def test_a_record_stamped_before_the_newest_read_but_committed_after_it_is_seen_at_the_next_refresh():
    cache, records = QueueCache(), _Records()
    newest = records.commit({"pool": ["p"]}, NOW)
    assert cache.queues("p", NOW, records.load) == [newest]
    # Stamped when Firestore took the request, visible only once committed: after the read above.
    late = records.commit({"pool": ["p"], "os": ["Linux"]}, NOW - datetime.timedelta(milliseconds=20))
    later = NOW + datetime.timedelta(seconds=CACHE_SECS + 0.1)
    assert set(cache.queues("p", later, records.load)) == {newest, late}


def test_a_record_stamped_further_back_still_is_seen_at_the_next_full_read():
    cache, records = QueueCache(), _Records()
    newest = records.commit({"pool": ["p"]}, NOW)
    cache.queues("p", NOW, records.load)
    very_late = records.commit({"pool": ["p"], "os": ["Mac"]}, NOW - STAMP_MARGIN * 5)
    refreshed = NOW + datetime.timedelta(seconds=CACHE_SECS + 0.1)
    assert cache.queues("p", refreshed, records.load) == [newest]
    whole = NOW + datetime.timedelta(seconds=FULL_READ_SECS)
    assert set(cache.queues("p", whole, records.load)) == {newest, very_late}


def test_one_caller_refreshes_while_the_others_use_what_is_known():
    cache = QueueCache()
    known = dataclasses.replace(TaskQueue.for_dimensions({"pool": ["p"]}, NOW), updated_ts=NOW)
    cache.queues("p", NOW, lambda since: [known])
    later = NOW + datetime.timedelta(seconds=CACHE_SECS + 1)
    inner = []

    def slow_load(since):
        inner.append(cache.queues("p", later, lambda since: pytest.fail("a second refresh")))
        return []

    assert cache.queues("p", later, slow_load) == [known]
    assert inner == [[known]]


def test_queue_records_carry_their_commit_time(svc):
    queue = TaskQueue.for_dimensions({"pool": ["p"]}, NOW)
    svc.store.put_queue(queue)
    stored = svc.store.queues("p")[0]
    assert stored.updated_ts is not None and svc.store.queues("p", since=stored.updated_ts) == [stored]
    later = stored.updated_ts + datetime.timedelta(microseconds=1)
    assert svc.store.queues("p", since=later) == []


def test_cache_writes_a_queue_once_per_refresh_and_shows_its_own_writes_at_once():
    cache = QueueCache()
    queue = TaskQueue.for_dimensions({"pool": ["p"]}, NOW)
    assert cache.queues("p", NOW, lambda since: []) == []
    assert cache.needs_write(queue)
    cache.written(queue)
    assert cache.queues("p", NOW, lambda since: []) == [queue]
    assert not cache.needs_write(TaskQueue.for_dimensions({"pool": ["p"]}, NOW + REFRESH / 2))
    assert cache.needs_write(TaskQueue.for_dimensions({"pool": ["p"]}, NOW + REFRESH))


def _present() -> datetime.datetime:
    """Now, for the tests on the emulators: tasks created at a fixed time
    would meet their real expiry timers once the suite has run that long."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _new(svc, cache, body, now) -> str:
    """Creates a task on an instance whose queue cache is `cache`."""
    return tasks.new(dataclasses.replace(svc.context, queues=cache), TaskRequest.from_wire(body), USER,
                     now)["task_id"]


def _poll(svc, cache, now, **dims):
    body = bot_body()
    body["dimensions"].update(dims)
    bot = BotRequest.of(Poll.from_wire(body).attributes, {})
    return scheduler.poll(svc.store, cache, Heads(0), Offers(), svc.registry, bot, now, random.Random(0)).to_wire()


def test_a_new_queue_reaches_other_instances_within_the_cache_time(svc):
    creator, poller, now = QueueCache(), QueueCache(), _present()
    assert _poll(svc, poller, now)["cmd"] == "sleep"  # the poller has read the pool: empty
    task_id = _new(svc, creator, task_body(), now)
    assert _poll(svc, poller, now + datetime.timedelta(seconds=1))["cmd"] == "sleep"
    later = now + datetime.timedelta(seconds=CACHE_SECS + 1)
    assert _poll(svc, poller, later)["candidates"] == [{"task_id": task_id, "slice": 0}]


def test_poll_finds_or_dimensions_and_skips_other_queues(svc):
    cache, now = QueueCache(), _present()
    mac = _new(svc, cache, task_body(dimensions={"pool": "default", "os": "Linux|Mac"}), now)
    _new(svc, cache, task_body(dimensions={"pool": "default", "gpu": "yes"}), now)
    answer = _poll(svc, QueueCache(), now, os=["Mac"])
    assert [c["task_id"] for c in answer["candidates"]] == [mac]


def test_second_task_of_a_queue_writes_no_queue_record(api):
    first = api.post("tasks_new", task_body())
    second = api.post("tasks_new", task_body())
    assert first.headers["X-Firestore-Writes"] == "3"  # queue + the task + pending slice
    assert second.headers["X-Firestore-Writes"] == "2"
    assert second.headers["X-Cloud-Tasks-Ops"] == "1"  # its expiration timer


def test_idle_poll_with_a_warm_cache_and_its_session_costs_at_most_one_read_and_no_write(api):
    first = api.post("bot_poll", bot_body(), role="bot")
    assert first.headers["X-Firestore-Writes"] == "4"  # no session yet: its entry, 3 dimension values
    session = first.json()["session"]
    idle = api.post("bot_poll", bot_body(session=session), role="bot")
    assert idle.json()["cmd"] == "sleep"
    assert idle.headers["X-Firestore-Reads"] == "0" and idle.headers["X-Firestore-Writes"] == "0"
    api.ok("tasks_new", task_body(dimensions={"pool": "default", "gpu": "yes"}))
    unmatched = api.post("bot_poll", bot_body(session=session), role="bot")
    assert unmatched.json()["cmd"] == "sleep" and unmatched.headers["X-Firestore-Reads"] == "0"
    api.ok("tasks_new", task_body())
    busy = api.post("bot_poll", bot_body(session=session), role="bot")
    assert busy.json()["cmd"] == "claim" and busy.headers["X-Firestore-Reads"] == "1"
    assert busy.headers["X-Firestore-Writes"] == "0"


def _pending_order(svc, pool: str) -> tuple[list[str], list[str]]:
    cache, created, now = QueueCache(), [], _present()
    for i, priority in enumerate([50, 100, 100, 100, 10]):
        body = task_body(dimensions={"pool": pool}, priority=priority)
        created.append(_new(svc, cache, body, now + datetime.timedelta(seconds=i)))
    queue_key = TaskQueue.for_dimensions({"pool": [pool]}, now).queue_key
    return [t.task_id for t in svc.store.pending([queue_key], 10)], created


def test_priority_first_then_fifo(svc):
    order, created = _pending_order(svc, "default")
    assert order == [created[4], created[0], created[1], created[2], created[3]]


def test_priority_first_then_lifo_in_lifo_pools(svc):
    order, created = _pending_order(svc, "lifo")
    assert order == [created[4], created[0], created[3], created[2], created[1]]


def test_lifo_pool_comes_from_the_config(api, svc):
    assert svc.service_config.get().pool("lifo").lifo and not svc.service_config.get().pool("default").lifo
    first = api.ok("tasks_new", task_body(dimensions={"pool": "lifo"}))["task_id"]
    second = api.ok("tasks_new", task_body(dimensions={"pool": "lifo"}))["task_id"]
    queue_key = TaskQueue.for_dimensions({"pool": ["lifo"]}, NOW).queue_key
    assert [t.task_id for t in svc.store.pending([queue_key], 10)] == [second, first]


def test_server_enforced_dimensions_replace_what_the_bot_reports(api):
    in_default = api.ok("tasks_new", task_body())["task_id"]
    in_secure = api.ok("tasks_new", task_body(dimensions={"pool": "secure"}))["task_id"]
    body = bot_body("enforced-bot", pool="default")
    handshake = api.ok("bot_handshake", body, role="bot")
    assert handshake["bot_group_cfg"]["dimensions"] == {"pool": ["secure"]}
    answer = api.ok("bot_poll", body, role="bot")
    assert [c["task_id"] for c in answer["candidates"]] == [in_secure]
    claim = api.ok("bot_claim", {**body, "task_id": in_default, "slice": 0, "claim_id": "c"}, role="bot")
    assert claim["cmd"] == "skip"


def test_task_ids_drawn_in_the_same_millisecond_never_collide(svc, monkeypatch):
    """Ids repeat when the millisecond and the random bits do: a fresh id is drawn."""
    draws = iter([0x1230, 0x1230, 0x4560])
    monkeypatch.setattr(task_ids, "new_request_id", lambda now, rand=None: next(draws))
    cache, now = QueueCache(), _present()
    first = _new(svc, cache, task_body(), now)
    second = _new(svc, cache, task_body(), now)
    assert (first, second) == ("12300", "45600")
    assert svc.store.get_result(second).task_id == second


def test_the_first_read_of_a_pool_is_made_once_while_other_callers_wait():
    cache = QueueCache()
    known = dataclasses.replace(TaskQueue.for_dimensions({"pool": ["p"]}, NOW), updated_ts=NOW)
    release, loads = threading.Event(), []

    def slow_load(since):
        loads.append(since)
        release.wait(5)
        return [known]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = [pool.submit(cache.queues, "p", NOW, slow_load) for _ in range(4)]
        time.sleep(0.2)  # every caller is in: one loading, three waiting
        release.set()
        assert [a.result() for a in answers] == [[known]] * 4
    assert loads == [None]
