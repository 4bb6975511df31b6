"""The scheduler at fleet scale on the local stack: claims, then idle polls.

Setup: one pool of `--queues` distinct queues (each task asks for one `os`,
`cpu` or `gpu` value) holding `--tasks` tasks, and `--bots` registered bots,
each with one value of each key, so each bot matches three queues.

1. Claims: `--claimers` threads take the bots in turn (poll, claim the
   candidates in order, complete) until every task ran. Prints claims per
   second, the Firestore reads and writes of a claim, the gateway's CPU per
   task, and checks that every task was claimed exactly once; next to the
   rate of single-document read-modify-write transactions made directly on
   the same emulator.
2. Idle polls: with the queues empty, `--pollers` threads poll the bots in turn
   for `--poll-seconds`, without sleeping. Prints polls per second, poll
   latency, reads and writes per poll (amortised, queue-cache refreshes
   included) and the gateway's CPU per poll; next to the latency of a
   single document read made directly on the emulator by as many threads.

Reads and writes come from the X-Firestore-* headers of each answer; the
budgets are those of the issue. Bots echo the `session` the server hands them
and report their `sleep_streak`, as real bots do. Usage:
`python -m bench.scheduler [--bots N] [--queues N] [--tasks N] [--claimers N]
[--pollers N] [--poll-seconds S]`.
"""

import argparse
import concurrent.futures
import dataclasses
import os
import queue
import statistics
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from google.cloud import firestore

from bench import cpu, task_life
from bench.task_life import USER, Api
from bench.results import report
from local import stack as local_stack

POOL = "bench"
KEYS = ("os", "cpu", "gpu")
#: The issue's budgets, in Firestore (reads, writes) per call.
BUDGETS = {"claim": (3, 3), "idle poll": (1.5, 0.05)}
#: How long each direct measurement of the emulator runs.
RAW_SECS = 10.0
#: The claims phase gives up after this long (a stuck scheduler fails the check).
DRAIN_LIMIT_SECS = 300.0
RAW_COLLECTION = "bench_raw"

T = TypeVar("T")
R = TypeVar("R")


@dataclasses.dataclass(frozen=True)
class Reply:
    """One function's answer and what it cost."""

    body: dict[str, Any]
    reads: int
    writes: int
    secs: float


def call(api: Api, function: str, body: dict[str, Any], caller: str, held_secs: float = 0.0) -> Reply:
    answer, (reads, writes, _, secs) = api.call(function, body, caller, held_secs)
    return Reply(answer, reads, writes, secs)


@dataclasses.dataclass
class Cost:
    """The calls of one kind: how many, their reads, writes and latencies."""

    calls: int = 0
    reads: int = 0
    writes: int = 0
    secs: list[float] = dataclasses.field(default_factory=list)


