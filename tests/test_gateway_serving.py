"""The local stack's gateway as `swarming local` runs it (gunicorn with
local.stack.GATEWAY_OPTIONS, in its own process): it holds hundreds of polls
at once, and keeps an idle client connection open past gunicorn's default 2 s
(issue 16 goal 6). Time bounds are liveness bounds only."""

import concurrent.futures
import dataclasses
import http.client
import time
import urllib.parse
import uuid
from typing import Iterator

import pytest
import requests

from functions import queues
from functions.settings import Settings
from local import processes, stack
from tests.builders import bot_body, task_body

POLLS = 300
#: The gateway's bound on a hold, short so that the test sees them all end.
HOLD = 5.0


@pytest.fixture
def gateway(svc, emulator_env: dict[str, str], tmp_path) -> Iterator[str]:
    """The gunicorn gateway over this test's service (its Firestore project,
    bucket and configuration), with held polls bounded by HOLD."""
    settings = dataclasses.replace(svc.settings, poll_hold_secs=HOLD, poll_holds_per_queue=POLLS)
    env = {**emulator_env, **{field.metadata["env"]: str(getattr(settings, field.name))
                              for field in dataclasses.fields(Settings) if getattr(settings, field.name) != ""}}
    started = stack._start_gateway(processes.free_port(), tmp_path / "gateway.log", env)
    try:
        yield started.url
    finally:
        processes.stop(started.process.pid)


def _poll(url: str, tokens, bot_id: str) -> tuple[dict, float]:
    body = bot_body(bot_id, request_uuid=uuid.uuid4().hex, hold_secs=30)
    start = time.monotonic()
    answer = _post(url, "bot_poll", body, tokens.bot(bot_id))
    return answer, time.monotonic() - start


def _post(url: str, function: str, body: dict, token: str) -> dict:
    response = requests.post(f"{url}/{function}", json=body, headers={"Authorization": f"Bearer {token}"},
                             timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def test_hundreds_of_polls_are_held_at_once_and_a_task_wakes_one(gateway, tokens):
    # Each bot's first poll registers it, one after another: the first
    # check-ins of hundreds of new bots at once contend on the emulator
    # (bot_store.put_dimension_values' transaction), which is not this test's.
    for i in range(POLLS):
        _post(gateway, "bot_poll", bot_body(f"idle-{i}", request_uuid=uuid.uuid4().hex), tokens.bot(f"idle-{i}"))
    _run_one_task(gateway, tokens)  # The bots' queue exists: a bot with none backs off instead.
    # Every worker reads it: a poll that finds no queue backs off instead.
    time.sleep(queues.CACHE_SECS + 1)
    for _ in range(10):
        _post(gateway, "bot_poll", bot_body("idle-1"), tokens.bot("idle-1"))
    time.sleep(1)
    with concurrent.futures.ThreadPoolExecutor(POLLS) as pool:
        start = time.monotonic()
        idle = list(pool.map(lambda i: _poll(gateway, tokens, f"idle-{i}"), range(POLLS)))
        # Held one after another, 300 holds of 5 s would take minutes.
        assert time.monotonic() - start < 6 * HOLD
        assert all(answer["cmd"] == "sleep" and answer["duration"] == 0 for answer, _ in idle), \
            [answer for answer, _ in idle if answer["cmd"] != "sleep" or answer["duration"]]
        assert all(took >= HOLD for _, took in idle)

        polls = [pool.submit(_poll, gateway, tokens, f"idle-{i}") for i in range(POLLS)]
        time.sleep(1)
        task = _post(gateway, "tasks_new", task_body(dimensions={"pool": "default", "os": "Linux"}),
                     tokens["user"])["task_id"]
        answers = [p.result(timeout=60)[0] for p in polls]
    # The task wakes one held poll per instance (gunicorn worker); the others
    # end their hold (or took the task when they came after it).
    claims = [a for a in answers if a["cmd"] == "claim"]
    assert claims and all(a["candidates"][0]["task_id"] == task for a in claims)
    assert all(a == {**a, "cmd": "sleep", "duration": 0} for a in answers if a["cmd"] != "claim")


def _run_one_task(url: str, tokens) -> None:
    _post(url, "tasks_new", task_body(dimensions={"pool": "default", "os": "Linux"}), tokens["user"])
    answer = {}
    for _ in range(20):  # The other worker sees the new queue within queues.CACHE_SECS.
        answer = _post(url, "bot_poll", bot_body("idle-0"), tokens.bot("idle-0"))
        if answer["cmd"] == "claim":
            break
        time.sleep(0.5)
    claim = {**bot_body("idle-0"), **answer["candidates"][0], "claim_id": uuid.uuid4().hex}
    assert _post(url, "bot_claim", claim, tokens.bot("idle-0"))["cmd"] == "run"


def test_an_idle_connection_outlives_gunicorns_default_keep_alive(gateway):
    parts = urllib.parse.urlsplit(gateway)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.request("GET", "/")
    assert connection.getresponse().read()
    sock = connection.sock
    time.sleep(4)  # Twice gunicorn's default keep-alive.
    connection.request("GET", "/")  # RemoteDisconnected, were the connection dropped.
    assert connection.getresponse().status == 200
    assert connection.sock is sock
    connection.close()
