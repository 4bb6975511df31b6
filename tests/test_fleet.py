"""The bot registry: entries written only on change, liveness, the dead
sweep, events, and the client's bot endpoints."""

import concurrent.futures
import datetime
import itertools
import logging
import threading
import time

import requests

from bot.remote import Remote
from functions import sweep
from functions.bot_entry import REWRITE_SECS, BotEntry, Session
from functions.bot_liveness import Sightings, shard_of
from functions.bot_registry import BotRequest, Registry
from functions.budget import Budget
from functions.fleet import Fleet
from local import cron
from shared.bot_api import BotAttributes, Poll
from tests.builders import bot_body, task_body
from tests.conftest import TIMERS_ACCOUNT

# The present, not a fixed date: tasks made here arm real Cloud Tasks timers,
# which fire at once for a time already past.
NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _later(seconds: float) -> datetime.datetime:
    return NOW + datetime.timedelta(seconds=seconds)


def _bot(bot_id="bot-1", session="", state=None, **dims):
    body = bot_body(bot_id, session=session, state=state or {})
    body["dimensions"].update(dims)
    return BotRequest.of(Poll.from_wire(body).attributes, {})


def _registry(svc, flush_secs=0.0) -> Registry:
    return Registry(svc.bot_store, Sightings(flush_secs))


# Sessions and sightings: pure logic.

def test_session_round_trips_and_garbage_is_an_empty_session():
    entry = BotEntry.from_report("b", {"pool": ["p"]}, {}, "v1", None)
    session = Session(entry.fingerprints(), 10.0, 5.0)
    assert Session.decode(session.encode()) == session
    assert Session.decode("not base64 json!") == Session() == Session.decode(None)
    assert session.changed_parts(entry) == []


def test_volatile_state_changes_nothing_but_quarantine_does():
    entry = BotEntry.from_report("b", {"pool": ["p"]}, {"sleep_streak": 1}, "v1", None)
    session = Session(entry.fingerprints(), 0.0, 0.0)
    assert session.changed_parts(BotEntry.from_report("b", {"pool": ["p"]}, {"sleep_streak": 9}, "v1", None)) == []
    quarantined = BotEntry.from_report("b", {"pool": ["p"]}, {"quarantined": "disk full"}, "v1", None)
    assert quarantined.quarantined and session.changed_parts(quarantined) == ["state", "quarantined"]
    by_dimension = BotEntry.from_report("b", {"pool": ["p"], "quarantined": ["1"]}, {}, "v1", None)
    assert by_dimension.quarantined


# The registry on the real emulator.

def test_entry_is_written_on_change_or_when_the_session_is_stale(svc):
    registry = _registry(svc, flush_secs=3600)
    session = registry.handshake(_bot(), NOW)
    first = svc.bot_store.get_bot("bot-1")
    assert registry.check_in(_bot(session=session, state={"sleep_streak": 3}), None, _later(60)) == session
    assert svc.bot_store.get_bot("bot-1")["updated_ts"] == first["updated_ts"]  # nothing written
    changed = registry.check_in(_bot(session=session, os=["Mac"]), None, _later(61))
    assert changed != session
    assert svc.bot_store.get_bot("bot-1")["dimensions"]["os"] == ["Mac"]
    registry.check_in(_bot(session=changed, os=["Mac"]), None, _later(61 + REWRITE_SECS))
    assert svc.bot_store.get_bot("bot-1")["updated_ts"] == _later(61 + REWRITE_SECS)
    events = [e["event_type"] for e in svc.bot_store.events("bot-1", 10, None)]
    assert events == ["bot_changed", "bot_connected"]  # the stale rewrite is no event


