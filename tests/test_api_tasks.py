"""tasks_new validation, authentication and reading results, through HTTP."""

import base64
import copy

import pytest
import requests

from shared.task_request import PUBSUB_TOPIC_RE
from tests.builders import bot_body, task_body, with_field


def test_new_task_is_pending_with_swarming_id(api):
    answer = api.ok("tasks_new", task_body())
    task_id = answer["task_id"]
    assert len(task_id) == 16 and task_id.endswith("0")
    result = api.ok("task_result", {"task_id": task_id})
    assert result["state"] == "PENDING"
    assert result["task_id"] == task_id and result["run_id"] is None
    assert {"pool:default", "priority:100", "user:user@example.com", "name:t"} <= set(result["tags"])


def test_task_result_by_get_with_query(api):
    task_id = api.ok("tasks_new", task_body())["task_id"]
    response = requests.get(f"{api.base_url}/task_result", params={"task_id": task_id},
                            headers={"Authorization": f"Bearer {api.tokens['user']}"}, timeout=10)
    assert response.status_code == 200 and response.json()["state"] == "PENDING"




PROPS = ("task_slices", 0, "properties")


@pytest.mark.parametrize("path,value,field", [
    (("priority",), 300, "priority"),
    (("priority",), "high", "priority"),
    (("task_slices",), [], "task_slices"),
    (("bogus",), 1, "bogus"),
    (PROPS + ("command",), [], "task_slices[0].properties.command"),
    (PROPS + ("command",), ["a"] * 129, "task_slices[0].properties.command"),
    (PROPS + ("dimensions",), [{"key": "os", "value": "Linux"}], "task_slices[0].properties.dimensions.pool"),
    (PROPS + ("dimensions",), [{"key": "pool", "value": "a|b"}], "task_slices[0].properties.dimensions.pool"),
    (PROPS + ("dimensions",), [{"key": "pool", "value": "p"}, {"key": "b@d", "value": "x"}],
     "task_slices[0].properties.dimensions.b@d"),
    (PROPS + ("env",), [{"key": "1BAD", "value": "x"}], "task_slices[0].properties.env[0].key"),
    (PROPS + ("execution_timeout_secs",), 0, "task_slices[0].properties.execution_timeout_secs"),
    (("task_slices", 0, "expiration_secs"), 5, "task_slices[0].expiration_secs"),
    (("tags",), ["nocolon"], "tags[0]"),
])
def test_invalid_request_is_400_naming_the_field(api, path, value, field):
    response = api.post("tasks_new", with_field(task_body(), path, value))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_argument"
    assert error["field"] == field


@pytest.mark.parametrize("path,value,field,reason", [
    (("service_account",), "robot@project.iam.gserviceaccount.com", "service_account",
     "task service accounts are not supported"),
    (("service_account",), "robot", "service_account", "must be empty, 'none' or 'bot'"),
    (("pubsub_topic",), "projects/p/topics/t", "pubsub_topic",
     "must match (" + PUBSUB_TOPIC_RE.pattern + ")?"),
    (("pubsub_userdata",), "opaque", "pubsub_userdata", "needs a pubsub_topic"),
    (("pubsub_auth_token",), "secret", "pubsub_auth_token", "needs a pubsub_topic"),
    (PROPS + ("env",), [{"key": "LUCI_CONTEXT", "value": "/tmp/ctx.json"}], "task_slices[0].properties.env[0].key",
     "LUCI_CONTEXT is set by the bot for every task"),
])
def test_a_field_the_service_would_not_honour_is_refused_by_name(api, path, value, field, reason):
    response = api.post("tasks_new", with_field(task_body(), path, value))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field and response.json()["error"]["message"] == f"{field}: {reason}"


