"""The task request wire model (Swarming's NewTaskRequest), validated at the edge.

`from_wire` turns the JSON body of `tasks_new` into typed, normalised values
(every default filled in) and raises ValidationError naming the field path on
the first problem; `to_wire` gives back the same JSON shape, without the secret
bytes unless asked, so that `from_wire(to_wire(include_secrets=True))` is the
same request. What a slice runs is in `shared.task_properties`.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from shared import task_id as task_ids
from shared.errors import ValidationError
from shared.task_properties import TaskProperties
from shared.wire import WireObject

MIN_PRIORITY, MAX_PRIORITY, DEFAULT_PRIORITY = 0, 255, 200
MIN_EXPIRATION_SECS, MAX_EXPIRATION_SECS, DEFAULT_EXPIRATION_SECS = 30, 7 * 24 * 3600, 6 * 3600
MIN_BOT_PING_TOLERANCE_SECS, MAX_BOT_PING_TOLERANCE_SECS = 60, 1200
DEFAULT_BOT_PING_TOLERANCE_SECS = MAX_BOT_PING_TOLERANCE_SECS
MAX_SLICES = 8
MAX_NAME_LENGTH = 1024
MAX_TAGS, MAX_TAG_LENGTH = 256, 1024
MAX_USER_LENGTH = MAX_SERVICE_ACCOUNT_LENGTH = 256
MAX_PUBSUB_LENGTH = 1024
#: `service_account` values honoured: none for the task ("" or "none"), or the
#: bot's own, which the task may use through the bot's hooks ("bot").
SERVICE_ACCOUNTS = ("", "none", "bot")
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
#: Empty, or the client's id for this request (typically a UUID).
REQUEST_UUID_RE = re.compile(r"[A-Za-z0-9_.-]{0,128}")


@dataclasses.dataclass(frozen=True)
class TaskSlice:
    properties: TaskProperties
    expiration_secs: int
    wait_for_capacity: bool = False

    @classmethod
    def from_wire(cls, body: Any, field: str) -> "TaskSlice":
        task_slice = WireObject(body, field, {"properties", "expiration_secs", "wait_for_capacity"})
        return cls(
            properties=TaskProperties.from_wire(task_slice.get("properties"), task_slice.field("properties")),
            expiration_secs=task_slice.integer(
                "expiration_secs", MIN_EXPIRATION_SECS, MAX_EXPIRATION_SECS, DEFAULT_EXPIRATION_SECS),
            wait_for_capacity=task_slice.boolean("wait_for_capacity"),
        )

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
    # Always empty until something publishes: a request asking for a
    # notification is refused rather than silently never notified.
    pubsub_topic: str = ""
    pubsub_userdata: str = ""

    @classmethod
    def from_wire(cls, body: Any) -> "TaskRequest":
        request = WireObject(body, "", {field.name for field in dataclasses.fields(cls)})
        return cls(
            name=request.string("name", MAX_NAME_LENGTH),
            priority=request.integer("priority", MIN_PRIORITY, MAX_PRIORITY, DEFAULT_PRIORITY),
            tags=_tags(request),
            task_slices=_slices(request),
            user=request.string("user", MAX_USER_LENGTH),
            parent_task_id=_parent_task_id(request),
            request_uuid=request.string("request_uuid", 128, REQUEST_UUID_RE),
            bot_ping_tolerance_secs=request.integer(
                "bot_ping_tolerance_secs", MIN_BOT_PING_TOLERANCE_SECS, MAX_BOT_PING_TOLERANCE_SECS,
                DEFAULT_BOT_PING_TOLERANCE_SECS),
            evaluate_only=request.boolean("evaluate_only"),
            service_account=_service_account(request),
            pubsub_topic=_no_pubsub(request, "pubsub_topic"),
            pubsub_userdata=_no_pubsub(request, "pubsub_userdata"),
        )

    @property
    def pool(self) -> str:
        """The one pool of every slice."""
        return self.task_slices[0].properties.dimensions["pool"][0]

    def to_wire(self, include_secrets: bool = False) -> dict[str, Any]:
        """Every field; the slices' secret bytes only with `include_secrets`."""
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
        }


def _tags(request: WireObject) -> list[str]:
    tags = []
    for where, tag in request.items("tags", MAX_TAGS):
        if not isinstance(tag, str) or ":" not in tag or tag.startswith(":") or len(tag) > MAX_TAG_LENGTH:
            raise ValidationError(where, f"must be a 'key:value' string of at most {MAX_TAG_LENGTH} characters")
        tags.append(tag)
    return tags


def _slices(request: WireObject) -> list[TaskSlice]:
    slices = [TaskSlice.from_wire(body, where) for where, body in request.items("task_slices", MAX_SLICES, 1)]
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
    return slices


def _parent_task_id(request: WireObject) -> str:
    parent = request.get("parent_task_id", "")
    if not isinstance(parent, str) or (parent and not task_ids.is_valid(parent)):
        raise ValidationError(request.field("parent_task_id"), "must be empty or a task id")
    return parent


def _service_account(request: WireObject) -> str:
    account = request.string("service_account", MAX_SERVICE_ACCOUNT_LENGTH)
    if EMAIL_RE.fullmatch(account):
        raise ValidationError(request.field("service_account"), "task service accounts are not supported")
    if account not in SERVICE_ACCOUNTS:
        raise ValidationError(request.field("service_account"), "must be empty, 'none' or 'bot'")
    return account


def _no_pubsub(request: WireObject, key: str) -> str:
    if request.string(key, MAX_PUBSUB_LENGTH):
        raise ValidationError(request.field(key), "Pub/Sub notifications are not supported yet")
    return ""
