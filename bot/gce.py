"""The Google Compute Engine metadata server, for the default
`get_authentication_headers` hook (bot/default_bot_config.py): on a GCE VM,
an ID token of the VM's service account, which the server's bot groups list
(`require_service_account`).

Standard library only: the bot zip carries no google-auth. As google-auth,
`GCE_METADATA_HOST` (host[:port]) says where the metadata server is and
`GCE_METADATA_IP` where to ping it; the tests point both at a fake. Whether
the host is on GCE is decided once per process: off GCE, the bot must not
wait on a metadata server before each handshake.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request

logger = logging.getLogger(__name__)

HOST_ENV, IP_ENV = "GCE_METADATA_HOST", "GCE_METADATA_IP"
DEFAULT_HOST, DEFAULT_IP = "metadata.google.internal", "169.254.169.254"
#: A header every request carries, and the metadata server's answers alone.
FLAVOR, GOOGLE = "Metadata-Flavor", "Google"
IDENTITY_PATH = "/computeMetadata/v1/instance/service-accounts/default/identity"
#: A metadata server answers within milliseconds; off GCE the ping must cost little.
PING_TIMEOUT_SECS, PING_ATTEMPTS = 1.0, 3
TIMEOUT_SECS = 5.0

#: No proxy: the metadata server is on the VM's own link, and a proxy would answer for it.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclasses.dataclass(frozen=True)
class IdToken:
    token: str = dataclasses.field(repr=False)
    expiry: float  # Unix time: the token's `exp` (an hour after it was issued).


def id_token(audience: str) -> IdToken | None:
    """The VM's service-account ID token for `audience` (the server's URL);
    None off GCE. Raises OSError or ValueError when the metadata server
    fails to give one."""
    if not on_gce():
        return None
    query = urllib.parse.urlencode({"audience": audience, "format": "full"})
    url = f"http://{os.environ.get(HOST_ENV, DEFAULT_HOST)}{IDENTITY_PATH}?{query}"
    with _OPENER.open(urllib.request.Request(url, headers={FLAVOR: GOOGLE}), timeout=TIMEOUT_SECS) as response:
        token = response.read().decode("ascii").strip()
    return IdToken(token, _expiry(token))


def on_gce() -> bool:
    """Whether a metadata server answers at GCE_METADATA_IP (169.254.169.254)."""
    return _pinged(os.environ.get(IP_ENV, DEFAULT_IP))


@functools.lru_cache(maxsize=None)
def _pinged(ip: str) -> bool:
    request = urllib.request.Request(f"http://{ip}/", headers={FLAVOR: GOOGLE})
    for _ in range(PING_ATTEMPTS):
        try:
            with _OPENER.open(request, timeout=PING_TIMEOUT_SECS) as response:
                return response.headers.get(FLAVOR) == GOOGLE
        except urllib.error.HTTPError as e:  # Still an answer, maybe the metadata server's.
            return e.headers.get(FLAVOR) == GOOGLE
        except OSError:  # No route, refused, timed out: try again, then conclude.
            continue
    logger.info("no GCE metadata server at %s: not on GCE", ip)
    return False


def _expiry(token: str) -> float:
    """The `exp` of a JWT, read without checking its signature: the bot only
    needs to know when to ask for the next one."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError, binascii.Error) as e:
        raise ValueError(f"the metadata server's ID token is not a JWT with an expiry: {e!r}") from e
