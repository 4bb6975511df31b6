"""The heads of queues an instance reuses between polls (functions/heads.py):
only reads that found slices, for `reuse_secs`, never a slice claimed here,
never for a wider scan than was read, never when asked to read afresh."""

import datetime

from functions.heads import Heads
from functions.models import TaskToRun
from tests.builders import MonotonicClock

NOW = datetime.datetime.now(datetime.UTC)


class Queue:
    """A queue's pending slices, counting the reads made of it."""

    def __init__(self, count: int, key: str = "q") -> None:
        self.key = key
        self.slices = [TaskToRun(task_id=f"{key}{i:04d}0", slice_index=0, queue_key=key, order_key=f"100:{i:015d}",
                                 dimensions={}, expiration_ts=NOW) for i in range(count)]
        self.reads = 0

    def read(self, queue_keys: list[str], limit: int) -> list[TaskToRun]:
        assert queue_keys == [self.key]
        self.reads += 1
        return self.slices[:limit]


def _ids(slices: list[TaskToRun]) -> list[str]:
    return [t.task_id for t in slices]


def test_a_read_that_found_slices_is_reused_until_it_lapses():
    clock, queue = MonotonicClock(), Queue(3)
    heads = Heads(1.0, clock)
    first = heads.pending(["q"], 10, queue.read)
    queue.slices.append(TaskToRun(task_id="new0", slice_index=0, queue_key="q", order_key="000:0",
                                  dimensions={}, expiration_ts=NOW))
    clock.now += 0.9
    assert heads.pending(["q"], 10, queue.read) == first and queue.reads == 1
    clock.now += 0.1
    assert _ids(heads.pending(["q"], 10, queue.read)) == _ids(queue.slices) and queue.reads == 2


def test_an_empty_read_is_not_reused_so_a_new_task_is_seen_at_once():
    queue = Queue(0)
    heads = Heads(1.0, MonotonicClock())
    assert heads.pending(["q"], 10, queue.read) == []
    queue.slices = Queue(1).slices
    assert _ids(heads.pending(["q"], 10, queue.read)) == ["q00000"] and queue.reads == 2


def test_a_slice_claimed_here_is_never_offered_again_and_an_emptied_read_is_read_again():
    queue = Queue(2)
    heads = Heads(1.0, MonotonicClock())
    heads.pending(["q"], 10, queue.read)
    heads.forget("q00000", 0, gone=False)
    assert _ids(heads.pending(["q"], 10, queue.read)) == ["q00010"] and queue.reads == 1
    heads.forget("q00010", 0, gone=False)
    queue.slices = queue.slices[2:]
    assert heads.pending(["q"], 10, queue.read) == [] and queue.reads == 2


def test_a_wider_scan_reads_again_unless_the_read_had_the_whole_queue():
    clock, queue = MonotonicClock(), Queue(30)
    heads = Heads(1.0, clock)
    heads.pending(["q"], 10, queue.read)
    assert len(heads.pending(["q"], 5, queue.read)) == 5 and queue.reads == 1
    assert len(heads.pending(["q"], 20, queue.read)) == 20 and queue.reads == 2
    short = Queue(3)
    heads = Heads(1.0, clock)
    heads.pending(["q"], 10, short.read)
    assert len(heads.pending(["q"], 40, short.read)) == 3 and short.reads == 1


def test_fresh_reads_and_zero_reuses_nothing():
    queue = Queue(3)
    heads = Heads(1.0, MonotonicClock())
    heads.pending(["q"], 10, queue.read)
    heads.pending(["q"], 10, queue.read, fresh=True)
    assert queue.reads == 2
    never = Heads(0.0, MonotonicClock())
    for _ in range(3):
        never.pending(["q"], 10, queue.read)
    assert queue.reads == 5


def test_reads_are_kept_per_set_of_queues():
    queue = Queue(3)
    heads = Heads(1.0, MonotonicClock())
    heads.pending(["q"], 10, queue.read)
    other = Queue(1, "r")
    assert _ids(heads.pending(["r"], 10, other.read)) == ["r00000"]
    assert _ids(heads.pending(["q"], 10, queue.read)) == _ids(queue.slices) and queue.reads == 1


def test_a_read_that_stopped_at_its_limit_is_read_again_when_it_has_nothing_to_offer():
    deep, shallow = Queue(30), Queue(3)
    heads = Heads(1.0, MonotonicClock())
    heads.pending(["q"], 10, deep.read)
    assert len(heads.pending(["q"], 10, deep.read, offers_any=lambda kept: False)) == 10 and deep.reads == 2
    heads.pending(["q"], 10, shallow.read, fresh=True)
    assert len(heads.pending(["q"], 10, shallow.read, offers_any=lambda kept: False)) == 3 and shallow.reads == 1


def test_a_read_that_offered_a_slice_already_gone_is_dropped():
    queue, other = Queue(3), Queue(2, "r")
    heads = Heads(1.0, MonotonicClock())
    heads.pending(["q"], 10, queue.read)
    heads.pending(["r"], 10, other.read)
    heads.forget("q00010", 0, gone=True)
    assert _ids(heads.pending(["q"], 10, queue.read)) == _ids(queue.slices) and queue.reads == 2
    assert len(heads.pending(["r"], 10, other.read)) == 2 and other.reads == 1
