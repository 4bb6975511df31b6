"""The Firestore side of the bot registry: entries, events, liveness shards and
the dimension values of each pool (counted like `functions.store`)."""

import datetime
import hashlib
import logging
import threading
import uuid
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath

from functions import bot_liveness as liveness
from functions import ops
from functions.bot_entry import DIMENSIONS_REWRITE_SECS, DIMENSIONS_TTL, BotEntry
from shared import dimensions as dims_lib
from shared import task_id as task_ids
from shared.bot_api import is_bot_id
from functions.store import BOT_DIMENSIONS, BOT_EVENTS, BOT_LIVENESS, BOTS, TASK_RESULTS, Filter, count, get, query

logger = logging.getLogger(__name__)

#: Bot events are kept this long (a Firestore TTL policy on `expire_at`).
EVENTS_TTL = datetime.timedelta(days=28)


def dimension_filter(flag: str) -> Filter:
    """Matches bots having the flat dimension `k:v`."""
    return (FieldPath("dimension_flags", flag).to_api_repr(), "==", True)


class BotStore:
    def __init__(self, db: firestore.Client):
        self._db = db
        self._lock = threading.Lock()
        #: Dimension value document → when this instance last wrote it (seconds).
        self._values_written: dict[str, float] = {}

    def _bot(self, bot_id: str) -> firestore.DocumentReference:
        return self._db.collection(BOTS).document(bot_id)

    # Entries.

    def put_bot(self, entry: BotEntry, now: datetime.datetime, first_seen: datetime.datetime | None = None) -> None:
        """Merges the entry; `first_seen` is given by the handshake only."""
        doc = entry.to_doc(now)
        if first_seen:
            doc["first_seen_ts"] = first_seen
        ops.write()
        self._bot(entry.bot_id).set(doc, merge=True)

    def get_bot(self, bot_id: str) -> dict[str, Any] | None:
        """The entry; None for an id no bot can have (see `is_bot_id`)."""
        if not is_bot_id(bot_id):
            return None
        snap = get(self._bot(bot_id))
        return snap.to_dict() if snap.exists else None

    def delete_bot(self, bot_id: str) -> bool:
        if self.get_bot(bot_id) is None:
            return False
        ops.write()
        self._bot(bot_id).delete()
        self.forget_in_shard(bot_id)
        return True

    def list_bots(self, filters: list[Filter], limit: int, after: str | None) -> list[dict[str, Any]]:
        return [d.to_dict() for d in query(self._db, BOTS, filters, limit=limit, start_after=after and
                                           self._bot(after))]

    def has_capacity(self, task_dimensions: dict[str, list[str]]) -> bool:
        """Whether a live bot matches: one query of at most one bot per OR
        alternative, until one matches."""
        for alternative in dims_lib.expand(task_dimensions):
            filters = [dimension_filter(flag) for flag in sorted(alternative)] + [("is_dead", "==", False)]
            if query(self._db, BOTS, filters, limit=1):
                return True
        return False

    def count_bots(self, filters: list[Filter]) -> int:
        return count(self._db, BOTS, filters)

    def set_dead(self, bot_id: str, dead: bool) -> bool:
        """Flags the entry dead or alive; False when the bot is not registered."""
        try:
            self._bot(bot_id).update({"is_dead": dead})
        except gexc.NotFound:
            return False
        finally:
            ops.write()
        return True

    # Events.

    def add_event(self, bot_id: str, event_type: str, now: datetime.datetime, message: str = "",
                  entry: BotEntry | None = None) -> None:
        """One event document; a random id spreads the writes."""
        doc = {"bot_id": bot_id, "event_type": event_type, "ts": now, "message": message,
               "expire_at": now + EVENTS_TTL}
        if entry:
            doc.update({"dimensions": entry.dimensions, "state": entry.state, "version": entry.version,
                        "task_id": entry.task_id, "quarantined": entry.quarantined,
                        "maintenance_msg": entry.maintenance_msg})
        ops.write()
        self._db.collection(BOT_EVENTS).document(uuid.uuid4().hex).set(doc)

    def events(self, bot_id: str, limit: int, before: datetime.datetime | None) -> list[dict[str, Any]]:
        docs = query(self._db, BOT_EVENTS, [("bot_id", "==", bot_id)], order_by="ts", descending=True,
                     limit=limit, start_after=before)
        return [d.to_dict() for d in docs]

    def tasks(self, bot_id: str, limit: int, before: datetime.datetime | None) -> list[dict[str, Any]]:
        """The results of the tasks the bot ran, newest first. A deduplicated
        task names the bot that ran the task it took its result from, but it
        never started: only a start time (a range over it drops null) makes a run."""
        ran = [("bot_id", "==", bot_id), ("started_ts", ">", task_ids.EPOCH)]
        docs = query(self._db, TASK_RESULTS, ran, order_by="started_ts", descending=True, limit=limit,
                     start_after=before)
        return [d.to_dict() for d in docs]

    # Dimension values of each pool, for `bots_dimensions`.

    def put_dimension_values(self, dims: dict[str, list[str]], now: datetime.datetime) -> None:
        """Records each (pool, key, value) a bot reports, for a week. Each is
        written once a day at most by this instance: thousands of bots of a
        pool share its common values, and a burst of new bots would otherwise
        all write the same few documents at once. A commit that meets
        another's lock is left to the bot's next refresh: these documents
        only list the values that exist."""
        docs = {}
        for pool in dims.get("pool", []):
            for key, values in dims.items():
                for value in values:
                    doc_id = hashlib.sha256(f"{pool}\n{key}\n{value}".encode()).hexdigest()[:32]
                    docs[doc_id] = {"pool": pool, "key": key, "value": value, "expire_at": now + DIMENSIONS_TTL}
        with self._lock:
            fresh = {doc_id: doc for doc_id, doc in docs.items()
                     if now.timestamp() - self._values_written.get(doc_id, -DIMENSIONS_REWRITE_SECS)
                     >= DIMENSIONS_REWRITE_SECS}
            self._values_written.update(dict.fromkeys(fresh, now.timestamp()))
        if not fresh:
            return
        batch = self._db.batch()
        for doc_id, doc in fresh.items():
            batch.set(self._db.collection(BOT_DIMENSIONS).document(doc_id), doc)
        try:
            batch.commit()
        except gexc.Aborted:
            logger.warning("dimension values not recorded (locked by another writer): left to a later refresh")
            with self._lock:
                for doc_id in fresh:
                    self._values_written.pop(doc_id, None)
            return
        ops.write(len(fresh))

    def dimension_values(self, pool: str | None, now: datetime.datetime) -> list[tuple[str, str]]:
        """(key, value) pairs some bot reported lately (TTL deletion lags, so
        expired ones are dropped here)."""
        filters: list[Filter] = [("pool", "==", pool)] if pool else []
        docs = [d.to_dict() for d in query(self._db, BOT_DIMENSIONS, filters)]
        return [(d["key"], d["value"]) for d in docs if d["expire_at"] > now]

    # Liveness (functions.bot_liveness): each shard's flags document and its slots.

    def _liveness(self, doc_id: str) -> firestore.DocumentReference:
        return self._db.collection(BOT_LIVENESS).document(doc_id)

    def write_sightings(self, flush: liveness.Flush) -> None:
        """Merges each document's sightings, all in one batch: one write per document."""
        batch = self._db.batch()
        for doc_id, seen in flush.items():
            batch.set(self._liveness(doc_id), {"seen": seen}, merge=True)
        ops.write(len(flush))
        batch.commit()

    def read_liveness(self, shards: list[int]) -> tuple[dict[str, datetime.datetime], set[str]]:
        """(bot id → last seen, bots flagged dead) from these shards' documents."""
        doc_ids = liveness.docs_of(shards)
        snaps = list(self._db.get_all([self._liveness(doc_id) for doc_id in doc_ids]))
        ops.read(len(doc_ids))
        return liveness.newest(snap.to_dict() or {} for snap in snaps)

    def flag_dead_in_shard(self, bot_id: str, dead: bool) -> None:
        ops.write()
        self._liveness(liveness.flags_doc(liveness.shard_of(bot_id))).set({"dead": {bot_id: dead}}, merge=True)

    def forget_in_shard(self, bot_id: str) -> None:
        """Drops the bot from every document of its shard, in one batch."""
        batch = self._db.batch()
        doc_ids = liveness.docs_of([liveness.shard_of(bot_id)])
        for doc_id in doc_ids:
            batch.set(self._liveness(doc_id), {"seen": {bot_id: firestore.DELETE_FIELD},
                                               "dead": {bot_id: firestore.DELETE_FIELD}}, merge=True)
        ops.write(len(doc_ids))
        batch.commit()
