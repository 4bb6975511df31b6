"""The one authentication function every endpoint goes through.

For now a caller is identified by a bearer token listed in the local config
file (`{"tokens": {"<token>": {"role": "bot|user|admin", "name": "..."}}}`);
real identities replace `Authenticator` without touching the endpoints.
Cloud Tasks (the timers) and Cloud Scheduler call with an OIDC ID token minted
for the server's own service account, for the URL they call: it makes the
`internal` role. A bootstrap token (`functions.bootstrap`, signed by the
server, short-lived) makes the `bootstrap` role, which only fetches the bot
code.
"""

import dataclasses
import enum
import hashlib
import threading
import time
from typing import Any, Callable, Mapping

import requests
from google.auth import exceptions, jwt

from functions.bootstrap import BootstrapTokens, is_bootstrap_token
from functions.errors import Forbidden, Unauthorized


class Role(str, enum.Enum):
    BOT = "bot"
    USER = "user"
    ADMIN = "admin"
    INTERNAL = "internal"
    BOOTSTRAP = "bootstrap"


BOTS = frozenset({Role.BOT})
USERS = frozenset({Role.USER, Role.ADMIN})
ADMINS = frozenset({Role.ADMIN})
#: Timers and crons; admins too, to run a repair by hand.
INTERNAL = frozenset({Role.INTERNAL, Role.ADMIN})
#: The start script: only with a bootstrap token, which it embeds.
BOOTSTRAP = frozenset({Role.BOOTSTRAP})
#: The bot code: bots, and new hosts holding a bootstrap token.
BOT_CODE = frozenset({Role.BOT, Role.BOOTSTRAP})
#: The content-addressed store: users write inputs and read outputs, bots
#: read inputs and write outputs (no per-task ACL yet: any task's blobs).
CAS = frozenset({Role.BOT, Role.USER, Role.ADMIN})
#: Google's issuers of ID tokens.
ISSUERS = ("https://accounts.google.com", "accounts.google.com")
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
CERTS_CACHE_SECS = 300


@dataclasses.dataclass(frozen=True)
class Caller:
    name: str
    role: Role


class IdTokens:
    """Verifies the OIDC ID tokens of one service account (RS256 against the
    issuer's certificates, fetched at most every `CERTS_CACHE_SECS`)."""

    def __init__(self, service_account: str, certs_url: str = GOOGLE_CERTS_URL,
                 clock: Callable[[], float] = time.monotonic):
        self._service_account = service_account
        self._certs_url = certs_url
        self._clock = clock
        self._certs: tuple[float, dict[str, str]] | None = None
        self._lock = threading.Lock()

    def caller(self, token: str, audience: str) -> Caller:
        try:
            claims = jwt.decode(token, certs=self._fetch_certs(), audience=audience)
        except (ValueError, exceptions.GoogleAuthError) as e:
            raise Unauthorized(f"bad ID token: {e}") from None
        if claims.get("iss") not in ISSUERS:
            raise Unauthorized("bad ID token: not issued by Google")
        if claims.get("email") != self._service_account or not claims.get("email_verified"):
            raise Forbidden(f"{claims.get('email')!r} may not call this function")
        return Caller(name=claims["email"], role=Role.INTERNAL)

    def _fetch_certs(self) -> dict[str, str]:
        with self._lock:
            if self._certs and self._clock() - self._certs[0] < CERTS_CACHE_SECS:
                return self._certs[1]
        response = requests.get(self._certs_url, timeout=10)
        response.raise_for_status()
        with self._lock:
            self._certs = (self._clock(), response.json())
            return self._certs[1]


class Authenticator:
    def __init__(self, config: Mapping[str, Any], id_tokens: IdTokens | None = None,
                 bootstrap: BootstrapTokens | None = None):
        # Keyed by digest, so a lookup does not compare secrets byte by byte.
        self._callers = {
            _digest(token): Caller(name=entry.get("name", entry["role"]), role=Role(entry["role"]))
            for token, entry in config.get("tokens", {}).items()
        }
        self._id_tokens = id_tokens
        self._bootstrap = bootstrap

    def authenticate(self, authorization: str | None, allowed: frozenset[Role], audience: str = "") -> Caller:
        """`audience` is the URL called, which an ID token must be minted for."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("missing 'Authorization: Bearer <token>' header")
        token = token.strip()
        caller = self._callers.get(_digest(token))
        if caller is None and is_bootstrap_token(token):
            if self._bootstrap is None:
                raise Unauthorized("bootstrap tokens are not accepted: the server has no bootstrap secret")
            caller = Caller(name=f"bootstrap:{self._bootstrap.verify(token)}", role=Role.BOOTSTRAP)
        if caller is None and self._id_tokens and Role.INTERNAL in allowed and token.count(".") == 2:
            caller = self._id_tokens.caller(token, audience)
        if caller is None:
            raise Unauthorized("unknown token")
        if caller.role not in allowed:
            raise Forbidden(f"role {caller.role.value!r} may not call this function")
        return caller


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
