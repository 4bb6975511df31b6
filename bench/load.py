"""Load: a fleet of simulated bots working through a burst of tasks on the local stack.

`--bots` bench bots, one thread each, are admitted by a bootstrap token, then
live as real bots do, over real HTTP against the gateway: poll (echoing their
session and reporting their sleep streak; held up to `--hold-secs`: 0, or 60
for the real bot's long poll), sleep as long as the server says when it has nothing,
claim the candidates in order until one is won, and complete it with a line
of stdout. `--submitters` threads create `--tasks`
tasks spread over `--queues` queues (distinct dimension sets, as in
`bench.scheduler`: each bot matches three) while the bots run, as CI systems
would, keeping at most `--backlog` created and not yet completed: the
emulator answers each poll with a full scan of the pending slices
(LOCAL-STACK.md), which 10,000 pending slices would take past the Firestore
client's deadline; deployed, the queries are indexed. `--backlog 0` creates
them all before the bots start. The bots start over `--ramp-secs` (30 s), as
a fleet's machines come up: 500 first polls in the same second, each a full
scan on the emulator, take it past the client's deadline. Ends when every task was completed, or after
`--limit-secs`.

Prints poll and claim latencies (p50, p99), claims lost to races, tasks per
second, Firestore reads and writes per poll, claim and completion (from the
X-Firestore-* headers), the calls that failed for good on the bots' side and
the 5xx answers of each function in the gateway's access log (retried ones
included, timers' and cron's too). Checks every task ran exactly once: claims
won and completions sent per task on the bots' side, and each task's result
(COMPLETED, first try, by the bot that won it). Usage:
`python -m bench.load [--bots N] [--tasks N] [--queues N] [--backlog N] [--submitters N] [--ramp-secs S]
[--hold-secs S] [--limit-secs S] [--firestore-java-opts OPTS]`.
"""

import argparse
import datetime
import math
import os
import re
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from bench import task_life
from bench.results import report
from bench.scheduler import (
    Bot, Cost, Tally, bot_dimensions, call, call_rows, check_bots_cover_queues, in_parallel, percentile, task_body,
)
from bench.task_life import USER, Api
from bot import bot_main
from local import emulators
from local import stack as local_stack
from shared.api_error import ApiError
from shared.bot_api import Completion, Update

#: After a call that failed for good, a bot waits this long before polling again.
ERROR_PAUSE_SECS = 1.0
#: Threads that read the results at the end.
CHECKERS = 16
#: The emulator holds every document in its heap: 512 MB (the stack's
#: default) is nearly full at 3,000 tasks, and the full JIT serves more per CPU.
LONG_RUN_JAVA_OPTS = "-Xmx3g -XX:+UseSerialGC"
#: A request line of gunicorn's access log and its status: `"POST /bot_poll HTTP/1.1" 200`.
ACCESS_LINE = re.compile(r'"[A-Z]+ /([^/?" ]+)[^"]*" (\d{3}) ')


class Fleet:
    """What the bots saw, from all their threads: calls by kind, claims won
    and completions sent per task (with the winner), calls failed for good."""

    def __init__(self, tasks: int) -> None:
        self.tally = Tally()
        self.expected = tasks
        self.won: Counter[str] = Counter()
        self.completions: Counter[str] = Counter()
        self.winner: dict[str, str] = {}
        self.failed: Counter[str] = Counter()
        self.all_done = threading.Event()
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._issued = 0

    def claimed(self, task_id: str, bot_id: str) -> None:
        with self._lock:
            self.won[task_id] += 1
            self.winner[task_id] = bot_id

    def completed(self, task_id: str) -> None:
        with self._lock:
            self.completions[task_id] += 1
            self._room.notify_all()
            if len(self.completions) >= self.expected:
                self.all_done.set()

    def wait_for_room(self, backlog: int, until: float = math.inf) -> bool:
        """True when fewer than `backlog` tasks were created and not yet
        completed (0: at once), counting the one about to be created; False
        when `until` (a perf_counter time) came first."""
        with self._room:
            while backlog and self._issued - len(self.completions) >= backlog and time.perf_counter() < until:
                self._room.wait(min(until - time.perf_counter(), 1.0))
            if time.perf_counter() >= until:
                return False
            self._issued += 1
            return True

    def failure(self, error: ApiError) -> None:
        with self._lock:
            self.failed[f"{error.call} {error.status or 'no answer'}"] += 1


def run_one(api: Api, bot: Bot, candidates: list[dict[str, Any]], fleet: Fleet) -> None:
    """Claims the candidates in order until one is won, and completes it."""
    for candidate in candidates:
        won = bot.call(api, "bot_claim", task_id=candidate["task_id"], slice=candidate["slice"],
                       claim_id=uuid.uuid4().hex)
        if won.body["cmd"] != "run":
            fleet.tally.add("claim: lost", won)
            continue
        fleet.tally.add("claim: won", won)
        run_id = won.body["manifest"]["task_id"]
        fleet.claimed(candidate["task_id"], bot.id)
        stdout = f"hello from {bot.id}\n".encode()
        fleet.tally.add("complete", bot.call(api, "bot_task_update", task_id=run_id,
                                             **Update(0, stdout, Completion(0, 0.1)).to_wire()))
        fleet.completed(candidate["task_id"])
        return


