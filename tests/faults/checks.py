"""What every fault case ends with: no task lost (each reached a final
state), none run twice (each command appends a line to its own marker file
per run), stdout byte-exact (what the server keeps is what the command
printed)."""

import base64
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.states import State
from tests.conftest import Api

#: Appends to its marker (argv[1]), prints FIRST times argv[2], waits for the
#: file argv[3] when one is named, then prints LAST.
SCRIPT = """
import os, sys, time
with open(sys.argv[1], 'a') as marker:
    marker.write('ran\\n')
sys.stdout.buffer.write(bytes(range(256)) * int(sys.argv[2]))
sys.stdout.flush()
while sys.argv[3] and not os.path.exists(sys.argv[3]):
    time.sleep(0.05)
sys.stdout.buffer.write(b'end\\n')
"""
LAST = b"end\n"
#: Liveness bound, generous: the machine is shared with a full test suite.
WITHIN_SECS = 90.0


def command(marker: Path, blocks: int, go: Path | None = None) -> list[str]:
    return [sys.executable, "-c", SCRIPT, str(marker), str(blocks), str(go or "")]


def first(blocks: int) -> bytes:
    """What the command prints before it waits."""
    return bytes(range(256)) * blocks


def runs(marker: Path) -> int:
    return len(marker.read_text().splitlines()) if marker.exists() else 0


def stdout(api: Api, task_id: str) -> bytes:
    data, offset = b"", 0
    while True:
        answer = api.ok("task_stdout", {"task_id": task_id, "offset": offset})
        chunk = base64.b64decode(answer["output"])
        if not chunk:
            return data
        data, offset = data + chunk, answer["next_offset"]


def wait_until(api: Api, task_id: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The task's result once `done(result)`, within WITHIN_SECS."""
    deadline = time.monotonic() + WITHIN_SECS
    while not done(result := api.ok("task_result", {"task_id": task_id})):
        assert time.monotonic() < deadline, f"{task_id}: {result['state']}"
        time.sleep(0.1)
    return result


def assert_sound(api: Api, task_id: str, marker: Path, printed: bytes, ran: int = 1) -> dict[str, Any]:
    """The three checks; the task's final result."""
    result = wait_until(api, task_id, lambda r: State(r["state"]).is_final)
    assert runs(marker) == ran, result
    assert stdout(api, task_id) == printed
    return result


def wait_stdout(api: Api, task_id: str, expected: bytes) -> None:
    """Until the server holds `expected` as the task's stdout: its command runs."""
    deadline = time.monotonic() + WITHIN_SECS
    while stdout(api, task_id) != expected:
        assert time.monotonic() < deadline, f"{task_id}: {stdout(api, task_id)!r}"
        time.sleep(0.1)
