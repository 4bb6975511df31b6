"""The content-addressed store on the server's side (DESIGN.md section 9):
which blobs the bucket lacks, and short-lived signed URLs to move the bytes.

A blob lives at `Digest.object_name`. Bytes never pass through a function:
uploaders PUT and readers GET over V4 signed URLs. Writers are trusted (an
upload URL is create-only in production, so a blob once stored never
changes); every reader checks each blob against its digest
(`shared.cas_transfer`), so a wrong blob is caught wherever it comes from.

Without a key file, each URL is one IAM signBlob call (`functions.url_signer`):
URLs are signed LOOKUP_WORKERS at a time, and an instance reuses a URL while
more than half its life is left. A blob's customTime says when it was last
used, for the bucket's lifecycle rule: its upload sets it (a signed header),
and `find_missing` moves it to the present once it is a day old.
"""

import concurrent.futures
import dataclasses
import datetime
import logging
import threading
from typing import Any, Callable, Sequence

import google.auth.credentials
import requests
from google.api_core import exceptions
from google.cloud import storage
from google.oauth2 import service_account

from functions.errors import Unavailable
from functions.models import iso
from functions.settings import SettingsError
from functions.url_signer import IamSigner, SigningError
from shared.cas import Digest

logger = logging.getLogger(__name__)

#: Parallel metadata lookups and signatures per function instance (one call may carry 2,000 digests).
LOOKUP_WORKERS = 32
#: Signed URLs an instance keeps for reuse (under 1 KB each).
CACHED_URLS = 10_000
#: A stored blob's customTime at least this old is moved to the present: a write a day per blob at most.
CUSTOM_TIME_REFRESH = datetime.timedelta(days=1)
CONTENT_TYPE = "application/octet-stream"


def signer(key_file: str, iam_url: str) -> google.auth.credentials.Signing:
    """Signs with a service-account key file's private key (the local stack),
    or, without one, as the runtime's own service account through IAM signBlob
    (Cloud Functions, whose default credentials hold no private key; the
    account needs roles/iam.serviceAccountTokenCreator on itself)."""
    return _key_file_credentials(key_file) if key_file else IamSigner(iam_url, connections=LOOKUP_WORKERS)


def _key_file_credentials(path: str) -> service_account.Credentials:
    try:
        return service_account.Credentials.from_service_account_file(path)
    except (OSError, ValueError) as e:
        raise SettingsError(f"SWARMING_SIGNING_KEY_FILE: {path} is not a service-account key file ({e})") from e


def upload_headers(now: datetime.datetime) -> dict[str, str]:
    """Signed into an upload URL, so the uploader must send them as they are:
    create-only, and the blob's customTime set to `now`."""
    custom_time = now.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"content-type": CONTENT_TYPE, "x-goog-if-generation-match": "0", "x-goog-custom-time": custom_time}


@dataclasses.dataclass(frozen=True)
class SignedUrl:
    url: str
    headers: dict[str, str]  # To send with it: none for a download.
    expires: datetime.datetime


@dataclasses.dataclass(frozen=True)
class SignedUrls:
    """Upload URLs (with the headers to send) and download URLs, in the order
    asked; `expires_ts`: when the first of them expires."""

    upload: list[tuple[Digest, SignedUrl]]
    download: list[tuple[Digest, SignedUrl]]
    expires_ts: datetime.datetime

    def to_wire(self) -> dict[str, Any]:
        return {
            "upload": [{**d.to_wire(), "url": s.url, "headers": dict(s.headers)} for d, s in self.upload],
            "download": [{**d.to_wire(), "url": s.url} for d, s in self.download],
            "expires_ts": iso(self.expires_ts),
        }


class UrlCache:
    """Signed URLs by method and digest, each reused while more than half its
    life is left; past `size`, the oldest goes first."""

    def __init__(self, ttl: datetime.timedelta, size: int = CACHED_URLS):
        self._fresh_for = ttl / 2
        self._size = size
        self._urls: dict[tuple[str, Digest], SignedUrl] = {}
        self._lock = threading.Lock()

    def get(self, method: str, digest: Digest, now: datetime.datetime) -> SignedUrl | None:
        with self._lock:
            signed = self._urls.get((method, digest))
        return signed if signed and signed.expires - now > self._fresh_for else None

    def put(self, method: str, digest: Digest, signed: SignedUrl) -> None:
        with self._lock:
            self._urls.pop((method, digest), None)
            if len(self._urls) >= self._size:
                del self._urls[next(iter(self._urls))]
            self._urls[method, digest] = signed


