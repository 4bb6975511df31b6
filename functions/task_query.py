"""Task lists and counts (`tasks_list`, `tasks_requests`, `tasks_count`):
one selection (a state, tags ANDed, a time range) read from the task results
through a declared index, newest first, a page at a time.

Every query is a key, then `outcome` in the few values a state filter means,
then a range on the chosen time, ordered by that time. The key is one of the
tags (the lead: `tags array_contains`), or with no tag `query_shard in
[0..3]`, so that no index has the growing time first (DESIGN.md §11). The
other tags are checked on the documents read: the lead is the tag whose
query counts fewest tasks (a count aggregation per tag up to 10,000: one
read per 1,000 counted), and a call reads at most MAX_SCAN documents before it answers with a
cursor. Nothing is written for a query: the two fields it filters on,
`query_shard` and `outcome`, are part of the result document
(functions.models).
"""

import base64
import binascii
import dataclasses
import datetime
import json
import math
import re
from typing import Any, Iterator

from google.cloud import firestore

from functions import ops, store
from functions.models import QUERY_SHARDS
from shared.errors import ValidationError
from shared.wire import Field, Schema

#: What each `state` filter of the reference means, as the outcomes it takes
#: (None: any). A deduplicated task is a success.
STATES: dict[str, tuple[str, ...] | None] = {
    "PENDING": ("PENDING",), "RUNNING": ("RUNNING",), "PENDING_RUNNING": ("PENDING", "RUNNING"),
    "COMPLETED": ("COMPLETED_SUCCESS", "COMPLETED_FAILURE", "DEDUPED"),
    "COMPLETED_SUCCESS": ("COMPLETED_SUCCESS", "DEDUPED"), "COMPLETED_FAILURE": ("COMPLETED_FAILURE",),
    "EXPIRED": ("EXPIRED",), "TIMED_OUT": ("TIMED_OUT",), "BOT_DIED": ("BOT_DIED",), "CANCELED": ("CANCELED",),
    "KILLED": ("KILLED",), "NO_RESOURCE": ("NO_RESOURCE",), "CLIENT_ERROR": ("CLIENT_ERROR",),
    "DEDUPED": ("DEDUPED",), "ALL": None,
}
TIMES = store.TASK_TIMES
#: Documents one call reads at most besides its page's look-ahead: with
#: several tags, those the lead tag finds that lack the others cost reads too.
MAX_SCAN = 1000
#: Counts are exact up to this many tasks, then "at least" (`at_least`).
COUNT_BOUND = 10_000
#: A count aggregation bills one read per this many index entries.
ENTRIES_PER_READ = 1000
#: What a Firestore index entry holds of a value: a longer tag is no filter.
MAX_TAG_BYTES = 1500
#: A time before any task: ordering by a time lists only the tasks that have it.
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_DOC_ID = re.compile(r"[0-9a-f]{4}-[0-9a-f]{1,32}")


class Timestamp(Field):
    """A time: RFC 3339 text (`2026-12-04T21:00:00Z`) or seconds since the epoch."""

    def read(self, value: Any, path: str) -> datetime.datetime:
        try:
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                return datetime.datetime.fromtimestamp(value, datetime.timezone.utc)
            if isinstance(value, str) and len(value) <= 40:
                if re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", value):
                    return datetime.datetime.fromtimestamp(float(value), datetime.timezone.utc)
                ts = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
                if ts.tzinfo is None:
                    raise ValueError("no time zone")
                return ts.astimezone(datetime.timezone.utc)
        except (ValueError, OverflowError, OSError):
            pass
        raise ValidationError(path, "must be an RFC 3339 time with its zone, or seconds since the epoch")

    def schema(self) -> Schema:
        return {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}]}


@dataclasses.dataclass(frozen=True)
class Selection:
    """Which tasks: in `state`, having every one of `tags`, with `time` in [start, end)."""

    state: str = "ALL"
    tags: tuple[str, ...] = ()
    time: str = "created_ts"
    start: datetime.datetime | None = None
    end: datetime.datetime | None = None

    def __post_init__(self) -> None:
        if self.start and self.end and self.end <= self.start:
            raise ValidationError("end", "must be after start")
        for i, tag in enumerate(self.tags):
            if len(tag.encode()) > MAX_TAG_BYTES:
                raise ValidationError(f"tags[{i}]", f"is longer than the {MAX_TAG_BYTES} bytes an index holds")

    def filters(self, lead: str | None) -> list[store.Filter]:
        found: list[store.Filter] = [("tags", "array_contains", lead) if lead
                                     else ("query_shard", "in", list(range(QUERY_SHARDS)))]
        outcomes = STATES[self.state]
        if outcomes:
            found.append(("outcome", "in", list(outcomes)) if len(outcomes) > 1 else ("outcome", "==", outcomes[0]))
        found.append((self.time, ">=", self.start or _EPOCH))
        if self.end:
            found.append((self.time, "<", self.end))
        return found


