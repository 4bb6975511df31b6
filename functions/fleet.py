"""The client's view of the bots: list, count, dimensions, one bot, its events
and tasks, deletion; and the sweep that marks bots dead and alive again."""

import datetime
from typing import Any, Callable

from functions.bot_store import BotStore, dimension_filter
from functions.budget import Budget
from shared import dimensions as dims_lib
from shared.bot_api import is_bot_id
from shared.errors import ValidationError
from shared.wire import REQUIRED, Either, Field, Integer, ListOf, Schema, Shape, Text
from functions.errors import NotFound
from functions.bot_liveness import SHARDS, shard_of
from functions.models import TaskResult, iso
from functions.store import Filter

DEFAULT_LIMIT, MAX_LIMIT = 200, 1000
#: Dimensions a listing filters on: each is a Firestore filter, and a query
#: takes at most 100 (with the flags' and a count's own, well under).
MAX_DIMENSION_FILTERS = 64
#: The boolean filters of `bots_list` and `bots_count`, as stored flags.
FLAGS = {"quarantined": "quarantined", "in_maintenance": "in_maintenance", "is_dead": "is_dead",
         "is_busy": "is_busy"}
#: `bots_count`'s figures, by the flag each counts.
COUNTED = {"quarantined": "quarantined", "maintenance": "in_maintenance", "dead": "is_dead", "busy": "is_busy"}


class Tristate(Field):
    """true, false, or either: absent, null, `NONE` (any case) or ""; `TRUE` and `FALSE` too."""

    TEXT = {"TRUE": True, "FALSE": False, "NONE": None, "": None}

    def __init__(self) -> None:
        super().__init__(default=None)

    def read(self, value: Any, path: str) -> bool | None:
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str) and value.upper() in self.TEXT:
            return self.TEXT[value.upper()]
        raise ValidationError(path, "must be true, false or NONE")

    def schema(self) -> Schema:
        words = [case(word) for word in self.TEXT for case in (str.upper, str.lower)]
        return {"anyOf": [{"type": "boolean"}, {"type": "null"}, {"type": "string", "enum": sorted(set(words))}]}


_KEY = dims_lib.KEY_RE.pattern.strip("^$")
#: A dimension to filter on, `k:v` or `{key, value}`, read as `k:v`.
_DIMENSION = ListOf(Either(
    Text(dims_lib.MAX_KEY_LENGTH + 1 + dims_lib.MAX_VALUE_LENGTH, _KEY + r":[\s\S]+"),
    Shape({"key": Text(dims_lib.MAX_KEY_LENGTH, _KEY, min_length=1, default=REQUIRED),
           "value": Text(dims_lib.MAX_VALUE_LENGTH, min_length=1, default=REQUIRED)},
          build=lambda wire: f"{wire.read('key')}:{wire.read('value')}")),
    MAX_DIMENSION_FILTERS, from_text=True, nullable=True, description="ANDed")
#: The filters of `bots_list` and `bots_count`.
FILTERS: dict[str, Field] = {"dimensions": _DIMENSION, **{name: Tristate() for name in FLAGS}}
#: A page's size.
LIMIT = Integer(1, MAX_LIMIT, None, nullable=True, from_text=True, description=f"{DEFAULT_LIMIT} when absent")


def filters(params: dict[str, Any]) -> list[Filter]:
    """The list filters of the reference (FILTERS, among other parameters):
    dimensions (`k:v`, ANDed) and tri-state flags (true, false, or None for either)."""
    params = Shape(FILTERS, lenient=True).read(params, "")
    found = [dimension_filter(flag) for flag in params["dimensions"]]
    found += [(field, "==", params[name]) for name, field in FLAGS.items() if params[name] is not None]
    return found


