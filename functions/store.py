"""The one seam between the server and Firestore.

Everything the server keeps goes through `Store`, which speaks our models,
owns the collection names and the document id scheme, and counts every read
and write (`functions.ops`) so that each request's cost can be reported.
"""

import dataclasses
import datetime
import enum
import hashlib
import json
from typing import Any, Callable, Iterable, TypeVar

from google.api_core import exceptions as gexc
from google.api_core import retry as retries
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from functions import listener, ops, stdout
from functions.errors import NotFound, Unavailable
from functions.models import TaskResult, TaskToRun
from functions.queues import TaskQueue
from shared.states import State
from shared.task_request import TaskRequest

#: One document per task: its result, with the immutable request inside (one
#: write at creation and one read at a claim fewer than two documents), as
#: its JSON text (`request_of`): one value to encode at the creation and to
#: decode at every read of the task, where a map took dozens, and Firestore
#: indexes none of it (infra/terraform/firestore.tf).
TASK_RESULTS = "task_results"
SECRET_BYTES = "secret_bytes"
#: A notified task's Pub/Sub auth token, read only by its notification.
PUBSUB_TOKENS = "pubsub_auth_tokens"
REQUEST_UUIDS = "request_uuids"
DEDUP = "dedup"
TASK_TO_RUN = "task_to_run"
TASK_OUTPUT = "task_output"
TASK_QUEUES = "task_queues"
BOTS = "bots"
BOT_EVENTS = "bot_events"
BOT_LIVENESS = "bot_liveness"
BOT_DIMENSIONS = "bot_dimensions"
#: The times a task list is ordered and ranged on (functions.task_query).
TASK_TIMES = ("created_ts", "started_ts", "completed_ts")
#: The web UI's sign-in credentials already used (functions.ui_session): a link signs in once.
UI_SIGNINS = "ui_signins"
#: Values one Firestore `in` filter takes.
MAX_IN_VALUES = 30
#: Reads and guarded commits of one decision (`settle`) before it gives up.
SETTLE_TRIES = 3
#: The pending slices of a queue one listener holds (`Store.watch_pending`).
WATCH_LIMIT = 5
T = TypeVar("T")

#: The composite indexes the queries below need, as (collection, fields in
#: order). The emulator runs any query; production refuses one without its
#: index, so `query` refuses an undeclared shape here too, and a test checks
#: that infra/terraform declares every one.
COMPOSITE_INDEXES = frozenset({
    (TASK_TO_RUN, ("queue_key", "order_key")),
    (TASK_TO_RUN, ("shard", "expiration_ts")),
    (TASK_RESULTS, ("shard", "state", "modified_ts")),
    (TASK_QUEUES, ("pool", "updated_ts")),
    (TASK_RESULTS, ("bot_id", "started_ts")),
    (TASK_RESULTS, ("parent_task_id", "state")),
    (TASK_RESULTS, ("waiting_on", "state")),
    (TASK_RESULTS, ("state", "waiting_on")),
    (TASK_RESULTS, ("tags", "state")),
    (BOT_EVENTS, ("bot_id", "ts")),
    # Task lists: a tag (or, with none, the query shards), the outcome (or any), by a time.
    *((TASK_RESULTS, (key,) + outcome + (time,)) for time in TASK_TIMES
      for key in ("tags", "query_shard") for outcome in ((), ("outcome",))),
})


class UndeclaredIndex(RuntimeError):
    pass


Filter = tuple[str, str, Any]

#: Passed to every query and aggregation. Left to its default, a query whose
#: stream fails midway looks its retry up on the raw gRPC method and raises an
#: AttributeError over the real error (google-cloud-firestore 2.34.1,
#: `_retry_query_after_exception`). Only an unavailable Firestore is tried
#: again, within RETRY_SECS as every call (functions/service.py): a query
#: that timed out would take the whole call timeout again; it stands, and
#: the caller gets its 503.
RETRY_SECS = 5.0
QUERY_RETRY = retries.Retry(predicate=retries.if_exception_type(gexc.ServiceUnavailable, gexc.InternalServerError),
                            initial=0.2, maximum=1.0, multiplier=2.0, timeout=RETRY_SECS)


