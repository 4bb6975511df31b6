"""Every message of the bot API (PROTOCOL.md, "Bot API"), as typed values that
read themselves from their JSON wire form (`from_wire`) and write it back
(`to_wire`). The functions parse what bots send and answer with the replies;
the bot builds the requests and parses the replies: one definition for both.

A request, read by the server, is strict: a missing, malformed or unknown
field raises ValidationError naming its path. A reply, read by a bot, passes
over fields it does not know, so that a server may add one before every bot
has updated (bots handshake before they are told to update).

Every request carries the bot's attributes (`dimensions`, `state`, `version`)
and the last `session` the server answered, side by side with its own fields.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Dict, Optional, Tuple, Union

from shared import dimensions as dims_lib
from shared import task_id as task_ids
from shared.cas import Digest
from shared.errors import ValidationError
from shared.manifest import Manifest
from shared.task_properties import MAX_TIMEOUT_SECS, CasReference
from shared.task_request import MAX_SLICES
from shared.wire import MAX_INT64, REQUIRED, WireObject, base64_bytes, to_base64

ATTRIBUTES = ("dimensions", "state", "version", "session")
#: The header of an answer to a bot that carries its renewed bot token: the
#: bot sends it as `Authorization: Bearer <token>` from then on.
BOT_TOKEN_HEADER = "X-Swarming-Bot-Token"
#: Claim ids and poll request ids: the bot's own (a UUID), at most 128 characters.
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
MAX_VERSION_LENGTH = 128
MAX_SESSION_LENGTH = 64 * 1024
#: A bot group's hooks script, and its name.
MAX_SCRIPT_LENGTH, MAX_SCRIPT_NAME_LENGTH = 1024 * 1024, 256
#: The events a bot reports itself (`bot_event`).
BOT_REPORTED_EVENTS = ("bot_error", "bot_log", "bot_rebooting", "bot_shutdown")
#: The keys of `performance_stats`: a number ≥ 0, or an object of such numbers.
PERFORMANCE_STATS: Dict[str, Optional[Tuple[str, ...]]] = {
    "bot_overhead_secs": None,
    "cas_download": ("duration_secs", "items_cold", "bytes_cold", "items_hot", "bytes_hot"),
    "cas_upload": ("duration_secs", "items", "bytes", "items_uploaded", "bytes_uploaded"),
}


def is_bot_id(bot_id: Any) -> bool:
    """Whether a bot may have this id. It names the bot's registry document,
    and Firestore refuses ids with a '/', '.' and '..', and reserves `__...__`."""
    return (isinstance(bot_id, str) and bool(bot_id) and "/" not in bot_id and bot_id not in (".", "..")
            and not (bot_id.startswith("__") and bot_id.endswith("__")))


# What every request carries.

@dataclasses.dataclass(frozen=True)
class BotAttributes:
    """What a bot says of itself on every call, and the server's last `session`
    (opaque to the bot, echoed back)."""

    dimensions: dims_lib.Dimensions
    state: Dict[str, Any]
    version: str
    session: Optional[str] = None

    @property
    def bot_id(self) -> str:
        return self.dimensions["id"][0]

    @classmethod
    def read(cls, wire: WireObject) -> BotAttributes:
        dims = dims_lib.validate_bot(wire.get("dimensions"), wire.field("dimensions"))
        ids = dims.get("id", [])
        if len(ids) != 1:
            raise ValidationError(wire.field("dimensions.id"), "a bot must report exactly one id")
        if not is_bot_id(ids[0]):
            raise ValidationError(wire.field("dimensions.id"), "no '/', not '.' or '..', not __reserved__")
        state = wire.get("state", {})
        if not isinstance(state, dict):
            raise ValidationError(wire.field("state"), "must be a JSON object")
        session = wire.optional("session")
        return cls(dimensions=dims, state=state, version=wire.string("version", MAX_VERSION_LENGTH),
                   session=None if session is None else wire.string("session", MAX_SESSION_LENGTH))

    def to_wire(self) -> Dict[str, Any]:
        wire = {"dimensions": self.dimensions, "state": self.state, "version": self.version}
        if self.session is not None:
            wire["session"] = self.session
        return wire


def _request(body: Any, fields: Tuple[str, ...]) -> Tuple[WireObject, BotAttributes]:
    wire = WireObject(body, "", ATTRIBUTES + fields)
    return wire, BotAttributes.read(wire)


# Requests.

@dataclasses.dataclass(frozen=True)
class Handshake:
    """`bot_handshake`: the bot's first call."""

    attributes: BotAttributes

    @classmethod
    def from_wire(cls, body: Any) -> Handshake:
        return cls(_request(body, ())[1])

    def to_wire(self) -> Dict[str, Any]:
        return self.attributes.to_wire()


