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
from collections.abc import Callable
from typing import Any, TypeVar

from shared import dimensions as dims_lib
from shared.errors import ValidationError
from shared.cas import Digest
from shared.wire import REQUIRED, WireObject, base64_bytes, relative_path, to_base64

MAX_TIMEOUT_SECS = 7 * 24 * 3600
DEFAULT_EXECUTION_TIMEOUT_SECS = 3600
DEFAULT_IO_TIMEOUT_SECS = 1200  # 0 means no I/O timeout.
MAX_GRACE_PERIOD_SECS, DEFAULT_GRACE_PERIOD_SECS = 3600, 30
MAX_COMMAND_ARGS = 128
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

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class CasReference:
    """A tree in the content-addressed store, by its manifest's digest (Swarming's CASReference)."""

    digest: Digest

    @classmethod
    def from_wire(cls, body: Any, field: str) -> "CasReference":
        reference = WireObject(body, field, {"digest"})
        return cls(Digest.from_wire(reference.get("digest"), reference.field("digest")))

    def to_wire(self) -> dict[str, Any]:
        return {"digest": self.digest.to_wire()}


@dataclasses.dataclass(frozen=True)
class Cache:
    """A named cache the bot keeps between tasks, mounted at `path`."""

    name: str
    path: str

    @classmethod
    def from_wire(cls, body: Any, field: str) -> "Cache":
        cache = WireObject(body, field, {"name", "path"})
        return cls(
            name=cache.string("name", 128, CACHE_NAME_RE, default=REQUIRED),
            path=relative_path(cache.get("path"), cache.field("path")),
        )

    def to_wire(self) -> dict[str, str]:
        return {"name": self.name, "path": self.path}


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
        props = WireObject(body, field, {
            "command", "relative_cwd", "env", "env_prefixes", "dimensions", "execution_timeout_secs",
            "io_timeout_secs", "grace_period_secs", "idempotent", "cas_input_root", "caches", "outputs",
            "secret_bytes", "has_secret_bytes",
        })
        dimensions = dims_lib.from_pairs(props.get("dimensions"), props.field("dimensions"))
        secret = _secret_bytes(props.get("secret_bytes", ""), props.field("secret_bytes"))
        # `has_secret_bytes` is read too, so that a request stored or returned
        # without its secret reads back knowing it has one.
        has_secret = props.boolean("has_secret_bytes", default=secret is not None)
        if secret is not None and not has_secret:
            raise ValidationError(props.field("has_secret_bytes"), "must be true when secret_bytes is set")
        return cls(
            command=_command(props),
            dimensions=dims_lib.validate_task(dimensions, props.field("dimensions")),
            env=_key_values(props, "env", _env_value),
            execution_timeout_secs=props.integer(
                "execution_timeout_secs", 1, MAX_TIMEOUT_SECS, DEFAULT_EXECUTION_TIMEOUT_SECS),
            relative_cwd=relative_path(props.get("relative_cwd", ""), props.field("relative_cwd"), allow_empty=True),
            env_prefixes=_key_values(props, "env_prefixes", _prefix_paths),
            io_timeout_secs=props.integer("io_timeout_secs", 0, MAX_TIMEOUT_SECS, DEFAULT_IO_TIMEOUT_SECS),
            grace_period_secs=props.integer(
                "grace_period_secs", 0, MAX_GRACE_PERIOD_SECS, DEFAULT_GRACE_PERIOD_SECS),
            idempotent=props.boolean("idempotent"),
            cas_input_root=_cas_input_root(props),
            caches=read_caches(props),
            outputs=[relative_path(path, where) for where, path in props.items("outputs", MAX_OUTPUTS)],
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


def _command(props: WireObject) -> list[str]:
    command = []
    for where, arg in props.items("command", MAX_COMMAND_ARGS, min_items=1):
        if not isinstance(arg, str):
            raise ValidationError(where, "must be a string")
        command.append(arg)
    return command


def _key_values(props: WireObject, key: str, read_value: Callable[[WireObject], T]) -> dict[str, T]:
    """Swarming's `[{key, value}]` keyed by environment variable names, unique, sorted by key."""
    read: dict[str, T] = {}
    for where, item in props.items(key, MAX_ENV_KEYS):
        pair = WireObject(item, where, {"key", "value"})
        name = pair.string("key", MAX_ENV_KEY_LENGTH, ENV_KEY_RE, default=REQUIRED)
        if name in BOT_ENV:
            raise ValidationError(pair.field("key"), f"{name} is set by the bot for every task")
        if name in read:
            raise ValidationError(pair.field("key"), f"duplicate key {name!r}")
        read[name] = read_value(pair)
    return dict(sorted(read.items()))


def _env_value(pair: WireObject) -> str:
    return pair.string("value", MAX_ENV_VALUE_LENGTH, default=REQUIRED)


def _prefix_paths(pair: WireObject) -> list[str]:
    return [relative_path(path, where) for where, path in pair.items("value", MAX_ENV_PREFIX_PATHS, min_items=1)]


def _cas_input_root(props: WireObject) -> CasReference | None:
    body = props.get("cas_input_root", None)
    return None if body is None else CasReference.from_wire(body, props.field("cas_input_root"))


def read_caches(props: WireObject) -> list[Cache]:
    """`caches`: each name and each path given once; sorted by name."""
    caches = [Cache.from_wire(item, where) for where, item in props.items("caches", MAX_CACHES)]
    for attribute in ("name", "path"):
        seen: set[str] = set()
        for i, cache in enumerate(caches):
            value = getattr(cache, attribute)
            if value in seen:
                raise ValidationError(f"{props.field('caches')}[{i}].{attribute}", f"duplicate {attribute} {value!r}")
            seen.add(value)
    return sorted(caches, key=lambda c: c.name)


def _secret_bytes(value: Any, field: str) -> bytes | None:
    """Decoded secret bytes; none when empty, as in Swarming."""
    secret = base64_bytes(value, field)
    if len(secret) > MAX_SECRET_BYTES:
        raise ValidationError(field, f"more than {MAX_SECRET_BYTES} bytes once decoded")
    return secret or None
