"""The long poll (functions/long_poll.py) over real HTTP on the local stack:
a held poll is answered when a task comes, at the server's bound when none
does, loses nothing when its client leaves, follows a bot's new queues, and
many held polls share one listener. Time bounds are liveness bounds only."""

import concurrent.futures
import dataclasses
import time
import uuid

import pytest
import requests

from functions import long_poll, offers, store
from tests.builders import bot_body, task_body

#: What a bot asks for in these tests; the server's bound is SWARMING_POLL_HOLD_SECS.
HOLD = 30
#: Liveness: far above the sub-second pickup, far below the hold.
SOON = 15


def _poll_body(bot_id: str, pool: str = "default", hold: float = HOLD, **dims: list[str]) -> dict:
    body = bot_body(bot_id, pool=pool, request_uuid=uuid.uuid4().hex, hold_secs=hold)
    body["dimensions"].update(dims)
    return body


def _held(api, body: dict) -> concurrent.futures.Future:
    """The poll, sent on a thread of its own: its answer (and how long it took)."""

    def send() -> tuple[dict, float]:
        start = time.monotonic()
        answer = api.ok("bot_poll", body, role="bot")
        return answer, time.monotonic() - start

    return concurrent.futures.ThreadPoolExecutor(1).submit(send)


def _until(condition, timeout: float = SOON) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.05)


def _new_task(api, **dims: str) -> str:
    return api.ok("tasks_new", task_body(dimensions={"pool": "default", **dims}))["task_id"]


def _queue_of(api, svc, **dims: str) -> None:
    """Creates the queue of `dims` (a task, claimed at once by a bot that has
    them), so that a bot matching it waits on it."""
    task_id = _new_task(api, **dims)
    body = bot_body("warm-up")
    body["dimensions"].update({k: [v] for k, v in dims.items()})
    answer = api.ok("bot_poll", body, role="bot")
    assert answer["cmd"] == "claim", answer
    for candidate in answer["candidates"]:
        api.ok("bot_claim", {**body, **candidate, "claim_id": uuid.uuid4().hex}, role="bot")
    assert svc.store.get_result(task_id).state.value == "RUNNING"


def test_a_held_poll_is_answered_as_soon_as_a_task_comes(api, svc):
    _queue_of(api, svc, os="Linux")
    held = _held(api, _poll_body("held-1"))
    _until(lambda: svc.pending_watch.listening())
    time.sleep(0.5)
    assert not held.done()
    task_id = _new_task(api, os="Linux")
    answer, _ = held.result(timeout=SOON)
    assert answer["cmd"] == "claim" and answer["candidates"][0]["task_id"] == task_id
    claim = api.ok("bot_claim", {**bot_body("held-1"), **answer["candidates"][0], "claim_id": "c1"}, role="bot")
    assert claim["cmd"] == "run"


def test_a_held_poll_woken_by_a_task_reads_the_queue_afresh(api, svc, monkeypatch):
    """The instance's last read of the queue (functions/heads.py) holds only
    a slice offered to another bot: the woken poll does not answer from it
    (it would sleep on until the next look, long_poll.RECHECK_SECS)."""
    monkeypatch.setattr(offers, "TTL_SECS", 120.0)  # the other bot's offer outlasts the test
    monkeypatch.setattr(long_poll, "RECHECK_SECS", 120.0)  # no look at the queues but the wake
    offered = _new_task(api, os="Linux")
    other = api.ok("bot_poll", _poll_body("other", os=["Linux"]), role="bot")
    assert other["candidates"][0]["task_id"] == offered
    held = _held(api, _poll_body("held-1", os=["Linux"]))
    _until(lambda: svc.pending_watch.listening())
    time.sleep(0.2)
    assert not held.done()
    task_id = _new_task(api, os="Linux")
    answer, _ = held.result(timeout=SOON)
    assert answer["cmd"] == "claim" and [c["task_id"] for c in answer["candidates"]] == [task_id]


def test_an_old_bot_that_asks_no_hold_is_answered_at_once_with_its_back_off(api, svc):
    body = bot_body("old-bot", request_uuid=uuid.uuid4().hex, state={"sleep_streak": 20})
    start = time.monotonic()
    answer = api.ok("bot_poll", body, role="bot")
    assert answer["cmd"] == "sleep" and answer["duration"] >= 1  # 60 s, or now and then 1 s (scheduler.sleep_secs)
    assert time.monotonic() - start < SOON


def test_a_hold_ends_at_the_servers_bound_with_a_sleep_of_zero(api, svc):
    _queue_of(api, svc, os="Linux")
    svc.settings = dataclasses.replace(svc.settings, poll_hold_secs=1.5)
    response = api.post("bot_poll", _poll_body("bounded"), role="bot")
    answer = response.json()
    assert answer == {"cmd": "sleep", "duration": 0.0, "session": answer["session"]}
    assert 1.5 <= response.elapsed.total_seconds() < SOON
    assert int(response.headers["X-Firestore-Reads"]) >= 1


def test_the_server_bound_zero_turns_the_long_poll_off(api, svc):
    svc.settings = dataclasses.replace(svc.settings, poll_hold_secs=0.0)
    answer = api.ok("bot_poll", {**_poll_body("unheld"), "state": {"sleep_streak": 20}}, role="bot")
    assert answer["cmd"] == "sleep" and answer["duration"] >= 1  # 60 s, or now and then 1 s (scheduler.sleep_secs)