@dataclasses.dataclass(frozen=True)
class Poll:
    """`bot_poll`; `request_uuid` is reused until an answer comes, so a
    retried poll is the same poll."""

    attributes: BotAttributes
    request_uuid: str = ""

    @classmethod
    def from_wire(cls, body: Any) -> Poll:
        wire, attributes = _request(body, ("request_uuid",))
        uuid = wire.get("request_uuid", "")
        return cls(attributes, "" if uuid == "" else wire.string("request_uuid", 128, REQUEST_ID_RE))

    def to_wire(self) -> Dict[str, Any]:
        return {**self.attributes.to_wire(), "request_uuid": self.request_uuid}


@dataclasses.dataclass(frozen=True)
class ClaimRequest:
    """`bot_claim` of one candidate; the same `claim_id` again gets the same manifest."""

    attributes: BotAttributes
    task_id: str
    claim_id: str
    slice: int = 0

    @classmethod
    def from_wire(cls, body: Any) -> ClaimRequest:
        wire, attributes = _request(body, ("task_id", "slice", "claim_id"))
        return cls(attributes, task_ids.parse_task_id(wire.get("task_id"), "task_id"),
                   claim_id=wire.string("claim_id", 128, REQUEST_ID_RE, default=REQUIRED),
                   slice=wire.integer("slice", 0, MAX_SLICES - 1, default=0))

    def to_wire(self) -> Dict[str, Any]:
        return {**self.attributes.to_wire(), "task_id": self.task_id, "slice": self.slice,
                "claim_id": self.claim_id}


@dataclasses.dataclass(frozen=True)
class Completion:
    """The end of a command that ran; exit code and duration travel together."""

    exit_code: int
    duration: float
    hard_timeout: bool = False
    io_timeout: bool = False
    #: The tree of the task's outputs; None: nothing uploaded.
    cas_output_root: Optional[Digest] = None
    #: {"bot_overhead_secs", "cas_download": {...}, "cas_upload": {...}}: see PERFORMANCE_STATS.
    performance_stats: Optional[Dict[str, Any]] = None

    @property
    def timed_out(self) -> bool:
        return self.hard_timeout or self.io_timeout

    @classmethod
    def read(cls, wire: WireObject) -> Completion:
        root, stats = wire.optional("cas_output_root"), wire.optional("performance_stats")
        return cls(
            exit_code=wire.integer("exit_code", -MAX_INT64 - 1, MAX_INT64),
            duration=float(wire.number("duration", 0, MAX_INT64)),
            hard_timeout=wire.boolean("hard_timeout"),
            io_timeout=wire.boolean("io_timeout"),
            cas_output_root=None if root is None else CasReference.from_wire(
                root, wire.field("cas_output_root")).digest,
            performance_stats=None if stats is None else _performance_stats(stats, wire.field("performance_stats")),
        )

    def to_wire(self) -> Dict[str, Any]:
        wire: Dict[str, Any] = {"exit_code": self.exit_code, "duration": self.duration,
                                "hard_timeout": self.hard_timeout, "io_timeout": self.io_timeout}
        if self.cas_output_root is not None:
            wire["cas_output_root"] = CasReference(self.cas_output_root).to_wire()
        if self.performance_stats is not None:
            wire["performance_stats"] = self.performance_stats
        return wire


#: The fields that only come with a completion.
_COMPLETION_FIELDS = ("exit_code", "duration", "hard_timeout", "io_timeout", "cas_output_root", "performance_stats")


@dataclasses.dataclass(frozen=True)
class Update:
    """What one `bot_task_update` says of a run: stdout bytes at their byte
    offset, and maybe its end: the completion of a command that ran, or
    `canceled` for one that never started."""

    offset: int = 0
    output: bytes = b""
    completion: Optional[Completion] = None
    canceled: bool = False

    @property
    def ends(self) -> bool:
        return self.completion is not None or self.canceled

    @classmethod
    def read(cls, wire: WireObject) -> Update:
        output = wire.optional("output")
        offset = wire.optional("output_chunk_start")
        canceled = wire.boolean("canceled")
        exit_code, duration = wire.optional("exit_code"), wire.optional("duration")
        if (exit_code is None) != (duration is None):
            raise ValidationError(wire.field("exit_code"), "exit_code and duration come together or not at all")
        if exit_code is None:
            given = next((key for key in _COMPLETION_FIELDS if wire.optional(key) is not None), None)
            if given:
                raise ValidationError(wire.field(given), "only comes with the end of the run (exit_code)")
        elif canceled:
            raise ValidationError(wire.field("canceled"), "a run that has an exit_code ran: it was not canceled")
        return cls(
            offset=0 if offset is None else wire.integer("output_chunk_start", 0, MAX_INT64),
            output=b"" if output is None else base64_bytes(output, wire.field("output")),
            completion=None if exit_code is None else Completion.read(wire),
            canceled=canceled,
        )

    def to_wire(self) -> Dict[str, Any]:
        wire: Dict[str, Any] = {"output": to_base64(self.output), "output_chunk_start": self.offset}
        if self.completion is not None:
            wire.update(self.completion.to_wire())
        if self.canceled:
            wire["canceled"] = True
        return wire


