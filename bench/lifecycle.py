"""The task life cycle on the local stack (with its Cloud Tasks emulator).

Prints, and writes to bench/results/lifecycle.json:
- the Firestore reads and writes and the Cloud Tasks calls of each step of one
  task's life (create → poll → claim → 2 updates → complete), from the
  X-Firestore-* and X-Cloud-Tasks-Ops headers of each answer, against the
  issue's budget (≤ 8 writes, ≤ 12 reads);
- the gateway's CPU milliseconds per call of each kind of a task's life
  (what a deployed function is billed for), `--per-call` calls of a kind in
  a row;
- tasks created per second, sustained for `--create-seconds` by `--creators`
  threads;
- end-to-end tasks per second with `--bots` real local bots running `true`,
  with the CPU each part of the stack used meanwhile (bench/cpu.py: the
  Firestore emulator, the gateway, the bots with their task runners...), next
  to the raw rate of 3-document batch commits (a claim's write) on the same
  emulator in the same run (in another project: the emulator's queries scan
  the whole project, and these would slow the stack's down).

Usage: `python -m bench.lifecycle [--lives N] [--create-seconds S]
[--creators N] [--bots N] [--tasks N] [--per-call N]`.
"""

import argparse
import concurrent.futures
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from google.cloud import firestore

from bench import cpu
from bench.results import report
from bench.scheduler import firestore_client, for_duration
from bench.task_life import CONFIG_DIR, STEPS, USER, Api, cpu_per_call, one_life, task_request
from local import stack as local_stack

BUDGET_WRITES, BUDGET_READS = 8, 12
RAW_THREADS, RAW_SECS = 8, 5.0


def sustained_creates(api: Api, seconds: float, threads: int) -> tuple[int, float]:
    """Tasks created by `threads` creators in `seconds` (all in a pool no bot serves)."""
    stop = threading.Event()
    counts = [0] * threads

    def create(n: int) -> None:
        while not stop.is_set():
            api.call("tasks_new", task_request(pool="nobody", wait=True), USER)
            counts[n] += 1

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(create, n) for n in range(threads)]
        started = time.perf_counter()
        time.sleep(seconds)
        stop.set()
        for future in futures:
            future.result()
    return sum(counts), time.perf_counter() - started


def end_to_end(api: Api, tasks: int, creators: int) -> tuple[float, list[str]]:
    """Seconds from creating `tasks` trivial tasks, by `creators` threads as
    CI systems trigger them, to none of the pool's pending or running (a
    page of one, twice a second: the bench's own watching costs the stack
    next to nothing), and the tasks' ids. (Created one at a time, tasks
    arrived at about 19 a second, and the bots' rate was that of their
    creation.)"""
    def create(_: int) -> str:
        return api.call("tasks_new", task_request(pool="default", command=["true"]), USER)[0]["task_id"]

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(creators) as pool:
        ids = list(pool.map(create, range(tasks)))
    unfinished = {"state": "PENDING_RUNNING", "tags": ["pool:default"], "limit": 1}
    while api.call("tasks_list", unfinished, USER)[0]["items"]:
        time.sleep(0.5)
    return time.perf_counter() - started, ids


def check_completed(api: Api, ids: list[str]) -> None:
    """Each task COMPLETED (after the CPU is counted: these reads are the bench's)."""
    states = {api.call("task_result", {"task_id": t}, USER)[0]["state"] for t in ids}
    if states != {"COMPLETED"}:
        raise SystemExit(f"end to end: tasks ended {sorted(states)}, not all COMPLETED")


def raw_batches(db: firestore.Client) -> float:
    """Batches of 3 new documents committed per second by RAW_THREADS threads."""
    counts = [0] * RAW_THREADS

    def work(n: int) -> None:
        batch = db.batch()
        for d in range(3):
            batch.set(db.collection("bench_raw_batches").document(f"{n}-{counts[n]}-{d}"), {"n": d})
        batch.commit()
        counts[n] += 1

    secs = for_duration(RAW_THREADS, RAW_SECS, work)
    return sum(counts) / secs


def cpu_rows(used: dict[str, float], tasks: int, secs: float) -> list[tuple[str, object]]:
    """The CPU of each part of the stack per task, and the share of the machine it took."""
    cores = os.cpu_count() or 1
    rows: list[tuple[str, object]] = [(f"end-to-end: CPU ms per task, {kind}", used[kind] * 1000 / tasks)
                                      for kind in sorted(used, key=lambda k: -used[k])]
    rows += [("end-to-end: CPU ms per task, all", sum(used.values()) * 1000 / tasks),
             (f"end-to-end: share of the {cores} cores used", sum(used.values()) / (cores * secs))]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lives", type=int, default=30, help="Task lives to average the step costs over.")
    parser.add_argument("--create-seconds", type=float, default=30.0, help="How long creation is sustained.")
    parser.add_argument("--creators", type=int, default=8, help="Threads creating tasks (sustained and end to end).")
    parser.add_argument("--bots", type=int, default=20, help="Local bots for the end-to-end rate.")
    parser.add_argument("--tasks", type=int, default=200, help="Trivial tasks run end to end.")
    parser.add_argument("--per-call", type=int, default=100,
                        help="Calls of each kind of a task's life timed for the gateway's CPU per call.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp)
        stack = local_stack.up(state_dir, bots=args.bots, config_dir=CONFIG_DIR)
        try:
            api = Api.of_stack(state_dir, stack["base_url"])
            lives = [one_life(api) for _ in range(args.lives)]
            per_call = cpu_per_call(api, args.per_call, lambda: cpu.by_kind(stack)["gateway"])
            check_completed(api, end_to_end(api, args.bots, args.creators)[1])  # wakes the bots, as a busy fleet is
            before = cpu.by_kind(stack)
            e2e_secs, ids = end_to_end(api, args.tasks, args.creators)
            used = cpu.used(before, cpu.by_kind(stack))
            check_completed(api, ids)
            # In a project of its own: the emulator's queries scan their project, every document of it.
            raw_rate = raw_batches(firestore_client(stack, project="bench-raw"))
            # Last: the tasks it leaves pending expire by the thousand a minute later.
            created, create_secs = sustained_creates(api, args.create_seconds, args.creators)
        finally:
            local_stack.down(state_dir)
    last = lives[-1]
    rows: list[tuple[str, object]] = [("stack cold start (s)", stack["started_secs"]), ("lives", args.lives)]
    for step in STEPS:
        reads, writes, cloud_tasks, _ = last[step]
        p50 = statistics.median(life[step][3] for life in lives) * 1000
        rows += [(f"{step}: reads", reads), (f"{step}: writes", writes), (f"{step}: cloud tasks ops", cloud_tasks),
                 (f"{step}: p50 ms", p50)]
    rows += [(f"gateway CPU ms per call: {kind}", ms) for kind, ms in per_call.items()]
    rows += [
        (f"task life: reads (budget {BUDGET_READS})", sum(last[s][0] for s in STEPS)),
        (f"task life: writes (budget {BUDGET_WRITES})", sum(last[s][1] for s in STEPS)),
        ("task life: cloud tasks ops", sum(last[s][2] for s in STEPS)),
        (f"tasks created per second ({args.creators} threads, {args.create_seconds:.0f} s)", created / create_secs),
        (f"end-to-end tasks per second ({args.bots} bots, {args.tasks} tasks of `true`)", args.tasks / e2e_secs),
        (f"raw 3-doc batch commits per second ({RAW_THREADS} threads, same emulator)", raw_rate),
    ]
    rows += cpu_rows(used, args.tasks, e2e_secs)
    report("lifecycle", rows)


if __name__ == "__main__":
    main()
