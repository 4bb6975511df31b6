"""Every state of the task model, through the real gateway, Firestore and
Cloud Tasks emulators; timers are delivered by the emulator (the service's
clock is moved so that a 30 s expiration falls due in about a second)."""

import base64
import concurrent.futures
import datetime
import time
import uuid

import pytest

from functions import bot_death, cancellation, dedup, stdout, store, sweep
from local import cloud_tasks_emulator
from tests.builders import bot_body, task_body

SECOND = datetime.timedelta(seconds=1)


def _task(api, role="user", **fields):
    return api.ok("tasks_new", task_body(**fields), role=role)


def _slice(dims, wait=True, expiration=600, **props):
    properties = {"command": ["true"], "dimensions": [{"key": k, "value": v} for k, v in dims.items()], **props}
    return {"properties": properties, "expiration_secs": expiration, "wait_for_capacity": wait}


def _result(api, task_id):
    return api.ok("task_result", {"task_id": task_id})


def _wait_state(api, task_id, states, timeout=15.0):
    deadline = time.monotonic() + timeout
    while (state := _result(api, task_id)["state"]) not in states:
        assert time.monotonic() < deadline, f"{task_id} still {state}"
        time.sleep(0.1)
    return _result(api, task_id)


def _claim(api, task_id, bot_id="bot-1", try_number=1, **dims):
    body = bot_body(bot_id, task_id=task_id, slice=0, claim_id=uuid.uuid4().hex)
    body["dimensions"].update(dims)
    answer = api.ok("bot_claim", body, role="bot")
    assert answer["cmd"] == "run", answer
    assert answer["manifest"]["task_id"].endswith(str(try_number))
    return answer["manifest"]


def _update(api, run_id, bot_id="bot-1", **fields):
    return api.post("bot_task_update", bot_body(bot_id, task_id=run_id, **fields), role="bot")


# Creation.

def test_no_live_bot_means_no_resource_unless_waiting_for_capacity(api):
    refused = api.ok("tasks_new", {"task_slices": [_slice({"pool": "empty"}, wait=False)]})
    assert refused["task_result"]["state"] == "NO_RESOURCE"
    waiting = api.ok("tasks_new", {"task_slices": [_slice({"pool": "empty"}, wait=True)]})
    assert waiting["task_result"] is None and _result(api, waiting["task_id"])["state"] == "PENDING"


def test_a_slice_no_bot_can_run_is_skipped_at_once(api):
    api.ok("bot_handshake", bot_body("fallback-bot", pool="fallback"), role="bot")
    created = api.ok("tasks_new", {"task_slices": [_slice({"pool": "fallback", "gpu": "yes"}, wait=False),
                                                   _slice({"pool": "fallback"}, wait=False)]})
    assert _result(api, created["task_id"])["current_task_slice"] == 1
    claim = api.ok("bot_claim", bot_body("fallback-bot", pool="fallback", task_id=created["task_id"], slice=1,
                                         claim_id="c"), role="bot")
    assert claim["cmd"] == "run" and claim["manifest"]["task_id"] == created["task_id"][:-1] + "1"


def test_evaluate_only_stores_nothing_and_shows_the_defaults(api, svc):
    answer = api.ok("tasks_new", task_body(evaluate_only=True))
    assert answer["task_id"] is None
    props = answer["request"]["task_slices"][0]["properties"]
    assert props["grace_period_secs"] == 30 and props["io_timeout_secs"] == 1200
    assert api.ok("bots_count", {}, role="admin")["count"] == 0
    assert svc.store.results_where("user", "user@example.com", 10) == []


def test_priority_below_20_is_for_admins(api):
    response = api.post("tasks_new", task_body(priority=5))
    assert response.status_code == 403 and "priority" in response.json()["error"]["message"]
    assert _task(api, role="admin", priority=5)["task_id"]


def test_request_uuid_returns_the_same_task_and_is_per_user(api):
    first = _task(api, request_uuid="build-42")
    again = _task(api, request_uuid="build-42")
    assert again["task_id"] == first["task_id"] and again["task_result"]["state"] == "PENDING"
    assert _task(api, role="admin", request_uuid="build-42")["task_id"] != first["task_id"]


