"""Reading JSON wire objects field by field, refusing each bad field by its path.

A path is how a client finds the field in what it sent, e.g.
`task_slices[1].properties.env[3].key`; the top-level object has the empty path.

Each field is declared once, as a `Field`: what it reads (strings are bounded
and valid Unicode, numbers bounded, ids checked) and the JSON schema of what it
takes, so that the OpenAPI document is derived from what the server reads. A
`Shape` declares a JSON object's fields; a type's `from_wire` reads through one.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import math
import re
from collections.abc import Iterable
from typing import Any, Callable, Dict, List, Mapping, Optional, Pattern, Tuple, Union

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
#: An integer as a query parameter gives it: ASCII digits, maybe a minus sign.
_INTEGER_TEXT = re.compile(r"-?[0-9]{1,19}")
#: Free JSON (a bot's `state`) as Firestore stores it: nesting and key paths bounded.
MAX_JSON_DEPTH, MAX_KEY_PATH_BYTES = 16, 1024
_RESERVED_KEY = re.compile(r"__.*__", re.DOTALL)
Schema = Dict[str, Any]


def unicode_text(value: str, path: str) -> str:
    """`value`, unless it cannot be stored: a lone surrogate is not Unicode text."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(path, "must be valid Unicode (a lone surrogate is not)") from None
    return value


class Field:
    """One JSON value: how it reads (`read`: the value, or a ValidationError
    naming `path`) and what the API document says it takes (`schema`). An
    absent field reads as `default` (REQUIRED: it must be given), and so does
    null when `nullable`."""

    def __init__(self, default: Any = REQUIRED, nullable: bool = False, description: str = ""):
        self.default = default
        self.nullable = nullable
        self.description = description

    def read(self, value: Any, path: str) -> Any:
        raise NotImplementedError

    def schema(self) -> Schema:
        """The JSON schema of the values `read` takes, without default or null."""
        raise NotImplementedError

    def document(self) -> Schema:
        """The schema with its description, null included when it reads as the default."""
        schema = self.schema()
        if self.nullable:
            schema = {"anyOf": [schema, {"type": "null"}]}
        return {**schema, "description": self.description} if self.description else schema

    def property(self) -> Schema:
        """The schema of a key of an object: `document`, with what its absence means."""
        schema = self.document()
        if isinstance(self.default, (str, int, float, bool, list)) and self.default != []:
            schema = {**schema, "default": self.default}
        return schema

    def take(self, present: bool, value: Any, path: str) -> Any:
        """The value of a key that may be absent."""
        if present and not (value is None and self.nullable):
            return self.read(value, path)
        if self.default is REQUIRED:
            raise ValidationError(path, "is required")
        return copy.copy(self.default)


