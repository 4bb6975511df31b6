"""`task_pending` (functions/pending.py) over real HTTP on the emulators:
the live bots matching each slice, the dimension that rules out the most,
the position in the queue, the slices' expiry, and who may ask."""

import datetime

from tests.builders import bot_body, task_body


def _pending(api, task_id: str, role: str = "user") -> dict:
    return api.ok("task_pending", {"task_id": task_id}, role=role)


def _task(api, priority: int = 100, **dims: str) -> str:
    body = task_body(["true"], dimensions={"pool": "default", **dims})
    return api.ok("tasks_new", {**body, "priority": priority})["task_id"]


def _ts(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_live_bots_matching_each_slice_and_the_dimension_that_rules_them_out(api):
    api.ok("bot_handshake", bot_body("bot-1"), role="bot")  # pool default, os Linux.

    linux = _pending(api, _task(api, os="Linux"))["slices"][0]
    windows = _pending(api, _task(api, os="Windows"))["slices"][0]
    either = _pending(api, _task(api, os="Windows|Linux"))["slices"][0]

    assert (linux["matching_bots"], linux["blocking"], linux["partial"]) == (1, None, False)
    assert windows["matching_bots"] == 0
    assert windows["blocking"] == {"dimension": "os:Windows", "matching_bots": 0}
    assert either["matching_bots"] == 1


def test_an_empty_pool_is_what_rules_out_every_bot(api):
    found = _pending(api, api.ok("tasks_new", task_body(["true"], dimensions={"pool": "empty", "os": "Linux"}))
                     ["task_id"])["slices"][0]
    assert found["matching_bots"] == 0
    assert found["blocking"] == {"dimension": "pool:empty", "matching_bots": 0}


def test_the_position_counts_the_slices_of_its_queue_bots_get_first(api):
    first, second = _task(api), _task(api)
    urgent = _task(api, priority=50)
    other_queue = _task(api, os="Linux")

    assert [_pending(api, t)["slices"][0]["position"] for t in (urgent, first, second)] == [0, 1, 2]
    assert _pending(api, other_queue)["slices"][0]["position"] == 0


def test_a_later_slice_expires_after_the_current_one_and_is_not_queued_yet(api):
    body = task_body(["true"], dimensions={"pool": "default", "os": "Windows"})
    fallback = {**body["task_slices"][0], "expiration_secs": 300}
    task_id = api.ok("tasks_new", {**body, "task_slices": [body["task_slices"][0], fallback]})["task_id"]

    current, later = _pending(api, task_id)["slices"]

    assert (current["slice"], later["slice"]) == (0, 1)
    assert current["position"] == 0 and later["position"] is None
    assert _ts(later["expiration_ts"]) - _ts(current["expiration_ts"]) == datetime.timedelta(seconds=300)


def test_a_task_no_longer_pending_has_no_slice_to_explain(api):
    task_id = _task(api)
    api.ok("task_cancel", {"task_id": task_id})
    assert _pending(api, task_id) == {"task_id": task_id, "state": "CANCELED", "slices": []}


def test_an_unknown_task_is_a_404_and_another_pool_s_viewer_a_403(api):
    assert api.post("task_pending", {"task_id": "7" * 16}).status_code == 404
    refused = api.post("task_pending", {"task_id": _task(api)}, role="viewer")
    assert refused.status_code == 403 and "may not read task" in refused.json()["error"]["message"]
    assert api.post("task_pending", {"task_id": "not an id"}).json()["error"]["field"] == "task_id"
