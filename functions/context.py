"""What the task life cycle's functions work with, in one value."""

import dataclasses

from functions.bot_store import BotStore
from functions.queues import QueueCache
from functions.store import Store
from functions.timers import Timers


@dataclasses.dataclass(frozen=True)
class Context:
    store: Store
    bots: BotStore
    timers: Timers
    queues: QueueCache
    lifo_pools: frozenset[str]
    #: How long a successful idempotent task is reused.
    dedup_max_age_secs: int