def test_secret_bytes_reach_only_the_bot_that_runs_the_task(api):
    secret = base64.b64encode(b"s3cr3t").decode()
    body = task_body()
    body["task_slices"][0]["properties"]["secret_bytes"] = secret
    created = api.ok("tasks_new", body)
    shown = [created, api.ok("task_request", {"task_id": created["task_id"]}), _result(api, created["task_id"])]
    assert all("s3cr3t" not in str(s) and secret not in str(s) for s in shown)
    assert shown[1]["task_slices"][0]["properties"]["has_secret_bytes"]
    assert _claim(api, created["task_id"])["secret_bytes"] == secret


# Expiration, through the emulator's real delivery.

def test_a_pending_task_expires_through_its_timer(api, clock):
    clock.offset = -29 * SECOND  # created 29 s "ago": its 30 s expiration falls due in about 1 s
    created = api.ok("tasks_new", {"task_slices": [_slice({"pool": "p"}, expiration=30)]})
    clock.offset = datetime.timedelta()
    result = _wait_state(api, created["task_id"], {"EXPIRED"})
    assert result["abandoned_ts"] and result["current_task_slice"] == 0
    assert api.ok("bot_poll", bot_body(pool="p"), role="bot")["cmd"] == "sleep"


def test_a_timer_delivered_early_is_armed_again(api, svc, clock, cloud_tasks):
    clock.offset = -29 * SECOND  # its 30 s expiration falls due in about 1 s, and the service's clock stays behind
    created = api.ok("tasks_new", {"task_slices": [_slice({"pool": "p"}, expiration=30)]})
    client = cloud_tasks_emulator.client_for(cloud_tasks.host)
    [timer] = client.list_tasks(parent=svc.settings.tasks_queue)
    deadline = time.monotonic() + 15
    while any(t.name == timer.name for t in client.list_tasks(parent=svc.settings.tasks_queue)):
        assert time.monotonic() < deadline, "the timer was not delivered"
        time.sleep(0.1)
    assert _result(api, created["task_id"])["state"] == "PENDING"  # delivered 29 s early: "not yet"
    clock.offset = datetime.timedelta()
    assert _wait_state(api, created["task_id"], {"EXPIRED"})["state"] == "EXPIRED"


def test_an_expired_slice_falls_back_to_the_next(api, clock):
    clock.offset = -29 * SECOND
    created = api.ok("tasks_new", {"task_slices": [_slice({"pool": "p", "os": "Mac"}, expiration=30),
                                                   _slice({"pool": "p"}, expiration=600)]})
    clock.offset = datetime.timedelta()
    deadline = time.monotonic() + 15
    while _result(api, created["task_id"])["current_task_slice"] != 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    candidates = api.ok("bot_poll", bot_body("p-bot", pool="p"), role="bot")["candidates"]
    assert candidates == [{"task_id": created["task_id"], "slice": 1}]


def test_a_duplicate_or_late_timer_changes_nothing(api):
    task_id = _task(api)["task_id"]
    early = api.ok("timer_expire", {"task_id": task_id, "slice": 0}, role="admin")
    assert early == {"done": "not yet"} and _result(api, task_id)["state"] == "PENDING"
    run_id = _claim(api, task_id)["task_id"]
    for _ in range(2):
        assert api.ok("timer_expire", {"task_id": task_id, "slice": 0}, role="admin")["done"].startswith("the slice")
        assert api.ok("timer_bot_died", {"task_id": task_id, "try_number": 1}, role="admin")["done"] == "alive"
    assert _result(api, task_id)["state"] == "RUNNING" and run_id.endswith("1")


def test_timers_refuse_users(api):
    assert api.post("timer_expire", {"task_id": "1" * 15 + "0", "slice": 0}).status_code == 403


# BOT_DIED and the retry.

def test_a_silent_bot_dies_its_task_is_retried_on_another_bot_then_dies(api, clock):
    task_id = _task(api, bot_ping_tolerance_secs=60)["task_id"]
    clock.offset = -59 * SECOND  # claimed 59 s "ago": the BOT_DIED timer falls due in about 1 s
    _claim(api, task_id, "first")
    clock.offset = datetime.timedelta()
    retried = _wait_state(api, task_id, {"PENDING"})
    assert retried["bot_id"] is None and retried["try_number"] == 1
    skip = api.ok("bot_claim", bot_body("first", task_id=task_id, slice=0, claim_id="again"), role="bot")
    assert skip["cmd"] == "skip" and "another bot" in skip["reason"]
    clock.offset = -59 * SECOND
    _claim(api, task_id, "second", try_number=2)
    clock.offset = datetime.timedelta()
    died = _wait_state(api, task_id, {"BOT_DIED"})
    assert died["try_number"] == 2 and died["internal_failure"]
    assert _update(api, task_id[:-1] + "2", "second").json()["must_stop"]  # it reports too late


