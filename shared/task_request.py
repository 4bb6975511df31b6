"""The task request wire model (Swarming's NewTaskRequest), validated at the edge.

`from_wire` turns the JSON body of `tasks_new` into typed, normalised values and
raises ValidationError naming the field on the first problem; `to_wire` gives
back the same JSON shape.
"""

import dataclasses
import re
from typing import Any

from shared import dimensions as dims_lib
from shared.errors import ValidationError

MIN_PRIORITY, MAX_PRIORITY, DEFAULT_PRIORITY = 0, 255, 200
MIN_EXPIRATION_SECS, MAX_EXPIRATION_SECS, DEFAULT_EXPIRATION_SECS = 30, 7 * 24 * 3600, 6 * 3600
MAX_TIMEOUT_SECS, DEFAULT_EXECUTION_TIMEOUT_SECS = 7 * 24 * 3600, 3600
MAX_COMMAND_ARGS = 128
MAX_ENV_KEYS, MAX_ENV_VALUE_LENGTH = 64, 1024
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_NAME_LENGTH = 1024
MAX_TAGS, MAX_TAG_LENGTH = 256, 1024


@dataclasses.dataclass(frozen=True)
class TaskProperties:
    command: list[str]
    dimensions: dims_lib.Dimensions
    env: dict[str, str]
    execution_timeout_secs: int

    @classmethod
    def from_wire(cls, body: Any, field: str) -> "TaskProperties":
        _only_known_fields(body, field, {"command", "dimensions", "env", "execution_timeout_secs"})
        return cls(
            command=_command(body.get("command"), f"{field}.command"),
            dimensions=dims_lib.validate_task(
                dims_lib.from_pairs(body.get("dimensions"), f"{field}.dimensions"), f"{field}.dimensions"
            ),
            env=_env(body.get("env", []), f"{field}.env"),
            execution_timeout_secs=_integer(
                body, "execution_timeout_secs", field, 1, MAX_TIMEOUT_SECS, DEFAULT_EXECUTION_TIMEOUT_SECS
            ),
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "command": list(self.command),
            "dimensions": dims_lib.to_pairs(self.dimensions),
            "env": [{"key": k, "value": v} for k, v in sorted(self.env.items())],
            "execution_timeout_secs": self.execution_timeout_secs,
        }


@dataclasses.dataclass(frozen=True)
class TaskSlice:
    properties: TaskProperties
    expiration_secs: int

    @classmethod
    def from_wire(cls, body: Any, field: str) -> "TaskSlice":
        _only_known_fields(body, field, {"properties", "expiration_secs"})
        return cls(
            properties=TaskProperties.from_wire(body.get("properties"), f"{field}.properties"),
            expiration_secs=_integer(
                body, "expiration_secs", field, MIN_EXPIRATION_SECS, MAX_EXPIRATION_SECS, DEFAULT_EXPIRATION_SECS
            ),
        )

    def to_wire(self) -> dict[str, Any]:
        return {"properties": self.properties.to_wire(), "expiration_secs": self.expiration_secs}


@dataclasses.dataclass(frozen=True)
class TaskRequest:
    name: str
    priority: int
    tags: list[str]
    task_slices: list[TaskSlice]
    user: str = ""

    @classmethod
    def from_wire(cls, body: Any) -> "TaskRequest":
        _only_known_fields(body, "request", {"name", "priority", "tags", "task_slices", "user"})
        slices = body.get("task_slices")
        # Only one slice until the task life cycle adds slice fallback.
        if not isinstance(slices, list) or len(slices) != 1:
            raise ValidationError("task_slices", "must be a list of exactly one slice")
        return cls(
            name=_string(body, "name", MAX_NAME_LENGTH),
            priority=_integer(body, "priority", "", MIN_PRIORITY, MAX_PRIORITY, DEFAULT_PRIORITY),
            tags=_tags(body.get("tags", [])),
            task_slices=[TaskSlice.from_wire(s, f"task_slices[{i}]") for i, s in enumerate(slices)],
            user=_string(body, "user", 256),
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "priority": self.priority,
            "tags": list(self.tags),
            "task_slices": [s.to_wire() for s in self.task_slices],
            "user": self.user,
        }


def _only_known_fields(body: Any, field: str, known: set[str]) -> None:
    if not isinstance(body, dict):
        raise ValidationError(field, "must be a JSON object")
    unknown = sorted(set(body) - known)
    if unknown:
        prefix = f"{field}." if field != "request" else ""
        raise ValidationError(f"{prefix}{unknown[0]}", "unknown field")


def _integer(body: dict, key: str, parent: str, low: int, high: int, default: int) -> int:
    field = f"{parent}.{key}" if parent else key
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, "must be an integer")
    if not low <= value <= high:
        raise ValidationError(field, f"must be between {low} and {high}")
    return value


def _string(body: dict, key: str, max_length: int) -> str:
    value = body.get(key, "")
    if not isinstance(value, str) or len(value) > max_length:
        raise ValidationError(key, f"must be a string of at most {max_length} characters")
    return value


def _command(value: Any, field: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ValidationError(field, "must be a non-empty list of strings")
    if len(value) > MAX_COMMAND_ARGS:
        raise ValidationError(field, f"more than {MAX_COMMAND_ARGS} arguments")
    if not all(isinstance(arg, str) for arg in value):
        raise ValidationError(field, "every argument must be a string")
    return list(value)


def _env(pairs: Any, field: str) -> dict[str, str]:
    if not isinstance(pairs, list):
        raise ValidationError(field, "must be a list of {key, value}")
    env: dict[str, str] = {}
    for i, pair in enumerate(pairs):
        where = f"{field}[{i}]"
        if not isinstance(pair, dict) or set(pair) != {"key", "value"}:
            raise ValidationError(where, "must be {key, value}")
        key, value = pair["key"], pair["value"]
        if not isinstance(key, str) or not ENV_KEY_RE.match(key):
            raise ValidationError(where, f"key must match {ENV_KEY_RE.pattern}")
        if key in env:
            raise ValidationError(where, f"duplicate key {key!r}")
        if not isinstance(value, str) or len(value) > MAX_ENV_VALUE_LENGTH:
            raise ValidationError(where, f"value must be a string of at most {MAX_ENV_VALUE_LENGTH} characters")
        env[key] = value
    if len(env) > MAX_ENV_KEYS:
        raise ValidationError(field, f"more than {MAX_ENV_KEYS} keys")
    return env


def _tags(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_TAGS:
        raise ValidationError("tags", f"must be a list of at most {MAX_TAGS} 'key:value' strings")
    for i, tag in enumerate(value):
        if not isinstance(tag, str) or ":" not in tag or len(tag) > MAX_TAG_LENGTH or tag.startswith(":"):
            raise ValidationError(f"tags[{i}]", "must be a 'key:value' string")
    return list(value)
