"""Fixtures: the real emulators once per session, a fresh Firestore project and
bucket per test, and the real gateway (every function through
functions-framework) served in-process over HTTP."""

import json
import os
import threading
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from werkzeug.serving import make_server

from client import emulators, processes
from functions import gateway, service
from functions.config import Settings

TOKENS = {"bot": "test-bot-token", "user": "test-user-token", "admin": "test-admin-token"}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def emulator_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    logs = tmp_path_factory.mktemp("emulators")
    started = []
    try:
        started.append(emulators.start_firestore(processes.free_port(), logs / "firestore.log"))
        started.append(emulators.start_storage(processes.free_port(), logs / "storage.log", logs / "gcs"))
        env = {k: v for e in started for k, v in e.env.items()}
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


@pytest.fixture
def svc(emulator_env: dict[str, str], auth_config: Path) -> Iterator[service.Service]:
    """A service on a Firestore project and a bucket of this test's own."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    storage.Client(project=name, credentials=AnonymousCredentials()).create_bucket(name)
    settings = Settings(project=name, bucket=name, config_path=str(auth_config))
    with service.use(service.Service(settings)) as current:
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
