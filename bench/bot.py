"""The bot's own cost, on the local stack (make bench-bot).

Prints, and writes to bench/results/bot.json:
- swarming_bot.zip: its size and entries, and the time of `bot_code` fetches
  on a fresh stack without bots: the first (the version is worked out, the
  zip built and stored in Cloud Storage) and the next ones on the same
  connection (the same gateway worker: from its memory);
- the time a bot takes to start as on a new host (bootstrap token, start
  script, download, self-copy, handshake), from `swarming local up`;
- the bot's overhead per task, for `--tasks` tasks running `true` queued at
  once for one bot started from the zip: task claimed → command started, and
  command ended → result stored. From the result's timestamps (`started_ts`:
  the claim, `completed_ts`: the result stored, `duration`: the command as
  the task runner timed it) and the bot's logs (swarming_bot.log and
  task_runner.log: the claim answered, the task runner spawned, the command
  started, the completion acknowledged by the server). The bot's overhead is
  their sum for each task (issue 16: at most 150 ms), next to a bare
  `subprocess.run(['true'])` timed in the same run; and the CPU those
  tasks took per task, the bot's (with its runners) and the gateway's;
- what a task runner's start costs: a fresh `python3` importing its modules
  from the zip (zipimport compiles them all) and from the bot's unpacked,
  byte-compiled copy of its version with `-S` (what the bot starts runners
  from), next to a bare `python3 -S -c pass`.

The bot's logs and the server's timestamps come from the same host's clock;
the log lines have millisecond resolution.

Usage: `python -m bench.bot [--tasks N] [--fetches N]`.
"""

import argparse
import datetime
import re
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from io import BytesIO
from pathlib import Path
from typing import Any

import requests

from bench import cpu
from bench.results import report
from bench.task_life import CONFIG_DIR, USER, Api, task_request
from local import stack as local_stack

BOT_ID = "local-bot-1"
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \d+ \w+ [\w.]+: (.*)$")


def fetch_zip(state_dir: Path, fetches: int) -> list[tuple[str, Any]]:
    """On a fresh stack without bots: the first `bot_code` fetch, then
    `fetches` more on the same connection."""
    stack = local_stack.up(state_dir, bots=0, config_dir=CONFIG_DIR)
    try:
        session = requests.Session()
        bootstrap = Api.of_stack(state_dir, stack["base_url"]).bootstrap_token
        session.headers["Authorization"] = f"Bearer {bootstrap}"
        times, data = [], b""
        for _ in range(1 + fetches):
            started = time.perf_counter()
            response = session.get(f"{stack['base_url']}/bot_code", timeout=60)
            times.append(time.perf_counter() - started)
            response.raise_for_status()
            data = response.content
    finally:
        local_stack.down(state_dir)
    with zipfile.ZipFile(BytesIO(data)) as archive:
        infos = archive.infolist()
    return [
        ("zip: size (KB)", round(len(data) / 1024, 1)),
        ("zip: entries", len(infos)),
        ("zip: unpacked (KB)", round(sum(i.file_size for i in infos) / 1024, 1)),
        ("zip: first fetch, version worked out, built and stored (ms)", times[0] * 1000),
        ("zip: second fetch, from the instance's memory (ms)", times[1] * 1000),
        (f"zip: cached fetch, median of {fetches} (ms)", statistics.median(times[1:]) * 1000),
    ]


def run_tasks(api: Api, tasks: int) -> list[dict[str, Any]]:
    """Queues `tasks` tasks of `true` at once and waits for their results."""
    ids = [api.call("tasks_new", task_request(pool="default", command=["true"]), USER)[0]["task_id"]
           for _ in range(tasks)]
    results = {}
    deadline = time.monotonic() + 60 + 10 * tasks
    while len(results) < tasks:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(results)} of {tasks} tasks ended")
        time.sleep(0.5)
        for task_id in ids:
            if task_id not in results:
                result = api.call("task_result", {"task_id": task_id}, USER)[0]
                if result["state"] not in ("PENDING", "RUNNING"):
                    results[task_id] = result
    bad = [r for r in results.values() if r["state"] != "COMPLETED" or r["exit_code"] != 0]
    if bad:
        raise SystemExit(f"{len(bad)} tasks did not succeed: {bad[0]}")
    return [results[t] for t in ids]


def log_times(path: Path, pattern: str) -> dict[str, float]:
    """Run id prefix (the task id without its last digit) → when the line
    matching `pattern` ("task <run id> ...") was logged, in epoch seconds."""
    found: dict[str, float] = {}
    regex = re.compile(pattern)
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parsed = LOG_LINE.match(line)
        if not parsed:
            continue
        hit = regex.search(parsed.group(2))
        if hit:
            local = datetime.datetime.strptime(parsed.group(1), "%Y-%m-%d %H:%M:%S,%f")
            found[hit.group(1)[:-1]] = local.astimezone().timestamp()
    return found


