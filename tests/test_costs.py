"""What a task cost: its bots' cost an hour times the time they held it
(`costs_usd`), what a deduplicated task saved (`cost_saved_usd`), and what it
cost the service (`server_cost`: the Firestore reads and writes and the Cloud
Tasks calls of the requests that wrote its result). The moves' arithmetic
alone, then through the real stack."""

import datetime

import pytest

from functions import transitions
from functions.models import TaskResult
from shared.bot_api import Completion
from shared.states import State
from tests.builders import bot_body, task_body

T0 = datetime.datetime.now(datetime.timezone.utc)
HOUR = datetime.timedelta(hours=1)
RATE = 3.6
#: The answer headers that count a request's operations, by server_cost's names.
HEADERS = {"firestore_reads": "X-Firestore-Reads", "firestore_writes": "X-Firestore-Writes",
           "cloud_tasks_ops": "X-Cloud-Tasks-Ops"}


def _running(rate: float | None = RATE, **fields) -> TaskResult:
    return TaskResult(task_id="6a1f2b3c4d5e6f70", name="t", tags=[], user="u", priority=100, pool="p",
                      created_ts=T0, modified_ts=T0, state=State.RUNNING, bot_id="bot-1", claim_id="c",
                      try_number=1, started_ts=T0, bot_cost_usd_hour=rate, **fields)


# The arithmetic (functions/transitions.py).

@pytest.mark.parametrize("state,expected", [
    ({"cost_usd_hour": 3.6}, 3.6), ({"cost_usd_hour": 0}, 0.0), ({"cost_usd_hour": 2}, 2.0),
    ({}, None), ({"cost_usd_hour": None}, None), ({"cost_usd_hour": "3.6"}, None), ({"cost_usd_hour": True}, None),
    ({"cost_usd_hour": -1}, None), ({"cost_usd_hour": float("nan")}, None), ({"cost_usd_hour": float("inf")}, None),
    ({"cost_usd_hour": transitions.MAX_COST_USD_HOUR + 1}, None),
])
def test_only_a_plausible_cost_an_hour_is_believed(state, expected):
    assert transitions.cost_usd_hour(state) == expected


def test_a_run_costs_its_rate_times_the_time_its_bot_held_it():
    result = _running()
    changes = transitions.complete(result, Completion(0, 1.0), T0 + HOUR / 2)
    assert changes["costs_usd"] == result.costs_usd == [pytest.approx(RATE / 2)]


def test_each_try_adds_its_cost_and_a_bot_without_a_rate_adds_none():
    result = _running()
    transitions.queue(result, 0, T0 + 2 * HOUR, T0 + HOUR)  # A retry, after an hour on the first bot.
    assert result.costs_usd == [pytest.approx(RATE)]
    transitions.claim(result, "bot-2", {"pool": ["p"]}, "c2", 2, 0, T0 + HOUR, bot_cost_usd_hour=None)
    transitions.fail(result, State.BOT_DIED, "gone", None, T0 + 2 * HOUR)
    assert result.costs_usd == [pytest.approx(RATE)]


def test_a_deduplicated_task_saved_what_its_owner_cost_and_costs_nothing():
    owner = _running()
    transitions.complete(owner, Completion(0, 1.0), T0 + HOUR)
    copy = TaskResult(task_id="6a1f2b3c4d5e7f70", name="t", tags=[], user="u", priority=100, pool="p",
                      created_ts=T0, modified_ts=T0)
    transitions.take_success(copy, owner, T0 + HOUR)
    assert (copy.costs_usd, copy.cost_saved_usd) == ([], pytest.approx(RATE))
    again = TaskResult(task_id="6a1f2b3c4d5e8f70", name="t", tags=[], user="u", priority=100, pool="p",
                       created_ts=T0, modified_ts=T0)
    transitions.take_success(again, copy, T0 + HOUR)  # From a copy: the same saving, from the same run.
    assert (again.deduped_from, again.cost_saved_usd) == (owner.task_id, pytest.approx(RATE))


