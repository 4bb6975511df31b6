"""The HTTP client of the functions (bot/api_client.py) that the bot, the CLI
and the benches share, against loopback servers: what it retries and what it
must not, and how a failure reads."""

import json
import socket
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any, Iterator

import pytest
import requests

from bot.api_client import ApiClient, LazySession, retry_policy
from shared.api_error import ApiError
from shared.bot_api import BOT_TOKEN_HEADER
from tests.bot_fakes import QuietHandler

#: No waits between retries, so that the tests count attempts, not seconds.
NO_WAIT = retry_policy().new(backoff_factor=0, backoff_jitter=0)


class _Script(QuietHandler):
    """Answers each POST with the next of `server.answers` (status, body
    bytes, headers), repeating the last; records (path, headers, body)."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append((self.path, dict(self.headers), json.loads(body)))
        answers = self.server.answers
        self.reply(*(answers.pop(0) if len(answers) > 1 else answers[0]))


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Script)
    server.answers, server.seen = [], []
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_port}/"


def answer(status: int, body: Any, **headers: str) -> tuple[int, bytes, dict[str, str]]:
    return status, body if isinstance(body, bytes) else json.dumps(body).encode(), headers


UNAVAILABLE = answer(503, ApiError("x", 503, "unavailable", "later").to_wire())


def test_a_call_is_retried_on_503_with_the_token_and_answers_its_json(server) -> None:
    server.answers = [UNAVAILABLE, answer(200, {"ok": 1}, **{"X-Firestore-Reads": "3"})]
    client = ApiClient(url(server), "tok", retry=NO_WAIT)

    got = client.answer("task_result", {"task_id": "t"})

    assert got.body == {"ok": 1} and got.headers["X-Firestore-Reads"] == "3"
    assert [(path, headers["Authorization"], body) for path, headers, body in server.seen] == [
        ("/task_result", "Bearer tok", {"task_id": "t"})] * 2


def test_a_call_that_is_not_idempotent_is_not_retried_on_an_answer(server) -> None:
    server.answers = [answer(503, {"error": {"code": "unavailable", "message": "later", "field": "f"}})]
    client = ApiClient(url(server), "tok")

    with pytest.raises(ApiError) as raised:
        client.call("tasks_new", {"name": "once"}, idempotent=False)

    assert len(server.seen) == 1
    error = raised.value
    assert (error.call, error.status, error.code, error.message, error.field) == (
        "tasks_new", 503, "unavailable", "later", "f")


def test_a_call_that_is_not_idempotent_is_not_sent_twice_when_its_answer_is_lost() -> None:
    """The server read the request and hung up: it may have acted on it."""
    listener = socket.create_server(("127.0.0.1", 0))
    received = []

    def serve() -> None:
        with listener:
            while True:
                try:
                    connection, _ = listener.accept()
                except OSError:
                    return
                with connection:
                    received.append(connection.recv(65536))

    threading.Thread(target=serve, daemon=True).start()
    client = ApiClient(f"http://127.0.0.1:{listener.getsockname()[1]}", "tok")

    with pytest.raises(ApiError) as raised:
        client.call("tasks_new", {"name": "once"}, idempotent=False)
    listener.close()

    assert len(received) == 1 and b"tasks_new" in received[0]
    assert (raised.value.status, raised.value.code) == (None, "unreachable")


def test_a_call_that_is_not_idempotent_is_retried_when_it_could_not_connect() -> None:
    """Nothing was sent: trying again cannot make a second task."""
    port_holder = socket.socket()
    port_holder.bind(("127.0.0.1", 0))  # Bound, not listening: connections are refused until it listens.
    port = port_holder.getsockname()[1]
    threading.Timer(0.3, port_holder.listen).start()
    accepted = []

    def serve() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                connection, _ = port_holder.accept()
            except OSError:  # Not listening yet.
                time.sleep(0.05)
                continue
            with connection:
                accepted.append(connection.recv(65536))
                body = json.dumps({"task_id": "t0"}).encode()
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                                   + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
            return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = ApiClient(f"http://127.0.0.1:{port}", "tok")

    assert client.call("tasks_new", {"name": "once"}, idempotent=False) == {"task_id": "t0"}
    thread.join(10)
    port_holder.close()
    assert len(accepted) == 1


def test_an_answer_that_is_not_the_api_s_json_is_quoted(server) -> None:
    client = ApiClient(url(server), "tok", retry=NO_WAIT)
    server.answers = [answer(404, b"<html>no such function</html>")]
    with pytest.raises(ApiError) as not_found:
        client.call("nope", {})
    server.answers = [answer(200, [1, 2])]
    with pytest.raises(ApiError) as not_an_object:
        client.call("task_result", {})

    assert (not_found.value.status, not_found.value.code) == (404, "http_error")
    assert not_found.value.message == "<html>no such function</html>" and not_found.value.field is None
    assert (not_an_object.value.status, not_an_object.value.code, not_an_object.value.message) == (
        200, "bad_reply", "[1, 2]")
    assert str(not_found.value) == "nope: HTTP 404: http_error: <html>no such function</html>"


def test_headers_set_go_with_the_token_until_set_again(server) -> None:
    server.answers = [answer(200, {})]
    client = ApiClient(url(server), "tok")

    client.set_headers({"Authorization": "Bearer not-the-token", "X-Extra": "1"})
    client.call("bot_poll", {})
    client.set_headers({"X-Other": "2"})
    client.call("bot_poll", {})
    client.token = None
    client.call("bot_poll", {})

    first, second, third = (headers for _, headers, _ in server.seen)
    assert (first["Authorization"], first["X-Extra"]) == ("Bearer tok", "1")
    assert (second["Authorization"], second["X-Other"]) == ("Bearer tok", "2") and "X-Extra" not in second
    assert "Authorization" not in third and third["X-Other"] == "2"


def test_a_renewed_bot_token_in_an_answer_is_the_next_call_s(server) -> None:
    renewed = {BOT_TOKEN_HEADER: "renewed"}
    server.answers = [answer(200, {}, **renewed), answer(503, ApiError("x", 503, "unavailable", "later").to_wire(),
                                                         **{BOT_TOKEN_HEADER: "renewed-again"}),
                      answer(200, {})]
    client = ApiClient(url(server), "tok", retry=retry_policy(statuses=()))

    client.call("bot_handshake", {})
    with pytest.raises(ApiError):
        client.call("bot_poll", {})  # An error's answer renews it too.
    client.call("bot_poll", {})

    assert [headers["Authorization"] for _, headers, _ in server.seen] == [
        "Bearer tok", "Bearer renewed", "Bearer renewed-again"]
    assert client.token == "renewed-again"


def test_a_session_is_made_at_its_first_use_once_whatever_the_threads_and_closed_with_it() -> None:
    made: list[requests.Session] = []

    def make() -> requests.Session:
        time.sleep(0.01)  # Room for the threads to race.
        made.append(requests.Session())
        return made[-1]

    lazy = LazySession(make)
    assert made == []  # A task runner that sends no call of this kind makes none.
    got: list[requests.Session] = []
    threads = [threading.Thread(target=lambda: got.append(lazy.get())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(made) == 1 and got == made * 8
    closed = []
    made[0].close = lambda: closed.append(True)
    lazy.close()
    assert closed == [True]
