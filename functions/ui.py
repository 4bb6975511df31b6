"""The web UI: server-rendered pages over the JSON API's own handlers.

Every figure a page shows comes from the function the CLI would call
(`task_result`, `bots_list`, ...), invoked in-process for the signed-in
person by `http.invoke`: the same parameters, the same validation, the same
authorization, so a page can show nothing the API would refuse. The pages'
scripts (`ui_static/ui.js`: the live stdout, the buttons) call the same
functions through `/ui/api/<name>`. Templates are Jinja2 with autoescape on;
the scripts and styles are served by this function (no CDN, no build step),
under a Content-Security-Policy that allows nothing else.

Paths, below `BASE_URL/ui`: `/` and `/tasks`, `/task/<task_id>`, `/bots`,
`/bot/<bot_id>`, `/files/<hash>/<size>` (a tree), `/blob/<hash>/<size>`,
`/api/<name>`, `/signin`, `/signout`, `/assets/<file>`.
"""

import dataclasses
import datetime
import re
import urllib.parse
from pathlib import Path
from typing import Any, Callable

import flask
import jinja2
import requests

from functions import http, permissions, service, ui_session
from functions.errors import BadRequest, MethodNotAllowed, NotFound
from functions.http import Call, Function
from functions.permissions import Action
from shared.cas import Digest, Tree

_HERE = Path(__file__).parent
_TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(_HERE / "ui_templates"), autoescape=True,
                                undefined=jinja2.StrictUndefined)
_STATIC = {"ui.js": "text/javascript", "ui.css": "text/css"}
_CSP = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
#: Google Sign-In's script, frame and styles, on the sign-in page alone.
_GOOGLE_CSP = ("default-src 'self'; script-src 'self' https://accounts.google.com/gsi/client; "
               "frame-src https://accounts.google.com/gsi/; style-src 'self' https://accounts.google.com/gsi/style; "
               "connect-src 'self' https://accounts.google.com/gsi/; object-src 'none'; base-uri 'none'")
#: What the pages' scripts may read (GET) and do (POST) through `/ui/api/<name>`, besides `retry`.
API_READS = ("task_stdout", "bots_dimensions")
API_ACTIONS = ("task_cancel", "bot_terminate", "bot_delete")
PAGE_SIZE = 50
#: A tree's manifest the files page reads itself (a 100,000-file tree's is about 10 MB).
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
#: The states the tasks page counts (task_query's), and how far back it may look.
TASK_STATES = ("PENDING", "RUNNING", "COMPLETED_SUCCESS", "COMPLETED_FAILURE", "EXPIRED", "TIMED_OUT", "BOT_DIED",
               "CANCELED", "KILLED", "NO_RESOURCE")
SINCE = {"": None, "hour": datetime.timedelta(hours=1), "day": datetime.timedelta(days=1),
         "week": datetime.timedelta(weeks=1)}
#: The bot states the bots page filters on: the `bots_list` flags each sets.
BOT_STATES = {"alive": {"is_dead": False}, "dead": {"is_dead": True}, "quarantined": {"quarantined": True},
              "maintenance": {"in_maintenance": True}, "busy": {"is_busy": True}}


class Browser:
    """What the edge asks of the UI (functions.http.Browser)."""

    def token(self, request: flask.Request) -> str | None:
        return ui_session.token(request)

    def public(self, request: flask.Request) -> flask.Response | None:
        """The answers that need nobody signed in."""
        path = request.path
        if path.startswith("/assets/"):  # Not /static/: functions-framework's Flask app has that route.
            return _asset(path.removeprefix("/assets/"))
        if path == "/signin":
            return ui_session.sign_in(request) if request.method == "POST" else \
                _sign_in_page(request, request.args.get("next", "/"))
        if path == "/signout" and request.method == "POST":
            return ui_session.sign_out(request)
        return None

    def error(self, request: flask.Request, status: int, body: dict[str, Any]) -> flask.Response | None:
        """A readable page (JSON still for the scripts' calls); the sign-in
        page for a request not signed in (still a 401)."""
        if request.path.startswith("/api/"):
            return None
        message = body.get("error", {}).get("message", "")
        if status == 401 and request.path != "/signin":
            return _sign_in_page(request, request.full_path.rstrip("?"), message, 401)
        return render(request, "error.html", status, status=status, message=message)


