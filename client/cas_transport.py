"""The client's HTTP to Cloud Storage over signed URLs (`shared.cas_transfer.Transport`).

The URL itself carries the authorization, so this session is not the API's:
the user's bearer token must never reach the bucket.
"""

import contextlib
from typing import BinaryIO, Iterator, Mapping
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from shared.cas import Verifier
from shared.cas_transfer import WORKERS, Source
from shared.errors import SwarmingError

#: Bytes read from a download at a time.
CHUNK_BYTES = 1024 * 1024
#: Cloud Storage's advice: retry 408, 429 and 5xx, with exponential backoff.
RETRY_STATUSES = (408, 429, 500, 502, 503, 504)


class StorageError(SwarmingError):
    """Cloud Storage refused a transfer. Names the object, not the signed
    query string, which is a credential while it lasts."""

    def __init__(self, method: str, url: str, status: int):
        super().__init__(f"{method} {urlsplit(url).path}: HTTP {status}")
        self.status = status


class HttpTransport:
    def __init__(self, timeout: float = 60.0, backoff_factor: float = 0.5):
        retry = Retry(total=6, backoff_factor=backoff_factor, backoff_max=10, backoff_jitter=0.5,
                      status_forcelist=RETRY_STATUSES, allowed_methods=None, raise_on_status=False)
        adapter = HTTPAdapter(pool_maxsize=WORKERS, max_retries=retry)
        self._session = requests.Session()
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        # The bytes as stored, which is what the digest is of.
        self._session.headers["Accept-Encoding"] = "identity"
        self._timeout = timeout

    def put(self, url: str, headers: Mapping[str, str], source: Source) -> None:
        """Uploads once; a retry (urllib3's) sends the file again from its start."""
        with _body(source) as body:
            response = self._session.put(url, data=body, headers=dict(headers), timeout=self._timeout)
        # 412: the create-only upload found the blob there, put by someone
        # else or by an attempt of ours whose answer was lost.
        if response.status_code != 412:
            _check("PUT", url, response)

    def get(self, url: str, sink: BinaryIO, verifier: Verifier) -> bool:
        with self._session.get(url, stream=True, timeout=self._timeout) as response:
            if response.status_code == 404:
                return False
            _check("GET", url, response)
            for chunk in response.iter_content(CHUNK_BYTES):
                verifier.update(chunk)
                sink.write(chunk)
        return True


@contextlib.contextmanager
def _body(source: Source) -> Iterator[bytes | BinaryIO]:
    """The bytes, or the file open for reading. urllib3 notes the file's
    position and seeks back to it before each retry. An empty file goes as
    b"", which requests sends with Content-Length: 0 (an empty stream it
    would send chunked)."""
    if isinstance(source, bytes):
        yield source
    elif source.stat().st_size == 0:
        yield b""
    else:
        with open(source, "rb") as file:
            yield file


def _check(method: str, url: str, response: requests.Response) -> None:
    if not response.ok:
        raise StorageError(method, url, response.status_code)
