"""One task's life through the HTTP API, with the cost of each step: the
Firestore reads and writes and the Cloud Tasks calls each answer reports
(X-Firestore-Reads, X-Firestore-Writes, X-Cloud-Tasks-Ops), and its time.
Used by `bench.lifecycle`."""

import base64
import time
import uuid
from typing import Any

from bot.api_client import ApiClient

STEPS = ("create", "poll", "claim", "update 1", "update 2", "complete")
#: (reads, writes, Cloud Tasks calls, seconds)
Cost = tuple[int, int, int, float]


class Api:
    """The functions at `base_url`, called as one of the roles of `tokens`."""

    def __init__(self, base_url: str, tokens: dict[str, str]):
        self.clients = {role: ApiClient(base_url, token) for role, token in tokens.items()}

    def call(self, function: str, body: dict[str, Any], role: str) -> tuple[dict[str, Any], Cost]:
        start = time.perf_counter()
        answer = self.clients[role].answer(function, body)
        elapsed = time.perf_counter() - start
        headers = answer.headers
        cost = (int(headers["X-Firestore-Reads"]), int(headers["X-Firestore-Writes"]),
                int(headers["X-Cloud-Tasks-Ops"]), elapsed)
        return answer.body, cost


def task_request(pool: str = "bench", command: list[str] | None = None, wait: bool = False) -> dict[str, Any]:
    """Without `wait`, creating the task looks for a live bot of the pool (one read)."""
    properties = {"command": command or ["true"], "dimensions": [{"key": "pool", "value": pool}],
                  "execution_timeout_secs": 60}
    return {"name": "bench", "priority": 100,
            "task_slices": [{"expiration_secs": 600, "wait_for_capacity": wait, "properties": properties}]}


def one_life(api: Api) -> dict[str, Cost]:
    """create → poll → claim → update before the command → update with
    stdout → completion with stdout, by a bot that echoes its session."""
    bot: dict[str, Any] = {"dimensions": {"id": ["bench-bot"], "pool": ["bench"]}, "state": {}, "version": "dev"}
    bot["session"] = api.call("bot_handshake", bot, "bot")[0]["session"]
    costs = {}
    created, costs["create"] = api.call("tasks_new", task_request(), "user")
    _, costs["poll"] = api.call("bot_poll", bot, "bot")
    claimed, costs["claim"] = api.call("bot_claim", {**bot, "task_id": created["task_id"], "slice": 0,
                                                     "claim_id": uuid.uuid4().hex}, "bot")
    run_id = claimed["manifest"]["task_id"]
    bot["session"] = claimed["session"]
    packet = base64.b64encode(b"x" * 100).decode()
    _, costs["update 1"] = api.call("bot_task_update", {**bot, "task_id": run_id}, "bot")
    _, costs["update 2"] = api.call("bot_task_update", {**bot, "task_id": run_id, "output": packet,
                                                        "output_chunk_start": 0}, "bot")
    _, costs["complete"] = api.call("bot_task_update", {**bot, "task_id": run_id, "output": packet,
                                                        "output_chunk_start": 100, "exit_code": 0,
                                                        "duration": 1.0}, "bot")
    return costs
