"""A small Python API over the HTTP API of the serverless Swarming."""

import base64
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from shared.errors import SwarmingError

#: Reads and idempotent calls are retried on these answers and on lost connections.
RETRY_STATUSES = (429, 500, 502, 503, 504)


class ApiError(SwarmingError):
    """The server refused a call; carries the status and the server's error body."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.field = status, code, message, field


def _session(token: str, retry: Retry) -> requests.Session:
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    session.headers["Authorization"] = f"Bearer {token}"
    return session


class Client:
    def __init__(self, server: str, token: str, timeout: float = 60.0):
        self.server = server.rstrip("/")
        # Reads are retried on any failure; creating a task only when the
        # connection failed before the request was sent, since a retried
        # create would make a second task.
        self._reads = _session(token, Retry(
            total=8, backoff_factor=0.5, backoff_max=10, backoff_jitter=0.5,
            status_forcelist=RETRY_STATUSES, allowed_methods=None, raise_on_status=False))
        self._writes = _session(token, Retry(total=3, connect=3, read=0, status=0, other=0,
                                             backoff_factor=0.5, allowed_methods=None))
        self._timeout = timeout

    def call(self, function: str, body: dict[str, Any], idempotent: bool = True) -> dict[str, Any]:
        session = self._reads if idempotent else self._writes
        response = session.post(f"{self.server}/{function}", json=body, timeout=self._timeout)
        try:
            answer = response.json()
        except ValueError:
            raise ApiError(response.status_code, "bad_response", response.text[:200]) from None
        if not response.ok:
            error = answer.get("error", {}) if isinstance(answer, dict) else {}
            raise ApiError(response.status_code, error.get("code", "unknown"),
                           error.get("message", response.text[:200]), error.get("field"))
        return answer

    def new_task(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.call("tasks_new", request, idempotent=False)

    def result(self, task_id: str) -> dict[str, Any]:
        return self.call("task_result", {"task_id": task_id})

    def stdout(self, task_id: str, offset: int = 0) -> tuple[bytes, int, str]:
        """Stdout from `offset`: (bytes, next offset, task state)."""
        answer = self.call("task_stdout", {"task_id": task_id, "offset": offset})
        return base64.b64decode(answer["output"]), answer["next_offset"], answer["state"]
