"""The scheduler's order: strictly the most urgent first for a bot alone on
its queues, different first candidates for concurrent bots, and the bound
on how far out of order a task may start (functions/offers.py)."""

import dataclasses
import datetime
import random

from functions import endpoints, offers, scheduler
from functions.heads import Heads
from functions.models import TaskToRun
from functions.offers import CONTESTED_SECS, MAX_CANDIDATES, MAX_SCAN, SCAN, TTL_SECS, Offers
from tests.builders import MonotonicClock, bot_body, task_body


NOW = datetime.datetime.now(datetime.UTC)


def _pending(count: int, priority: int = 100, start: int = 0) -> list[TaskToRun]:
    return [TaskToRun(task_id=f"t{start + i:04d}0", slice_index=0, queue_key="q", order_key=f"{priority:03d}:{i:015d}",
                      dimensions={}, expiration_ts=NOW) for i in range(count)]


def _ids(chosen: list[TaskToRun]) -> list[str]:
    return [t.task_id for t in chosen]


def test_a_bot_alone_gets_the_pending_slices_strictly_in_order():
    pending = _pending(8)
    for seed in range(20):
        assert _ids(Offers().choose("bot-1", pending, random.Random(seed))) == _ids(pending[:MAX_CANDIDATES])


def test_a_bot_polling_again_is_still_alone_and_gets_the_head_again():
    book, pending = Offers(), _pending(8)
    book.choose("bot-1", pending, random.Random(0))
    assert _ids(book.choose("bot-1", pending, random.Random(1)))[0] == pending[0].task_id


def test_concurrent_bots_get_different_first_candidates_of_the_head_priority():
    book = Offers()
    pending = _pending(10) + _pending(10, priority=200, start=10)
    firsts = [book.choose(f"bot-{b}", pending, random.Random(b))[0] for b in range(10)]
    assert len({t.task_id for t in firsts}) == 10
    assert all(t.order_key.startswith("100:") for t in firsts)  # never a lower priority while a higher is free


def test_after_a_lost_claim_a_bot_alone_on_the_instance_is_spread_for_a_while_then_in_order_again():
    """A lost claim shows bots of other instances competing: they are
    offered the head too, so this instance's polls spread."""
    clock = MonotonicClock()
    book, pending = Offers(clock), _pending(SCAN)
    book.lost()
    firsts = {tuple(_ids(book.choose("bot-1", pending, random.Random(seed)))) for seed in range(20)}
    assert all(len(chosen) == 1 for chosen in firsts) and len(firsts) > 1
    assert {chosen[0] for chosen in firsts} <= set(_ids(pending))
    clock.now += CONTESTED_SECS
    assert _ids(book.choose("bot-1", pending, random.Random(0))) == _ids(pending[:MAX_CANDIDATES])


def test_a_slice_another_bot_holds_is_offered_to_no_one_until_the_offer_lapses():
    clock = MonotonicClock()
    book, pending = Offers(clock), _pending(2)
    book.choose("bot-1", pending, random.Random(0))
    clock.now += 1.0
    book.choose("bot-2", pending, random.Random(0))
    assert not book.any_free("bot-3", pending) and book.any_free("bot-1", pending)  # its own offer is free to it
    assert book.choose("bot-3", pending, random.Random(0)) == []  # both held: no race with their holders
    assert book.lapse_secs(pending) == TTL_SECS - 1.0  # bot-1's, the first to lapse
    clock.now += book.lapse_secs(pending)
    assert _ids(book.choose("bot-3", pending, random.Random(0))) == _ids(pending[:1])


def test_an_offer_lapses_or_is_released_when_its_claim_is_refused():
    clock = MonotonicClock()
    book, pending = Offers(clock), _pending(3)
    held = book.choose("bot-1", pending, random.Random(0))[0]
    assert book.scan_size("bot-2") == SCAN + offers.SPREAD
    book.release(held)
    assert book.scan_size("bot-2") == SCAN
    book.choose("bot-1", pending, random.Random(0))
    clock.now += TTL_SECS
    assert book.scan_size("bot-2") == SCAN
    assert _ids(book.choose("bot-2", pending, random.Random(5))) == _ids(pending)  # alone again: in order


