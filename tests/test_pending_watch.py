"""The instance's listeners that held polls wait on (functions/pending_watch.py),
over a fake `listen`: no service, the clock injected."""

import threading
from typing import Callable

from functions.pending_watch import PendingWatch

MOST = 10


class FakeListen:
    """Stands in for Store.watch_pending: records each listener, and sends its
    first snapshot at once unless told not to."""

    def __init__(self, first_snapshot: bool = True, fail: bool = False):
        self.first_snapshot = first_snapshot
        self.fail = fail
        self.callbacks: dict[str, Callable[[int, int, int], None]] = {}
        self.opened: list[str] = []
        self.stopped: list[str] = []

    def __call__(self, key: str, on_change: Callable[[int, int, int], None]) -> Callable[[], None]:
        if self.fail:
            raise RuntimeError("no listener today")
        self.opened.append(key)
        self.callbacks[key] = on_change
        if self.first_snapshot:
            on_change(3, 3, 3)  # Three slices already pending: none of them new.
        return lambda: self.stopped.append(key)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_many_waiters_share_one_listener_per_queue_and_an_addition_wakes_the_longest_waiting_of_its_queue():
    listen = FakeListen()
    watch = PendingWatch(listen, Clock())
    with watch.waiting(["p:a", "p:b"], MOST) as first, watch.waiting(["p:a"], MOST) as second, \
            watch.waiting(["p:b"], MOST) as third:
        assert sorted(listen.opened) == ["p:a", "p:b"]
        assert not (first.is_set() or second.is_set() or third.is_set())  # The first snapshot is no addition.
        listen.callbacks["p:a"](1, 4, 1)
        assert first.is_set() and not second.is_set() and not third.is_set()
        listen.callbacks["p:a"](1, 5, 1)  # The next one goes to the next waiting.
        assert second.is_set() and not third.is_set()
        listen.callbacks["p:b"](2, 5, 2)  # `first` already has one: `third` alone is left.
        assert third.is_set()
    assert watch.take_reads() == 3 + 3 + 1 + 1 + 2
    assert watch.take_reads() == 0


def test_as_many_are_woken_as_slices_were_added():
    listen = FakeListen()
    watch = PendingWatch(listen, Clock())
    with watch.waiting(["p:a"], MOST) as a, watch.waiting(["p:a"], MOST) as b, watch.waiting(["p:a"], MOST) as c:
        listen.callbacks["p:a"](2, 5, 2)
        assert [a.is_set(), b.is_set(), c.is_set()] == [True, True, False]


def test_what_is_pending_is_known_from_the_last_snapshot():
    listen = FakeListen()
    watch = PendingWatch(listen, Clock())
    with watch.waiting(["p:a", "p:b"], MOST):
        assert watch.pending(["p:a"])  # The first snapshot had three.
        listen.callbacks["p:a"](0, 0, 0)
        listen.callbacks["p:b"](0, 0, 0)
        assert not watch.pending(["p:a", "p:b"]) and not watch.pending(["p:c"])


def test_what_came_since_a_mark_is_known_and_a_queue_without_a_mark_is_judged_by_what_is_pending():
    listen = FakeListen()
    watch = PendingWatch(listen, Clock())
    with watch.waiting(["p:a", "p:b"], MOST):
        mark = watch.additions(["p:a"])
        assert not watch.added_since(["p:a"], mark)
        listen.callbacks["p:a"](0, 2, 1)  # One claimed: nothing came.
        assert not watch.added_since(["p:a"], mark)
        listen.callbacks["p:a"](1, 3, 1)
        assert watch.added_since(["p:a"], mark)
        assert watch.added_since(["p:b"], mark)  # No mark: the three of its first snapshot are pending.
        listen.callbacks["p:b"](0, 0, 0)
        assert not watch.added_since(["p:b"], mark)


def test_a_change_that_adds_nothing_wakes_no_one_but_is_billed():
    listen = FakeListen()
    watch = PendingWatch(listen, Clock())
    with watch.waiting(["p:a"], MOST) as added:
        listen.callbacks["p:a"](0, 3, 2)  # Two pending slices changed, none added.
        assert not added.is_set()
    assert watch.take_reads() == 3 + 2


