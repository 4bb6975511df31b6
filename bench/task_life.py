"""One task's life through the HTTP API, with the cost of each step: the
Firestore reads and writes and the Cloud Tasks calls each answer reports
(X-Firestore-Reads, X-Firestore-Writes, X-Cloud-Tasks-Ops), and its time.
Used by `bench.lifecycle`."""

import dataclasses
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import requests

from bot.api_client import ApiClient
from shared import bot_api, local_state
from shared.bot_api import (
    BotAttributes, ClaimRequest, Completion, Handshake, HandshakeReply, Poll, Run, TaskUpdate, Update,
)

STEPS = ("create", "poll", "claim", "update 1", "update 2", "complete")
#: (reads, writes, Cloud Tasks calls, seconds)
Cost = tuple[int, int, int, float]
#: The caller that is the local user; any other is a bot, by its id.
USER = "user"
#: The bot whose life `one_life` follows.
BOT_ID = "bench-bot"
#: The service configuration the benches start the stack with.
CONFIG_DIR = Path(__file__).parent / "config"


class Api:
    """The functions at `base_url`, called as the local user (`USER`) or as a
    bot by its id: a bot's first call (its handshake) shows the bootstrap
    token, its later ones the bot token the answers handed it, as real bots
    do. Each thread has its own connections."""

    def __init__(self, base_url: str, user_token: str, bootstrap_token: str):
        self._base = base_url
        self._bootstrap = bootstrap_token
        self._tokens = {USER: user_token}
        self._local = threading.local()

    @classmethod
    def of_stack(cls, state_dir: Path, base_url: str) -> "Api":
        """As the local stack's user (an admin of bench/config), with a
        bootstrap token it mints."""
        user = local_state.id_token(state_dir, local_state.local_user(), base_url)
        minted = requests.post(f"{base_url}/server_token", json={}, timeout=30,
                               headers={"Authorization": f"Bearer {user}"})
        minted.raise_for_status()
        return cls(base_url, user, minted.json()["bootstrap_token"])

    @property
    def bootstrap_token(self) -> str:
        return self._bootstrap

    def call(self, function: str, body: dict[str, Any], caller: str,
             held_secs: float = 0.0) -> tuple[dict[str, Any], Cost]:
        """`held_secs`: how long the server may hold the call (a long poll)."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = ApiClient(self._base, None)
        client.token = self._tokens.get(caller, self._bootstrap)
        start = time.perf_counter()
        try:
            answer = client.answer(function, body, held_secs=held_secs)
        finally:
            self._tokens[caller] = client.token  # Renewed by the answer, for a bot.
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


def handshake(api: Api, bot_id: str = BOT_ID) -> BotAttributes:
    """The bot of the pool bench after its handshake (holding its bot token)."""
    bot = BotAttributes({"id": [bot_id], "pool": ["bench"]}, {}, "dev")
    reply = HandshakeReply.from_wire(api.call("bot_handshake", Handshake(bot).to_wire(), bot_id)[0])
    return dataclasses.replace(bot, session=reply.session)


def one_life(api: Api) -> dict[str, Cost]:
    """create → poll → claim → update before the command → update with
    stdout → completion with stdout, by a bot that echoes its session."""
    bot = handshake(api)
    costs = {}
    created, costs["create"] = api.call("tasks_new", task_request(), USER)
    _, costs["poll"] = api.call("bot_poll", Poll(bot).to_wire(), BOT_ID)
    claimed, costs["claim"] = api.call("bot_claim", ClaimRequest(bot, created["task_id"], uuid.uuid4().hex).to_wire(),
                                       BOT_ID)
    run = bot_api.claim_reply(claimed)
    assert isinstance(run, Run), run
    run_id = run.manifest.task_id
    bot = dataclasses.replace(bot, session=run.session)
    packet = b"x" * 100
    for step, update in (("update 1", Update()), ("update 2", Update(0, packet)),
                         ("complete", Update(100, packet, Completion(0, 1.0)))):
        _, costs[step] = api.call("bot_task_update", TaskUpdate(bot, run_id, update).to_wire(), BOT_ID)
    return costs


def cpu_per_call(api: Api, calls: int, cpu_secs: Callable[[], float]) -> dict[str, float]:
    """The CPU ms (by `cpu_secs`: the gateway's) each kind of call of a
    task's life takes, `calls` of a kind in a row, one after the other (the
    CPU clock ticks every 10 ms: a kind is timed over all its calls), by the
    bot of `one_life`, with `calls` tasks pending while it polls."""
    bot = handshake(api)
    timed: dict[str, float] = {}

    def each(kind: str, call: Callable[[int], Any]) -> list[Any]:
        before = cpu_secs()
        answers = [call(n) for n in range(calls)]
        timed[kind] = (cpu_secs() - before) * 1000 / calls
        return answers

    def claim(n: int) -> Run:
        answer = api.call("bot_claim", ClaimRequest(bot, task_ids[n], uuid.uuid4().hex).to_wire(), BOT_ID)[0]
        run = bot_api.claim_reply(answer)
        assert isinstance(run, Run), run
        return run

    def update(run: Run, update: Update) -> None:
        api.call("bot_task_update", TaskUpdate(dataclasses.replace(bot, session=run.session), run.manifest.task_id,
                                               update).to_wire(), BOT_ID)

    task_ids = each("tasks_new", lambda n: api.call("tasks_new", task_request(), USER)[0]["task_id"])
    each("bot_poll (tasks pending)", lambda n: api.call("bot_poll", Poll(bot).to_wire(), BOT_ID))
    runs = each("bot_claim", claim)
    each("bot_task_update (before the command)", lambda n: update(runs[n], Update()))
    each("bot_task_update (completion)", lambda n: update(runs[n], Update(0, b"", Completion(0, 0.01))))
    each("task_result", lambda n: api.call("task_result", {"task_id": task_ids[n]}, USER))
    return timed
