"""The local gateway: every Cloud Function at `BASE_URL/<function_name>`.

Development only: production deploys one Cloud Function per entry point. Here
each function is its own functions-framework app, as deployed, and this small
WSGI dispatcher picks one by the first path segment. (Werkzeug's
DispatcherMiddleware answers `POST /name` with a 308, which POST clients do
not follow.) Served by gunicorn: `gunicorn 'local.gateway:make_app()'`.
"""

import json
import pathlib
from typing import Callable, Iterable

import functions_framework

import functions
from functions.endpoints import FUNCTIONS

#: The entry points and the API document, as deployed from functions/.
MAIN = str(pathlib.Path(functions.__file__).with_name("main.py"))
OPENAPI = pathlib.Path(functions.__file__).with_name("openapi.json")

WsgiApp = Callable[[dict, Callable], Iterable[bytes]]


def make_app() -> WsgiApp:
    return dispatcher({f.name: functions_framework.create_app(target=f.name, source=MAIN) for f in FUNCTIONS})


def dispatcher(apps: dict[str, WsgiApp]) -> WsgiApp:
    """`/<name>/rest` → `apps[name]` at `/rest`."""

    def dispatch(environ: dict, start_response: Callable) -> Iterable[bytes]:
        name, _, rest = environ.get("PATH_INFO", "/").lstrip("/").partition("/")
        if not name:
            return _json(start_response, "200 OK", {"functions": sorted(apps), "openapi": "/openapi.json"})
        if name == OPENAPI.name:
            return _json(start_response, "200 OK", json.loads(OPENAPI.read_text()))
        app = apps.get(name)
        if app is None:
            return _json(start_response, "404 Not Found",
                         {"error": {"code": "not_found", "message": f"no function {name!r}"}})
        # As a deployed function sees it: its name is not part of its path.
        environ["PATH_INFO"] = "/" + rest
        return app(environ, start_response)

    return dispatch


def _json(start_response: Callable, status: str, body: dict) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
