"""Inputs that once made a function fail (a 500): each is now a 400 naming
its field, or, for the deduplicated task, a right answer."""

import base64
import uuid
from typing import Any

import pytest
import requests

from tests.builders import bot_body, task_body, with_field

#: Each bot API call's own fields, besides the bot's attributes.
BOT_CALLS = {
    "bot_handshake": {},
    "bot_poll": {},
    "bot_claim": {"task_id": "1234567890", "claim_id": "c"},
    "bot_task_update": {"task_id": "1234567891"},
    "bot_task_error": {"task_id": "1234567891"},
    "bot_event": {"event": "bot_log"},
}
LONE_SURROGATE = "\ud800"
#: Over Firestore's 1,500 bytes for a document id or an indexed string.
TOO_LONG = "b" * 2000


def _refused(api, function: str, body: Any, field: str, role: str = "user") -> None:
    answer = api.post(function, body, role=role)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["field"] == field, answer.text


@pytest.mark.parametrize("function", BOT_CALLS)
def test_a_bot_dimension_value_that_is_a_list_is_refused_by_every_bot_call(api, function):
    body = bot_body(**BOT_CALLS[function])
    body["dimensions"]["os"] = [["Linux"]]
    _refused(api, function, body, "dimensions.os", role="bot")


@pytest.mark.parametrize("function", BOT_CALLS)
def test_a_lone_surrogate_in_a_bot_s_state_is_refused_by_every_bot_call(api, function):
    _refused(api, function, bot_body(state={"note": LONE_SURROGATE}, **BOT_CALLS[function]), "state.note",
             role="bot")


def test_secret_bytes_that_are_not_base64_are_refused(api):
    body = with_field(task_body(), ("task_slices", 0, "properties", "secret_bytes"), "é")
    _refused(api, "tasks_new", body, "task_slices[0].properties.secret_bytes")


def test_a_lone_surrogate_is_refused_wherever_a_string_comes_in(api):
    for function, field in [("bot_get", "bot_id"), ("bot_delete", "bot_id"), ("task_cancel", "task_id"),
                            ("bot_events", "bot_id"), ("server_permissions", "pool")]:
        _refused(api, function, {field: LONE_SURROGATE}, field, role="admin")
    for function in ("bots_list", "bots_count"):
        _refused(api, function, {"dimensions": [f"os:{LONE_SURROGATE}"]}, "dimensions[0]", role="admin")
    _refused(api, "tasks_new", task_body(name=LONE_SURROGATE), "name")


def test_ids_and_pools_past_firestore_s_limits_are_refused(api):
    for function in ("bot_events", "bot_tasks", "bot_get"):
        _refused(api, function, {"bot_id": TOO_LONG}, "bot_id", role="admin")
    _refused(api, "bots_dimensions", {"pool": TOO_LONG}, "pool", role="admin")
    _refused(api, "bots_list", {"cursor": TOO_LONG}, "cursor", role="admin")


def test_a_pool_that_is_a_huge_number_is_refused(api):
    _refused(api, "bots_dimensions", {"pool": 2**63}, "pool", role="admin")


@pytest.mark.parametrize("function", ["bots_list", "bots_count"])
def test_too_many_dimension_filters_are_refused_and_many_are_served(api, function):
    api.ok("bot_handshake", bot_body(), role="bot")
    many = ["pool:default"] + [f"k{i}:v" for i in range(63)]
    assert api.post(function, {"dimensions": many}, role="admin").status_code == 200
    _refused(api, function, {"dimensions": many + ["os:Linux"]}, "dimensions", role="admin")
    _refused(api, function, {"dimensions": [f"k{i}:v" for i in range(100)]}, "dimensions", role="admin")


def test_a_deduplicated_task_is_not_a_run_of_the_bot_it_took_its_result_from(api):
    """The deduplicated result names the bot that ran the first task, with no
    start time: the bot's events and tasks show the first task only."""
    body = with_field(task_body(), ("task_slices", 0, "properties", "idempotent"), True)
    first = api.ok("tasks_new", body)["task_id"]
    claim = api.ok("bot_claim", bot_body(task_id=first, claim_id=uuid.uuid4().hex), role="bot")
    run_id = claim["manifest"]["task_id"]
    ended = bot_body(task_id=run_id, output=base64.b64encode(b"hi").decode(), exit_code=0, duration=1.0)
    assert api.post("bot_task_update", ended, role="bot").status_code == 200
    deduped = api.ok("tasks_new", body)
    assert deduped["task_result"]["deduped_from"] == first and deduped["task_result"]["bot_id"] == "bot-1"
    tasks = api.ok("bot_tasks", {"bot_id": "bot-1"}, role="admin")["items"]
    assert [t["task_id"] for t in tasks] == [first]
    events = api.ok("bot_events", {"bot_id": "bot-1"}, role="admin")["items"]
    assert {e["task_id"] for e in events if "task_id" in e and e["event_type"].startswith("task_")} == {first}


def test_a_body_nested_too_deeply_is_refused_naming_the_body(api):
    answer = requests.post(f"{api.base_url}/tasks_new", data="[" * 100_000 + "]" * 100_000, timeout=30,
                           headers={"Authorization": f"Bearer {api.tokens['user']}",
                                    "Content-Type": "application/json"})
    assert answer.status_code == 400 and answer.json()["error"]["message"] == "body: nested too deeply"


def test_a_query_parameter_given_twice_is_a_list(api):
    """`?dimensions=a&dimensions=b` filters on both, as the body's list would."""
    api.ok("bot_handshake", bot_body(), role="bot")
    headers = {"Authorization": f"Bearer {api.tokens['admin']}"}

    def count(*dimensions: str) -> int:
        answer = requests.get(f"{api.base_url}/bots_count", params=[("dimensions", d) for d in dimensions],
                              headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()["count"]

    assert count("pool:default") == count("pool:default", "os:Linux") == 1
    assert count("pool:default", "os:Windows") == 0
