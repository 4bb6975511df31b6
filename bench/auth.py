"""What authentication and authorization cost per request (`make bench-auth`).

On a local stack started with bench/config/, this process serves the
functions itself (the gateway's functions-framework apps, called through
werkzeug's test client, no socket) against the stack's emulators, with the
stack's own environment. Three hot requests, each made `--requests` times
with auth on and as many with auth off, in alternating blocks of the same
run:

- a person's `task_result` (a Google-style ID token: RS256 over the issuer's
  cached certificates, issuer, audience, expiry);
- an idle bot's `bot_poll` (its bot token: HMAC-SHA256);
- a task runner's `bot_task_update` (its run token: HMAC-SHA256).

Auth off is the same service with an authenticator that answers each token
with the caller the real one found for it once, checking nothing: what is
left is the rest of the request. Prints the median latency of each, the
difference, and Firestore reads and writes per request both ways (the
X-Firestore-* headers): authorization reads only the configuration, cached
in memory, so it adds none. Then the verifications alone (per token kind,
and a first ID token check that fetches the certificates), and one pool-role
check. Results to bench/results/auth.json. Usage:
`python -m bench.auth [--requests N] [--block N]`.
"""

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

from werkzeug.test import Client

from bench.results import report
from bench.task_life import CONFIG_DIR, task_request
from functions import permissions, service
from functions.auth import Authenticator
from functions.id_tokens import IdTokens
from functions.permissions import Action, Caller
from functions.settings import Settings
from local import gateway
from local import stack as local_stack
from shared import bot_api, local_state
from shared.bot_api import (
    BOT_TOKEN_HEADER, BotAttributes, ClaimRequest, Handshake, HandshakeReply, Poll, Run, TaskUpdate, Update,
)

POOL = "bench"
#: Verifications timed alone, per token kind.
MICRO_CALLS = 2000


class Remembered:
    """Auth off: each token's caller as the real authenticator found it the
    first time, later ones checking nothing."""

    def __init__(self, real: Authenticator):
        self._real = real
        self._callers: dict[str | None, Caller] = {}

    def authenticate(self, authorization: str | None, audiences: Sequence[str]) -> Caller:
        if authorization not in self._callers:
            self._callers[authorization] = self._real.authenticate(authorization, audiences)
        return self._callers[authorization]


@dataclasses.dataclass
class Sample:
    """The requests of one kind made one way."""

    secs: list[float] = dataclasses.field(default_factory=list)
    reads: int = 0
    writes: int = 0

    def per_request(self, total: int) -> float:
        return total / len(self.secs)


class Functions:
    """The functions served in this process, as the stack's gateway serves them."""

    def __init__(self, svc: service.Service):
        self.svc = svc
        self.real_auth = svc.auth
        self._off = Remembered(self.real_auth)
        self._client = Client(gateway.make_app())

    def auth(self, on: bool) -> None:
        # `auth` is a cached property: the instance's attribute replaces it.
        self.svc.__dict__["auth"] = self.real_auth if on else self._off

    def call(self, function: str, body: dict[str, Any], token: str, sample: Sample | None = None
             ) -> tuple[dict[str, Any], dict[str, str]]:
        started = time.perf_counter()
        answer = self._client.post(f"/{function}", json=body, headers={"Authorization": f"Bearer {token}"})
        secs = time.perf_counter() - started
        if answer.status_code != 200:
            raise SystemExit(f"{function} answered {answer.status_code}: {answer.get_data(as_text=True)[:300]}")
        if sample is not None:
            sample.secs.append(secs)
            sample.reads += int(answer.headers["X-Firestore-Reads"])
            sample.writes += int(answer.headers["X-Firestore-Writes"])
        return answer.json, dict(answer.headers)


@dataclasses.dataclass
class Setup:
    """The callers and what they call about."""

    user: str
    poller: BotAttributes
    poller_token: str
    run_id: str
    runner: BotAttributes
    run_token: str
    task_id: str


def handshake(functions: Functions, bot_id: str, bootstrap: str) -> tuple[BotAttributes, str]:
    """The bot after its handshake, and its bot token."""
    bot = BotAttributes({"id": [bot_id], "pool": [POOL]}, {}, "dev")
    body, headers = functions.call("bot_handshake", Handshake(bot).to_wire(), bootstrap)
    return dataclasses.replace(bot, session=HandshakeReply.from_wire(body).session), headers[BOT_TOKEN_HEADER]


