"""What a page of the web UI costs (`make bench-ui`), on a local stack
started with bench/config/ and filled over the API with `--bots` bots (by
their handshake) and `--tasks` pending tasks in the pool `bench`.

For each page (a pending task with its why-pending panel, the bots of the
pool with their counts, one bot, the tasks of the pool with a count per state) viewed
`--samples` times as the signed-in local user: the Firestore reads its answer
reports (X-Firestore-Reads: bounded by the page size, never a scan; the
counts are aggregations, one read per 1,000 entries) and the time to first
byte (median). Then the live log's latency: a bot sends a line of stdout to
a running task whose page is open in chromium (playwright), and the time
from the server's answer to that update (the bytes are stored) to the line
being on the page, `--log-samples` times (median and max; the page asks every
0.5 s). Results to bench/results/ui.json. Usage: `python -m bench.ui
[--bots N] [--tasks N]` (the issue's figure: 1,000 and 10,000).
"""

import argparse
import dataclasses
import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests
from playwright.sync_api import sync_playwright

from bench.results import report
from bench.scheduler import in_parallel
from bench.task_life import CONFIG_DIR, USER, Api, handshake, task_request
from local import stack as local_stack
from shared import bot_api, local_state
from shared.bot_api import ClaimRequest, Run, TaskUpdate, Update

LOG_BOT = "bench-bot-log"


def sign_in(state_dir: Path, base_url: str) -> requests.Session:
    """A session signed in as the local user, as the page of the link posts it."""
    session = requests.Session()
    credential = local_state.id_token(state_dir, local_state.local_user(), base_url)
    answer = session.post(f"{base_url}/ui/signin", data={"credential": credential}, headers={"Origin": base_url},
                          allow_redirects=False, timeout=30)
    assert answer.status_code == 303, answer.text
    return session


def page_costs(session: requests.Session, url: str, samples: int) -> tuple[int, float]:
    """The Firestore reads of one view of `url` (the most seen) and the median time to first byte."""
    reads, ttfb = [], []
    for _ in range(samples):
        answer = session.get(url, stream=True, timeout=60)
        ttfb.append(answer.elapsed.total_seconds())  # Until the headers were parsed.
        answer.content
        assert answer.status_code == 200, f"{url}: {answer.status_code}"
        reads.append(int(answer.headers["X-Firestore-Reads"]))
    return max(reads), statistics.median(ttfb)


def running_task(api: Api) -> tuple[Any, str]:
    """A task of the pool held by a bot of ours: its attributes (with the
    session of the claim) and the run id."""
    bot = handshake(api, LOG_BOT)
    created, _ = api.call("tasks_new", {**task_request(wait=True), "priority": 10}, USER)
    claimed, _ = api.call("bot_claim", ClaimRequest(bot, created["task_id"], uuid.uuid4().hex).to_wire(), LOG_BOT)
    run = bot_api.claim_reply(claimed)
    assert isinstance(run, Run), run
    return dataclasses.replace(bot, session=run.session), run.manifest.task_id


def log_latencies(api: Api, session: requests.Session, base_url: str, samples: int) -> list[float]:
    bot, run_id = running_task(api)
    with sync_playwright() as playwright:
        chromium = os.environ.get("SWARMING_CHROMIUM") or shutil.which("chromium")
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        context = browser.new_context()
        context.add_cookies([{"name": c.name, "value": c.value, "url": f"{base_url}/ui/"} for c in session.cookies])
        page = context.new_page()
        page.goto(f"{base_url}/ui/task/{run_id}")
        page.wait_for_selector("#stdout")
        offset, found = 0, []
        for n in range(samples):
            line = f"line {n} {uuid.uuid4().hex}\n".encode()
            api.call("bot_task_update", TaskUpdate(bot, run_id, Update(offset, line)).to_wire(), LOG_BOT)
            sent = time.perf_counter()
            page.wait_for_function("t => document.getElementById('stdout').textContent.includes(t)",
                                   arg=line.decode().strip(), polling=10, timeout=30_000)
            found.append(time.perf_counter() - sent)
            offset += len(line)
            time.sleep(0.3)  # Not in step with the page's polling.
        browser.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bots", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--log-samples", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp)
        stack = local_stack.up(state_dir, bots=0, config_dir=CONFIG_DIR)
        try:
            base_url = stack["base_url"]
            api = Api.of_stack(state_dir, base_url)
            in_parallel(args.threads, lambda n: handshake(api, f"bench-bot-{n}"), range(args.bots))
            created = in_parallel(args.threads, lambda n: api.call("tasks_new", task_request(wait=True), USER)[0],
                                  range(args.tasks))
            session = sign_in(state_dir, base_url)
            pages = {"task (pending, why pending)": f"/ui/task/{created[-1]['task_id']}",
                     "bots (pool bench, 50 a page)": "/ui/bots?pool=bench", "bot": "/ui/bot/bench-bot-0",
                     "tasks (pool bench, 50 a page, 10 counts)": "/ui/tasks?pool=bench"}
            rows: list[tuple[str, Any]] = [("bots", args.bots), ("pending tasks", args.tasks)]
            for name, path in pages.items():
                reads, ttfb = page_costs(session, base_url + path, args.samples)
                rows += [(f"{name}: Firestore reads", reads), (f"{name}: time to first byte, median (s)", ttfb)]
            latencies = log_latencies(api, session, base_url, args.log_samples)
            rows += [("log: stored → on the page, median (s)", statistics.median(latencies)),
                     ("log: stored → on the page, max (s)", max(latencies))]
            report("ui", rows)
        finally:
            local_stack.down(state_dir)


if __name__ == "__main__":
    main()
