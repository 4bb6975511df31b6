"""Request bodies for tests."""

import copy
from typing import Any


def task_body(command: list[str] | None = None, dimensions: dict[str, str] | None = None,
              **top: Any) -> dict[str, Any]:
    dims = dimensions if dimensions is not None else {"pool": "default"}
    properties = {
        "command": command or ["echo", "hi"],
        "dimensions": [{"key": k, "value": v} for k, v in dims.items()],
        "execution_timeout_secs": 60,
    }
    # Waiting for capacity, so that tests need not register a bot before a task.
    task_slice = {"properties": properties, "expiration_secs": 600, "wait_for_capacity": True}
    return {"name": "t", "priority": 100, "task_slices": [task_slice], **top}


def bot_body(bot_id: str = "bot-1", pool: str = "default", **fields: Any) -> dict[str, Any]:
    return {"dimensions": {"id": [bot_id], "pool": [pool], "os": ["Linux"]}, "state": {}, "version": "dev",
            **fields}


#: Marks a field `with_field` removes.
DELETE = object()


def with_field(body: dict[str, Any], path: tuple, value: Any) -> dict[str, Any]:
    """A deep copy of `body` with the field at `path` set to `value` (or removed)."""
    body = copy.deepcopy(body)
    target = body
    for key in path[:-1]:
        target = target[key]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


class MonotonicClock:
    """A stand-in for `time.monotonic` that moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