def live(api: Api, bot: Bot, fleet: Fleet, stop: threading.Event, hold_secs: float) -> None:
    """One bot's loop until `stop`: poll (held up to `hold_secs`, as the real
    bot's long poll), then claim or sleep as told."""
    while not stop.is_set():
        try:
            poll = bot.call(api, "bot_poll", hold_secs=hold_secs)
            if poll.body["cmd"] == "claim":
                fleet.tally.add("poll: claim", poll)
                bot.sleep_streak = 0
                run_one(api, bot, poll.body["candidates"], fleet)
            else:
                fleet.tally.add(f"poll: {poll.body['cmd']}", poll)
                bot.sleep_streak += 1
                stop.wait(poll.body.get("duration", ERROR_PAUSE_SECS))
        except ApiError as e:
            fleet.failure(e)
            stop.wait(ERROR_PAUSE_SECS)


def create(api: Api, args: argparse.Namespace, fleet: Fleet, until: float = math.inf) -> tuple[list[str], float]:
    """Creates the tasks, round robin over the queues, from `--submitters`
    threads, keeping at most `--backlog` of them not completed, none after
    `until` (a perf_counter time); the task ids and the time it took."""
    def one(t: int) -> str | None:
        if not fleet.wait_for_room(args.backlog, until):
            return None
        return call(api, "tasks_new", task_body(t % args.queues), USER).body["task_id"]

    start = time.perf_counter()
    created = in_parallel(args.submitters, one, range(args.tasks))
    return [task_id for task_id in created if task_id is not None], time.perf_counter() - start


def run_fleet(api: Api, bots: list[Bot], args: argparse.Namespace, fleet: Fleet) -> tuple[list[str], float, float]:
    """With `--backlog`, the bots live while the tasks are created, else
    after; until every task completed, or `--limit-secs`. The task ids, the
    time their creation took and the bots' elapsed time."""
    if not args.backlog:
        task_ids, create_secs = create(api, args, fleet)
    stop = threading.Event()
    threads = [threading.Thread(target=live, args=(api, bot, fleet, stop, args.hold_secs), daemon=True) for bot in bots]
    start = time.perf_counter()
    ramp = threading.Thread(target=start_spread, args=(threads, args.ramp_secs, stop), daemon=True)
    ramp.start()
    if args.backlog:  # Created while the bots run: none past the limit.
        task_ids, create_secs = create(api, args, fleet, until=start + args.limit_secs)
    fleet.all_done.wait(max(0.0, args.limit_secs - (time.perf_counter() - start)))
    elapsed = time.perf_counter() - start
    stop.set()
    ramp.join()
    for thread in threads:
        if thread.ident is not None:
            thread.join()
    return task_ids, create_secs, elapsed


def start_spread(threads: list[threading.Thread], secs: float, stop: threading.Event) -> None:
    """Starts the bots' threads evenly over `secs`, as machines of a fleet
    come up, not in the same instant (until `stop`)."""
    for thread in threads:
        if stop.is_set():
            return
        thread.start()
        stop.wait(secs / len(threads))


def results_of(api: Api, task_ids: list[str]) -> list[dict[str, Any]]:
    return in_parallel(CHECKERS, lambda t: call(api, "task_result", {"task_id": t}, USER).body, task_ids)


def server_errors(log: Path) -> Counter[str]:
    """5xx answers per function in the gateway's access log."""
    errors: Counter[str] = Counter()
    for match in ACCESS_LINE.finditer(log.read_text(errors="replace")):
        if match.group(2).startswith("5"):
            errors[match.group(1)] += 1
    return errors


# Figures.

def latency_rows(label: str, cost: Cost) -> list[tuple[str, Any]]:
    """`call_rows` and the p99."""
    p99 = percentile(cost.secs, 99) * 1000 if cost.secs else 0.0
    return [*call_rows(label, cost), (f"{label}: p99 ms", p99)]


def call_figures(tally: Tally) -> list[tuple[str, Any]]:
    costs = tally.costs
    lost, won = costs["claim: lost"].calls, costs["claim: won"].calls
    return [
        *latency_rows("poll (all)", tally.total(label for label in list(costs) if label.startswith("poll: "))),
        *latency_rows("poll with candidates", costs["poll: claim"]),
        *latency_rows("poll answered sleep", costs["poll: sleep"]),
        *latency_rows("claim (won and lost)", tally.total(("claim: won", "claim: lost"))),
        *call_rows("claim won", costs["claim: won"]),
        *call_rows("claim lost", costs["claim: lost"]),
        ("claims lost to races", lost),
        ("claims lost per claim won", lost / max(1, won)),
        *latency_rows("complete", costs["complete"]),
    ]


