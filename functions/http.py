"""The HTTP edge shared by every function: authentication, parameters, errors,
JSON answers and the Firestore cost headers. A handler answers a JSON object,
or a `flask.Response` of its own (the bot zip, the start script, a redirect),
which is passed through with the cost headers added."""

import dataclasses
import functools
import inspect
import json
import logging
import re
from typing import Any, Callable

import flask

from functions import ops, service
from functions.auth import Caller, Role
from functions.errors import BadRequest, HttpError, MethodNotAllowed
from shared import task_id as task_ids
from shared.api_error import ApiError
from shared.errors import ValidationError

logger = logging.getLogger(__name__)
#: An integer as a query parameter gives it: ASCII digits, maybe a minus sign.
_INTEGER = re.compile(r"-?[0-9]+")


@dataclasses.dataclass(frozen=True)
class Call:
    """One authenticated request, as a handler sees it."""

    service: service.Service
    caller: Caller
    params: dict[str, Any]
    #: The URL the functions were reached at (`<scheme>://<host>[<prefix>]`,
    #: without the function's name): the server URL a bot zip names.
    base_url: str = ""
    #: The bearer token the caller authenticated with (the start script embeds it).
    token: str = dataclasses.field(default="", repr=False)

    @property
    def server_url(self) -> str:
        """The URL bots are to call, which their zip names: the configured
        base URL (SWARMING_FUNCTIONS_URL) when there is one, since every
        function must agree on it (behind Cloud Run each may see a host of its
        own), else the URL this request came through."""
        return self.service.settings.functions_url.rstrip("/") or self.base_url

    @property
    def store(self):
        return self.service.store

    @functools.cached_property
    def now(self):
        return self.service.clock()

    def string(self, name: str) -> str:
        value = self.params.get(name)
        if not isinstance(value, str) or not value:
            raise ValidationError(name, "is required")
        return value

    def task_id(self, name: str = "task_id") -> str:
        """A task id proper (ending in 0), not one of its runs."""
        return task_ids.parse_task_id(self.params.get(name), name)

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self.params.get(name, default)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValidationError(name, "must be true or false")

    def integer(self, name: str, default: int | None = None) -> int | None:
        """An int, or its decimal digits (a query parameter); null is absent."""
        value = self.params.get(name)
        if value is None:
            return default
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _INTEGER.fullmatch(value):
            return int(value)
        raise ValidationError(name, "must be an integer")


@dataclasses.dataclass(frozen=True)
class Function:
    """One Cloud Function: its name (also its URL path), handler and who may call it."""

    name: str
    handler: Callable[[Call], dict[str, Any] | flask.Response]
    roles: frozenset[Role]
    methods: tuple[str, ...] = ("POST",)
    summary: str = ""
    #: Also takes the token as `?token=` (a URL pasted into `curl ... | sh`).
    token_param: bool = False

    @property
    def description(self) -> str:
        """What the function does, for the OpenAPI document: its handler's docstring."""
        return inspect.cleandoc(self.handler.__doc__ or "")


def serve(function: Function, request: flask.Request) -> flask.Response:
    with ops.counting() as count:
        answer = _handle(function, request)
    if isinstance(answer, flask.Response):
        response = answer
    else:
        status, body = answer
        response = flask.Response(json.dumps(body, default=str), status=status, mimetype="application/json")
    response.headers["X-Firestore-Reads"] = str(count.reads)
    response.headers["X-Firestore-Writes"] = str(count.writes)
    response.headers["X-Cloud-Tasks-Ops"] = str(count.cloud_tasks)
    return response


def _handle(function: Function, request: flask.Request) -> tuple[int, dict[str, Any]] | flask.Response:
    try:
        if request.method not in function.methods:
            raise MethodNotAllowed(f"{function.name} accepts {', '.join(function.methods)}")
        svc = service.current()
        audience = f"{svc.settings.functions_url.rstrip('/')}/{function.name}"
        authorization = request.headers.get("Authorization")
        if not authorization and function.token_param and request.args.get("token"):
            authorization = f"Bearer {request.args['token']}"
        caller = svc.auth.authenticate(authorization, function.roles, audience)
        params = _params(request)
        if function.token_param:
            params.pop("token", None)
        token = (authorization or "").partition(" ")[2].strip()
        answer = function.handler(Call(svc, caller, params, base_url(request, function.name), token))
        return answer if isinstance(answer, flask.Response) else (200, answer)
    except ValidationError as e:
        return 400, ApiError(function.name, 400, BadRequest.code, str(e), e.field).to_wire()
    except HttpError as e:
        return e.status, ApiError(function.name, e.status, e.code, e.message).to_wire()
    except Exception:  # The boundary: log it, never leak it.
        logger.exception("%s failed", function.name)
        return 500, ApiError(function.name, 500, HttpError.code, "internal error").to_wire()


def base_url(request: flask.Request, function_name: str) -> str:
    """Where the functions are reached, as this request reached them: the
    scheme the client used (behind Google's front end, X-Forwarded-Proto),
    the host, and any path prefix before the function's name."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    scheme = forwarded if forwarded in ("http", "https") else request.scheme
    prefix = request.script_root.rstrip("/")
    if prefix.endswith("/" + function_name):
        prefix = prefix[: -len(function_name) - 1]
    return f"{scheme}://{request.host}{prefix}"


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


def entry_point(function: Function) -> Callable[[flask.Request], flask.Response]:
    """The callable functions-framework serves for `function`."""

    def handle(request: flask.Request) -> flask.Response:
        return serve(function, request)

    handle.__name__ = function.name
    return handle
