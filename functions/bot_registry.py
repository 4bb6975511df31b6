"""Who a bot says it is on every call, and how each call keeps its registry
entry, events and liveness up to date (`functions.bot_entry` says why this
costs no write on most calls)."""

import dataclasses
import datetime
from typing import Any

from functions.bot_entry import EVENT_PARTS, BotEntry, Session
from functions.bot_liveness import Sightings
from functions.bot_store import BotStore
from shared import dimensions as dims_lib
from shared.bot_api import BotAttributes, Event, EventReply, HandshakeReply
from shared.errors import ValidationError
from shared.service_config import BotGroup

#: Events stored by the bot API; `cron_sweep` adds `bot_missing`/`bot_alive`,
#: `bot_delete` adds `bot_deleted`, and `bot_event` the bot's own
#: (shared.bot_api.BOT_REPORTED_EVENTS).
CONNECTED, CHANGED = "bot_connected", "bot_changed"


@dataclasses.dataclass(frozen=True)
class BotRequest:
    """A bot as the server takes it on one call: what it reports, with the
    dimensions the server enforces for its id in place of its own for those
    keys, and the session it echoed back."""

    bot_id: str
    dimensions: dims_lib.Dimensions
    state: dict[str, Any]
    version: str
    session: Session = dataclasses.field(default_factory=Session)

    @classmethod
    def of(cls, attributes: BotAttributes, enforced: dims_lib.Dimensions) -> "BotRequest":
        """`enforced`: the dimensions of the bot's group."""
        dims = {**attributes.dimensions, **enforced}
        return cls(bot_id=attributes.bot_id, dimensions=dims_lib.validate_bot(dims, "dimensions"),
                   state=attributes.state, version=attributes.version, session=Session.decode(attributes.session))

    @property
    def flat(self) -> frozenset[str]:
        return dims_lib.flatten(self.dimensions)

    def entry(self, task_id: str | None) -> BotEntry:
        return BotEntry.from_report(self.bot_id, self.dimensions, self.state, self.version, task_id)


class Registry:
    """Keeps the registry in step with what bots report, writing only changes."""

    def __init__(self, store: BotStore, sightings: Sightings):
        self._store = store
        self._sightings = sightings

    def handshake(self, bot: BotRequest, now: datetime.datetime) -> str:
        """Always writes the entry (keeping its first-seen time) and the
        dimension values, and records a `bot_connected` event."""
        if "pool" not in bot.dimensions:
            raise ValidationError("dimensions.pool", "a bot must report at least one pool")
        # Written at once, not buffered: a bot that never calls again must
        # still be in a liveness document for the sweep to find it dead.
        self._store.write_sightings(self._sightings.at_once(bot.bot_id, now))
        existing = self._store.get_bot(bot.bot_id)
        entry = bot.entry(task_id=None)
        first_seen = existing.get("first_seen_ts", now) if existing else now
        self._store.put_bot(entry, now, first_seen=first_seen)
        self._store.put_dimension_values(bot.dimensions, now)
        self._store.add_event(bot.bot_id, CONNECTED, now, entry=entry)
        return Session(entry.fingerprints(), now.timestamp(), now.timestamp()).encode()

    def check_in(self, bot: BotRequest, task_id: str | None, now: datetime.datetime) -> str:
        """Notes the bot as seen and writes its entry when what it reports
        (holding `task_id`) changed or its session is stale
        (`Session.needs_write`); returns the session to hand back."""
        self.see(bot.bot_id, now)
        entry = bot.entry(task_id)
        changed = bot.session.changed_parts(entry)
        if not bot.session.needs_write(changed, now):
            return bot.session.encode()
        self._store.put_bot(entry, now)
        return self._after_write(bot, entry, changed, now)

    def claimed(self, bot: BotRequest, entry: BotEntry, now: datetime.datetime) -> str:
        """The claim's own batch wrote `entry`; records what else follows."""
        self.see(bot.bot_id, now)
        return self._after_write(bot, entry, bot.session.changed_parts(entry), now)

    def _after_write(self, bot: BotRequest, entry: BotEntry, changed: list[str], now: datetime.datetime) -> str:
        """A change of an `EVENT_PARTS` part is an event (not one of its
        state alone); new dimensions refresh the pool's dimension values."""
        notable = [part for part in changed if part in EVENT_PARTS]
        if notable and bot.session.fingerprints:
            self._store.add_event(bot.bot_id, CHANGED, now, message=f"changed: {', '.join(notable)}", entry=entry)
        dims_written = bot.session.dimensions_written
        if "dimensions" in changed or bot.session.dimensions_stale(now):
            self._store.put_dimension_values(bot.dimensions, now)
            dims_written = now.timestamp()
        return Session(entry.fingerprints(), now.timestamp(), dims_written).encode()

    def see(self, bot_id: str, now: datetime.datetime) -> None:
        """Notes the bot as seen; flushes this instance's sightings when due."""
        self._sightings.record(bot_id, now)
        due = self._sightings.take_due(now)
        if due:
            self._store.write_sightings(due)


def handshake(registry: Registry, bot: BotRequest, group: BotGroup, script: str | None, server_version: str,
              now: datetime.datetime) -> HandshakeReply:
    """`script`: the group's hooks (its `bot_config_script`), which the bot loads in place of the zip's."""
    return HandshakeReply(session=registry.handshake(bot, now), bot_version=bot.version,
                          server_version=server_version, server_dimensions=group.dimensions,
                          bot_config=script, bot_config_name=group.bot_config_script)


def event(store: BotStore, registry: Registry, bot: BotRequest, message: Event,
          now: datetime.datetime) -> EventReply:
    """`bot_event`: the bot reports an error, a log line, a reboot or shutdown."""
    registry.see(bot.bot_id, now)
    store.add_event(bot.bot_id, message.event, now, message=message.message[:10_000])
    return EventReply()
