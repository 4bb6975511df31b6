"""Dimensions: validation, normalisation and matching, as in Swarming.

Task dimensions map a key to the values a bot must all have; a value "a|b" is
an OR within its key. Bot dimensions map a key to every value the bot has.
A key may not start with `__`: the flat `k:v` form names a Firestore field,
and `__...__` ones are reserved.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re

from shared.errors import ValidationError
from shared.wire import REQUIRED, Field, ListOf, MapOf, Schema, Shape, Text, unicode_text

MAX_KEYS = 32
MAX_VALUES_PER_KEY = 16
MAX_KEY_LENGTH = 64
MAX_VALUE_LENGTH = 256
MAX_OR_ALTERNATIVES = 8
KEY_RE = re.compile(r"^(?!__)[a-zA-Z_.-][0-9a-zA-Z_.-]*$")
SINGLE_VALUED_KEYS = ("pool", "id")

Dimensions = dict[str, list[str]]


#: A key and a value as the API documents them (the checks are `_validate_shape`'s).
_KEY = Text(MAX_KEY_LENGTH, KEY_RE, min_length=1, default=REQUIRED)
_VALUE = Text(MAX_VALUE_LENGTH, min_length=1, default=REQUIRED)


class BotDimensions(Field):
    """A bot's dimensions, `{key: [values]}` (`validate_bot`)."""

    def read(self, value: object, path: str) -> Dimensions:
        return validate_bot(value, path)  # type: ignore[arg-type]

    def schema(self) -> Schema:
        schema = MapOf(_KEY, ListOf(_VALUE, MAX_VALUES_PER_KEY, 1), MAX_KEYS).schema()
        return {**schema, "additionalProperties": {**schema["additionalProperties"], "uniqueItems": True}}


class TaskDimensions(Field):
    """A task slice's dimensions, Swarming's `[{key, value}]` (`validate_task`)."""

    def read(self, value: object, path: str) -> Dimensions:
        return validate_task(from_pairs(value, path), path)

    def schema(self) -> Schema:
        return ListOf(Shape({"key": _KEY, "value": _VALUE}), MAX_KEYS * MAX_VALUES_PER_KEY, 1).schema()


def from_pairs(pairs: object, field: str) -> Dimensions:
    """Reads Swarming's wire form `[{key, value}]`; a repeated key adds values."""
    if not isinstance(pairs, list) or len(pairs) > MAX_KEYS * MAX_VALUES_PER_KEY:
        raise ValidationError(field, f"must be a list of at most {MAX_KEYS * MAX_VALUES_PER_KEY} {{key, value}}")
    dims: Dimensions = {}
    for i, pair in enumerate(pairs):
        if not isinstance(pair, dict) or set(pair) != {"key", "value"}:
            raise ValidationError(f"{field}[{i}]", "must be {key, value}")
        key, value = pair["key"], pair["value"]
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValidationError(f"{field}[{i}]", "key and value must be strings")
        dims.setdefault(key, []).append(value)
    return dims


def to_pairs(dims: Dimensions) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k in sorted(dims) for v in dims[k]]


def validate_task(dims: Dimensions, field: str) -> Dimensions:
    """Validates task dimensions and returns them sorted (the normal form)."""
    _validate_shape(dims, field)
    for key in SINGLE_VALUED_KEYS:
        values = dims.get(key, [])
        if len(values) > 1 or any("|" in v for v in values):
            raise ValidationError(f"{field}.{key}", "must have a single value, without '|'")
    if "pool" not in dims:
        raise ValidationError(f"{field}.pool", "is required")
    for key, values in dims.items():
        for value in values:
            if any(not part or part != part.strip() for part in value.split("|")):
                raise ValidationError(f"{field}.{key}", f"empty alternative in {value!r}")
    if len(expand(dims)) > MAX_OR_ALTERNATIVES:
        raise ValidationError(field, f"'|' expands to more than {MAX_OR_ALTERNATIVES} alternatives")
    return {k: sorted(dims[k]) for k in sorted(dims)}


def validate_bot(dims: Dimensions, field: str) -> Dimensions:
    _validate_shape(dims, field)
    return {k: sorted(dims[k]) for k in sorted(dims)}


def _validate_shape(dims: Dimensions, field: str) -> None:
    if not isinstance(dims, dict):
        raise ValidationError(field, "must map keys to lists of values")
    if len(dims) > MAX_KEYS:
        raise ValidationError(field, f"more than {MAX_KEYS} keys")
    for key, values in dims.items():
        where = f"{field}.{key}"
        if not isinstance(key, str) or len(key) > MAX_KEY_LENGTH or not KEY_RE.fullmatch(key):
            raise ValidationError(where, f"key must match {KEY_RE.pattern} and be at most {MAX_KEY_LENGTH} characters")
        if not isinstance(values, list) or not values:
            raise ValidationError(where, "must have at least one value")
        if len(values) > MAX_VALUES_PER_KEY:
            raise ValidationError(where, f"more than {MAX_VALUES_PER_KEY} values")
        for value in values:
            if not isinstance(value, str) or not value or len(value) > MAX_VALUE_LENGTH:
                raise ValidationError(where, f"values must be 1 to {MAX_VALUE_LENGTH} characters")
            if unicode_text(value, where) != value.strip():
                raise ValidationError(where, f"value {value!r} has surrounding whitespace")
        if len(set(values)) != len(values):
            raise ValidationError(where, "duplicate values")


def expand(dims: Dimensions) -> list[frozenset[str]]:
    """The flat `k:v` sets a task's dimensions accept, one per OR alternative."""
    per_value = [[f"{k}:{alt}" for alt in v.split("|")] for k in sorted(dims) for v in dims[k]]
    return [frozenset(combo) for combo in itertools.product(*per_value)]


def flatten(dims: Dimensions) -> frozenset[str]:
    """A bot's dimensions as a flat `k:v` set."""
    return frozenset(f"{k}:{v}" for k, values in dims.items() for v in values)


def matches(task_dims: Dimensions, bot_flat: frozenset[str]) -> bool:
    return any(alternative <= bot_flat for alternative in expand(task_dims))


def queue_hash(dims: Dimensions) -> str:
    """Names the queue of a slice's normalised dimensions within its pool."""
    canonical = json.dumps({k: sorted(v) for k, v in dims.items()}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
