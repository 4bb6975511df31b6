"""Timers under faults, on the real emulators: deliveries early, late,
duplicated and concurrent; a sweep meeting a task locked by a transaction; and
Cloud Tasks failing at the timers' client transport (a create whose answer is
lost after it succeeded, creates refused), which the emulator cannot do."""

import base64
import concurrent.futures
import datetime
import json
import logging
import threading
import time
from typing import Any

import grpc
import pytest
from google.api_core import exceptions as gexc
from google.cloud import firestore, tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

from functions import bot_death, models, store, sweep, timers
from local import cloud_tasks_emulator
from tests.builders import bot_body
from tests.grpc_faults import InjectedStatus
from tests.test_lifecycle import _claim, _drop_timers, _result, _task, _update, _wait_state

SECOND = datetime.timedelta(seconds=1)
#: Concurrent deliveries of one timer.
DELIVERIES = 8
#: Generous: a 503 for an unreachable Cloud Tasks comes after a few seconds of retries.
UNAVAILABLE_WITHIN_SECS = 15


def _queued(svc, cloud_tasks, handler: str, task_id: str) -> list[tuple[int, dict[str, Any]]]:
    """The `handler` timers waiting in the emulator's queue for `task_id`:
    (second due, body), in order."""
    client = cloud_tasks_emulator.client_for(cloud_tasks.host)
    listed = client.list_tasks(request=tasks_v2.ListTasksRequest(parent=svc.settings.tasks_queue,
                                                                 response_view=tasks_v2.Task.View.FULL))
    found = [(int(t.schedule_time.timestamp()), json.loads(t.http_request.body)) for t in listed
             if t.name.rpartition("/")[2].startswith(f"{handler}-")]
    return sorted(timer for timer in found if timer[1]["task_id"] == task_id)


def _second(iso: str) -> int:
    return int(datetime.datetime.fromisoformat(iso).timestamp())


def _at(clock, second: float) -> None:
    """Moves the service's clock so that it is now `second` (epoch seconds)."""
    clock.offset = datetime.datetime.fromtimestamp(second, datetime.UTC) - datetime.datetime.now(datetime.UTC)


def _deliver_at_once(api, function: str, body: dict[str, Any]) -> list[Any]:
    with concurrent.futures.ThreadPoolExecutor(DELIVERIES) as pool:
        return list(pool.map(lambda _: api.post(function, body, role="admin"), range(DELIVERIES)))


def _started(api, run_id: str) -> None:
    """The run wrote output: its command started, so BOT_DIED does not retry it."""
    assert _update(api, run_id, output=base64.b64encode(b"x").decode()).status_code == 200


# Early, duplicated, concurrent and late deliveries.

def test_early_deliveries_arm_one_timer_per_due_second(api, svc, clock, cloud_tasks):
    task_id = _task(api, bot_ping_tolerance_secs=60)["task_id"]
    run_id = _claim(api, task_id)["task_id"]
    [(claimed, _)] = _queued(svc, cloud_tasks, "timer_bot_died", task_id)
    clock.offset = 30 * SECOND
    _update(api, run_id)  # a heartbeat: the try is now due 60 s after it
    answers = []
    for offset in (31, 45, 59):  # each early delivery at its own time, as the claim's timer or another one
        clock.offset = offset * SECOND
        answers.append(api.ok("timer_bot_died", {"task_id": task_id, "try_number": 1, "due": claimed}, "admin"))
        answers.append(api.ok("timer_bot_died", {"task_id": task_id, "try_number": 1}, "admin"))
    answers += [r.json() for r in _deliver_at_once(api, "timer_bot_died", {"task_id": task_id, "try_number": 1})]
    assert {a["done"] for a in answers} == {"alive"} and len({a["next"] for a in answers}) == 1
    rearmed = _second(answers[0]["next"])
    assert rearmed >= claimed + 30
    assert _queued(svc, cloud_tasks, "timer_bot_died", task_id) == [
        (claimed, {"task_id": task_id, "try_number": 1, "due": claimed}),
        (rearmed, {"task_id": task_id, "try_number": 1, "due": rearmed})]


