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
from typing import Any, Callable, Dict, Optional, Tuple, Union

from shared import dimensions as dims_lib
from shared import task_id as task_ids
from shared.cas import DIGEST, MAX_BATCH, Digest
from shared.errors import ValidationError
from shared.manifest import MANIFEST, Manifest
from shared.task_properties import CAS_REFERENCE, MAX_TIMEOUT_SECS, CasReference
from shared.task_request import MAX_SLICES
from shared.wire import (MAX_INT64, REQUIRED, Base64, Boolean, Choice, Field, Integer, Json, ListOf, Number,
                         Shape, Tagged, Text, WireObject, to_base64)

ATTRIBUTES = ("dimensions", "state", "version", "session")
#: The header of an answer to a bot that carries its renewed bot token: the
#: bot sends it as `Authorization: Bearer <token>` from then on.
BOT_TOKEN_HEADER = "X-Swarming-Bot-Token"
#: Claim ids and poll request ids: the bot's own (a UUID), at most 128 characters.
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
MAX_VERSION_LENGTH = 128
#: The longest hold a bot may ask of a poll (a Cloud Function's longest timeout).
MAX_HOLD_SECS = 3600
MAX_SESSION_LENGTH = 64 * 1024
#: What a bot's `state` may weigh as JSON; it is stored in its registry entry.
MAX_STATE_BYTES = 128 * 1024
#: A bot's messages (events, task errors); the server keeps the first 10,000 characters of an event's.
MAX_MESSAGE_LENGTH = 64 * 1024
#: Stdout bytes in one update (the bot sends at most 250,000).
MAX_OUTPUT_BYTES = 4 * 1024 * 1024
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
        """From the object that carries them, beside the call's own fields."""
        values = {key: wire.take(key, field) for key, field in _ATTRIBUTES.items()}
        ids = values["dimensions"].get("id", [])
        if len(ids) != 1:
            raise ValidationError(wire.field("dimensions.id"), "a bot must report exactly one id")
        if not is_bot_id(ids[0]):
            raise ValidationError(wire.field("dimensions.id"), "no '/', not '.' or '..', not __reserved__")
        return cls(**values)

    def to_wire(self) -> Dict[str, Any]:
        wire = {"dimensions": self.dimensions, "state": self.state, "version": self.version}
        if self.session is not None:
            wire["session"] = self.session
        return wire


_SESSION = Text(MAX_SESSION_LENGTH, default=None, nullable=True,
                description="opaque: the last one the server answered, sent back")
_ATTRIBUTES: Dict[str, Field] = {
    "dimensions": dims_lib.BotDimensions(description="exactly one `id`, and at least one `pool` at the handshake"),
    "state": Json(MAX_STATE_BYTES, default={}),
    "version": Text(MAX_VERSION_LENGTH),
    "session": _SESSION,
}


def _request(fields: Dict[str, Field], build: Callable[[WireObject, BotAttributes], Any]) -> Shape:
    """A bot's request: its attributes beside `fields`."""
    return Shape({**_ATTRIBUTES, **fields}, build=lambda wire: build(wire, BotAttributes.read(wire)))


# Requests.

@dataclasses.dataclass(frozen=True)
class Handshake:
    """`bot_handshake`: the bot's first call."""

    attributes: BotAttributes

    @classmethod
    def from_wire(cls, body: Any) -> Handshake:
        return HANDSHAKE.from_wire(body)

    def to_wire(self) -> Dict[str, Any]:
        return self.attributes.to_wire()


@dataclasses.dataclass(frozen=True)
class Poll:
    """`bot_poll`; `request_uuid` is reused until an answer comes, so a
    retried poll is the same poll. `hold_secs`: how long the server may hold
    the poll open when there is nothing to do, answering as soon as a task
    comes (a long poll; the bot's read timeout is longer); 0, as old bots
    send: answer at once."""

    attributes: BotAttributes
    request_uuid: str = ""
    hold_secs: float = 0.0

    @classmethod
    def from_wire(cls, body: Any) -> Poll:
        return POLL.from_wire(body)

    def to_wire(self) -> Dict[str, Any]:
        return {**self.attributes.to_wire(), "request_uuid": self.request_uuid, "hold_secs": self.hold_secs}


