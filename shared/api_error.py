"""The API's errors as both sides see them (docs/http-api.md): the JSON body
`{"error": {"code", "message", "field"?}}` of every refusal, which the
functions answer with (`to_wire`) and the callers read (`from_answer`), the
statuses that only say "try again later", and the one exception the bot, the
CLI and the benches raise when a call fails for good.

Standard library only: the HTTP that carries it is bot/api_client.py's.
"""

from __future__ import annotations

from typing import Any

from shared.errors import SwarmingError

#: Answers a call may be retried on, whatever the call: too many requests, and
#: a server that failed or was not there (a cold start, a deploy).
RETRY_STATUSES = (429, 500, 502, 503, 504)
#: How much of an answer that is not the API's JSON an error quotes.
QUOTED_CHARS = 200


class ApiError(SwarmingError):
    """A call failed for good, after the retries. `status` is None when no
    HTTP answer came back at all; `field` names the request field a 400 is
    about, when the server said."""

    def __init__(self, call: str, status: int | None, code: str, message: str, field: str | None = None):
        where = f"HTTP {status}" if status else "no answer"
        super().__init__(f"{call}: {where}: {code}: {message}")
        self.call = call
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    @classmethod
    def from_answer(cls, call: str, status: int, body: Any, text: str) -> ApiError:
        """The error an answer of `status` carries in its JSON `body`; one
        without it (a proxy's page, a crash) is quoted from its `text`."""
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict) or not isinstance(error.get("code"), str):
            return cls(call, status, "http_error", text[:QUOTED_CHARS])
        field = error.get("field")
        return cls(call, status, error["code"], str(error.get("message", "")),
                   field if isinstance(field, str) else None)

    def to_wire(self) -> dict[str, Any]:
        """The body of the answer that reports this error."""
        error = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}