@dataclasses.dataclass(frozen=True)
class TaskUpdate:
    """`bot_task_update`: an `Update` on the run `run_id`."""

    attributes: BotAttributes
    run_id: str
    update: Update

    @classmethod
    def from_wire(cls, body: Any) -> TaskUpdate:
        wire, attributes = _request(body, ("task_id", "output", "output_chunk_start", "canceled")
                                    + _COMPLETION_FIELDS)
        return cls(attributes, task_ids.parse_run_id(wire.get("task_id"), "task_id"), Update.read(wire))

    def to_wire(self) -> Dict[str, Any]:
        return {**self.attributes.to_wire(), "task_id": self.run_id, **self.update.to_wire()}


@dataclasses.dataclass(frozen=True)
class TaskError:
    """`bot_task_error`: the bot could not run `run_id`; `missing_cas` names
    the inputs that were not in the store (the client's fault)."""

    attributes: BotAttributes
    run_id: str
    message: str = ""
    missing_cas: Optional[Tuple[Digest, ...]] = None

    @classmethod
    def from_wire(cls, body: Any) -> TaskError:
        wire, attributes = _request(body, ("task_id", "message", "client_error"))
        message = wire.get("message", "")
        if not isinstance(message, str):
            raise ValidationError("message", "must be a string")
        client_error = wire.optional("client_error")
        missing = None
        if client_error is not None:
            error = WireObject(client_error, "client_error", ("missing_cas",))
            listed = error.optional("missing_cas")
            if listed is not None:
                missing = tuple(Digest.from_wire(item, where) for where, item in error.items("missing_cas", MAX_INT64))
        return cls(attributes, task_ids.parse_run_id(wire.get("task_id"), "task_id"), message, missing)

    def to_wire(self) -> Dict[str, Any]:
        wire = {**self.attributes.to_wire(), "task_id": self.run_id, "message": self.message}
        if self.missing_cas is not None:
            wire["client_error"] = {"missing_cas": [d.to_wire() for d in self.missing_cas]}
        return wire


@dataclasses.dataclass(frozen=True)
class Event:
    """`bot_event`: one of BOT_REPORTED_EVENTS, with its message."""

    attributes: BotAttributes
    event: str
    message: str = ""

    @classmethod
    def from_wire(cls, body: Any) -> Event:
        wire, attributes = _request(body, ("event", "message"))
        event = wire.get("event")
        if event not in BOT_REPORTED_EVENTS:
            raise ValidationError("event", f"must be one of {', '.join(BOT_REPORTED_EVENTS)}")
        message = wire.get("message", "")
        if not isinstance(message, str):
            raise ValidationError("message", "must be a string")
        return cls(attributes, event, message)

    def to_wire(self) -> Dict[str, Any]:
        return {**self.attributes.to_wire(), "event": self.event, "message": self.message}


# Replies: each may carry the `session` the bot sends back on its next call.

def _reply(body: Any) -> WireObject:
    return WireObject(body, "", (), lenient=True)


def _session(wire: WireObject) -> Optional[str]:
    session = wire.optional("session")
    return None if session is None else wire.string("session", MAX_SESSION_LENGTH)


def _with_session(wire: Dict[str, Any], session: Optional[str]) -> Dict[str, Any]:
    if session is not None:
        wire["session"] = session
    return wire


