"""Fixtures: the real emulators once per session (with a key that signs the
CAS URLs), a fresh Firestore project and bucket per test with the tests'
service configuration (tests/config/) pushed to it, the real gateway (every
function through functions-framework) served in-process over HTTP, and
credentials minted as production mints them: Google-style ID tokens signed by
the local OIDC issuer's key, bot and bootstrap tokens signed by the service."""

import datetime
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from werkzeug.serving import make_server

from bot import gce
from functions import bot_auth, service, signed_tokens
from functions.settings import Settings
from local import cloud_tasks_emulator, emulators, gateway, processes
from shared import bot_api, service_config
from tests.own_firestore import OwnFirestore, use_firestore

#: Where the bots look for a GCE metadata server: nowhere (a port nothing listens on).
NO_METADATA_SERVER = "127.0.0.1:1"
TIMERS_ACCOUNT = "timers@test.iam.gserviceaccount.com"
REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "tests" / "config"
TOKEN_SECRET = "the tests' token secret"
CONFIG = service_config.parse(service_config.read_dir(CONFIG_DIR))
#: Who each role of the tests is (tests/config/ gives them their roles).
PEOPLE = {"user": "user@example.com", "admin": "admin@example.com", "viewer": "viewer@example.com",
          "internal": TIMERS_ACCOUNT}


def bot_token(bot_id: str = "bot-1") -> str:
    """The bot token a handshake would give the bot under its group of
    tests/config/, valid an hour: for any test's service (same secret, same
    config)."""
    group = bot_auth.group_of(CONFIG, bot_id)
    expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    tokens = bot_auth.BotTokens(signed_tokens.SignedTokens(TOKEN_SECRET))
    return tokens.bot_token(bot_id, group.name, bot_auth.group_version(CONFIG, group), expires)


@pytest.fixture(scope="session", autouse=True)
def no_metadata_server() -> Iterator[None]:
    """The bots' default hook must find no GCE metadata server, even on a GCE
    VM: it would send the VM's ID tokens to the fakes, and a bot would not
    show the credential a test gave it. tests/test_bot_auth.py serves one."""
    with pytest.MonkeyPatch.context() as patch:
        for name in (gce.HOST_ENV, gce.IP_ENV):
            patch.setenv(name, NO_METADATA_SERVER)
        yield


@pytest.fixture(scope="session")
def emulator_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    logs = tmp_path_factory.mktemp("emulators")
    started = []
    try:
        started.append(emulators.start_firestore(processes.free_port(), logs / "firestore.log"))
        started.append(emulators.start_storage(processes.free_port(), logs / "storage.log", logs / "gcs"))
        started.append(emulators.start_pubsub(processes.free_port(), logs / "pubsub.log"))
        env = {k: v for e in started for k, v in e.env.items()}
        # The CAS URLs are signed with a key of our own, as on the local stack.
        env["SWARMING_SIGNING_KEY_FILE"] = str(emulators.signing_key(logs / "signing_key.json"))
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        yield env
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    finally:
        for emulator in started:
            processes.stop(emulator.process.pid)


@pytest.fixture(scope="session")
def cloud_tasks() -> Iterator[cloud_tasks_emulator.Emulator]:
    emulator = cloud_tasks_emulator.serve()
    yield emulator
    emulator.stop()


