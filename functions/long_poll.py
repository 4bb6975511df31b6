"""The long poll: a bot that asks for it (`Poll.hold_secs`) and has nothing to
do is held, up to the server's bound (`SWARMING_POLL_HOLD_SECS`), and answered
as soon as a pending slice is added to one of its queues, instead of sleeping
through a back-off of up to a minute.

The hold reads nothing per bot: it waits on the instance's listeners
(functions/pending_watch.py), which wake one held poll per slice added; that
poll asks the scheduler again (its queues too), whose poll never transacts,
and the claim stays the only commit. Every `RECHECK_SECS` a held poll also
looks whether a slice is left pending in its queues (the listeners'
snapshots: no read), and polls again if so: a task whose woken poll had lost
its client (a poll is read-only: the task stays pending) is picked up within
seconds too. A queue created during a hold (the first task of a new
dimension set) is found by the bot's next poll, at the end of the hold: a
look at the queues during the hold would refresh the instance's cache of
the pool's queue records every few seconds, at a read per record stamped
near the newest.
"""

import logging
import threading
from typing import Callable

from functions import ops
from functions.budget import Budget
from functions.pending_watch import PendingWatch
from shared.bot_api import PollReply, Sleep

logger = logging.getLogger(__name__)

#: What a hold that saw no task answers: poll again (and be held) at once.
AFTER_HOLD_SECS = 0.0
RECHECK_SECS = 10.0


def poll(answer: Callable[[bool], PollReply], queue_keys: Callable[[], list[str]], watch: PendingWatch,
         budget: Budget, most: int) -> PollReply:
    """`answer(fresh)` (the scheduler's poll; `fresh` after a wake: the new
    slice is in no read kept), held while it says sleep and time is left in
    `budget`; `queue_keys()`: the queues the bot takes from. A
    bot with no queue, or whose queues each have `most` polls held already
    by this instance, gets the scheduler's answer (its back-off): a held
    poll keeps an instance billed, and those held take the next tasks."""
    try:
        return _held(answer, queue_keys, watch, budget, most)
    finally:
        watch.tidy()
        ops.read(watch.take_reads())


def _held(answer: Callable[[bool], PollReply], queue_keys: Callable[[], list[str]], watch: PendingWatch,
          budget: Budget, most: int) -> PollReply:
    """The bot joins its queues' listeners only once the scheduler found it
    nothing: a poll that finds work (every poll of a busy fleet) keeps no
    listener open, and the instance's listeners stop `LINGER_SECS` after no
    poll waits on them (`PendingWatch.tidy`). A slice added between an
    answer's read and the join is in the listeners' snapshots (`mark`:
    what they had added before the read): the poll asks again at once."""
    reply = answer(False)
    if budget.over():
        return reply
    mark: dict[str, int] = {}  # The first answer read before any listener of this poll.
    while isinstance(reply, Sleep):
        keys = queue_keys()
        with watch.waiting(keys, most) as added:
            if not keys or added is None:
                return reply
            if not watch.added_since(keys, mark) and not _wait(added, keys, watch, budget):
                return Sleep(AFTER_HOLD_SECS, reply.session)
            mark = watch.additions(keys)
        if budget.over():  # Woken as the hold ends: the bot polls again at once.
            return Sleep(AFTER_HOLD_SECS, reply.session)
        reply = answer(True)
    return reply


def _wait(added: threading.Event, keys: list[str], watch: PendingWatch, budget: Budget) -> bool:
    """Waits until a slice added to `keys` is this poll's, or, at a look
    every RECHECK_SECS, one is left pending in them: True; False when the
    budget ran out first."""
    while not added.wait(min(RECHECK_SECS, budget.left())):
        if budget.over():
            return False
        if watch.pending(keys):
            return True
    return True
