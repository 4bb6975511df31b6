"""Starting a bot on a new host: short-lived bootstrap tokens and the start script.

An admin mints a token with `server_token`; `bot_bootstrap?token=...` answers
a shell script that downloads `swarming_bot.zip` with that token and starts
it. A bootstrap token opens only `bot_bootstrap` and `bot_code`: the bot's own
API calls need a bot credential (`SWARMING_TOKEN`).

A token is `swb1.<payload>.<signature>`: the payload (base64url JSON: who
minted it, when it expires, a nonce) signed with HMAC-SHA256 under the
server's bootstrap secret, so checking one costs no storage read.
"""

import base64
import binascii
import datetime
import hashlib
import hmac
import json
import secrets
import shlex
from typing import Callable

from functions.errors import HttpError, Unauthorized

PREFIX = "swb1"
DEFAULT_TTL_SECS = 3600


class NotConfigured(HttpError):
    status, code = 500, "not_configured"


def is_bootstrap_token(token: str) -> bool:
    return token.startswith(PREFIX + ".")


class BootstrapTokens:
    def __init__(self, secret: str, clock: Callable[[], datetime.datetime]):
        if not secret:
            raise ValueError("a bootstrap secret is required")
        self._key = secret.encode()
        self._clock = clock

    def mint(self, creator: str, now: datetime.datetime, ttl_secs: int = DEFAULT_TTL_SECS) -> tuple[str, datetime.datetime]:
        expires = now + datetime.timedelta(seconds=ttl_secs)
        payload = json.dumps({"sub": creator, "exp": int(expires.timestamp()), "n": secrets.token_hex(8)},
                             separators=(",", ":"), sort_keys=True).encode()
        signed = f"{PREFIX}.{_b64(payload)}"
        return f"{signed}.{_b64(self._sign(signed))}", datetime.datetime.fromtimestamp(
            int(expires.timestamp()), datetime.timezone.utc)

    def verify(self, token: str) -> str:
        """Who minted a valid, unexpired token; Unauthorized otherwise."""
        signed, _, signature = token.rpartition(".")
        prefix, _, payload = signed.partition(".")
        try:
            if prefix != PREFIX or not hmac.compare_digest(_unb64(signature), self._sign(signed)):
                raise Unauthorized("bad bootstrap token")
            claims = json.loads(_unb64(payload))
            expires, creator = int(claims["exp"]), str(claims["sub"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise Unauthorized("bad bootstrap token") from None
        if self._clock().timestamp() >= expires:
            raise Unauthorized("bootstrap token expired; mint another with server_token")
        return creator

    def _sign(self, signed: str) -> bytes:
        return hmac.new(self._key, signed.encode(), hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def script(server_url: str, version: str, token: str) -> str:
    """The start script: POSIX sh, curl or else python3's urllib."""
    url = f"{server_url}/bot_code?version={version}"
    return f"""#!/bin/sh
# Starts a Swarming bot of {server_url} in the current directory:
# downloads swarming_bot.zip (version {version[:16]}...) with a bootstrap token
# and runs `python3 swarming_bot.zip start_bot`. The directory becomes the
# bot's: it deletes everything else in it at start-up.
#
# The bot's own API calls authenticate with SWARMING_TOKEN (a bot token) from
# the environment, unless its bot_config.py hooks give other headers:
#   curl -fsS '{server_url}/bot_bootstrap?token=<bootstrap token>' | SWARMING_TOKEN=<bot token> sh
# The bootstrap token in this script only downloads the bot code, and expires.
set -eu
URL={shlex.quote(url)}
TOKEN={shlex.quote(token)}
[ -n "${{SWARMING_TOKEN:-}}" ] || echo "warning: SWARMING_TOKEN is not set: the bot will have no credential" >&2
if command -v curl >/dev/null 2>&1; then
  curl -fsSL -H "Authorization: Bearer $TOKEN" -o swarming_bot.zip.part "$URL"
else
  python3 -c 'import sys, urllib.request as u; r = u.Request(sys.argv[1], headers={{"Authorization": "Bearer " + sys.argv[2]}}); open("swarming_bot.zip.part", "wb").write(u.urlopen(r).read())' "$URL" "$TOKEN"
fi
mv swarming_bot.zip.part swarming_bot.zip
exec python3 swarming_bot.zip start_bot
"""
