"""20 bots over 500 tasks in 10 queues, through HTTP: every task is claimed
exactly once, by a bot that matches it, and none is left pending."""

import collections
import concurrent.futures
import datetime
import uuid

from functions import store as store_lib
from functions import tasks
from functions.tasks import Requester
from shared.task_request import TaskRequest
from tests.builders import bot_body, task_body

QUEUES, TASKS, BOTS = 10, 500, 20


def _bot_queues(index: int) -> list[str]:
    """Each bot serves two queues, so every queue has four bots."""
    return [str(index % QUEUES), str((index + 1) % QUEUES)]


def _work(api, index: int) -> list[tuple[str, str]]:
    bot_id = f"race-{index}"
    body = bot_body(bot_id, pool="race")
    body["dimensions"]["q"] = _bot_queues(index)
    won, idle = [], 0
    while idle < 3:  # The queues are drained once several polls in a row find nothing.
        answer = api.ok("bot_poll", body, role="bot")
        if answer["cmd"] == "sleep":
            idle += 1
            continue
        idle = 0
        for candidate in answer["candidates"]:
            claim = api.ok("bot_claim", {**body, **candidate, "claim_id": uuid.uuid4().hex}, role="bot")
            if claim["cmd"] == "run":
                won.append((candidate["task_id"], bot_id))
                break
    return won


def test_every_task_is_claimed_exactly_once_by_a_matching_bot(api, svc):
    now = datetime.datetime.now(datetime.timezone.utc)
    requester = Requester("user:racer@example.com")
    queue_of = {}
    for i in range(TASKS):
        q = str(i % QUEUES)
        body = task_body(dimensions={"pool": "race", "q": q}, priority=100 + i % 3)
        queue_of[tasks.new(svc.context, TaskRequest.from_wire(body), requester, now)["task_id"]] = q
    with concurrent.futures.ThreadPoolExecutor(BOTS) as pool:
        claims = [c for won in pool.map(lambda i: _work(api, i), range(BOTS)) for c in won]
    counts = collections.Counter(task_id for task_id, _ in claims)
    assert set(counts) == set(queue_of)
    assert max(counts.values()) == 1
    for task_id, bot_id in claims:
        assert queue_of[task_id] in _bot_queues(int(bot_id.split("-")[1]))
        assert svc.store.get_result(task_id).bot_id == bot_id
    assert list(svc.store._db.collection(store_lib.TASK_TO_RUN).limit(1).stream()) == []
