"""One task's life on the local stack: create → claim → 2 updates → complete.

Prints the Firestore reads and writes of each step (from the X-Firestore-*
headers every function answers with) and the time of each step, averaged over
a number of tasks. Usage: `python -m bench.task_life [--tasks N]`.
"""

import argparse
import base64
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import requests

from bench.results import report
from client import local_stack

STEPS = ("create", "poll", "claim", "update 1", "update 2", "complete")


def one_life(session: requests.Session, base: str, tokens: dict[str, str]) -> dict[str, tuple[int, int, float]]:
    bot = {"dimensions": {"id": ["bench-bot"], "pool": ["bench"]}, "state": {}, "version": "dev"}
    task = {"name": "bench", "priority": 100, "task_slices": [{"expiration_secs": 600, "properties": {
        "command": ["true"], "dimensions": [{"key": "pool", "value": "bench"}], "execution_timeout_secs": 60}}]}

    def call(function: str, body: dict, role: str) -> tuple[dict, tuple[int, int, float]]:
        start = time.perf_counter()
        response = session.post(f"{base}/{function}", json=body, headers={"Authorization": f"Bearer {tokens[role]}"})
        elapsed = time.perf_counter() - start
        response.raise_for_status()
        cost = (int(response.headers["X-Firestore-Reads"]), int(response.headers["X-Firestore-Writes"]), elapsed)
        return response.json(), cost

    costs = {}
    created, costs["create"] = call("tasks_new", task, "user")
    _, costs["poll"] = call("bot_poll", bot, "bot")
    claimed, costs["claim"] = call("bot_claim", {**bot, "task_id": created["task_id"], "slice": 0,
                                                 "claim_id": uuid.uuid4().hex}, "bot")
    run_id = claimed["manifest"]["task_id"]
    packet = base64.b64encode(b"x" * 100).decode()
    _, costs["update 1"] = call("bot_task_update", {**bot, "task_id": run_id}, "bot")
    _, costs["update 2"] = call("bot_task_update", {**bot, "task_id": run_id, "output": packet,
                                                    "output_chunk_start": 0}, "bot")
    _, costs["complete"] = call("bot_task_update", {**bot, "task_id": run_id, "output": packet,
                                                    "output_chunk_start": 100, "exit_code": 0, "duration": 1.0}, "bot")
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50, help="How many task lives to average over.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp)
        start = time.perf_counter()
        stack = local_stack.up(state_dir, bots=0)
        cold_start = time.perf_counter() - start
        try:
            tokens = {role: local_stack.token_for(state_dir, role) for role in ("user", "bot")}
            session = requests.Session()
            lives = [one_life(session, stack["base_url"], tokens) for _ in range(args.tasks)]
        finally:
            local_stack.down(state_dir)
    rows: list[tuple[str, object]] = [("stack cold start (s)", cold_start), ("tasks", args.tasks)]
    for step in STEPS:
        rows.append((f"{step}: reads", lives[-1][step][0]))
        rows.append((f"{step}: writes", lives[-1][step][1]))
        rows.append((f"{step}: p50 ms", statistics.median(life[step][2] for life in lives) * 1000))
    rows.append(("whole life: reads", sum(lives[-1][s][0] for s in STEPS)))
    rows.append(("whole life: writes", sum(lives[-1][s][1] for s in STEPS)))
    report("task_life", rows)


if __name__ == "__main__":
    main()