@dataclasses.dataclass(frozen=True)
class HandshakeReply:
    """`server_dimensions`: those the server enforces for this bot (its bot
    group), over what the bot reports; `bot_config`: the group's hooks script
    (`bot_config_name`), which replaces the zip's default hooks, or None."""

    session: Optional[str] = None
    bot_version: str = ""
    server_version: str = ""
    server_dimensions: dims_lib.Dimensions = dataclasses.field(default_factory=dict)
    bot_config: Optional[str] = dataclasses.field(default=None, repr=False)
    bot_config_name: str = ""

    @classmethod
    def from_wire(cls, body: Any) -> HandshakeReply:
        wire = _reply(body)
        group = WireObject(wire.get("bot_group_cfg", {}), "bot_group_cfg", ("dimensions",), lenient=True)
        script = wire.optional("bot_config")
        return cls(session=_session(wire), bot_version=wire.string("bot_version", MAX_VERSION_LENGTH),
                   server_version=wire.string("server_version", MAX_VERSION_LENGTH),
                   server_dimensions=dims_lib.validate_bot(group.get("dimensions", {}), group.field("dimensions")),
                   bot_config=None if script is None else wire.string("bot_config", MAX_SCRIPT_LENGTH),
                   bot_config_name=wire.string("bot_config_name", MAX_SCRIPT_NAME_LENGTH))

    def to_wire(self) -> Dict[str, Any]:
        return _with_session({"bot_version": self.bot_version, "server_version": self.server_version,
                              "bot_group_cfg": {"dimensions": self.server_dimensions},
                              "bot_config": self.bot_config, "bot_config_name": self.bot_config_name},
                             self.session)


