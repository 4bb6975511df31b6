"""Errors of the bot's own, raised across its modules."""

from __future__ import annotations

from typing import Sequence

from shared.cas import Digest
from shared.errors import SwarmingError


class TaskError(SwarmingError):
    """The bot could not run a task for a reason of its own, not the command's:
    reported with `bot_task_error` (BOT_DIED, or CLIENT_ERROR when inputs
    named in `missing_cas` were missing)."""

    def __init__(self, message: str, missing_cas: Sequence[Digest] | None = None):
        super().__init__(message)
        self.message = message
        self.missing_cas = missing_cas
