"""Bot events to the server (`bot_event`, PROTOCOL.md) and the process-wide
handler that reports unhandled exceptions (seed 000, "Error reporting").

`Reporter.report()` never raises and never floods: errors and log lines are
rate-limited, so that a hook failing on every poll costs the server a few
events a minute, not one per poll.
"""

from __future__ import annotations

import collections
import logging
import os
import sys
import threading
import time
import traceback
from types import TracebackType
from typing import Any, Callable

logger = logging.getLogger(__name__)

BOT_ERROR, BOT_LOG, BOT_REBOOTING, BOT_SHUTDOWN = "bot_error", "bot_log", "bot_rebooting", "bot_shutdown"
EVENTS = (BOT_ERROR, BOT_LOG, BOT_REBOOTING, BOT_SHUTDOWN)
#: Once in a bot's life each: never dropped by the rate limit.
UNLIMITED = (BOT_REBOOTING, BOT_SHUTDOWN)
#: The server keeps 10,000 characters of a message; a traceback's end matters most.
MAX_MESSAGE = 9_000
_HEAD = 1_000

Post = Callable[[str, str], Any]
Report = Callable[[str, str], Any]


class Reporter:
    """Sends events through `post(event, message)`, which should call the
    server's `bot_event` with the bot's attributes, `event` and `message` (and
    may raise: a failed post is logged and forgotten).

    At most `limit` rate-limited events go out in any `window` seconds; the rest
    are dropped and counted, and the next event that goes out says how many."""

    def __init__(self, post: Post, *, limit: int = 10, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self._post = post
        self._limit = limit  # Rate-limited events allowed per window.
        self._window = window  # Seconds.
        self._clock = clock
        self._lock = threading.Lock()  # Guards the three fields below; never held while posting.
        # When the recent rate-limited events went out, oldest first.
        self._sent: collections.deque[float] = collections.deque()
        self._pending_drops = 0  # Dropped since the last event that went out.
        self.dropped = 0  # Dropped in all.
        # Set while this thread posts: building the attributes of a post can
        # itself fail and report (a get_state hook that raises), which must not
        # recurse into another post.
        self._posting = threading.local()

    def report(self, event: str, message: str) -> bool:
        """True when the event was sent. Raises ValueError on an unknown event
        type, a bug of the caller's; never raises otherwise."""
        if event not in EVENTS:
            raise ValueError(f"unknown bot event {event!r}: must be one of {', '.join(EVENTS)}")
        log = logger.error if event == BOT_ERROR else logger.info
        log("%s: %s", event, message)
        if getattr(self._posting, "active", False):
            logger.warning("%s raised while reporting an event: not sent", event)
            return False
        with self._lock:
            if event not in UNLIMITED:
                now = self._clock()
                while self._sent and self._sent[0] <= now - self._window:
                    self._sent.popleft()
                if len(self._sent) >= self._limit:
                    self._pending_drops += 1
                    self.dropped += 1
                    return False
                self._sent.append(now)
            drops, self._pending_drops = self._pending_drops, 0
        if drops:
            message = f"{message}\n({drops} earlier event(s) dropped by the bot's rate limit)"
        self._posting.active = True
        try:
            self._post(event, truncate(message))
        except Exception as e:  # The server or the network: the event is lost, the bot goes on.
            logger.warning("%s could not be sent: %r", event, e)
            return False
        finally:
            self._posting.active = False
        return True

    def error(self, message: str) -> bool:
        return self.report(BOT_ERROR, message)


def truncate(message: str, limit: int = MAX_MESSAGE) -> str:
    """Keeps the start and the end of a long message: a traceback's last lines
    say what failed."""
    if len(message) <= limit:
        return message
    return message[:_HEAD] + "\n[...]\n" + message[-(limit - _HEAD - 7):]


def install_excepthook(reporter: Reporter) -> Callable[[], None]:
    """Reports every otherwise unhandled exception, in the main thread or any
    other, as a `bot_error` with its traceback, then hands it on to the hook
    that was there before (which prints it). Returns a function that puts the
    previous hooks back."""
    previous_sys = sys.excepthook
    previous_threading = threading.excepthook

    def sys_hook(exc_type: type[BaseException], exc: BaseException,
                 tb: TracebackType | None) -> None:
        if not issubclass(exc_type, KeyboardInterrupt):
            _report_unhandled(reporter, threading.current_thread().name, exc_type, exc, tb)
        previous_sys(exc_type, exc, tb)

    def threading_hook(args: Any) -> None:
        if not issubclass(args.exc_type, SystemExit):  # Ignored by Python too.
            name = args.thread.name if args.thread is not None else "a thread"
            _report_unhandled(reporter, name, args.exc_type, args.exc_value, args.exc_traceback)
        previous_threading(args)

    sys.excepthook = sys_hook
    threading.excepthook = threading_hook

    def uninstall() -> None:
        sys.excepthook = previous_sys
        threading.excepthook = previous_threading

    return uninstall


def _report_unhandled(reporter: Reporter, thread: str, exc_type: type[BaseException],
                      exc: BaseException | None, tb: TracebackType | None) -> None:
    try:
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        reporter.report(BOT_ERROR, f"unhandled exception in thread {thread!r} "
                                   f"(pid {os.getpid()}):\n{text}")
    except Exception:  # An excepthook that raises hides the original error.
        logger.exception("the unhandled exception could not be reported")