class Tally:
    """Adds up replies by label, from many threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.costs: dict[str, Cost] = defaultdict(Cost)

    def add(self, label: str, reply: Reply) -> None:
        with self._lock:
            cost = self.costs[label]
            cost.calls += 1
            cost.reads += reply.reads
            cost.writes += reply.writes
            cost.secs.append(reply.secs)

    def total(self, labels: Iterable[str]) -> Cost:
        found = [self.costs[label] for label in labels]
        return Cost(sum(c.calls for c in found), sum(c.reads for c in found), sum(c.writes for c in found),
                    [s for c in found for s in c.secs])


@dataclasses.dataclass
class Bot:
    """A bench bot: what it reports on every call, and the session it echoes."""

    dimensions: dict[str, list[str]]
    sleep_streak: int = 0
    session: str | None = None

    @property
    def id(self) -> str:
        return self.dimensions["id"][0]

    def call(self, api: Api, function: str, **fields: Any) -> Reply:
        body = {"dimensions": self.dimensions, "state": {"sleep_streak": self.sleep_streak},
                "version": "dev", **fields}
        if self.session is not None:
            body["session"] = self.session
        reply = call(api, function, body, self.id, float(fields.get("hold_secs", 0.0)))
        self.session = reply.body.get("session", self.session)
        return reply


# The fleet: queue q asks for value q // 3 of KEYS[q % 3]; bot b has value
# b % n of each key, n being how many queues ask for that key.

def values_of(key_index: int, queues: int) -> int:
    return len(range(key_index, queues, len(KEYS)))


def check_bots_cover_queues(parser: argparse.ArgumentParser, bots: int, queues: int) -> None:
    """Refuses a fleet too small for every queue to have a matching bot."""
    if bots < values_of(0, queues):
        parser.error(f"--bots must be at least {values_of(0, queues)} for every queue to have a bot")


def queue_dimensions(q: int) -> list[dict[str, str]]:
    key = KEYS[q % len(KEYS)]
    return [{"key": "pool", "value": POOL}, {"key": key, "value": f"{key}-{q // len(KEYS)}"}]


def bot_dimensions(b: int, queues: int) -> dict[str, list[str]]:
    dims = {"id": [f"bench-bot-{b}"], "pool": [POOL]}
    for i, key in enumerate(KEYS):
        if values := values_of(i, queues):
            dims[key] = [f"{key}-{b % values}"]
    return dims


def task_body(q: int) -> dict[str, Any]:
    return {"name": f"bench-{q}", "priority": 100, "task_slices": [{"expiration_secs": 3600, "properties": {
        "command": ["true"], "dimensions": queue_dimensions(q), "execution_timeout_secs": 60}}]}


def in_parallel(threads: int, work: Callable[[T], R], items: Iterable[T]) -> list[R]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(work, items))


def for_duration(threads: int, secs: float, work: Callable[[int], None]) -> float:
    """Runs `work(thread_index)` over and over on each thread for `secs`; the elapsed time."""
    start = time.perf_counter()
    end = start + secs

    def loop(n: int) -> None:
        while time.perf_counter() < end:
            work(n)

    in_parallel(threads, loop, range(threads))
    return time.perf_counter() - start


def rotate(bots: list[Bot], threads: int, secs: float, step: Callable[[Bot], bool]) -> float:
    """`threads` threads take the bots in turn, each bot on one thread at a
    time, and run `step` on it; a bot leaves the rotation when `step` answers
    False. Ends when no bot is left or after `secs`; returns the elapsed time."""
    ready: queue.SimpleQueue[Bot] = queue.SimpleQueue()
    for bot in bots:
        ready.put(bot)
    start = time.perf_counter()
    end = start + secs

    def worker(_: int) -> None:
        while time.perf_counter() < end:
            try:
                bot = ready.get_nowait()
            except queue.Empty:
                return  # Every bot still in the rotation is held by a thread that will run it again.
            if step(bot):
                ready.put(bot)

    in_parallel(threads, worker, range(threads))
    return time.perf_counter() - start


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1] if len(values) > 1 else values[0]


# Phases.

def set_up(api: Api, args: argparse.Namespace) -> tuple[list[str], list[Bot]]:
    """Registers the bots, then creates the tasks (a task no live bot matches
    is NO_RESOURCE at once); returns the task ids and the bots."""
    bots = [Bot(bot_dimensions(b, args.queues)) for b in range(args.bots)]
    in_parallel(args.claimers, lambda bot: bot.call(api, "bot_handshake"), bots)
    task_ids = in_parallel(args.claimers, lambda t: call(api, "tasks_new", task_body(t % args.queues),
                                                             USER).body["task_id"], range(args.tasks))
    return task_ids, bots


def drain(api: Api, bots: list[Bot], threads: int, tally: Tally) -> tuple[list[str], float]:
    """Bots poll, claim and complete until none finds work; returns the task
    ids claimed (once per won claim) and the elapsed time."""
    claimed: list[str] = []

    def step(bot: Bot) -> bool:
        poll = bot.call(api, "bot_poll")
        if poll.body["cmd"] != "claim":
            tally.add("poll: sleep", poll)
            return False  # No task is added while draining: this bot's queues are empty for good.
        tally.add("poll: claim", poll)
        for candidate in poll.body["candidates"]:
            won = bot.call(api, "bot_claim", task_id=candidate["task_id"], slice=candidate["slice"],
                           claim_id=uuid.uuid4().hex)
            if won.body["cmd"] == "run":
                tally.add("claim: won", won)
                claimed.append(candidate["task_id"])
                tally.add("complete", bot.call(api, "bot_task_update", task_id=won.body["manifest"]["task_id"],
                                               exit_code=0, duration=0.1))
                return True
            tally.add("claim: lost", won)
        return True  # Every candidate lost its race: poll again.

    return claimed, rotate(bots, threads, DRAIN_LIMIT_SECS, step)


def completed(api: Api, task_ids: list[str], threads: int) -> int:
    states = in_parallel(threads, lambda t: call(api, "task_result", {"task_id": t}, USER).body["state"],
                         task_ids)
    return states.count("COMPLETED")


def idle_polls(api: Api, bots: list[Bot], threads: int, secs: float, tally: Tally) -> float:
    def step(bot: Bot) -> bool:
        reply = bot.call(api, "bot_poll")
        tally.add(f"idle poll: {reply.body['cmd']}", reply)
        bot.sleep_streak += 1
        return True

    return rotate(bots, threads, secs, step)


def firestore_client(stack: dict[str, Any], project: str | None = None) -> firestore.Client:
    """The official client on the stack's emulator (it reads the variable when
    built), in the stack's project or in `project`."""
    os.environ["FIRESTORE_EMULATOR_HOST"] = f"127.0.0.1:{stack['ports']['firestore']}"
    return firestore.Client(project=project or stack["project"])