def render(request: flask.Request, template: str, http_status: int = 200, csp: str = _CSP,
           **values: Any) -> flask.Response:
    html = _TEMPLATES.get_template(template).render(ui=ui_session.ui_url(request), **values)
    return flask.Response(html, status=http_status, mimetype="text/html", headers={
        "Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store"})


def _asset(name: str) -> flask.Response:
    if name not in _STATIC:
        raise NotFound(f"no file {name!r}")
    return flask.Response((_HERE / "ui_static" / name).read_bytes(), mimetype=_STATIC[name],
                          headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"})


def _sign_in_page(request: flask.Request, next_path: str, message: str = "", status: int = 200) -> flask.Response:
    """Where `next_path` (a path of the UI) asks a person to sign in first."""
    client_id = service.current().service_config.get().settings.id_token_audience
    return render(request, "signin.html", status, csp=_GOOGLE_CSP if client_id else _CSP, client_id=client_id,
                  next=next_path, message=message)


@dataclasses.dataclass
class Pages:
    """The pages of one signed-in call; `functions`: the registry by name."""

    call: Call
    functions: dict[str, Function]

    def ask(self, name: str, /, **params: Any) -> Any:
        """What the function `name` answers the caller, as the JSON API would."""
        return http.invoke(self.call, self.functions[name], params)

    def serve(self, path: str) -> flask.Response | dict[str, Any]:
        for pattern, page in _ROUTES:
            match = re.fullmatch(pattern, path)
            if match:
                return page(self, *match.groups())  # The path is decoded already.
        raise NotFound(f"no page {path}")

    def render(self, template: str, **values: Any) -> flask.Response:
        return render(flask.request, template, identity=self.call.caller.identity, **values)

    def tasks(self) -> flask.Response:
        task_id = self.call.params.get("task_id")
        if isinstance(task_id, str) and task_id:
            quoted = urllib.parse.quote(task_id, safe="")
            return flask.redirect(f"{ui_session.ui_url(flask.request)}/task/{quoted}", 303)
        params = self.call.params
        pools = self._pools(Action.READ_TASK)
        pool = params.get("pool") or (pools[0] if pools else "")
        user, state, since = (params.get(name) or "" for name in ("user", "state", "since"))
        tags = _as_list(params.get("tags"))
        selection = _task_selection(pool, user, tags, since, self.call.now)
        page = self.ask("tasks_list", state=state or "ALL", limit=params.get("limit") or PAGE_SIZE,
                        cursor=params.get("cursor"), **selection)
        shown = {"pool": pool, "user": user, "since": since, "tags": tags, "limit": params.get("limit")}
        base = f"{ui_session.ui_url(flask.request)}/tasks"
        return self.render(
            "tasks.html", pools=pools, pool=pool, user=user, state=state, since=since, tags=tags,
            states=TASK_STATES, since_choices=list(SINCE), page=page,
            counts={name: self.ask("tasks_count", state=name, **selection) for name in TASK_STATES},
            links={name: _link(base, shown, state=name) for name in TASK_STATES},
            next_page=_link(base, shown, state=state, cursor=page["cursor"]) if page["cursor"] else None)

    def task(self, task_id: str) -> flask.Response:
        result = self.ask("task_result", task_id=task_id)
        return self.render("task.html", result=result, task_request=self.ask("task_request", task_id=task_id),
                           may=self.ask("server_permissions", task_id=task_id)["permissions"],
                           pending=self.ask("task_pending", task_id=task_id) if result["state"] == "PENDING"
                           else None)

    def bots(self) -> flask.Response:
        params = self.call.params
        pools = self._pools(Action.READ_BOTS)
        pool = params.get("pool") or (pools[0] if pools else "")
        chosen = _as_list(params.get("dimensions"))
        state = params.get("state") or ""
        if state not in ("", *BOT_STATES):
            raise BadRequest(f"state: one of {', '.join(BOT_STATES)}")
        dimensions = ([f"pool:{pool}"] if pool else []) + [d for d in chosen if not d.startswith("pool:")]
        flags = BOT_STATES.get(state, {})
        # The dimension values (`bots_dimensions`: a read per value, as many as
        # bots for `id`) are loaded by the page's script when asked for, so
        # that a view's reads stay bounded by the page size.
        return self.render(
            "bots.html", pools=pools, pool=pool, chosen=chosen, state=state, states=list(BOT_STATES),
            counts=self.ask("bots_count", dimensions=dimensions),
            page=self.ask("bots_list", dimensions=dimensions, limit=PAGE_SIZE, cursor=params.get("cursor"), **flags))

    def bot(self, bot_id: str) -> flask.Response:
        return self.render("bot.html", bot=self.ask("bot_get", bot_id=bot_id),
                           events=self.ask("bot_events", bot_id=bot_id, limit=PAGE_SIZE)["items"],
                           tasks=self.ask("bot_tasks", bot_id=bot_id, limit=PAGE_SIZE)["items"],
                           may=self.ask("server_permissions", bot_id=bot_id)["permissions"])

    def files(self, hash_: str, size: str) -> flask.Response:
        """The files of a content-addressed tree (a task's inputs or outputs)."""
        digest = self._digest(hash_, size)
        if digest.size_bytes > MAX_MANIFEST_BYTES:
            raise BadRequest(f"digest: a manifest of more than {MAX_MANIFEST_BYTES} bytes is not shown")
        answer = requests.get(self._download_url(digest), timeout=30)
        if answer.status_code == 404:
            raise NotFound(f"no tree {digest} in the store")
        answer.raise_for_status()
        tree = Tree.from_bytes(answer.content)
        return self.render("files.html", digest=digest, tree=tree, packed=tree.packed)

    def blob(self, hash_: str, size: str) -> flask.Response:
        """A redirect to a short-lived signed URL of the blob: its bytes never pass through here."""
        return flask.redirect(self._download_url(self._digest(hash_, size)), 303)

    def _digest(self, hash_: str, size: str) -> Digest:
        return Digest.from_wire({"hash": hash_, "size_bytes": int(size)}, "digest")

    def _download_url(self, digest: Digest) -> str:
        return self.ask("cas_urls", download=[digest.to_wire()])["download"][0]["url"]

    def api(self, name: str) -> dict[str, Any]:
        """The scripts' calls: read with GET, act with POST (a page of ours: ui_session)."""
        if name not in (*API_READS, *API_ACTIONS, "retry"):
            raise NotFound(f"no API {name!r} for the web UI")
        if name not in API_READS and flask.request.method != "POST":
            raise MethodNotAllowed(f"{name} accepts POST", ("POST",))
        return self.retry(self.call.params.get("task_id")) if name == "retry" else self.ask(name, **self.call.params)

    def retry(self, task_id: Any) -> dict[str, Any]:
        """A new task from the same request, by the caller (who must be a
        scheduler of its pool: `tasks_new` decides)."""
        request = self.ask("task_request", task_id=task_id)
        if any(s["properties"].get("has_secret_bytes") for s in request["task_slices"]):
            raise BadRequest("task_id: its request has secret bytes, which are never shown: retry it from the CLI")
        new = {k: v for k, v in request.items() if k not in ("authenticated", "request_uuid", "user")}
        new["tags"] = [tag for tag in request["tags"] if not tag.startswith("user:")]
        return self.ask("tasks_new", **new)

    def _pools(self, action: Action) -> list[str]:
        """The pools the caller may do `action` in."""
        config = self.call.config
        return [name for name in sorted(config.pools)
                if permissions.refusal(config, self.call.caller, action, name) is None]


def _task_selection(pool: str, user: str, tags: list[str], since: str, now: datetime.datetime) -> dict[str, Any]:
    """The parameters of tasks_list and tasks_count the tasks page's filters make."""
    if since not in SINCE:
        raise BadRequest(f"since: one of {', '.join(name for name in SINCE if name)}")
    selection: dict[str, Any] = {"tags": [f"pool:{pool}"] * bool(pool) + [f"user:{user}"] * bool(user) + tags}
    if SINCE[since]:
        selection["start"] = int((now - SINCE[since]).timestamp())
    return selection


def _link(base: str, params: dict[str, Any], **more: Any) -> str:
    """`base` with the parameters that are set (a list: one each)."""
    return f"{base}?{urllib.parse.urlencode({k: v for k, v in {**params, **more}.items() if v}, doseq=True)}"


def _as_list(value: Any) -> list[str]:
    return [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str) and v]


_ROUTES: list[tuple[str, Callable[..., Any]]] = [
    (r"/(?:tasks)?", Pages.tasks), (r"/task/([^/]+)", Pages.task), (r"/bots", Pages.bots),
    (r"/bot/(.+)", Pages.bot), (r"/api/(\w+)", Pages.api),
    (r"/files/([0-9a-f]{64})/([0-9]{1,19})", Pages.files), (r"/blob/([0-9a-f]{64})/([0-9]{1,19})", Pages.blob),
]