def test_only_an_end_of_a_notified_task_asks_for_its_notification():
    notified = _running(notify=True)
    assert "notify" not in transitions.kill(notified, T0, "user:someone")
    assert transitions.complete(notified, Completion(0, 1.0), T0)["notify"] is True
    assert "notify" not in transitions.complete(_running(), Completion(0, 1.0), T0)


# Through the stack.

def _cost(response) -> dict[str, int]:
    return {name: int(response.headers[header]) for name, header in HEADERS.items()}


def _sum(*costs: dict[str, int]) -> dict[str, int]:
    return {name: sum(cost[name] for cost in costs) for name in HEADERS}


def test_a_completed_task_reports_its_bot_cost_and_its_server_cost(api, clock):
    created = api.post("tasks_new", task_body())
    assert created.status_code == 200, created.text
    task_id = created.json()["task_id"]
    first = api.ok("task_result", {"task_id": task_id})
    # Its creation's last operation is the commit that stores the cost: all of it is there.
    assert first["server_cost"] == _cost(created)
    assert first["costs_usd"] == [] and first["cost_saved_usd"] is None
    claim = api.post("bot_claim", bot_body(task_id=task_id, slice=0, claim_id="c1", state={"cost_usd_hour": RATE}),
                     role="bot")
    assert claim.status_code == 200 and claim.json()["cmd"] == "run", claim.text
    run_id = claim.json()["manifest"]["task_id"]
    clock.offset = HOUR / 2
    end = api.post("bot_task_update", bot_body(task_id=run_id, exit_code=0, duration=1.0), role="bot")
    assert end.status_code == 200, end.text
    result = api.ok("task_result", {"task_id": task_id})
    held = (datetime.datetime.fromisoformat(result["completed_ts"])
            - datetime.datetime.fromisoformat(result["started_ts"])).total_seconds()
    assert result["costs_usd"] == [pytest.approx(RATE * held / 3600)] and held >= 1800
    # Each request adds what it counted up to its write of the result; what
    # it does after (the bot's registry, releasing waiters) is not the task's.
    spent = _sum(_cost(created), _cost(claim), _cost(end))
    assert all(first["server_cost"][n] <= result["server_cost"][n] <= spent[n] for n in HEADERS), (result, spent)
    assert result["server_cost"]["firestore_writes"] >= 3 and result["server_cost"]["cloud_tasks_ops"] == 2


def test_a_bot_that_says_no_cost_gives_no_cost(api):
    task_id = api.ok("tasks_new", task_body())["task_id"]
    claim = api.ok("bot_claim", bot_body(task_id=task_id, slice=0, claim_id="c1", state={"cost_usd_hour": "$3"}),
                   role="bot")
    assert api.post("bot_task_update", bot_body(task_id=claim["manifest"]["task_id"], exit_code=0, duration=1.0),
                    role="bot").status_code == 200
    assert api.ok("task_result", {"task_id": task_id})["costs_usd"] == []


def test_a_deduplicated_task_reports_what_it_saved(api, clock):
    body = task_body()
    body["task_slices"][0]["properties"]["idempotent"] = True
    owner = api.ok("tasks_new", body)["task_id"]
    claim = api.ok("bot_claim", bot_body(task_id=owner, slice=0, claim_id="c1", state={"cost_usd_hour": RATE}),
                   role="bot")
    clock.offset = HOUR / 4
    assert api.post("bot_task_update", bot_body(task_id=claim["manifest"]["task_id"], exit_code=0, duration=1.0),
                    role="bot").status_code == 200
    owned = api.ok("task_result", {"task_id": owner})
    deduped = api.ok("tasks_new", body)["task_result"]
    assert deduped["deduped_from"] == owner and deduped["costs_usd"] == []
    assert deduped["cost_saved_usd"] == pytest.approx(sum(owned["costs_usd"])) and deduped["cost_saved_usd"] > 0
    assert deduped["server_cost"]["firestore_reads"] >= 2  # The dedup record and its owner were read.
    assert api.ok("task_result", {"task_id": deduped["task_id"]})["server_cost"] == deduped["server_cost"]