class Clock:
    """The service's clock: real time plus an offset tests may move."""

    def __init__(self) -> None:
        self.offset = datetime.timedelta()

    def __call__(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.timezone.utc) + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def svc(emulator_env: dict[str, str], cloud_tasks: cloud_tasks_emulator.Emulator, base_url: str,
        clock: Clock) -> Iterator[service.Service]:
    """A service on a Firestore project, a bucket and a Cloud Tasks queue of
    this test's own, configured with tests/config/; its timers call the
    in-process gateway."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    storage.Client(project=name, credentials=AnonymousCredentials()).create_bucket(name)
    queue = f"projects/{name}/locations/local/queues/timers"
    timers = cloud_tasks_emulator.client_for(cloud_tasks.host)
    timers.create_queue(parent=queue.rsplit("/queues/", 1)[0], queue={"name": queue})
    settings = Settings(project=name, bucket=name, functions_url=base_url, tasks_queue=queue,
                        tasks_emulator_host=cloud_tasks.host, service_account=TIMERS_ACCOUNT,
                        id_token_certs_url=cloud_tasks.certs_url, storage_url=emulator_env["STORAGE_EMULATOR_HOST"],
                        signing_key_file=emulator_env["SWARMING_SIGNING_KEY_FILE"], token_secret=TOKEN_SECRET)
    current = service.Service(settings, clock=clock)
    current.service_config.push(service_config.read_dir(CONFIG_DIR))  # CONFIG
    with service.use(current):
        yield current
    current.close()  # Its listeners would run, and cost CPU, until the suite ends.
    # Its timers would reach the gateway in later tests, whose service knows
    # none of their tasks, and be retried there until the suite ends.
    timers.delete_queue(name=queue)


@pytest.fixture
def own_firestore(svc: service.Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OwnFirestore]:
    """The test's service (and any Firestore client it makes) on a Firestore
    emulator of its own."""
    own = OwnFirestore(tmp_path / "firestore.log")
    use_firestore(svc, monkeypatch, own.host)
    yield own
    own.stop()


@pytest.fixture(scope="session")
def base_url() -> Iterator[str]:
    """The gateway over real HTTP; it serves whichever service the test put in use."""
    server = make_server("127.0.0.1", 0, gateway.make_app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


class Tokens:
    """The tests' credentials, minted as production mints them."""

    def __init__(self, svc: service.Service, signer: Any, base_url: str):
        self._svc = svc
        self._signer = signer
        self._base_url = base_url

    def person(self, email: str, audience: str | None = None) -> str:
        """A Google-style ID token, for the service's base URL unless another audience is given."""
        return self._signer.token(email, audience or self._base_url, time.time())

    def bot(self, bot_id: str = "bot-1") -> str:
        return bot_token(bot_id)

    def bootstrap(self) -> str:
        expires = self._svc.clock() + datetime.timedelta(hours=1)
        return self._svc.signed_tokens.mint(signed_tokens.BOOTSTRAP, {"sub": "user:admin@example.com"}, expires)

    def __getitem__(self, role: str) -> str:
        """`bot` is bot-1's token; the other roles are the people of PEOPLE."""
        return self.bot() if role == "bot" else self.person(PEOPLE[role])


@pytest.fixture
def tokens(svc: service.Service, cloud_tasks: cloud_tasks_emulator.Emulator, base_url: str) -> Tokens:
    return Tokens(svc, cloud_tasks.signer, base_url)


@pytest.fixture
def as_user(monkeypatch: pytest.MonkeyPatch, tokens: Tokens) -> None:
    """The CLI, run in this process or started from it, calls as the tests' user (SWARMING_TOKEN)."""
    monkeypatch.setenv("SWARMING_TOKEN", tokens["user"])


@pytest.fixture
def as_admin(monkeypatch: pytest.MonkeyPatch, tokens: Tokens) -> None:
    """The CLI calls as the tests' global admin."""
    monkeypatch.setenv("SWARMING_TOKEN", tokens["admin"])


class Api:
    """Calls functions over HTTP as a role: a person of PEOPLE, or `bot`, as
    the bot the body names (bot-1 when it names none)."""

    def __init__(self, base_url: str, tokens: Tokens):
        self.base_url = base_url
        self.tokens = tokens

    def token(self, role: str, body: Any) -> str:
        if role != "bot":
            return self.tokens[role]
        ids = body.get("dimensions", {}).get("id") if isinstance(body, dict) else None
        named = ids[0] if isinstance(ids, list) and ids and isinstance(ids[0], str) else "bot-1"
        return self.tokens.bot(named if bot_api.is_bot_id(named) else "bot-1")

    def post(self, function: str, body: Any, role: str | None = "user") -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token(role, body)}"} if role else {}
        return requests.post(f"{self.base_url}/{function}", json=body, headers=headers, timeout=30)

    def ok(self, function: str, body: Any, role: str = "user") -> dict[str, Any]:
        response = self.post(function, body, role)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def api(svc: service.Service, base_url: str, tokens: Tokens) -> Api:
    return Api(base_url, tokens)


@pytest.fixture
def start_bot(svc, base_url: str, tmp_path: Path, tokens: Tokens) -> Iterator:
    """Starts a real bot, as a host is started: with a bootstrap token in its
    directory. Its group (tests/config/bots.toml) puts it in pool `e2e`. It is
    stopped (SIGTERM) after the test."""
    started = []

    def start(bot_id: str = "e2e-bot") -> subprocess.Popen:
        work_dir = tmp_path / bot_id
        work_dir.mkdir(parents=True, exist_ok=True)
        token_file = work_dir / "bootstrap_token"
        token_file.touch(mode=0o600)
        token_file.write_text(tokens.bootstrap())
        bot = processes.spawn(
            [sys.executable, "-m", "bot", "--server", base_url, "--work-dir", str(work_dir), "--id", bot_id],
            tmp_path / f"{bot_id}.log", env={}, cwd=REPO,
        )
        started.append(bot)
        return bot

    yield start
    for bot in started:
        processes.stop(bot.pid)