@pytest.mark.parametrize("handler, body", [
    ("timer_bot_died", {"try_number": 1}),
    ("timer_expire", {"slice": 0}),
])
def test_a_timer_delivered_before_its_second_arms_the_next_second_once(api, svc, clock, cloud_tasks, handler, body):
    """Cloud Tasks' clock ahead of the functions': the timer cannot be armed
    again under its own name (taken until an hour after its delivery)."""
    task_id = _task(api, bot_ping_tolerance_secs=60)["task_id"]
    if handler == "timer_bot_died":
        _claim(api, task_id)
    [(second, _)] = _queued(svc, cloud_tasks, handler, task_id)
    _at(clock, second - 3)  # before the due time, which is within the second before `second`
    for _ in range(3):
        answer = api.ok(handler, {"task_id": task_id, **body, "due": second}, role="admin")
        assert answer["done"] in ("alive", "not yet")
    assert [due for due, _ in _queued(svc, cloud_tasks, handler, task_id)] == [second, second + 1]


@pytest.mark.parametrize("started, ended", [(True, "BOT_DIED"), (False, "PENDING")])
def test_concurrent_late_deliveries_end_the_try_once(api, clock, started, ended):
    """PENDING: a try that never started is retried once, on another bot."""
    task_id = _task(api, bot_ping_tolerance_secs=60)["task_id"]
    run_id = _claim(api, task_id)["task_id"]
    if started:
        _started(api, run_id)
    clock.offset = 61 * SECOND
    answers = _deliver_at_once(api, "timer_bot_died", {"task_id": task_id, "try_number": 1})
    assert [a.status_code for a in answers] == [200] * DELIVERIES, [a.text for a in answers]
    done = sorted(a.json()["done"] for a in answers)
    assert done == sorted([ended] + ["the try is no longer running"] * (DELIVERIES - 1))
    assert _result(api, task_id)["state"] == ended
    if not started:  # one pending retry, for another bot
        candidates = api.ok("bot_poll", bot_body("bot-2"), role="bot")["candidates"]
        assert candidates == [{"task_id": task_id, "slice": 0}]
        _claim(api, task_id, "bot-2", try_number=2)


def test_concurrent_deliveries_of_an_expiry_expire_the_slice_once(api, clock):
    task_id = _task(api)["task_id"]
    clock.offset = 601 * SECOND
    answers = _deliver_at_once(api, "timer_expire", {"task_id": task_id, "slice": 0})
    assert [a.status_code for a in answers] == [200] * DELIVERIES, [a.text for a in answers]
    done = sorted(a.json()["done"] for a in answers)
    assert done == sorted(["expired"] + ["the slice is no longer pending"] * (DELIVERIES - 1))
    assert _result(api, task_id)["state"] == "EXPIRED"


@pytest.mark.parametrize("function, body", [
    ("timer_expire", {"task_id": "a/b", "slice": 0}),
    ("timer_expire", {"task_id": "5a5a5a5a5a5a5a51", "slice": 0}),  # a run id: timers name the task
    ("timer_expire", {"slice": 0}),
    ("timer_bot_died", {"task_id": "../x0", "try_number": 1}),
    ("timer_bot_died", {"task_id": ["5a5a5a5a5a5a5a50"], "try_number": 1}),
])
def test_a_timer_with_a_malformed_task_id_is_400_naming_it(api, function, body):
    response = api.post(function, body, role="admin")
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == "task_id"


@pytest.mark.parametrize("function, fields, field", [
    ("timer_expire", {"slice": 0, "due": "soon"}, "due"),
    ("timer_expire", {"slice": 0, "due": 10 ** 20}, "due"),  # past what a timestamp holds
    # Past what Cloud Tasks can schedule: an early delivery could not re-arm there.
    ("timer_expire", {"slice": 0, "due": int(time.time()) + 31 * 24 * 3600}, "due"),
    ("timer_bot_died", {"try_number": 1, "due": int(time.time()) + 31 * 24 * 3600}, "due"),
    ("timer_expire", {"slice": 8}, "slice"),  # a task has 8 slices at most
    ("timer_bot_died", {"try_number": 0}, "try_number"),
    ("timer_bot_died", {"try_number": 1, "when": 0}, "when"),
])
def test_a_timer_with_another_malformed_field_is_400_naming_it(api, function, fields, field):
    task_id = _task(api)["task_id"]
    response = api.post(function, {"task_id": task_id, **fields}, role="admin")
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field


