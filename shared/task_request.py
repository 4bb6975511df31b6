"""The task request wire model (Swarming's NewTaskRequest), validated at the edge.

`from_wire` turns the JSON body of `tasks_new` into typed, normalised values
(every default filled in) and raises ValidationError naming the field path on
the first problem; `to_wire` gives back the same JSON shape, without the secret
bytes and the Pub/Sub auth token unless asked, so that
`from_wire(to_wire(include_secrets=True))` is the same request. What a slice runs is in `shared.task_properties`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from shared import task_id as task_ids
from shared.errors import ValidationError
from shared.task_properties import PROPERTIES, TaskProperties
from shared.wire import Boolean, Choice, Integer, ListOf, Shape, Text, WireObject

MIN_PRIORITY, MAX_PRIORITY, DEFAULT_PRIORITY = 0, 255, 200
MIN_EXPIRATION_SECS, MAX_EXPIRATION_SECS, DEFAULT_EXPIRATION_SECS = 30, 7 * 24 * 3600, 6 * 3600
MIN_BOT_PING_TOLERANCE_SECS, MAX_BOT_PING_TOLERANCE_SECS = 60, 1200
DEFAULT_BOT_PING_TOLERANCE_SECS = MAX_BOT_PING_TOLERANCE_SECS
MAX_SLICES = 8
MAX_NAME_LENGTH = 1024
MAX_TAGS, MAX_TAG_LENGTH = 256, 1024
MAX_USER_LENGTH = MAX_SERVICE_ACCOUNT_LENGTH = 256
MAX_PUBSUB_LENGTH = 1024
#: What Pub/Sub takes as an attribute's value (the auth token), in bytes.
MAX_PUBSUB_ATTRIBUTE_BYTES = 1024
#: A full Pub/Sub topic name: a project id, and a topic id as Pub/Sub allows
#: them (3 to 255 characters, starting with a letter, never with `goog`).
PUBSUB_TOPIC_RE = re.compile(r"projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/topics/(?!goog)[A-Za-z][A-Za-z0-9._~+%-]{2,254}")
#: `service_account` values honoured: none for the task ("" or "none"), or the
#: bot's own, which the task may use through the bot's hooks ("bot").
SERVICE_ACCOUNTS = ("", "none", "bot")
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
#: Empty, or the client's id for this request (typically a UUID).
REQUEST_UUID_RE = re.compile(r"[A-Za-z0-9_.-]{0,128}")
#: `key:value`, the key not empty.
TAG_RE = re.compile(r"[^:]+:[\s\S]*")
#: What a request may weigh, encoded: it is stored whole in its task's
#: Firestore document (1 MiB at most, with the result's own fields).
MAX_REQUEST_BYTES = 512 * 1024


@dataclasses.dataclass(frozen=True)
class TaskSlice:
    properties: TaskProperties
    expiration_secs: int
    wait_for_capacity: bool = False

    @classmethod
    def from_wire(cls, body: Any, field: str) -> "TaskSlice":
        return SLICE.read(body, field)

    def to_wire(self, include_secrets: bool = False) -> dict[str, Any]:
        return {
            "properties": self.properties.to_wire(include_secrets),
            "expiration_secs": self.expiration_secs,
            "wait_for_capacity": self.wait_for_capacity,
        }


@dataclasses.dataclass(frozen=True)
class TaskRequest:
    name: str
    priority: int
    tags: list[str]
    task_slices: list[TaskSlice]
    user: str = ""
    parent_task_id: str = ""
    request_uuid: str = ""
    bot_ping_tolerance_secs: int = DEFAULT_BOT_PING_TOLERANCE_SECS
    #: Validate and normalise only: nothing is created.
    evaluate_only: bool = False
    service_account: str = ""  # One of SERVICE_ACCOUNTS, as given.
    #: Where the task's end is announced (functions.notifications), with the
    #: userdata in the message and the token as its `auth_token` attribute.
    pubsub_topic: str = ""
    pubsub_userdata: str = ""
    #: A secret: never in a reply, a result or a log (to_wire leaves it out).
    pubsub_auth_token: str = ""

    @classmethod
    def from_wire(cls, body: Any) -> "TaskRequest":
        return REQUEST.read(body, "")

    @classmethod
    def _build(cls, request: WireObject) -> "TaskRequest":
        values = {key: request.read(key) for key in REQUEST.fields}
        _check_slices(values["task_slices"])
        for key in ("pubsub_userdata", "pubsub_auth_token"):
            if values[key] and not values["pubsub_topic"]:
                raise ValidationError(request.field(key), "needs a pubsub_topic")
        if len(values["pubsub_auth_token"].encode()) > MAX_PUBSUB_ATTRIBUTE_BYTES:
            raise ValidationError(request.field("pubsub_auth_token"),
                                  f"more than {MAX_PUBSUB_ATTRIBUTE_BYTES} bytes of UTF-8 (Pub/Sub's limit)")
        built = cls(**values)
        if len(json.dumps(built.to_wire(include_secrets=True)).encode()) > MAX_REQUEST_BYTES:
            raise ValidationError("request", f"more than {MAX_REQUEST_BYTES} bytes of JSON")
        return built

    @property
    def pool(self) -> str:
        """The one pool of every slice."""
        return self.task_slices[0].properties.dimensions["pool"][0]

    def to_wire(self, include_secrets: bool = False) -> dict[str, Any]:
        """Every field; the slices' secret bytes and the Pub/Sub auth token
        only with `include_secrets`."""
        secrets = {"pubsub_auth_token": self.pubsub_auth_token} if include_secrets else {}
        return {
            "name": self.name,
            "priority": self.priority,
            "tags": list(self.tags),
            "task_slices": [s.to_wire(include_secrets) for s in self.task_slices],
            "user": self.user,
            "parent_task_id": self.parent_task_id,
            "request_uuid": self.request_uuid,
            "bot_ping_tolerance_secs": self.bot_ping_tolerance_secs,
            "evaluate_only": self.evaluate_only,
            "service_account": self.service_account,
            "pubsub_topic": self.pubsub_topic,
            "pubsub_userdata": self.pubsub_userdata,
            **secrets,
        }


class _ServiceAccount(Choice):
    """One of SERVICE_ACCOUNTS: an email is a task service account, which is not supported."""

    def read(self, value: Any, path: str) -> str:
        if isinstance(value, str) and EMAIL_RE.fullmatch(value):
            raise ValidationError(path, "task service accounts are not supported")
        return super().read(value, path)


SLICE = Shape({
    "properties": PROPERTIES,
    "expiration_secs": Integer(MIN_EXPIRATION_SECS, MAX_EXPIRATION_SECS, DEFAULT_EXPIRATION_SECS),
    "wait_for_capacity": Boolean(),
}, build=lambda wire: TaskSlice(**{key: wire.read(key) for key in SLICE.fields}))
REQUEST = Shape({
    "name": Text(MAX_NAME_LENGTH),
    "priority": Integer(MIN_PRIORITY, MAX_PRIORITY, DEFAULT_PRIORITY, description="below 20: admins only"),
    "tags": ListOf(Text(MAX_TAG_LENGTH, TAG_RE), MAX_TAGS),
    "task_slices": ListOf(SLICE, MAX_SLICES, min_items=1),
    "user": Text(MAX_USER_LENGTH, description="another user than the caller: admins only"),
    "parent_task_id": task_ids.Id(task_ids.EITHER, empty=True),
    "request_uuid": Text(128, REQUEST_UUID_RE, description="a retried request with it returns the first task"),
    "bot_ping_tolerance_secs": Integer(MIN_BOT_PING_TOLERANCE_SECS, MAX_BOT_PING_TOLERANCE_SECS,
                                       DEFAULT_BOT_PING_TOLERANCE_SECS),
    "evaluate_only": Boolean(description="validate and normalise only: nothing is stored"),
    "service_account": _ServiceAccount(SERVICE_ACCOUNTS, default="", reason="must be empty, 'none' or 'bot'"),
    "pubsub_topic": Text(MAX_PUBSUB_LENGTH, f"({PUBSUB_TOPIC_RE.pattern})?",
                         description="projects/P/topics/T: a message there when the task ends"),
    "pubsub_userdata": Text(MAX_PUBSUB_LENGTH, description="the message's `userdata`"),
    "pubsub_auth_token": Text(MAX_PUBSUB_LENGTH, description="the message's `auth_token` attribute; never shown"),
}, build=TaskRequest._build)


def _check_slices(slices: list[TaskSlice]) -> None:
    # A task belongs to one pool, whichever slice runs: as in Swarming, a
    # fallback slice may ask for other bots but not for another pool's.
    pool = slices[0].properties.dimensions["pool"]
    for i, task_slice in enumerate(slices[1:], start=1):
        if task_slice.properties.dimensions["pool"] != pool:
            raise ValidationError(f"task_slices[{i}].properties.dimensions.pool",
                                  f"must be {pool[0]!r}, the pool of task_slices[0]")
    # A task has one secret, stored once: as in Swarming, slices that give
    # secret bytes give the same ones (a slice may give none).
    secrets = [(i, s.properties.secret_bytes) for i, s in enumerate(slices) if s.properties.secret_bytes]
    for i, secret in secrets[1:]:
        if secret != secrets[0][1]:
            raise ValidationError(f"task_slices[{i}].properties.secret_bytes",
                                  f"must be the secret bytes of task_slices[{secrets[0][0]}]: a task has one secret")
