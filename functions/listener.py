"""Firestore listeners that cannot spin.

google-cloud-firestore's `on_snapshot` re-opens its stream as soon as it
fails, without limit (google-api-core's ResumableBidiRpc, made without
`throttle_reopen`). With Firestore unreachable each re-open fails at once:
a busy loop that takes a core and starts a thread per try, for as long as
the outage lasts. Worse, an unsubscribe that lands between a failure and its
re-open leaves that loop running for the life of the process.

`listen` makes the same listener with re-opens throttled (REOPENS per
WINDOW) and, once stopped, never re-opened. Both reach into the pinned
google-api-core's private attributes: tests/test_listener.py checks them
against a real emulator taken down under a listener.
"""

import datetime
import threading
from typing import Any, Callable

from google.api_core import bidi

#: At most this many re-opens of one listener's stream within WINDOW: a
#: stream Firestore ends now and then is re-opened at once, an outage costs a
#: few tries a window.
REOPENS = 3
WINDOW = datetime.timedelta(seconds=10)


def listen(query: Any, callback: Callable[[list[Any], list[Any], Any], None]) -> Callable[[], None]:
    """`query.on_snapshot(callback)`, throttled; returns what stops it for good."""
    watch = query.on_snapshot(callback)
    rpc = watch._rpc
    stopped = threading.Event()
    recover = rpc._should_recover
    rpc._should_recover = lambda error: not stopped.is_set() and recover(error)
    rpc._reopen_throttle = bidi._Throttle(access_limit=REOPENS, time_window=WINDOW)

    def stop() -> None:
        stopped.set()
        watch.unsubscribe()

    return stop
