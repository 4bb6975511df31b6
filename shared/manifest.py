"""The manifest: what a bot runs for a claim it won, made by the server from
the slice's properties (`Manifest.for_run`, the only way one is made) and read
back by the bot and its task runner process. Part of the bot API
(shared/bot_api.py); a bot reads it leniently, passing over fields a newer
server may add."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional, Tuple

from shared import dimensions as dims_lib
from shared import task_id as task_ids
from shared.cas import Digest
from shared.task_properties import (
    CACHES, CAS_REFERENCE, ENV_KEY_RE, MAX_ARG_LENGTH, MAX_COMMAND_ARGS, MAX_ENV_KEY_LENGTH, MAX_ENV_KEYS,
    MAX_ENV_PREFIX_PATHS, MAX_ENV_VALUE_LENGTH, MAX_OUTPUTS, MAX_SECRET_BYTES, MAX_TIMEOUT_SECS, Cache, CasReference,
    TaskProperties, read_caches,
)
from shared.wire import (REQUIRED, Base64, ListOf, MapOf, Number, RelativePath, Shape, Text, WireObject,
                         to_base64)

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
        manifest: Manifest = MANIFEST.read(body, field)
        return manifest

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



_ENV_NAME = Text(MAX_ENV_KEY_LENGTH, ENV_KEY_RE, min_length=1)
_SECONDS = Number(0, MAX_TIMEOUT_SECS)


def _build(wire: WireObject) -> Manifest:
    io_timeout = wire.read("io_timeout")
    return Manifest(
        task_id=wire.read("task_id"), bot_id=wire.read("bot_id"), command=tuple(wire.read("command")),
        env=dict(wire.read("env")), hard_timeout=wire.read("hard_timeout"), grace_period=wire.read("grace_period"),
        io_timeout=0.0 if io_timeout is None else io_timeout, relative_cwd=wire.read("relative_cwd"),
        env_prefixes={key: tuple(paths) for key, paths in wire.read("env_prefixes").items()},
        dimensions=wire.read("dimensions"),
        cas_input_root=None if (root := wire.read("cas_input_root")) is None else root.digest,
        caches=tuple(read_caches(wire)), outputs=tuple(wire.read("outputs")), secret_bytes=wire.read("secret_bytes"),
        host=wire.read("host"),
    )


#: The manifest on the wire, read leniently: a newer server may add fields.
MANIFEST = Shape({
    "task_id": task_ids.Id(task_ids.RUN, description="the run id: every update names it"),
    "bot_id": Text(dims_lib.MAX_VALUE_LENGTH, default=REQUIRED),
    "command": ListOf(Text(MAX_ARG_LENGTH), MAX_COMMAND_ARGS, min_items=1),
    "env": MapOf(_ENV_NAME, Text(MAX_ENV_VALUE_LENGTH), MAX_ENV_KEYS, default={}),
    "hard_timeout": _SECONDS,
    "grace_period": Number(0, MAX_TIMEOUT_SECS, default=None, nullable=True,
                           description="from SIGTERM to SIGKILL; null: the bot's default"),
    "io_timeout": Number(0, MAX_TIMEOUT_SECS, default=0.0, nullable=True,
                         description="seconds without output before the command is stopped; 0: none"),
    "relative_cwd": RelativePath(allow_empty=True, default=""),
    "env_prefixes": MapOf(_ENV_NAME, ListOf(RelativePath(), MAX_ENV_PREFIX_PATHS, 1), MAX_ENV_KEYS, default={}),
    "dimensions": dims_lib.BotDimensions(default={}),
    "cas_input_root": Shape(CAS_REFERENCE.fields, CAS_REFERENCE.build, default=None, nullable=True),
    "caches": CACHES,
    "outputs": ListOf(RelativePath(), MAX_OUTPUTS),
    "secret_bytes": Base64(MAX_SECRET_BYTES, default=None, nullable=True),
    "host": Text(MAX_HOST_LENGTH, default="", description="the server URL for the whole task; empty: the bot's"),
}, _build, lenient=True)
