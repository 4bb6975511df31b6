"""Pickup on an idle fleet: how soon a task starts once created, and what
the idle fleet costs meanwhile (issue 16 goal 2).

Runs twice on a fresh local stack with `--bots` real bots from the zip: the
reference, the server's long poll off (SWARMING_POLL_HOLD_SECS=0: bots back
off up to 60 s, as before), then the long poll (`--hold` s). Each time the
fleet runs one task and one aimed at each bot (a fleet idle for an hour has:
their queues exist), then idles until it has reached its longest back-off or
long poll (`--settle` s, then `--idle` s measured); then a task is aimed at
each bot, and `--tasks` tasks of `true` are created one every `--every` s.
Prints, and writes to bench/results/pickup.json:
- each idle bot's pickup (created → claimed, the server's timestamps) of a
  task aimed at it alone (dimension `id`), one per bot, all created at once
  after the idle time: p50, max;
- then the pickup of the `--tasks` tasks any bot may run: p50, p99, max;
- while idle, per bot-minute: the bots' calls, their Firestore reads (the
  X-Firestore-Reads of each answer, in the gateway's log; a listener's reads
  are billed to the answers of its instance) and writes, and the gateway's
  CPU milliseconds (its processes' CPU time over the idle window), also per
  idle poll answered.

Usage: `python -m bench.pickup [--bots N] [--tasks N] [--every S] [--hold S]
[--settle-reference S] [--settle S] [--idle S]`.
"""

import argparse
import dataclasses
import datetime
import os
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import cpu
from bench.results import report
from bench.task_life import CONFIG_DIR, USER, Api, task_request
from local import stack as local_stack

#: A line of the gateway's access log (local.stack.GATEWAY_ACCESS_LOG).
_LINE = re.compile(r'"(?:GET|POST) /(?P<function>\w+)[^"]*" (?P<status>\d+) .* reads=(?P<reads>\d*) '
                   r'writes=(?P<writes>\d*)')


@dataclasses.dataclass
class Idle:
    calls: int
    polls: int
    reads: int
    writes: int
    cpu_secs: float
    seconds: float
    bots: int

    def per_bot_minute(self, value: float) -> float:
        return value / (self.bots * self.seconds / 60)


def bot_calls(log: Path, offset: int) -> tuple[list[tuple[str, int, int]], int]:
    """The bots' calls logged since `offset`: (function, reads, writes); and the new offset."""
    with open(log, "rb") as f:
        f.seek(offset)
        data = f.read()
    calls = []
    for match in _LINE.finditer(data.decode(errors="replace")):
        if match["function"].startswith("bot_"):
            calls.append((match["function"], int(match["reads"] or 0), int(match["writes"] or 0)))
    return calls, offset + len(data)


def measure_idle(gateway: dict[str, Any], bots: int, seconds: float) -> Idle:
    log = Path(gateway["log"])
    _, offset = bot_calls(log, 0)
    before = cpu.group_secs(gateway["pid"])
    time.sleep(seconds)
    calls, _ = bot_calls(log, offset)
    used = cpu.group_secs(gateway["pid"]) - before
    return Idle(calls=len(calls), polls=sum(1 for c in calls if c[0] == "bot_poll"),
                reads=sum(c[1] for c in calls), writes=sum(c[2] for c in calls), cpu_secs=used, seconds=seconds,
                bots=bots)


def aimed(bot_id: str | None) -> dict[str, Any]:
    """A task of `true` in pool `default`, for the bot `bot_id` alone when given."""
    request = task_request(pool="default", command=["true"])
    if bot_id:
        request["task_slices"][0]["properties"]["dimensions"].append({"key": "id", "value": bot_id})
    return request


