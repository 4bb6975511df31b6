"""Every operation of the API document, called by schemathesis with inputs it
generates from the document (valid ones, and invalid ones) as each kind of
caller: whatever comes in, no answer is a server error, and every answer is
one the document gives that operation, in the shape it gives.

Derandomized with a fixed number of examples, so that a failure reproduces;
schemathesis prints the failing request as a curl command."""

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

from functions import openapi
from shared import task_id as task_ids
from tests.builders import bot_body, task_body
from tests.conftest import Api

SCHEMA = schemathesis.openapi.from_path(openapi.PATH)
SCHEMA.config.generation.update(modes=list(GenerationMode), deterministic=True, database="none",
                                with_security_parameters=False)
# Generated examples only: the coverage phase's boundary cases are hundreds an operation.
SCHEMA.config.phases.update(phases=["examples", "fuzzing"])
#: Who calls (tests/conftest.py's Tokens): a user, an admin, bot-1, and the timers' account.
ROLES = ("user", "admin", "bot", "internal")
#: Examples per operation and caller (valid and invalid ones): about 2 minutes in all on 2 cores.
EXAMPLES = 40
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@pytest.fixture
def world(api: Api) -> dict[str, str]:
    """What generated ids are pointed at, so that calls reach past "not found":
    bot-1, running (its first try) a task of pool `default`."""
    api.ok("bot_handshake", bot_body(), role="bot")
    task_id = api.ok("tasks_new", task_body())["task_id"]
    api.ok("bot_claim", bot_body(task_id=task_id, claim_id="world"), role="bot")
    return {"bot_id": "bot-1", "task_id": task_id}


def _steer(params: Any, world: dict[str, str]) -> None:
    """Ids that have the right shape name what exists; a bot names itself
    (bot-1, the caller); a task asks for the pool `default`."""
    if not isinstance(params, dict):
        return
    task_id = params.get("task_id")
    if isinstance(task_id, str) and task_ids.is_valid(task_id):
        params["task_id"] = task_ids.run_id(world["task_id"], int(task_id[-1]))
    if isinstance(params.get("bot_id"), str) and params["bot_id"]:
        params["bot_id"] = world["bot_id"]
    if isinstance(params.get("dimensions"), dict):
        params["dimensions"]["id"] = [world["bot_id"]]
    slices = params.get("task_slices")
    for task_slice in slices if isinstance(slices, list) else []:
        properties = task_slice.get("properties") if isinstance(task_slice, dict) else None
        dims = properties.get("dimensions") if isinstance(properties, dict) else None
        if isinstance(dims, list):
            dims[:] = [d for d in dims if not (isinstance(d, dict) and d.get("key") == "pool")]
            dims.append({"key": "pool", "value": "default"})


@pytest.mark.parametrize("role", ROLES)
@SCHEMA.parametrize()
# No shrinking, to bound the time: the failing request is printed as it was sent. The
# service and the world are made once per operation and caller, on purpose.
@settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
def test_no_input_makes_a_server_error_or_an_undocumented_answer(case, role, world, base_url, tokens):
    _steer(case.body, world)
    _steer(case.query, world)
    response = case.call(base_url=base_url, headers={"Authorization": f"Bearer {tokens[role]}"}, timeout=30)
    case.validate_response(response, checks=CHECKS)
