"""How the CAS URLs are signed: without a key file, as the runtime's service
account through IAM signBlob, here a local stand-in that signs with a key of
its own and counts its calls; with the key file of the other tests. Every URL
is checked as Cloud Storage checks it: the V4 canonical request rebuilt from
the URL and the headers the client sends, its signature verified with the
signer's public key."""

import base64
import dataclasses
import datetime
import hashlib
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import google.auth
import google.auth.credentials
import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from functions import cas, service
from shared.cas import MAX_BATCH, Digest

SIGNER = "swarming-functions@test-project.iam.gserviceaccount.com"
ACCESS_TOKEN = "the runtime's access token"
SIGN_PATH = f"/v1/projects/-/serviceAccounts/{SIGNER}:signBlob"


class IamStandIn:
    """IAM Credentials' signBlob for SIGNER, signing with its own RSA key: it
    refuses a call without the runtime's token, answers `failures` (statuses)
    before signing again, or always `refusal` when set, and counts calls,
    connections and the most calls at once."""

    def __init__(self, latency: float):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.latency = latency
        self.failures: list[int] = []
        self.refusal: int | None = None
        self.calls = self.unauthorized = self.connections = self.in_flight = self.peak = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, path: str, authorization: str, body: bytes) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.calls += 1
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            failure = self.failures.pop(0) if self.failures else self.refusal
            self.unauthorized += authorization != f"Bearer {ACCESS_TOKEN}"
        time.sleep(self.latency)  # A network's round trip: calls at once overlap.
        with self._lock:
            self.in_flight -= 1
        if urllib.parse.unquote(path) != SIGN_PATH:
            return 404, {"error": {"code": 404, "message": f"no {path}"}}
        if authorization != f"Bearer {ACCESS_TOKEN}":
            return 401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}}
        if failure:
            return failure, {"error": {"code": failure, "message": "Permission 'iam.serviceAccounts.signBlob' "
                                                                 "denied on resource (or it may not exist)."}}
        signature = self.key.sign(_payload(body), padding.PKCS1v15(), hashes.SHA256())
        return 200, {"keyId": "stand-in-key", "signedBlob": _b64(signature)}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # Connections kept open, as Google's are.

            def setup(self) -> None:
                super().setup()
                with stand_in._lock:
                    stand_in.connections += 1

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, answer = stand_in.answer(self.path, self.headers.get("Authorization", ""), body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


def _payload(body: bytes) -> bytes:
    return base64.b64decode(json.loads(body)["payload"], validate=True)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class RuntimeCredentials(google.auth.credentials.Credentials):
    """What google.auth.default() gives a Cloud Function (Compute Engine's
    credentials) without its metadata server: the account is "default" until
    refreshed."""

    def __init__(self) -> None:
        super().__init__()
        self.service_account_email = "default"
        self.refreshes = 0

    def refresh(self, request: Any) -> None:
        self.refreshes += 1
        self.token, self.service_account_email = ACCESS_TOKEN, SIGNER
        self.expiry = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) + datetime.timedelta(hours=1)


@pytest.fixture
def iam() -> Iterator[IamStandIn]:
    stand_in = IamStandIn(latency=0.005)
    yield stand_in
    stand_in.stop()


@pytest.fixture
def runtime(svc: service.Service, iam: IamStandIn, monkeypatch: pytest.MonkeyPatch) -> Iterator[RuntimeCredentials]:
    """The test's service as deployed: no key file, the runtime's credentials, IAM at the stand-in."""
    credentials = RuntimeCredentials()
    monkeypatch.setattr(google.auth, "default", lambda scopes=None, **_: (credentials, svc.settings.project))
    settings = dataclasses.replace(svc.settings, signing_key_file="", iam_credentials_url=iam.url)
    with service.use(service.Service(settings, clock=svc.clock)):
        yield credentials


