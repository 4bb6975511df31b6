"""The HTTP edge shared by every function: authentication, parameters, errors,
JSON answers and the Firestore cost headers. A handler answers a JSON object,
or a `flask.Response` of its own (the bot zip, the start script, a redirect),
which is passed through with the cost headers added."""

import dataclasses
import datetime
import functools
import inspect
import json
import logging
from typing import Any, Callable, Protocol

import flask
import requests
from google.api_core import exceptions as gexc

from functions import logs, ops, permissions, service
from functions.errors import BadRequest, HttpError, MethodNotAllowed, Unavailable
from functions.permissions import Action, Caller, Kind
from shared.api_error import ApiError
from shared.bot_api import BOT_TOKEN_HEADER
from shared.errors import ValidationError
from shared.service_config import ServiceConfig

logger = logging.getLogger(__name__)
#: What Firestore, Cloud Tasks and Cloud Storage raise when they could not be
#: reached in time (their clients' retries and timeouts are bounded:
#: functions/service.py): the request may succeed later, so it is a 503.
_UNREACHABLE = (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.RetryError, requests.ConnectionError,
                requests.Timeout)


@dataclasses.dataclass
class Call:
    """One authenticated request, as a handler sees it."""

    service: service.Service
    caller: Caller
    #: What the function does: who may call it (functions.permissions).
    action: Action
    params: dict[str, Any]
    #: The URL the functions were reached at (`<scheme>://<host>[<prefix>]`,
    #: without the function's name): the server URL a bot zip names.
    base_url: str = ""
    #: The bearer token the caller authenticated with (the start script embeds it).
    token: str = dataclasses.field(default="", repr=False)
    #: The address the request came from, for the bot groups' networks.
    remote_ip: str = ""
    #: The handler asked whether the caller may (`authorize`); a pool-scoped
    #: function that did not is a bug the edge refuses to answer for.
    authorized: bool = False
    #: The bot token to hand the caller with the answer (bot id, group, its
    #: version, expiry): set by a handshake, and by a claim to outlast its task.
    bot_token: tuple[str, str, str, datetime.datetime] | None = None

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
    def now(self) -> datetime.datetime:
        return self.service.clock()

    @functools.cached_property
    def config(self) -> ServiceConfig:
        return self.service.service_config.get()

    def authorize(self, pool: str | None = None, owner: str | None = None) -> None:
        """Raises Forbidden unless the caller may do the function's action in
        `pool` (on a task of `owner`): the one decision (functions.permissions)."""
        permissions.authorize(self.config, self.caller, self.action, pool, owner)
        self.authorized = True

    def may(self, pool: str | None = None, owner: str | None = None) -> bool:
        return permissions.refusal(self.config, self.caller, self.action, pool, owner) is None


class Browser(Protocol):
    """What a function that browsers call adds to the edge (functions.ui):
    the credential from a session cookie, the answers that need no caller
    (sign-in, scripts), and errors as pages."""

    def token(self, request: flask.Request) -> str | None: ...

    def public(self, request: flask.Request) -> flask.Response | None: ...

    def error(self, request: flask.Request, status: int, body: dict[str, Any]) -> flask.Response | None: ...


@dataclasses.dataclass(frozen=True)
class Function:
    """One Cloud Function: its name (also its URL path), handler and what it does."""

    name: str
    handler: Callable[[Call], dict[str, Any] | flask.Response]
    action: Action
    methods: tuple[str, ...] = ("POST",)
    summary: str = ""
    #: Also takes the token as `?token=` (a URL pasted into `curl ... | sh`).
    token_param: bool = False
    #: Called by a browser (the web UI), as functions.http.Browser says.
    browser: Browser | None = None

    @property
    def description(self) -> str:
        """What the function does, for the OpenAPI document: its handler's docstring."""
        return inspect.cleandoc(self.handler.__doc__ or "")


def serve(function: Function, request: flask.Request) -> flask.Response:
    with ops.counting() as count, logs.labelled(function=function.name):
        answer, headers = _handle(function, request)
    if isinstance(answer, flask.Response):
        response = answer
    else:
        status, body = answer
        page = function.browser.error(request, status, body) if function.browser and status >= 400 else None
        response = page or flask.Response(json.dumps(body, default=str), status=status, mimetype="application/json")
    response.headers.update(headers)
    response.headers["X-Firestore-Reads"] = str(count.reads)
    response.headers["X-Firestore-Writes"] = str(count.writes)
    response.headers["X-Cloud-Tasks-Ops"] = str(count.cloud_tasks)
    return response


Answer = tuple[int, dict[str, Any]] | flask.Response


def _handle(function: Function, request: flask.Request) -> tuple[Answer, dict[str, str]]:
    try:
        if request.method not in function.methods:
            raise MethodNotAllowed(f"{function.name} accepts {', '.join(function.methods)}", function.methods)
        public = function.browser.public(request) if function.browser else None
        if public is not None:
            return public, {}
        call = _call(function, request)
        with logs.labelled(**_subjects(call)):
            answer = _answer(function, call)
        return (answer if isinstance(answer, flask.Response) else (200, answer)), _renewed_token(call)
    except ValidationError as e:
        return (400, ApiError(function.name, 400, BadRequest.code, str(e), e.field).to_wire()), {}
    except HttpError as e:
        return _error(function, e)
    except Exception as e:  # The boundary: log it, never leak it.
        if _unreachable(e):
            logger.warning("%s: a backend is unreachable: %r", function.name, e)
            return _error(function, Unavailable("a backend of the service is unreachable; retry later"))
        logger.exception("%s failed", function.name)
        return (500, ApiError(function.name, 500, HttpError.code, "internal error").to_wire()), {}


