"""Test helpers for the bot: a loopback fake of the Bot API, and bot zips
built the way the server builds them (bot/ and shared/, bot/zip_main.py as the
root's __main__.py, config.json, bot_config.py)."""

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Mapping
from urllib.parse import parse_qs, urlparse

from shared.api_error import ApiError
from shared.bot_api import (
    BOT_TOKEN_HEADER, Candidate, Claim, EventReply, HandshakeReply, Skip, Sleep, TaskErrorReply, TaskUpdateReply,
)
from shared.manifest import Manifest

REPO = Path(__file__).resolve().parents[1]
#: (status, JSON body, headers).
Reply = tuple[int, dict[str, Any], dict[str, str]]
#: Not sent: how long the fake holds a reply back (`stalled`).
_STALL = "X-Fake-Stall"


def ok(body: dict[str, Any]) -> Reply:
    return 200, body, {}


def error(status: int, code: str) -> Reply:
    return status, ApiError("fake", status, code, f"{code} (fake)").to_wire(), {}


def renewing(reply: Reply, bot_token: str) -> Reply:
    """`reply`, carrying a renewed bot token as the server's answers may."""
    status, body, headers = reply
    return status, body, {**headers, BOT_TOKEN_HEADER: bot_token}


def stalled(reply: Reply, seconds: float | None) -> Reply:
    """`reply`, answered `seconds` after the request came; None: never (the
    request is held, unanswered, until the fake shuts down)."""
    status, body, headers = reply
    return status, body, {**headers, _STALL: "never" if seconds is None else str(seconds)}


def sleep(duration: float) -> Reply:
    return ok(Sleep(duration).to_wire())


def claim(*task_ids: str) -> Reply:
    return ok(Claim(tuple(Candidate(t) for t in task_ids)).to_wire())


def skip(reason: str) -> Reply:
    return ok(Skip(reason).to_wire())


def run(task_id: str, command: list[str], run_token: str = "run-token", **wire: Any) -> Reply:
    """The run of `task_id` on bot-1, with its `run_token`; `wire` replaces
    fields of the manifest as sent, mistakes included."""
    manifest = Manifest(task_id[:-1] + "1", "bot-1", tuple(command), {}, 30, dimensions={"pool": ["default"]})
    return ok({"cmd": "run", "manifest": {**manifest.to_wire(), **wire}, "run_token": run_token})


class FakeServer(ThreadingHTTPServer):
    """The Bot API from a script: each function gives its queued replies in
    order, then repeats the last one. Every call is recorded, with its
    Authorization, and all its headers in `headers`. `GET bot_code` serves
    the zips in `zips` by version."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.calls: list[tuple[str, dict[str, Any], str | None]] = []
        self.headers: list[dict[str, str]] = []  # Of each call in `calls`.
        self.zips: dict[str, bytes] = {}
        self.closing = threading.Event()  # Set at shutdown: releases the stalled replies.
        self._lock = threading.Lock()
        self._replies: dict[str, list[Reply]] = {
            "bot_handshake": [ok(HandshakeReply(bot_version="dev", server_version="fake").to_wire())],
            "bot_task_update": [ok(TaskUpdateReply().to_wire())],
            "bot_task_error": [ok(TaskErrorReply("BOT_DIED").to_wire())],
            "bot_event": [ok(EventReply().to_wire())],
        }

    def script(self, name: str, *replies: Reply) -> None:
        with self._lock:
            self._replies[name] = list(replies)

    def answer(self, name: str, body: dict[str, Any], headers: dict[str, str]) -> Reply:
        with self._lock:
            self.calls.append((name, body, headers.get("Authorization")))
            self.headers.append(headers)
            queue = self._replies[name]
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]

    def bodies(self, name: str) -> list[dict[str, Any]]:
        return [body for called, body, _ in self.calls if called == name]

    def authorizations(self, name: str) -> list[str | None]:
        return [authorization for called, _, authorization in self.calls if called == name]

    def wait_for(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out; calls: {self.names()}"
            time.sleep(0.02)


def served() -> Iterator[FakeServer]:
    """A FakeServer answering on a thread until the fixture using it ends."""
    server = FakeServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.closing.set()
    server.shutdown()
    server.server_close()


class QuietHandler(BaseHTTPRequestHandler):
    """The handler of a loopback fake: answers with `reply`, logs nothing."""

    def reply(self, status: int, data: bytes, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        for name, value in {"Content-Length": str(len(data)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


class _Handler(QuietHandler):
    server: FakeServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        status, reply, headers = self.server.answer(self.path.lstrip("/"), body, dict(self.headers))
        headers = dict(headers)  # The script's own stays as it is, for the next call.
        stall = headers.pop(_STALL, None)
        if stall is not None and self.server.closing.wait(None if stall == "never" else float(stall)):
            self.close_connection = True  # Shutting down: no answer at all.
            return
        self.reply(status, json.dumps(reply).encode(), {"Content-Type": "application/json", **headers})

    def do_GET(self) -> None:
        url = urlparse(self.path)
        version = parse_qs(url.query).get("version", [""])[0]
        with self.server._lock:
            self.server.calls.append((url.path.lstrip("/"), {"version": version}, self.headers.get("Authorization")))
            self.server.headers.append(dict(self.headers))
        data = self.server.zips.get(version)
        if url.path != "/bot_code" or data is None:
            self.reply(404, json.dumps(ApiError("bot_code", 404, "not_found", version).to_wire()).encode(),
                       {"Content-Type": "application/json"})
        else:
            self.reply(200, data, {"Content-Type": "application/octet-stream"})


def bot_zip_entries(server: str, *, server_version: str = "test",
                    replace: Mapping[str, bytes] | None = None) -> dict[str, bytes]:
    """The files of a bot zip, as the server builds it (the libraries it
    vendors included: task runners start without the site-packages)."""
    from functions.bot_code import Sources

    entries = {name: path.read_bytes() for name, path in Sources(root=REPO).files().items()}
    entries["config.json"] = json.dumps({"server": server, "server_version": server_version}).encode()
    entries["bot_config.py"] = b'"""Hooks (none in tests)."""\n'
    entries.update(replace or {})
    return entries


def config(source: str) -> ModuleType:
    """A bot_config.py module from its source."""
    module = ModuleType("bot_config")
    exec(textwrap.dedent(source), module.__dict__)
    return module


def events_of(fake: FakeServer, kind: str) -> list[str]:
    """The messages of the bot events of this kind the fake was sent."""
    return [e["message"] for e in fake.bodies("bot_event") if e["event"] == kind]


def write_zip(path: Path, entries: Mapping[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED,
              date_time: tuple[int, int, int, int, int, int] = (2020, 1, 1, 0, 0, 0)) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, content in entries.items():
            archive.writestr(zipfile.ZipInfo(name, date_time), content, compress_type=compression)
    return path.read_bytes()


def start_bot(server: str, work_dir: Path, token: str, *args: str) -> subprocess.Popen:
    """A real bot process (`python -m bot`) of this checkout, with `token`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMING_")}
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "--server", server, "--work-dir", str(work_dir), *args],
        cwd=REPO, env={**env, "SWARMING_TOKEN": token}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def alive(pid: int) -> bool:
    """Not gone nor a zombie (an orphan's reaping depends on the container's init)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Waits up to `timeout` seconds for every process of `pids` to be gone; those still alive."""
    deadline = time.monotonic() + timeout
    while (left := [pid for pid in pids if alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left
