"""Case 5: the gateway killed mid-stream. On the real local stack (gunicorn
serving every function, a bot from the zip), the gateway's processes are
SIGKILLed while the bot sends its task's last output and end, then started
again on the same port. The task ends once, its command run once, its
stdout byte for byte."""

import base64
import time
from pathlib import Path
from typing import Any

from bench.task_life import USER, Api, task_request
from local import stack as local_stack
from tests.faults import checks

BLOCKS = 400


def _stdout(api: Api, task_id: str) -> bytes:
    data, offset = b"", 0
    while chunk := base64.b64decode(api.call("task_stdout", {"task_id": task_id, "offset": offset}, USER)[0]["output"]):
        data, offset = data + chunk, offset + len(chunk)
    return data


def _until(api: Api, task_id: str, done: Any) -> dict[str, Any]:
    deadline = time.monotonic() + checks.WITHIN_SECS
    while not done(result := api.call("task_result", {"task_id": task_id}, USER)[0]):
        assert time.monotonic() < deadline, result["state"]
        time.sleep(0.1)
    return result


def test_a_task_ends_once_with_its_stdout_across_the_gateway_killed_mid_stream(tmp_path: Path) -> None:
    state_dir = tmp_path / "local"
    stack = local_stack.up(state_dir, bots=1)
    try:
        api = Api.of_stack(state_dir, stack["base_url"])
        marker, go = tmp_path / "marker", tmp_path / "go"
        body = task_request(pool="default", command=checks.command(marker, BLOCKS, go), wait=True)
        task_id = api.call("tasks_new", body, USER)[0]["task_id"]
        _until(api, task_id, lambda _: _stdout(api, task_id) == checks.first(BLOCKS))  # The command runs.
        go.touch()  # Its last output and its end are on their way...
        local_stack.kill_gateway(state_dir)  # ...to a gateway killed.
        time.sleep(2)
        local_stack.start_gateway(state_dir)
        result = _until(api, task_id, lambda r: r["state"] not in ("PENDING", "RUNNING"))
        assert (result["state"], result["exit_code"], result["try_number"]) == ("COMPLETED", 0, 1)
        assert checks.runs(marker) == 1
        assert _stdout(api, task_id) == checks.first(BLOCKS) + checks.LAST
    finally:
        local_stack.down(state_dir)
