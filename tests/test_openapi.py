"""The OpenAPI document matches the registry of functions, is current, and
says what each function reads and answers as the wire types read and write it."""

import base64
import json
from typing import Any

import jsonschema_rs
import pytest
import requests

from functions import endpoints, fleet, openapi
from functions.endpoints import COMMON_ERRORS, FUNCTIONS
from shared import bot_api, dimensions
from shared.cas import Digest
from shared.manifest import Manifest
from shared.task_request import MAX_PRIORITY, MAX_SLICES, SERVICE_ACCOUNTS, TaskRequest

DOCUMENT = json.loads(openapi.PATH.read_text())
PATHS = DOCUMENT["paths"]
#: The functions whose handlers read their parameters themselves (no `endpoints.takes`).
ATTRS = bot_api.BotAttributes({"id": ["bot-1"], "pool": ["default"], "os": ["Linux"]}, {"disk": {"free": 3}},
                              "v1", "session")
TASK, RUN = "1234567890abcde0", "1234567890abcde1"
DIGEST = Digest("ab" * 32, 3)
MANIFEST = Manifest(task_id=RUN, bot_id="bot-1", command=("echo", "hi"), env={"A": "1"}, hard_timeout=60)


def _body(function: str) -> dict[str, Any]:
    return PATHS[f"/{function}"]["post"]["requestBody"]["content"]["application/json"]["schema"]


def _answer(function: str, method: str = "post") -> dict[str, Any]:
    return PATHS[f"/{function}"][method]["responses"]["200"]["content"]["application/json"]["schema"]


def _conforms(schema: dict[str, Any], value: Any) -> None:
    errors = [error.message for error in jsonschema_rs.validator_for(schema).iter_errors(value)]
    assert not errors, errors


def test_every_function_and_only_they_are_documented_with_their_methods_and_who_may_call_them():
    assert set(PATHS) == {f"/{f.name}" for f in FUNCTIONS}
    for function in FUNCTIONS:
        operations = PATHS[f"/{function.name}"]
        assert set(operations) == {m.lower() for m in function.methods}, function.name
        for operation in operations.values():
            assert operation["summary"], function.name
            assert (operation["x-action"], operation["x-who"]) == (function.action.value, function.action.who)


def test_each_operation_reads_and_answers_what_its_handler_s_contract_says():
    """The request schema is the one the handler reads its parameters with;
    a GET takes the same fields as query parameters."""
    assert all(hasattr(f.handler, "contract") for f in FUNCTIONS), "a handler without @takes"
    for function in FUNCTIONS:
        contract = endpoints.contract(function)
        for method, operation in PATHS[f"/{function.name}"].items():
            declared = contract.params.schema()
            if method == "post":
                assert _body(function.name) == declared, function.name
            else:
                names = [p["name"] for p in operation["parameters"] if p["name"] != "token"]
                assert names == list(declared.get("properties", {})), function.name
            responses = operation["responses"]
            expected = {"200", *map(str, COMMON_ERRORS + contract.errors)} | ({"302"} if contract.redirects else set())
            assert set(responses) == expected, function.name
            assert responses["200"]["content"] == {contract.media: {"schema": contract.answer}}, function.name


def test_the_schemas_carry_the_readers_types_bounds_enums_and_required_fields():
    new_task = _body("tasks_new")
    assert new_task["required"] == ["task_slices"] and new_task["additionalProperties"] is False
    assert new_task["properties"]["priority"] | {"default": 200} == {
        "type": "integer", "minimum": 0, "maximum": MAX_PRIORITY, "default": 200,
        "description": "below 20: admins only"}
    slices = new_task["properties"]["task_slices"]
    assert (slices["minItems"], slices["maxItems"]) == (1, MAX_SLICES)
    assert new_task["properties"]["service_account"]["enum"] == list(SERVICE_ACCOUNTS)
    properties = slices["items"]["properties"]["properties"]
    assert properties["required"] == ["command", "dimensions"]
    assert properties["properties"]["dimensions"]["items"]["properties"]["value"]["maxLength"] == \
        dimensions.MAX_VALUE_LENGTH
    assert _body("bot_event")["properties"]["event"]["enum"] == list(bot_api.BOT_REPORTED_EVENTS)
    assert set(_body("bot_task_update")["required"]) == {"dimensions", "task_id"}
    query = {p["name"]: p for p in PATHS["/bots_list"]["get"]["parameters"]}
    assert query["limit"]["schema"]["maximum"] == fleet.MAX_LIMIT and not query["limit"]["required"]
    assert query["dimensions"]["schema"]["maxItems"] == fleet.MAX_DIMENSION_FILTERS
    assert query["dimensions"]["schema"]["items"]["type"] == "string"  # A query string carries no object.
    assert {p["name"]: p["required"] for p in PATHS["/bot_get"]["get"]["parameters"]} == {"bot_id": True}
    assert _body("bot_get")["properties"]["bot_id"]["maxLength"] == dimensions.MAX_VALUE_LENGTH


