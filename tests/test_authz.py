"""Who may call what: every function of the registry, called by every kind of
caller, against the one table below (the README shows the same table).

The resources live in pool `authz` (tests/config/): a task the scheduler
created and one the pool admin created, bot `authz-1` of the pool's group,
holding a run. The callers: five bad credentials, five people (a viewer of
the pool, a scheduler of another pool, a scheduler and an admin of the pool,
a global admin), and three bots: `authz-1` itself, `other-1` of another group
acting as itself, and `authz-2` presenting `authz-1`'s id.
"""

import time
from typing import Any, Callable

import pytest
import requests

from functions.endpoints import FUNCTIONS
from local.oidc_issuer import Signer
from shared import service_config
from tests.builders import bot_body, task_body
from tests.conftest import CONFIG_DIR, Api, Tokens, bot_token

#: One row a function, one column a caller: the status of the answer.
TABLE = """
| function | anonymous | malformed | expired | other audience | other key | viewer | other pool's scheduler | scheduler | pool admin | admin | bot | other group's bot | another bot's id |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
| bot_handshake | 401 | 401 | 401 | 401 | 401 | 403 | 403 | 403 | 403 | 403 | 200 | 200 | 403 |
| bot_poll | 401 | 401 | 401 | 401 | 401 | 403 | 403 | 403 | 403 | 403 | 200 | 200 | 403 |
| bot_claim | 401 | 401 | 401 | 401 | 401 | 403 | 403 | 403 | 403 | 403 | 200 | 200 | 403 |
| bot_task_update | 401 | 401 | 401 | 401 | 401 | 403 | 403 | 403 | 403 | 403 | 200 | 409 | 403 |
| bot_task_error | 401 | 401 | 401 | 401 | 401 | 403 | 403 | 403 | 403 | 403 | 200 | 409 | 403 |
| bot_event | 401 | 401 | 401 | 401 | 401 | 403 | 403 | 403 | 403 | 403 | 200 | 200 | 403 |
| bot_code | 401 | 401 | 401 | 401 | 401 | 403 | 403 | 403 | 403 | 200 | 200 | 200 | 200 |
| bot_bootstrap | 401 | 401 | 401 | 401 | 401 | 403 | 403 | 403 | 403 | 403 | 403 | 403 | 403 |
| tasks_new | 401 | 401 | 401 | 401 | 401 | 403 | 403 | 200 | 200 | 200 | 403 | 403 | 403 |
| task_result | 401 | 401 | 401 | 401 | 401 | 200 | 403 | 200 | 200 | 200 | 403 | 403 | 403 |
| task_request | 401 | 401 | 401 | 401 | 401 | 200 | 403 | 200 | 200 | 200 | 403 | 403 | 403 |
| task_stdout | 401 | 401 | 401 | 401 | 401 | 200 | 403 | 200 | 200 | 200 | 403 | 403 | 403 |
| task_pending | 401 | 401 | 401 | 401 | 401 | 200 | 403 | 200 | 200 | 200 | 403 | 403 | 403 |
| task_cancel | 401 | 401 | 401 | 401 | 401 | 403 | 403 | 403 | 200 | 200 | 403 | 403 | 403 |
| tasks_list | 401 | 401 | 401 | 401 | 401 | 200 | 403 | 200 | 200 | 200 | 403 | 403 | 403 |
| tasks_requests | 401 | 401 | 401 | 401 | 401 | 200 | 403 | 200 | 200 | 200 | 403 | 403 | 403 |
| tasks_count | 401 | 401 | 401 | 401 | 401 | 200 | 403 | 200 | 200 | 200 | 403 | 403 | 403 |
| tasks_cancel | 401 | 401 | 401 | 401 | 401 | 403 | 403 | 200 | 200 | 200 | 403 | 403 | 403 |
| bots_list | 401 | 401 | 401 | 401 | 401 | 200 | 403 | 200 | 200 | 200 | 403 | 403 | 403 |
| bots_count | 401 | 401 | 401 | 401 | 401 | 200 | 403 | 200 | 200 | 200 | 403 | 403 | 403 |
| bots_dimensions | 401 | 401 | 401 | 401 | 401 | 200 | 403 | 200 | 200 | 200 | 403 | 403 | 403 |
| bot_get | 401 | 401 | 401 | 401 | 401 | 200 | 403 | 200 | 200 | 200 | 403 | 403 | 403 |
| bot_events | 401 | 401 | 401 | 401 | 401 | 200 | 403 | 200 | 200 | 200 | 403 | 403 | 403 |
| bot_tasks | 401 | 401 | 401 | 401 | 401 | 200 | 403 | 200 | 200 | 200 | 403 | 403 | 403 |
| bot_delete | 401 | 401 | 401 | 401 | 401 | 403 | 403 | 403 | 200 | 200 | 403 | 403 | 403 |
| bot_terminate | 401 | 401 | 401 | 401 | 401 | 403 | 403 | 403 | 200 | 200 | 403 | 403 | 403 |
| ui | 401 | 401 | 401 | 401 | 401 | 200 | 200 | 200 | 200 | 200 | 403 | 403 | 403 |
| server_details | 401 | 401 | 401 | 401 | 401 | 200 | 200 | 200 | 200 | 200 | 403 | 403 | 403 |
| server_permissions | 401 | 401 | 401 | 401 | 401 | 200 | 200 | 200 | 200 | 200 | 403 | 403 | 403 |
| server_token | 401 | 401 | 401 | 401 | 401 | 403 | 403 | 403 | 403 | 200 | 403 | 403 | 403 |
| config_push | 401 | 401 | 401 | 401 | 401 | 403 | 403 | 403 | 403 | 200 | 403 | 403 | 403 |
| cas_find_missing | 401 | 401 | 401 | 401 | 401 | 200 | 200 | 200 | 200 | 200 | 200 | 200 | 200 |
| cas_urls | 401 | 401 | 401 | 401 | 401 | 200 | 200 | 200 | 200 | 200 | 200 | 200 | 200 |
| timer_expire | 401 | 401 | 401 | 401 | 401 | 403 | 403 | 403 | 403 | 200 | 403 | 403 | 403 |
| timer_bot_died | 401 | 401 | 401 | 401 | 401 | 403 | 403 | 403 | 403 | 200 | 403 | 403 | 403 |
| timer_notify | 401 | 401 | 401 | 401 | 401 | 403 | 403 | 403 | 403 | 200 | 403 | 403 | 403 |
| cron_sweep | 401 | 401 | 401 | 401 | 401 | 403 | 403 | 403 | 403 | 200 | 403 | 403 | 403 |
""".strip()