def _answer(function: Function, call: Call) -> dict[str, Any] | flask.Response:
    answer = function.handler(call)
    if function.action.pool_scoped and not call.authorized:
        raise RuntimeError(f"{function.name} answered without deciding whether {call.caller.identity} may")
    return answer


def invoke(call: Call, function: Function, params: dict[str, Any]) -> dict[str, Any] | flask.Response:
    """What `function` answers `params` for the caller of `call`, decided as
    this edge decides: how a page shows what the JSON API would answer."""
    inner = dataclasses.replace(call, action=function.action, params=params, authorized=False, bot_token=None)
    _admit(inner)
    return _answer(function, inner)


def _error(function: Function, error: HttpError) -> tuple[Answer, dict[str, str]]:
    return (error.status, ApiError(function.name, error.status, error.code, error.message).to_wire()), error.headers


def _unreachable(error: BaseException | None) -> bool:
    """Whether `error`, or one it was raised from or while handling, says a
    backend could not be reached: a Firestore transaction whose begin failed
    raises its rollback's ValueError over the outage."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, _UNREACHABLE):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def _subjects(call: Call) -> dict[str, str | None]:
    """The bot and the task a request is about, for its log lines."""
    def text(name: str) -> str | None:
        value = call.params.get(name)
        return value[:200] if isinstance(value, str) else None
    return {"bot_id": call.caller.bot_id or text("bot_id"),
            "task_id": text("task_id") or text("run_id") or call.caller.run_id}


def _call(function: Function, request: flask.Request) -> Call:
    """The request, authenticated, and authorized as far as can be before
    the handler knows the pool."""
    svc = service.current()
    authorization = request.headers.get("Authorization")
    if not authorization and function.token_param and request.args.get("token"):
        authorization = f"Bearer {request.args['token']}"
    if not authorization and function.browser and (cookie := function.browser.token(request)):
        authorization = f"Bearer {cookie}"
    base = base_url(request)
    server_url = svc.settings.functions_url.rstrip("/") or base
    caller = svc.auth.authenticate(authorization, audiences(server_url, function.name, svc.service_config.get()))
    token = (authorization or "").partition(" ")[2].strip()
    call = Call(svc, caller, function.action, _params(request), base, token, _remote_ip(request, svc))
    if function.token_param:
        call.params.pop("token", None)
    _admit(call)
    return call


def _admit(call: Call) -> None:
    """Authorizes the call as far as can be before its handler knows the pool."""
    if call.action.pool_scoped:
        permissions.check_kind(call.config, call.caller, call.action)
    else:
        call.authorize()


def audiences(server_url: str, function_name: str, config: ServiceConfig) -> list[str]:
    """What an ID token may be minted for: the function's URL (Cloud Tasks',
    Cloud Scheduler's), the service's base URL (one token for every
    function), or the audience settings.toml names."""
    audiences = [f"{server_url}/{function_name}", server_url]
    return audiences + ([config.settings.id_token_audience] if config.settings.id_token_audience else [])


def _remote_ip(request: flask.Request, svc: service.Service) -> str:
    """The client's address: behind `trusted_proxy_hops` proxies that each
    append to X-Forwarded-For (Google's front end does), the one they saw."""
    hops = svc.settings.trusted_proxy_hops
    forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",") if part.strip()]
    if hops and len(forwarded) >= hops:
        return forwarded[-hops]
    return request.remote_addr or ""


def _renewed_token(call: Call) -> dict[str, str]:
    """The bot token the answer hands the bot: the one a handler set, or the
    caller's own renewed (same group and version, so that a bot whose group
    changed is still told to restart)."""
    if call.bot_token is None and call.caller.kind == Kind.BOT:
        ttl = datetime.timedelta(seconds=call.config.settings.bot_session_ttl_secs)
        call.bot_token = (call.caller.bot_id, call.caller.group, call.caller.group_version, call.now + ttl)
    if call.bot_token is None:
        return {}
    return {BOT_TOKEN_HEADER: call.service.bot_tokens.bot_token(*call.bot_token)}


def base_url(request: flask.Request) -> str:
    """Where the functions are reached, as this request reached them: the
    scheme the client used (behind Google's front end, X-Forwarded-Proto),
    the host, and any path prefix a proxy mounted them under. A function
    never sees its own name in its path (Cloud Functions strips it; so does
    the local gateway)."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    scheme = forwarded if forwarded in ("http", "https") else request.scheme
    return f"{scheme}://{request.host}{request.script_root.rstrip('/')}"


def _params(request: flask.Request) -> dict[str, Any]:
    # A parameter given more than once is a list (`?dimensions=a:1&dimensions=b:2`).
    params: dict[str, Any] = {k: v[0] if len(v) == 1 else v for k, v in request.args.to_dict(flat=False).items()}
    if request.method == "POST" and request.data:
        try:
            body = json.loads(request.data)
        except RecursionError as e:
            raise BadRequest("body: nested too deeply") from e
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
