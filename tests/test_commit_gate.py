"""The commit gate (functions.service.gate_commits) against the real
emulator: at most that many commits in flight, each written; one that waited
too long for its turn is refused unsent."""

import threading
import time
import uuid
from typing import Any, Callable

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from functions import service, store
from functions.errors import RETRY_AFTER_SECS
from tests.builders import task_body

#: How long each commit is held in flight below the gate.
HELD_SECS = 0.3


def _client(emulator_env: dict[str, str]) -> firestore.Client:
    return firestore.Client(project=f"gate-{uuid.uuid4().hex[:8]}", credentials=AnonymousCredentials())


def _under_gate(client: firestore.Client, before: Callable[[], None]) -> None:
    """Runs `before` ahead of each commit the client sends (below the gate)."""
    transport = client._firestore_api.transport
    commit = transport._wrapped_methods[transport.commit]

    def slowed(*args: Any, **kwargs: Any) -> Any:
        before()
        return commit(*args, **kwargs)

    transport._wrapped_methods[transport.commit] = slowed


def test_at_most_that_many_commits_are_in_flight_and_each_is_written(emulator_env: dict[str, str]) -> None:
    client = _client(emulator_env)
    lock, in_flight, most = threading.Lock(), [0], [0]

    def held() -> None:
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        time.sleep(HELD_SECS)
        with lock:
            in_flight[0] -= 1

    _under_gate(client, held)
    service.gate_commits(client, 2, wait_secs=30)
    writers = [threading.Thread(target=lambda i=i: client.collection("c").document(f"d{i}").set({"i": i}))
               for i in range(6)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert most[0] == 2
    assert sorted(doc.get("i") for doc in client.collection("c").stream()) == list(range(6))


def test_a_commit_that_waited_too_long_for_its_turn_is_refused_unsent(emulator_env: dict[str, str]) -> None:
    client = _client(emulator_env)
    go = threading.Event()
    _under_gate(client, lambda: go.wait(30))
    service.gate_commits(client, 1, wait_secs=0.5)
    first = threading.Thread(target=lambda: client.collection("c").document("first").set({"x": 1}))
    first.start()
    time.sleep(0.2)  # The first holds the one turn.
    started = time.monotonic()
    with pytest.raises(store.CommitRefused):
        client.collection("c").document("second").set({"x": 2})
    assert 0.5 <= time.monotonic() - started < 5
    go.set()
    first.join()
    assert client.collection("c").document("first").get().exists
    assert not client.collection("c").document("second").get().exists


def test_an_endpoint_whose_commit_is_refused_answers_503_and_writes_nothing(api, svc) -> None:
    """Through the service: `tasks_new` on an instance whose one commit turn
    is held answers 503 with Retry-After, and no task exists after it."""
    client = svc.store.db
    go = threading.Event()
    _under_gate(client, lambda: go.wait(30))
    service.gate_commits(client, 1, wait_secs=0.5)
    holder = threading.Thread(target=lambda: client.collection("c").document("holder").set({"x": 1}))
    holder.start()
    time.sleep(0.2)
    response = api.post("tasks_new", task_body())
    go.set()
    holder.join()
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == str(RETRY_AFTER_SECS)
    assert response.json()["error"]["code"] == "unavailable"
    assert api.ok("tasks_list", {}, role="admin")["items"] == []
    task_id = api.ok("tasks_new", task_body())["task_id"]  # the turn free again: written
    assert [t["task_id"] for t in api.ok("tasks_list", {}, role="admin")["items"]] == [task_id]