def test_sweep_marks_a_silent_bot_dead_and_alive_again(svc):
    registry, fleet = _registry(svc), Fleet(svc.bot_store, death_timeout_secs=600)
    session = registry.handshake(_bot(), NOW)
    registry.handshake(_bot("bot-2"), NOW)
    assert fleet.sweep(_later(600), Budget(60)) == {"dead": 0, "alive": 0, "forgotten": 0}
    registry.check_in(_bot("bot-2"), None, _later(300))  # bot-2 keeps calling
    assert fleet.sweep(_later(601), Budget(60)) == {"dead": 1, "alive": 0, "forgotten": 0}
    assert fleet.sweep(_later(602), Budget(60))["dead"] == 0  # safe to run again
    dead = fleet.list_bots({"is_dead": True}, None, None, _later(602))["items"]
    assert [b["bot_id"] for b in dead] == ["bot-1"] and dead[0]["is_dead"]
    registry.check_in(_bot(session=session), None, _later(700))
    assert not fleet.get("bot-1", _later(700), lambda pools: None)["is_dead"]  # exact before the sweep
    assert fleet.sweep(_later(701), Budget(60)) == {"dead": 0, "alive": 1, "forgotten": 0}
    assert fleet.list_bots({"is_dead": True}, None, None, _later(701))["items"] == []
    kinds = [e["event_type"] for e in fleet.events("bot-1", None, None)["items"]]
    assert kinds == ["bot_alive", "bot_missing", "bot_connected"]


def _units(n: int) -> Budget:
    """A budget of `n` units of work: its clock moves on one tick each time it is asked."""
    return Budget(n + 1, clock=itertools.count().__next__)


def test_a_mass_death_is_flagged_over_sweeps_each_within_its_budget(svc):
    registry, fleet = _registry(svc), Fleet(svc.bot_store, death_timeout_secs=600)
    bot_ids = [f"bot-{i}" for i in range(5)]
    for bot_id in bot_ids:
        registry.handshake(_bot(bot_id), NOW)
    budgets = [_units(2) for _ in range(4)]
    flagged = [fleet.sweep(_later(601), budget)["dead"] for budget in budgets]
    assert flagged == [2, 2, 1, 0] and [b.stopped for b in budgets] == [True, True, False, False]
    for bot_id in bot_ids:  # each flagged once
        assert [e["event_type"] for e in svc.bot_store.events(bot_id, 10, None)] == ["bot_missing", "bot_connected"]


def test_sweep_forgets_a_deleted_bot(svc):
    registry, fleet = _registry(svc), Fleet(svc.bot_store, death_timeout_secs=600)
    registry.handshake(_bot(), NOW)
    fleet.delete("bot-1", NOW)
    registry.see("bot-1", _later(1))  # a call in flight while it was deleted
    assert fleet.sweep(_later(700), Budget(60))["forgotten"] == 1
    assert svc.bot_store.read_liveness([shard_of("bot-1")]) == ({}, set())


def test_quarantined_or_maintenance_bot_gets_no_task(api):
    api.ok("tasks_new", task_body())
    assert api.ok("bot_poll", bot_body(state={"quarantined": "disk"}), role="bot")["cmd"] == "sleep"
    assert api.ok("bot_poll", bot_body(state={"maintenance": "upgrade"}), role="bot")["cmd"] == "sleep"
    assert api.ok("bot_poll", bot_body(), role="bot")["cmd"] == "claim"
    bot = api.ok("bot_get", {"bot_id": "bot-1"})
    assert not bot["quarantined"] and bot["maintenance_msg"] is None


def test_the_bot_echoes_its_session_so_polls_write_nothing(svc, base_url, tokens):
    remote = Remote(base_url, tokens.bot("bot-r"))
    attributes = _attributes()
    remote.handshake(attributes)
    after_handshake = remote.bot_session
    assert after_handshake and svc.bot_store.get_bot("bot-r")
    remote.poll(attributes, "u-1")
    remote.poll(attributes, "u-2")
    assert remote.bot_session == after_handshake
    assert [e["event_type"] for e in svc.bot_store.events("bot-r", 10, None)] == ["bot_connected"]


def _attributes():
    return BotAttributes(dimensions={"id": ["bot-r"], "pool": ["default"]}, state={}, version="dev")


# The client endpoints.

def _register(api, bot_id, pool="default", state=None, **dims):
    body = bot_body(bot_id, pool=pool, state=state or {})
    body["dimensions"].update(dims)
    api.ok("bot_handshake", body, role="bot")


