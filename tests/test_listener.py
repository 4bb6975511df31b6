"""Firestore listeners (functions/listener.py) against a real emulator taken
down under them: they re-open a few times a window instead of spinning, come
back with Firestore, and once stopped stay stopped."""

import queue
import time
import uuid
from typing import Any

import pytest
from google.api_core import bidi
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from functions import listener
from tests.own_firestore import OwnFirestore

#: How long Firestore stays down under the listener: without the throttle,
#: thousands of re-opens.
DOWN_SECS = 4


class Opens:
    """Counts the streams opened by every listener of the process."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        opened = bidi.BidiRpc.open

        def counted(rpc: bidi.BidiRpc) -> None:
            self.count += 1
            opened(rpc)

        monkeypatch.setattr(bidi.BidiRpc, "open", counted)


def _write(db: firestore.Client, doc: str, deadline_secs: float = 30) -> None:
    """Writes one document, once the (restarted) emulator takes it."""
    deadline = time.monotonic() + deadline_secs
    while True:
        try:
            db.collection("c").document(doc).set({"x": 1}, timeout=5)
            return
        except Exception:
            assert time.monotonic() < deadline, "Firestore never came back"
            time.sleep(0.5)


def test_a_listener_waits_out_an_outage_comes_back_and_once_stopped_stays_stopped(
        own_firestore: OwnFirestore, monkeypatch: pytest.MonkeyPatch) -> None:
    db = firestore.Client(project=f"p-{uuid.uuid4().hex[:8]}", credentials=AnonymousCredentials())
    opens = Opens(monkeypatch)
    sizes: queue.Queue[int] = queue.Queue()

    def changed(docs: list[Any], _changes: list[Any], _read_time: Any) -> None:
        sizes.put(len(docs))

    stop = listener.listen(db.collection("c"), changed)
    assert sizes.get(timeout=30) == 0  # The first snapshot: nothing yet.

    own_firestore.stop()
    before = opens.count
    time.sleep(DOWN_SECS)
    assert opens.count - before <= listener.REOPENS + 1

    own_firestore.start()  # Empty, on the same port.
    _write(db, "d")
    deadline = time.monotonic() + 2 * listener.WINDOW.total_seconds() + 30
    while (size := sizes.get(timeout=max(0.1, deadline - time.monotonic()))) != 1:
        assert time.monotonic() < deadline, f"the listener never saw the write (last snapshot: {size})"

    stop()
    stopped_at = opens.count
    own_firestore.stop()
    time.sleep(2)
    assert opens.count == stopped_at
    assert sizes.empty()


def test_an_unsubscribe_between_a_failure_and_its_re_open_stops_the_re_open(
        emulator_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The race the outage test cannot force: the stream failed, the
    listener is stopped, then the stream's thread asks whether to re-open."""
    watches: list[Any] = []
    on_snapshot = firestore.CollectionReference.on_snapshot

    def kept(self: firestore.CollectionReference, callback: Any) -> Any:
        watches.append(on_snapshot(self, callback))
        return watches[-1]

    monkeypatch.setattr(firestore.CollectionReference, "on_snapshot", kept)
    db = firestore.Client(project=f"p-{uuid.uuid4().hex[:8]}", credentials=AnonymousCredentials())
    stop = listener.listen(db.collection("c"), lambda *_: None)
    failure = gexc.ServiceUnavailable("the stream failed")
    rpc = watches[0]._rpc  # The unsubscribe lets go of it; its thread may still ask.
    assert rpc._should_recover(failure)  # Running: it would re-open.
    stop()
    assert not rpc._should_recover(failure)  # Stopped: never again.

