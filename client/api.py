"""A small Python API over the HTTP API of the serverless Swarming, on the
HTTP client the bot uses too (bot/api_client.py): its retries, and its one
error, ApiError."""

import base64
from typing import Any

from bot.api_client import ApiClient
from shared.api_error import ApiError

__all__ = ["ApiError", "Client"]


class Client(ApiClient):
    def new_task(self, request: dict[str, Any]) -> dict[str, Any]:
        """Not idempotent: a retried create would make a second task."""
        return self.call("tasks_new", request, idempotent=False)

    def result(self, task_id: str) -> dict[str, Any]:
        return self.call("task_result", {"task_id": task_id})

    def stdout(self, task_id: str, offset: int = 0) -> tuple[bytes, int, str]:
        """Stdout from `offset`: (bytes, next offset, task state)."""
        answer = self.call("task_stdout", {"task_id": task_id, "offset": offset})
        return base64.b64decode(answer["output"]), answer["next_offset"], answer["state"]
