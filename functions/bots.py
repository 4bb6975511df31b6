"""Who a bot says it is on every call, and how each call keeps its registry
entry, events and liveness up to date (`functions.bot_info` says why this
costs no write on most calls)."""

import dataclasses
import datetime
from typing import Any

from functions.bot_info import BotInfo, Session
from functions.bot_store import BotStore, is_bot_id
from functions.errors import BadRequest
from functions.liveness import Sightings, shard_of
from shared import dimensions as dims_lib
from shared.errors import ValidationError

#: Events stored by the bot API; `cron_sweep` adds `bot_missing`/`bot_alive`,
#: `bot_delete` adds `bot_deleted`, and `bot_event` the bot's own.
CONNECTED, CHANGED = "bot_connected", "bot_changed"
BOT_REPORTED_EVENTS = ("bot_error", "bot_log", "bot_rebooting", "bot_shutdown")


@dataclasses.dataclass(frozen=True)
class BotRequest:
    """The fields every bot API call carries (PROTOCOL.md, Bot API)."""

    bot_id: str
    dimensions: dims_lib.Dimensions
    state: dict[str, Any]
    version: str
    session: Session = dataclasses.field(default_factory=Session)

    @classmethod
    def from_body(cls, body: dict[str, Any], enforced: dict[str, dims_lib.Dimensions]) -> "BotRequest":
        """Reads the bot's fields; the dimensions the server enforces for that
        bot id (`enforced`) replace what it reports for those keys."""
        dims = dims_lib.validate_bot(body.get("dimensions"), "dimensions")
        ids = dims.get("id", [])
        if len(ids) != 1:
            raise ValidationError("dimensions.id", "a bot must report exactly one id")
        if not is_bot_id(ids[0]):
            raise ValidationError("dimensions.id", "no '/', not '.' or '..', not __reserved__")
        state = body.get("state", {})
        if not isinstance(state, dict):
            raise ValidationError("state", "must be a JSON object")
        version = body.get("version", "")
        if not isinstance(version, str):
            raise ValidationError("version", "must be a string")
        dims = {**dims, **enforced.get(ids[0], {})}
        return cls(bot_id=ids[0], dimensions=dims_lib.validate_bot(dims, "dimensions"), state=state,
                   version=version, session=Session.decode(body.get("session")))

    @property
    def flat(self) -> frozenset[str]:
        return dims_lib.flatten(self.dimensions)

    def info(self, task_id: str | None) -> BotInfo:
        return BotInfo.from_report(self.bot_id, self.dimensions, self.state, self.version, task_id)


class Registry:
    """Keeps the registry in step with what bots report, writing only changes."""

    def __init__(self, store: BotStore, sightings: Sightings):
        self._store = store
        self._sightings = sightings

    def handshake(self, bot: BotRequest, now: datetime.datetime) -> str:
        """Always writes the entry (keeping its first-seen time) and the
        dimension values, and records a `bot_connected` event."""
        if "pool" not in bot.dimensions:
            raise BadRequest("dimensions.pool: a bot must report at least one pool")
        # Written at once, not buffered: a bot that never calls again must
        # still be in a liveness shard for the sweep to find it dead.
        self._store.write_sightings({shard_of(bot.bot_id): {bot.bot_id: now}})
        existing = self._store.get_bot(bot.bot_id)
        info = bot.info(task_id=None)
        first_seen = existing.get("first_seen_ts", now) if existing else now
        self._store.put_bot(info, now, first_seen=first_seen)
        self._store.put_dimension_values(bot.dimensions, now)
        self._store.add_event(bot.bot_id, CONNECTED, now, info=info)
        return Session(info.fingerprints(), now.timestamp(), now.timestamp()).encode()

    def check_in(self, bot: BotRequest, task_id: str | None, now: datetime.datetime) -> str:
        """Notes the bot as seen and writes its entry when what it reports
        (holding `task_id`) changed or its session is stale; returns the
        session to hand back."""
        self.see(bot.bot_id, now)
        info = bot.info(task_id)
        changed = bot.session.changed_parts(info)
        if not changed and not bot.session.is_stale(now):
            return bot.session.encode()
        self._store.put_bot(info, now)
        return self._after_write(bot, info, changed, now)

    def claimed(self, bot: BotRequest, info: BotInfo, now: datetime.datetime) -> str:
        """The claim's own batch wrote `info`; records what else follows."""
        self.see(bot.bot_id, now)
        return self._after_write(bot, info, bot.session.changed_parts(info), now)

    def _after_write(self, bot: BotRequest, info: BotInfo, changed: list[str], now: datetime.datetime) -> str:
        """A change other than the current task (which `bot_tasks` records) is
        an event; new dimensions refresh the pool's dimension values."""
        notable = [part for part in changed if part != "task_id"]
        if notable and bot.session.fingerprints:
            self._store.add_event(bot.bot_id, CHANGED, now, message=f"changed: {', '.join(notable)}", info=info)
        dims_written = bot.session.dimensions_written
        if "dimensions" in changed or bot.session.dimensions_stale(now):
            self._store.put_dimension_values(bot.dimensions, now)
            dims_written = now.timestamp()
        return Session(info.fingerprints(), now.timestamp(), dims_written).encode()

    def see(self, bot_id: str, now: datetime.datetime) -> None:
        """Notes the bot as seen; flushes this instance's sightings when due."""
        self._sightings.record(bot_id, now)
        due = self._sightings.take_due(now)
        if due:
            self._store.write_sightings(due)


def handshake(registry: Registry, bot: BotRequest, enforced: dims_lib.Dimensions, server_version: str,
              now: datetime.datetime) -> dict[str, Any]:
    return {
        "session": registry.handshake(bot, now),
        "bot_version": bot.version,
        "server_version": server_version,
        "bot_group_cfg": {"dimensions": enforced},
    }


def event(store: BotStore, registry: Registry, bot: BotRequest, body: dict[str, Any],
          now: datetime.datetime) -> dict[str, Any]:
    """`bot_event`: the bot reports an error, a log line, a reboot or shutdown."""
    event_type, message = body.get("event"), body.get("message", "")
    if event_type not in BOT_REPORTED_EVENTS:
        raise BadRequest(f"event: must be one of {', '.join(BOT_REPORTED_EVENTS)}")
    if not isinstance(message, str):
        raise BadRequest("message: must be a string")
    registry.see(bot.bot_id, now)
    store.add_event(bot.bot_id, event_type, now, message=message[:10_000])
    return {"ok": True}
