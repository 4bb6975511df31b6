"""The Cloud Tasks emulator, run as the local stack runs it (its own process,
started by its command line), driven by the official client, delivering to a
local HTTP server that stands for the task handlers."""

import asyncio
import dataclasses
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.api_core import exceptions
from google.auth import crypt, jwt
from google.auth.transport.requests import Request
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcAsyncIOTransport
from google.oauth2 import id_token
from google.rpc import code_pb2

from local import processes
from local.cloud_tasks_emulator import Settings, client_for, serve
from local.cloud_tasks_emulator.messages import duration, timestamp
from local.cloud_tasks_emulator.retry import RetryPolicy

REPO = Path(__file__).resolve().parents[1]
LOCATION = "projects/test-project/locations/us-central1"
SERVICE_ACCOUNT = "timers@test-project.iam.gserviceaccount.com"
#: The emulator under test accepts deadlines this short, so that tests of deadlines are quick.
MIN_DEADLINE = 0.5


# The emulator, in its own process.

@dataclasses.dataclass
class Running:
    process: subprocess.Popen
    host: str
    certs_url: str


def start_emulator(log: Path) -> Running:
    port, certs_port = processes.free_port(), processes.free_port()
    process = processes.spawn(
        [sys.executable, "-m", "local.cloud_tasks_emulator", "--port", str(port), "--certs-port", str(certs_port),
         "--min-dispatch-deadline", str(MIN_DEADLINE)],
        log, cwd=REPO,
    )
    certs_url = f"http://127.0.0.1:{certs_port}/oauth2/v1/certs"
    processes.wait_until(processes.http_ok(certs_url), process, "Cloud Tasks emulator", log, timeout=20)
    return Running(process, f"127.0.0.1:{port}", certs_url)


def stop_emulator(running: Running) -> int:
    """SIGTERM, as the local stack stops it; the exit status."""
    running.process.send_signal(signal.SIGTERM)
    try:
        return running.process.wait(timeout=5)
    finally:
        processes.stop(running.process.pid)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = start_emulator(tmp_path_factory.mktemp("cloud-tasks") / "emulator.log")
    yield running
    assert stop_emulator(running) == 0


@pytest.fixture(scope="module")
def tasks(emulator: Running) -> tasks_v2.CloudTasksClient:
    return client_for(emulator.host)


# The task handlers.

@dataclasses.dataclass(frozen=True)
class Answer:
    status: int = 200
    #: Seconds before answering: a slow or hung handler.
    delay: float = 0.0
    headers: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Received:
    at: float
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Target:
    """An HTTP server on which each path answers a scripted sequence of
    answers (then 200) and records every request it receives."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._scripts: dict[str, list[Answer]] = {}
        self._arrived = threading.Condition()
        #: Set at teardown, so that hung handlers end.
        self.released = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def script(self, path: str, *answers: Answer) -> str:
        self._scripts[path] = list(answers)
        return self.url(path)

    def requests(self, path: str) -> list[Received]:
        with self._arrived:
            return [r for r in self.received if r.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 5.0) -> list[Received]:
        with self._arrived:
            assert self._arrived.wait_for(lambda: len(self.requests(path)) >= count, timeout), (
                f"{path}: {len(self.requests(path))} of {count} requests within {timeout} s")
            return self.requests(path)

    def close(self) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, path: str) -> Answer:
        with self._arrived:
            script = self._scripts.get(path, [])
            return script.pop(0) if script else Answer()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        target = self

        class Handler(BaseHTTPRequestHandler):
            def handle_one(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with target._arrived:
                    target.received.append(Received(time.time(), self.command, self.path, dict(self.headers), body))
                    target._arrived.notify_all()
                answer = target._answer(self.path)
                if answer.delay:
                    target.released.wait(answer.delay)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers:
                        self.send_header(name, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the emulator gave up on a hung handler

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = handle_one

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


@pytest.fixture
def target() -> Iterator[Target]:
    server = Target()
    yield server
    server.close()


# Helpers.

def new_queue(tasks: tasks_v2.CloudTasksClient, min_backoff: float = 0.1, max_backoff: float = 10.0,
              max_attempts: int = 0, max_concurrent: int = 0) -> str:
    name = f"{LOCATION}/queues/q-{uuid.uuid4().hex[:12]}"
    tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(
        name=name,
        retry_config=tasks_v2.RetryConfig(min_backoff=duration(min_backoff), max_backoff=duration(max_backoff),
                                          max_attempts=max_attempts),
        rate_limits=tasks_v2.RateLimits(max_concurrent_dispatches=max_concurrent),
    ))
    return name


def http_task(url: str, name: str = "", at: float | None = None, deadline: float | None = None,
              **request: object) -> tasks_v2.Task:
    task = tasks_v2.Task(name=name, http_request=tasks_v2.HttpRequest(url=url, **request))
    if at is not None:
        task.schedule_time = timestamp(at)
    if deadline is not None:
        task.dispatch_deadline = duration(deadline)
    return task


def task_id() -> str:
    return f"t-{uuid.uuid4().hex}"


def wait_gone(tasks: tasks_v2.CloudTasksClient, name: str, timeout: float = 5.0) -> None:
    """Until the emulator has recorded the answer that removed the task."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            tasks.get_task(name=name)
        except exceptions.NotFound:
            return
        time.sleep(0.01)
    raise AssertionError(f"{name} still exists after {timeout} s")


