"""Moving blobs over the signed URLs `cas_urls` hands out (a
`shared.cas_transfer.Transport`), straight to and from Cloud Storage.

A session of its own, never the bot's: the URLs carry their own signature, and
the bot's credential (its token, the hooks' headers) must not reach the bucket,
nor, through ~/.netrc, anyone else's. urllib3 retries connection errors and
5xx answers with the bot's backoff; a PUT's file body is rewound for each
attempt. A body cut short midway is not retried here: the download fails and
the task with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Mapping

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


class SignedUrlTransport:
    """`cas_transfer.Transport` over requests; safe to share between the transfer's threads."""

    def __init__(self, retry: Retry | None = None, timeout: tuple[float, float] = TIMEOUT):
        self._timeout = timeout
        self._session = requests.Session()
        self._session.auth = _no_auth  # Set, so requests looks for no ~/.netrc credential.
        adapter = HTTPAdapter(max_retries=retry or default_retry(), pool_maxsize=cas_transfer.WORKERS)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def close(self) -> None:
        self._session.close()

    def put(self, url: str, headers: Mapping[str, str], source: cas_transfer.Source) -> None:
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
            if not response.ok and response.status_code != PRECONDITION_FAILED:
                raise _failed("PUT", url, response)

    def get(self, url: str, sink: BinaryIO, verifier: Verifier) -> bool:
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
    """`text` without the URL's signature (its query), which grants access while it lasts."""
    _, _, query = url.partition("?")
    return text.replace(query, "<signature>") if query else text


def _where(url: str) -> str:
    return url.partition("?")[0]


def _unreachable(method: str, url: str, error: Exception) -> RemoteError:
    return RemoteError(f"{method} {_where(url)}", None, "unreachable", _redact(str(error), url))


def _failed(method: str, url: str, response: requests.Response) -> RemoteError:
    return RemoteError(f"{method} {_where(url)}", response.status_code, "http_error",
                       _redact(response.text[:200], url))