class Query:
    """A selection over the task results of one Firestore database."""

    def __init__(self, db: firestore.Client, selection: Selection):
        self._db, self._selection = db, selection

    def _query(self, lead: str | None) -> Any:
        filters = self._selection.filters(lead)
        store.check_index(store.TASK_RESULTS, filters, self._selection.time)
        return store.filtered(self._db, store.TASK_RESULTS, filters)

    def _ordered(self, lead: str | None) -> Any:
        return (self._query(lead).order_by(self._selection.time, direction=firestore.Query.DESCENDING)
                .order_by("__name__", direction=firestore.Query.DESCENDING))

    def _count(self, lead: str | None, bound: int) -> int:
        """The tasks of the lead's query, up to `bound`: one read per 1,000."""
        found = int(self._query(lead).limit(bound).count().get(retry=store.QUERY_RETRY)[0][0].value)
        ops.read(max(1, math.ceil(found / ENTRIES_PER_READ)))
        return found

    def _lead(self) -> tuple[str | None, list[str], bool]:
        """The tag to query by, the others to check, and whether nothing can match."""
        tags = list(dict.fromkeys(self._selection.tags))
        if len(tags) < 2:
            return (tags[0] if tags else None), [], False
        counts = {tag: self._count(tag, COUNT_BOUND) for tag in tags}
        lead = min(tags, key=counts.__getitem__)
        return lead, [tag for tag in tags if tag != lead], counts[lead] == 0

    def _scan(self, lead: str | None, after: "Cursor | None", batch: int, most: int) -> Iterator[Any]:
        """The lead's documents in order from after `after`, `batch` a read, `most` in all."""
        query = self._ordered(lead)
        seen = 0
        while seen < most:
            page = query
            if after is not None:
                page = page.start_after({self._selection.time: after.ts,
                                         "__name__": self._db.collection(store.TASK_RESULTS).document(after.doc_id)})
            docs = list(page.limit(min(batch, most - seen)).stream(retry=store.QUERY_RETRY))
            ops.read(max(1, len(docs)))
            yield from docs
            seen += len(docs)
            if len(docs) < batch:
                return
            after = Cursor.at(self._selection.time, docs[-1])

    def page(self, limit: int, cursor: "Cursor | None") -> tuple[list[dict[str, Any]], "Cursor | None"]:
        """Up to `limit` documents from after `cursor`, and where the next page
        starts (None when no task is left): short of `limit` when MAX_SCAN
        documents were read in vain."""
        lead, others, empty = self._lead()
        if empty:
            return [], None
        found: list[dict[str, Any]] = []
        examined, last = 0, None
        for doc in self._scan(lead, cursor, limit + 1, MAX_SCAN + 1):
            if len(found) == limit or examined == MAX_SCAN:
                return found, Cursor.at(self._selection.time, last)
            examined, last = examined + 1, doc
            data = doc.to_dict()
            if set(others) <= set(data.get("tags", ())):
                found.append(data)
        return found, None

    def count(self) -> "Count":
        """How many tasks, whether there may be more (then at least that
        many), and what those counted cost: the service (`server_cost`) and
        the deduplicated ones saved (`cost_saved_usd`)."""
        lead, others, empty = self._lead()
        if empty:
            return Count(0, False, dict.fromkeys(ops.SERVER_COST, 0), 0.0)
        if not others:
            return self._aggregate(lead)
        matched, costs, saved = 0, dict.fromkeys(ops.SERVER_COST, 0), 0.0
        for examined, doc in enumerate(self._scan(lead, None, MAX_SCAN + 1, MAX_SCAN + 1)):
            if examined == MAX_SCAN:
                return Count(matched, True, costs, saved)
            if set(others) <= set(doc.get("tags") or ()):
                matched += 1
                costs = ops.added(costs, doc.get("server_cost") or {})
                saved += doc.get("cost_saved_usd") or 0.0
        return Count(matched, False, costs, saved)

    def _aggregate(self, lead: str | None) -> "Count":
        """Counts and sums in one aggregation of the lead's query, up to
        COUNT_BOUND tasks: one read per 1,000."""
        aggregation = self._query(lead).limit(COUNT_BOUND).count(alias="count")
        for name in ops.SERVER_COST:
            aggregation = aggregation.sum(f"server_cost.{name}", alias=name)
        aggregation = aggregation.sum("cost_saved_usd", alias="cost_saved_usd")
        found = {result.alias: result.value for result in aggregation.get(retry=store.QUERY_RETRY)[0]}
        count = int(found["count"])
        ops.read(max(1, math.ceil(count / ENTRIES_PER_READ)))
        return Count(count, count >= COUNT_BOUND, {name: int(found[name] or 0) for name in ops.SERVER_COST},
                     float(found["cost_saved_usd"] or 0.0))


@dataclasses.dataclass(frozen=True)
class Count:
    count: int
    at_least: bool
    #: The sum of the counted tasks' `server_cost`, by operation.
    server_cost: dict[str, int]
    cost_saved_usd: float


@dataclasses.dataclass(frozen=True)
class Cursor:
    """Where a page ended: the time it is ordered by, the last task's time and document."""

    time: str
    ts: datetime.datetime
    doc_id: str

    @classmethod
    def at(cls, time: str, doc: Any) -> "Cursor":
        return cls(time, doc.get(time), doc.id)

    def to_text(self) -> str:
        data = json.dumps({"time": self.time, "ts": self.ts.isoformat(), "id": self.doc_id})
        return base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")

    @classmethod
    def parse(cls, text: str, time: str) -> "Cursor":
        """A cursor of a page ordered by `time`; a ValidationError of `cursor` otherwise."""
        try:
            data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            cursor = cls(data["time"], datetime.datetime.fromisoformat(data["ts"]), data["id"])
        except (binascii.Error, ValueError, TypeError, KeyError) as e:
            raise ValidationError("cursor", "is not a cursor this service answered") from e
        if not isinstance(cursor.doc_id, str) or not _DOC_ID.fullmatch(cursor.doc_id) or cursor.ts.tzinfo is None:
            raise ValidationError("cursor", "is not a cursor this service answered")
        if cursor.time != time:
            raise ValidationError("cursor", f"comes from a list by {cursor.time}, not by {time}")
        return cursor