def test_slices_with_different_secret_bytes_are_refused(api):
    body = task_body()
    body["task_slices"] = [copy.deepcopy(body["task_slices"][0]) for _ in range(2)]
    secrets = [base64.b64encode(secret).decode() for secret in (b"first-s3cret", b"second-s3cret")]
    for task_slice, secret in zip(body["task_slices"], secrets):
        task_slice["properties"]["secret_bytes"] = secret
    response = api.post("tasks_new", body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == "task_slices[1].properties.secret_bytes"
    assert not any(shown in response.text for shown in ["s3cret", *secrets])


@pytest.mark.parametrize("account", ["", "none", "bot"])
def test_the_service_accounts_honoured_are_recorded_as_given(api, account):
    task_id = api.ok("tasks_new", task_body(service_account=account))["task_id"]
    assert api.ok("task_request", {"task_id": task_id})["service_account"] == account


def test_invalid_request_stores_nothing(api, svc):
    api.post("tasks_new", with_field(task_body(), ("priority",), 999))
    assert list(svc.store._db.collections()) == []


def test_body_must_be_json_object(api):
    response = requests.post(f"{api.base_url}/tasks_new", data=b"{not json",
                             headers={"Authorization": f"Bearer {api.tokens['user']}"}, timeout=10)
    assert response.status_code == 400 and "JSON" in response.json()["error"]["message"]
    assert api.post("tasks_new", [1, 2]).status_code == 400


def test_no_token_is_401(api):
    response = api.post("tasks_new", task_body(), role=None)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


def test_unknown_token_is_401(api):
    response = requests.post(f"{api.base_url}/tasks_new", json=task_body(),
                             headers={"Authorization": "Bearer nope"}, timeout=10)
    assert response.status_code == 401


@pytest.mark.parametrize("function,body,role", [
    ("tasks_new", task_body(), "bot"),
    ("bot_poll", bot_body(), "user"),
    ("bot_poll", bot_body(), "admin"),
])
def test_wrong_role_is_403(api, function, body, role):
    assert api.post(function, body, role=role).status_code == 403


def test_admin_may_create_tasks(api):
    assert api.post("tasks_new", task_body(), role="admin").status_code == 200


def test_unknown_task_is_404_and_malformed_id_400(api):
    assert api.post("task_result", {"task_id": "5a5a5a5a5a5a5a50"}).status_code == 404
    response = api.post("task_result", {"task_id": "nope"})
    assert response.status_code == 400
    assert api.post("task_result", {}).status_code == 400


@pytest.mark.parametrize("function, role, body", [
    ("task_cancel", "user", {"task_id": "a/b"}),
    ("task_cancel", "user", {"task_id": "5a5a5a5a5a5a5a51"}),  # A run id: cancel takes the task's.
    ("timer_expire", "admin", {"task_id": "a/b", "slice": 0}),
    ("timer_bot_died", "admin", {"task_id": 7, "try_number": 1}),
    ("task_stdout", "user", {"task_id": ["5a5a5a5a5a5a5a50"]}),
])
def test_a_malformed_task_id_is_400_naming_it(api, function, role, body):
    response = api.post(function, body, role=role)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == "task_id"


def test_unknown_function_is_404(api):
    assert api.post("no_such_function", {}).status_code == 404


def test_wrong_method_is_405(api):
    response = requests.get(f"{api.base_url}/tasks_new", headers={"Authorization": f"Bearer {api.tokens['user']}"},
                            timeout=10)
    assert response.status_code == 405


@pytest.mark.parametrize("params,field", [
    ({"offset": None}, None),  # null is absent: the default offset
    ({"offset": "--5"}, "offset"),
    ({"offset": "²"}, "offset"),
    ({"length": "1.5"}, "length"),
])
def test_integer_parameter_null_is_absent_and_malformed_is_400(api, params, field):
    task_id = api.ok("tasks_new", task_body())["task_id"]
    response = api.post("task_stdout", {"task_id": task_id, **params})
    if field is None:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 400, response.text
        assert response.json()["error"]["message"].startswith(f"{field}:")
