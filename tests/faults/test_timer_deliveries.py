"""Case 4: the timers of a task run by a real bot, delivered by hand with
the timers' identity, twice each, early (while it waits and while it runs)
and late (an hour after it ended): the task ends once, as its run says."""

import datetime
from typing import Any

from tests.builders import task_body
from tests.faults import checks

BLOCKS = 4
NOT_YET, CLAIMED, NO_TRY = "not yet", "the slice is no longer pending", "the try is no longer running"


def _deliver_twice(api, function: str, body: dict[str, Any]) -> list[str]:
    return [api.ok(function, body, role="internal")["done"] for _ in range(2)]


def test_duplicate_early_and_late_timers_leave_the_task_to_end_once(direct, start_bot, clock, tmp_path):
    marker, go = tmp_path / "marker", tmp_path / "go"
    body = task_body(command=checks.command(marker, BLOCKS, go), dimensions={"pool": "e2e"},
                     bot_ping_tolerance_secs=60)
    task_id = direct.ok("tasks_new", body)["task_id"]
    expire, died = {"task_id": task_id, "slice": 0}, {"task_id": task_id, "try_number": 1}
    assert _deliver_twice(direct, "timer_expire", expire) == [NOT_YET] * 2
    assert _deliver_twice(direct, "timer_bot_died", died) == [NO_TRY] * 2  # Not claimed yet.
    start_bot("e2e-timed")
    checks.wait_stdout(direct, task_id, checks.first(BLOCKS))
    assert _deliver_twice(direct, "timer_expire", expire) == [CLAIMED] * 2
    assert _deliver_twice(direct, "timer_bot_died", died) == ["alive"] * 2
    assert _deliver_twice(direct, "timer_bot_died", {**died, "try_number": 2}) == [NO_TRY] * 2  # A try to come.
    go.touch()
    ended = checks.assert_sound(direct, task_id, marker, checks.first(BLOCKS) + checks.LAST)
    clock.offset = datetime.timedelta(hours=1)
    assert _deliver_twice(direct, "timer_expire", expire) == [CLAIMED] * 2
    assert _deliver_twice(direct, "timer_bot_died", died) == [NO_TRY] * 2
    assert direct.ok("task_result", {"task_id": task_id}) == ended