# Queues.

def test_queue_create_get_list_delete(tasks: tasks_v2.CloudTasksClient) -> None:
    name = f"{LOCATION}/queues/lifecycle-{uuid.uuid4().hex[:8]}"
    created = tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=name))

    assert created.state == tasks_v2.Queue.State.RUNNING
    assert created.retry_config.max_attempts == 100
    assert created.retry_config.min_backoff.total_seconds() == 0.1
    assert created.retry_config.max_backoff.total_seconds() == 3600
    assert created.retry_config.max_doublings == 16
    assert created.rate_limits.max_concurrent_dispatches == 20
    assert tasks.get_queue(name=name) == created
    assert name in [queue.name for queue in tasks.list_queues(parent=LOCATION)]
    with pytest.raises(exceptions.AlreadyExists):
        tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=name))

    tasks.delete_queue(name=name)
    with pytest.raises(exceptions.NotFound):
        tasks.get_queue(name=name)
    with pytest.raises(exceptions.NotFound):
        tasks.delete_queue(name=name)
    with pytest.raises(exceptions.FailedPrecondition, match="existed too recently"):
        tasks.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=name))


def test_list_queues_pages(tasks: tasks_v2.CloudTasksClient) -> None:
    location = f"projects/pages-{uuid.uuid4().hex[:8]}/locations/us-central1"
    created = [tasks.create_queue(parent=location, queue=tasks_v2.Queue(name=f"{location}/queues/q{i}")).name
               for i in range(5)]

    pager = tasks.list_queues(request={"parent": location, "page_size": 2})

    assert sorted(queue.name for queue in pager) == created


def test_purge_queue_removes_its_tasks(tasks: tasks_v2.CloudTasksClient, target: Target) -> None:
    queue = new_queue(tasks)
    url = target.url("/purged")
    names = [f"{queue}/tasks/{task_id()}" for _ in range(3)]
    for name in names:
        tasks.create_task(parent=queue, task=http_task(url, name, at=time.time() + 0.2))

    purged = tasks.purge_queue(name=queue)

    assert "purge_time" in purged
    assert list(tasks.list_tasks(parent=queue)) == []
    with pytest.raises(exceptions.AlreadyExists):
        tasks.create_task(parent=queue, task=http_task(url, names[0]))
    time.sleep(0.4)
    assert target.requests("/purged") == []


def test_deleted_queue_dispatches_nothing(tasks: tasks_v2.CloudTasksClient, target: Target) -> None:
    queue = new_queue(tasks)
    tasks.create_task(parent=queue, task=http_task(target.url("/orphan"), at=time.time() + 0.2))

    tasks.delete_queue(name=queue)

    time.sleep(0.4)
    assert target.requests("/orphan") == []


# Tasks.