@dataclasses.dataclass(frozen=True)
class Sleep:
    """Nothing to do: poll again in `duration` seconds."""

    duration: float
    session: Optional[str] = None

    @classmethod
    def read(cls, wire: WireObject) -> Sleep:
        return cls(wire.number("duration", 0, MAX_TIMEOUT_SECS), _session(wire))

    def to_wire(self) -> Dict[str, Any]:
        return _with_session({"cmd": "sleep", "duration": self.duration}, self.session)


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A pending slice the bot may claim."""

    task_id: str
    slice: int = 0

    @classmethod
    def from_wire(cls, body: Any, field: str) -> Candidate:
        wire = WireObject(body, field, ("task_id", "slice"), lenient=True)
        return cls(task_ids.parse_task_id(wire.get("task_id"), wire.field("task_id")),
                   wire.integer("slice", 0, MAX_SLICES - 1, default=0))

    def to_wire(self) -> Dict[str, Any]:
        return {"task_id": self.task_id, "slice": self.slice}


@dataclasses.dataclass(frozen=True)
class Claim:
    """Pending tasks the bot matches, to claim (`bot_claim`) in this order."""

    candidates: Tuple[Candidate, ...]
    session: Optional[str] = None

    @classmethod
    def read(cls, wire: WireObject) -> Claim:
        candidates = tuple(Candidate.from_wire(c, where) for where, c in wire.items("candidates", MAX_INT64, 1))
        return cls(candidates, _session(wire))

    def to_wire(self) -> Dict[str, Any]:
        return _with_session({"cmd": "claim", "candidates": [c.to_wire() for c in self.candidates]}, self.session)


@dataclasses.dataclass(frozen=True)
class UpdateCode:
    """Switch to the bot code of this digest (the seed's "update")."""

    version: str
    session: Optional[str] = None

    @classmethod
    def read(cls, wire: WireObject) -> UpdateCode:
        return cls(wire.string("version", MAX_VERSION_LENGTH, default=REQUIRED), _session(wire))

    def to_wire(self) -> Dict[str, Any]:
        return _with_session({"cmd": "update", "version": self.version}, self.session)


@dataclasses.dataclass(frozen=True)
class Restart:
    """Restart the bot process (`bot_restart`); with `host`, the host
    (`restart`), which only a hook may turn into a reboot."""

    message: str = ""
    host: bool = False
    session: Optional[str] = None

    @classmethod
    def read(cls, wire: WireObject) -> Restart:
        return cls(wire.string("message", 10_000), wire.get("cmd") == "restart", _session(wire))

    def to_wire(self) -> Dict[str, Any]:
        return _with_session({"cmd": "restart" if self.host else "bot_restart", "message": self.message},
                             self.session)


@dataclasses.dataclass(frozen=True)
class Terminate:
    """Complete this termination task (claim it, report exit code 0), then exit."""

    task_id: str
    session: Optional[str] = None

    @classmethod
    def read(cls, wire: WireObject) -> Terminate:
        return cls(task_ids.parse_task_id(wire.get("task_id"), "task_id"), _session(wire))

    def to_wire(self) -> Dict[str, Any]:
        return _with_session({"cmd": "terminate", "task_id": self.task_id}, self.session)


PollReply = Union[Sleep, Claim, UpdateCode, Restart, Terminate]
_POLL_REPLIES = {"sleep": Sleep, "claim": Claim, "update": UpdateCode, "bot_restart": Restart,
                 "restart": Restart, "terminate": Terminate}


def poll_reply(body: Any) -> PollReply:
    """The reply to `bot_poll`, by its `cmd`."""
    wire = _reply(body)
    kind = _POLL_REPLIES.get(wire.get("cmd"))
    if kind is None:
        raise ValidationError("cmd", f"must be one of {', '.join(_POLL_REPLIES)}")
    return kind.read(wire)


@dataclasses.dataclass(frozen=True)
class Run:
    """A won claim: run this manifest. `run_token` is the task runner's
    credential (required on the wire: a bot reads a claim without one as a
    manifest it cannot run): it reports on this run and moves its files,
    nothing else."""

    manifest: Manifest
    session: Optional[str] = None
    run_token: Optional[str] = dataclasses.field(default=None, repr=False)

    def to_wire(self) -> Dict[str, Any]:
        return _with_session({"cmd": "run", "manifest": self.manifest.to_wire(), "run_token": self.run_token},
                             self.session)


@dataclasses.dataclass(frozen=True)
class Skip:
    """A lost claim: try the next candidate."""

    reason: str = ""
    session: Optional[str] = None

    def to_wire(self) -> Dict[str, Any]:
        return _with_session({"cmd": "skip", "reason": self.reason}, self.session)


ClaimReply = Union[Run, Skip]


def claim_reply(body: Any) -> ClaimReply:
    """The reply to `bot_claim`. A manifest that cannot be read raises
    ValidationError: see `claimed_run_id` for the run the bot then owns."""
    wire = _reply(body)
    cmd = wire.get("cmd")
    if cmd == "run":
        return Run(Manifest.from_wire(wire.get("manifest")), _session(wire),
                   wire.string("run_token", MAX_SESSION_LENGTH, default=REQUIRED))
    if cmd == "skip":
        return Skip(wire.string("reason", 10_000), _session(wire))
    raise ValidationError("cmd", "must be run or skip")


def claimed_run_id(body: Any) -> Optional[str]:
    """The run a claim reply gave the bot, even when the rest of its manifest
    is unusable (the bot must then fail that run); None if not even that."""
    manifest = body.get("manifest") if isinstance(body, dict) and body.get("cmd") == "run" else None
    run_id = manifest.get("task_id") if isinstance(manifest, dict) else None
    return run_id if isinstance(run_id, str) and task_ids.is_run_id(run_id) else None


@dataclasses.dataclass(frozen=True)
class TaskUpdateReply:
    """`must_stop`: the server wants the task stopped (killed, or already
    ended), for `stop_reason`."""

    must_stop: bool = False
    stop_reason: Optional[str] = None
    session: Optional[str] = None

    @classmethod
    def from_wire(cls, body: Any) -> TaskUpdateReply:
        wire = _reply(body)
        reason = wire.optional("stop_reason")
        return cls(wire.boolean("must_stop"), None if reason is None else wire.string("stop_reason", 10_000),
                   _session(wire))

    def to_wire(self) -> Dict[str, Any]:
        return _with_session({"ok": True, "must_stop": self.must_stop, "stop_reason": self.stop_reason},
                             self.session)


@dataclasses.dataclass(frozen=True)
class TaskErrorReply:
    """The state the failed run left its task in (BOT_DIED, CLIENT_ERROR, or
    PENDING again for a retry)."""

    state: str

    @classmethod
    def from_wire(cls, body: Any) -> TaskErrorReply:
        return cls(_reply(body).string("state", 64, default=REQUIRED))

    def to_wire(self) -> Dict[str, Any]:
        return {"ok": True, "state": self.state}


@dataclasses.dataclass(frozen=True)
class EventReply:
    """The event is stored."""

    @classmethod
    def from_wire(cls, body: Any) -> EventReply:
        _reply(body)
        return cls()

    def to_wire(self) -> Dict[str, Any]:
        return {"ok": True}


def _performance_stats(body: Any, field: str) -> Dict[str, Any]:
    """Only the keys of PERFORMANCE_STATS, all optional."""
    stats = WireObject(body, field, PERFORMANCE_STATS)
    valid: Dict[str, Any] = {}
    for key, value in stats.body.items():
        keys = PERFORMANCE_STATS[key]
        if keys is None:
            valid[key] = _non_negative(value, stats.field(key))
        else:
            group = WireObject(value, stats.field(key), keys)
            valid[key] = {k: _non_negative(v, group.field(k)) for k, v in group.body.items()}
    return valid


def _non_negative(value: Any, field: str) -> Union[int, float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise ValidationError(field, "must be a number ≥ 0")
    return value