def test_a_claimed_slice_read_again_before_its_commit_is_not_offered_and_order_is_kept():
    book, pending = Offers(), _pending(MAX_CANDIDATES - 1)
    first = book.choose("bot-1", pending, random.Random(0))[0]
    book.take(first)
    for seed in range(10):  # the lone bot's next poll read the claimed slice still pending
        assert _ids(book.choose("bot-1", pending, random.Random(seed))) == _ids(pending[1:])
    assert book.choose("bot-2", pending[:1], random.Random(0)) == []


def test_the_retry_of_a_claimed_try_is_offered_at_once():
    """A try claimed, then lost (its bot died before it started): its retry
    is pending again and must not wait for the claim's hold to lapse."""
    book, [first] = Offers(), _pending(1)
    book.take(first)
    retry = dataclasses.replace(first, try_number=2, excluded_bot="bot-1")
    assert book.choose("bot-2", [first], random.Random(0)) == []
    assert book.choose("bot-2", [retry], random.Random(0)) == [retry]


def test_the_scan_widens_with_the_offers_held_up_to_its_bound():
    book = Offers()
    pending = _pending(MAX_SCAN + 20)
    for b in range(MAX_SCAN + 10):
        chosen = book.choose(f"bot-{b}", pending[:book.scan_size(f"bot-{b}")], random.Random(b))
        # The bound: a first candidate is never past the scan's end; past
        # MAX_SCAN offers held, the scan holds none free.
        assert pending.index(chosen[0]) < MAX_SCAN if b < MAX_SCAN else chosen == []
    assert book.scan_size("bot-new") == MAX_SCAN


def test_one_bot_polling_runs_equal_priority_tasks_oldest_first(api):
    """Through the service: tasks of one priority, created in turn, start in
    the order they were created, however many there are to choose from."""
    created = [api.ok("tasks_new", task_body(command=["echo", str(i)]))["task_id"] for i in range(12)]
    started = []
    for _ in created:
        answer = api.ok("bot_poll", bot_body(), role="bot")
        candidate = answer["candidates"][0]
        claim = api.ok("bot_claim", {**bot_body(), **candidate, "claim_id": candidate["task_id"]}, role="bot")
        started.append(candidate["task_id"])
        api.ok("bot_task_update", {**bot_body(), "task_id": claim["manifest"]["task_id"], "exit_code": 0,
                                   "duration": 0.1}, role="bot")
    assert started == created
    assert offers.SCAN < len(created)  # the order held beyond one scan's worth


def test_a_bot_whose_only_task_is_offered_to_another_sleeps_until_that_offer_lapses(api, monkeypatch):
    """Through the service: many bots on a shallow queue do not all race for
    each new task; the one it was offered to claims it."""
    task_id = api.ok("tasks_new", task_body())["task_id"]
    first = api.ok("bot_poll", bot_body("bot-1"), role="bot")
    assert [c["task_id"] for c in first["candidates"]] == [task_id]
    second = api.ok("bot_poll", bot_body("bot-2"), role="bot")
    assert second["cmd"] == "sleep"
    assert TTL_SECS - 1 < second["duration"] <= TTL_SECS * 1.2 + scheduler.HELD_MARGIN_SECS
    # One that keeps finding only held slices backs off as an idle bot (a
    # seed whose first draw is not the back-off's rare quick comeback).
    monkeypatch.setattr(endpoints, "_rand", random.Random(1))
    backed_off = api.ok("bot_poll", bot_body("bot-3", state={"sleep_streak": 20}), role="bot")
    assert backed_off["cmd"] == "sleep" and backed_off["duration"] >= 0.9 * scheduler.MAX_SLEEP_SECS
    claim = api.ok("bot_claim", {**bot_body("bot-1"), **first["candidates"][0], "claim_id": "c-1"}, role="bot")
    assert claim["cmd"] == "run"