@dataclasses.dataclass(frozen=True)
class ClaimRequest:
    """`bot_claim` of one candidate; the same `claim_id` again gets the same manifest."""

    attributes: BotAttributes
    task_id: str
    claim_id: str
    slice: int = 0

    @classmethod
    def from_wire(cls, body: Any) -> ClaimRequest:
        return CLAIM.from_wire(body)

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
        root = wire.read("cas_output_root")
        return cls(exit_code=wire.read("exit_code"), duration=float(wire.read("duration")),
                   hard_timeout=wire.read("hard_timeout"), io_timeout=wire.read("io_timeout"),
                   cas_output_root=None if root is None else root.digest,
                   performance_stats=wire.read("performance_stats"))

    def to_wire(self) -> Dict[str, Any]:
        wire: Dict[str, Any] = {"exit_code": self.exit_code, "duration": self.duration,
                                "hard_timeout": self.hard_timeout, "io_timeout": self.io_timeout}
        if self.cas_output_root is not None:
            wire["cas_output_root"] = CasReference(self.cas_output_root).to_wire()
        if self.performance_stats is not None:
            wire["performance_stats"] = self.performance_stats
        return wire


def _non_negative() -> Number:
    """A figure of `performance_stats`: each may be left out."""
    return Number(0, None, default=None)


#: `performance_stats`: each key optional, those of PERFORMANCE_STATS only.
_PERFORMANCE_STATS = Shape({
    key: _non_negative() if keys is None else Shape({k: _non_negative() for k in keys}, build=lambda w: _given(w),
                                                    default=None)
    for key, keys in PERFORMANCE_STATS.items()
}, build=lambda w: _given(w), default=None, nullable=True)


def _given(wire: WireObject) -> Dict[str, Any]:
    """The fields the object gives (each optional)."""
    return {key: wire.read(key) for key in wire.body}


#: The fields that only come with a completion.
_COMPLETION: Dict[str, Field] = {
    "exit_code": Integer(-MAX_INT64 - 1, MAX_INT64, default=None, nullable=True,
                         description="with `duration`: the run ended"),
    "duration": Number(0, MAX_INT64, default=None, nullable=True),
    "hard_timeout": Boolean(), "io_timeout": Boolean(),
    "cas_output_root": Shape(CAS_REFERENCE.fields, CAS_REFERENCE.build, default=None, nullable=True),
    "performance_stats": _PERFORMANCE_STATS,
}
_COMPLETION_FIELDS = tuple(_COMPLETION)


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
        canceled = wire.read("canceled")
        exit_code, duration = wire.optional("exit_code"), wire.optional("duration")
        if (exit_code is None) != (duration is None):
            raise ValidationError(wire.field("exit_code"), "exit_code and duration come together or not at all")
        if exit_code is None:
            given = next((key for key in _COMPLETION_FIELDS if wire.optional(key) is not None), None)
            if given:
                raise ValidationError(wire.field(given), "only comes with the end of the run (exit_code)")
        elif canceled:
            raise ValidationError(wire.field("canceled"), "a run that has an exit_code ran: it was not canceled")
        return cls(offset=wire.read("output_chunk_start"), output=wire.read("output"),
                   completion=None if exit_code is None else Completion.read(wire), canceled=canceled)

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
        return TASK_UPDATE.from_wire(body)

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
        return TASK_ERROR.from_wire(body)

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
        return EVENT.from_wire(body)

    def to_wire(self) -> Dict[str, Any]:
        return {**self.attributes.to_wire(), "event": self.event, "message": self.message}


_RUN_ID = task_ids.Id(task_ids.RUN, description="the run id of the manifest")
HANDSHAKE = _request({}, lambda wire, attributes: Handshake(attributes))
POLL = _request({"request_uuid": Text(128, r"[A-Za-z0-9_.:-]{0,128}", description="reused until an answer comes"),
                 "hold_secs": Number(0, MAX_HOLD_SECS, default=0.0,
                                     description="how long the server may wait for a task (it may wait less)")},
                lambda wire, attributes: Poll(attributes, wire.read("request_uuid"), wire.read("hold_secs")))
CLAIM = _request({"task_id": task_ids.Id(task_ids.TASK), "slice": Integer(0, MAX_SLICES - 1, default=0),
                  "claim_id": Text(128, REQUEST_ID_RE, default=REQUIRED)},
                 lambda wire, attributes: ClaimRequest(attributes, wire.read("task_id"), wire.read("claim_id"),
                                                       wire.read("slice")))
