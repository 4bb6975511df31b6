"""Fixtures: the real emulators once per session (with a key that signs the
CAS URLs), a fresh Firestore project and bucket per test, and the real gateway
(every function through functions-framework) served in-process over HTTP."""

import datetime
import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from werkzeug.serving import make_server

from bot import gce
from functions import service
from functions.config import Settings
from local import cloud_tasks_emulator, emulators, gateway, processes

TOKENS = {"bot": "test-bot-token", "user": "test-user-token", "admin": "test-admin-token"}
#: Where the bots look for a GCE metadata server: nowhere (a port nothing listens on).
NO_METADATA_SERVER = "127.0.0.1:1"
TIMERS_ACCOUNT = "timers@test.iam.gserviceaccount.com"
REPO = Path(__file__).resolve().parents[1]


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
def auth_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "config.json"
    path.write_text(json.dumps({
        "tokens": {t: {"role": r, "name": f"test-{r}"} for r, t in TOKENS.items()},
        "pools": {"lifo": {"lifo": True}},
        "bots": {"enforced-bot": {"dimensions": {"pool": ["secure"]}}},
    }))
    return path


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
def svc(emulator_env: dict[str, str], auth_config: Path, cloud_tasks: cloud_tasks_emulator.Emulator,
        base_url: str, clock: Clock) -> Iterator[service.Service]:
    """A service on a Firestore project, a bucket and a Cloud Tasks queue of
    this test's own; its timers call the in-process gateway."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    storage.Client(project=name, credentials=AnonymousCredentials()).create_bucket(name)
    queue = f"projects/{name}/locations/local/queues/timers"
    cloud_tasks_emulator.client_for(cloud_tasks.host).create_queue(
        parent=queue.rsplit("/queues/", 1)[0], queue={"name": queue})
    settings = Settings(project=name, bucket=name, config_path=str(auth_config), functions_url=base_url,
                        tasks_queue=queue, tasks_emulator_host=cloud_tasks.host,
                        service_account=TIMERS_ACCOUNT, id_token_certs_url=cloud_tasks.certs_url,
                        storage_url=emulator_env["STORAGE_EMULATOR_HOST"],
                        signing_key_file=emulator_env["SWARMING_SIGNING_KEY_FILE"])
    with service.use(service.Service(settings, clock=clock)) as current:
        yield current


@pytest.fixture(scope="session")
def base_url() -> Iterator[str]:
    """The gateway over real HTTP; it serves whichever service the test put in use."""
    server = make_server("127.0.0.1", 0, gateway.make_app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


class Api:
    """Calls functions over HTTP with the token of a role."""

    def __init__(self, base_url: str):
        self.base_url = base_url

    def post(self, function: str, body: Any, role: str | None = "user") -> requests.Response:
        headers = {"Authorization": f"Bearer {TOKENS[role]}"} if role else {}
        return requests.post(f"{self.base_url}/{function}", json=body, headers=headers, timeout=30)

    def ok(self, function: str, body: Any, role: str = "user") -> dict[str, Any]:
        response = self.post(function, body, role)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def api(svc: service.Service, base_url: str) -> Api:
    return Api(base_url)


@pytest.fixture
def start_bot(svc, base_url: str, tmp_path: Path) -> Iterator:
    """Starts a real bot in pool `e2e`; it is stopped (SIGTERM) after the test."""
    started = []

    def start(bot_id: str = "e2e-bot") -> subprocess.Popen:
        bot = processes.spawn(
            [sys.executable, "-m", "bot", "--server", base_url, "--work-dir", str(tmp_path / bot_id),
             "--id", bot_id, "--dimension", "pool=e2e"],
            tmp_path / f"{bot_id}.log", env={"SWARMING_TOKEN": TOKENS["bot"]}, cwd=REPO,
        )
        started.append(bot)
        return bot

    yield start
    for bot in started:
        processes.stop(bot.pid)