def test_task_create_get_list_delete(tasks: tasks_v2.CloudTasksClient, target: Target) -> None:
    queue = new_queue(tasks)
    at = time.time() + 3600
    names = [f"{queue}/tasks/{task_id()}" for _ in range(5)]
    for name in names:
        created = tasks.create_task(parent=queue, task=http_task(target.url("/later"), name, at=at, body=b"payload"))
        assert created.name == name
        assert created.view == tasks_v2.Task.View.BASIC

    basic = tasks.get_task(name=names[0])
    full = tasks.get_task(request={"name": names[0], "response_view": tasks_v2.Task.View.FULL})
    listed = tasks.list_tasks(request={"parent": queue, "page_size": 2})

    assert basic.http_request.body == b"" and full.http_request.body == b"payload"
    assert basic.http_request.http_method == tasks_v2.HttpMethod.POST
    assert basic.http_request.headers["User-Agent"] == "Google-Cloud-Tasks"
    assert abs(basic.schedule_time.timestamp() - at) < 1e-6
    assert basic.dispatch_deadline.total_seconds() == 600
    assert basic.dispatch_count == 0 and "first_attempt" not in basic
    assert sorted(task.name for task in listed) == sorted(names)

    tasks.delete_task(name=names[0])
    with pytest.raises(exceptions.NotFound, match="existed recently"):
        tasks.get_task(name=names[0])
    with pytest.raises(exceptions.NotFound):
        tasks.delete_task(name=names[0])
    assert len(list(tasks.list_tasks(parent=queue))) == 4


def test_unnamed_task_gets_a_name_and_is_delivered(tasks: tasks_v2.CloudTasksClient, target: Target) -> None:
    queue = new_queue(tasks)

    created = tasks.create_task(parent=queue, task=http_task(target.url("/unnamed")))

    assert created.name.startswith(f"{queue}/tasks/")
    assert created.name.rpartition("/")[2].isdigit()
    received = target.wait_for("/unnamed", 1)
    assert received[0].headers["X-CloudTasks-TaskName"] == created.name.rpartition("/")[2]
    wait_gone(tasks, created.name)


def test_reused_task_name_already_exists(tasks: tasks_v2.CloudTasksClient, target: Target) -> None:
    queue = new_queue(tasks)
    pending, delivered, deleted = (f"{queue}/tasks/{task_id()}" for _ in range(3))
    tasks.create_task(parent=queue, task=http_task(target.url("/pending"), pending, at=time.time() + 3600))
    tasks.create_task(parent=queue, task=http_task(target.url("/delivered"), delivered))
    tasks.create_task(parent=queue, task=http_task(target.url("/deleted"), deleted, at=time.time() + 3600))
    tasks.delete_task(name=deleted)
    target.wait_for("/delivered", 1)
    wait_gone(tasks, delivered)

    for name in (pending, delivered, deleted):
        with pytest.raises(exceptions.AlreadyExists):
            tasks.create_task(parent=queue, task=http_task(target.url("/again"), name))
    time.sleep(0.2)
    assert target.requests("/again") == []


def test_task_name_is_reusable_after_the_tombstone_window(target: Target) -> None:
    emulator = serve(settings=Settings(task_tombstone_seconds=0.3))
    try:
        tasks = client_for(emulator.host)
        queue = new_queue(tasks)
        name = f"{queue}/tasks/{task_id()}"
        tasks.create_task(parent=queue, task=http_task(target.url("/x"), name, at=time.time() + 3600))
        tasks.delete_task(name=name)
        with pytest.raises(exceptions.AlreadyExists):
            tasks.create_task(parent=queue, task=http_task(target.url("/x"), name, at=time.time() + 3600))

        time.sleep(0.4)

        again = tasks.create_task(parent=queue, task=http_task(target.url("/x"), name, at=time.time() + 3600))
        assert again.name == name
    finally:
        emulator.stop()


def test_not_found(tasks: tasks_v2.CloudTasksClient, target: Target) -> None:
    queue = new_queue(tasks)
    missing_queue = f"{LOCATION}/queues/missing-{uuid.uuid4().hex[:8]}"

    for call in (
        lambda: tasks.get_queue(name=missing_queue),
        lambda: tasks.purge_queue(name=missing_queue),
        lambda: tasks.delete_queue(name=missing_queue),
        lambda: tasks.create_task(parent=missing_queue, task=http_task(target.url("/x"))),
        lambda: list(tasks.list_tasks(parent=missing_queue)),
        lambda: tasks.get_task(name=f"{queue}/tasks/never-created"),
        lambda: tasks.delete_task(name=f"{queue}/tasks/never-created"),
    ):
        with pytest.raises(exceptions.NotFound):
            call()