TASK_UPDATE = _request({
    "task_id": _RUN_ID,
    "output": Base64(MAX_OUTPUT_BYTES, nullable=True, description="stdout bytes at `output_chunk_start`"),
    "output_chunk_start": Integer(0, MAX_INT64, default=0, nullable=True),
    "canceled": Boolean(description="the command never started"),
    **_COMPLETION,
}, lambda wire, attributes: TaskUpdate(attributes, wire.read("task_id"), Update.read(wire)))
_CLIENT_ERROR = Shape({"missing_cas": ListOf(DIGEST, MAX_BATCH, default=None, nullable=True)}, default=None,
                      nullable=True)
TASK_ERROR = _request(
    {"task_id": _RUN_ID, "message": Text(MAX_MESSAGE_LENGTH), "client_error": _CLIENT_ERROR},
    lambda wire, attributes: TaskError(attributes, wire.read("task_id"), wire.read("message"),
                                       _missing_cas(wire.read("client_error"))))
EVENT = _request({"event": Choice(BOT_REPORTED_EVENTS), "message": Text(MAX_MESSAGE_LENGTH)},
                 lambda wire, attributes: Event(attributes, wire.read("event"), wire.read("message")))


def _missing_cas(client_error: Optional[Dict[str, Any]]) -> Optional[Tuple[Digest, ...]]:
    listed = None if client_error is None else client_error["missing_cas"]
    return None if listed is None else tuple(listed)


# Replies: each may carry the `session` the bot sends back on its next call.

def _reply(fields: Dict[str, Field], build: Callable[[WireObject], Any]) -> Shape:
    """A reply, lenient: a newer server may add fields."""
    return Shape({**fields, "session": _SESSION}, build=build, lenient=True)


def _cmd(*names: str) -> Choice:
    return Choice(names, description="which reply this is")


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
        return HANDSHAKE_REPLY.from_wire(body)

    def to_wire(self) -> Dict[str, Any]:
        return _with_session({"bot_version": self.bot_version, "server_version": self.server_version,
                              "bot_group_cfg": {"dimensions": self.server_dimensions},
                              "bot_config": self.bot_config, "bot_config_name": self.bot_config_name},
                             self.session)


HANDSHAKE_REPLY = _reply({
    "bot_version": Text(MAX_VERSION_LENGTH), "server_version": Text(MAX_VERSION_LENGTH),
    "bot_group_cfg": Shape({"dimensions": dims_lib.BotDimensions(default={})}, lenient=True,
                           default={"dimensions": {}}),
    "bot_config": Text(MAX_SCRIPT_LENGTH, default=None, nullable=True),
    "bot_config_name": Text(MAX_SCRIPT_NAME_LENGTH),
}, lambda wire: HandshakeReply(
    session=wire.read("session"), bot_version=wire.read("bot_version"), server_version=wire.read("server_version"),
    server_dimensions=wire.read("bot_group_cfg")["dimensions"], bot_config=wire.read("bot_config"),
    bot_config_name=wire.read("bot_config_name")))