class Text(Field):
    """A string of `min_length` to `max_length` characters, all of it matching `pattern` when given."""

    def __init__(self, max_length: int, pattern: Union[str, Pattern[str], None] = None, min_length: int = 0,
                 default: Any = "", nullable: bool = False, description: str = ""):
        super().__init__(default, nullable, description)
        self.max_length, self.min_length = max_length, min_length
        self.pattern = re.compile(pattern) if isinstance(pattern, str) else pattern

    def _size(self) -> str:
        if self.min_length == self.max_length:
            return str(self.max_length)
        return f"{self.min_length} to {self.max_length}" if self.min_length else f"at most {self.max_length}"

    def read(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not self.min_length <= len(value) <= self.max_length:
            raise ValidationError(path, f"must be a string of {self._size()} characters")
        unicode_text(value, path)
        if self.pattern is not None and not self.pattern.fullmatch(value):
            raise ValidationError(path, f"must match {self.pattern.pattern}")
        return value

    def schema(self) -> Schema:
        schema: Schema = {"type": "string", "maxLength": self.max_length}
        if self.min_length:
            schema["minLength"] = self.min_length
        if self.pattern is not None:
            schema["pattern"] = "^(?:" + self.pattern.pattern.lstrip("^").rstrip("$") + ")$"
        return schema


class Integer(Field):
    """An int (never a bool) within [low, high]; with `from_text`, also its
    decimal digits, as a query parameter gives it."""

    def __init__(self, low: int, high: int, default: Any = REQUIRED, nullable: bool = False,
                 from_text: bool = False, description: str = ""):
        super().__init__(default, nullable, description)
        self.low, self.high, self.from_text = low, high, from_text

    def read(self, value: Any, path: str) -> int:
        if self.from_text and isinstance(value, str) and _INTEGER_TEXT.fullmatch(value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(path, "must be an integer")
        if not self.low <= value <= self.high:
            raise ValidationError(path, f"must be between {self.low} and {self.high}")
        return value

    def schema(self) -> Schema:
        return {"type": "integer", "minimum": self.low, "maximum": self.high}


class Number(Field):
    """An int or a float (never a bool, NaN or an infinity) within [low, high]."""

    def __init__(self, low: float, high: Optional[float], default: Any = REQUIRED, nullable: bool = False,
                 description: str = ""):
        super().__init__(default, nullable, description)
        self.low, self.high = low, high

    def read(self, value: Any, path: str) -> Union[int, float]:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValidationError(path, "must be a number")
        if self.high is None and value < self.low:
            raise ValidationError(path, f"must be a number ≥ {self.low:g}")
        if self.high is not None and not self.low <= value <= self.high:
            raise ValidationError(path, f"must be between {self.low:g} and {self.high:g}")
        return value

    def schema(self) -> Schema:
        schema: Schema = {"type": "number", "minimum": self.low}
        return schema if self.high is None else {**schema, "maximum": self.high}


class Boolean(Field):
    """true or false; with `from_text`, also "true" or "false" in any case."""

    def __init__(self, default: Any = False, from_text: bool = False, description: str = ""):
        super().__init__(default, description=description)
        self.from_text = from_text

    def read(self, value: Any, path: str) -> bool:
        if self.from_text and isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise ValidationError(path, "must be true or false")
        return value

    def schema(self) -> Schema:
        return {"type": "boolean"}


class Choice(Field):
    """One of a few strings."""

    def __init__(self, values: Iterable[str], default: Any = REQUIRED, reason: str = "", description: str = ""):
        super().__init__(default, description=description)
        self.values = tuple(values)
        self.reason = reason or f"must be one of {', '.join(self.values)}"

    def read(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or value not in self.values:
            raise ValidationError(path, self.reason)
        return value

    def schema(self) -> Schema:
        return {"type": "string", "enum": list(self.values)}


class ListOf(Field):
    """A list of `min_items` to `max_items` elements, each read by `item`;
    with `from_text`, a lone element (a query parameter) is a list of one."""

    def __init__(self, item: Field, max_items: int, min_items: int = 0, from_text: bool = False,
                 default: Any = ..., nullable: bool = False, description: str = ""):
        """Without a default, an absent list is empty, or required when it may not be."""
        if default is ...:
            default = [] if min_items == 0 else REQUIRED
        super().__init__(default, nullable, description)
        self.item, self.max_items, self.min_items, self.from_text = item, max_items, min_items, from_text

    def read(self, value: Any, path: str) -> List[Any]:
        if self.from_text and isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not self.min_items <= len(value) <= self.max_items:
            size = f"{self.min_items} to {self.max_items}" if self.min_items else f"at most {self.max_items}"
            raise ValidationError(path, f"must be a list of {size} elements")
        return [self.item.read(item, f"{path}[{i}]") for i, item in enumerate(value)]

    def schema(self) -> Schema:
        schema: Schema = {"type": "array", "items": self.item.document(), "maxItems": self.max_items}
        return {**schema, "minItems": self.min_items} if self.min_items else schema


class MapOf(Field):
    """A JSON object of at most `max_items` keys read by `key`, each value by `value`."""

    def __init__(self, key: Text, value: Field, max_items: int, default: Any = REQUIRED, description: str = ""):
        super().__init__(default, description=description)
        self.key, self.value, self.max_items = key, value, max_items

    def read(self, value: Any, path: str) -> Dict[str, Any]:
        if not isinstance(value, dict) or len(value) > self.max_items:
            raise ValidationError(path or "request", f"must be a JSON object of at most {self.max_items} keys")
        return {self.key.read(k, f"{path}.{k}"): self.value.read(v, f"{path}.{k}") for k, v in value.items()}

    def schema(self) -> Schema:
        return {"type": "object", "propertyNames": self.key.schema(), "additionalProperties": self.value.document(),
                "maxProperties": self.max_items}


class Either(Field):
    """The first of `fields` that reads the value; the error is the last one's."""

    def __init__(self, *fields: Field, description: str = ""):
        super().__init__(description=description)
        self.fields = fields

    def read(self, value: Any, path: str) -> Any:
        for field in self.fields[:-1]:
            try:
                return field.read(value, path)
            except ValidationError:
                pass
        return self.fields[-1].read(value, path)

    def schema(self) -> Schema:
        return {"anyOf": [field.document() for field in self.fields]}


class Tagged(Field):
    """A JSON object whose `tag` key says which of `shapes` it is."""

    def __init__(self, tag: str, shapes: Mapping[str, Shape], description: str = ""):
        super().__init__(description=description)
        self.tag, self.shapes = tag, dict(shapes)

    def read(self, value: Any, path: str) -> Any:
        wire = WireObject(value, path, (), lenient=True)
        kind = wire.body.get(self.tag)
        shape = self.shapes.get(kind) if isinstance(kind, str) else None
        if shape is None:
            raise ValidationError(wire.field(self.tag), f"must be one of {', '.join(self.shapes)}")
        return shape.read(value, path)

    def schema(self) -> Schema:
        unique = {id(shape): shape for shape in self.shapes.values()}
        return {"oneOf": [shape.schema() for shape in unique.values()]}


class Json(Field):
    """Free JSON, as Firestore can store it and JSON carry it back: text that
    is Unicode, integers of 64 bits, finite numbers, keys neither empty nor
    `__reserved__`, no list directly in a list, a bounded nesting and key
    path, at most `max_bytes` once encoded."""

    def __init__(self, max_bytes: int, default: Any = REQUIRED, description: str = ""):
        super().__init__(default, description=description)
        self.max_bytes = max_bytes

    def read(self, value: Any, path: str) -> Dict[str, Any]:
        if not isinstance(value, dict):
            raise ValidationError(path, "must be a JSON object")
        _check_json(value, path, 0, 0, False)
        if len(json.dumps(value).encode("utf-8")) > self.max_bytes:
            raise ValidationError(path, f"must be at most {self.max_bytes} bytes of JSON")
        return value

    def schema(self) -> Schema:
        return {"type": "object"}


def _check_json(value: Any, path: str, depth: int, key_bytes: int, in_list: bool) -> None:
    if depth > MAX_JSON_DEPTH:
        raise ValidationError(path, f"nests more than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        unicode_text(value, path)
    elif isinstance(value, int) and not isinstance(value, bool) and not -MAX_INT64 - 1 <= value <= MAX_INT64:
        raise ValidationError(path, "must be an integer of 64 bits")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(path, "must be a finite number")
    elif isinstance(value, list):
        if in_list:
            raise ValidationError(path, "a list cannot be directly in a list")
        for i, item in enumerate(value):
            _check_json(item, f"{path}[{i}]", depth + 1, key_bytes, True)
    elif isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}"
            size = key_bytes + len(unicode_text(key, where).encode("utf-8")) + 1
            if not key or _RESERVED_KEY.fullmatch(key) or size > MAX_KEY_PATH_BYTES:
                raise ValidationError(where, f"keys must be non-empty, not __reserved__, at most "
                                             f"{MAX_KEY_PATH_BYTES} bytes from the top")
            _check_json(item, where, depth + 1, size, False)


class Base64(Field):
    """Bytes as a base64 string (standard alphabet, padded), at most `max_bytes` once decoded."""

    PATTERN = r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"

    def __init__(self, max_bytes: int, default: Any = b"", nullable: bool = False, description: str = ""):
        super().__init__(default, nullable, description)
        self.max_bytes = max_bytes

    def read(self, value: Any, path: str) -> bytes:
        data = base64_bytes(value, path)
        if len(data) > self.max_bytes:
            raise ValidationError(path, f"more than {self.max_bytes} bytes once decoded")
        return data

    def schema(self) -> Schema:
        return {"type": "string", "contentEncoding": "base64", "pattern": f"^{self.PATTERN}$",
                "maxLength": -(-self.max_bytes // 3) * 4}


class RelativePath(Field):
    """A path under the task's directory (see `relative_path`)."""

    def __init__(self, allow_empty: bool = False, default: Any = REQUIRED, description: str = ""):
        super().__init__(default, description=description)
        self.allow_empty = allow_empty

    def read(self, value: Any, path: str) -> str:
        return relative_path(value, path, self.allow_empty)

    def schema(self) -> Schema:
        return {"type": "string", "maxLength": MAX_PATH_LENGTH, "minLength": 0 if self.allow_empty else 1,
                "not": {"pattern": r"^([/\\]|[A-Za-z]:)|(^|[/\\])\.\.([/\\]|$)"}}


class Shape(Field):
    """A JSON object of the declared `fields`, and no other unless `lenient`
    (what a newer peer may add is then passed over). It reads as the dict of
    its fields, or what `build` makes of the object (`build(wire)`: read each
    field with `wire.read(key)`, check the fields together)."""

    def __init__(self, fields: Mapping[str, Field], build: Optional[Callable[[WireObject], Any]] = None,
                 lenient: bool = False, default: Any = REQUIRED, nullable: bool = False, description: str = ""):
        super().__init__(default, nullable, description)
        self.fields, self.build, self.lenient = dict(fields), build, lenient

    def open(self, body: Any, path: str) -> WireObject:
        return WireObject(body, path, self.fields, self.lenient, self)

    def read(self, value: Any, path: str) -> Any:
        wire = self.open(value, path)
        if self.build is not None:
            return self.build(wire)
        return {key: wire.read(key) for key in self.fields}

    def from_wire(self, body: Any) -> Any:
        """A request's whole body."""
        return self.read(body, "")

    def schema(self) -> Schema:
        required = [key for key, field in self.fields.items() if field.default is REQUIRED]
        schema: Schema = {"type": "object", "properties": {key: f.property() for key, f in self.fields.items()},
                          "additionalProperties": self.lenient}
        return {**schema, "required": required} if required else schema


class WireObject:
    """A JSON object at `path` whose keys must all be in `known`, unless
    `lenient`; with a `shape`, `read` reads each key as it declares."""

    def __init__(self, body: Any, path: str, known: Iterable[str], lenient: bool = False,
                 shape: Optional[Shape] = None):
        if not isinstance(body, dict):
            raise ValidationError(path or "request", "must be a JSON object")
        self.body = body
        self.path = path
        self.shape = shape
        unknown = sorted(set(body) - set(known))
        if unknown and not lenient:
            raise ValidationError(self.field(unknown[0]), "unknown field")

    def field(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def read(self, key: str) -> Any:
        """The value of `key`, read as the shape declares it."""
        assert self.shape is not None, "read() needs a Shape"
        return self.take(key, self.shape.fields[key])

    def take(self, key: str, field: Field) -> Any:
        return field.take(key in self.body, self.body.get(key), self.field(key))

    def get(self, key: str, default: Any = REQUIRED) -> Any:
        """The raw value of `key`; without a default, a missing key is refused."""
        if key in self.body:
            return self.body[key]
        if default is REQUIRED:
            raise ValidationError(self.field(key), "is required")
        return default

    def integer(self, key: str, low: int, high: int, default: Any = REQUIRED) -> int:
        return self.take(key, Integer(low, high, default))

    def number(self, key: str, low: float, high: float, default: Any = REQUIRED) -> float:
        return self.take(key, Number(low, high, default))

    def boolean(self, key: str, default: bool = False) -> bool:
        return self.take(key, Boolean(default))

    def string(self, key: str, max_length: int, pattern: Optional[Pattern[str]] = None, default: Any = "") -> str:
        return self.take(key, Text(max_length, pattern, default=default))

    def optional(self, key: str) -> Any:
        """The raw value of `key`; absent and null are both None."""
        return self.body.get(key)

    def items(self, key: str, max_items: int, min_items: int = 0) -> List[Tuple[str, Any]]:
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
    unicode_text(value, field)
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