@pytest.mark.parametrize("parent,task", [
    (f"{LOCATION}/queues/bad_queue_id", http_task("http://127.0.0.1/")),
    (f"{LOCATION}/queues/q", http_task("http://127.0.0.1/", f"{LOCATION}/queues/q/tasks/not a valid id")),
    (f"{LOCATION}/queues/q", http_task("http://127.0.0.1/", f"{LOCATION}/queues/q/tasks/{'a' * 501}")),
    (f"{LOCATION}/queues/q", http_task("http://127.0.0.1/", f"{LOCATION}/queues/other/tasks/t")),
    (f"{LOCATION}/queues/q", http_task("")),
    (f"{LOCATION}/queues/q", http_task("ftp://127.0.0.1/")),
    (f"{LOCATION}/queues/q", http_task("http://127.0.0.1/", http_method=tasks_v2.HttpMethod.GET, body=b"x")),
    (f"{LOCATION}/queues/q", http_task("http://127.0.0.1/", deadline=1801)),
    (f"{LOCATION}/queues/q", http_task("http://127.0.0.1/", at=time.time() + 31 * 24 * 3600)),
    (f"{LOCATION}/queues/q", http_task("http://127.0.0.1/", oidc_token=tasks_v2.OidcToken(audience="a"))),
    (f"{LOCATION}/queues/q", tasks_v2.Task()),
])
def test_invalid_task_requests(tasks: tasks_v2.CloudTasksClient, parent: str, task: tasks_v2.Task) -> None:
    with pytest.raises(exceptions.InvalidArgument):
        tasks.create_task(parent=parent, task=task)


def test_invalid_queue_requests(tasks: tasks_v2.CloudTasksClient) -> None:
    for parent, queue in (
        (LOCATION, tasks_v2.Queue(name="queues/q")),
        (LOCATION, tasks_v2.Queue(name=f"{LOCATION}/queues/{'q' * 101}")),
        ("projects/p/locations/elsewhere", tasks_v2.Queue(name=f"{LOCATION}/queues/q")),
        (LOCATION, tasks_v2.Queue(name=f"{LOCATION}/queues/q", retry_config=tasks_v2.RetryConfig(max_attempts=-2))),
        (LOCATION, tasks_v2.Queue(name=f"{LOCATION}/queues/q", retry_config=tasks_v2.RetryConfig(
            min_backoff=duration(10), max_backoff=duration(1)))),
        (LOCATION, tasks_v2.Queue(name=f"{LOCATION}/queues/q",
                                  rate_limits=tasks_v2.RateLimits(max_concurrent_dispatches=5001))),
    ):
        with pytest.raises(exceptions.InvalidArgument):
            tasks.create_queue(parent=parent, queue=queue)
    with pytest.raises(exceptions.InvalidArgument):
        tasks.get_task(name=f"{LOCATION}/queues/q/tasks/a.b")


def test_other_methods_are_unimplemented(tasks: tasks_v2.CloudTasksClient) -> None:
    queue = new_queue(tasks)
    with pytest.raises(exceptions.MethodNotImplemented):
        tasks.pause_queue(name=queue)
    with pytest.raises(exceptions.MethodNotImplemented):
        tasks.run_task(name=f"{queue}/tasks/t")


# Dispatch.

def test_schedule_time_is_honoured(tasks: tasks_v2.CloudTasksClient, target: Target) -> None:
    queue = new_queue(tasks)
    at = time.time() + 0.5
    tasks.create_task(parent=queue, task=http_task(target.url("/at"), at=at))

    received = target.wait_for("/at", 1, timeout=3)[0]

    lateness = received.at - at
    print(f"\nfuture task delivered {lateness * 1000:.1f} ms after its schedule_time")
    assert 0 <= lateness < 2  # A liveness bound: bench/ measures the lateness.


def test_dispatch_latency(tasks: tasks_v2.CloudTasksClient, target: Target) -> None:
    queue = new_queue(tasks)
    latencies = []
    for i in range(20):
        sent = time.time()
        tasks.create_task(parent=queue, task=http_task(target.url(f"/now{i}")))
        latencies.append(target.wait_for(f"/now{i}", 1)[0].at - sent)

    print(f"\nfrom calling CreateTask to the handler receiving the task: median "
          f"{statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")
    assert statistics.median(latencies) < 1  # A liveness bound: bench/ measures the latency.


