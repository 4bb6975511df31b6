"""Request bodies for tests."""

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
