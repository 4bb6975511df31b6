"""Turning due timers into HTTP attempts on a bounded pool of threads."""

import logging
import queue
import threading
from typing import Callable

from google.rpc import code_pb2

from local.cloud_tasks_emulator.delivery import Outcome, Sender
from local.cloud_tasks_emulator.model import Dispatch
from local.cloud_tasks_emulator.store import Store

logger = logging.getLogger(__name__)


Job = Callable[[], None]


class WorkerPool:
    """Up to `size` threads, a new one whenever a job finds none idle, so that
    a hung job never delays another until the pool is full. Daemon threads,
    unlike concurrent.futures' workers, so that a handler hung until its
    deadline never keeps the process from exiting."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        #: Workers waiting for a job that no submit has claimed yet.
        self._idle = 0
        self._lock = threading.Lock()

    def submit(self, job: Job) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1
            elif len(self._threads) < self._size:
                thread = threading.Thread(target=self._work, args=(job,), daemon=True,
                                          name=f"worker-{len(self._threads)}")
                self._threads.append(thread)
                thread.start()
                return
            self._jobs.put(job)

    def stop(self) -> None:
        """Ends idle workers; busy ones end with their request, or with the process."""
        with self._lock:
            for _ in self._threads:
                self._jobs.put(None)

    def _work(self, job: Job | None) -> None:
        while job is not None:
            try:
                job()
            except Exception:
                logger.exception("a dispatch job failed")
            with self._lock:
                self._idle += 1
            job = self._jobs.get()


class Dispatcher:
    def __init__(self, store: Store, sender: Sender, pool: WorkerPool) -> None:
        self._store = store
        self._sender = sender
        self._pool = pool

    def on_due(self, name: str, token: int) -> None:
        """The timers' callback."""
        if (dispatch := self._store.begin(name, token)) is not None:
            self._submit(dispatch)

    def _submit(self, dispatch: Dispatch) -> None:
        self._pool.submit(lambda: self._attempt(dispatch))

    def _attempt(self, dispatch: Dispatch) -> None:
        try:
            outcome = self._sender.send(dispatch)
        except Exception as error:  # recorded as a failed attempt, so the dispatch slot is freed
            logger.exception("sending %s failed", dispatch.task.name)
            outcome = Outcome(None, code_pb2.INTERNAL, f"emulator error: {error}")
        for follower in self._store.finish(dispatch, outcome):
            self._submit(follower)