@dataclasses.dataclass(frozen=True)
class Sleep:
    """Nothing to do: poll again in `duration` seconds."""

    duration: float
    session: Optional[str] = None

    def to_wire(self) -> Dict[str, Any]:
        return _with_session({"cmd": "sleep", "duration": self.duration}, self.session)


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A pending slice the bot may claim."""

    task_id: str
    slice: int = 0

    def to_wire(self) -> Dict[str, Any]:
        return {"task_id": self.task_id, "slice": self.slice}


@dataclasses.dataclass(frozen=True)
class Claim:
    """Pending tasks the bot matches, to claim (`bot_claim`) in this order."""

    candidates: Tuple[Candidate, ...]
    session: Optional[str] = None

    def to_wire(self) -> Dict[str, Any]:
        return _with_session({"cmd": "claim", "candidates": [c.to_wire() for c in self.candidates]}, self.session)


@dataclasses.dataclass(frozen=True)
class UpdateCode:
    """Switch to the bot code of this digest (the seed's "update")."""

    version: str
    session: Optional[str] = None

    def to_wire(self) -> Dict[str, Any]:
        return _with_session({"cmd": "update", "version": self.version}, self.session)


@dataclasses.dataclass(frozen=True)
class Restart:
    """Restart the bot process (`bot_restart`); with `host`, the host
    (`restart`), which only a hook may turn into a reboot."""

    message: str = ""
    host: bool = False
    session: Optional[str] = None

    def to_wire(self) -> Dict[str, Any]:
        return _with_session({"cmd": "restart" if self.host else "bot_restart", "message": self.message},
                             self.session)


@dataclasses.dataclass(frozen=True)
class Terminate:
    """Complete this termination task (claim it, report exit code 0), then exit."""

    task_id: str
    session: Optional[str] = None

    def to_wire(self) -> Dict[str, Any]:
        return _with_session({"cmd": "terminate", "task_id": self.task_id}, self.session)


#: Candidates in one poll reply (the server offers a handful).
MAX_CANDIDATES = 100
_CANDIDATE = Shape({"task_id": task_ids.Id(task_ids.TASK), "slice": Integer(0, MAX_SLICES - 1, default=0)},
                   build=lambda wire: Candidate(wire.read("task_id"), wire.read("slice")), lenient=True)
_RESTART = _reply({"cmd": _cmd("bot_restart", "restart"), "message": Text(10_000)},
                  lambda wire: Restart(wire.read("message"), wire.read("cmd") == "restart", wire.read("session")))
POLL_REPLY = Tagged("cmd", {
    "sleep": _reply({"cmd": _cmd("sleep"), "duration": Number(0, MAX_TIMEOUT_SECS)},
                    lambda wire: Sleep(wire.read("duration"), wire.read("session"))),
    "claim": _reply({"cmd": _cmd("claim"), "candidates": ListOf(_CANDIDATE, MAX_CANDIDATES, 1)},
                    lambda wire: Claim(tuple(wire.read("candidates")), wire.read("session"))),
    "update": _reply({"cmd": _cmd("update"), "version": Text(MAX_VERSION_LENGTH, default=REQUIRED)},
                     lambda wire: UpdateCode(wire.read("version"), wire.read("session"))),
    "bot_restart": _RESTART,
    "restart": _RESTART,
    "terminate": _reply({"cmd": _cmd("terminate"), "task_id": task_ids.Id(task_ids.TASK)},
                        lambda wire: Terminate(wire.read("task_id"), wire.read("session"))),
})
PollReply = Union[Sleep, Claim, UpdateCode, Restart, Terminate]


def poll_reply(body: Any) -> PollReply:
    """The reply to `bot_poll`, by its `cmd`."""
    return POLL_REPLY.read(body, "")


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


CLAIM_REPLY = Tagged("cmd", {
    "run": _reply({"cmd": _cmd("run"), "manifest": MANIFEST,
                   "run_token": Text(MAX_SESSION_LENGTH, default=REQUIRED, description="the task runner's token")},
                  lambda wire: Run(wire.read("manifest"), wire.read("session"), wire.read("run_token"))),
    "skip": _reply({"cmd": _cmd("skip"), "reason": Text(10_000)},
                   lambda wire: Skip(wire.read("reason"), wire.read("session"))),
})
ClaimReply = Union[Run, Skip]


def claim_reply(body: Any) -> ClaimReply:
    """The reply to `bot_claim`. A manifest that cannot be read raises
    ValidationError: see `claimed_run_id` for the run the bot then owns."""
    return CLAIM_REPLY.read(body, "")


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
        return TASK_UPDATE_REPLY.from_wire(body)

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
        return TASK_ERROR_REPLY.from_wire(body)

    def to_wire(self) -> Dict[str, Any]:
        return {"ok": True, "state": self.state}


@dataclasses.dataclass(frozen=True)
class EventReply:
    """The event is stored."""

    @classmethod
    def from_wire(cls, body: Any) -> EventReply:
        return EVENT_REPLY.from_wire(body)

    def to_wire(self) -> Dict[str, Any]:
        return {"ok": True}


_OK = Boolean(default=True)
TASK_UPDATE_REPLY = _reply({"ok": _OK, "must_stop": Boolean(),
                            "stop_reason": Text(10_000, default=None, nullable=True)},
                           lambda wire: TaskUpdateReply(wire.read("must_stop"), wire.read("stop_reason"),
                                                        wire.read("session")))
TASK_ERROR_REPLY = _reply({"ok": _OK, "state": Text(64, default=REQUIRED)},
                          lambda wire: TaskErrorReply(wire.read("state")))
EVENT_REPLY = _reply({"ok": _OK}, lambda wire: EventReply())
