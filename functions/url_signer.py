"""Signing as the runtime's own service account, which holds no private key
(Cloud Functions): the IAM Credentials API's signBlob signs the bytes.

`IamSigner` is a google-auth `Signing` credential, so google-cloud-storage
builds each V4 URL's string to sign as with a key file and hands us only the
bytes. signBlob signs one blob per call and has no batch form: a URL costs a
call, which the caller bounds (`functions.cas` signs several at a time and
reuses URLs). Here, one pooled session carries the runtime's access token
(fetched once, renewed before it expires) and retries 429 and 5xx answers.
"""

import base64
import threading
from typing import Any

import google.auth
import google.auth.credentials
import requests
from google.auth import crypt, exceptions
from google.auth.transport.requests import AuthorizedSession, Request
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

from shared.api_error import RETRY_STATUSES

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
#: Waits of 0, 1, 2 and 4 s: a signature gives up after about 7 s.
RETRY = Retry(total=4, backoff_factor=0.5, status_forcelist=RETRY_STATUSES, allowed_methods=None,
              respect_retry_after_header=False, raise_on_status=False)
TIMEOUT = (5.0, 20.0)  # connect, read
#: How much of an error's answer its message quotes.
QUOTED = 300


class SigningError(Exception):
    """signBlob refused to sign, or could not be reached, after the retries."""


class IamSigner(crypt.Signer, google.auth.credentials.Signing):
    """Signs as the account of `credentials` (the runtime's by default,
    looked up on first use) at `{iam_url}/v1/projects/-/serviceAccounts/{email}:signBlob`;
    up to `connections` calls at once reuse their connections."""

    def __init__(self, iam_url: str, credentials: google.auth.credentials.Credentials | None = None,
                 connections: int = 10):
        self._iam_url = iam_url.rstrip("/")
        self._credentials = credentials
        self._connections = connections
        self._lock = threading.Lock()
        self._session: AuthorizedSession | None = None
        self._email = ""

    @property
    def signer_email(self) -> str:
        return self._ready()[1]

    @property
    def signer(self) -> crypt.Signer:
        return self

    @property
    def key_id(self) -> str | None:
        """IAM picks the key; no signature here needs its id."""
        return None

    def sign_bytes(self, message: bytes) -> bytes:
        return self.sign(message)

    def sign(self, message: str | bytes) -> bytes:
        session, email = self._ready()
        url = f"{self._iam_url}/v1/projects/-/serviceAccounts/{email}:signBlob"
        payload = message.encode() if isinstance(message, str) else message
        try:
            answer = session.post(url, json={"payload": base64.b64encode(payload).decode()}, timeout=TIMEOUT)
        except (requests.RequestException, exceptions.GoogleAuthError) as e:
            raise SigningError(f"IAM signBlob as {email} did not answer: {e}") from e
        if answer.status_code != 200:
            raise SigningError(f"IAM signBlob as {email} answered {answer.status_code}: {answer.text[:QUOTED]}")
        try:
            return base64.b64decode(answer.json()["signedBlob"], validate=True)
        except (ValueError, KeyError, TypeError) as e:
            raise SigningError(f"IAM signBlob as {email} answered no signature: {answer.text[:QUOTED]}") from e

    def _ready(self) -> tuple[AuthorizedSession, str]:
        """The session and the account's email, learnt once: the runtime's
        credentials name their account only once refreshed."""
        with self._lock:
            if self._session is None:
                try:
                    credentials = self._credentials or google.auth.default(scopes=SCOPES)[0]
                    if not credentials.valid:
                        credentials.refresh(Request())
                except exceptions.GoogleAuthError as e:
                    raise SigningError(f"no credentials to call IAM signBlob with: {e}") from e
                self._email = _email_of(credentials)
                self._session = _session(credentials, self._connections)
            return self._session, self._email


def _email_of(credentials: Any) -> str:
    email = getattr(credentials, "service_account_email", None)
    if not email:
        raise SigningError("the runtime's credentials are not a service account's: "
                           "set SWARMING_SIGNING_KEY_FILE to sign the CAS URLs")
    return email


def _session(credentials: google.auth.credentials.Credentials, connections: int) -> AuthorizedSession:
    session = AuthorizedSession(credentials)
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=connections, max_retries=RETRY)
    for scheme in ("https://", "http://"):  # http: a local stand-in
        session.mount(scheme, adapter)
    return session