def test_a_listener_outlives_its_last_waiter_by_the_linger_then_stops():
    listen, clock = FakeListen(), Clock()
    watch = PendingWatch(listen, clock, linger_secs=60)
    with watch.waiting(["p:a"], MOST):
        pass
    clock.now += 30
    with watch.waiting(["p:a"], MOST):
        pass
    assert listen.opened == ["p:a"] and listen.stopped == []  # Came back within the linger: the same listener.
    clock.now += 61
    with watch.waiting(["p:b"], MOST):
        assert listen.stopped == ["p:a"] and watch.listening() == ["p:b"]
    with watch.waiting(["p:a"], MOST):
        assert listen.opened == ["p:a", "p:b", "p:a"]


def test_a_listener_no_poll_waits_on_stops_after_the_linger_though_no_poll_joins_again():
    """A busy queue: every poll finds work and joins no listener
    (functions/long_poll.py); the one left from the last hold stops all the same."""
    listen, clock = FakeListen(), Clock()
    watch = PendingWatch(listen, clock, linger_secs=10)
    with watch.waiting(["p:a"], MOST):
        pass
    clock.now += 9
    watch.tidy()
    assert listen.stopped == [] and watch.listening() == ["p:a"]
    clock.now += 1
    watch.tidy()
    assert listen.stopped == ["p:a"] and watch.listening() == []


def test_a_listener_with_a_waiter_is_never_stopped():
    listen, clock = FakeListen(), Clock()
    watch = PendingWatch(listen, clock, linger_secs=1)
    with watch.waiting(["p:a"], MOST) as added:
        clock.now += 100
        with watch.waiting(["p:b"], MOST):
            pass
        clock.now += 100
        with watch.waiting(["p:c"], MOST):
            pass
        watch.tidy()
        assert "p:a" in watch.listening() and "p:a" not in listen.stopped
        listen.callbacks["p:a"](1, 4, 1)
        assert added.is_set()


def test_an_addition_before_the_first_snapshot_is_in_that_snapshot_and_wakes_no_one():
    """The poll reads after the snapshot: what the snapshot holds, the poll sees."""
    listen = FakeListen(first_snapshot=False)
    watch = PendingWatch(listen, Clock())
    entered = threading.Event()

    def wait() -> None:
        with watch.waiting(["p:a"], MOST) as added:
            entered.set()
            assert not added.wait(0.2)

    waiter = threading.Thread(target=wait)
    waiter.start()
    assert not entered.wait(0.2)  # Still waiting for the first snapshot.
    listen.callbacks["p:a"](1, 1, 1)
    assert entered.wait(5)
    waiter.join(5)
    assert not waiter.is_alive()


def test_a_queue_that_cannot_be_listened_to_leaves_the_waiter_to_its_hold():
    watch = PendingWatch(FakeListen(fail=True), Clock())
    with watch.waiting(["p:a"], MOST) as added:
        assert not added.wait(0.05)
    assert watch.listening() == []


def test_past_the_most_waiters_of_every_queue_a_poll_is_not_held():
    watch = PendingWatch(FakeListen(), Clock())
    with watch.waiting(["p:a"], 2) as first, watch.waiting(["p:a"], 2) as second:
        with watch.waiting(["p:a"], 2) as third:
            assert first is not None and second is not None and third is None
        with watch.waiting(["p:a", "p:b"], 2) as elsewhere:  # p:b still needs one.
            assert elsewhere is not None
    with watch.waiting(["p:a"], 2) as again:
        assert again is not None


def test_a_poll_with_no_queue_waits_on_nothing():
    watch = PendingWatch(FakeListen(), Clock())
    with watch.waiting([], MOST) as added:
        assert added is not None and watch.listening() == []


def test_closing_stops_every_listener_lingering_or_not():
    listen = FakeListen()
    watch = PendingWatch(listen, Clock())
    with watch.waiting(["p:a"], MOST):
        pass  # Its listener lingers, for the next poll.
    with watch.waiting(["p:b"], MOST):
        watch.close()
    assert sorted(listen.stopped) == ["p:a", "p:b"] and watch.listening() == []
