"""The content-addressed store on the server's side (DESIGN.md section 9):
which blobs the bucket lacks, and short-lived signed URLs to move the bytes.

A blob lives at `Digest.object_name`. Bytes never pass through a function:
uploaders PUT and readers GET over V4 signed URLs. Writers are trusted (an
upload URL is create-only in production, so a blob once stored never
changes); every reader checks each blob against its digest
(`shared.cas_transfer`), so a wrong blob is caught wherever it comes from.
"""

import concurrent.futures
import dataclasses
import datetime
import threading
from typing import Any, Sequence

import google.auth
import google.auth.transport.requests
from google.cloud import storage
from google.oauth2 import service_account

from functions.settings import SettingsError
from functions.models import iso
from shared.cas import Digest

#: Parallel metadata lookups per function instance (one call may carry 1,000 digests).
LOOKUP_WORKERS = 32
#: Signed into every upload URL: the uploader must send these headers as they are.
UPLOAD_HEADERS = {"content-type": "application/octet-stream", "x-goog-if-generation-match": "0"}
_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


class Signer:
    """Signs V4 URLs with a service-account key file's private key (the local
    stack), or, without one, as the runtime's own service account through
    IAM signBlob (Cloud Functions, whose default credentials hold no private
    key; the account needs roles/iam.serviceAccountTokenCreator on itself)."""

    def __init__(self, key_file: str = ""):
        self._key = _key_file_credentials(key_file) if key_file else None
        self._runtime: Any = None
        self._lock = threading.Lock()

    def signing_args(self) -> dict[str, Any]:
        """What `Blob.generate_signed_url` needs to sign."""
        if self._key is not None:
            return {"credentials": self._key}
        credentials = self._fresh_runtime_credentials()
        return {"service_account_email": credentials.service_account_email, "access_token": credentials.token}

    def _fresh_runtime_credentials(self) -> Any:
        with self._lock:
            if self._runtime is None:
                self._runtime, _ = google.auth.default(scopes=_SCOPES)
            if not self._runtime.valid:  # Also learns the account's email on Compute Engine.
                self._runtime.refresh(google.auth.transport.requests.Request())
            return self._runtime


def _key_file_credentials(path: str) -> service_account.Credentials:
    try:
        return service_account.Credentials.from_service_account_file(path)
    except (OSError, ValueError) as e:
        raise SettingsError(f"SWARMING_SIGNING_KEY_FILE: {path} is not a service-account key file ({e})") from e


@dataclasses.dataclass(frozen=True)
class SignedUrls:
    """Upload URLs (with the headers to send) and download URLs, in the order asked."""

    upload: list[tuple[Digest, str]]
    download: list[tuple[Digest, str]]
    expires_ts: datetime.datetime

    def to_wire(self) -> dict[str, Any]:
        return {
            "upload": [{**d.to_wire(), "url": url, "headers": dict(UPLOAD_HEADERS)} for d, url in self.upload],
            "download": [{**d.to_wire(), "url": url} for d, url in self.download],
            "expires_ts": iso(self.expires_ts),
        }


class CasStore:
    """The blobs of one bucket, seen through their metadata and signed URLs."""

    def __init__(self, bucket: storage.Bucket, signer: Signer, endpoint: str, url_ttl_secs: int):
        self._bucket = bucket
        self._signer = signer
        #: The API endpoint URLs point at: Cloud Storage's, or the emulator's.
        self._endpoint = endpoint.rstrip("/")
        self._ttl = datetime.timedelta(seconds=url_ttl_secs)
        # Shared by all the calls an instance serves, so that their lookups together stay bounded.
        self._pool = concurrent.futures.ThreadPoolExecutor(LOOKUP_WORKERS, thread_name_prefix="cas")

    def find_missing(self, digests: Sequence[Digest]) -> list[Digest]:
        """The digests not stored, each once, in the order asked. A stored
        object of another size than its digest says counts as missing (an
        upload cut short would otherwise hide the blob forever)."""
        wanted = list(dict.fromkeys(digests))
        stored = self._pool.map(self._is_stored, wanted)
        return [digest for digest, present in zip(wanted, stored) if not present]

    def _is_stored(self, digest: Digest) -> bool:
        blob = self._bucket.get_blob(digest.object_name)
        return blob is not None and blob.size == digest.size_bytes

    def urls(self, upload: Sequence[Digest], download: Sequence[Digest], now: datetime.datetime) -> SignedUrls:
        """Create-only PUT URLs for `upload`, GET URLs for `download`. A
        download URL of a blob not stored answers 404, which the reader reports."""
        signing = self._signer.signing_args()
        put = self._pool.map(lambda d: self._sign(d, "PUT", signing), upload)
        get = self._pool.map(lambda d: self._sign(d, "GET", signing), download)
        return SignedUrls(list(zip(upload, put)), list(zip(download, get)), now + self._ttl)

    def _sign(self, digest: Digest, method: str, signing: dict[str, Any]) -> str:
        put = method == "PUT"
        return self._bucket.blob(digest.object_name).generate_signed_url(
            version="v4", expiration=self._ttl, method=method, api_access_endpoint=self._endpoint,
            content_type=UPLOAD_HEADERS["content-type"] if put else None,
            headers={"x-goog-if-generation-match": "0"} if put else None, **signing)
