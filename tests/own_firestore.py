"""A Firestore emulator of one test's own, which the test stops, starts
again or freezes under the service (the `own_firestore` fixture)."""

import os
import signal
from pathlib import Path

import pytest

from functions import service
from local import emulators, processes


class OwnFirestore:
    """A Firestore emulator on a port of its own: stopped and started again
    on that port, or frozen."""

    def __init__(self, log: Path):
        self.port = processes.free_port()
        self._log = log
        self._pid = 0
        self.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, import_data: Path | None = None) -> None:
        """On its port; with `import_data`, holding what that export held."""
        self._pid = emulators.start_firestore(self.port, self._log, import_data).process.pid

    def stop(self) -> None:
        processes.stop(self._pid)

    def freeze(self, frozen: bool) -> None:
        """Stops it answering (its connections wait, unanswered) with what it
        holds kept, or lets it go on."""
        os.kill(self._pid, signal.SIGSTOP if frozen else signal.SIGCONT)


def use_firestore(svc: service.Service, monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    """Points the service's Firestore client (and any client made after) at
    `host`. The service's clients are made on first use, which may already
    have happened (a late timer of an earlier test reaches whichever service
    is in use): the service forgets them all."""
    for made in [name for name in svc.__dict__ if name not in ("settings", "clock")]:
        del svc.__dict__[made]
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", host)
