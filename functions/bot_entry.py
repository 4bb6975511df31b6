"""A bot's registry entry, and the session that spares rewriting it.

The `bots` document of a bot is written only when what it says changed, or
when the bot's session is older than `REWRITE_SECS`; a change of its state
alone (free disk, uptime: they change on every call) is written at most every
`STATE_REWRITE_SECS`. The server knows what it last wrote without reading it:
every bot-API answer carries a `session` (the fingerprints of what was written
and when), and the bot sends it back on its next call. A bot that lies about
it only makes its own entry stale.

When the bot was last seen is kept apart (`functions.bot_liveness`), so that an
idle bot's polls do not each cost a write.
"""

import base64
import binascii
import dataclasses
import datetime
import hashlib
import json
from typing import Any

from shared import dimensions as dims_lib

#: Even an unchanged entry is rewritten this often, so a deleted bot that is
#: still running reappears, and a lost write is repaired.
REWRITE_SECS = 3600
#: The bot's dimension values (`bots_dimensions`) are rewritten at least this
#: often; they expire after `DIMENSIONS_TTL` without a bot reporting them.
DIMENSIONS_REWRITE_SECS = 86400
DIMENSIONS_TTL = datetime.timedelta(days=7)
#: A state that changed, alone, is written this often at most, so an idle
#: bot polling every minute costs a write per 10 polls, and `bot_get` shows a
#: state at most this old.
STATE_REWRITE_SECS = 600
#: State keys that change on every call and alone never cause a write.
VOLATILE_STATE_KEYS = frozenset({"running_time", "sleep_streak"})
#: The parts of an entry, each fingerprinted in the session.
PARTS = ("dimensions", "state", "version", "quarantined", "maintenance_msg", "task_id")
#: The parts whose change is an event worth keeping (`bot_changed`): what the
#: bot is and whether it takes tasks; its tasks are in `bot_tasks`.
EVENT_PARTS = ("dimensions", "version", "quarantined", "maintenance_msg")


@dataclasses.dataclass(frozen=True)
class BotEntry:
    """What the registry says of one bot."""

    bot_id: str
    dimensions: dims_lib.Dimensions
    state: dict[str, Any]
    version: str
    task_id: str | None = None
    quarantined: bool = False
    maintenance_msg: str | None = None

    @classmethod
    def from_report(cls, bot_id: str, dims: dims_lib.Dimensions, state: dict[str, Any], version: str,
                    task_id: str | None) -> "BotEntry":
        """Quarantine comes from the bot's state or a `quarantined` dimension,
        maintenance from its state (PROTOCOL.md)."""
        quarantined = bool(state.get("quarantined")) or "quarantined" in dims
        maintenance = state.get("maintenance")
        return cls(bot_id=bot_id, dimensions=dims, state=state, version=version, task_id=task_id,
                   quarantined=quarantined, maintenance_msg=str(maintenance) if maintenance else None)

    @property
    def pools(self) -> list[str]:
        return self.dimensions.get("pool", [])

    def fingerprints(self) -> dict[str, str]:
        """A short hash of each part, volatile state keys left out."""
        stable_state = {k: v for k, v in self.state.items() if k not in VOLATILE_STATE_KEYS}
        values = {**{part: getattr(self, part) for part in PARTS}, "state": stable_state}
        return {part: _digest(values[part]) for part in PARTS}

    def to_doc(self, now: datetime.datetime) -> dict[str, Any]:
        """The registry document; `dimension_flags` lets list queries AND
        dimensions with equality filters, which need no composite index."""
        return {
            "bot_id": self.bot_id,
            "dimensions": self.dimensions,
            "dimension_flags": {flag: True for flag in dims_lib.flatten(self.dimensions)},
            "state": self.state,
            "version": self.version,
            "task_id": self.task_id,
            "is_busy": self.task_id is not None,
            "quarantined": self.quarantined,
            "in_maintenance": self.maintenance_msg is not None,
            "maintenance_msg": self.maintenance_msg,
            "is_dead": False,
            "updated_ts": now,
        }


@dataclasses.dataclass(frozen=True)
class Session:
    """What the server last wrote for a bot, echoed back by the bot."""

    fingerprints: dict[str, str] = dataclasses.field(default_factory=dict)
    written: float = 0.0
    dimensions_written: float = 0.0

    @classmethod
    def decode(cls, raw: Any) -> "Session":
        """A missing or unreadable session is an empty one: the entry is
        simply written again."""
        if not isinstance(raw, str) or not raw:
            return cls()
        try:
            fields = json.loads(base64.urlsafe_b64decode(raw.encode()))
            return cls(fingerprints=dict(fields["f"]), written=float(fields["w"]),
                       dimensions_written=float(fields["d"]))
        except (ValueError, KeyError, TypeError, binascii.Error):
            return cls()

    def encode(self) -> str:
        fields = {"f": self.fingerprints, "w": self.written, "d": self.dimensions_written}
        return base64.urlsafe_b64encode(json.dumps(fields, separators=(",", ":")).encode()).decode()

    def changed_parts(self, entry: BotEntry) -> list[str]:
        current = entry.fingerprints()
        return [part for part in PARTS if self.fingerprints.get(part) != current[part]]

    def needs_write(self, changed: list[str], now: datetime.datetime) -> bool:
        """Whether the entry is written, given the parts that changed: at once
        for any but the state, which waits until `STATE_REWRITE_SECS` passed."""
        age = now.timestamp() - self.written
        if any(part != "state" for part in changed) or age >= REWRITE_SECS:
            return True
        return "state" in changed and age >= STATE_REWRITE_SECS

    def dimensions_stale(self, now: datetime.datetime) -> bool:
        return now.timestamp() - self.dimensions_written >= DIMENSIONS_REWRITE_SECS


def _digest(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]