def test_a_held_poll_whose_client_left_loses_no_task(api, svc, tokens):
    _queue_of(api, svc, os="Linux")
    body = _poll_body("leaver")
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(f"{api.base_url}/bot_poll", json=body, timeout=1,
                      headers={"Authorization": f"Bearer {tokens.bot('leaver')}"})
    task_id = _new_task(api, os="Linux")  # Wakes the abandoned hold, which answers no one.
    answer = api.ok("bot_poll", _poll_body("leaver"), role="bot")
    assert answer["cmd"] == "claim" and answer["candidates"][0]["task_id"] == task_id
    claim = api.ok("bot_claim", {**bot_body("leaver"), **answer["candidates"][0], "claim_id": "c1"}, role="bot")
    assert claim["cmd"] == "run"


def test_a_held_bot_gets_a_task_of_a_queue_created_during_its_hold_at_its_next_poll(api, svc):
    _queue_of(api, svc, os="Linux")  # Held on it: a bot with no queue backs off.
    svc.settings = dataclasses.replace(svc.settings, poll_hold_secs=3.0)
    body = _poll_body("gpu-bot", gpu=["a100"])
    held = _held(api, body)
    time.sleep(1)
    task_id = _new_task(api, gpu="a100")
    answer, _ = held.result(timeout=SOON)
    assert answer["cmd"] == "sleep" and answer["duration"] == 0  # Its hold did not know the new queue.
    _until(lambda: api.ok("bot_poll", {**body, "request_uuid": uuid.uuid4().hex}, role="bot")["cmd"] == "claim")
    assert svc.store.get_result(task_id).state.value == "PENDING"


def test_many_held_polls_share_one_listener_and_a_task_wakes_one_of_them(api, svc, monkeypatch):
    monkeypatch.setattr(long_poll, "RECHECK_SECS", 20.0)  # No look of their own in between.
    _queue_of(api, svc, os="Linux")
    bots, tasks = 50, 5
    svc.settings = dataclasses.replace(svc.settings, poll_holds_per_queue=bots)
    polls = [_held(api, _poll_body(f"many-{i}", hold=28)) for i in range(bots)]
    _until(lambda: len(svc.pending_watch.listening()) == 1)
    time.sleep(1)
    assert not any(p.done() for p in polls)
    created = {_new_task(api, os="Linux") for _ in range(tasks)}
    _until(lambda: sum(p.done() for p in polls) >= tasks)
    time.sleep(1)
    woken = [p.result()[0] for p in polls if p.done()]
    assert len(woken) == tasks  # One per task, not a herd of 50 claiming each.
    assert all(a["cmd"] == "claim" and {c["task_id"] for c in a["candidates"]} <= created for a in woken)
    # Left unclaimed, the tasks are seen pending at the others' next look, as
    # when a woken poll's bot has gone, and offered again (their first
    # offers have lapsed), each to one of them: not the herd.
    later = [p.result(timeout=long_poll.RECHECK_SECS + SOON)[0] for p in polls if p.result() not in woken]
    offered = [a for a in later if a["cmd"] == "claim"]
    assert {c["task_id"] for a in offered for c in a["candidates"]} == created
    assert len(offered) < len(later)


def test_past_the_instances_holds_per_queue_bots_back_off(api, svc):
    _queue_of(api, svc, os="Linux")
    svc.settings = dataclasses.replace(svc.settings, poll_holds_per_queue=3)
    polls = [_held(api, {**_poll_body(f"crowd-{i}"), "state": {"sleep_streak": 20}}) for i in range(10)]
    _until(lambda: sum(p.done() for p in polls) >= 7)
    time.sleep(1)
    answered = [p.result()[0] for p in polls if p.done()]
    assert len(answered) == 7 and all(a["cmd"] == "sleep" and a["duration"] >= 1 for a in answered)
    _new_task(api, os="Linux")
    assert [p.result(timeout=SOON)[0]["cmd"] for p in polls if p.result() not in answered].count("claim") >= 1


def test_a_bot_with_no_queue_backs_off(api, svc):
    answer = api.ok("bot_poll", {**_poll_body("queueless", pool="race"), "state": {"sleep_streak": 20}}, role="bot")
    assert answer["cmd"] == "sleep" and answer["duration"] >= 1


def test_a_listener_on_a_deep_queue_holds_and_bills_only_its_window(api, svc):
    """A queue deeper than WATCH_LIMIT: the listener's first snapshot holds
    (and bills) the WATCH_LIMIT most urgent slices, not the queue; the
    first claimed lets the next one in (a burst's wakes follow its claims)."""
    created = [_new_task(api, os="Deep") for _ in range(store.WATCH_LIMIT + 5)]
    queue_key = svc.store.get_to_run(created[0], 0)[0].queue_key
    changes: list[tuple[int, int, int]] = []
    stop = svc.store.watch_pending(queue_key, lambda *change: changes.append(change))
    try:
        _until(lambda: changes)
        assert changes[0] == (store.WATCH_LIMIT, store.WATCH_LIMIT, store.WATCH_LIMIT)  # added, pending, reads
        body = bot_body("deep-bot")
        body["dimensions"]["os"] = ["Deep"]
        api.ok("bot_claim", {**body, "task_id": created[0], "slice": 0, "claim_id": "c0"}, role="bot")
        _until(lambda: len(changes) > 1)
        assert changes[-1] == (1, store.WATCH_LIMIT, 1)
    finally:
        stop()
