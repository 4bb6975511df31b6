"""The one authentication function every endpoint goes through.

For now a caller is identified by a bearer token listed in the local config
file (`{"tokens": {"<token>": {"role": "bot|user|admin", "name": "..."}}}`);
real identities replace `Authenticator` without touching the endpoints.
"""

import dataclasses
import enum
import hashlib
from typing import Any, Mapping

from functions.errors import Forbidden, Unauthorized


class Role(str, enum.Enum):
    BOT = "bot"
    USER = "user"
    ADMIN = "admin"


BOTS = frozenset({Role.BOT})
USERS = frozenset({Role.USER, Role.ADMIN})
ADMINS = frozenset({Role.ADMIN})


@dataclasses.dataclass(frozen=True)
class Caller:
    name: str
    role: Role


class Authenticator:
    def __init__(self, config: Mapping[str, Any]):
        # Keyed by digest, so a lookup does not compare secrets byte by byte.
        self._callers = {
            _digest(token): Caller(name=entry.get("name", entry["role"]), role=Role(entry["role"]))
            for token, entry in config.get("tokens", {}).items()
        }

    def authenticate(self, authorization: str | None, allowed: frozenset[Role]) -> Caller:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("missing 'Authorization: Bearer <token>' header")
        caller = self._callers.get(_digest(token.strip()))
        if caller is None:
            raise Unauthorized("unknown token")
        if caller.role not in allowed:
            raise Forbidden(f"role {caller.role.value!r} may not call this function")
        return caller


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