PEOPLE = {"viewer": "viewer@example.com", "other pool's scheduler": "other-scheduler@example.com",
          "scheduler": "scheduler@example.com", "pool admin": "pool-admin@example.com", "admin": "admin@example.com"}
#: The bot each bot caller's token is for, and the bot id its calls present.
BOTS = {"bot": ("authz-1", "authz-1"), "other group's bot": ("other-1", "other-1"),
        "another bot's id": ("authz-2", "authz-1")}


def _table() -> tuple[list[str], dict[str, dict[str, int]]]:
    lines = TABLE.splitlines()
    callers = [cell.strip() for cell in lines[0].strip("|").split("|")][1:]
    rows = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(callers, map(int, cells[1:]), strict=True))
    return callers, rows


CALLERS, ROWS = _table()


class World:
    """What the calls are about, made once per function's row."""

    def __init__(self, api: Api, tokens: Tokens, signer: Signer, base_url: str):
        self.api, self.tokens, self.base_url = api, tokens, base_url
        self._signer = signer
        scheduler, pool_admin = self.person("scheduler"), self.person("pool admin")
        self.task = self.create(scheduler, tags=["matrix:1"])
        self.admins_task = self.create(pool_admin)
        for bot_id in ("authz-1", "other-1"):
            api.ok("bot_handshake", bot_body(bot_id), role="bot")
        claimed = self.create(scheduler)
        claim = api.ok("bot_claim", bot_body("authz-1", task_id=claimed, slice=0, claim_id="c"), role="bot")
        self.run_id = claim["manifest"]["task_id"]
        self.version = requests.get(f"{base_url}/bot_code", allow_redirects=False, timeout=30, headers={
            "Authorization": f"Bearer {bot_token()}"}).headers["Location"].rsplit("=", 1)[1]

    def person(self, caller: str) -> str:
        return self.tokens.person(PEOPLE[caller])

    def create(self, token: str, **fields: Any) -> str:
        answer = requests.post(f"{self.base_url}/tasks_new", json=task_body(dimensions={"pool": "authz"}, **fields),
                               headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()["task_id"]

    def authorization(self, caller: str) -> dict[str, str]:
        now = time.time()
        email = PEOPLE["scheduler"]
        token = {
            "anonymous": None,
            "malformed": "not-a-token",
            "expired": self._signer.token(email, self.base_url, now - 7200),
            "other audience": self._signer.token(email, "https://elsewhere.example.com", now),
            "other key": Signer().token(email, self.base_url, now),
        }.get(caller, "")
        if caller in PEOPLE:
            token = self.person(caller)
        elif caller in BOTS:
            token = bot_token(BOTS[caller][0])
        return {"Authorization": f"Bearer {token}"} if token is not None else {}

    def bot(self, caller: str, **fields: Any) -> dict[str, Any]:
        """A bot call's body, with the id the caller presents (authz-1 for people and bad tokens)."""
        return bot_body(BOTS.get(caller, ("", "authz-1"))[1], **fields)

    def registered(self, bot_id: str) -> str:
        """A bot of the pool registered for this call only (a delete takes it away)."""
        self.api.ok("bot_handshake", bot_body(bot_id), role="bot")
        return bot_id


#: Each function's call: (method, body or query of a caller).
CALLS: dict[str, Callable[[World, str], tuple[str, dict[str, Any]]]] = {
    "bot_handshake": lambda w, c: ("POST", w.bot(c)),
    "bot_poll": lambda w, c: ("POST", w.bot(c)),
    "bot_claim": lambda w, c: ("POST", w.bot(c, task_id=w.task, slice=0, claim_id=f"claim-{len(c)}")),
    "bot_task_update": lambda w, c: ("POST", w.bot(c, task_id=w.run_id, output_chunk_start=0)),
    "bot_task_error": lambda w, c: ("POST", w.bot(c, task_id=w.run_id, message="test")),
    "bot_event": lambda w, c: ("POST", w.bot(c, event="bot_log", message="hello")),
    "bot_code": lambda w, c: ("GET", {"version": w.version}),
    "bot_bootstrap": lambda w, c: ("GET", {}),
    "tasks_new": lambda w, c: ("POST", task_body(dimensions={"pool": "authz"})),
    "task_result": lambda w, c: ("POST", {"task_id": w.task}),
    "task_request": lambda w, c: ("POST", {"task_id": w.task}),
    "task_stdout": lambda w, c: ("POST", {"task_id": w.task}),
    "task_pending": lambda w, c: ("POST", {"task_id": w.task}),
    "task_cancel": lambda w, c: ("POST", {"task_id": w.admins_task}),
    "tasks_list": lambda w, c: ("POST", {"tags": ["pool:authz"]}),
    "tasks_requests": lambda w, c: ("POST", {"tags": ["pool:authz"]}),
    "tasks_count": lambda w, c: ("POST", {"tags": ["pool:authz"]}),
    "tasks_cancel": lambda w, c: ("POST", {"tags": ["pool:authz", "matrix:1"]}),
    "bots_list": lambda w, c: ("POST", {"dimensions": ["pool:authz"]}),
    "bots_count": lambda w, c: ("POST", {"dimensions": ["pool:authz"]}),
    "bots_dimensions": lambda w, c: ("POST", {"pool": "authz"}),
    "bot_get": lambda w, c: ("POST", {"bot_id": "authz-1"}),
    "bot_events": lambda w, c: ("POST", {"bot_id": "authz-1"}),
    "bot_tasks": lambda w, c: ("POST", {"bot_id": "authz-1"}),
    "bot_delete": lambda w, c: ("POST", {"bot_id": w.registered(f"authz-del-{CALLERS.index(c)}")}),
    "bot_terminate": lambda w, c: ("POST", {"bot_id": "authz-1", "reason": c}),
    "ui": lambda w, c: ("GET", {}),
    "server_details": lambda w, c: ("POST", {}),
    "server_permissions": lambda w, c: ("POST", {"pool": "authz"}),
    "server_token": lambda w, c: ("POST", {}),
    "config_push": lambda w, c: ("POST", {"files": service_config.read_dir(CONFIG_DIR)}),
    "cas_find_missing": lambda w, c: ("POST", {"digests": []}),
    "cas_urls": lambda w, c: ("POST", {}),
    "timer_expire": lambda w, c: ("POST", {"task_id": w.task, "slice": 0}),
    "timer_bot_died": lambda w, c: ("POST", {"task_id": w.task, "try_number": 1}),
    "timer_notify": lambda w, c: ("POST", {"task_id": w.task}),
    "cron_sweep": lambda w, c: ("POST", {}),
}


def test_the_table_has_every_function_and_every_caller():
    assert list(ROWS) == [f.name for f in FUNCTIONS] == list(CALLS)
    assert len(CALLERS) == 13


@pytest.mark.parametrize("function", list(ROWS))
def test_each_caller_gets_what_the_table_says(function, api, tokens, cloud_tasks, base_url):
    world = World(api, tokens, cloud_tasks.signer, base_url)
    got = {}
    for caller in CALLERS:
        method, params = CALLS[function](world, caller)
        headers = world.authorization(caller)
        if method == "GET":
            response = requests.get(f"{base_url}/{function}", params=params, headers=headers, timeout=30)
        else:
            response = requests.post(f"{base_url}/{function}", json=params, headers=headers, timeout=30)
        got[caller] = response.status_code
    assert got == ROWS[function]


def test_a_scheduler_cancels_its_own_tasks_only(api, tokens, cloud_tasks, base_url):
    world = World(api, tokens, cloud_tasks.signer, base_url)
    headers = {"Authorization": f"Bearer {world.person('scheduler')}"}
    own = requests.post(f"{base_url}/task_cancel", json={"task_id": world.task}, headers=headers, timeout=30)
    assert own.status_code == 200 and own.json()["canceled"]
    bulk = requests.post(f"{base_url}/tasks_cancel", json={"tags": ["pool:authz"]}, headers=headers, timeout=30)
    assert bulk.status_code == 200
    assert api.ok("task_result", {"task_id": world.admins_task}, role="admin")["state"] == "PENDING"


def test_the_readme_shows_the_same_table():
    assert TABLE.strip() in (CONFIG_DIR.parents[1] / "README.md").read_text(encoding="utf-8")