def test_heartbeats_keep_a_task_alive_without_new_timers(api, clock):
    task_id = _task(api, bot_ping_tolerance_secs=60)["task_id"]
    run_id = _claim(api, task_id)["task_id"]
    clock.offset = 59 * SECOND
    heartbeat = _update(api, run_id)
    assert heartbeat.headers["X-Cloud-Tasks-Ops"] == "0"
    clock.offset = 61 * SECOND  # the first timer's time: re-armed from the heartbeat
    assert api.ok("timer_bot_died", {"task_id": task_id, "try_number": 1}, role="admin")["done"] == "alive"
    assert _result(api, task_id)["state"] == "RUNNING"


def test_output_past_a_lost_first_chunk_still_proves_the_command_started(api):
    task_id = _task(api)["task_id"]
    run_id = _claim(api, task_id)["task_id"]
    # The first chunk never came.
    late = _update(api, run_id, output=base64.b64encode(b"later").decode(), output_chunk_start=stdout.CHUNK_SIZE + 10)
    assert late.status_code == 200
    answer = api.ok("bot_task_error", bot_body(task_id=run_id, message="disk on fire"), role="bot")
    assert answer["state"] == "BOT_DIED"  # not retried: it may have had effects


def test_a_task_error_is_bot_died_or_client_error(api):
    started = _task(api)["task_id"]
    run_id = _claim(api, started)["task_id"]
    _update(api, run_id, output=base64.b64encode(b"x").decode())  # output: the command ran, no retry
    answer = api.ok("bot_task_error", bot_body(task_id=run_id, message="disk on fire"), role="bot")
    assert answer["state"] == "BOT_DIED" and _result(api, started)["internal_failure_message"] == "disk on fire"
    not_started = _task(api)["task_id"]
    failed_run = _claim(api, not_started)["task_id"]
    retried = api.ok("bot_task_error", bot_body(task_id=failed_run, message="no work dir"), role="bot")
    assert retried["state"] == "PENDING"  # never started: once more, elsewhere
    other = _task(api)["task_id"]
    other_run = _claim(api, other)["task_id"]
    missing = [{"hash": "a" * 64, "size_bytes": 3}]
    api.ok("bot_task_error", bot_body(task_id=other_run, message="inputs", client_error={"missing_cas": missing}),
           role="bot")
    result = _result(api, other)
    assert result["state"] == "CLIENT_ERROR" and result["missing_cas"] == missing


# Cancel and kill.

def test_cancel_pending_then_nobody_can_claim_it(api):
    task_id = _task(api)["task_id"]
    assert api.ok("task_cancel", {"task_id": task_id}) == {"canceled": True, "was_running": False}
    assert _result(api, task_id)["state"] == "CANCELED"
    claim = api.ok("bot_claim", bot_body(task_id=task_id, slice=0, claim_id="c"), role="bot")
    assert claim["cmd"] == "skip"
    assert api.ok("task_cancel", {"task_id": task_id}) == {"canceled": False, "was_running": False}


def test_kill_running_stops_the_bot_and_ends_killed(api):
    task_id = _task(api)["task_id"]
    run_id = _claim(api, task_id)["task_id"]
    assert _update(api, run_id).json()["must_stop"] is False
    assert api.ok("task_cancel", {"task_id": task_id}) == {"canceled": False, "was_running": True}
    assert api.ok("task_cancel", {"task_id": task_id, "kill_running": True}) == {"canceled": True,
                                                                                 "was_running": True}
    answer = _update(api, run_id).json()
    assert answer["must_stop"] and answer["stop_reason"] == "KILLED"
    _update(api, run_id, exit_code=-15, duration=2.0)
    assert _result(api, task_id)["state"] == "KILLED"


def test_a_kill_before_the_command_started_ends_canceled(api):
    task_id = _task(api)["task_id"]
    run_id = _claim(api, task_id)["task_id"]
    api.ok("task_cancel", {"task_id": task_id, "kill_running": True})
    assert _update(api, run_id).json()["must_stop"]  # the first update, before the command
    assert _update(api, run_id, canceled=True).status_code == 200
    assert _result(api, task_id)["state"] == "CANCELED"