def verify_v4(url: str, method: str, headers: Mapping[str, str], public_key: Any, account: str) -> None:
    """Checks `url` as Cloud Storage would for a request sending `headers`:
    every header sent (and the host) is signed, and the signature is of the
    canonical request rebuilt from them and the URL."""
    parts = urllib.parse.urlsplit(url)
    params = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    signature = bytes.fromhex(params.pop("X-Goog-Signature"))
    sent = {name.lower(): " ".join(value.split()) for name, value in {**headers, "host": parts.netloc}.items()}
    assert params["X-Goog-SignedHeaders"] == ";".join(sorted(sent))
    assert params["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256" and params["X-Goog-Expires"] == "1800"
    signed_at = datetime.datetime.strptime(params["X-Goog-Date"], "%Y%m%dT%H%M%SZ")
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    assert abs(now - signed_at) < datetime.timedelta(minutes=1)
    email, _, scope = params["X-Goog-Credential"].partition("/")
    assert email == account and scope == f"{params['X-Goog-Date'][:8]}/auto/storage/goog4_request"
    query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(params.items()))
    canonical = "\n".join([method, parts.path, query, "".join(f"{k}:{sent[k]}\n" for k in sorted(sent)),
                           params["X-Goog-SignedHeaders"], "UNSIGNED-PAYLOAD"])
    to_sign = "\n".join(["GOOG4-RSA-SHA256", params["X-Goog-Date"], scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    public_key.verify(signature, to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())  # Raises if it is not.


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="-_.~")


def _urls(api, upload: Sequence[Digest] = (), download: Sequence[Digest] = ()) -> dict[str, Any]:
    return api.ok("cas_urls", {"upload": [d.to_wire() for d in upload], "download": [d.to_wire() for d in download]})


def _digests(count: int, salt: str = "") -> list[Digest]:
    return [Digest.of_bytes(f"{salt}{i}".encode()) for i in range(count)]


def test_signblob_signs_create_only_uploads_and_downloads_that_work(api, iam, runtime, clock):
    digest = Digest.of_bytes(b"signed by IAM")
    answer = _urls(api, [digest], [digest])
    [upload], [download] = answer["upload"], answer["download"]
    assert upload["headers"]["x-goog-if-generation-match"] == "0"
    custom_time = datetime.datetime.fromisoformat(upload["headers"]["x-goog-custom-time"].replace("Z", "+00:00"))
    assert abs(custom_time - clock()) < datetime.timedelta(seconds=5)
    verify_v4(upload["url"], "PUT", upload["headers"], iam.key.public_key(), SIGNER)
    verify_v4(download["url"], "GET", {}, iam.key.public_key(), SIGNER)
    assert (iam.calls, iam.unauthorized, runtime.refreshes) == (2, 0, 1)
    assert requests.put(upload["url"], data=b"signed by IAM", headers=upload["headers"], timeout=10).ok
    assert requests.get(download["url"], timeout=10).content == b"signed by IAM"


def test_the_key_file_signs_the_same_urls(api, svc):
    key = json.loads(Path(svc.settings.signing_key_file).read_text())
    public_key = serialization.load_pem_private_key(key["private_key"].encode(), None).public_key()
    digest = Digest.of_bytes(b"signed by the key file")
    answer = _urls(api, [digest], [digest])
    assert "x-goog-custom-time" in answer["upload"][0]["headers"]
    verify_v4(answer["upload"][0]["url"], "PUT", answer["upload"][0]["headers"], public_key, key["client_email"])
    verify_v4(answer["download"][0]["url"], "GET", {}, public_key, key["client_email"])


def test_a_full_call_signs_in_parallel_on_pooled_connections_and_its_repeat_signs_nothing(api, iam, runtime):
    upload, download = _digests(MAX_BATCH, "up"), _digests(MAX_BATCH, "down")
    first = _urls(api, upload, download)
    assert iam.calls == 2 * MAX_BATCH  # signBlob signs one blob per call: there is no batch form.
    assert 1 < iam.peak <= cas.LOOKUP_WORKERS and iam.connections <= cas.LOOKUP_WORKERS
    assert (iam.unauthorized, runtime.refreshes) == (0, 1)
    for entry in first["upload"][:3]:
        verify_v4(entry["url"], "PUT", entry["headers"], iam.key.public_key(), SIGNER)
    again = _urls(api, upload, download)
    assert iam.calls == 2 * MAX_BATCH and again == first


def test_a_url_is_reused_while_more_than_half_its_life_is_left(api, iam, runtime, clock):
    digest, other = _digests(2)
    first = _urls(api, download=[digest, digest, digest])
    assert iam.calls == 1 and len({entry["url"] for entry in first["download"]}) == 1
    clock.offset = datetime.timedelta(minutes=14)
    later = _urls(api, download=[digest, other])
    assert iam.calls == 2 and later["download"][0] == first["download"][0]
    assert later["expires_ts"] == first["expires_ts"]  # The reused URL's, the first to expire.
    clock.offset = datetime.timedelta(minutes=16)
    renewed = _urls(api, download=[digest])
    assert iam.calls == 3 and renewed["expires_ts"] > first["expires_ts"]
    verify_v4(renewed["download"][0]["url"], "GET", {}, iam.key.public_key(), SIGNER)


def test_signblob_is_retried_on_429_and_5xx(api, iam, runtime):
    iam.failures = [429, 503]
    answer = _urls(api, download=_digests(1))
    assert iam.calls == 3
    verify_v4(answer["download"][0]["url"], "GET", {}, iam.key.public_key(), SIGNER)


def test_a_signblob_refusal_answers_503_naming_it_and_stops_signing(api, iam, runtime):
    iam.refusal, iam.latency = 403, 0.02
    answer = api.post("cas_urls", {"download": [d.to_wire() for d in _digests(MAX_BATCH)]})
    assert answer.status_code == 503, answer.text
    error = answer.json()["error"]
    assert error["code"] == "unavailable" and "signBlob" in error["message"] and "403" in error["message"]
    assert ACCESS_TOKEN not in answer.text and "Traceback" not in answer.text
    time.sleep(0.5)  # Those already started end.
    assert iam.calls <= 4 * cas.LOOKUP_WORKERS  # Not all 1,000.


def test_the_cache_drops_its_oldest_url_past_its_size():
    now = datetime.datetime.now(datetime.timezone.utc)
    cache = cas.UrlCache(datetime.timedelta(minutes=30), size=2)
    first, second, third = _digests(3)
    for digest in (first, second, third):
        cache.put("GET", digest, cas.SignedUrl(digest.hash, {}, now + datetime.timedelta(minutes=30)))
    assert cache.get("GET", first, now) is None and cache.get("PUT", second, now) is None
    assert [cache.get("GET", d, now).url for d in (second, third)] == [second.hash, third.hash]