def test_hung_handler_neither_blocks_the_queue_nor_outlives_its_deadline(
        tasks: tasks_v2.CloudTasksClient, target: Target) -> None:
    deadline, backoff = 4.0, 1.0  # Apart enough to tell which one a late machine delayed.
    queue = new_queue(tasks, min_backoff=backoff)
    hung = tasks.create_task(parent=queue, task=http_task(target.script("/hung", Answer(delay=30)),
                                                          deadline=deadline)).name
    first = target.wait_for("/hung", 1)[0]

    tasks.create_task(parent=queue, task=http_task(target.url("/quick")))

    quick = target.wait_for("/quick", 1)[0]
    assert quick.at - first.at < deadline / 2  # Not after the hung one's end.
    while "response_time" not in (failed := tasks.get_task(name=hung)).last_attempt:
        time.sleep(0.02)
    assert failed.last_attempt.response_status.code == code_pb2.DEADLINE_EXCEEDED
    ended = failed.last_attempt.response_time.timestamp()
    assert deadline - 0.5 <= ended - first.at < deadline + 2  # From its dispatch, just before.
    assert (failed.dispatch_count, failed.response_count) == (1, 0)
    retried = target.wait_for("/hung", 2, timeout=10)[1]
    assert backoff - 0.1 <= retried.at - ended < backoff + 2  # The deadline, then min_backoff.
    assert retried.headers["X-CloudTasks-TaskRetryCount"] == "1"
    assert retried.headers["X-CloudTasks-TaskExecutionCount"] == "0"
    assert "X-CloudTasks-TaskPreviousResponse" not in retried.headers
    wait_gone(tasks, hung)


def test_max_concurrent_dispatches_holds_tasks_back(tasks: tasks_v2.CloudTasksClient, target: Target) -> None:
    queue = new_queue(tasks, max_concurrent=1)
    tasks.create_task(parent=queue, task=http_task(target.script("/slow", Answer(delay=0.5))))
    slow = target.wait_for("/slow", 1)[0]

    tasks.create_task(parent=queue, task=http_task(target.url("/next")))

    held = target.wait_for("/next", 1, timeout=3)[0]
    assert held.at - slow.at >= 0.5


def test_failures_are_retried_with_growing_backoff(tasks: tasks_v2.CloudTasksClient, target: Target) -> None:
    queue = new_queue(tasks, min_backoff=1.0)
    url = target.script("/flaky", Answer(503), Answer(404), Answer(200))
    name = tasks.create_task(parent=queue, task=http_task(url)).name

    attempts = target.wait_for("/flaky", 3, timeout=15)

    first_gap, second_gap = attempts[1].at - attempts[0].at, attempts[2].at - attempts[1].at
    assert 1.0 <= first_gap < 2.0 <= second_gap < 4.0  # min_backoff, then doubled.
    headers = [a.headers for a in attempts]
    assert [h["X-CloudTasks-TaskRetryCount"] for h in headers] == ["0", "1", "2"]
    assert [h["X-CloudTasks-TaskExecutionCount"] for h in headers] == ["0", "0", "1"]  # a 5xx is no execution
    assert [h.get("X-CloudTasks-TaskPreviousResponse") for h in headers] == [None, "503", "404"]
    assert [h.get("X-CloudTasks-TaskRetryReason") for h in headers] == [None, "", ""]
    wait_gone(tasks, name)
    time.sleep(0.3)
    assert len(target.requests("/flaky")) == 3


def test_max_attempts_then_the_task_is_dropped(tasks: tasks_v2.CloudTasksClient, target: Target) -> None:
    queue = new_queue(tasks, min_backoff=0.05, max_attempts=3)
    url = target.script("/broken", *[Answer(500)] * 10)
    name = tasks.create_task(parent=queue, task=http_task(url)).name

    target.wait_for("/broken", 3)

    wait_gone(tasks, name)
    time.sleep(0.3)
    assert len(target.requests("/broken")) == 3


def test_retry_after_lengthens_the_backoff(tasks: tasks_v2.CloudTasksClient, target: Target) -> None:
    queue = new_queue(tasks, min_backoff=0.05)
    url = target.script("/busy", Answer(429, headers=(("Retry-After", "1"),)))
    tasks.create_task(parent=queue, task=http_task(url))

    attempts = target.wait_for("/busy", 2, timeout=3)

    assert attempts[1].at - attempts[0].at >= 1.0


