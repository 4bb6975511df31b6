"""One task's life through the HTTP API, with the cost of each step: the
Firestore reads and writes and the Cloud Tasks calls each answer reports
(X-Firestore-Reads, X-Firestore-Writes, X-Cloud-Tasks-Ops), and its time.
Used by `bench.lifecycle`."""

import dataclasses
import time
import uuid
from typing import Any

from bot.api_client import ApiClient
from shared import bot_api
from shared.bot_api import (
    BotAttributes, ClaimRequest, Completion, Handshake, HandshakeReply, Poll, Run, TaskUpdate, Update,
)

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
    bot = BotAttributes({"id": ["bench-bot"], "pool": ["bench"]}, {}, "dev")
    handshake = HandshakeReply.from_wire(api.call("bot_handshake", Handshake(bot).to_wire(), "bot")[0])
    bot = dataclasses.replace(bot, session=handshake.session)
    costs = {}
    created, costs["create"] = api.call("tasks_new", task_request(), "user")
    _, costs["poll"] = api.call("bot_poll", Poll(bot).to_wire(), "bot")
    claimed, costs["claim"] = api.call("bot_claim", ClaimRequest(bot, created["task_id"], uuid.uuid4().hex).to_wire(),
                                       "bot")
    run = bot_api.claim_reply(claimed)
    assert isinstance(run, Run), run
    run_id = run.manifest.task_id
    bot = dataclasses.replace(bot, session=run.session)
    packet = b"x" * 100
    for step, update in (("update 1", Update()), ("update 2", Update(0, packet)),
                         ("complete", Update(100, packet, Completion(0, 1.0)))):
        _, costs[step] = api.call("bot_task_update", TaskUpdate(bot, run_id, update).to_wire(), "bot")
    return costs