def test_cancelling_a_task_cancels_its_children_and_bulk_cancel_by_tags(api):
    parent = _task(api)["task_id"]
    children = [_task(api, parent_task_id=parent, tags=["team:infra"])["task_id"] for _ in range(2)]
    assert f"parent_task_id:{parent}" in api.ok("task_request", {"task_id": children[0]})["tags"]
    api.ok("task_cancel", {"task_id": parent})
    assert [_result(api, c)["state"] for c in children] == ["CANCELED", "CANCELED"]
    assert _result(api, parent)["canceled_by"] == "user:user@example.com"  # Who, recorded.
    assert {_result(api, c)["canceled_by"] for c in children} == {f"parent task {parent}"}
    tagged = [_task(api, tags=["team:web", f"n:{i}"])["task_id"] for i in range(3)]
    answer = api.ok("tasks_cancel", {"tags": ["team:web", "pool:default"], "limit": 2})
    assert answer["canceled"] == 2
    assert sorted(_result(api, t)["state"] for t in tagged) == ["CANCELED", "CANCELED", "PENDING"]
    by = sorted(str(_result(api, t)["canceled_by"]) for t in tagged)
    assert by == ["None", "user:user@example.com", "user:user@example.com"]
    assert api.post("tasks_cancel", {"tags": []}).status_code == 400


# Completion reports.

def test_a_different_second_completion_is_a_conflict(api):
    task_id = _task(api)["task_id"]
    run_id = _claim(api, task_id)["task_id"]
    assert _update(api, run_id, exit_code=1, duration=1.0).status_code == 200
    assert _update(api, run_id, exit_code=1, duration=1.0).status_code == 200  # resent: fine
    assert _update(api, run_id, exit_code=0, duration=2.0).status_code == 409
    result = _result(api, task_id)
    assert result["state"] == "COMPLETED" and result["failure"] and result["exit_code"] == 1


def test_a_completion_writes_only_the_fields_it_changes(api, monkeypatch):
    """The result's update names the fields the end changed, not the whole
    result (its request above all); what is read back is whole."""
    task_id = _task(api, tags=["k:v"])["task_id"]
    run_id = _claim(api, task_id)["task_id"]
    before = _result(api, task_id)
    written: list[dict] = []
    add = store.TaskBatch._add

    def spy(batch, method, ref, *args, **kwargs):
        if method == "update" and ref.parent.id == store.TASK_RESULTS:
            written.append(args[0])
        add(batch, method, ref, *args, **kwargs)

    monkeypatch.setattr(store.TaskBatch, "_add", spy)
    assert _update(api, run_id, exit_code=3, duration=1.5).status_code == 200
    [fields] = written
    assert {"state", "exit_code", "duration", "completed_ts", "modified_ts"} <= set(fields)
    assert not {"request", "created_ts", "tags", "name", "bot_id", "started_ts"} & set(fields)
    after = _result(api, task_id)
    assert after["state"] == "COMPLETED" and after["exit_code"] == 3 and after["duration"] == 1.5
    assert all(after[k] == before[k] for k in ("created_ts", "tags", "name", "bot_id", "started_ts"))


def test_a_task_stores_its_request_as_one_text_value_and_answers_it_whole(api, svc):
    """One value to encode and decode with each read of the task, not a map
    of dozens (functions/store.py)."""
    task_id = _task(api, name="stored", tags=["k:v"], priority=30, command=["echo", "stored"])["task_id"]
    doc = svc.store.db.collection(store.TASK_RESULTS).document(store.hashed(task_id)).get().to_dict()
    assert isinstance(doc["request"], str)
    answer = api.ok("task_request", {"task_id": task_id})
    assert answer["name"] == "stored" and "k:v" in answer["tags"] and answer["priority"] == 30
    assert answer["task_slices"][0]["properties"]["command"] == ["echo", "stored"]


def test_a_task_stored_by_an_older_release_with_its_request_as_a_map_is_still_read_and_run(api, svc):
    """Upgrades read the documents as they are (docs/deploy.md)."""
    task_id = _task(api, name="older")["task_id"]
    ref = svc.store.db.collection(store.TASK_RESULTS).document(store.hashed(task_id))
    ref.update({"request": store.request_of(ref.get().to_dict()).to_wire()})  # As releases before wrote it.
    assert api.ok("task_request", {"task_id": task_id})["name"] == "older"
    assert _claim(api, task_id)["command"] == ["echo", "hi"]


