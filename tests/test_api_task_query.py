"""tasks_list, tasks_requests and tasks_count over HTTP on the emulators:
each filter, cursors across pages, counts exact and "at least", bad
parameters and who may list what."""

import base64
import datetime
import uuid

import pytest

from functions import task_query
from tests.builders import bot_body, task_body


def _new(api, pool: str = "default", tags: tuple[str, ...] = (), role: str = "user", idempotent: bool = False,
         **fields) -> dict:
    """A new task's id (and with `idempotent`, tasks_new's whole answer)."""
    body = task_body(dimensions={"pool": pool}, command=["true"], tags=list(tags), **fields)
    body["task_slices"][0]["properties"]["idempotent"] = idempotent
    answer = api.ok("tasks_new", body, role=role)
    return answer if idempotent else answer["task_id"]


def _run(api, task_id: str, exit_code: int | None) -> None:
    """Claims the task as bot-1, and ends it with `exit_code` (None: leaves it running)."""
    claim = api.ok("bot_claim", bot_body(task_id=task_id, slice=0, claim_id=uuid.uuid4().hex), role="bot")
    assert claim["cmd"] == "run", claim
    if exit_code is not None:
        api.ok("bot_task_update", bot_body(task_id=claim["manifest"]["task_id"], exit_code=exit_code, duration=1.0),
               role="bot")


def _ids(api, function: str = "tasks_list", role: str = "admin", **params) -> list[str]:
    """Every task id of the selection, following cursors."""
    found, cursor = [], None
    while True:
        page = api.ok(function, {**params, "cursor": cursor}, role=role)
        found += [item["task_id"] for item in page["items"]]
        cursor = page["cursor"]
        if cursor is None:
            return found


@pytest.fixture
def tasks(api) -> dict[str, list[str]]:
    """Tasks of pool default with the tag `suite:q` in every state a list tells apart, by state."""
    tag = ("suite:q",)
    pending = _new(api, tags=tag)
    canceled = _new(api, tags=tag)
    api.ok("task_cancel", {"task_id": canceled})
    success = _new(api, tags=tag, idempotent=True)["task_id"]
    _run(api, success, 0)
    deduped = _new(api, tags=tag, idempotent=True)
    assert deduped["task_result"]["deduped_from"] == success
    failure = _new(api, tags=tag)
    _run(api, failure, 3)
    running = _new(api, tags=tag)
    _run(api, running, None)
    return {"PENDING": [pending], "RUNNING": [running], "CANCELED": [canceled], "COMPLETED_SUCCESS": [success],
            "COMPLETED_FAILURE": [failure], "DEDUPED": [deduped["task_id"]]}


def test_each_state_filter_lists_and_counts_its_tasks(api, tasks):
    want = {
        **tasks, "PENDING_RUNNING": tasks["PENDING"] + tasks["RUNNING"],
        "COMPLETED": tasks["COMPLETED_SUCCESS"] + tasks["COMPLETED_FAILURE"] + tasks["DEDUPED"],
        "COMPLETED_SUCCESS": tasks["COMPLETED_SUCCESS"] + tasks["DEDUPED"],
        "ALL": [task for found in tasks.values() for task in found],
        **{state: [] for state in ("EXPIRED", "TIMED_OUT", "BOT_DIED", "KILLED", "NO_RESOURCE", "CLIENT_ERROR")},
    }
    assert set(want) == set(task_query.STATES)
    for state, ids in want.items():
        selection = {"state": state, "tags": ["suite:q"]}
        assert sorted(_ids(api, **selection)) == sorted(ids), state
        count = api.ok("tasks_count", selection, role="admin")
        assert (count["count"], count["at_least"]) == (len(ids), False), state


def test_a_list_is_newest_first_and_its_items_are_task_results(api, tasks):
    page = api.ok("tasks_list", {"tags": ["suite:q"], "limit": 100}, role="admin")
    created = [item["created_ts"] for item in page["items"]]
    assert created == sorted(created, reverse=True) and page["cursor"] is None
    one = next(item for item in page["items"] if item["task_id"] == tasks["COMPLETED_FAILURE"][0])
    assert one == api.ok("task_result", {"task_id": one["task_id"]})
    assert "outcome" not in one and "query_shard" not in one