def test_polls_of_an_instance_reuse_its_read_of_the_heads_and_never_offer_a_claimed_slice(api, svc, monkeypatch):
    """Through the service (functions/heads.py): after one poll's read, the
    polls of other bots on the queue read no slice, and each gets one nobody
    else was offered; a slice claimed is offered to no one, read again or not."""
    monkeypatch.setattr(svc, "heads", Heads(60.0))  # however slow the machine, the polls below come within it
    created = [api.ok("tasks_new", task_body(command=["echo", str(i)]))["task_id"] for i in range(6)]
    first = api.post("bot_poll", bot_body("bot-0"), role="bot")
    offered = [first.json()["candidates"][0]["task_id"]]
    assert int(first.headers["X-Firestore-Reads"]) >= len(created)
    for b in range(1, 4):
        answer = api.post("bot_poll", bot_body(f"bot-{b}"), role="bot")
        assert int(answer.headers["X-Firestore-Reads"]) <= 1  # the bot's own record, at most: no slice
        offered.append(answer.json()["candidates"][0]["task_id"])
    assert len(set(offered)) == 4 and set(offered) <= set(created)
    for b, task_id in enumerate(offered):
        claim = api.ok("bot_claim", {**bot_body(f"bot-{b}"), "task_id": task_id, "slice": 0, "claim_id": f"c{b}"},
                       role="bot")
        assert claim["cmd"] == "run"
    later = api.ok("bot_poll", bot_body("bot-9"), role="bot")
    assert later["cmd"] == "claim" and later["candidates"][0]["task_id"] in set(created) - set(offered)


def test_a_claim_of_a_slice_already_gone_drops_the_read_that_offered_it(api, svc, monkeypatch):
    """Through the service: a task cancelled after the instance read it is
    offered from that read; its claim finds it gone, and the next poll reads
    the queue afresh instead of trusting the rest of a stale read."""
    monkeypatch.setattr(svc, "heads", Heads(60.0))
    created = [api.ok("tasks_new", task_body(command=["echo", str(i)]))["task_id"] for i in range(4)]
    first = api.ok("bot_poll", bot_body(), role="bot")
    assert first["candidates"][0]["task_id"] == created[0]
    api.ok("task_cancel", {"task_id": created[0]})
    claim = api.ok("bot_claim", {**bot_body(), "task_id": created[0], "slice": 0, "claim_id": "c0"}, role="bot")
    assert claim["cmd"] == "skip"
    again = api.post("bot_poll", bot_body(), role="bot")
    assert int(again.headers["X-Firestore-Reads"]) >= len(created) - 1  # the 3 left, read again
    assert [c["task_id"] for c in again.json()["candidates"]] == created[1:]


def test_a_claim_lost_to_a_bot_of_another_instance_spreads_the_polls_of_this_one(api):
    """Through the service: bot-2 claims the head without polling here, as a
    bot of another instance does; bot-1, offered the head, loses it, and its
    polls get one candidate, not the head's run, while others compete."""
    created = [api.ok("tasks_new", task_body(command=["echo", str(i)]))["task_id"] for i in range(8)]
    first = api.ok("bot_poll", bot_body("bot-1"), role="bot")
    assert [c["task_id"] for c in first["candidates"]] == created[:MAX_CANDIDATES]
    won = api.ok("bot_claim", {**bot_body("bot-2"), "task_id": created[0], "slice": 0, "claim_id": "c2"}, role="bot")
    assert won["cmd"] == "run"
    lost = api.ok("bot_claim", {**bot_body("bot-1"), "task_id": created[0], "slice": 0, "claim_id": "c1"}, role="bot")
    assert lost["cmd"] == "skip"
    again = api.ok("bot_poll", bot_body("bot-1"), role="bot")
    assert len(again["candidates"]) == 1 and again["candidates"][0]["task_id"] in created[1:]


def test_a_bots_own_claim_sent_twice_is_no_sign_of_contention(api):
    """A duplicate claim (the same claim_id, a network retry) is answered
    with the run the bot won; the instance's polls stay strictly in order."""
    created = [api.ok("tasks_new", task_body(command=["echo", str(i)]))["task_id"] for i in range(8)]
    claim = {**bot_body("bot-1"), "task_id": created[0], "slice": 0, "claim_id": "c1"}
    assert api.ok("bot_claim", claim, role="bot")["cmd"] == "run"
    assert api.ok("bot_claim", claim, role="bot")["cmd"] == "run"
    later = api.ok("bot_poll", bot_body("bot-2"), role="bot")
    assert [c["task_id"] for c in later["candidates"]] == created[1:1 + MAX_CANDIDATES]
