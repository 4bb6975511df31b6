"""HTTP-facing errors: each carries its status and a stable code."""

from shared.errors import SwarmingError


class HttpError(SwarmingError):
    status = 500
    code = "internal"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


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


class PayloadTooLarge(HttpError):
    status, code = 413, "too_large"


class Unavailable(HttpError):
    status, code = 503, "unavailable"
