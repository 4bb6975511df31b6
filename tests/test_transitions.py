"""The task state machine (functions/transitions.py): each move sets what it
says, a move the table does not have raises and changes nothing, and no other
module writes a task's state."""

import ast
import copy
import datetime
import pathlib

import pytest

from functions import transitions
from functions.models import TaskResult
from functions.transitions import MOVES as TABLE, IllegalTransition
from shared.bot_api import Completion
from shared.cas import Digest
from shared.states import State

T0 = datetime.datetime.now(datetime.timezone.utc)
NOW = T0 + datetime.timedelta(minutes=5)
FUNCTIONS = pathlib.Path(__file__).resolve().parents[1] / "functions"


def _result(state: State = State.PENDING, **fields) -> TaskResult:
    return TaskResult(task_id="6a1f2b3c4d5e6f70", name="t", tags=[], user="u", priority=100, pool="p", created_ts=T0,
                      modified_ts=T0, state=state, **fields)


def _running(**fields) -> TaskResult:
    return _result(State.RUNNING, bot_id="bot-1", claim_id="c", try_number=1, started_ts=T0, **fields)


def test_a_claim_makes_the_task_running_on_the_bot():
    result = _result()
    changes = transitions.claim(result, "bot-1", {"pool": ["p"]}, "claim-1", 2, 1, NOW)
    assert (result.state, result.bot_id, result.claim_id, result.try_number, result.current_task_slice,
            result.started_ts, result.modified_ts) == (State.RUNNING, "bot-1", "claim-1", 2, 1, NOW, NOW)
    assert changes == {"state": "RUNNING", "outcome": "RUNNING", "modified_ts": NOW, "bot_id": "bot-1",
                       "claim_id": "claim-1", "bot_dimensions": {"pool": ["p"]}, "started_ts": NOW, "try_number": 2,
                       "current_task_slice": 1, "bot_cost_usd_hour": None}


@pytest.mark.parametrize("killing, completion, state", [
    (False, Completion(0, 1.0), State.COMPLETED),
    (False, Completion(3, 1.0), State.COMPLETED),
    (False, Completion(-15, 9.0, hard_timeout=True), State.TIMED_OUT),
    (False, Completion(-9, 9.0, io_timeout=True), State.TIMED_OUT),
    (True, Completion(-15, 2.0), State.KILLED),
])
def test_a_completion_ends_the_run_by_what_happened(killing, completion, state):
    result = _running(killing=killing)
    changes = transitions.complete(result, completion, NOW)
    assert result.state == state and changes["state"] == state.value
    assert (result.exit_code, result.duration, result.completed_ts) == (completion.exit_code, completion.duration,
                                                                          NOW)


def test_a_completion_keeps_the_outputs_and_stats():
    result = _running()
    digest = Digest("ab" * 32, 5)
    transitions.complete(result, Completion(0, 1.0, cas_output_root=digest,
                                            performance_stats={"bot_overhead_secs": 0.1}), NOW)
    assert result.cas_output_root == {"digest": digest.to_wire()}
    assert result.performance_stats == {"bot_overhead_secs": 0.1}


@pytest.mark.parametrize("killing, state", [(True, State.CANCELED), (False, State.BOT_DIED)])
def test_a_run_that_never_started_ends_canceled_only_when_killed(killing, state):
    result = _running(killing=killing)
    transitions.end_unstarted(result, NOW)
    assert (result.state, result.abandoned_ts) == (state, NOW)


def test_a_retry_queues_the_task_again_away_from_its_bot():
    result = _running(current_task_slice=1)
    changes = transitions.queue(result, 1, NOW + datetime.timedelta(hours=1), NOW)
    assert (result.state, result.excluded_bot, result.bot_id, result.claim_id) == (State.PENDING, "bot-1", None,
                                                                                  None)
    assert changes["excluded_bot"] == "bot-1" and changes["state"] == "PENDING"


def test_a_waiter_released_is_queued_without_its_owner():
    result = _result(waiting_on="owner")
    transitions.queue(result, 0, NOW, NOW)
    assert result.waiting_on is None and result.excluded_bot is None