def ts(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def bare_true(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(["true"], check=True)
        times.append(time.perf_counter() - started)
    return times


def python_runs(args: list[str], runs: int) -> list[float]:
    """Wall times of `runs` runs of `python3 <args>` (this interpreter)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, *args], check=True)
        times.append(time.perf_counter() - started)
    return times


def runner_imports(code_path: Path, runs: int) -> list[float]:
    """A fresh `python3 -S` importing what the task runner imports from
    `code_path`: from a zip, zipimport keeps no bytecode, so every runner
    compiles them anew; from the unpacked copy, they load compiled."""
    return python_runs(["-S", "-c", f"import sys; sys.path.insert(0, {str(code_path)!r}); import bot.runner_main"],
                       runs)


def overhead(state_dir: Path, tasks: int) -> list[tuple[str, Any]]:
    stack = local_stack.up(state_dir, bots=1, config_dir=CONFIG_DIR)
    try:
        api = Api.of_stack(state_dir, stack["base_url"])
        run_tasks(api, 1)  # wakes the bot, backed off while idle, and warms the gateway's workers
        before = cpu.by_kind(stack)
        results = run_tasks(api, tasks)
        used = cpu.used(before, cpu.by_kind(stack))
        bare = bare_true(tasks)
    finally:
        local_stack.down(state_dir)
    bot_start = next(p["started_secs"] for p in stack["processes"] if p["name"] == BOT_ID)
    logs = state_dir / "bots" / BOT_ID / "logs"
    answered = log_times(logs / "swarming_bot.log", r"^task (\w+) \(bot [^)]*\): claimed")
    spawned = log_times(logs / "swarming_bot.log", r"^task (\w+): task runner pid")
    started = log_times(logs / "task_runner.log", r"^task (\w+) \(bot [^)]*\): started pid")
    acknowledged = log_times(logs / "task_runner.log", r"^task (\w+) \(bot [^)]*\): exit code \d+ after")
    bot_dir = state_dir / "bots" / BOT_ID
    zip_imports = runner_imports(bot_dir / "swarming_bot.zip", 5)
    copies = list((bot_dir / "code").glob("*")) if (bot_dir / "code").is_dir() else []
    copy_imports = runner_imports(copies[0], 10) if copies else []
    bare_python = python_runs(["-S", "-c", "pass"], 10)
    rows: dict[str, list[float]] = {k: [] for k in (
        "claim", "claim->answered", "answered->spawned", "spawned->started", "claimed->started",
        "ended->received", "ended->acknowledged", "overhead", "total", "duration")}
    for result in results:
        key = result["task_id"][:-1]
        claimed, stored, duration = ts(result["started_ts"]), ts(result["completed_ts"]), result["duration"]
        rows["total"].append(stored - claimed - duration)
        rows["duration"].append(duration)
        if all(key in times for times in (answered, spawned, started, acknowledged)):
            rows["claim->answered"].append(answered[key] - claimed)
            rows["answered->spawned"].append(spawned[key] - answered[key])
            rows["spawned->started"].append(started[key] - spawned[key])
            rows["claimed->started"].append(started[key] - claimed)
            # The runner times the command from just before it starts it.
            ended = started[key] + duration
            rows["ended->received"].append(stored - ended)
            rows["ended->acknowledged"].append(acknowledged[key] - ended)
            rows["overhead"].append(started[key] - claimed + acknowledged[key] - ended)
    span = max(ts(r["completed_ts"]) for r in results) - min(ts(r["started_ts"]) for r in results)

    def ms(values: list[float]) -> float:
        return statistics.median(values) * 1000 if values else float("nan")

    def worst(values: list[float]) -> float:
        return max(values) * 1000 if values else float("nan")

    n = len(rows["claimed->started"])
    return [
        ("bot start from a bootstrap token to its handshake (s)", bot_start),
        ("tasks of `true`, back to back on one bot", tasks),
        ("tasks timed from the bot's logs", n),
        ("claimed -> command started, median (ms)", ms(rows["claimed->started"])),
        ("claimed -> command started, max (ms)", worst(rows["claimed->started"])),
        ("  claimed -> the bot has the claim's answer, median (ms)", ms(rows["claim->answered"])),
        ("  claim's answer -> task runner spawned, median (ms)", ms(rows["answered->spawned"])),
        ("  task runner spawned -> command started, median (ms)", ms(rows["spawned->started"])),
        ("  a fresh python3 -S importing the task runner's modules from the zip, median of 5 (ms)",
         ms(zip_imports)),
        ("  the same from the bot's unpacked, compiled copy (what runners start from), median of 10 (ms)",
         ms(copy_imports)),
        ("  reference: a bare python3 -S -c pass, median of 10 (ms)", ms(bare_python)),
        ("command ended -> result stored, median (ms)", ms(rows["ended->acknowledged"])),
        ("command ended -> result stored, max (ms)", worst(rows["ended->acknowledged"])),
        ("  command ended -> the completion reaches the server (completed_ts), median (ms)",
         ms(rows["ended->received"])),
        ("claimed -> stored minus the command (result timestamps), median (ms)", ms(rows["total"])),
        ("bot overhead: claimed -> started + ended -> stored, median (ms)", ms(rows["overhead"])),
        ("bot overhead, max (ms)", worst(rows["overhead"])),
        ("  goal (issue 16) (ms)", 150.0),
        ("  reference: bare subprocess.run(['true']) in this process, median (ms)", ms(bare)),
        ("command `true` as the task runner timed it, median (ms)", ms(rows["duration"])),
        ("one bot, back to back: tasks per second", tasks / span),
        ("CPU ms per task: the bot with its task runners", used["bot"] * 1000 / tasks),
        ("CPU ms per task: the gateway (the bot's calls, and the bench's creations and result reads)",
         used["gateway"] * 1000 / tasks),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20, help="Tasks of `true` for the one bot.")
    parser.add_argument("--fetches", type=int, default=10, help="Cached bot_code fetches.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        zip_rows = fetch_zip(Path(tmp) / "zip", args.fetches)
        task_rows = overhead(Path(tmp) / "tasks", args.tasks)
    report("bot", zip_rows + task_rows)


if __name__ == "__main__":
    main()
