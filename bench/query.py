"""Task lists and counts on the local stack (issue 14).

Stores `--tasks` tasks (10,000) straight through the store's TaskBatch, the
writer tasks_new uses (creating them over HTTP would take minutes on 2 cores),
500 to a batch, in states, tags and times spread as below; then, for each
filter shape, asks tasks_list for a page of 100 (`--repeat` times) and
tasks_count, over HTTP as the local user (a global admin), and prints, and
writes to bench/results/query.json, the Firestore reads of each call (the
X-Firestore-Reads header) and its p50 latency, next to task_result (a
single document read) in the same run.

Usage: `python -m bench.query [--tasks N] [--repeat N]`.
"""

import argparse
import datetime
import os
import random
import statistics
import tempfile
from pathlib import Path
from typing import Any

from google.cloud import firestore

from bench.results import report
from bench.task_life import CONFIG_DIR, USER, Api, task_request
from functions.models import TaskResult
from functions.store import Store
from local import stack as local_stack
from shared import task_id as task_ids
from shared.states import State
from shared.task_request import TaskRequest

PAGE = 100
BATCH = 500
#: Outcomes by share of the tasks, drawn for each: (state, exit code, deduplicated).
MIX = ([(State.COMPLETED, 0, False)] * 10 + [(State.COMPLETED, 1, False)] * 3 + [(State.COMPLETED, 0, True)]
       + [(State.PENDING, None, False)] * 2 + [(State.RUNNING, None, False)] * 2 + [(State.EXPIRED, None, False)] * 2)
#: Filter shapes: label → tasks_list parameters. Task i has the tags suite:s{i%10},
#: build:b{i%100} (one task in 100, all of them in one suite) and host:h{i%7}.
SHAPES: dict[str, dict[str, Any]] = {
    "no tag, ALL": {},
    "no tag, COMPLETED_SUCCESS": {"state": "COMPLETED_SUCCESS"},
    "1 tag (pool, every task)": {"tags": ["pool:bench"]},
    "1 tag (10%), COMPLETED (3 outcomes)": {"tags": ["suite:s3"], "state": "COMPLETED"},
    "1 tag (10%), PENDING_RUNNING": {"tags": ["suite:s3"], "state": "PENDING_RUNNING"},
    "1 tag, created in a 30% window": {"tags": ["pool:bench"], "window": 0.3},
    "1 tag, by started_ts": {"tags": ["pool:bench"], "sort": "started_ts"},
    "2 tags, the rare one leads (1%)": {"tags": ["suite:s3", "build:b13"]},
    "3 tags, pool + suite + host (1.4%, leads scan)": {"tags": ["pool:bench", "suite:s3", "host:h2"]},
}


def store_tasks(project: str, count: int, now: datetime.datetime) -> tuple[datetime.datetime, datetime.datetime]:
    """Stores `count` tasks created one a second up to `now`; returns the first and last creation times."""
    store = Store(firestore.Client(project=project))
    request = TaskRequest.from_wire(task_request(pool="bench", wait=True))
    rand = random.Random(14)
    batch = store.batch()
    for i in range(count):
        created = now - datetime.timedelta(seconds=count - i)
        state, exit_code, deduped = rand.choice(MIX)
        tags = [*request.tags, "pool:bench", f"suite:s{i % 10}", f"build:b{i % 100}", f"host:h{i % 7}"]
        result = TaskResult(task_id=task_ids.task_id(task_ids.new_request_id(created, rand)), name="bench", tags=tags,
                            user="bench", priority=100, pool="bench", created_ts=created, modified_ts=created,
                            state=state, exit_code=exit_code, deduped_from="0" * 15 + "0" if deduped else None)
        if state in (State.RUNNING, State.COMPLETED):
            result.started_ts = created + datetime.timedelta(seconds=1)
        if state == State.COMPLETED:
            result.completed_ts = created + datetime.timedelta(seconds=2)
        batch.create_task(result, request)
        if (i + 1) % BATCH == 0 or i + 1 == count:
            batch.commit()
            batch = store.batch()
    return now - datetime.timedelta(seconds=count), now


def measure(api: Api, function: str, body: dict[str, Any], repeat: int) -> tuple[int, float, dict[str, Any]]:
    """The reads of one call, its p50 milliseconds over `repeat` calls, and its answer."""
    costs, answer = [], {}
    for _ in range(repeat):
        answer, cost = api.call(function, body, USER)
        costs.append(cost)
    return costs[-1][0], statistics.median(cost[3] for cost in costs) * 1000, answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000, help="Tasks stored.")
    parser.add_argument("--repeat", type=int, default=3, help="Calls per shape for the p50.")
    args = parser.parse_args()
    rows: list[tuple[str, object]] = [("tasks", args.tasks), ("page size", PAGE)]
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp)
        stack = local_stack.up(state_dir, config_dir=CONFIG_DIR)
        try:
            os.environ["FIRESTORE_EMULATOR_HOST"] = f"127.0.0.1:{stack['ports']['firestore']}"
            first, last = store_tasks(stack["project"], args.tasks, datetime.datetime.now(datetime.timezone.utc))
            api = Api.of_stack(state_dir, stack["base_url"])
            one = api.call("tasks_list", {"limit": 1}, USER)[0]["items"][0]["task_id"]
            reads, p50, _ = measure(api, "task_result", {"task_id": one}, args.repeat)
            rows += [("task_result (one document): reads", reads), ("task_result (one document): p50 ms", p50)]
            for label, shape in SHAPES.items():
                body = dict(shape)
                if "window" in body:
                    span = (last - first) * body.pop("window")
                    body.update(start=(first + span).isoformat(), end=(first + 2 * span).isoformat())
                reads, p50, page = measure(api, "tasks_list", {**body, "limit": PAGE}, args.repeat)
                rows += [(f"list {label}: items", len(page["items"])), (f"list {label}: reads", reads),
                         (f"list {label}: p50 ms", p50)]
                if page["cursor"]:
                    reads, _, _ = measure(api, "tasks_list", {**body, "limit": PAGE, "cursor": page["cursor"]}, 1)
                    rows.append((f"list {label}: reads of page 2", reads))
                reads, p50, count = measure(api, "tasks_count", body, args.repeat)
                shown = f"{'at least ' if count['at_least'] else ''}{count['count']}"
                rows += [(f"count {label}", shown), (f"count {label}: reads", reads),
                         (f"count {label}: p50 ms", p50)]
        finally:
            local_stack.down(state_dir)
    report("query", rows)


if __name__ == "__main__":
    main()
