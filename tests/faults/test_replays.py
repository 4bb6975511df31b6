"""Case 2: the bot's own requests, duplicated and out of order. A real bot
runs a task through the proxy, which keeps what it sent; its claims and
updates are sent again, with its own token, twice and newest first, while
the command runs and once it ended. A task error is sent twice, and an
update from before it after it. The server answers each as it answered it
the first time or refuses it, and the task runs once, its stdout exact."""

import base64
from typing import Any

import requests

from tests.builders import bot_body, task_body
from tests.faults import checks
from tests.faults.proxy import FaultProxy, Request

BLOCKS = 400  # Output in several updates.


def _replay(proxy: FaultProxy, request: Request) -> requests.Response:
    """`request` again, straight to the gateway, with the token it carried."""
    headers = {"Authorization": request.header("Authorization") or "", "Content-Type": "application/json"}
    return requests.post(f"{proxy.upstream}{request.path}", data=request.body, headers=headers, timeout=30)


def _replay_all(proxy: FaultProxy) -> list[tuple[Request, int, dict[str, Any]]]:
    """Every claim and update the bot sent, twice, newest first; what each got."""
    sent = proxy.requests("/bot_claim") + proxy.requests("/bot_task_update")
    return [(request, (answer := _replay(proxy, request)).status_code, answer.json()) for request in reversed(sent * 2)]


def _same_run(answer: dict[str, Any], run_id: str) -> bool:
    """A claim sent again while its run goes on gets that run, never another."""
    return answer["cmd"] == "run" and answer["manifest"]["task_id"] == run_id


def test_a_run_s_claims_and_updates_sent_again_out_of_order_change_nothing(direct, proxy, start_bot, tmp_path):
    marker, go = tmp_path / "marker", tmp_path / "go"
    body = task_body(command=checks.command(marker, BLOCKS, go), dimensions={"pool": "e2e"})
    task_id = direct.ok("tasks_new", body)["task_id"]
    start_bot("e2e-replayed")
    checks.wait_stdout(direct, task_id, checks.first(BLOCKS))  # It runs, waiting on `go`.
    run_id = direct.ok("task_result", {"task_id": task_id})["run_id"]
    for request, status, answer in _replay_all(proxy):
        assert status == 200, answer
        if request.path == "/bot_claim":
            assert _same_run(answer, run_id)
        else:
            assert answer["must_stop"] is False
    go.touch()
    printed = checks.first(BLOCKS) + checks.LAST
    ended = checks.assert_sound(direct, task_id, marker, printed)
    for request, status, answer in _replay_all(proxy):
        assert status == 200, answer
        if request.path == "/bot_claim":  # The run ended: no manifest, no secret bytes again.
            assert answer["cmd"] == "skip"
        else:  # The end sent again is taken again; any other update is told to stop.
            assert answer["must_stop"] is ("exit_code" not in request.json())
    assert direct.ok("task_result", {"task_id": task_id}) == ended
    assert checks.stdout(direct, task_id) == printed and checks.runs(marker) == 1
    assert direct.ok("bot_poll", bot_body("e2e-probe", pool="e2e"), role="bot")["cmd"] == "sleep"


def _claimed_then_errored(direct, started: bool) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A task claimed by bot-1, which reported output (`started`) or only
    a heartbeat, then a task error: its id, and the claim, the update and
    the error bot-1 sent."""
    task_id = direct.ok("tasks_new", task_body())["task_id"]
    claim = bot_body(task_id=task_id, slice=0, claim_id="c-1")
    run_id = direct.ok("bot_claim", claim, role="bot")["manifest"]["task_id"]
    output = {"output": base64.b64encode(b"started\n").decode(), "output_chunk_start": 0}
    update = bot_body(task_id=run_id, **(output if started else {}))
    direct.ok("bot_task_update", update, role="bot")
    error = bot_body(task_id=run_id, message="the task runner died")
    return task_id, claim, update, error


def test_a_started_try_s_task_error_sent_twice_and_an_update_after_it_end_it_once(direct):
    task_id, claim, update, error = _claimed_then_errored(direct, started=True)
    assert [direct.ok("bot_task_error", error, role="bot")["state"] for _ in range(2)] == ["BOT_DIED"] * 2
    late = direct.ok("bot_task_update", update, role="bot")
    assert (late["must_stop"], late["stop_reason"]) == (True, "BOT_DIED")
    assert direct.ok("bot_claim", claim, role="bot")["cmd"] == "skip"
    result = direct.ok("task_result", {"task_id": task_id})
    assert (result["state"], result["try_number"]) == ("BOT_DIED", 1)
    assert checks.stdout(direct, task_id) == b"started\n"
    assert direct.ok("bot_poll", bot_body("bot-2"), role="bot")["cmd"] == "sleep"  # Nothing to run again.


def test_a_try_that_never_started_is_retried_once_whatever_is_sent_again(direct):
    task_id, claim, update, error = _claimed_then_errored(direct, started=False)
    assert direct.ok("bot_task_error", error, role="bot")["state"] == "PENDING"
    assert direct.post("bot_task_error", error, role="bot").status_code == 409  # Not bot-1's any more.
    assert direct.post("bot_task_update", update, role="bot").status_code == 409
    assert direct.ok("bot_claim", claim, role="bot")["cmd"] == "skip"
    polled = direct.ok("bot_poll", bot_body("bot-2"), role="bot")
    assert polled["candidates"] == [{"task_id": task_id, "slice": 0}]  # One retry.
    retry = direct.ok("bot_claim", bot_body("bot-2", task_id=task_id, slice=0, claim_id="c-2"), role="bot")
    assert retry["manifest"]["task_id"] == task_id[:-1] + "2"
    assert direct.post("bot_task_error", error, role="bot").status_code == 409
    result = direct.ok("task_result", {"task_id": task_id})
    assert (result["state"], result["try_number"], result["bot_id"]) == ("RUNNING", 2, "bot-2")