# The sweep.

class Lock:
    """A transaction's lock on a task's result, held by a thread until
    released: the emulator makes a write to the document wait 2 s, then fail."""

    def __init__(self, project: str, task_id: str):
        self._released = threading.Event()
        db = firestore.Client(project=project)
        ref = db.collection(store.TASK_RESULTS).document(store.hashed(task_id))
        held = threading.Event()

        @firestore.transactional
        def read_and_wait(transaction) -> None:
            ref.get(transaction=transaction)
            held.set()
            self._released.wait(60)

        self._holder = threading.Thread(target=read_and_wait, args=(db.transaction(),))
        self._holder.start()
        assert held.wait(10)

    def release(self) -> None:
        self._released.set()
        self._holder.join(10)


# After an outage: a late delivery gives the bots time to report again.

def _bot_died(api, task_id: str, due: int) -> dict[str, Any]:
    return api.ok("timer_bot_died", {"task_id": task_id, "try_number": 1, "due": due}, "admin")


def test_a_timer_delivered_late_gives_the_silent_run_the_outage_grace(api, svc, clock, cloud_tasks):
    """Firestore was unreachable for 5 minutes: the timer could not be served
    and neither could the bot's heartbeats. The run is not declared dead (nor
    retried beside the bot still running it) until the grace has passed."""
    task_id = _task(api, bot_ping_tolerance_secs=60)["task_id"]
    run_id = _claim(api, task_id)["task_id"]
    _started(api, run_id)
    [(claimed, _)] = _queued(svc, cloud_tasks, "timer_bot_died", task_id)
    clock.offset = 60 * SECOND + 5 * 60 * SECOND  # delivered at last, 5 minutes after its second
    answer = _bot_died(api, task_id, claimed)
    assert answer["done"] == "alive" and _result(api, task_id)["state"] == "RUNNING"
    grace_end = _second(answer["next"])
    assert abs(grace_end - (time.time() + clock.offset.total_seconds() + bot_death.OUTAGE_GRACE.seconds)) < 30
    assert grace_end in [second for second, _ in _queued(svc, cloud_tasks, "timer_bot_died", task_id)]
    clock.offset += bot_death.OUTAGE_GRACE - 30 * SECOND
    _update(api, run_id)  # the bot reports again within the grace
    clock.offset += 30 * SECOND
    assert _bot_died(api, task_id, grace_end)["done"] == "alive"  # on time, and it reported: alive


def test_a_run_silent_through_the_grace_dies_on_its_timer(api, svc, clock, cloud_tasks):
    task_id = _task(api, bot_ping_tolerance_secs=60)["task_id"]
    _started(api, _claim(api, task_id)["task_id"])
    [(claimed, _)] = _queued(svc, cloud_tasks, "timer_bot_died", task_id)
    clock.offset = 60 * SECOND + 10 * 60 * SECOND
    grace_end = _second(_bot_died(api, task_id, claimed)["next"])
    clock.offset += bot_death.OUTAGE_GRACE
    assert _bot_died(api, task_id, grace_end) == {"done": "BOT_DIED"}


def test_a_silence_longer_than_any_outage_is_the_bots_own(api, svc, clock, cloud_tasks):
    task_id = _task(api, bot_ping_tolerance_secs=60)["task_id"]
    _started(api, _claim(api, task_id)["task_id"])
    [(claimed, _)] = _queued(svc, cloud_tasks, "timer_bot_died", task_id)
    clock.offset = 60 * SECOND + bot_death.MAX_OUTAGE
    assert _bot_died(api, task_id, claimed) == {"done": "BOT_DIED"}