def test_tags_are_anded_and_cursors_neither_repeat_nor_skip(api):
    both = [_new(api, tags=("a:1", "b:2")) for _ in range(5)]
    only_a = [_new(api, tags=("a:1",)) for _ in range(4)]
    _new(api, tags=("b:2",))
    for limit in (1, 2, 3, 100):
        assert _ids(api, tags=["a:1", "b:2"], limit=limit) == both[::-1]
        assert _ids(api, tags=["a:1"], limit=limit) == (both + only_a)[::-1]
    assert api.ok("tasks_count", {"tags": ["a:1", "b:2"]}, role="admin")["count"] == 5
    assert api.ok("tasks_count", {"tags": ["a:1", "no:such"]}, role="admin")["count"] == 0
    empty = api.ok("tasks_list", {"tags": ["a:1", "no:such"]}, role="admin")
    assert (empty["items"], empty["cursor"]) == ([], None)


def test_requests_of_the_same_selection(api):
    ids = [_new(api, tags=("req:1",), name=f"n{i}") for i in range(3)]
    page = api.ok("tasks_requests", {"tags": ["req:1"], "limit": 2}, role="admin")
    assert [item["task_id"] for item in page["items"]] == ids[:0:-1]
    assert page["items"][0]["name"] == "n2" and page["items"][0]["authenticated"] == "user:user@example.com"
    assert page["items"][0] == {"task_id": ids[2], **api.ok("task_request", {"task_id": ids[2]})}
    assert _ids(api, "tasks_requests", tags=["req:1"], limit=2) == ids[::-1]


def test_requests_never_carry_secret_bytes(api):
    body = task_body(tags=["secret:1"])
    body["task_slices"][0]["properties"]["secret_bytes"] = base64.b64encode(b"hunter2").decode()
    api.ok("tasks_new", body)
    response = api.post("tasks_requests", {"tags": ["secret:1"]}, role="admin")
    assert response.status_code == 200 and "aHVudGVyMg" not in response.text
    properties = response.json()["items"][0]["task_slices"][0]["properties"]
    assert properties["has_secret_bytes"] is True and "secret_bytes" not in properties


def test_start_and_end_bound_the_sort_time(api, tasks):
    everything = api.ok("tasks_list", {"tags": ["suite:q"]}, role="admin")["items"]
    times = sorted(item["created_ts"] for item in everything)
    middle = times[len(times) // 2]
    later = _ids(api, tags=["suite:q"], start=middle)
    assert sorted(later) == sorted(item["task_id"] for item in everything if item["created_ts"] >= middle)
    epoch = datetime.datetime.fromisoformat(middle.replace("Z", "+00:00")).timestamp()
    earlier = _ids(api, tags=["suite:q"], end=epoch)
    assert sorted(earlier + later) == sorted(item["task_id"] for item in everything)
    started = _ids(api, tags=["suite:q"], sort="started_ts")
    assert sorted(started) == sorted(tasks["RUNNING"] + tasks["COMPLETED_SUCCESS"] + tasks["COMPLETED_FAILURE"])
    ended = tasks["COMPLETED_FAILURE"] + tasks["DEDUPED"] + tasks["COMPLETED_SUCCESS"]
    assert _ids(api, tags=["suite:q"], sort="COMPLETED_TS") == ended
    future = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).isoformat()
    assert api.ok("tasks_count", {"tags": ["suite:q"], "start": future}, role="admin")["count"] == 0


def test_counts_beyond_the_bound_say_at_least(api, monkeypatch):
    for _ in range(4):
        _new(api, tags=("many:1", "also:1"))
    monkeypatch.setattr(task_query, "COUNT_BOUND", 3)
    one = api.ok("tasks_count", {"tags": ["many:1"]}, role="admin")
    assert (one["count"], one["at_least"]) == (3, True)
    monkeypatch.setattr(task_query, "MAX_SCAN", 2)
    several = api.ok("tasks_count", {"tags": ["many:1", "also:1"]}, role="admin")
    assert (several["count"], several["at_least"]) == (2, True)
    # A page of several tags stops after MAX_SCAN documents, with a cursor to go on from.
    assert len(_ids(api, tags=["many:1", "also:1"], limit=100)) == 4


def test_a_page_costs_its_tasks_and_a_constant_in_reads(api):
    for _ in range(12):
        _new(api, tags=("cost:1",))
    response = api.post("tasks_list", {"tags": ["cost:1"], "limit": 10}, role="admin")
    assert response.status_code == 200 and len(response.json()["items"]) == 10
    assert int(response.headers["X-Firestore-Reads"]) <= 10 + 1
    assert int(response.headers["X-Firestore-Writes"]) == 0
    # A pool's admin (the tests' user) names the pool.
    several = api.post("tasks_list", {"tags": ["cost:1", "pool:default"], "limit": 10})
    assert several.status_code == 200 and len(several.json()["items"]) == 10
    assert int(several.headers["X-Firestore-Reads"]) <= 10 + 1 + 2