def test_bots_list_filters_and_pages(api):
    for i in range(5):
        _register(api, f"bot-{i}", os=["Linux", "Ubuntu"] if i % 2 else ["Mac"])
    _register(api, "bot-q", os=["Linux"], state={"quarantined": True})
    linux = api.ok("bots_list", {"dimensions": ["os:Linux"]}, role="admin")["items"]
    assert [b["bot_id"] for b in linux] == ["bot-1", "bot-3", "bot-q"]
    both = api.ok("bots_list", {"dimensions": [{"key": "os", "value": "Ubuntu"}, "os:Linux"],
                                "quarantined": False}, role="admin")
    assert [b["bot_id"] for b in both["items"]] == ["bot-1", "bot-3"]
    assert [b["bot_id"] for b in api.ok("bots_list", {"quarantined": "TRUE"}, role="admin")["items"]] == ["bot-q"]
    pages, cursor = [], None
    while True:
        page = api.ok("bots_list", {"limit": 2, "cursor": cursor}, role="admin")
        pages.append([b["bot_id"] for b in page["items"]])
        cursor = page["cursor"]
        if not cursor:
            break
    assert pages == [["bot-0", "bot-1"], ["bot-2", "bot-3"], ["bot-4", "bot-q"], []]


def test_bots_count_and_dimensions(api):
    _register(api, "a", os=["Linux"])
    _register(api, "b", os=["Mac"], state={"maintenance": "reimage"})
    _register(api, "other-c", pool="other", gpu=["nvidia"])  # Its group puts it in pool other.
    task_id = api.ok("tasks_new", task_body())["task_id"]
    api.ok("bot_claim", bot_body("a", task_id=task_id, slice=0, claim_id="c"), role="bot")
    assert api.ok("bots_count", {}, role="admin") | {"now": None} == {
        "count": 3, "quarantined": 0, "maintenance": 1, "dead": 0, "busy": 1, "now": None}
    assert api.ok("bots_count", {"dimensions": "pool:default", "is_busy": False})["count"] == 1
    dims = api.ok("bots_dimensions", {"pool": "default"})["bots_dimensions"]
    assert dims == [{"key": "id", "value": ["a", "b"]}, {"key": "os", "value": ["Linux", "Mac"]},
                    {"key": "pool", "value": ["default"]}]
    assert {"key": "gpu", "value": ["nvidia"]} in api.ok("bots_dimensions", {}, role="admin")["bots_dimensions"]


def test_a_burst_of_new_bots_writes_each_shared_dimension_value_once(api):
    """40 bots of one pool and os handshake at once: none fails, and the
    values they share are written once by the instance, not 40 times."""
    def handshake(n: int) -> requests.Response:
        return api.post("bot_handshake", bot_body(f"burst-{n}"), role="bot")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(handshake, range(40)))
    assert [a.status_code for a in answers] == [200] * 40
    alone = api.post("bot_handshake", bot_body("burst-late"), role="bot")
    again = api.post("bot_handshake", bot_body("burst-late"), role="bot")
    # Its entry, sighting, event, and its own id value; the second time not even that.
    assert int(alone.headers["X-Firestore-Writes"]) == int(again.headers["X-Firestore-Writes"]) + 1
    dims = api.ok("bots_dimensions", {"pool": "default"})["bots_dimensions"]
    assert {"key": "os", "value": ["Linux"]} in dims
    assert len(next(d["value"] for d in dims if d["key"] == "id")) == 41


def test_bot_events_and_tasks_tell_the_bot_story(api):
    _register(api, "bot-1")
    task_id = api.ok("tasks_new", task_body())["task_id"]
    claim = api.ok("bot_claim", bot_body(task_id=task_id, slice=0, claim_id="c"), role="bot")
    run_id = claim["manifest"]["task_id"]
    api.ok("bot_task_update", bot_body(task_id=run_id, exit_code=0, duration=1.0), role="bot")
    api.ok("bot_event", bot_body(event="bot_error", message="hook failed"), role="bot")
    events = api.ok("bot_events", {"bot_id": "bot-1"})["items"]
    assert [e["event_type"] for e in events] == ["bot_error", "task_completed", "task_claimed", "bot_connected"]
    assert events[1]["task_id"] == task_id and "COMPLETED, exit code 0" in events[1]["message"]
    first = api.ok("bot_events", {"bot_id": "bot-1", "limit": 2})
    rest = api.ok("bot_events", {"bot_id": "bot-1", "limit": 2, "cursor": first["cursor"]})
    assert [e["event_type"] for e in first["items"] + rest["items"]] == [e["event_type"] for e in events]
    bot_tasks = api.ok("bot_tasks", {"bot_id": "bot-1"})["items"]
    assert [(t["task_id"], t["state"]) for t in bot_tasks] == [(task_id, "COMPLETED")]


