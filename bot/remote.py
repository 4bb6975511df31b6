"""The bot's side of the Bot API (PROTOCOL.md): one method per call, speaking
the messages of shared/bot_api.py over bot/api_client.py, and one exception
per failure the bot acts on.

Every bot call is idempotent by design (a poll carries its request_uuid, a claim
its claim_id, stdout its byte offset), so every one of them, POSTs included, is
retried on transient failures; the body, and so those ids, is the same on
every attempt. The server's `session` from each reply goes back with the next
call (`BotAttributes.session`): it tells the server what it last wrote of
this bot, sparing a write per call.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence, TypeVar

from bot.api_client import ApiClient
from shared import bot_api
from shared.api_error import ApiError
from shared.bot_api import (
    BotAttributes, Candidate, ClaimReply, ClaimRequest, Event, EventReply, Handshake, HandshakeReply, Poll,
    PollReply, TaskError, TaskErrorReply, TaskUpdate, TaskUpdateReply, Update,
)
from shared.cas import Digest
from shared.errors import ValidationError

R = TypeVar("R")
UNAUTHORIZED, NOT_FOUND, CONFLICT = 401, 404, 409


class Request(Protocol):
    """A request of shared/bot_api.py."""

    def to_wire(self) -> dict[str, Any]: ...


class Unauthorized(ApiError):
    """401: the server refused the credential (expired, revoked, not this
    bot's); or the bot has none to send, and the call was not made."""


class RunGone(ApiError):
    """A task update the server refused for good: the run is no longer this
    bot's to report on (409), the server knows no such task (its own 404, not
    a proxy's page), or it refuses the credential (its own 401: a run token
    expired or signed with a secret since rotated, which no retry mends)."""


class BadManifest(ApiError):
    """A claim was won but its manifest is unusable: the run is this bot's, and
    must be failed with `task_error` rather than left to time out."""

    def __init__(self, run_id: str, message: str):
        super().__init__("bot_claim", 200, "bad_manifest", message)
        self.run_id = run_id


class Remote:
    """The server's Bot API, for one bot (with its bot token) or one run (a
    task runner, with its run token); `session`: the server's last, when the
    bot's process hands it on (to its task runner)."""

    def __init__(self, server: str, token: str | None, *, session: str | None = None):
        self._api = ApiClient(server, token)  # The HTTP: its session, retries and headers.
        #: The server's last `session`, sent back on every call.
        self.bot_session = session

    @property
    def server(self) -> str:
        return self._api.server

    @property
    def token(self) -> str | None:
        """The bearer token of every call, as the server last renewed it;
        None: none, and a call raises Unauthorized without being made."""
        return self._api.token

    @token.setter
    def token(self, token: str | None) -> None:
        self._api.token = token

    def close(self) -> None:
        self._api.close()

    def set_headers(self, headers: Mapping[str, str]) -> None:
        """The `get_authentication_headers` hook's but its Authorization
        (ApiClient.set_headers)."""
        self._api.set_headers(headers)

    def with_session(self, attributes: BotAttributes) -> BotAttributes:
        """`attributes` with the server's last session, as every call sends them."""
        return dataclasses.replace(attributes, session=self.bot_session)

    def handshake(self, attributes: BotAttributes) -> HandshakeReply:
        return self._call("bot_handshake", Handshake(self.with_session(attributes)), HandshakeReply.from_wire)

    def poll(self, attributes: BotAttributes, request_uuid: str, hold_secs: float = 0.0) -> PollReply:
        """With `hold_secs`, the server may hold the poll that long waiting for a task (a long poll)."""
        return self._call("bot_poll", Poll(self.with_session(attributes), request_uuid, hold_secs), bot_api.poll_reply,
                          held_secs=hold_secs)

    def claim(self, attributes: BotAttributes, candidate: Candidate, claim_id: str) -> ClaimReply:
        """Raises BadManifest for a claim won with a manifest the bot cannot read."""
        request = ClaimRequest(self.with_session(attributes), candidate.task_id, claim_id, candidate.slice)
        return self._call("bot_claim", request, _claim_reply)

    def task_update(self, attributes: BotAttributes, run_id: str, update: Update) -> TaskUpdateReply:
        """Raises RunGone when the run is no longer this bot's, or its
        credential is refused for good."""
        try:
            return self._call("bot_task_update", TaskUpdate(self.with_session(attributes), run_id, update),
                              TaskUpdateReply.from_wire)
        except ApiError as e:
            if e.status == CONFLICT or (e.status, e.code) in ((NOT_FOUND, "not_found"),
                                                               (UNAUTHORIZED, "unauthenticated")):
                raise RunGone(e.call, e.status, e.code, e.message) from e
            raise

    def task_error(self, attributes: BotAttributes, run_id: str, message: str,
                   missing_cas: Sequence[Digest] | None = None) -> TaskErrorReply:
        """Ends a run the bot could not carry out: BOT_DIED, or CLIENT_ERROR
        when `missing_cas` names inputs that were not there. Safe to retry:
        an ended run does not end again."""
        request = TaskError(self.with_session(attributes), run_id, message,
                            None if missing_cas is None else tuple(missing_cas))
        return self._call("bot_task_error", request, TaskErrorReply.from_wire)

    def event(self, attributes: BotAttributes, event: str, message: str) -> None:
        """`bot_event`: one of bot_api.BOT_REPORTED_EVENTS."""
        self._call("bot_event", Event(self.with_session(attributes), event, message), EventReply.from_wire)

    def bot_code(self, version: str, dest: Path) -> None:
        """Downloads the bot zip of digest `version` to `dest`, whole or not at all."""
        self._api.download("bot_code", {"version": version}, dest)

    def call(self, function: str, body: dict[str, Any]) -> dict[str, Any]:
        """A call without the bot's attributes, as the CAS functions take
        them: this makes a Remote the `shared.cas_transfer.Service` of a task."""
        return self._api.call(function, body)

    def _call(self, function: str, request: Request, read: Callable[[Any], R], held_secs: float = 0.0) -> R:
        """Sends `request` (a bot_api message), reads the reply with `read`,
        and keeps the session it carries (every reply but bot_task_error's
        and bot_event's has one). Raises Unauthorized on a 401, or when there
        is no token to send."""
        if self._api.token is None:
            raise Unauthorized(function, None, "no_credential", "the bot has no credential to call with")
        try:
            body = self._api.answer(function, request.to_wire(), held_secs=held_secs).body
        except ApiError as e:
            if e.status == UNAUTHORIZED:
                raise Unauthorized(e.call, e.status, e.code, e.message) from e
            raise
        try:
            reply = read(body)
        except ValidationError as e:
            raise ApiError(function, 200, "bad_reply", str(e), e.field) from e
        session = getattr(reply, "session", None)
        if session is not None:
            self.bot_session = session
        return reply


def _claim_reply(body: Any) -> ClaimReply:
    try:
        return bot_api.claim_reply(body)
    except ValidationError as e:
        run_id = bot_api.claimed_run_id(body)
        if run_id is None:  # Not even whose run it is: nothing to report on.
            raise
        raise BadManifest(run_id, str(e)) from e
