"""What a task runs (Swarming's TaskProperties): validated, normalised and hashed.

The normal form sorts env, env_prefixes and caches by key or name and the
dimensions by key then value, and fills every default, so two requests that
differ only in the order of those lists are equal and hash the same. Command
arguments, the paths of one env prefix and outputs keep their order: it matters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any

from shared import dimensions as dims_lib
from shared.errors import ValidationError
from shared.cas import DIGEST, Digest
from shared.wire import (REQUIRED, Base64, Boolean, Integer, ListOf, RelativePath, Shape, Text,
                         WireObject, to_base64)

MAX_TIMEOUT_SECS = 7 * 24 * 3600
DEFAULT_EXECUTION_TIMEOUT_SECS = 3600
DEFAULT_IO_TIMEOUT_SECS = 1200  # 0 means no I/O timeout.
MAX_GRACE_PERIOD_SECS, DEFAULT_GRACE_PERIOD_SECS = 3600, 30
MAX_COMMAND_ARGS, MAX_ARG_LENGTH = 128, 32 * 1024
MAX_ENV_KEYS, MAX_ENV_KEY_LENGTH, MAX_ENV_VALUE_LENGTH = 64, 64, 1024
ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_ENV_PREFIX_PATHS = 64
MAX_CACHES = 32
CACHE_NAME_RE = re.compile(r"[a-z0-9_]{1,128}")
MAX_OUTPUTS = 512
MAX_SECRET_BYTES = 20 * 1024
#: What the bot sets in every task's environment (bot/task_runner.py): a
#: request may not set them in `env` or `env_prefixes`, its value would be lost.
BOT_ENV = ("ISOLATED_OUTDIR", "LUCI_CONTEXT", "SWARMING_BOT_ID", "SWARMING_SERVER", "SWARMING_TASK_ID")


@dataclasses.dataclass(frozen=True)
class CasReference:
    """A tree in the content-addressed store, by its manifest's digest (Swarming's CASReference)."""

    digest: Digest

    @classmethod
    def from_wire(cls, body: Any, field: str) -> "CasReference":
        return CAS_REFERENCE.read(body, field)

    def to_wire(self) -> dict[str, Any]:
        return {"digest": self.digest.to_wire()}


@dataclasses.dataclass(frozen=True)
class Cache:
    """A named cache the bot keeps between tasks, mounted at `path`."""

    name: str
    path: str

    @classmethod
    def from_wire(cls, body: Any, field: str) -> "Cache":
        return CACHE.read(body, field)

    def to_wire(self) -> dict[str, str]:
        return {"name": self.name, "path": self.path}


CAS_REFERENCE = Shape({"digest": DIGEST}, build=lambda wire: CasReference(wire.read("digest")))
CACHE = Shape({"name": Text(128, CACHE_NAME_RE, min_length=1, default=REQUIRED), "path": RelativePath()},
              build=lambda wire: Cache(wire.read("name"), wire.read("path")))
CACHES = ListOf(CACHE, MAX_CACHES)
_ENV_KEY = Text(MAX_ENV_KEY_LENGTH, ENV_KEY_RE, min_length=1, default=REQUIRED)


@dataclasses.dataclass(frozen=True)
class TaskProperties:
    command: list[str]
    dimensions: dims_lib.Dimensions
    env: dict[str, str]
    execution_timeout_secs: int
    relative_cwd: str = ""
    env_prefixes: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    io_timeout_secs: int = DEFAULT_IO_TIMEOUT_SECS
    grace_period_secs: int = DEFAULT_GRACE_PERIOD_SECS
    idempotent: bool = False
    cas_input_root: CasReference | None = None
    caches: list[Cache] = dataclasses.field(default_factory=list)
    outputs: list[str] = dataclasses.field(default_factory=list)
    secret_bytes: bytes | None = None
    #: The task has secret bytes this copy does not carry: it was read from a
    #: wire form written without them (`has_secret_bytes` and no `secret_bytes`).
    secret_withheld: bool = False

    @property
    def has_secret_bytes(self) -> bool:
        return self.secret_bytes is not None or self.secret_withheld

    @classmethod
    def from_wire(cls, body: Any, field: str) -> "TaskProperties":
        return PROPERTIES.read(body, field)

    @classmethod
    def _build(cls, props: WireObject) -> "TaskProperties":
        secret = props.read("secret_bytes") or None
        # `has_secret_bytes` is read too, so that a request stored or returned
        # without its secret reads back knowing it has one.
        has_secret = props.read("has_secret_bytes")
        has_secret = secret is not None if has_secret is None else has_secret
        if secret is not None and not has_secret:
            raise ValidationError(props.field("has_secret_bytes"), "must be true when secret_bytes is set")
        return cls(
            command=props.read("command"),
            dimensions=props.read("dimensions"),
            env=_key_values(props, "env"),
            execution_timeout_secs=props.read("execution_timeout_secs"),
            relative_cwd=props.read("relative_cwd"),
            env_prefixes=_key_values(props, "env_prefixes"),
            io_timeout_secs=props.read("io_timeout_secs"),
            grace_period_secs=props.read("grace_period_secs"),
            idempotent=props.read("idempotent"),
            cas_input_root=props.read("cas_input_root"),
            caches=read_caches(props),
            outputs=props.read("outputs"),
            secret_bytes=secret,
            secret_withheld=has_secret and secret is None,
        )

    def to_wire(self, include_secrets: bool = False) -> dict[str, Any]:
        """The normal wire form; `secret_bytes` (base64) only with `include_secrets`."""
        wire: dict[str, Any] = {
            "command": list(self.command),
            "relative_cwd": self.relative_cwd,
            "env": [{"key": k, "value": v} for k, v in sorted(self.env.items())],
            "env_prefixes": [{"key": k, "value": list(v)} for k, v in sorted(self.env_prefixes.items())],
            "dimensions": dims_lib.to_pairs(self.dimensions),
            "execution_timeout_secs": self.execution_timeout_secs,
            "io_timeout_secs": self.io_timeout_secs,
            "grace_period_secs": self.grace_period_secs,
            "idempotent": self.idempotent,
            "caches": [c.to_wire() for c in sorted(self.caches, key=lambda c: c.name)],
            "outputs": list(self.outputs),
            "has_secret_bytes": self.has_secret_bytes,
        }
        if self.cas_input_root is not None:
            wire["cas_input_root"] = self.cas_input_root.to_wire()
        if include_secrets and self.secret_bytes is not None:
            wire["secret_bytes"] = to_base64(self.secret_bytes)
        return wire

    def properties_hash(self) -> str:
        """SHA-256 (hex) of the canonical JSON of the normal form, secret bytes included.

        Equal hashes mean the same work, so an idempotent task may reuse the
        result of an earlier one with the same hash. The normal form makes the
        hash blind to the order of env, env_prefixes, dimensions and caches;
        any other change (command, cwd, env, dimensions, timeouts, inputs,
        caches, outputs, secret) changes it.
        """
        if self.secret_withheld:
            raise ValueError("the secret bytes were withheld from these properties; hash them as submitted")
        canonical = json.dumps(self.to_wire(include_secrets=True), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


PROPERTIES = Shape({
    "command": ListOf(Text(MAX_ARG_LENGTH), MAX_COMMAND_ARGS, min_items=1),
    "relative_cwd": RelativePath(allow_empty=True, default=""),
    "env": ListOf(Shape({"key": _ENV_KEY, "value": Text(MAX_ENV_VALUE_LENGTH, default=REQUIRED)}), MAX_ENV_KEYS),
    "env_prefixes": ListOf(Shape({"key": _ENV_KEY, "value": ListOf(RelativePath(), MAX_ENV_PREFIX_PATHS, 1)}),
                           MAX_ENV_KEYS),
    "dimensions": dims_lib.TaskDimensions(),
    "execution_timeout_secs": Integer(1, MAX_TIMEOUT_SECS, DEFAULT_EXECUTION_TIMEOUT_SECS),
    "io_timeout_secs": Integer(0, MAX_TIMEOUT_SECS, DEFAULT_IO_TIMEOUT_SECS,
                               description="0: no I/O timeout"),
    "grace_period_secs": Integer(0, MAX_GRACE_PERIOD_SECS, DEFAULT_GRACE_PERIOD_SECS),
    "idempotent": Boolean(),
    "cas_input_root": Shape(CAS_REFERENCE.fields, CAS_REFERENCE.build, default=None, nullable=True),
    "caches": CACHES,
    "outputs": ListOf(RelativePath(), MAX_OUTPUTS),
    "secret_bytes": Base64(MAX_SECRET_BYTES),
    "has_secret_bytes": Boolean(default=None, description="given by the stored request, which has no secret_bytes"),
}, build=TaskProperties._build)


def _key_values(props: WireObject, key: str) -> dict[str, Any]:
    """Swarming's `[{key, value}]` keyed by environment variable names, unique, sorted by key."""
    read: dict[str, Any] = {}
    for i, pair in enumerate(props.read(key)):
        where = f"{props.field(key)}[{i}].key"
        name = pair["key"]
        if name in BOT_ENV:
            raise ValidationError(where, f"{name} is set by the bot for every task")
        if name in read:
            raise ValidationError(where, f"duplicate key {name!r}")
        read[name] = pair["value"]
    return dict(sorted(read.items()))


def read_caches(props: WireObject) -> list[Cache]:
    """`caches`: each name and each path given once; sorted by name."""
    caches = props.take("caches", CACHES)
    for attribute in ("name", "path"):
        seen: set[str] = set()
        for i, cache in enumerate(caches):
            value = getattr(cache, attribute)
            if value in seen:
                raise ValidationError(f"{props.field('caches')}[{i}].{attribute}", f"duplicate {attribute} {value!r}")
            seen.add(value)
    return sorted(caches, key=lambda c: c.name)
