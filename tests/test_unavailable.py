"""A backend down (issue 13): a call answers 503 `unavailable` with
Retry-After within seconds when Firestore or Cloud Storage cannot be
reached, never a 500 after a minute, and the service answers again once it
is back; the clients back off as told and `collect` waits through the outage.
Also: a 405 names the methods the function takes (`Allow`)."""

import base64
import datetime
import hashlib
import logging
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import grpc
import pytest
import requests
from click.testing import CliRunner
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from google.cloud.firestore_v1 import types as firestore_types

from bot import api_client
from client.cli import cli
from client.exit_status import ExitStatus
from functions import service, store
from functions.errors import RETRY_AFTER_SECS
from local import processes
from tests.bot_fakes import FakeServer, error, ok, served
from tests.builders import bot_body, task_body
from tests.grpc_faults import FirestoreServer, hang
from tests.own_firestore import use_firestore

REPO = Path(__file__).resolve().parents[1]
#: Liveness bounds, generous: an unreachable backend is a 503 within this long
#: (the clients' retries give up after 5 s), or this long when it never
#: answers at all (each try gives up after 10 s).
REFUSED_WITHIN_SECS, SILENT_WITHIN_SECS = 15.0, 25.0
#: How long the service may take to answer again once Firestore is back: its
#: gRPC channel tries to reconnect with a backoff that grows with the outage.
RECOVERY_SECS = 60.0
#: The CLI, run as its own process, as a person runs it.
SWARMING = [sys.executable, "-c", "from client.cli import main; main()"]


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    yield from served()


def _assert_unavailable(response: requests.Response, started: float, within: float = REFUSED_WITHIN_SECS) -> None:
    """A 503 that says when to come back, in time, and says nothing of the backend."""
    assert time.monotonic() - started < within
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == str(RETRY_AFTER_SECS)
    assert response.json()["error"]["code"] == "unavailable"
    assert "127.0.0.1" not in response.text and "grpc" not in response.text.lower()


def _eventually(call: Callable[[], requests.Response]) -> requests.Response:
    """`call`'s first answer that is not a 503, or its last within RECOVERY_SECS."""
    deadline = time.monotonic() + RECOVERY_SECS
    while (response := call()).status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.5)
    return response


def _claim(api, task_id: str) -> str:
    """Claims the task as bot-1: its run id."""
    return api.ok("bot_claim", bot_body(task_id=task_id, slice=0, claim_id="c-1"), role="bot")["manifest"]["task_id"]


def _end(run_id: str, output: bytes) -> dict[str, Any]:
    """bot-1's update that reports the run's whole stdout and its success."""
    return bot_body(task_id=run_id, output=base64.b64encode(output).decode(), output_chunk_start=0, exit_code=0,
                    duration=1.0)


def test_calls_answer_503_while_firestore_is_down_and_succeed_once_it_is_back(api, own_firestore) -> None:
    task_id = api.ok("tasks_new", task_body())["task_id"]
    run_id = _claim(api, task_id)
    own_firestore.stop()

    # A read, a creation, and a run's update (a transaction).
    for function, body, role in [("task_result", {"task_id": task_id}, "user"), ("tasks_new", task_body(), "user"),
                                 ("bot_task_update", _end(run_id, b"hi\n"), "bot")]:
        started = time.monotonic()
        _assert_unavailable(api.post(function, body, role), started)

    own_firestore.start()  # Empty: the emulator kept nothing.
    created = _eventually(lambda: api.post("tasks_new", task_body()))
    assert created.status_code == 200, created.text
    assert api.ok("task_result", {"task_id": created.json()["task_id"]})["state"] == "PENDING"