def test_a_timer_late_by_less_than_an_outage_decides_at_once(api, svc, clock, cloud_tasks):
    task_id = _task(api, bot_ping_tolerance_secs=60)["task_id"]
    _started(api, _claim(api, task_id)["task_id"])
    [(claimed, _)] = _queued(svc, cloud_tasks, "timer_bot_died", task_id)
    clock.offset = 60 * SECOND + bot_death.LATE_DELIVERY - 5 * SECOND
    assert _bot_died(api, task_id, claimed) == {"done": "BOT_DIED"}


def test_a_locked_task_is_skipped_by_the_sweep_and_the_rest_swept(api, svc, clock, cloud_tasks, caplog):
    locked, other = (_task(api, bot_ping_tolerance_secs=60)["task_id"] for _ in range(2))
    for task_id in (locked, other):
        _started(api, _claim(api, task_id)["task_id"])
    _drop_timers(svc, cloud_tasks)
    # Silent long enough for the sweep, and late by less than bot_death.LATE_DELIVERY: no outage grace.
    clock.offset = 40 * SECOND + sweep.SILENT
    lock = Lock(svc.settings.project, locked)
    try:
        swept = api.ok("cron_sweep", {}, role="admin")
    finally:
        lock.release()
    assert (swept["dead_runs"], swept["failed"]) == (1, 1)
    assert (_result(api, locked)["state"], _result(api, other)["state"]) == ("RUNNING", "BOT_DIED")
    failures = [r for r in caplog.records if r.name == sweep.__name__ and r.levelno == logging.ERROR]
    assert len(failures) == 1 and locked in failures[0].getMessage()
    swept = api.ok("cron_sweep", {}, role="admin")  # the next sweep: the lock is gone
    assert (swept["dead_runs"], swept["failed"]) == (1, 0)
    assert _result(api, locked)["state"] == "BOT_DIED"


def test_a_lane_whose_query_fails_is_named_and_the_others_swept(api, svc, clock, cloud_tasks, monkeypatch, caplog):
    """A query past its deadline on a loaded Firestore (seen in the load
    bench) fails its lane, not the sweep: the task of another shard is
    still repaired, and the sweep answers 200."""
    task_id = _task(api, bot_ping_tolerance_secs=60)["task_id"]
    _started(api, _claim(api, task_id)["task_id"])
    _drop_timers(svc, cloud_tasks)
    failing = (models.shard_of(task_id) + 1) % models.SHARDS
    silent_runs = store.Store.silent_runs

    def past_its_deadline(self: store.Store, shard: int, *args: Any) -> Any:
        if shard == failing:
            raise gexc.DeadlineExceeded("injected")
        return silent_runs(self, shard, *args)

    monkeypatch.setattr(store.Store, "silent_runs", past_its_deadline)
    clock.offset = 40 * SECOND + sweep.SILENT
    swept = api.ok("cron_sweep", {}, role="admin")
    assert swept["failed_lanes"] == [f"shard {failing}"]
    assert len(swept["swept"]) == models.SHARDS + 1 and swept["dead_runs"] == 1
    assert _result(api, task_id)["state"] == "BOT_DIED"
    assert any(f"lane shard {failing} failed" in r.getMessage() for r in caplog.records if r.name == sweep.__name__)


# Cloud Tasks failing, at the timers' client transport.

class CreateFaults(grpc.UnaryUnaryClientInterceptor):
    """Between the timers' client and the emulator, on CreateTask only: the
    next `lose` creates reach the emulator, but their answer is lost
    (DEADLINE_EXCEEDED); while `refuse`, creates never reach it (UNAVAILABLE).
    `outcomes`: what each create got, by status name."""

    def __init__(self) -> None:
        self.lose = 0
        self.refuse = False
        self.outcomes: list[str] = []

    def intercept_unary_unary(self, continuation, details, request):
        if not details.method.endswith("/CreateTask"):
            return continuation(details, request)
        if self.refuse:
            self.outcomes.append("refused")
            return InjectedStatus(grpc.StatusCode.UNAVAILABLE)
        outcome = continuation(details, request)
        if self.lose and outcome.code() == grpc.StatusCode.OK:
            self.lose -= 1
            self.outcomes.append("lost")
            return InjectedStatus(grpc.StatusCode.DEADLINE_EXCEEDED)
        self.outcomes.append(outcome.code().name)
        return outcome


