"""A long request's time budget. `cron_sweep` and `tasks_cancel` are fast only
while each Firestore call takes milliseconds; they look at the budget between
units of work, stop when it is spent and leave the rest to a follow-up call,
well within a Cloud Function's timeout."""

import time
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")

#: A third of a function's 60 s default timeout: the rest is room for the unit
#: of work under way when the budget runs out, and for the answer.
REQUEST_SECS = 20.0


class Budget:
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._end = clock() + seconds
        #: Whether work was left undone for want of time.
        self.stopped = False

    def over(self) -> bool:
        """Asked before a unit of work: True (and `stopped`) once the time is spent."""
        self.stopped = self.stopped or self._clock() >= self._end
        return self.stopped

    def left(self) -> float:
        """Seconds until the budget is spent (0 past it)."""
        return max(0.0, self._end - self._clock())

    def each(self, items: Iterable[T]) -> Iterator[T]:
        """The items while time remains: none past the budget."""
        for item in items:
            if self.over():
                return
            yield item