def test_collect_waits_through_a_firestore_outage_and_ends_with_the_task_run_once(
        api, own_firestore, base_url: str, as_user, caplog: pytest.LogCaptureFixture) -> None:
    """Firestore frozen rather than restarted: a restarted emulator is empty
    until the test writes the task back, and a poll in between is a 404 that
    rightly ends `collect`."""
    caplog.set_level(logging.WARNING, logger="functions.http")
    task_id = api.ok("tasks_new", task_body())["task_id"]
    run_id = _claim(api, task_id)
    collect = subprocess.Popen([*SWARMING, "collect", "--server", base_url, task_id], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        own_firestore.freeze(True)
        deadline = time.monotonic() + 60
        while not any(r.getMessage().startswith("task_stdout: a backend") for r in caplog.records):
            assert time.monotonic() < deadline, "collect never asked during the outage"
            time.sleep(0.2)
        assert collect.poll() is None  # Still waiting.

        own_firestore.freeze(False)
        ended = _eventually(lambda: api.post("bot_task_update", _end(run_id, b"hello\n"), role="bot"))
        assert ended.status_code == 200, ended.text

        out, err = collect.communicate(timeout=120)
    finally:
        own_firestore.freeze(False)
        collect.kill()
    assert collect.returncode == 0, err.decode()
    assert out == b"hello\n"
    result = api.ok("task_result", {"task_id": task_id})
    assert (result["state"], result["run_id"], result["try_number"]) == ("COMPLETED", run_id, 1)


def test_a_firestore_that_never_answers_is_a_503_once_each_try_timed_out(
        api, svc: service.Service, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # Connections wait in its backlog, unanswered.
        use_firestore(svc, monkeypatch, f"127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        _assert_unavailable(api.post("tasks_new", task_body()), started, within=SILENT_WITHIN_SECS)


@pytest.mark.parametrize("function, method", [("tasks_list", "RunQuery"), ("tasks_count", "RunAggregationQuery")])
def test_a_query_that_times_out_is_a_503_without_a_retry(
        api, svc: service.Service, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        function: str, method: str) -> None:
    """Against a server that takes the query and never answers. (A bare
    socket that never answers is not the same: gRPC gives up connecting to
    it after 20 s, UNAVAILABLE, which is retried.)"""
    asked: list[Any] = []

    def never(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        asked.append(request)
        return hang(request, context)

    config = svc.service_config  # Read before, as by an instance that ran earlier: the query is the first call.
    with FirestoreServer({method: never}) as server:
        use_firestore(svc, monkeypatch, server.host)
        svc.service_config = config
        started = time.monotonic()
        _assert_unavailable(api.post(function, {}, role="admin"), started, within=SILENT_WITHIN_SECS)
    assert len(asked) == 1  # Not tried again: a retry would take the whole timeout again.
    logged = [r.getMessage() for r in caplog.records if "backend is unreachable" in r.getMessage()]
    assert logged and all("DeadlineExceeded" in m for m in logged), logged


def test_a_query_whose_stream_breaks_midway_goes_on_after_the_last_document_it_had(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The first answer streams two documents and breaks (UNAVAILABLE); the
    query is asked again from after the second, and the caller gets all four
    once each (left to the client library's default retry, the break raised
    its own AttributeError)."""
    names = [f"projects/p/databases/(default)/documents/c/d{i}" for i in range(4)]
    asked: list[Any] = []

    def run_query(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        asked.append(request)
        for name in names[:2] if len(asked) == 1 else names[2:]:
            yield firestore_types.RunQueryResponse(document={"name": name}, read_time=datetime.datetime.now())
        if len(asked) == 1:
            context.abort(grpc.StatusCode.UNAVAILABLE, "broken midway")

    with FirestoreServer({"RunQuery": run_query}) as server:
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", server.host)
        docs = store.query(firestore.Client(project="p", credentials=AnonymousCredentials()), "c", [])
    assert [doc.id for doc in docs] == ["d0", "d1", "d2", "d3"]
    assert len(asked) == 2
    assert asked[1].structured_query.start_at.values[0].reference_value == names[1]


def test_an_unreachable_cloud_storage_is_a_503(api, svc: service.Service, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{processes.free_port()}")  # Nothing listens.
    cut_off = service.Service(svc.settings, svc.clock)
    cut_off.service_config = svc.service_config  # The configuration read, as an instance running before.
    digest = {"hash": hashlib.sha256(b"x").hexdigest(), "size_bytes": 1}
    with service.use(cut_off):
        started = time.monotonic()
        _assert_unavailable(api.post("cas_find_missing", {"digests": [digest]}), started)


@pytest.mark.parametrize("method,function,allowed", [
    ("GET", "tasks_new", "POST"), ("PUT", "task_result", "GET, POST"), ("POST", "bot_code", "GET")])
def test_a_405_names_the_methods_the_function_takes(base_url: str, method: str, function: str, allowed: str) -> None:
    response = requests.request(method, f"{base_url}/{function}", timeout=30)

    assert response.status_code == 405
    assert response.headers["Allow"] == allowed
    assert response.json()["error"]["code"] == "method_not_allowed"


def _unavailable(retry_after: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    status, body, _ = error(503, "unavailable")
    return status, body, {"Retry-After": retry_after}


@pytest.mark.parametrize("retry_after,least,most", [
    ("3", 3.0, 3.0 + api_client.BACKOFF_JITTER_SECS),
    ("3600", api_client.BACKOFF_MAX_SECS, api_client.BACKOFF_MAX_SECS + api_client.BACKOFF_JITTER_SECS),
], ids=["as-told", "capped"])
def test_the_client_waits_as_a_503_says_jittered_and_capped(
        fake: FakeServer, monkeypatch: pytest.MonkeyPatch, retry_after: str, least: float, most: float) -> None:
    slept: list[float] = []
    monkeypatch.setattr(api_client.time, "sleep", slept.append)
    client = api_client.ApiClient(fake.url, "tok")

    waits = []
    for _ in range(4):
        fake.script("task_result", _unavailable(retry_after), ok({"state": "PENDING"}))
        assert client.call("task_result", {"task_id": "t"}) == {"state": "PENDING"}
        waits.append(slept.pop())

    assert all(least <= wait <= most for wait in waits), waits
    assert len(set(waits)) > 1  # Jittered: a fleet told the same does not come back at once.


def _stdout(data: bytes, next_offset: int) -> tuple[int, dict[str, Any], dict[str, str]]:
    """A `task_stdout` answer of an ended task."""
    return ok({"output": base64.b64encode(data).decode(), "next_offset": next_offset, "state": "COMPLETED"})


@pytest.mark.parametrize("command", [["collect", "7a1b2c3d4e5f6000"], ["run", "-d", "pool=default", "--", "true"]])
def test_collect_and_run_wait_through_503s_past_the_client_s_retries(
        fake: FakeServer, monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    monkeypatch.setattr(api_client, "RETRIES", 0)  # Each 503 reaches the CLI at once.
    fake.script("tasks_new", ok({"task_id": "7a1b2c3d4e5f6000"}))
    fake.script("task_stdout", *[_unavailable("0")] * 3, _stdout(b"done\n", 5), _stdout(b"", 5))
    fake.script("task_result", _unavailable("0"), ok({"task_id": "7a1b2c3d4e5f6000", "state": "COMPLETED",
                                                      "exit_code": 0}))

    result = CliRunner().invoke(cli, [command[0], "--server", fake.url, "--token", "tok", *command[1:]])

    assert result.exit_code == 0, result.output
    assert result.stdout == "done\n"
    assert result.stderr.count("HTTP 503: unavailable") == 4 and "waiting on" in result.stderr
    assert fake.names().count("task_stdout") == 5 and fake.names().count("task_result") == 2


def test_collect_gives_up_waiting_on_an_unreachable_server_at_its_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_client, "RETRIES", 0)
    nowhere = f"http://127.0.0.1:{processes.free_port()}"

    result = CliRunner().invoke(cli, ["collect", "--server", nowhere, "--token", "tok", "--timeout", "1",
                                      "7a1b2c3d4e5f6000"])

    assert result.exit_code == ExitStatus.WAIT_TIMEOUT, result.output
    assert "no answer: unreachable" in result.stderr


def test_collect_does_not_wait_on_a_refusal(fake: FakeServer) -> None:
    fake.script("task_stdout", error(404, "not_found"))

    result = CliRunner().invoke(cli, ["collect", "--server", fake.url, "--token", "tok", "7a1b2c3d4e5f6000"])

    assert result.exit_code == ExitStatus.ERROR, result.output
    assert fake.names() == ["task_stdout"]
