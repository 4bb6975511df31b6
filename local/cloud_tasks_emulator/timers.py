"""Due times of all tasks, in one heap watched by one thread."""

import heapq
import logging
import threading
import time
from typing import Callable

logger = logging.getLogger(__name__)

#: Called with (task name, timer token) when a timer is due.
Fire = Callable[[str, int], None]


class Timers:
    """One thread sleeps on a Condition until the earliest due time, or until
    an earlier one is scheduled: no polling, so thousands of future tasks cost
    nothing while they wait. Timers are never cancelled; the callee ignores a
    token that is no longer its task's."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str]] = []
        self._changed = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def schedule(self, due: float, name: str, token: int) -> None:
        with self._changed:
            heapq.heappush(self._heap, (due, token, name))
            if self._heap[0][1] == token:
                self._changed.notify()

    def start(self, fire: Fire) -> None:
        self._thread = threading.Thread(target=self._run, args=(fire,), name="timers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify()
        if self._thread is not None:
            self._thread.join()

    def _run(self, fire: Fire) -> None:
        while (due := self._next_due()) is not None:
            _, token, name = due
            try:
                fire(name, token)
            except Exception:
                logger.exception("dispatching %s failed", name)

    def _next_due(self) -> tuple[float, int, str] | None:
        """Waits for the earliest timer to be due and pops it; None once stopped."""
        with self._changed:
            while not self._stopped:
                wait = self._heap[0][0] - time.time() if self._heap else None
                if wait is not None and wait <= 0:
                    return heapq.heappop(self._heap)
                self._changed.wait(wait)
            return None