class CasStore:
    """The blobs of one bucket, seen through their metadata and signed URLs."""

    def __init__(self, bucket: storage.Bucket, signing: google.auth.credentials.Signing, endpoint: str,
                 url_ttl_secs: int, clock: Callable[[], datetime.datetime]):
        self._bucket = bucket
        self._signing = signing
        #: The API endpoint URLs point at: Cloud Storage's, or the emulator's.
        self._endpoint = endpoint.rstrip("/")
        self._ttl = datetime.timedelta(seconds=url_ttl_secs)
        self._clock = clock
        self._cache = UrlCache(self._ttl)
        # Shared by all the calls an instance serves, so that their lookups together stay bounded.
        self._pool = concurrent.futures.ThreadPoolExecutor(LOOKUP_WORKERS, thread_name_prefix="cas")

    def find_missing(self, digests: Sequence[Digest]) -> list[Digest]:
        """The digests not stored, each once, in the order asked. A stored
        object of another size than its digest says counts as missing (an
        upload cut short would otherwise hide the blob forever). Those stored
        count as used: their customTime is kept within a day of the present."""
        wanted = list(dict.fromkeys(digests))
        now = self._clock()
        stored = self._pool.map(lambda digest: self._is_stored(digest, now), wanted)
        return [digest for digest, present in zip(wanted, stored) if not present]

    def _is_stored(self, digest: Digest, now: datetime.datetime) -> bool:
        blob = self._bucket.get_blob(digest.object_name)
        if blob is None or blob.size != digest.size_bytes:
            return False
        if blob.custom_time is None or now - blob.custom_time >= CUSTOM_TIME_REFRESH:
            _touch(blob, now)
        return True

    def urls(self, upload: Sequence[Digest], download: Sequence[Digest], now: datetime.datetime) -> SignedUrls:
        """Create-only PUT URLs for `upload`, GET URLs for `download`. A
        download URL of a blob not stored answers 404, which the reader
        reports. Unavailable when signBlob cannot sign."""
        put, get = self._signed("PUT", upload, now), self._signed("GET", download, now)
        expires = min((signed.expires for signed in (*put, *get)), default=now + self._ttl)
        return SignedUrls(list(zip(upload, put)), list(zip(download, get)), expires)

    def _signed(self, method: str, digests: Sequence[Digest], now: datetime.datetime) -> list[SignedUrl]:
        """A URL for each digest: reused from the cache, or signed now."""
        urls = {digest: self._cache.get(method, digest, now) for digest in digests}
        unsigned = [digest for digest, signed in urls.items() if signed is None]
        for digest, signed in zip(unsigned, self._sign_all(method, unsigned, now)):
            self._cache.put(method, digest, signed)
            urls[digest] = signed
        return [urls[digest] for digest in digests]

    def _sign_all(self, method: str, digests: Sequence[Digest], now: datetime.datetime) -> list[SignedUrl]:
        """LOOKUP_WORKERS at a time; the first failure drops those not started."""
        futures = [self._pool.submit(self._sign, method, digest, now) for digest in digests]
        try:
            return [future.result() for future in futures]
        except SigningError as e:
            for future in futures:
                future.cancel()
            logger.error("cannot sign the CAS URLs: %s", e)
            raise Unavailable(f"cannot sign the CAS URLs: {e}") from None

    def _sign(self, method: str, digest: Digest, now: datetime.datetime) -> SignedUrl:
        headers = upload_headers(now) if method == "PUT" else {}
        url = self._bucket.blob(digest.object_name).generate_signed_url(
            version="v4", expiration=self._ttl, method=method, api_access_endpoint=self._endpoint,
            headers=dict(headers), credentials=self._signing)  # A copy: the host is added to it.
        return SignedUrl(url, headers, now + self._ttl)


def _touch(blob: storage.Blob, now: datetime.datetime) -> None:
    """Moves the blob's customTime to `now`, unless another call just did
    (the precondition also lets the client retry). The answer stands either
    way: a blob not touched today is touched by the next call."""
    blob.custom_time = now
    try:
        blob.patch(if_metageneration_match=blob.metageneration)
    except exceptions.PreconditionFailed:
        pass
    except (exceptions.GoogleAPICallError, requests.RequestException) as e:
        logger.warning("cannot move the customTime of %s: %s", blob.name, e)
