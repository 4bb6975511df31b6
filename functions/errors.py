"""HTTP-facing errors: each carries its status, a stable code, and the
headers its answer needs (a 405's `Allow`, a 503's `Retry-After`)."""

from typing import Mapping

from shared.errors import SwarmingError

#: What a 503 tells its caller to wait before trying again: an outage of a
#: backend outlasts a client's quick retries, and a fleet retrying at once
#: would prolong it.
RETRY_AFTER_SECS = 5


class HttpError(SwarmingError):
    status = 500
    code = "internal"

    def __init__(self, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})


class BadRequest(HttpError):
    status, code = 400, "invalid_argument"


class Unauthorized(HttpError):
    status, code = 401, "unauthenticated"


class Forbidden(HttpError):
    status, code = 403, "permission_denied"


class NotFound(HttpError):
    status, code = 404, "not_found"


class Conflict(HttpError):
    status, code = 409, "conflict"


class MethodNotAllowed(HttpError):
    status, code = 405, "method_not_allowed"

    def __init__(self, message: str, allowed: tuple[str, ...]):
        super().__init__(message, {"Allow": ", ".join(allowed)})


class PayloadTooLarge(HttpError):
    status, code = 413, "too_large"


class Unavailable(HttpError):
    """Try again later: every 503 says when (`Retry-After`)."""

    status, code = 503, "unavailable"

    def __init__(self, message: str):
        super().__init__(message, {"Retry-After": str(RETRY_AFTER_SECS)})