def check_rows(fleet: Fleet, task_ids: list[str], results: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """Every task claimed and completed by exactly one bot, from both sides."""
    created = set(task_ids)
    return [
        ("check: tasks created", len(task_ids)),
        ("check: tasks claimed by exactly one bot (bots' side)", sum(fleet.won[t] == 1 for t in created)),
        ("check: tasks claimed more than once (bots' side)", sum(fleet.won[t] > 1 for t in created)),
        ("check: tasks never claimed (bots' side)", sum(fleet.won[t] == 0 for t in created)),
        ("check: tasks completed exactly once (bots' side)", sum(fleet.completions[t] == 1 for t in created)),
        ("check: claims of tasks not created", sum(n for t, n in fleet.won.items() if t not in created)),
        ("check: results COMPLETED", sum(r["state"] == "COMPLETED" for r in results)),
        ("check: results on their first try", sum(r.get("try_number") == 1 for r in results)),
        ("check: results by the bot that won the claim",
         sum(r.get("bot_id") is not None and r["bot_id"] == fleet.winner.get(r["task_id"]) for r in results)),
    ]


def error_rows(fleet: Fleet, errors: Counter[str]) -> list[tuple[str, Any]]:
    return [
        ("server errors: 5xx answers in all (gateway log)", sum(errors.values())),
        *((f"server errors: {function}", n) for function, n in sorted(errors.items())),
        ("bots' calls failed for good", sum(fleet.failed.values())),
        *((f"bots' calls failed for good: {call_status}", n) for call_status, n in sorted(fleet.failed.items())),
    ]


def passed(rows: list[tuple[str, Any]]) -> bool:
    figures = dict(rows)
    created = figures["check: tasks created"]
    return (figures["server errors: 5xx answers in all (gateway log)"] == 0 and all(
        figures[f"check: {name}"] == created for name in (
            "tasks claimed by exactly one bot (bots' side)", "tasks completed exactly once (bots' side)",
            "results COMPLETED", "results on their first try", "results by the bot that won the claim")))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bots", type=int, default=500, help="Simulated bots, one thread each.")
    parser.add_argument("--tasks", type=int, default=10_000, help="Tasks to create.")
    parser.add_argument("--backlog", type=int, default=1_000,
                        help="Most tasks created and not yet completed (0: create them all before the bots start).")
    parser.add_argument("--queues", type=int, default=10, help="Distinct queues (dimension sets) of the tasks.")
    parser.add_argument("--submitters", type=int, default=8, help="Threads creating the tasks.")
    parser.add_argument("--limit-secs", type=float, default=3600.0, help="Stop the bots after this long (then report).")
    parser.add_argument("--ramp-secs", type=float, default=30.0,
                        help="The bots start over this long (0: all at once, a stampede the emulator sheds with 503s).")
    parser.add_argument("--hold-secs", type=float, default=0.0,
                        help=f"How long a poll may be held ({bot_main.POLL_HOLD_SECS:g}: the real bot's long poll; "
                             "0: short polls, the default: on the emulator, the long poll's listeners slow every "
                             "commit, docs/local-stack.md).")
    parser.add_argument("--firestore-java-opts", default=LONG_RUN_JAVA_OPTS,
                        help="The Firestore emulator's JVM options (it holds every document in its heap).")
    args = parser.parse_args()
    check_bots_cover_queues(parser, args.bots, args.queues)
    return args


def main() -> None:
    args = parse_args()
    began = time.perf_counter()
    date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp)
        os.environ[emulators.FIRESTORE_JAVA_OPTS_ENV] = args.firestore_java_opts
        stack = local_stack.up(state_dir, bots=0, config_dir=task_life.CONFIG_DIR)
        try:
            api = Api.of_stack(state_dir, stack["base_url"])
            bots = [Bot(bot_dimensions(b, args.queues)) for b in range(args.bots)]
            in_parallel(args.submitters, lambda bot: bot.call(api, "bot_handshake"), bots)
            fleet = Fleet(args.tasks)
            task_ids, create_secs, run_secs = run_fleet(api, bots, args, fleet)
            results = results_of(api, task_ids)
        finally:
            local_stack.down(state_dir)
        errors = server_errors(state_dir / "logs" / "gateway.log")
    done = len(fleet.completions)
    rows: list[tuple[str, Any]] = [
        ("date", date), ("bots", args.bots), ("tasks", args.tasks), ("queues", args.queues),
        ("submitter threads", args.submitters), ("backlog (0: all created before the bots start)", args.backlog),
        ("bots started over (s)", args.ramp_secs), ("poll held up to (s)", args.hold_secs),
        ("Firestore emulator's JVM options", args.firestore_java_opts),
        ("create: tasks per s", len(task_ids) / create_secs),
        ("run: wall time (s)", run_secs),
        ("tasks completed per s", done / run_secs),
        *call_figures(fleet.tally),
        *error_rows(fleet, errors),
        *check_rows(fleet, task_ids, results),
    ]
    rows.append(("whole bench (s)", time.perf_counter() - began))
    report("load", rows)
    if not passed(rows):
        raise SystemExit("FAILED: a task did not run exactly once, or the server answered a 5xx")


if __name__ == "__main__":
    main()