def _cursor_ts(cursor: str | None) -> datetime.datetime | None:
    """The time a page of events or tasks ended at (`iso`, always in UTC)."""
    if cursor in (None, ""):
        return None
    try:
        ts = datetime.datetime.fromisoformat(cursor.replace("Z", "+00:00"))
    except ValueError:
        ts = None
    if ts is None or ts.utcoffset() is None:
        raise ValidationError("cursor", "not a cursor from a previous page")
    return ts


class Fleet:
    def __init__(self, store: BotStore, death_timeout_secs: int):
        self._store = store
        self._death_timeout = datetime.timedelta(seconds=death_timeout_secs)

    def list_bots(self, params: dict[str, Any], limit: int | None, cursor: str | None,
                  now: datetime.datetime) -> dict[str, Any]:
        limit = limit or DEFAULT_LIMIT
        if cursor not in (None, "") and not is_bot_id(cursor):
            raise ValidationError("cursor", "not a cursor from a previous page")
        docs = self._store.list_bots(filters(params), limit, cursor or None)
        items = self._with_liveness(docs, now)
        return {"items": items, "cursor": items[-1]["bot_id"] if len(items) == limit else None,
                "now": iso(now)}

    def count(self, params: dict[str, Any], now: datetime.datetime) -> dict[str, Any]:
        base = filters(params)
        fixed = {field: value for field, _, value in base if field in FLAGS.values()}
        total = self._store.count_bots(base)
        answer: dict[str, Any] = {"count": total, "now": iso(now)}
        for name, field in COUNTED.items():
            if field in fixed:  # Already filtered on: all or none of them.
                answer[name] = total if fixed[field] else 0
            else:
                answer[name] = self._store.count_bots(base + [(field, "==", True)])
        return answer

    def dimensions(self, pool: str | None, now: datetime.datetime) -> dict[str, Any]:
        values: dict[str, set[str]] = {}
        for key, value in self._store.dimension_values(pool, now):
            values.setdefault(key, set()).add(value)
        return {"bots_dimensions": [{"key": k, "value": sorted(values[k])} for k in sorted(values)],
                "ts": iso(now)}

    def get(self, bot_id: str, now: datetime.datetime, check: Callable[[list[str]], None]) -> dict[str, Any]:
        """`check` raises unless the caller may see a bot of these pools."""
        doc = self._store.get_bot(bot_id)
        if doc is None:
            raise NotFound(f"no bot {bot_id}")
        check(pools_of(doc))
        return self._with_liveness([doc], now)[0]

    def delete(self, bot_id: str, now: datetime.datetime) -> dict[str, Any]:
        if not self._store.delete_bot(bot_id):
            raise NotFound(f"no bot {bot_id}")
        self._store.add_event(bot_id, "bot_deleted", now)
        return {"deleted": True}

    def tasks(self, bot_id: str, limit: int | None, cursor: str | None) -> dict[str, Any]:
        limit = limit or DEFAULT_LIMIT
        docs = self._store.tasks(bot_id, limit, _cursor_ts(cursor))
        items = [TaskResult.from_doc(d).to_wire() for d in docs]
        return {"items": items, "cursor": items[-1]["started_ts"] if len(items) == limit else None}

    def events(self, bot_id: str, limit: int | None, cursor: str | None) -> dict[str, Any]:
        """Stored events merged with the claims and completions of the bot's
        tasks, which `task_results` already records (so they are not stored
        twice), newest first. The bot runs one task at a time, so the `limit`
        newest tasks hold every completion newer than the oldest of them."""
        limit = limit or DEFAULT_LIMIT
        before = _cursor_ts(cursor)
        stored = self._store.events(bot_id, limit, before)
        task_events = [e for d in self._store.tasks(bot_id, limit, before) for e in _task_events(d)]
        merged = sorted((e for e in stored + task_events if before is None or e["ts"] < before),
                        key=lambda e: e["ts"], reverse=True)[:limit]
        return {"items": [_event_wire(e) for e in merged],
                "cursor": iso(merged[-1]["ts"]) if len(merged) == limit else None}

    def sweep(self, now: datetime.datetime, budget: Budget) -> dict[str, int]:
        """Flags dead the bots not seen for the death timeout, and alive again
        those seen since; cheap (a fixed number of reads, every liveness
        document: functions.bot_liveness; writes only for a change) and safe
        to run at any time. It stops when the budget is spent: the next sweep
        finds the bots left unflagged."""
        seen, flagged = self._store.read_liveness(list(range(SHARDS)))
        changed = {"dead": 0, "alive": 0, "forgotten": 0}
        due = [(bot_id, last_seen) for bot_id, last_seen in seen.items()
               if (now - last_seen > self._death_timeout) != (bot_id in flagged)]
        for bot_id, last_seen in budget.each(due):
            changed[self._flag(bot_id, last_seen, now)] += 1
        return changed

    def _flag(self, bot_id: str, last_seen: datetime.datetime, now: datetime.datetime) -> str:
        """Flags the bot dead or alive again, or forgets one deleted since: which it did."""
        dead = now - last_seen > self._death_timeout
        if not self._store.set_dead(bot_id, dead):
            self._store.forget_in_shard(bot_id)
            return "forgotten"
        self._store.flag_dead_in_shard(bot_id, dead)
        self._store.add_event(bot_id, "bot_missing" if dead else "bot_alive", now,
                              message=f"last seen {iso(last_seen)}")
        return "dead" if dead else "alive"

    def _with_liveness(self, docs: list[dict[str, Any]], now: datetime.datetime) -> list[dict[str, Any]]:
        """The entries as the API shows them, last seen from the liveness
        shards (fresher than the entry, which is written only on change)."""
        if not docs:
            return []
        seen, _ = self._store.read_liveness(sorted({shard_of(d["bot_id"]) for d in docs}))
        return [self._bot_wire(d, max(filter(None, (d.get("updated_ts"), seen.get(d["bot_id"])))), now)
                for d in docs]

    def _bot_wire(self, doc: dict[str, Any], last_seen: datetime.datetime, now: datetime.datetime) -> dict[str, Any]:
        """`is_dead` is worked out from `last_seen_ts`, so it is exact even
        before the next sweep flags the entry (which the filter uses)."""
        return {
            "bot_id": doc["bot_id"],
            "dimensions": [{"key": k, "value": v} for k, v in sorted(doc["dimensions"].items())],
            "state": doc["state"],
            "version": doc["version"],
            "task_id": doc.get("task_id"),
            "is_busy": doc.get("is_busy", False),
            "quarantined": doc.get("quarantined", False),
            "maintenance_msg": doc.get("maintenance_msg"),
            "is_dead": now - last_seen > self._death_timeout,
            "first_seen_ts": iso(doc.get("first_seen_ts")),
            "last_seen_ts": iso(last_seen),
        }


def pools_of(doc: dict[str, Any] | None) -> list[str]:
    """The pools of a bot's registry entry (none for a bot not registered)."""
    return list(doc.get("dimensions", {}).get("pool", [])) if doc else []


def _event_wire(doc: dict[str, Any]) -> dict[str, Any]:
    event = {k: v for k, v in doc.items() if k not in ("bot_id", "expire_at")}
    if "dimensions" in event:
        event["dimensions"] = [{"key": k, "value": v} for k, v in sorted(event["dimensions"].items())]
    event["ts"] = iso(doc["ts"])
    return event


def _task_events(doc: dict[str, Any]) -> list[dict[str, Any]]:
    result = TaskResult.from_doc(doc)
    events = [{"ts": result.started_ts, "event_type": "task_claimed", "task_id": result.task_id,
               "message": f"slice {result.current_task_slice} of {result.name!r}"}]
    if result.completed_ts:
        events.append({"ts": result.completed_ts, "event_type": "task_completed", "task_id": result.task_id,
                       "message": f"{result.state.value}, exit code {result.exit_code}"})
    return events