def get(ref: firestore.DocumentReference, transaction=None) -> firestore.DocumentSnapshot:
    """Reads one document, counted."""
    ops.read()
    return ref.get(transaction=transaction)


def query(db: firestore.Client, collection: str, filters: list[Filter], order_by: str | None = None,
          descending: bool = False, limit: int | None = None, start_after: Any = None) -> list[Any]:
    """Runs a query, counted: Firestore bills at least one read even for no
    result. Equality filters alone need no composite index (Firestore merges
    single-field ones); an ordered or ranged query over more than one field
    needs one, and an undeclared shape is refused here as production would.
    `start_after` is a value of `order_by` (or a document id when unordered)."""
    check_index(collection, filters, order_by)
    q = filtered(db, collection, filters)
    direction = firestore.Query.DESCENDING if descending else firestore.Query.ASCENDING
    q = q.order_by(order_by or "__name__", direction=direction)
    if start_after is not None:
        q = q.start_after({order_by or "__name__": start_after})
    if limit:
        q = q.limit(limit)
    docs = list(q.stream(retry=QUERY_RETRY))
    ops.read(max(1, len(docs)))
    return docs


def count(db: firestore.Client, collection: str, filters: list[Filter]) -> int:
    """An aggregation, counted: Firestore bills one read per 1,000 entries counted."""
    check_index(collection, filters, None)
    found = int(filtered(db, collection, filters).count().get(retry=QUERY_RETRY)[0][0].value)
    ops.read(max(1, -(-found // 1000)))
    return found


def filtered(db: firestore.Client, collection: str, filters: list[Filter]) -> Any:
    q = db.collection(collection)
    for field, op, value in filters:
        q = q.where(filter=FieldFilter(field, op, value))
    return q


def check_index(collection: str, filters: list[Filter], order_by: str | None) -> None:
    fields = list(dict.fromkeys([f for f, _, _ in filters] + ([order_by] if order_by else [])))
    if len(fields) < 2 or (not order_by and all(op == "==" for _, op, _ in filters)):
        return
    if (collection, tuple(fields)) not in COMPOSITE_INDEXES:
        raise UndeclaredIndex(f"{collection}: {tuple(fields)} is not in COMPOSITE_INDEXES")


def request_of(doc: dict[str, Any]) -> TaskRequest:
    """The request a task document holds: its JSON text, or the map that
    releases before the text wrote (their tasks are read as they are)."""
    stored = doc["request"]
    return TaskRequest.from_wire(json.loads(stored) if isinstance(stored, str) else stored)


def hashed(id_: str) -> str:
    """Document id of a time-ordered id: a short hash in front spreads writes."""
    return f"{hashlib.sha256(id_.encode()).hexdigest()[:4]}-{id_}"


class Writes(enum.Flag):
    """What a run update decided to write."""

    NOTHING = 0
    OUTPUT = enum.auto()
    RESULT = enum.auto()


class Taken(Exception):
    """A document to create exists already: a task id drawn twice, a request
    uuid or a dedup record made by a concurrent request."""


class LostRace(Exception):
    """A precondition-guarded write found the documents changed under it."""


class CommitRefused(gexc.ServiceUnavailable):
    """A commit not sent: too many in flight on this instance for too long
    (functions.service.gate_commits). Nothing was written."""


class Unsure(Exception):
    """A commit failed after it was sent (its deadline passed, or the service
    was unavailable through the client's retries): it may have been applied."""


class Contended(LostRace):
    """A write waited in vain for a transaction's lock on its documents (the
    emulator gives up after 2 s): re-reading at once would only wait again."""


def settle(task_id: str, attempt: Callable[[], T]) -> T:
    """Runs `attempt` (read the task, decide, commit a batch guarded by what
    it read) until it commits or decides nothing is to be done: a lost race
    means someone else moved the task, so each try re-reads and decides anew.
    A task locked or changing under every try is Unavailable (retry later)."""
    for _ in range(SETTLE_TRIES):
        try:
            return attempt()
        except Contended as e:
            raise Unavailable(f"task {task_id} is locked by another writer; retry later") from e
        except (LostRace, Taken):
            continue
    raise Unavailable(f"task {task_id} changed under each of {SETTLE_TRIES} tries; retry later")


class Store:
    """Reads of tasks and their guarded changes; writes go through a `TaskBatch`.
    `on_end(task_id)` is called before a commit that ends a task whose end is
    notified (the outbox rule: functions.notifications arms its timer)."""

    def __init__(self, db: firestore.Client, on_end: Callable[[str], None] | None = None):
        self._db = db
        self._on_end = on_end

    @property
    def db(self) -> firestore.Client:
        return self._db

    def _doc(self, collection: str, id_: str) -> firestore.DocumentReference:
        return self._db.collection(collection).document(hashed(id_))

    # Tasks.

    def batch(self) -> "TaskBatch":
        return TaskBatch(self)

    def _get_task(self, task_id: str) -> dict[str, Any] | None:
        snap = get(self._doc(TASK_RESULTS, task_id))
        return snap.to_dict() if snap.exists else None

    def get_task(self, task_id: str) -> tuple[TaskResult, TaskRequest] | None:
        """The result and the request (without secret bytes): one read."""
        doc = self._get_task(task_id)
        return (TaskResult.from_doc(doc), request_of(doc)) if doc else None

    def get_task_seen(self, task_id: str) -> tuple[TaskResult, TaskRequest, Any] | None:
        """The result, the request and the update time read, the precondition
        of a write that depends on what was read (`update_result`)."""
        snap = get(self._doc(TASK_RESULTS, task_id))
        if not snap.exists:
            return None
        doc = snap.to_dict()
        return TaskResult.from_doc(doc), request_of(doc), snap.update_time

    def get_result(self, task_id: str) -> TaskResult | None:
        doc = self._get_task(task_id)
        return TaskResult.from_doc(doc) if doc else None

    def get_secret(self, task_id: str) -> bytes | None:
        snap = get(self._doc(SECRET_BYTES, task_id))
        return snap.get("data") if snap.exists else None

    def get_pubsub_token(self, task_id: str) -> str | None:
        snap = get(self._doc(PUBSUB_TOKENS, task_id))
        return snap.get("token") if snap.exists else None

    def ending(self, task_id: str) -> None:
        """A commit is about to end a task whose end is notified."""
        if self._on_end is None:
            raise RuntimeError(f"task {task_id}: its end is to be notified, and this store has no on_end")
        self._on_end(task_id)

    def get_request_uuid(self, key: str) -> str | None:
        """The task created under a request uuid (key: user and uuid)."""
        snap = get(self._db.collection(REQUEST_UUIDS).document(key))
        return snap.get("task_id") if snap.exists else None

    def get_dedup(self, properties_hash: str) -> tuple[dict[str, Any], Any] | None:
        """The dedup record of these properties, and its update time."""
        snap = get(self._db.collection(DEDUP).document(properties_hash))
        return (snap.to_dict(), snap.update_time) if snap.exists else None

    def results_where(self, field: str, value: Any, limit: int, states: list[str] | None = None,
                      array: bool = False, after: str | None = None) -> list[TaskResult]:
        """Results with `field` equal to (or, `array`, containing) `value`,
        optionally in `states`, by document id: from after the task `after`,
        an order no change of state moves a task in."""
        filters: list[Filter] = [(field, "array_contains" if array else "==", value)]
        if states:
            filters.append(("state", "in", states))
        start = self._doc(TASK_RESULTS, after) if after else None
        docs = query(self._db, TASK_RESULTS, filters, limit=limit, start_after=start)
        return [TaskResult.from_doc(d.to_dict()) for d in docs]

    # Scheduling.

    def _to_run_ref(self, task_id: str, slice_index: int) -> firestore.DocumentReference:
        return self._doc(TASK_TO_RUN, f"{task_id}:{slice_index}")

    def put_queue(self, queue: TaskQueue) -> None:
        ops.write()
        doc = {**queue.to_doc(), "updated_ts": firestore.SERVER_TIMESTAMP}
        self._db.collection(TASK_QUEUES).document(queue.queue_key).set(doc)

    def queues(self, pool: str, since: datetime.datetime | None = None) -> list[TaskQueue]:
        """The queue records of `pool`, or those committed at or after `since`."""
        filters: list[Filter] = [("pool", "==", pool)]
        if since:
            filters.append(("updated_ts", ">=", since))
        docs = query(self._db, TASK_QUEUES, filters, order_by="updated_ts" if since else None)
        return [TaskQueue.from_doc(d.to_dict()) for d in docs]

    def pending(self, queue_keys: list[str], limit: int) -> list[TaskToRun]:
        """The first `limit` pending slices of these queues, in order."""
        found: list[TaskToRun] = []
        for start in range(0, len(queue_keys), MAX_IN_VALUES):
            keys = queue_keys[start:start + MAX_IN_VALUES]
            docs = query(self._db, TASK_TO_RUN, [("queue_key", "in", keys)], order_by="order_key", limit=limit)
            found += [TaskToRun.from_doc(d.to_dict()) for d in docs]
        return sorted(found, key=lambda t: t.order_key)[:limit]

    def watch_pending(self, queue_key: str, on_change: Callable[[int, int, int], None]) -> Callable[[], None]:
        """Listens to the first `WATCH_LIMIT` pending slices of one queue, in
        the order bots get them (a Firestore listener on the pending query's
        own index). `on_change(added, pending, reads)` runs on the
        listener's thread at each change: the slices added to that window
        (all of them in the first snapshot), those in it now, and the reads
        it is billed (one per document added or changed, one at least for
        the first snapshot), which no request counts: the caller does.
        Returns what stops it.

        The window bounds what a deep queue costs a listener: the client
        sorts its whole result at each change, the first snapshot bills a
        read per document, and the emulator sends the whole window again at
        each change of the queue (a listener on 800 pending slices took two
        thirds of the gateway's CPU). A slice added behind a full window
        wakes no held poll: those look again every RECHECK_SECS
        (functions/long_poll.py) and find the queue not empty. A burst added
        to an empty queue wakes WATCH_LIMIT polls, and each slice they claim
        lets the next one into the window, which wakes one more."""
        first = True

        def changed(docs: list[Any], changes: list[Any], _read_time: Any) -> None:
            nonlocal first
            kept = [c for c in changes if c.type.name in ("ADDED", "MODIFIED")]
            added = sum(1 for c in kept if c.type.name == "ADDED")
            on_change(added, len(docs), max(1, len(kept)) if first else len(kept))
            first = False

        filters: list[Filter] = [("queue_key", "==", queue_key)]
        check_index(TASK_TO_RUN, filters, "order_key")
        return listener.listen(filtered(self._db, TASK_TO_RUN, filters).order_by("order_key").limit(WATCH_LIMIT),
                               changed)

    def count_ahead(self, to_run: TaskToRun) -> int:
        """How many pending slices of its queue bots get before this one."""
        return count(self._db, TASK_TO_RUN, [("queue_key", "==", to_run.queue_key),
                                             ("order_key", "<", to_run.order_key)])

    def use_once(self, key: str, expire_at: datetime.datetime) -> bool:
        """Records that the sign-in credential hashed to `key` was used;
        False when it already was (its document's TTL is `expire_at`)."""
        ops.write()
        try:
            self._doc(UI_SIGNINS, key).create({"expire_at": expire_at})
        except gexc.AlreadyExists:
            return False
        return True

    def expired_slices(self, shard: int, before: datetime.datetime, limit: int) -> list[TaskToRun]:
        docs = query(self._db, TASK_TO_RUN, [("shard", "==", shard), ("expiration_ts", "<", before)],
                     order_by="expiration_ts", limit=limit)
        return [TaskToRun.from_doc(d.to_dict()) for d in docs]

    def waiters(self, limit: int, after: str | None = None) -> list[TaskResult]:
        """Pending tasks waiting on an identical idempotent one, by the id of
        that one (not a growing field: no shard needed), from after `after`."""
        filters: list[Filter] = [("state", "==", "PENDING"), ("waiting_on", ">", after or "")]
        return [TaskResult.from_doc(d.to_dict())
                for d in query(self._db, TASK_RESULTS, filters, order_by="waiting_on", limit=limit)]

    def silent_runs(self, shard: int, before: datetime.datetime, limit: int) -> list[TaskResult]:
        """Running tasks whose result was last written before `before`."""
        filters: list[Filter] = [("shard", "==", shard), ("state", "==", "RUNNING"), ("modified_ts", "<", before)]
        docs = query(self._db, TASK_RESULTS, filters, order_by="modified_ts", limit=limit)
        return [TaskResult.from_doc(d.to_dict()) for d in docs]

    def get_to_run(self, task_id: str, slice_index: int) -> tuple[TaskToRun, Any] | None:
        """The pending slice and its update time, the claim's precondition."""
        snap = get(self._to_run_ref(task_id, slice_index))
        return (TaskToRun.from_doc(snap.to_dict()), snap.update_time) if snap.exists else None

    # Runs.

    def change_task(self, task_id: str, change: Callable[[TaskResult, "TaskBatch"], Writes],
                    output: tuple[str, int, bytes] | None = None) -> TaskResult:
        """Reads the result, lets `change` check and change it, add writes to
        the batch it is given, and decide what else to write: the stdout
        packet `output` (run id, offset, bytes) at its offset, and the result.
        One batch, guarded by what was read (the result's update time, each
        stdout chunk's, or its absence); a lost race reads and decides again
        (`settle`). No lock is taken, so writers of one task never wait on
        each other's (on the emulator contended transactions livelock,
        LOCAL-STACK.md). An unknown task is NotFound (a 404)."""
        result_ref = self._doc(TASK_RESULTS, task_id)

        def attempt() -> TaskResult:
            snap = get(result_ref)
            if not snap.exists:
                raise NotFound(f"no task {task_id}")
            before = snap.to_dict()
            result = TaskResult.from_doc(before)
            was_final = result.state.is_final
            batch = TaskBatch(self)
            writes = change(result, batch)
            if Writes.OUTPUT in writes and output is not None:
                self._write_output(batch, *output)
            if Writes.RESULT in writes:
                batch.update_result(task_id, _rewritten(before, result, ends=result.state.is_final and not was_final),
                                    snap.update_time)
            batch.commit()
            return result

        return settle(task_id, attempt)

    def _write_output(self, batch: "TaskBatch", run_id: str, offset: int, data: bytes) -> None:
        """Raises stdout.Refused when the packet would change the stdout written."""
        snaps = self._chunk_snaps(run_id, [index for index, _, _ in stdout.pieces(offset, data)])
        chunks = {index: stdout.Chunk.from_doc(snap.to_dict()) for index, snap in snaps.items() if snap.exists}
        for index, chunk in stdout.write(chunks, offset, data).items():
            seen = snaps[index]
            batch.put_chunk(seen.reference, chunk.to_doc(), seen.update_time if seen.exists else None)

    def _chunk_ref(self, run_id: str, index: int) -> firestore.DocumentReference:
        return self._db.collection(TASK_OUTPUT).document(f"{hashed(run_id)}:{index:06d}")

    def _chunk_snaps(self, run_id: str, indexes: Iterable[int]) -> dict[int, firestore.DocumentSnapshot]:
        refs = {index: self._chunk_ref(run_id, index) for index in indexes}
        if not refs:
            return {}
        snaps = {snap.id: snap for snap in self._db.get_all(list(refs.values()))}
        ops.read(len(refs))
        return {index: snaps[ref.id] for index, ref in refs.items()}

    def output_chunks(self, run_id: str, indexes: Iterable[int]) -> dict[int, stdout.Chunk]:
        """The stored chunks of these indexes (a missing one is left out)."""
        return {index: stdout.Chunk.from_doc(snap.to_dict())
                for index, snap in self._chunk_snaps(run_id, indexes).items() if snap.exists}

    def has_output(self, run_id: str) -> bool:
        """Whether any chunk of the run's stdout was written, wherever it
        starts (one read: a range of document names)."""
        prefix = f"{hashed(run_id)}:"
        collection = self._db.collection(TASK_OUTPUT)
        return bool(query(self._db, TASK_OUTPUT, [("__name__", ">=", collection.document(prefix)),
                                                   ("__name__", "<", collection.document(prefix + "~"))], limit=1))


@dataclasses.dataclass
class _ResultWrite:
    """A write of a task's result, added to the writer when the batch is
    flushed: then what the request cost so far is known, and goes with it."""

    task_id: str
    doc: dict[str, Any]
    seen_update_time: Any = None
    #: It ends a task whose end is notified.
    ends_notified: bool = False
    #: The result created, which is told its server cost too (it may be answered).
    created: TaskResult | None = None


def _rewritten(before: dict[str, Any], result: TaskResult, ends: bool) -> dict[str, Any]:
    """What `Store.change_task` writes of the result read as `before`: the
    fields its change changed (encoding the whole result for each write was
    a tenth of the gateway's CPU); `server_cost` grows by increments only
    (TaskBatch.flush), and `state` and `notify` go with the write that ends
    the task, as a move's fields do (functions.transitions)."""
    doc = result.to_doc()
    doc.pop("server_cost", None)
    if not ends:
        doc.pop("notify", None)
    kept = {"state", "notify"} if ends else set()
    return {k: v for k, v in doc.items() if k in kept or k not in before or before[k] != v}


class TaskBatch:
    """Writes committed all or nothing, in one batch. Creates fail when the
    document exists, guarded updates and deletes when it changed since it was
    read."""

    def __init__(self, store: Store):
        self._store = store
        self._db = store.db
        self._writer = self._db.batch()
        self._writes = 0
        self._results: list[_ResultWrite] = []

    def _add(self, method: str, ref: firestore.DocumentReference, *args: Any, **kwargs: Any) -> None:
        getattr(self._writer, method)(ref, *args, **kwargs)
        self._writes += 1

    def create_task(self, result: TaskResult, request: TaskRequest) -> None:
        request_text = json.dumps(request.to_wire(), separators=(",", ":"))
        self._results.append(_ResultWrite(result.task_id, {**result.to_doc(), "request": request_text},
                                          ends_notified=result.notify and result.state.is_final,
                                          created=result))

    def update_result(self, task_id: str, changes: dict[str, Any], seen_update_time: Any = None) -> None:
        """Guarded by `seen_update_time` when given: the result must not have
        changed since. A move to a final state (functions.transitions) says
        in `notify` whether the end is notified."""
        ends = bool(changes.get("notify")) and State(changes["state"]).is_final
        self._results.append(_ResultWrite(task_id, dict(changes), seen_update_time=seen_update_time,
                                          ends_notified=ends))

    def flush(self) -> None:
        """Adds the results' writes: the first with what the request cost so
        far (Firestore increments: no write of its own), after the timers of
        the ends to notify are armed (the outbox rule)."""
        results, self._results = self._results, []
        if not results:
            return
        for write in results:
            if write.ends_notified:
                self._store.ending(write.task_id)
        spent = ops.unattributed(self._writes + len(results))
        for write in results:
            ref = self._store._doc(TASK_RESULTS, write.task_id)
            if write.created:
                write.created.server_cost = ops.added({}, spent)
                self._add("create", ref, {**write.doc, "server_cost": write.created.server_cost})
            else:
                increments = {f"server_cost.{name}": firestore.Increment(n) for name, n in spent.items() if n}
                seen = write.seen_update_time
                self._add("update", ref, {**write.doc, **increments},
                          option=self._db.write_option(last_update_time=seen) if seen else None)
            spent = {}

    def create_pubsub_token(self, task_id: str, token: str) -> None:
        self._add("create", self._store._doc(PUBSUB_TOKENS, task_id), {"token": token})

    def create_to_run(self, to_run: TaskToRun) -> None:
        self._add("create", self._store._to_run_ref(to_run.task_id, to_run.slice_index), to_run.to_doc())

    def delete_to_run(self, to_run: TaskToRun, seen_update_time: Any) -> None:
        self._add("delete", self._store._to_run_ref(to_run.task_id, to_run.slice_index),
                  option=self._db.write_option(last_update_time=seen_update_time))

    def create_secret(self, task_id: str, secret: bytes) -> None:
        self._add("create", self._store._doc(SECRET_BYTES, task_id), {"data": secret})

    def create_request_uuid(self, key: str, task_id: str, expire_at: datetime.datetime) -> None:
        self._add("create", self._db.collection(REQUEST_UUIDS).document(key),
                  {"task_id": task_id, "expire_at": expire_at})

    def put_dedup(self, properties_hash: str, doc: dict[str, Any], seen_update_time: Any = None) -> None:
        """Creates the record, or replaces the one read at `seen_update_time`."""
        ref = self._db.collection(DEDUP).document(properties_hash)
        if seen_update_time is None:
            self._add("create", ref, doc)
        else:
            self._add("update", ref, doc, option=self._db.write_option(last_update_time=seen_update_time))

    def delete_dedup(self, properties_hash: str, seen_update_time: Any) -> None:
        self._add("delete", self._db.collection(DEDUP).document(properties_hash),
                  option=self._db.write_option(last_update_time=seen_update_time))

    def put_chunk(self, ref: firestore.DocumentReference, doc: dict[str, Any], seen_update_time: Any) -> None:
        """A stdout chunk: created, or replacing the one read at `seen_update_time`."""
        if seen_update_time is None:
            self._add("create", ref, doc)
        else:
            self._add("update", ref, doc, option=self._db.write_option(last_update_time=seen_update_time))

    def merge_bot(self, bot_id: str, doc: dict[str, Any]) -> None:
        self._add("set", self._db.collection(BOTS).document(bot_id), doc, merge=True)

    def commit(self) -> None:
        """Raises Taken when a created document exists, LostRace when a guarded
        one changed (Contended when a lock held it too long); a failed batch
        writes, and costs, nothing. An empty batch is not sent."""
        self.flush()
        if not self._writes:
            return
        try:
            self._writer.commit()
        except gexc.AlreadyExists as e:
            raise Taken(str(e)) from e
        except CommitRefused as e:
            raise Unavailable(str(e)) from e
        except gexc.Aborted as e:
            raise Contended(str(e)) from e
        except (gexc.FailedPrecondition, gexc.NotFound, gexc.Conflict) as e:
            raise LostRace(str(e)) from e
        except (gexc.DeadlineExceeded, gexc.ServiceUnavailable, gexc.RetryError) as e:
            raise Unsure(str(e)) from e
        ops.write(self._writes)
