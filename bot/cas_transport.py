"""Moving blobs over the signed URLs `cas_urls` hands out (a
`shared.cas_transfer.Transport`), straight to and from Cloud Storage. The bot
and the CLI (`client/transfers.py`) both use it: the bot zip carries only bot/
and shared/, and shared/ stays standard library only.

A session of its own, never the API's: the URLs carry their own signature, and
the caller's credential (the user's or the bot's token, the hooks' headers)
must not reach the bucket, nor, through ~/.netrc, anyone else's. urllib3
retries connection errors and 408, 429 and 5xx answers (Cloud Storage's
advice) with the API client's retry policy (bot/api_client.py); a PUT's file
body is sent again from its start on each attempt. A download cut short
midway goes on from the bytes it has (an HTTP Range request), a few times,
before it fails.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, BinaryIO, Mapping

import requests
from urllib3.util import Retry

from bot.api_client import TIMEOUT, LazySession, mounted_session, retry_policy
from shared import api_error, cas_transfer
from shared.api_error import QUOTED_CHARS, ApiError
from shared.cas import Verifier

logger = logging.getLogger(__name__)

CHUNK = 64 * 1024  # A download cut short loses at most a chunk.
#: How many times a download cut short midway goes on from where it stopped.
RESUMES = 3
#: Files up to this size are sent from memory: requests streams an empty file
#: object with chunked encoding, which signed PUTs do not take.
IN_MEMORY_BYTES = 1024 * 1024
#: "Already exists": the upload URLs are create-only, and a blob is its digest.
PRECONDITION_FAILED = 412
PARTIAL_CONTENT = 206
#: Cloud Storage's advice: retry 408, 429 and 5xx, with exponential backoff.
RETRY_STATUSES = (408, *api_error.RETRY_STATUSES)


class StorageError(ApiError):
    """Cloud Storage refused a transfer, or did not answer, after the retries.
    Names the object, never the signed query string, which is a credential
    while it lasts."""


def transfer_retry() -> Retry:
    """The API client's retry policy, on Cloud Storage's statuses."""
    return retry_policy(RETRY_STATUSES)


class SignedUrlTransport:
    """`cas_transfer.Transport` over requests; safe to share between the transfer's threads."""

    def __init__(self, retry: Retry | None = None, timeout: tuple[float, float] = TIMEOUT):
        self._timeout = timeout
        self._retry = retry or transfer_retry()
        self._session = LazySession(self._new_session)  # A task without files makes none.

    def _new_session(self) -> requests.Session:
        session = mounted_session(self._retry, pool_maxsize=cas_transfer.WORKERS)
        session.auth = _no_auth  # Set, so requests looks for no ~/.netrc credential.
        # The bytes as stored, which is what the digest is of.
        session.headers["Accept-Encoding"] = "identity"
        return session

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
                    response = self._session.get().put(url, data=body, headers=dict(headers), timeout=self._timeout)
            else:
                data = source.read_bytes() if isinstance(source, Path) else source
                response = self._session.get().put(url, data=data, headers=dict(headers), timeout=self._timeout)
        except requests.RequestException as e:
            raise _unreachable("PUT", url, e) from e
        with response:
            # 412: the create-only upload found the blob there, put by someone
            # else or by an attempt of ours whose answer was lost.
            if not response.ok and response.status_code != PRECONDITION_FAILED:
                raise _failed("PUT", url, response)

    def get(self, url: str, sink: BinaryIO, verifier: Verifier) -> bool:
        """Streams the blob into `sink` and `verifier`; False if there is none."""
        received, resumes = 0, 0
        while True:
            try:
                return self._get_from(url, received, sink, verifier)
            except _CutShort as cut:
                if resumes == RESUMES:
                    raise _unreachable("GET", url, cut.error) from cut.error
                resumes, received = resumes + 1, cut.received
                logger.warning("GET %s cut short after %d bytes (%s): going on from there", _where(url),
                               received, _redact(str(cut.error), url))

    def _get_from(self, url: str, received: int, sink: BinaryIO, verifier: Verifier) -> bool:
        """One request for the bytes from `received` on (all of them from 0)."""
        headers = {"Range": f"bytes={received}-"} if received else {}
        try:
            response = self._session.get().get(url, stream=True, timeout=self._timeout, headers=headers)
        except requests.RequestException as e:
            raise _unreachable("GET", url, e) from e
        with response:
            if response.status_code == 404:
                return False
            if not response.ok:
                raise _failed("GET", url, response)
            # A server that ignores the range sends it all again: skip what we have.
            skip = received if response.status_code != PARTIAL_CONTENT else 0
            try:
                for chunk in response.iter_content(CHUNK):
                    chunk, skip = chunk[skip:], max(0, skip - len(chunk))
                    sink.write(chunk)
                    verifier.update(chunk)
                    received += len(chunk)
            except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError) as e:
                raise _CutShort(received, e) from e
        return True


class _CutShort(Exception):
    def __init__(self, received: int, error: Exception):
        super().__init__(str(error))
        self.received = received
        self.error = error


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
                        _redact(response.text, url)[:QUOTED_CHARS])
