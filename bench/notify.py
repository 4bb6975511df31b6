"""What a Pub/Sub notification adds to a task's life, and what a task's
`server_cost` reports, on the local stack (with its Pub/Sub emulator).

Prints, and writes to bench/results/notify.json:
- the Firestore reads and writes and the Cloud Tasks calls of the median
  task's life (bench.task_life.one_life: create → poll → claim → 2 updates →
  complete), from the answers' headers, without and with `pubsub_topic` (and
  `pubsub_auth_token`);
- what one `timer_notify` delivery costs (called directly, as the timers are);
- the time from the end's answer to the message on a subscription (p50, max):
  the timer is due a second after the end;
- the task's `server_cost`, next to the sum of its life's headers (the
  handshake and the poll are the bot's, not the task's).

Usage: `python -m bench.notify [--lives N]`.
"""

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from google.cloud import pubsub_v1

from bench.results import report
from bench.task_life import CONFIG_DIR, STEPS, USER, Api, Cost, one_life
from local import stack as local_stack

TOPIC = f"projects/{local_stack.PROJECT}/topics/bench-ends"
SUBSCRIPTION = f"projects/{local_stack.PROJECT}/subscriptions/bench-ends"
#: Generous: a message comes about a second after the end.
RECEIVE_SECS = 30


class Notified(Api):
    """The same calls, with `fields` added to each task created; remembers the last task id."""

    def __init__(self, base_url: str, user_token: str, bootstrap_token: str):
        super().__init__(base_url, user_token, bootstrap_token)
        self.fields: dict[str, Any] = {}
        self.task_id = ""

    def call(self, function: str, body: dict[str, Any], caller: str) -> tuple[dict[str, Any], Cost]:
        if function == "tasks_new":
            body = {**body, **self.fields}
        answer, cost = super().call(function, body, caller)
        if function == "tasks_new":
            self.task_id = answer["task_id"]
        return answer, cost


class Subscription:
    def __init__(self) -> None:
        pubsub_v1.PublisherClient().create_topic(name=TOPIC)
        self._client = pubsub_v1.SubscriberClient()
        self._client.create_subscription(name=SUBSCRIPTION, topic=TOPIC)

    def wait_for(self, task_id: str) -> float:
        """Seconds until the message of `task_id` arrives (others are dropped)."""
        start = time.perf_counter()
        while time.perf_counter() - start < RECEIVE_SECS:
            answer = self._client.pull(subscription=SUBSCRIPTION, max_messages=10, timeout=RECEIVE_SECS)
            if not answer.received_messages:
                continue
            self._client.acknowledge(subscription=SUBSCRIPTION, ack_ids=[m.ack_id for m in answer.received_messages])
            if any(json.loads(m.message.data)["task_id"] == task_id for m in answer.received_messages):
                return time.perf_counter() - start
        raise TimeoutError(f"no message for {task_id} in {RECEIVE_SECS} s")


def _life_totals(lives: list[dict[str, Cost]]) -> list[int]:
    """The median life's reads, writes and Cloud Tasks calls (a poll reads
    once more when its instance refreshes its queues, every 3 s)."""
    return [statistics.median_low(sum(life[step][i] for step in STEPS) for life in lives) for i in range(3)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lives", type=int, default=20, help="Task lives of each kind.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp)
        stack = local_stack.up(state_dir, bots=0, config_dir=CONFIG_DIR)
        try:
            os.environ["PUBSUB_EMULATOR_HOST"] = local_stack.functions_env(state_dir)["PUBSUB_EMULATOR_HOST"]
            subscription = Subscription()
            api = Notified.of_stack(state_dir, stack["base_url"])
            plain = [one_life(api) for _ in range(args.lives)]
            plain_cost = api.call("task_result", {"task_id": api.task_id}, USER)[0]["server_cost"]
            api.fields = {"pubsub_topic": TOPIC, "pubsub_userdata": "bench", "pubsub_auth_token": "t0ken"}
            notified, latencies = [], []
            for _ in range(args.lives):
                notified.append(one_life(api))
                latencies.append(subscription.wait_for(api.task_id))
            notified_cost = api.call("task_result", {"task_id": api.task_id}, USER)[0]["server_cost"]
            _, delivery = api.call("timer_notify", {"task_id": api.task_id}, USER)
            subscription.wait_for(api.task_id)
        finally:
            local_stack.down(state_dir)
    rows: list[tuple[str, object]] = [("lives of each kind", args.lives)]
    for kind, lives, cost in (("plain", plain, plain_cost), ("notified", notified, notified_cost)):
        reads, writes, cloud_tasks = _life_totals(lives)
        rows += [(f"{kind} life: reads", reads), (f"{kind} life: writes", writes),
                 (f"{kind} life: cloud tasks ops", cloud_tasks),
                 (f"{kind} server_cost: reads", cost["firestore_reads"]),
                 (f"{kind} server_cost: writes", cost["firestore_writes"]),
                 (f"{kind} server_cost: cloud tasks ops", cost["cloud_tasks_ops"])]
    rows += [("timer_notify delivery: reads", delivery[0]), ("timer_notify delivery: writes", delivery[1]),
             ("timer_notify delivery: cloud tasks ops", delivery[2]),
             ("end to message: p50 s", statistics.median(latencies)), ("end to message: max s", max(latencies))]
    report("notify", rows)


if __name__ == "__main__":
    main()