@pytest.fixture
def faults(svc, cloud_tasks, monkeypatch: pytest.MonkeyPatch) -> CreateFaults:
    """The service's timers, through a client whose channel goes through CreateFaults."""
    injected = CreateFaults()
    channel = grpc.intercept_channel(grpc.insecure_channel(cloud_tasks.host), injected)
    client = tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
    assert "context" not in vars(svc)  # built from svc.timers on first use: not yet
    monkeypatch.setattr(svc, "timers", timers.Timers(client, svc.timers.settings))
    return injected


def test_a_timer_created_whose_answer_was_lost_counts_as_armed(api, svc, clock, cloud_tasks, faults):
    faults.lose = 1
    clock.offset = -29 * SECOND  # created 29 s "ago": its 30 s expiration falls due in about a second
    expiring = _task(api, task_slices=[{"properties": {"command": ["true"], "dimensions": [
        {"key": "pool", "value": "default"}]}, "expiration_secs": 30, "wait_for_capacity": True}])["task_id"]
    assert faults.outcomes == ["lost", "ALREADY_EXISTS"]  # retried under its name: already there
    assert len(_queued(svc, cloud_tasks, "timer_expire", expiring)) == 1  # no duplicate
    clock.offset = -59 * SECOND  # claimed 59 s "ago": its BOT_DIED timer falls due in about a second
    dying = _task(api, bot_ping_tolerance_secs=60)["task_id"]
    faults.lose = 1
    _started(api, _claim(api, dying)["task_id"])
    assert faults.outcomes[-2:] == ["lost", "ALREADY_EXISTS"]
    assert len(_queued(svc, cloud_tasks, "timer_bot_died", dying)) == 1
    clock.offset = datetime.timedelta()
    # Their timers, delivered by the emulator, end them.
    assert _wait_state(api, expiring, {"EXPIRED"})["state"] == "EXPIRED"
    assert _wait_state(api, dying, {"BOT_DIED"})["state"] == "BOT_DIED"


def test_a_timer_cloud_tasks_would_not_create_leaves_its_task_to_the_sweep(api, svc, clock, cloud_tasks, faults):
    started, fresh = (_task(api, bot_ping_tolerance_secs=60)["task_id"] for _ in range(2))
    started_run = _claim(api, started)["task_id"]
    _claim(api, fresh)
    _started(api, started_run)
    clock.offset = 30 * SECOND
    _update(api, started_run)  # a heartbeat: due again 60 s later
    faults.refuse = True
    clock.offset = 61 * SECOND  # the claim's timer: re-armed from the heartbeat, but no timer can be made
    begin = time.monotonic()
    refused = api.post("timer_bot_died", {"task_id": started, "try_number": 1}, role="admin")
    assert refused.status_code == 503 and "Cloud Tasks" in refused.json()["error"]["message"]
    assert time.monotonic() - begin < UNAVAILABLE_WITHIN_SECS
    _drop_timers(svc, cloud_tasks)  # and Cloud Tasks dropped the timer for good
    clock.offset = 40 * SECOND + sweep.SILENT  # both due, neither late by bot_death.LATE_DELIVERY
    swept = api.ok("cron_sweep", {}, role="admin")
    # Ending the started run needs no timer; retrying the fresh one needs its slice's.
    assert (swept["dead_runs"], swept["failed"]) == (1, 1)
    assert (_result(api, started)["state"], _result(api, fresh)["state"]) == ("BOT_DIED", "RUNNING")
    faults.refuse = False
    swept = api.ok("cron_sweep", {}, role="admin")
    assert (swept["dead_runs"], swept["failed"]) == (1, 0)
    assert _result(api, fresh)["state"] == "PENDING"  # retried, on another bot
    assert api.ok("bot_poll", bot_body("bot-2"), role="bot")["candidates"] == [{"task_id": fresh, "slice": 0}]
