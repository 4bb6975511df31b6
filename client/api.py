"""A small Python API over the HTTP API of the serverless Swarming, on the
HTTP client the bot uses too (bot/api_client.py): its retries, and its one
error, ApiError."""

import base64
from typing import Any, Callable

from bot.api_client import Answer, ApiClient
from client.credentials import CredentialsError
from shared.api_error import ApiError

__all__ = ["ApiError", "Client"]


class Client(ApiClient):
    """`token`: a bearer token, or a source of renewed ones
    (client/credentials.py), asked before every call."""

    def __init__(self, server: str, token: str | Callable[[], str]):
        self._token_source = token if callable(token) else (lambda: token)
        super().__init__(server, "")  # The token is asked for by the first call.

    def answer(self, function: str, body: dict[str, Any], *, idempotent: bool = True) -> Answer:
        try:
            token = self._token_source()
        except CredentialsError as e:
            raise ApiError(function, None, "no_credentials", str(e)) from e
        if token != self.token:
            self.token = token
            self.set_headers({})
        return super().answer(function, body, idempotent=idempotent)

    def new_task(self, request: dict[str, Any]) -> dict[str, Any]:
        """With a `request_uuid`, retried as any idempotent call: a retry gets
        the task the first try made. Without, a retried create would make a
        second task: only a call that was never sent is retried."""
        return self.call("tasks_new", request, idempotent=bool(request.get("request_uuid")))

    def result(self, task_id: str) -> dict[str, Any]:
        return self.call("task_result", {"task_id": task_id})

    def stdout(self, task_id: str, offset: int = 0) -> tuple[bytes, int, str]:
        """Stdout from `offset`: (bytes, next offset, task state)."""
        answer = self.call("task_stdout", {"task_id": task_id, "offset": offset})
        return base64.b64decode(answer["output"]), answer["next_offset"], answer["state"]
