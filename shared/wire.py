"""Reading JSON wire objects field by field, refusing each bad field by its path.

A path is how a client finds the field in what it sent, e.g.
`task_slices[1].properties.env[3].key`; the top-level object has the empty path.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Iterable
from typing import Any

from shared.errors import ValidationError

#: Paths a task may name (working directory, caches, outputs, env prefixes).
MAX_PATH_LENGTH = 256
#: Relative on POSIX and on Windows bots alike: no leading separator, no drive.
_ABSOLUTE_RE = re.compile(r"^([/\\]|[A-Za-z]:)")
_SEPARATOR_RE = re.compile(r"[/\\]")
#: Signed 64 bits, as protobuf's int64 fields on the reference's side.
MAX_INT64 = 2**63 - 1
#: The default of a field that has none: leaving it out is refused.
REQUIRED = object()


class WireObject:
    """A JSON object at `path` whose keys must all be in `known`, unless
    `lenient` (what a newer peer may add is then passed over)."""

    def __init__(self, body: Any, path: str, known: Iterable[str], lenient: bool = False):
        if not isinstance(body, dict):
            raise ValidationError(path or "request", "must be a JSON object")
        self.body = body
        self.path = path
        unknown = sorted(set(body) - set(known))
        if unknown and not lenient:
            raise ValidationError(self.field(unknown[0]), "unknown field")

    def field(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, default: Any = REQUIRED) -> Any:
        """The raw value of `key`; without a default, a missing key is refused."""
        if key in self.body:
            return self.body[key]
        if default is REQUIRED:
            raise ValidationError(self.field(key), "is required")
        return default

    def integer(self, key: str, low: int, high: int, default: Any = REQUIRED) -> int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(self.field(key), "must be an integer")
        if not low <= value <= high:
            raise ValidationError(self.field(key), f"must be between {low} and {high}")
        return value

    def number(self, key: str, low: float, high: float, default: Any = REQUIRED) -> float:
        """An int or a float (never a bool, NaN or an infinity) within [low, high]."""
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValidationError(self.field(key), "must be a number")
        if not low <= value <= high:
            raise ValidationError(self.field(key), f"must be between {low:g} and {high:g}")
        return value

    def boolean(self, key: str, default: bool = False) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise ValidationError(self.field(key), "must be true or false")
        return value

    def string(self, key: str, max_length: int, pattern: re.Pattern[str] | None = None,
               default: Any = "") -> str:
        """A string of at most `max_length` characters, all of it matching `pattern` when given."""
        value = self.get(key, default)
        if not isinstance(value, str) or len(value) > max_length:
            raise ValidationError(self.field(key), f"must be a string of at most {max_length} characters")
        if pattern is not None and not pattern.fullmatch(value):
            raise ValidationError(self.field(key), f"must match {pattern.pattern}")
        return value

    def optional(self, key: str) -> Any:
        """The raw value of `key`; absent and null are both None."""
        return self.body.get(key)

    def items(self, key: str, max_items: int, min_items: int = 0) -> list[tuple[str, Any]]:
        """The elements of a list field with their paths; a list that must not be empty is required."""
        value = self.get(key, [] if min_items == 0 else REQUIRED)
        if not isinstance(value, list) or not min_items <= len(value) <= max_items:
            size = f"{min_items} to {max_items}" if min_items else f"at most {max_items}"
            raise ValidationError(self.field(key), f"must be a list of {size} elements")
        return [(f"{self.field(key)}[{i}]", item) for i, item in enumerate(value)]


def relative_path(value: Any, field: str, allow_empty: bool = False) -> str:
    """A path under the task's directory: relative and never climbing out through `..`."""
    if not isinstance(value, str) or len(value) > MAX_PATH_LENGTH or not (value or allow_empty):
        low = 0 if allow_empty else 1
        raise ValidationError(field, f"must be a path of {low} to {MAX_PATH_LENGTH} characters")
    if _ABSOLUTE_RE.match(value):
        raise ValidationError(field, "must be a relative path")
    if ".." in _SEPARATOR_RE.split(value):
        raise ValidationError(field, "must not contain a '..' component")
    return value


def base64_bytes(value: Any, field: str) -> bytes:
    """The bytes of a base64 string (standard alphabet, padded)."""
    if not isinstance(value, str):
        raise ValidationError(field, "must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValidationError(field, f"is not valid base64 ({e})") from e


def to_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
