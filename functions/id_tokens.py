"""Google-signed ID tokens, verified with google-auth: the credential of
people (`gcloud auth print-identity-token`, the CLI's login), CI jobs and
bots on Google Cloud (their service account's token), and the timers (Cloud
Tasks and Cloud Scheduler's OIDC tokens). One verification path serves
production and the local stack, whose issuer signs with a local key and
serves its certificates in the shape of Google's (`local/oidc_issuer.py`).

The issuer's certificates are fetched at most every `CERTS_CACHE_SECS` per
instance, so a verification costs no request and no Firestore read.
"""

import dataclasses
import threading
import time
from typing import Any, Callable, Sequence

import google.auth.transport
import google.auth.transport.requests
from google.auth import exceptions
from google.oauth2 import id_token

from functions.errors import Unauthorized, Unavailable

#: Google's issuers of ID tokens.
ISSUERS = ("https://accounts.google.com", "accounts.google.com")
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
CERTS_CACHE_SECS = 300
#: A token from a host whose clock runs a little fast is not "used too early".
CLOCK_SKEW_SECS = 10
#: The domain of service accounts' emails: their identity is `serviceAccount:`.
SERVICE_ACCOUNT_DOMAIN = ".gserviceaccount.com"


@dataclasses.dataclass(frozen=True)
class Claims:
    """Who a verified token speaks for: `user:<email>` or `serviceAccount:<email>`."""

    identity: str
    email: str
    audience: str


def identity_of(email: str) -> str:
    kind = "serviceAccount" if email.endswith(SERVICE_ACCOUNT_DOMAIN) else "user"
    return f"{kind}:{email}"


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


class _CachedRequest(google.auth.transport.Request):
    """google-auth's HTTP transport with the certificates' answers kept for
    `ttl` seconds: verify_token fetches them on every call otherwise."""

    def __init__(self, ttl: float, clock: Callable[[], float]):
        self._inner = google.auth.transport.requests.Request()
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._answers: dict[str, tuple[float, Any]] = {}

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Any = None,
                 timeout: Any = None, **kwargs: Any) -> Any:
        with self._lock:
            cached = self._answers.get(url)
            if method == "GET" and cached and self._clock() - cached[0] < self._ttl:
                return cached[1]
        answer = self._inner(url, method=method, body=body, headers=headers, timeout=timeout or 10, **kwargs)
        if method == "GET" and answer.status == 200:
            with self._lock:
                self._answers[url] = (self._clock(), answer)
        return answer


class IdTokens:
    """Verifies Google-signed ID tokens: signature (RS256, the issuer's
    certificates), issuer, audience, expiry, and a verified email."""

    def __init__(self, certs_url: str = GOOGLE_CERTS_URL, clock: Callable[[], float] = time.monotonic):
        self._certs_url = certs_url
        self._request = _CachedRequest(CERTS_CACHE_SECS, clock)

    def verify(self, token: str, audiences: Sequence[str]) -> Claims:
        """Raises Unauthorized, saying why, for any token that is not valid for one of `audiences`."""
        try:
            claims = id_token.verify_token(token, self._request, audience=list(audiences),
                                           certs_url=self._certs_url, clock_skew_in_seconds=CLOCK_SKEW_SECS)
        except exceptions.TransportError as e:  # The issuer's certificates could not be had: not the caller's fault.
            raise Unavailable(f"cannot fetch the ID token certificates: {e}") from None
        except (ValueError, exceptions.GoogleAuthError) as e:
            raise Unauthorized(f"bad ID token: {e}") from None
        if claims.get("iss") not in ISSUERS:
            raise Unauthorized("bad ID token: not issued by Google")
        email = claims.get("email")
        if not isinstance(email, str) or not claims.get("email_verified"):
            raise Unauthorized("bad ID token: no verified email")
        return Claims(identity=identity_of(email), email=email, audience=str(claims.get("aud")))
