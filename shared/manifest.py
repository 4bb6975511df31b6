"""The manifest: what a bot runs for a claim it won, made by the server from
the slice's properties (`Manifest.for_run`, the only way one is made) and read
back by the bot and its task runner process. Part of the bot API
(shared/bot_api.py); a bot reads it leniently, passing over fields a newer
server may add."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Optional, Tuple, TypeVar

from shared import dimensions as dims_lib
from shared import task_id as task_ids
from shared.cas import Digest
from shared.errors import ValidationError
from shared.task_properties import (
    ENV_KEY_RE, MAX_COMMAND_ARGS, MAX_ENV_KEY_LENGTH, MAX_ENV_KEYS, MAX_ENV_VALUE_LENGTH, MAX_OUTPUTS,
    MAX_TIMEOUT_SECS, Cache, CasReference, TaskProperties, read_caches,
)
from shared.wire import MAX_INT64, REQUIRED, WireObject, base64_bytes, relative_path, to_base64

T = TypeVar("T")
MAX_HOST_LENGTH = 2048


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What a bot needs to run one slice for one run: the reference's
    manifest. Paths are relative to the task's `w/`."""

    task_id: str  # The run id: every update names it.
    bot_id: str
    command: Tuple[str, ...]
    env: Dict[str, str]
    hard_timeout: float
    grace_period: Optional[float] = None  # From SIGTERM to SIGKILL; None: the bot's default.
    io_timeout: float = 0.0  # Seconds without output before the command is stopped; 0: none.
    relative_cwd: str = ""  # Where the command runs, under w/.
    #: Prepended, in order and made absolute under w/, to each variable.
    env_prefixes: Dict[str, Tuple[str, ...]] = dataclasses.field(default_factory=dict)
    dimensions: dims_lib.Dimensions = dataclasses.field(default_factory=dict)
    cas_input_root: Optional[Digest] = None  # The tree to place in w/ first.
    #: Named caches, kept in the bot's c/ between tasks and mounted at their path.
    caches: Tuple[Cache, ...] = ()
    outputs: Tuple[str, ...] = ()  # Uploaded with ${ISOLATED_OUTDIR} after the command.
    secret_bytes: Optional[bytes] = dataclasses.field(default=None, repr=False)
    host: str = ""  # The server URL for the whole task; empty: the bot's.

    @classmethod
    def for_run(cls, properties: TaskProperties, run_id: str, bot_id: str,
                secret_bytes: Optional[bytes] = None) -> Manifest:
        """The one way the server makes a manifest: a slice's properties, for
        one run on one bot; the secret bytes are stored apart from them."""
        root = properties.cas_input_root
        return cls(
            task_id=run_id, bot_id=bot_id, command=tuple(properties.command), env=dict(properties.env),
            hard_timeout=properties.execution_timeout_secs, grace_period=properties.grace_period_secs,
            io_timeout=properties.io_timeout_secs, relative_cwd=properties.relative_cwd,
            env_prefixes={key: tuple(paths) for key, paths in properties.env_prefixes.items()},
            dimensions=properties.dimensions, cas_input_root=root.digest if root else None,
            caches=tuple(properties.caches), outputs=tuple(properties.outputs), secret_bytes=secret_bytes,
        )

    @classmethod
    def from_wire(cls, body: Any, field: str = "manifest") -> Manifest:
        wire = WireObject(body, field, [f.name for f in dataclasses.fields(cls)], lenient=True)
        grace, io_timeout = wire.optional("grace_period"), wire.optional("io_timeout")
        root, secret = wire.optional("cas_input_root"), wire.optional("secret_bytes")
        return cls(
            task_id=task_ids.parse_run_id(wire.get("task_id"), wire.field("task_id")),
            bot_id=wire.string("bot_id", dims_lib.MAX_VALUE_LENGTH, default=REQUIRED),
            command=tuple(_string(arg, where) for where, arg in wire.items("command", MAX_COMMAND_ARGS, 1)),
            env=_string_map(wire, "env", lambda value, where: _string(value, where, MAX_ENV_VALUE_LENGTH)),
            hard_timeout=wire.number("hard_timeout", 0, MAX_TIMEOUT_SECS),
            grace_period=None if grace is None else wire.number("grace_period", 0, MAX_TIMEOUT_SECS),
            io_timeout=0.0 if io_timeout is None else wire.number("io_timeout", 0, MAX_TIMEOUT_SECS),
            relative_cwd=relative_path(wire.get("relative_cwd", ""), wire.field("relative_cwd"), allow_empty=True),
            env_prefixes=_string_map(wire, "env_prefixes", _paths),
            dimensions=dims_lib.validate_bot(wire.get("dimensions", {}), wire.field("dimensions")),
            cas_input_root=None if root is None else CasReference.from_wire(root, wire.field("cas_input_root")).digest,
            caches=tuple(read_caches(wire)),
            outputs=tuple(relative_path(path, where) for where, path in wire.items("outputs", MAX_OUTPUTS)),
            secret_bytes=None if secret is None else base64_bytes(secret, wire.field("secret_bytes")),
            host=wire.string("host", MAX_HOST_LENGTH),
        )

    def to_wire(self) -> Dict[str, Any]:
        return {
            "task_id": self.task_id,
            "bot_id": self.bot_id,
            "command": list(self.command),
            "env": dict(self.env),
            "hard_timeout": self.hard_timeout,
            "grace_period": self.grace_period,
            "io_timeout": self.io_timeout,
            "relative_cwd": self.relative_cwd,
            "env_prefixes": {key: list(paths) for key, paths in self.env_prefixes.items()},
            "dimensions": self.dimensions,
            "cas_input_root": None if self.cas_input_root is None else CasReference(self.cas_input_root).to_wire(),
            "caches": [cache.to_wire() for cache in self.caches],
            "outputs": list(self.outputs),
            "secret_bytes": None if self.secret_bytes is None else to_base64(self.secret_bytes),
            "host": self.host,
        }


def _string(value: Any, field: str, max_length: int = MAX_INT64) -> str:
    if not isinstance(value, str) or len(value) > max_length:
        raise ValidationError(field, "must be a string" if max_length == MAX_INT64
                              else f"must be a string of at most {max_length} characters")
    return value


def _paths(value: Any, field: str) -> Tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValidationError(field, "must be a non-empty list of paths")
    return tuple(relative_path(path, f"{field}[{i}]") for i, path in enumerate(value))


def _string_map(wire: WireObject, key: str, read_value: Callable[[Any, str], T]) -> Dict[str, T]:
    """`{NAME: value}` keyed by environment variable names."""
    body = wire.get(key, {})
    if not isinstance(body, dict) or len(body) > MAX_ENV_KEYS:
        raise ValidationError(wire.field(key), f"must map at most {MAX_ENV_KEYS} names to values")
    found: Dict[str, T] = {}
    for name, value in body.items():
        where = f"{wire.field(key)}.{name}"
        if len(name) > MAX_ENV_KEY_LENGTH or not ENV_KEY_RE.fullmatch(name):
            raise ValidationError(where, f"the name must match {ENV_KEY_RE.pattern}")
        found[name] = read_value(value, where)
    return found
