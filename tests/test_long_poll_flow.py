"""When a poll joins the listeners, and when it asks the scheduler again
(functions/long_poll.py), over a fake scheduler and a fake `listen`: no
service. tests/test_long_poll.py runs the hold over the local stack."""

import threading
import time

import pytest

from functions import long_poll
from functions.budget import Budget
from functions.pending_watch import PendingWatch
from shared.bot_api import Candidate, Claim, PollReply, Sleep
from tests.test_pending_watch import Clock, FakeListen

KEYS = ["p:a"]
MOST = 10
WORK = Claim((Candidate("task-1"),))
BACK_OFF = Sleep(5.0, "session")


class Scheduler:
    """Answers from a script, recording whether each answer was asked fresh."""

    def __init__(self, *replies: PollReply):
        self.replies = list(replies)
        self.asked: list[bool] = []
        self.before_answer = lambda: None

    def __call__(self, fresh: bool) -> PollReply:
        self.asked.append(fresh)
        self.before_answer()
        return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]


def _poll(scheduler: Scheduler, watch: PendingWatch, hold: float = 5.0) -> PollReply:
    return long_poll.poll(scheduler, lambda: KEYS, watch, Budget(hold), MOST)


@pytest.fixture(autouse=True)
def _no_look_of_their_own(monkeypatch):
    monkeypatch.setattr(long_poll, "RECHECK_SECS", 60.0)


def test_a_poll_that_finds_work_opens_no_listener():
    listen = FakeListen()
    assert _poll(Scheduler(WORK), PendingWatch(listen, Clock())) is WORK
    assert listen.opened == []


def test_a_slice_added_between_the_answer_and_the_join_is_asked_for_at_once_and_fresh():
    """The listener's first snapshot holds slices the answer's read did not see."""
    listen, scheduler = FakeListen(), Scheduler(BACK_OFF, WORK)
    start = time.monotonic()
    assert _poll(scheduler, PendingWatch(listen, Clock())) is WORK
    assert scheduler.asked == [False, True] and listen.opened == KEYS
    assert time.monotonic() - start < 2  # Liveness: asked again, not held.


def test_slices_pending_that_the_fresh_answer_still_does_not_offer_hold_the_poll_without_asking_again():
    """Pending but not this bot's (another bot's offer, a retry kept from
    it): one fresh answer, then the hold, not a loop of answers."""
    listen, scheduler = FakeListen(), Scheduler(BACK_OFF)
    reply = _poll(scheduler, PendingWatch(listen, Clock()), hold=0.5)
    assert reply == Sleep(long_poll.AFTER_HOLD_SECS, "session")
    assert scheduler.asked == [False, True]


def test_a_slice_added_while_a_fresh_answer_read_is_asked_for_at_once_too():
    """The poll is no waiter while it asks: an addition then wakes no one,
    but the poll sees it once it joins again, not at its next look."""
    listen, scheduler = FakeListen(), Scheduler(BACK_OFF, BACK_OFF, WORK)

    def an_addition_during_the_second_answer() -> None:
        if len(scheduler.asked) == 2:
            listen.callbacks["p:a"](1, 4, 1)

    scheduler.before_answer = an_addition_during_the_second_answer
    start = time.monotonic()
    assert _poll(scheduler, PendingWatch(listen, Clock())) is WORK
    assert scheduler.asked == [False, True, True]
    assert time.monotonic() - start < 2  # Liveness: not held until its next look (60 s here).


def test_on_an_empty_queue_the_poll_waits_for_an_addition_then_asks_fresh():
    listen, scheduler = FakeListen(first_snapshot=False), Scheduler(BACK_OFF, WORK)
    watch = PendingWatch(listen, Clock())
    snapshot_sent = threading.Event()

    def first_snapshot_then_an_addition() -> None:
        while "p:a" not in listen.callbacks:
            time.sleep(0.01)
        listen.callbacks["p:a"](0, 0, 1)
        snapshot_sent.set()
        time.sleep(0.2)
        assert scheduler.asked == [False]  # Held: nothing pending.
        listen.callbacks["p:a"](1, 1, 1)

    sender = threading.Thread(target=first_snapshot_then_an_addition)
    sender.start()
    assert _poll(scheduler, watch) is WORK
    sender.join(5)
    assert snapshot_sent.is_set() and scheduler.asked == [False, True]


def test_a_poll_past_its_budget_is_answered_as_the_scheduler_said_and_joins_nothing():
    listen = FakeListen()
    assert _poll(Scheduler(BACK_OFF), PendingWatch(listen, Clock()), hold=0.0) is BACK_OFF
    assert listen.opened == []
