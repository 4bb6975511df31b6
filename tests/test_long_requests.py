"""Long requests bounded by a time budget (functions.budget), with every
Firestore and Cloud Tasks call made `DELAY` slower: each request returns
within its budget and one unit of work, and the calls that follow finish the
work, nothing done twice and nothing left out."""

import datetime
import time
from typing import Any, Callable

import pytest

from functions import budget, ops, sweep
from tests.test_lifecycle import _claim, _drop_timers, _result, _task

#: What every Firestore or Cloud Tasks call takes more (a far region's latency).
DELAY = 0.03
#: The requests' budgets here (20 s in production); a sweep's is more than
#: its 34 calls at DELAY take with nothing to do (about 1.3 s).
BUDGET = 0.5
SWEEP_BUDGET = 2.0
#: The most a unit of work (a cancel, an expiry: a few calls) and the HTTP around it take more than the budget.
UNIT = 0.4
MINUTE = datetime.timedelta(minutes=1)


@pytest.fixture
def slow_down(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """From the call on: requests have the budget given, and every call the
    service counts (functions.ops: each Firestore read, write, query or
    commit, each Cloud Tasks call) waits DELAY first."""

    def slow(seconds: float) -> None:
        monkeypatch.setattr(budget, "REQUEST_SECS", seconds)
        for name in ("read", "write", "cloud_task"):
            monkeypatch.setattr(ops, name, _delayed(getattr(ops, name)))

    return slow


def _delayed(count: Callable[[int], None]) -> Callable[[int], None]:
    def late(n: int = 1) -> None:
        time.sleep(DELAY)
        count(n)

    return late


def _timed(api, function: str, body: dict[str, Any], role: str = "user") -> dict[str, Any]:
    """The answer, which came within the budget and one unit."""
    start = time.monotonic()
    answer = api.ok(function, body, role)
    elapsed = time.monotonic() - start
    assert elapsed < budget.REQUEST_SECS + UNIT, f"{function} took {elapsed:.2f} s"
    return answer


def _pages(call: Callable[[dict[str, Any]], dict[str, Any]], body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every page of a bulk cancel, following its cursor until null."""
    pages = [call(body)]
    while pages[-1]["cursor"]:
        assert len(pages) < 20, pages
        pages.append(call({**body, "cursor": pages[-1]["cursor"]}))
    return pages


def test_a_bulk_cancel_stops_at_its_budget_and_its_cursor_finishes_the_work(api, slow_down):
    wanted = [_task(api, tags=["batch:b1", "wave:1"])["task_id"] for _ in range(10)]
    running = [_task(api, tags=["batch:b1", "wave:1"])["task_id"] for _ in range(2)]
    spared = [_task(api, tags=["batch:b1", "wave:2"])["task_id"] for _ in range(3)]
    for i, task_id in enumerate(running):
        _claim(api, task_id, bot_id=f"bot-{i}")
    slow_down(BUDGET)
    body = {"tags": ["batch:b1", "wave:1", "pool:default"], "kill_running": True, "limit": 1000}
    pages = _pages(lambda b: _timed(api, "tasks_cancel", b), body)
    assert len(pages) > 1 and pages[0]["matched"] > 0  # the first stopped at its budget, not its limit
    # A killed task stays RUNNING until its bot reports: one matched again would be counted twice.
    assert sum(p["matched"] for p in pages) == sum(p["canceled"] for p in pages) == len(wanted + running)
    assert {_result(api, t)["state"] for t in wanted} == {"CANCELED"}
    assert {_result(api, t)["state"] for t in spared} == {"PENDING"}


def test_a_bulk_cancel_pages_by_its_limit_and_refuses_a_foreign_cursor(api):
    tagged = [_task(api, tags=["batch:b2"])["task_id"] for _ in range(5)]
    pages = _pages(lambda b: api.ok("tasks_cancel", b), {"tags": ["batch:b2", "pool:default"], "limit": 2})
    assert [p["canceled"] for p in pages] == [2, 2, 1]
    assert {_result(api, t)["state"] for t in tagged} == {"CANCELED"}
    response = api.post("tasks_cancel", {"tags": ["batch:b2", "pool:default"], "cursor": "not a cursor"})
    assert response.status_code == 400 and response.json()["error"]["field"] == "cursor"


def test_sweeps_stop_at_their_budget_and_the_next_ones_finish_the_work(api, svc, clock, cloud_tasks, slow_down):
    pending = [_task(api)["task_id"] for _ in range(16)]
    _drop_timers(svc, cloud_tasks)
    clock.offset = datetime.timedelta(seconds=600) + sweep.LATE + MINUTE  # every slice expired, and late
    slow_down(SWEEP_BUDGET)
    sweeps = [_timed(api, "cron_sweep", {}, role="admin")]
    while sweeps[-1]["partial"]:
        assert len(sweeps) < 20, sweeps
        clock.offset += MINUTE  # the next sweep, from the next lane
        sweeps.append(_timed(api, "cron_sweep", {}, role="admin"))
    assert len(sweeps) > 1 and sweeps[0]["expired_slices"] > 0
    assert sum(s["expired_slices"] for s in sweeps) == len(pending)  # each once
    assert {_result(api, t)["state"] for t in pending} == {"EXPIRED"}


def test_successive_sweeps_start_at_every_lane_whatever_their_period():
    now = datetime.datetime.now(datetime.timezone.utc)
    lanes = {name for name, _ in sweep.ring(now)}
    for period in range(1, len(lanes)):
        firsts = {sweep.ring(now + i * period * MINUTE)[0][0] for i in range(len(lanes))}
        assert firsts == lanes, f"every {period} min"