def test_task_records_its_attempts(tasks: tasks_v2.CloudTasksClient, target: Target) -> None:
    queue = new_queue(tasks, min_backoff=10)
    name = tasks.create_task(parent=queue, task=http_task(target.script("/missing", Answer(404)))).name
    received = target.wait_for("/missing", 1)[0]

    while "response_time" not in (task := tasks.get_task(name=name)).last_attempt:
        time.sleep(0.01)

    assert (task.dispatch_count, task.response_count) == (1, 1)
    assert task.first_attempt.dispatch_time.timestamp() == pytest.approx(received.at, abs=1)
    assert "response_time" not in task.first_attempt
    assert task.last_attempt.response_status.code == code_pb2.NOT_FOUND
    retry_at = task.last_attempt.response_time.timestamp() + 10
    assert task.schedule_time.timestamp() == pytest.approx(retry_at, abs=1e-3)
    tasks.delete_task(name=name)


def test_request_carries_the_task_and_cloud_tasks_headers(tasks: tasks_v2.CloudTasksClient, target: Target) -> None:
    queue = new_queue(tasks)
    name = f"{queue}/tasks/{task_id()}"
    at = time.time()
    tasks.create_task(parent=queue, task=http_task(
        target.url("/put?x=1"), name, at=at, http_method=tasks_v2.HttpMethod.PUT, body=b'{"a": 1}',
        headers={"Content-Type": "application/json", "X-Custom": "kept", "User-Agent": "mine",
                 "X-CloudTasks-TaskName": "forged"},
    ))

    received = target.wait_for("/put?x=1", 1)[0]

    assert (received.method, received.body) == ("PUT", b'{"a": 1}')
    headers = received.headers
    assert headers["Content-Type"] == "application/json" and headers["X-Custom"] == "kept"
    assert headers["User-Agent"] == "Google-Cloud-Tasks"
    assert headers["X-CloudTasks-QueueName"] == queue.rpartition("/")[2]
    assert headers["X-CloudTasks-TaskName"] == name.rpartition("/")[2]
    assert headers["X-CloudTasks-TaskRetryCount"] == "0"
    assert headers["X-CloudTasks-TaskExecutionCount"] == "0"
    assert float(headers["X-CloudTasks-TaskETA"]) == pytest.approx(at, abs=1e-5)
    assert "X-CloudTasks-TaskPreviousResponse" not in headers and "X-CloudTasks-TaskRetryReason" not in headers
    assert "Authorization" not in headers


def test_oidc_token_verifies_against_the_certs_endpoint(
        emulator: Running, tasks: tasks_v2.CloudTasksClient, target: Target) -> None:
    queue = new_queue(tasks)
    url = target.url("/secure")
    tasks.create_task(parent=queue, task=http_task(
        url, oidc_token=tasks_v2.OidcToken(service_account_email=SERVICE_ACCOUNT)))
    tasks.create_task(parent=queue, task=http_task(
        target.url("/audience"), oidc_token=tasks_v2.OidcToken(service_account_email=SERVICE_ACCOUNT,
                                                               audience="https://swarming.example.com")))

    scheme, _, token = target.wait_for("/secure", 1)[0].headers["Authorization"].partition(" ")
    claims = id_token.verify_token(token, Request(), audience=url, certs_url=emulator.certs_url)

    assert scheme == "Bearer"
    assert claims["iss"] == "https://accounts.google.com"
    assert claims["email"] == SERVICE_ACCOUNT and claims["email_verified"] is True
    assert claims["sub"].isdigit() and claims["exp"] - claims["iat"] == 3600
    with pytest.raises(ValueError, match="audience"):
        id_token.verify_token(token, Request(), audience="https://elsewhere.example.com",
                              certs_url=emulator.certs_url)
    with pytest.raises(ValueError, match="signature"):
        id_token.verify_token(signed_by_another_key(token), Request(), audience=url, certs_url=emulator.certs_url)
    other = serve()
    try:
        with pytest.raises(ValueError, match="not found"):
            id_token.verify_token(token, Request(), audience=url, certs_url=other.certs_url)
    finally:
        other.stop()
    explicit = target.wait_for("/audience", 1)[0].headers["Authorization"].removeprefix("Bearer ")
    assert id_token.verify_token(explicit, Request(), audience="https://swarming.example.com",
                                 certs_url=emulator.certs_url)["email"] == SERVICE_ACCOUNT