def test_non_json_answers_and_errors_are_documented():
    code = PATHS["/bot_code"]["get"]["responses"]
    assert set(code["200"]["content"]) == {"application/octet-stream"} and "Location" in code["302"]["headers"]
    assert set(PATHS["/bot_bootstrap"]["get"]["responses"]["200"]["content"]) == {"text/x-shellscript"}
    assert "token" in {p["name"] for p in PATHS["/bot_bootstrap"]["get"]["parameters"]}
    assert set(PATHS["/bot_task_update"]["post"]["responses"]) >= {"409", "413"}
    refusal = DOCUMENT["components"]["responses"]["Error404"]["content"]["application/json"]["schema"]
    _conforms({**refusal, "components": DOCUMENT["components"]},
              {"error": {"code": "not_found", "message": "no task 1234567890"}})
    with pytest.raises(AssertionError):
        _conforms({**refusal, "components": DOCUMENT["components"]}, {"error": {"code": "conflict", "message": ""}})


REQUESTS = [
    ("bot_handshake", bot_api.Handshake(ATTRS)),
    ("bot_poll", bot_api.Poll(ATTRS, "uuid-1")),
    ("bot_claim", bot_api.ClaimRequest(ATTRS, TASK, "claim-1", 2)),
    ("bot_task_update", bot_api.TaskUpdate(ATTRS, RUN, bot_api.Update(3, b"out", bot_api.Completion(
        0, 1.5, cas_output_root=DIGEST, performance_stats={"bot_overhead_secs": 1.0, "cas_upload": {"items": 2}})))),
    ("bot_task_error", bot_api.TaskError(ATTRS, RUN, "lost", (DIGEST,))),
    ("bot_event", bot_api.Event(ATTRS, "bot_log", "hello")),
]
REPLIES = [
    ("bot_handshake", bot_api.HandshakeReply("s", "v1", "dev", {"pool": ["default"]}, "def hook(): pass", "x.py")),
    ("bot_poll", bot_api.Sleep(2.5, "s")),
    ("bot_poll", bot_api.Claim((bot_api.Candidate(TASK, 1),))),
    ("bot_poll", bot_api.UpdateCode("e" * 64)),
    ("bot_poll", bot_api.Restart("group changed", host=True)),
    ("bot_poll", bot_api.Terminate(TASK)),
    ("bot_claim", bot_api.Run(MANIFEST, "s", "token")),
    ("bot_claim", bot_api.Skip("lost")),
    ("bot_task_update", bot_api.TaskUpdateReply(True, "killed")),
    ("bot_task_error", bot_api.TaskErrorReply("BOT_DIED")),
    ("bot_event", bot_api.EventReply()),
]


@pytest.mark.parametrize("function, message", REQUESTS, ids=[f for f, _ in REQUESTS])
def test_every_bot_request_conforms_to_its_documented_schema(function, message):
    _conforms(_body(function), message.to_wire())


@pytest.mark.parametrize("function, reply", REPLIES, ids=[type(r).__name__ for _, r in REPLIES])
def test_every_bot_reply_conforms_to_its_documented_answer(function, reply):
    _conforms(_answer(function), reply.to_wire())


def test_a_full_task_request_conforms_and_a_bad_one_does_not():
    body = {"name": "n", "priority": 100, "tags": ["k:v"], "task_slices": [{"properties": {
        "command": ["echo"], "dimensions": [{"key": "pool", "value": "default"}, {"key": "os", "value": "Linux|Mac"}],
        "env": [{"key": "A", "value": "1"}], "env_prefixes": [{"key": "PATH", "value": ["bin"]}],
        "caches": [{"name": "pip", "path": "cache/pip"}], "outputs": ["out"], "idempotent": True,
        "cas_input_root": {"digest": DIGEST.to_wire()}, "secret_bytes": base64.b64encode(b"s").decode()},
        "expiration_secs": 60}], "request_uuid": "u-1", "service_account": "bot"}
    _conforms(_body("tasks_new"), TaskRequest.from_wire(body).to_wire(include_secrets=True))
    with pytest.raises(AssertionError):
        _conforms(_body("tasks_new"), {**body, "priority": MAX_PRIORITY + 1})


def test_the_committed_document_is_current():
    """Regenerate with `python -m functions.openapi` after changing the registry or a wire type."""
    assert openapi.PATH.read_text() == openapi.text()


def test_the_reference_in_docs_is_rendered_from_the_committed_document():
    """docs/http-api.md is not written by hand: `python -m functions.openapi` renders it."""
    assert openapi.MARKDOWN.read_text() == openapi.markdown(DOCUMENT)
    for function in FUNCTIONS:
        assert f"### `{function.name}`" in openapi.MARKDOWN.read_text()
        assert function.description and function.description in openapi.MARKDOWN.read_text(), function.name


def test_the_gateway_serves_it(base_url):
    answer = requests.get(f"{base_url}/openapi.json", timeout=10)
    assert answer.status_code == 200 and answer.json() == DOCUMENT
