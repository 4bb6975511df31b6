"""Who is calling: the one authentication every endpoint goes through.

A caller shows one bearer token (`Authorization: Bearer <token>`; the start
script's URL may carry a bootstrap token as `?token=`), which is either
- a Google-signed ID token (`functions.id_tokens`): a person, a CI job's or a
  bot's service account, or the service account Cloud Tasks and Cloud
  Scheduler call the timers and the cron as (the `internal` caller); or
- a token the server signed itself (`functions.signed_tokens`): a bot's, a
  task runner's, or a new host's bootstrap token, or the web UI's session
  token, minted for a person once their ID token was verified here
  (`functions.ui_session`: the browser shows it from its cookie).

There is no other way in: no static token, locally either (the local stack
runs an OIDC issuer of its own). What a caller may then do is
`functions.permissions`'s to decide.
"""

import datetime
from typing import Callable, Sequence

from functions import id_tokens, signed_tokens
from functions.errors import Unauthorized
from functions.id_tokens import IdTokens
from functions.permissions import Caller, Kind
from functions.signed_tokens import SignedTokens


class Authenticator:
    def __init__(self, ids: IdTokens, tokens: SignedTokens | None, internal_account: str,
                 clock: Callable[[], datetime.datetime]):
        self._ids = ids
        self._tokens = tokens  # None: no secret configured, so no token of ours is valid.
        self._internal_account = internal_account.lower()
        self._clock = clock

    def authenticate(self, authorization: str | None, audiences: Sequence[str]) -> Caller:
        """The caller of a request; `audiences`: what an ID token may be minted for."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("missing 'Authorization: Bearer <token>' header")
        kinds = (signed_tokens.BOT, signed_tokens.RUN, signed_tokens.BOOTSTRAP, signed_tokens.SESSION)
        kind = next((k for k in kinds if k.owns(token)), None)
        if kind is not None:
            return self._signed(kind, token)
        if id_tokens.looks_like_jwt(token):
            claims = self._ids.verify(token, audiences)
            internal = claims.email.lower() == self._internal_account
            return Caller(Kind.INTERNAL if internal else Kind.PERSON, claims.identity)
        raise Unauthorized("unknown token: a Google ID token, or a token this server signed")

    def _signed(self, kind: signed_tokens.Kind, token: str) -> Caller:
        if self._tokens is None:
            raise Unauthorized(f"{kind.name}s are not accepted: the server has no token secret")
        claims = self._tokens.verify(kind, token, self._clock())
        if kind is signed_tokens.SESSION:
            return Caller(Kind.PERSON, claims["sub"])
        if kind is signed_tokens.BOOTSTRAP:
            return Caller(Kind.BOOTSTRAP, f"bootstrap:{claims['sub']}")
        bot = {"bot_id": claims["bot"], "group": claims["group"], "group_version": claims["gv"]}
        if kind is signed_tokens.RUN:
            return Caller(Kind.RUN, f"run:{claims['run']}", run_id=claims["run"], **bot)
        return Caller(Kind.BOT, f"bot:{claims['bot']}", **bot)