def test_a_deduplicated_task_copies_the_success():
    owner = _result(State.COMPLETED, exit_code=0, duration=2.0, bot_id="bot-9", try_number=1,
                    cas_output_root={"digest": Digest("cd" * 32, 1).to_wire()})
    result = _result(waiting_on=owner.task_id)
    transitions.take_success(result, owner, NOW)
    assert (result.state, result.deduped_from, result.exit_code, result.try_number, result.bot_id,
            result.waiting_on, result.completed_ts) == (State.COMPLETED, owner.task_id, 0, 0, "bot-9", None, NOW)
    assert result.cas_output_root == owner.cas_output_root and result.performance_stats is None


@pytest.mark.parametrize("state", [State.EXPIRED, State.CANCELED, State.NO_RESOURCE])
def test_a_pending_task_is_abandoned(state):
    result = _result(waiting_on="owner")
    assert transitions.abandon(result, state, NOW) == {"state": state.value, "outcome": state.value,
                                                       "modified_ts": NOW, "abandoned_ts": NOW, "waiting_on": None}
    assert result.state == state


@pytest.mark.parametrize("state, missing", [(State.BOT_DIED, None), (State.CLIENT_ERROR, [{"hash": "x"}])])
def test_a_failed_run_keeps_why(state, missing):
    result = _running()
    transitions.fail(result, state, "it broke", missing, NOW)
    assert (result.state, result.internal_failure_message, result.missing_cas) == (state, "it broke", missing)


def test_a_kill_marks_a_running_task_without_ending_it():
    result = _running()
    assert transitions.kill(result, NOW, "user:admin@example.com") == {
        "state": "RUNNING", "outcome": "RUNNING", "killing": True, "abandoned_ts": NOW, "modified_ts": NOW,
        "canceled_by": "user:admin@example.com"}
    assert result.state == State.RUNNING and result.killing


#: Each move of the machine, applied to a result.
MOVES = {
    "claim": lambda r: transitions.claim(r, "b", {}, "c", 1, 0, NOW),
    "complete": lambda r: transitions.complete(r, Completion(0, 1.0), NOW),
    "end_unstarted": lambda r: transitions.end_unstarted(r, NOW),
    "queue": lambda r: transitions.queue(r, 0, NOW, NOW),
    "wait_on": lambda r: transitions.wait_on(r, "owner", NOW),
    "take_success": lambda r: transitions.take_success(r, _result(State.COMPLETED), NOW),
    "abandon": lambda r: transitions.abandon(r, State.EXPIRED, NOW),
    "fail": lambda r: transitions.fail(r, State.BOT_DIED, "", None, NOW),
    "kill": lambda r: transitions.kill(r, NOW, "user:admin@example.com"),
}


def test_every_move_of_the_table_is_tested():
    assert set(MOVES) == set(TABLE)


@pytest.mark.parametrize("name, state", [(name, state) for name in MOVES for state in State
                                         if state not in TABLE[name][0]])
def test_a_move_from_a_state_the_table_lacks_raises_and_changes_nothing(name, state):
    result = _result(state)
    before = copy.deepcopy(result)
    with pytest.raises(IllegalTransition):
        MOVES[name](result)
    assert result == before


@pytest.mark.parametrize("name, state", [(name, state) for name in MOVES for state in TABLE[name][0]])
def test_each_move_lands_where_the_table_says(name, state):
    result = _result(state)
    MOVES[name](result)
    assert result.state in TABLE[name][1]


def test_no_move_leaves_a_final_state():
    assert all(not source.is_final for sources, _ in TABLE.values() for source in sources)


@pytest.mark.parametrize("how", [transitions.abandon, lambda r, s, now: transitions.fail(r, s, "", None, now)])
def test_abandon_and_fail_take_only_their_own_states(how):
    for state in (State.RUNNING, State.COMPLETED, State.KILLED):
        with pytest.raises(IllegalTransition):
            how(_running(), state, NOW)


def test_no_other_module_writes_a_task_state():
    """Every state write goes through functions/transitions.py: no assignment
    to a `.state`, and no hand-made dict handed to `update_result`."""
    found = []
    for path in sorted(FUNCTIONS.glob("*.py")):
        if path.name in ("transitions.py", "models.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = node.targets if isinstance(node, ast.Assign) else []
            for target in targets:
                for leaf in (target.elts if isinstance(target, ast.Tuple) else [target]):
                    if isinstance(leaf, ast.Attribute) and leaf.attr in ("state", "killing", "waiting_on"):
                        found.append(f"{path.name}:{node.lineno} assigns .{leaf.attr}")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "update_result" and any(isinstance(a, ast.Dict) for a in node.args)):
                found.append(f"{path.name}:{node.lineno} writes a result from a literal dict")
    assert found == []