def raw_transactions(db: firestore.Client, threads: int) -> float:
    """Read-modify-write transactions per second, each thread on its own document."""
    refs = [db.collection(RAW_COLLECTION).document(f"txn-{n}") for n in range(threads)]
    for ref in refs:
        ref.set({"n": 0})
    counts = [0] * threads

    @firestore.transactional
    def bump(transaction: firestore.Transaction, ref: firestore.DocumentReference) -> None:
        transaction.update(ref, {"n": ref.get(transaction=transaction).get("n") + 1})

    def work(n: int) -> None:
        bump(db.transaction(), refs[n])
        counts[n] += 1

    secs = for_duration(threads, RAW_SECS, work)
    return sum(counts) / secs


def raw_reads(db: firestore.Client, threads: int) -> list[float]:
    """Latencies of single document reads, each thread reading its own document."""
    refs = [db.collection(RAW_COLLECTION).document(f"read-{n}") for n in range(threads)]
    for ref in refs:
        ref.set({"n": 0})
    latencies: list[float] = []

    def work(n: int) -> None:
        start = time.perf_counter()
        refs[n].get()
        latencies.append(time.perf_counter() - start)

    for_duration(threads, RAW_SECS, work)
    return latencies


# Figures.

def call_rows(label: str, cost: Cost) -> list[tuple[str, Any]]:
    """Count, mean reads and writes (next to their budget, if any) and p50 latency of one kind of call."""
    calls = max(1, cost.calls)
    reads, writes = f"{label}: reads", f"{label}: writes"
    if label in BUDGETS:
        reads, writes = (f"{reads} (budget {BUDGETS[label][0]})", f"{writes} (budget {BUDGETS[label][1]})")
    p50 = statistics.median(cost.secs) * 1000 if cost.secs else 0.0
    return [(f"{label}: calls", cost.calls), (reads, cost.reads / calls), (writes, cost.writes / calls),
            (f"{label}: p50 ms", p50)]


def claim_rows(tally: Tally, claimed: list[str], task_ids: list[str], done: int, secs: float,
               raw_rate: float, cpu_secs: float) -> list[tuple[str, Any]]:
    """`cpu_secs`: the gateway's over the claims (what deployed functions are billed for)."""
    won = tally.costs["claim: won"]
    per_task = tally.total(("poll: claim", "claim: won", "claim: lost", "complete"))
    claims = max(1, won.calls)
    return [
        ("claims: wall time (s)", secs),
        ("claims per s", won.calls / secs),
        ("raw 1-doc RMW transactions per s (same threads)", raw_rate),
        *call_rows("claim", won),
        *call_rows("lost claim", tally.costs["claim: lost"]),
        *call_rows("poll with candidates", tally.costs["poll: claim"]),
        *call_rows("poll answered sleep (claims phase)", tally.costs["poll: sleep"]),
        *call_rows("complete", tally.costs["complete"]),
        ("per task: reads (poll+claim+complete)", per_task.reads / claims),
        ("per task: writes (poll+claim+complete)", per_task.writes / claims),
        ("per task: gateway CPU ms (poll+claim+complete)", cpu_secs * 1000 / claims),
        ("check: tasks created", len(task_ids)),
        ("check: tasks claimed (distinct)", len(set(claimed) & set(task_ids))),
        ("check: tasks claimed twice", len(claimed) - len(set(claimed))),
        ("check: tasks COMPLETED (task_result)", done),
    ]


