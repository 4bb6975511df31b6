"""The documents the server stores, as typed values.

The request is `shared.task_request.TaskRequest`; what the task came to, and
which bot runs it under which claim, is its `TaskResult`; a pending slice
waiting for a bot is a `TaskToRun`. A bot's registry entry is
`functions.bot_entry.BotEntry`.
"""

import dataclasses
import datetime
import hashlib
from typing import Any

from shared import task_id as task_ids
from shared.dimensions import Dimensions
from shared.states import State


_MAX_MILLIS = 10**15 - 1
#: Shards of the sweep's queries over growing fields (DESIGN.md §11).
SHARDS = 16
#: Shards of the task lists' indexes without a tag (functions.task_query): the
#: newest entries of a state land in four ranges, not at the end of one. Each
#: is one more disjunction of such a query (times at most three outcomes: 12,
#: of Firestore's 30), which the emulator runs as a scan of its own.
QUERY_SHARDS = 4


def shard_of(task_id: str) -> int:
    return int(hashlib.sha256(task_id.encode()).hexdigest()[:8], 16) % SHARDS


def query_shard_of(task_id: str) -> int:
    return int(hashlib.sha256(task_id.encode()).hexdigest()[8:16], 16) % QUERY_SHARDS


def iso(ts: datetime.datetime | None) -> str | None:
    return ts.isoformat().replace("+00:00", "Z") if ts else None


@dataclasses.dataclass
class TaskResult:
    task_id: str
    name: str
    tags: list[str]
    user: str
    priority: int
    #: The pool of every slice: who may see and cancel the task is the pool's config.
    pool: str
    created_ts: datetime.datetime
    modified_ts: datetime.datetime
    state: State = State.PENDING
    current_task_slice: int = 0
    try_number: int = 0
    bot_id: str | None = None
    #: The bot's id for its winning claim: the same claim again replays it.
    claim_id: str | None = None
    bot_dimensions: Dimensions | None = None
    started_ts: datetime.datetime | None = None
    completed_ts: datetime.datetime | None = None
    exit_code: int | None = None
    duration: float | None = None
    parent_task_id: str | None = None
    #: When the current slice stops waiting for a bot.
    expiration_ts: datetime.datetime | None = None
    bot_ping_tolerance_secs: int = 1200
    #: A kill was asked while it ran: the bot is told to stop; it ends KILLED.
    killing: bool = False
    #: Who cancelled or killed it: the caller, or `parent task <id>` when it
    #: went with its parent.
    canceled_by: str | None = None
    abandoned_ts: datetime.datetime | None = None
    #: The successful idempotent task whose outcome this one took.
    deduped_from: str | None = None
    #: An identical idempotent task still running, whose outcome this one awaits.
    waiting_on: str | None = None
    #: The properties hash of an idempotent task's current slice.
    properties_hash: str | None = None
    #: The bot that a retry must not run on (it lost the first try).
    excluded_bot: str | None = None
    missing_cas: list[dict[str, Any]] | None = None
    internal_failure_message: str | None = None
    #: The tree of the task's outputs, `{"digest": {"hash", "size_bytes"}}`.
    cas_output_root: dict[str, Any] | None = None
    #: What the bot measured: its overhead, the inputs' download, the outputs' upload.
    performance_stats: dict[str, Any] | None = None
    #: The length of the run's stdout, as its end (the bot's last packet) said:
    #: packets sent before the end are still taken after it, up to there.
    stdout_length: int | None = None
    #: The identity that created the task (`user:<email>`, `serviceAccount:<email>`).
    authenticated: str = ""
    #: Drawn by the request that creates the task: a create whose answer was
    #: lost tells by it whether the task stored is its own (functions.tasks).
    creation_id: str = ""
    #: The request names a Pub/Sub topic: its end arms `timer_notify`
    #: (functions.notifications), and with an auth token kept apart (`notify_token`).
    notify: bool = False
    notify_token: bool = False
    #: Why the end's notification could not be published, after its last attempt.
    notification_error: str | None = None
    #: What the bot running the task said it costs (its state's `cost_usd_hour`).
    bot_cost_usd_hour: float | None = None
    #: Each run's cost, its bot's cost an hour times how long it held the task
    #: (the reference's `costs_usd`); a deduplicated task saved its owner's.
    costs_usd: list[float] = dataclasses.field(default_factory=list)
    cost_saved_usd: float | None = None
    #: What the task cost the service, added up by the requests that wrote its
    #: result (functions.ops.SERVER_COST: Firestore reads and writes, Cloud Tasks calls).
    server_cost: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def run_id(self) -> str | None:
        return task_ids.run_id(self.task_id, self.try_number) if self.try_number else None

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "TaskResult":
        fields = {f.name for f in dataclasses.fields(cls)}
        result = cls(**{k: v for k, v in doc.items() if k in fields})
        result.state = State(result.state)
        return result

    @property
    def outcome(self) -> str:
        """The state a task list filters on: COMPLETED told apart as a
        success, a failure (non-zero exit code) or a deduplicated success."""
        if self.state != State.COMPLETED:
            return self.state.value
        if self.deduped_from:
            return "DEDUPED"
        return "COMPLETED_FAILURE" if self.exit_code else "COMPLETED_SUCCESS"

    def to_doc(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["state"] = self.state.value
        doc["shard"] = shard_of(self.task_id)
        doc["query_shard"] = query_shard_of(self.task_id)
        doc["outcome"] = self.outcome
        return doc

    def to_wire(self) -> dict[str, Any]:
        wire = self.to_doc()
        for internal in ("shard", "claim_id", "killing", "waiting_on", "properties_hash", "excluded_bot",
                         "creation_id", "notify", "notify_token", "bot_cost_usd_hour"):
            del wire[internal]
        del wire["query_shard"], wire["outcome"]
        for key in ("created_ts", "modified_ts", "started_ts", "completed_ts", "expiration_ts", "abandoned_ts"):
            wire[key] = iso(wire[key])
        wire["run_id"] = self.run_id
        wire["failure"] = self.state in (State.COMPLETED, State.TIMED_OUT) and self.exit_code != 0
        wire["internal_failure"] = self.state == State.BOT_DIED
        return wire


@dataclasses.dataclass(frozen=True)
class TaskToRun:
    task_id: str
    slice_index: int
    queue_key: str
    #: Priority then creation time: the order bots get pending slices in.
    order_key: str
    dimensions: Dimensions
    expiration_ts: datetime.datetime
    try_number: int = 1
    #: A retry runs on another bot than the one that lost the first try.
    excluded_bot: str | None = None

    @staticmethod
    def order_key_for(priority: int, created_ts: datetime.datetime, lifo: bool = False) -> str:
        """Sorts by priority, then oldest first (FIFO) or newest first (LIFO)."""
        millis = int(created_ts.timestamp() * 1000)
        return f"{priority:03d}:{(_MAX_MILLIS - millis if lifo else millis):015d}"

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "TaskToRun":
        return cls(**{f.name: doc[f.name] for f in dataclasses.fields(cls) if f.name in doc})

    def to_doc(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "shard": shard_of(self.task_id)}
