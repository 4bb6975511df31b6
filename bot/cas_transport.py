"""Moving blobs over the signed URLs `cas_urls` hands out (a
`shared.cas_transfer.Transport`), straight to and from Cloud Storage. The bot
and the CLI (`client/transfers.py`) both use it: the bot zip carries only bot/
and shared/, and shared/ stays standard library only.

A session of its own, never the API's: the URLs carry their own signature, and
the caller's credential (the user's or the bot's token, the hooks' headers)
must not reach the bucket, nor, through ~/.netrc, anyone else's. urllib3
retries connection errors and 408, 429 and 5xx answers (Cloud Storage's
advice) with the bot's backoff; a PUT's file body is sent again from its start
on each attempt. A body cut short midway is not retried here: the download
fails, and the transfer with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO, Mapping

import requests
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

from bot.remote import TIMEOUT, RemoteError, default_retry
from shared import cas_transfer
from shared.cas import Verifier

CHUNK = 1024 * 1024
#: Files up to this size are sent from memory: requests streams an empty file
#: object with chunked encoding, which signed PUTs do not take.
IN_MEMORY_BYTES = 1024 * 1024
#: "Already exists": the upload URLs are create-only, and a blob is its digest.
PRECONDITION_FAILED = 412
#: Cloud Storage's advice: retry 408, 429 and 5xx, with exponential backoff.
RETRY_STATUSES = (408, 429, 500, 502, 503, 504)


class StorageError(RemoteError):
    """Cloud Storage refused a transfer, or did not answer, after the retries.
    Names the object, never the signed query string, which is a credential
    while it lasts."""


def transfer_retry() -> Retry:
    """The bot API's retry (`remote.default_retry`), on Cloud Storage's statuses."""
    return default_retry().new(status_forcelist=RETRY_STATUSES)


class SignedUrlTransport:
    """`cas_transfer.Transport` over requests; safe to share between the transfer's threads."""

    def __init__(self, retry: Retry | None = None, timeout: tuple[float, float] = TIMEOUT):
        self._timeout = timeout
        self._session = requests.Session()
        self._session.auth = _no_auth  # Set, so requests looks for no ~/.netrc credential.
        # The bytes as stored, which is what the digest is of.
        self._session.headers["Accept-Encoding"] = "identity"
        adapter = HTTPAdapter(max_retries=retry or transfer_retry(), pool_maxsize=cas_transfer.WORKERS)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> SignedUrlTransport:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def put(self, url: str, headers: Mapping[str, str], source: cas_transfer.Source) -> None:
        """Uploads once; urllib3 notes a file's position and seeks back to it before each retry."""
        try:
            if isinstance(source, Path) and source.stat().st_size > IN_MEMORY_BYTES:
                with open(source, "rb") as body:
                    response = self._session.put(url, data=body, headers=dict(headers), timeout=self._timeout)
            else:
                data = source.read_bytes() if isinstance(source, Path) else source
                response = self._session.put(url, data=data, headers=dict(headers), timeout=self._timeout)
        except requests.RequestException as e:
            raise _unreachable("PUT", url, e) from e
        with response:
            # 412: the create-only upload found the blob there, put by someone
            # else or by an attempt of ours whose answer was lost.
            if not response.ok and response.status_code != PRECONDITION_FAILED:
                raise _failed("PUT", url, response)

    def get(self, url: str, sink: BinaryIO, verifier: Verifier) -> bool:
        """Streams the blob into `sink` and `verifier`; False if there is none."""
        try:
            with self._session.get(url, stream=True, timeout=self._timeout) as response:
                if response.status_code == 404:
                    return False
                if not response.ok:
                    raise _failed("GET", url, response)
                for chunk in response.iter_content(CHUNK):
                    sink.write(chunk)
                    verifier.update(chunk)
        except requests.RequestException as e:
            raise _unreachable("GET", url, e) from e
        return True


def _no_auth(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request


def _redact(text: str, url: str) -> str:
    """`text` on one line, without the URL's signature (its query), which
    grants access while it lasts."""
    _, _, query = url.partition("?")
    return " ".join((text.replace(query, "<signature>") if query else text).split())


def _where(url: str) -> str:
    return url.partition("?")[0]


def _unreachable(method: str, url: str, error: Exception) -> StorageError:
    return StorageError(f"{method} {_where(url)}", None, "unreachable", _redact(str(error), url))


def _failed(method: str, url: str, response: requests.Response) -> StorageError:
    return StorageError(f"{method} {_where(url)}", response.status_code, "http_error",
                        _redact(response.text, url)[:200])