def idle_rows(tally: Tally, secs: float, read_secs: list[float], cpu_secs: float) -> list[tuple[str, Any]]:
    """`cpu_secs`: the gateway's over the idle polls."""
    polls = tally.total(label for label in list(tally.costs) if label.startswith("idle poll: "))
    poll_p50, read_p50 = statistics.median(polls.secs), statistics.median(read_secs)
    return [
        *call_rows("idle poll", polls),
        ("idle polls answered other than sleep", polls.calls - tally.costs["idle poll: sleep"].calls),
        ("idle polls per s", polls.calls / secs),
        ("idle poll: p99 ms", percentile(polls.secs, 99) * 1000),
        ("idle poll: gateway CPU ms", cpu_secs * 1000 / max(1, polls.calls)),
        ("raw 1-doc read: p50 ms (same threads)", read_p50 * 1000),
        ("raw 1-doc read: p99 ms (same threads)", percentile(read_secs, 99) * 1000),
        ("idle poll p50 / raw read p50", poll_p50 / read_p50),
    ]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bots", type=int, default=1000, help="Registered bots.")
    parser.add_argument("--queues", type=int, default=1000, help="Distinct queues (dimension sets) in the pool.")
    parser.add_argument("--tasks", type=int, help="Tasks to drain, spread over the queues (default: --queues).")
    parser.add_argument("--claimers", type=int, default=20, help="Threads draining the tasks.")
    parser.add_argument("--pollers", type=int, default=20, help="Threads making idle polls.")
    parser.add_argument("--poll-seconds", type=float, default=60.0, help="How long the idle polls last.")
    args = parser.parse_args()
    args.tasks = args.queues if args.tasks is None else args.tasks
    check_bots_cover_queues(parser, args.bots, args.queues)
    return args


def main() -> None:
    args = parse_args()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp)
        stack = local_stack.up(state_dir, bots=0, config_dir=task_life.CONFIG_DIR)
        try:
            api = Api.of_stack(state_dir, stack["base_url"])
            db = firestore_client(stack)
            setup_start = time.perf_counter()
            task_ids, bots = set_up(api, args)
            setup_secs = time.perf_counter() - setup_start
            drained = Tally()
            before = cpu.by_kind(stack)
            claimed, drain_secs = drain(api, bots, args.claimers, drained)
            drain_cpu = cpu.used(before, cpu.by_kind(stack))["gateway"]
            done = completed(api, task_ids, args.claimers)
            raw_rate = raw_transactions(db, args.claimers)
            idle = Tally()
            before = cpu.by_kind(stack)
            idle_secs = idle_polls(api, bots, args.pollers, args.poll_seconds, idle)
            idle_cpu = cpu.used(before, cpu.by_kind(stack))["gateway"]
            read_secs = raw_reads(db, args.pollers)
        finally:
            local_stack.down(state_dir)
    rows: list[tuple[str, Any]] = [
        ("queues", args.queues), ("bots", args.bots), ("tasks", args.tasks),
        ("claimer threads", args.claimers), ("poller threads", args.pollers),
        ("setup: handshakes + create tasks (s)", setup_secs),
    ]
    rows += claim_rows(drained, claimed, task_ids, done, drain_secs, raw_rate, drain_cpu)
    rows += idle_rows(idle, idle_secs, read_secs, idle_cpu)
    rows.append(("whole bench (s)", time.perf_counter() - began))
    report("scheduler", rows)
    if not len(claimed) == len(set(claimed)) == done == len(task_ids):
        raise SystemExit("FAILED: not every task was claimed and completed exactly once")


if __name__ == "__main__":
    main()
