"""The emulator's settings and the production limits and defaults it applies."""

import dataclasses

DAY = 24 * 3600.0

#: Production defaults for what a queue or task leaves unset.
DEFAULT_MAX_DISPATCHES_PER_SECOND = 500.0
DEFAULT_MAX_BURST_SIZE = 100
DEFAULT_MAX_ATTEMPTS = 100
DEFAULT_MIN_BACKOFF = 0.1
DEFAULT_MAX_BACKOFF = 3600.0
DEFAULT_MAX_DOUBLINGS = 16
DEFAULT_DISPATCH_DEADLINE = 600.0

#: Production limits; requests beyond them fail with INVALID_ARGUMENT.
MAX_DISPATCHES_PER_SECOND = 500.0
MAX_CONCURRENT_DISPATCHES = 5000
MAX_DISPATCH_DEADLINE = 1800.0
MAX_SCHEDULE_AHEAD = 30 * DAY
MAX_TASK_BYTES = 1024 * 1024
MAX_URL_LENGTH = 2083
MAX_TASKS_PAGE = 1000
MAX_QUEUES_PAGE = 9800


@dataclasses.dataclass(frozen=True)
class Settings:
    #: How long the name of a delivered or deleted task cannot be reused (production: about an hour).
    task_tombstone_seconds: float = 3600.0
    #: How long the name of a deleted queue cannot be reused (production: 7 days).
    queue_tombstone_seconds: float = 7 * DAY
    #: For queues created without one; production picks 1,000, too many threads for a laptop.
    max_concurrent_dispatches: int = 20
    #: Production refuses a dispatch deadline under 15 s; tests of deadlines lower it.
    min_dispatch_deadline: float = 15.0
    #: Threads that send HTTP requests, shared by all queues.
    workers: int = 100
