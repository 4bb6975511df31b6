"""What the task life cycle's functions work with, in one value."""

import dataclasses
from typing import Callable

from functions.bot_store import BotStore
from functions.queues import QueueCache
from functions.store import Store
from functions.timers import Timers
from shared.service_config import ServiceConfig


@dataclasses.dataclass(frozen=True)
class Context:
    store: Store
    bots: BotStore
    timers: Timers
    queues: QueueCache
    #: The current service configuration (functions.config_source).
    config: Callable[[], ServiceConfig]
    #: How long a successful idempotent task is reused.
    dedup_max_age_secs: int

    def is_lifo(self, pool: str) -> bool:
        """Newest first: the pool's config says so."""
        found = self.config().pool(pool)
        return found is not None and found.lifo