def signed_by_another_key(token: str) -> str:
    """The same header (key id included) and claims, signed with a key of our own."""
    header, claims = jwt.decode_header(token), jwt.decode(token, verify=False)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return jwt.encode(crypt.RSASigner.from_string(pem, key_id=header["kid"]), claims).decode()


# Scale and process.

def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def create_concurrently(host: str, queue: str, task: tasks_v2.Task, count: int, concurrency: int) -> None:
    """With the official asyncio client: threads sharing the synchronous one
    convoy on the GIL and halve the rate."""
    channel = grpc.aio.insecure_channel(host)
    tasks = tasks_v2.CloudTasksAsyncClient(transport=CloudTasksGrpcAsyncIOTransport(channel=channel))
    slots = asyncio.Semaphore(concurrency)

    async def create() -> None:
        async with slots:
            await tasks.create_task(parent=queue, task=task)

    await asyncio.gather(*(create() for _ in range(count)))
    await channel.close()


def test_10000_future_tasks_cost_no_cpu_while_waiting(
        emulator: Running, tasks: tasks_v2.CloudTasksClient, target: Target) -> None:
    queue = new_queue(tasks)
    started = time.monotonic()
    asyncio.run(create_concurrently(emulator.host, queue, http_task(target.url("/later"), at=time.time() + 3600),
                                    count=10_000, concurrency=32))
    rate = 10_000 / (time.monotonic() - started)

    before, idle_from = cpu_seconds(emulator.process.pid), time.monotonic()
    time.sleep(2.0)
    idle = (cpu_seconds(emulator.process.pid) - before) / (time.monotonic() - idle_from)

    rss = Path(f"/proc/{emulator.process.pid}/status").read_text().partition("VmRSS:")[2].split()[0]
    print(f"\n10,000 creates at {rate:.0f}/s (32 concurrent); emulator idle CPU with them pending: "
          f"{idle * 100:.1f} % of a core; resident memory {int(rss) // 1024} MB")
    assert idle < 0.5
    tasks.purge_queue(name=queue)


def test_command_line_exits_cleanly_on_sigterm_with_a_request_in_flight(
        tmp_path: Path, target: Target) -> None:
    running = start_emulator(tmp_path / "emulator.log")
    try:
        tasks = client_for(running.host)
        queue = new_queue(tasks)
        tasks.create_task(parent=queue, task=http_task(target.script("/forever", Answer(delay=60)), deadline=60))
        target.wait_for("/forever", 1)
        stopped = time.monotonic()

        assert stop_emulator(running) == 0
        assert time.monotonic() - stopped < 10  # Not the request's 60 s.
    finally:
        processes.stop(running.process.pid)


def test_a_port_in_use_is_refused(emulator: Running) -> None:
    with pytest.raises(RuntimeError, match="Failed to bind"):
        serve(int(emulator.host.rpartition(":")[2]))


# The backoff arithmetic.

def test_backoff_follows_the_documented_schedule() -> None:
    policy = RetryPolicy(max_attempts=100, max_retry_duration=0, min_backoff=10, max_backoff=300, max_doublings=3)

    assert [policy.backoff(retry) for retry in range(1, 9)] == [10, 20, 40, 80, 160, 240, 300, 300]


@pytest.mark.parametrize("max_attempts,max_retry_duration,attempts,age,exhausted", [
    (3, 0, 2, 0, False), (3, 0, 3, 0, True), (-1, 0, 10_000, 1e9, False),
    (3, 60, 3, 30, False), (3, 60, 3, 60, True), (-1, 60, 1, 60, True),
])
def test_retries_stop_when_every_limit_set_is_reached(max_attempts: int, max_retry_duration: float,
                                                      attempts: int, age: float, exhausted: bool) -> None:
    policy = RetryPolicy(max_attempts, max_retry_duration, min_backoff=0.1, max_backoff=1, max_doublings=16)

    assert policy.exhausted(attempts, first_attempt=0.0, now=age) is exhausted