def pickups(api: Api, tasks: int, every: float, bot_ids: list[str | None] | None = None) -> list[float]:
    """Creates `tasks` tasks of `true` one every `every` s (or one for each of
    `bot_ids`, aimed at it); each one's seconds from created to claimed."""
    ids = []
    for bot_id in bot_ids or [None] * tasks:
        started = time.monotonic()
        ids.append(api.call("tasks_new", aimed(bot_id), USER)[0]["task_id"])
        time.sleep(max(0.0, every - (time.monotonic() - started)))
    waits = []
    deadline = time.monotonic() + 300
    for task_id in ids:
        while True:
            result = api.call("task_result", {"task_id": task_id}, USER)[0]
            if result.get("started_ts") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        waits.append((_ts(result["started_ts"]) - _ts(result["created_ts"])).total_seconds()
                     if result.get("started_ts") else float("inf"))
    return waits


def _ts(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def run(label: str, hold: float, args: argparse.Namespace, settle: float) -> list[tuple[str, Any]]:
    os.environ["SWARMING_POLL_HOLD_SECS"] = str(hold)  # The gateway's environment, as Terraform sets it.
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp)
        stack = local_stack.up(state_dir, bots=args.bots, config_dir=CONFIG_DIR)
        try:
            api = Api.of_stack(state_dir, stack["base_url"])
            gateway = next(p for p in stack["processes"] if p["name"] == "gateway")
            # A fleet idle for an hour has run tasks before: their queues exist.
            bot_ids: list[str | None] = [f"local-bot-{n}" for n in range(1, args.bots + 1)]
            pickups(api, 0, 0, [None, *bot_ids])
            time.sleep(settle)
            idle = measure_idle(gateway, args.bots, args.idle)
            # Each bot alone, idle since the settling began: one task aimed at each, all at once.
            first = pickups(api, 0, 0, bot_ids)
            waits = pickups(api, args.tasks, args.every)
        finally:
            local_stack.down(state_dir)
    ordered, alone = sorted(waits), sorted(first)
    return [
        (f"{label}: idle bot's pickup p50 (s)", statistics.median(alone)),
        (f"{label}: idle bot's pickup max (s)", alone[-1]),
        (f"{label}: pickup p50 (s)", statistics.median(waits)),
        (f"{label}: pickup p99 (s)", ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]),
        (f"{label}: pickup max (s)", ordered[-1]),
        (f"{label}: idle bot calls per bot-minute", idle.per_bot_minute(idle.calls)),
        (f"{label}: idle Firestore reads per bot-minute", idle.per_bot_minute(idle.reads)),
        (f"{label}: idle Firestore writes per bot-minute", idle.per_bot_minute(idle.writes)),
        (f"{label}: idle gateway CPU ms per bot-minute", idle.per_bot_minute(idle.cpu_secs * 1000)),
        (f"{label}: gateway CPU ms per idle poll", idle.cpu_secs * 1000 / max(1, idle.polls)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bots", type=int, default=20, help="Local bots started from the zip.")
    parser.add_argument("--tasks", type=int, default=100, help="Tasks created after the idle time.")
    parser.add_argument("--every", type=float, default=2.0, help="Seconds between two tasks.")
    parser.add_argument("--hold", type=float, default=60.0, help="The server's hold (SWARMING_POLL_HOLD_SECS).")
    parser.add_argument("--settle-reference", type=float, default=240.0,
                        help="Idle seconds before measuring the reference: its back-off reaches 60 s in ~3 min.")
    parser.add_argument("--settle", type=float, default=70.0, help="Idle seconds before measuring the long poll.")
    parser.add_argument("--idle", type=float, default=180.0, help="Idle seconds measured.")
    parser.add_argument("--only", choices=("reference", "long poll"), help="Run one of the two.")
    args = parser.parse_args()
    rows: list[tuple[str, Any]] = [("bots", args.bots), ("tasks", args.tasks), ("seconds between tasks", args.every),
                                   ("hold (s)", args.hold), ("idle seconds measured", args.idle)]
    if args.only != "long poll":
        rows += run("reference (back-off)", 0.0, args, args.settle_reference)
    if args.only != "reference":
        rows += run("long poll", args.hold, args, args.settle)
    report("pickup", rows)


if __name__ == "__main__":
    main()
