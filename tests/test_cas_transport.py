"""The signed-URL transport the CLI and the bot share (bot/cas_transport.py),
against a loopback stand-in for Cloud Storage."""

import http.server
import io
import os
import socket
import threading
from typing import Any, Iterator

import pytest

from bot.cas_transport import SignedUrlTransport, StorageError, transfer_retry
from shared.cas import Digest, Verifier

MIB = 1024 * 1024
UNKNOWN = Digest("f" * 64, 123)


class _Bucket(http.server.BaseHTTPRequestHandler):
    """Create-only PUT and GET by path, once the statuses queued for that
    path in `server.failures` are answered."""

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        path = self._record(body)
        if not self._failed(path):
            stored = self.server.objects.setdefault(path, body) is not body
            self._answer(412 if stored else 200)

    def do_GET(self) -> None:
        path = self._record(b"")
        if self._failed(path):
            return
        body = self.server.objects.get(path)
        if body is None:
            return self._answer(404)
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if "Range" in self.headers else 0
        cut = self.server.cuts.get(path, [])
        if cut:  # Promises the whole rest, sends some of it, and hangs up.
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            self.wfile.write(body[start:start + cut.pop(0)])
            self.close_connection = True
            return
        self._answer(206 if start else 200, body[start:])

    def _record(self, body: bytes) -> str:
        self.server.seen.append(({k.lower(): v for k, v in self.headers.items()}, body))
        return self.path.split("?")[0]

    def _failed(self, path: str) -> bool:
        """Answers the next status queued for `path`, if any."""
        queued = self.server.failures.get(path, [])
        if not queued:
            return False
        self._answer(queued.pop(0))
        return True

    def _answer(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def bucket() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Bucket)
    server.objects, server.failures, server.cuts, server.seen = {}, {}, {}, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def _url(server: http.server.HTTPServer, path: str) -> str:
    return f"http://127.0.0.1:{server.server_port}{path}?X-Goog-Signature=secret"


@pytest.fixture
def transport() -> Iterator[SignedUrlTransport]:
    """The transport as the CLI makes it, without the waits between retries."""
    with SignedUrlTransport(retry=transfer_retry().new(backoff_factor=0, backoff_jitter=0)) as transport:
        yield transport


def test_a_file_is_sent_whole_again_after_a_5xx_and_412_means_stored(bucket, transport, tmp_path):
    data = os.urandom(3 * MIB)
    (tmp_path / "blob").write_bytes(data)
    bucket.failures["/b"] = [503]
    transport.put(_url(bucket, "/b"), {"x-goog-if-generation-match": "0"}, tmp_path / "blob")
    assert bucket.objects["/b"] == data
    assert [body == data for _, body in bucket.seen] == [True, True]
    transport.put(_url(bucket, "/b"), {}, b"stored by someone else")  # 412: fine
    assert bucket.objects["/b"] == data
    headers = bucket.seen[0][0]
    assert headers["x-goog-if-generation-match"] == "0" and "authorization" not in headers


def test_no_credential_goes_to_the_bucket_not_even_from_netrc(bucket, transport, tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"  # requests would send this one to a host without auth of its own.
    netrc.write_text("machine 127.0.0.1 login bot password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    transport.put(_url(bucket, "/cas/a"), {}, b"a")
    with io.BytesIO() as sink:
        assert transport.get(_url(bucket, "/cas/a"), sink, Verifier(Digest.of_bytes(b"a")))
    assert [headers.get("authorization") for headers, _ in bucket.seen] == [None, None]


def test_an_empty_file_goes_with_content_length_zero(bucket, transport, tmp_path):
    (tmp_path / "empty").touch()
    transport.put(_url(bucket, "/e"), {}, tmp_path / "empty")
    assert bucket.objects["/e"] == b"" and bucket.seen[0][0]["content-length"] == "0"
    assert "transfer-encoding" not in bucket.seen[0][0]


def test_a_download_feeds_the_verifier_after_a_5xx_and_404_is_false(bucket, transport):
    data = os.urandom(2 * MIB + 5)
    bucket.objects["/g"], bucket.failures["/g"] = data, [502]
    sink, verifier = io.BytesIO(), Verifier(Digest.of_bytes(data))
    assert transport.get(_url(bucket, "/g"), sink, verifier)
    assert sink.getvalue() == data and verifier.matches()
    assert bucket.seen[-1][0]["accept-encoding"] == "identity"
    assert not transport.get(_url(bucket, "/none"), io.BytesIO(), Verifier(UNKNOWN))


def test_a_download_cut_short_goes_on_from_where_it_stopped(bucket, transport):
    data = os.urandom(3 * MIB)
    bucket.objects["/c"], bucket.cuts["/c"] = data, [MIB, MIB // 2]
    sink, verifier = io.BytesIO(), Verifier(Digest.of_bytes(data))
    assert transport.get(_url(bucket, "/c"), sink, verifier)
    assert sink.getvalue() == data and verifier.matches()
    ranges = [headers.get("range") for headers, _ in bucket.seen]
    assert ranges[0] is None and ranges[1:] == [f"bytes={MIB}-", f"bytes={MIB + MIB // 2}-"]


def test_a_download_cut_short_again_and_again_fails(bucket, transport):
    bucket.objects["/d"], bucket.cuts["/d"] = b"x" * MIB, [10] * 10
    with pytest.raises(StorageError) as raised:
        transport.get(_url(bucket, "/d"), io.BytesIO(), Verifier(UNKNOWN))
    assert "secret" not in str(raised.value) and len(bucket.seen) == 4  # the first try and 3 resumes


def test_a_lasting_failure_names_the_object_never_the_signature(bucket, transport):
    bucket.failures["/x"] = [408, 429, 500, 502, 503, 504, 500, 500, 500, 500]
    with pytest.raises(StorageError) as raised:
        transport.put(_url(bucket, "/x"), {}, b"data")
    assert str(raised.value).startswith(f"PUT http://127.0.0.1:{bucket.server_port}/x: HTTP 500")
    assert raised.value.status == 500 and "secret" not in str(raised.value)
    assert len(bucket.seen) == 9  # The first try and eight retries, each status among them retried.


def test_no_answer_names_the_object_never_the_signature(transport):
    with socket.socket() as closed:  # A port nothing listens on.
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(StorageError) as raised:
        transport.get(f"http://127.0.0.1:{port}/y?X-Goog-Signature=secret", io.BytesIO(), Verifier(UNKNOWN))
    assert str(raised.value).startswith(f"GET http://127.0.0.1:{port}/y: no answer: unreachable")
    assert raised.value.status is None and "secret" not in str(raised.value)
