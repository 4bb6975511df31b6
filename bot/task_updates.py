"""A run's updates to the server, sent on a thread of their own: the
command's output at exact byte offsets, the keepalives, the end.

The task runner supervises the command (timeouts, stops, the grace period)
on its main thread, which never waits on the network: it reads here what the
server last said (stop, or the run is no longer this bot's), while the sends
and their retries (minutes, when the server is away) go on beside it.

The output the server has not acknowledged is held in memory up to a bound:
past it, its reader stops reading the command's pipe and the command waits
on its writes, as on a full terminal, until the server takes some. The
offsets stay exact: nothing is dropped while the command runs.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import IO, Callable, Protocol

from bot.remote import RunGone
from shared.api_error import ApiError
from shared.bot_api import Completion, TaskUpdateReply, Update

logger = logging.getLogger(__name__)

#: Sends one update; the server's reply says whether the task must stop.
Send = Callable[[Update], TaskUpdateReply]
Clock = Callable[[], float]

_READ_SIZE = 64 * 1024


class Pace(Protocol):
    """How often updates go (the task runner's Timings)."""

    output_interval: float  # New output is sent at most this often.
    keepalive: float  # A silent task still updates this often.
    max_packet: int  # Output bytes per update.
    tick: float  # How soon a request to send (now, the end, stop) is acted on.
    max_report_backoff: float  # Between resends of the end.


class Output:
    """The command's merged stdout and stderr, read from its pipe on a thread
    so that the command never waits on the server, up to `limit` bytes not
    yet acknowledged."""

    def __init__(self, clock: Clock, limit: float) -> None:
        self._clock = clock
        self._limit = limit
        self._room = threading.Condition()
        self._pending = bytearray()  # Read, not yet acknowledged by the server.
        self._last_read: float | None = None  # When output last came: the I/O timeout counts from it.
        self._full = False  # The reader waits for room: the command is not silent, the server is.
        self._dropping = False  # Past the drain after the exit: what still comes is dropped.
        self._reader: threading.Thread | None = None

    def start(self, pipe: IO[bytes]) -> None:
        self._reader = threading.Thread(target=self._read, args=(pipe,), name="task-output", daemon=True)
        self._reader.start()

    def _read(self, pipe: IO[bytes]) -> None:
        with pipe:
            while chunk := pipe.read(_READ_SIZE):
                self.append(chunk)

    def append(self, data: bytes) -> None:
        with self._room:
            while len(self._pending) >= self._limit and not self._dropping:
                self._full = True
                self._room.wait()
            self._full = False
            if not self._dropping:
                self._pending += data
            self._last_read = self._clock()

    def finish(self, drain: float) -> bool:
        """After the command's end, the rest of its output: the bound is lifted
        (what is left is what its pipe holds), and what has not come after
        `drain` seconds (from a process that outlived the task) is dropped.
        True when the pipe reached its end."""
        with self._room:
            self._limit = math.inf
            self._room.notify_all()
        if self._reader:
            self._reader.join(drain)
        closed = not (self._reader and self._reader.is_alive())
        with self._room:
            self._dropping = not closed
        return closed

    def last_output(self, default: float) -> float:
        """When output last came, or `default` (the start) if none has; now,
        while the command waits for room."""
        with self._room:
            if self._full:
                return self._clock()
            return default if self._last_read is None else self._last_read

    def has_pending(self) -> bool:
        with self._room:
            return bool(self._pending)

    def peek(self, limit: int) -> tuple[bytes, bool]:
        """Up to `limit` pending bytes, and whether more are pending after them."""
        with self._room:
            return bytes(self._pending[:limit]), len(self._pending) > limit

    def drop(self, count: int) -> None:
        """The server has the first `count` pending bytes."""
        with self._room:
            del self._pending[:count]
            self._room.notify_all()


class Reporter:
    """Sends a run's updates on its thread, from `start` to the end (or
    `close`): pending output every `output_interval`, a keepalive every
    `keepalive`, an update at once when asked (`update_now`), the end until
    the server has it. A failed update keeps its offset for the next one."""

    def __init__(self, send: Send, output: Output, pace: Pace, clock: Clock, name: str):
        self._send = send
        self._output = output
        self._pace = pace
        self._clock = clock
        self._name = name  # For logs: the task and the bot.
        self._state = threading.Condition()
        self._wake = threading.Event()
        self._asked = 0  # Updates asked for by `update_now` ...
        self._answered = 0  # ... and how many of them were attempted.
        self._end: tuple[Completion | None, bool] | None = None  # (completion, canceled), once queued.
        self._over = False  # Nothing more to send: the end went through, the run is gone, or `close`.
        self._reported = False  # The end reached the server.
        self._last_send = clock()  # When the last update was attempted.
        self.sent = 0  # Output bytes the server has: the offset of the next packet.
        #: Why the server wants the task stopped, once it said so.
        self.stop_reason: str | None = None
        #: Why the run is no longer this bot's (404, 409), once the server said so: nothing more is sent.
        self.gone: str | None = None
        self._failure: Exception | None = None  # A bug of the runner's that ended the sending.
        self._thread = threading.Thread(target=self._loop, name="task-updates", daemon=True)

    def start(self) -> None:
        self._last_send = self._clock()
        self._thread.start()

    def update_now(self, timeout: float) -> None:
        """Sends an update at once, and returns once it was attempted, or
        after `timeout` (it goes on meanwhile)."""
        with self._state:
            self._asked += 1
            asked = self._asked
        self._wake.set()
        with self._state:
            self._state.wait_for(lambda: self._answered >= asked or self._over, timeout)

    def end(self, patience: float, completion: Completion | None = None, canceled: bool = False) -> bool:
        """Sends the end (the completion, or the cancellation of a command
        never started) after all the output, resending it until the server has
        it: a lost end would leave the task running with its exit code gone.
        Gives up when the run is no longer this bot's, or after `patience`."""
        with self._state:
            self._end = (completion, canceled)
        self._wake.set()
        with self._state:
            self._state.wait_for(lambda: self._over, patience)
            reported = self._reported
        self.close()
        self.check()
        return reported

    def check(self) -> None:
        """Raises the exception that ended the sending, when it was no failure
        of the server's but a bug of the runner's: the task must fail with it."""
        if self._failure is not None:
            raise self._failure

    def close(self) -> None:
        """Sends nothing more (an update on its way still goes)."""
        with self._state:
            self._over = True
            self._state.notify_all()
        self._wake.set()

    def _loop(self) -> None:
        retry_at, backoff = -math.inf, self._pace.tick
        while True:
            self._wake.wait(self._pace.tick)
            self._wake.clear()
            with self._state:
                if self._over:
                    return
                end, asked = self._end, self._asked
            now = self._clock()
            due = now >= retry_at if end is not None else self._due(now)
            if not (due or asked > self._answered):
                continue
            try:
                sent = self._flush(end)
            except Exception as e:  # Raised to the runner by `check`.
                logger.exception("%s: sending the updates failed", self._name)
                with self._state:
                    self._failure, self._over = e, True
                    self._state.notify_all()
                return
            with self._state:
                self._answered = asked
                self._over = self._over or self.gone is not None or (end is not None and sent)
                self._reported = end is not None and sent
                self._state.notify_all()
            if end is not None and not sent:
                retry_at, backoff = now + backoff, min(backoff * 2, self._pace.max_report_backoff)

    def _due(self, now: float) -> bool:
        since = now - self._last_send
        return since >= self._pace.keepalive or (self._output.has_pending()
                                                 and since >= self._pace.output_interval)

    def _flush(self, end: tuple[Completion | None, bool] | None) -> bool:
        """Sends the pending output in packets of at most max_packet bytes, the
        end riding on the last one. With no output pending one update still
        goes (the first one, a keepalive or the end). False when an update
        failed: what it carried stays pending, for the same offset."""
        completion, canceled = end or (None, False)
        while self.gone is None and not self._over:
            data, more = self._output.peek(self._pace.max_packet)
            update = Update(self.sent, data, None if more else completion, canceled=canceled and not more)
            if not self._send_update(update):
                return False
            self._output.drop(len(data))
            self.sent += len(data)
            if not more:
                return True
        return False

    def _send_update(self, update: Update) -> bool:
        self._last_send = self._clock()
        try:
            reply = self._send(update)
        except RunGone as e:
            logger.warning("%s: the run is no longer this bot's: %s", self._name, e)
            self.gone = str(e)
            return False
        except ApiError as e:
            logger.warning("%s: update at offset %d failed, will resend: %s", self._name, update.offset, e)
            return False
        if reply.must_stop:
            self.stop_reason = reply.stop_reason or "stopped by the server"
        return True
