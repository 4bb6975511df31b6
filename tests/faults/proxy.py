"""A TCP proxy between bots or the CLI and the gateway that breaks HTTP
requests on purpose, one request a connection: it reads each request whole,
asks `decide` what to do with it, and resets the connection before or after
the server saw it, answers 503 with Retry-After itself, holds the connection
unanswered then resets it, delays it, or passes it on. Every request is kept
with its fault and the server's status, so a test can replay it and check
that the faults it wants were injected."""

import dataclasses
import enum
import itertools
import json
import random
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from urllib.parse import urlparse

from shared.api_error import ApiError

#: Told to the client with each 503 of the proxy's own: short, to keep the tests short.
RETRY_AFTER_SECS = 1
_HEAD_END = b"\r\n\r\n"
_HOP_HEADERS = (b"connection", b"keep-alive")


class Fault(enum.Enum):
    NONE = "none"
    RESET = "reset"  # The connection reset before the server saw the request.
    LOST_ANSWER = "lost answer"  # The server did the work; its answer is reset away.
    UNAVAILABLE = "503"  # The proxy's own 503, with Retry-After.
    HOLD = "hold"  # Held unanswered for `hold_secs`, then reset: a request that timed out.
    DELAY = "delay"  # Passed on `delay_secs` late.


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    path: str  # Without the query.
    head: bytes  # Its request line and headers, as the client sent them.
    body: bytes

    def header(self, name: str) -> str | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower().encode():
                return value.strip().decode()
        return None

    def json(self) -> dict:
        return json.loads(self.body)


@dataclasses.dataclass(frozen=True)
class Seen:
    request: Request
    fault: Fault
    status: int | None  # The server's answer; None when it never saw the request.


Decide = Callable[[Request], Fault]


class SeededFaults:
    """One request in `every`, at a seeded random place in each block of
    `every`, gets a fault, the `kinds` in turn; requests `spared` get none."""

    def __init__(self, seed: int, kinds: Iterable[Fault], every: int = 4,
                 spared: Callable[[Request], bool] = lambda _: False):
        self._random = random.Random(seed)
        self._kinds = itertools.cycle(kinds)
        self._every = every
        self._spared = spared
        self._block: list[Fault] = []
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Fault:
        if self._spared(request):
            return Fault.NONE
        with self._lock:
            if not self._block:
                self._block = [Fault.NONE] * (self._every - 1) + [next(self._kinds)]
                self._random.shuffle(self._block)
            return self._block.pop()


class FaultProxy:
    """Listens on `url` and passes requests on to `upstream` (set before the
    first request) as `decide` says."""

    def __init__(self, upstream: str = "", decide: Decide = lambda _: Fault.NONE,
                 hold_secs: float = 1.0, delay_secs: float = 0.5):
        self.upstream = upstream
        self.decide = decide
        self.hold_secs, self.delay_secs = hold_secs, delay_secs
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._closing.set()
        self._listener.close()

    def requests(self, path: str) -> list[Request]:
        """Those that reached the server at `path`, in the order they came."""
        with self._lock:
            return [s.request for s in self.seen if s.request.path == path and s.status is not None]

    def injected(self) -> list[Fault]:
        with self._lock:
            return [s.fault for s in self.seen if s.fault is not Fault.NONE]

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            request = _read_request(conn)
            if request is None:
                return
            fault = self.decide(request)
            status, answer = self._answer(request, fault)
            with self._lock:
                self.seen.append(Seen(request, fault, status))
            if answer is None:
                _reset(conn)
            else:
                conn.sendall(answer)

    def _answer(self, request: Request, fault: Fault) -> tuple[int | None, bytes | None]:
        """The server's status and the bytes the client gets (None: a reset)."""
        if fault is Fault.RESET:
            return None, None
        if fault is Fault.UNAVAILABLE:
            return None, _unavailable()
        if fault is Fault.HOLD:
            self._closing.wait(self.hold_secs)
            return None, None
        if fault is Fault.DELAY:
            self._closing.wait(self.delay_secs)
        answer = self._forward(request)
        status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else None
        return status, None if fault is Fault.LOST_ANSWER else answer

    def _forward(self, request: Request) -> bytes:
        upstream = urlparse(self.upstream)
        with socket.create_connection((upstream.hostname, upstream.port), timeout=120) as server:
            server.sendall(_closing_head(request.head) + request.body)
            return b"".join(iter(lambda: server.recv(1 << 16), b""))


def _read_request(conn: socket.socket) -> Request | None:
    """The whole request (its body by Content-Length); None if the client left first."""
    data = b""
    while _HEAD_END not in data:
        chunk = conn.recv(1 << 16)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(_HEAD_END)
    method, target = head.split(b" ", 2)[:2]
    request = Request(method.decode(), urlparse(target.decode()).path, head, b"")
    length = int(request.header("Content-Length") or 0)
    while len(body) < length:
        chunk = conn.recv(1 << 16)
        if not chunk:
            return None
        body += chunk
    return dataclasses.replace(request, body=body)


def _closing_head(head: bytes) -> bytes:
    """`head` asking the server to close the connection after its answer, which then ends at EOF."""
    lines = [line for line in head.split(b"\r\n") if line.partition(b":")[0].strip().lower() not in _HOP_HEADERS]
    return b"\r\n".join([*lines, b"Connection: close"]) + _HEAD_END


def _unavailable() -> bytes:
    body = json.dumps(ApiError("proxy", 503, "unavailable", "injected by the fault proxy").to_wire()).encode()
    head = ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Retry-After: {RETRY_AFTER_SECS}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode() + body


def _reset(conn: socket.socket) -> None:
    """Closes with a RST, not a FIN: the client sees its connection reset."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def serving(upstream: str = "") -> Iterator[FaultProxy]:
    """A FaultProxy until the fixture using it ends."""
    proxy = FaultProxy(upstream)
    yield proxy
    proxy.close()