@pytest.mark.parametrize("params, field", [
    ({"state": "DONE"}, "state"),
    ({"state": 1}, "state"),
    ({"tags": ["nocolon"]}, "tags[0]"),
    ({"tags": ["k:v"] * 17}, "tags"),
    ({"tags": ["k:" + "é" * 1000]}, "tags[0]"),
    ({"sort": "modified_ts"}, "sort"),
    ({"start": "yesterday"}, "start"),
    ({"start": "2026-12-04T10:00:00"}, "start"),
    ({"end": True}, "end"),
    ({"start": 2000, "end": 1000}, "end"),
    ({"limit": 0}, "limit"),
    ({"limit": 1001}, "limit"),
    ({"cursor": "not a cursor"}, "cursor"),
    ({"cursor": "eyJ0aW1lIjogMX0"}, "cursor"),
    ({"bogus": 1}, "bogus"),
])
def test_bad_parameters_are_400_naming_the_field(api, params, field):
    for function in ("tasks_list", "tasks_requests", "tasks_count"):
        if function == "tasks_count" and field in ("limit", "cursor"):
            continue
        response = api.post(function, {"tags": ["pool:default"], **params}, role="admin")
        assert response.status_code == 400, (function, response.text)
        assert response.json()["error"]["field"] == field, response.text


def test_a_cursor_of_another_sort_is_refused(api):
    for _ in range(2):
        _new(api, tags=("sort:1",))
    cursor = api.ok("tasks_list", {"tags": ["sort:1"], "limit": 1}, role="admin")["cursor"]
    response = api.post("tasks_list", {"tags": ["sort:1"], "sort": "completed_ts", "cursor": cursor},
                        role="admin")
    assert response.status_code == 400 and response.json()["error"]["field"] == "cursor"
    assert "created_ts" in response.json()["error"]["message"]


def test_a_list_shows_only_the_pools_the_caller_may_read(api):
    visible = _new(api, pool="authz", tags=("perm:1",), role="admin")
    _new(api, pool="ci", tags=("perm:1",))
    assert _ids(api, role="viewer", tags=["pool:authz", "perm:1"]) == [visible]
    assert api.ok("tasks_count", {"tags": ["pool:authz", "perm:1"]}, role="viewer")["count"] == 1
    for params in ({"tags": ["perm:1"]}, {}, {"tags": ["pool:ci", "perm:1"]},
                   {"tags": ["pool:authz", "pool:ci"]}):
        for function in ("tasks_list", "tasks_requests", "tasks_count"):
            response = api.post(function, params, role="viewer")
            assert response.status_code == 403, (function, params, response.text)
    assert len(_ids(api, role="admin", tags=["perm:1"])) == 2
    assert len(_ids(api, role="admin")) == 2
    assert api.post("tasks_list", {}, role=None).status_code == 401


def test_counts_sum_what_the_tasks_cost_the_service_and_what_dedup_saved(api, tasks):
    """One tag (an aggregation query) and two (the documents scanned) sum the
    same: each counted task's server_cost, and the deduplicated one's saving."""
    every = [task_id for ids in tasks.values() for task_id in ids]
    results = [api.ok("task_result", {"task_id": task_id}) for task_id in every]
    expected = {name: sum(r["server_cost"][name] for r in results) for name in ("firestore_reads",
                                                                                  "firestore_writes",
                                                                                  "cloud_tasks_ops")}
    saved = sum(r.get("cost_saved_usd") or 0.0 for r in results)
    assert expected["firestore_writes"] > 0
    for tags in (["suite:q"], ["suite:q", "pool:default"]):
        counted = api.ok("tasks_count", {"tags": tags}, role="admin")
        assert counted["count"] == len(every)
        assert counted["server_cost"] == expected
        assert counted["cost_saved_usd"] == pytest.approx(saved)
    none = api.ok("tasks_count", {"tags": ["suite:q", "no:such"]}, role="admin")
    assert (none["count"], none["server_cost"]["firestore_reads"], none["cost_saved_usd"]) == (0, 0, 0.0)