def test_io_timeout_is_timed_out(api):
    task_id = _task(api)["task_id"]
    run_id = _claim(api, task_id)["task_id"]
    _update(api, run_id, exit_code=-9, duration=5.0, io_timeout=True)
    assert _result(api, task_id)["state"] == "TIMED_OUT"


# Idempotent dedup.

def _idempotent(**props):
    body = task_body(command=["echo", "same"])
    body["task_slices"][0]["properties"].update(idempotent=True, **props)
    return body


def test_a_successful_idempotent_task_is_reused_with_its_stdout(api):
    first = api.ok("tasks_new", _idempotent())["task_id"]
    run_id = _claim(api, first)["task_id"]
    _update(api, run_id, output=base64.b64encode(b"same\n").decode(), exit_code=0, duration=1.5)
    second = api.ok("tasks_new", _idempotent())
    result = second["task_result"]
    assert result["state"] == "COMPLETED" and result["deduped_from"] == first and result["try_number"] == 0
    stdout = api.ok("task_stdout", {"task_id": second["task_id"]})
    assert base64.b64decode(stdout["output"]) == b"same\n"
    secret = base64.b64encode(b"other").decode()
    assert api.ok("tasks_new", _idempotent(secret_bytes=secret))["task_result"] is None  # another secret: runs
    not_idempotent = task_body(command=["echo", "same"])
    assert api.ok("tasks_new", not_idempotent)["task_result"] is None


def test_a_failed_idempotent_task_is_not_reused(api):
    first = api.ok("tasks_new", _idempotent())["task_id"]
    _update(api, _claim(api, first)["task_id"], exit_code=1, duration=1.0)
    assert api.ok("tasks_new", _idempotent())["task_result"] is None


def test_simultaneous_identical_idempotent_tasks_run_once(api):
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: api.ok("tasks_new", _idempotent()), range(2)))
    waiting = [a for a in answers if a["task_result"]]
    running = [a for a in answers if not a["task_result"]]
    assert len(waiting) == 1 and len(running) == 1
    owner, waiter = running[0]["task_id"], waiting[0]["task_id"]
    candidates = api.ok("bot_poll", bot_body(), role="bot")["candidates"]
    assert [c["task_id"] for c in candidates] == [owner]  # the waiter has no pending slice
    _update(api, _claim(api, owner)["task_id"], exit_code=0, duration=1.0)
    result = _result(api, waiter)
    assert result["state"] == "COMPLETED" and result["deduped_from"] == owner


def test_a_waiter_runs_on_its_own_when_the_first_fails(api):
    owner = api.ok("tasks_new", _idempotent())["task_id"]
    waiter = api.ok("tasks_new", _idempotent())["task_id"]
    assert _result(api, waiter)["state"] == "PENDING"
    _update(api, _claim(api, owner)["task_id"], exit_code=2, duration=1.0)
    candidates = api.ok("bot_poll", bot_body(), role="bot")["candidates"]
    assert [c["task_id"] for c in candidates] == [waiter]


def test_the_sweep_releases_waiters_an_owner_left_behind(api, clock, monkeypatch):
    owner = api.ok("tasks_new", _idempotent())["task_id"]
    waiter = api.ok("tasks_new", _idempotent())["task_id"]
    with monkeypatch.context() as dying:  # The owner's instance dies before it releases its waiters.
        dying.setattr(dedup, "release_waiters", lambda *args: 0)
        _update(api, _claim(api, owner)["task_id"], exit_code=0, duration=1.0)
    assert _result(api, waiter)["state"] == "PENDING"
    assert api.ok("cron_sweep", {}, role="admin")["released_waiters"] == 0  # the owner may still be at it
    clock.offset = sweep.LATE + datetime.timedelta(seconds=1)
    assert api.ok("cron_sweep", {}, role="admin")["released_waiters"] == 1
    result = _result(api, waiter)
    assert result["state"] == "COMPLETED" and result["deduped_from"] == owner
    assert api.ok("cron_sweep", {}, role="admin")["released_waiters"] == 0