def set_up(functions: Functions, user: str) -> Setup:
    """A bot that idles (polls), and one that runs a task (its runner updates it)."""
    bootstrap = functions.call("server_token", {}, user)[0]["bootstrap_token"]
    poller, poller_token = handshake(functions, "bench-bot-poller", bootstrap)
    runner, runner_token = handshake(functions, "bench-bot-runner", bootstrap)
    task_id = functions.call("tasks_new", task_request(pool=POOL), user)[0]["task_id"]
    functions.call("bot_poll", Poll(runner).to_wire(), runner_token)
    claimed = functions.call("bot_claim", ClaimRequest(runner, task_id, uuid.uuid4().hex).to_wire(), runner_token)[0]
    run = bot_api.claim_reply(claimed)
    assert isinstance(run, Run) and run.run_token, run
    runner = dataclasses.replace(runner, session=run.session)
    return Setup(user, poller, poller_token, run.manifest.task_id, runner, run.run_token, task_id)


def requests_of(setup: Setup) -> dict[str, tuple[str, dict[str, Any], str]]:
    """Label → (function, body, token) of each hot request."""
    return {
        "task_result by a person (ID token)": ("task_result", {"task_id": setup.task_id}, setup.user),
        "bot_poll by an idle bot (bot token)": ("bot_poll", Poll(setup.poller).to_wire(), setup.poller_token),
        "bot_task_update by a task runner (run token)": (
            "bot_task_update", TaskUpdate(setup.runner, setup.run_id, Update()).to_wire(), setup.run_token),
    }


def measure(functions: Functions, setup: Setup, count: int, block: int) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for label, (function, body, token) in requests_of(setup).items():
        samples = {True: Sample(), False: Sample()}
        functions.auth(False)
        functions.call(function, body, token)  # Remembers the caller; warms the instance.
        for n in range(2 * count // block):
            on = n % 2 == 0
            functions.auth(on)
            for _ in range(block):
                functions.call(function, body, token, samples[on])
        functions.auth(True)
        on_ms, off_ms = (statistics.median(samples[on].secs) * 1000 for on in (True, False))
        rows += [(f"{label}: p50 ms, auth on", on_ms), (f"{label}: p50 ms, auth off", off_ms),
                 (f"{label}: auth's share, ms", on_ms - off_ms)]
        for on, sample in samples.items():
            way = "on" if on else "off"
            rows.append((f"{label}: Firestore reads / writes per request, auth {way}",
                         f"{sample.per_request(sample.reads):.2f} / {sample.per_request(sample.writes):.2f}"))
    return rows


def timed_us(action: Callable[[], Any], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        action()
    return (time.perf_counter() - started) / calls * 1e6


def verifications(functions: Functions, setup: Setup) -> list[tuple[str, Any]]:
    svc = functions.svc
    url = svc.settings.functions_url
    audiences = [f"{url}/task_result", url]
    auth = functions.real_auth
    fresh = IdTokens(svc.settings.id_token_certs_url)
    started = time.perf_counter()
    fresh.verify(setup.user, audiences)
    first_ms = (time.perf_counter() - started) * 1000
    person = auth.authenticate(f"Bearer {setup.user}", audiences)
    return [
        ("first ID token check of an instance, fetching the certificates (ms)", first_ms),
        ("ID token check, certificates cached (us)",
         timed_us(lambda: auth.authenticate(f"Bearer {setup.user}", audiences), MICRO_CALLS)),
        ("bot token check (us)",
         timed_us(lambda: auth.authenticate(f"Bearer {setup.poller_token}", audiences), MICRO_CALLS)),
        ("run token check (us)",
         timed_us(lambda: auth.authenticate(f"Bearer {setup.run_token}", audiences), MICRO_CALLS)),
        ("pool role check of a person, cached configuration (us)",
         timed_us(lambda: permissions.authorize(svc.service_config.get(), person, Action.READ_TASK, POOL),
                  MICRO_CALLS)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400, help="Requests of each kind, each way.")
    parser.add_argument("--block", type=int, default=20, help="Requests in a row before auth is switched.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-auth-") as tmp:
        state_dir = Path(tmp)
        stack = local_stack.up(state_dir, bots=0, config_dir=CONFIG_DIR)
        try:
            # The functions of this process, with the environment of the stack's.
            os.environ.update(local_stack.functions_env(state_dir))
            with service.use(service.Service(Settings.from_env())) as svc:
                functions = Functions(svc)
                user = local_state.id_token(state_dir, local_state.local_user(), stack["base_url"])
                setup = set_up(functions, user)
                rows = measure(functions, setup, args.requests, args.block)
                rows += verifications(functions, setup)
        finally:
            local_stack.down(state_dir)
    rows.insert(0, ("requests of each kind, each way", args.requests))
    report("auth", rows)


if __name__ == "__main__":
    main()
