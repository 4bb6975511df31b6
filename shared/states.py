"""Task states and what each means for the exit code of `swarming collect`."""

from __future__ import annotations

import enum


class State(str, enum.Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    TIMED_OUT = "TIMED_OUT"
    BOT_DIED = "BOT_DIED"
    EXPIRED = "EXPIRED"
    CANCELED = "CANCELED"
    KILLED = "KILLED"
    NO_RESOURCE = "NO_RESOURCE"
    CLIENT_ERROR = "CLIENT_ERROR"

    @property
    def is_final(self) -> bool:
        return self not in (State.PENDING, State.RUNNING)