@pytest.mark.parametrize("kill", [False, True])
def test_cancel_a_waiter(api, kill):
    api.ok("tasks_new", _idempotent())
    waiter = api.ok("tasks_new", _idempotent())["task_id"]
    assert api.ok("task_cancel", {"task_id": waiter, "kill_running": kill})["canceled"]
    assert _result(api, waiter)["state"] == "CANCELED"


def test_cancel_a_waiter_released_meanwhile_leaves_nothing_to_claim(api, monkeypatch):
    owner = api.ok("tasks_new", _idempotent())["task_id"]
    waiter = api.ok("tasks_new", _idempotent())["task_id"]
    cancel_waiter = cancellation._cancel_waiter

    def owner_fails_first(ctx, task_id, now, by):  # between the cancel's read and its write
        _update(api, _claim(api, owner)["task_id"], exit_code=2, duration=1.0)  # the waiter is queued
        return cancel_waiter(ctx, task_id, now, by)

    monkeypatch.setattr(cancellation, "_cancel_waiter", owner_fails_first)
    assert api.ok("task_cancel", {"task_id": waiter})["canceled"]
    assert _result(api, waiter)["state"] == "CANCELED"
    assert api.ok("bot_poll", bot_body(), role="bot")["cmd"] == "sleep"  # its queued slice went with it


def test_a_waiter_released_as_it_expires_leaves_nothing_to_claim(api, svc, clock, monkeypatch):
    owner = api.ok("tasks_new", _idempotent())["task_id"]
    waiter = api.ok("tasks_new", _idempotent())["task_id"]
    read = svc.store.get_task_seen
    waiting_on = []  # what each read of the timer found

    def owner_fails_after_the_first_read(task_id):  # between the timer's read and its guarded commit
        found = read(task_id)
        waiting_on.append(found[0].waiting_on)
        if len(waiting_on) == 1:
            _update(api, _claim(api, owner)["task_id"], exit_code=2, duration=1.0)  # the waiter is queued
        return found

    monkeypatch.setattr(svc.store, "get_task_seen", owner_fails_after_the_first_read)
    clock.offset = datetime.timedelta(seconds=601)
    assert api.ok("timer_expire", {"task_id": waiter, "slice": 0}, role="admin") == {"done": "expired"}
    assert waiting_on == [owner, None]  # its commit lost to the release: it read again
    assert _result(api, waiter)["state"] == "EXPIRED"
    assert api.ok("bot_poll", bot_body(), role="bot")["cmd"] == "sleep"


# What lost timers leave behind.

def _timers(svc, cloud_tasks):
    return list(cloud_tasks_emulator.client_for(cloud_tasks.host).list_tasks(parent=svc.settings.tasks_queue))


def _drop_timers(svc, cloud_tasks):
    client = cloud_tasks_emulator.client_for(cloud_tasks.host)
    for task in _timers(svc, cloud_tasks):
        client.delete_task(name=task.name)


def test_the_sweep_repairs_what_lost_timers_left(api, svc, clock, cloud_tasks):
    pending = _task(api)["task_id"]
    running = _task(api, bot_ping_tolerance_secs=60)["task_id"]
    _claim(api, running)
    _drop_timers(svc, cloud_tasks)
    clock.offset = datetime.timedelta(seconds=30)
    assert api.ok("cron_sweep", {}, role="admin")["expired_slices"] == 0  # nothing late yet
    clock.offset = datetime.timedelta(seconds=600 + 61)
    swept = api.ok("cron_sweep", {}, role="admin")
    assert swept["expired_slices"] == 1 and swept["dead_runs"] == 0
    assert _result(api, pending)["state"] == "EXPIRED"
    # Found long after its due time, the run may have been silenced by an
    # outage: its timer is armed again, after the outage grace.
    assert _result(api, running)["state"] == "RUNNING"
    [rearmed] = _timers(svc, cloud_tasks)
    clock.offset += bot_death.OUTAGE_GRACE
    due = rearmed.schedule_time.timestamp()
    assert abs(due - (time.time() + clock.offset.total_seconds())) < 30
    answer = api.ok("timer_bot_died", {"task_id": running, "try_number": 1, "due": int(due)}, role="admin")
    assert answer == {"done": "BOT_DIED"}  # delivered on time, still silent; never started, but no time left
    assert api.ok("cron_sweep", {}, role="admin")["dead_runs"] == 0  # and again: nothing to do
