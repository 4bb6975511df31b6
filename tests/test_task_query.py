"""The pure parts of task queries: times, cursors, selections, outcomes (no services)."""

import datetime

import pytest

from functions import store, task_query
from functions.models import TaskResult
from shared.errors import ValidationError
from shared.states import State

UTC = datetime.timezone.utc


@pytest.mark.parametrize("value, expected", [
    ("2026-12-04T21:00:00Z", datetime.datetime(2026, 12, 4, 21, tzinfo=UTC)),
    ("2026-12-04T22:00:00+01:00", datetime.datetime(2026, 12, 4, 21, tzinfo=UTC)),
    (0, datetime.datetime(1970, 1, 1, tzinfo=UTC)),
    ("1.5", datetime.datetime(1970, 1, 1, 0, 0, 1, 500000, tzinfo=UTC)),
])
def test_a_time_is_rfc_3339_with_its_zone_or_epoch_seconds(value, expected):
    assert task_query.Timestamp().read(value, "start") == expected


@pytest.mark.parametrize("value", ["2026-12-04T21:00:00", "noon", "", "1e400", True, None, [], float("nan"),
                                   10.0 ** 20, "9" * 50])
def test_anything_else_is_refused_naming_the_field(value):
    with pytest.raises(ValidationError) as raised:
        task_query.Timestamp().read(value, "end")
    assert raised.value.field == "end"


def test_a_cursor_reads_back_as_written_and_only_for_its_sort():
    now = datetime.datetime.now(UTC)
    cursor = task_query.Cursor("started_ts", now, "abcd-7c5be98169e0a010")
    assert task_query.Cursor.parse(cursor.to_text(), "started_ts") == cursor
    with pytest.raises(ValidationError, match="by started_ts, not by created_ts"):
        task_query.Cursor.parse(cursor.to_text(), "created_ts")
    forged = task_query.Cursor("started_ts", now, "../task_results/x").to_text()
    for text in (forged, "!!", "e30", cursor.to_text()[:-3]):
        with pytest.raises(ValidationError) as raised:
            task_query.Cursor.parse(text, "started_ts")
        assert raised.value.field == "cursor"


def test_a_selection_is_served_by_a_declared_index_for_every_state_sort_and_key():
    for state in task_query.STATES:
        for time in task_query.TIMES:
            for lead in (None, "pool:ci"):
                start = datetime.datetime.now(UTC)
                filters = task_query.Selection(state, ("pool:ci",), time, start, None).filters(lead)
                store.check_index(store.TASK_RESULTS, filters, time)


def test_end_must_follow_start():
    now = datetime.datetime.now(UTC)
    with pytest.raises(ValidationError) as raised:
        task_query.Selection(start=now, end=now)
    assert raised.value.field == "end"


@pytest.mark.parametrize("state, exit_code, deduped_from, outcome", [
    (State.COMPLETED, 0, None, "COMPLETED_SUCCESS"),
    (State.COMPLETED, 2, None, "COMPLETED_FAILURE"),
    (State.COMPLETED, 0, "7c5be98169e0a010", "DEDUPED"),
    (State.TIMED_OUT, 1, None, "TIMED_OUT"),
    (State.PENDING, None, None, "PENDING"),
])
def test_each_task_has_one_outcome_that_its_state_filters_take(state, exit_code, deduped_from, outcome):
    now = datetime.datetime.now(UTC)
    result = TaskResult("7c5be98169e0a110", "t", [], "u", 100, "p", now, now, state=state, exit_code=exit_code,
                        deduped_from=deduped_from)
    assert result.to_doc()["outcome"] == outcome
    assert "outcome" not in result.to_wire() and "query_shard" not in result.to_wire()
    taking = {name for name, outcomes in task_query.STATES.items() if outcomes is None or outcome in outcomes}
    assert {"ALL", outcome if outcome in task_query.STATES else state.value} <= taking
