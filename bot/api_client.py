"""The HTTP client of the server's functions, for the bot (bot/remote.py), the
CLI (client/api.py) and the benches alike: one session with the bearer token,
JSON in and out, and every failure an `ApiError` (shared/api_error.py).

The retry policy is this module's too (`retry_policy`), and the signed-URL
transport (bot/cas_transport.py) takes it on Cloud Storage's statuses: jittered
backoff, capped, so that a fleet does not retry in step. A call the server
may safely receive twice (every bot call, every read) is retried on any
transient failure; one that is not idempotent (creating a task) only when
the connection failed before anything was sent, since a retried create would
make a second task.

A bot's credential is renewed by the server's answers: the one that carries
`X-Swarming-Bot-Token` (shared/bot_api.py) replaces the bearer token for every
later call. The CLI's answers never carry it.

It lives in bot/ because the bot zip carries only bot/ and shared/, and
shared/ is standard library only; the CLI may import bot/, never the reverse.
"""

from __future__ import annotations

import dataclasses
import os
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import requests
from requests.adapters import DEFAULT_POOLSIZE, HTTPAdapter
from urllib3.util import Retry

from shared.api_error import QUOTED_CHARS, RETRY_STATUSES, ApiError
from shared.bot_api import BOT_TOKEN_HEADER

#: (connect, read) seconds. No call streams but `download`'s, so a read this
#: long means a stuck server.
TIMEOUT = (10.0, 60.0)
#: Attempts after the first: backing off 0, 1, 2, 4... s (capped at 30 s, plus
#: up to 1 s of jitter), or longer when the server says when to come back
#: (`Retry-After`, capped too): one and a half to three minutes before a call fails.
RETRIES = 8
BACKOFF_FACTOR, BACKOFF_MAX_SECS, BACKOFF_JITTER_SECS = 0.5, 30.0, 1.0
_DOWNLOAD_CHUNK = 1 << 16


class _Retry(Retry):
    """urllib3's, but a `Retry-After` (a 503's, a 429's) is a floor under the
    jittered backoff rather than the exact wait, so that a fleet told "5 s"
    at once does not come back at once, and it is capped like the backoff
    (`retry_after_max`)."""

    def sleep_for_retry(self, response: Any) -> bool:
        retry_after = self.get_retry_after(response)
        if retry_after is None:
            return False
        time.sleep(max(retry_after + random.uniform(0, self.backoff_jitter), self.get_backoff_time()))
        return True


def retry_policy(statuses: Sequence[int] = RETRY_STATUSES, idempotent: bool = True) -> Retry:
    """Retries on lost connections and on `statuses`, whatever the method;
    not `idempotent`: only on connections that failed before the request
    was sent. A status still failing after the retries is returned, for the
    caller to read its error."""
    retry = _Retry(total=RETRIES, allowed_methods=None, status_forcelist=statuses,
                   backoff_factor=BACKOFF_FACTOR, backoff_max=BACKOFF_MAX_SECS, backoff_jitter=BACKOFF_JITTER_SECS,
                   retry_after_max=int(BACKOFF_MAX_SECS), raise_on_status=False)
    return retry if idempotent else retry.new(read=0, status=0, other=0)


def mounted_session(retry: Retry, pool_maxsize: int = DEFAULT_POOLSIZE) -> requests.Session:
    """A session that retries every http:// and https:// call with `retry`."""
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry, pool_maxsize=pool_maxsize)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class LazySession:
    """A session made at its first use: a task runner holds a client for each
    kind of call and, running a task without files, uses one (a session
    costs a forked runner about a millisecond, its cookie jar above all).
    Safe to share between threads."""

    def __init__(self, make: Callable[[], requests.Session]):
        self._make = make
        self._lock = threading.Lock()
        self._session: requests.Session | None = None

    def get(self) -> requests.Session:
        with self._lock:
            if self._session is None:
                self._session = self._make()
            return self._session

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()


@dataclasses.dataclass(frozen=True)
class Answer:
    """A function's JSON answer, with its HTTP headers (the benches read the
    operations it cost from them: X-Firestore-Reads, ...)."""

    body: dict[str, Any]
    headers: Mapping[str, str]


class ApiClient:
    """Calls the functions at `server` (its base URL) as the holder of `token`
    (None: no Authorization); `retry` in place of `retry_policy()` for the
    idempotent calls."""

    def __init__(self, server: str, token: str | None, *, retry: Retry | None = None):
        self.server = server.rstrip("/")
        #: Sent as `Authorization: Bearer <token>` with every call; replaced by
        #: an answer's X-Swarming-Bot-Token.
        self.token = token
        self._sessions = {True: LazySession(lambda: mounted_session(retry or retry_policy())),  # By idempotent.
                          False: LazySession(lambda: mounted_session(retry_policy(idempotent=False)))}
        self._extra: dict[str, str] = {}  # set_headers': sent with every call too.

    def close(self) -> None:
        for session in self._sessions.values():
            session.close()

    def set_headers(self, headers: Mapping[str, str]) -> None:
        """Headers for every later call besides the token's, in place of those
        set before; the token's Authorization wins over one among them."""
        self._extra = dict(headers)

    def _headers(self) -> dict[str, str]:
        if self.token is None:
            return dict(self._extra)
        return {**self._extra, "Authorization": f"Bearer {self.token}"}

    def _renew(self, response: requests.Response) -> None:
        renewed = response.headers.get(BOT_TOKEN_HEADER)
        if renewed:
            self.token = renewed

    def call(self, function: str, body: dict[str, Any], *, idempotent: bool = True) -> dict[str, Any]:
        """POSTs `body` to `function`; its JSON answer. Raises ApiError."""
        return self.answer(function, body, idempotent=idempotent).body

    def answer(self, function: str, body: dict[str, Any], *, idempotent: bool = True,
               held_secs: float = 0.0) -> Answer:
        """`call`, with the answer's headers. `held_secs`: how long the server
        may hold the call before it answers (a long poll), added to the read
        timeout."""
        timeout = (TIMEOUT[0], TIMEOUT[1] + held_secs)
        try:
            response = self._sessions[idempotent].get().post(f"{self.server}/{function}", json=body,
                                                             headers=self._headers(), timeout=timeout)
        except requests.RequestException as e:
            raise ApiError(function, None, "unreachable", str(e)) from e
        self._renew(response)
        answer = _json_or_none(response)
        if not response.ok:
            raise ApiError.from_answer(function, response.status_code, answer, response.text)
        if not isinstance(answer, dict):
            raise ApiError(function, response.status_code, "bad_reply", response.text[:QUOTED_CHARS])
        return Answer(answer, response.headers)

    def download(self, function: str, params: Mapping[str, str], dest: Path) -> None:
        """GETs `function` into the file `dest`, replaced whole or not at all:
        a partial download never takes the name. Raises ApiError."""
        try:
            response = self._sessions[True].get().get(f"{self.server}/{function}", params=params,
                                                      headers=self._headers(), timeout=TIMEOUT, stream=True)
        except requests.RequestException as e:
            raise ApiError(function, None, "unreachable", str(e)) from e
        self._renew(response)
        with response:
            if not response.ok:
                raise ApiError.from_answer(function, response.status_code, _json_or_none(response), response.text)
            fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".tmp", dir=dest.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    for chunk in response.iter_content(_DOWNLOAD_CHUNK):
                        out.write(chunk)
                os.replace(tmp, dest)
            except requests.RequestException as e:
                raise ApiError(function, response.status_code, "truncated", str(e)) from e
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