def test_bot_delete_is_for_the_pools_admins_and_the_bot_comes_back_when_it_calls(api):
    _register(api, "gone")
    assert api.post("bot_delete", {"bot_id": "gone"}, role="viewer").status_code == 403
    assert api.ok("bot_delete", {"bot_id": "gone"}, role="admin") == {"deleted": True}
    assert api.post("bot_get", {"bot_id": "gone"}).status_code == 404
    assert api.post("bot_delete", {"bot_id": "gone"}, role="admin").status_code == 404
    _register(api, "gone")
    assert api.ok("bot_get", {"bot_id": "gone"})["bot_id"] == "gone"
    kinds = [e["event_type"] for e in api.ok("bot_events", {"bot_id": "gone"})["items"]]
    assert kinds == ["bot_connected", "bot_deleted", "bot_connected"]


def test_bad_bot_queries_say_which_field(api):
    for function, body, field in [
        ("bots_list", {"limit": 0}, "limit"),
        ("bots_list", {"is_dead": "maybe"}, "is_dead"),
        ("bots_list", {"dimensions": ["no-colon"]}, "dimensions[0]"),
        ("bots_count", {"is_busy": 3}, "is_busy"),
        ("bot_events", {"bot_id": "b", "cursor": "yesterday"}, "cursor"),
        ("bot_get", {}, "bot_id"),
    ]:
        response = api.post(function, body, role="admin")
        assert response.status_code == 400, (function, response.text)
        assert response.json()["error"]["message"].startswith(field), (function, response.text)
    response = api.post("bot_event", bot_body(event="bot_party"), role="bot")
    assert response.status_code == 400 and "event" in response.json()["error"]["message"]


def test_an_id_firestore_cannot_take_is_400_from_the_bot_and_404_from_the_readers(api):
    for bot_id in ("a/b", "..", "__x__"):
        response = api.post("bot_handshake", bot_body(bot_id), role="bot")
        assert response.status_code == 400, response.text
        assert response.json()["error"]["field"] == "dimensions.id"
        assert api.post("bot_poll", bot_body(bot_id), role="bot").status_code == 400
        assert api.post("bot_get", {"bot_id": bot_id}).status_code == 404
        assert api.post("bot_delete", {"bot_id": bot_id}, role="admin").status_code == 404
        assert api.post("bot_terminate", {"bot_id": bot_id}, role="admin").status_code == 404
        response = api.post("bots_list", {"cursor": bot_id}, role="admin")
        assert response.status_code == 400 and response.json()["error"]["message"].startswith("cursor")
    _register(api, "host.example.com")  # dots are fine
    assert api.ok("bot_get", {"bot_id": "host.example.com"})["bot_id"] == "host.example.com"


def test_cron_sweep_is_for_admins(api):
    assert api.post("cron_sweep", {}, role="user").status_code == 403
    swept = api.ok("cron_sweep", {}, role="admin")
    assert {k: v for k, v in swept.items() if k != "swept"} == {
        "bots": {"dead": 0, "alive": 0, "forgotten": 0}, "expired_slices": 0, "dead_runs": 0, "released_waiters": 0,
        "failed": 0, "failed_lanes": [], "partial": False}
    assert sorted(swept["swept"]) == sorted(name for name, _ in sweep.ring(NOW))  # every lane


def test_local_cron_calls_the_sweep_as_the_services_account(api, base_url, caplog, tokens):
    """As Cloud Scheduler: an ID token of the service's own account, for the URL called."""
    stop = threading.Event()
    caplog.set_level(logging.INFO, logger="local_cron")
    worker = threading.Thread(target=cron.run, args=(
        base_url, lambda url: tokens.person(TIMERS_ACCOUNT, audience=url), ["cron_sweep"], 0.05, stop))
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while "cron_sweep: 200" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "cron_sweep: 200" in caplog.text
    finally:
        stop.set()
        worker.join()
