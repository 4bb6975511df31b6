"""The HTTP edge shared by every function: authentication, parameters, errors,
JSON answers and the Firestore cost headers."""

import dataclasses
import functools
import json
import logging
from typing import Any, Callable

import flask

from functions import ops, service
from functions.auth import Caller, Role
from functions.errors import BadRequest, HttpError, MethodNotAllowed
from shared.errors import ValidationError

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Call:
    """One authenticated request, as a handler sees it."""

    service: service.Service
    caller: Caller
    params: dict[str, Any]

    @property
    def store(self):
        return self.service.store

    @functools.cached_property
    def now(self):
        return self.service.clock()

    def string(self, name: str) -> str:
        value = self.params.get(name)
        if not isinstance(value, str) or not value:
            raise BadRequest(f"{name}: is required")
        return value

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self.params.get(name, default)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise BadRequest(f"{name}: must be true or false")

    def integer(self, name: str, default: int | None = None) -> int | None:
        value = self.params.get(name, default)
        if value is None or isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lstrip("-").isdigit():
            return int(value)
        raise BadRequest(f"{name}: must be an integer")


@dataclasses.dataclass(frozen=True)
class Function:
    """One Cloud Function: its name (also its URL path), handler and who may call it."""

    name: str
    handler: Callable[[Call], dict[str, Any]]
    roles: frozenset[Role]
    methods: tuple[str, ...] = ("POST",)
    summary: str = ""


def serve(function: Function, request: flask.Request) -> flask.Response:
    with ops.counting() as count:
        status, body = _handle(function, request)
    response = flask.Response(json.dumps(body, default=str), status=status, mimetype="application/json")
    response.headers["X-Firestore-Reads"] = str(count.reads)
    response.headers["X-Firestore-Writes"] = str(count.writes)
    response.headers["X-Cloud-Tasks-Ops"] = str(count.cloud_tasks)
    return response


def _handle(function: Function, request: flask.Request) -> tuple[int, dict[str, Any]]:
    try:
        if request.method not in function.methods:
            raise MethodNotAllowed(f"{function.name} accepts {', '.join(function.methods)}")
        svc = service.current()
        audience = f"{svc.settings.functions_url.rstrip('/')}/{function.name}"
        caller = svc.auth.authenticate(request.headers.get("Authorization"), function.roles, audience)
        return 200, function.handler(Call(svc, caller, _params(request)))
    except ValidationError as e:
        return 400, _error("invalid_argument", str(e), field=e.field)
    except HttpError as e:
        return e.status, _error(e.code, e.message)
    except Exception:  # The boundary: log it, never leak it.
        logger.exception("%s failed", function.name)
        return 500, _error("internal", "internal error")


def _params(request: flask.Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.args)
    if request.method == "POST" and request.data:
        try:
            body = json.loads(request.data)
        except ValueError as e:
            raise BadRequest(f"body: not valid JSON ({e})") from e
        if not isinstance(body, dict):
            raise BadRequest("body: must be a JSON object")
        params.update(body)
    return params


def _error(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def entry_point(function: Function) -> Callable[[flask.Request], flask.Response]:
    """The callable functions-framework serves for `function`."""

    def handle(request: flask.Request) -> flask.Response:
        return serve(function, request)

    handle.__name__ = function.name
    return handle
