"""Tokens the server signs itself, so that checking one costs no read:

- bootstrap (`swb1.`): minted by an admin (`server_token`) for a new host; it
  opens `bot_code` and `bot_bootstrap`, and is exchanged at a handshake for a
  bot token (when the bot's group accepts bootstrap);
- bot (`swbt1.`): a bot's credential after its handshake, bound to its id and
  its group, short-lived and renewed by every call;
- run (`swrt1.`): the task runner's credential, bound to one run of one bot:
  it reports on that run and moves its files, nothing else, and dies with it.

A token is `<prefix>.<payload>.<signature>`: the payload (base64url JSON of
its claims, `exp` among them) signed with HMAC-SHA256 under a key derived
from the server's secret for that kind only, so a token of one kind never
passes for another.
"""

import base64
import binascii
import dataclasses
import datetime
import hashlib
import hmac
import json
import secrets
from typing import Any

from functions.errors import Unauthorized


@dataclasses.dataclass(frozen=True)
class Kind:
    prefix: str
    #: What the token is, in the errors that refuse it.
    name: str

    def owns(self, token: str) -> bool:
        return token.startswith(self.prefix + ".")


BOOTSTRAP = Kind("swb1", "bootstrap token")
BOT = Kind("swbt1", "bot token")
RUN = Kind("swrt1", "run token")
#: A person signed in to the web UI: only ever in its HttpOnly session cookie (functions.ui_session).
SESSION = Kind("swst1", "session token")


class SignedTokens:
    """Mints and verifies the four kinds under one secret."""

    def __init__(self, secret: str):
        if not secret:
            raise ValueError("a token secret is required")
        self._secret = secret.encode()

    def mint(self, kind: Kind, claims: dict[str, Any], expires: datetime.datetime) -> str:
        body = {**claims, "exp": int(expires.timestamp()), "n": secrets.token_hex(6)}
        payload = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        signed = f"{kind.prefix}.{_b64(payload)}"
        return f"{signed}.{_b64(self._sign(kind, signed))}"

    def verify(self, kind: Kind, token: str, now: datetime.datetime) -> dict[str, Any]:
        """The claims of a valid, unexpired token of `kind`; Unauthorized otherwise."""
        signed, _, signature = token.rpartition(".")
        try:
            if not kind.owns(token) or not hmac.compare_digest(_unb64(signature), self._sign(kind, signed)):
                raise Unauthorized(f"bad {kind.name}")
            claims = json.loads(_unb64(signed.partition(".")[2]))
            expires = int(claims["exp"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise Unauthorized(f"bad {kind.name}") from None
        if now.timestamp() >= expires:
            raise Unauthorized(f"{kind.name} expired")
        return claims

    def _sign(self, kind: Kind, signed: str) -> bytes:
        key = hmac.new(self._secret, kind.prefix.encode(), hashlib.sha256).digest()
        return hmac.new(key, signed.encode(), hashlib.sha256).digest()


def expiry(claims: dict[str, Any]) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(int(claims["exp"]), datetime.timezone.utc)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
